//! `status`: what one read of the host says (our rules' packet and byte counters, converged
//! or not, the localhost guard, route_localnet, the endpoint route, the findings, the
//! watcher) as text, JSON (`ecs-hostnet.status/v1`) or the Prometheus exposition; the
//! exposition also to a node_exporter textfile (`--textfile`, else `metrics.textfile`).
//! Exit 0 when converged with no blocking finding, 2 otherwise (as `check`), 1 on error.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`] and [`ecs_hostnet::render::status`].

use super::args::{StatusArgs, StatusFormat};
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::Result;
use ecs_hostnet::engine::{self, load, load::Trust};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::status as report;

/// Reads the host in the context's namespace and prints its status in `args.format`.
pub fn run(cx: &Context, args: &StatusArgs, out: &mut String) -> Result<Exit> {
    // It reads the kernel as check does, so it trusts configuration files as check does.
    let loaded = load::load_config(args.config.config.as_deref(), &cx.root, Trust::RootOnly)?;
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    let s = engine::in_namespace(cx.ns(), engine::status::status(&loaded, &cx.root, cx.ns()))?;
    let textfile = args.textfile.clone().or_else(|| loaded.config.metrics.textfile.v.0.clone());
    let exposition = report::prometheus(&s);
    if let Some(path) = &textfile {
        engine::status::write_textfile(&cx.root, path, &exposition)?;
    }
    match args.format {
        StatusFormat::Text => out.push_str(&report::text(&s)),
        StatusFormat::Json => out.push_str(&report::json(&s)),
        StatusFormat::Prometheus => out.push_str(&exposition),
    }
    Ok(Exit::changes_if(!s.ok()))
}
