//! `remove`: removes everything ecs-hostnet made in the context's namespace and puts
//! route_localnet back.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, info};
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
    let lock = Lock::acquire(&cx.root, LOCK_TIMEOUT)?;
    let p = engine::in_namespace(cx.ns(), engine::remove(&cx.root, &lock))?;
    if p.is_empty() {
        writeln!(out, "Nothing to remove: no ecs-hostnet tables or settings are present.")?;
    } else {
        out.push_str(&done::text(&p, "Removed"));
    }
    Ok(Exit::Ok)
}
