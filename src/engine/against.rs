//! `plan|check --against SNAPSHOT`: a configuration planned against a host's snapshot
//! (from `ecs-hostnet snapshot`) instead of the kernel: no root, no kernel, the same
//! planner and the same refusals as against a live host.

use crate::config::Config;
use crate::desired::Desired;
use crate::plan::{self, Note, Plan};
use crate::render::snapshot::Snapshot;
use anyhow::{Result, anyhow};
use std::io::Read as _;
use std::path::Path;

/// The largest snapshot read, in bytes: a host at the 1024-pattern maximum writes well
/// under 10 MiB; anything larger (or endless, such as `/dev/zero`) is refused before it
/// fills the memory. A pipe (`--against <(ssh host ecs-hostnet snapshot)`) is read too.
pub const SNAPSHOT_MAX_BYTES: u64 = 64 << 20;

/// Reads and checks the snapshot at `path`.
///
/// # Errors
/// `PATH: cannot read the snapshot: ...` when it cannot be read or is larger than
/// [`SNAPSHOT_MAX_BYTES`]; the snapshot's own errors when it is not one a host could give.
pub fn read_snapshot(path: &Path) -> Result<Snapshot> {
    let name = path.display().to_string();
    let cannot = |e: &dyn std::fmt::Display| anyhow!("{name}: cannot read the snapshot: {e}");
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(SNAPSHOT_MAX_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > SNAPSHOT_MAX_BYTES {
        let limit = format!("larger than {} MiB, which no host's snapshot is", SNAPSHOT_MAX_BYTES >> 20);
        return Err(cannot(&limit));
    }
    Ok(Snapshot::from_json(&name, &bytes)?)
}

/// The plan of `desired` (compiled from `config`) against `snap`: the rule set, sysctls
/// and routes, and the installed files when the snapshot holds an install.
///
/// # Errors
/// The uplink refusal of [`super::refuse_uplink_conflicts`], as against a live host.
pub fn plan_against(snap: &Snapshot, desired: &Desired, config: &Config) -> Result<Plan> {
    let live = snap.facts().live_state(desired, |sel| Ok::<_, anyhow::Error>(snap.route_localnet(sel)))?;
    super::refuse_uplink_conflicts(desired, &live, "plan and apply refuse this configuration on that host")?;
    let mut p = plan::plan(desired, &live);
    if live.uplinks.is_none() && !desired.container_interfaces.patterns.is_empty() {
        p.notes.push(Note::UplinkNotChecked);
    }
    if let Some((state, files, link)) = snap.install_view() {
        p.changes.extend(plan::files::plan_files_configured(&state, &files, link, config).0);
    }
    Ok(p)
}
