//! Alerts through real channels: a webhook receiver on loopback, programs
//! written by the test, a syslog datagram socket, a stand-in sendmail.

#[path = "common/mod.rs"]
mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::webhook::{receiver, tls_receiver};
use strata::policy::alert::{
    classify, mail_text, syslog_line, AlertConfig, Alerter, Channel, ChannelError, Class, Event,
    Facility, Fields, Kind, Outcome, Severity, Token,
};
use strata::store::id::{PackId, RepoId};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn event(kind: Kind, class: Class) -> Event {
    Event::new(kind, class, t(0))
}

fn alerter(dir: &Path, toml: &str) -> Alerter {
    let cfg = AlertConfig::parse(toml).unwrap_or_else(|e| panic!("{e}"));
    Alerter::from_config(&cfg, dir.join("alerts.json")).unwrap()
}

/// A sh script at `dir/name` with `body`, executable.
fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A script that appends each event it gets (one JSON line) to `out`.
fn recorder(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let out = dir.join(format!("{name}.out"));
    let p = script(dir, name, &format!("cat >> '{}'", out.display()));
    (p, out)
}

fn recorded(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn webhook_posts_the_event_json_with_the_header_from_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(200);
    let header = dir.path().join("webhook.header");
    std::fs::write(&header, "Authorization: Bearer s3cret\n").unwrap();
    std::fs::set_permissions(&header, std::fs::Permissions::from_mode(0o600)).unwrap();
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"webhook\"\nurl = \"{url}\"\nheader_file = \"{}\"\ntimeout = \"5s\"\n",
            header.display()
        ),
    );
    let repo = RepoId::random();
    let report = a.raise_at(
        event(Kind::RunFailed, Class::Hook).with_repository(repo),
        t(0),
    );
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            channel: "webhook#0".into(),
            escalated: false
        }
    );
    let req = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        req.head.starts_with("POST /strata/alert HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    assert!(
        req.head.contains("authorization: Bearer s3cret")
            || req.head.contains("Authorization: Bearer s3cret"),
        "{}",
        req.head
    );
    let json: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(json["kind"], "run_failed");
    assert_eq!(json["class"], "hook");
    assert_eq!(json["severity"], "error");
    assert_eq!(json["repository"], repo.to_string());
    assert_eq!(json["count"], 1);
    assert_eq!(json["id"], report.event.to_string());
}

#[test]
fn webhook_over_https_trusts_its_ca_file_besides_the_system_roots() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx, ca) = tls_receiver(200);
    let ca_file = dir.path().join("internal-ca.pem");
    std::fs::write(&ca_file, ca).unwrap();
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"webhook\"\nurl = \"{url}\"\nca_file = \"{}\"\ntimeout = \"5s\"\n",
            ca_file.display()
        ),
    );
    let e = event(Kind::RunFailed, Class::Hook);
    let id = e.id();
    let report = a.raise_at(e, t(0));
    report.result().unwrap();
    let req = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(req.head.starts_with("POST /strata/alert "), "{}", req.head);
    let json: serde_json::Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(json["id"], id.to_string());
    assert_eq!(json["kind"], "run_failed");
}

#[test]
fn webhook_over_https_without_the_ca_fails_naming_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx, _ca) = tls_receiver(200);
    let a = alerter(
        dir.path(),
        &format!("[[channel]]\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"),
    );
    let report = a.raise_at(event(Kind::RunFailed, Class::Hook), t(0));
    assert_eq!(report.outcome, Outcome::Undelivered);
    let err = report.result().unwrap_err().to_string();
    assert!(err.starts_with("webhook#0 channel"), "{err}");
    assert!(
        matches!(report.failures[0], ChannelError::Tls { .. }),
        "{err}"
    );
    assert!(err.contains("TLS") && err.contains("certificate"), "{err}");
    assert!(
        rx.recv_timeout(Duration::from_millis(200)).is_err(),
        "nothing is sent to an untrusted receiver"
    );
}

