//! What else sits on the credentials path, judged (pure): other programs' base chains on
//! the hooks the credentials traffic crosses, and the iptables-legacy tables, turned into
//! [`Finding`]s (see [`crate::model::finding`]).
//!
//! Each chain is judged by running a model packet through its rules: the first packet of
//! a container's connection to the agent after our DNAT (input), the same before it
//! (prerouting), a host-network task's packet after our REDIRECT (output). Every
//! expression a rule holds either has a known answer for that packet (a compare of the
//! destination address, the protocol, `ct state`, `ct status`, `iif lo`, ...) or an
//! unknown one (a set lookup, an xt match, a jump, anything not modelled). A rule whose
//! tests are all known decides (blocking when it drops the traffic or steals it); one
//! with an unknown test only "may" (a warning). Nothing here fails on a rule it does not
//! understand.

use crate::config::Config;
use crate::model::finding::{Finding, FindingCode, ForeignChain, PathState, Severity};
use crate::model::live::LiveRule;
use crate::model::nft_text::rule_text;
use crate::model::ruleset::{ChainType, CmpOp, Expr, Family, Hook, NAT_TYPE_DNAT, Verdict, ct, meta, payload};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The priority of our nat chains (`dstnat`); a foreign nat chain below it runs first.
const OUR_NAT_PRIORITY: i32 = -100;

/// `NFT_META_IIF` / `NFT_META_OIF`: interface index, 4 bytes host order.
const META_IIF: u32 = 4;
const META_OIF: u32 = 5;
/// `NFT_META_PROTOCOL`: the ethertype, 2 bytes network order.
const META_PROTOCOL: u32 = 1;
/// `IPS_DST_NAT_DONE`.
const STATUS_DST_NAT_DONE: u32 = 1 << 8;
/// `IPS_SEEN_REPLY`, `IPS_ASSURED`, `IPS_CONFIRMED`.
const STATUS_SEEN_REPLY: u32 = 0x2;
const STATUS_ASSURED: u32 = 0x4;
const STATUS_CONFIRMED: u32 = 0x8;
/// The ct status bits whose value is known for the first packet of a connection: expected,
/// seen reply, assured, confirmed, src nat, dst nat, and the nat-done bits.
const STATUS_KNOWN: u32 = 0x1 | 0x2 | 0x4 | 0x8 | ct::STATUS_SNAT | ct::STATUS_DNAT | STATUS_DST_NAT_DONE;

/// Three-valued answer to "does this hold for the packet".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Maybe,
}

/// What a register holds for the model packet.
#[derive(Clone, Debug)]
enum Val {
    /// Bytes with a per-bit mask of the bits known (1 = known).
    Bits {
        v: Vec<u8>,
        known: Vec<u8>,
    },
    /// Not known, but none of these values (each: the bytes and how many of them a
    /// compare must cover to rule it out, e.g. `lo` and its NUL for an interface name).
    Not(Vec<(Vec<u8>, usize)>),
    /// An IPv4 address outside 127.0.0.0/8 (a container's source address); first byte
    /// kept when it is loaded alone.
    NotLoopback,
    Unknown,
}

impl Val {
    fn known(v: Vec<u8>) -> Val {
        let known = vec![0xff; v.len()];
        Val::Bits { v, known }
    }

    /// Whether the register's first `data.len()` bytes equal `data`.
    fn equals(&self, data: &[u8]) -> Tri {
        match self {
            Val::Bits { v, known } => {
                let mut all_known = true;
                for (i, d) in data.iter().enumerate() {
                    let (b, k) = (v.get(i).copied().unwrap_or(0), known.get(i).copied().unwrap_or(0));
                    if (b ^ d) & k != 0 {
                        return Tri::No;
                    }
                    all_known &= k == 0xff;
                }
                if all_known { Tri::Yes } else { Tri::Maybe }
            }
            Val::Not(list) => {
                let ruled_out = list.iter().any(|(e, n)| data.len() >= *n && e.get(..data.len()) == Some(data));
                if ruled_out { Tri::No } else { Tri::Maybe }
            }
            Val::NotLoopback if data.first() == Some(&127) => Tri::No,
            _ => Tri::Maybe,
        }
    }

    /// `(self & mask) ^ xor`.
    fn bitwise(&self, mask: &[u8], xor: &[u8]) -> Val {
        let x = |i: usize| xor.get(i).copied().unwrap_or(0);
        match self {
            Val::NotLoopback if mask.first() == Some(&0xff) && x(0) == 0 => Val::NotLoopback,
            Val::Bits { v, known } => Val::Bits {
                v: mask.iter().enumerate().map(|(i, m)| (v.get(i).copied().unwrap_or(0) & m) ^ x(i)).collect(),
                known: mask.iter().enumerate().map(|(i, m)| (known.get(i).copied().unwrap_or(0) & m) | !m).collect(),
            },
            // Bits the mask clears are known whatever the value was.
            _ => Val::Bits {
                v: mask.iter().enumerate().map(|(i, _)| x(i)).collect(),
                known: mask.iter().map(|m| !m).collect(),
            },
        }
    }
}

/// The model packet a chain is judged against.
#[derive(Clone, Copy, Debug)]
struct Packet {
    /// `Some(true)`: arrives on `lo`; `Some(false)`: arrives on a container interface (not
    /// `lo`); `None`: locally generated (no input interface).
    iif_lo: Option<bool>,
    /// Leaves through `lo` (output hook after the REDIRECT); `None`: not known.
    oif_lo: Option<bool>,
    /// The source address is a container's (outside 127.0.0.0/8); else not known.
    saddr_container: bool,
    daddr: Ipv4Addr,
    dport: u16,
    /// `ct status` bits: the connection was DNATed (or REDIRECTed) before this hook.
    dnat: bool,
    /// A later packet of the connection (the client's ACK and request: `ct state
    /// established`, a reply seen) rather than its first (`ct state new`). A chain serves
    /// the connection only when it accepts both.
    later: bool,
    /// Whether conntrack has seen the packet at this hook (false before priority -200,
    /// `NF_IP_PRI_CONNTRACK`, e.g. a raw chain): `ct` matches are then not judged.
    ct_known: bool,
}

