//! `task apply|check|remove`: the awsvpc IMDS block, BLACKHOLE routes inside task network
//! namespaces (every `--netns` and the namespaces under `--netns-dir`), one line per
//! namespace and a count.
//!
//! Imports [`super::args`], [`super::context`], [`super::exit`] and the library's
//! [`ecs_hostnet::engine`], [`ecs_hostnet::desired::task_routes`], [`ecs_hostnet::host::netns`]
//! and [`ecs_hostnet::model::route`].

use super::args::{TaskArgs, TaskCommand};
use super::context::Context;
use super::exit::{Exit, Priority, log};
use anyhow::Result;
use ecs_hostnet::desired::task_routes::imds_routes;
use ecs_hostnet::engine::load::{self, Trust};
use ecs_hostnet::engine::task;
use ecs_hostnet::host::netns;
use ecs_hostnet::model::route::TaskAction;
use std::fmt::Write as _;
use std::path::PathBuf;

/// Runs `command` in every namespace. [`Exit::Failure`] when any failed, else
/// [`Exit::Changes`] for `check` with drift, else [`Exit::Ok`].
pub fn run(cx: &Context, command: TaskCommand, out: &mut String) -> Result<Exit> {
    let (args, action) = match command {
        TaskCommand::Apply(a) => (a, TaskAction::Apply),
        TaskCommand::Check(a) => (a, TaskAction::Check),
        TaskCommand::Remove(a) => (a, TaskAction::Remove),
    };
    let loaded = load::load_config(args.config.config.as_deref(), &cx.root, Trust::RootOnly)?;
    let paths = namespaces(cx, &args)?;
    let results = task::run(action, &paths, &imds_routes(&loaded.config))?;
    let (mut failed, mut drift) = (0, 0);
    for r in &results {
        match &r.outcome {
            Ok(ops) if ops.is_empty() => writeln!(out, "{}: converged, nothing to do", r.netns.display())?,
            Ok(ops) => {
                drift += 1;
                let verb = if action == TaskAction::Check { "drift: would" } else { "done:" };
                let list: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                writeln!(out, "{}: {verb} {}", r.netns.display(), list.join("; "))?;
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "{}: error: {}", r.netns.display(), format!("{e:#}").replace('\n', "; "))?;
            }
        }
    }
    let verb = if action == TaskAction::Check { "with drift" } else { "changed" };
    writeln!(out, "{} namespace(s): {drift} {verb}, {failed} failed.", results.len())?;
    if failed > 0 {
        // The exit status 1 says why on stderr too (at err priority in the journal).
        log(
            Priority::Err,
            &format!(
                "ecs-hostnet: task: {failed} of {} namespace(s) failed (each is listed on standard output)",
                results.len()
            ),
        );
    }
    Ok(if failed > 0 { Exit::Failure } else { Exit::changes_if(drift > 0 && action == TaskAction::Check) })
}

/// Every `--netns` resolved to a path, then the namespace files under `--netns-dir`;
/// an error when there are none.
fn namespaces(cx: &Context, args: &TaskArgs) -> Result<Vec<PathBuf>> {
    let mut paths: Vec<PathBuf> = cx.netns.iter().map(|n| netns::resolve(n)).collect();
    if let Some(dir) = &args.netns_dir {
        paths.extend(netns::namespaces_under(dir)?);
    }
    if paths.is_empty() {
        anyhow::bail!("task needs network namespaces: --netns NAME|PATH (repeatable) or --netns-dir DIR");
    }
    Ok(paths)
}
