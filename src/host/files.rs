//! Files under a root directory (`--root`), every path resolved inside it: reads, atomic
//! writes with explicit modes, removals, folders and the enablement symlink, each failure
//! a typed [`Error`] naming the path.
//!
//! Owns [`Root`] (where absolute paths are taken from) and the walk that resolves a path
//! inside it: from an open root folder, one component at a time, each looked at with
//! `AT_SYMLINK_NOFOLLOW` and opened relative to the folder before it with `O_NOFOLLOW`; a
//! symlink is read with `readlinkat` and its target put in its place, an absolute target
//! taken from the root again and `..` stopping at the root, as a kernel `chroot` or
//! `openat2(RESOLVE_IN_ROOT)` would. So an image whose `/etc/ecs` is a link to `/data/ecs`
//! gets its files in `DIR/data/ecs`, never in the build host's `/data/ecs`: nothing outside
//! the root is opened for writing, written, renamed over or removed, and reads stay inside
//! it too. The walk is ours rather than `openat2`'s because install needs what it resolved
//! (the folders it creates are recorded by their real path, a relative link at the last
//! component is taken from its own folder) and creates missing folders on the way with an
//! explicit mode.
//!
//! Every folder made here is 0755 and every file written gets the mode and owner of its
//! [`Perm`] with `fchmod`/`fchown` on the open file, whatever the process umask.
//!
//! Operations: [`read_opt`], [`open_read`], [`metadata`], [`write_atomic`] (temporary file
//! in the same folder, fsync, `renameat`, fsync of the folder), [`set_perm`],
//! [`remove_file`], [`remove_dir`], [`read_link`], [`replace_symlink`], [`read_dir`], and
//! the helpers install uses to record what it creates ([`missing_dirs`], [`real_path`],
//! [`temp_path`]). [`resolved_host_path`] serves code that still reads through host paths.
//! [`locate`] gives other edges (the run directory) an open folder to work in.

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{UnlinkatFlags, fsync, symlinkat, unlinkat};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::os::fd::{AsFd, AsRawFd as _, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Component, Path, PathBuf};