impl Packet {
    fn meta(&self, key: u32) -> Val {
        let lo_name = || {
            let mut n = vec![0u8; 16];
            n[..2].copy_from_slice(b"lo");
            n
        };
        match key {
            meta::NFPROTO => Val::known(vec![2]),
            meta::L4PROTO => Val::known(vec![6]),
            META_PROTOCOL => Val::known(vec![0x08, 0x00]),
            META_IIF => match self.iif_lo {
                Some(true) => Val::known(1u32.to_ne_bytes().to_vec()),
                Some(false) => Val::Not(vec![(1u32.to_ne_bytes().to_vec(), 4)]),
                None => Val::known(vec![0; 4]),
            },
            meta::IIFNAME => match self.iif_lo {
                Some(true) => Val::known(lo_name()),
                Some(false) => Val::Not(vec![(lo_name(), 3)]),
                None => Val::known(vec![0; 16]),
            },
            META_OIF => match self.oif_lo {
                Some(true) => Val::known(1u32.to_ne_bytes().to_vec()),
                _ => Val::Unknown,
            },
            meta::OIFNAME => match self.oif_lo {
                Some(true) => Val::known(lo_name()),
                _ => Val::Unknown,
            },
            _ => Val::Unknown,
        }
    }

    fn payload(&self, base: u32, offset: u32, len: u32) -> Val {
        let (offset, len) = (offset as usize, len as usize);
        let (mut v, mut known) = match base {
            payload::NETWORK => {
                if offset == 12 && self.saddr_container {
                    return Val::NotLoopback;
                }
                let mut h = vec![0u8; 20];
                let mut k = vec![0u8; 20];
                h[0] = 0x45;
                k[0] = 0xff;
                h[9] = 6;
                k[9] = 0xff;
                h[16..20].copy_from_slice(&self.daddr.octets());
                k[16..20].fill(0xff);
                (h, k)
            }
            payload::TRANSPORT => {
                let mut h = vec![0u8; 20];
                let mut k = vec![0u8; 20];
                h[2..4].copy_from_slice(&self.dport.to_be_bytes());
                k[2..4].fill(0xff);
                // The first packet is a SYN: only the SYN flag of the flags byte.
                h[13] = 0x02;
                k[13] = 0xff;
                (h, k)
            }
            _ => return Val::Unknown,
        };
        v.resize(offset + len.max(1), 0);
        known.resize(offset + len.max(1), 0);
        Val::Bits { v: v[offset..offset + len].to_vec(), known: known[offset..offset + len].to_vec() }
    }

    fn ct(&self, key: u32) -> Val {
        if !self.ct_known {
            return Val::Unknown;
        }
        match key {
            ct::STATE => {
                let state = if self.later { ct::STATE_ESTABLISHED } else { ct::STATE_NEW };
                Val::known(state.to_ne_bytes().to_vec())
            }
            ct::STATUS => {
                let mut v = if self.dnat { ct::STATUS_DNAT | STATUS_DST_NAT_DONE } else { 0 };
                // A later packet: the reply was seen and the entry confirmed; whether it
                // is assured yet (0x4) is not known.
                let mut known = STATUS_KNOWN;
                if self.later {
                    v |= STATUS_SEEN_REPLY | STATUS_CONFIRMED;
                    known &= !STATUS_ASSURED;
                }
                Val::Bits { v: v.to_ne_bytes().to_vec(), known: known.to_ne_bytes().to_vec() }
            }
            _ => Val::Unknown,
        }
    }
}

/// What a rule does to a packet it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Effect {
    /// No verdict (a counter, a log): the chain goes on.
    Continue,
    Accept,
    Drop,
    /// A DNAT or REDIRECT; `Some((address, port))` when the rule says where
    /// (REDIRECT: `None` address = the local address of the interface).
    Nat {
        to: Option<(Option<Ipv4Addr>, Option<u16>)>,
    },
    /// A jump, a goto, a queue, an xt target: not judged.
    Unknown,
}

/// A rule run against the packet: whether it matches, and what it does then.
fn eval_rule(rule: &LiveRule, pkt: &Packet) -> (Tri, Effect) {
    let mut regs: BTreeMap<u32, Val> = BTreeMap::new();
    let mut matched = Tri::Yes;
    let reg = |regs: &BTreeMap<u32, Val>, r: u32| regs.get(&r).cloned().unwrap_or(Val::Unknown);
    for e in &rule.exprs {
        match e {
            Expr::Meta { key, dreg } => {
                regs.insert(*dreg, pkt.meta(*key));
            }
            Expr::Payload { base, offset, len, dreg } => {
                regs.insert(*dreg, pkt.payload(*base, *offset, *len));
            }
            Expr::Ct { key, dreg } => {
                regs.insert(*dreg, pkt.ct(*key));
            }
            Expr::Immediate { dreg, data } => {
                regs.insert(*dreg, Val::known(data.clone()));
            }
            Expr::Bitwise { sreg, dreg, mask, xor, .. } => {
                let v = reg(&regs, *sreg).bitwise(mask, xor);
                regs.insert(*dreg, v);
            }
            Expr::Cmp { sreg, op, data } => {
                let t = match (reg(&regs, *sreg).equals(data), op) {
                    (t, CmpOp::Eq) => t,
                    (Tri::Yes, CmpOp::Neq) => Tri::No,
                    (Tri::No, CmpOp::Neq) => Tri::Yes,
                    (Tri::Maybe, CmpOp::Neq) => Tri::Maybe,
                };
                match t {
                    Tri::No => return (Tri::No, Effect::Continue),
                    Tri::Maybe => matched = Tri::Maybe,
                    Tri::Yes => {}
                }
            }
            Expr::Lookup { .. } => matched = Tri::Maybe,
            Expr::Counter | Expr::Log { .. } => {}
            // Whether the bucket has room is not known from here.
            Expr::Limit { .. } => matched = Tri::Maybe,
            Expr::Verdict(Verdict::Accept) => return (matched, Effect::Accept),
            Expr::Verdict(Verdict::Drop) => return (matched, Effect::Drop),
            Expr::Nat { nat_type, reg_addr_min, reg_proto_min, .. } if *nat_type == NAT_TYPE_DNAT => {
                let addr = reg_addr_min.map(|r| reg(&regs, r)).and_then(|v| known4(&v)).map(Ipv4Addr::from);
                let port = reg_proto_min.map(|r| reg(&regs, r)).and_then(|v| known2(&v)).map(u16::from_be_bytes);
                let to = if addr.is_some() && (port.is_some() || reg_proto_min.is_none()) {
                    Some((addr, port.or(Some(pkt.dport))))
                } else {
                    None
                };
                return (matched, Effect::Nat { to });
            }
            Expr::Nat { .. } => return (matched, Effect::Continue), // SNAT: not on our path
            Expr::Redir { reg_proto_min, .. } => {
                let port = match reg_proto_min {
                    None => Some(pkt.dport),
                    Some(r) => known2(&reg(&regs, *r)).map(u16::from_be_bytes),
                };
                return (matched, Effect::Nat { to: port.map(|p| (None, Some(p))) });
            }
            Expr::Other { name, text } => match name.as_str() {
                "log" => {}
                "reject" => return (matched, Effect::Drop),
                "target" if text.contains("name DNAT") || text.contains("name REDIRECT") => {
                    return (matched, Effect::Nat { to: None });
                }
                "target" if text.contains("name REJECT") || text.contains("name DROP") => {
                    return (matched, Effect::Drop);
                }
                "target" if text.contains("name LOG") => {}
                "target" | "immediate" | "queue" | "unreadable" => return (matched, Effect::Unknown),
                // A test we cannot judge (an xt match, a map, a limit, ...).
                _ => matched = Tri::Maybe,
            },
        }
    }
    (matched, Effect::Continue)
}

