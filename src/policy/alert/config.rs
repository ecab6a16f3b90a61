//! The `[alerts]` table of the host configuration (strata.toml(5)).
//!
//! ```toml
//! [alerts]
//! dedup_window = "1h"          # a repeat within this is counted, not sent
//! forget_after = "7d"          # an alert not seen for this long starts over
//! fill_threshold = "80%"
//! max_snapshot_age = "25h"
//! slow_snapshot = "1h"
//!
//! [[alerts.channel]]           # tried in order; escalation moves down the list
//! type = "syslog"
//! escalate_after = { count = 3, elapsed = "2h" }
//!
//! [[alerts.channel]]
//! type = "webhook"
//! url = "https://alerts.example/strata"
//! header_file = "/etc/strata/webhook.header"   # one "Name: value" line, mode 0600
//! ca_file = "/etc/strata/internal-ca.pem"      # trusted besides the system's roots
//! timeout = "10s"
//!
//! [[alerts.channel]]
//! type = "email"
//! to = ["oncall@example.org"]
//!
//! [[alerts.channel]]
//! type = "command"
//! command = ["/usr/local/bin/page-oncall", "--team", "storage"]
//! ```
//!
//! Parsing validates everything it can without touching the file system; the
//! header and CA files are read when the [`super::Alerter`] is built.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Default for `dedup_window`.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(3600);
/// Default for `forget_after`.
pub const DEFAULT_FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default for `fill_threshold`, percent.
pub const DEFAULT_FILL_THRESHOLD: u8 = 80;
/// Default for `max_snapshot_age`.
pub const DEFAULT_MAX_SNAPSHOT_AGE: Duration = Duration::from_secs(25 * 3600);
/// Default for `slow_snapshot`.
pub const DEFAULT_SLOW_SNAPSHOT: Duration = Duration::from_secs(3600);
/// Default for a channel's `timeout`.
pub const DEFAULT_CHANNEL_TIMEOUT: Duration = Duration::from_secs(10);
/// Default syslog socket.
pub const DEFAULT_SYSLOG_SOCKET: &str = "/dev/log";
/// Default sendmail program.
pub const DEFAULT_SENDMAIL: &str = "/usr/sbin/sendmail";

/// The validated `[alerts]` table.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "RawAlertConfig")]
pub struct AlertConfig {
    /// A repeat of the same alert within this window is counted, not sent.
    pub dedup_window: Duration,
    /// An alert not seen for this long is forgotten: its count and escalation start over.
    pub forget_after: Duration,
    /// Storage fill that raises `storage_full`, percent (1..=100).
    pub fill_threshold: u8,
    /// Age of the newest snapshot that raises `backup_missed`.
    pub max_snapshot_age: Duration,
    /// Snapshot duration that raises `snapshot_slow`.
    pub slow_snapshot: Duration,
    /// Channels in escalation order; syslog on /dev/log when the table names none.
    pub channels: Vec<ChannelConfig>,
}

impl Default for AlertConfig {
    fn default() -> Self {
        AlertConfig {
            dedup_window: DEFAULT_DEDUP_WINDOW,
            forget_after: DEFAULT_FORGET_AFTER,
            fill_threshold: DEFAULT_FILL_THRESHOLD,
            max_snapshot_age: DEFAULT_MAX_SNAPSHOT_AGE,
            slow_snapshot: DEFAULT_SLOW_SNAPSHOT,
            channels: vec![ChannelConfig {
                kind: ChannelKind::Syslog {
                    socket: PathBuf::from(DEFAULT_SYSLOG_SOCKET),
                    facility: Facility::Daemon,
                },
                timeout: DEFAULT_CHANNEL_TIMEOUT,
                escalate_after: None,
            }],
        }
    }
}

impl AlertConfig {
    /// Parses the contents of an `[alerts]` table given as its own TOML
    /// document (without the `[alerts]` header). The host configuration
    /// embeds [`AlertConfig`] directly instead.
    pub fn parse(text: &str) -> Result<AlertConfig, AlertConfigError> {
        Ok(toml::from_str(text)?)
    }
}

