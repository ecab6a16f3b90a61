//! A real PostgreSQL backed up through the mount while pgbench writes:
//! the restored cluster holds what was committed before the run and not
//! what was committed after, passes pg_verifybackup (the validate hook)
//! and pg_amcheck, and starts from a plain `cp -a` out of the snapshot.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};

use crate::common::postgres::Server;
use crate::common::tier::{self, Tier};
use crate::harness::{ok, run, Mount};

fn free_port(seed: u16) -> u16 {
    (seed..seed + 100)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port")
}

/// A live cluster with pgbench tables and a marker row committed before
/// the backup.
fn live_cluster(m: &Mount) -> Server {
    let dir = m.path("pg-live");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let cluster = Server::init(&dir.join("data"), &dir, free_port(25432));
    cluster.start();
    cluster.sql("CREATE TABLE marker (t text)");
    ok(cluster
        .client("pgbench")
        .args(["-i", "-q", "-s", "4", "postgres"]));
    cluster.sql("INSERT INTO marker VALUES ('before')");
    cluster
}

/// Runs `backup` while pgbench writes, then commits a marker row after it;
/// checks pgbench really wrote during the run.
fn under_load(cluster: &Server, backup: impl FnOnce()) {
    let count = || -> u64 {
        cluster
            .sql("SELECT count(*) FROM pgbench_history")
            .trim()
            .parse()
            .unwrap()
    };
    let mut load: Child = cluster
        .client("pgbench")
        .args(["-c", "2", "-T", "600", "-n", "postgres"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // pgbench is writing once its first transactions are in the history
    // (pgbench -i leaves it empty).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while count() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "pgbench committed nothing within 60 s"
        );
        assert!(load.try_wait().unwrap().is_none(), "pgbench ended early");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let before = count();
    backup();
    cluster.sql("INSERT INTO marker VALUES ('after')");
    assert!(
        load.try_wait().unwrap().is_none(),
        "pgbench was still writing when the run ended"
    );
    assert!(count() > before, "pgbench committed during the run");
    let _ = load.kill();
    let _ = load.wait();
}

/// Restores `snapshot_pg` by cp -a, starts it, and checks it holds what
/// was committed before the run and not after, and that pg_amcheck is clean.
fn restore_and_check(m: &Mount, snapshot_pg: &Path) {
    let restore = m.path("pg-restored");
    std::fs::create_dir(&restore).unwrap();
    ok(Command::new("cp")
        .arg("-a")
        .arg(snapshot_pg)
        .arg(restore.join("data")));
    std::fs::set_permissions(&restore, std::fs::Permissions::from_mode(0o777)).unwrap();
    let restored = Server::on(&restore.join("data"), &restore, free_port(26432));
    restored.start();
    assert_eq!(restored.sql("SELECT t FROM marker ORDER BY t"), "before\n");
    let rows: u64 = restored
        .sql("SELECT count(*) FROM pgbench_accounts")
        .trim()
        .parse()
        .unwrap();
    assert_eq!(rows, 400_000, "every pgbench account row is there");
    ok(restored
        .client("pg_amcheck")
        .args(["--all", "--install-missing", "--heapallindexed"]));
}

/// `strata backup --label nightly --config CONFIG -- COPY…`, which must succeed.
fn nightly_backup(m: &Mount, config: &Path, copy: &[impl AsRef<std::ffi::OsStr>]) {
    let out = run(m
        .strata()
        .args(["backup", "--label", "nightly", "--config"])
        .arg(config)
        .arg("--")
        .args(copy));
    assert!(
        out.status.success(),
        "backup run failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The `nightly` snapshot's record, which must say it was validated.
fn validated_nightly(m: &Mount) -> serde_json::Value {
    let info: serde_json::Value = serde_json::from_str(&ok(m
        .strata()
        .args(["snapshot", "show", "nightly", "--json"])))
    .unwrap();
    assert_eq!(info["status"], "validated");
    info
}

#[test]
fn postgresql_backed_up_under_load_restores_consistent_by_cp() {
    if tier::missing(&[Tier::Mount, Tier::Postgres]) {
        return;
    }
    let m = Mount::new();
    let cluster = live_cluster(&m);
    let verify = cluster.bin.join("pg_verifybackup");
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nname = \"verify\"\nphase = \"validate\"\ncommand = [\"{}\", \"{{snapshot}}/pg\"]\ntimeout = \"5m\"\n",
            verify.display()
        ),
    )
    .unwrap();
    let head_pg = m.head().join("pg");
    let copy: Vec<std::ffi::OsString> = vec![
        cluster.bin.join("pg_basebackup").into(),
        "-h".into(),
        cluster.socket.clone().into(),
        "-p".into(),
        cluster.port.to_string().into(),
        "-U".into(),
        "postgres".into(),
        "-D".into(),
        head_pg.into(),
    ];
    let copy = [
        copy,
        ["-X", "stream", "-c", "fast", "--no-sync", "-l", "strata"]
            .map(Into::into)
            .to_vec(),
    ]
    .concat();
    under_load(&cluster, || nightly_backup(&m, &config, &copy));
    let info = validated_nightly(&m);
    let verify_out = &info["run"]["hooks"][0];
    assert_eq!(verify_out["name"], "verify");
    assert!(
        verify_out["stdout"]
            .as_str()
            .unwrap()
            .contains("successfully verified"),
        "{verify_out}"
    );
    restore_and_check(&m, &m.snapshots().join("nightly/pg"));
    drill_the_service(&m);
}

/// `strata drill run` with scripts/hooks/drill-postgresql: the cluster in
/// the nightly snapshot is restored through the mount, started, queried
/// and checked with pg_amcheck, and its readiness counts toward the
/// objective; a query that fails fails the drill (exit 13). The restored
/// copies are gone afterwards.
fn drill_the_service(m: &Mount) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hooks/drill-postgresql");
    let scratch = m.path("drills");
    std::fs::create_dir(&scratch).unwrap();
    std::fs::set_permissions(&scratch, std::fs::Permissions::from_mode(0o777)).unwrap();
    let config = m.path("drill.toml");
    let entry = |name: &str, sql: &str| {
        format!(
            "[[drill]]\nname = \"{name}\"\nsnapshot = \"nightly\"\npath = \"/pg\"\nto = \"{}\"\nrto = \"1h\"\nvalidate = [\"{}\", \"--owner\", \"postgres\", \"--sql\", \"{sql}\"]\n",
            scratch.display(),
            script.display()
        )
    };
    std::fs::write(
        &config,
        entry("pg", "SELECT t FROM marker ORDER BY t")
            + &entry("pg-bad", "SELECT * FROM no_such_table"),
    )
    .unwrap();
    let drill = |name: &str| {
        run(m
            .strata()
            .args(["drill", "run", name, "--json", "--config"])
            .arg(&config))
    };
    let out = drill("pg");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let records: serde_json::Value =
        serde_json::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    let r = &records[0];
    assert_eq!(
        (r["result"].as_str(), r["through"].as_str()),
        (Some("passed"), Some("mount")),
        "{r}"
    );
    let service = &r["service"];
    let output = service["output"].as_str().unwrap();
    assert!(output.contains("query_1=before"), "{output}");
    assert!(output.contains("amcheck=clean"), "{output}");
    let ready = service["ready_secs"].as_f64().unwrap();
    assert!(
        ready > 0.0 && ready <= service["secs"].as_f64().unwrap(),
        "{service}"
    );
    assert_eq!(service["exit"], 0);

    let out = drill("pg-bad");
    assert_eq!(
        out.status.code(),
        Some(22),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("the restored service failed its check (exit status 1)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_dir(&scratch).unwrap().count(),
        0,
        "restored copies are removed"
    );
}

/// The session-hook variant: scripts/hooks/postgresql-session holds
/// pg_backup_start open while rsync copies the live data directory, then
/// writes backup_label and the WAL of the backup into head/ before the
/// snapshot.
#[test]
fn postgresql_session_hook_brackets_an_rsync_of_the_live_cluster() {
    if tier::missing(&[Tier::Mount, Tier::Postgres]) {
        return;
    }
    let m = Mount::new();
    let cluster = live_cluster(&m);
    let hook = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/hooks/postgresql-session");
    let config = m.path("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[hook]]\nname = \"postgres\"\nphase = \"pre_backup\"\nsession = true\n\
             command = [\"{}\", \"--dest\", \"pg\"]\ntimeout = \"5m\"\n\
             env = {{ PGHOST = \"{}\", PGPORT = \"{}\", PGUSER = \"postgres\" }}\n\
             [[hook]]\nname = \"label\"\nphase = \"validate\"\n\
             command = [\"/usr/bin/test\", \"-s\", \"{{snapshot}}/pg/backup_label\"]\n",
            hook.display(),
            cluster.socket.display(),
            cluster.port
        ),
    )
    .unwrap();
    let mut copy = vec!["rsync".to_owned(), "-a".to_owned()];
    for x in [
        "/pg_wal/*",
        "/postmaster.pid",
        "/postmaster.opts",
        "/pg_replslot/*",
        "/pg_stat_tmp/*",
        "/pg_dynshmem/*",
        "/pg_notify/*",
        "/pg_serial/*",
        "/pg_snapshots/*",
        "/pg_subtrans/*",
        "/backup_label",
        "/tablespace_map",
    ] {
        copy.push(format!("--exclude={x}"));
    }
    copy.push(format!("{}/", cluster.data.display()));
    copy.push(format!("{}/", m.head().join("pg").display()));
    under_load(&cluster, || nightly_backup(&m, &config, &copy));
    let info = validated_nightly(&m);
    let points = &info["run"]["hooks"][0]["points"];
    assert!(points["start_lsn"].is_string(), "{points}");
    assert!(points["stop_lsn"].is_string(), "{points}");
    let snap = m.snapshots().join("nightly/pg");
    let label = std::fs::read_to_string(snap.join("backup_label")).unwrap();
    assert!(label.contains("START WAL LOCATION"), "{label}");
    assert!(
        std::fs::read_dir(snap.join("pg_wal")).unwrap().count() > 0,
        "the WAL of the backup is in the snapshot"
    );
    restore_and_check(&m, &snap);
}
