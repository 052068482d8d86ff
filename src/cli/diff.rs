//! `diff OLD NEW`: what applying NEW would change on a host converged to OLD. No root,
//! no kernel.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`] (loading and compiling), [`ecs_hostnet::plan`] and
//! [`ecs_hostnet::render::plan`].

use super::args::PlanFormat;
use super::context::Context;
use super::exit::{Exit, info, print_error};
use anyhow::Result;
use ecs_hostnet::engine;
use ecs_hostnet::engine::load::{self, Loaded, Trust};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::plan::{self as planner, files as artifacts};
use ecs_hostnet::render::plan as report;
use std::path::Path;

/// Prints the plan from `old` to `new` in `format`; [`Exit::Changes`] when there are
/// changes.
pub fn run(cx: &Context, old: &Path, new: &Path, format: PlanFormat, out: &mut String) -> Result<Exit> {
    let Some((old_loaded, new_loaded)) = load_both(cx, old, new) else { return Ok(Exit::Failure) };
    info(&format!(
        "configuration: {}; against a host converged to {}",
        escape_controls(&new_loaded.source),
        escape_controls(&old_loaded.source)
    ));
    let mut p = planner::diff(&engine::desired(&old_loaded), &engine::desired(&new_loaded));
    // In the order plan and check list them: the hook, then ecs.config.
    p.changes.extend(artifacts::diff_hook(&old_loaded.config, &new_loaded.config));
    p.changes.extend(artifacts::diff_files(&old_loaded.config, &new_loaded.config));
    if let Some(n) = artifacts::diff_files_note(&old_loaded.config, &new_loaded.config) {
        p.notes.push(n);
    }
    let against = report::Against::Configuration { path: old_loaded.source.clone() };
    match format {
        PlanFormat::Json => out.push_str(&report::json(&p, "diff", &new_loaded.source, &against)),
        PlanFormat::Text => {
            let converged = format!(
                "No changes: {} changes nothing on a host converged to {}.",
                new_loaded.source, old_loaded.source
            );
            out.push_str(&report::text(&p, cx.color, &converged))
        }
    }
    Ok(Exit::changes_if(!p.is_empty()))
}

/// Loads both configurations; `None` when either is invalid, after printing the errors
/// of both (once when they are the same file), so that every error is reported at once.
fn load_both(cx: &Context, old: &Path, new: &Path) -> Option<(Loaded, Loaded)> {
    match (load::load_config(Some(old), &cx.root, Trust::Any), load::load_config(Some(new), &cx.root, Trust::Any)) {
        (Ok(o), Ok(n)) => Some((o, n)),
        (o, n) => {
            let mut errors: Vec<anyhow::Error> = o.err().into_iter().collect();
            if old != new {
                errors.extend(n.err());
            }
            errors.iter().for_each(print_error);
            None
        }
    }
}
