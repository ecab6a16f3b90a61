//! Tests of the quiescing hook scripts in `scripts/hooks/`, run the way
//! strata runs a hook: a cleared environment with the STRATA_* variables,
//! stdin /dev/null (or, for a session hook, a pipe that receives `finish`),
//! key=value lines and `ready` on stdout.
//!
//! Real components where they run here: SQLite, PostgreSQL (a private
//! cluster per test, owned by the `postgres` OS user, reachable only through
//! a Unix socket in the test's directory) and MariaDB (a private mariadbd
//! per test, likewise on a Unix socket in the test's directory). A test of
//! a real component asks for its tier first (tests/common/tier.rs): without
//! the component it is skipped with a notice, or fails when
//! STRATA_TEST_ALL_TIERS=1 (as in CI). Services that cannot run here
//! (MySQL 8, Oracle, SQL Server, LVM/btrfs/fsfreeze on a real volume,
//! Kafka) are replaced by `tests/hook_scripts/standin`, installed under the
//! tool's name first on PATH: it records every invocation and every SQL
//! line it is sent, answers from a reply table, and fails or hangs on
//! request.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

#[path = "common/mod.rs"]
mod common;

use common::postgres::{as_postgres, missing_packages, Server};
use common::tier::{self, Tier};

/// How long a hook may take to say `ready` or to end in these tests.
const HOOK_WAIT: Duration = Duration::from_secs(120);

fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn hook(name: &str) -> PathBuf {
    repo_path("scripts/hooks").join(name)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Fails the test, naming their packages, when tools are missing.
fn ensure_tools(tools: &[(&str, &str)]) {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(t, _)| !have(t))
        .map(|(_, p)| *p)
        .collect();
    if !missing.is_empty() {
        missing_packages(&missing);
    }
}

/// Whether process `pid` exists and has not ended (a zombie has ended; an
/// orphan's is reaped by init in its own time).
fn running(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(')').next().unwrap_or_default().trim_start();
    !(state.is_empty() || state.starts_with('Z') || state.starts_with('X'))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Asserts that `needles` occur in `lines` in this order (each a substring
/// of some line after the previous match).
fn assert_in_order(lines: &[String], needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match lines[from..].iter().position(|l| l.contains(needle)) {
            Some(i) => from += i + 1,
            None => panic!(
                "expected {needle:?} after line {from} of:\n{}",
                lines.join("\n")
            ),
        }
    }
}

fn count_matching(lines: &[String], needle: &str) -> usize {
    lines.iter().filter(|l| l.contains(needle)).count()
}

/// The value of the `key=value` line `key` of a hook's stdout.
fn kv<'a>(stdout: &'a [String], key: &str) -> Option<&'a str> {
    let prefix = format!("{key}=");
    stdout.iter().find_map(|l| l.strip_prefix(&prefix))
}

/// A finished hook.
struct Done {
    status: ExitStatus,
    stdout: Vec<String>,
    stderr: String,
}

impl Done {
    fn from_output(out: Output) -> Done {
        Done {
            status: out.status,
            stdout: text(&out.stdout).lines().map(str::to_owned).collect(),
            stderr: text(&out.stderr),
        }
    }

    fn assert_ok(&self) {
        assert!(
            self.status.success(),
            "hook failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.status,
            self.stdout.join("\n"),
            self.stderr
        );
    }

    /// Asserts exit status 1 and a message on stderr.
    fn assert_failed(&self, message: &str) {
        assert_eq!(
            self.status.code(),
            Some(1),
            "expected exit 1; stdout:\n{}\nstderr:\n{}",
            self.stdout.join("\n"),
            self.stderr
        );
        assert!(
            self.stderr.contains(message),
            "expected {message:?} on stderr:\n{}",
            self.stderr
        );
    }

    fn kv(&self, key: &str) -> &str {
        kv(&self.stdout, key)
            .unwrap_or_else(|| panic!("no {key}= line in:\n{}", self.stdout.join("\n")))
    }
}

/// A session hook being driven through strata's protocol.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stdout: Vec<String>,
}

impl Session {
    fn start(cmd: &mut Command) -> Session {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        let stdin = child.stdin.take();
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Session {
            child,
            stdin,
            lines,
            stdout: Vec::new(),
        }
    }

    /// Waits for `ready`; returns the lines printed before it.
    fn ready(&mut self) -> Vec<String> {
        let deadline = Instant::now() + HOOK_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line == "ready" => return self.stdout.clone(),
                Ok(line) => self.stdout.push(line),
                Err(RecvTimeoutError::Timeout) => panic!("no `ready` within {HOOK_WAIT:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    let done = self.wait();
                    panic!(
                        "the hook ended before `ready` ({}):\nstdout:\n{}\nstderr:\n{}",
                        done.status,
                        done.stdout.join("\n"),
                        done.stderr
                    );
                }
            }
        }
    }

    /// Sends `finish` and closes stdin, as strata does before the snapshot.
    fn finish(mut self) -> Done {
        let mut stdin = self.stdin.take().expect("stdin");
        stdin.write_all(b"finish\n").expect("writing finish");
        drop(stdin);
        self.wait()
    }

    /// Closes stdin without `finish`, as when strata dies or aborts.
    fn abandon(mut self) -> Done {
        drop(self.stdin.take());
        self.wait()
    }

    fn wait(&mut self) -> Done {
        drop(self.stdin.take());
        let deadline = Instant::now() + HOOK_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the hook did not end within {HOOK_WAIT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.stdout.push(line);
        }
        let mut stderr = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            std::io::Read::read_to_string(&mut e, &mut stderr).expect("stderr");
        }
        Done {
            status,
            stdout: std::mem::take(&mut self.stdout),
            stderr,
        }
    }
}

/// A temporary directory with a fake head (a plain directory standing in
/// for MNT/head), and a bin directory of stand-ins first on PATH.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(standins: &[&str]) -> Env {
        let dir = tempfile::Builder::new()
            .prefix("strata-hooks-")
            .tempdir_in("/var/tmp")
            .expect("tempdir");
        let env = Env { dir };
        std::fs::create_dir(env.path("bin")).unwrap();
        std::fs::create_dir(env.head()).unwrap();
        for tool in standins {
            std::os::unix::fs::symlink(repo_path("tests/hook_scripts/standin"), env.bin(tool))
                .unwrap();
        }
        std::fs::write(env.path("standin.log"), "").unwrap();
        std::fs::write(env.path("replies"), "").unwrap();
        env
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn bin(&self, tool: &str) -> PathBuf {
        self.path("bin").join(tool)
    }

    fn head(&self) -> PathBuf {
        self.path("head")
    }

    /// The stand-ins' answers: each (pattern, reply), reply in printf %b form.
    fn replies(&self, replies: &[(&str, &str)]) {
        let table: String = replies
            .iter()
            .map(|(pattern, reply)| format!("{pattern}\t{reply}\n"))
            .collect();
        std::fs::write(self.path("replies"), table).unwrap();
    }

    /// What the stand-ins were asked, one line per invocation or SQL line.
    fn log(&self) -> Vec<String> {
        text(&std::fs::read(self.path("standin.log")).unwrap())
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The hook `name` with the environment strata gives a hook.
    fn hook(&self, name: &str) -> Command {
        self.command(hook(name))
    }

    /// `program` with the environment strata gives a hook.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.path("bin").display()
                ),
            )
            .env("LANG", "C.UTF-8")
            .env("STRATA_PHASE", "pre_backup")
            .env("STRATA_RUN", "run-1")
            .env("STRATA_MOUNTPOINT", self.dir.path())
            .env("STRATA_HEAD", self.head())
            .env("STRATA_LABEL", "nightly")
            .env("STANDIN_LOG", self.path("standin.log"))
            .env("STANDIN_REPLIES", self.path("replies"))
            .stdin(Stdio::null());
        cmd
    }
}

fn run(cmd: &mut Command) -> Done {
    Done::from_output(
        cmd.output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}")),
    )
}

// ---------------------------------------------------------------------------
// The scripts themselves