#[test]
fn webhook_ca_file_missing_or_not_pem_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("not-pem.txt");
    std::fs::write(&text, "this is not a certificate\n").unwrap();
    let torn = dir.path().join("torn.pem");
    std::fs::write(&torn, "-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(
        &junk,
        "-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let missing = dir.path().join("missing.pem");
    for (path, why) in [
        (&missing, "cannot be read"),
        (&text, "no PEM certificate"),
        (&torn, "not a PEM file"),
        (&junk, "cannot be used"),
        (&dir.path().to_path_buf(), "cannot be read"),
    ] {
        let cfg = AlertConfig::parse(&format!(
            "[[channel]]\ntype = \"syslog\"\n\
             [[channel]]\ntype = \"webhook\"\nurl = \"https://127.0.0.1:9/\"\nca_file = \"{}\"\n",
            path.display()
        ))
        .unwrap();
        let err = Alerter::from_config(&cfg, dir.path().join("s.json")).unwrap_err();
        assert!(matches!(err, ChannelError::Setup { .. }), "{err}");
        let err = err.to_string();
        assert!(err.contains("alerts.channel[1].ca_file"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn webhook_header_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let header = dir.path().join("webhook.header");
    std::fs::write(&header, "Authorization: Bearer s3cret\n").unwrap();
    std::fs::set_permissions(&header, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = AlertConfig::parse(&format!(
        "[[channel]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nheader_file = \"{}\"\n",
        header.display()
    ))
    .unwrap();
    let err = Alerter::from_config(&cfg, dir.path().join("s.json")).unwrap_err();
    assert!(matches!(err, ChannelError::Setup { .. }), "{err}");
    assert!(err.to_string().contains("0600"), "{err}");
}

#[test]
fn webhook_that_never_answers_times_out_and_the_next_channel_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(0);
    let (cmd, out) = recorder(dir.path(), "next");
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"1s\"\n\
             [[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
            cmd.display()
        ),
    );
    let report = a.raise_at(event(Kind::StorageError, Class::TransientIo), t(0));
    assert!(
        rx.recv_timeout(Duration::from_secs(1)).is_ok(),
        "the webhook was tried"
    );
    assert_eq!(report.failures.len(), 1);
    // Given up at the channel's own timeout (the receiver holds the
    // connection for 30 s and then closes it without an answer).
    assert!(
        matches!(report.failures[0], ChannelError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{}",
        report.failures[0]
    );
    assert_eq!(
        report.outcome,
        Outcome::Sent {
            channel: "command#1".into(),
            escalated: false
        }
    );
    assert_eq!(recorded(&out)[0]["kind"], "storage_error");
}

#[test]
fn webhook_answering_500_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (url, rx) = receiver(500);
    let a = alerter(
        dir.path(),
        &format!("[[channel]]\ntype = \"webhook\"\nurl = \"{url}\"\ntimeout = \"5s\"\n"),
    );
    let report = a.raise_at(event(Kind::RunFailed, Class::Hook), t(0));
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    assert_eq!(report.outcome, Outcome::Undelivered);
    let err = report.result().unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
}

#[test]
fn command_gets_the_json_on_stdin_and_a_cleared_environment() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("stdin.json");
    let env = dir.path().join("env.txt");
    let cmd = script(
        dir.path(),
        "page",
        &format!(
            "cat > '{}'\nenv > '{}'\necho \"$1\" >> '{}'",
            out.display(),
            env.display(),
            env.display()
        ),
    );
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"command\"\ncommand = [\"{}\", \"--team=storage\"]\n",
            cmd.display()
        ),
    );
    let pack = PackId::random();
    let e = Event::from_io_error(
        Kind::StorageError,
        &std::io::Error::from_raw_os_error(libc::ENOSPC),
        t(0),
    )
    .with_fields(Fields {
        pack: Some(pack),
        errno: Some(libc::ENOSPC),
        ..Fields::default()
    });
    let report = a.raise_at(e, t(0));
    report.result().unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["class"], "capacity");
    assert_eq!(json["fields"]["pack"], pack.to_string());
    assert_eq!(json["fields"]["errno"], libc::ENOSPC);
    assert!(
        json["message"].as_str().unwrap().contains("ENOSPC"),
        "{json}"
    );
    let env = std::fs::read_to_string(&env).unwrap();
    assert!(
        env.contains(&format!("PATH={}", strata::policy::alert::CHILD_PATH)),
        "{env}"
    );
    assert!(
        !env.contains("CARGO"),
        "the test's environment leaked: {env}"
    );
    assert!(
        env.contains("--team=storage"),
        "arguments are passed: {env}"
    );
}

