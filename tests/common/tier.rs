//! Test tiers: what a test needs beyond the engine.
//!
//! The engine tier needs nothing and always runs. Every other tier needs
//! something of the machine (root, /dev/fuse, a database server, a tool);
//! a test that needs one starts with
//!
//! ```ignore
//! if tier::missing(&[Tier::Mount]) {
//!     return;
//! }
//! ```
//!
//! Each tier is checked once per test binary. When its needs are missing,
//! the test returns early and the binary writes one line per missing tier
//! straight to its standard error (past libtest's capture), e.g.
//! `strata tests: tier "mount" not run (needs root); .ci/run runs it`.
//! With `STRATA_TEST_ALL_TIERS=1` (as `.ci/run` sets it) the test fails
//! instead, naming what is missing and what provides it.
//!
//! This file is plain std and libc, so that every test binary (the
//! integration tests, mountd's tests, the library's unit tests) can include
//! it with `#[path]`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// A group of tests with the same needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Root, without a mount: chown, chattr, setpriv, tmpfs and loop mounts.
    Root,
    /// Real mounts over /dev/fuse, driven by rsync, tar, cp and ACL tools.
    Mount,
    /// A private PostgreSQL server, run as the `postgres` OS user.
    Postgres,
    /// A private MariaDB server.
    Mariadb,
    /// The sqlite3 shell.
    Sqlite,
    /// shellcheck, for the hook scripts.
    Shellcheck,
    /// systemd-analyze, for the shipped units.
    Systemd,
    /// groff, for the hand-written man pages.
    Groff,
    /// A writable cgroup v2 hierarchy (the throttle's io.max placement).
    Cgroup,
    /// The kernel's pressure stall information (the adaptive throttle).
    Pressure,
    /// A headless Chromium, for the pages a person reads.
    Browser,
    /// An S3-compatible server on loopback (moto's).
    S3,
}

const TIERS: [Tier; 12] = [
    Tier::Root,
    Tier::Mount,
    Tier::Postgres,
    Tier::Mariadb,
    Tier::Sqlite,
    Tier::Shellcheck,
    Tier::Systemd,
    Tier::Groff,
    Tier::Cgroup,
    Tier::Pressure,
    Tier::Browser,
    Tier::S3,
];

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Root => "root",
            Tier::Mount => "mount",
            Tier::Postgres => "postgres",
            Tier::Mariadb => "mariadb",
            Tier::Sqlite => "sqlite",
            Tier::Shellcheck => "shellcheck",
            Tier::Systemd => "systemd",
            Tier::Groff => "groff",
            Tier::Cgroup => "cgroup",
            Tier::Pressure => "pressure",
            Tier::Browser => "browser",
            Tier::S3 => "s3",
        }
    }

    /// What is missing for this tier, each with what provides it; empty
    /// when everything is there.
    fn check(self) -> Vec<String> {
        let mut missing = Vec::new();
        match self {
            Tier::Root => need_root(&mut missing),
            Tier::Mount => {
                need_root(&mut missing);
                if let Err(e) = std::fs::OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open("/dev/fuse")
                {
                    missing.push(match e.kind() {
                        std::io::ErrorKind::NotFound => "/dev/fuse (modprobe fuse)".into(),
                        _ => format!("/dev/fuse opened read-write: {e}"),
                    });
                }
                // strata-mountd mounts with mount(2) when the kernel allows
                // it (CAP_SYS_ADMIN), and through fusermount3 otherwise.
                if !has_cap_sys_admin() && find_program("fusermount3").is_none() {
                    missing.push(
                        "the kernel's mount (CAP_SYS_ADMIN) or fusermount3 (apt-get install fuse3)"
                            .into(),
                    );
                }
                let mountd = build_dir().join("strata-mountd");
                if !mountd.exists() {
                    missing.push(format!("{} (cargo build --workspace)", mountd.display()));
                }
                need_programs(
                    &mut missing,
                    &[
                        ("rsync", "rsync"),
                        ("tar", "tar"),
                        ("setfacl", "acl"),
                        ("setfattr", "attr"),
                        ("chattr", "e2fsprogs"),
                    ],
                );
                // The reference exposition parser the metrics are read with.
                let parser = std::process::Command::new("/usr/bin/python3")
                    .args(["-c", "import prometheus_client.parser"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                if !parser {
                    missing.push(
                        "the Prometheus client's parser for /usr/bin/python3 (apt-get install python3-prometheus-client)"
                            .into(),
                    );
                }
            }
            Tier::Postgres => {
                // The server refuses to run as root: tests start it as the
                // postgres user, which only root can become.
                need_root(&mut missing);
                need_programs(&mut missing, &[("setpriv", "util-linux")]);
                if postgres_bin_dir().is_none() {
                    missing.push(
                        "PostgreSQL's server programs in /usr/lib/postgresql/*/bin \
                         (apt-get install postgresql)"
                            .into(),
                    );
                }
                if !user_exists("postgres") {
                    missing.push("the postgres OS user (apt-get install postgresql)".into());
                }
            }
            Tier::Mariadb => {
                need_root(&mut missing);
                if !Path::new(MARIADBD).exists() {
                    missing.push(format!("{MARIADBD} (apt-get install mariadb-server)"));
                }
                need_programs(
                    &mut missing,
                    &[
                        ("mariadb-install-db", "mariadb-server"),
                        ("mariadb", "mariadb-client"),
                        ("mariadb-binlog", "mariadb-client"),
                    ],
                );
            }
            Tier::Sqlite => need_programs(&mut missing, &[("sqlite3", "sqlite3")]),
            Tier::Shellcheck => need_programs(&mut missing, &[("shellcheck", "shellcheck")]),
            Tier::Systemd => need_programs(&mut missing, &[("systemd-analyze", "systemd")]),
            Tier::Groff => need_programs(&mut missing, &[("groff", "groff-base")]),
            Tier::Browser => need_programs(&mut missing, &[("chromium", "chromium")]),
            Tier::S3 => {
                if find_program("moto_server").is_none() {
                    missing.push("moto_server (pip install 'moto[server]')".into());
                }
            }
            Tier::Cgroup => {
                if let Err(why) = cgroup_writable() {
                    missing.push(why);
                }
            }
            Tier::Pressure => {
                for f in ["/proc/pressure/io", "/proc/pressure/cpu"] {
                    if std::fs::read_to_string(f).is_err() {
                        missing.push(format!(
                            "{f} readable (a kernel with CONFIG_PSI, booted without psi=0)"
                        ));
                    }
                }
            }
        }
        missing
    }
}

/// Where the mariadb tier expects the server.
pub const MARIADBD: &str = "/usr/sbin/mariadbd";

/// True when any of `tiers` cannot run here: the test calling it returns
/// at once. Fails the test instead when `STRATA_TEST_ALL_TIERS=1`.
pub fn missing(tiers: &[Tier]) -> bool {
    let all = std::env::var("STRATA_TEST_ALL_TIERS").is_ok_and(|v| v == "1");
    let mut absent = Vec::new();
    for &tier in tiers {
        let needs = checked(tier, all);
        if !needs.is_empty() {
            absent.push(format!("tier {:?}: {}", tier.name(), needs.join("; ")));
        }
    }
    if absent.is_empty() {
        return false;
    }
    assert!(
        !all,
        "STRATA_TEST_ALL_TIERS=1, but this test cannot run here: {} \
         (.ci/run installs the packages and runs as root)",
        absent.join("; ")
    );
    true
}

/// The tier's missing needs, checked once per binary; the first check of a
/// missing tier writes the one-line notice (unless every tier must run).
fn checked(tier: Tier, all: bool) -> &'static [String] {
    static CHECKED: [OnceLock<Vec<String>>; TIERS.len()] = [const { OnceLock::new() }; TIERS.len()];
    let i = TIERS.iter().position(|&t| t == tier).unwrap();
    CHECKED[i].get_or_init(|| {
        let needs = tier.check();
        if !needs.is_empty() && !all {
            // Straight to the process's stderr: libtest captures only what
            // the print macros write.
            let _ = writeln!(
                std::io::stderr(),
                "strata tests: tier {:?} not run (needs {}); .ci/run runs it",
                tier.name(),
                needs.join("; ")
            );
        }
        needs
    })
}

