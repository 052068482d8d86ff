//! The commands, tying configuration, planner, kernel and sysctls together.
//!
//! Order of work in `apply` and `remove`: the configuration is read and validated first
//! (nothing touches the kernel if it is invalid), and the installed files apply will
//! repair are checked ([`preflight`]); then the live state is read, planned against, and
//! carried out as sysctl restores, ONE nf_tables batch, sysctl enables; then the live
//! state is read again to prove convergence.
//!
//! May import every layer but the command line (docs/architecture.md); the only layer
//! below the command line that uses `anyhow`.

pub mod against;
pub mod applied;
pub mod audit;
pub mod install;
pub mod load;
pub mod preflight;
pub mod status;
pub mod task;
pub mod verify;
pub mod watch;

#[cfg(test)]
mod error_text;

use crate::desired::{Desired, compile};
use crate::host::files::Root;
use crate::host::nft::{KernelError, Netfilter};
use crate::host::rtnl::Rtnl;
use crate::host::run_dir::{Lock, read_saved_record, sync_saved_record};
use crate::host::sysctl;
use crate::model::names::rule_id;
use crate::model::ops::Op;
use crate::model::ruleset::{CmpOp, Expr, payload};
use crate::plan::live::{HostFacts, LiveState, is_endpoint_route};
use crate::plan::{Plan, plan, plan_removal};
use anyhow::{Context, Result, bail};
use load::Loaded;
use std::net::Ipv4Addr;
use std::time::Duration;

/// Where the configuration is read from when no `-c` is given (under `--root`).
pub const SYSTEM_CONFIG: &str = crate::desired::install_files::CONFIG_PATH;
/// Reads our tables, the saved record and the route_localnet values the plan needs, and
/// the rule-set generation they belong to; the uplinks only when `desired` has container
/// interface patterns to check against them (not for `remove`).
pub fn read_live(nf: &mut Netfilter, desired: &Desired, root: &Root) -> Result<(LiveState, u32)> {
    let uplinks_wanted = !desired.container_interfaces.patterns.is_empty();
    let (facts, generation) = read_host_facts(nf, root, |r| is_endpoint_route(desired, r), uplinks_wanted)?;
    Ok((facts.live_state(desired, sysctl::read_route_localnet)?, generation))
}

/// The facts of the current network namespace and the rule-set generation: our tables,
/// the saved record, the main-table IPv4 routes `keep` selects, the default route, `lo`,
/// and (with `uplinks_wanted`) the interfaces of the default routes.
fn read_host_facts(
    nf: &mut Netfilter,
    root: &Root,
    keep: impl Fn(&crate::model::route::LiveRoute) -> bool,
    uplinks_wanted: bool,
) -> Result<(HostFacts, u32)> {
    let (tables, generation) = nf.read_owned()?;
    let saved_record = read_saved_record(nf, root);
    let mut rt = Rtnl::open()?;
    let routes = rt.host_routes(keep)?;
    let lo_up = rt.link_is_up(crate::model::route::LOOPBACK_IFINDEX)?;
    let uplinks = if uplinks_wanted { Some(rt.uplinks(&routes.default_route_oifs)?) } else { None };
    let facts = HostFacts {
        tables,
        saved_record,
        ipv4_routes: routes.ipv4_routes,
        ipv4_default_route: routes.ipv4_default_route,
        lo_up,
        uplinks,
    };
    Ok((facts, generation))
}

/// Refuses `desired` on a host where a container interface pattern matches the uplink
/// ([`crate::plan::uplink`]); `then` says what happened instead (e.g. that nothing was
/// changed). Not known (`None`): nothing to refuse.
pub fn refuse_uplink_conflicts(desired: &Desired, live: &LiveState, then: &str) -> Result<()> {
    match crate::plan::uplink::check(desired, live.uplinks.as_deref().unwrap_or_default()) {
        Ok(()) => Ok(()),
        Err(conflicts) => bail!("{conflicts}; {then}"),
    }
}

/// Everything `plan` could need of the current network namespace, whatever the
/// configuration: our tables, the saved record, every main-table IPv4 route, the uplinks,
/// and the route_localnet value of `all`, `default` and every interface (the `snapshot`
/// command). Returns the facts, the values, and the rule-set generation read.
pub fn read_facts(
    nf: &mut Netfilter,
    root: &Root,
) -> Result<(HostFacts, std::collections::BTreeMap<String, String>, u32)> {
    let (facts, generation) = read_host_facts(nf, root, |_| true, true)?;
    let values = sysctl::read_all_route_localnet()?;
    Ok((facts, values, generation))
}

