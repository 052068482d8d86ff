//! Desired state vs live state -> the changes to make (pure).
//!
//! The plan has two faces: [`Plan::changes`], what a person reads (each table, chain, rule
//! and sysctl to add, change or remove, and why), and the ordered operations that carry it
//! out: sysctl restores, then ONE nf_tables batch ([`Plan::ops`]), then sysctl enables. That
//! order keeps the host safe: route_localnet is only turned on once the localhost guard is
//! live, and is put back before a guard is removed.
//!
//! Rules are matched by their id (the rule comment) and compared by their expressions.
//! Correct rules keep their kernel handles (and counters): within a chain, the longest run
//! of live rules that already match the desired order is kept, everything else is deleted
//! by handle, and missing rules are inserted before the next kept rule or appended.
//!
//! Each change says why it is made ([`Reason`]); what a person should know that is not a
//! change is a [`Note`] (see [`reason`]). Both are values: code decides on the variant,
//! their text is only for output.
//!
//! May import [`crate::model`], [`crate::config`] and [`crate::desired`] only
//! (docs/architecture.md): it never prints itself ([`crate::render`] does) and never
//! touches the host ([`crate::engine`] reads it). Pure: no I/O.

pub mod change;
pub mod files;
pub mod findings;
pub mod leftovers;
pub mod live;
pub mod reason;
pub mod task_routes;
pub mod uplink;
pub mod verify;
pub mod watch;

use crate::desired::Desired;
use crate::model::live::{LiveChain, LiveRule, LiveTable};
use crate::model::names::{chain, rule_id, sysctl_name};
use crate::model::nft_text::{base_chain_text, rule_text};
use crate::model::ops::{Op, Placement, SysctlWrite};
use crate::model::record::Record;
use crate::model::route::{LiveRoute, ROUTE_PROTOCOL, RouteOp};
use crate::model::ruleset::{BaseChain, Chain, Family, Rule, Table};
use change::{Action, Change, Subject, rule_subject};
use live::{LiveState, converged_host};
use std::collections::{BTreeMap, BTreeSet};

pub use crate::model::names::rule_id::is_ours as is_our_id;
pub use reason::{Note, Reason};

/// `diff OLD NEW`: what applying `new` would change on a host converged to `old` (see
/// [`converged_host`]; every interface either names exists, with route_localnet 0 where
/// `old` did not set it). Pure: no kernel, no root.
pub fn diff(old: &Desired, new: &Desired) -> Plan {
    let facts = converged_host(old, "0");
    let live = facts
        .live_state(new, |sel| {
            let set = old.route_localnet.iter().any(|s| s == sel);
            Ok::<_, std::convert::Infallible>(Some(if set { "1" } else { "0" }.to_string()))
        })
        .unwrap_or_else(|e| match e {});
    let mut p = plan(new, &live);
    if p.changes.iter().any(|c| matches!(c.subject, Subject::Route { .. } | Subject::Sysctl { .. })) {
        p.notes.push(Note::ModelHost);
    }
    // The handles are this model's, not any host's: not shown.
    for c in &mut p.changes {
        if let Subject::Rule { handle, .. } = &mut c.subject {
            *handle = None;
        }
    }
    p
}

/// What to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// What a person reads, in the order `plan` prints it (see [`Plan::counts`]).
    pub changes: Vec<Change>,
    /// Sysctl restores, written BEFORE the batch (a guard may go away in it).
    pub sysctl_before: Vec<SysctlWrite>,
    /// The nf_tables batch; empty = send nothing.
    pub ops: Vec<Op>,
    /// Sysctl enables, written AFTER the batch (the guard must be live first).
    pub sysctl_after: Vec<SysctlWrite>,
    /// Things a person should know that are not changes (e.g. an interface that does not exist yet).
    pub notes: Vec<Note>,
    /// The route_localnet record once the plan is carried out (empty: none).
    pub record: Record,
    /// Route changes, made after the batch (the endpoint route for host-mode tasks).
    pub route_ops: Vec<RouteOp>,
    /// What else sits on the credentials path ([`findings`]); not changes: they never make
    /// the plan non-empty, but a blocking one makes `check` fail.
    pub findings: Vec<crate::model::finding::Finding>,
}

impl Plan {
    /// `true` when the host already matches: nothing to send or write.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.ops.is_empty()
            && self.sysctl_before.is_empty()
            && self.sysctl_after.is_empty()
            && self.route_ops.is_empty()
    }

    /// (to add, to change, to remove)
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |a| self.changes.iter().filter(|c| c.action == a).count();
        (n(Action::Add), n(Action::Change), n(Action::Remove))
    }
}

/// Plans the changes that take `live` to `desired`.
pub fn plan(desired: &Desired, live: &LiveState) -> Plan {
    let mut p = Plan::default();
    let record = plan_sysctls(desired, live, &mut p);
    p.record = record.clone();
    // Changes are listed in the order they are carried out: restores, rule set, enables.
    let enables: Vec<Change> = p
        .changes
        .iter()
        .filter(|c| p.sysctl_after.iter().any(|w| c.subject == Subject::Sysctl { name: w.name() }))
        .cloned()
        .collect();
    p.changes.retain(|c| !enables.contains(c));
    for t in &desired.tables {
        let want_record = if t.family == Family::Inet { record.clone() } else { Record::new() };
        match live.tables.iter().find(|l| l.family == t.family && l.name == t.name) {
            None => add_table(t, &want_record, &Reason::Missing, &mut p),
            Some(lt) => plan_table(t, &want_record, lt, &mut p),
        }
    }
    for lt in &live.tables {
        if !desired.tables.iter().any(|t| t.family == lt.family && t.name == lt.name) {
            p.ops.push(Op::DelTable { family: lt.family, name: lt.name.clone() });
            // The table's chains and rules go with it: each is listed, as for a table added.
            p.changes.push(Change::new(
                Action::Remove,
                Subject::Table { family: lt.family, table: lt.name.clone() },
                Reason::NoLongerConfigured,
            ));
            for c in &lt.chains {
                list_chain_removal(lt, c, &Reason::NoLongerConfigured, &mut p.changes);
            }
        }
    }
    plan_endpoint_route(desired, live, &mut p);
    p.changes.extend(enables);
    let guard_desired = desired.tables.iter().any(|t| {
        t.family == Family::Inet && t.chains.iter().any(|c| c.rules.iter().any(|r| r.id == rule_id::LOCALHOST_GUARD))
    });
    if !guard_desired && !desired.route_localnet.is_empty() {
        p.notes.push(Note::GuardOff { selectors: desired.route_localnet.clone() });
    }
    if !localhost_guard_is_live(live) {
        let exposed: Vec<String> =
            live.route_localnet.iter().filter(|(_, v)| v.as_deref() == Some("1")).map(|(k, _)| k.clone()).collect();
        if !exposed.is_empty() {
            p.notes.push(Note::ExposedUntilApply { selectors: exposed });
        }
    }
    p
}