/// Whether `rule` drops (or rejects) a container's forwarded packet to `daddr` (TCP port 80,
/// from a container interface) and is about that address: the same packet to another
/// address does not match it. An interface test it cannot judge (`iifname "docker*"`)
/// does not stop it; a jump or an unknown target is not a drop.
pub(super) fn drops_forwarded_to(rule: &LiveRule, daddr: Ipv4Addr) -> bool {
    let pkt = Packet {
        iif_lo: Some(false),
        oif_lo: None,
        saddr_container: true,
        daddr,
        dport: 80,
        dnat: false,
        later: false,
        ct_known: true,
    };
    // TEST-NET-1 (RFC 5737): an address no block of IMDS is about.
    let elsewhere = Packet { daddr: Ipv4Addr::new(192, 0, 2, 1), ..pkt };
    matches!(eval_rule(rule, &pkt), (Tri::Yes | Tri::Maybe, Effect::Drop)) && eval_rule(rule, &elsewhere).0 == Tri::No
}

fn known4(v: &Val) -> Option<[u8; 4]> {
    match v {
        Val::Bits { v, known } if v.len() >= 4 && known[..4].iter().all(|k| *k == 0xff) => v[..4].try_into().ok(),
        _ => None,
    }
}

fn known2(v: &Val) -> Option<[u8; 2]> {
    match v {
        Val::Bits { v, known } if v.len() >= 2 && known[..2].iter().all(|k| *k == 0xff) => v[..2].try_into().ok(),
        _ => None,
    }
}

/// How a filter chain treats the packet.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome<'a> {
    Accepted,
    /// Dropped by this rule, or by the policy (`None`).
    Dropped(Option<&'a LiveRule>),
    /// Cannot tell: the first rule that could not be judged.
    Maybe(&'a LiveRule),
}

/// Runs `pkt` through a filter chain. `skip` says which rules are known not to match it
/// (ecs-init's own, whose xt match cannot be read but whose shape is known).
fn eval_filter<'a>(c: &'a ForeignChain, pkt: &Packet, skip: impl Fn(&LiveRule) -> bool) -> Outcome<'a> {
    let mut may_accept: Option<&LiveRule> = None;
    let mut may_drop: Option<&LiveRule> = None;
    for r in &c.rules {
        if skip(r) {
            continue;
        }
        let (m, eff) = eval_rule(r, pkt);
        match (m, eff) {
            (Tri::No, _) | (_, Effect::Continue) => {}
            (Tri::Yes, Effect::Accept) => return may_drop.map_or(Outcome::Accepted, Outcome::Maybe),
            (Tri::Yes, Effect::Drop) => return may_accept.map_or(Outcome::Dropped(Some(r)), Outcome::Maybe),
            (Tri::Maybe, Effect::Accept) => {
                may_accept.get_or_insert(r);
            }
            (Tri::Maybe, Effect::Drop) => {
                may_drop.get_or_insert(r);
            }
            // A jump, a nat in a filter chain, a target we do not know: either way.
            _ => {
                may_accept.get_or_insert(r);
                may_drop.get_or_insert(r);
            }
        }
    }
    match c.base.policy_accept {
        true => may_drop.map_or(Outcome::Accepted, Outcome::Maybe),
        false => may_accept.map_or(Outcome::Dropped(None), Outcome::Maybe),
    }
}

/// The credentials settings the findings are judged against.
struct Creds {
    endpoint: Ipv4Addr,
    endpoint_port: u16,
    agent: Ipv4Addr,
    agent_port: u16,
    redirect: bool,
    /// `localhost_guard.enabled`: what covers a neighbour DNATed by ecs-init's rule.
    guard: bool,
}

/// The rules of the credentials path that other programs' base chains and the
/// iptables-legacy tables imply for a host configured by `config`, then what the AWS
/// commands left behind ([`super::leftovers`]), most severe first (in read order within a
/// severity). See the module docs for how chains are judged.
pub fn findings(config: &Config, path: &PathState) -> Vec<Finding> {
    let cr = &config.credentials;
    let creds = Creds {
        endpoint: cr.endpoint_address.v.0,
        endpoint_port: cr.endpoint_port.v.0,
        agent: cr.agent_address.v.0,
        agent_port: cr.agent_port.v.0,
        redirect: cr.redirect_host_traffic.v,
        guard: config.localhost_guard.enabled.v,
    };
    let mut out = Vec::new();
    for c in &path.chains {
        out.extend(ecs_init_findings(c, &creds));
        if !cr.enabled.v {
            continue;
        }
        match (c.base.chain_type, c.base.hook) {
            (ChainType::Filter, Hook::Prerouting) => out.extend(prerouting_finding(c, &creds)),
            (ChainType::Filter, Hook::Input) => out.extend(input_finding(c, &creds)),
            (ChainType::Filter, Hook::Output) if creds.redirect => out.extend(output_finding(c, &creds)),
            (ChainType::Nat, Hook::Prerouting) if c.base.priority <= OUR_NAT_PRIORITY => {
                out.extend(nat_finding(c, &creds, false).and_then(|f| same_priority(c, f)))
            }
            (ChainType::Nat, Hook::Output) if creds.redirect && c.base.priority <= OUR_NAT_PRIORITY => {
                out.extend(nat_finding(c, &creds, true).and_then(|f| same_priority(c, f)))
            }
            _ => {}
        }
    }
    if !path.legacy_tables.is_empty() {
        out.push(legacy_finding(&path.legacy_tables));
    }
    out.extend(super::leftovers::findings(config, path));
    out.sort_by_key(|f| f.severity);
    out
}

