//! An HTTP receiver on loopback for alert tests: a real peer for the
//! webhook channel, over plain HTTP or over TLS with a CA made for the test.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::PrivatePkcs8KeyDer;

/// One request the receiver got.
pub struct Request {
    /// Request line and headers.
    pub head: String,
    /// The body.
    pub body: String,
}

/// An HTTP receiver on loopback that answers `status` to each request and
/// passes what it got to the returned channel. `status` 0 never answers.
pub fn receiver(status: u16) -> (String, mpsc::Receiver<Request>) {
    listen("http", move |conn, tx| serve(conn, status, tx))
}

/// An https receiver on loopback like [`receiver`], with a certificate for
/// 127.0.0.1 from a CA made for it; the third value is the CA's certificate
/// (PEM).
pub fn tls_receiver(status: u16) -> (String, mpsc::Receiver<Request>, String) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "strata test CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        )
        .unwrap(),
    );
    let (url, rx) = listen("https", move |conn, tx| {
        let tls = rustls::ServerConnection::new(config.clone()).map_err(std::io::Error::other)?;
        serve(rustls::StreamOwned::new(tls, conn), status, tx)
    });
    (url, rx, ca.pem())
}

/// Accepts connections on a loopback port in a thread, handing each to
/// `serve`; a connection that fails (a refused handshake) is dropped.
fn listen(
    scheme: &str,
    serve: impl Fn(TcpStream, &mpsc::Sender<Request>) -> std::io::Result<()> + Send + 'static,
) -> (String, mpsc::Receiver<Request>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("{scheme}://{}/strata/alert", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let _ = serve(conn.unwrap(), &tx);
        }
    });
    (url, rx)
}

/// Reads one request from `conn`, passes it on, and answers `status`.
fn serve(conn: impl Read + Write, status: u16, tx: &mpsc::Sender<Request>) -> std::io::Result<()> {
    let mut r = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().unwrap())
        })
        .expect("a content-length header");
    let mut body = vec![0; len];
    r.read_exact(&mut body)?;
    tx.send(Request {
        head,
        body: String::from_utf8(body).unwrap(),
    })
    .unwrap();
    if status == 0 {
        // Hold the connection open, answer nothing.
        std::thread::sleep(Duration::from_secs(30));
        return Ok(());
    }
    let conn = r.get_mut();
    write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    )?;
    conn.flush()
}
