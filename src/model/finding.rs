//! What else sits on the credentials path: other programs' base chains on the hooks our
//! traffic crosses ([`ForeignChain`], as read from the kernel), iptables-nft's forward
//! chains ([`ForwardChain`]), what the AWS commands leave in files ([`LeftoverFiles`]),
//! and what ecs-hostnet concludes from them ([`Finding`]: a stable code, a severity, the
//! table, chain and rule, or the file and line, named, the message and the fix an operator
//! can paste).
//!
//! JSON form of a finding (in `ecs-hostnet.plan/v1`, see `docs/json.md`):
//!
//! ```json
//! {"code": "input-drops-credentials", "severity": "blocking", "family": "inet",
//!  "table": "filter", "chain": "input", "handle": null, "rule": null,
//!  "file": null, "line": null,
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
    /// iptables-nft's `ip filter` chains `FORWARD` and `DOCKER-USER`, those that exist.
    pub forward: Vec<ForwardChain>,
    /// The files the AWS commands persist their settings in, as read under `--root`.
    pub files: LeftoverFiles,
}

/// A chain of iptables-nft's `ip filter` table on the forward path of containers' traffic:
/// the base chain `FORWARD`, or `DOCKER-USER`, the regular chain Docker (20.10-28, iptables
/// backend) jumps to from the top of `FORWARD` and leaves to its users (AWS's page puts
/// its IMDS block there: `iptables --insert DOCKER-USER 1 --in-interface docker+
/// --destination 169.254.169.254/32 --jump DROP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardChain {
    /// `FORWARD` or `DOCKER-USER`.
    pub name: String,
    /// Its rules in evaluation order, read as [`ForeignChain::rules`] are (a jump is an
    /// `Expr::Other` named `immediate` whose text ends `jump -> CHAIN ]`).
    pub rules: Vec<LiveRule>,
}

/// One text file read under `--root`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextFile {
    /// Its absolute path inside the root (`/etc/sysctl.d/99-ecs.conf`).
    pub path: String,
    /// Its content (invalid UTF-8 replaced).
    pub text: String,
}

/// What the AWS documentation's commands persist, as read from the files of a host (or an
/// image under `--root`); every list empty when nothing is there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeftoverFiles {
    /// The sysctl configuration files systemd-sysctl applies at boot (`sysctl.d(5)`): the
    /// `*.conf` of /etc/sysctl.d, /run/sysctl.d, /usr/local/lib/sysctl.d, /usr/lib/sysctl.d
    /// and /lib/sysctl.d, a name in an earlier folder hiding the same name in a later one,
    /// then /etc/sysctl.conf (procps' `sysctl --system` reads it last; Debian and Fedora
    /// link /etc/sysctl.d/99-sysctl.conf to it, and that link is not read twice).
    pub sysctl: Vec<TextFile>,
    /// The `iptables-save` files restored at boot: /etc/sysconfig/iptables and ip6tables
    /// (iptables-services: `iptables.service`, `ip6tables.service`), /etc/iptables/rules.v4
    /// and rules.v6 (iptables-persistent: `netfilter-persistent.service`).
    pub iptables_saves: Vec<TextFile>,
    /// Which of `iptables.service`, `ip6tables.service` and `netfilter-persistent.service`
    /// are enabled: a link to them in a `*.wants` folder of /etc/systemd/system.
    pub enabled_units: Vec<String>,
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
    /// `sysctl-file-route-localnet`: a sysctl configuration file turns route_localnet on at
    /// boot (`net.ipv4.conf.all.route_localnet = 1`, the AWS page's `sysctl -w` persisted).
    SysctlFileRouteLocalnet,
    /// `iptables-saved-rules`: an `iptables-save` file restored at boot holds the
    /// credentials DNAT or REDIRECT, or an IMDS block.
    IptablesSavedRules,
    /// `iptables-imds-block`: a live rule of iptables-nft's `ip filter` DOCKER-USER or
    /// FORWARD chain drops containers' traffic to IMDS.
    IptablesImdsBlock,
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
            FindingCode::SysctlFileRouteLocalnet => "sysctl-file-route-localnet",
            FindingCode::IptablesSavedRules => "iptables-saved-rules",
            FindingCode::IptablesImdsBlock => "iptables-imds-block",
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
    /// (iptables-legacy, a file).
    pub family: Option<Family>,
    /// The table named (`filter`), or for iptables-legacy the x_tables names (`nat filter`);
    /// empty for a finding about a file. In JSON an empty one is `null`, as `family` is.
    #[serde(serialize_with = "empty_as_null")]
    pub table: String,
    /// The chain named; empty for iptables-legacy and a file (`null` in JSON).
    #[serde(serialize_with = "empty_as_null")]
    pub chain: String,
    /// The kernel handle of the rule named; `None` when the finding is about the chain
    /// (its policy) or a whole table.
    pub handle: Option<u64>,
    /// The rule named, in nft syntax (without its comment); `None` as for `handle`.
    pub rule: Option<String>,
    /// The file named (absolute, inside `--root`); `None` for a finding about the kernel.
    pub file: Option<String>,
    /// The line of `file` named (1-based): the first of those the finding is about.
    pub line: Option<u32>,
    /// What it is and what it does to the credentials traffic, one sentence or two.
    pub message: String,
    /// What an operator can do, as a command to paste where there is one; `None` when
    /// there is nothing to do.
    pub fix: Option<String>,
}

/// A name that is absent (empty) as JSON `null`, so that `family`, `table` and `chain` say
/// "none" the same way (documented in docs/json.md).
fn empty_as_null<S: serde::Serializer>(name: &str, s: S) -> Result<S::Ok, S::Error> {
    if name.is_empty() { s.serialize_none() } else { s.serialize_str(name) }
}

impl Finding {
    /// Whether the host does not do its job while this holds.
    pub fn is_blocking(&self) -> bool {
        self.severity == Severity::Blocking
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An absent family, table or chain is `null` in JSON, never `""`.
    #[test]
    fn absent_names_are_null_in_json() {
        let f = |family, table: &str, chain: &str| Finding {
            code: FindingCode::IptablesLegacyInUse,
            severity: Severity::Warning,
            family,
            table: table.into(),
            chain: chain.into(),
            handle: None,
            rule: None,
            file: None,
            line: None,
            message: "m".into(),
            fix: None,
        };
        let v = serde_json::to_value(f(None, "", "")).unwrap();
        assert_eq!(
            (&v["family"], &v["table"], &v["chain"]),
            (&serde_json::Value::Null, &serde_json::Value::Null, &serde_json::Value::Null)
        );
        let v = serde_json::to_value(f(None, "nat filter", "")).unwrap();
        assert_eq!((v["table"].as_str(), &v["chain"]), (Some("nat filter"), &serde_json::Value::Null));
        let v = serde_json::to_value(f(Some(Family::Inet), "filter", "input")).unwrap();
        assert_eq!(
            (v["family"].as_str(), v["table"].as_str(), v["chain"].as_str()),
            (Some("inet"), Some("filter"), Some("input"))
        );
    }
}