#[test]
fn failing_or_hanging_command_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let fail = script(dir.path(), "fail", "exit 3");
    let pid_file = dir.path().join("hang.pid");
    let hang = script(
        dir.path(),
        "hang",
        &format!("echo $$ > '{}'; exec sleep 30", pid_file.display()),
    );
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n\
             [[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\ntimeout = \"1s\"\n",
            fail.display(),
            hang.display()
        ),
    );
    let report = a.raise_at(event(Kind::HookFailed, Class::Hook), t(0));
    assert_eq!(report.outcome, Outcome::Undelivered);
    // The hanging command was killed at its timeout, not left running.
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the hanging command {} is still there",
        pid.trim()
    );
    assert_eq!(report.failures.len(), 2);
    assert!(
        report.failures[0].to_string().contains("status 3"),
        "{}",
        report.failures[0]
    );
    assert!(
        matches!(report.failures[1], ChannelError::Timeout { timeout, .. } if timeout == Duration::from_secs(1)),
        "{}",
        report.failures[1]
    );
}

#[test]
fn syslog_datagram_has_priority_tag_and_ids() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"syslog\"\nsocket = \"{}\"\nfacility = \"local3\"\n",
            sock_path.display()
        ),
    );
    let repo = RepoId::random();
    let e = Event::new(Kind::HookFailed, Class::Timeout, t(0))
        .with_repository(repo)
        .with_fields(Fields {
            hook: Some(Token::new("pg-start").unwrap()),
            elapsed_secs: Some(300),
            limit_secs: Some(300),
            ..Fields::default()
        });
    a.raise_at(e, t(0)).result().unwrap();
    let mut buf = [0u8; 4096];
    let n = sock.recv(&mut buf).unwrap();
    let line = std::str::from_utf8(&buf[..n]).unwrap();
    // local3 = 19, error = 3: 19 * 8 + 3.
    assert!(line.starts_with("<155>strata["), "{line}");
    assert!(line.contains("]: hook pg-start failed (timeout)"), "{line}");
    assert!(
        line.contains("kind=hook_failed class=timeout severity=error"),
        "{line}"
    );
    assert!(line.contains(&format!("repository={repo}")), "{line}");
}

#[test]
fn syslog_without_a_listener_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"syslog\"\nsocket = \"{}\"\n",
            dir.path().join("nobody").display()
        ),
    );
    let report = a.raise_at(event(Kind::RunFailed, Class::Hook), t(0));
    assert_eq!(report.outcome, Outcome::Undelivered);
    assert!(matches!(report.failures[0], ChannelError::Io { .. }));
}

#[test]
fn email_goes_to_sendmail_t_with_headers_and_a_plain_body() {
    let dir = tempfile::tempdir().unwrap();
    let argv = dir.path().join("argv");
    let msg = dir.path().join("msg");
    let sendmail = script(
        dir.path(),
        "sendmail",
        &format!(
            "printf '%s\\n' \"$@\" > '{}'\ncat > '{}'",
            argv.display(),
            msg.display()
        ),
    );
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"email\"\nto = [\"oncall@example.org\", \"dba@example.org\"]\n\
             from = \"strata@backup1.example.org\"\nsendmail = \"{}\"\n",
            sendmail.display()
        ),
    );
    let repo = RepoId::random();
    let e = strata::policy::alert::fill_check(90, 100, 80)
        .unwrap()
        .with_repository(repo)
        .with_host(Token::new("backup1").unwrap());
    a.raise_at(e, t(0)).result().unwrap();
    assert_eq!(std::fs::read_to_string(&argv).unwrap(), "-t\n-oi\n");
    let msg = std::fs::read_to_string(&msg).unwrap();
    let (head, body) = msg.split_once("\n\n").unwrap();
    assert!(
        head.contains("\nTo: oncall@example.org, dba@example.org\n"),
        "{head}"
    );
    assert!(
        head.starts_with("From: strata@backup1.example.org\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!(
            "\nSubject: [strata warning] storage_full on backup1 (repository {})\n",
            repo.short()
        )),
        "{head}"
    );
    assert!(
        body.starts_with("storage is 90% full (threshold 80%) (capacity)"),
        "{body}"
    );
    assert!(body.contains(&repo.to_string()), "{body}");
}

