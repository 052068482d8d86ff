//! `verify`'s judgement, pure: which probes a configuration calls for ([`probes`]), and
//! for one probe, from the path its SYN took through nf_tables (the trace events, each
//! named by its rule) and how its `connect()` ended, whether the expectation holds and
//! the sentence that says why ([`judge`]); and which trace events are a probe's SYN's
//! ([`attribute`]).

use crate::config::Config;
use crate::model::names::{TABLE_NAME, rule_id};
use crate::model::trace::{TCP_ACK, TCP_SYN, TraceEvent, TraceType, Verdict, family_name};
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

    /// Whether the rule rewrites the destination: nft's `dnat`/`redirect`, or the
    /// `DNAT`/`REDIRECT` x_tables target of an iptables-nft rule (`[ target name DNAT ...`).
    fn is_nat(&self) -> bool {
        self.rule.as_deref().map(str::to_ascii_lowercase).is_some_and(|r| r.contains("dnat") || r.contains("redirect"))
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

/// For each probe (its source address and port, `None` when `connect()` failed before
/// one was bound), the indices into `events` of its SYN's events, in order.
///
/// The kernel puts the packet's headers only in the first event of each chain that
/// traces it (net/netfilter/nf_tables_trace.c, `packet_dumped`); the later ones (the
/// rule that dropped it, the policy) carry only `NFTA_TRACE_ID`, an id derived from the
/// packet buffer that a later packet can reuse. So the events are read in the order
/// they came: an event with headers binds its id to the probe whose SYN it shows (a
/// TCP SYN without ACK from the probe's address and port), or to nothing; an event
/// without headers belongs to its id's current binding. A probe's handshake ACK (same
/// addresses and ports) binds to nothing: a probe's path is its SYN's.
pub fn attribute(events: &[TraceEvent], sources: &[Option<SocketAddr>]) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); sources.len()];
    let mut bound: std::collections::HashMap<u32, usize> = std::collections::HashMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(p) = e.packet {
            let syn = e.tcp_flags.is_some_and(|f| f & (TCP_SYN | TCP_ACK) == TCP_SYN);
            let of = sources
                .iter()
                .position(|s| s.is_some_and(|s| syn && p.proto == 6 && p.src == s.ip() && p.sport == s.port()));
            match of {
                Some(n) => bound.insert(e.id, n),
                None => bound.remove(&e.id),
            };
        }
        if let Some(n) = bound.get(&e.id) {
            out[*n].push(i);
        }
    }
    out
}

/// What verify read about one probe besides its path and how its `connect()` ended.
#[derive(Clone, Debug, Default)]
pub struct Evidence<'a> {
    /// The rule ids our tables hold now (to tell "our rule did not match" from "our
    /// rule is missing").
    pub our_ids: &'a [String],
    /// The agent's endpoint our credentials DNAT/REDIRECT sends to
    /// (`credentials.agent_address`:`agent_port`, 127.0.0.1:51679 by default).
    pub agent: Option<SocketAddr>,
    /// Where the probe's connection was DNATed/REDIRECTed, read from its conntrack
    /// entry (the reply tuple's source, when `IPS_DST_NAT` is set); `None` when not
    /// rewritten or no entry was found.
    pub nat_to: Option<SocketAddr>,
    /// Some nf_tables chain (the trace table's included) saw the SYN.
    pub traced: bool,
    /// A chain saw the SYN with an output interface (forward, postrouting): the host
    /// routed it on.
    pub routed_out: bool,
    /// iptables-legacy (x_tables) tables in use in the namespace
    /// (`/proc/net/ip_tables_names`, `ip6_tables_names`): tracing cannot see their rules.
    pub legacy_tables: &'a [String],
}

