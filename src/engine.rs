//! The commands, tying configuration, planner, kernel and sysctls together.
//!
//! Order of work in `apply` and `remove`: the configuration is read and validated first
//! (nothing touches the kernel if it is invalid); then the live state is read, planned
//! against, and carried out as sysctl restores, ONE nf_tables batch, sysctl enables; then
//! the live state is read again to prove convergence.

use crate::compile::{compile, Desired};
use crate::config::{self, Config};
use crate::kernel::{KernelError, Netfilter};
use crate::plan::{plan, plan_removal, sysctl_selectors, LiveState, Plan};
use crate::sysctl;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Where the configuration is read from when no `-c` is given.
pub const SYSTEM_CONFIG: &str = "/etc/ecs-hostnet/config.toml";

/// A configuration and the name of its source, for messages.
pub struct Loaded {
    pub config: Config,
    /// The file path, or [`config::DEFAULT_NAME`].
    pub source: String,
}

/// Reads and validates the configuration: `path` if given, else [`SYSTEM_CONFIG`] if it
/// exists, else the embedded default. Errors are located (`FILE:LINE:COL: ...`), one per line.
pub fn load_config(path: Option<&Path>) -> Result<Loaded> {
    let path = match path {
        Some(p) => Some(p.to_path_buf()),
        None if Path::new(SYSTEM_CONFIG).exists() => Some(SYSTEM_CONFIG.into()),
        None => None,
    };
    let Some(path) = path else {
        return Ok(Loaded { config: config::default_config(), source: config::DEFAULT_NAME.into() });
    };
    let name = path.display().to_string();
    let meta = std::fs::metadata(&path).map_err(|e| anyhow::anyhow!("{name}: cannot read the configuration: {e}"))?;
    if !meta.is_file() {
        bail!("{name}: not a regular file; give a TOML configuration file");
    }
    // A configuration is a few KiB; refuse anything absurd before reading it.
    if meta.len() > 1024 * 1024 {
        bail!("{name}: {} bytes is too large for a configuration (limit 1 MiB)", meta.len());
    }
    let bytes = std::fs::read(&path).map_err(|e| anyhow::anyhow!("{name}: cannot read the configuration: {e}"))?;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let off = e.utf8_error().valid_up_to();
            let valid = std::str::from_utf8(&e.as_bytes()[..off]).unwrap_or("");
            let (l, c) = config::line_col(valid, off);
            bail!("{name}:{l}:{c}: the file is not valid UTF-8 (byte {off}); a configuration is UTF-8 TOML text");
        }
    };
    let config = config::parse(&name, &text).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Loaded { config, source: name })
}

/// Reads our tables and the route_localnet values the plan needs.
pub fn read_live(nf: &mut Netfilter, desired: &Desired) -> Result<(LiveState, u32)> {
    let (tables, generation) = nf.read_owned()?;
    let mut route_localnet = std::collections::BTreeMap::new();
    for sel in sysctl_selectors(desired, &tables) {
        route_localnet.insert(sel.clone(), sysctl::read_route_localnet(&sel)?);
    }
    Ok((LiveState { tables, route_localnet }, generation))
}

/// Plans `desired` against the live state of the current network namespace.
pub fn plan_live(desired: &Desired) -> Result<(Netfilter, Plan)> {
    let mut nf = Netfilter::open()?;
    let (live, _) = read_live(&mut nf, desired)?;
    Ok((nf, plan(desired, &live)))
}

/// Carries out `desired`: restores, one batch, enables; retried (re-read and re-planned)
/// up to three times when a concurrent writer changed the rule set under us. Returns the
/// plan that was carried out (empty when the host was already converged).
pub fn converge(desired: &Desired) -> Result<Plan> {
    carry_out(desired, |live| plan(desired, live))
}

/// Removes everything ecs-hostnet owns (see [`plan_removal`]).
pub fn remove() -> Result<Plan> {
    carry_out(&nothing(), plan_removal)
}

fn carry_out(desired: &Desired, planner: impl Fn(&LiveState) -> Plan) -> Result<Plan> {
    let mut nf = Netfilter::open()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (live, generation) = read_live(&mut nf, desired)?;
        let p = planner(&live);
        if p.is_empty() {
            return Ok(p);
        }
        for w in &p.sysctl_before {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        match nf.commit(&p.ops, generation) {
            Ok(()) => {}
            Err(KernelError::Rejected { ref err, .. })
                if attempt < 5
                    && matches!(err.raw_os_error(), Some(libc::ERESTART | libc::ENOENT | libc::EEXIST | libc::EBUSY)) =>
            {
                // Someone committed between our read and our batch (ERESTART: the
                // generation moved): nothing was applied; read again and re-plan.
                continue;
            }
            Err(e) => return Err(e.into()),
        }
        for w in &p.sysctl_after {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        let after = planner(&read_live(&mut nf, desired)?.0);
        if !after.is_empty() {
            bail!("the host did not converge; still to do:\n{}", after.text().trim_end());
        }
        return Ok(p);
    }
}

/// The desired state of `remove`: none of our tables, no route_localnet of ours.
pub fn nothing() -> Desired {
    Desired { tables: vec![], route_localnet: vec![] }
}

/// Compiles a loaded configuration.
pub fn desired(loaded: &Loaded) -> Desired {
    compile(&loaded.config)
}

/// Error context for the namespace, used by main.
pub fn in_namespace<T>(netns: Option<&str>, r: Result<T>) -> Result<T> {
    match netns {
        Some(ns) => r.with_context(|| format!("in network namespace {ns:?}")),
        None => r,
    }
}
