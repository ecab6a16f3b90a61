//! The FUSE transport: the io_uring where the kernel offers it (the fuse
//! module's enable_uring parameter), /dev/fuse otherwise, said by `strata
//! status`; `--transport io-uring` refuses to mount without the ring and
//! `--transport dev-fuse` never uses it. CI runs the mount suite once with
//! the parameter on and once with it off, so both branches here run.

use crate::common::tier::{self, Tier};
use crate::harness::{fails, ok, sh, Mount};

fn ring_offered() -> bool {
    std::fs::read_to_string("/sys/module/fuse/parameters/enable_uring")
        .is_ok_and(|v| v.trim() == "Y")
}

fn transport(m: &Mount) -> String {
    m.status()["transport"]
        .as_str()
        .expect("a mounted status names its transport")
        .to_owned()
}

/// The requests the ring served, from "io_uring (N queues, M requests served on the ring)".
fn ring_requests(t: &str) -> u64 {
    let n = t.split(", ").nth(1).and_then(|s| s.split(' ').next());
    n.and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in {t:?}"))
}

#[test]
fn the_ring_serves_where_the_kernel_allows_it_and_status_says_which() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    sh(&format!(
        "mkdir -p '{h}/d' && for i in 1 2 3; do echo $i > '{h}/d/f'$i; done && cat '{h}'/d/* >/dev/null",
        h = m.head().display()
    ));
    let t = transport(&m);
    if ring_offered() {
        assert!(t.starts_with("io_uring ("), "{t}");
        // Requests really went over the ring, not only /dev/fuse.
        assert!(ring_requests(&t) >= 10, "{t}");
        let human = ok(m.strata().arg("status"));
        assert!(human.contains("transport   io_uring"), "{human}");
    } else {
        assert!(
            t.starts_with("dev-fuse (the kernel does not offer FUSE over io_uring")
                && t.contains("enable_uring"),
            "{t}"
        );
        // Asked for the ring only: refused, naming the parameter, and
        // nothing is left mounted.
        let other = Mount::unmounted();
        let out = crate::harness::run(
            other
                .strata()
                .arg("mount")
                .arg(other.mnt())
                .args(["--transport", "io-uring"]),
        );
        fails(&out, 14, "enable_uring");
        assert!(!std::path::Path::new(&other.head()).exists());
    }
    m.umount();

    // The classic transport when asked for, whatever the kernel offers.
    m.mount_with(&["--transport", "dev-fuse"]);
    assert_eq!(
        std::fs::read_to_string(m.head().join("d/f2")).unwrap(),
        "2\n"
    );
    let t = transport(&m);
    assert!(
        t.starts_with("dev-fuse (the classic transport was asked for"),
        "{t}"
    );
}
