//! One policy for poisoned locks: take the data anyway. Every critical section in the
//! worker leaves its data consistent between statements (inserts, removes, swaps of an
//! `Arc`), so a panic elsewhere while holding a lock never leaves it half-written, and
//! refusing the lock forever (or, worse, handing out a fresh unshared value) would turn
//! one panic into a stuck or unbounded stage.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

pub fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}
