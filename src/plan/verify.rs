//! `verify`'s judgement, pure: which probes a configuration calls for ([`probes`]), and
//! for one probe, from the path its SYN took through nf_tables (the trace events, each
//! named by its rule) and how its `connect()` ended, whether the expectation holds and
//! the sentence that says why ([`judge`]).

use crate::config::Config;
use crate::model::names::{TABLE_NAME, rule_id};
use crate::model::trace::{TraceType, Verdict, family_name};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};

/// The probes `verify` sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// A container to the credentials endpoint: our DNAT, then the agent.
    ContainerCredentials,
    /// A container to IMDS over IPv4: dropped.
    ContainerImdsIpv4,
    /// A container to IMDS over IPv6: dropped.
    ContainerImdsIpv6,
    /// The host itself (host-network-mode tasks) to the credentials endpoint: our REDIRECT.
    HostCredentials,
}

impl ProbeKind {
    /// A short label (`container -> credentials`).
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::ContainerCredentials => "container -> credentials endpoint",
            ProbeKind::ContainerImdsIpv4 => "container -> IMDS (IPv4)",
            ProbeKind::ContainerImdsIpv6 => "container -> IMDS (IPv6)",
            ProbeKind::HostCredentials => "host -> credentials endpoint",
        }
    }

    /// Whether it comes from the probe namespace (a container) rather than the host.
    pub fn from_container(self) -> bool {
        self != ProbeKind::HostCredentials
    }
}

/// The probes a configuration calls for, each with its destination, and a note for each
/// one it leaves out. `imds_excluded`: the probe's interface is one the IMDS block
/// leaves alone (`imds_block.exclude_interfaces`).
pub fn probes(c: &Config, imds_excluded: bool) -> (Vec<(ProbeKind, SocketAddr)>, Vec<String>) {
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    let endpoint = SocketAddr::from((c.credentials.endpoint_address.v.0, c.credentials.endpoint_port.v.0));
    if c.credentials.enabled.v {
        out.push((ProbeKind::ContainerCredentials, endpoint));
        if c.credentials.redirect_host_traffic.v {
            out.push((ProbeKind::HostCredentials, endpoint));
        } else {
            skipped.push("host -> credentials endpoint: skipped (credentials.redirect_host_traffic = false)".into());
        }
    } else {
        skipped.push("credentials probes: skipped (credentials.enabled = false)".into());
    }
    if !c.imds_block.enabled.v {
        skipped.push("IMDS probes: skipped (imds_block.enabled = false)".into());
    } else if imds_excluded {
        skipped.push("IMDS probes: skipped (every usable container interface pattern is excluded)".into());
    } else {
        out.push((ProbeKind::ContainerImdsIpv4, SocketAddr::from((c.imds_block.ipv4_address.v.0, 80))));
        if c.imds_block.block_ipv6.v {
            out.push((ProbeKind::ContainerImdsIpv6, SocketAddr::from((c.imds_block.ipv6_address.v.0, 80))));
        } else {
            skipped.push("container -> IMDS (IPv6): skipped (imds_block.block_ipv6 = false)".into());
        }
    }
    (out, skipped)
}

/// How the probe's `connect()` ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "error")]
pub enum Connect {
    /// A SYN-ACK: something listens there.
    Answered,
    /// A RST: the path is right, nothing listens.
    Refused,
    /// No answer within the timeout.
    TimedOut,
    /// Another error (no route, an ICMP error): its text.
    Failed(String),
}

/// One table/chain/rule that saw the probe's packet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The table's family keyword.
    pub family: &'static str,
    /// The table.
    pub table: String,
    /// The chain.
    pub chain: String,
    /// `rule`, `return` or `policy`.
    pub kind: TraceType,
    /// The rule's handle (rule events).
    pub handle: Option<u64>,
    /// The rule's id when it is one of ours (its comment).
    pub rule_id: Option<String>,
    /// The rule in nft syntax, when it could be read.
    pub rule: Option<String>,
    /// The verdict in nft syntax.
    pub verdict: Option<String>,
    #[serde(skip)]
    verdict_kind: Option<Verdict>,
}

impl Step {
    /// A step from a trace event's fields and the rule it names (id, text).
    pub fn new(
        family: u8,
        table: &str,
        chain: &str,
        kind: TraceType,
        handle: Option<u64>,
        verdict: Option<Verdict>,
        rule: Option<(Option<String>, String)>,
    ) -> Step {
        let (rule_id, rule) = match rule {
            Some((id, text)) => (id, Some(text)),
            None => (None, None),
        };
        Step {
            family: family_name(family),
            table: table.into(),
            chain: chain.into(),
            kind,
            handle,
            rule_id,
            rule,
            verdict: verdict.as_ref().map(Verdict::text),
            verdict_kind: verdict,
        }
    }

    fn ours(&self) -> bool {
        self.table == TABLE_NAME
    }

