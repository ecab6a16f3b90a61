//! A real S3-compatible server on loopback for the tests: moto's server
//! (`pip install 'moto[server]'`, the `moto_server` program), one per test,
//! in memory, stopped when dropped.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running server.
pub struct Server {
    child: Child,
    pub endpoint: String,
}

impl Server {
    /// Starts one on a free loopback port and waits until it answers.
    pub fn start() -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let endpoint = format!("http://127.0.0.1:{port}");
        let s = Server { child, endpoint };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/", s.endpoint)).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not answer");
            std::thread::sleep(Duration::from_millis(100));
        }
        s
    }

    /// A server with bucket `name` made.
    pub fn with_bucket(name: &str) -> Server {
        let s = Server::start();
        s.bucket(name);
        s
    }

    /// Creates bucket `name`.
    pub fn bucket(&self, name: &str) {
        ureq::put(&format!("{}/{name}", self.endpoint))
            .send_empty()
            .expect("bucket created");
    }

    /// Creates bucket `name` with S3 Object Lock enabled.
    pub fn locked_bucket(&self, name: &str) {
        ureq::put(&format!("{}/{name}", self.endpoint))
            .header("x-amz-bucket-object-lock-enabled", "true")
            .send_empty()
            .expect("bucket created");
    }

    /// The Object Lock retention of `key` in bucket `name`: (mode, retain
    /// until as RFC 3339), asked with a signed request through boto3 (which
    /// moto's server comes with); `None` when the object has none.
    pub fn retention(&self, name: &str, key: &str) -> Option<(String, String)> {
        // HEAD, not GetObjectRetention: moto's server answers that with a 500.
        let script = "import sys, boto3\n\
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n\
h = s3.head_object(Bucket=sys.argv[2], Key=sys.argv[3])\n\
if 'ObjectLockMode' not in h:\n    sys.exit(3)\n\
print(h['ObjectLockMode'], h['ObjectLockRetainUntilDate'].isoformat())\n";
        let out = Command::new("python3")
            .args(["-c", script, &self.endpoint, name, key])
            .output()
            .expect("python3 runs");
        if out.status.code() == Some(3) {
            return None;
        }
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let (mode, until) = text.trim().split_once(' ').expect("mode and date");
        Some((mode.to_owned(), until.to_owned()))
    }

    /// The keys under `prefix` in bucket `name` that were deleted (their
    /// newest version is a delete marker) but whose data is still kept
    /// under an Object Lock retention date: (key, mode).
    pub fn deleted_but_locked(&self, name: &str, prefix: &str) -> Vec<(String, String)> {
        let script = r#"
import sys, boto3
s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1',
                  aws_access_key_id='testing', aws_secret_access_key='testing')
v = s3.list_object_versions(Bucket=sys.argv[2], Prefix=sys.argv[3])
gone = {m['Key'] for m in v.get('DeleteMarkers', []) if m['IsLatest']}
for o in v.get('Versions', []):
    if o['Key'] in gone:
        h = s3.head_object(Bucket=sys.argv[2], Key=o['Key'], VersionId=o['VersionId'])
        print(o['Key'], h.get('ObjectLockMode', '-'))
"#;
        let out = Command::new("python3")
            .args(["-c", script, &self.endpoint, name, prefix])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once(' '))
            .map(|(k, m)| (k.to_owned(), m.to_owned()))
            .collect()
    }

    /// The names under `prefix` in bucket `name`, from its listing.
    pub fn keys(&self, name: &str, prefix: &str) -> Vec<String> {
        self.sizes(name, prefix)
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// The names under `prefix` in bucket `name` with their sizes.
    pub fn sizes(&self, name: &str, prefix: &str) -> Vec<(String, u64)> {
        let body = ureq::get(&format!(
            "{}/{name}?list-type=2&prefix={prefix}",
            self.endpoint
        ))
        .call()
        .expect("listing")
        .into_body()
        .read_to_string()
        .unwrap();
        let field = |entry: &str, tag: &str| -> Option<String> {
            let rest = entry.split(&format!("<{tag}>")).nth(1)?;
            Some(rest.split(&format!("</{tag}>")).next()?.to_owned())
        };
        body.split("<Contents>")
            .skip(1)
            .filter_map(|e| Some((field(e, "Key")?, field(e, "Size")?.parse().ok()?)))
            .collect()
    }

    /// The environment a strata command needs to reach it, as the AWS
    /// tools read it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback proxy in front of a server that fails the first requests it
/// gets, alternately with a 503 and with a connection dropped mid-request,
/// then passes everything through: what a flaky link or a busy store does.
pub struct FaultyProxy {
    pub endpoint: String,
    injected: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl FaultyProxy {
    /// A proxy to `upstream` (`http://host:port`) that fails `faults`
    /// requests first.
    pub fn start(upstream: &str, faults: usize) -> FaultyProxy {
        use std::io::{Read, Write};
        use std::net::TcpStream;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let injected = std::sync::Arc::new(AtomicUsize::new(0));
        let count = injected.clone();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sent_count = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let n = count.load(Ordering::SeqCst);
                if n < faults {
                    count.store(n + 1, Ordering::SeqCst);
                    let mut head = [0u8; 512];
                    let _ = client.read(&mut head);
                    if n.is_multiple_of(2) {
                        let _ = client.write_all(
                            b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                        );
                    }
                    // Odd ones: dropped without an answer.
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let sent = sent_count.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 << 10];
                    while let Ok(n @ 1..) = c2.read(&mut buf) {
                        sent.fetch_add(n as u64, Ordering::SeqCst);
                        if s2.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s2.shutdown(std::net::Shutdown::Write);
                });
                let (mut s, mut c) = (server, client);
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s, &mut c);
                    let _ = c.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        FaultyProxy {
            endpoint,
            injected,
            sent,
        }
    }

    /// Bytes passed on to the server (requests with their bodies).
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> usize {
        self.injected.load(std::sync::atomic::Ordering::SeqCst)
    }
}