impl Evidence<'_> {
    /// `outcome`, followed, when iptables-legacy tables are in use, by the note that
    /// tracing cannot see them.
    fn unexplained(&self, outcome: String) -> String {
        if self.legacy_tables.is_empty() {
            return outcome;
        }
        format!(
            "{outcome}; iptables-legacy rules are in use ({}): nf_tables tracing cannot see them; check iptables-legacy-save",
            self.legacy_tables.join(", ")
        )
    }
}

/// Judges one probe from its path, how its `connect()` ended, and the rest of what
/// was read about it (`ev`).
///
/// Credentials probes are judged by outcome: they pass when the connection reached the
/// agent's endpoint (answered, or refused with the path right), through our rule or
/// another that sends to the same endpoint (ecs-init's own DNAT: nf_nat uses the first
/// NAT rule that binds and skips the later ones); a DNAT elsewhere fails naming its
/// rule. IMDS probes pass when a rule dropped the SYN or the host never routed it on;
/// they fail when IMDS answered or the host routed the SYN out undropped.
pub fn judge(kind: ProbeKind, path: &[Step], connect: &Connect, ev: &Evidence) -> Judgement {
    let drop = path.iter().find(|s| s.verdict_kind == Some(Verdict::Drop));
    let pass = |outcome: String| Judgement { pass: true, outcome };
    let fail = |outcome: String| Judgement { pass: false, outcome };
    match kind {
        ProbeKind::ContainerCredentials | ProbeKind::HostCredentials => {
            let id = if kind == ProbeKind::HostCredentials { "credentials-redirect" } else { "credentials-dnat" };
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
            let to_agent = ev.nat_to.is_some() && ev.nat_to == ev.agent;
            if let (Some(to), false) = (ev.nat_to, to_agent) {
                return fail(match foreign_nat {
                    Some(f) => format!("DNATed elsewhere by {} (conntrack: to {to})", f.text()),
                    None => ev.unexplained(format!("DNATed elsewhere, to {to} (conntrack), by no rule the trace saw")),
                });
            }
            // How it reached the agent's endpoint, appended to the outcome.
            let via = match (our_nat, foreign_nat) {
                (Some(n), _) => format!(" (via our {})", n.rule_id.clone().unwrap_or_default()),
                (None, Some(f)) if to_agent => format!(
                    ": DNATed to {}, the agent endpoint as with our {id}, by {}; our {id} was not needed (nf_nat uses the first NAT rule that binds)",
                    ev.nat_to.map(|a| a.to_string()).unwrap_or_default(),
                    f.text()
                ),
                (None, Some(f)) => return fail(format!("DNATed elsewhere by {}", f.text())),
                (None, None) if to_agent => ev.unexplained(format!(
                    ": DNATed to {}, the agent endpoint (conntrack), by no rule the trace saw",
                    ev.nat_to.map(|a| a.to_string()).unwrap_or_default()
                )),
                (None, None) => {
                    return fail(ev.unexplained(format!(
                        "not DNATed: our {id} rule did not see the packet ({})",
                        connect_text(connect)
                    )));
                }
            };
            match connect {
                Connect::Answered => pass(format!("the agent answered{via}")),
                Connect::Refused => pass(format!("the agent's port is closed but the path is right{via}")),
                other => fail(ev.unexplained(format!(
                    "{} after the DNAT{via}; no nf_tables rule dropped it (routing or route_localnet)",
                    connect_text(other)
                ))),
            }
        }
        ProbeKind::ContainerImdsIpv4 | ProbeKind::ContainerImdsIpv6 => {
            let id =
                if kind == ProbeKind::ContainerImdsIpv4 { rule_id::IMDS_BLOCK_IPV4 } else { rule_id::IMDS_BLOCK_IPV6 };
            match drop {
                Some(d) if d.ours() && d.rule_id.as_deref() == Some(id) => pass(format!("blocked by our {id}")),
                Some(d) => pass(format!("blocked, by {} (our {id} was not reached)", d.text())),
                None if matches!(connect, Connect::Answered | Connect::Refused) => {
                    let why = if ev.our_ids.iter().any(|i| i == id) {
                        format!("our {id} rule did not match")
                    } else {
                        format!("our {id} rule is missing")
                    };
                    fail(format!("IMDS reachable: no drop ({why})"))
                }
                // Unreachable today, but without our rule a route or forwarding change opens
                // it: verify never vouches for a host whose IMDS block is gone.
                None if !ev.routed_out && !ev.our_ids.iter().any(|i| i == id) => fail(format!(
                    "IMDS unreachable now, but our {id} rule is missing: a route or forwarding change would \
                     open it (`ecs-hostnet apply` puts it back)"
                )),
                // Nothing answered and the host never sent the SYN on: a container cannot
                // reach IMDS here, whatever our rule would do.
                None if !ev.routed_out => pass(match connect {
                    Connect::Failed(e) => format!("not routed by the host ({e}): IMDS unreachable, our {id} not exercised"),
                    _ if !ev.traced => format!(
                        "IMDS unreachable: the SYN never reached nf_tables (no route or neighbour); {id} not exercised"
                    ),
                    _ => format!(
                        "IMDS unreachable: the host did not route the SYN on (no route, or forwarding off); {id} not exercised"
                    ),
                }),
                None => fail(ev.unexplained(format!(
                    "IMDS not blocked: the host routed the SYN out and no nf_tables rule dropped it ({}); our {id} did not drop it",
                    connect_text(connect)
                ))),
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
            let j = judge(ProbeKind::ContainerCredentials, &[our_dnat()], &c, &Evidence::default());
            assert!(j.pass && j.outcome.contains(word) && j.outcome.contains("credentials-dnat docker+"), "{j:?}");
        }
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat()], &Connect::TimedOut, &Evidence::default());
        assert!(!j.pass, "{j:?}");
    }

    #[test]
    fn a_foreign_drop_or_dnat_fails_naming_table_and_chain() {
        let cis = Step::new(1, "cis", "input", TraceType::Policy, None, Some(Verdict::Drop), None);
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat(), cis], &Connect::TimedOut, &Evidence::default());
        assert_eq!((j.pass, j.outcome.as_str()), (false, "dropped by table inet cis chain input policy drop"));
        let steal = step(
            "nat",
            "PREROUTING",
            TraceType::Rule,
            Verdict::Accept,
            None,
            "ip daddr 169.254.170.2 dnat to 10.0.0.9:80",
        );
        let j = judge(ProbeKind::ContainerCredentials, &[steal], &Connect::TimedOut, &Evidence::default());
        assert!(!j.pass);
        assert_eq!(
            j.outcome,
            "DNATed elsewhere by table ip nat chain PREROUTING rule handle 3 (ip daddr 169.254.170.2 dnat to 10.0.0.9:80): accept"
        );
    }

    #[test]
    fn imds_passes_only_when_dropped_and_names_a_missing_rule() {
        let ours = step(TABLE_NAME, "forward", TraceType::Rule, Verdict::Drop, Some("imds-block-ipv4"), "drop");
        assert!(judge(ProbeKind::ContainerImdsIpv4, &[ours], &Connect::TimedOut, &Evidence::default()).pass);
        let policy = Step::new(1, TABLE_NAME, "forward", TraceType::Policy, None, Some(Verdict::Accept), None);
        let j = judge(
            ProbeKind::ContainerImdsIpv4,
            std::slice::from_ref(&policy),
            &Connect::Answered,
            &Evidence::default(),
        );
        assert_eq!(
            (j.pass, j.outcome.as_str()),
            (false, "IMDS reachable: no drop (our imds-block-ipv4 rule is missing)")
        );
        let ids = ["imds-block-ipv6".to_string()];
        let j = judge(
            ProbeKind::ContainerImdsIpv6,
            &[policy],
            &Connect::Refused,
            &Evidence { our_ids: &ids, ..Evidence::default() },
        );
        assert!(!j.pass && j.outcome.contains("did not match"), "{j:?}");
        let ev = Evidence { our_ids: &ids, ..Evidence::default() };
        let j = judge(ProbeKind::ContainerImdsIpv6, &[], &Connect::Failed("No route to host".into()), &ev);
        assert!(j.pass && j.outcome.contains("not routed"), "{j:?}");
    }

    fn agent() -> SocketAddr {
        "127.0.0.1:51679".parse().unwrap()
    }

    /// ecs-init's `-j DNAT --to-destination 127.0.0.1:51679` as iptables-nft writes it
    /// (an x_tables target) and as the trace names it.
    fn ecs_init_dnat() -> Step {
        step(
            "nat",
            "PREROUTING",
            TraceType::Rule,
            Verdict::Accept,
            None,
            "ip daddr 169.254.170.2 [ target name DNAT rev 2 ]",
        )
    }

    #[test]
    fn a_foreign_dnat_to_the_agent_endpoint_passes_naming_the_rule() {
        let ev = Evidence { agent: Some(agent()), nat_to: Some(agent()), traced: true, ..Evidence::default() };
        for (c, word) in [(Connect::Answered, "the agent answered"), (Connect::Refused, "the agent's port is closed")] {
            let j = judge(ProbeKind::ContainerCredentials, &[ecs_init_dnat()], &c, &ev);
            assert!(j.pass, "{j:?}");
            assert!(j.outcome.starts_with(word), "{j:?}");
            assert!(
                j.outcome.contains(
                    ": DNATed to 127.0.0.1:51679, the agent endpoint as with our credentials-dnat, by table ip nat chain PREROUTING rule handle 3 ("
                ),
                "{j:?}"
            );
        }
        let j = judge(ProbeKind::HostCredentials, &[ecs_init_dnat()], &Connect::TimedOut, &ev);
        assert!(!j.pass && j.outcome.starts_with("no answer after the DNAT: DNATed to 127.0.0.1:51679"), "{j:?}");
        // Where it went is read from conntrack: elsewhere is a FAIL naming the rule, even
        // when the rule's text does not say where.
        let elsewhere = Evidence { nat_to: Some("10.0.0.9:80".parse().unwrap()), ..ev.clone() };
        let j = judge(ProbeKind::ContainerCredentials, &[ecs_init_dnat()], &Connect::Answered, &elsewhere);
        assert!(!j.pass, "{j:?}");
        assert!(j.outcome.starts_with("DNATed elsewhere by table ip nat chain PREROUTING rule handle 3"), "{j:?}");
        assert!(j.outcome.ends_with("(conntrack: to 10.0.0.9:80)"), "{j:?}");
        // A NAT rule seen without a conntrack entry cannot be shown to reach the agent.
        let unread = Evidence { nat_to: None, ..ev };
        assert!(!judge(ProbeKind::ContainerCredentials, &[ecs_init_dnat()], &Connect::Answered, &unread).pass);
    }

    #[test]
    fn imds_unreachable_passes_unless_the_host_routed_the_syn_out() {
        let ids = [rule_id::IMDS_BLOCK_IPV4.to_string(), rule_id::IMDS_BLOCK_IPV6.to_string()];
        let ours = Evidence { our_ids: &ids, ..Evidence::default() };
        let gone = judge(ProbeKind::ContainerImdsIpv6, &[], &Connect::TimedOut, &Evidence::default());
        assert!(
            !gone.pass && gone.outcome.starts_with("IMDS unreachable now, but our imds-block-ipv6 rule is missing"),
            "{gone:?}"
        );
        let never = judge(ProbeKind::ContainerImdsIpv6, &[], &Connect::TimedOut, &ours);
        assert_eq!(
            (never.pass, never.outcome.as_str()),
            (
                true,
                "IMDS unreachable: the SYN never reached nf_tables (no route or neighbour); imds-block-ipv6 not exercised"
            )
        );
        let stopped = Evidence { traced: true, our_ids: &ids, ..Evidence::default() };
        let j = judge(ProbeKind::ContainerImdsIpv4, &[], &Connect::TimedOut, &stopped);
        assert!(j.pass && j.outcome.contains("did not route the SYN on"), "{j:?}");
        let policy = Step::new(1, TABLE_NAME, "forward", TraceType::Policy, None, Some(Verdict::Accept), None);
        let out = Evidence { traced: true, routed_out: true, ..Evidence::default() };
        let j = judge(ProbeKind::ContainerImdsIpv4, &[policy], &Connect::TimedOut, &out);
        assert!(!j.pass && j.outcome.starts_with("IMDS not blocked: the host routed the SYN out"), "{j:?}");
    }

    #[test]
    fn an_unexplained_failure_names_iptables_legacy_when_it_is_in_use() {
        let legacy = ["nat".to_string()];
        let ev = Evidence { legacy_tables: &legacy, ..Evidence::default() };
        let note =
            "iptables-legacy rules are in use (nat): nf_tables tracing cannot see them; check iptables-legacy-save";
        let j = judge(ProbeKind::ContainerCredentials, &[], &Connect::TimedOut, &ev);
        assert!(!j.pass && j.outcome.starts_with("not DNATed") && j.outcome.ends_with(note), "{j:?}");
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat()], &Connect::TimedOut, &ev);
        assert!(!j.pass && j.outcome.ends_with(note), "{j:?}");
        // Explained by a rule the trace saw: no note.
        let cis = Step::new(1, "cis", "input", TraceType::Policy, None, Some(Verdict::Drop), None);
        let j = judge(ProbeKind::ContainerCredentials, &[our_dnat(), cis], &Connect::TimedOut, &ev);
        assert!(!j.outcome.contains("iptables-legacy"), "{j:?}");
        // Without legacy tables: no note.
        let j = judge(ProbeKind::ContainerCredentials, &[], &Connect::TimedOut, &Evidence::default());
        assert!(!j.outcome.contains("iptables-legacy"), "{j:?}");
    }

    fn event(id: u32, table: &str, packet: Option<(&str, u16, u8)>, verdict: Verdict) -> TraceEvent {
        TraceEvent {
            id,
            family: 1,
            kind: TraceType::Rule,
            table: table.into(),
            chain: "c".into(),
            handle: Some(1),
            verdict: Some(verdict),
            nfproto: Some(2),
            iif: None,
            oif: None,
            packet: packet.map(|(src, sport, _)| crate::model::trace::Packet {
                src: src.parse().unwrap(),
                dst: "169.254.169.254".parse().unwrap(),
                proto: 6,
                sport,
                dport: 80,
            }),
            tcp_flags: packet.map(|(_, _, f)| f),
        }
    }

    #[test]
    fn events_without_headers_go_to_the_syn_their_id_was_last_bound_to() {
        let a: SocketAddr = "198.18.0.2:4000".parse().unwrap();
        let b: SocketAddr = "198.18.0.2:4001".parse().unwrap();
        let events = [
            event(7, "ecs-hostnet", Some(("198.18.0.2", 4000, TCP_SYN)), Verdict::Continue),
            event(8, "ecs-hostnet", Some(("198.18.0.2", 4001, TCP_SYN)), Verdict::Continue),
            event(7, "ecs-hostnet", None, Verdict::Drop), // a's drop: no headers
            event(9, "ecs-hostnet", Some(("198.18.0.9", 1, TCP_SYN)), Verdict::Continue), // someone else
            event(9, "ecs-hostnet", None, Verdict::Accept),
            // b's handshake ACK reuses id 8: not b's SYN.
            event(8, "ecs-hostnet", Some(("198.18.0.2", 4001, TCP_ACK)), Verdict::Continue),
            event(8, "ecs-hostnet", None, Verdict::Accept),
        ];
        assert_eq!(attribute(&events, &[Some(a), Some(b), None]), [vec![0, 2], vec![1], vec![]]);
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