    /// `table inet cis chain input policy drop`, `table inet ecs-hostnet chain forward
    /// rule imds-block-ipv4: drop`, `table ip nat chain PREROUTING rule handle 7 (dnat to
    /// 10.0.0.9:80): accept`.
    pub fn text(&self) -> String {
        let place = format!("table {} {} chain {}", self.family, self.table, self.chain);
        let verdict = self.verdict.clone().unwrap_or_else(|| "?".into());
        match (self.kind, &self.rule_id, self.handle) {
            (TraceType::Policy, _, _) => format!("{place} policy {verdict}"),
            (TraceType::Return, _, _) => format!("{place} return"),
            (_, Some(id), _) => format!("{place} rule {id}: {verdict}"),
            (_, None, Some(h)) => match &self.rule {
                Some(r) => format!("{place} rule handle {h} ({r}): {verdict}"),
                None => format!("{place} rule handle {h}: {verdict}"),
            },
            _ => format!("{place}: {verdict}"),
        }
    }

    fn is_nat(&self) -> bool {
        self.rule.as_deref().is_some_and(|r| r.contains("dnat") || r.contains("redirect"))
    }
}

/// The judgement of one probe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Judgement {
    /// Whether the expectation holds.
    pub pass: bool,
    /// The outcome in one sentence.
    pub outcome: String,
}

/// Judges one probe from its path and how its `connect()` ended. `our_ids`: the rule
/// ids our tables hold now (to tell "our rule did not match" from "our rule is missing").
pub fn judge(kind: ProbeKind, path: &[Step], connect: &Connect, our_ids: &[String]) -> Judgement {
    let drop = path.iter().find(|s| s.verdict_kind == Some(Verdict::Drop));
    let pass = |outcome: String| Judgement { pass: true, outcome };
    let fail = |outcome: String| Judgement { pass: false, outcome };
    match kind {
        ProbeKind::ContainerCredentials | ProbeKind::HostCredentials => {
            let ours = |s: &&Step| {
                s.ours()
                    && s.rule_id.as_deref().is_some_and(|id| {
                        id.starts_with(rule_id::CREDENTIALS_DNAT_PREFIX) || id == rule_id::CREDENTIALS_REDIRECT
                    })
            };
            let our_nat = path.iter().find(ours);
            let foreign_nat = path.iter().find(|s| !s.ours() && s.is_nat() && s.verdict_kind == Some(Verdict::Accept));
            if let Some(d) = drop {
                return fail(format!("dropped by {}", d.text()));
            }
            if let (Some(f), None) = (foreign_nat, our_nat) {
                return fail(format!("DNATed elsewhere by {}", f.text()));
            }
            let Some(n) = our_nat else {
                let id = if kind == ProbeKind::HostCredentials { "credentials-redirect" } else { "credentials-dnat" };
                return fail(format!("not DNATed: our {id} rule did not see the packet ({})", connect_text(connect)));
            };
            let via = n.rule_id.clone().unwrap_or_default();
            match connect {
                Connect::Answered => pass(format!("the agent answered (via our {via})")),
                Connect::Refused => pass(format!("the agent's port is closed but the path is right (via our {via})")),
                other => fail(format!(
                    "DNATed by our {via} but {}; no nf_tables rule dropped it (routing, route_localnet, or iptables-legacy rules)",
                    connect_text(other)
                )),
            }
        }
        ProbeKind::ContainerImdsIpv4 | ProbeKind::ContainerImdsIpv6 => {
            let id =
                if kind == ProbeKind::ContainerImdsIpv4 { rule_id::IMDS_BLOCK_IPV4 } else { rule_id::IMDS_BLOCK_IPV6 };
            match drop {
                Some(d) if d.ours() && d.rule_id.as_deref() == Some(id) => pass(format!("blocked by our {id}")),
                Some(d) => pass(format!("blocked, by {} (our {id} was not reached)", d.text())),
                None if matches!(connect, Connect::Answered | Connect::Refused) => {
                    let why = if our_ids.iter().any(|i| i == id) {
                        format!("our {id} rule did not match")
                    } else {
                        format!("our {id} rule is missing")
                    };
                    fail(format!("IMDS reachable: no drop ({why})"))
                }
                None if matches!(connect, Connect::Failed(_)) => pass(format!(
                    "not routed by the host ({}): IMDS unreachable, our {id} not exercised",
                    connect_text(connect)
                )),
                None => fail(format!(
                    "IMDS not blocked by any nf_tables rule ({}); our {id} did not drop it",
                    connect_text(connect)
                )),
            }
        }
    }
}

/// One probe's result.
#[derive(Debug, serde::Serialize)]
pub struct ProbeReport {
    /// What it probes.
    pub probe: ProbeKind,
    /// Where it came from.
    pub source: String,
    /// Where it went.
    pub destination: SocketAddr,
    /// Each table/chain/rule that saw the SYN, in order.
    pub path: Vec<Step>,
    /// How `connect()` ended.
    pub connect: Connect,
    /// Pass or fail, and why.
    #[serde(flatten)]
    pub judgement: Judgement,
}