const SCRIPTS: &[&str] = &[
    "postgresql-basebackup",
    "postgresql-session",
    "mysql",
    "sqlite",
    "oracle",
    "sqlserver",
    "fs-snapshot",
    "kafka",
];

#[test]
fn every_script_is_shellcheck_clean_and_documents_its_contract() {
    if tier::missing(&[Tier::Shellcheck]) {
        return;
    }
    for name in SCRIPTS {
        let path = hook(name);
        let source =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let header: String = source
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for part in ["Usage", "Output", "Exit status", "[[hook]]", "command = ["] {
            assert!(header.contains(part), "{name}: header lacks {part:?}");
        }
        assert!(source.contains("set -euo pipefail"), "{name}: not set -eu");
        let out = run(Command::new("shellcheck").arg(&path));
        assert!(
            out.status.success(),
            "shellcheck {name}:\n{}",
            out.stdout.join("\n")
        );
    }
    let out = run(Command::new("shellcheck").arg(repo_path("tests/hook_scripts/standin")));
    assert!(out.status.success(), "{}", out.stdout.join("\n"));
    // The drill validation program: a [[drill]]'s, not a [[hook]]'s.
    let path = hook("drill-postgresql");
    let source = std::fs::read_to_string(&path).unwrap();
    for part in [
        "Usage",
        "Output",
        "Exit status",
        "[[drill]]",
        "validate = [",
    ] {
        assert!(
            source.contains(part),
            "drill-postgresql: header lacks {part:?}"
        );
    }
    assert!(source.contains("set -euo pipefail"));
    let out = run(Command::new("shellcheck").arg(&path));
    assert!(out.status.success(), "{}", out.stdout.join("\n"));
}

#[test]
fn usage_errors_exit_2_and_name_the_problem() {
    let env = Env::new(&[]);
    // fs-snapshot keeps its state in the test's directory, as the other
    // fs-snapshot tests do, not in root's /run/strata.
    let state = env.path("state");
    let state = state.to_str().unwrap();
    let cases: &[(&str, &[&str], &str)] = &[
        ("postgresql-session", &["--dest", "../etc"], "--dest"),
        ("postgresql-basebackup", &["--dest", "/abs"], "--dest"),
        ("sqlite", &[], "--db SRC is required"),
        ("sqlserver", &[], "--database DB is required"),
        ("kafka", &[], "--bootstrap-server"),
        (
            "fs-snapshot",
            &["--method", "zfs", "--state-dir", state],
            "unknown --method",
        ),
        ("mysql", &["--lock", "none"], "--lock"),
        ("oracle", &["--bogus"], "unknown argument"),
        ("drill-postgresql", &["--timeout", "soon"], "--timeout"),
        ("drill-postgresql", &["--data"], "--data needs a value"),
    ];
    for (name, args, message) in cases {
        let done = run(env.hook(name).args(*args));
        assert_eq!(done.status.code(), Some(2), "{name}: {}", done.stderr);
        assert!(
            done.stderr.contains(message) && done.stderr.contains("usage:"),
            "{name}: expected {message:?} and usage on stderr: {}",
            done.stderr
        );
    }
    // No restore to check.
    let done = run(env.hook("drill-postgresql").env_remove("STRATA_DRILL_DIR"));
    assert_eq!(done.status.code(), Some(2));
    assert!(done.stderr.contains("no data directory"), "{}", done.stderr);
    // No head, no run.
    let done = run(env.hook("postgresql-session").env_remove("STRATA_HEAD"));
    assert_eq!(done.status.code(), Some(2));
    assert!(
        done.stderr.contains("STRATA_HEAD is not set"),
        "{}",
        done.stderr
    );
}

// ---------------------------------------------------------------------------
// SQLite: the real sqlite3

