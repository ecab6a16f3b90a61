//! I/O priority through a real mount: with `[throttle.io] class = "idle"`
//! the daemon's pack bytes reach the disk from its writeback thread, which
//! runs in the idle class while the FUSE threads keep theirs. The kernel's
//! block-layer trace (tracefs, an instance of our own) says which thread
//! submitted each write, so the test sees the writes themselves, not only
//! a setting.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::tier::{self, Tier};
use crate::harness::{ok, run, Mount};

const MIB: u64 = 1 << 20;

/// A tracefs instance recording block-layer events of one thread.
struct BlockTrace {
    dir: PathBuf,
}

impl BlockTrace {
    const EVENTS: [&'static str; 2] = ["block_bio_queue", "block_rq_insert"];

    fn start(tid: u32) -> BlockTrace {
        let root = Path::new("/sys/kernel/tracing");
        if !root.join("instances").is_dir() {
            ok(Command::new("mount")
                .args(["-t", "tracefs", "nodev"])
                .arg(root));
        }
        let dir = root
            .join("instances")
            .join(format!("strata-test-{}", std::process::id()));
        fs::create_dir(&dir).expect("a tracefs instance");
        let trace = BlockTrace { dir };
        trace.write("buffer_size_kb", "4096");
        for event in Self::EVENTS {
            trace.write(
                &format!("events/block/{event}/filter"),
                &format!("common_pid == {tid}"),
            );
            trace.write(&format!("events/block/{event}/enable"), "1");
        }
        trace.write("tracing_on", "1");
        trace
    }

    fn write(&self, file: &str, value: &str) {
        fs::write(self.dir.join(file), value)
            .unwrap_or_else(|e| panic!("writing {value:?} to tracefs {file}: {e}"));
    }

    /// Stops recording; the recorded lines of `event`.
    fn lines(&self, event: &str) -> Vec<String> {
        self.write("tracing_on", "0");
        let text = fs::read_to_string(self.dir.join("trace")).unwrap();
        let tag = format!(" {event}: ");
        text.lines()
            .filter_map(|l| l.split_once(&tag).map(|(_, rest)| rest.to_owned()))
            .collect()
    }
}

impl Drop for BlockTrace {
    fn drop(&mut self) {
        let _ = fs::write(self.dir.join("tracing_on"), "0");
        for event in Self::EVENTS {
            let _ = fs::write(self.dir.join(format!("events/block/{event}/enable")), "0");
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Bytes written by `block_bio_queue` lines ("DEV RWBS SECTOR + N [COMM]").
fn written_bytes(lines: &[String]) -> u64 {
    lines
        .iter()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 5 && f[1].contains('W') && f[3] == "+")
                .then(|| f[4].parse::<u64>().ok())
                .flatten()
        })
        .sum::<u64>()
        * 512
}

/// The I/O scheduler of the disk under `path` ("none" when it has none).
fn scheduler_of(path: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata(path).unwrap().dev();
    let sys = format!("/sys/dev/block/{}:{}", libc::major(dev), libc::minor(dev));
    // A partition's queue is its disk's.
    let queue = ["queue/scheduler", "../queue/scheduler"]
        .iter()
        .map(|q| Path::new(&sys).join(q))
        .find(|q| q.exists())
        .expect("the repository is on a block device");
    let text = fs::read_to_string(queue).unwrap();
    text.split_whitespace()
        .find(|s| s.starts_with('['))
        .map(|s| s.trim_matches(['[', ']']).to_owned())
        .unwrap_or_else(|| text.trim().to_owned())
}

#[test]
fn pack_writes_reach_the_disk_from_an_idle_class_thread() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::unmounted();
    let config = m.path("strata.toml");
    fs::write(&config, "[throttle.io]\nclass = \"idle\"\n").unwrap();
    m.mount_with(&["--config", config.to_str().unwrap()]);

    let status: serde_json::Value =
        serde_json::from_str(&ok(m.strata().args(["status", "--json"]))).unwrap();
    let wb = &status["writeback"];
    assert_eq!(wb["priority"], "idle", "{status}");
    let tid = wb["thread_id"].as_u64().expect("a writeback thread id") as u32;
    let pid = m.daemon_pid();
    // The same answer from the tool administrators use, and the other
    // threads of the daemon (the FUSE threads among them) are not idle.
    assert_eq!(
        ok(Command::new("ionice").args(["-p", &tid.to_string()])).trim(),
        "idle"
    );
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let other = task.unwrap().file_name().into_string().unwrap();
        if other != tid.to_string() {
            let class = ok(Command::new("ionice").args(["-p", &other]));
            assert_ne!(
                class.trim(),
                "idle",
                "thread {other} of the daemon is idle too"
            );
        }
    }
    let human = ok(m.strata().arg("status"));
    assert!(
        human.contains("I/O priority idle"),
        "status does not show the writeback priority:\n{human}"
    );

    // 96 MiB that do not compress, written and fsynced through the mount.
    let trace = BlockTrace::start(tid);
    let source = m.path("random");
    ok(Command::new("dd")
        .args(["if=/dev/urandom", "bs=1M", "count=96", "status=none"])
        .arg(format!("of={}", source.display())));
    let before = written_bytes(&trace.lines("block_bio_queue"));
    trace.write("trace", "");
    trace.write("tracing_on", "1");
    ok(Command::new("dd")
        .arg(format!("if={}", source.display()))
        .arg(format!("of={}", m.head().join("big").display()))
        .args(["bs=1M", "conv=fsync", "status=none"]));
    let written = written_bytes(&trace.lines("block_bio_queue"));
    let inserted = trace.lines("block_rq_insert");

    assert_eq!(before, 0, "the writeback thread wrote before any data came");
    assert!(
        written >= 48 * MIB,
        "the writeback thread submitted only {written} bytes of the 96 MiB written"
    );
    // Where the disk has a scheduler, its queue saw them as idle requests.
    if scheduler_of(&m.repo()) != "none" {
        assert!(
            !inserted.is_empty(),
            "no requests of the writeback thread were queued"
        );
        for line in &inserted {
            assert!(line.contains(" idle,"), "not an idle-class request: {line}");
        }
    }
    drop(trace);

    // The data is whole.
    let out = run(Command::new("cmp").arg(&source).arg(m.head().join("big")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    m.umount();
}