/// Whether the localhost guard is live: both of its rules (the container interfaces' and
/// every other interface's) in `table inet ecs-hostnet`, which is not dormant (flags 0).
/// With either one gone, route_localnet exposes 127.0.0.1 to someone.
pub fn localhost_guard_is_live(live: &LiveState) -> bool {
    let has =
        |t: &LiveTable, id: &str| t.chains.iter().any(|c| c.rules.iter().any(|r| r.comment.as_deref() == Some(id)));
    live.tables.iter().any(|t| {
        t.family == Family::Inet
            && t.flags == 0
            && has(t, rule_id::LOCALHOST_GUARD)
            && has(t, rule_id::LOCALHOST_GUARD_UPLINK)
    })
}

/// The `ENDPOINT/32 dev lo` route: added when wanted and missing; ours deleted when the
/// configuration no longer wants one. Under `auto` the route is wanted exactly while the
/// namespace has no IPv4 default route: ours is deleted once one appears (the watcher and
/// the agent hook re-run this when routes change), so a dual-stack host never keeps it.
fn plan_endpoint_route(desired: &Desired, live: &LiveState, p: &mut Plan) {
    // Any route with our protocol is ours, also one in a form an older ecs-hostnet made.
    let ours = |r: &LiveRoute| r.protocol == ROUTE_PROTOCOL;
    match &desired.endpoint_route {
        Some(w) => {
            let present = live.endpoint_routes.iter().any(|r| r.satisfies(&w.spec));
            // Ours in another form go first (same prefix: the new one would clash).
            for r in live.endpoint_routes.iter().filter(|r| ours(r) && !r.satisfies(&w.spec)) {
                let reason =
                    if r.dest == w.spec.dest { Reason::ReplacedByCurrentForm } else { Reason::NoLongerConfigured };
                delete_route(r, reason, p);
            }
            let other =
                live.endpoint_routes.iter().find(|r| r.dest == w.spec.dest && !r.satisfies(&w.spec) && !ours(r));
            let wanted = !w.auto || !live.ipv4_default_route;
            if !wanted {
                for r in live.endpoint_routes.iter().filter(|r| ours(r) && r.satisfies(&w.spec)) {
                    delete_route(r, Reason::Ipv4DefaultRouteExists, p);
                }
            } else if let (true, false, Some(o)) = (wanted, present, other) {
                p.notes.push(Note::EndpointRouteTaken { route: o.clone(), wanted: w.spec });
            } else if wanted && !present && !live.lo_up {
                p.notes.push(Note::LoDown { wanted: w.spec });
            } else if wanted && !present {
                p.route_ops.push(RouteOp::Add { spec: w.spec });
                let why = if w.auto { Reason::MissingNoIpv4DefaultRoute } else { Reason::Missing };
                p.changes.push(
                    Change::new(Action::Add, Subject::Route { route: w.spec.to_string() }, why)
                        .new_form(w.spec.to_string()),
                );
            }
        }
        None => {
            for r in live.endpoint_routes.iter().filter(|r| ours(r)) {
                delete_route(r, Reason::NoLongerConfigured, p);
            }
        }
    }
}

fn delete_route(r: &LiveRoute, reason: Reason, p: &mut Plan) {
    p.route_ops.push(RouteOp::DeleteInTheWay { route: r.clone() });
    p.changes.push(Change::new(Action::Remove, Subject::Route { route: r.to_string() }, reason).old(r.to_string()));
}

/// The plan of `remove`: none of our tables, every recorded route_localnet value put back.
pub fn plan_removal(live: &LiveState) -> Plan {
    let mut p = plan(
        &Desired {
            tables: vec![],
            route_localnet: vec![],
            endpoint_route: None,
            container_interfaces: Default::default(),
            audit: None,
        },
        live,
    );
    for c in &mut p.changes {
        c.reason = Reason::RemoveCommand;
    }
    // The exposure note speaks of the state before the remove, which puts it right.
    p.notes.retain(|n| !matches!(n, Note::ExposedUntilApply { .. }));
    p
}

/// Plans the route_localnet writes and returns the record the inet table must hold.
fn plan_sysctls(desired: &Desired, live: &LiveState, p: &mut Plan) -> Record {
    let old = live.record().cloned().unwrap_or_default();
    let mut new = Record::new();
    for sel in &desired.route_localnet {
        let Some(Some(now)) = live.route_localnet.get(sel) else {
            p.notes.push(Note::InterfaceMissing { selector: sel.clone() });
            continue;
        };
        let original = old.get(sel).cloned().unwrap_or_else(|| now.clone());
        if !old.contains_key(sel) && now == "1" {
            p.notes.push(Note::AlreadyOneUnrecorded { selector: sel.clone() });
        }
        if now != "1" {
            p.sysctl_after.push(SysctlWrite { selector: sel.clone(), value: "1".into() });
            let reason = if old.contains_key(sel) {
                Reason::SysctlChangedBySomeone { original: original.clone() }
            } else {
                Reason::SysctlNotSetYet { original: original.clone() }
            };
            p.changes.push(
                Change::new(Action::Change, Subject::Sysctl { name: sysctl_name(sel) }, reason)
                    .old(now.clone())
                    .new_form("1"),
            );
        }
        new.insert(sel.clone(), original);
    }
    for (sel, original) in &old {
        if new.contains_key(sel) {
            continue;
        }
        if let Some(Some(now)) = live.route_localnet.get(sel)
            && now != original
        {
            p.sysctl_before.push(SysctlWrite { selector: sel.clone(), value: original.clone() });
            p.changes.push(
                Change::new(Action::Change, Subject::Sysctl { name: sysctl_name(sel) }, Reason::SysctlRestored)
                    .old(now.clone())
                    .new_form(original.clone()),
            );
        }
    }
    new
}

