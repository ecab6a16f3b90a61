//! An HTTP receiver on loopback for alert tests: a real peer for the
//! webhook channel.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;

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
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/strata/alert", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
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
            r.read_exact(&mut body).unwrap();
            tx.send(Request {
                head,
                body: String::from_utf8(body).unwrap(),
            })
            .unwrap();
            if status == 0 {
                // Hold the connection open, answer nothing.
                std::thread::sleep(Duration::from_secs(30));
                continue;
            }
            write!(
                conn,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
        }
    });
    (url, rx)
}