/// A failed file operation. Each message names the path; the OS error is the
/// [`source`](std::error::Error::source) (printed after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading a file failed for a reason other than its absence.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Creating a folder, a temporary file or a symlink failed.
    #[error("cannot create {}", path.display())]
    Create {
        /// The folder or file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Writing the content of a temporary file failed.
    #[error("cannot write {}", path.display())]
    Write {
        /// The temporary file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Setting the mode of a temporary file failed. Printed as the OS error alone (the
    /// message has never named the file).
    #[error(transparent)]
    Chmod(std::io::Error),
    /// Giving a file its owner failed.
    #[error("cannot chown {}", path.display())]
    Chown {
        /// The temporary file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// fsync(2) of a file or folder failed.
    #[error("cannot sync {}", path.display())]
    Sync {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Renaming the temporary file (or symlink) over the target failed.
    #[error("cannot replace {}", path.display())]
    Replace {
        /// The target.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Removing a file or an empty folder failed for a reason other than its absence.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The target is a symlink whose target cannot be resolved (inside the root).
    #[error("{} is a symlink to a missing file; remove it first", path.display())]
    DanglingSymlink {
        /// The symlink.
        path: PathBuf,
        /// The error of resolving it.
        source: std::io::Error,
    },
    /// The target is a symlink to something other than a regular file (a unit masked with
    /// a link to `/dev/null`); it is left alone.
    #[error(
        "{} is a symlink to {}, not to a regular file (a masked unit?); unmask or remove it first",
        path.display(),
        target.display()
    )]
    NotARegularFile {
        /// The symlink.
        path: PathBuf,
        /// What it resolves to (under the root), or `/dev/null` for a masked unit.
        target: PathBuf,
    },
    /// The path has no folder (only `/`), so nothing can be written there.
    #[error("a file path has a folder")]
    NoFolder,
    /// The root directory itself (`--root DIR`) cannot be opened.
    #[error("cannot open the root directory {}", path.display())]
    Root {
        /// The root directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The directory every absolute path is taken relative to (`--root`, default `/`), so
/// image builders can install into a tree that is not the running system.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    /// `None` is the running system's `/`.
    pub fn new(dir: Option<&Path>) -> Root {
        Root(dir.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/")))
    }
    /// `true` for the running system.
    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }
    /// The host path of `abs` (an absolute path inside the root), joined textually: for
    /// messages. Opening it would resolve the image's absolute symlinks on the build host;
    /// this module's functions resolve inside the root instead.
    pub fn at(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }
    /// The root folder, open (`O_PATH`), where every walk starts. The root path itself is
    /// the operator's and resolved as given.
    fn open(&self) -> Result<OwnedFd, Error> {
        nix::fcntl::open(&self.0, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| Error::Root { path: self.0.clone(), source: e.into() })
    }
}

/// The mode and owner a file written by [`write_atomic`] gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Exactly these permission bits (e.g. `0o644`), owned by root:root when running as
    /// root: a file ecs-hostnet owns (configuration, units, binary, state). A file whose
    /// content is right but whose mode or owner is not is written again.
    Exact(u32),
    /// These permission bits and this owner: a file put back as it was before install.
    Restore {
        /// Permission bits.
        mode: u32,
        /// Owner.
        uid: u32,
        /// Group.
        gid: u32,
    },
    /// The mode and owner of the file it replaces are kept; a new file gets these bits,
    /// owned by the user running ecs-hostnet. For files ecs-hostnet only edits
    /// (ecs.config).
    KeepExisting(u32),
}

/// Permission bits alone are [`Perm::Exact`].
impl From<u32> for Perm {
    fn from(mode: u32) -> Perm {
        Perm::Exact(mode)
    }
}

/// What [`metadata`] reports of a path: its kind, permission bits and owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Meta {
    /// A regular file.
    pub is_file: bool,
    /// A folder.
    pub is_dir: bool,
    /// A symlink (only when not followed).
    pub is_symlink: bool,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

impl Meta {
    fn of(st: &FileStat) -> Meta {
        let kind = st.st_mode & SFlag::S_IFMT.bits();
        Meta {
            is_file: kind == SFlag::S_IFREG.bits(),
            is_dir: kind == SFlag::S_IFDIR.bits(),
            is_symlink: kind == SFlag::S_IFLNK.bits(),
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
        }
    }
}

/// The owner a file of [`Perm::Exact`] gets: root:root when running as root; otherwise
/// the creator stays the owner (an unprivileged image build).
fn exact_owner() -> Option<(u32, u32)> {
    nix::unistd::geteuid().is_root().then_some((0, 0))
}

/// Folders created on the way are 0755 (explicit, not the umask's).
const DIR_MODE: u32 = 0o755;
/// At most this many symlinks are followed in one walk (Linux's own limit).
const MAX_LINKS: u32 = 40;

/// The components of `path` as a walk takes them (`.` dropped, `..` kept).
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// What the walk does about folders that do not exist.
enum Missing<'a> {
    /// Stop with `NotFound`.
    Stop,
    /// Create them (0755), recording each one's real path.
    Create(&'a mut Vec<String>),
    /// Record the real path of each one that would be created, then stop with `NotFound`.
    List(&'a mut Vec<String>),
}

/// A path resolved inside a root: its folder, open, and its last component.
pub struct Located {
    /// The folder holding the last component (`O_PATH`, or read-only when just created).
    pub dir: OwnedFd,
    /// The folder's real path inside the root (`/` for the root).
    pub dir_abs: String,
    /// The last component (a symlink there was followed only when asked to).
    pub name: OsString,
    /// Its status (not followed if it is a symlink that was not followed); `None` when
    /// nothing of that name exists.
    pub stat: Option<FileStat>,
}

impl Located {
    /// The real path of the last component inside the root.
    pub fn abs(&self) -> String {
        join_abs(&self.dir_abs, &self.name)
    }
    fn meta(&self) -> Option<Meta> {
        self.stat.as_ref().map(Meta::of)
    }
    /// The folder opened for reading (fsync needs more than `O_PATH`).
    fn dir_for_sync(&self) -> nix::Result<OwnedFd> {
        openat(&self.dir, ".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
    }
}

fn join_abs(dir_abs: &str, name: &OsStr) -> String {
    let name = name.to_string_lossy();
    if dir_abs == "/" { format!("/{name}") } else { format!("{dir_abs}/{name}") }
}

fn stack_abs(stack: &[(OwnedFd, OsString)]) -> String {
    let mut s = String::new();
    for (_, n) in stack {
        s.push('/');
        s.push_str(&n.to_string_lossy());
    }
    if s.is_empty() { "/".into() } else { s }
}

fn is_kind(st: &FileStat, kind: SFlag) -> bool {
    st.st_mode & SFlag::S_IFMT.bits() == kind.bits()
}

/// Resolves `abs` inside the root open as `root` (see the module docs). `follow_last`:
/// a symlink at the last component is followed too. Folders that do not exist are
/// handled as `missing` says. Errors: the OS error of the step that failed (`NotFound`
/// for a missing folder, `ELOOP` after [`MAX_LINKS`] links, `ENOTDIR` for a file where a
/// folder is needed, `EISDIR` when the path names the root or ends in `..`).
fn walk(root: &OwnedFd, abs: &str, follow_last: bool, mut missing: Missing<'_>) -> std::io::Result<Located> {
    let mut queue = components(Path::new(abs));
    let mut stack: Vec<(OwnedFd, OsString)> = Vec::new();
    let mut links = 0;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            // `..` of the root is the root, as in a chroot.
            stack.pop();
            continue;
        }
        let last = queue.is_empty();
        let cur: BorrowedFd<'_> = stack.last().map_or(root.as_fd(), |(fd, _)| fd.as_fd());
        match fstatat(cur, c.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::ENOENT) if last => {
                return located(root, stack, c, None);
            }
            Err(Errno::ENOENT) => match &mut missing {
                Missing::Stop => return Err(Errno::ENOENT.into()),
                Missing::List(out) => {
                    // This folder and every later one but the last component.
                    let mut abs = join_abs(&stack_abs(&stack), &c);
                    out.push(abs.clone());
                    for rest in queue.iter().take(queue.len() - 1) {
                        abs = join_abs(&abs, rest);
                        out.push(abs.clone());
                    }
                    return Err(Errno::ENOENT.into());
                }
                Missing::Create(created) => {
                    match mkdirat(cur, c.as_os_str(), Mode::from_bits_truncate(DIR_MODE)) {
                        Ok(()) => {
                            let fd = openat(
                                cur,
                                c.as_os_str(),
                                OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                                Mode::empty(),
                            )?;
                            // mkdirat's mode went through the umask: set it exactly.
                            fchmod(&fd, Mode::from_bits_truncate(DIR_MODE))?;
                            created.push(join_abs(&stack_abs(&stack), &c));
                            stack.push((fd, c));
                        }
                        // Made by someone else in between: look at it again.
                        Err(Errno::EEXIST) => queue.push_front(c),
                        Err(e) => return Err(e.into()),
                    }
                }
            },
            Err(e) => return Err(e.into()),
            Ok(st) if is_kind(&st, SFlag::S_IFLNK) && (!last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(Errno::ELOOP.into());
                }
                let target = readlinkat(cur, c.as_os_str())?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    // Absolute targets are taken from the root, never from the host's `/`.
                    stack.clear();
                }
                let parts = components(target);
                if parts.is_empty() && !target.is_absolute() {
                    return Err(Errno::ENOENT.into());
                }
                for p in parts.into_iter().rev() {
                    queue.push_front(p);
                }
                if queue.is_empty() {
                    // A link to `/`: names the root itself.
                    return Err(Errno::EISDIR.into());
                }
            }
            Ok(st) if last => return located(root, stack, c, Some(st)),
            Ok(st) if is_kind(&st, SFlag::S_IFDIR) => {
                let fd = openat(
                    cur,
                    c.as_os_str(),
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )?;
                stack.push((fd, c));
            }
            Ok(_) => return Err(Errno::ENOTDIR.into()),
        }
    }
    Err(Errno::EISDIR.into())
}