fn add_table(t: &Table, record: &Record, reason: &Reason, p: &mut Plan) {
    p.ops.push(Op::AddTable {
        family: t.family,
        name: t.name.clone(),
        comment: t.comment.clone(),
        record: record.clone(),
    });
    p.changes.push(Change::new(
        Action::Add,
        Subject::Table { family: t.family, table: t.name.clone() },
        reason.clone(),
    ));
    for c in &t.chains {
        add_chain(t, c, reason, p);
    }
}

fn add_chain(t: &Table, c: &Chain, reason: &Reason, p: &mut Plan) {
    p.ops.push(Op::AddChain { family: t.family, table: t.name.clone(), name: c.name.clone(), base: c.base });
    let mut change = Change::new(
        Action::Add,
        Subject::Chain { family: t.family, table: t.name.clone(), chain: c.name.clone() },
        reason.clone(),
    );
    change.new = c.base.as_ref().map(base_chain_text);
    p.changes.push(change);
    for r in &c.rules {
        p.ops.push(add_rule(t, c, r, Placement::Append));
        p.changes.push(
            Change::new(Action::Add, rule_subject(t.family, &t.name, &c.name, Some(&r.id), None), reason.clone())
                .new_form(rule_text(t.family, &r.exprs, None)),
        );
    }
}

fn add_rule(t: &Table, c: &Chain, r: &Rule, placement: Placement) -> Op {
    Op::AddRule { family: t.family, table: t.name.clone(), chain: c.name.clone(), rule: r.clone(), placement }
}

fn plan_table(t: &Table, record: &Record, lt: &LiveTable, p: &mut Plan) {
    // Differences the kernel cannot update in place (table userdata, a base chain's
    // type/hook/priority) or that need a chain deleted are handled by recreating the
    // table in the same transaction.
    let mut recreate = Vec::new();
    if lt.comment.as_deref() != Some(t.comment.as_str()) {
        recreate.push("its comment was changed by someone".to_string());
    }
    for o in &lt.foreign_objects {
        recreate.push(format!("{o} is not ecs-hostnet's (it makes no named sets or objects)"));
    }
    if lt.flags != 0 {
        let what = match lt.flags {
            f if f & 1 != 0 => "dormant (every rule switched off)",
            f if f & 2 != 0 => "owner (held by another process)",
            _ => "set",
        };
        recreate.push(format!("its flags were changed by someone: 0x{:x}, {what}", lt.flags));
    }
    let live_record = lt.record.clone().unwrap_or_default();
    if t.family == Family::Inet && &live_record != record {
        recreate.push(format!(
            "the route_localnet record changes from {{{}}} to {{{}}}",
            fmt_record(&live_record),
            fmt_record(record)
        ));
    }
    // A base chain whose policy alone differs is updated in place (NEWCHAIN on the
    // existing chain); its rules keep their handles.
    let mut policy_updates = Vec::new();
    let mut dropped = Vec::new();
    for lc in &lt.chains {
        match t.chains.iter().find(|c| c.name == lc.name) {
            None if chain::ALL.contains(&lc.name.as_str()) => dropped.push(lc),
            None => {
                recreate.push(format!("chain {} is not ecs-hostnet's", crate::model::nft_text::printable(&lc.name)))
            }
            Some(c) if c.base != lc.base => {
                let policy_only = matches!((c.base, lc.base), (Some(d), Some(l))
                    if BaseChain { policy_accept: d.policy_accept, ..l } == d);
                if policy_only {
                    policy_updates.push(c);
                } else {
                    recreate.push(format!(
                        "chain {} was redefined ({} instead of {})",
                        c.name,
                        lc.base.as_ref().map(base_chain_text).unwrap_or_else(|| "regular chain".into()),
                        c.base.as_ref().map(base_chain_text).unwrap_or_else(|| "regular chain".into()),
                    ))
                }
            }
            Some(_) => {}
        }
    }
    if !recreate.is_empty() {
        p.ops.push(Op::DelTable { family: lt.family, name: lt.name.clone() });
        p.changes.push(
            Change::new(
                Action::Change,
                Subject::Table { family: t.family, table: t.name.clone() },
                Reason::TableRecreated,
            )
            .details(recreate),
        );
        // Show the chain- and rule-level differences too, but carry them out by rebuilding.
        let mut shown = Plan::default();
        for lc in &dropped {
            list_chain_removal(lt, lc, &Reason::NoLongerConfigured, &mut shown.changes);
        }
        // Someone else's chains go with the recreate: listed too.
        for lc in lt.chains.iter().filter(|lc| !chain::ALL.contains(&lc.name.as_str())) {
            if !t.chains.iter().any(|c| c.name == lc.name) {
                list_chain_removal(lt, lc, &Reason::ForeignChain, &mut shown.changes);
            }
        }
        for c in &policy_updates {
            let live_base = lt.chains.iter().find(|lc| lc.name == c.name).and_then(|lc| lc.base);
            shown.changes.push(policy_change(t, c, live_base, false));
        }
        for c in &t.chains {
            if let Some(lc) = lt.chains.iter().find(|lc| lc.name == c.name) {
                plan_chain(t, c, lc, &mut shown);
            }
        }
        p.changes.extend(shown.changes);
        p.ops.push(Op::AddTable {
            family: t.family,
            name: t.name.clone(),
            comment: t.comment.clone(),
            record: record.clone(),
        });
        for c in &t.chains {
            p.ops.push(Op::AddChain { family: t.family, table: t.name.clone(), name: c.name.clone(), base: c.base });
            for r in &c.rules {
                p.ops.push(add_rule(t, c, r, Placement::Append));
            }
            if !lt.chains.iter().any(|lc| lc.name == c.name) {
                // Listed like any missing chain; the ops are already in the rebuild.
                let mut shown = Plan::default();
                add_chain(t, c, &Reason::Missing, &mut shown);
                p.changes.extend(shown.changes);
            }
        }
        return;
    }
    for lc in dropped {
        p.ops.push(Op::DelChain { family: lt.family, table: lt.name.clone(), name: lc.name.clone() });
        list_chain_removal(lt, lc, &Reason::NoLongerConfigured, &mut p.changes);
    }
    for c in policy_updates {
        p.ops.push(Op::AddChain { family: t.family, table: t.name.clone(), name: c.name.clone(), base: c.base });
        let live_base = lt.chains.iter().find(|lc| lc.name == c.name).and_then(|lc| lc.base);
        p.changes.push(policy_change(t, c, live_base, true));
    }
    for c in &t.chains {
        match lt.chains.iter().find(|lc| lc.name == c.name) {
            None => add_chain(t, c, &Reason::Missing, p),
            Some(lc) => plan_chain(t, c, lc, p),
        }
    }
}

