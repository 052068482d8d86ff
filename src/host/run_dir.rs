//! The run directory (`/run/ecs-hostnet`): the lock of apply/remove ([`Lock`], an
//! exclusive `flock(2)`), the saved copies of the route_localnet record (one file per
//! network namespace), the pid files of `ecs-hostnet watch` ([`WatchPidFile`]) and the
//! record of the configuration last applied in each namespace ([`write_applied`]), which
//! the watcher follows. Failures are a typed [`Error`] naming the path.
//!
//! Root-only, so that no other user can hold the lock (and keep the ECS agent down
//! through its `ExecStartPre=` hook) or plant a record that `remove` would write back to
//! `/proc/sys`:
//!
//! - the run directory is made 0700 (its missing parents 0755), whatever the umask;
//! - an existing one must be a folder (not a symlink) owned by the user running
//!   ecs-hostnet (root); one owned by anyone else is **refused**, with what to do: its
//!   owner could have put anything in it and could change it at any time, and giving it
//!   to root would bless what is there. One of ours with another mode (0755 from an older
//!   ecs-hostnet, or group/world-writable) is **made 0700**: we made it, and once it is
//!   0700 nobody else can add to it; what is already in it is checked entry by entry;
//! - the lock file, the record folder and the records are ours and 0600/0700. A lock file
//!   of ours with another mode is made 0600 in place, so a root administrator holding it
//!   with `flock(1)` is still respected; anything else at `lock` (a symlink, another
//!   user's file) is replaced by a new file renamed over it;
//! - a process of another user may still hold a lock file it opened while an older
//!   ecs-hostnet left it readable (0644): `flock` works on a read-only descriptor. When
//!   the lock is busy and `/proc/locks` shows that every holder is a process of another
//!   user, that file is set aside: a new lock file is renamed over it (under a second
//!   lock, `.lock.guard`, so two ecs-hostnet runs never both do it) and waited for
//!   instead. After taking the lock, a run checks that `lock` still names the file it
//!   locked, and starts again if not. So no other user can make apply wait, and a holder
//!   running as root is always waited for.
//!
//! Every entry is opened relative to the open run directory with `O_NOFOLLOW`.

use crate::host::files::{self, Root};
use crate::host::nft::Netfilter;
use crate::model::record::{self, Record};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, unlinkat};
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
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
    /// The run directory, or the record folder in it, is something other than a folder
    /// (a symlink, a file).
    #[error(
        "{} is not a folder (a symlink or a file); remove it (ecs-hostnet makes it again, root-only)",
        path.display()
    )]
    NotAFolder {
        /// The run directory or `<run dir>/route_localnet`.
        path: PathBuf,
    },
    /// The run directory, or the record folder in it, belongs to another user, who could
    /// hold the lock or change the saved records: refused.
    #[error(
        "{} is owned by uid {uid}, not by {}: that user could hold the lock or change the saved route_localnet \
         records; remove it (rm -r {}) and ecs-hostnet makes it again, root-only",
        path.display(),
        if *want == 0 { "root".to_string() } else { format!("uid {want} (the user running ecs-hostnet)") },
        path.display()
    )]
    ForeignOwner {
        /// The run directory or `<run dir>/route_localnet`.
        path: PathBuf,
        /// Its owner.
        uid: u32,
        /// The user running ecs-hostnet (its effective uid).
        want: u32,
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
    /// Whether another process held the lock for the whole timeout.
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Busy { .. })
    }
}

/// The run directory: the lock and the saved route_localnet records. `$ECS_HOSTNET_RUN_DIR`
/// if set (tests and unusual layouts), else `/run/ecs-hostnet` under the root (a tmpfs:
/// cleared at boot, when the kernel's route_localnet values are back to their defaults too).
/// The host path, for messages; it is opened by resolving it inside the root.
pub fn run_dir(root: &Root) -> PathBuf {
    std::env::var_os("ECS_HOSTNET_RUN_DIR").map(PathBuf::from).unwrap_or_else(|| root.at(RUN_DIR))
}

