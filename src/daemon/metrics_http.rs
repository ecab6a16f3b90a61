//! The daemon's optional `/metrics` listener (`[metrics] listen`, loopback
//! only): one plain HTTP/1.1 answer per connection, the same text
//! `strata metrics` prints, gathered at each scrape.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::control::{daemon_metrics, Daemon};
use crate::sys::chain::Chain;
use crate::tree::namespace::Namespace;

/// Binds `addr` and serves scrapes on a thread of its own until the
/// process ends.
pub fn spawn(addr: SocketAddr, ns: Arc<Namespace>, daemon: Arc<dyn Daemon>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    tracing::info!(%addr, "serving /metrics");
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming() {
                let Ok(stream) = conn else { continue };
                if let Err(e) = answer(stream, &ns, daemon.as_ref()) {
                    tracing::debug!(error = %e, "metrics scrape failed");
                }
            }
        })?;
    Ok(())
}

fn answer(stream: TcpStream, ns: &Namespace, daemon: &dyn Daemon) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // The headers, up to the blank line; none is needed.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, kind, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => match daemon_metrics(ns, daemon) {
            Ok(text) => ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text),
            Err(e) => {
                tracing::warn!(error = %Chain(&e), "metrics could not be gathered");
                (
                    "500 Internal Server Error",
                    "text/plain",
                    "metrics could not be gathered; see the daemon's log\n".to_owned(),
                )
            }
        },
        ("GET", _) => (
            "404 Not Found",
            "text/plain",
            "only /metrics is served\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "only GET /metrics\n".to_owned(),
        ),
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    out.flush()
}
