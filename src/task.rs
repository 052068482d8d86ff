//! `ecs-hostnet task apply|check|remove`: the awsvpc IMDS block for task network
//! namespaces.
//!
//! With `ECS_AWSVPC_BLOCK_IMDS=true` the ECS agent asks its CNI plugin for BLACKHOLE
//! routes to `169.254.169.254/32` and `fd00:ec2::254/128` inside each awsvpc task's
//! network namespace (no firewall rule: a task's traffic to IMDS never leaves it). This
//! command does the same for any namespace: many per call, one result per namespace.
//! Planning ([`plan_routes`]) is pure; one worker thread enters each namespace in turn
//! (setns on that thread only), so hundreds of namespaces cost one process.

use crate::config::Config;
use crate::rtnl::{LiveRoute, ROUTE_PROTOCOL, RouteKind, RouteSpec, Rtnl};
use anyhow::{Context, Result};
use nix::sched::{CloneFlags, setns};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// What to do in each namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    /// Add the missing routes.
    Apply,
    /// Report the missing routes (exit 2 when any).
    Check,
    /// Delete the routes ecs-hostnet added ([`ROUTE_PROTOCOL`]); others are left alone.
    Remove,
}

/// One route change in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// Add `spec`.
    Add {
        /// The route to add.
        spec: RouteSpec,
    },
    /// Delete a route to the same prefix that is not what we want (a gateway route to
    /// IMDS would defeat the blackhole whatever its metric). Not restored by `remove`.
    DeleteInTheWay {
        /// The route as read.
        route: LiveRoute,
    },
    /// Delete our route `spec` (only one with [`ROUTE_PROTOCOL`]).
    Delete {
        /// The route to delete.
        spec: RouteSpec,
    },
}

impl std::fmt::Display for RouteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOp::Add { spec } => write!(f, "add route {spec}"),
            RouteOp::DeleteInTheWay { route } if route.protocol == ROUTE_PROTOCOL => write!(f, "delete route {route}"),
            RouteOp::DeleteInTheWay { route } => write!(f, "delete route {route} (in the way)"),
            RouteOp::Delete { spec } => write!(f, "delete route {spec}"),
        }
    }
}

impl RouteOp {
    /// Carries the op out through `rt`.
    pub fn run(&self, rt: &mut Rtnl) -> Result<()> {
        match self {
            RouteOp::Add { spec } => rt.add(spec),
            RouteOp::DeleteInTheWay { route } => rt.delete_live(route),
            RouteOp::Delete { spec } => rt.delete(spec),
        }
    }
}

/// The IMDS blackhole routes a configuration asks for: IPv4 always, IPv6 when
/// `imds_block.block_ipv6`.
pub fn imds_routes(c: &Config) -> Vec<RouteSpec> {
    let mut v =
        vec![RouteSpec { dest: IpAddr::V4(c.imds_block.ipv4_address.v.0), prefix_len: 32, kind: RouteKind::Blackhole }];
    if c.imds_block.block_ipv6.v {
        v.push(RouteSpec {
            dest: IpAddr::V6(c.imds_block.ipv6_address.v.0),
            prefix_len: 128,
            kind: RouteKind::Blackhole,
        });
    }
    v
}

/// Route changes that take `live` (routes to the wanted destinations) to `want`
/// (apply/check) or remove ours (remove). Pure.
pub fn plan_routes(action: TaskAction, want: &[RouteSpec], live: &[LiveRoute]) -> Vec<RouteOp> {
    let mut ops = Vec::new();
    for spec in want {
        let same_prefix: Vec<&LiveRoute> =
            live.iter().filter(|l| l.dest == spec.dest && l.prefix_len == spec.prefix_len).collect();
        match action {
            TaskAction::Apply | TaskAction::Check => {
                for l in same_prefix.iter().filter(|l| !l.satisfies(spec)) {
                    ops.push(RouteOp::DeleteInTheWay { route: (*l).clone() });
                }
                if !same_prefix.iter().any(|l| l.satisfies(spec)) {
                    ops.push(RouteOp::Add { spec: *spec });
                }
            }
            TaskAction::Remove => {
                if same_prefix.iter().any(|l| l.satisfies(spec) && l.protocol == ROUTE_PROTOCOL) {
                    ops.push(RouteOp::Delete { spec: *spec });
                }
            }
        }
    }
    ops
}

