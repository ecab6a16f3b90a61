//! A simulated disk that keeps only what the [`Disk`](super::Disk) contract
//! promises, for crash and fault tests.
//!
//! Every file has the bytes a reader sees now and the bytes last made durable
//! by `sync`, with the writes in between kept in order. Name changes (create,
//! rename, remove) are kept in order too, as a journaling filesystem does: a
//! crash keeps some prefix of them, each rename whole, and `sync_dir` makes
//! all of them durable. [`SimDisk::crash_images`] builds disks a power cut at
//! this moment could leave: nothing unsynced survived, all of it did, or each
//! file kept a random prefix of its unsynced writes and the namespace a random
//! prefix of its unsynced changes. [`SimDisk::fail_write`] and [`SimDisk::fail_sync`]
//! make the N-th call from now fail with the given error.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{parent, Disk, DiskBackend, DiskFile, IndexBackend};

#[derive(Clone, Debug)]
enum Op {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

impl Op {
    fn apply(&self, data: &mut Vec<u8>) {
        match self {
            Op::Write(off, bytes) => {
                let end = *off as usize + bytes.len();
                if data.len() < end {
                    data.resize(end, 0);
                }
                data[*off as usize..end].copy_from_slice(bytes);
            }
            Op::SetLen(len) => data.resize(*len as usize, 0),
        }
    }
}

#[derive(Clone, Debug)]
enum NameOp {
    Link(String, u64),
    Unlink(String),
    Rename(String, String),
}

impl NameOp {
    fn apply(&self, names: &mut BTreeMap<String, u64>) {
        match self {
            NameOp::Link(p, ino) => {
                names.insert(p.clone(), *ino);
            }
            NameOp::Unlink(p) => {
                names.remove(p);
            }
            NameOp::Rename(from, to) => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Inode {
    durable: Vec<u8>,
    current: Vec<u8>,
    pending: Vec<Op>,
}

#[derive(Clone, Debug, Default)]
struct Faults {
    write_countdown: Option<(u64, io::ErrorKind)>,
    sync_countdown: Option<u64>,
    /// Reads still to fail with EIO, as a flaky disk or cable does.
    read_failures: u32,
}

#[derive(Clone, Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    /// Current names: path -> inode.
    names: BTreeMap<String, u64>,
    /// Names as a crash would find them, before `name_ops`.
    durable_names: BTreeMap<String, u64>,
    /// Name changes since the last `sync_dir`, in order.
    name_ops: Vec<NameOp>,
    dirs: BTreeSet<String>,
    next_ino: u64,
    faults: Faults,
}

impl State {
    fn write_fault(&mut self) -> io::Result<()> {
        if let Some((n, kind)) = &mut self.faults.write_countdown {
            if *n == 0 {
                let kind = *kind;
                return Err(io::Error::new(kind, "simulated write failure"));
            }
            *n -= 1;
        }
        Ok(())
    }

    fn sync_fault(&mut self) -> io::Result<()> {
        if let Some(n) = &mut self.faults.sync_countdown {
            if *n == 0 {
                return Err(io::Error::other("simulated fsync failure"));
            }
            *n -= 1;
        }
        Ok(())
    }
}

/// An in-memory disk with a crash model; clones share the same disk.
#[derive(Clone, Debug, Default)]
pub struct SimDisk {
    state: Arc<Mutex<State>>,
    /// When recording, the state just before each sync.
    points: Arc<Mutex<Option<Vec<State>>>>,
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        let disk = SimDisk::default();
        disk.lock().dirs.insert(String::new());
        disk
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("sim disk lock")
    }

    /// Makes the write `n` writes from now fail (0 = the next) with `kind`,
    /// and every write after it until [`SimDisk::heal`].
    pub fn fail_write(&self, n: u64, kind: io::ErrorKind) {
        self.lock().faults.write_countdown = Some((n, kind));
    }

    /// Makes the sync `n` syncs from now fail, and every later one.
    pub fn fail_sync(&self, n: u64) {
        self.lock().faults.sync_countdown = Some(n);
    }

    /// Makes the next `n` reads fail with EIO, then read normally again.
    pub fn fail_reads(&self, n: u32) {
        self.lock().faults.read_failures = n;
    }

    /// Removes injected faults.
    pub fn heal(&self) {
        self.lock().faults = Faults::default();
    }

    /// From now on, keep the state as it is at the start of every sync:
    /// the moments a power cut matters.
    pub fn record_sync_points(&self) {
        *self.points.lock().expect("points lock") = Some(Vec::new());
    }

    /// Number of sync points recorded so far.
    pub fn sync_point_count(&self) -> usize {
        self.points
            .lock()
            .expect("points lock")
            .as_ref()
            .map_or(0, Vec::len)
    }

    /// Crash images of recorded sync point `n` (see [`SimDisk::crash_images`]).
    pub fn crash_images_at(&self, n: usize, seed: u64, mixed: usize) -> Vec<SimDisk> {
        let points = self.points.lock().expect("points lock");
        let st = &points.as_ref().expect("recording")[n];
        crash_images_of(st, seed, mixed)
    }

    fn sync_point(&self, st: &State) {
        if let Some(points) = self.points.lock().expect("points lock").as_mut() {
            points.push(st.clone());
        }
    }

    /// Every path and its current bytes, for plaintext scans in tests.
    pub fn contents(&self) -> Vec<(String, Vec<u8>)> {
        let st = self.lock();
        st.names
            .iter()
            .map(|(p, i)| (p.clone(), st.inodes[i].current.clone()))
            .collect()
    }

    /// Disks a power cut now could leave; `seed` varies the mixed images.
    pub fn crash_images(&self, seed: u64, mixed: usize) -> Vec<SimDisk> {
        crash_images_of(&self.lock(), seed, mixed)
    }
}

fn crash_images_of(st: &State, seed: u64, mixed: usize) -> Vec<SimDisk> {
    let mut images = vec![
        image(st, |_| (true, usize::MAX), 0),
        image(
            st,
            |ino| (false, st.inodes[&ino].pending.len()),
            st.name_ops.len(),
        ),
    ];
    let mut x = seed | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..mixed {
        // Visit inodes in a fixed order so a seed always builds the same image.
        let mut inos: Vec<u64> = st.inodes.keys().copied().collect();
        inos.sort_unstable();
        let picks: HashMap<u64, usize> = inos
            .into_iter()
            .map(|ino| (ino, next() as usize % (st.inodes[&ino].pending.len() + 1)))
            .collect();
        let name_prefix = next() as usize % (st.name_ops.len() + 1);
        images.push(image(st, |ino| (false, picks[&ino]), name_prefix));
    }
    images
}

/// Builds one crash image: `prefix(ino)` says how many pending writes of a
/// file survive (or `true` = only durable bytes), `name_prefix` how many
/// pending name changes.
fn image(st: &State, prefix: impl Fn(u64) -> (bool, usize), name_prefix: usize) -> SimDisk {
    let mut names = st.durable_names.clone();
    for op in &st.name_ops[..name_prefix] {
        op.apply(&mut names);
    }
    let mut inodes = HashMap::new();
    for &ino in names.values() {
        let node = &st.inodes[&ino];
        let (only_durable, n) = prefix(ino);
        let mut data = node.durable.clone();
        if !only_durable {
            for op in node.pending.iter().take(n) {
                op.apply(&mut data);
            }
        }
        inodes.insert(
            ino,
            Inode {
                durable: data.clone(),
                current: data,
                pending: Vec::new(),
            },
        );
    }
    let state = State {
        inodes,
        durable_names: names.clone(),
        name_ops: Vec::new(),
        names,
        dirs: st.dirs.clone(),
        next_ino: st.next_ino,
        faults: Faults::default(),
    };
    SimDisk {
        state: Arc::new(Mutex::new(state)),
        points: Arc::default(),
    }
}

struct SimFile {
    disk: SimDisk,
    ino: u64,
}

impl DiskFile for SimFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.disk.lock().inodes[&self.ino].current.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let mut st = self.disk.lock();
        if st.faults.read_failures > 0 {
            st.faults.read_failures -= 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        let data = &st.inodes[&self.ino].current;
        let end = offset as usize + buf.len();
        if end > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            ));
        }
        buf.copy_from_slice(&data[offset as usize..end]);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut st = self.disk.lock();
        st.write_fault()?;
        let node = st.inodes.get_mut(&self.ino).expect("inode");
        let op = Op::Write(offset, data.to_vec());
        op.apply(&mut node.current);
        node.pending.push(op);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut st = self.disk.lock();
        st.write_fault()?;
        let node = st.inodes.get_mut(&self.ino).expect("inode");
        let op = Op::SetLen(len);
        op.apply(&mut node.current);
        node.pending.push(op);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        let mut st = self.disk.lock();
        self.disk.sync_point(&st);
        st.sync_fault()?;
        let node = st.inodes.get_mut(&self.ino).expect("inode");
        node.durable = node.current.clone();
        node.pending.clear();
        Ok(())
    }
}