#[test]
fn failing_sendmail_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let sendmail = script(dir.path(), "sendmail", "cat > /dev/null\nexit 75");
    let a = alerter(
        dir.path(),
        &format!(
            "[[channel]]\ntype = \"email\"\nto = [\"oncall@example.org\"]\nsendmail = \"{}\"\n",
            sendmail.display()
        ),
    );
    let report = a.raise_at(event(Kind::BackupMissed, Class::Timeout), t(0));
    let err = report.result().unwrap_err();
    assert!(err.to_string().contains("status 75"), "{err}");
}

fn two_recorders(dir: &Path, escalate: &str) -> (String, PathBuf, PathBuf) {
    let (c0, o0) = recorder(dir, "first");
    let (c1, o1) = recorder(dir, "second");
    let toml = format!(
        "dedup_window = \"1h\"\n\
         [[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\nescalate_after = {escalate}\n\
         [[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        c0.display(),
        c1.display()
    );
    (toml, o0, o1)
}

#[test]
fn repeats_are_counted_then_escalated_across_alerter_instances() {
    let dir = tempfile::tempdir().unwrap();
    let (toml, first, second) = two_recorders(dir.path(), "{ count = 3 }");
    let repo = RepoId::random();
    let ev = || event(Kind::RunFailed, Class::Hook).with_repository(repo);

    // Each raise comes from a fresh Alerter, as from separate strata runs.
    let r1 = alerter(dir.path(), &toml).raise_at(ev(), t(0));
    assert!(matches!(
        r1.outcome,
        Outcome::Sent {
            escalated: false,
            ..
        }
    ));
    let r2 = alerter(dir.path(), &toml).raise_at(ev(), t(60));
    assert_eq!(r2.outcome, Outcome::Suppressed);
    assert_eq!(r2.count, 2);
    // Another repository is another alert.
    let other = alerter(dir.path(), &toml).raise_at(
        event(Kind::RunFailed, Class::Hook).with_repository(RepoId::random()),
        t(61),
    );
    assert!(matches!(other.outcome, Outcome::Sent { .. }));
    let r3 = alerter(dir.path(), &toml).raise_at(ev(), t(120));
    assert_eq!(
        r3.outcome,
        Outcome::Sent {
            channel: "command#1".into(),
            escalated: true
        }
    );
    // Within the window of the escalated send: counted.
    let r4 = alerter(dir.path(), &toml).raise_at(ev(), t(180));
    assert_eq!(r4.outcome, Outcome::Suppressed);
    // After the window: sent again, to the channel it escalated to, with the count.
    let r5 = alerter(dir.path(), &toml).raise_at(ev(), t(120 + 3600));
    assert!(matches!(r5.outcome, Outcome::Sent { ref channel, .. } if channel == "command#1"));

    let first = recorded(&first);
    let second = recorded(&second);
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first[0]["count"], 1);
    assert_eq!(first[0]["repository"], repo.to_string());
    assert_eq!(second.len(), 2, "{second:?}");
    assert_eq!(second[0]["count"], 3);
    assert_eq!(second[1]["count"], 5);
    assert!(second[1]["message"]
        .as_str()
        .unwrap()
        .contains("seen 5 times"));
    assert_eq!(
        second[1]["first_seen"],
        humantime::format_rfc3339_seconds(t(0)).to_string()
    );
}