/// The outcome in one namespace.
#[derive(Debug)]
pub struct TaskResult {
    /// The namespace path as given.
    pub netns: PathBuf,
    /// The changes made (apply/remove) or needed (check), or the error.
    pub outcome: Result<Vec<RouteOp>>,
}

/// The network namespaces named under `dir` (e.g. `/run/netns`), sorted.
pub fn namespaces_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    v.sort();
    Ok(v)
}

fn in_namespace(path: &Path, action: TaskAction, want: &[RouteSpec]) -> Result<Vec<RouteOp>> {
    let f = crate::netns::open_nonblocking(path)?;
    setns(&f, CloneFlags::CLONE_NEWNET).map_err(|e| match e {
        nix::errno::Errno::EINVAL => anyhow::anyhow!("{} is not a network namespace", path.display()),
        nix::errno::Errno::EPERM => anyhow::anyhow!("entering {} needs CAP_SYS_ADMIN: run as root", path.display()),
        e => anyhow::anyhow!("cannot enter {}: {e}", path.display()),
    })?;
    let mut rt = Rtnl::open()?;
    let dests: Vec<IpAddr> = want.iter().map(|s| s.dest).collect();
    let mut live = rt.routes(false, |r| dests.contains(&r.dest))?;
    if want.iter().any(|s| s.dest.is_ipv6()) {
        live.extend(rt.routes(true, |r| dests.contains(&r.dest))?);
    }
    let ops = plan_routes(action, want, &live);
    if action != TaskAction::Check {
        for op in &ops {
            op.run(&mut rt)?;
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
        let home =
            std::fs::File::open("/proc/thread-self/ns/net").context("cannot open this thread's network namespace")?;
        let mut out = Vec::with_capacity(paths.len());
        for p in paths {
            let outcome = in_namespace(&p, action, &want);
            // Back home before the next one, so a bad path cannot leave us elsewhere.
            setns(&home, CloneFlags::CLONE_NEWNET).context("cannot return to the original network namespace")?;
            out.push(TaskResult { netns: p, outcome });
        }
        Ok(out)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the task worker thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;

    fn live(spec: &RouteSpec, kind: Option<RouteKind>, protocol: u8) -> LiveRoute {
        LiveRoute { dest: spec.dest, prefix_len: spec.prefix_len, kind, protocol, metric: Some(100) }
    }

    #[test]
    fn apply_adds_what_is_missing_and_replaces_what_is_in_the_way() {
        let want = imds_routes(&default_config());
        assert_eq!(want.len(), 2);
        let ops = plan_routes(TaskAction::Apply, &want, &[]);
        assert_eq!(ops, vec![RouteOp::Add { spec: want[0] }, RouteOp::Add { spec: want[1] }]);
        // The agent's own blackhole (another protocol) already does the job.
        let l = vec![live(&want[0], Some(RouteKind::Blackhole), 4), live(&want[1], None, 3)];
        assert_eq!(
            plan_routes(TaskAction::Apply, &want, &l),
            vec![RouteOp::DeleteInTheWay { route: l[1].clone() }, RouteOp::Add { spec: want[1] }]
        );
        assert_eq!(plan_routes(TaskAction::Check, &want, &l).len(), 2);
    }

    #[test]
    fn remove_deletes_only_our_routes() {
        let want = imds_routes(&default_config());
        let l = vec![
            live(&want[0], Some(RouteKind::Blackhole), ROUTE_PROTOCOL),
            live(&want[1], Some(RouteKind::Blackhole), 4),
        ];
        assert_eq!(plan_routes(TaskAction::Remove, &want, &l), vec![RouteOp::Delete { spec: want[0] }]);
        assert!(plan_routes(TaskAction::Remove, &want, &[]).is_empty());
    }
}
