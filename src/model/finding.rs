//! What else sits on the credentials path: other programs' base chains on the hooks our
//! traffic crosses ([`ForeignChain`], as read from the kernel), and what ecs-hostnet
//! concludes from them ([`Finding`]: a stable code, a severity, the table, chain and rule
//! named, the message and the fix an operator can paste).
//!
//! JSON form of a finding (in `ecs-hostnet.plan/v1`, see `docs/json.md`):
//!
//! ```json
//! {"code": "input-drops-credentials", "severity": "blocking", "family": "inet",
//!  "table": "filter", "chain": "input", "handle": null, "rule": null,
//!  "message": "...", "fix": "nft insert rule inet filter input ..."}
//! ```

use crate::model::live::LiveRule;
use crate::model::ruleset::{BaseChain, Family};
use serde::Serialize;

/// A base chain of someone else's table on a hook the credentials traffic crosses (nat
/// prerouting/output, filter input/output; families `ip` and `inet`), with its rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForeignChain {
    /// The table's family.
    pub family: Family,
    /// The table's name (`filter`, `nat`, `firewalld`, ...).
    pub table: String,
    /// The chain's name.
    pub name: String,
    /// Its hook, type, priority and policy.
    pub base: BaseChain,
    /// Its rules in evaluation order (anything not modelled is an `Expr::Other`; a rule
    /// whose lookups name sets is read without the sets' elements).
    pub rules: Vec<LiveRule>,
}

/// Everything read about the credentials path beside our own tables.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PathState {
    /// Foreign base chains on the path, in dump order.
    pub chains: Vec<ForeignChain>,
    /// The iptables-legacy (x_tables) tables of the namespace
    /// (`/proc/net/ip_tables_names`): `nat`, `filter`, ...; empty when none.
    pub legacy_tables: Vec<String>,
}

/// How much a finding matters. JSON: `"blocking"`, `"warning"`, `"info"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The host does not do its job (containers cannot get credentials, or get someone
    /// else's answer): `check` exits 2 even when our tables are converged.
    Blocking,
    /// Something that may break the credentials path, or that ecs-hostnet cannot see.
    Warning,
    /// Known to be there and harmless; said so it is not a surprise.
    Info,
}

impl Severity {
    /// `blocking`, `warning`, `info`.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Blocking => "blocking",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// The stable code of a finding. JSON: the kebab-case names below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingCode {
    /// `input-drops-credentials`: a foreign filter input chain drops (or may drop) the
    /// DNATed credentials traffic of containers.
    InputDropsCredentials,
    /// `output-drops-credentials`: a foreign filter output chain drops (or may drop) the
    /// REDIRECTed traffic of host-network-mode tasks.
    OutputDropsCredentials,
    /// `prerouting-drops-credentials`: a foreign filter prerouting chain (e.g. an anti-IMDS
    /// `ip daddr 169.254.0.0/16 drop`, or iptables' raw/mangle PREROUTING) drops (or may
    /// drop) containers' traffic to the credentials endpoint before or after our DNAT.
    PreroutingDropsCredentials,
    /// `nat-steals-endpoint`: a foreign nat chain that runs before ours DNATs or
    /// REDIRECTs (or may) the credentials endpoint elsewhere.
    NatStealsEndpoint,
    /// `ecs-init-rules`: the ECS agent's own iptables rules (ecs-init), recognised by shape.
    EcsInitRules,
    /// `iptables-legacy-in-use`: x_tables (iptables-legacy) tables exist; their rules cannot
    /// be read by ecs-hostnet.
    IptablesLegacyInUse,
}

impl FindingCode {
    /// The code as printed and in JSON (`input-drops-credentials`, ...).
    pub fn name(self) -> &'static str {
        match self {
            FindingCode::InputDropsCredentials => "input-drops-credentials",
            FindingCode::OutputDropsCredentials => "output-drops-credentials",
            FindingCode::PreroutingDropsCredentials => "prerouting-drops-credentials",
            FindingCode::NatStealsEndpoint => "nat-steals-endpoint",
            FindingCode::EcsInitRules => "ecs-init-rules",
            FindingCode::IptablesLegacyInUse => "iptables-legacy-in-use",
        }
    }
}

/// One thing found on the credentials path.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code; scripts match on it.
    pub code: FindingCode,
    /// How much it matters.
    pub severity: Severity,
    /// The family of the table named; `null` for a finding about no nf_tables table
    /// (iptables-legacy).
    pub family: Option<Family>,
    /// The table named (`filter`), or for iptables-legacy the x_tables names (`nat filter`).
    pub table: String,
    /// The chain named; empty for iptables-legacy.
    pub chain: String,
    /// The kernel handle of the rule named; `None` when the finding is about the chain
    /// (its policy) or a whole table.
    pub handle: Option<u64>,
    /// The rule named, in nft syntax (without its comment); `None` as for `handle`.
    pub rule: Option<String>,
    /// What it is and what it does to the credentials traffic, one sentence or two.
    pub message: String,
    /// What an operator can do, as a command to paste where there is one; `None` when
    /// there is nothing to do.
    pub fix: Option<String>,
}

impl Finding {
    /// Whether the host does not do its job while this holds.
    pub fn is_blocking(&self) -> bool {
        self.severity == Severity::Blocking
    }
}