#[test]
fn outstanding_alerts_escalate_by_time_on_tick_and_resolve_forgets() {
    let dir = tempfile::tempdir().unwrap();
    let (toml, first, second) = two_recorders(dir.path(), "{ elapsed = \"2h\" }");
    let ev = || event(Kind::BackupMissed, Class::Timeout);
    alerter(dir.path(), &toml).raise_at(ev(), t(0));
    assert!(alerter(dir.path(), &toml).tick(t(3600)).is_empty());
    let reports = alerter(dir.path(), &toml).tick(t(2 * 3600));
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].outcome,
        Outcome::Sent {
            channel: "command#1".into(),
            escalated: true
        }
    );
    assert!(
        alerter(dir.path(), &toml).tick(t(5 * 3600)).is_empty(),
        "no further channel"
    );
    assert_eq!(recorded(&first).len(), 1);
    assert_eq!(recorded(&second).len(), 1);
    assert_eq!(recorded(&second)[0]["kind"], "backup_missed");

    // Resolved: the next failure is news again, at the first channel.
    assert_eq!(
        alerter(dir.path(), &toml)
            .resolve(Kind::BackupMissed, None)
            .unwrap(),
        1
    );
    let r = alerter(dir.path(), &toml).raise_at(ev(), t(5 * 3600 + 1));
    assert_eq!(r.count, 1);
    assert!(matches!(r.outcome, Outcome::Sent { ref channel, .. } if channel == "command#0"));
}

#[test]
fn resolving_a_sent_alert_tells_each_channel_that_got_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let (toml, first, second) = two_recorders(dir.path(), "{ count = 2 }");
    let repo = RepoId::random();
    let failed = || event(Kind::RunFailed, Class::Hook).with_repository(repo);
    let r1 = alerter(dir.path(), &toml).raise_at(failed(), t(0));
    assert!(matches!(r1.outcome, Outcome::Sent { ref channel, .. } if channel == "command#0"));
    let r2 = alerter(dir.path(), &toml).raise_at(failed(), t(60));
    assert!(matches!(r2.outcome, Outcome::Sent { ref channel, .. } if channel == "command#1"));
    // Counted, not sent: the resolved event names the last one sent.
    let r3 = alerter(dir.path(), &toml).raise_at(failed(), t(120));
    assert_eq!(r3.outcome, Outcome::Suppressed);
    // Another alert stays outstanding and is not resolved.
    alerter(dir.path(), &toml).raise_at(event(Kind::HookFailed, Class::Hook), t(130));
    assert_eq!(recorded(&first).len(), 2);

    assert_eq!(
        alerter(dir.path(), &toml)
            .resolve(Kind::RunFailed, Some(repo))
            .unwrap(),
        1
    );
    for out in [&first, &second] {
        let got = recorded(out);
        let resolved = got.last().unwrap();
        assert_eq!(resolved["state"], "resolved", "{got:?}");
        assert_eq!(resolved["id"], r2.event.to_string());
        assert_eq!(resolved["kind"], "run_failed");
        assert_eq!(resolved["count"], 3);
        assert!(
            resolved["message"]
                .as_str()
                .unwrap()
                .starts_with("resolved: backup run failed"),
            "{resolved}"
        );
        assert!(got[..got.len() - 1].iter().all(|e| e["state"] == "firing"));
    }
    assert_eq!(recorded(&first).len(), 3);
    assert_eq!(recorded(&second).len(), 2);

    // Resolved once: nothing is outstanding, nothing more is sent.
    assert_eq!(
        alerter(dir.path(), &toml)
            .resolve(Kind::RunFailed, Some(repo))
            .unwrap(),
        0
    );
    assert_eq!(recorded(&first).len(), 3);

    // Syslog takes it as a notice; mail says so in the subject.
    let e: Event = serde_json::from_value(recorded(&second)[1].clone()).unwrap();
    assert!(syslog_line(&e, Facility::Daemon).starts_with("<29>strata["));
    assert!(mail_text(&e, &["oncall@example.org".into()], None)
        .contains("Subject: [strata resolved] run_failed on "));
}

