//! Small fixes to the `strata` command line: each refusal exits with its
//! documented code and names the problem.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory with a passphrase file and, once made, a repository.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::write(env.path("pw"), "correct horse\n").unwrap();
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `strata --repo REPO --password-file PW ARGS`, with no terminal.
    fn strata(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--repo")
            .arg(self.path("repo"))
            .arg("--password-file")
            .arg(self.path("pw"))
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STRATA_STATE_DIR", self.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    }

    fn init(&self) {
        let out = self.strata(&["init", "--kdf-memory-mib", "1", "--kdf-iterations", "1"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let meta = e.metadata().unwrap();
        if meta.is_dir() {
            out.extend(listing(&e.path()));
        } else {
            out.push((e.path(), meta.len()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_data_subset_naming_no_part_is_a_usage_error() {
    let env = Env::new();
    env.init();
    let before = listing(&env.path("repo"));
    for bad in ["0/2", "3/2", "1/0"] {
        let out = env.strata(&["check", "--read-data-subset", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        let msg = stderr(&out);
        assert!(msg.contains("--read-data-subset"), "{msg}");
        assert!(msg.contains("n counts from 1 to t"), "{msg}");
    }
    let out = env.strata(&["check", "--read-data-subset", "half"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("neither n/t"), "{}", stderr(&out));
    assert_eq!(
        listing(&env.path("repo")),
        before,
        "a refused check changed the repository"
    );
    let out = env.strata(&["check", "--read-data-subset", "2/2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}
