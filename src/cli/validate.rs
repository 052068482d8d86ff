//! `validate`: checks configuration files without root or kernel, reporting every error
//! in every file.
//!
//! Imports [`super::context`], [`super::exit`], the library's [`ecs_hostnet::engine`]
//! (loading, compiling), [`ecs_hostnet::plan::uplink`] (the note on what it cannot check)
//! and [`ecs_hostnet::model::escape`].

use super::context::Context;
use super::exit::{Exit, info, note, print_error};
use anyhow::Result;
use ecs_hostnet::engine;
use ecs_hostnet::engine::load::{self, Trust};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::plan::uplink;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Loads each of `files` then `config` (the default configuration when both are empty):
/// `FILE: valid` on stdout or its errors on stderr, and a count when there are several.
/// [`Exit::Failure`] when any is invalid.
pub fn run(cx: &Context, files: Vec<PathBuf>, config: Vec<PathBuf>, out: &mut String) -> Result<Exit> {
    let given: Vec<PathBuf> = files.into_iter().chain(config).collect();
    let paths: Vec<Option<PathBuf>> = if given.is_empty() { vec![None] } else { given.into_iter().map(Some).collect() };
    let mut bad = 0;
    for p in &paths {
        match load::load_config(p.as_deref(), &cx.root, Trust::Any) {
            Ok(l) => {
                writeln!(out, "{}: valid", escape_controls(&l.source))?;
                // Not an error: the host is not known here (plan, check and apply check it).
                if let Some(n) = uplink::not_checked_note(&engine::desired(&l)) {
                    note(&format!("ecs-hostnet: note: {}: {}", escape_controls(&l.source), escape_controls(&n)));
                }
            }
            Err(e) => {
                print_error(&e);
                bad += 1;
            }
        }
    }
    if paths.len() > 1 {
        info(&format!("{} file(s): {} valid, {bad} invalid.", paths.len(), paths.len() - bad));
    }
    Ok(Exit::failure_if(bad > 0))
}
