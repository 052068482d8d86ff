//! `render`: the rule set the configuration compiles to, as an `nft -f` script or as
//! JSON. No root, no kernel.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`], the library's
//! [`ecs_hostnet::engine`] (loading and compiling) and [`ecs_hostnet::render`].

use super::args::{ConfigArg, RenderFormat};
use super::context::Context;
use super::exit::Exit;
use anyhow::Result;
use ecs_hostnet::engine;
use ecs_hostnet::engine::load::{self, Trust};
use ecs_hostnet::render::{desired_json, nft_script};

/// Prints the desired state of `config` in `format`.
pub fn run(cx: &Context, config: &ConfigArg, format: RenderFormat, out: &mut String) -> Result<Exit> {
    let loaded = load::load_config(config.config.as_deref(), &cx.root, Trust::Any)?;
    let desired = engine::desired(&loaded);
    match format {
        RenderFormat::Nft => out.push_str(&nft_script::script(&desired, &loaded.source)),
        RenderFormat::Json => out.push_str(&desired_json::json(&desired, &loaded.source)),
    }
    Ok(Exit::Ok)
}
