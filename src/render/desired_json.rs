//! The desired state as JSON (`render --format json`, schema `ecs-hostnet.render/v1`):
//! every table, chain and rule (the rule in nft syntax) and the sysctls set to 1.
//!
//! Imports [`crate::desired`] and [`crate::model`] only, like the rest of [`crate::render`].
//! Pure: no I/O.

use crate::desired::Desired;
use crate::model::names::sysctl_name;
use crate::model::nft_text::rule_text;
use crate::model::ruleset::{Chain, Family, Table};
use serde_json::{Value, json};

/// The JSON schema name of [`json()`]'s output.
pub const RENDER_SCHEMA: &str = "ecs-hostnet.render/v1";

/// The desired state compiled from the configuration named `configuration`, as an
/// `ecs-hostnet.render/v1` JSON document (pretty printed, one trailing newline).
pub fn json(d: &Desired, configuration: &str) -> String {
    let tables: Vec<Value> = d.tables.iter().map(table_json).collect();
    let sysctls: Vec<Value> = d.route_localnet.iter().map(|s| json!({"name": sysctl_name(s), "value": "1"})).collect();
    let doc = json!({
        "schema": RENDER_SCHEMA,
        "configuration": configuration,
        "tables": tables,
        "sysctls": sysctls,
    });
    let mut s = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    s.push('\n');
    s
}

fn table_json(t: &Table) -> Value {
    let chains: Vec<Value> = t.chains.iter().map(|c| chain_json(t.family, c)).collect();
    json!({"family": t.family.name(), "name": t.name, "comment": t.comment, "chains": chains})
}

fn chain_json(family: Family, c: &Chain) -> Value {
    let rules: Vec<Value> =
        c.rules.iter().map(|r| json!({"id": r.id, "nft": rule_text(family, &r.exprs, None)})).collect();
    json!({
        "name": c.name,
        "type": c.base.map(|b| b.chain_type.name()),
        "hook": c.base.map(|b| b.hook.name()),
        "priority": c.base.map(|b| b.priority),
        "policy": c.base.map(|b| if b.policy_accept { "accept" } else { "drop" }),
        "rules": rules,
    })
}
