//! Entering a network namespace for the rest of the process.
//!
//! ecs-hostnet is single-threaded: it calls setns(2) on its only thread before opening any
//! netlink socket or `/proc/sys` file, so everything it does happens in that namespace.

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sched::{CloneFlags, setns};
use std::path::{Path, PathBuf};

/// Resolves `--netns`: a value containing `/` is a path (e.g. `/proc/PID/ns/net`),
/// anything else a name under `/run/netns` (as made by `ip netns add`).
pub fn resolve(spec: &str) -> PathBuf {
    if spec.contains('/') { PathBuf::from(spec) } else { PathBuf::from("/run/netns").join(spec) }
}

/// Opens a namespace file without blocking: a FIFO or device given by mistake is then
/// refused by setns(2) instead of hanging the open.
pub fn open_nonblocking(path: &Path) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot open {}: {e}", path.display()))
}

/// Moves the calling thread into the network namespace `spec` (see [`resolve`]).
///
/// Errors: the namespace does not exist, the file is not a network namespace, or the
/// caller lacks CAP_SYS_ADMIN.
pub fn enter(spec: &str) -> Result<()> {
    if spec.is_empty() {
        bail!("--netns needs a namespace name (under /run/netns) or a path such as /proc/PID/ns/net");
    }
    let path = resolve(spec);
    if !path.exists() {
        bail!("network namespace {spec:?} not found ({} does not exist)", path.display());
    }
    let file = open_nonblocking(&path).map_err(|e| anyhow::anyhow!("network namespace {spec:?}: {e}"))?;
    match setns(&file, CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => bail!("entering network namespace {spec:?} needs CAP_SYS_ADMIN: run as root"),
        Err(Errno::EINVAL) => bail!("{} is not a network namespace", path.display()),
        Err(e) => bail!("cannot enter network namespace {spec:?} ({}): {e}", path.display()),
    }
}

/// The network namespaces named under `dir` (e.g. `/run/netns`), sorted.
pub fn namespaces_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}