/// The run directory inside the root.
const RUN_DIR: &str = "/run/ecs-hostnet";
/// The lock file's name in the run directory.
const LOCK: &str = "lock";
/// The lock taken to set a lock file aside (never held for more than a rename).
const GUARD: &str = ".lock.guard";
/// The record folder's name in the run directory.
const RECORDS: &str = "route_localnet";

/// How long a second apply/remove waits for the first before giving up.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(30);

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// The open, checked run directory.
struct RunDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// Opens the run directory (see the module docs for what is checked). With `fix`, a
/// missing one is made (0700, parents 0755) and one of ours with another mode is made
/// 0700; without (readers that take no lock), `Ok(None)` when it is missing, and one that
/// others can write to is not trusted (`Ok(None)`).
fn open_run_dir(root: &Root, fix: bool) -> Result<Option<RunDir>, Error> {
    let path = run_dir(root);
    let create_err = |source: std::io::Error| Error::CreateRunDir { dir: path.clone(), source };
    // $ECS_HOSTNET_RUN_DIR is a host path (resolved from the host's `/`); the default
    // is resolved inside the root.
    let (in_root, abs) = match std::env::var_os("ECS_HOSTNET_RUN_DIR") {
        Some(p) => (Root::new(None), std::path::absolute(&p).map_err(create_err)?.to_string_lossy().into_owned()),
        None => (root.clone(), RUN_DIR.to_string()),
    };
    let Some(at) = files::locate(&in_root, &abs, false, fix).map_err(create_err)? else { return Ok(None) };
    if at.stat.is_none() {
        if !fix {
            return Ok(None);
        }
        match mkdirat(&at.dir, at.name.as_os_str(), Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(create_err(e.into())),
        }
    }
    let fd = match openat(
        &at.dir,
        at.name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(Error::NotAFolder { path }),
        Err(Errno::ENOENT) if !fix => return Ok(None),
        Err(e) => return Err(create_err(e.into())),
    };
    if !checked_folder(&fd, &path, fix)? {
        return Ok(None);
    }
    Ok(Some(RunDir { fd, path }))
}

/// Checks an open folder of the run directory: owned by us (else refused), mode 0700
/// (with `fix`, made so; without, `Ok(false)` when others can write to it).
fn checked_folder(fd: &OwnedFd, path: &Path, fix: bool) -> Result<bool, Error> {
    let st = fstat(fd).map_err(|e| Error::CreateDir { dir: path.to_path_buf(), source: e.into() })?;
    if st.st_uid != euid() {
        return Err(Error::ForeignOwner { path: path.to_path_buf(), uid: st.st_uid, want: euid() });
    }
    if st.st_mode & 0o7777 != 0o700 {
        if !fix {
            return Ok(st.st_mode & 0o022 == 0);
        }
        fchmod(fd, Mode::from_bits_truncate(0o700))
            .map_err(|e| Error::CreateDir { dir: path.to_path_buf(), source: e.into() })?;
    }
    Ok(true)
}

/// The record folder in the run directory, checked like the run directory; created
/// (0700) with `fix`. `Ok(None)` when it is missing (and not made) or not trusted.
fn records_dir(rd: &RunDir, fix: bool) -> Result<Option<(OwnedFd, PathBuf)>, Error> {
    let path = rd.path.join(RECORDS);
    let create_err = |source: std::io::Error| Error::CreateDir { dir: path.clone(), source };
    match fstatat(&rd.fd, RECORDS, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Err(Errno::ENOENT) if !fix => return Ok(None),
        Err(Errno::ENOENT) => match mkdirat(&rd.fd, RECORDS, Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(e) => return Err(create_err(e.into())),
        },
        Err(e) => return Err(create_err(e.into())),
        Ok(st) if !is_kind(&st, SFlag::S_IFDIR) => return Err(Error::NotAFolder { path }),
        Ok(_) => {}
    }
    let fd = match openat(
        &rd.fd,
        RECORDS,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::ELOOP | Errno::ENOTDIR) => return Err(Error::NotAFolder { path }),
        Err(e) => return Err(create_err(e.into())),
    };
    Ok(checked_folder(&fd, &path, fix)?.then_some((fd, path)))
}

