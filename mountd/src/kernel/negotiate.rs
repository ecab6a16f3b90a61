//! The INIT answer. fuser mounts and runs the INIT exchange; this is the
//! filesystem it asks, and all it asks is which capabilities to take.

use std::sync::{Arc, Mutex};

use fuser::{InitFlags, KernelConfig};
use strata::sys::sync::Recover;

/// Capabilities asked for at INIT; records whether the kernel offered the ring.
pub struct Negotiate {
    /// Capabilities wanted (those the kernel lacks are logged and left out).
    pub capabilities: InitFlags,
    /// Largest write and read-ahead, in bytes.
    pub max_write: u32,
    /// Ask for FUSE over io_uring.
    pub want_ring: bool,
    /// Ok if the kernel granted the ring; why not otherwise.
    pub ring: Arc<Mutex<Result<(), String>>>,
}

impl Negotiate {
    /// Asks for `capabilities` and, if `want_ring`, the ring.
    pub fn new(capabilities: InitFlags, max_write: u32, want_ring: bool) -> Negotiate {
        Negotiate {
            capabilities,
            max_write,
            want_ring,
            ring: Arc::new(Mutex::new(Err("INIT has not happened".into()))),
        }
    }

    /// Ok if the ring was granted at INIT; why not otherwise.
    pub fn ring_granted(ring: &Mutex<Result<(), String>>) -> Result<(), String> {
        ring.locked().clone()
    }
}

impl fuser::Filesystem for Negotiate {
    fn init(&mut self, _req: &fuser::Request, config: &mut KernelConfig) -> std::io::Result<()> {
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