/// A nat chain at ecs-hostnet's own priority runs before or after ours in an order the
/// kernel does not promise: a rule that certainly maps the endpoint elsewhere may steal it
/// (a warning); one that only might (a jump, e.g. Docker's `-j DOCKER`) is not reported.
fn same_priority(c: &ForeignChain, mut f: Finding) -> Option<Finding> {
    if c.base.priority < OUR_NAT_PRIORITY {
        return Some(f);
    }
    if f.severity != Severity::Blocking {
        return None;
    }
    f.severity = Severity::Warning;
    f.message = f.message.replace(
        &format!("before ecs-hostnet's at {OUR_NAT_PRIORITY}"),
        "the same as ecs-hostnet's: the kernel does not say which runs first",
    );
    Some(f)
}

fn text_of(c: &ForeignChain, r: &LiveRule) -> String {
    rule_text(c.family, &r.exprs, None)
}

/// `family table chain`, as nft names a chain.
fn chain_name(c: &ForeignChain) -> String {
    format!("{} {} {}", c.family.name(), c.table, c.name)
}

/// A table iptables-nft writes (`ip filter INPUT`, `ip nat PREROUTING`): edited with
/// `iptables`, not `nft` (nft edits there confuse iptables).
fn is_iptables_nft(c: &ForeignChain) -> bool {
    c.family == Family::Ip
        && matches!(c.table.as_str(), "filter" | "nat" | "mangle" | "raw" | "security")
        && c.name.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_' || ch == '-')
}

fn finding(c: &ForeignChain, code: FindingCode, severity: Severity, rule: Option<&LiveRule>) -> Finding {
    Finding {
        code,
        severity,
        family: Some(c.family),
        table: c.table.clone(),
        chain: c.name.clone(),
        handle: rule.map(|r| r.handle),
        rule: rule.map(|r| text_of(c, r)),
        file: None,
        line: None,
        message: String::new(),
        fix: None,
    }
}

/// The accept rule to add at the top of THEIR chain for traffic to the agent.
fn accept_fix(c: &ForeignChain, creds: &Creds, output: bool) -> String {
    let (a, p) = (creds.agent, creds.agent_port);
    match (is_iptables_nft(c), output) {
        (true, false) => {
            format!("iptables -I {} -d {a} -p tcp --dport {p} -m conntrack --ctstate DNAT -j ACCEPT", c.name)
        }
        (true, true) => format!("iptables -I {} -o lo -d {a} -p tcp --dport {p} -j ACCEPT", c.name),
        (false, false) => format!("nft insert rule {} ct status dnat ip daddr {a} tcp dport {p} accept", chain_name(c)),
        (false, true) => format!("nft insert rule {} oif lo ip daddr {a} tcp dport {p} accept", chain_name(c)),
    }
}

/// A container's connection to the endpoint at prerouting: before our DNAT (priority
/// below -100) it is addressed to the endpoint, after it to the agent; before conntrack
/// (below -200) `ct` matches cannot be judged.
fn prerouting_finding(c: &ForeignChain, creds: &Creds) -> Option<Finding> {
    let after_dnat = c.base.priority > OUR_NAT_PRIORITY;
    let (daddr, dport) =
        if after_dnat { (creds.agent, creds.agent_port) } else { (creds.endpoint, creds.endpoint_port) };
    let pkt = Packet {
        iif_lo: Some(false),
        oif_lo: None,
        saddr_container: true,
        daddr,
        dport,
        dnat: after_dnat,
        later: false,
        ct_known: c.base.priority > -200,
    };
    let what = format!(
        "containers' traffic to the credentials endpoint {}:{} (at prerouting, {} ecs-hostnet's DNAT)",
        creds.endpoint,
        creds.endpoint_port,
        if after_dnat { "after" } else { "before" }
    );
    let outcome = both_packets(c, &pkt, |_| false);
    let fix = if is_iptables_nft(c) {
        format!("iptables -t {} -I {} -d {daddr} -p tcp --dport {dport} -j ACCEPT", c.table, c.name)
    } else {
        format!("nft insert rule {} ip daddr {daddr} tcp dport {dport} accept", chain_name(c))
    };
    filter_finding(c, FindingCode::PreroutingDropsCredentials, &what, outcome, fix)
}

/// The first packet of a container's connection to the agent, after our DNAT, at input.
fn input_finding(c: &ForeignChain, creds: &Creds) -> Option<Finding> {
    let pkt = Packet {
        iif_lo: Some(false),
        oif_lo: None,
        saddr_container: true,
        daddr: creds.agent,
        dport: creds.agent_port,
        dnat: true,
        later: false,
        ct_known: true,
    };
    let what = format!(
        "the DNATed credentials traffic of containers (to {}:{}, ct status dnat: its first packet and the later ones)",
        creds.agent, creds.agent_port
    );
    let outcome = both_packets(c, &pkt, is_ecs_init_localhost_filter);
    filter_finding(c, FindingCode::InputDropsCredentials, &what, outcome, accept_fix(c, creds, false))
}

/// A host-network task's packet after our REDIRECT, at output (it leaves through `lo`).
fn output_finding(c: &ForeignChain, creds: &Creds) -> Option<Finding> {
    let pkt = Packet {
        iif_lo: None,
        oif_lo: Some(true),
        saddr_container: false,
        daddr: Ipv4Addr::LOCALHOST,
        dport: creds.agent_port,
        dnat: true,
        later: false,
        ct_known: true,
    };
    let what = format!(
        "the REDIRECTed credentials traffic of host-network-mode tasks (to 127.0.0.1:{} through lo)",
        creds.agent_port
    );
    let outcome = both_packets(c, &pkt, |_| false);
    filter_finding(c, FindingCode::OutputDropsCredentials, &what, outcome, accept_fix(c, creds, true))
}