fn sqlite3(db: &Path, sql: &str) -> String {
    // A busy timeout: a connection that opens while another recovers the
    // WAL index gets "database is locked" at once without one.
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 30000"])
        .arg(db)
        .arg(sql)
        .output()
        .expect("sqlite3");
    assert!(out.status.success(), "sqlite3 {sql}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

#[test]
fn sqlite_copies_a_live_wal_database_and_checks_the_copy() {
    if tier::missing(&[Tier::Sqlite]) {
        return;
    }
    let env = Env::new(&[]);
    let src = env.path("app.db");
    sqlite3(
        &src,
        "PRAGMA journal_mode=WAL; PRAGMA user_version=7; CREATE TABLE t(x TEXT);
         WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k+1 FROM n WHERE k<5000)
         INSERT INTO t SELECT printf('row%06d', k) FROM n;",
    );
    // A connection holding committed rows only in the -wal file (no
    // checkpoint): the copy must contain them.
    let mut writer = Command::new("sqlite3")
        .args(["-bail", "-cmd", ".timeout 30000"])
        .arg(&src)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("sqlite3 writer");
    let mut w = writer.stdin.take().unwrap();
    w.write_all(b"PRAGMA wal_autocheckpoint=0; INSERT INTO t VALUES ('in-wal');\n")
        .unwrap();
    w.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while sqlite3(&src, "SELECT count(*) FROM t WHERE x='in-wal'") != "1" {
        assert!(
            Instant::now() < deadline,
            "the writer's row never committed"
        );
        if let Some(status) = writer.try_wait().unwrap() {
            panic!("the sqlite3 writer exited ({status}) before its row committed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }

    let done =
        run(env
            .hook("sqlite")
            .args(["--db", src.to_str().unwrap(), "--dest", "app/app.db"]));
    drop(w);
    let _ = writer.wait();
    done.assert_ok();

    let copy = env.head().join("app/app.db");
    assert_eq!(sqlite3(&copy, "SELECT count(*) FROM t"), "5001");
    assert_eq!(
        sqlite3(&copy, "SELECT count(*) FROM t WHERE x='in-wal'"),
        "1"
    );
    assert_eq!(sqlite3(&copy, "PRAGMA integrity_check"), "ok");
    assert_eq!(done.kv("integrity"), "ok");
    assert_eq!(done.kv("user_version"), "7");
    assert_eq!(done.kv("journal_mode"), "wal");
    let pages: u64 = done.kv("pages").parse().unwrap();
    let page_size: u64 = done.kv("page_size").parse().unwrap();
    assert_eq!(pages.to_string(), sqlite3(&copy, "PRAGMA page_count"));
    assert_eq!(done.kv("bytes"), (pages * page_size).to_string());
    assert!(
        !env.head().join("app/app.db.strata-tmp").exists(),
        "temporary copy left behind"
    );
}

#[test]
fn sqlite_refuses_a_copy_that_fails_integrity_check() {
    if tier::missing(&[Tier::Sqlite]) {
        return;
    }
    let env = Env::new(&[]);
    let src = env.path("bad.db");
    sqlite3(
        &src,
        "CREATE TABLE t(x TEXT); CREATE INDEX i ON t(x);
         WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k+1 FROM n WHERE k<2000)
         INSERT INTO t SELECT printf('row%06d', k) FROM n;",
    );
    // Overwrite the cells at the end of the last page (an index leaf): the
    // backup API copies pages as they are, the check must catch it.
    let pages: u64 = sqlite3(&src, "PRAGMA page_count").parse().unwrap();
    let mut bytes = std::fs::read(&src).unwrap();
    let start = ((pages - 1) * 4096 + 3000) as usize;
    bytes[start..start + 1000].fill(b'Z');
    std::fs::write(&src, bytes).unwrap();
    // An earlier good copy stays untouched.
    std::fs::create_dir(env.head().join("sqlite")).unwrap();
    std::fs::write(env.head().join("sqlite/bad.db"), "earlier copy").unwrap();

    let done = run(env.hook("sqlite").args(["--db", src.to_str().unwrap()]));
    done.assert_failed("integrity_check");
    assert_eq!(
        std::fs::read_to_string(env.head().join("sqlite/bad.db")).unwrap(),
        "earlier copy"
    );
    assert!(!env.head().join("sqlite/bad.db.strata-tmp").exists());
    assert!(kv(&done.stdout, "integrity").is_none());

    let done = run(env.hook("sqlite").args(["--db", "/nonexistent/x.db"]));
    done.assert_failed("does not exist");
}

// ---------------------------------------------------------------------------
// PostgreSQL: a real private cluster

fn must(cmd: &mut Command) -> String {
    let done = run(cmd);
    done.assert_ok();
    done.stdout.join("\n")
}

/// psql's rows as lines joined, without the last newline.
fn rows(out: String) -> String {
    out.lines().collect::<Vec<_>>().join("\n")
}

/// A private cluster: its data directory and Unix socket in a temporary
/// directory owned by `postgres`, with the hooks copied where that user
/// reaches them; no TCP listener.
struct Cluster {
    // Declared first: the server stops before its directory goes.
    server: Server,
    env: Env,
}

impl Cluster {
    fn new() -> Cluster {
        let env = Env::new(&[]);
        // The hooks run as postgres: they and everything they touch must be
        // reachable by that user, wherever the checkout is.
        std::fs::create_dir(env.path("hooks")).unwrap();
        // Copied by cp, so no file this process wrote is open in a child
        // another test forks meanwhile (executing it would fail: ETXTBSY).
        for name in ["postgresql-session", "postgresql-basebackup"] {
            must(Command::new("cp").arg(hook(name)).arg(env.path("hooks")));
        }
        must(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(env.dir.path()),
        );
        must(Command::new("chmod").arg("0755").arg(env.dir.path()));
        let server = Server::init(&env.path("data"), env.dir.path(), 5432);
        server.start();
        Cluster { server, env }
    }

    /// Runs SQL on the cluster; returns the unaligned rows.
    fn sql(&self, sql: &str) -> String {
        rows(self.server.sql(sql))
    }

    /// A hook as strata runs it with `user = "postgres"` and the cluster's
    /// connection settings in its `env`.
    fn hook(&self, name: &str) -> Command {
        let mut cmd = as_postgres(self.env.path("hooks").join(name));
        cmd.env_clear()
            .env(
                "PATH",
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.server.bin.display()
                ),
            )
            .env("LANG", "C.UTF-8")
            .env("STRATA_PHASE", "pre_backup")
            .env("STRATA_RUN", "run-1")
            .env("STRATA_MOUNTPOINT", self.env.dir.path())
            .env("STRATA_HEAD", self.env.head())
            .env("STRATA_LABEL", "nightly")
            .env("PGHOST", &self.server.socket)
            .env("PGPORT", self.server.port.to_string())
            .env("PGUSER", "postgres");
        cmd
    }

    /// Copies a data directory as the copy command of a backup run would
    /// (as postgres, leaving out the live WAL and postmaster.pid).
    fn copy_data_dir(&self, to: &Path) {
        must(as_postgres("cp").arg("-a").arg(&self.server.data).arg(to));
        must(as_postgres("sh").arg("-c").arg(format!(
            "rm -f '{0}/postmaster.pid' '{0}/postmaster.opts' && find '{0}/pg_wal' -maxdepth 1 -type f -delete",
            to.display()
        )));
    }
}

#[test]
fn postgresql_session_backup_starts_and_passes_pg_amcheck() {
    if tier::missing(&[Tier::Postgres]) {
        return;
    }
    let pg = Cluster::new();
    pg.sql(
        "CREATE TABLE marker(name text); INSERT INTO marker VALUES ('before');
            CREATE TABLE bulk(id int PRIMARY KEY, pad text); CREATE INDEX ON bulk(pad);",
    );

    let mut session = Session::start(&mut pg.hook("postgresql-session"));
    let before_ready = session.ready();
    let start_lsn = kv(&before_ready, "start_lsn").expect("start_lsn before ready");
    assert!(start_lsn.contains('/'), "start_lsn {start_lsn}");

    // The database keeps changing while the copy runs, and after it.
    pg.sql("INSERT INTO bulk SELECT g, md5(g::text) FROM generate_series(1, 20000) g;");
    let head_pg = pg.env.head().join("pg");
    pg.copy_data_dir(&head_pg);
    pg.sql(
        "UPDATE bulk SET pad = pad || 'x' WHERE id % 3 = 0; INSERT INTO marker VALUES ('during');",
    );
    let done = session.finish();
    done.assert_ok();
    pg.sql("INSERT INTO marker VALUES ('after'); SELECT pg_switch_wal();");

    assert_eq!(done.kv("start_lsn"), start_lsn);
    assert!(done.kv("stop_lsn").contains('/'));
    assert_eq!(done.kv("timeline"), "1");
    assert_eq!(done.kv("label"), "strata run-1");
    let label = std::fs::read_to_string(head_pg.join("backup_label")).expect("backup_label");
    assert!(label.contains("LABEL: strata run-1"), "{label}");
    assert!(label.ends_with('\n'), "backup_label lost its last newline");
    let start_file = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|l| l.split("(file ").nth(1))
        .map(|f| f.trim_end_matches(')').to_owned())
        .expect("start WAL file in backup_label");
    let wal: Vec<String> = std::fs::read_dir(head_pg.join("pg_wal"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(wal.contains(&start_file), "{start_file} not in {wal:?}");
    assert_eq!(
        wal.len().to_string(),
        done.kv("wal_segments"),
        "pg_wal holds exactly the backup's segments: {wal:?}"
    );
    assert!(!head_pg.join("tablespace_map").exists());

    // The real proof: the copy alone starts, recovers, and is intact.
    let restore = pg.env.path("restore");
    must(as_postgres("cp").arg("-a").arg(&head_pg).arg(&restore));
    let restored = Server::on(&restore, &pg.server.socket, 5433);
    restored.start();
    let check = || {
        let marker = rows(restored.sql("SELECT string_agg(name, ',' ORDER BY name) FROM marker"));
        let bulk =
            rows(restored.sql("SELECT count(*), count(*) FILTER (WHERE pad LIKE '%x') FROM bulk"));
        let amcheck = run(restored.client("pg_amcheck").args([
            "--all",
            "--install-missing",
            "--heapallindexed",
        ]));
        (marker, bulk, amcheck)
    };
    let (rows, bulk, amcheck) = check();
    restored.stop();
    assert_eq!(
        rows, "before,during",
        "committed before finish: present; after: absent"
    );
    assert_eq!(bulk, "20000|6666");
    assert!(
        amcheck.status.success(),
        "pg_amcheck on the restored copy:\n{}\n{}",
        amcheck.stdout.join("\n"),
        amcheck.stderr
    );
}

#[test]
fn postgresql_session_without_finish_ends_the_backup_and_writes_nothing() {
    if tier::missing(&[Tier::Postgres]) {
        return;
    }
    let pg = Cluster::new();
    let mut session = Session::start(&mut pg.hook("postgresql-session"));
    session.ready();
    let slots = pg.sql("SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'strata_%'");
    assert_eq!(
        slots, "1",
        "the session holds a temporary slot while the copy runs"
    );

    let done = session.abandon();
    done.assert_failed("without 'finish'");
    assert!(done.stderr.contains("pg_backup_stop"), "{}", done.stderr);
    assert!(kv(&done.stdout, "stop_lsn").is_none());
    assert!(!pg.env.head().join("pg/backup_label").exists());
    assert!(!pg.env.head().join("pg/pg_wal").exists());
    // The hook's session is gone, and with it the backup and its slot.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = pg.sql(
            "SELECT (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
                  + (SELECT count(*) FROM pg_replication_slots)",
        );
        if left == "0" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backup session or slot left: {left}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn postgresql_hooks_fail_clearly_when_the_server_is_unreachable() {
    if tier::missing(&[Tier::Postgres]) {
        return;
    }
    let pg = Cluster::new();
    // An earlier copy must survive a failed run.
    std::fs::create_dir(pg.env.head().join("pg")).unwrap();
    std::fs::write(pg.env.head().join("pg/PG_VERSION"), "earlier\n").unwrap();
    must(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(pg.env.head()),
    );

    let session = Session::start(pg.hook("postgresql-session").env("PGPORT", "1"));
    let done = session.abandon();
    done.assert_failed("psql failed");
    assert!(!done.stdout.iter().any(|l| l == "ready"));

    let done = run(pg.hook("postgresql-basebackup").env("PGPORT", "1"));
    done.assert_failed("pg_basebackup failed");
    assert!(done.stderr.contains("left as it was"), "{}", done.stderr);
    assert_eq!(
        std::fs::read_to_string(pg.env.head().join("pg/PG_VERSION")).unwrap(),
        "earlier\n"
    );
    assert!(!pg.env.head().join("pg.partial").exists());
}

#[test]
fn postgresql_basebackup_writes_a_verifiable_copy_with_its_lsns() {
    if tier::missing(&[Tier::Postgres]) {
        return;
    }
    let pg = Cluster::new();
    pg.sql("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g;");
    let head = pg.env.head();
    // A previous run's copy is replaced, not merged into.
    std::fs::create_dir(head.join("pg")).unwrap();
    std::fs::write(head.join("pg/stale-file"), "old").unwrap();
    must(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&head),
    );

    let done = run(pg
        .hook("postgresql-basebackup")
        .args(["--label", "nightly copy"]));
    done.assert_ok();
    let copy = head.join("pg");
    assert!(!copy.join("stale-file").exists());
    assert!(!head.join("pg.partial").exists());
    let label = std::fs::read_to_string(copy.join("backup_label")).unwrap();
    assert!(label.contains("LABEL: nightly copy"), "{label}");
    assert!(label.contains(&format!("START WAL LOCATION: {} ", done.kv("start_lsn"))));
    assert!(label.contains(&format!(
        "CHECKPOINT LOCATION: {}",
        done.kv("checkpoint_lsn")
    )));
    let manifest = std::fs::read_to_string(copy.join("backup_manifest")).unwrap();
    assert!(manifest.contains(&format!("\"End-LSN\": \"{}\"", done.kv("stop_lsn"))));
    // pg_verifybackup checks every file and the WAL against the manifest
    // (what a validate hook would run against the snapshot).
    must(as_postgres(pg.server.bin.join("pg_verifybackup")).arg(&copy));
}

// ---------------------------------------------------------------------------
// MySQL / MariaDB: a real private MariaDB server; a stand-in client for the
// MySQL 8 paths

/// The server program of Debian's mariadb-server.
const MARIADBD: &str = common::tier::MARIADBD;

/// The backup account the hook connects as, with the privileges its header
/// asks for.
const BACKUP_USER: &str = "strata_backup";
const BACKUP_PASSWORD: &str = "test-only-password";

/// A private MariaDB server (mariadbd as root, `--user=root`): data
/// directory, Unix socket and error log in a test directory, no TCP
/// listener, binary log on (statement format, so mariadb-binlog shows the
/// statements). Dropping it stops the server, then removes the directory.
struct Mariadb {
    child: Child,
    data: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    env: Env,
}

impl Mariadb {
    fn start() -> Mariadb {
        let env = Env::new(&[]);
        let data = env.path("data");
        let socket = env.path("mariadb.sock");
        let log = env.path("mariadb.err");
        // Its own tmpdir: servers bootstrapping side by side in one /tmp
        // collide on their temporary tables' file names.
        let tmp = env.path("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let cnf = env.path("server.cnf");
        std::fs::write(
            &cnf,
            format!(
                "[mariadbd]\nuser=root\ndatadir={}\ntmpdir={}\nsocket={}\npid-file={}\n\
                 log-error={}\nskip-networking\nlog-bin=binlog\nbinlog-format=STATEMENT\n\
                 server-id=1\ninnodb-buffer-pool-size=16M\ninnodb-log-file-size=4M\n",
                data.display(),
                tmp.display(),
                socket.display(),
                env.path("mariadbd.pid").display(),
                log.display()
            ),
        )
        .unwrap();
        let defaults = format!("--defaults-file={}", cnf.display());
        let install = run(Command::new("mariadb-install-db")
            .arg(&defaults)
            .args(["--skip-test-db", "--auth-root-authentication-method=socket"])
            .stdin(Stdio::null()));
        assert!(
            install.status.success(),
            "mariadb-install-db failed ({}):\n{}\n{}",
            install.status,
            install.stderr,
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        let child = Command::new(MARIADBD)
            .arg(&defaults)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd");
        let mut server = Mariadb {
            child,
            data,
            socket,
            log,
            env,
        };
        let deadline = Instant::now() + HOOK_WAIT;
        while !server
            .root()
            .args(["-e", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                panic!("mariadbd ended ({status}):\n{}", server.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "mariadbd not accepting connections within {HOOK_WAIT:?}:\n{}",
                server.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The account of the header: RELOAD, LOCK TABLES, REPLICATION
        // CLIENT; its password in a defaults file as the header advises.
        server.sql(&format!(
            "CREATE USER {BACKUP_USER}@localhost IDENTIFIED BY '{BACKUP_PASSWORD}';
             GRANT RELOAD, LOCK TABLES, REPLICATION CLIENT ON *.* TO {BACKUP_USER}@localhost;"
        ));
        let client_cnf = server.env.path("backup.cnf");
        std::fs::write(
            &client_cnf,
            format!(
                "[client]\nuser={BACKUP_USER}\npassword={BACKUP_PASSWORD}\nsocket={}\n",
                server.socket.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&client_cnf, std::fs::Permissions::from_mode(0o600)).unwrap();
        server
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The mariadb client as root (unix_socket authentication), rows
    /// tab-separated without column names.
    fn root(&self) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["--user=root", "--batch", "--skip-column-names"])
            .stdin(Stdio::null());
        c
    }

    /// Runs SQL as root that must succeed; returns the rows, trimmed.
    fn sql(&self, sql: &str) -> String {
        must(self.root().args(["-e", sql])).trim().to_owned()
    }

    /// Starts SQL as root in the background (a writer that may block).
    fn spawn_sql(&self, sql: &str) -> Child {
        self.root()
            .args(["-e", sql])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mariadb client")
    }

    /// The hook as configured in the header's [[hook]] stanza: `args`, then
    /// `--`, the backup account's defaults file and `client_args`.
    fn hook(&self, args: &[&str], client_args: &[&str]) -> Command {
        let mut cmd = self.env.hook("mysql");
        cmd.args(args)
            .arg("--")
            .arg(format!(
                "--defaults-extra-file={}",
                self.env.path("backup.cnf").display()
            ))
            .args(client_args);
        cmd
    }

    /// Waits until `n` statements starting with `query` wait for the lock
    /// FLUSH TABLES WITH READ LOCK holds (MariaDB: "Waiting for backup
    /// lock"; older servers: "... global read lock").
    fn await_blocked(&self, query: &str, n: usize) {
        let sql = format!(
            "SELECT COUNT(*) FROM information_schema.processlist
              WHERE state LIKE 'Waiting for % lock' AND info LIKE '{query}%'"
        );
        let deadline = Instant::now() + HOOK_WAIT;
        loop {
            let blocked = self.sql(&sql);
            if blocked == n.to_string() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{blocked} of {n} `{query}` waiting for the lock:\n{}",
                self.sql("SELECT id, user, state, info FROM information_schema.processlist")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The binary log `file` as mariadb-binlog prints it, limited by the
    /// `range` options (--start-position/--stop-position).
    fn binlog(&self, file: &str, range: &[&str]) -> String {
        must(
            Command::new("mariadb-binlog")
                .arg("--no-defaults")
                .args(range)
                .arg(self.data.join(file)),
        )
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill has no memory effects; the pid is our child's,
        // not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Waits for a background client; asserts it succeeded.
fn wait_ok(mut child: Child, what: &str) {
    let deadline = Instant::now() + HOOK_WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not end within {HOOK_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().expect("output");
    assert!(
        status.success(),
        "{what} failed ({status}): {}",
        text(&out.stderr)
    );
}

#[test]
fn mariadb_read_lock_holds_writes_from_ready_to_finish_at_the_recorded_position() {
    if tier::missing(&[Tier::Mariadb]) {
        return;
    }
    let db = Mariadb::start();
    db.sql(
        "CREATE DATABASE shop;
         CREATE TABLE shop.orders(id INT PRIMARY KEY, item VARCHAR(40)) ENGINE=InnoDB;
         INSERT INTO shop.orders VALUES (1, 'before-1'), (2, 'before-2');",
    );

    let mut session = Session::start(&mut db.hook(&["--lock-wait-timeout", "30"], &[]));
    let before = session.ready();
    assert_eq!(kv(&before, "lock"), Some("ftwrl"));
    let version = db.sql("SELECT VERSION()");
    assert!(version.contains("MariaDB"), "{version}");
    assert_eq!(kv(&before, "server_version"), Some(version.as_str()));
    // What the hook recorded is what the server reports while it holds the
    // lock.
    let status = db.sql("SHOW MASTER STATUS");
    let status: Vec<&str> = status.split('\t').collect();
    let file = kv(&before, "binlog_file").expect("binlog_file");
    let position = kv(&before, "binlog_position").expect("binlog_position");
    assert_eq!(&status[..2], &[file, position], "SHOW MASTER STATUS");
    let gtid = kv(&before, "gtid_binlog_pos").expect("gtid_binlog_pos");
    assert_eq!(gtid, db.sql("SELECT @@GLOBAL.gtid_binlog_pos"));
    let seq: u64 = gtid.rsplit('-').next().unwrap().parse().unwrap();

    // A write waits for the lock; reads go on.
    let writer = db.spawn_sql("INSERT INTO shop.orders VALUES (3, 'during')");
    db.await_blocked("INSERT INTO shop.orders", 1);
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.orders"), "2");
    assert_eq!(
        db.sql("SHOW MASTER STATUS").split('\t').nth(1),
        Some(position),
        "the binary log moved under the lock"
    );

    let done = session.finish();
    done.assert_ok();
    assert!(kv(&done.stdout, "lock_held_seconds").is_some());
    wait_ok(writer, "the write blocked by the lock");
    assert_eq!(
        db.sql("SELECT GROUP_CONCAT(item ORDER BY id) FROM shop.orders"),
        "before-1,before-2,during"
    );

    // The recorded position splits the binary log where the lock was: what
    // was committed before `ready` is before it, the blocked write (the
    // next GTID) after it; a point-in-time recovery replays from there.
    let upto = db.binlog(file, &[&format!("--stop-position={position}")]);
    assert!(upto.contains("'before-2'"), "{upto}");
    assert!(!upto.contains("'during'"), "{upto}");
    let after = db.binlog(file, &[&format!("--start-position={position}")]);
    assert!(after.contains("'during'"), "{after}");
    assert!(after.contains(&format!("GTID 0-1-{}", seq + 1)), "{after}");
    assert!(!after.contains("'before-"), "{after}");
    assert_eq!(
        db.sql("SELECT @@GLOBAL.gtid_binlog_pos"),
        format!("0-1-{}", seq + 1)
    );
}

#[test]
fn mariadb_lock_ends_with_the_session_without_finish_or_when_killed() {
    if tier::missing(&[Tier::Mariadb]) {
        return;
    }
    let db = Mariadb::start();
    db.sql("CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY) ENGINE=InnoDB;");

    // stdin ends without `finish`: unlocked, exit 1.
    let mut session = Session::start(&mut db.hook(&[], &[]));
    session.ready();
    let writer = db.spawn_sql("INSERT INTO shop.orders VALUES (1)");
    db.await_blocked("INSERT INTO shop.orders", 1);
    let done = session.abandon();
    done.assert_failed("without 'finish'");
    assert!(
        done.stderr.contains("lock released (UNLOCK TABLES;)"),
        "{}",
        done.stderr
    );
    assert!(kv(&done.stdout, "lock_held_seconds").is_none());
    wait_ok(writer, "the write blocked by the abandoned lock");

    // strata kills a hook's process group on timeout: the client dies with
    // it, and the server ends its session and the lock.
    let mut session = Session::start(db.hook(&[], &[]).process_group(0));
    session.ready();
    let writer = db.spawn_sql("INSERT INTO shop.orders VALUES (2)");
    db.await_blocked("INSERT INTO shop.orders", 1);
    let pgid = session.child.id() as i32;
    // SAFETY: kill has no memory effects; the group is the hook's own.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
    let done = session.wait();
    assert!(!done.status.success());
    wait_ok(writer, "the write blocked by the killed hook's lock");
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.orders"), "2");
}

#[test]
fn mariadb_failures_exit_1_with_the_servers_reason_and_lock_nothing() {
    if tier::missing(&[Tier::Mariadb]) {
        return;
    }
    let db = Mariadb::start();
    db.sql(
        "CREATE DATABASE shop; CREATE TABLE shop.orders(id INT PRIMARY KEY) ENGINE=InnoDB;
         CREATE USER weak@localhost IDENTIFIED BY 'weak';
         GRANT LOCK TABLES, REPLICATION CLIENT ON *.* TO weak@localhost;",
    );
    let fails = |args: &[&str], client_args: &[&str], messages: &[&str]| {
        let done = Session::start(&mut db.hook(args, client_args)).abandon();
        for message in messages {
            done.assert_failed(message);
        }
        assert!(
            !done.stdout.iter().any(|l| l == "ready"),
            "{}",
            done.stdout.join("\n")
        );
    };
    fails(
        &[],
        &["--password=wrong"],
        &[
            "Access denied for user 'strata_backup'",
            "while: connecting",
        ],
    );
    let missing = db.env.path("missing.sock");
    fails(
        &[],
        &[&format!("--socket={}", missing.display())],
        &["Can't connect", "while: connecting"],
    );
    fails(
        &[],
        &["--user=weak", "--password=weak"],
        &["RELOAD privilege", "the account needs RELOAD"],
    );
    fails(
        &["--lock", "backup"],
        &[],
        &["needs MySQL 8.0", "use --lock ftwrl"],
    );

    // A session holding a table: FLUSH TABLES WITH READ LOCK gives up
    // after --lock-wait-timeout instead of stalling every writer.
    let mut holder = db
        .root()
        .arg("--unbuffered")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("mariadb client");
    let mut holder_in = holder.stdin.take().unwrap();
    holder_in
        .write_all(b"LOCK TABLES shop.orders WRITE;\nSELECT 'held';\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "held");
    fails(
        &["--lock-wait-timeout", "1"],
        &[],
        &[
            "Lock wait timeout exceeded",
            "taking FLUSH TABLES WITH READ LOCK",
        ],
    );
    drop(holder_in);
    wait_ok(holder, "the session holding the table");

    // Nothing was left locked: a write goes through at once.
    db.sql("SET SESSION lock_wait_timeout = 10; INSERT INTO shop.orders VALUES (1);");
    assert_eq!(db.sql("SELECT COUNT(*) FROM shop.orders"), "1");
}

/// An Env with the stand-in mysql client answering as a server of `version`.
fn mysql_env(version: &str) -> Env {
    let env = Env::new(&["mysql"]);
    env.replies(&[
        ("SELECT VERSION()", version),
        ("SHOW MASTER STATUS", "mysql-bin.000042\\t1337\\t\\t\\t"),
        (
            "SHOW BINARY LOG STATUS",
            "binlog.000007\\t157\\t\\t\\t3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\\\\n9f3c1a2b-0000-11e1-9e33-c80aa9429562:1-2",
        ),
        ("@@GLOBAL.gtid_binlog_pos", "0-1-99"),
        ("SELECT '__strata_end_of_query__'", "__strata_end_of_query__"),
    ]);
    env
}

#[test]
fn mysql_8_4_uses_show_binary_log_status_and_lock_instance() {
    let env = mysql_env("8.4.0");
    let session = Session::start(&mut env.hook("mysql"));
    let done = session.finish();
    done.assert_ok();
    assert_eq!(done.kv("binlog_file"), "binlog.000007");
    assert_eq!(
        done.kv("gtid_executed"),
        "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,9f3c1a2b-0000-11e1-9e33-c80aa9429562:1-2"
    );
    assert_eq!(count_matching(&env.log(), "SHOW MASTER STATUS"), 0);

    std::fs::write(env.path("standin.log"), "").unwrap();
    let mut session = Session::start(env.hook("mysql").args(["--lock", "backup"]));
    session.ready();
    let done = session.finish();
    done.assert_ok();
    assert_in_order(
        &env.log(),
        &[
            "LOCK INSTANCE FOR BACKUP",
            "performance_schema.log_status",
            "UNLOCK INSTANCE",
        ],
    );
    assert_eq!(count_matching(&env.log(), "WITH READ LOCK"), 0);

    // MariaDB has no LOCK INSTANCE: refused, nothing locked.
    let env = mysql_env("10.11.6-MariaDB");
    let done = Session::start(env.hook("mysql").args(["--lock", "backup"])).abandon();
    done.assert_failed("needs MySQL 8.0");
    assert_eq!(count_matching(&env.log(), "LOCK INSTANCE"), 0);
}

// ---------------------------------------------------------------------------
// Oracle: a stand-in sqlplus

fn oracle_env(log_mode: &str) -> Env {
    let env = Env::new(&["sqlplus"]);
    let arch = env.path("arch");
    std::fs::create_dir(&arch).unwrap();
    for seq in [41, 42] {
        std::fs::write(
            arch.join(format!("1_{seq}_1122.arc")),
            format!("redo {seq}"),
        )
        .unwrap();
    }
    let logs = format!(
        "log|{0}/1_41_1122.arc\\nlog|{0}/1_42_1122.arc",
        arch.display()
    );
    env.replies(&[
        ("'mode|'", &format!("mode|{log_mode}")),
        ("'scn|'", "scn|1234567"),
        ("'log|'", &logs),
        ("'active|'", "active|3"),
    ]);
    env
}

#[test]
fn oracle_brackets_the_copy_with_begin_and_end_backup() {
    let env = oracle_env("ARCHIVELOG");
    // Archived logs of an earlier run are not part of this one.
    std::fs::create_dir_all(env.head().join("oracle/archivelog")).unwrap();
    std::fs::write(env.head().join("oracle/archivelog/1_7_1122.arc"), "old").unwrap();
    let mut session = Session::start(&mut env.hook("oracle"));
    let before = session.ready();
    assert_eq!(kv(&before, "begin_scn"), Some("1234567"));
    assert_in_order(
        &env.log(),
        &[
            "sqlplus -S -L /nolog",
            "CONNECT / as sysdba",
            "'mode|'",
            "BEGIN BACKUP",
        ],
    );
    assert_eq!(count_matching(&env.log(), "END BACKUP"), 0);

    let done = session.finish();
    done.assert_ok();
    assert_in_order(
        &env.log(),
        &[
            "BEGIN BACKUP",
            "END BACKUP",
            "ARCHIVE LOG CURRENT",
            "BACKUP CONTROLFILE TO",
            "next_change# > 1234567",
        ],
    );
    let dir = env.head().join("oracle");
    assert!(dir.join("control.bkp").is_file());
    assert_eq!(
        std::fs::read_to_string(dir.join("archivelog/1_42_1122.arc")).unwrap(),
        "redo 42"
    );
    assert!(dir.join("archivelog/1_41_1122.arc").is_file());
    assert!(!dir.join("archivelog/1_7_1122.arc").exists());
    assert_eq!(done.kv("archived_logs"), "2");
    assert_eq!(done.kv("end_scn"), "1234567");
    assert_eq!(done.kv("controlfile"), "oracle/control.bkp");
}

#[test]
fn oracle_failures_end_backup_mode() {
    // Not in ARCHIVELOG mode: refused before BEGIN BACKUP.
    let env = oracle_env("NOARCHIVELOG");
    let done = Session::start(&mut env.hook("oracle")).wait();
    done.assert_failed("ARCHIVELOG");
    assert_eq!(count_matching(&env.log(), "BEGIN BACKUP"), 0);

    // The archive step fails after END BACKUP ran: an error, backup mode over.
    let env = oracle_env("ARCHIVELOG");
    let mut session = Session::start(
        env.hook("oracle")
            .env("STANDIN_FAIL", "ARCHIVE LOG CURRENT"),
    );
    session.ready();
    let done = session.finish();
    done.assert_failed("archiving the redo");
    assert_in_order(
        &env.log(),
        &["BEGIN BACKUP", "END BACKUP", "ARCHIVE LOG CURRENT"],
    );

    // EOF without finish: END BACKUP, nothing written.
    let env = oracle_env("ARCHIVELOG");
    let mut session = Session::start(&mut env.hook("oracle"));
    session.ready();
    let done = session.abandon();
    done.assert_failed("without 'finish'");
    assert!(done.stderr.contains("backup mode ended"), "{}", done.stderr);
    assert_in_order(&env.log(), &["BEGIN BACKUP", "END BACKUP"]);
    assert!(!env.head().join("oracle/control.bkp").exists());

    // The on_failure form ends backup mode when files are still in it.
    let env = oracle_env("ARCHIVELOG");
    let done = run(env.hook("oracle").arg("--end-backup"));
    done.assert_ok();
    assert_eq!(done.kv("files_in_backup"), "3");
    assert_in_order(&env.log(), &["v$backup", "END BACKUP"]);
}

// ---------------------------------------------------------------------------
// SQL Server: a stand-in sqlcmd

fn sqlserver_env(version: &str) -> Env {
    let env = Env::new(&["sqlcmd"]);
    env.replies(&[
        ("'version|'", &format!("version|{version}")),
        ("'suspended|'", "suspended|1"),
        (
            "'first|'",
            "first|37000000012800001 last|37000000016000001 checkpoint|37000000012800001 base|0",
        ),
    ]);
    env
}

#[test]
fn sqlserver_suspends_for_the_copy_and_records_metadata_only_backup() {
    let env = sqlserver_env("16");
    let mut session = Session::start(env.hook("sqlserver").args([
        "--database",
        "sales",
        "--",
        "-S",
        "db1",
        "-U",
        "strata",
    ]));
    let before = session.ready();
    assert_eq!(kv(&before, "database"), Some("sales"));
    assert_eq!(kv(&before, "copy_only"), Some("1"));
    assert_in_order(
        &env.log(),
        &[
            "-S db1 -U strata",
            "ALTER DATABASE [sales] SET SUSPEND_FOR_SNAPSHOT_BACKUP = ON (COPY_ONLY)",
        ],
    );
    assert_eq!(count_matching(&env.log(), "BACKUP DATABASE"), 0);

    let done = session.finish();
    done.assert_ok();
    let bkm = env.head().join("sqlserver/sales.bkm");
    assert_in_order(
        &env.log(),
        &[
            "SUSPEND_FOR_SNAPSHOT_BACKUP = ON",
            &format!(
                "BACKUP DATABASE [sales] TO DISK = N'{}' WITH METADATA_ONLY, FORMAT",
                bkm.display()
            ),
            "msdb.dbo.backupset",
        ],
    );
    assert_eq!(
        count_matching(&env.log(), "SUSPEND_FOR_SNAPSHOT_BACKUP = OFF"),
        0
    );
    assert!(bkm.is_file());
    assert_eq!(done.kv("backup_file"), "sqlserver/sales.bkm");
    assert_eq!(done.kv("first_lsn"), "37000000012800001");
    assert_eq!(done.kv("last_lsn"), "37000000016000001");
}

#[test]
fn sqlserver_failures_resume_the_database() {
    // Too old: refused before suspending.
    let env = sqlserver_env("15");
    let done = Session::start(env.hook("sqlserver").args(["--database", "sales"])).wait();
    done.assert_failed("SQL Server 2022");
    assert_eq!(count_matching(&env.log(), "SUSPEND_FOR_SNAPSHOT_BACKUP"), 0);

    // The backup fails: the database is resumed without it.
    let env = sqlserver_env("16");
    let mut session = Session::start(
        env.hook("sqlserver")
            .args(["--database", "sales"])
            .env("STANDIN_FAIL", "WITH METADATA_ONLY"),
    );
    session.ready();
    let done = session.finish();
    done.assert_failed("METADATA_ONLY failed");
    assert!(
        done.stderr.contains("resumed without a backup"),
        "{}",
        done.stderr
    );
    assert_in_order(
        &env.log(),
        &[
            "= ON",
            "WITH METADATA_ONLY",
            "SUSPEND_FOR_SNAPSHOT_BACKUP = OFF",
        ],
    );

    // EOF without finish: resumed, no .bkm.
    let env = sqlserver_env("16");
    let mut session =
        Session::start(
            env.hook("sqlserver")
                .args(["--database", "o'neil]db", "--no-copy-only"]),
        );
    session.ready();
    let done = session.abandon();
    done.assert_failed("without 'finish'");
    assert_in_order(
        &env.log(),
        &[
            "ALTER DATABASE [o'neil]]db] SET SUSPEND_FOR_SNAPSHOT_BACKUP = ON;",
            "ALTER DATABASE [o'neil]]db] SET SUSPEND_FOR_SNAPSHOT_BACKUP = OFF;",
        ],
    );
    assert_eq!(count_matching(&env.log(), "BACKUP DATABASE"), 0);
    assert!(!env.head().join("sqlserver").join("o'neil]db.bkm").exists());

    // The on_failure form resumes a database left suspended.
    let env = sqlserver_env("16");
    let done = run(env
        .hook("sqlserver")
        .args(["--database", "sales", "--resume"]));
    done.assert_ok();
    assert_eq!(done.kv("was_suspended"), "1");
    assert_in_order(
        &env.log(),
        &["IsDatabaseSuspendedForSnapshotBackup", "= OFF"],
    );
}

// ---------------------------------------------------------------------------
// fs-snapshot: stand-ins for fsfreeze, lvcreate, mount, btrfs, ...

fn fs_env() -> Env {
    ensure_tools(&[("setsid", "util-linux"), ("timeout", "coreutils")]);
    let env = Env::new(&[
        "fsfreeze",
        "lvcreate",
        "lvremove",
        "blkid",
        "mount",
        "umount",
        "mountpoint",
        "btrfs",
        "storage-snapshot",
        "storage-release",
    ]);
    std::fs::create_dir(env.path("state")).unwrap();
    std::fs::create_dir_all(env.path("san/app")).unwrap();
    env
}

fn fs_hook(env: &Env) -> Command {
    let mut cmd = env.hook("fs-snapshot");
    cmd.arg("--state-dir").arg(env.path("state"));
    cmd
}

fn command_method(env: &Env, extra: &[&str]) -> Command {
    let mut cmd = fs_hook(env);
    cmd.args(["--method", "command", "--mountpoint", "/srv/data"])
        .args([
            "--snapshot-command",
            "storage-snapshot create \"$STRATA_FS_SNAPSHOT_NAME\"",
        ])
        .args([
            "--release-command",
            "storage-release \"$STRATA_FS_SNAPSHOT_NAME\"",
        ])
        .arg("--source")
        .arg(env.path("san"))
        .args(extra);
    cmd
}

#[test]
fn fs_snapshot_command_freezes_only_around_the_snapshot() {
    let env = fs_env();
    let done = run(&mut command_method(&env, &["--subdir", "app"]));
    done.assert_ok();
    assert_eq!(done.kv("source"), env.path("san/app").to_str().unwrap());
    assert_eq!(done.kv("snapshot"), "strata-run-1");
    assert_eq!(
        env.log(),
        [
            "fsfreeze -f /srv/data",
            "storage-snapshot create strata-run-1",
            "fsfreeze -u /srv/data"
        ]
    );

    let done = run(fs_hook(&env)
        .arg("--release")
        .env("STRATA_PHASE", "post_backup"));
    done.assert_ok();
    assert_eq!(done.kv("released"), "strata-run-1");
    assert_eq!(env.log().last().unwrap(), "storage-release strata-run-1");
    // Nothing left to release: on_failure after a release is harmless.
    let done = run(fs_hook(&env).arg("--release"));
    done.assert_ok();
    assert_eq!(done.kv("released"), "none");
}

#[test]
fn fs_snapshot_thaws_when_the_snapshot_fails_or_hangs() {
    let env = fs_env();
    let done = run(command_method(&env, &[]).env("STANDIN_FAIL", "storage-snapshot"));
    done.assert_failed("the snapshot command failed");
    assert!(done.stderr.contains("thawed"), "{}", done.stderr);
    assert_in_order(
        &env.log(),
        &[
            "fsfreeze -f /srv/data",
            "storage-snapshot: FAILED",
            "fsfreeze -u /srv/data",
        ],
    );
    assert!(kv(&done.stdout, "source").is_none());
    assert!(!env.path("state/strata-run-1.state").exists());

    let env = fs_env();
    let done =
        run(command_method(&env, &["--freeze-timeout", "2"])
            .env("STANDIN_HANG", "storage-snapshot"));
    done.assert_failed("did not finish within --freeze-timeout 2s");
    // The hanging snapshot command was killed, not left behind.
    let hung = env
        .log()
        .iter()
        .find_map(|l| {
            l.strip_prefix("storage-snapshot: HANGING pid ")
                .map(str::to_owned)
        })
        .expect("the stand-in logs its pid when it hangs");
    assert!(
        !running(&hung),
        "the hanging snapshot command {hung} is still running"
    );
    assert_in_order(
        &env.log(),
        &[
            "fsfreeze -f /srv/data",
            "storage-snapshot: HANGING",
            "fsfreeze -u /srv/data",
        ],
    );

    // The freeze itself fails: no thaw of a filesystem that is not frozen,
    // and no snapshot.
    let env = fs_env();
    let done = run(command_method(&env, &[]).env("STANDIN_FAIL", "fsfreeze -f"));
    done.assert_failed("fsfreeze -f /srv/data failed");
    assert_eq!(count_matching(&env.log(), "storage-snapshot"), 0);
}

#[test]
fn fs_snapshot_watchdog_thaws_after_the_hook_is_killed() {
    let env = fs_env();
    // strata kills a hook's whole process group on timeout: do the same
    // while the snapshot command hangs with the filesystem frozen.
    let mut child = command_method(&env, &["--freeze-timeout", "1"])
        .env("STANDIN_HANG", "storage-snapshot")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("fs-snapshot");
    let deadline = Instant::now() + Duration::from_secs(20);
    while count_matching(&env.log(), "storage-snapshot: HANGING") == 0 {
        assert!(Instant::now() < deadline, "never froze: {:?}", env.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let pgid = child.id() as i32;
    // SAFETY: kill has no memory effects; the group is the child's own.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGKILL) }, 0);
    let _ = child.wait();
    assert_eq!(
        count_matching(&env.log(), "fsfreeze -u"),
        0,
        "killed before any thaw"
    );
    // The watchdog thaws after --freeze-timeout + 10 s.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count_matching(&env.log(), "fsfreeze -u /srv/data") == 0 {
        assert!(
            Instant::now() < deadline,
            "left frozen after the hook was killed: {:?}",
            env.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn fs_snapshot_lvm_mounts_the_snapshot_and_release_removes_it() {
    let env = fs_env();
    env.replies(&[("blkid", "xfs")]);
    let mount_dir = env.path("snap");
    let done = run(fs_hook(&env)
        .args(["--method", "lvm", "--volume", "vg0/data", "--size", "2G"])
        .arg("--mount-dir")
        .arg(&mount_dir));
    done.assert_ok();
    assert_eq!(done.kv("source"), mount_dir.to_str().unwrap());
    assert_eq!(done.kv("snapshot"), "vg0/strata-run-1");
    let log = env.log();
    assert_in_order(
        &log,
        &[
            "lvcreate --snapshot --name strata-run-1 --size 2G vg0/data",
            "blkid -o value -s TYPE -- /dev/vg0/strata-run-1",
            &format!(
                "mount -o ro,nouuid -- /dev/vg0/strata-run-1 {}",
                mount_dir.display()
            ),
        ],
    );
    assert_eq!(
        count_matching(&log, "fsfreeze"),
        0,
        "device-mapper freezes for lvcreate"
    );

    let done = run(fs_hook(&env).arg("--release"));
    done.assert_ok();
    assert_in_order(
        &env.log(),
        &[
            &format!("umount -- {}", mount_dir.display()),
            "lvremove -f vg0/strata-run-1",
        ],
    );
    assert!(!env.path("state/strata-run-1.state").exists());
}

#[test]
fn fs_snapshot_lvm_failure_removes_what_it_created() {
    let env = fs_env();
    let done = run(fs_hook(&env)
        .args(["--method", "lvm", "--volume", "vg0/data", "--size", "2G"])
        .env("STANDIN_FAIL", "mount -o ro"));
    done.assert_failed("cannot mount the snapshot");
    assert_in_order(
        &env.log(),
        &[
            "lvcreate --snapshot",
            "mount: FAILED",
            "lvremove -f vg0/strata-run-1",
        ],
    );
    assert!(!env.path("state/strata-run-1.state").exists());
    assert!(kv(&done.stdout, "source").is_none());
}

#[test]
fn fs_snapshot_btrfs_takes_a_read_only_snapshot() {
    let env = fs_env();
    let subvol = env.path("vol");
    std::fs::create_dir_all(subvol.join(".strata-snapshots/strata-run-1/app")).unwrap();
    let done = run(fs_hook(&env)
        .args(["--method", "btrfs", "--subdir", "app", "--subvolume"])
        .arg(&subvol));
    done.assert_ok();
    let snap = subvol.join(".strata-snapshots/strata-run-1");
    assert_eq!(done.kv("source"), snap.join("app").to_str().unwrap());
    assert_eq!(
        env.log(),
        [format!(
            "btrfs subvolume snapshot -r -- {} {}",
            subvol.display(),
            snap.display()
        )]
    );
    let done = run(fs_hook(&env).arg("--release"));
    done.assert_ok();
    assert_eq!(
        env.log().last().unwrap(),
        &format!("btrfs subvolume delete -- {}", snap.display())
    );

    let env = fs_env();
    let done = run(fs_hook(&env)
        .args(["--method", "btrfs", "--subvolume"])
        .arg(env.path("vol"))
        .env("STANDIN_FAIL", "btrfs subvolume snapshot"));
    done.assert_failed("btrfs subvolume snapshot -r");
    assert_eq!(
        count_matching(&env.log(), "fsfreeze"),
        0,
        "a frozen btrfs cannot snapshot"
    );
}

// ---------------------------------------------------------------------------
// Kafka: stand-ins for the Kafka tools

const TOPICS: &str = "Topic: orders\\tTopicId: q1\\tPartitionCount: 2\\tReplicationFactor: 3\\tConfigs: cleanup.policy=compact,retention.ms=86400000\\n\
\\tTopic: orders\\tPartition: 0\\tLeader: 1\\tReplicas: 1,2,3\\tIsr: 1,2,3\\n\
\\tTopic: orders\\tPartition: 1\\tLeader: 2\\tReplicas: 2,3,1\\tIsr: 2,3,1\\n\
Topic: __consumer_offsets\\tTopicId: q2\\tPartitionCount: 1\\tReplicationFactor: 3\\tConfigs: compression.type=producer\\n\
\\tTopic: __consumer_offsets\\tPartition: 0\\tLeader: 3\\tReplicas: 3,1,2\\tIsr: 3,1,2\\n\
Topic: audit\\tTopicId: q3\\tPartitionCount: 1\\tReplicationFactor: 1\\tConfigs: \\n\
\\tTopic: audit\\tPartition: 0\\tLeader: 1\\tReplicas: 1\\tIsr: 1";

const GROUPS: &str = "\\nGROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID\\n\
billing         orders          0          120             130             10              -               -               -\\n\
billing         orders          1          77              77              0               -               -               -\\n\
\\nGROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID\\n\
audit-reader    audit           0          -               5               -               -               -               -";

fn kafka_env() -> Env {
    let env = Env::new(&[
        "kafka-topics.sh",
        "kafka-configs.sh",
        "kafka-consumer-groups.sh",
    ]);
    env.replies(&[
        ("kafka-topics.sh", TOPICS),
        (
            "kafka-configs.sh",
            "Dynamic configs for topic orders are:\\n  cleanup.policy=compact sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:cleanup.policy=compact}",
        ),
        ("kafka-consumer-groups.sh", GROUPS),
    ]);
    env
}

#[test]
fn kafka_writes_layout_configs_and_offsets_a_restore_can_use() {
    let env = kafka_env();
    let done = run(env.hook("kafka").args([
        "--bootstrap-server",
        "broker1:9092",
        "--command-config",
        "/dev/null",
    ]));
    done.assert_ok();
    assert_in_order(
        &env.log(),
        &[
            "kafka-topics.sh --bootstrap-server broker1:9092 --command-config /dev/null --describe",
            "kafka-configs.sh --bootstrap-server broker1:9092 --command-config /dev/null --describe --entity-type topics",
            "kafka-consumer-groups.sh --bootstrap-server broker1:9092 --command-config /dev/null --describe --all-groups",
        ],
    );
    let dir = env.head().join("kafka");
    let topics = std::fs::read_to_string(dir.join("topics.txt")).unwrap();
    assert!(
        topics.contains("Partition: 1\tLeader: 2\tReplicas: 2,3,1"),
        "{topics}"
    );
    assert!(std::fs::read_to_string(dir.join("topic-configs.txt"))
        .unwrap()
        .contains("Dynamic configs for topic orders"));
    let recreate = std::fs::read_to_string(dir.join("recreate-topics.sh")).unwrap();
    assert!(recreate.contains(
        "--create --if-not-exists --topic 'orders' --partitions 2 --replication-factor 3 --config 'cleanup.policy=compact' --config 'retention.ms=86400000'"
    ), "{recreate}");
    assert!(
        recreate.contains("--topic 'audit' --partitions 1 --replication-factor 1\n"),
        "{recreate}"
    );
    assert!(
        !recreate.contains("__consumer_offsets"),
        "internal topics are not recreated"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("offsets/billing.csv")).unwrap(),
        "orders,0,120\norders,1,77\n"
    );
    assert!(
        !dir.join("offsets/audit-reader.csv").exists(),
        "no committed offset"
    );
    // The generated script is valid sh and runs the tool as recorded.
    let out = run(env
        .command("sh")
        .arg(dir.join("recreate-topics.sh"))
        .arg("broker2:9092"));
    out.assert_ok();
    assert!(env.log().iter().any(|l| l
        == "kafka-topics.sh --bootstrap-server broker2:9092 --create --if-not-exists --topic orders --partitions 2 --replication-factor 3 --config cleanup.policy=compact --config retention.ms=86400000"));
    assert_eq!(done.kv("topics"), "3");
    assert_eq!(done.kv("partitions"), "4");
    assert_eq!(done.kv("topic_configs"), "1");
    assert_eq!(done.kv("consumer_groups"), "1");
    assert_eq!(done.kv("committed_offsets"), "2");
}

#[test]
fn kafka_failure_keeps_the_previous_files() {
    let env = kafka_env();
    std::fs::create_dir(env.head().join("kafka")).unwrap();
    std::fs::write(env.head().join("kafka/topics.txt"), "earlier").unwrap();
    let done = run(env
        .hook("kafka")
        .args(["--bootstrap-server", "broker1:9092"])
        .env("STANDIN_FAIL", "kafka-consumer-groups.sh"));
    done.assert_failed("kafka-consumer-groups.sh --describe --all-groups failed");
    assert_eq!(
        std::fs::read_to_string(env.head().join("kafka/topics.txt")).unwrap(),
        "earlier"
    );
    assert!(!env.head().join("kafka.strata-tmp").exists());
    assert!(kv(&done.stdout, "topics").is_none());
}
