//! Files under a root directory: atomic writes, reads, removals.

use anyhow::{Context, Result, bail};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
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
/// A new file gets `mode`; an existing one keeps its mode and owner. Returns whether it
/// wrote.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> Result<bool> {
    // A symlink is followed: the file it points to is replaced and the link kept (an
    // ecs.config managed elsewhere). A link to anything but a regular file (a unit masked
    // with a link to /dev/null) is refused rather than overwritten.
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path)
                .with_context(|| format!("{} is a symlink to a missing file; remove it first", path.display()))?;
            if !std::fs::metadata(&resolved).is_ok_and(|m| m.is_file()) {
                bail!(
                    "{} is a symlink to {}, not to a regular file (a masked unit?); unmask or remove it first",
                    path.display(),
                    resolved.display()
                );
            }
            resolved.as_path()
        }
        _ => path,
    };
    if read_opt(path)?.as_deref() == Some(content) {
        return Ok(false);
    }
    let dir = path.parent().context("a file path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let existing = std::fs::metadata(path).ok();
    let tmp = temp_path(path);
    // A temporary file left by an earlier run that was killed is ours to replace.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        f.write_all(content).with_context(|| format!("cannot write {}", tmp.display()))?;
        let (mode, owner) = match &existing {
            Some(m) => (m.permissions().mode() & 0o7777, Some((m.uid(), m.gid()))),
            None => (mode, None),
        };
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid))
                .with_context(|| format!("cannot chown {}", tmp.display()))?;
        }
        f.sync_all().with_context(|| format!("cannot sync {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
        std::fs::File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map(|()| true)
}

/// Removes a file if it exists (fsyncing its folder). Returns whether it removed.
pub fn remove_file(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