/// The `snapshot` of the current network namespace (see [`crate::render::snapshot`]); `netns` is
/// the `--netns` given, recorded in it.
pub fn snapshot(root: &Root, netns: Option<&str>) -> Result<crate::render::snapshot::Snapshot> {
    let mut nf = Netfilter::open()?;
    let (facts, values, generation) = read_facts(&mut nf, root)?;
    let install = match crate::engine::install::read_state(root)? {
        Some(state) => {
            let (files, link) = crate::engine::install::read_live_files(root, &state)?;
            Some((state, files, link))
        }
        None => None,
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string());
    Ok(crate::render::snapshot::Snapshot::new(facts, values, generation, netns.map(str::to_string), kernel, install))
}

/// Plans `desired` against the live state of the current network namespace.
///
/// With `config`, the plan also carries the findings on the credentials path
/// ([`crate::plan::findings`]): other programs' base chains on its hooks (read right after
/// our tables, from the same chain dumps), the iptables-legacy tables, iptables-nft's
/// FORWARD and DOCKER-USER chains, and the AWS commands' leftovers in files under `root`
/// ([`crate::host::leftovers`]).
pub fn plan_live(desired: &Desired, root: &Root, config: Option<&crate::config::Config>) -> Result<(Netfilter, Plan)> {
    plan_live_state(desired, root, config).map(|(nf, p, _)| (nf, p))
}

/// [`plan_live`], also returning the live state it planned against (our tables with their
/// counter values, route_localnet, routes): `status` reports from the same one read.
pub fn plan_live_state(
    desired: &Desired,
    root: &Root,
    config: Option<&crate::config::Config>,
) -> Result<(Netfilter, Plan, LiveState)> {
    let mut nf = Netfilter::open()?;
    let (live, _) = read_live(&mut nf, desired, root)?;
    refuse_uplink_conflicts(desired, &live, "plan and apply refuse this configuration on this host")?;
    let mut p = plan(desired, &live);
    if let Some(config) = config {
        let path = crate::model::finding::PathState {
            chains: nf.read_path().context("reading the other base chains on the credentials path")?,
            legacy_tables: crate::host::nft::legacy_table_names(),
            forward: nf.read_forward().context("reading iptables-nft's FORWARD and DOCKER-USER chains")?,
            files: crate::host::leftovers::read(root),
        };
        p.findings = crate::plan::findings::findings(config, &path);
    }
    Ok((nf, p, live))
}

/// Carries out `desired`: restores, one batch, enables; retried (re-read and re-planned)
/// up to three times when a concurrent writer changed the rule set under us. Returns the
/// plan that was carried out (empty when the host was already converged).
///
/// The caller holds the [`Lock`] (and keeps it while it repairs installed files).
pub fn converge(desired: &Desired, root: &Root, lock: &Lock) -> Result<Plan> {
    converge_with(&mut Netfilter::open()?, desired, root, lock)
}

/// [`converge`] through an open socket, which stays open: the resident watcher keeps one,
/// because closing a `NETLINK_NETFILTER` socket waits for the kernel's pending destruction
/// of deleted objects (`NETLINK_URELEASE`: nf_tables flushes its destroy work, an RCU grace
/// period, 4-20 ms) and would delay a repair right after someone's `flush ruleset`.
pub fn converge_with(nf: &mut Netfilter, desired: &Desired, root: &Root, _lock: &Lock) -> Result<Plan> {
    carry_out(nf, desired, root, |live| plan(desired, live))
}

/// Removes everything ecs-hostnet owns (see [`plan_removal`]). The caller holds the [`Lock`].
pub fn remove(root: &Root, _lock: &Lock) -> Result<Plan> {
    carry_out(&mut Netfilter::open()?, &nothing(), root, plan_removal)
}

/// How many times apply or remove reads, plans and sends before giving up on a rule set
/// that other programs keep changing.
const MAX_ATTEMPTS: u32 = 6;

