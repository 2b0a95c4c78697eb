//! A store that is closed after a failed write and reopened from disk by the next call.
//!
//! sled 0.34 keeps the first I/O error of a database (a full disk while writing its log)
//! as a "global error" and refuses every later write until the database is opened again;
//! and a batch applied in memory whose flush failed is still visible to reads of that
//! `Db`, although it may never reach the disk. So after a failed write the store drops its
//! `Db` (nothing reads the in-memory state any more) and opens the files again: reads see
//! exactly what is on disk, and once space is freed, writes work again — without
//! restarting the process. While the files cannot be opened (the disk is still full),
//! every call fails with [`LocalError::Closed`], and the next call tries again.
//!
//! Reads share the lock; a write (or a reopen) holds it exclusively, so no read ever runs
//! on a `Db` that is being replaced.

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use crate::error::LocalError;

/// How often a reopen is tried at once when sled's file lock is still held by the `Db`
/// just dropped (its background flusher thread is joined on drop, but crossbeam's
/// deferred destruction may release the file a moment later).
const LOCK_RETRIES: u32 = 50;
const LOCK_RETRY_PAUSE: Duration = Duration::from_millis(10);

/// After a reopen failed, calls fail at once for this long instead of trying again:
/// opening replays sled's log, which a burst of requests on a full disk must not repeat
/// for each request.
const REOPEN_BACKOFF: Duration = Duration::from_millis(500);

/// An opened store `T`, or nothing after a failed write, with the way to open it again.
pub(crate) struct Reopenable<T> {
    /// What the store is, for messages ("journal"); no path, as the text may reach a
    /// client.
    name: &'static str,
    /// `None`: closed after a failed write; the next call reopens.
    gate: RwLock<Option<T>>,
    open: Box<dyn Fn() -> Result<T, LocalError> + Send + Sync>,
    /// When the last reopen failed, and whether for lack of space (under the write lock).
    failed: std::sync::Mutex<Option<(Instant, bool)>>,
}

impl<T> Reopenable<T> {
    /// Wraps a store opened by `open`, which is called again to reopen it.
    pub(crate) fn new(
        name: &'static str,
        open: impl Fn() -> Result<T, LocalError> + Send + Sync + 'static,
    ) -> Result<Reopenable<T>, LocalError> {
        // The same store dropped a moment ago in this process (a tool that closes and
        // opens again, a test) may still hold sled's file lock: wait for it briefly, as a
        // reopen does. Another process's lock still fails, half a second later.
        let mut attempt = 0;
        let first = loop {
            match open() {
                Err(LocalError::InUse { .. }) if attempt < LOCK_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                other => break other?,
            }
        };
        Ok(Reopenable {
            name,
            gate: RwLock::new(Some(first)),
            open: Box::new(open),
            failed: std::sync::Mutex::new(None),
        })
    }

    /// Runs `work` on the open store, reopening it first if it was closed.
    pub(crate) fn read<R>(
        &self,
        work: impl FnOnce(&T) -> Result<R, LocalError>,
    ) -> Result<R, LocalError> {
        {
            // A panic while the lock was held cannot leave a half-applied sled batch
            // (batches are atomic), so a poisoned lock is still safe to read through.
            let gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(store) = gate.as_ref() {
                return work(store);
            }
        }
        let gate = self.writer()?;
        match gate.as_ref() {
            Some(store) => work(store),
            None => Err(self.vanished()),
        }
    }

    /// The read lock, now, if no write holds it and the store is open; `None` otherwise
    /// (the caller then goes through [`Reopenable::read`] on the blocking pool).
    pub(crate) fn try_read_now(&self) -> Option<RwLockReadGuard<'_, Option<T>>> {
        let gate = match self.gate.try_read() {
            Ok(gate) => gate,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        gate.is_some().then_some(gate)
    }

    /// Runs a write on the open store (reopening it first if it was closed), holding the
    /// lock exclusively. If `work` says the store may hold what is not on disk
    /// (`Err((error, true))`), the store is closed before the lock is released and
    /// reopened from disk at once if it can be (else by the next call).
    pub(crate) fn write<R>(
        &self,
        work: impl FnOnce(&mut T) -> Result<R, (LocalError, bool)>,
    ) -> Result<R, LocalError> {
        let mut gate = self.writer()?;
        let Some(store) = gate.as_mut() else {
            return Err(self.vanished());
        };
        match work(store) {
            Ok(done) => Ok(done),
            Err((error, false)) => Err(error),
            Err((error, true)) => {
                metrics::counter!("adledger_storage_closed_total", "store" => self.name)
                    .increment(1);
                // Dropped before the files are opened again: sled locks its file.
                *gate = None;
                // The disk may still be full: then the next call tries again.
                let _ = self.reopen(&mut gate);
                Err(error)
            }
        }
    }

