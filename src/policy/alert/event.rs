//! What an alert says: [`Event`], built from a kind, a class and typed fields.
//!
//! Alerts leave the machine (webhooks, mail), so they carry ids, numbers and
//! classes, never paths or file names: those are patient data. The type makes
//! that hard to get wrong. The message is not free text but rendered from a
//! fixed template per [`Kind`] and the [`Fields`]; the only strings a caller
//! can put in are [`Token`]s (hook names, snapshot names), which refuse `/`,
//! whitespace and anything beyond a short run of `[A-Za-z0-9._:@+-]`, and
//! ids ([`RepoId`], [`PackId`]). An `std::io::Error` goes in only as its errno.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::store::id::{PackId, RepoId};

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A backup run (`strata backup`) failed.
    RunFailed,
    /// A hook failed (exit status, signal or timeout).
    HookFailed,
    /// Reading or writing the repository's storage failed.
    StorageError,
    /// The repository's storage is filled above the threshold.
    StorageFull,
    /// A snapshot took longer than expected.
    SnapshotSlow,
    /// No snapshot for longer than the maximum age.
    BackupMissed,
    /// A restore drill took longer than its recovery-time objective.
    DrillMissedRto,
    /// A restore drill could not read something, or read something that
    /// is not what the snapshot holds.
    DrillFailed,
    /// The verify cycle (`strata check --cycle`) found damage.
    VerifyFailed,
}

impl Kind {
    /// The name used in JSON, syslog and mail.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RunFailed => "run_failed",
            Kind::HookFailed => "hook_failed",
            Kind::StorageError => "storage_error",
            Kind::StorageFull => "storage_full",
            Kind::SnapshotSlow => "snapshot_slow",
            Kind::BackupMissed => "backup_missed",
            Kind::DrillMissedRto => "drill_missed_rto",
            Kind::DrillFailed => "drill_failed",
            Kind::VerifyFailed => "verify_failed",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why it happened, as far as the operator's next step goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// I/O that may succeed when tried again (EIO on a network disk, a reset connection).
    TransientIo,
    /// Out of space or quota.
    Capacity,
    /// Data failed verification, or the storage says its structure is damaged.
    Corruption,
    /// Something is set up wrong (permissions, a missing directory, a bad config).
    Configuration,
    /// A hook failed.
    Hook,
    /// The copy command failed (its exit status or signal is in the fields).
    Copy,
    /// Something did not finish in time.
    Timeout,
}

impl Class {
    /// The name used in JSON, syslog and mail.
    pub fn name(self) -> &'static str {
        match self {
            Class::TransientIo => "transient_io",
            Class::Capacity => "capacity",
            Class::Corruption => "corruption",
            Class::Configuration => "configuration",
            Class::Hook => "hook",
            Class::Copy => "copy",
            Class::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How urgent it is; maps onto syslog severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Needs attention soon (storage filling, a slow snapshot).
    Warning,
    /// A backup did not happen or is not trustworthy.
    Error,
    /// Data already stored may be damaged.
    Critical,
}

impl Severity {
    /// The name used in JSON, syslog and mail.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }

