//! `verify`: the end-to-end probe of the live host ([`ecs_hostnet::engine::verify`]):
//! exit 0 when every expectation holds, 2 when one does not, 1 on error.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`] and [`ecs_hostnet::render::verify`].

use super::args::{ConfigArg, VerifyFormat};
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::Result;
use ecs_hostnet::engine::{self, load, verify};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::render::verify as report;

/// Loads the configuration, enters the namespace, probes and prints the report.
pub fn run(cx: &Context, config: &ConfigArg, format: VerifyFormat, out: &mut String) -> Result<Exit> {
    let loaded = load::load_config(config.config.as_deref(), &cx.root, load::Trust::Any)?;
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    let r = engine::in_namespace(cx.ns(), verify::run(&loaded.config))?;
    out.push_str(&match format {
        VerifyFormat::Text => report::text(&r),
        VerifyFormat::Json => report::json(&r),
    });
    Ok(Exit::changes_if(!r.passed()))
}
