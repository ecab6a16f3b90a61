//! The bucket backend against a real S3-compatible server (moto's, on
//! loopback): packs are created write-once, fetched back whole, listed,
//! and a different pack under a taken name is refused, never overwritten.

mod common;

use std::sync::Arc;

use common::s3::{FaultyProxy, Server};
use common::tier::{self, Tier};
use strata::store::id::PackId;
use strata::store::io::backend::{LocalBackend, PackBackend};
use strata::store::io::remote::{Remote, RemoteConfig};
use strata::store::io::s3::S3Backend;
use strata::store::io::{Disk, LocalDisk};

fn backend(s3: &Server, dir: &std::path::Path) -> (S3Backend, Arc<Remote>, Arc<dyn Disk>) {
    backend_at(s3, &s3.endpoint, dir)
}

/// The backend reaching `s3` through `endpoint` (the server or a proxy).
fn backend_at(
    s3: &Server,
    endpoint: &str,
    dir: &std::path::Path,
) -> (S3Backend, Arc<Remote>, Arc<dyn Disk>) {
    let config = RemoteConfig {
        url: "s3://strata-tests/packs-test".into(),
        endpoint: Some(endpoint.to_owned()),
        region: None,
        allow_http: true,
        virtual_hosted: false,
        object_lock: None,
    };
    // Credentials come from the environment only.
    for (k, v) in s3.env() {
        std::env::set_var(k, v);
    }
    let remote = Remote::connect(&config).unwrap();
    let disk: Arc<dyn Disk> = Arc::new(LocalDisk::new(dir));
    disk.create_dir_all("open").unwrap();
    (S3Backend::new(remote.clone(), disk.clone()), remote, disk)
}

#[test]
fn packs_are_created_once_fetched_back_whole_and_never_replaced() {
    if tier::missing(&[Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("strata-tests");
    let dir = tempfile::tempdir().unwrap();
    let (b, remote, disk) = backend(&s3, dir.path());
    let id: PackId = "00112233445566778899aabbccddeeff".parse().unwrap();
    let data = common::bytes(3, 300_000);
    disk.write_atomic("open/p", &data).unwrap();
    b.create(id, "open/p").unwrap();
    assert!(b.is_remote());
    assert_eq!(b.list().unwrap(), vec![id]);
    assert!(b.exists(id));
    // Kept locally as a cache, and in the bucket whole.
    assert!(disk.exists(&LocalBackend::path(id)));
    assert_eq!(remote.get(&LocalBackend::path(id)).unwrap(), data);

    // With the cache gone, the first read fetches the pack back whole.
    std::fs::remove_dir_all(dir.path().join("packs")).unwrap();
    let f = b.open(id).unwrap();
    assert_eq!(f.len().unwrap(), 300_000);
    let mut buf = vec![0u8; 1000];
    f.read_at(123_456, &mut buf).unwrap();
    assert_eq!(buf, data[123_456..124_456]);
    assert!(f.read_at(299_500, &mut buf).is_err(), "past the end");
    assert_eq!(
        std::fs::read(dir.path().join(LocalBackend::path(id))).unwrap(),
        data
    );

    // The same pack again (an upload whose record a crash lost): fine.
    disk.write_atomic("open/p", &data).unwrap();
    b.create(id, "open/p").unwrap();
    // A different one under the same name: refused, the bucket's kept.
    std::fs::remove_dir_all(dir.path().join("packs")).unwrap();
    disk.write_atomic("open/q", &common::bytes(4, 200_000))
        .unwrap();
    let e = b.create(id, "open/q").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("left as it is"), "{e}");
    assert_eq!(remote.get(&LocalBackend::path(id)).unwrap(), data);

    // Readers that miss the cache at once each fetch it, and none of
    // them spoils the copy another has put in place.
    assert!(!dir.path().join(LocalBackend::path(id)).exists());
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let f = b.open(id).unwrap();
                let mut all = vec![0u8; data.len()];
                f.read_at(0, &mut all).unwrap();
                assert!(all == data, "a reader saw a spoiled pack");
            });
        }
    });
    assert_eq!(
        std::fs::read(dir.path().join(LocalBackend::path(id))).unwrap(),
        data
    );

    // Garbage collection's delete removes it from both.
    b.delete(id).unwrap();
    assert!(b.list().unwrap().is_empty());
    assert!(!b.exists(id));
}