/// What a verify run did and found.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    /// The probe's interface on the host (named like a container interface).
    pub interface: String,
    /// The container pattern it matches.
    pub pattern: String,
    /// The probe namespace's addresses.
    pub probe_addresses: Vec<IpAddr>,
    /// The trace table.
    pub trace_table: String,
    /// The probes.
    pub probes: Vec<ProbeReport>,
    /// Probes the configuration leaves out, and why.
    pub skipped: Vec<String>,
    /// Trace tables of killed runs that were deleted first.
    pub cleaned: Vec<String>,
    /// Wall time of the whole run, milliseconds.
    pub elapsed_ms: u64,
}

impl Report {
    /// Whether every probe passed.
    pub fn passed(&self) -> bool {
        self.probes.iter().all(|p| p.judgement.pass)
    }
}

fn connect_text(c: &Connect) -> String {
    match c {
        Connect::Answered => "answered".into(),
        Connect::Refused => "refused (RST)".into(),
        Connect::TimedOut => "no answer".into(),
        Connect::Failed(e) => e.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(table: &str, chain: &str, kind: TraceType, v: Verdict, id: Option<&str>, text: &str) -> Step {
        let fam = if chain == "prerouting" || chain == "output" || chain == "PREROUTING" { 2 } else { 1 };
        Step::new(fam, table, chain, kind, Some(3), Some(v), Some((id.map(String::from), text.into())))
    }

    fn our_dnat() -> Step {
        step(
            TABLE_NAME,
            "prerouting",
            TraceType::Rule,
            Verdict::Accept,
            Some("credentials-dnat docker+"),
            "dnat to 127.0.0.1:51679",
        )
    }

    #[test]
    fn credentials_pass_when_our_dnat_leads_to_an_answer_or_a_refusal() {
        for (c, word) in [(Connect::Answered, "answered"), (Connect::Refused, "closed")] {
            let j = judge(ProbeKind::ContainerCredentials, &[our_dnat()], &c, &[]);
            assert!(j.pass && j.outcome.contains(word) && j.outcome.contains("credentials-dnat docker+"), "{j:?}");
        }
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat()], &Connect::TimedOut, &[]);
        assert!(!j.pass, "{j:?}");
    }

    #[test]
    fn a_foreign_drop_or_dnat_fails_naming_table_and_chain() {
        let cis = Step::new(1, "cis", "input", TraceType::Policy, None, Some(Verdict::Drop), None);
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat(), cis], &Connect::TimedOut, &[]);
        assert_eq!((j.pass, j.outcome.as_str()), (false, "dropped by table inet cis chain input policy drop"));
        let steal = step(
            "nat",
            "PREROUTING",
            TraceType::Rule,
            Verdict::Accept,
            None,
            "ip daddr 169.254.170.2 dnat to 10.0.0.9:80",
        );
        let j = judge(ProbeKind::ContainerCredentials, &[steal], &Connect::TimedOut, &[]);
        assert!(!j.pass);
        assert_eq!(
            j.outcome,
            "DNATed elsewhere by table ip nat chain PREROUTING rule handle 3 (ip daddr 169.254.170.2 dnat to 10.0.0.9:80): accept"
        );
    }

    #[test]
    fn imds_passes_only_when_dropped_and_names_a_missing_rule() {
        let ours = step(TABLE_NAME, "forward", TraceType::Rule, Verdict::Drop, Some("imds-block-ipv4"), "drop");
        assert!(judge(ProbeKind::ContainerImdsIpv4, &[ours], &Connect::TimedOut, &[]).pass);
        let policy = Step::new(1, TABLE_NAME, "forward", TraceType::Policy, None, Some(Verdict::Accept), None);
        let j = judge(ProbeKind::ContainerImdsIpv4, std::slice::from_ref(&policy), &Connect::Answered, &[]);
        assert_eq!(
            (j.pass, j.outcome.as_str()),
            (false, "IMDS reachable: no drop (our imds-block-ipv4 rule is missing)")
        );
        let j = judge(ProbeKind::ContainerImdsIpv6, &[policy], &Connect::Refused, &["imds-block-ipv6".into()]);
        assert!(!j.pass && j.outcome.contains("did not match"), "{j:?}");
        let j = judge(ProbeKind::ContainerImdsIpv6, &[], &Connect::Failed("No route to host".into()), &[]);
        assert!(j.pass && j.outcome.contains("not routed"), "{j:?}");
    }

    #[test]
    fn probes_follow_the_configuration() {
        let mut c = crate::config::default_config();
        let (p, skipped) = probes(&c, false);
        assert_eq!(p.len(), 4);
        assert!(skipped.is_empty());
        c.imds_block.block_ipv6.v = false;
        c.credentials.redirect_host_traffic.v = false;
        let (p, skipped) = probes(&c, false);
        assert_eq!(
            p.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            [ProbeKind::ContainerCredentials, ProbeKind::ContainerImdsIpv4]
        );
        assert_eq!(skipped.len(), 2);
        assert_eq!(probes(&c, true).0.len(), 1, "an excluded interface: no IMDS probe");
    }
}
