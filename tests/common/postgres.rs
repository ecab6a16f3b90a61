//! A private PostgreSQL server for tests: its own data directory, Unix
//! socket directory and port, no TCP listener, run as the `postgres` OS
//! user (the server refuses to run as root). A test using it starts by
//! asking for the postgres tier (`super::tier`).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Fails the test for OS packages that are not installed. Tests never
/// install packages themselves: `.ci/run` installs what they use.
pub fn missing_packages(packages: &[&str]) -> ! {
    panic!(
        "missing OS packages: apt-get install {} (.ci/run installs them)",
        packages.join(" ")
    )
}

/// The newest PostgreSQL's server programs. The tests that use them ask
/// for the postgres tier first.
pub fn bin_dir() -> PathBuf {
    super::tier::postgres_bin_dir().unwrap_or_else(|| missing_packages(&["postgresql"]))
}

/// Runs a program as the `postgres` OS user, stdin /dev/null.
pub fn as_postgres(program: impl AsRef<OsStr>) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=postgres",
        "--regid=postgres",
        "--init-groups",
        "--",
    ])
    .arg(program)
    .stdin(Stdio::null());
    c
}

/// A private server on `data`, listening only on a Unix socket in
/// `socket` at `port`. Dropping it stops the server.
pub struct Server {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub socket: PathBuf,
    pub port: u16,
}

impl Server {
    /// Creates a cluster in `data` (initdb as postgres, trust, no fsync).
    /// The caller makes `data`'s parent and `socket` writable by postgres.
    pub fn init(data: &Path, socket: &Path, port: u16) -> Server {
        let bin = bin_dir();
        super::ok(
            as_postgres(bin.join("initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(data),
        );
        Server {
            bin,
            data: data.to_owned(),
            socket: socket.to_owned(),
            port,
        }
    }

    /// A server on a data directory restored by copying: handed to
    /// postgres with the mode the server demands.
    pub fn on(data: &Path, socket: &Path, port: u16) -> Server {
        super::ok(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(data),
        );
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(0o700)).unwrap();
        Server {
            bin: bin_dir(),
            data: data.to_owned(),
            socket: socket.to_owned(),
            port,
        }
    }

    /// Starts the server and waits until it accepts connections; its log
    /// is next to the data directory.
    pub fn start(&self) {
        let opts = format!(
            "-p {} -k '{}' -c listen_addresses='' -c fsync=off",
            self.port,
            self.socket.display()
        );
        let log = self.data.with_extension("log");
        let out = super::run(
            as_postgres(self.bin.join("pg_ctl"))
                .args(["-w", "-t", "120", "-D"])
                .arg(&self.data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &opts, "start"]),
        );
        assert!(
            out.status.success(),
            "pg_ctl start {}: {}\n{}",
            self.data.display(),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }

    /// Stops the server (fast: clients are disconnected); a stopped one
    /// stays stopped.
    pub fn stop(&self) {
        let _ = super::run(
            as_postgres(self.bin.join("pg_ctl"))
                .args(["-m", "fast", "-w", "-D"])
                .arg(&self.data)
                .arg("stop"),
        );
    }

    /// A client program with this server's connection options.
    pub fn client(&self, program: &str) -> Command {
        let mut c = Command::new(self.bin.join(program));
        c.arg("-h")
            .arg(&self.socket)
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres"]);
        c
    }

    /// Runs SQL that must succeed; returns psql's unaligned rows as printed.
    pub fn sql(&self, sql: &str) -> String {
        super::ok(self.client("psql").args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            "postgres",
            "-c",
            sql,
        ]))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}
