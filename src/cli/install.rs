//! `install` and `uninstall`: the configuration, the binary (not beside the package), the units, the ecs-init
//! hook and the agent's ecs.config keys, under `--root`; then systemd told on the running
//! system. `uninstall` first removes the live rule set where it is live (the running
//! system, or `--netns`), before it deletes the binary that could remove it.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::desired::install_files`] (the paths),
//! [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::{Context as _, Result};
use ecs_hostnet::desired::install_files::{BIN_PATH, STATE_PATH};
use ecs_hostnet::engine::install::PackageRemoval;
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

/// Checks that every folder uninstall will write in can be written
/// ([`install::check_uninstall`]: otherwise nothing is changed), stops the watch unit on
/// the running system ([`install::stop_watch`]), removes the live rule set where it is live
/// (see [`install::uninstall_removes_rule_set`]), then what install added, puts back what it
/// replaced, tells systemd, and prints what it did. When the rule set cannot be removed,
/// no file is uninstalled (the binary that can remove it stays) and the error says so; when
/// a file step fails after that, the error says what state the host is in and how to put it
/// back. With `package_removal` (the package's prerm and %preun) only an install beside the
/// package is uninstalled ([`package_owns_install`]).
pub fn uninstall(cx: &Context, package_removal: bool, out: &mut String) -> Result<Exit> {
    if package_removal && !package_owns_install(&cx.root, out)? {
        return Ok(Exit::Ok);
    }
    install::check_uninstall(&cx.root)?;
    // First: a running watcher would repair the removal of the rule set.
    let stopped = install::stop_watch(&cx.root)?;
    print_lines(out, &stopped)?;
    let watcher =
        if stopped.is_empty() { "" } else { " (the watcher is stopped: `ecs-hostnet apply` does not start it)" };
    let kernel = install::uninstall_removes_rule_set(cx.root.is_system(), cx.ns().is_some());
    if kernel {
        cx.enter()?;
    }
    let lock = if kernel || cx.root.is_system() { Some(Lock::acquire(&cx.root, LOCK_TIMEOUT)?) } else { None };
    let installed = install::read_state(&cx.root)?.is_some();
    let mut removed_rules = false;
    if let (true, true, Some(lock)) = (installed, kernel, &lock) {
        let p = engine::in_namespace(cx.ns(), engine::remove(&cx.root, lock)).with_context(|| {
            format!(
                "the live rule set could not be removed, so nothing was uninstalled{watcher}; \
                 fix that, then run `ecs-hostnet uninstall` again"
            )
        })?;
        if p.is_empty() {
            writeln!(out, "no live rule set to remove in {}", cx.place())?;
        } else {
            out.push_str(&done::text(&p, "Removed"));
            removed_rules = true;
        }
    }
    let report = install::uninstall(&cx.root).with_context(|| partly_uninstalled(cx, removed_rules, watcher))?;
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

/// The error of a file step of uninstall that failed after the kernel step: what the host
/// is left with, and the two ways on (the install state is removed last, so `apply` still
/// finds it and repairs the files and the rule set).
fn partly_uninstalled(cx: &Context, removed_rules: bool, watcher: &str) -> String {
    let rules = if removed_rules {
        format!("the rule set was removed from {} and route_localnet put back, so the IMDS block is off", cx.place())
    } else {
        "no rule set was removed".to_string()
    };
    format!(
        "uninstall stopped part-way: {rules}{watcher}, and the files install wrote may be partly removed; \
         run `ecs-hostnet apply` to put the rule set and the files back as installed, \
         or fix the cause and run `ecs-hostnet uninstall` again"
    )
}

/// For `uninstall --package-removal`: whether the install state, read by the real parser,
/// is an install beside the package ([`install::package_removal`]); says so in `out` when it
/// is not. A state that cannot be read is an error: the package's removal must stop rather
/// than delete the binary ecs.service's drop-in runs.
fn package_owns_install(root: &Root, out: &mut String) -> Result<bool> {
    let state = install::read_state(root).with_context(|| {
        format!(
            "the package is not removed: its install state cannot be read, so what `ecs-hostnet install` wrote \
             (the ecs.service drop-in that runs this binary before the ECS agent, the rule set) cannot be undone; \
             put back a good copy of {}, or undo the install by hand (docs/packaging.md, \"A damaged install \
             state\"), then remove the package again",
            root.at(STATE_PATH).display()
        )
    })?;
    match install::package_removal(state.as_ref()) {
        PackageRemoval::Uninstall => return Ok(true),
        PackageRemoval::NothingInstalled => {
            writeln!(out, "nothing installed (no {STATE_PATH}): nothing to undo before the package goes")?
        }
        PackageRemoval::NotThePackages => writeln!(
            out,
            "{STATE_PATH} is a tarball install's ({BIN_PATH} and its units), not the package's: left as it is \
             (`{BIN_PATH} uninstall` removes it)"
        )?,
    }
    Ok(false)
}

fn print_lines(out: &mut String, lines: &[String]) -> Result<()> {
    lines.iter().try_for_each(|l| writeln!(out, "{l}")).map_err(Into::into)
}

/// The run directory's lock on the running system; none under another `--root` (an
/// image being built has no running ecs-hostnet to exclude).
fn system_lock(root: &Root) -> Result<Option<Lock>> {
    Ok(if root.is_system() { Some(Lock::acquire(root, LOCK_TIMEOUT)?) } else { None })
}
