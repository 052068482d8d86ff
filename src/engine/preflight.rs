//! Preconditions of `apply` that are checked before the kernel is touched: that the
//! folders of the installed files are folders ([`check_installed_folders`]) and that every
//! installed file it is about to repair can be written where it is ([`check_repairs`]).
//!
//! `apply` changes the rule set first and repairs the installed files after it; a repair
//! that cannot succeed (a unit or drop-in masked with a symlink to `/dev/null`, a folder
//! that is a symlink to `/dev/null`, a read-only file system, a folder where a file
//! belongs) would otherwise fail after the rule set changed. These checks read only: they
//! follow the same rules as [`crate::host::files::write_atomic`] (a symlink is followed to
//! the regular file it names; anything else is refused) and ask the kernel with
//! `access(2)` whether the folder that will receive the file is writable.

use crate::desired::install_files::{BIN_PATH, CONFIG_PATH, DROPIN_PATH, ECS_CONFIG_PATH, UNIT_PATH, WANTS_LINK};
use crate::host::files::Root;
use crate::plan::change::{Change, Subject};
use anyhow::{Result, bail};
use nix::unistd::AccessFlags;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// Checks that each file or symlink repair among `changes` (from
/// [`crate::engine::install::converge_files`] without fixing) can be carried out under
/// `root`. The error names the path, what is in the way, and what to do.
pub fn check_repairs(root: &Root, changes: &[Change]) -> Result<()> {
    for c in changes {
        match &c.subject {
            Subject::File { path } => check_file_target(&root.at(path), path)?,
            Subject::Symlink { path } => check_link_target(&root.at(path), path)?,
            _ => {}
        }
    }
    Ok(())
}

/// On an installed host (`installed`), the folder of each file install manages is a folder
/// (or does not exist yet): a folder masked with a symlink to `/dev/null` would make
/// reading those files fail, and repairing them impossible.
pub fn check_installed_folders(root: &Root, installed: bool) -> Result<()> {
    if !installed {
        return Ok(());
    }
    for path in [BIN_PATH, CONFIG_PATH, UNIT_PATH, WANTS_LINK, DROPIN_PATH, ECS_CONFIG_PATH] {
        existing_folder(&root.at(path), path)?;
    }
    Ok(())
}

/// A file [`crate::host::files::write_atomic`] will replace or create at `real` (`shown`
/// is its path on the target host, for the message).
fn check_file_target(real: &Path, shown: &str) -> Result<()> {
    match std::fs::symlink_metadata(real) {
        Ok(m) if m.file_type().is_symlink() => {
            let target = std::fs::read_link(real).unwrap_or_default();
            match std::fs::metadata(real) {
                Ok(t) if t.is_file() => folder_writable(&std::fs::canonicalize(real)?, shown),
                Ok(_) => bail!(
                    "{} is a symlink to {}, not to a regular file (a masked unit?), so {shown} cannot be repaired; \
                     unmask or remove it, then run apply again",
                    real.display(),
                    target.display()
                ),
                Err(e) => bail!(
                    "{} is a symlink to {}, which cannot be followed ({e}), so {shown} cannot be repaired; \
                     remove it or point it at a regular file, then run apply again",
                    real.display(),
                    target.display()
                ),
            }
        }
        Ok(m) if m.is_file() => folder_writable(real, shown),
        Ok(_) => bail!(
            "{} is not a regular file (a folder or a special file is in the way), so {shown} cannot be repaired; \
             remove it, then run apply again",
            real.display()
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => folder_writable(real, shown),
        Err(e) => bail!("cannot look at {}: {e}, so {shown} cannot be repaired", real.display()),
    }
}

/// The enablement symlink at `real`: removed and made again, so nothing but a folder is
/// in its way.
fn check_link_target(real: &Path, shown: &str) -> Result<()> {
    match std::fs::symlink_metadata(real) {
        Ok(m) if m.is_dir() => {
            bail!("{} is a folder where the symlink {shown} belongs; remove it, then run apply again", real.display())
        }
        Ok(_) => folder_writable(real, shown),
        Err(e) if e.kind() == ErrorKind::NotFound => folder_writable(real, shown),
        Err(e) => bail!("cannot look at {}: {e}, so {shown} cannot be repaired", real.display()),
    }
}

/// The folder that will receive `file` exists and is writable, or the nearest existing
/// folder above it is (the missing ones are created); a symlink on the way must lead to a
/// folder.
fn folder_writable(file: &Path, shown: &str) -> Result<()> {
    let dir = existing_folder(file, shown)?;
    nix::unistd::access(&dir, AccessFlags::W_OK).map_err(|errno| {
        anyhow::anyhow!(
            "{} cannot be written ({}), so {shown} cannot be repaired; make it writable, then run apply again",
            dir.display(),
            std::io::Error::from(errno)
        )
    })
}

/// The folder of `file`, or the nearest existing one above it; an error when what is
/// there is not a folder (a symlink to `/dev/null`, a file).
fn existing_folder(file: &Path, shown: &str) -> Result<PathBuf> {
    let mut dir: PathBuf = file.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/"));
    loop {
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                let what = match std::fs::read_link(&dir) {
                    Ok(t) => format!("a symlink to {}", t.display()),
                    Err(_) => "not a folder".to_string(),
                };
                bail!(
                    "{} is {what}, not a folder (a masked unit?), so {shown} cannot be repaired; \
                     unmask or remove it, then run apply again",
                    dir.display()
                );
            }
            Err(e) if e.kind() == ErrorKind::NotFound && std::fs::symlink_metadata(&dir).is_err() => {
                match dir.parent() {
                    Some(up) => dir = up.to_path_buf(),
                    None => break,
                }
            }
            Err(e) => bail!("cannot look at {}: {e}, so {shown} cannot be repaired", dir.display()),
        }
    }
    Ok(dir)
}