/// Lists a live chain that goes away, and each of its rules, as removals.
fn list_chain_removal(lt: &LiveTable, c: &LiveChain, why: &Reason, changes: &mut Vec<Change>) {
    let mut change = Change::new(
        Action::Remove,
        Subject::Chain { family: lt.family, table: lt.name.clone(), chain: c.name.clone() },
        why.clone(),
    );
    change.old = c.base.as_ref().map(base_chain_text);
    changes.push(change);
    for r in &c.rules {
        changes.push(
            Change::new(
                Action::Remove,
                rule_subject(lt.family, &lt.name, &c.name, r.comment.as_deref(), Some(r.handle)),
                why.clone(),
            )
            .old(rule_text(lt.family, &r.exprs, None)),
        );
    }
}

/// A base chain whose policy alone was changed by someone, corrected in place or by the
/// table's recreate.
fn policy_change(t: &Table, c: &Chain, live_base: Option<BaseChain>, in_place: bool) -> Change {
    let accept = |b: Option<BaseChain>| b.is_some_and(|b| b.policy_accept);
    Change::new(
        Action::Change,
        Subject::Chain { family: t.family, table: t.name.clone(), chain: c.name.clone() },
        Reason::PolicyModified { live_accept: accept(live_base), want_accept: accept(c.base), in_place },
    )
    .old(live_base.as_ref().map(base_chain_text).unwrap_or_default())
    .new_form(c.base.as_ref().map(base_chain_text).unwrap_or_default())
}

fn fmt_record(r: &Record) -> String {
    r.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}

fn same(d: &Rule, l: &LiveRule) -> bool {
    l.comment.as_deref() == Some(d.id.as_str()) && l.exprs == d.exprs
}

/// The largest set of live rules to keep: pairs (desired index, live index), increasing
/// in both, where the live rule equals the desired one ([`same`]). Desired ids are unique,
/// so each live rule matches at most one desired rule, and this is the longest strictly
/// increasing subsequence of those desired indices in live order: O(m log m) time and
/// O(m) memory for m live rules (patience sorting).
fn kept_pairs(desired: &[Rule], live: &[LiveRule]) -> Vec<(usize, usize)> {
    let by_id: BTreeMap<&str, usize> = desired.iter().enumerate().map(|(i, r)| (r.id.as_str(), i)).collect();
    let seq: Vec<(usize, usize)> = live
        .iter()
        .enumerate()
        .filter_map(|(j, l)| {
            let i = *by_id.get(l.comment.as_deref()?)?;
            same(&desired[i], l).then_some((i, j))
        })
        .collect();
    // tails[k]: index into seq of the smallest desired index ending an increasing run of length k+1.
    let mut tails: Vec<usize> = Vec::new();
    let mut prev: Vec<Option<usize>> = vec![None; seq.len()];
    for (n, &(i, _)) in seq.iter().enumerate() {
        let k = tails.partition_point(|&t| seq[t].0 < i);
        prev[n] = k.checked_sub(1).map(|k| tails[k]);
        if k == tails.len() {
            tails.push(n);
        } else {
            tails[k] = n;
        }
    }
    let mut out = Vec::with_capacity(tails.len());
    let mut cur = tails.last().copied();
    while let Some(n) = cur {
        out.push(seq[n]);
        cur = prev[n];
    }
    out.reverse();
    out
}