fn carry_out(nf: &mut Netfilter, desired: &Desired, root: &Root, planner: impl Fn(&LiveState) -> Plan) -> Result<Plan> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let (live, generation) = read_live(nf, desired, root)?;
        // Before anything is written: the configuration does not fit this host. (A retry
        // follows a refused batch; restores and routes of the attempt before stay.)
        let unchanged = if attempt == 1 { "nothing was changed" } else { "no rule set was sent" };
        refuse_uplink_conflicts(desired, &live, unchanged)?;
        let p = planner(&live);
        if p.is_empty() {
            // Converged: no batch, no sysctl; only a missing saved copy is written.
            sync_saved_record(nf, root, &p.record)?;
            return Ok(p);
        }
        // Every route_localnet write of the plan must be possible before anything is
        // written: one refused after the batch would leave the rules without it.
        for w in p.sysctl_before.iter().chain(&p.sysctl_after) {
            sysctl::check_writable(&w.selector, &w.value)
                .context("nothing was applied: route_localnet cannot be set here")?;
        }
        for w in &p.sysctl_before {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        // Routes before the batch: a route the kernel refuses then stops us before any
        // rule changed (the endpoint route is harmless without the rules).
        if !p.route_ops.is_empty() {
            let mut rt = Rtnl::open()?;
            for op in &p.route_ops {
                rt.run(op)?;
            }
        }
        match nf.commit(&p.ops, generation) {
            Ok(()) => {}
            Err(ref e) if KernelError::is_concurrent_commit(e) => {
                // Someone committed between our read and our batch (ERESTART: the
                // generation moved): nothing was applied; read again and re-plan, after a
                // short, growing pause so a busy writer can finish.
                if attempt < MAX_ATTEMPTS {
                    std::thread::sleep(Duration::from_millis(1 << attempt));
                    continue;
                }
                bail!(
                    "the rule set kept changing under ecs-hostnet: another program committed between its read and its \
                     batch {MAX_ATTEMPTS} times, and the kernel refused each batch whole, so nothing was applied; try again"
                );
            }
            Err(e) => return Err(e.into()),
        }
        // Values that are no longer ours go back to what was found before, also when a
        // concurrent apply (under another lock) turned them on since we read them.
        if let Some(old) = live.record() {
            for (sel, original) in old.iter().filter(|(k, _)| !p.record.contains_key(*k)) {
                if sysctl::read_route_localnet(sel)?.is_some_and(|now| now != *original) {
                    sysctl::write_route_localnet(sel, original)?;
                }
            }
        }
        // The kernel now holds the record; keep the copy before route_localnet goes on.
        sync_saved_record(nf, root, &p.record)?;
        for w in &p.sysctl_after {
            sysctl::write_route_localnet(&w.selector, &w.value)?;
        }
        let (live_after, _) = read_live(nf, desired, root)
            .context("the batch was committed, but reading the result back failed (run `ecs-hostnet check`)")?;
        let after = planner(&live_after);
        if !after.is_empty() {
            let (a, c, r) = after.counts();
            // Never leave route_localnet on without the guard (a concurrent remove with
            // another lock, or someone flushing the rule set, can take the guard away
            // between our batch and our sysctl write): put the recorded values back.
            let mut restored = Vec::new();
            if !crate::plan::localhost_guard_is_live(&live_after) {
                for w in &p.sysctl_after {
                    if let Some(original) = p.record.get(&w.selector) {
                        sysctl::write_route_localnet(&w.selector, original)?;
                        restored.push(format!("{}={original}", crate::model::names::sysctl_name(&w.selector)));
                    }
                }
            }
            let restored = if restored.is_empty() {
                String::new()
            } else {
                format!("; the localhost guard is gone, so {} was put back", restored.join(", "))
            };
            bail!(
                "the host did not converge: {a} to add, {c} to change, {r} to remove remain after the batch{restored} (run `ecs-hostnet plan` to see them)"
            );
        }
        // The credentials path is whole and read back (rules and route_localnet): connection
        // attempts made before it keep their NAT-less entries; delete them so their next packet is
        // DNATed. Best effort: the rules are committed whatever happens here. Only
        // after the read-back: a concurrent remove must find route_localnet restored at once,
        // not after this step.
        for (addr, port) in credentials_endpoints(&p.ops) {
            if let Err(e) = delete_stale_conntrack(addr, port) {
                eprintln!(
                    "ecs-hostnet: warning: the rules are in place, but stale connection-tracking entries toward \
                     {addr}:{port} could not be deleted ({:#}); a client that tried it before this apply may time \
                     out until its entry expires (up to 120 s) or it connects from another source port",
                    anyhow::Error::new(e)
                );
            }
        }
        return Ok(p);
    }
}

