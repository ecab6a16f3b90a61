//! Tier classification through a real mount: rsync writes files under
//! temporary names and renames them; `strata tier show` places each by
//! its final path, its owner and what its first bytes told as they were
//! written, by the rules the daemon mounted with.

use crate::common::tier::{self, Tier};
use crate::common::TIER_RULES;
use crate::harness::{fails, ok, run, Mount};

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn files_rsync_writes_are_placed_by_their_final_path_owner_and_first_bytes() {
    if tier::missing(&[Tier::Mount]) {
        return;
    }
    let m = Mount::new();
    // Written before tiers were configured: placed by path and owner alone.
    std::fs::write(m.head().join("old.pdf"), b"%PDF-1.4\n").unwrap();
    let config = m.path("strata.toml");
    std::fs::write(&config, TIER_RULES).unwrap();
    m.umount();
    m.mount_with(&["--config", config.to_str().unwrap()]);
    assert!(
        m.log().contains("classifying files into tiers"),
        "{}",
        m.log()
    );

    let src = m.path("src");
    std::fs::create_dir_all(src.join("ward")).unwrap();
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend(std::iter::repeat_n(b'x', 200_000));
    std::fs::write(src.join("ward/discharge"), &pdf).unwrap();
    std::fs::write(
        src.join("ward/adt.msg"),
        "MSH|^~\\&|ADT|HOSP|||202612070830||ADT^A01|1|P|2.5\rPID|1||123||DOE^JOHN\r",
    )
    .unwrap();
    std::fs::write(src.join("ward/note.txt"), "ssn 123-45-6789 on file\n").unwrap();
    std::fs::write(src.join("ward/menu.txt"), "soup of the day\n").unwrap();
    std::fs::write(src.join("ward/scan.dcm"), "not even a DICOM header").unwrap();
    ok(std::process::Command::new("rsync")
        .arg("-a")
        .arg(format!("{}/", src.display()))
        .arg(m.head().join("data")));

    let paths = [
        "/data/ward/discharge",
        "/data/ward/adt.msg",
        "/data/ward/note.txt",
        "/data/ward/menu.txt",
        "/data/ward/scan.dcm",
        "/old.pdf",
    ];
    let shown = json(&ok(m.strata().args(["tier", "show", "--json"]).args(paths)));
    let row = |i: usize| &shown[i];
    assert_eq!(row(0)["tier"], "phi", "{shown}");
    assert_eq!(row(0)["types"], serde_json::json!(["pdf"]));
    assert_eq!(row(0)["rule"], 2);
    assert_eq!(row(1)["tier"], "phi");
    assert_eq!(row(1)["types"], serde_json::json!(["hl7"]));
    assert_eq!(row(2)["tier"], "phi");
    assert_eq!(row(2)["patterns"], serde_json::json!(["us-ssn"]));
    assert_eq!(row(3)["tier"], "general");
    assert_eq!(row(3)["rule"], serde_json::Value::Null);
    assert_eq!(row(4)["tier"], "phi", "by its name after rsync's rename");
    assert_eq!(row(4)["rule"], 1);
    assert_eq!(
        row(5)["read"],
        false,
        "written before tiers were configured"
    );
    assert_eq!(row(5)["tier"], "general");

    // A rename moves a file's tier with its path, without reading it again.
    std::fs::rename(
        m.head().join("data/ward/menu.txt"),
        m.head().join("data/ward/menu.dcm"),
    )
    .unwrap();
    let human = ok(m
        .strata()
        .args(["tier", "show", "/data/ward/menu.dcm", "/data/ward/note.txt"]));
    assert!(
        human.contains("/data/ward/menu.dcm  phi  (rule 1)"),
        "{human}"
    );
    assert!(
        human.contains("/data/ward/note.txt  phi  (rule 3; patterns us-ssn)"),
        "{human}"
    );

    fails(
        &run(m.strata().args(["tier", "show", "/data/ward/nothing"])),
        31,
        "head/ holds nothing at",
    );
    fails(
        &run(m.strata().args(["tier", "show", "data/ward/note.txt"])),
        2,
        "is not a path from the root of head/",
    );

    // Unmounted, the repository is opened here with the same rules.
    m.umount();
    let shown = json(&ok(m.strata().args([
        "tier",
        "show",
        "--json",
        "--config",
        config.to_str().unwrap(),
        "/data/ward/discharge",
    ])));
    assert_eq!(shown[0]["tier"], "phi", "{shown}");
    let plain = m.path("plain.toml");
    std::fs::write(&plain, "").unwrap();
    fails(
        &run(m.strata().args([
            "tier",
            "show",
            "--config",
            plain.to_str().unwrap(),
            "/data/ward/discharge",
        ])),
        15,
        "has no [[tier]]",
    );
}