/// Runs the first packet of a connection (`pkt`) and a later one through a filter chain:
/// a drop of either is a drop (the connection cannot complete: e.g. `ct state new accept`
/// lets the SYN in and the policy drops the ACK), else a rule that cannot be judged for
/// either, else accepted.
fn both_packets<'a>(c: &'a ForeignChain, pkt: &Packet, skip: impl Fn(&LiveRule) -> bool) -> Outcome<'a> {
    // A later packet's entry carries the DNAT status (set on the first), whatever the hook.
    let later = Packet { later: true, dnat: true, ..*pkt };
    match (eval_filter(c, pkt, &skip), eval_filter(c, &later, &skip)) {
        (d @ Outcome::Dropped(_), _) | (_, d @ Outcome::Dropped(_)) => d,
        (m @ Outcome::Maybe(_), _) | (_, m @ Outcome::Maybe(_)) => m,
        _ => Outcome::Accepted,
    }
}

fn filter_finding(c: &ForeignChain, code: FindingCode, what: &str, o: Outcome<'_>, fix: String) -> Option<Finding> {
    let name = chain_name(c);
    let (severity, rule, message) = match o {
        Outcome::Accepted => return None,
        Outcome::Dropped(None) => (
            Severity::Blocking,
            None,
            format!(
                "chain {name} (someone else's, priority {}) has policy drop and no rule that accepts {what}, so it is \
                 dropped: tasks cannot get credentials. An accept of ecs-hostnet cannot override a drop of another table",
                c.base.priority
            ),
        ),
        Outcome::Dropped(Some(r)) => (
            Severity::Blocking,
            Some(r),
            format!(
                "rule handle {} of chain {name} (someone else's) drops {what}: tasks cannot get credentials",
                r.handle
            ),
        ),
        Outcome::Maybe(r) => (
            Severity::Warning,
            Some(r),
            format!(
                "chain {name} (someone else's, policy {}) may drop {what}: rule handle {} cannot be judged by \
                 ecs-hostnet (a set, an xt match, a jump or an expression it does not model)",
                if c.base.policy_accept { "accept" } else { "drop" },
                r.handle
            ),
        ),
    };
    let mut f = finding(c, code, severity, rule);
    f.message = message;
    f.message.push_str("; the fix adds an accept for it at the top of their chain");
    f.fix = Some(fix);
    Some(f)
}

/// The first packet of a container's (or, at output, a host task's) connection to the
/// endpoint, in a foreign nat chain that runs before ours.
fn nat_finding(c: &ForeignChain, creds: &Creds, output: bool) -> Option<Finding> {
    let pkt = Packet {
        iif_lo: if output { None } else { Some(false) },
        oif_lo: None,
        saddr_container: !output,
        daddr: creds.endpoint,
        dport: creds.endpoint_port,
        dnat: false,
        later: false,
        ct_known: true,
    };
    let ours = |to: &Option<(Option<Ipv4Addr>, Option<u16>)>| match to {
        Some((Some(a), Some(p))) => *a == creds.agent && *p == creds.agent_port,
        // A REDIRECT at output goes to 127.0.0.1; at prerouting to the interface's address.
        Some((None, Some(p))) => output && creds.agent == Ipv4Addr::LOCALHOST && *p == creds.agent_port,
        _ => false,
    };
    let endpoint = format!("{}:{}", creds.endpoint, creds.endpoint_port);
    let target = format!("{}:{}", creds.agent, creds.agent_port);
    for r in &c.rules {
        let (m, eff) = eval_rule(r, &pkt);
        let (severity, verb) = match (m, &eff) {
            (Tri::No, _) | (_, Effect::Continue) => continue,
            (Tri::Yes, Effect::Accept) => return None,
            (_, Effect::Accept) => continue,
            (_, Effect::Nat { to }) if ours(to) => {
                if m == Tri::Yes {
                    return None;
                }
                continue;
            }
            (Tri::Yes, Effect::Nat { to: Some(_) }) => (Severity::Blocking, "DNATs or REDIRECTs"),
            (Tri::Yes, Effect::Drop) => (Severity::Blocking, "drops"),
            (_, Effect::Nat { .. }) => (Severity::Warning, "may DNAT or REDIRECT"),
            _ => (Severity::Warning, "may DNAT, REDIRECT or drop"),
        };
        let mut f = finding(c, FindingCode::NatStealsEndpoint, severity, Some(r));
        f.message = format!(
            "chain {} (someone else's, priority {}, before ecs-hostnet's at {OUR_NAT_PRIORITY}) {verb} the credentials \
             endpoint {endpoint} away from the agent at {target} (rule handle {}): the first nat rule that maps a \
             connection wins, so ecs-hostnet's DNAT never runs for it",
            chain_name(c),
            c.base.priority,
            r.handle
        );
        let del = if is_iptables_nft(c) {
            format!(
                "iptables -t {} -D {} {}",
                c.table,
                c.name,
                c.rules.iter().position(|x| x.handle == r.handle).map_or(1, |i| i + 1)
            )
        } else {
            format!("nft delete rule {} handle {}", chain_name(c), r.handle)
        };
        f.message.push_str(&format!(
            "; the fix removes that rule (or make it spare {endpoint}: `ip daddr != {}` before its other matches)",
            creds.endpoint
        ));
        f.fix = Some(del);
        return Some(f);
    }
    None
}

/// One expected expression of a recognised shape: exact, or a foreign one by name and a
/// piece of its text.
enum Pat {
    E(Expr),
    Other(&'static str, &'static str),
}

fn shape_matches(r: &LiveRule, pats: &[Pat]) -> bool {
    let exprs: Vec<&Expr> = r.exprs.iter().filter(|e| **e != Expr::Counter).collect();
    exprs.len() == pats.len()
        && exprs.iter().zip(pats).all(|(e, p)| match p {
            Pat::E(x) => *e == x,
            Pat::Other(n, t) => matches!(e, Expr::Other { name, text } if name == n && text.contains(t)),
        })
}

fn cmp(op: CmpOp, data: &[u8]) -> Pat {
    Pat::E(Expr::Cmp { sreg: 1, op, data: data.to_vec() })
}

fn load_payload(base: u32, offset: u32, len: u32) -> Pat {
    Pat::E(Expr::Payload { base, offset, len, dreg: 1 })
}

fn load_meta(key: u32) -> Pat {
    Pat::E(Expr::Meta { key, dreg: 1 })
}