#[test]
fn the_resolved_event_follows_the_channel_when_the_configuration_is_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let (c0, first) = recorder(dir.path(), "first");
    let (c1, second) = recorder(dir.path(), "second");
    let (c2, third) = recorder(dir.path(), "third");
    let channel = |c: &Path| {
        format!(
            "[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
            c.display()
        )
    };
    let before = format!("{}{}", channel(&c0), channel(&c1));
    let r =
        alerter(dir.path(), &before).raise_at(event(Kind::StorageError, Class::TransientIo), t(0));
    assert!(matches!(r.outcome, Outcome::Sent { ref channel, .. } if channel == "command#0"));

    // The administrator puts a new channel first and swaps the others.
    let after = format!("{}{}{}", channel(&c2), channel(&c1), channel(&c0));
    assert_eq!(
        alerter(dir.path(), &after)
            .resolve(Kind::StorageError, None)
            .unwrap(),
        1
    );
    let got = recorded(&first);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1]["state"], "resolved");
    assert!(recorded(&second).is_empty(), "never told of the alert");
    assert!(recorded(&third).is_empty(), "never told of the alert");
}

#[test]
fn undelivered_alert_is_tried_again_at_the_next_raise() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("working");
    let out = dir.path().join("out");
    let cmd = script(
        dir.path(),
        "flaky",
        &format!(
            "[ -e '{}' ] || exit 1\ncat >> '{}'",
            flag.display(),
            out.display()
        ),
    );
    let toml = format!(
        "[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        cmd.display()
    );
    let r1 = alerter(dir.path(), &toml).raise_at(event(Kind::RunFailed, Class::Hook), t(0));
    assert_eq!(r1.outcome, Outcome::Undelivered);
    std::fs::write(&flag, "").unwrap();
    let r2 = alerter(dir.path(), &toml).raise_at(event(Kind::RunFailed, Class::Hook), t(10));
    assert!(
        matches!(r2.outcome, Outcome::Sent { .. }),
        "{:?}",
        r2.outcome
    );
    assert_eq!(recorded(&out)[0]["count"], 2);
}

#[test]
fn state_file_is_replaced_atomically_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let (cmd, _out) = recorder(dir.path(), "rec");
    let toml = format!(
        "[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        cmd.display()
    );
    let a = alerter(dir.path(), &toml);
    a.raise_at(event(Kind::RunFailed, Class::Hook), t(0));
    let state = dir.path().join("alerts.json");
    let before = std::fs::metadata(&state).unwrap();
    assert_eq!(before.mode() & 0o777, 0o600);
    a.raise_at(event(Kind::RunFailed, Class::Hook), t(1));
    let after = std::fs::metadata(&state).unwrap();
    assert_ne!(
        before.ino(),
        after.ino(),
        "replaced by rename, not rewritten in place"
    );
    assert!(!dir.path().join("alerts.json.tmp").exists());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(json["alerts"][0]["count"], 2);
}

#[test]
fn damaged_state_file_does_not_stop_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (cmd, out) = recorder(dir.path(), "rec");
    std::fs::write(dir.path().join("alerts.json"), "{ not json").unwrap();
    let toml = format!(
        "[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        cmd.display()
    );
    let r = alerter(dir.path(), &toml).raise_at(event(Kind::StorageError, Class::Corruption), t(0));
    assert!(matches!(r.outcome, Outcome::Sent { .. }));
    assert!(r.state_error.unwrap().to_string().contains("damaged"));
    assert_eq!(recorded(&out)[0]["severity"], "critical");
}

#[test]
fn events_never_carry_the_path_from_an_io_error() {
    let secret = "/srv/clinic/patient-4711/scan.dcm";
    // What a wrapper such as fs-err makes of a failed write: the path in the text.
    let errors = [
        std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            format!("failed to write {secret}"),
        ),
        std::io::Error::other(format!("{secret}: Input/output error")),
        std::fs::File::open(secret).unwrap_err(),
    ];
    for err in &errors {
        let e =
            Event::from_io_error(Kind::StorageError, err, t(0)).with_repository(RepoId::random());
        let json = e.to_json();
        assert!(!json.contains("patient-4711"), "{json}");
        assert!(!json.contains("/srv"), "{json}");
        assert!(!e.message().contains("patient"), "{}", e.message());
    }
    assert_eq!(classify(&errors[0]), Class::Capacity);
    assert_eq!(
        Event::from_io_error(Kind::StorageError, &errors[2], t(0))
            .fields()
            .errno,
        Some(libc::ENOENT)
    );
    // The only strings an event takes refuse paths.
    assert!(Token::new(secret).is_err());
    assert!(Token::new("scan.dcm/..").is_err());
    assert!(!Token::new(secret)
        .unwrap_err()
        .to_string()
        .contains("patient"));
    assert!(serde_json::from_str::<Token>("\"/etc/passwd\"").is_err());
}

