//! `status`: one read of the current network namespace (the read and plan `check` makes:
//! our tables with their counters, route_localnet, the endpoint route, the other base
//! chains on the credentials path) plus the watcher's pid and state files, as a
//! [`Status`]; and the Prometheus textfile for node_exporter.

use crate::engine::load::Loaded;
use crate::engine::{desired, install, plan_live_state, watch};
use crate::host::files::{self, Perm, Root};
use crate::host::netns;
use crate::host::run_dir::read_watch_state;
use crate::model::watch_state::WatchState;
use crate::render::status::{Status, Watcher};
use anyhow::{Context as _, Result};
use std::path::Path;

/// Reads the current network namespace once and reports it (`netns`: the `--netns` given,
/// for the report). Converged means what `check` means: the plan, installed files
/// included, is empty.
///
/// Errors: the kernel or the installed files cannot be read, the configuration does not
/// fit this host (a container pattern matches the uplink), or the namespace cannot be named.
pub fn status(loaded: &Loaded, root: &Root, netns: Option<&str>) -> Result<Status> {
    let desired = desired(loaded);
    let (_, mut p, live) = plan_live_state(&desired, root, Some(&loaded.config))?;
    p.changes.extend(install::converge_files(root, &loaded.config, false)?);
    let ns = netns::current_inode()?;
    let pid = watch::live_watcher(root, ns);
    // The state file of the watcher that runs now (a file left by a killed one is not).
    let state =
        pid.and_then(|_| read_watch_state(root, ns)).and_then(|b| WatchState::parse(&b)).filter(|s| Some(s.pid) == pid);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    Ok(Status::new(&loaded.source, netns, now, &desired, &live, &p, Watcher { pid, state }))
}

/// Writes `exposition` to `path` (absolute, under `root`) for node_exporter's textfile
/// collector: a temporary file in the same folder, fsync, rename, mode 0644 (the collector
/// runs as its own user), so the collector reads the old or the new file, never a part.
///
/// Errors: the folder cannot be made or written, `path` is not a regular file.
pub fn write_textfile(root: &Root, path: &Path, exposition: &str) -> Result<()> {
    let abs = path.to_str().context("the textfile path is not UTF-8")?;
    files::write_atomic_shared(root, abs, exposition.as_bytes(), Perm::Exact(0o644))
        .with_context(|| format!("writing the metrics textfile {}", path.display()))?;
    Ok(())
}