fn need_root(missing: &mut Vec<String>) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root".into());
    }
}

/// Adds `program (apt-get install package)` for each program not on PATH.
fn need_programs(missing: &mut Vec<String>, programs: &[(&str, &str)]) {
    for (program, package) in programs {
        if find_program(program).is_none() {
            missing.push(format!("{program} (apt-get install {package})"));
        }
    }
}

/// The program's path, as the shell would find it on PATH (plus the sbin
/// directories, which an ordinary user's PATH may lack).
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        });
    found
}

/// The newest PostgreSQL's server programs (`/usr/lib/postgresql/N/bin`).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// The directory holding the workspace's binaries (target/debug): the
/// parent of the test binary's `deps/`.
fn build_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().unwrap_or(Path::new("."));
    if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(':').next() == Some(name))
}

/// CAP_SYS_ADMIN in this process's effective set.
fn has_cap_sys_admin() -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether this process may make a child of its own cgroup v2 cgroup.
fn cgroup_writable() -> Result<(), String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    // Fields: id parent major:minor root target options... - fstype source ...
    let root = mountinfo
        .lines()
        .find(|l| {
            l.split(" - ")
                .nth(1)
                .is_some_and(|t| t.starts_with("cgroup2 "))
        })
        .and_then(|l| l.split(' ').nth(4))
        .ok_or("a cgroup v2 hierarchy mounted (none in /proc/self/mountinfo)")?;
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        .ok_or("this process in the cgroup v2 hierarchy (no 0:: line in /proc/self/cgroup)")?;
    let dir = match own.trim_start_matches('/') {
        "" => PathBuf::from(root),
        own => Path::new(root).join(own),
    };
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap_or_default();
    // SAFETY: access reads a NUL-terminated path and has no other effect.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(format!(
            "write access to the cgroup v2 directory {} (root, or a delegated cgroup)",
            dir.display()
        ));
    }
    Ok(())
}
