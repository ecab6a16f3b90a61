//! Classification into tiers: the rules of strata.toml on representative
//! samples, the refusals of rules that cannot work, and `strata tier
//! classify` on real PostgreSQL, MariaDB and SQLite data.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tier::{self, Tier};
use strata::policy::classify::{Classifier, Decision, FileType, Subject};
use strata::policy::hostconfig::HostConfig;
use strata::tree::classify::Classify;

const RULES: &str = r#"
[[tier]]
name = "general"
[[tier]]
name = "phi"
[[tier]]
name = "databases"
[[tier]]
name = "scratch"

[classification]
default = "general"

[[classify]]
tier = "scratch"
paths = ["*.tmp", "cache/**"]

[[classify]]
tier = "phi"
types = ["dicom", "hl7", "fhir"]

[[classify]]
tier = "databases"
types = ["postgresql", "sqlite", "mysql"]

[[classify]]
tier = "phi"
patterns = ["us-ssn", "mrn", "date-of-birth", "ward"]

[[classify]]
tier = "databases"
owners = [26]

[[pattern]]
name = "ward"
regex = '(?i)\bward [A-Z]\d\b'
"#;

fn rules() -> Classifier {
    HostConfig::parse(RULES)
        .unwrap()
        .classifier()
        .unwrap()
        .expect("tiers are declared")
}

fn decide(c: &Classifier, path: &str, uid: u32, head: &[u8]) -> Decision {
    c.classify(&Subject {
        path: Path::new(path),
        uid,
        head,
    })
}

/// A DICOM Part 10 header: preamble, magic, and the group length element.
fn dicom() -> Vec<u8> {
    let mut b = vec![0u8; 128];
    b.extend_from_slice(b"DICM");
    b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 200, 0, 0, 0]);
    b.extend_from_slice(b"\x02\x00\x10\x00UI\x14\x001.2.840.10008.1.2.1\0");
    b
}