fn located(
    root: &OwnedFd,
    mut stack: Vec<(OwnedFd, OsString)>,
    name: OsString,
    stat: Option<FileStat>,
) -> std::io::Result<Located> {
    let dir_abs = stack_abs(&stack);
    let dir = match stack.pop() {
        Some((fd, _)) => fd,
        None => root.try_clone()?,
    };
    Ok(Located { dir, dir_abs, name, stat })
}

/// Resolves `abs` inside `root`, for edges that work in the folder themselves (the run
/// directory). `follow_last`: a symlink at the last component is followed; `create`:
/// missing folders on the way are made (0755). `Ok(None)` when a folder on the way is
/// missing and `create` is false.
///
/// Errors: the OS error of the step that failed, as an `io::Error`.
pub fn locate(root: &Root, abs: &str, follow_last: bool, create: bool) -> std::io::Result<Option<Located>> {
    let fd = root.open().map_err(|e| match e {
        Error::Root { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    })?;
    let mut created = Vec::new();
    let missing = if create { Missing::Create(&mut created) } else { Missing::Stop };
    match walk(&fd, abs, follow_last, missing) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Resolves `abs` (following every symlink) for reading; `None` when it does not exist.
fn locate_existing(root: &Root, abs: &str) -> Result<Option<Located>, Error> {
    let read_err = |source: std::io::Error| Error::Read { path: root.at(abs), source };
    let fd = root.open()?;
    match walk(&fd, abs, true, Missing::Stop) {
        Ok(l) if l.stat.is_some() => Ok(Some(l)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(read_err(e)),
    }
}

/// Opens the last component of `l` for reading without following a symlink, refusing
/// anything but a regular file (a FIFO would block a read; a device is nothing of ours).
fn open_regular(l: &Located, path: &Path) -> Result<(std::fs::File, Meta), Error> {
    let read_err = |source: std::io::Error| Error::Read { path: path.to_path_buf(), source };
    let fd = openat(
        &l.dir,
        l.name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_err(e.into()))?;
    let st = fstat(&fd).map_err(|e| read_err(e.into()))?;
    let meta = Meta::of(&st);
    if meta.is_dir {
        return Err(read_err(Errno::EISDIR.into()));
    }
    if !meta.is_file {
        return Err(read_err(std::io::Error::other("not a regular file")));
    }
    Ok((std::fs::File::from(fd), meta))
}

/// Reads a file inside the root (symlinks followed inside it); `Ok(None)` when it does
/// not exist.
///
/// Errors: [`Error::Root`], [`Error::Read`] (also for a folder or anything but a regular
/// file).
pub fn read_opt(root: &Root, abs: &str) -> Result<Option<Vec<u8>>, Error> {
    let Some(l) = locate_existing(root, abs)? else { return Ok(None) };
    let (mut f, _) = open_regular(&l, &root.at(abs))?;
    let mut out = Vec::new();
    f.read_to_end(&mut out).map_err(|source| Error::Read { path: root.at(abs), source })?;
    Ok(Some(out))
}

/// A file opened for reading inside the root by [`open_read`].
pub struct Opened {
    /// The open file (read from it: what was checked is what is read).
    pub file: std::fs::File,
    /// Its status, from the open file.
    pub meta: Meta,
    /// Status of the folder holding it.
    pub dir: Meta,
    /// Its real path inside the root (symlinks resolved).
    pub abs: String,
}

/// Opens a regular file inside the root (symlinks followed inside it) with its status and
/// its folder's, so a caller can check owner and mode on what it then reads (no window
/// between check and read); `Ok(None)` when it does not exist.
///
/// Errors: [`Error::Root`], [`Error::Read`] (also for anything but a regular file).
pub fn open_read(root: &Root, abs: &str) -> Result<Option<Opened>, Error> {
    let Some(l) = locate_existing(root, abs)? else { return Ok(None) };
    let (file, meta) = open_regular(&l, &root.at(abs))?;
    let dir = fstat(&l.dir).map_err(|e| Error::Read { path: root.at(&l.dir_abs), source: e.into() })?;
    Ok(Some(Opened { file, meta, dir: Meta::of(&dir), abs: l.abs() }))
}

/// Status of `abs` inside the root: with `follow`, of what its symlinks lead to (inside
/// the root); without, of the last component itself. `Ok(None)` when nothing is there
/// (or, followed, a symlink leads nowhere).
///
/// Errors: [`Error::Root`], [`Error::Read`] (a folder on the way that cannot be searched,
/// a loop of links).
pub fn metadata(root: &Root, abs: &str, follow: bool) -> Result<Option<Meta>, Error> {
    let fd = root.open()?;
    match walk(&fd, abs, follow, Missing::Stop) {
        Ok(l) => Ok(l.meta()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Ok(None),
        Err(source) => Err(Error::Read { path: root.at(abs), source }),
    }
}

/// Folders of `abs` inside `root` that do not exist yet, outermost first, by their real
/// path inside the root (a missing folder behind a symlink is named where the link
/// leads). These are what [`write_atomic`] would create.
pub fn missing_dirs(root: &Root, abs: &str) -> Vec<String> {
    let Ok(fd) = root.open() else { return vec![] };
    let mut out = Vec::new();
    let _ = walk(&fd, abs, true, Missing::List(&mut out));
    out
}

/// The real path inside the root of the file `abs` names: its folders' symlinks resolved
/// inside the root (its last component not followed); missing folders are named where
/// [`write_atomic`] would create them. `abs` itself when it cannot be resolved.
pub fn real_path(root: &Root, abs: &str) -> String {
    let name = Path::new(abs).file_name().map(|n| n.to_os_string()).unwrap_or_default();
    if let Some(parent) = missing_dirs(root, abs).pop() {
        return join_abs(&parent, &name);
    }
    match root.open().map(|fd| walk(&fd, abs, false, Missing::Stop)) {
        Ok(Ok(l)) => l.abs(),
        _ => abs.to_string(),
    }
}

/// The host path of what `abs` names inside the root, every symlink on the way (the
/// last one too) resolved inside the root ([`real_path`] when it does not exist): for
/// code that reads through host paths, so that it reads what the image holds, never what
/// an absolute link in it names on the build host.
pub fn resolved_host_path(root: &Root, abs: &str) -> PathBuf {
    let real = match root.open().map(|fd| walk(&fd, abs, true, Missing::Stop)) {
        Ok(Ok(l)) if l.stat.is_some() => l.abs(),
        _ => real_path(root, abs),
    };
    root.at(&real)
}

/// The temporary file [`write_atomic`] writes before renaming it over `path`: a fixed
/// name next to it, so a run killed mid-write leaves at most one, which the next run
/// (install or uninstall) removes. Works on absolute paths inside the root as well as on
/// host paths.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.ecs-hostnet.tmp"))
}

fn temp_name(name: &OsStr) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(".ecs-hostnet.tmp");
    t
}

/// Whether a file of status `m` already has what `perm` asks for.
fn perm_ok(m: &Meta, perm: Perm) -> bool {
    match perm {
        Perm::KeepExisting(_) => true,
        Perm::Exact(mode) => m.mode == mode && exact_owner().is_none_or(|(u, g)| (m.uid, m.gid) == (u, g)),
        Perm::Restore { mode, uid, gid } => (m.mode, m.uid, m.gid) == (mode, uid, gid),
    }
}

/// Atomically replaces `abs` (inside the root) with `content` unless it already holds
/// exactly that with the mode and owner `perm` asks for. Returns whether it wrote. A
/// symlink at `abs` is followed inside the root: the file it leads to is replaced and the
/// link kept (an ecs.config managed elsewhere). Missing folders are created 0755.
///
/// The temporary file is created 0600 with `O_EXCL|O_NOFOLLOW` in the target's folder,
/// written, given its owner (`fchown`, before `fchmod`, which would otherwise lose
/// set-id bits) and mode (`fchmod`), fsynced, renamed over the target with `renameat`,
/// and the folder fsynced.
///
/// Errors: [`Error::Root`], [`Error::DanglingSymlink`], [`Error::NotARegularFile`],
/// [`Error::Read`], [`Error::NoFolder`], [`Error::Create`], [`Error::Write`],
/// [`Error::Chmod`], [`Error::Chown`], [`Error::Sync`], [`Error::Replace`]; on any of
/// them after the temporary file was made, it is removed and the target is untouched.
pub fn write_atomic(root: &Root, abs: &str, content: &[u8], perm: impl Into<Perm>) -> Result<bool, Error> {
    write_atomic_as(root, abs, content, perm.into(), false)
}

/// [`write_atomic`] for a file that several processes may write at once without a lock
/// (`status --textfile` from a timer and a person): each writer's temporary file has a
/// name of its own, `.NAME.ecs-hostnet.PID-N.tmp` (`O_EXCL`), so one writer never
/// renames, or removes, another's. (With one fixed name, a second writer's pre-emptive
/// unlink made the first's rename fail with `ENOENT`, or publish the second's unfinished
/// file.) Temporary files of this name left by processes that no longer run are removed.
///
/// Errors: as [`write_atomic`].
pub fn write_atomic_shared(root: &Root, abs: &str, content: &[u8], perm: impl Into<Perm>) -> Result<bool, Error> {
    write_atomic_as(root, abs, content, perm.into(), true)
}

/// The temporary file of the writer `pid`'s `n`-th [`write_atomic_shared`] of `name`.
fn shared_temp_name(name: &OsStr, pid: u32, n: u64) -> OsString {
    let mut t = OsString::from(".");
    t.push(name);
    t.push(format!(".ecs-hostnet.{pid}-{n}.tmp"));
    t
}

/// The writer's pid of a [`shared_temp_name`] of `name`, if `entry` is one.
fn shared_temp_pid(name: &OsStr, entry: &OsStr) -> Option<u32> {
    let prefix = format!(".{}.ecs-hostnet.", name.to_str()?);
    let rest = entry.to_str()?.strip_prefix(&prefix)?.strip_suffix(".tmp")?;
    let (pid, n) = rest.split_once('-')?;
    n.parse::<u64>().ok()?;
    pid.parse().ok()
}

/// Removes the [`shared_temp_name`]s of `name` in `dir` whose writer no longer runs (a
/// `status` killed mid-write); best effort.
fn remove_stale_shared_temps(dir: &OwnedFd, name: &OsStr) {
    let Ok(entries) = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else { return };
    for e in entries.flatten() {
        let entry = e.file_name();
        if let Some(pid) = shared_temp_pid(name, &entry)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = unlinkat(dir, entry.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

/// Which [`write_atomic_shared`] of this process this is (part of its temporary name).
static SHARED_WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_atomic_as(root: &Root, abs: &str, content: &[u8], perm: Perm, shared: bool) -> Result<bool, Error> {
    let fd = root.open()?;
    let path = root.at(abs);
    // A link to anything but a regular file (a unit masked with a link to /dev/null) is
    // refused rather than overwritten; a link is otherwise followed to the file it names.
    let mut target = abs.to_string();
    match walk(&fd, abs, false, Missing::Stop) {
        Ok(l) if l.meta().is_some_and(|m| m.is_symlink) => {
            let literal = readlinkat(&l.dir, l.name.as_os_str()).ok().map(PathBuf::from);
            if literal.as_deref() == Some(Path::new("/dev/null")) {
                return Err(Error::NotARegularFile { path, target: "/dev/null".into() });
            }
            match walk(&fd, abs, true, Missing::Stop) {
                Ok(t) if t.meta().is_some_and(|m| m.is_file) => target = t.abs(),
                Ok(t) if t.stat.is_some() => {
                    return Err(Error::NotARegularFile { path, target: root.at(&t.abs()) });
                }
                Ok(_) => return Err(Error::DanglingSymlink { path, source: Errno::ENOENT.into() }),
                Err(source) => return Err(Error::DanglingSymlink { path, source }),
            }
        }
        _ => {}
    }
    if Path::new(&target).file_name().is_none() {
        return Err(Error::NoFolder);
    }
    let mut created = Vec::new();
    let dir_err = |source: std::io::Error| {
        let dir = Path::new(&target).parent().map(|d| root.at(&d.to_string_lossy())).unwrap_or_else(|| root.at("/"));
        Error::Create { path: dir, source }
    };
    let l = walk(&fd, &target, false, Missing::Create(&mut created)).map_err(dir_err)?;
    let path = root.at(&l.abs());
    let existing = l.meta().filter(|m| !m.is_symlink);
    if existing.is_some_and(|m| perm_ok(&m, perm)) {
        let (mut f, _) = open_regular(&l, &path)?;
        let mut now = Vec::new();
        f.read_to_end(&mut now).map_err(|source| Error::Read { path: path.clone(), source })?;
        if now == content {
            return Ok(false);
        }
    } else if existing.is_some_and(|m| m.is_dir) {
        return Err(Error::Read { path, source: Errno::EISDIR.into() });
    }
    let (mode, owner) = match perm {
        Perm::Exact(mode) => (mode, exact_owner()),
        Perm::Restore { mode, uid, gid } => (mode, Some((uid, gid))),
        Perm::KeepExisting(mode) => match existing.filter(|m| m.is_file) {
            Some(m) => (m.mode, Some((m.uid, m.gid))),
            None => (mode, None),
        },
    };
    let tmp = if shared {
        let n = SHARED_WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        remove_stale_shared_temps(&l.dir, &l.name);
        shared_temp_name(&l.name, std::process::id(), n)
    } else {
        temp_name(&l.name)
    };
    let tmp_path = root.at(&join_abs(&l.dir_abs, &tmp));
    // A temporary file left by an earlier run that was killed is ours to replace
    // (unlinkat removes a link planted there, never what it points to). A shared name is
    // this process's own: no other writer has it.
    let _ = unlinkat(&l.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    let f = openat(
        &l.dir,
        tmp.as_os_str(),
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(|e| Error::Create { path: tmp_path.clone(), source: e.into() })?;
    let mut f = std::fs::File::from(f);
    let result = (|| -> Result<(), Error> {
        f.write_all(content).map_err(|source| Error::Write { path: tmp_path.clone(), source })?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .map_err(|source| Error::Chown { path: tmp_path.clone(), source })?;
        }
        fchmod(&f, Mode::from_bits_truncate(mode)).map_err(|e| Error::Chmod(e.into()))?;
        f.sync_all().map_err(|source| Error::Sync { path: tmp_path.clone(), source })?;
        renameat(&l.dir, tmp.as_os_str(), &l.dir, l.name.as_os_str())
            .map_err(|e| Error::Replace { path: path.clone(), source: e.into() })?;
        let dir_path = root.at(&l.dir_abs);
        l.dir_for_sync().and_then(fsync).map_err(|e| Error::Sync { path: dir_path, source: e.into() })
    })();
    if result.is_err() {
        let _ = unlinkat(&l.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    }
    result.map(|()| true)
}

/// Gives an existing regular file (symlinks followed inside the root) the mode and owner
/// of `perm` ([`Perm::Exact`] or [`Perm::Restore`]) in place, without touching its
/// content: owner first, then mode. Returns whether it changed anything; `Ok(false)` when
/// the file does not exist.
///
/// Errors: [`Error::Root`], [`Error::Read`] (also for anything but a regular file),
/// [`Error::Chown`], [`Error::Chmod`].
pub fn set_perm(root: &Root, abs: &str, perm: Perm) -> Result<bool, Error> {
    let Some(l) = locate_existing(root, abs)? else { return Ok(false) };
    let path = root.at(abs);
    let (f, meta) = open_regular(&l, &path)?;
    if perm_ok(&meta, perm) {
        return Ok(false);
    }
    let (mode, owner) = match perm {
        Perm::Exact(mode) => (mode, exact_owner()),
        Perm::Restore { mode, uid, gid } => (mode, Some((uid, gid))),
        Perm::KeepExisting(_) => return Ok(false),
    };
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|source| Error::Chown { path, source })?;
    }
    fchmod(&f, Mode::from_bits_truncate(mode)).map_err(|e| Error::Chmod(e.into()))?;
    Ok(true)
}

/// Removes a file (or a symlink itself) inside the root if it exists, then fsyncs its
/// folder. Returns whether it removed.
///
/// Errors: [`Error::Root`], [`Error::Remove`].
pub fn remove_file(root: &Root, abs: &str) -> Result<bool, Error> {
    unlink(root, abs, UnlinkatFlags::NoRemoveDir)
}

/// Removes an empty folder inside the root (never through a symlink). Returns whether it
/// removed; `Ok(false)` when it did not exist.
///
/// Errors: [`Error::Root`], [`Error::Remove`] (also when it is not empty).
pub fn remove_dir(root: &Root, abs: &str) -> Result<bool, Error> {
    unlink(root, abs, UnlinkatFlags::RemoveDir)
}

fn unlink(root: &Root, abs: &str, how: UnlinkatFlags) -> Result<bool, Error> {
    let remove_err = |source: std::io::Error| Error::Remove { path: root.at(abs), source };
    let fd = root.open()?;
    let l = match walk(&fd, abs, false, Missing::Stop) {
        Ok(l) if l.stat.is_some() => l,
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(remove_err(e)),
    };
    match unlinkat(&l.dir, l.name.as_os_str(), how) {
        Ok(()) => {
            let _ = l.dir_for_sync().and_then(fsync);
            Ok(true)
        }
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(remove_err(e.into())),
    }
}

/// The target of the symlink at `abs` (its last component not followed; the folders on
/// the way resolved inside the root); `None` when it is not a symlink or not there.
pub fn read_link(root: &Root, abs: &str) -> Option<PathBuf> {
    let fd = root.open().ok()?;
    let l = walk(&fd, abs, false, Missing::Stop).ok()?;
    l.meta().filter(|m| m.is_symlink)?;
    readlinkat(&l.dir, l.name.as_os_str()).ok().map(PathBuf::from)
}

/// Makes `abs` (inside the root) a symlink to `target`, atomically: the link is made
/// under a temporary name in the same folder and renamed over whatever is at `abs`, so
/// there is never a moment without a link. Missing folders are created 0755.
///
/// Errors: [`Error::Root`], [`Error::Create`], [`Error::Replace`], [`Error::Sync`].
pub fn replace_symlink(root: &Root, abs: &str, target: &str) -> Result<(), Error> {
    let fd = root.open()?;
    let dir_err = |source: std::io::Error| {
        let dir = Path::new(abs).parent().map(|d| root.at(&d.to_string_lossy())).unwrap_or_else(|| root.at("/"));
        Error::Create { path: dir, source }
    };
    let l = walk(&fd, abs, false, Missing::Create(&mut Vec::new())).map_err(dir_err)?;
    let path = root.at(&l.abs());
    let tmp = temp_name(&l.name);
    let tmp_path = root.at(&join_abs(&l.dir_abs, &tmp));
    let _ = unlinkat(&l.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
    symlinkat(target, &l.dir, tmp.as_os_str()).map_err(|e| Error::Create { path: tmp_path, source: e.into() })?;
    if let Err(e) = renameat(&l.dir, tmp.as_os_str(), &l.dir, l.name.as_os_str()) {
        let _ = unlinkat(&l.dir, tmp.as_os_str(), UnlinkatFlags::NoRemoveDir);
        return Err(Error::Replace { path, source: e.into() });
    }
    l.dir_for_sync().and_then(fsync).map_err(|e| Error::Sync { path: root.at(&l.dir_abs), source: e.into() })
}

/// The names in folder `abs` inside the root (symlinks followed inside it), without `.`
/// and `..`; `Ok(None)` when it does not exist.
///
/// Errors: [`Error::Root`], [`Error::Read`].
pub fn read_dir(root: &Root, abs: &str) -> Result<Option<Vec<OsString>>, Error> {
    let read_err = |source: std::io::Error| Error::Read { path: root.at(abs), source };
    let fd = root.open()?;
    let l = match walk(&fd, abs, true, Missing::Stop) {
        Ok(l) if l.stat.is_some() => l,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read_err(e)),
    };
    let dir = openat(
        &l.dir,
        l.name.as_os_str(),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read_err(e.into()))?;
    let mut d = nix::dir::Dir::from_fd(dir).map_err(|e| read_err(e.into()))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(|e| read_err(e.into()))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(Some(names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    /// A temporary folder holding `root/` and `outside/`, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new(tag: &str) -> Tree {
            let p = std::env::temp_dir().join(format!("ehn-files-{}-{tag}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(p.join("root")).unwrap();
            std::fs::create_dir_all(p.join("outside")).unwrap();
            Tree(p)
        }
        fn root(&self) -> Root {
            Root::new(Some(&self.0.join("root")))
        }
        fn path(&self, rel: &str) -> PathBuf {
            self.0.join(rel)
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Three writers replacing one file at once (threads: each write has its own temporary
    /// name, as each process's would): every write succeeds, a reader always sees one
    /// whole content, and no temporary file stays. A stale one of a writer that no longer
    /// runs is removed.
    #[test]
    fn concurrent_shared_writers_never_fail_and_never_publish_a_part() {
        let t = Tree::new("shared");
        std::fs::create_dir_all(t.path("root/m")).unwrap();
        let stale = t.path("root/m/.e.prom.ecs-hostnet.4194305-0.tmp"); // above pid_max's 2^22
        std::fs::write(&stale, b"old").unwrap();
        let contents: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop, contents) = (t.path("root/m/e.prom"), stop.clone(), contents.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Ok(b) = std::fs::read(&path) {
                        assert!(contents.contains(&b), "a part was published ({} bytes)", b.len());
                        reads += 1;
                    }
                }
                reads
            })
        };
        let writers: Vec<_> = contents
            .iter()
            .cloned()
            .map(|c| {
                let root = t.root();
                std::thread::spawn(move || {
                    (0..30).map(|_| write_atomic_shared(&root, "/m/e.prom", &c, 0o644).map(|_| ())).collect::<Vec<_>>()
                })
            })
            .collect();
        for w in writers {
            for r in w.join().unwrap() {
                assert!(r.is_ok(), "{r:?}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let left: Vec<_> = std::fs::read_dir(t.path("root/m")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, [OsString::from("e.prom")], "temporary files left");
        assert_eq!(shared_temp_pid(OsStr::new("e.prom"), OsStr::new(".e.prom.ecs-hostnet.42-7.tmp")), Some(42));
        assert_eq!(shared_temp_pid(OsStr::new("e.prom"), OsStr::new(".e.prom.ecs-hostnet.tmp")), None);
    }

    #[test]
    fn absolute_links_are_taken_inside_the_root() {
        let t = Tree::new("abs");
        let outside = t.path("outside");
        // /etc/ecs -> <outside> on the host; inside the root that is DIR/<outside>.
        std::fs::create_dir_all(t.path("root/etc")).unwrap();
        std::os::unix::fs::symlink(&outside, t.path("root/etc/ecs")).unwrap();
        let root = t.root();
        // Every folder of <outside>, then <outside> itself, is missing inside the root.
        let mut want: Vec<String> =
            outside.ancestors().filter(|a| *a != Path::new("/")).map(|a| a.to_string_lossy().into_owned()).collect();
        want.reverse();
        assert_eq!(missing_dirs(&root, "/etc/ecs/ecs.config"), want);
        assert!(write_atomic(&root, "/etc/ecs/ecs.config", b"A=1\n", 0o644).unwrap());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing may be written outside the root");
        let inside = t.path("root").join(outside.strip_prefix("/").unwrap()).join("ecs.config");
        assert_eq!(std::fs::read(&inside).unwrap(), b"A=1\n");
        assert_eq!(read_opt(&root, "/etc/ecs/ecs.config").unwrap().as_deref(), Some(&b"A=1\n"[..]));
        assert!(remove_file(&root, "/etc/ecs/ecs.config").unwrap());
        assert!(!inside.exists());
    }

    #[test]
    fn dot_dot_stops_at_the_root() {
        let t = Tree::new("dotdot");
        std::fs::create_dir_all(t.path("root/etc")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", t.path("root/etc/x")).unwrap();
        let root = t.root();
        write_atomic(&root, "/etc/x/f", b"1", 0o644).unwrap();
        assert!(t.path("root/outside/f").exists(), "`..` above the root is the root");
        assert_eq!(std::fs::read_dir(t.path("outside")).unwrap().count(), 0);
    }

    #[test]
    fn modes_are_explicit_and_a_wrong_mode_is_written_again() {
        let t = Tree::new("modes");
        let root = t.root();
        write_atomic(&root, "/a/b/f", b"x", 0o644).unwrap();
        for (p, want) in [("root/a", 0o755), ("root/a/b", 0o755), ("root/a/b/f", 0o644)] {
            assert_eq!(std::fs::metadata(t.path(p)).unwrap().mode() & 0o7777, want, "{p}");
        }
        // Right content, wrong mode: written again.
        std::fs::set_permissions(t.path("root/a/b/f"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(write_atomic(&root, "/a/b/f", b"x", 0o644).unwrap());
        assert_eq!(std::fs::metadata(t.path("root/a/b/f")).unwrap().mode() & 0o7777, 0o644);
        assert!(!write_atomic(&root, "/a/b/f", b"x", 0o644).unwrap());
        // An edited file keeps its mode.
        std::fs::set_permissions(t.path("root/a/b/f"), std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(write_atomic(&root, "/a/b/f", b"y", Perm::KeepExisting(0o644)).unwrap());
        assert_eq!(std::fs::metadata(t.path("root/a/b/f")).unwrap().mode() & 0o7777, 0o640);
    }

    #[test]
    fn a_masked_unit_is_refused_and_a_link_loop_is_an_error() {
        let t = Tree::new("masked");
        std::fs::create_dir_all(t.path("root/etc")).unwrap();
        std::os::unix::fs::symlink("/dev/null", t.path("root/etc/u")).unwrap();
        let root = t.root();
        let e = write_atomic(&root, "/etc/u", b"x", 0o644).unwrap_err();
        assert!(matches!(e, Error::NotARegularFile { .. }), "{e}");
        std::os::unix::fs::symlink("l2", t.path("root/etc/l1")).unwrap();
        std::os::unix::fs::symlink("l1", t.path("root/etc/l2")).unwrap();
        let e = read_opt(&root, "/etc/l1/f").unwrap_err();
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }

    #[test]
    fn symlink_is_replaced_and_read_inside_the_root() {
        let t = Tree::new("link");
        let root = t.root();
        replace_symlink(&root, "/etc/w/u.service", "/etc/u.service").unwrap();
        assert_eq!(read_link(&root, "/etc/w/u.service").as_deref(), Some(Path::new("/etc/u.service")));
        replace_symlink(&root, "/etc/w/u.service", "/etc/v.service").unwrap();
        assert_eq!(read_link(&root, "/etc/w/u.service").as_deref(), Some(Path::new("/etc/v.service")));
        assert_eq!(read_dir(&root, "/etc/w").unwrap(), Some(vec![OsString::from("u.service")]));
        assert!(remove_file(&root, "/etc/w/u.service").unwrap());
        assert!(remove_dir(&root, "/etc/w").unwrap());
        assert!(!remove_dir(&root, "/etc/w").unwrap());
    }
}