fn plan_chain(t: &Table, c: &Chain, lc: &LiveChain, p: &mut Plan) {
    let (fam, tn, cn) = (t.family, t.name.as_str(), c.name.as_str());
    let kept = kept_pairs(&c.rules, &lc.rules);
    let kept_live: BTreeSet<usize> = kept.iter().map(|&(_, j)| j).collect();
    let kept_desired: BTreeMap<usize, usize> = kept.iter().copied().collect();
    let desired_ids: BTreeSet<&str> = c.rules.iter().map(|r| r.id.as_str()).collect();
    // Desired ids whose rule the kernel holds with other expressions: shown as one change.
    let mut modified: BTreeMap<&str, &LiveRule> = BTreeMap::new();

    for (j, lr) in lc.rules.iter().enumerate() {
        if kept_live.contains(&j) {
            continue;
        }
        p.ops.push(Op::DelRule { family: fam, table: tn.into(), chain: cn.into(), handle: lr.handle });
        let id = lr.comment.as_deref();
        let desired = id.and_then(|id| c.rules.iter().find(|r| r.id == id));
        let reason = match (id, desired) {
            (None, _) => Reason::ForeignRuleWithoutId,
            (Some(id), None) if !is_our_id(id) => Reason::ForeignRuleWithForeignId,
            (Some(id), None) => {
                match t.chains.iter().find(|o| o.name != c.name && o.rules.iter().any(|r| r.id == id)) {
                    Some(o) => Reason::WrongChain { belongs_in: o.name.clone() },
                    None => Reason::NoLongerConfigured,
                }
            }
            (Some(id), Some(d)) => {
                let kept_same_id = kept.iter().any(|&(i, _)| c.rules[i].id == id);
                if d.exprs == lr.exprs {
                    if kept_same_id { Reason::DuplicateCopy } else { Reason::OutOfOrder }
                } else if kept_same_id || modified.contains_key(id) {
                    Reason::ModifiedDuplicateCopy
                } else {
                    modified.insert(id, lr);
                    continue;
                }
            }
        };
        if matches!(reason, Reason::OutOfOrder) {
            continue; // reported with its re-insertion below
        }
        p.changes.push(
            Change::new(Action::Remove, rule_subject(fam, tn, cn, id, Some(lr.handle)), reason)
                .old(rule_text(fam, &lr.exprs, None)),
        );
    }
    for (i, r) in c.rules.iter().enumerate() {
        if kept_desired.contains_key(&i) {
            continue;
        }
        let next_kept = kept.iter().find(|&&(di, _)| di > i).map(|&(_, lj)| lc.rules[lj].handle);
        let placement = next_kept.map(Placement::Before).unwrap_or(Placement::Append);
        p.ops.push(add_rule(t, c, r, placement));
        let subject = rule_subject(fam, tn, cn, Some(&r.id), None);
        let want = rule_text(fam, &r.exprs, None);
        if let Some(lr) = modified.get(r.id.as_str()) {
            let mut change = Change::new(Action::Change, subject, Reason::DiffersFromConfiguration)
                .old(rule_text(fam, &lr.exprs, None))
                .new_form(want);
            if let Subject::Rule { handle, .. } = &mut change.subject {
                *handle = Some(lr.handle);
            }
            p.changes.push(change);
        } else if lc.rules.iter().any(|lr| same(r, lr)) {
            p.changes.push(Change::new(Action::Change, subject, Reason::OutOfOrder).old(want.clone()).new_form(want));
        } else {
            p.changes.push(Change::new(Action::Add, subject, Reason::Missing).new_form(want));
        }
    }
    let _ = desired_ids;
}

#[cfg(test)]
mod tests {
    /// The plan as people read it, for assertion messages (the printer is `render`'s).
    trait Text {
        fn text(&self) -> String;
    }
    impl Text for Plan {
        fn text(&self) -> String {
            crate::render::plan::text(self, false, "No changes: the host matches the configuration.")
        }
    }
    use super::*;
    use crate::config::{default_config, parse};
    use crate::desired::compile;
    use crate::model::live::{LiveChain, LiveRule};
    use crate::model::names::TABLE_NAME;
    use crate::model::route::RouteKind;

    /// The live state a kernel would report after applying `d` (handles 1, 2, ...), with
    /// `record` in the inet table and every desired route_localnet at 1.
    fn converged(d: &Desired, record: &Record) -> LiveState {
        let mut facts = converged_host(d, "0");
        for t in facts.tables.iter_mut().filter(|t| t.family == Family::Inet) {
            t.record = Some(record.clone());
        }
        facts.saved_record = None;
        facts.lo_up = false;
        facts.live_state(d, |_| Ok::<_, std::convert::Infallible>(Some("1".to_string()))).unwrap()
    }

    fn rec(pairs: &[(&str, &str)]) -> Record {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn fresh_host() -> LiveState {
        LiveState {
            tables: vec![],
            route_localnet: [("all".to_string(), Some("0".to_string()))].into(),
            ipv4_default_route: true,
            ..Default::default()
        }
    }

    #[test]
    fn empty_host_gets_everything_in_one_batch_and_sysctl_after() {
        let d = compile(&default_config());
        let p = plan(&d, &fresh_host());
        assert!(p.sysctl_before.is_empty());
        assert_eq!(p.sysctl_after, vec![SysctlWrite { selector: "all".into(), value: "1".into() }]);
        let rules = p.ops.iter().filter(|o| matches!(o, Op::AddRule { .. })).count();
        // 3 DNAT + 1 REDIRECT + 3 input guards + 2 IMDS families, each an audit rule and a
        // drop (the patterns in a set).
        assert_eq!(rules, 11);
        assert!(matches!(&p.ops[0], Op::AddTable { family: Family::Ip, .. }));
        let inet = p.ops.iter().find_map(|o| match o {
            Op::AddTable { family: Family::Inet, record, .. } => Some(record.clone()),
            _ => None,
        });
        assert_eq!(inet, Some(rec(&[("all", "0")])), "the value found is recorded in the same batch");
        assert_eq!(p.counts().2, 0);
        assert!(p.text().contains("Plan: "));
    }

    #[test]
    fn converged_host_needs_nothing() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        let p = plan(&d, &live);
        assert!(p.is_empty(), "{}", p.text());
        assert!(p.ops.is_empty());
    }

