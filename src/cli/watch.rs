//! `watch`: the resident repairer of the context's namespace ([`ecs_hostnet::engine::watch`]):
//! its journal lines go to stderr with their syslog priority, and it exits 0 on `SIGTERM`
//! or `SIGINT` with the rule set in place, 1 when it cannot start (a bad configuration, the
//! event sockets, the first converge).
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`].

use super::args::ConfigArg;
use super::context::Context;
use super::exit::{Exit, Priority, info, log};
use anyhow::Result;
use ecs_hostnet::engine::{self, load, watch};
use ecs_hostnet::model::escape::escape_controls;

/// Loads the configuration as apply does, enters the namespace and watches until a signal.
pub fn run(cx: &Context, config: &ConfigArg) -> Result<Exit> {
    let (loaded, text) = load::load_config_bytes(config.config.as_deref(), &cx.root, load::Trust::RootOnly)?;
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    engine::in_namespace(cx.ns(), watch::run(&cx.root, config.config.as_deref(), loaded, &text, &journal))?;
    Ok(Exit::Ok)
}

/// One watcher line on stderr, at its priority in the journal.
fn journal(level: watch::Level, line: &str) {
    let priority = match level {
        watch::Level::Err => Priority::Err,
        watch::Level::Warning => Priority::Warning,
        watch::Level::Notice => Priority::Notice,
        watch::Level::Info => Priority::Info,
    };
    log(priority, &escape_controls(line));
}