    /// Closes the store after a failed write made outside [`Reopenable::write`] (under
    /// the read lock, by a store that orders its writers itself), and reopens it from
    /// disk at once if it can be. The write lock waits for every call still running, so
    /// a write that flushes before it returns is never dropped; writes that returned
    /// without a flush are: only a store that flushes each write (the subscription store)
    /// or whose contents may lag behind (a read model, which stores its checkpoint
    /// atomically with its data) may be closed this way.
    pub(crate) fn close(&self) {
        metrics::counter!("adledger_storage_closed_total", "store" => self.name).increment(1);
        let mut gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        *gate = None;
        let _ = self.reopen(&mut gate);
    }

    /// The write lock, with the store reopened if it was closed.
    fn writer(&self) -> Result<RwLockWriteGuard<'_, Option<T>>, LocalError> {
        let mut gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        if gate.is_none() {
            self.reopen(&mut gate)?;
        }
        Ok(gate)
    }

    fn reopen(&self, gate: &mut Option<T>) -> Result<(), LocalError> {
        let mut failed = self.failed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, full)) = *failed
            && at.elapsed() < REOPEN_BACKOFF
        {
            return Err(LocalError::Closed {
                store: self.name,
                full,
            });
        }
        let mut attempt = 0;
        loop {
            match (self.open)() {
                Ok(store) => {
                    *gate = Some(store);
                    *failed = None;
                    return Ok(());
                }
                Err(LocalError::InUse { .. }) if attempt < LOCK_RETRIES => {
                    attempt += 1;
                    std::thread::sleep(LOCK_RETRY_PAUSE);
                }
                Err(error) => {
                    let full = error.is_storage_full();
                    *failed = Some((Instant::now(), full));
                    return Err(LocalError::Closed {
                        store: self.name,
                        full,
                    });
                }
            }
        }
    }

    /// Unreachable: the write lock is held from the reopen to here.
    fn vanished(&self) -> LocalError {
        LocalError::Closed {
            store: self.name,
            full: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};

    use super::*;

    /// A store whose "instance" is the count of opens, and whose opening can be made to
    /// fail as on a full disk.
    fn counting_store() -> (Reopenable<u32>, Arc<AtomicBool>) {
        let opens = Arc::new(AtomicU32::new(0));
        let full = Arc::new(AtomicBool::new(false));
        let disk_full = full.clone();
        let store = Reopenable::new("test store", move || {
            if disk_full.load(SeqCst) {
                return Err(LocalError::Sync {
                    path: "db".into(),
                    source: std::io::ErrorKind::StorageFull.into(),
                });
            }
            Ok(opens.fetch_add(1, SeqCst) + 1)
        })
        .expect("first open");
        (store, full)
    }

    fn failed_write(store: &Reopenable<u32>) -> LocalError {
        store
            .write(|_| Err::<(), _>((LocalError::BadBatch("flush failed".into()), true)))
            .expect_err("the write fails")
    }

    #[test]
    fn a_failed_write_reopens_from_disk_and_a_full_disk_keeps_it_closed_until_freed() {
        let (store, full) = counting_store();
        assert_eq!(store.read(|n| Ok(*n)).expect("read"), 1);
        // Refused without touching the store: nothing to reopen.
        let refused = store.write(|_| Err::<(), _>((LocalError::BadBatch("no".into()), false)));
        assert!(refused.is_err());
        assert_eq!(store.read(|n| Ok(*n)).expect("read"), 1);

        assert!(matches!(failed_write(&store), LocalError::BadBatch(_)));
        assert_eq!(store.read(|n| Ok(*n)).expect("read"), 2, "a new instance");

        full.store(true, SeqCst);
        failed_write(&store);
        assert!(
            store.try_read_now().is_none(),
            "closed: no read on the old instance"
        );
        let err = store.read(|n| Ok(*n)).expect_err("still full");
        assert!(
            matches!(err, LocalError::Closed { full: true, .. }) && err.is_storage_full(),
            "{err}"
        );
        full.store(false, SeqCst);
        std::thread::sleep(REOPEN_BACKOFF);
        assert_eq!(store.read(|n| Ok(*n)).expect("space freed"), 3);
    }
}
