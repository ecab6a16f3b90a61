//! Linux I/O priority (ioprio_set(2)) for one thread.
//!
//! Buffered writes reach the disk from whichever thread submits their
//! writeback: the kernel's flusher threads, or a thread that calls fsync or
//! sync_file_range. A priority set on the whole daemon would miss the
//! flushers, and would slow every FUSE reply that has to read the disk. So
//! strata gives the priority to one thread only, the pack writeback thread
//! ([`crate::store::io::writeback`]), which submits the writeback of what the
//! FUSE threads appended: the I/O scheduler (mq-deadline, BFQ) sees the
//! backup's pack writes at this priority and everything else at its own.

use std::fmt;
use std::io;

use serde::{Deserialize, Serialize};

const IOPRIO_CLASS_SHIFT: i32 = 13;
const IOPRIO_CLASS_BE: i32 = 2;
const IOPRIO_CLASS_IDLE: i32 = 3;
const IOPRIO_WHO_PROCESS: i32 = 1;

/// The lowest priority level of the best-effort class.
pub const LOWEST_LEVEL: u8 = 7;

/// An I/O scheduling class, as ionice(1) names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IoClass {
    /// Served only when no other I/O waits (schedulers age it so it is not
    /// starved forever; mq-deadline after `prio_aging_expire`, 10 s).
    Idle,
    /// Best effort at a level from 0 (highest) to 7 (lowest); ordinary
    /// processes run at 4.
    BestEffort(u8),
}

impl IoClass {
    fn raw(self) -> i32 {
        match self {
            IoClass::Idle => IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            IoClass::BestEffort(level) => {
                (IOPRIO_CLASS_BE << IOPRIO_CLASS_SHIFT) | i32::from(level.min(LOWEST_LEVEL))
            }
        }
    }

    fn from_raw(raw: i32) -> Option<IoClass> {
        match raw >> IOPRIO_CLASS_SHIFT {
            IOPRIO_CLASS_IDLE => Some(IoClass::Idle),
            IOPRIO_CLASS_BE => Some(IoClass::BestEffort((raw & 0xff) as u8)),
            _ => None,
        }
    }

    /// Gives the calling thread this priority.
    pub fn apply_to_current_thread(self) -> io::Result<()> {
        // SAFETY: ioprio_set takes three integers; who = 0 is the caller.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0,
                self.raw() as libc::c_long,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// The priority of thread `tid`, or `None` when it has none of its own
    /// (it follows its CPU nice value) or another class.
    pub fn of_thread(tid: u32) -> io::Result<Option<IoClass>> {
        // SAFETY: ioprio_get takes two integers.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_ioprio_get,
                IOPRIO_WHO_PROCESS,
                tid as libc::c_long,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(IoClass::from_raw(rc as i32))
    }
}

impl fmt::Display for IoClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IoClass::Idle => f.write_str("idle"),
            IoClass::BestEffort(level) => write!(f, "best-effort level {level}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_class_it_asks_for_and_others_keep_theirs() {
        let main_tid = unsafe { libc::gettid() } as u32;
        let before = IoClass::of_thread(main_tid).unwrap();
        for class in [
            IoClass::Idle,
            IoClass::BestEffort(7),
            IoClass::BestEffort(2),
        ] {
            let tid = std::thread::spawn(move || {
                class.apply_to_current_thread().unwrap();
                let tid = unsafe { libc::gettid() } as u32;
                assert_eq!(IoClass::of_thread(tid).unwrap(), Some(class));
                tid
            })
            .join()
            .unwrap();
            assert_ne!(tid, main_tid);
        }
        assert_eq!(IoClass::of_thread(main_tid).unwrap(), before);
    }

    #[test]
    fn levels_above_seven_are_clamped() {
        assert_eq!(
            IoClass::from_raw(IoClass::BestEffort(9).raw()),
            Some(IoClass::BestEffort(7))
        );
        assert_eq!(IoClass::Idle.to_string(), "idle");
        assert_eq!(IoClass::BestEffort(7).to_string(), "best-effort level 7");
    }
}