#[test]
fn freshness_and_fill_thresholds() {
    let day = Duration::from_secs(24 * 3600);
    let max = Duration::from_secs(25 * 3600);
    assert!(strata::policy::alert::freshness(t(0), t(0) + day, max).is_none());
    assert!(
        strata::policy::alert::freshness(t(0) + day, t(0), max).is_none(),
        "clock skew"
    );
    let e =
        strata::policy::alert::freshness(t(0), t(0) + max + Duration::from_secs(1), max).unwrap();
    assert_eq!(e.kind(), Kind::BackupMissed);
    assert_eq!(e.fields().elapsed_secs, Some(25 * 3600 + 1));
    assert_eq!(e.fields().limit_secs, Some(25 * 3600));

    assert!(strata::policy::alert::fill_check(79, 100, 80).is_none());
    assert!(strata::policy::alert::fill_check(0, 0, 80).is_none());
    let f = strata::policy::alert::fill_check(80, 100, 80).unwrap();
    assert_eq!(f.severity(), Severity::Warning);
    assert_eq!(f.fields().fill_percent, Some(80));
    assert_eq!(
        strata::policy::alert::fill_check(96, 100, 80)
            .unwrap()
            .severity(),
        Severity::Error
    );
    // Large disks do not overflow.
    assert!(strata::policy::alert::fill_check(u64::MAX, u64::MAX, 80).is_some());
}

#[test]
fn good_config_parses_with_every_channel() {
    let c = AlertConfig::parse(
        r#"
dedup_window = "30m"
fill_threshold = "85%"
max_snapshot_age = "26h"
slow_snapshot = "10m"
[[channel]]
type = "syslog"
escalate_after = { count = 3, elapsed = "2h" }
[[channel]]
type = "webhook"
url = "http://alerts.example:8080/strata"
header_file = "/etc/strata/webhook.header"
timeout = "10s"
[[channel]]
type = "email"
to = ["oncall@example.org"]
sendmail = "/usr/sbin/sendmail"
[[channel]]
type = "command"
command = ["/usr/local/bin/page-oncall"]
"#,
    )
    .unwrap();
    assert_eq!(c.dedup_window, Duration::from_secs(1800));
    assert_eq!(c.fill_threshold, 85);
    assert_eq!(c.max_snapshot_age, Duration::from_secs(26 * 3600));
    assert_eq!(c.slow_snapshot, Duration::from_secs(600));
    let types: Vec<_> = c.channels.iter().map(|c| c.kind.type_name()).collect();
    assert_eq!(types, ["syslog", "webhook", "email", "command"]);
    let esc = c.channels[0].escalate_after.unwrap();
    assert_eq!(esc.count, Some(3));
    assert_eq!(esc.elapsed, Some(Duration::from_secs(7200)));
    assert_eq!(c.channels[1].timeout, Duration::from_secs(10));
    // It embeds in the host configuration as the [alerts] table.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Host {
        alerts: AlertConfig,
    }
    let h: Host =
        toml::from_str("[alerts]\nfill_threshold = 90\n[[alerts.channel]]\ntype = \"syslog\"\n")
            .unwrap();
    assert_eq!(h.alerts.fill_threshold, 90);
    // Channels built from it.
    let ch = Channel::from_config(0, &h.alerts.channels[0]).unwrap();
    assert_eq!(ch.name(), "syslog#0");
}

