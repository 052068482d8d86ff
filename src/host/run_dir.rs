//! The run directory (`/run/ecs-hostnet`): the lock of apply/remove ([`Lock`], an
//! exclusive `flock(2)`) and the saved copies of the route_localnet record (one file per
//! network namespace). Failures are a typed [`Error`] naming the path.

use crate::host::files::Root;
use crate::host::nft::Netfilter;
use crate::model::record::{self, Record};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A failure in the run directory. Each message names the path; an OS error is the
/// [`source`](std::error::Error::source) (printed after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The run directory could not be created.
    #[error("cannot create the run directory {}", dir.display())]
    CreateRunDir {
        /// The run directory.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The lock file could not be opened (or created).
    #[error("cannot open the lock file {}", path.display())]
    OpenLock {
        /// `<run dir>/lock`.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `flock(2)` failed for a reason other than the lock being held.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// `<run dir>/lock`.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another process held the lock for the whole timeout (see [`Error::is_busy`]).
    #[error(
        "another ecs-hostnet apply or remove is still running (lock {} held for more than {} s); try again later",
        path.display(),
        timeout.as_secs()
    )]
    Busy {
        /// `<run dir>/lock`.
        path: PathBuf,
        /// How long it was waited for (whole seconds are printed).
        timeout: Duration,
    },
    /// A folder for the saved record could not be created.
    #[error("cannot create {}", dir.display())]
    CreateDir {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The saved record (or its temporary file) could not be written or renamed into place.
    #[error("cannot write {}", path.display())]
    Write {
        /// The temporary file (write) or the saved record (rename).
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An empty record's saved copy could not be removed.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The saved record.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether another apply or remove held the lock for the whole timeout.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// The run directory: the lock and the saved route_localnet records. `$ECS_HOSTNET_RUN_DIR`
/// if set (tests and unusual layouts), else `/run/ecs-hostnet` under the root (a tmpfs:
/// cleared at boot, when the kernel's route_localnet values are back to their defaults too).
pub fn run_dir(root: &Root) -> PathBuf {
    std::env::var_os("ECS_HOSTNET_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| root.at("/run/ecs-hostnet"))
}

/// How long a second apply/remove waits for the first before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// An exclusive `flock(2)` on `<run dir>/lock`, held by apply and remove for their whole
/// run so that the boot unit, the ecs-init hook and a person never interleave (a remove
/// between an apply's batch and its sysctl write would leave route_localnet on with no
/// guard). Released when dropped (nix's [`Flock`] unlocks, then the file is closed) or
/// when the process dies.
pub struct Lock {
    _flock: Flock<std::fs::File>,
}

impl Lock {
    /// Waits up to `timeout` for the lock, trying every 20 ms without blocking.
    ///
    /// Errors: [`Error::CreateRunDir`], [`Error::OpenLock`], [`Error::Lock`], and
    /// [`Error::Busy`] when the lock was still held after `timeout`.
    pub fn acquire(root: &Root, timeout: Duration) -> Result<Lock, Error> {
        let dir = run_dir(root);
        std::fs::create_dir_all(&dir).map_err(|source| Error::CreateRunDir { dir: dir.clone(), source })?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| Error::OpenLock { path: path.clone(), source })?;
        let start = Instant::now();
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) => return Ok(Lock { _flock: flock }),
                // As an io::Error, so the message ends in "(os error N)" as it always has.
                Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                    return Err(Error::Lock { path, source: errno.into() });
                }
                // Held by someone else: the file comes back for the next try.
                Err((f, _)) => file = f,
            }
            if start.elapsed() >= timeout {
                return Err(Error::Busy { path, timeout });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Where the saved copy of this namespace's route_localnet record lives:
/// `<run dir>/route_localnet/<netns cookie>`. `None` on kernels without netns cookies
/// (< 5.14): an nsfs inode number can be reused by a later namespace, so no file is kept
/// and only the kernel's copy is used.
fn saved_record_path(nf: &Netfilter, root: &Root) -> Option<PathBuf> {
    nf.netns_cookie().map(|c| run_dir(root).join("route_localnet").join(format!("netns-{c}")))
}

/// The saved copy of this namespace's record; `None` when there is none or it is not one we wrote.
pub fn read_saved_record(nf: &Netfilter, root: &Root) -> Option<Record> {
    let text = std::fs::read(saved_record_path(nf, root)?).ok()?;
    record::decode(&text)
}

/// Makes the saved copy equal `r` (deleted when empty); writes only when it differs,
/// through a temporary file and a rename so a crash leaves the old or the new copy.
/// Nothing is kept on kernels without netns cookies.
///
/// Errors: [`Error::Remove`], [`Error::CreateDir`], [`Error::Write`].
pub fn sync_saved_record(nf: &Netfilter, root: &Root, r: &Record) -> Result<(), Error> {
    let Some(path) = saved_record_path(nf, root) else { return Ok(()) };
    if r.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => Err(Error::Remove { path, source }),
            _ => Ok(()),
        };
    }
    let bytes = record::encode(r);
    if std::fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir { dir: dir.to_path_buf(), source })?;
    // A fixed temporary name (written under the lock): a run killed before the rename
    // leaves at most this one file, which the next run replaces.
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("record")));
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, &bytes).map_err(|source| Error::Write { path: tmp.clone(), source })?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ok();
    std::fs::rename(&tmp, &path).map_err(|source| Error::Write { path, source })
}
