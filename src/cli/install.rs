//! `install` and `uninstall`: the configuration, the binary, the boot unit, the ecs-init
//! hook and the agent's ecs.config keys, under `--root`. Files only, no kernel.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`] and [`ecs_hostnet::host::run_dir`] (the lock).

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::{Context as _, Result};
use ecs_hostnet::engine::{install, load};
use ecs_hostnet::host::files::Root;
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use std::fmt::Write as _;

/// Installs the configuration and this program's binary, then prints what was written.
pub fn install(cx: &Context, config: &ConfigArg, out: &mut String) -> Result<Exit> {
    let (loaded, bytes) = load::load_config_bytes(config.config.as_deref(), &cx.root, load::Trust::RootOnly)?;
    let binary = std::fs::read("/proc/self/exe").context("cannot read this program's binary (/proc/self/exe)")?;
    let _lock = system_lock(&cx.root)?;
    info(&format!("configuration: {}; root {}", escape_controls(&loaded.source), cx.root.at("/").display()));
    for line in install::install(&cx.root, &bytes, &binary, &loaded.config.agent_keys())? {
        writeln!(out, "{line}")?;
    }
    writeln!(out, "Installed. The rule set is applied at the next boot, or now with `ecs-hostnet apply`.")?;
    Ok(Exit::Ok)
}

/// Removes what install added, puts back what it replaced, and prints what it did.
pub fn uninstall(cx: &Context, out: &mut String) -> Result<Exit> {
    let _lock = system_lock(&cx.root)?;
    let report = install::uninstall(&cx.root)?;
    for line in &report {
        writeln!(out, "{line}")?;
    }
    if !report.iter().any(|l| l.starts_with("nothing installed")) {
        writeln!(out, "Uninstalled. The live rule set is untouched; `ecs-hostnet remove` removes it.")?;
    }
    Ok(Exit::Ok)
}

/// The run directory's lock on the running system; none under another `--root` (an
/// image being built has no running ecs-hostnet to exclude).
fn system_lock(root: &Root) -> Result<Option<Lock>> {
    Ok(if root.is_system() { Some(Lock::acquire(root, LOCK_TIMEOUT)?) } else { None })
}