#[test]
fn bad_configs_name_the_key_and_value() {
    let cases: &[(&str, &[&str])] = &[
        ("dedup_window = \"soon\"", &["alerts.dedup_window", "soon"]),
        (
            "fill_threshold = \"180%\"",
            &["alerts.fill_threshold", "180%"],
        ),
        ("fill_threshold = 0", &["alerts.fill_threshold", "0"]),
        (
            "max_snapshot_age = \"0s\"",
            &["alerts.max_snapshot_age", "0s"],
        ),
        ("colour = \"red\"", &["colour"]),
        (
            "[[channel]]\ntype = \"pager\"",
            &["alerts.channel[0].type", "pager"],
        ),
        (
            "[[channel]]\ntype = \"webhook\"\nurl = \"ftp://x/\"",
            &["alerts.channel[0].url", "ftp://x/"],
        ),
        (
            "[[channel]]\ntype = \"webhook\"\nurl = \"https://x/\"\nca_file = \"ca.pem\"",
            &["alerts.channel[0].ca_file", "ca.pem", "absolute"],
        ),
        (
            "[[channel]]\ntype = \"webhook\"\nurl = \"http://x/\"\nca_file = \"/etc/ca.pem\"",
            &["alerts.channel[0].ca_file", "https"],
        ),
        (
            "[[channel]]\ntype = \"command\"\ncommand = [\"/bin/true\"]\nca_file = \"/etc/ca.pem\"",
            &["alerts.channel[0]", "ca_file", "command"],
        ),
        (
            "[[channel]]\ntype = \"webhook\"",
            &["alerts.channel[0]", "url"],
        ),
        (
            "[[channel]]\ntype = \"email\"\nto = [\"oncall\"]",
            &["alerts.channel[0].to", "oncall"],
        ),
        (
            "[[channel]]\ntype = \"command\"\ncommand = [\"page-oncall\"]",
            &["alerts.channel[0].command[0]", "page-oncall"],
        ),
        (
            "[[channel]]\ntype = \"syslog\"\nurl = \"http://x/\"",
            &["alerts.channel[0]", "url", "syslog"],
        ),
        (
            "[[channel]]\ntype = \"syslog\"\nfacility = \"kern\"",
            &["alerts.channel[0].facility", "kern"],
        ),
        (
            "[[channel]]\ntype = \"syslog\"\ntimeout = \"forever\"",
            &["alerts.channel[0].timeout", "forever"],
        ),
        (
            "[[channel]]\ntype = \"syslog\"\nescalate_after = { count = 0 }",
            &["alerts.channel[0].escalate_after.count", "0"],
        ),
        (
            "[[channel]]\ntype = \"syslog\"\nescalate_after = { often = 2 }",
            &["often"],
        ),
    ];
    for (text, needles) in cases {
        let err = AlertConfig::parse(text).expect_err(text).to_string();
        for n in *needles {
            assert!(
                err.contains(n),
                "error for {text:?} does not name {n:?}: {err}"
            );
        }
    }
}

#[test]
fn ended_alerts_are_remembered_as_history_resolved_or_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let (c0, _out) = recorder(dir.path(), "first");
    let toml = format!(
        "forget_after = \"1d\"\n[[channel]]\ntype = \"command\"\ncommand = [\"{}\"]\n",
        c0.display()
    );
    let a = || alerter(dir.path(), &toml);
    a().raise_at(event(Kind::RunFailed, Class::Copy), t(0));
    a().raise_at(event(Kind::RunFailed, Class::Copy), t(60));
    a().raise_at(event(Kind::StorageFull, Class::Capacity), t(100));
    assert_eq!(a().resolve(Kind::RunFailed, None).unwrap(), 1);
    // Two days on, the storage alert was not seen again: forgotten.
    a().raise_at(event(Kind::HookFailed, Class::Hook), t(2 * 86_400));

    let h = strata::policy::alert::state::history(a().state_path());
    let kinds: Vec<_> = h
        .iter()
        .map(|s| (s.kind, s.count, s.how.as_deref()))
        .collect();
    assert_eq!(
        kinds,
        [
            (Kind::RunFailed, 2, Some("resolved")),
            (Kind::StorageFull, 1, Some("forgotten")),
            (Kind::HookFailed, 1, None),
        ]
    );
    assert_eq!(h[0].first_seen, h[0].last_seen - 60);
    assert_eq!(h[1].ended, Some(h[2].first_seen));
    assert_eq!(h[2].ended, None);
}
