//! The desired state as a script for `nft -f`.

use crate::desired::Desired;
use crate::model::nft_text::{base_chain_text, rule_text};
use crate::model::ruleset::{Chain, Family, Table};
use std::fmt::Write as _;
fn chain_block(out: &mut String, family: Family, chain: &Chain) {
    let _ = writeln!(out, "\tchain {} {{", chain.name);
    if let Some(b) = &chain.base {
        let _ = writeln!(out, "\t\t{}", base_chain_text(b));
    }
    for r in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule_text(family, &r.exprs, Some(&r.id)));
    }
    let _ = writeln!(out, "\t}}");
}

/// One table as an nft block.
pub fn table_block(t: &Table) -> String {
    let mut out = format!("table {} {} {{\n\tcomment \"{}\"\n", t.family.name(), t.name, t.comment);
    for c in &t.chains {
        chain_block(&mut out, t.family, c);
    }
    out.push_str("}\n");
    out
}

/// The desired state as a script for `nft -f`: each table is created empty if missing,
/// deleted, and defined anew, so loading the script twice leaves one copy. The
/// route_localnet sysctls are not nft objects and are listed as comments.
pub fn script(d: &Desired, source: &str) -> String {
    let mut out = String::from("#!/usr/sbin/nft -f\n");
    let _ = writeln!(out, "# ecs-hostnet rule set, compiled from {source}.");
    let _ = writeln!(out, "# `ecs-hostnet apply` loads the same rule set in one netlink transaction.");
    for sel in &d.route_localnet {
        let _ = writeln!(
            out,
            "# not in this script: sysctl net.ipv4.conf.{sel}.route_localnet = 1 (apply sets it once the guard is live)"
        );
    }
    for t in &d.tables {
        let _ = writeln!(out, "\ntable {} {}\ndelete table {} {}", t.family.name(), t.name, t.family.name(), t.name);
        out.push_str(&table_block(t));
    }
    out
}
