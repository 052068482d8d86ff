//! systemd on the running system: whether it is the init system ([`booted`]), and the
//! `systemctl` calls install and uninstall make ([`daemon_reload`], [`is_active`],
//! [`restart`], [`stop`]). Each
//! failure is a typed [`Error`] naming the command.
//!
//! `systemctl` is found through `PATH`, like any administration command run by root (the
//! tests put a recording stand-in first in `PATH`; there is no other way to redirect it).
//! Only call these for the running system, never for another `--root`.

use std::path::Path;
use std::process::{Command, Stdio};

/// A `systemctl` run that failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// systemctl could not be started (not installed, not in `PATH`).
    #[error("cannot run `systemctl {args}`")]
    Spawn {
        /// Its arguments, space-separated.
        args: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// systemctl ran and failed.
    #[error("`systemctl {args}` failed ({status}){}", if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Failed {
        /// Its arguments, space-separated.
        args: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr, trimmed, lines joined with `; `.
        stderr: String,
    },
}

/// Whether systemd is the running system's init: `/run/systemd/system` exists, the test
/// `sd_booted(3)` makes.
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Runs `systemctl ARGS`, stdin closed; its exit status and stderr.
fn systemctl(args: &[&str]) -> Result<(std::process::ExitStatus, String), Error> {
    let out = Command::new("systemctl")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|source| Error::Spawn { args: args.join(" "), source })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().lines().collect::<Vec<_>>().join("; ");
    Ok((out.status, stderr))
}

/// `systemctl daemon-reload`: systemd reads the unit files and drop-ins again.
///
/// Errors: [`Error::Spawn`], [`Error::Failed`].
pub fn daemon_reload() -> Result<(), Error> {
    let args = ["daemon-reload"];
    match systemctl(&args)? {
        (status, _) if status.success() => Ok(()),
        (status, stderr) => Err(Error::Failed { args: args.join(" "), status, stderr }),
    }
}

/// `systemctl is-active --quiet UNIT`: whether the unit is active (exit 0). Any other
/// exit (inactive, failed, unknown unit) is `false`.
///
/// Errors: [`Error::Spawn`].
pub fn is_active(unit: &str) -> Result<bool, Error> {
    Ok(systemctl(&["is-active", "--quiet", unit])?.0.success())
}

/// `systemctl restart UNIT`: starts the unit, or stops and starts it when it runs; waits
/// for the start job (for a `Type=notify` unit: until it says `READY=1`).
///
/// Errors: [`Error::Spawn`], [`Error::Failed`] (the unit failed to start).
pub fn restart(unit: &str) -> Result<(), Error> {
    let args = ["restart", unit];
    match systemctl(&args)? {
        (status, _) if status.success() => Ok(()),
        (status, stderr) => Err(Error::Failed { args: args.join(" "), status, stderr }),
    }
}

/// Exit status of systemctl for a unit that is not loaded (LSB "not installed"): a unit
/// whose file is gone and that does not run; there is nothing to stop.
const NOT_LOADED: i32 = 5;

/// `systemctl stop UNIT`, waiting for the stop job. A unit that is not loaded (exit 5: no
/// file and not running) counts as stopped.
///
/// Errors: [`Error::Spawn`], [`Error::Failed`].
pub fn stop(unit: &str) -> Result<(), Error> {
    let args = ["stop", unit];
    match systemctl(&args)? {
        (status, _) if status.success() || status.code() == Some(NOT_LOADED) => Ok(()),
        (status, stderr) => Err(Error::Failed { args: args.join(" "), status, stderr }),
    }
}
