//! The hand-written man pages render without warnings.

use std::process::Command;

#[test]
fn format_man_page_renders_cleanly() {
    let page = concat!(env!("CARGO_MANIFEST_DIR"), "/man/strata-format.5");
    let out = Command::new("groff")
        .args(["-man", "-Tutf8", "-ww", "-z", page])
        .output()
        .expect("groff is installed (package groff-base, pulled in by man-db)");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "groff warnings in strata-format(5)"
    );
}