/// `-p tcp -d ENDPOINT --dport PORT` as iptables-nft writes it.
fn tcp_to(addr: Ipv4Addr, port: u16) -> Vec<Pat> {
    vec![
        load_meta(meta::L4PROTO),
        cmp(CmpOp::Eq, &[6]),
        load_payload(payload::NETWORK, 16, 4),
        cmp(CmpOp::Eq, &addr.octets()),
        load_payload(payload::TRANSPORT, 2, 2),
        cmp(CmpOp::Eq, &port.to_be_bytes()),
    ]
}

/// ecs-init's localhost filter: `-I INPUT --dst 127.0.0.0/8 ! --src 127.0.0.0/8 -m
/// conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP` (it spares DNATed traffic).
fn is_ecs_init_localhost_filter(r: &LiveRule) -> bool {
    shape_matches(
        r,
        &[
            load_payload(payload::NETWORK, 12, 1),
            cmp(CmpOp::Neq, &[127]),
            load_payload(payload::NETWORK, 16, 1),
            cmp(CmpOp::Eq, &[127]),
            Pat::Other("match", "name conntrack"),
            Pat::E(Expr::Verdict(Verdict::Drop)),
        ],
    )
}

/// ecs-init's rules (iptables-nft, in `ip nat` PREROUTING/OUTPUT and `ip filter` INPUT),
/// recognised by their exact shape, each with what covers it.
fn ecs_init_findings(c: &ForeignChain, creds: &Creds) -> Vec<Finding> {
    if c.family != Family::Ip {
        return vec![];
    }
    let ecs_endpoint = Ipv4Addr::new(169, 254, 170, 2);
    let mut out = Vec::new();
    for r in &c.rules {
        let message = match (c.table.as_str(), c.name.as_str()) {
            ("nat", "PREROUTING") => {
                let mut p = tcp_to(ecs_endpoint, 80);
                p.push(Pat::Other("target", "name DNAT"));
                if !shape_matches(r, &p) {
                    continue;
                }
                "ecs-init's credentials DNAT (169.254.170.2:80 -> 127.0.0.1:51679, added at every ECS agent start, \
                 removed at its stop). It has no interface match, so a neighbour on the uplink that routes \
                 169.254.170.2 to this host is DNATed too"
                    .to_string()
                    + covered(creds)
            }
            ("nat", "OUTPUT") => {
                let mut p = tcp_to(ecs_endpoint, 80);
                p.push(Pat::Other("target", "name REDIRECT"));
                if !shape_matches(r, &p) {
                    continue;
                }
                "ecs-init's REDIRECT for host-network-mode tasks (169.254.170.2:80 -> local port 51679, added at every \
                 ECS agent start); it does what ecs-hostnet's output REDIRECT does and is harmless beside it"
                    .to_string()
            }
            ("filter", "INPUT") if is_ecs_init_localhost_filter(r) => {
                "ecs-init's localhost filter (drops packets to 127.0.0.0/8 from other sources unless related, \
                 established or DNATed); it spares the DNATed credentials traffic, including a neighbour's \
                 through its own DNAT"
                    .to_string()
                    + covered(creds)
            }
            ("filter", "INPUT") => {
                let mut drop = vec![load_meta(meta::IIFNAME), cmp(CmpOp::Neq, b"lo\0")];
                let mut accept = vec![load_meta(meta::IIFNAME), cmp(CmpOp::Eq, b"docker0\0")];
                for p in [&mut drop, &mut accept] {
                    p.extend([
                        load_meta(meta::L4PROTO),
                        cmp(CmpOp::Eq, &[6]),
                        load_payload(payload::TRANSPORT, 2, 2),
                        cmp(CmpOp::Eq, &51678u16.to_be_bytes()),
                    ]);
                }
                drop.push(Pat::E(Expr::Verdict(Verdict::Drop)));
                accept.push(Pat::E(Expr::Verdict(Verdict::Accept)));
                if shape_matches(r, &drop) {
                    "ecs-init's introspection block (tcp port 51678 from any interface but lo); ecs-hostnet's \
                     introspection guard does the same for every container interface"
                        .to_string()
                } else if shape_matches(r, &accept) {
                    "ecs-init's introspection accept for docker0 (tcp port 51678): containers on Docker's default \
                     bridge may read the agent's introspection API unless ecs-hostnet's introspection guard \
                     (a drop, which is final) is on"
                        .to_string()
                } else {
                    continue;
                }
            }
            _ => continue,
        };
        let mut f = finding(c, FindingCode::EcsInitRules, Severity::Info, Some(r));
        f.message = message;
        if creds.agent_port != 51679 || creds.endpoint_port != 80 || creds.endpoint != ecs_endpoint {
            f.message.push_str(&format!(
                "; note: ecs-hostnet is configured for {}:{} -> {}:{}, which is not what ecs-init uses",
                creds.endpoint, creds.endpoint_port, creds.agent, creds.agent_port
            ));
        }
        out.push(f);
    }
    out
}

/// What covers a neighbour that ecs-init's DNAT lets through, under `creds`.
fn covered(creds: &Creds) -> &'static str {
    if creds.guard {
        "; ecs-hostnet's localhost guard drops such packets at input (to 127.0.0.0/8 from an interface that is \
         neither lo nor a container interface), DNATed or not"
    } else {
        "; with ecs-hostnet's localhost_guard off nothing drops them: a neighbour on the uplink reaches the agent"
    }
}