fn not_found(path: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{path}: no such file"))
}

impl Disk for SimDisk {
    fn open(&self, path: &str, create: bool) -> io::Result<Box<dyn DiskFile>> {
        let mut st = self.lock();
        let ino = match st.names.get(path) {
            Some(&ino) => ino,
            None if create => {
                if !st.dirs.contains(parent(path)) {
                    return Err(not_found(parent(path)));
                }
                st.write_fault()?;
                st.next_ino += 1;
                let ino = st.next_ino;
                st.inodes.insert(ino, Inode::default());
                st.names.insert(path.to_owned(), ino);
                st.name_ops.push(NameOp::Link(path.to_owned(), ino));
                ino
            }
            None => return Err(not_found(path)),
        };
        Ok(Box::new(SimFile {
            disk: self.clone(),
            ino,
        }))
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        // Directories are modelled as always durable: strata creates them
        // once at init and syncs their parents.
        let mut st = self.lock();
        let mut p = path;
        while !p.is_empty() {
            st.dirs.insert(p.to_owned());
            p = parent(p);
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let st = self.lock();
        if !st.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let mut out: BTreeSet<String> = BTreeSet::new();
        let children = st.names.keys().chain(st.dirs.iter());
        for p in children {
            if !p.is_empty() && parent(p) == dir {
                out.insert(p.rsplit('/').next().unwrap_or(p).to_owned());
            }
        }
        Ok(out.into_iter().collect())
    }

    fn remove(&self, path: &str) -> io::Result<()> {
        let mut st = self.lock();
        st.write_fault()?;
        st.names.remove(path).ok_or_else(|| not_found(path))?;
        st.name_ops.push(NameOp::Unlink(path.to_owned()));
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut st = self.lock();
        st.write_fault()?;
        let ino = st.names.remove(from).ok_or_else(|| not_found(from))?;
        st.names.insert(to.to_owned(), ino);
        st.name_ops
            .push(NameOp::Rename(from.to_owned(), to.to_owned()));
        Ok(())
    }

    fn sync_dir(&self, dir: &str) -> io::Result<()> {
        let mut st = self.lock();
        self.sync_point(&st);
        st.sync_fault()?;
        // Like a journaling filesystem, a directory sync commits every
        // earlier name change, in order.
        let _ = dir;
        let State {
            durable_names,
            name_ops,
            ..
        } = &mut *st;
        for op in name_ops.drain(..) {
            op.apply(durable_names);
        }
        Ok(())
    }

    fn exists(&self, path: &str) -> bool {
        let st = self.lock();
        st.names.contains_key(path) || st.dirs.contains(path)
    }

    fn index_backend(&self, path: &str) -> io::Result<IndexBackend> {
        let f = self.open(path, true)?;
        Ok(IndexBackend::Disk(DiskBackend(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_vanish_in_the_durable_image() {
        let d = SimDisk::new();
        d.create_dir_all("a").unwrap();
        let f = d.open("a/f", true).unwrap();
        f.write_at(0, b"one").unwrap();
        f.sync().unwrap();
        d.sync_dir("a").unwrap();
        f.write_at(3, b"two").unwrap();
        let images = d.crash_images(1, 4);
        assert_eq!(images[0].read("a/f").unwrap(), b"one");
        assert_eq!(images[1].read("a/f").unwrap(), b"onetwo");
    }

    #[test]
    fn unsynced_names_vanish() {
        let d = SimDisk::new();
        let f = d.open("f", true).unwrap();
        f.sync().unwrap();
        assert!(!d.crash_images(1, 0)[0].exists("f"));
        d.sync_dir("").unwrap();
        assert!(d.crash_images(1, 0)[0].exists("f"));
    }

    #[test]
    fn injected_faults_fire_on_the_nth_call() {
        let d = SimDisk::new();
        let f = d.open("f", true).unwrap();
        d.fail_write(1, io::ErrorKind::StorageFull);
        f.write_at(0, b"ok").unwrap();
        assert_eq!(
            f.write_at(2, b"no").unwrap_err().kind(),
            io::ErrorKind::StorageFull
        );
        d.heal();
        d.fail_sync(0);
        assert!(f.sync().is_err());
    }
}
