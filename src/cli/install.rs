//! `install` and `uninstall`: the configuration, the binary (not beside the package), the units, the ecs-init
//! hook and the agent's ecs.config keys, under `--root`; then systemd told on the running
//! system. `uninstall` first removes the live rule set where it is live (the running
//! system, or `--netns`), before it deletes the binary that could remove it.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::{Context as _, Result};
use ecs_hostnet::engine::{self, install, load};
use ecs_hostnet::host::files::Root;
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::done;
use std::fmt::Write as _;

/// Installs (the configuration, units or the package's enablement, hooks, agent keys; this
/// program's binary unless the package's is used), tells systemd, then prints what
/// was done.
pub fn install(cx: &Context, config: &ConfigArg, out: &mut String) -> Result<Exit> {
    let (loaded, bytes) = load::load_config_bytes(config.config.as_deref(), &cx.root, load::Trust::RootOnly)?;
    let binary = std::fs::read("/proc/self/exe").context("cannot read this program's binary (/proc/self/exe)")?;
    info(&format!("configuration: {}; root {}", escape_controls(&loaded.source), cx.root.at("/").display()));
    // The lock is released before systemd is told: `systemctl restart` of the watch unit
    // waits for the watcher's first converge, which takes the same lock.
    let report = {
        let _lock = system_lock(&cx.root)?;
        install::install(&cx.root, &bytes, &binary, &loaded.config.agent_keys())?
    };
    print_lines(out, &report.lines)?;
    print_lines(out, &install::tell_systemd(&cx.root, &report)?)?;
    if cx.root.is_system() {
        writeln!(out, "Installed. The rule set is applied at the next boot, or now with `ecs-hostnet apply`.")?;
    } else {
        writeln!(out, "Installed. A system booted from this root applies the rule set when it starts.")?;
    }
    Ok(Exit::Ok)
}

/// Stops the watch unit on the running system ([`install::stop_watch`]), removes the live
/// rule set where it is live (see
/// [`install::uninstall_removes_rule_set`]), then what install added, puts back what it
/// replaced, tells systemd, and prints what it did. When the rule set cannot be removed,
/// nothing is uninstalled (the binary that can remove it stays) and the error says so.
pub fn uninstall(cx: &Context, out: &mut String) -> Result<Exit> {
    // First: a running watcher would repair the removal of the rule set.
    print_lines(out, &install::stop_watch(&cx.root)?)?;
    let kernel = install::uninstall_removes_rule_set(cx.root.is_system(), cx.ns().is_some());
    if kernel {
        cx.enter()?;
    }
    let lock = if kernel || cx.root.is_system() { Some(Lock::acquire(&cx.root, LOCK_TIMEOUT)?) } else { None };
    let installed = install::read_state(&cx.root)?.is_some();
    let mut removed_rules = false;
    if let (true, true, Some(lock)) = (installed, kernel, &lock) {
        let p = engine::in_namespace(cx.ns(), engine::remove(&cx.root, lock)).context(
            "the live rule set could not be removed, so nothing was uninstalled; \
             fix that, then run `ecs-hostnet uninstall` again",
        )?;
        if p.is_empty() {
            writeln!(out, "no live rule set to remove in {}", cx.place())?;
        } else {
            out.push_str(&done::text(&p, "Removed"));
            removed_rules = true;
        }
    }
    let report = install::uninstall(&cx.root)?;
    print_lines(out, &report.lines)?;
    if report.nothing_installed {
        return Ok(Exit::Ok);
    }
    print_lines(out, &install::tell_systemd(&cx.root, &report)?)?;
    let rules = if kernel && removed_rules {
        format!("its rule set was removed from {}", cx.place())
    } else if kernel {
        format!("{} had no live rule set to remove", cx.place())
    } else {
        "no kernel was touched (--root): a system booted from this root starts without its rule set".to_string()
    };
    let binary = if report.binary_kept { " (the binary stays: one was there before install)" } else { "" };
    writeln!(out, "Uninstalled ecs-hostnet{binary}; {rules}.")?;
    Ok(Exit::Ok)
}

fn print_lines(out: &mut String, lines: &[String]) -> Result<()> {
    lines.iter().try_for_each(|l| writeln!(out, "{l}")).map_err(Into::into)
}

/// The run directory's lock on the running system; none under another `--root` (an
/// image being built has no running ecs-hostnet to exclude).
fn system_lock(root: &Root) -> Result<Option<Lock>> {
    Ok(if root.is_system() { Some(Lock::acquire(root, LOCK_TIMEOUT)?) } else { None })
}
