//! Files under a root directory (`--root`): reads, atomic writes and removals, each
//! failure a typed [`Error`] naming the path.
//!
//! Owns [`Root`] (where absolute paths are taken from), [`read_opt`], [`write_atomic`]
//! (temporary file, fsync, rename, fsync of the folder), [`remove_file`], and the
//! helpers install uses to record what it creates ([`missing_dirs`], [`temp_path`]).

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    /// Giving a temporary file the owner of the file it replaces failed.
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
    /// Renaming the temporary file over the target failed.
    #[error("cannot replace {}", path.display())]
    Replace {
        /// The target.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Removing a file failed for a reason other than its absence.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The target is a symlink whose target cannot be resolved.
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
        /// What it resolves to.
        target: PathBuf,
    },
    /// The path has no folder (only `/`), so nothing can be written there.
    #[error("a file path has a folder")]
    NoFolder,
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
    /// The real path of `abs` (an absolute path inside the root).
    pub fn at(&self, abs: &str) -> PathBuf {
        self.0.join(abs.trim_start_matches('/'))
    }
}

/// Reads a file; `Ok(None)` when it does not exist.
///
/// Errors: [`Error::Read`].
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read { path: path.to_path_buf(), source }),
    }
}

/// Folders of `path` (under `root`) that do not exist yet, outermost first.
pub fn missing_dirs(root: &Root, abs: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = Path::new(abs).parent();
    while let Some(dir) = p {
        if dir == Path::new("/") || root.at(&dir.to_string_lossy()).exists() {
            break;
        }
        out.push(dir.to_string_lossy().into_owned());
        p = dir.parent();
    }
    out.reverse();
    out
}

/// The temporary file [`write_atomic`] writes before renaming it over `path`: a fixed
/// name next to it, so a run killed mid-write leaves at most one, which the next run
/// (install or uninstall) removes.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.ecs-hostnet.tmp"))
}

/// Atomically replaces `path` with `content` unless it already holds exactly that.
/// A new file gets `mode` (permission bits, e.g. `0o644`); an existing one keeps its mode
/// and owner. Returns whether it wrote. A symlink is followed to the regular file it
/// names.
///
/// Errors: [`Error::DanglingSymlink`], [`Error::NotARegularFile`], [`Error::Read`],
/// [`Error::NoFolder`], [`Error::Create`], [`Error::Write`], [`Error::Chmod`],
/// [`Error::Chown`], [`Error::Sync`], [`Error::Replace`]; on any of them after the
/// temporary file was made, it is removed and the target is untouched.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<bool, Error> {
    // A symlink is followed: the file it points to is replaced and the link kept (an
    // ecs.config managed elsewhere). A link to anything but a regular file (a unit masked
    // with a link to /dev/null) is refused rather than overwritten.
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path)
                .map_err(|source| Error::DanglingSymlink { path: path.to_path_buf(), source })?;
            if !std::fs::metadata(&resolved).is_ok_and(|m| m.is_file()) {
                return Err(Error::NotARegularFile { path: path.to_path_buf(), target: resolved });
            }
            resolved.as_path()
        }
        _ => path,
    };
    if read_opt(path)?.as_deref() == Some(content) {
        return Ok(false);
    }
    let dir = path.parent().ok_or(Error::NoFolder)?;
    std::fs::create_dir_all(dir).map_err(|source| Error::Create { path: dir.to_path_buf(), source })?;
    let existing = std::fs::metadata(path).ok();
    let tmp = temp_path(path);
    // A temporary file left by an earlier run that was killed is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<(), Error> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(|source| Error::Create { path: tmp.clone(), source })?;
        f.write_all(content).map_err(|source| Error::Write { path: tmp.clone(), source })?;
        let (mode, owner) = match &existing {
            Some(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
            None => (mode, None),
        };
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(Error::Chmod)?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .map_err(|source| Error::Chown { path: tmp.clone(), source })?;
        }
        f.sync_all().map_err(|source| Error::Sync { path: tmp.clone(), source })?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Replace { path: path.to_path_buf(), source })?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| Error::Sync { path: dir.to_path_buf(), source })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Removes a file if it exists (fsyncing its folder). Returns whether it removed.
///
/// Errors: [`Error::Remove`].
pub fn remove_file(path: &Path) -> Result<bool, Error> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(Error::Remove { path: path.to_path_buf(), source }),
    }
}