/// The credentials endpoints (address, TCP port) that the batch `ops` creates or changes a
/// DNAT or REDIRECT for: those of the added rules whose id is a credentials id
/// ([`rule_id::CREDENTIALS_DNAT_PREFIX`], [`rule_id::CREDENTIALS_REDIRECT`]), read from their
/// `ip daddr` and `tcp dport` matches; sorted, without duplicates. Empty for a batch that
/// leaves the credentials rules alone.
pub fn credentials_endpoints(ops: &[Op]) -> Vec<(Ipv4Addr, u16)> {
    let mut out: Vec<(Ipv4Addr, u16)> = ops
        .iter()
        .filter_map(|op| match op {
            Op::AddRule { rule, .. }
                if rule.id.starts_with(rule_id::CREDENTIALS_DNAT_PREFIX)
                    || rule.id == rule_id::CREDENTIALS_REDIRECT =>
            {
                endpoint_of(&rule.exprs)
            }
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// The `ip daddr A` and `tcp dport P` equality matches of a credentials rule (a payload
/// load followed by its comparison, as [`crate::model::build`] makes them).
fn endpoint_of(exprs: &[Expr]) -> Option<(Ipv4Addr, u16)> {
    let (mut addr, mut port) = (None, None);
    for w in exprs.windows(2) {
        if let [Expr::Payload { base, offset, len, .. }, Expr::Cmp { op: CmpOp::Eq, data, .. }] = w {
            match (*base, *offset, *len) {
                (payload::NETWORK, 16, 4) => addr = <[u8; 4]>::try_from(data.as_slice()).ok().map(Ipv4Addr::from),
                (payload::TRANSPORT, 2, 2) => port = <[u8; 2]>::try_from(data.as_slice()).ok().map(u16::from_be_bytes),
                _ => {}
            }
        }
    }
    Some((addr?, port?))
}

/// Deletes the stale connection-tracking entries toward `addr:port` in the current
/// network namespace (see [`crate::host::conntrack`]); returns how many.
fn delete_stale_conntrack(addr: Ipv4Addr, port: u16) -> Result<usize, crate::host::conntrack::Error> {
    crate::host::conntrack::Conntrack::open()?.delete_stale_toward(addr, port)
}

/// The desired state of `remove`: none of our tables, no route_localnet of ours.
pub fn nothing() -> Desired {
    Desired {
        tables: vec![],
        route_localnet: vec![],
        endpoint_route: None,
        container_interfaces: Default::default(),
        audit: None,
    }
}

/// Compiles a loaded configuration.
pub fn desired(loaded: &Loaded) -> Desired {
    compile(&loaded.config)
}

/// Error context for the namespace, used by main.
pub fn in_namespace<T>(netns: Option<&str>, r: Result<T>) -> Result<T> {
    match netns {
        Some(ns) => r.with_context(|| format!("in network namespace {ns:?}")),
        None => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::Placement;
    use crate::model::ruleset::Family;

    fn compiled(toml: &str) -> Desired {
        let config = crate::config::parse("test.toml", toml).expect("valid configuration");
        compile(&config)
    }

    /// Every rule of `d` as an AddRule op, as a batch that creates the tables would send.
    fn adds(d: &Desired) -> Vec<Op> {
        d.tables
            .iter()
            .flat_map(|t| {
                t.chains.iter().flat_map(move |c| {
                    c.rules.iter().map(move |r| Op::AddRule {
                        family: t.family,
                        table: t.name.clone(),
                        chain: c.name.clone(),
                        rule: r.clone(),
                        placement: Placement::Append,
                    })
                })
            })
            .collect()
    }

    #[test]
    fn a_batch_adding_credentials_rules_names_their_endpoint_once() {
        let d = compiled("");
        let ops = adds(&d);
        assert!(ops.len() > 2, "the default configuration has several rules");
        assert_eq!(credentials_endpoints(&ops), vec![(Ipv4Addr::new(169, 254, 170, 2), 80)]);
        let d = compiled("[credentials]\nendpoint_address = \"169.254.170.9\"\nendpoint_port = 8080\n");
        assert_eq!(credentials_endpoints(&adds(&d)), vec![(Ipv4Addr::new(169, 254, 170, 9), 8080)]);
    }

    #[test]
    fn a_batch_without_credentials_rules_names_none() {
        let d = compiled("");
        let others: Vec<Op> = adds(&d)
            .into_iter()
            .filter(|op| match op {
                Op::AddRule { rule, .. } => !rule.id.starts_with("credentials"),
                _ => true,
            })
            .collect();
        assert!(!others.is_empty(), "the guards and IMDS blocks remain");
        assert_eq!(credentials_endpoints(&others), vec![]);
        let deletes = vec![Op::DelTable { family: Family::Ip, name: "ecs-hostnet".into() }];
        assert_eq!(credentials_endpoints(&deletes), vec![]);
        assert_eq!(credentials_endpoints(&[]), vec![]);
    }
}
