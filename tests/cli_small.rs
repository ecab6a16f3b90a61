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

/// Every `name(section)` a page refers to, as the roff source spells it.
fn references(page: &str) -> Vec<String> {
    let text = page
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "");
    let mut out = Vec::new();
    for (i, _) in text.match_indices("strata") {
        let rest = &text[i..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(end);
        let name = name.trim_end_matches('.');
        if after.len() > 2 && after.starts_with('(') && after.as_bytes()[2] == b')' {
            out.push(format!("{name}.{}", &after[1..2]));
        }
    }
    out
}

#[test]
fn man_pages_refer_only_to_pages_that_exist_and_end_with_see_also() {
    let env = Env::new();
    let dir = env.path("man");
    let out = env.strata(&["man", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let exists = |page: &str| dir.join(page).exists() || committed.join(page).exists();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(page.contains(".SH \"SEE ALSO\""), "{name} has no SEE ALSO");
        for r in references(&page) {
            assert!(exists(&r), "{name} refers to {r}, which does not exist");
            seen += 1;
        }
    }
    assert!(seen > 50, "only {seen} references found");
    // What status and stats print is explained on their pages.
    let status = std::fs::read_to_string(dir.join("strata-status.1")).unwrap();
    for field in [
        "read_only_reason",
        "staging_bytes",
        "fuse_micros",
        "dead_mount",
    ] {
        assert!(status.contains(field), "strata-status(1) lacks {field}");
    }
    let stats = std::fs::read_to_string(dir.join("strata-stats.1")).unwrap();
    for field in [
        "stored_bytes",
        "compression_ratio",
        "pack_file_bytes",
        "key_slots",
    ] {
        assert!(stats.contains(field), "strata-stats(1) lacks {field}");
    }
}
