//! Readiness: started, store writable, data volume not (almost) full. One owner for what
//! `/readyz` answers and what ingress refuses with 507.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::{info, warn};

/// The worker's health, read by admin (`/readyz`) and ingress.
pub struct Health {
    ready: AtomicBool,
    disk_low: AtomicBool,
    /// The store's directory, watched for free space.
    store_dir: PathBuf,
    /// Below this many free bytes the volume counts as full.
    min_free_bytes: u64,
}

impl Health {
    pub fn new(store_dir: PathBuf, min_free_bytes: u64) -> Self {
        Health {
            ready: AtomicBool::new(false),
            disk_low: AtomicBool::new(false),
            store_dir,
            min_free_bytes,
        }
    }

    /// Started (and not shutting down).
    pub fn set_started(&self, started: bool) {
        self.ready.store(started, Ordering::SeqCst);
    }

    pub fn started(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    /// Free space on the store's volume is below the watermark: new events are refused.
    pub fn disk_low(&self) -> bool {
        self.disk_low.load(Ordering::Relaxed)
    }

    /// Measures the free space of the store's volume and updates [`Health::disk_low`].
    pub fn check_disk(&self) {
        match free_bytes(&self.store_dir) {
            Ok(free) => {
                let low = free < self.min_free_bytes;
                if low != self.disk_low.swap(low, Ordering::SeqCst) {
                    if low {
                        warn!(
                            free,
                            min = self.min_free_bytes,
                            "free disk space below the watermark: refusing new events"
                        );
                    } else {
                        info!(
                            free,
                            "free disk space back above the watermark: accepting events"
                        );
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, dir = %self.store_dir.display(), "cannot measure free disk space")
            }
        }
    }
}

/// Bytes available to this process on the file system holding `path`.
fn free_bytes(path: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt as _;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter
    // that statvfs fills on success; it is read only then.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
