//! `ecs-hostnet task apply|check|remove`: the awsvpc IMDS block for task network
//! namespaces.
//!
//! With `ECS_AWSVPC_BLOCK_IMDS=true` the ECS agent asks its CNI plugin for BLACKHOLE
//! routes to `169.254.169.254/32` and `fd00:ec2::254/128` inside each awsvpc task's
//! network namespace (no firewall rule: a task's traffic to IMDS never leaves it). This
//! command does the same for any namespace: many per call, one result per namespace.
//! Planning ([`plan_routes`]) is pure; one worker thread enters each namespace in turn
//! (setns on that thread only), so hundreds of namespaces cost one process.

use crate::host::netns::{self, Home};
use crate::host::rtnl::Rtnl;
use crate::model::route::{RouteOp, RouteSpec, TaskAction};
use crate::plan::task_routes::plan_routes;
use anyhow::Result;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The outcome in one namespace.
#[derive(Debug)]
pub struct TaskResult {
    /// The namespace path as given.
    pub netns: PathBuf,
    /// The changes made (apply/remove) or needed (check), or the error.
    pub outcome: Result<Vec<RouteOp>>,
}

/// Enters the namespace at `path` (for good: the caller goes back), reads the routes of
/// `want`'s destinations, plans, and (unless checking) carries the plan out.
fn in_namespace(path: &Path, action: TaskAction, want: &[RouteSpec]) -> Result<Vec<RouteOp>> {
    netns::enter_path(path)?;
    let mut rt = Rtnl::open()?;
    let dests: Vec<IpAddr> = want.iter().map(|s| s.dest).collect();
    let mut live = rt.routes(false, |r| dests.contains(&r.dest))?;
    if want.iter().any(|s| s.dest.is_ipv6()) {
        live.extend(rt.routes(true, |r| dests.contains(&r.dest))?);
    }
    let ops = plan_routes(action, want, &live);
    if action != TaskAction::Check {
        for op in &ops {
            rt.run(op)?;
        }
    }
    Ok(ops)
}

/// Runs `action` in every namespace of `paths`, in order, on one worker thread (the
/// caller's thread never changes namespace). A failure in one namespace is reported in
/// its result and does not stop the others.
pub fn run(action: TaskAction, paths: &[PathBuf], want: &[RouteSpec]) -> Result<Vec<TaskResult>> {
    let paths = paths.to_vec();
    let want = want.to_vec();
    std::thread::spawn(move || -> Result<Vec<TaskResult>> {
        let home = Home::here()?;
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let outcome = in_namespace(&p, action, &want);
            // Back home before the next one, so a bad path cannot leave us elsewhere.
            home.go_back()?;
            out.push(TaskResult { netns: p, outcome });
        }
        Ok(out)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the task worker thread panicked"))?
}
