//! Mounting: fuser mounts and runs the INIT exchange (asking [`Negotiate`]
//! which capabilities to take), then the transports serve the connection.
//! One sequence for the daemon and the nullfs example.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use fuser::{InitFlags, KernelConfig};
use strata::daemon::mount_args::Transport;
use strata::sys::sync::Recover;

use super::{start, Serve, Serving, TransportStatus};

/// What fuser asks at INIT; records whether the kernel offered the ring.
struct Negotiate {
    capabilities: InitFlags,
    max_write: u32,
    want_ring: bool,
    ring: Arc<Mutex<Result<(), String>>>,
}

impl fuser::Filesystem for Negotiate {
    fn init(&mut self, _req: &fuser::Request, config: &mut KernelConfig) -> io::Result<()> {
        if let Err(missing) = config.add_capabilities(self.capabilities) {
            tracing::warn!(?missing, "kernel lacks FUSE capabilities");
            let _ = config.add_capabilities(self.capabilities & !missing);
        }
        let _ = config.set_max_write(self.max_write);
        let _ = config.set_max_readahead(self.max_write);
        *self.ring.locked() = if !self.want_ring {
            Err("the classic transport was asked for (--transport dev-fuse)".into())
        } else if config
            .add_capabilities(InitFlags::FUSE_OVER_IO_URING)
            .is_ok()
        {
            Ok(())
        } else {
            Err("the kernel does not offer FUSE over io_uring (Linux 6.14+ with the fuse module's enable_uring parameter set: see strata-mountd(8), TRANSPORT)".into())
        };
        Ok(())
    }
}

/// How a filesystem is mounted.
pub struct Options<'a> {
    /// fuser's mount options and access control.
    pub config: &'a fuser::Config,
    /// INIT capabilities wanted (those the kernel lacks are logged and left out).
    pub capabilities: InitFlags,
    /// Largest write and read-ahead, in bytes.
    pub max_write: u32,
    pub transport: Transport,
    /// Threads reading /dev/fuse.
    pub threads: usize,
}

/// Why a mount did not happen.
#[derive(Debug)]
pub enum MountError {
    /// The kernel's mount or the INIT exchange failed.
    Mount(io::Error),
    /// `--transport io-uring`, and the kernel did not offer the ring (why).
    NoRing(String),
    /// The serving threads could not start.
    Serve(io::Error),
}

impl std::fmt::Display for MountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountError::Mount(e) => write!(f, "{e}"),
            MountError::NoRing(why) => write!(
                f,
                "--transport io-uring: {why}; or mount with --transport auto to fall back to /dev/fuse"
            ),
            MountError::Serve(e) => write!(f, "cannot start serving: {e}"),
        }
    }
}

impl std::error::Error for MountError {}

/// A mounted filesystem being served.
pub struct Mounted {
    session: fuser::Session<Negotiate>,
    serving: Serving,
}

/// Mounts on `mnt` and serves `fs`; `status` says on which transport.
pub fn mount(
    mnt: &Path,
    o: &Options<'_>,
    fs: Arc<dyn Serve>,
    status: Arc<TransportStatus>,
) -> Result<Mounted, MountError> {
    let ring = Arc::new(Mutex::new(Err("no INIT happened".into())));
    let negotiate = Negotiate {
        capabilities: o.capabilities,
        max_write: o.max_write,
        want_ring: o.transport != Transport::DevFuse,
        ring: ring.clone(),
    };
    let mut session = fuser::Session::new(negotiate, mnt, o.config).map_err(MountError::Mount)?;
    let ring = ring.locked().clone();
    if let (Transport::IoUring, Err(why)) = (o.transport, &ring) {
        let _ = session.unmount();
        return Err(MountError::NoRing(why.clone()));
    }
    match start(
        session.as_fd(),
        fs,
        o.threads,
        o.max_write as usize,
        ring,
        status,
    ) {
        Ok(serving) => Ok(Mounted { session, serving }),
        Err(e) => {
            let _ = session.unmount();
            Err(MountError::Serve(e))
        }
    }
}

impl Mounted {
    /// Sends cache invalidations to the kernel.
    pub fn notifier(&self) -> fuser::Notifier {
        self.session.notifier()
    }

    /// Unmounts from another thread (once).
    pub fn unmounter(&mut self) -> fuser::SessionUnmounter {
        self.session.unmount_callable()
    }

    /// Serves until the filesystem is unmounted, then stops the ring.
    pub fn join(self) -> io::Result<()> {
        let r = self.serving.join();
        drop(self.session);
        r
    }
}
