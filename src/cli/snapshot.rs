//! `snapshot`: the live state of this host (or `--netns`) as JSON, for `plan --against`.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`].

use super::args::SnapshotFormat;
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::Result;
use ecs_hostnet::engine;

/// Reads the live state in the context's namespace and prints it in `format`.
pub fn run(cx: &Context, format: SnapshotFormat, out: &mut String) -> Result<Exit> {
    match format {
        SnapshotFormat::Json => {
            cx.enter()?;
            info(&format!("snapshot of {}", cx.place()));
            let snap = engine::in_namespace(cx.ns(), engine::snapshot(&cx.root, cx.ns()))?;
            out.push_str(&snap.to_json());
        }
    }
    Ok(Exit::Ok)
}