    #[test]
    fn deleted_rule_is_inserted_before_its_successor() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        let pre = &mut live.tables[0].chains[0];
        let removed = pre.rules.remove(1); // credentials-dnat br-+
        let successor = pre.rules[1].handle;
        let p = plan(&d, &live);
        assert_eq!(p.ops.len(), 1, "{:?}", p.ops);
        match &p.ops[0] {
            Op::AddRule { rule, placement, .. } => {
                assert_eq!(rule.id, removed.comment.clone().unwrap());
                assert_eq!(*placement, Placement::Before(successor));
            }
            o => panic!("unexpected {o:?}"),
        }
        assert_eq!(p.changes[0].reason.to_string(), "missing");
        assert!(p.changes[0].object().contains(&rule_id::credentials_dnat("br-+")));
    }

    #[test]
    fn altered_rule_is_one_change_carried_out_as_delete_and_insert() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        let out = &mut live.tables[0].chains[1].rules[0];
        out.exprs = compile(&parse("t", "[credentials]\nagent_port = 51680\n").unwrap()).tables[0].chains[1].rules[0]
            .exprs
            .clone();
        let h = out.handle;
        let p = plan(&d, &live);
        assert_eq!(p.counts(), (0, 1, 0), "{}", p.text());
        assert!(p.changes[0].reason.to_string().starts_with("differs from the configuration"), "{}", p.text());
        assert!(p.changes[0].old.as_ref().unwrap().contains("redirect to :51680"));
        assert!(p.changes[0].new.as_ref().unwrap().contains("redirect to :51679"));
        assert!(matches!(p.ops[0], Op::DelRule { handle, .. } if handle == h));
        assert!(matches!(&p.ops[1], Op::AddRule { placement: Placement::Append, .. }));
    }

    /// Counter values are runtime state: a converged host whose every counter moved (and one
    /// whose counters were not read at all) plans nothing, and the localhost guard stays live.
    #[test]
    fn counter_values_never_cause_drift() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        let mut n = 0;
        for r in live.tables.iter_mut().flat_map(|t| &mut t.chains).flat_map(|c| &mut c.rules) {
            assert!(r.counter.is_some(), "every rule of ours carries a counter: {r:?}");
            n += 1;
            r.counter = Some(crate::model::live::CounterValues { packets: n * 1000, bytes: u64::MAX - n });
        }
        assert!(n >= 8, "{n} rules");
        assert!(plan(&d, &live).is_empty(), "{}", plan(&d, &live).text());
        assert!(localhost_guard_is_live(&live));
        for r in live.tables.iter_mut().flat_map(|t| &mut t.chains).flat_map(|c| &mut c.rules) {
            r.counter = None;
        }
        assert!(plan(&d, &live).is_empty());
    }

    #[test]
    fn duplicates_and_foreign_rules_in_our_chains_are_removed() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        let chain = &mut live.tables[0].chains[0];
        let mut dup = chain.rules[0].clone();
        dup.handle = 100;
        chain.rules.push(dup);
        chain.rules.push(LiveRule {
            handle: 101,
            comment: None,
            exprs: vec![crate::model::ruleset::Expr::Counter],
            counter: None,
        });
        let p = plan(&d, &live);
        assert_eq!(p.counts(), (0, 0, 2), "{}", p.text());
        let reasons: Vec<String> = p.changes.iter().map(|c| c.reason.to_string()).collect();
        assert_eq!(reasons, ["duplicate copy", "added by someone (no ecs-hostnet id)"]);
        assert!(p.ops.iter().all(|o| matches!(o, Op::DelRule { handle: 100 | 101, .. })));
    }

    #[test]
    fn rules_dropped_from_the_configuration_are_removed() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        let smaller = compile(&parse("t", "[containers]\ninterfaces = [\"docker+\"]\n").unwrap());
        let p = plan(&smaller, &live);
        // br-+ and ecs-bridge: 2 DNAT rules go; the 2 IMDS drops, their 2 audit rules and
        // the uplink guard now match one name.
        assert_eq!(p.counts(), (0, 5, 2), "{}", p.text());
        assert_eq!(p.changes.iter().filter(|c| c.reason.to_string() == "no longer in the configuration").count(), 2);
    }

    #[test]
    fn reordered_rules_keep_the_longest_ordered_run() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.tables[0].chains[0].rules.swap(0, 2);
        let p = plan(&d, &live);
        let dels = p.ops.iter().filter(|o| matches!(o, Op::DelRule { .. })).count();
        assert_eq!(dels, 2, "{}", p.text());
        assert!(p.changes.iter().all(|c| c.reason.to_string() == "out of order"));
        // Apply the ops to the model and check the result is the desired order.
        let mut rules = live.tables[0].chains[0].rules.clone();
        for op in &p.ops {
            match op {
                Op::DelRule { handle, .. } => rules.retain(|r| r.handle != *handle),
                Op::AddRule { rule, placement, .. } => {
                    let lr = LiveRule {
                        handle: 1000,
                        comment: Some(rule.id.clone()),
                        exprs: rule.exprs.clone(),
                        counter: None,
                    };
                    match placement {
                        Placement::Append => rules.push(lr),
                        Placement::Before(h) => {
                            let at = rules.iter().position(|r| r.handle == *h).unwrap();
                            rules.insert(at, lr);
                        }
                    }
                }
                o => panic!("unexpected {o:?}"),
            }
        }
        let ids: Vec<_> = rules.iter().map(|r| r.comment.clone().unwrap()).collect();
        let want: Vec<_> = d.tables[0].chains[0].rules.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids, want);
    }

    #[test]
    fn sysctl_changed_by_someone_is_set_again_and_original_kept() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.route_localnet.insert("all".into(), Some("0".into()));
        let p = plan(&d, &live);
        assert_eq!(p.sysctl_after, vec![SysctlWrite { selector: "all".into(), value: "1".into() }]);
        assert!(p.ops.is_empty(), "the record is unchanged, so no batch: {:?}", p.ops);
        assert!(p.changes[0].reason.to_string().starts_with("changed by someone"), "{}", p.text());
    }

    #[test]
    fn remove_restores_before_deleting_the_guard() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        let empty = Desired {
            tables: vec![],
            route_localnet: vec![],
            endpoint_route: None,
            container_interfaces: Default::default(),
            audit: None,
        };
        let p = plan(&empty, &live);
        assert_eq!(p.sysctl_before, vec![SysctlWrite { selector: "all".into(), value: "0".into() }]);
        assert!(p.sysctl_after.is_empty());
        assert_eq!(p.ops.len(), 2);
        assert!(p.ops.iter().all(|o| matches!(o, Op::DelTable { .. })));
    }

    #[test]
    fn original_value_one_is_left_in_place_by_remove() {
        let d = compile(&default_config());
        let mut live = fresh_host();
        live.route_localnet.insert("all".into(), Some("1".into()));
        let p = plan(&d, &live);
        assert!(p.sysctl_after.is_empty());
        assert!(p.notes[0].to_string().contains("no earlier value is recorded"), "{:?}", p.notes);
        let rec1 = p.ops.iter().find_map(|o| match o {
            Op::AddTable { family: Family::Inet, record, .. } => Some(record.clone()),
            _ => None,
        });
        assert_eq!(rec1, Some(rec(&[("all", "1")])));
        let after = converged(&d, &rec(&[("all", "1")]));
        let p = plan(
            &Desired {
                tables: vec![],
                route_localnet: vec![],
                endpoint_route: None,
                container_interfaces: Default::default(),
                audit: None,
            },
            &after,
        );
        assert!(p.sysctl_before.is_empty());
    }

    #[test]
    fn switching_route_localnet_to_an_interface_list_restores_all_and_records_the_new_key() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.route_localnet.insert("docker0".into(), Some("0".into()));
        let d2 = compile(&parse("t", "[route_localnet]\nenable = [\"docker0\"]\n").unwrap());
        let p = plan(&d2, &live);
        assert_eq!(p.sysctl_before, vec![SysctlWrite { selector: "all".into(), value: "0".into() }]);
        assert_eq!(p.sysctl_after, vec![SysctlWrite { selector: "docker0".into(), value: "1".into() }]);
        assert!(matches!(p.ops[0], Op::DelTable { family: Family::Inet, .. }), "record change recreates the table");
        assert!(p.ops.iter().any(|o| matches!(o, Op::AddTable { record, .. } if *record == rec(&[("docker0", "0")]))));
    }

    #[test]
    fn saved_record_survives_a_flushed_rule_set() {
        let d = compile(&default_config());
        // Our tables are gone (nft flush ruleset); route_localnet is still the 1 we set.
        let mut live = fresh_host();
        live.route_localnet.insert("all".into(), Some("1".into()));
        live.saved_record = Some(rec(&[("all", "0")]));
        let p = plan(&d, &live);
        assert_eq!(p.record, rec(&[("all", "0")]));
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].to_string().contains("no localhost guard is live"), "{:?}", p.notes);
        assert!(p.ops.iter().any(
            |o| matches!(o, Op::AddTable { family: Family::Inet, record, .. } if *record == rec(&[("all", "0")]))
        ));
        let after = converged(&d, &rec(&[("all", "0")]));
        assert_eq!(plan_removal(&after).sysctl_before, vec![SysctlWrite { selector: "all".into(), value: "0".into() }]);
    }

    #[test]
    fn endpoint_route_on_ipv6_only_hosts() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        assert!(plan(&d, &live).is_empty(), "dual-stack host: no route wanted");
        live.ipv4_default_route = false;
        live.lo_up = false;
        let p = plan(&d, &live);
        assert!(p.is_empty() && p.notes[0].to_string().contains("lo is down"), "{}", p.text());
        live.lo_up = true;
        let p = plan(&d, &live);
        let spec = d.endpoint_route.unwrap().spec;
        assert_eq!(p.route_ops, vec![RouteOp::Add { spec }]);
        assert!(p.ops.is_empty(), "no batch for a route: {:?}", p.ops);
        assert!(p.changes[0].object().contains("route 169.254.170.2/32 dev lo src 127.0.0.1"), "{}", p.text());
        // Ours in place: nothing to do while there is no IPv4 default route.
        live.endpoint_routes.push(LiveRoute {
            dest: spec.dest,
            prefix_len: 32,
            kind: Some(RouteKind::DevLo),
            protocol: ROUTE_PROTOCOL,
            metric: None,
        });
        assert!(plan(&d, &live).is_empty(), "{}", plan(&d, &live).text());
        // An IPv4 default route appears: auto deletes ours, saying why.
        live.ipv4_default_route = true;
        let p = plan(&d, &live);
        assert_eq!(p.route_ops, vec![RouteOp::DeleteInTheWay { route: live.endpoint_routes[0].clone() }]);
        assert_eq!(p.changes[0].reason, Reason::Ipv4DefaultRouteExists, "{}", p.text());
        // A route someone else made to the endpoint stays, default route or not.
        let mut theirs = live.clone();
        theirs.endpoint_routes[0].protocol = 4;
        assert!(plan(&d, &theirs).is_empty(), "{}", plan(&d, &theirs).text());
        // "always" keeps ours with a default route.
        let always = compile(&parse("t", "[credentials]\nendpoint_route_via_lo = \"always\"\n").unwrap());
        assert!(plan(&always, &converged(&always, &rec(&[("all", "0")]))).route_ops.is_empty());
        // remove deletes it.
        assert_eq!(
            plan_removal(&live).route_ops,
            vec![RouteOp::DeleteInTheWay { route: live.endpoint_routes[0].clone() }]
        );
        // A route someone else made is never deleted.
        live.endpoint_routes[0].protocol = 4;
        assert!(plan_removal(&live).route_ops.is_empty());
    }

    #[test]
    fn missing_interface_is_a_note_not_a_change() {
        let d = compile(&parse("t", "[route_localnet]\nenable = [\"docker0\"]\n").unwrap());
        let mut live = converged(&d, &Record::new());
        live.route_localnet.insert("docker0".into(), None);
        let p = plan(&d, &live);
        assert!(p.is_empty(), "{}", p.text());
        assert_eq!(p.notes.len(), 1);
    }

    #[test]
    fn dormant_table_is_drift() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.tables[0].flags = 1;
        let p = plan(&d, &live);
        assert!(matches!(p.ops[0], Op::DelTable { family: Family::Ip, .. }), "{:?}", p.ops);
        assert!(p.changes[0].details[0].contains("dormant"), "{}", p.text());
    }

    #[test]
    fn chain_policy_is_updated_in_place() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.tables[1].chains[0].base.as_mut().unwrap().policy_accept = false;
        let p = plan(&d, &live);
        assert_eq!(p.ops.len(), 1, "{:?}", p.ops);
        assert!(
            matches!(&p.ops[0], Op::AddChain { name, base: Some(b), .. } if name == chain::INPUT && b.policy_accept)
        );
        assert!(p.changes[0].reason.to_string().contains("policy drop -> accept"), "{}", p.text());
    }

    #[test]
    fn policy_drift_is_listed_also_when_the_table_is_recreated() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.tables[1].chains[1].base.as_mut().unwrap().policy_accept = false;
        live.tables[1].foreign_objects.push("set foo".into());
        let p = plan(&d, &live);
        assert!(matches!(p.ops[0], Op::DelTable { family: Family::Inet, .. }), "{:?}", p.ops);
        assert!(
            p.changes.iter().any(|c| c.subject
                == Subject::Chain { family: Family::Inet, table: TABLE_NAME.into(), chain: chain::FORWARD.into() }
                && c.reason.to_string().contains("policy drop -> accept")),
            "{}",
            p.text()
        );
    }

    #[test]
    fn a_chain_dropped_from_the_configuration_is_deleted_in_place_and_listed() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        let no_imds = compile(&parse("t", "[imds_block]\nenabled = false\n").unwrap());
        let p = plan(&no_imds, &live);
        assert_eq!(
            p.ops,
            vec![Op::DelChain { family: Family::Inet, table: TABLE_NAME.into(), name: chain::FORWARD.into() }],
            "{}",
            p.text()
        );
        assert_eq!(p.counts(), (0, 0, 5), "{}", p.text());
        let ids: Vec<_> = p
            .changes
            .iter()
            .filter_map(|c| match &c.subject {
                Subject::Rule { id, .. } => id.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(
            ids,
            [rule_id::IMDS_AUDIT_IPV4, rule_id::IMDS_BLOCK_IPV4, rule_id::IMDS_AUDIT_IPV6, rule_id::IMDS_BLOCK_IPV6]
        );
        // A chain that is not one of ours still recreates the table (it may be jumped to).
        let mut foreign = live.clone();
        foreign.tables[1].chains.push(LiveChain { name: "extra".into(), base: None, rules: vec![] });
        let p = plan(&d, &foreign);
        assert!(matches!(p.ops[0], Op::DelTable { family: Family::Inet, .. }), "{:?}", p.ops);
    }

    /// A copy of one of our rules in another chain of ours is removed there, and the reason
    /// names the chain it belongs in.
    #[test]
    fn a_rule_of_ours_in_the_wrong_chain_says_where_it_belongs() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        let inet = live.tables.iter_mut().find(|t| t.family == Family::Inet).unwrap();
        let guard =
            inet.chains[0].rules.iter().find(|r| r.comment.as_deref() == Some(rule_id::LOCALHOST_GUARD)).unwrap();
        let mut copy = guard.clone();
        copy.handle = 999;
        let forward = inet.chains.iter_mut().find(|c| c.name == chain::FORWARD).unwrap();
        forward.rules.push(copy);
        let p = plan(&d, &live);
        assert_eq!(p.counts(), (0, 0, 1), "{}", p.text());
        assert_eq!(
            p.changes[0].reason.to_string(),
            "in the wrong chain (ecs-hostnet puts it in chain input)",
            "{}",
            p.text()
        );
        assert!(matches!(p.ops[..], [Op::DelRule { handle: 999, .. }]), "{:?}", p.ops);
    }

    #[test]
    fn dropping_a_rule_from_the_configuration_says_so() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        let no_v6 = compile(&parse("t", "[imds_block]\nblock_ipv6 = false\n").unwrap());
        let p = plan(&no_v6, &live);
        // The IPv6 drop and its audit rule.
        assert_eq!(p.counts(), (0, 0, 2), "{}", p.text());
        assert!(p.changes.iter().all(|c| c.reason.to_string() == "no longer in the configuration"), "{}", p.text());
        let no_guard = compile(
            &parse(
                "t",
                "[localhost_guard]\nenabled = false\ni_accept_that_route_localnet_exposes_localhost_services = true\n",
            )
            .unwrap(),
        );
        let p = plan(&no_guard, &live);
        assert!(p.notes.iter().any(|n| n.to_string().contains("CVE-2020-8558")), "{}", p.text());
    }

    #[test]
    fn redefined_chain_recreates_the_table_and_lists_everything() {
        let d = compile(&default_config());
        let mut live = converged(&d, &rec(&[("all", "0")]));
        live.tables[1].chains[0].base.as_mut().unwrap().priority = 10;
        live.tables[1].chains.remove(1); // forward deleted by someone
        let p = plan(&d, &live);
        assert!(matches!(p.ops[0], Op::DelTable { family: Family::Inet, .. }));
        assert!(p.changes[0].details[0].contains("priority 10"), "{}", p.text());
        assert_eq!(p.ops.iter().filter(|o| matches!(o, Op::AddRule { .. })).count(), 7);
        // The forward chain and its 4 rules are listed, not only the table.
        assert_eq!(p.counts(), (5, 1, 0), "{}", p.text());
    }

    #[test]
    fn kept_rules_are_the_longest_ordered_run_even_with_duplicates() {
        let d = compile(&default_config());
        let live = converged(&d, &rec(&[("all", "0")]));
        // All 11 default rules as one list (their ids are unique).
        let desired: Vec<Rule> = d.tables.iter().flat_map(|t| t.chains.iter().flat_map(|c| c.rules.clone())).collect();
        let desired = &desired;
        let mut rules: Vec<LiveRule> =
            live.tables.iter().flat_map(|t| t.chains.iter().flat_map(|c| c.rules.clone())).collect();
        // live order: 5 0 1 1(dup) 2 3 4 6 7 8 9 10 -> keep 0 1 2 3 4 6 7 8 9 10
        let mut dup = rules[1].clone();
        dup.handle = 99;
        rules.insert(2, dup);
        let last = rules.remove(6);
        rules.insert(0, last);
        let kept = kept_pairs(desired, &rules);
        assert_eq!(kept.iter().map(|&(i, _)| i).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 6, 7, 8, 9, 10]);
        assert!(kept.windows(2).all(|w| w[0].1 < w[1].1));
    }
}