    /// The syslog severity number (RFC 5424 table 2).
    pub fn syslog_level(self) -> u8 {
        match self {
            Severity::Warning => 4,
            Severity::Error => 3,
            Severity::Critical => 2,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an alert's condition holds or has cleared.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// It holds: the event reports a failure.
    #[default]
    Firing,
    /// It has cleared (a backup run succeeded, a snapshot is fresh again):
    /// the event repeats the id of the last one the channel got.
    Resolved,
}

impl AlertState {
    /// The name used in JSON and mail.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A short name that cannot be a path: 1..=64 characters of
/// `[A-Za-z0-9._:@+-]`, not `.` or `..`. Hook names, snapshot names and
/// labels go into events as tokens.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Token(String);

/// A string refused as a [`Token`]. It does not repeat the string, which may
/// be a path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not an alert token ({0}); use 1 to 64 of A-Z a-z 0-9 . _ : @ + - and no '/'")]
pub struct BadToken(&'static str);

impl Token {
    /// Longest token accepted.
    pub const MAX_LEN: usize = 64;

    /// Checks `s`.
    pub fn new(s: &str) -> Result<Token, BadToken> {
        if s.is_empty() {
            return Err(BadToken("empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(BadToken("too long"));
        }
        if s == "." || s == ".." {
            return Err(BadToken("a directory name"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._:@+-".contains(*c)))
        {
            return Err(if c == '/' {
                BadToken("contains '/'")
            } else {
                BadToken("contains a character outside the allowed set")
            });
        }
        Ok(Token(s.to_string()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token({})", self.0)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Token, D::Error> {
        let s = String::deserialize(d)?;
        Token::new(&s).map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for Token {
    type Err = BadToken;
    fn from_str(s: &str) -> Result<Token, BadToken> {
        Token::new(s)
    }
}

/// The numbers and ids an event carries; every field is optional and
/// appears in JSON only when set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fields {
    /// The hook, by its configured name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<Token>,
    /// The snapshot, by name (its UTC time) or label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<Token>,
    /// The pack involved.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_pack")]
    pub pack: Option<PackId>,
    /// The operating system's error number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    /// A child's exit status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    /// The signal that ended a child.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Bytes in use on the storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_bytes: Option<u64>,
    /// Size of the storage in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Fill of the storage, whole percent (rounded down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fill_percent: Option<u8>,
    /// The configured threshold, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_percent: Option<u8>,
    /// How long something took, or how old the newest snapshot is, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_secs: Option<u64>,
    /// The limit that `elapsed_secs` went over, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit_secs: Option<u64>,
    /// How many attempts were made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// One alert. Build it with [`Event::new`] and the `with_*` methods.
///
/// Serialized (JSON), it has every field below plus `message`, rendered from
/// the kind's template; reading an event back ignores `message` and renders
/// it again.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Event {
    id: EventId,
    kind: Kind,
    class: Class,
    severity: Severity,
    #[serde(default, with = "opt_repo")]
    repository: Option<RepoId>,
    host: String,
    #[serde(with = "rfc3339")]
    time: SystemTime,
    #[serde(default, with = "opt_rfc3339")]
    first_seen: Option<SystemTime>,
    count: u64,
    #[serde(default)]
    state: AlertState,
    #[serde(default)]
    fields: Fields,
}

/// An event's random id, 16 bytes of hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct EventId([u8; 16]);

impl EventId {
    /// A fresh random id.
    pub fn random() -> EventId {
        EventId(rand::random())
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<EventId, D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 16];
        hex::decode_to_slice(&s, &mut out).map_err(serde::de::Error::custom)?;
        Ok(EventId(out))
    }
}

impl Event {
    /// An event of `kind` and `class` that happened at `time` on this host,
    /// with the kind's usual severity (raised to critical for corruption).
    pub fn new(kind: Kind, class: Class, time: SystemTime) -> Event {
        let severity = match (kind, class) {
            (_, Class::Corruption) => Severity::Critical,
            (Kind::StorageFull | Kind::SnapshotSlow, _) => Severity::Warning,
            (
                Kind::RunFailed
                | Kind::HookFailed
                | Kind::StorageError
                | Kind::BackupMissed
                | Kind::DrillMissedRto
                | Kind::DrillFailed
                | Kind::VerifyFailed,
                _,
            ) => Severity::Error,
        };
        Event {
            id: EventId::random(),
            kind,
            class,
            severity,
            repository: None,
            host: host_name(),
            time,
            first_seen: None,
            count: 1,
            state: AlertState::Firing,
            fields: Fields::default(),
        }
    }

    /// An event for a failed I/O operation: the class from [`super::classify`],
    /// the errno as a field. The error's text is dropped, since it may name a path.
    pub fn from_io_error(kind: Kind, err: &std::io::Error, time: SystemTime) -> Event {
        let mut e = Event::new(kind, super::classify(err), time);
        e.fields.errno = err.raw_os_error();
        e
    }

    /// Sets the repository.
    pub fn with_repository(mut self, id: RepoId) -> Event {
        self.repository = Some(id);
        self
    }

    /// Sets the fields.
    pub fn with_fields(mut self, fields: Fields) -> Event {
        self.fields = fields;
        self
    }

    /// Overrides the severity.
    pub fn with_severity(mut self, severity: Severity) -> Event {
        self.severity = severity;
        self
    }

    /// Overrides the class (e.g. an EIO that verification showed to be corruption).
    pub fn with_class(mut self, class: Class) -> Event {
        self.class = class;
        if class == Class::Corruption {
            self.severity = Severity::Critical;
        }
        self
    }

    /// Overrides the host name (tests; a host known by another name).
    pub fn with_host(mut self, host: Token) -> Event {
        self.host = host.0;
        self
    }

    /// The event's id.
    pub fn id(&self) -> EventId {
        self.id
    }
    /// What happened.
    pub fn kind(&self) -> Kind {
        self.kind
    }
    /// Why.
    pub fn class(&self) -> Class {
        self.class
    }
    /// How urgent.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// Which repository, if one is known.
    pub fn repository(&self) -> Option<RepoId> {
        self.repository
    }
    /// The host that raised it.
    pub fn host(&self) -> &str {
        &self.host
    }
    /// When it happened (the latest occurrence).
    pub fn time(&self) -> SystemTime {
        self.time
    }
    /// When it was first seen, if it repeated.
    pub fn first_seen(&self) -> Option<SystemTime> {
        self.first_seen
    }
    /// How many times it was seen (de-duplicated occurrences included).
    pub fn count(&self) -> u64 {
        self.count
    }
    /// Whether it reports a failure or that the failure cleared.
    pub fn state(&self) -> AlertState {
        self.state
    }
    /// Ids and numbers.
    pub fn fields(&self) -> &Fields {
        &self.fields
    }

    /// The notice that this alert cleared at `time`, under `id` (that of
    /// the last event sent).
    pub(crate) fn resolved(&self, id: EventId, time: SystemTime) -> Event {
        Event {
            id,
            time,
            state: AlertState::Resolved,
            ..self.clone()
        }
    }

    pub(crate) fn set_repeat(&mut self, count: u64, first_seen: SystemTime) {
        self.count = count;
        self.first_seen = (count > 1).then_some(first_seen);
    }

    /// The one-line message, rendered from the kind's template.
    pub fn message(&self) -> String {
        let f = &self.fields;
        let mut m = match self.state {
            AlertState::Firing => String::new(),
            AlertState::Resolved => "resolved: ".to_string(),
        };
        m.push_str(&match self.kind {
            Kind::RunFailed => "backup run failed".to_string(),
            Kind::HookFailed => match &f.hook {
                Some(h) => format!("hook {h} failed"),
                None => "a hook failed".to_string(),
            },
            Kind::StorageError => "storage I/O failed".to_string(),
            Kind::StorageFull => match (f.fill_percent, f.threshold_percent) {
                (Some(p), Some(t)) => format!("storage is {p}% full (threshold {t}%)"),
                _ => "storage is filled above its threshold".to_string(),
            },
            Kind::SnapshotSlow => "snapshot took longer than expected".to_string(),
            Kind::BackupMissed => "no snapshot within the maximum age".to_string(),
            Kind::DrillMissedRto => {
                "a restore drill took longer than its recovery-time objective".to_string()
            }
            Kind::DrillFailed => "a restore drill failed".to_string(),
            Kind::VerifyFailed => "the verify cycle found damage".to_string(),
        });
        m.push_str(&format!(" ({})", self.class));
        if let Some(r) = self.repository {
            m.push_str(&format!(" in repository {}", r.short()));
        }
        let mut details = Vec::new();
        if let Some(s) = &f.snapshot {
            details.push(format!("snapshot {s}"));
        }
        if let Some(p) = f.pack {
            details.push(format!("pack {}", p.short()));
        }
        if let Some(e) = f.errno {
            details.push(format!("errno {e} ({})", errno_name(e)));
        }
        if let Some(s) = f.exit_status {
            details.push(format!("exit status {s}"));
        }
        if let Some(s) = f.signal {
            details.push(format!("signal {s}"));
        }
        match (f.elapsed_secs, f.limit_secs) {
            (Some(e), Some(l)) => details.push(format!(
                "{} (limit {})",
                humantime::format_duration(Duration::from_secs(e)),
                humantime::format_duration(Duration::from_secs(l))
            )),
            (Some(e), None) => details.push(format!(
                "{}",
                humantime::format_duration(Duration::from_secs(e))
            )),
            _ => {}
        }
        if let Some(a) = f.attempts {
            details.push(format!("{a} attempts"));
        }
        if !details.is_empty() {
            m.push_str(": ");
            m.push_str(&details.join(", "));
        }
        if self.count > 1 {
            m.push_str(&format!(" [seen {} times]", self.count));
        }
        m
    }

    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an event serializes")
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Wire<'a> {
            id: EventId,
            kind: Kind,
            class: Class,
            severity: Severity,
            #[serde(with = "opt_repo")]
            repository: &'a Option<RepoId>,
            host: &'a str,
            #[serde(with = "rfc3339")]
            time: &'a SystemTime,
            #[serde(with = "opt_rfc3339", skip_serializing_if = "Option::is_none")]
            first_seen: &'a Option<SystemTime>,
            count: u64,
            state: AlertState,
            message: String,
            fields: &'a Fields,
        }
        Wire {
            id: self.id,
            kind: self.kind,
            class: self.class,
            severity: self.severity,
            repository: &self.repository,
            host: &self.host,
            time: &self.time,
            first_seen: &self.first_seen,
            count: self.count,
            state: self.state,
            message: self.message(),
            fields: &self.fields,
        }
        .serialize(s)
    }
}

/// The symbolic name of an errno, for messages.
fn errno_name(e: i32) -> &'static str {
    match e {
        libc::ENOSPC => "ENOSPC",
        libc::EDQUOT => "EDQUOT",
        libc::EIO => "EIO",
        libc::EROFS => "EROFS",
        libc::EACCES => "EACCES",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::EUCLEAN => "EUCLEAN",
        libc::EBADMSG => "EBADMSG",
        libc::EFBIG => "EFBIG",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        _ => "other",
    }
}

/// This machine's host name, or "unknown".
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf, which we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The missed-backup alert: `Some` when the newest snapshot (`last`) is older
/// than `max_age` at `now`. For a repository without snapshots, pass its
/// creation time, so a new repository gets one `max_age` of grace. A `last`
/// in the future (clock skew) counts as fresh.
pub fn freshness(last: SystemTime, now: SystemTime, max_age: Duration) -> Option<Event> {
    let age = now.duration_since(last).ok()?;
    if age <= max_age {
        return None;
    }
    Some(
        Event::new(Kind::BackupMissed, Class::Timeout, now).with_fields(Fields {
            elapsed_secs: Some(age.as_secs()),
            limit_secs: Some(max_age.as_secs()),
            ..Fields::default()
        }),
    )
}

/// The fill alert: `Some` when `used` is at least `threshold_percent` of `total`.
/// At 95 % and above the severity is error rather than warning.
pub fn fill_check(used: u64, total: u64, threshold_percent: u8) -> Option<Event> {
    if total == 0 {
        return None;
    }
    let fill = (used as u128 * 100 / total as u128).min(255) as u8;
    if (used as u128) * 100 < threshold_percent as u128 * total as u128 {
        return None;
    }
    let e = Event::new(Kind::StorageFull, Class::Capacity, SystemTime::now()).with_fields(Fields {
        used_bytes: Some(used),
        total_bytes: Some(total),
        fill_percent: Some(fill),
        threshold_percent: Some(threshold_percent),
        ..Fields::default()
    });
    Some(if fill >= 95 {
        e.with_severity(Severity::Error)
    } else {
        e
    })
}

pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

mod rfc3339 {
    use super::*;
    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_seconds(*t))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }
}

mod opt_rfc3339 {
    use super::*;
    pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.collect_str(&humantime::format_rfc3339_seconds(*t)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

pub(crate) mod opt_repo {
    use super::*;
    pub(crate) fn serialize<S: Serializer>(r: &Option<RepoId>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) => s.collect_str(r),
            None => s.serialize_none(),
        }
    }
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RepoId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod opt_pack {
    use super::*;
    pub fn serialize<S: Serializer>(r: &Option<PackId>, s: S) -> Result<S::Ok, S::Error> {
        match r {
            Some(r) => s.collect_str(r),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PackId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}