/// The start of a zip whose first entry is `name`, stored, holding `body`.
fn zip(name: &str, body: &[u8]) -> Vec<u8> {
    let mut b = b"PK\x03\x04".to_vec();
    b.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.extend_from_slice(&(name.len() as u16).to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(body);
    b
}

#[test]
fn each_sample_goes_to_the_tier_of_the_first_rule_that_takes_it() {
    let c = rules();
    let hl7 = b"MSH|^~\\&|LAB|HOSP|EHR|HOSP|202612070101||ORU^R01|1|P|2.5\rPID|1||123456^^^HOSP^MR||DOE^JANE||19610412|F\r";
    let fhir_json = br#"{ "resourceType": "Patient", "id": "p1", "birthDate": "1961-04-12" }"#;
    let fhir_xml =
        br#"<?xml version="1.0"?><Patient xmlns="http://hl7.org/fhir"><id value="p1"/></Patient>"#;
    let pdf = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n";
    let docx = zip("[Content_Types].xml", b"<?xml version=\"1.0\"?><Types/>");
    let odt = zip("mimetype", b"application/vnd.oasis.opendocument.text");
    let ole2 = [0xd0, 0xcf, 0x11, 0xe0, 0xa1, 0xb1, 0x1a, 0xe1, 0, 0, 0, 0];
    // (path, owner, first bytes, tier, type)
    type Case<'a> = (&'a str, u32, Vec<u8>, &'a str, Option<FileType>);
    let cases: Vec<Case> = vec![
        (
            "scans/ct-0001.dcm",
            0,
            dicom(),
            "phi",
            Some(FileType::Dicom),
        ),
        // The type is told from the bytes, not the name.
        (
            "scans/ct-0002.bin",
            0,
            dicom(),
            "phi",
            Some(FileType::Dicom),
        ),
        ("feeds/lab.hl7", 0, hl7.to_vec(), "phi", Some(FileType::Hl7)),
        (
            "fhir/p1.json",
            0,
            fhir_json.to_vec(),
            "phi",
            Some(FileType::Fhir),
        ),
        (
            "fhir/p1.xml",
            0,
            fhir_xml.to_vec(),
            "phi",
            Some(FileType::Fhir),
        ),
        (
            "docs/a.pdf",
            0,
            pdf.to_vec(),
            "general",
            Some(FileType::Pdf),
        ),
        ("docs/a.docx", 0, docx, "general", Some(FileType::Office)),
        ("docs/a.odt", 0, odt, "general", Some(FileType::Office)),
        (
            "docs/a.doc",
            0,
            ole2.to_vec(),
            "general",
            Some(FileType::Office),
        ),
        (
            "docs/note.txt",
            0,
            b"Seen today. MRN: A1234567.\n".to_vec(),
            "phi",
            None,
        ),
        (
            "docs/ssn.txt",
            0,
            b"SSN 123-45-6789\n".to_vec(),
            "phi",
            None,
        ),
        (
            "docs/ward.txt",
            0,
            b"moved to Ward B4\n".to_vec(),
            "phi",
            None,
        ),
        (
            "docs/plain.txt",
            0,
            b"the quarterly figures\n".to_vec(),
            "general",
            None,
        ),
        // Owned by the database user: rule 5.
        ("var/lib/x", 26, b"anything".to_vec(), "databases", None),
        // The first rule wins: a scratch file with PHI is scratch.
        (
            "docs/ssn.tmp",
            0,
            b"SSN 123-45-6789\n".to_vec(),
            "scratch",
            None,
        ),
        (
            "cache/lab.hl7",
            0,
            hl7.to_vec(),
            "scratch",
            Some(FileType::Hl7),
        ),
        // A name glob matches in any directory; a path glob from head/.
        ("a/b/cache/x", 0, b"x".to_vec(), "general", None),
        ("", 0, Vec::new(), "general", None),
    ];
    for (path, uid, head, tier, file_type) in cases {
        let d = decide(&c, path, uid, &head);
        assert_eq!(d.tier, tier, "{path}: {d:?}");
        assert_eq!(d.file_type, file_type, "{path}: {d:?}");
    }
    // Patterns are reported whichever rule decided, and only in text.
    let d = decide(&c, "feeds/lab.hl7", 0, hl7);
    assert_eq!(d.rule, Some(2));
    assert_eq!(d.patterns, vec!["hl7-pid".to_string()]);
    // Binary samples are read too: a DICOM header names the patient.
    let mut scan = dicom();
    scan.extend_from_slice(b"\x10\x00\x30\x00DA\x08\x00DOB 19610412");
    let d = decide(&c, "scan.dcm", 0, &scan);
    assert_eq!(d.patterns, vec!["date-of-birth".to_string()]);
    // UTF-16 text, as spreadsheets export it.
    let mut utf16 = vec![0xff, 0xfe];
    for u in "name,ssn\nDOE,123-45-6789\n".encode_utf16() {
        utf16.extend_from_slice(&u.to_le_bytes());
    }
    let d = decide(&c, "export.csv", 0, &utf16);
    assert_eq!(
        (d.tier.as_str(), d.patterns.clone()),
        ("phi", vec!["us-ssn".to_string()]),
        "{d:?}"
    );
}

#[test]
fn only_the_sample_is_read() {
    let text = concat!(
        "[[tier]]\nname = \"a\"\n[[tier]]\nname = \"phi\"\n[classification]\nsample = 4096\n",
        "[[classify]]\ntier = \"phi\"\npatterns = [\"us-ssn\"]\n"
    );
    let c = HostConfig::parse(text)
        .unwrap()
        .classifier()
        .unwrap()
        .unwrap();
    assert_eq!(c.sample(), 4096);
    let mut late = vec![b'x'; 5000];
    late.extend_from_slice(b" 123-45-6789 ");
    assert_eq!(decide(&c, "f", 0, &late).tier, "a");
    late.drain(..2000);
    assert_eq!(decide(&c, "f", 0, &late).tier, "phi");
}

#[test]
fn rules_that_cannot_work_are_refused_naming_what_to_fix() {
    let tiers = "[[tier]]\nname = \"general\"\n[[tier]]\nname = \"phi\"\n";
    let cases = [
        (
            "[[classify]]\ntier = \"phi\"\ntypes = [\"dicom\"]\n".to_string(),
            "need at least one [[tier]]",
        ),
        (
            format!("{tiers}[[classify]]\ntier = \"gold\"\npaths = [\"*\"]\n"),
            "names tier \"gold\", which no [[tier]] declares",
        ),
        (
            format!("{tiers}[classification]\ndefault = \"gold\"\n"),
            "[classification] default names tier \"gold\"",
        ),
        (
            format!("{tiers}[[classify]]\ntier = \"phi\"\n"),
            "rule 1: give at least one of paths",
        ),
        (
            format!("{tiers}[[classify]]\ntier = \"phi\"\npaths = [\"a[\"]\n"),
            "rule 1: path \"a[\" is not a glob",
        ),
        (
            format!("{tiers}[[classify]]\ntier = \"phi\"\npatterns = [\"iban\"]\n"),
            "no pattern named \"iban\"; the built-in ones are us-ssn, mrn",
        ),
        (
            format!("{tiers}[[pattern]]\nname = \"x\"\nregex = \"(a\"\n"),
            "[[pattern]] \"x\": not a valid regular expression",
        ),
        (
            format!("{tiers}[[pattern]]\nname = \"x\"\nregex = \"(?=a)\"\n"),
            "[[pattern]] \"x\": not a valid regular expression",
        ),
        (
            format!("{tiers}[classification]\nsample = 10\n"),
            "sample = 10: give 4096 to",
        ),
        (
            format!("{tiers}[[tier]]\nname = \"phi\"\n"),
            "name \"phi\" is used twice",
        ),
        (
            format!("{tiers}[[tier]]\nname = \"p h i\"\n"),
            "use letters, digits",
        ),
        (
            format!("{tiers}[[classify]]\ntier = \"phi\"\ntypes = [\"jpeg\"]\n"),
            "unknown variant `jpeg`",
        ),
    ];
    for (text, want) in cases {
        let err = match HostConfig::parse(&text) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(want), "{err}\n  wanted: {want}\n{text}");
    }
    // An owner that is not a user here is no error of the file (one file
    // serves hosts with different users): it matches nothing, and the
    // classifier says so.
    let c = HostConfig::parse(&format!(
        "{tiers}[[classify]]\ntier = \"phi\"\nowners = [\"no-such-user-here\", 26]\n"
    ))
    .unwrap()
    .classifier()
    .unwrap()
    .unwrap();
    assert!(c.unknown_owners()[0]
        .to_string()
        .contains("owner \"no-such-user-here\" is not a user on this host"));
    assert_eq!(decide(&c, "f", 26, b"").tier, "phi");
    // No tiers and no rules: classification is off, nothing refused.
    assert!(HostConfig::parse("")
        .unwrap()
        .classifier()
        .unwrap()
        .is_none());
}