#[test]
fn a_pack_larger_than_one_request_goes_in_parts() {
    if tier::missing(&[Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("strata-tests");
    let dir = tempfile::tempdir().unwrap();
    let (b, remote, disk) = backend(&s3, dir.path());
    let id: PackId = "ffeeddccbbaa99887766554433221100".parse().unwrap();
    let len = strata::store::io::remote::SINGLE_PUT as usize + 3_000_000;
    let data = common::bytes(5, len);
    disk.write_atomic("open/big", &data).unwrap();
    b.create(id, "open/big").unwrap();
    assert_eq!(remote.size(&LocalBackend::path(id)).unwrap(), len as u64);
    assert_eq!(remote.get(&LocalBackend::path(id)).unwrap(), data);
    // Once there, a second create sends nothing and replaces nothing.
    disk.write_atomic("open/big", &data).unwrap();
    b.create(id, "open/big").unwrap();
}

#[test]
fn uploads_and_reads_ride_out_503s_and_dropped_connections() {
    if tier::missing(&[Tier::S3]) {
        return;
    }
    let s3 = Server::with_bucket("strata-tests");
    let proxy = FaultyProxy::start(&s3.endpoint, 4);
    let dir = tempfile::tempdir().unwrap();
    let (b, _, disk) = backend_at(&s3, &proxy.endpoint, dir.path());
    let id: PackId = "0123456789abcdef0123456789abcdef".parse().unwrap();
    let data = common::bytes(6, 500_000);
    disk.write_atomic("open/p", &data).unwrap();
    b.create(id, "open/p").unwrap();
    assert_eq!(proxy.injected(), 4, "every fault was met and retried");
    // What arrived is whole: fetched back past the proxy.
    std::fs::remove_dir_all(dir.path().join("packs")).unwrap();
    let (direct, _, _) = backend(&s3, dir.path());
    let f = direct.open(id).unwrap();
    let mut all = vec![0u8; data.len()];
    f.read_at(0, &mut all).unwrap();
    assert_eq!(all, data);
}

#[test]
fn uploads_keep_to_their_pace_in_parts_and_never_hold_back_writers() {
    if tier::missing(&[Tier::S3]) {
        return;
    }
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Mutex;
    let s3 = Server::with_bucket("strata-tests");
    for (k, v) in s3.env() {
        std::env::set_var(k, v);
    }
    let dir = tempfile::tempdir().unwrap();
    let config = RemoteConfig {
        url: "s3://strata-tests/paced".into(),
        endpoint: Some(s3.endpoint.clone()),
        region: None,
        allow_http: true,
        virtual_hosted: false,
        object_lock: None,
    };
    std::fs::write(
        dir.path().join(strata::store::io::remote::REMOTE_FILE),
        config.render(),
    )
    .unwrap();
    let disk = strata::store::io::open_dir(dir.path()).unwrap();
    common::init_encrypted(disk.clone());
    let repo = common::open(disk.clone());
    // A pace that holds every upload until released, and records what it
    // was asked to admit.
    let open = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let (gate, seen) = (open.clone(), asked.clone());
    disk.remote().unwrap().set_pace(Arc::new(move |bytes| {
        seen.lock().unwrap().push(bytes);
        while !gate.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }));
    // Several packs' worth (1 MiB packs), committed while every upload is
    // held: the writer is not.
    let data = common::bytes(8, 5 << 20);
    repo.ingest(&data[..]).unwrap();
    repo.store().commit().unwrap();
    repo.ingest(&common::bytes(9, 2 << 20)[..]).unwrap();
    repo.store().commit().unwrap();
    assert!(
        s3.keys("strata-tests", "paced/packs/").is_empty(),
        "nothing went up while held"
    );
    // The upload thread got to the first pack and waits on its pace.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while asked.lock().unwrap().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload asked its pace"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    open.store(true, Ordering::SeqCst);
    repo.store().flush_pack().unwrap();
    let packs = s3.sizes("strata-tests", "paced/packs/");
    assert!(packs.len() >= 6, "{packs:?}");
    let uploaded: u64 = packs.iter().map(|(_, n)| n).sum();
    let asked = asked.lock().unwrap();
    assert_eq!(
        asked.iter().sum::<u64>(),
        uploaded,
        "every byte uploaded was paced"
    );
    assert!(asked.iter().all(|&n| n <= strata::store::io::remote::PART));
    // Recorded as finished once uploaded.
    assert!(repo
        .store()
        .pack_records()
        .values()
        .all(|r| r.state == strata::store::index::PackState::Finished));
}
