//! `plan` and `check`: one command in two modes. What `apply` would change, planned
//! against the kernel (in the context's namespace) or against a snapshot (`--against`,
//! no root, no kernel); `plan` adds a note on the IMDS block's reach. Against the kernel
//! both also show the findings on the credentials path (other programs' base chains there,
//! iptables-legacy); `check` exits 2 on a blocking one even when converged.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`] (loading, compiling, reading the host), [`ecs_hostnet::plan`]
//! and [`ecs_hostnet::render`].

use super::args::{PlanArgs, PlanFormat};
use super::context::Context;
use super::exit::{Exit, info};
use anyhow::Result;
use ecs_hostnet::desired::Desired;
use ecs_hostnet::engine::load::{self, Loaded, Trust};
use ecs_hostnet::engine::{self, install};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::plan::{Note, Plan};
use ecs_hostnet::render::plan as report;
use std::path::Path;

/// Which of the two commands runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `plan`: what apply would change (with the IMDS note).
    Plan,
    /// `check`: whether the host has drifted.
    Check,
}

impl Mode {
    /// The command's name, for the JSON document.
    fn name(self) -> &'static str {
        match self {
            Mode::Plan => "plan",
            Mode::Check => "check",
        }
    }
}

/// Prints the plan in `args.format`; [`Exit::Changes`] when there is something to do, or
/// (`check`) when a finding is blocking.
pub fn run(cx: &Context, args: &PlanArgs, mode: Mode, out: &mut String) -> Result<Exit> {
    // Against the kernel it shows what apply would do, so it refuses what apply refuses.
    let trust = if args.against.is_some() { Trust::Any } else { Trust::RootOnly };
    let loaded = load::load_config(args.config.config.as_deref(), &cx.root, trust)?;
    let desired = engine::desired(&loaded);
    let (mut p, against) = match &args.against {
        Some(path) => against_snapshot(path, &loaded, &desired)?,
        None => against_kernel(cx, &loaded, &desired)?,
    };
    if mode == Mode::Plan && loaded.config.imds_block.enabled.v {
        p.notes.push(Note::ImdsBlockScope);
    }
    match args.format {
        PlanFormat::Json => out.push_str(&report::json(&p, mode.name(), &loaded.source, &against)),
        PlanFormat::Text => out.push_str(&report::text(&p, cx.color, "Converged: the host matches the configuration.")),
    }
    // A blocking finding: the host does not do its job even with our tables converged.
    let blocking = mode == Mode::Check && p.findings.iter().any(|f| f.is_blocking());
    Ok(Exit::changes_if(!p.is_empty() || blocking))
}

/// The plan against the snapshot file at `path`.
fn against_snapshot(path: &Path, loaded: &Loaded, desired: &Desired) -> Result<(Plan, report::Against)> {
    let name = path.display().to_string();
    let snap = engine::against::read_snapshot(path)?;
    info(&format!("configuration: {}; snapshot {}", escape_controls(&loaded.source), escape_controls(&name)));
    let p = engine::against::plan_against(&snap, desired, &loaded.config)?;
    Ok((p, report::Against::Snapshot { path: name }))
}

/// The plan against the kernel, in the context's namespace, and the installed files.
fn against_kernel(cx: &Context, loaded: &Loaded, desired: &Desired) -> Result<(Plan, report::Against)> {
    cx.enter()?;
    info(&format!("configuration: {}; {}", escape_controls(&loaded.source), cx.place()));
    let (_, mut p) = engine::in_namespace(cx.ns(), engine::plan_live(desired, &cx.root, Some(&loaded.config)))?;
    p.changes.extend(install::converge_files(&cx.root, &loaded.config, false)?);
    Ok((p, report::Against::Netns { netns: cx.ns().map(str::to_string) }))
}
