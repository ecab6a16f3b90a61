//! Sending one event through one channel: syslog, webhook, email, command.
//!
//! Every send is bounded by the channel's timeout: children are killed (with
//! their process group) when it runs out, sockets carry it as their I/O
//! timeout, HTTP requests as their overall deadline. An https webhook trusts
//! the system's root certificates and its `ca_file`. Children get a cleared
//! environment plus a fixed PATH, standard output and error discarded, and
//! only the event on standard input; std opens every descriptor close-on-exec,
//! so nothing else is inherited.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use super::config::{ChannelConfig, ChannelKind, Escalation, Facility};
use super::event::{AlertState, Event};
use crate::sys::process::{Ended, Program};

/// The PATH a child process gets.
pub const CHILD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A channel could not deliver an event.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The channel did not finish within its timeout.
    #[error("{channel} channel timed out after {}", humantime::format_duration(*.timeout))]
    Timeout {
        /// The channel's name.
        channel: String,
        /// Its timeout.
        timeout: Duration,
    },
    /// The receiver answered, but not with success.
    #[error("{channel} channel: {detail}")]
    Refused {
        /// The channel's name.
        channel: String,
        /// What it said (status, exit status).
        detail: String,
    },
    /// Sending failed (connecting, writing, starting a program).
    #[error("{channel} channel: {source}")]
    Io {
        /// The channel's name.
        channel: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// TLS with an https receiver failed: its certificate is not trusted
    /// (not from the system's roots or the `ca_file`), does not name it,
    /// or the two have no protocol in common.
    #[error("{channel} channel: TLS with the receiver failed: {detail}")]
    Tls {
        /// The channel's name.
        channel: String,
        /// What rustls said.
        detail: String,
    },
    /// The channel cannot be set up (e.g. the header file is unsafe).
    #[error("{channel} channel is misconfigured: {source}")]
    Setup {
        /// The channel's name.
        channel: String,
        /// What is wrong.
        source: Box<SetupError>,
    },
}

/// What keeps a webhook channel from being set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The header file does not read.
    #[error("header_file {path:?}: {source}")]
    HeaderFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The header file is not a regular file.
    #[error("header_file {0:?} is not a regular file")]
    HeaderNotAFile(PathBuf),
    /// Someone else owns the header file.
    #[error("header_file {path:?} is owned by uid {uid}, not root")]
    HeaderOwner {
        /// The file.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// Group or others may read the header file.
    #[error("header_file {path:?} has mode {mode:o}; it holds a secret, make it 0600")]
    HeaderMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// More than one line.
    #[error("header_file {0:?} must hold exactly one line")]
    HeaderLines(PathBuf),
    /// No `Name: value`.
    #[error("header_file {0:?} must hold one \"Name: value\" line")]
    HeaderNotAHeader(PathBuf),
    /// The header name is not a token.
    #[error("header_file {0:?}: the header name is not a token")]
    HeaderName(PathBuf),
    /// The CA file cannot be used.
    #[error("{key} = {path:?} {source}")]
    CaFile {
        /// The key, `alerts.channel[N].ca_file`.
        key: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: CaFileError,
    },
}

