//! Locking shared state between threads (a campaign's sessions, the
//! shared OAuth2 token).

use std::sync::{Mutex, MutexGuard};

/// The value behind `mutex`, even if a thread panicked holding it (the
/// shared state stays usable; a panic aborts the process in a release
/// build anyway).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