/// An `[alerts]` table that cannot be used: not TOML, or a key unknown or
/// of the wrong type. The text names the key and value; the TOML error,
/// whose text ends in a newline, is shown without it.
#[derive(Debug, thiserror::Error)]
#[error("alerts configuration: {}", .0.to_string().trim_end())]
pub struct AlertConfigError(#[from] pub toml::de::Error);

/// One channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelConfig {
    /// Where it sends.
    pub kind: ChannelKind,
    /// How long one send may take.
    pub timeout: Duration,
    /// When an alert moves on to the next channel.
    pub escalate_after: Option<Escalation>,
}

/// Where a channel sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelKind {
    /// A datagram to the syslog socket (journald reads it too).
    Syslog {
        /// The socket, `/dev/log` by default.
        socket: PathBuf,
        /// The syslog facility.
        facility: Facility,
    },
    /// An HTTP POST of the event's JSON.
    Webhook {
        /// `http://host[:port]/path` or `https://...`.
        url: String,
        /// A file holding one `Name: value` header line (e.g. Authorization).
        header_file: Option<PathBuf>,
        /// PEM certificates trusted for an https `url`, besides the system's roots.
        ca_file: Option<PathBuf>,
    },
    /// A plain-text mail through the system's sendmail.
    Email {
        /// Recipients.
        to: Vec<String>,
        /// Sender, if not sendmail's default.
        from: Option<String>,
        /// The sendmail program.
        sendmail: PathBuf,
    },
    /// A program that gets the event's JSON on standard input.
    Command {
        /// Program (absolute path) and arguments.
        argv: Vec<String>,
    },
}

impl ChannelKind {
    /// The channel's type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Syslog { .. } => "syslog",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Email { .. } => "email",
            ChannelKind::Command { .. } => "command",
        }
    }
}

/// When an alert moves to the next channel: after `count` occurrences at
/// this channel, or once it has been outstanding at this channel for
/// `elapsed`, whichever comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Escalation {
    /// Occurrences (sent or counted) at this channel.
    pub count: Option<u64>,
    /// Time since the alert reached this channel.
    pub elapsed: Option<Duration>,
}

/// Syslog facilities strata may log under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Facility {
    /// `user` (1).
    User,
    /// `daemon` (3), the default.
    Daemon,
    /// `local0`..`local7` (16..23).
    Local(u8),
}

