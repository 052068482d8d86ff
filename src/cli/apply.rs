//! `apply`: makes the host (in the context's namespace) and the installed files match
//! the configuration.
//!
//! Every precondition is checked before the kernel is touched: the configuration (valid,
//! and, as root, changeable by root alone), the install state, and that each installed
//! file to repair can be written ([`preflight::check_repairs`]). A failure after the
//! rule set changed (a file repair that failed anyway) prints what was applied, then why
//! it stopped.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::Result;
use ecs_hostnet::engine::{self, install, load, preflight};
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::done;
use std::fmt::Write as _;

/// Converges under the lock, then prints what changed (or that nothing had to). With
/// `kernel_only`, installed files are neither read nor repaired.
pub fn run(cx: &Context, config: &ConfigArg, kernel_only: bool, out: &mut String) -> Result<Exit> {
    let (loaded, text) = load::load_config_bytes(config.config.as_deref(), &cx.root, load::Trust::RootOnly)?;
    let desired = engine::desired(&loaded);
    // A broken install state is an error before the kernel is touched.
    let installed = !kernel_only && install::read_state(&cx.root)?.is_some();
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    let lock = Lock::acquire(&cx.root, LOCK_TIMEOUT)?;
    // The files to repair, read and checked now: a repair that cannot be made stops the
    // run here, with the rule set untouched.
    if !kernel_only {
        preflight::check_installed_folders(&cx.root, installed)
            .and_then(|()| install::converge_files(&cx.root, &loaded.config, false))
            .and_then(|repairs| preflight::check_repairs(&cx.root, &repairs))
            .map_err(|e| e.context("nothing was applied: the installed files cannot be checked or repaired"))?;
    }
    let mut p = engine::in_namespace(cx.ns(), engine::converge(&desired, &cx.root, &lock))?;
    // Still under the lock: a watcher of this namespace about to repair takes the lock,
    // then follows this configuration instead of reverting to its own.
    if let Err(e) = engine::in_namespace(
        cx.ns(),
        engine::applied::record(&cx.root, &engine::applied::encode(&loaded.source, &text)),
    ) {
        return Err(applied_but(e, &p, out));
    }
    if !kernel_only {
        match install::converge_files(&cx.root, &loaded.config, true) {
            Ok(changes) => p.changes.extend(changes),
            Err(e) => return Err(applied_but(e, &p, out)),
        }
    }
    if p.is_empty() {
        writeln!(out, "No changes: the host already matches the configuration.")?;
        for n in &p.notes {
            writeln!(out, "note: {n}")?;
        }
    } else {
        out.push_str(&done::text(&p, "Applied"));
    }
    Ok(Exit::Ok)
}

/// A step after the kernel converged that failed (recording the applied configuration
/// for the watcher, or a file repair although [`preflight::check_repairs`] passed: a race,
/// a full disk): what the kernel part did goes to stdout first, then the error says it.
fn applied_but(e: anyhow::Error, p: &ecs_hostnet::plan::Plan, out: &mut String) -> anyhow::Error {
    if p.is_empty() {
        return e.context("the rule set already matched the configuration, but a later step failed");
    }
    out.push_str(&done::text(p, "Applied"));
    e.context("the rule set above was applied, but a later step failed (`ecs-hostnet check` shows what is left)")
}
