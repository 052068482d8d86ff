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
use super::exit::Exit;
use anyhow::Result;
use ecs_hostnet::desired::Desired;
use ecs_hostnet::engine::load::{self, Loaded};
use ecs_hostnet::engine::{self, install};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::plan::{self as planner, Note, Plan};
use ecs_hostnet::render::{plan as report, snapshot};
use std::path::Path;

/// The configuration's agent keys, as [`install::converge_files`] takes them.
type AgentKeys = [(String, Option<String>)];

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
    let loaded = load::load_config(args.config.config.as_deref(), &cx.root)?;
    let desired = engine::desired(&loaded);
    let keys = loaded.config.agent_keys();
    let (mut p, against) = match &args.against {
        Some(path) => against_snapshot(path, &loaded, &desired, &keys)?,
        None => against_kernel(cx, &loaded, &desired, &keys)?,
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
fn against_snapshot(
    path: &Path,
    loaded: &Loaded,
    desired: &Desired,
    keys: &AgentKeys,
) -> Result<(Plan, report::Against)> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| anyhow::anyhow!("{name}: cannot read the snapshot: {e}"))?;
    let snap = snapshot::Snapshot::from_json(&name, &bytes)?;
    eprintln!("configuration: {}; snapshot {}", escape_controls(&loaded.source), escape_controls(&name));
    let live = snap.facts().live_state(desired, |sel| Ok::<_, anyhow::Error>(snap.route_localnet(sel)))?;
    engine::refuse_uplink_conflicts(desired, &live, "plan and apply refuse this configuration on that host")?;
    let mut p = planner::plan(desired, &live);
    if live.uplinks.is_none() && !desired.container_interfaces.patterns.is_empty() {
        p.notes.push(Note::UplinkNotChecked);
    }
    if let Some((state, files, link)) = snap.install_view() {
        p.changes.extend(planner::files::plan_files(&state, &files, link, keys).0);
    }
    Ok((p, report::Against::Snapshot { path: name }))
}

/// The plan against the kernel, in the context's namespace, and the installed files.
fn against_kernel(
    cx: &Context,
    loaded: &Loaded,
    desired: &Desired,
    keys: &AgentKeys,
) -> Result<(Plan, report::Against)> {
    cx.enter()?;
    eprintln!("configuration: {}; {}", escape_controls(&loaded.source), cx.place());
    let (_, mut p) = engine::in_namespace(cx.ns(), engine::plan_live(desired, &cx.root, Some(&loaded.config)))?;
    p.changes.extend(install::converge_files(&cx.root, keys, false)?);
    Ok((p, report::Against::Netns { netns: cx.ns().map(str::to_string) }))
}
