//! The CPUs the process may run on. A thread pinned to one CPU (a FUSE
//! ring queue's) that starts helpers would hand them its pin; helpers
//! meant to use every CPU take the process's set instead.

use std::io;

/// A set of CPUs (an affinity mask).
#[derive(Clone, Copy)]
pub struct Cpus(libc::cpu_set_t);

impl Cpus {
    /// The CPUs the process's main thread may run on: the process's set,
    /// whatever the calling thread's own is.
    pub fn of_process() -> io::Result<Cpus> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set, and the kernel
        // writes at most the size we pass.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            let pid = libc::getpid();
            if libc::sched_getaffinity(pid, size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Cpus(set))
        }
    }

    /// How many CPUs are in the set.
    pub fn count(&self) -> usize {
        // SAFETY: reads a valid set.
        unsafe { libc::CPU_COUNT(&self.0) as usize }
    }

    /// Lets the calling thread run on these CPUs (and only these).
    pub fn apply_to_this_thread(&self) -> io::Result<()> {
        // SAFETY: passes a valid set of the size given.
        match unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &self.0) } {
            0 => Ok(()),
            _ => Err(io::Error::last_os_error()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_pinned_to_one_cpu_still_sees_the_process_set() {
        let all = Cpus::of_process().unwrap();
        assert!(all.count() >= 1);
        let seen = std::thread::spawn(|| {
            // SAFETY: as above, a set with CPU 0 only... unless the process
            // may not run there, in which case pinning fails and is skipped.
            let pinned = unsafe {
                let mut one: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(0, &mut one);
                libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &one) == 0
            };
            let seen = Cpus::of_process().unwrap().count();
            Cpus::of_process().unwrap().apply_to_this_thread().unwrap();
            (pinned, seen)
        })
        .join()
        .unwrap();
        assert_eq!(seen.1, all.count(), "pinned: {}", seen.0);
    }
}