/// Opens `<run dir>/<name>` (the lock or its guard) for `flock`, made ours and 0600 (see
/// the module docs).
fn open_lock(rd: &RunDir, name: &str) -> Result<std::fs::File, Error> {
    let path = rd.path.join(name);
    let open_err = |source: std::io::Error| Error::OpenLock { path: path.clone(), source };
    for _ in 0..3 {
        match openat(
            &rd.fd,
            name,
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| open_err(e.into()))?;
                if is_kind(&st, SFlag::S_IFREG) && st.st_uid == euid() {
                    if st.st_mode & 0o7777 != 0o600 {
                        fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| open_err(e.into()))?;
                    }
                    return Ok(std::fs::File::from(fd));
                }
                // Another user's file (or a FIFO, a device) at `name`.
                replace_lock(rd, name).map_err(open_err)?;
            }
            // A symlink at `name`.
            Err(Errno::ELOOP) => replace_lock(rd, name).map_err(open_err)?,
            Err(e) => return Err(open_err(e.into())),
        }
    }
    Err(open_err(Errno::ELOOP.into()))
}

/// Puts a new, empty 0600 file of ours in place of whatever is at `name`.
fn replace_lock(rd: &RunDir, name: &str) -> std::io::Result<()> {
    let tmp = format!(".{name}.tmp");
    let tmp = tmp.as_str();
    let _ = unlinkat(&rd.fd, tmp, UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        &rd.fd,
        tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    fchmod(&fd, Mode::from_bits_truncate(0o600))?;
    renameat(&rd.fd, tmp, &rd.fd, name).inspect_err(|_| {
        let _ = unlinkat(&rd.fd, tmp, UnlinkatFlags::NoRemoveDir);
    })?;
    Ok(())
}

/// An exclusive `flock(2)` on `<run dir>/lock`, held by apply and remove for their whole
/// run so that the boot unit, the ecs-init hook and a person never interleave (a remove
/// between an apply's batch and its sysctl write would leave route_localnet on with no
/// guard). Released when dropped (nix's [`Flock`] unlocks, then the file is closed) or
/// when the process dies.
pub struct Lock {
    _flock: Flock<std::fs::File>,
}

impl Lock {
    /// Opens (and checks, see the module docs) the run directory, its record folder and
    /// the lock file, then waits up to `timeout` for the lock, trying every 20 ms without
    /// blocking; a lock file held only by processes of other users is set aside (see the
    /// module docs). Everything a later [`sync_saved_record`] needs is checked here,
    /// before the caller touches the kernel.
    ///
    /// Errors: [`Error::CreateRunDir`], [`Error::NotAFolder`], [`Error::ForeignOwner`],
    /// [`Error::CreateDir`], [`Error::OpenLock`], [`Error::Lock`], and [`Error::Busy`]
    /// when the lock was still held after `timeout`.
    pub fn acquire(root: &Root, timeout: Duration) -> Result<Lock, Error> {
        let rd = open_run_dir(root, true)?
            .ok_or_else(|| Error::CreateRunDir { dir: run_dir(root), source: Errno::ENOENT.into() })?;
        records_dir(&rd, false)?;
        let path = rd.path.join(LOCK);
        let deadline = Instant::now() + timeout;
        let mut file = open_lock(&rd, LOCK)?;
        let mut tries: u32 = 0;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(flock) if names_lock(&rd, &flock) => return Ok(Lock { _flock: flock }),
                // Set aside while we waited: the new file is the lock now.
                Ok(flock) => {
                    drop(flock);
                    file = open_lock(&rd, LOCK)?;
                    continue;
                }
                // As an io::Error, so the message ends in "(os error N)" as it always has.
                Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                    return Err(Error::Lock { path, source: errno.into() });
                }
                // Held by someone else: the file comes back for the next try. Who holds
                // it is looked at on the first try and then once a second.
                Err((f, _)) => {
                    if tries.is_multiple_of(50) && held_by_other_users_only(&f) && set_aside(&rd, &f, deadline)? {
                        file = open_lock(&rd, LOCK)?;
                        tries = 0;
                        continue;
                    }
                    file = f;
                }
            }
            tries += 1;
            if Instant::now() >= deadline {
                return Err(Error::Busy { path, timeout });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Whether `<run dir>/lock` still names the open file `f`.
fn names_lock(rd: &RunDir, f: &std::fs::File) -> bool {
    match (fstat(f), fstatat(&rd.fd, LOCK, AtFlags::AT_SYMLINK_NOFOLLOW)) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

/// Whether the lock file `f` is held (`/proc/locks` lists a holder), and by no process
/// proven to be ours (see [`lock_holders`]). A holder whose uid cannot be read counts as
/// another user's: `/proc/locks` names the pid that took the lock, and a descriptor
/// inherited by a child keeps it held after that pid is gone (or the pid is reused, or
/// in another pid namespace); only a holder proven to run as our uid is waited for.
fn held_by_other_users_only(f: &std::fs::File) -> bool {
    let Ok(st) = fstat(f) else { return false };
    others_only(&lock_holders(&st), euid())
}

/// Whether `holders` is not empty and none of them is proven to run as `me`.
fn others_only(holders: &[(u32, Option<u32>)], me: u32) -> bool {
    !holders.is_empty() && holders.iter().all(|&(_, uid)| uid != Some(me))
}

/// Renames a new lock file over `<run dir>/lock` if it still names `stale`, under
/// [`GUARD`] so that of two runs that saw the same stale lock only one replaces it.
/// Returns whether `lock` now names another file than `stale` (replaced by this run or by
/// another one); `Ok(false)` when the guard stayed busy until `deadline`.
fn set_aside(rd: &RunDir, stale: &std::fs::File, deadline: Instant) -> Result<bool, Error> {
    let path = rd.path.join(LOCK);
    let mut guard = open_lock(rd, GUARD)?;
    let _held = loop {
        match Flock::lock(guard, FlockArg::LockExclusiveNonblock) {
            Ok(g) => break g,
            Err((_, errno)) if errno != Errno::EWOULDBLOCK => {
                return Err(Error::Lock { path: rd.path.join(GUARD), source: errno.into() });
            }
            Err((g, _)) if Instant::now() < deadline => {
                guard = g;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => return Ok(false),
        }
    };
    // Looked at again under the guard: a run that just finished released the lock, and its
    // pid being gone read like a descriptor inherited by a dead holder's child. Setting such
    // a lock aside would let this run in beside the waiter that takes the released one.
    if !still_held_by_others_only(stale) {
        return Ok(false);
    }
    if names_lock(rd, stale) {
        replace_lock(rd, LOCK).map_err(|source| Error::OpenLock { path, source })?;
    }
    Ok(true)
}

/// Whether `stale` cannot be locked now (someone holds it) and every holder is still not
/// proven to be ours ([`held_by_other_users_only`]). A lock that can be taken is free: it is
/// released again at once, and the caller tries the lock file as usual.
fn still_held_by_others_only(stale: &std::fs::File) -> bool {
    let Ok(probe) = stale.try_clone() else { return false };
    match Flock::lock(probe, FlockArg::LockExclusiveNonblock) {
        Ok(free) => {
            drop(free);
            false
        }
        Err((_, errno)) if errno == Errno::EWOULDBLOCK => held_by_other_users_only(stale),
        Err(_) => false,
    }
}

/// The processes holding a `flock` on the file of status `st`, from `/proc/locks` (empty
/// when it cannot be read), each with its real uid from `/proc/PID/status`, `None` when
/// that cannot be read (the pid is gone: a child that inherited the descriptor holds it).
///
/// A pid found gone is kept only if `/proc/locks`, read again after its status was
/// missed, still lists it: a process releases its `flock` before it exits and is reaped,
/// so a holder that merely finished between the two reads (an apply that was done, under
/// load) drops out here instead of reading as a stranger's lock to set aside.
fn lock_holders(st: &FileStat) -> Vec<(u32, Option<u32>)> {
    let read = || std::fs::read_to_string("/proc/locks").ok();
    let Some(locks) = read() else { return vec![] };
    let dev = (nix::sys::stat::major(st.st_dev), nix::sys::stat::minor(st.st_dev));
    let holders: Vec<(u32, Option<u32>)> =
        flock_holders(&locks, dev, st.st_ino).into_iter().map(|pid| (pid, process_uid(pid))).collect();
    if holders.iter().all(|&(_, uid)| uid.is_some()) {
        return holders;
    }
    let still = read().map(|l| flock_holders(&l, dev, st.st_ino)).unwrap_or_default();
    holders.into_iter().filter(|&(pid, uid)| uid.is_some() || still.contains(&pid)).collect()
}

/// The real uid of process `pid` (the first field of `Uid:` in `/proc/PID/status`);
/// `None` when it cannot be read (the pid is gone, or is 0: a holder in a pid namespace
/// that this `/proc` does not show).
fn process_uid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// The pids of `FLOCK` holders (not waiters) of inode `ino` on device `dev` (major,
/// minor) in the text of `/proc/locks`: lines such as
/// `1: FLOCK  ADVISORY  WRITE 1234 00:1b:6789 0 EOF` (device numbers in hex).
fn flock_holders(locks: &str, dev: (u64, u64), ino: u64) -> Vec<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", dev.0, dev.1);
    locks
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // A waiter's line reads `1: -> FLOCK ...`.
            (f.len() >= 6 && f[1] == "FLOCK" && f[5] == want).then(|| f[4].parse().ok()).flatten()
        })
        .collect()
}

/// The saved copy's file name in the record folder: `netns-<netns cookie>`. `None` on
/// kernels without netns cookies (< 5.14): an nsfs inode number can be reused by a later
/// namespace, so no file is kept and only the kernel's copy is used.
fn saved_record_name(nf: &Netfilter) -> Option<String> {
    nf.netns_cookie().map(|c| format!("netns-{c}"))
}

/// Reads a saved record of ours (a regular file owned by us that no one else can write);
/// `None` otherwise.
fn read_record(dir: &OwnedFd, name: &str) -> Option<Vec<u8>> {
    let fd =
        openat(dir, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
            .ok()?;
    let st = fstat(&fd).ok()?;
    if !is_kind(&st, SFlag::S_IFREG) || st.st_uid != euid() || st.st_mode & 0o022 != 0 {
        return None;
    }
    let mut out = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut out).ok()?;
    Some(out)
}

/// The saved copy of this namespace's record; `None` when there is none, it is not one we
/// wrote, or the run directory is not one to trust (see the module docs).
pub fn read_saved_record(nf: &Netfilter, root: &Root) -> Option<Record> {
    let name = saved_record_name(nf)?;
    let rd = open_run_dir(root, false).ok()??;
    let (dir, _) = records_dir(&rd, false).ok()??;
    record::decode(&read_record(&dir, &name)?)
}

/// Makes the saved copy equal `r` (deleted when empty); writes only when it differs,
/// through a temporary file (0600) and a rename so a crash leaves the old or the new
/// copy. Nothing is kept on kernels without netns cookies.
///
/// Errors: [`Error::CreateRunDir`], [`Error::NotAFolder`], [`Error::ForeignOwner`],
/// [`Error::Remove`], [`Error::CreateDir`], [`Error::Write`].
pub fn sync_saved_record(nf: &Netfilter, root: &Root, r: &Record) -> Result<(), Error> {
    let Some(name) = saved_record_name(nf) else { return Ok(()) };
    let rd = open_run_dir(root, true)?
        .ok_or_else(|| Error::CreateRunDir { dir: run_dir(root), source: Errno::ENOENT.into() })?;
    if r.is_empty() {
        let Some((dir, dir_path)) = records_dir(&rd, false)? else { return Ok(()) };
        return match unlinkat(&dir, name.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(Error::Remove { path: dir_path.join(&name), source: e.into() }),
        };
    }
    let bytes = record::encode(r);
    let (dir, dir_path) = records_dir(&rd, true)?
        .ok_or_else(|| Error::CreateDir { dir: rd.path.join(RECORDS), source: Errno::EACCES.into() })?;
    if read_record(&dir, &name).as_deref() == Some(&bytes[..]) {
        return Ok(());
    }
    // A fixed temporary name (written under the lock): a run killed before the rename
    // leaves at most this one file, which the next run replaces.
    write_atomic_in(&dir, &dir_path, &name, &bytes)
}

/// The pid file of the `ecs-hostnet watch` serving the network namespace whose nsfs inode
/// is `ns_inode`: `watch-<inode>.pid` in the run directory.
fn watch_pid_name(ns_inode: u64) -> String {
    format!("watch-{ns_inode}.pid")
}

/// The state file of the `ecs-hostnet watch` of the namespace `ns_inode`:
/// `watch-<inode>.json` beside its pid file ([`crate::model::watch_state`]).
fn watch_state_name(ns_inode: u64) -> String {
    format!("watch-{ns_inode}.json")
}

/// The pid file of a running `ecs-hostnet watch`, removed when dropped (if it still names
/// this process), with its state file. `remove` reads it to stop the watcher before it
/// removes anything.
pub struct WatchPidFile {
    dir: OwnedFd,
    dir_path: PathBuf,
    name: String,
    pid: u32,
}

impl Drop for WatchPidFile {
    fn drop(&mut self) {
        if read_pid(&self.dir, &self.name) == Some(self.pid) {
            let state = self.name.replace(".pid", ".json");
            let _ = unlinkat(&self.dir, state.as_str(), UnlinkatFlags::NoRemoveDir);
            let _ = unlinkat(&self.dir, self.name.as_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

fn read_pid(dir: &OwnedFd, name: &str) -> Option<u32> {
    std::str::from_utf8(&read_record(dir, name)?).ok()?.trim().parse().ok()
}

/// Writes `pid` (0600, through a temporary file and a rename) as the watcher of the
/// namespace `ns_inode`, replacing any older file.
///
/// Errors: [`Error::CreateRunDir`], [`Error::NotAFolder`], [`Error::ForeignOwner`],
/// [`Error::Write`].
pub fn write_watch_pid(root: &Root, ns_inode: u64, pid: u32) -> Result<WatchPidFile, Error> {
    let rd = open_run_dir(root, true)?
        .ok_or_else(|| Error::CreateRunDir { dir: run_dir(root), source: Errno::ENOENT.into() })?;
    let name = watch_pid_name(ns_inode);
    write_atomic(&rd, &name, format!("{pid}\n").as_bytes())?;
    Ok(WatchPidFile { dir: rd.fd, dir_path: rd.path, name, pid })
}

/// The record of the configuration last applied in the network namespace whose nsfs
/// inode is `ns_inode`: `applied-<inode>.toml` in the run directory.
fn applied_name(ns_inode: u64) -> String {
    format!("applied-{ns_inode}.toml")
}

/// Writes `bytes` as `<run dir>/<name>` (0600, through a temporary file, fsync and a
/// rename, so a reader sees the old or the new file, never a part).
fn write_atomic(rd: &RunDir, name: &str, bytes: &[u8]) -> Result<(), Error> {
    write_atomic_in(&rd.fd, &rd.path, name, bytes)
}

/// [`write_atomic`] in the folder open as `dir` (shown as `dir_path` in errors).
fn write_atomic_in(dir: &OwnedFd, dir_path: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = format!(".{name}.tmp");
    let write_err = |source: std::io::Error| Error::Write { path: dir_path.join(&tmp), source };
    let _ = unlinkat(dir, tmp.as_str(), UnlinkatFlags::NoRemoveDir);
    let fd = openat(
        dir,
        tmp.as_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| write_err(e.into()))?;
    fchmod(&fd, Mode::from_bits_truncate(0o600)).map_err(|e| write_err(e.into()))?;
    let mut f = std::fs::File::from(fd);
    f.write_all(bytes).map_err(write_err)?;
    f.sync_all().map_err(write_err)?;
    renameat(dir, tmp.as_str(), dir, name).map_err(|e| Error::Write { path: dir_path.join(name), source: e.into() })
}

impl WatchPidFile {
    /// Replaces the watcher's state file (`watch-<inode>.json`, 0600, through a temporary
    /// file, fsync and a rename: a reader sees the old or the new state, never a part).
    ///
    /// Errors: [`Error::Write`].
    pub fn write_state(&self, bytes: &[u8]) -> Result<(), Error> {
        write_atomic_in(&self.dir, &self.dir_path, &self.name.replace(".pid", ".json"), bytes)
    }
}

/// The watcher state file of the namespace `ns_inode` (see [`WatchPidFile::write_state`]);
/// `None` when there is none or it is not one we wrote (see [`read_saved_record`]'s
/// checks). Only meaningful while [`read_watch_pid`]'s watcher is alive.
pub fn read_watch_state(root: &Root, ns_inode: u64) -> Option<Vec<u8>> {
    let rd = open_run_dir(root, false).ok()??;
    read_record(&rd.fd, &watch_state_name(ns_inode))
}

/// Records `bytes` as the configuration last applied in the namespace `ns_inode` (see
/// [`read_applied`]); the caller holds the [`Lock`], so a watcher that takes the lock to
/// repair finds the record of the apply that held it before.
///
/// Errors: [`Error::CreateRunDir`], [`Error::NotAFolder`], [`Error::ForeignOwner`],
/// [`Error::Write`].
pub fn write_applied(root: &Root, ns_inode: u64, bytes: &[u8]) -> Result<(), Error> {
    let rd = open_run_dir(root, true)?
        .ok_or_else(|| Error::CreateRunDir { dir: run_dir(root), source: Errno::ENOENT.into() })?;
    write_atomic(&rd, &applied_name(ns_inode), bytes)
}

/// The record of the configuration last applied in the namespace `ns_inode`, as
/// [`write_applied`] wrote it; `None` when there is none or it is not one we wrote (see
/// [`read_saved_record`]'s checks).
pub fn read_applied(root: &Root, ns_inode: u64) -> Option<Vec<u8>> {
    let rd = open_run_dir(root, false).ok()??;
    read_record(&rd.fd, &applied_name(ns_inode))
}

/// Deletes the record of the configuration last applied in the namespace `ns_inode`
/// (`remove`); nothing to do when there is none.
///
/// Errors: [`Error::Remove`].
pub fn remove_applied(root: &Root, ns_inode: u64) -> Result<(), Error> {
    let Ok(Some(rd)) = open_run_dir(root, false) else { return Ok(()) };
    let name = applied_name(ns_inode);
    match unlinkat(&rd.fd, name.as_str(), UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(Error::Remove { path: rd.path.join(&name), source: e.into() }),
    }
}

/// The pid in the watcher's pid file of the namespace `ns_inode`; `None` when there is
/// none or it is not one we wrote (see [`read_saved_record`]'s checks). The caller must
/// check that the pid is still a watcher of that namespace before signalling it.
pub fn read_watch_pid(root: &Root, ns_inode: u64) -> Option<u32> {
    let rd = open_run_dir(root, false).ok()??;
    read_pid(&rd.fd, &watch_pid_name(ns_inode))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_holder_proven_ours_is_waited_for() {
        assert!(!others_only(&[], 0), "no holder listed: nothing to set aside");
        assert!(others_only(&[(7, Some(65534))], 0));
        assert!(others_only(&[(7, None)], 0), "a holder whose pid is gone is not proven ours");
        assert!(others_only(&[(7, None), (8, Some(65534))], 0));
        assert!(!others_only(&[(7, None), (8, Some(0))], 0), "a root holder is waited for");
        assert!(!others_only(&[(8, Some(0))], 0));
    }

    #[test]
    fn holders_are_read_from_proc_locks() {
        let locks = "1: FLOCK  ADVISORY  WRITE 4242 00:1b:6789 0 EOF\n\
                     1: -> FLOCK  ADVISORY  WRITE 4343 00:1b:6789 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 99 00:1b:6789 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 17 fd:01:6789 0 EOF\n";
        assert_eq!(flock_holders(locks, (0, 0x1b), 6789), vec![4242]);
        assert_eq!(flock_holders(locks, (0xfd, 1), 6789), vec![17]);
        assert!(flock_holders(locks, (0, 0x1b), 1).is_empty());
    }
}
