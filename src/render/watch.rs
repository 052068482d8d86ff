//! The one-line summary of a repair for the journal (`ecs-hostnet watch`): what the
//! carried-out plan did, counted by action and kind, e.g. `added 1 table, 3 chains, 9
//! rules; set net.ipv4.conf.all.route_localnet`.
//!
//! Imports [`crate::plan`] only. Pure: no I/O.

use crate::plan::Plan;
use crate::plan::change::{Action, Subject};

/// `added 1 table, 3 chains, 9 rules; changed 1 rule; removed 2 rules; set
/// net.ipv4.conf.all.route_localnet` (the parts that apply, in that order); `nothing`
/// for an empty plan.
pub fn repair_summary(p: &Plan) -> String {
    let mut parts = Vec::new();
    for (action, verb) in [(Action::Add, "added"), (Action::Change, "changed"), (Action::Remove, "removed")] {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        let mut sysctls = Vec::new();
        for c in p.changes.iter().filter(|c| c.action == action) {
            let kind = match &c.subject {
                Subject::Table { .. } => "table",
                Subject::Chain { .. } => "chain",
                Subject::Rule { .. } => "rule",
                Subject::Route { .. } => "route",
                Subject::Sysctl { name } => {
                    sysctls.push(name.clone());
                    continue;
                }
                _ => "file",
            };
            match counts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => counts.push((kind, 1)),
            }
        }
        if !counts.is_empty() {
            let list: Vec<String> =
                counts.iter().map(|(k, n)| format!("{n} {k}{}", if *n == 1 { "" } else { "s" })).collect();
            parts.push(format!("{verb} {}", list.join(", ")));
        }
        if !sysctls.is_empty() {
            parts.push(format!("set {}", sysctls.join(", ")));
        }
    }
    if parts.is_empty() { "nothing".to_string() } else { parts.join("; ") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::live::LiveState;

    #[test]
    fn a_repair_of_a_flushed_host_counts_what_came_back() {
        let d = crate::desired::compile(&crate::config::parse("t.toml", "").unwrap());
        let mut live = LiveState::default();
        live.route_localnet.insert("all".into(), Some("1".into()));
        live.lo_up = true;
        live.ipv4_default_route = true;
        let p = crate::plan::plan(&d, &live);
        let s = repair_summary(&p);
        assert!(s.starts_with("added 2 tables, 4 chains, "), "{s}");
        assert!(s.contains(" rules"), "{s}");
        assert_eq!(repair_summary(&Plan::default()), "nothing");
    }
}
