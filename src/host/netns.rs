//! Network namespaces: entering one for the rest of the process ([`enter`]), entering
//! one on a worker thread and coming back ([`enter_path`], [`Home`]), and listing the
//! named ones ([`namespaces_under`]). Failures are a typed [`Error`].
//!
//! ecs-hostnet is single-threaded: it calls setns(2) on its only thread before opening any
//! netlink socket or `/proc/sys` file, so everything it does happens in that namespace.
//! `task` is the exception: one worker thread visits each namespace in turn and returns
//! [`Home`] after each.

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, setns};
use std::path::{Path, PathBuf};

/// A namespace that could not be found, opened or entered. An OS error is the
/// [`source`](std::error::Error::source) (printed after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--netns` was given an empty value.
    #[error("--netns needs a namespace name (under /run/netns) or a path such as /proc/PID/ns/net")]
    EmptyName,
    /// The `--netns` value names no file.
    #[error("network namespace {spec:?} not found ({} does not exist)", path.display())]
    NotFound {
        /// The `--netns` value.
        spec: String,
        /// Where it was looked for ([`resolve`]).
        path: PathBuf,
    },
    /// A namespace file could not be opened.
    #[error("cannot open {}", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The `--netns` value's file could not be opened ([`Error::Open`], named by the value).
    #[error("network namespace {spec:?}: cannot open {}", path.display())]
    OpenNamed {
        /// The `--netns` value.
        spec: String,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// setns(2) answered `EINVAL`: the file is not a network namespace.
    #[error("{} is not a network namespace", path.display())]
    NotANetns {
        /// The file.
        path: PathBuf,
    },
    /// setns(2) answered `EPERM` for a `--netns` value: no `CAP_SYS_ADMIN`.
    #[error("entering network namespace {spec:?} needs CAP_SYS_ADMIN: run as root")]
    PermissionDenied {
        /// The `--netns` value.
        spec: String,
    },
    /// setns(2) answered `EPERM` for a path: no `CAP_SYS_ADMIN`.
    #[error("entering {} needs CAP_SYS_ADMIN: run as root", path.display())]
    PathPermissionDenied {
        /// The file.
        path: PathBuf,
    },
    /// setns(2) failed otherwise for a `--netns` value.
    #[error("cannot enter network namespace {spec:?} ({})", path.display())]
    Enter {
        /// The `--netns` value.
        spec: String,
        /// The file.
        path: PathBuf,
        /// The errno.
        source: Errno,
    },
    /// setns(2) failed otherwise for a path.
    #[error("cannot enter {}", path.display())]
    EnterPath {
        /// The file.
        path: PathBuf,
        /// The errno.
        source: Errno,
    },
    /// The calling thread's own namespace could not be opened ([`Home::here`]).
    #[error("cannot open this thread's network namespace")]
    OpenHome {
        /// The OS error.
        source: std::io::Error,
    },
    /// Going back to the original namespace failed ([`Home::go_back`]).
    #[error("cannot return to the original network namespace")]
    ReturnHome {
        /// The errno.
        source: Errno,
    },
    /// Listing a folder of namespaces failed.
    #[error("cannot list {}", dir.display())]
    List {
        /// The folder.
        dir: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Resolves `--netns`: a value containing `/` is a path (e.g. `/proc/PID/ns/net`),
/// anything else a name under `/run/netns` (as made by `ip netns add`).
pub fn resolve(spec: &str) -> PathBuf {
    if spec.contains('/') { PathBuf::from(spec) } else { PathBuf::from("/run/netns").join(spec) }
}

/// Opens a namespace file without blocking: a FIFO or device given by mistake is then
/// refused by setns(2) instead of hanging the open.
///
/// Errors: [`Error::Open`].
pub fn open_nonblocking(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).bits())
        .open(path)
        .map_err(|source| Error::Open { path: path.to_path_buf(), source })
}

/// Moves the calling thread into the network namespace `spec` (see [`resolve`]).
///
/// Errors: [`Error::EmptyName`], [`Error::NotFound`], [`Error::OpenNamed`],
/// [`Error::PermissionDenied`] (no CAP_SYS_ADMIN), [`Error::NotANetns`], [`Error::Enter`].
pub fn enter(spec: &str) -> Result<(), Error> {
    if spec.is_empty() {
        return Err(Error::EmptyName);
    }
    let path = resolve(spec);
    if !path.exists() {
        return Err(Error::NotFound { spec: spec.to_string(), path });
    }
    let file = open_nonblocking(&path).map_err(|e| match e {
        Error::Open { path, source } => Error::OpenNamed { spec: spec.to_string(), path, source },
        e => e,
    })?;
    match setns(&file, CloneFlags::CLONE_NEWNET) {
        Ok(()) => Ok(()),
        Err(Errno::EPERM) => Err(Error::PermissionDenied { spec: spec.to_string() }),
        Err(Errno::EINVAL) => Err(Error::NotANetns { path }),
        Err(source) => Err(Error::Enter { spec: spec.to_string(), path, source }),
    }
}

/// Moves the calling thread into the network namespace at `path` (a file as given to
/// `task`, not resolved). Meant for a worker thread that holds a [`Home`] to go back to.
///
/// Errors: [`Error::Open`], [`Error::NotANetns`], [`Error::PathPermissionDenied`],
/// [`Error::EnterPath`].
pub fn enter_path(path: &Path) -> Result<(), Error> {
    let file = open_nonblocking(path)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        Errno::EINVAL => Error::NotANetns { path: path.to_path_buf() },
        Errno::EPERM => Error::PathPermissionDenied { path: path.to_path_buf() },
        source => Error::EnterPath { path: path.to_path_buf(), source },
    })
}

/// The network namespace a thread started in, held open so the thread can go back to it.
pub struct Home(std::fs::File);

impl Home {
    /// The calling thread's network namespace (`/proc/thread-self/ns/net`).
    ///
    /// Errors: [`Error::OpenHome`].
    pub fn here() -> Result<Home, Error> {
        std::fs::File::open("/proc/thread-self/ns/net").map(Home).map_err(|source| Error::OpenHome { source })
    }

    /// Moves the calling thread back into this namespace.
    ///
    /// Errors: [`Error::ReturnHome`].
    pub fn go_back(&self) -> Result<(), Error> {
        setns(&self.0, CloneFlags::CLONE_NEWNET).map_err(|source| Error::ReturnHome { source })
    }
}

/// The nsfs inode number of the calling thread's network namespace
/// (`/proc/thread-self/ns/net`): names the namespace among those alive now.
///
/// Errors: [`Error::OpenHome`].
pub fn current_inode() -> Result<u64, Error> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/thread-self/ns/net").map(|m| m.ino()).map_err(|source| Error::OpenHome { source })
}

/// The nsfs inode number of process `pid`'s network namespace; `None` when it cannot be
/// read (the process is gone, or not ours to look at).
pub fn inode_of(pid: u32) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/ns/net")).ok().map(|m| m.ino())
}

/// The network namespaces named under `dir` (e.g. `/run/netns`), sorted.
///
/// Errors: [`Error::List`].
pub fn namespaces_under(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::List { dir: dir.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}