/// `strata --json tier classify [--as UNDER] PATH` with the rules in
/// `dir`/strata.toml.
fn strata_classify(dir: &Path, under: Option<&str>, path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--json", "tier", "classify", "--config"])
        .arg(dir.join("strata.toml"))
        .args(under.map(|u| ["--as", u]).into_iter().flatten())
        .arg(path)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn write_rules(dir: &Path, text: &str) {
    let file = dir.join("strata.toml");
    std::fs::write(&file, text).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// (path, tier, type) of each file the command classified.
fn classified(out: &Output) -> Vec<(PathBuf, String, Option<String>)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                PathBuf::from(f["path"].as_str().unwrap()),
                f["tier"].as_str().unwrap().to_string(),
                f["file_type"].as_str().map(String::from),
            )
        })
        .collect()
}

#[test]
fn real_database_files_are_told_by_their_bytes() {
    if tier::missing(&[Tier::Root, Tier::Postgres, Tier::Mariadb, Tier::Sqlite]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_rules(dir.path(), RULES);

    // PostgreSQL: a cluster as initdb makes it; every non-empty relation
    // file (heap, index, free space map, visibility map) and the WAL.
    let pg = dir.path().join("pg");
    std::fs::create_dir(&pg).unwrap();
    common::ok(Command::new("chown").args(["postgres:postgres"]).arg(&pg));
    common::postgres::Server::init(&pg.join("data"), dir.path(), 5432);
    let files = classified(&strata_classify(
        dir.path(),
        Some("pgdata"),
        &pg.join("data"),
    ));
    let relations: Vec<_> = files
        .iter()
        .filter(|(p, _, _)| {
            p.starts_with("pgdata/base")
                && p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .split('_')
                    .next()
                    .unwrap()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
        })
        .filter(|(p, _, _)| {
            std::fs::metadata(pg.join("data").join(p.strip_prefix("pgdata").unwrap()))
                .unwrap()
                .len()
                > 0
        })
        .collect();
    assert!(relations.len() > 100, "{}", relations.len());
    for (p, tier, t) in &relations {
        assert_eq!(
            (tier.as_str(), t.as_deref()),
            ("databases", Some("postgresql")),
            "{}",
            p.display()
        );
    }
    let wal: Vec<_> = files
        .iter()
        .filter(|(p, _, _)| p.starts_with("pgdata/pg_wal") && p.file_name().unwrap().len() == 24)
        .collect();
    assert!(!wal.is_empty());
    for (p, _, t) in wal {
        assert_eq!(t.as_deref(), Some("postgresql"), "{}", p.display());
    }
    let conf = files
        .iter()
        .find(|(p, _, _)| p.ends_with("postgresql.conf"))
        .unwrap();
    assert_eq!((conf.1.as_str(), conf.2.as_deref()), ("general", None));

    // MariaDB: the system tablespace and every table's .ibd.
    let my = dir.path().join("mariadb");
    common::ok(
        Command::new("mariadb-install-db")
            .arg("--no-defaults")
            .arg(format!("--datadir={}", my.display()))
            .args([
                "--user=root",
                "--skip-test-db",
                "--auth-root-authentication-method=socket",
            ])
            .stdin(std::process::Stdio::null()),
    );
    let files = classified(&strata_classify(dir.path(), Some("mysql"), &my));
    let ibd: Vec<_> = files
        .iter()
        .filter(|(p, _, _)| p.extension().is_some_and(|e| e == "ibd") || p.ends_with("ibdata1"))
        .collect();
    assert!(ibd.len() > 3, "{ibd:?}");
    for (p, tier, t) in ibd {
        assert_eq!(
            (tier.as_str(), t.as_deref()),
            ("databases", Some("mysql")),
            "{}",
            p.display()
        );
    }

    // SQLite.
    let db = dir.path().join("app.db");
    common::ok(
        Command::new("sqlite3")
            .arg(&db)
            .arg("create table t(x); insert into t values (1);"),
    );
    let files = classified(&strata_classify(dir.path(), Some("srv"), &db));
    assert_eq!(
        files,
        vec![(
            PathBuf::from("srv/app.db"),
            "databases".into(),
            Some("sqlite".into())
        )]
    );
}

#[test]
fn the_command_says_what_is_wrong_and_exits_with_its_code() {
    if tier::missing(&[Tier::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("note.txt");
    std::fs::write(&file, "MRN: A1234567\n").unwrap();
    let fails = |out: Output, code: i32, message: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    };
    // No tiers: nothing to classify into.
    write_rules(dir.path(), "");
    fails(
        strata_classify(dir.path(), None, &file),
        15,
        "declares no [[tier]]",
    );
    // Rules that cannot work: the host configuration's code.
    write_rules(
        dir.path(),
        "[[tier]]\nname = \"a\"\n[[classify]]\ntier = \"b\"\npaths = [\"*\"]\n",
    );
    fails(
        strata_classify(dir.path(), None, &file),
        15,
        "names tier \"b\", which no [[tier]] declares",
    );
    // A path that is not there: named, the rest still classified, exit 1.
    write_rules(dir.path(), RULES);
    let out = strata_classify(dir.path(), None, &dir.path().join("gone"));
    fails(out, 1, "cannot read");
    let out = strata_classify(dir.path(), Some("notes"), &file);
    assert_eq!(
        classified(&out),
        vec![(PathBuf::from("notes/note.txt"), "phi".into(), None)]
    );
}

#[test]
fn odd_names_links_and_fifos_neither_break_nor_hang_the_walk() {
    use std::os::unix::ffi::OsStrExt;
    if tier::missing(&[Tier::Root]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    write_rules(dir.path(), RULES);
    let src = dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("note.txt"), "MRN: 1234567\n").unwrap();
    // Not UTF-8, and a newline that must not forge a line.
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9\nphi.txt");
    std::fs::write(src.join(odd), "SSN 123-45-6789\n").unwrap();
    let fifo = std::ffi::CString::new(src.join("pipe").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    // A symlink given as PATH is followed (as `find -H` does).
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&src, &link).unwrap();
    let out = strata_classify(dir.path(), Some("./x/../data"), &link);
    let files = classified(&out);
    assert_eq!(
        files,
        vec![
            (
                PathBuf::from("data/caf\u{fffd}\nphi.txt"),
                "phi".into(),
                None
            ),
            (PathBuf::from("data/note.txt"), "phi".into(), None),
        ]
    );
    // The human listing escapes the newline: one line per file.
    let human = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["tier", "classify", "--config"])
        .arg(dir.path().join("strata.toml"))
        .arg(&src)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert_eq!(
        text.lines().filter(|l| l.starts_with("phi ")).count(),
        2,
        "{text}"
    );
    assert!(text.contains("caf\u{fffd}\\nphi.txt"), "{text}");
}
