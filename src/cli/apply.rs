//! `apply`: makes the host (in the context's namespace) and the installed files match
//! the configuration.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::host::run_dir`] (the lock) and
//! [`ecs_hostnet::render::done`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::Exit;
use anyhow::Result;
use ecs_hostnet::engine::{self, install, load};
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::done;
use std::fmt::Write as _;

/// Converges under the lock, then prints what changed (or that nothing had to).
pub fn run(cx: &Context, config: &ConfigArg, out: &mut String) -> Result<Exit> {
    let loaded = load::load_config(config.config.as_deref(), &cx.root, load::Trust::RootOnly)?;
    let desired = engine::desired(&loaded);
    // A broken install state is an error before the kernel is touched.
    install::read_state(&cx.root)?;
    cx.enter()?;
    eprintln!("configuration: {}; {}", escape_controls(&loaded.source), cx.place());
    let lock = Lock::acquire(&cx.root, LOCK_TIMEOUT)?;
    let mut p = engine::in_namespace(cx.ns(), engine::converge(&desired, &cx.root, &lock))?;
    p.changes.extend(install::converge_files(&cx.root, &loaded.config.agent_keys(), true)?);
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
