//! `remove`: removes everything ecs-hostnet made in the context's namespace and puts
//! route_localnet back, after stopping a running `ecs-hostnet watch` of that namespace.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info, note};
use anyhow::Result;
use ecs_hostnet::engine;
use ecs_hostnet::engine::load::{self, Trust};
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::done;
use std::fmt::Write as _;

/// Removes under the lock, then prints what was removed (or that nothing was there).
pub fn run(cx: &Context, config: &ConfigArg, out: &mut String) -> Result<Exit> {
    // The configuration is validated so a typo is not silently ignored, but what
    // is removed is what ecs-hostnet owns, whatever the configuration says now: so who
    // could have written it does not matter, and refusing it would block the way back.
    let loaded = load::load_config(config.config.as_deref(), &cx.root, Trust::Any)?;
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    // A watcher of this namespace would repair what remove takes away: remove is
    // deliberate, so the watcher is stopped first (it exits 0 and stays stopped).
    if let Some(pid) = engine::in_namespace(cx.ns(), engine::watch::stop_watcher(&cx.root))? {
        note(&format!("ecs-hostnet: stopped ecs-hostnet watch (pid {pid}): remove is not repaired"));
    }
    let lock = Lock::acquire(&cx.root, LOCK_TIMEOUT)?;
    let p = engine::in_namespace(cx.ns(), engine::remove(&cx.root, &lock))?;
    // Nothing applied is left for a later watcher to follow.
    engine::in_namespace(cx.ns(), engine::applied::forget(&cx.root))?;
    if p.is_empty() {
        writeln!(out, "Nothing to remove: no ecs-hostnet tables or settings are present.")?;
    } else {
        out.push_str(&done::text(&p, "Removed"));
    }
    Ok(Exit::Ok)
}