impl Facility {
    /// The facility number.
    pub fn code(self) -> u8 {
        match self {
            Facility::User => 1,
            Facility::Daemon => 3,
            Facility::Local(n) => 16 + n,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertConfig {
    dedup_window: Option<String>,
    forget_after: Option<String>,
    fill_threshold: Option<toml::Value>,
    max_snapshot_age: Option<String>,
    slow_snapshot: Option<String>,
    #[serde(default)]
    channel: Vec<RawChannel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    #[serde(rename = "type")]
    kind: String,
    timeout: Option<String>,
    escalate_after: Option<RawEscalation>,
    // syslog
    socket: Option<PathBuf>,
    facility: Option<String>,
    // webhook
    url: Option<String>,
    header_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    // email
    to: Option<Vec<String>>,
    from: Option<String>,
    sendmail: Option<PathBuf>,
    // command
    command: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalation {
    count: Option<u64>,
    elapsed: Option<String>,
}

/// What is wrong with `[alerts]`, naming the key. Shown inside the TOML
/// error of the host configuration (serde keeps only the message).
#[derive(Debug, thiserror::Error)]
pub enum InvalidAlerts {
    /// Not a duration.
    #[error("{key} = {value:?} is not a duration such as \"90s\", \"10m\" or \"25h\" ({source})")]
    NotDuration {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// Why.
        source: humantime::DurationError,
    },
    /// A zero duration.
    #[error("{key} = {value:?} must be longer than zero")]
    ZeroDuration {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// Not a percentage from 1 to 100.
    #[error("{key} = {value} must be a percentage from 1% to 100%, such as \"80%\"")]
    NotPercent {
        /// The key.
        key: String,
        /// Its value, as TOML.
        value: String,
    },
    /// A relative path.
    #[error("{key} = {path:?} must be an absolute path")]
    NotAbsolute {
        /// The key.
        key: String,
        /// The path.
        path: PathBuf,
    },
    /// Not a plain mail address.
    #[error("{key} = {value:?} is not a plain mail address such as \"oncall@example.org\"")]
    NotMailAddress {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A URL that is not http or https.
    #[error("{key} = {url:?} must start with http:// or https://")]
    NotHttp {
        /// The key.
        key: String,
        /// The URL.
        url: String,
    },
    /// A URL without a host, or with credentials.
    #[error("{key} = {url:?} has no host (or carries credentials; use header_file)")]
    NoHost {
        /// The key.
        key: String,
        /// The URL.
        url: String,
    },
    /// A URL with whitespace or control characters.
    #[error("{key} = {url:?} contains whitespace")]
    UrlWhitespace {
        /// The key.
        key: String,
        /// The URL.
        url: String,
    },
    /// A key of another channel type.
    #[error("{at}: key {name} does not apply to type = {kind:?}")]
    Foreign {
        /// The channel, `alerts.channel[N]`.
        at: String,
        /// The key.
        name: &'static str,
        /// The channel's type.
        kind: String,
    },
    /// An unknown syslog facility.
    #[error("{key} = {value:?} is not one of daemon, user, local0..local7")]
    Facility {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// A channel type without a key it needs.
    #[error("{at}: type = {kind:?} needs {needs}")]
    Needs {
        /// The channel, `alerts.channel[N]`.
        at: String,
        /// The channel's type.
        kind: &'static str,
        /// What it needs.
        needs: &'static str,
    },
    /// A CA file for a plain http URL.
    #[error("{key}: ca_file applies to an https url only, not {url:?}")]
    CaFileWithoutHttps {
        /// The key.
        key: String,
        /// The URL.
        url: String,
    },
    /// An unknown channel type.
    #[error("{key} = {value:?} is not one of syslog, webhook, email, command")]
    UnknownType {
        /// The key.
        key: String,
        /// Its value.
        value: String,
    },
    /// `escalate_after.count = 0`.
    #[error("{key} = 0 must be at least 1")]
    ZeroCount {
        /// The key.
        key: String,
    },
    /// `escalate_after` with neither count nor elapsed.
    #[error("{key}: give count, elapsed or both")]
    NoEscalation {
        /// The key.
        key: String,
    },
}

fn duration(key: &str, value: Option<&str>, default: Duration) -> Result<Duration, InvalidAlerts> {
    let Some(v) = value else {
        return Ok(default);
    };
    let d = humantime::parse_duration(v).map_err(|source| InvalidAlerts::NotDuration {
        key: key.to_owned(),
        value: v.to_owned(),
        source,
    })?;
    if d.is_zero() {
        return Err(InvalidAlerts::ZeroDuration {
            key: key.to_owned(),
            value: v.to_owned(),
        });
    }
    Ok(d)
}

fn percent(key: &str, value: Option<&toml::Value>) -> Result<u8, InvalidAlerts> {
    let n = match value {
        None => return Ok(DEFAULT_FILL_THRESHOLD),
        Some(toml::Value::Integer(n)) => Some(*n),
        Some(toml::Value::String(s)) => s
            .trim()
            .strip_suffix('%')
            .unwrap_or(s.trim())
            .trim()
            .parse::<i64>()
            .ok(),
        Some(_) => None,
    };
    match n {
        Some(n @ 1..=100) => Ok(n as u8),
        _ => Err(InvalidAlerts::NotPercent {
            key: key.to_owned(),
            value: value.map_or_else(String::new, |v| v.to_string()),
        }),
    }
}

fn absolute(key: &str, p: &std::path::Path) -> Result<(), InvalidAlerts> {
    if p.is_absolute() {
        Ok(())
    } else {
        Err(InvalidAlerts::NotAbsolute {
            key: key.to_owned(),
            path: p.to_owned(),
        })
    }
}

fn mail_address(key: &str, a: &str) -> Result<(), InvalidAlerts> {
    let ok = !a.is_empty()
        && a.len() <= 254
        && a.contains('@')
        && !a.starts_with('-')
        && a.chars()
            .all(|c| c.is_ascii_graphic() && !"<>,;\"\\()[]".contains(c));
    if ok {
        Ok(())
    } else {
        Err(InvalidAlerts::NotMailAddress {
            key: key.to_owned(),
            value: a.to_owned(),
        })
    }
}

/// Checks an `http://` or `https://` URL: scheme, a host, no spaces or
/// control characters.
fn http_url(key: &str, url: &str) -> Result<(), InvalidAlerts> {
    let (key, url) = (key.to_owned(), url.to_owned());
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err(InvalidAlerts::NotHttp { key, url });
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() || host.contains('@') {
        return Err(InvalidAlerts::NoHost { key, url });
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidAlerts::UrlWhitespace { key, url });
    }
    Ok(())
}

impl TryFrom<RawAlertConfig> for AlertConfig {
    type Error = InvalidAlerts;

    fn try_from(raw: RawAlertConfig) -> Result<AlertConfig, InvalidAlerts> {
        let mut channels = Vec::new();
        for (i, c) in raw.channel.into_iter().enumerate() {
            channels.push(channel(i, c)?);
        }
        if channels.is_empty() {
            channels = AlertConfig::default().channels;
        }
        Ok(AlertConfig {
            dedup_window: duration(
                "alerts.dedup_window",
                raw.dedup_window.as_deref(),
                DEFAULT_DEDUP_WINDOW,
            )?,
            forget_after: duration(
                "alerts.forget_after",
                raw.forget_after.as_deref(),
                DEFAULT_FORGET_AFTER,
            )?,
            fill_threshold: percent("alerts.fill_threshold", raw.fill_threshold.as_ref())?,
            max_snapshot_age: duration(
                "alerts.max_snapshot_age",
                raw.max_snapshot_age.as_deref(),
                DEFAULT_MAX_SNAPSHOT_AGE,
            )?,
            slow_snapshot: duration(
                "alerts.slow_snapshot",
                raw.slow_snapshot.as_deref(),
                DEFAULT_SLOW_SNAPSHOT,
            )?,
            channels,
        })
    }
}

fn channel(i: usize, c: RawChannel) -> Result<ChannelConfig, InvalidAlerts> {
    let at = format!("alerts.channel[{i}]");
    let key = |k: &str| format!("{at}.{k}");
    let t = c.kind.as_str();
    // Keys that belong to other channel types are refused, naming the type.
    let foreign = |name, present: bool, allowed: &[&str]| -> Result<(), InvalidAlerts> {
        if present && !allowed.contains(&t) {
            Err(InvalidAlerts::Foreign {
                at: at.clone(),
                name,
                kind: t.to_owned(),
            })
        } else {
            Ok(())
        }
    };
    foreign("socket", c.socket.is_some(), &["syslog"])?;
    foreign("facility", c.facility.is_some(), &["syslog"])?;
    foreign("url", c.url.is_some(), &["webhook"])?;
    foreign("header_file", c.header_file.is_some(), &["webhook"])?;
    foreign("ca_file", c.ca_file.is_some(), &["webhook"])?;
    foreign("to", c.to.is_some(), &["email"])?;
    foreign("from", c.from.is_some(), &["email"])?;
    foreign("sendmail", c.sendmail.is_some(), &["email"])?;
    foreign("command", c.command.is_some(), &["command"])?;

    let kind = match t {
        "syslog" => {
            let socket = c
                .socket
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SYSLOG_SOCKET));
            absolute(&key("socket"), &socket)?;
            let facility = match c.facility.as_deref() {
                None | Some("daemon") => Facility::Daemon,
                Some("user") => Facility::User,
                Some(f) => match f.strip_prefix("local").and_then(|n| n.parse::<u8>().ok()) {
                    Some(n @ 0..=7) => Facility::Local(n),
                    _ => {
                        return Err(InvalidAlerts::Facility {
                            key: key("facility"),
                            value: f.to_owned(),
                        })
                    }
                },
            };
            ChannelKind::Syslog { socket, facility }
        }
        "webhook" => {
            let url = c.url.ok_or_else(|| InvalidAlerts::Needs {
                at: at.clone(),
                kind: "webhook",
                needs: "url",
            })?;
            http_url(&key("url"), &url)?;
            if let Some(h) = &c.header_file {
                absolute(&key("header_file"), h)?;
            }
            if let Some(ca) = &c.ca_file {
                absolute(&key("ca_file"), ca)?;
                if !url.starts_with("https://") {
                    return Err(InvalidAlerts::CaFileWithoutHttps {
                        key: key("ca_file"),
                        url,
                    });
                }
            }
            ChannelKind::Webhook {
                url,
                header_file: c.header_file,
                ca_file: c.ca_file,
            }
        }
        "email" => {
            let to = c.to.unwrap_or_default();
            if to.is_empty() {
                return Err(InvalidAlerts::Needs {
                    at,
                    kind: "email",
                    needs: "to = [\"address\", ...]",
                });
            }
            for a in &to {
                mail_address(&key("to"), a)?;
            }
            if let Some(f) = &c.from {
                mail_address(&key("from"), f)?;
            }
            let sendmail = c
                .sendmail
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SENDMAIL));
            absolute(&key("sendmail"), &sendmail)?;
            ChannelKind::Email {
                to,
                from: c.from,
                sendmail,
            }
        }
        "command" => {
            let argv = c.command.unwrap_or_default();
            let Some(program) = argv.first() else {
                return Err(InvalidAlerts::Needs {
                    at,
                    kind: "command",
                    needs: "command = [\"/path/to/program\", ...]",
                });
            };
            absolute(
                &format!("{}[0]", key("command")),
                std::path::Path::new(program),
            )?;
            ChannelKind::Command { argv }
        }
        other => {
            return Err(InvalidAlerts::UnknownType {
                key: key("type"),
                value: other.to_owned(),
            })
        }
    };
    let timeout = duration(
        &key("timeout"),
        c.timeout.as_deref(),
        DEFAULT_CHANNEL_TIMEOUT,
    )?;
    let escalate_after = match c.escalate_after {
        None => None,
        Some(e) => {
            let elapsed = e
                .elapsed
                .as_deref()
                .map(|v| duration(&key("escalate_after.elapsed"), Some(v), Duration::ZERO))
                .transpose()?;
            if e.count == Some(0) {
                return Err(InvalidAlerts::ZeroCount {
                    key: key("escalate_after.count"),
                });
            }
            if e.count.is_none() && elapsed.is_none() {
                return Err(InvalidAlerts::NoEscalation {
                    key: key("escalate_after"),
                });
            }
            Some(Escalation {
                count: e.count,
                elapsed,
            })
        }
    };
    Ok(ChannelConfig {
        kind,
        timeout,
        escalate_after,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_to_an_empty_table() {
        let c = AlertConfig::parse("").unwrap();
        assert_eq!(c.dedup_window, DEFAULT_DEDUP_WINDOW);
        assert_eq!(c.fill_threshold, 80);
        assert_eq!(c.max_snapshot_age, Duration::from_secs(25 * 3600));
        assert_eq!(
            c.channels,
            AlertConfig::default().channels,
            "syslog when none given"
        );
    }

    #[test]
    fn a_bad_table_keeps_the_toml_error_as_its_source() {
        use std::error::Error;
        let e = AlertConfig::parse("fill_threshold = \"high\"").unwrap_err();
        let toml = e
            .source()
            .unwrap()
            .downcast_ref::<toml::de::Error>()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("alerts configuration: {}", toml.to_string().trim_end())
        );
        assert!(e.to_string().contains("fill_threshold"), "{e}");
        assert_eq!(
            crate::sys::chain::Chain(&e).to_string(),
            e.to_string(),
            "the source is quoted once"
        );
    }
}
