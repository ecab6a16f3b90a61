//! The hand-written man pages render without warnings.

use std::process::Command;

#[path = "common/tier.rs"]
mod tier;
use tier::Tier;

#[test]
fn hand_written_man_pages_render_cleanly() {
    if tier::missing(&[Tier::Groff]) {
        return;
    }
    for page in ["strata-format.5", "strata.toml.5"] {
        let path = format!("{}/man/{page}", env!("CARGO_MANIFEST_DIR"));
        let out = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z", &path])
            .output()
            .expect("groff is installed (package groff-base, pulled in by man-db)");
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "groff warnings in {page}"
        );
    }
}
