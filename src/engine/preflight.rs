//! Preconditions of `apply` and `uninstall` that are checked before the kernel is touched:
//! that the folders of the installed files are folders ([`check_installed_folders`]), that
//! every installed file `apply` is about to repair can be written where it is
//! ([`check_repairs`]), and that every folder `uninstall` will write in can be written
//! ([`check_uninstall`]).
//!
//! `apply` changes the rule set first and repairs the installed files after it; a repair
//! that cannot succeed (a unit or drop-in masked with a symlink to `/dev/null`, a folder
//! that is a symlink to `/dev/null`, a read-only file system, a folder where a file
//! belongs) would otherwise fail after the rule set changed. These checks read only: they
//! follow the same rules as [`crate::host::files::write_atomic`] (a symlink is followed to
//! the regular file it names; anything else is refused) and ask the kernel with
//! `access(2)` whether the folder that will receive the file is writable.

use crate::desired::install_files::{
    BIN_PATH, CONFIG_PATH, DROPIN_PATH, ECS_CONFIG_PATH, METRICS_SERVICE_PATH, METRICS_TIMER_PATH, METRICS_WANTS_LINK,
    NFT_DROPIN_PATH, UNIT_PATH, WANTS_LINK, WATCH_UNIT_PATH, WATCH_WANTS_LINK,
};
use crate::host::files::{self, Root};
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
            Subject::File { path } => {
                check_file_target(root, path)?;
                if path == ECS_CONFIG_PATH {
                    check_ecs_config(root)?;
                }
            }
            Subject::Symlink { path } => check_link_target(&host_path(root, path), path)?,
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
    for path in [
        BIN_PATH,
        CONFIG_PATH,
        UNIT_PATH,
        WANTS_LINK,
        DROPIN_PATH,
        NFT_DROPIN_PATH,
        WATCH_UNIT_PATH,
        WATCH_WANTS_LINK,
        METRICS_SERVICE_PATH,
        METRICS_TIMER_PATH,
        METRICS_WANTS_LINK,
        ECS_CONFIG_PATH,
    ] {
        folders_in_root(root, path)?;
        existing_folder(&host_path(root, path), path)?;
    }
    Ok(())
}

/// Uninstall's precondition: the folder of each path in `paths` (absolute inside `root`:
/// the files and links [`crate::engine::install::uninstall`] will write, replace or remove)
/// can be written, as `access(2)` with `W_OK` says: a read-only file system or read-only
/// bind mount (`EROFS`) and a folder mode without CAP_DAC_OVERRIDE (`EACCES`) fail here,
/// before the watcher is stopped and the rule set removed.
///
/// Errors: a folder that cannot be written or is not a folder; the message names it and
/// says that nothing was changed.
pub fn check_uninstall(root: &Root, paths: &[String]) -> Result<()> {
    for abs in paths {
        let dir = existing_folder(&host_path(root, abs), abs)?;
        nix::unistd::access(&dir, AccessFlags::W_OK).map_err(|errno| {
            anyhow::anyhow!(
                "{} cannot be written ({}), so uninstall could not remove or put back {abs}; nothing was changed \
                 (the watcher, the rule set, route_localnet and every file are as they were): make it writable, \
                 then run `ecs-hostnet uninstall` again",
                dir.display(),
                std::io::Error::from(errno)
            )
        })?;
    }
    Ok(())
}

/// Where `abs` is on this machine: its folder resolved inside the root (an image's
/// absolute symlinks are its own, never the build host's folders), its last component as
/// written, so that a masked unit (a symlink to `/dev/null`) is seen as the symlink it is.
fn host_path(root: &Root, abs: &str) -> PathBuf {
    let p = Path::new(abs);
    match (p.parent(), p.file_name()) {
        (Some(dir), Some(name)) => crate::host::files::resolved_host_path(root, &dir.to_string_lossy()).join(name),
        _ => root.at(abs),
    }
}

/// A file [`crate::host::files::write_atomic`] will replace or create at `abs` inside the
/// root. Everything is resolved inside the root, as the write will be: an image's
/// absolute symlink names the image's file, never the build host's (a unit masked with a
/// link to `/dev/null` is missing inside an image root, a character device on the real
/// one; both are refused here, before the kernel is touched).
fn check_file_target(root: &Root, abs: &str) -> Result<()> {
    folders_in_root(root, abs)?;
    let shown = root.at(abs);
    match files::metadata(root, abs, false)? {
        Some(m) if m.is_symlink => {
            let target = files::read_link(root, abs).unwrap_or_default();
            if target == Path::new("/dev/null") {
                bail!(
                    "{} is a symlink to /dev/null (a masked unit), so {abs} cannot be repaired; \
                     unmask or remove it, then run apply again",
                    shown.display()
                );
            }
            match files::metadata(root, abs, true)? {
                Some(t) if t.is_file => folder_writable(&files::resolved_host_path(root, abs), abs),
                Some(_) => bail!(
                    "{} is a symlink to {}, not to a regular file (a masked unit?), so {abs} cannot be repaired; \
                     unmask or remove it, then run apply again",
                    shown.display(),
                    target.display()
                ),
                None => bail!(
                    "{} is a symlink to {}, which does not lead to a file inside {} (a masked unit, or a link \
                     to the build host's file?), so {abs} cannot be repaired; remove it or point it at a regular \
                     file inside the root, then run apply again",
                    shown.display(),
                    target.display(),
                    root.at("/").display()
                ),
            }
        }
        Some(m) if m.is_file => folder_writable(&host_path(root, abs), abs),
        Some(_) => bail!(
            "{} is not a regular file (a folder or a special file is in the way), so {abs} cannot be repaired; \
             remove it, then run apply again",
            shown.display()
        ),
        None => folder_writable(&host_path(root, abs), abs),
    }
}

/// The agent's settings file splits into lines as systemd splits it (no lone `\r`, no
/// quoted value spanning lines): otherwise the repair could drop a line that is not ours.
fn check_ecs_config(root: &Root) -> Result<()> {
    if let Some(text) = files::read_opt(root, ECS_CONFIG_PATH)?
        && let Err(e) = crate::desired::ecs_config::check(&text)
    {
        bail!(
            "{}: {e}, so its keys cannot be repaired without changing other lines; \
             fix the line ends (plain LF or CRLF) and close quoted values on their line, then run apply again",
            root.at(ECS_CONFIG_PATH).display()
        );
    }
    Ok(())
}

/// Each folder above `abs`, resolved inside the root, is a folder or missing: a symlink
/// on the way that leads inside the root to something else or nowhere (a folder masked
/// with a link to `/dev/null`, missing inside an image root) is refused.
fn folders_in_root(root: &Root, abs: &str) -> Result<()> {
    for dir in Path::new(abs).ancestors().skip(1).filter(|d| *d != Path::new("/")) {
        let d = dir.to_string_lossy();
        if files::metadata(root, &d, false)?.is_some_and(|m| m.is_symlink)
            && !files::metadata(root, &d, true)?.is_some_and(|m| m.is_dir)
        {
            bail!(
                "{} is a symlink to {}, not a folder (a masked unit?), so {abs} cannot be repaired; \
                 unmask or remove it, then run apply again",
                root.at(&d).display(),
                files::read_link(root, &d).unwrap_or_default().display()
            );
        }
    }
    Ok(())
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