/// What is wrong with a CA file (shown after its name).
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// It does not read.
    #[error("cannot be read: {0}")]
    Read(#[source] std::io::Error),
    /// A certificate rustls refuses.
    #[error("holds a certificate that cannot be used ({0})")]
    Certificate(#[source] rustls::Error),
    /// Not PEM.
    #[error("is not a PEM file ({0})")]
    NotPem(#[source] ureq::Error),
    /// No certificate in it.
    #[error("holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    NoCertificate,
}

/// See [`Channel::identity`].
fn identity(kind: &ChannelKind) -> String {
    let destination = match kind {
        ChannelKind::Syslog { socket, facility } => {
            format!("{}\0{facility:?}", socket.display())
        }
        ChannelKind::Webhook { url, .. } => url.clone(),
        ChannelKind::Email { to, .. } => to.join("\0"),
        ChannelKind::Command { argv } => argv.join("\0"),
    };
    let mut hasher = blake3::Hasher::new_derive_key("strata alert channel identity v1");
    hasher.update(kind.type_name().as_bytes());
    hasher.update(b"\0");
    hasher.update(destination.as_bytes());
    hasher.finalize().to_hex()[..16].to_string()
}

/// A ready-to-use channel.
pub struct Channel {
    name: String,
    identity: String,
    target: Target,
    timeout: Duration,
    escalate_after: Option<Escalation>,
}

enum Target {
    Syslog {
        socket: PathBuf,
        facility: Facility,
    },
    Webhook {
        url: String,
        header: Option<(String, String)>,
        tls: TlsConfig,
    },
    Email {
        to: Vec<String>,
        from: Option<String>,
        sendmail: PathBuf,
    },
    Command {
        argv: Vec<String>,
    },
}

impl std::fmt::Debug for Channel {
    // The webhook header is a secret; show only the name.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Channel {
    /// Builds channel number `index` from its configuration; reads the
    /// webhook's header file, which must be a regular file owned by root (or
    /// by the user running strata) and not readable by group or others, and
    /// its CA file, which must hold PEM certificates.
    pub fn from_config(index: usize, c: &ChannelConfig) -> Result<Channel, ChannelError> {
        let name = format!("{}#{index}", c.kind.type_name());
        let setup = |source| ChannelError::Setup {
            channel: name.clone(),
            source: Box::new(source),
        };
        let target = match &c.kind {
            ChannelKind::Syslog { socket, facility } => Target::Syslog {
                socket: socket.clone(),
                facility: *facility,
            },
            ChannelKind::Webhook {
                url,
                header_file,
                ca_file,
            } => Target::Webhook {
                url: url.clone(),
                header: header_file
                    .as_deref()
                    .map(read_header_file)
                    .transpose()
                    .map_err(setup)?,
                tls: if url.starts_with("https://") {
                    let key = format!("alerts.channel[{index}].ca_file");
                    let roots = roots(ca_file.as_deref(), &key).map_err(setup)?;
                    TlsConfig::builder().root_certs(roots).build()
                } else {
                    TlsConfig::default()
                },
            },
            ChannelKind::Email { to, from, sendmail } => Target::Email {
                to: to.clone(),
                from: from.clone(),
                sendmail: sendmail.clone(),
            },
            ChannelKind::Command { argv } => Target::Command { argv: argv.clone() },
        };
        Ok(Channel {
            name,
            identity: identity(&c.kind),
            target,
            timeout: c.timeout,
            escalate_after: c.escalate_after,
        })
    }

    /// The channel's name in reports: type and position, e.g. `webhook#1`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Who the channel reaches, as a hash of its type and destination: it
    /// survives reordering the channels in the configuration, and keeps
    /// webhook URLs (which may carry tokens) out of the state file.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// How long one send may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When alerts move on from this channel.
    pub fn escalate_after(&self) -> Option<Escalation> {
        self.escalate_after
    }

    /// Sends `event`, within the channel's timeout.
    pub fn send(&self, event: &Event) -> Result<(), ChannelError> {
        let io = |source| ChannelError::Io {
            channel: self.name.clone(),
            source,
        };
        match &self.target {
            Target::Syslog { socket, facility } => {
                let msg = syslog_line(event, *facility);
                let sock = UnixDatagram::unbound().map_err(io)?;
                sock.set_write_timeout(Some(self.timeout)).map_err(io)?;
                match sock.send_to(msg.as_bytes(), socket) {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(self.timed_out()),
                    Err(e) => Err(io(e)),
                }
            }
            Target::Webhook { url, header, tls } => self.post(url, header.as_ref(), tls, event),
            Target::Email { to, from, sendmail } => {
                let argv = [
                    sendmail.to_string_lossy().into_owned(),
                    "-t".into(),
                    "-oi".into(),
                ];
                self.run(&argv, mail_text(event, to, from.as_deref()).as_bytes())
            }
            Target::Command { argv } => self.run(argv, format!("{}\n", event.to_json()).as_bytes()),
        }
    }

    fn timed_out(&self) -> ChannelError {
        ChannelError::Timeout {
            channel: self.name.clone(),
            timeout: self.timeout,
        }
    }

    fn tls_failed(&self, e: &rustls::Error) -> ChannelError {
        ChannelError::Tls {
            channel: self.name.clone(),
            detail: e.to_string(),
        }
    }

    fn post(
        &self,
        url: &str,
        header: Option<&(String, String)>,
        tls: &TlsConfig,
        event: &Event,
    ) -> Result<(), ChannelError> {
        let agent = ureq::Agent::new_with_config(
            ureq::Agent::config_builder()
                .tls_config(tls.clone())
                .timeout_global(Some(self.timeout))
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
                .build(),
        );
        let mut req = agent.post(url).header("Content-Type", "application/json");
        if let Some((name, value)) = header {
            req = req.header(name.as_str(), value.as_str());
        }
        match req.send(event.to_json()) {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(ChannelError::Refused {
                channel: self.name.clone(),
                detail: format!("receiver answered HTTP {}", resp.status()),
            }),
            Err(ureq::Error::Timeout(_)) => Err(self.timed_out()),
            Err(ureq::Error::Rustls(e)) => Err(self.tls_failed(&e)),
            Err(ureq::Error::Io(e)) => match e.get_ref().and_then(|e| e.downcast_ref()) {
                Some(tls) => Err(self.tls_failed(tls)),
                None => Err(ChannelError::Io {
                    channel: self.name.clone(),
                    source: e,
                }),
            },
            Err(e) => Err(ChannelError::Refused {
                channel: self.name.clone(),
                detail: e.to_string(),
            }),
        }
    }

    /// Runs `argv` with `input` on standard input and waits at most the timeout.
    fn run(&self, argv: &[String], input: &[u8]) -> Result<(), ChannelError> {
        let io = |source| ChannelError::Io {
            channel: self.name.clone(),
            source,
        };
        let deadline = Instant::now() + self.timeout;
        let mut child = Program::new(&argv[0], &argv[1..])
            .envs([("PATH", CHILD_PATH)])
            .dir("/")
            .input(input.to_vec())
            .start()
            .map_err(io)?;
        let ended = child.wait(deadline);
        let done = child.finish(ended);
        let status = match done.ended {
            Ended::Exited(s) => s,
            Ended::TimedOut(_) => return Err(self.timed_out()),
            Ended::Lost(e) => return Err(io(e)),
            Ended::Interrupted(..) => {
                return Err(io(std::io::Error::from(std::io::ErrorKind::Interrupted)))
            }
        };
        if !status.success() {
            let detail = match (status.code(), status.signal()) {
                (Some(c), _) => format!("{} exited with status {c}", argv[0]),
                (None, Some(s)) => format!("{} was killed by signal {s}", argv[0]),
                (None, None) => format!("{} failed", argv[0]),
            };
            return Err(ChannelError::Refused {
                channel: self.name.clone(),
                detail,
            });
        }
        // A program that exits 0 without reading everything is taken at its word.
        if let Err(e) = done.input {
            if e.kind() != std::io::ErrorKind::BrokenPipe {
                return Err(io(e));
            }
        }
        Ok(())
    }
}

/// The classic syslog line that glibc's syslog(3) writes to /dev/log, which
/// rsyslog and journald both parse: `<PRI>TAG[PID]: MSG`. The timestamp is
/// left out; both take the time of reception.
pub fn syslog_line(event: &Event, facility: Facility) -> String {
    // A resolved alert is a notice (5), whatever its severity was.
    let level = match event.state() {
        AlertState::Firing => event.severity().syslog_level(),
        AlertState::Resolved => 5,
    };
    let pri = facility.code() as u32 * 8 + level as u32;
    format!(
        "<{pri}>strata[{}]: {} kind={} class={} severity={} repository={} count={} id={}",
        std::process::id(),
        event.message(),
        event.kind(),
        event.class(),
        event.severity(),
        event
            .repository()
            .map_or_else(|| "-".to_string(), |r| r.to_string()),
        event.count(),
        event.id(),
    )
}

/// The mail given to `sendmail -t -oi`.
pub fn mail_text(event: &Event, to: &[String], from: Option<&str>) -> String {
    let mut m = String::new();
    if let Some(f) = from {
        m.push_str(&format!("From: {f}\n"));
    }
    m.push_str(&format!("To: {}\n", to.join(", ")));
    m.push_str(&format!(
        "Subject: [strata {}] {} on {}{}\n",
        match event.state() {
            AlertState::Firing => event.severity().name(),
            AlertState::Resolved => AlertState::Resolved.name(),
        },
        event.kind(),
        event.host(),
        event
            .repository()
            .map_or_else(String::new, |r| format!(" (repository {})", r.short()))
    ));
    m.push_str("MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n");
    m.push_str("Content-Transfer-Encoding: 8bit\nAuto-Submitted: auto-generated\n\n");
    m.push_str(&event.message());
    m.push_str("\n\n");
    let mut line = |k: &str, v: String| m.push_str(&format!("{k:<11} {v}\n"));
    line("event:", event.id().to_string());
    line("kind:", event.kind().to_string());
    line("class:", event.class().to_string());
    line("severity:", event.severity().to_string());
    line("host:", event.host().to_string());
    line(
        "repository:",
        event
            .repository()
            .map_or_else(|| "-".into(), |r| r.to_string()),
    );
    line(
        "time:",
        humantime::format_rfc3339_seconds(event.time()).to_string(),
    );
    line("count:", event.count().to_string());
    m.push_str("\nThe event as JSON:\n");
    m.push_str(&event.to_json());
    m.push('\n');
    m
}

/// Reads one `Name: value` header from `path`, refusing a file that others
/// could read or change.
fn read_header_file(path: &Path) -> Result<(String, String), SetupError> {
    let unreadable = |source| SetupError::HeaderFile {
        path: path.to_owned(),
        source,
    };
    let f = std::fs::File::open(path).map_err(unreadable)?;
    let meta = f.metadata().map_err(unreadable)?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if !meta.is_file() {
        return Err(SetupError::HeaderNotAFile(path.to_owned()));
    }
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(SetupError::HeaderOwner {
            path: path.to_owned(),
            uid: meta.uid(),
        });
    }
    if meta.mode() & 0o077 != 0 {
        return Err(SetupError::HeaderMode {
            path: path.to_owned(),
            mode: meta.mode() & 0o7777,
        });
    }
    let mut text = String::new();
    f.take(8192).read_to_string(&mut text).map_err(unreadable)?;
    let line = text.trim_end_matches(['\n', '\r']);
    if line.contains(['\n', '\r']) {
        return Err(SetupError::HeaderLines(path.to_owned()));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| SetupError::HeaderNotAHeader(path.to_owned()))?;
    let name = name.trim();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(SetupError::HeaderName(path.to_owned()));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// The roots an https webhook trusts: the system's (the bundle
/// update-ca-certificates keeps in /etc/ssl/certs, or SSL_CERT_FILE and
/// SSL_CERT_DIR) and the certificates in `ca_file`; Mozilla's, built in,
/// when neither holds any.
fn roots(ca_file: Option<&Path>, key: &str) -> Result<RootCerts, SetupError> {
    let mut certs = match ca_file {
        Some(path) => read_ca_file(path).map_err(|source| SetupError::CaFile {
            key: key.to_owned(),
            path: path.to_owned(),
            source,
        })?,
        None => Vec::new(),
    };
    let system = rustls_native_certs::load_native_certs();
    for e in &system.errors {
        tracing::debug!(error = %e, "a system root certificate could not be loaded");
    }
    certs.extend(
        system
            .certs
            .iter()
            .map(|c| Certificate::from_der(c).to_owned()),
    );
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::from(certs)
    })
}

/// The certificates in a PEM file (private keys in it are passed over).
fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, CaFileError> {
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(16 << 20).read_to_end(&mut pem))
        .map_err(CaFileError::Read)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(c)) => {
                rustls::RootCertStore::empty()
                    .add(c.der().to_vec().into())
                    .map_err(CaFileError::Certificate)?;
                certs.push(c);
            }
            Ok(_) => {}
            Err(e) => return Err(CaFileError::NotPem(e)),
        }
    }
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate);
    }
    Ok(certs)
}
