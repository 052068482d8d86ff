//! The run directory: the lock of apply/remove and the saved route_localnet records.

use crate::host::files::Root;
use crate::host::nft::Netfilter;
use crate::model::record::{self, Record};
use anyhow::{Context, Result, bail};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
/// guard). Released when dropped (or when the process dies).
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Waits up to `timeout` for the lock. Errors name the lock file.
    // Temporary, until this flock goes through nix: the crate denies unsafe_code.
    #[allow(unsafe_code)]
    pub fn acquire(root: &Root, timeout: Duration) -> Result<Lock> {
        let dir = run_dir(root);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run directory {}", dir.display()))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        let start = Instant::now();
        loop {
            // SAFETY: flock(2) on the descriptor of `file`, which is open while `file` lives.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(Lock { _file: file });
            }
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(err).with_context(|| format!("cannot lock {}", path.display()));
            }
            if start.elapsed() >= timeout {
                bail!(
                    "another ecs-hostnet apply or remove is still running (lock {} held for more than {} s); try again later",
                    path.display(),
                    timeout.as_secs()
                );
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
pub fn sync_saved_record(nf: &Netfilter, root: &Root, r: &Record) -> Result<()> {
    let Some(path) = saved_record_path(nf, root) else { return Ok(()) };
    if r.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", path.display()))
            }
            _ => Ok(()),
        };
    }
    let bytes = record::encode(r);
    if std::fs::read(&path).ok().as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // A fixed temporary name (written under the lock): a run killed before the rename
    // leaves at most this one file, which the next run replaces.
    let tmp = dir.join(format!(".{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("record")));
    let _ = std::fs::remove_file(&tmp);
    std::fs::write(&tmp, &bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::File::open(&tmp).and_then(|f| f.sync_all()).ok();
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))
}