fn legacy_finding(tables: &[String]) -> Finding {
    Finding {
        code: FindingCode::IptablesLegacyInUse,
        severity: Severity::Warning,
        family: None,
        table: tables.join(" "),
        chain: String::new(),
        handle: None,
        rule: None,
        file: None,
        line: None,
        message: format!(
            "iptables-legacy (x_tables) tables are in use in this network namespace ({}). ecs-hostnet cannot read \
             their rules, so no finding can name what they do: a DROP in their INPUT or OUTPUT, or a DNAT in their \
             nat PREROUTING, acts on the credentials traffic unseen. What still holds: every drop of ecs-hostnet (the \
             localhost guard, the IMDS block, the introspection guard) is final whatever they accept; what does not: \
             an accept of ecs-hostnet cannot undo their drops, and their nat rules at the same priority may map the \
             endpoint first",
            tables.join(", ")
        ),
        fix: Some(
            "list them with `iptables-legacy-save` and check INPUT, OUTPUT and nat PREROUTING/OUTPUT for the \
             credentials endpoint and the agent port; prefer iptables-nft (`update-alternatives --set iptables \
             /usr/sbin/iptables-nft`) so that ecs-hostnet can read them"
                .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ruleset::BaseChain;

    fn chain(family: Family, table: &str, name: &str, base: BaseChain, rules: Vec<Vec<Expr>>) -> ForeignChain {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, exprs)| LiveRule { handle: i as u64 + 2, comment: None, exprs, counter: None })
            .collect();
        ForeignChain { family, table: table.into(), name: name.into(), base, rules }
    }

    fn filter_input(policy_accept: bool) -> BaseChain {
        BaseChain { chain_type: ChainType::Filter, hook: Hook::Input, priority: 0, policy_accept }
    }

    fn meta_cmp(key: u32, op: CmpOp, data: &[u8]) -> Vec<Expr> {
        vec![Expr::Meta { key, dreg: 1 }, Expr::Cmp { sreg: 1, op, data: data.to_vec() }]
    }

    /// `ct state established,related` (bitwise, then != 0).
    fn ct_bits(key: u32, bits: u32) -> Vec<Expr> {
        vec![
            Expr::Ct { key, dreg: 1 },
            Expr::Bitwise { sreg: 1, dreg: 1, len: 4, mask: bits.to_ne_bytes().to_vec(), xor: vec![0; 4] },
            Expr::Cmp { sreg: 1, op: CmpOp::Neq, data: vec![0; 4] },
        ]
    }

    fn with(mut a: Vec<Expr>, v: Verdict) -> Vec<Expr> {
        a.push(Expr::Counter);
        a.push(Expr::Verdict(v));
        a
    }

    fn cis(extra: Vec<Vec<Expr>>) -> ForeignChain {
        let mut rules = vec![
            with(meta_cmp(META_IIF, CmpOp::Eq, &1u32.to_ne_bytes()), Verdict::Accept),
            with(ct_bits(ct::STATE, ct::STATE_ESTABLISHED | ct::STATE_RELATED), Verdict::Accept),
        ];
        rules.extend(extra);
        chain(Family::Inet, "filter", "input", filter_input(false), rules)
    }

    fn run(chains: Vec<ForeignChain>) -> Vec<Finding> {
        findings(&crate::config::default_config(), &PathState { chains, ..Default::default() })
    }

    #[test]
    fn a_cis_input_chain_blocks_and_its_fix_clears_it() {
        let f = run(vec![cis(vec![])]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].code, f[0].severity), (FindingCode::InputDropsCredentials, Severity::Blocking));
        assert_eq!((f[0].table.as_str(), f[0].chain.as_str(), f[0].handle), ("filter", "input", None));
        assert!(f[0].message.contains("policy drop"), "{}", f[0].message);
        let fix = f[0].fix.as_deref().unwrap();
        assert_eq!(fix, "nft insert rule inet filter input ct status dnat ip daddr 127.0.0.1 tcp dport 51679 accept");
        // `ct status dnat accept` covers it.
        assert_eq!(run(vec![cis(vec![with(ct_bits(ct::STATUS, ct::STATUS_DNAT), Verdict::Accept)])]), vec![]);
        // `iif lo accept` and established,related alone do not. `ct state new accept` without
        // an established accept lets the SYN in and drops the ACK; with it (CIS), it does.
        let lo = with(meta_cmp(META_IIF, CmpOp::Eq, &1u32.to_ne_bytes()), Verdict::Accept);
        let new = with(ct_bits(ct::STATE, ct::STATE_NEW), Verdict::Accept);
        let new_only = run(vec![chain(Family::Inet, "h", "input", filter_input(false), vec![lo, new.clone()])]);
        assert_eq!(new_only.iter().map(|f| f.severity).collect::<Vec<_>>(), [Severity::Blocking], "{new_only:#?}");
        assert_eq!(run(vec![cis(vec![new])]), vec![]);
    }

    #[test]
    fn a_drop_rule_blocks_and_an_unjudged_rule_only_may() {
        // `ip daddr 127.0.0.0/8 drop` in an accept chain.
        let drop = with(
            vec![
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 1, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![127] },
            ],
            Verdict::Drop,
        );
        let c = chain(Family::Inet, "fw", "in", filter_input(true), vec![drop.clone()]);
        let f = run(vec![c]);
        assert_eq!((f[0].severity, f[0].handle), (Severity::Blocking, Some(2)));
        // A prefix loaded as one byte: the printer shows the bytecode, the handle names it.
        assert!(f[0].rule.as_deref().is_some_and(|r| r.contains("drop")), "{f:#?}");
        // `ip saddr 127.0.0.0/8 drop` (CIS) does not match a container's packet.
        let saddr = with(
            vec![
                Expr::Payload { base: payload::NETWORK, offset: 12, len: 1, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![127] },
            ],
            Verdict::Drop,
        );
        assert_eq!(run(vec![chain(Family::Inet, "fw", "in", filter_input(true), vec![saddr])]), vec![]);
        // An xt match before the drop: may.
        let mut unknown = vec![Expr::Other { name: "match".into(), text: "[ match name foo ]".into() }];
        unknown.extend(drop);
        let f = run(vec![chain(Family::Ip, "filter", "INPUT", filter_input(true), vec![unknown])]);
        assert_eq!((f[0].code, f[0].severity), (FindingCode::InputDropsCredentials, Severity::Warning));
        assert!(f[0].message.contains("may drop"), "{}", f[0].message);
        assert!(f[0].fix.as_deref().unwrap().contains("iptables -I INPUT -d 127.0.0.1 -p tcp --dport 51679"), "{f:#?}");
        // A policy drop after a set lookup accept: may, never blocking.
        let lookup =
            vec![Expr::Other { name: "lookup".into(), text: "[ lookup ]".into() }, Expr::Verdict(Verdict::Accept)];
        let f = run(vec![cis(vec![lookup])]);
        assert_eq!(f[0].severity, Severity::Warning, "{f:#?}");
    }

    /// `ip daddr 169.254.170.2 tcp dport 80`, as nft writes it (the model's builders).
    fn to_endpoint() -> Vec<Expr> {
        let mut e = crate::model::build::ip_addr(CmpOp::Eq, 16, Ipv4Addr::new(169, 254, 170, 2), 32).to_vec();
        e.extend(crate::model::build::tcp_dport(80));
        e
    }

    fn steal(priority: i32, to: [u8; 4], port: u16) -> ForeignChain {
        let base = BaseChain { chain_type: ChainType::Nat, hook: Hook::Prerouting, priority, policy_accept: true };
        let mut exprs = to_endpoint();
        exprs.extend([
            Expr::Immediate { dreg: 1, data: to.to_vec() },
            Expr::Immediate { dreg: 2, data: port.to_be_bytes().to_vec() },
            Expr::Nat {
                nat_type: NAT_TYPE_DNAT,
                family: 2,
                reg_addr_min: Some(1),
                reg_addr_max: None,
                reg_proto_min: Some(2),
                reg_proto_max: None,
                flags: None,
            },
        ]);
        chain(Family::Ip, "steal", "pre", base, vec![exprs])
    }

    #[test]
    fn a_nat_chain_before_ours_that_dnats_the_endpoint_elsewhere_steals_it() {
        let f = run(vec![steal(-150, [10, 9, 9, 9], 80)]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(
            (f[0].code, f[0].severity, f[0].handle),
            (FindingCode::NatStealsEndpoint, Severity::Blocking, Some(2))
        );
        assert_eq!(f[0].fix.as_deref(), Some("nft delete rule ip steal pre handle 2"));
        // To the agent itself, or after ours: nothing.
        assert_eq!(run(vec![steal(-150, [127, 0, 0, 1], 51679)]), vec![]);
        // At our own priority the order is not promised: it may steal (a warning).
        let same = run(vec![steal(-100, [10, 9, 9, 9], 80)]);
        assert_eq!(
            same.iter().map(|f| (f.code, f.severity)).collect::<Vec<_>>(),
            [(FindingCode::NatStealsEndpoint, Severity::Warning)]
        );
        assert!(same[0].message.contains("the kernel does not say which runs first"), "{}", same[0].message);
        assert_eq!(run(vec![steal(-90, [10, 9, 9, 9], 80)]), vec![]);
    }

    /// An anti-IMDS prerouting drop of 169.254.0.0/16 takes the credentials endpoint with
    /// it, before our DNAT: blocking until an accept of the endpoint comes first; Docker's
    /// raw drops of traffic to container addresses from other interfaces do not touch it.
    #[test]
    fn a_prerouting_drop_of_the_link_local_range_blocks_until_the_endpoint_is_accepted() {
        let pre = |priority: i32, rules: Vec<Vec<Expr>>| {
            let base =
                BaseChain { chain_type: ChainType::Filter, hook: Hook::Prerouting, priority, policy_accept: true };
            chain(Family::Inet, "i", "pre", base, rules)
        };
        let link_local_drop = with(
            vec![
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 2, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![169, 254] },
            ],
            Verdict::Drop,
        );
        let f = run(vec![pre(-300, vec![link_local_drop.clone()])]);
        assert_eq!(
            f.iter().map(|f| (f.code, f.severity)).collect::<Vec<_>>(),
            [(FindingCode::PreroutingDropsCredentials, Severity::Blocking)],
            "{f:#?}"
        );
        assert_eq!(f[0].fix.as_deref(), Some("nft insert rule inet i pre ip daddr 169.254.170.2 tcp dport 80 accept"));
        let endpoint_accept = with(to_endpoint(), Verdict::Accept);
        assert_eq!(run(vec![pre(-300, vec![endpoint_accept, link_local_drop])]), vec![]);
        // Docker's raw rule: traffic to a container's address from another interface.
        let docker_raw = with(
            vec![
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 4, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![172, 17, 0, 2] },
            ],
            Verdict::Drop,
        );
        assert_eq!(run(vec![pre(-300, vec![docker_raw])]), vec![]);
    }

    fn ecs_init_chains() -> Vec<ForeignChain> {
        let tcp = |a: [u8; 4], p: u16| {
            vec![
                Expr::Meta { key: meta::L4PROTO, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![6] },
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 4, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: a.to_vec() },
                Expr::Payload { base: payload::TRANSPORT, offset: 2, len: 2, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: p.to_be_bytes().to_vec() },
                Expr::Counter,
            ]
        };
        let mut dnat = tcp([169, 254, 170, 2], 80);
        dnat.push(Expr::Other { name: "target".into(), text: "[ target name DNAT rev 2 ]".into() });
        let nat = BaseChain { chain_type: ChainType::Nat, hook: Hook::Prerouting, priority: -100, policy_accept: true };
        let localhost = vec![
            Expr::Payload { base: payload::NETWORK, offset: 12, len: 1, dreg: 1 },
            Expr::Cmp { sreg: 1, op: CmpOp::Neq, data: vec![127] },
            Expr::Payload { base: payload::NETWORK, offset: 16, len: 1, dreg: 1 },
            Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![127] },
            Expr::Other { name: "match".into(), text: "[ match name conntrack rev 3 ]".into() },
            Expr::Counter,
            Expr::Verdict(Verdict::Drop),
        ];
        vec![
            chain(Family::Ip, "nat", "PREROUTING", nat, vec![dnat]),
            chain(Family::Ip, "filter", "INPUT", filter_input(true), vec![localhost]),
        ]
    }

    #[test]
    fn ecs_init_rules_are_named_and_do_not_block() {
        let f = run(ecs_init_chains());
        let codes: Vec<_> = f.iter().map(|f| (f.code, f.severity, f.chain.as_str())).collect();
        assert_eq!(
            codes,
            vec![
                (FindingCode::EcsInitRules, Severity::Info, "PREROUTING"),
                (FindingCode::EcsInitRules, Severity::Info, "INPUT")
            ],
            "{f:#?}"
        );
        assert!(f[0].message.contains("no interface match"), "{}", f[0].message);
    }

    #[test]
    fn legacy_tables_are_a_warning_and_disabled_credentials_judge_nothing() {
        let path = PathState {
            chains: vec![cis(vec![])],
            legacy_tables: vec!["nat".into(), "filter".into()],
            ..Default::default()
        };
        let mut config = crate::config::default_config();
        let f = findings(&config, &path);
        assert_eq!(
            f.iter().map(|f| f.code).collect::<Vec<_>>(),
            [FindingCode::InputDropsCredentials, FindingCode::IptablesLegacyInUse]
        );
        assert_eq!((f[1].severity, f[1].table.as_str()), (Severity::Warning, "nat filter"));
        config.credentials.enabled.v = false;
        let f = findings(&config, &path);
        assert_eq!(f.iter().map(|f| f.code).collect::<Vec<_>>(), [FindingCode::IptablesLegacyInUse]);
    }
}
