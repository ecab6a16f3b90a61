//! Locks that outlive a panic in one request.
//!
//! The daemon answers a request that panicked with EIO and goes on serving
//! (mountd catches the unwind). A lock that request held is then poisoned;
//! with `lock().expect(..)` every later request touching it would panic
//! too, until the mount was unusable. The locks taken through [`Recover`]
//! guard state that is whole between any two calls a panic could interrupt
//! (maps, caches, queues, counters), so their poison flag says nothing and
//! is ignored. State that a panic can leave half-changed (a file's pending
//! writes, the open pack) is not locked this way: its owner checks
//! [`std::sync::Mutex::is_poisoned`] and recovers in its own terms.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locking that ignores poisoning; see the module documentation.
pub trait Recover<T> {
    /// The guard, whether or not an earlier holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T> Recover<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// [`Recover`] for reader-writer locks.
pub trait RecoverRw<T> {
    /// A shared guard, whether or not an earlier holder panicked.
    fn read_locked(&self) -> RwLockReadGuard<'_, T>;
    /// An exclusive guard, whether or not an earlier holder panicked.
    fn write_locked(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T> RecoverRw<T> for RwLock<T> {
    fn read_locked(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_locked(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_held_by_a_panicking_thread_still_serves() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let r = std::sync::Arc::new(RwLock::new(2));
        let (m2, r2) = (m.clone(), r.clone());
        let _ = std::thread::spawn(move || {
            let _a = m2.lock().unwrap();
            let _b = r2.write().unwrap();
            panic!("one request's bug");
        })
        .join();
        assert!(m.is_poisoned() && r.is_poisoned());
        *m.locked() += 1;
        *r.write_locked() += 1;
        assert_eq!((*m.locked(), *r.read_locked()), (2, 3));
    }
}
