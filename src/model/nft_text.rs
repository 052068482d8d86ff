//! Printing rules in nft syntax (pure).
//!
//! [`rule_text`] lifts a kernel expression list back to the nft statement that produces
//! it, for the expression shapes nft 1.0 emits for our matches; anything else is printed
//! in the low-level form of `nft --debug=netlink` ([`lowlevel_text`]), so a rule someone
//! altered is always shown as it really is. [`crate::render::nft_script::script`] renders a whole desired state as a
//! file that `nft -f` accepts.

use crate::model::ruleset::{BaseChain, CmpOp, Expr, Family, Verdict, ct, meta, payload};
use crate::model::ruleset::{NAT_RANGE_MAP_IPS, NAT_RANGE_PROTO_SPECIFIED, NAT_TYPE_DNAT, REG_VERDICT};

/// `NF_NAT_RANGE_PROTO_RANDOM`.
const NAT_RANGE_PROTO_RANDOM: u32 = 4;
/// `NF_NAT_RANGE_PERSISTENT`.
const NAT_RANGE_PERSISTENT: u32 = 8;
/// `NF_NAT_RANGE_PROTO_RANDOM_FULLY`.
const NAT_RANGE_PROTO_RANDOM_FULLY: u32 = 16;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Layer-3 protocol known at a point of the rule (from the table family or a
/// `meta nfproto` match), needed to name network-header fields.
#[derive(Clone, Copy, PartialEq)]
enum L3 {
    Unknown,
    V4,
    V6,
}

fn ifname(data: &[u8]) -> Option<String> {
    let (name, wildcard) = if data.len() == 16 {
        let end = data.iter().position(|&b| b == 0)?;
        if data[end..].iter().any(|&b| b != 0) {
            return None;
        }
        (&data[..end], false)
    } else {
        if data.contains(&0) {
            return None;
        }
        (data, true)
    };
    let s = std::str::from_utf8(name).ok()?;
    if s.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
        return None;
    }
    Some(if wildcard { format!("\"{s}*\"") } else { format!("\"{s}\"") })
}

fn op_text(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Eq => "",
        CmpOp::Neq => "!= ",
    }
}

fn u32_ne(d: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(d.try_into().ok()?))
}

fn ct_bits(key: u32, bits: u32) -> Option<String> {
    let names: &[(u32, &str)] = match key {
        ct::STATE => &[
            (ct::STATE_INVALID, "invalid"),
            (ct::STATE_ESTABLISHED, "established"),
            (ct::STATE_RELATED, "related"),
            (ct::STATE_NEW, "new"),
            (ct::STATE_UNTRACKED, "untracked"),
        ],
        ct::STATUS => &[(ct::STATUS_SNAT, "snat"), (ct::STATUS_DNAT, "dnat")],
        _ => return None,
    };
    let mut left = bits;
    let mut out = Vec::new();
    for (b, n) in names {
        if left & b != 0 {
            out.push(*n);
            left &= !b;
        }
    }
    if left != 0 || out.is_empty() {
        return None;
    }
    Some(if out.len() == 1 { out[0].to_string() } else { format!("({})", out.join(" | ")) })
}

/// Lifts one rule's expressions to nft statement text, or `None` when some part has no
/// nft spelling this printer knows (the caller then uses [`lowlevel_text`]).
pub fn lift(family: Family, exprs: &[Expr]) -> Option<String> {
    let mut out: Vec<String> = Vec::new();
    let mut l3 = match family {
        Family::Ip => L3::V4,
        Family::Ip6 => L3::V6,
        Family::Inet => L3::Unknown,
    };
    let mut i = 0;
    while i < exprs.len() {
        let rest = &exprs[i..];
        let (text, used) = match rest {
            [Expr::Meta { key, dreg }, Expr::Lookup { sreg, set, invert }, ..]
                if (*key == meta::IIFNAME || *key == meta::OIFNAME) && dreg == sreg =>
            {
                let kw = if *key == meta::IIFNAME { "iifname" } else { "oifname" };
                let names = set.ifname_patterns()?;
                let quoted: Vec<String> = names.iter().map(|n| format!("\"{}\"", printable(n))).collect();
                let op = if *invert { "!= " } else { "" };
                (Some(format!("{kw} {op}{{ {} }}", quoted.join(", "))), 2)
            }
            [Expr::Meta { key, dreg }, Expr::Cmp { sreg, op, data }, ..]
                if (*key == meta::IIFNAME || *key == meta::OIFNAME) && dreg == sreg =>
            {
                let kw = if *key == meta::IIFNAME { "iifname" } else { "oifname" };
                (Some(format!("{kw} {}{}", op_text(*op), ifname(data)?)), 2)
            }
            [Expr::Meta { key, dreg }, Expr::Cmp { sreg, op: CmpOp::Eq, data }, next @ ..]
                if *key == meta::NFPROTO && dreg == sreg && family == Family::Inet =>
            {
                l3 = match data.as_slice() {
                    [2] => L3::V4,
                    [10] => L3::V6,
                    _ => return None,
                };
                // nft adds this as the implicit dependency of an ip/ip6 header match.
                let implicit = matches!(next.first(), Some(Expr::Payload { base, .. }) if *base == payload::NETWORK);
                let text = if implicit {
                    None
                } else {
                    Some(format!("meta nfproto {}", if l3 == L3::V4 { "ipv4" } else { "ipv6" }))
                };
                (text, 2)
            }
            [Expr::Payload { base, offset, len, dreg }, Expr::Cmp { sreg, op, data }, ..]
                if *base == payload::NETWORK && dreg == sreg && data.len() == *len as usize =>
            {
                let text = match (l3, offset, len) {
                    (L3::V4, 12 | 16, 1..=4) => {
                        let mut o = [0u8; 4];
                        o[..data.len()].copy_from_slice(data);
                        let field = if *offset == 16 { "daddr" } else { "saddr" };
                        let addr = Ipv4Addr::from(o);
                        let prefix = if *len == 4 { String::new() } else { format!("/{}", len * 8) };
                        format!("ip {field} {}{addr}{prefix}", op_text(*op))
                    }
                    (L3::V6, 8 | 24, 16) => {
                        let field = if *offset == 24 { "daddr" } else { "saddr" };
                        let addr = Ipv6Addr::from(<[u8; 16]>::try_from(data.as_slice()).ok()?);
                        format!("ip6 {field} {}{addr}", op_text(*op))
                    }
                    _ => return None,
                };
                (Some(text), 2)
            }
            [
                Expr::Meta { key, dreg: r1 },
                Expr::Cmp { sreg: s1, op: CmpOp::Eq, data: proto },
                Expr::Payload { base, offset, len: 2, dreg: r2 },
                Expr::Cmp { sreg: s2, op, data: port },
                ..,
            ] if *key == meta::L4PROTO
                && r1 == s1
                && r2 == s2
                && *base == payload::TRANSPORT
                && (*offset == 0 || *offset == 2)
                && (proto.as_slice() == [6] || proto.as_slice() == [17])
                && port.len() == 2 =>
            {
                let l4 = if proto[0] == 6 { "tcp" } else { "udp" };
                let field = if *offset == 2 { "dport" } else { "sport" };
                let p = u16::from_be_bytes([port[0], port[1]]);
                (Some(format!("{l4} {field} {}{p}", op_text(*op))), 4)
            }
            [Expr::Meta { key, dreg }, Expr::Cmp { sreg, op, data }, ..] if *key == meta::L4PROTO && dreg == sreg => {
                let name = match data.as_slice() {
                    [6] => "tcp",
                    [17] => "udp",
                    _ => return None,
                };
                (Some(format!("meta l4proto {}{name}", op_text(*op))), 2)
            }
            [
                Expr::Ct { key, dreg },
                Expr::Bitwise { sreg, dreg: d2, len: 4, mask, xor },
                Expr::Cmp { sreg: s2, op: CmpOp::Eq, data },
                ..,
            ] if dreg == sreg && d2 == s2 && xor.iter().all(|&b| b == 0) && data.iter().all(|&b| b == 0) => {
                let kw = if *key == ct::STATE { "state" } else { "status" };
                let bits = ct_bits(*key, u32_ne(mask)?)?;
                (Some(format!("ct {kw} & {bits} == 0")), 3)
            }
            [Expr::Ct { key, dreg }, Expr::Cmp { sreg, op, data }, ..] if dreg == sreg => {
                let kw = if *key == ct::STATE {
                    "state"
                } else if *key == ct::STATUS {
                    "status"
                } else {
                    return None;
                };
                let bits = ct_bits(*key, u32_ne(data)?)?;
                (
                    Some(format!(
                        "ct {kw} {}{}",
                        op_text(*op),
                        bits.trim_start_matches('(').trim_end_matches(')').replace(" | ", ",")
                    )),
                    2,
                )
            }
            [Expr::Counter, ..] => (Some("counter".to_string()), 1),
            [Expr::Limit { rate, unit, burst, limit_type, flags }, ..] => {
                (Some(limit_text(*rate, *unit, *burst, *limit_type, *flags)?), 1)
            }
            // nft prints the prefix between quotes as it is: one it would have to escape
            // has no exact nft spelling here.
            [Expr::Log { prefix, group, snaplen }, ..]
                if !prefix.chars().any(|c| c == '"' || c == '\\' || c.is_control()) =>
            {
                (Some(format!("log prefix \"{prefix}\" group {group} snaplen {snaplen}")), 1)
            }
            [
                Expr::Immediate { dreg: ra, data: addr },
                Expr::Immediate { dreg: rp, data: port },
                Expr::Nat { nat_type, family: nf, reg_addr_min, reg_addr_max, reg_proto_min, reg_proto_max, flags },
                ..,
            ] if *nat_type == NAT_TYPE_DNAT
                && *nf == Family::Ip.nfproto() as u32
                && addr.len() == 4
                && port.len() == 2
                && *reg_addr_min == Some(*ra)
                && reg_addr_max.is_none_or(|r| r == *ra)
                && *reg_proto_min == Some(*rp)
                && reg_proto_max.is_none_or(|r| r == *rp) =>
            {
                let a = Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]);
                let p = u16::from_be_bytes([port[0], port[1]]);
                let kw = if family == Family::Inet { "dnat ip to" } else { "dnat to" };
                let extra = nat_flags_text(*flags, NAT_RANGE_MAP_IPS | NAT_RANGE_PROTO_SPECIFIED)?;
                (Some(format!("{kw} {a}:{p}{extra}")), 3)
            }
            [Expr::Immediate { dreg, data: port }, Expr::Redir { reg_proto_min, reg_proto_max, flags }, ..]
                if port.len() == 2 && *reg_proto_min == Some(*dreg) && reg_proto_max.is_none_or(|r| r == *dreg) =>
            {
                let p = u16::from_be_bytes([port[0], port[1]]);
                let extra = nat_flags_text(*flags, NAT_RANGE_PROTO_SPECIFIED)?;
                (Some(format!("redirect to :{p}{extra}")), 2)
            }
            [Expr::Verdict(v), ..] => (
                Some(match v {
                    Verdict::Drop => "drop".to_string(),
                    Verdict::Accept => "accept".to_string(),
                }),
                1,
            ),
            _ => return None,
        };
        if let Some(t) = text {
            out.push(t);
        }
        i += used;
    }
    Some(out.join(" "))
}

/// `limit rate [over ]RATE/UNIT[ burst BURST packets]` as nft 1.0 prints a packet limit:
/// the burst only when it is not nft's default of 5. `None` for a byte limit, an unknown
/// unit or flag (then the rule is printed in bytecode).
fn limit_text(rate: u64, unit: u64, burst: u32, limit_type: u32, flags: u32) -> Option<String> {
    use crate::model::ruleset::limit;
    if limit_type != limit::TYPE_PACKETS || flags & !limit::FLAG_INVERT != 0 {
        return None;
    }
    let unit = match unit {
        1 => "second",
        60 => "minute",
        3600 => "hour",
        86_400 => "day",
        604_800 => "week",
        _ => return None,
    };
    let over = if flags & limit::FLAG_INVERT != 0 { "over " } else { "" };
    let burst = if burst == 0 || burst == 5 { String::new() } else { format!(" burst {burst} packets") };
    Some(format!("limit rate {over}{rate}/{unit}{burst}"))
}

/// nft's words for NAT range flags beyond the ones implied by the addresses and ports
/// given (`implied`); `None` for flags nft has no word for here.
fn nat_flags_text(flags: Option<u32>, implied: u32) -> Option<String> {
    let extra = flags.unwrap_or(implied) & !implied;
    let mut words = Vec::new();
    let mut left = extra;
    for (bit, word) in [
        (NAT_RANGE_PERSISTENT, "persistent"),
        (NAT_RANGE_PROTO_RANDOM, "random"),
        (NAT_RANGE_PROTO_RANDOM_FULLY, "fully-random"),
    ] {
        if left & bit != 0 {
            words.push(word);
            left &= !bit;
        }
    }
    if left != 0 {
        return None;
    }
    Some(words.iter().map(|w| format!(" {w}")).collect())
}

fn hex(data: &[u8]) -> String {
    // libnftnl prints data as host-endian 32-bit words.
    data.chunks(4)
        .map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            format!("0x{:08x}", u32::from_ne_bytes(w))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// One expression in the low-level form of `nft --debug=netlink`.
pub fn expr_lowlevel(e: &Expr) -> String {
    let meta_name = |k: u32| match k {
        meta::IIFNAME => "iifname".to_string(),
        meta::OIFNAME => "oifname".to_string(),
        meta::NFPROTO => "nfproto".to_string(),
        meta::L4PROTO => "l4proto".to_string(),
        k => format!("key {k}"),
    };
    match e {
        Expr::Meta { key, dreg } => format!("[ meta load {} => reg {dreg} ]", meta_name(*key)),
        Expr::Payload { base, offset, len, dreg } => {
            let b = match *base {
                payload::NETWORK => "network",
                payload::TRANSPORT => "transport",
                0 => "link",
                _ => "inner",
            };
            format!("[ payload load {len}b @ {b} header + {offset} => reg {dreg} ]")
        }
        Expr::Cmp { sreg, op, data } => {
            format!("[ cmp {} reg {sreg} {} ]", if *op == CmpOp::Eq { "eq" } else { "neq" }, hex(data))
        }
        Expr::Bitwise { sreg, dreg, mask, xor, .. } => {
            format!("[ bitwise reg {dreg} = ( reg {sreg} & {} ) ^ {} ]", hex(mask), hex(xor))
        }
        Expr::Ct { key, dreg } => {
            let k = match *key {
                ct::STATE => "state".to_string(),
                ct::STATUS => "status".to_string(),
                k => format!("key {k}"),
            };
            format!("[ ct load {k} => reg {dreg} ]")
        }
        Expr::Counter => "[ counter ]".into(),
        Expr::Immediate { dreg, data } => format!("[ immediate reg {dreg} {} ]", hex(data)),
        Expr::Verdict(v) => {
            format!("[ immediate reg {REG_VERDICT} {} ]", if *v == Verdict::Drop { "drop" } else { "accept" })
        }
        Expr::Nat { nat_type, family, reg_addr_min, reg_addr_max, reg_proto_min, reg_proto_max, flags } => {
            let mut s = format!("[ nat {} family {family}", if *nat_type == NAT_TYPE_DNAT { "dnat" } else { "snat" });
            for (n, v) in [
                ("addr_min", reg_addr_min),
                ("addr_max", reg_addr_max),
                ("proto_min", reg_proto_min),
                ("proto_max", reg_proto_max),
            ] {
                if let Some(r) = v {
                    let _ = write!(s, " {n} reg {r}");
                }
            }
            if let Some(f) = flags {
                let _ = write!(s, " flags 0x{f:x}");
            }
            s + " ]"
        }
        Expr::Redir { reg_proto_min, reg_proto_max, flags } => {
            let mut s = "[ redir".to_string();
            for (n, v) in [("proto_min", reg_proto_min), ("proto_max", reg_proto_max)] {
                if let Some(r) = v {
                    let _ = write!(s, " {n} reg {r}");
                }
            }
            if let Some(f) = flags {
                let _ = write!(s, " flags 0x{f:x}");
            }
            s + " ]"
        }
        Expr::Lookup { sreg, set, invert } => {
            let elems: Vec<String> = set
                .elements
                .iter()
                .map(|e| format!("{}{}", hex(&e.key), if e.interval_end { " end" } else { "" }))
                .collect();
            format!("[ lookup reg {sreg} set {{ {} }}{} ]", elems.join(", "), if *invert { " 0x1" } else { "" })
        }
        Expr::Limit { rate, unit, burst, limit_type, flags } => {
            let per = match *unit {
                1 => "second".to_string(),
                60 => "minute".to_string(),
                3600 => "hour".to_string(),
                86_400 => "day".to_string(),
                604_800 => "week".to_string(),
                u => format!("{u}s"),
            };
            let ty = if *limit_type == 0 { "packets" } else { "bytes" };
            format!("[ limit rate {rate}/{per} burst {burst} type {ty} flags 0x{flags:x} ]")
        }
        Expr::Log { prefix, group, snaplen } => {
            format!("[ log prefix {} group {group} snaplen {snaplen} qthreshold 0 ]", printable(prefix))
        }
        Expr::Other { name, text } => format!("[ {name} {text}]"),
    }
}

/// A whole rule in low-level form, one `[ ... ]` per expression.
pub fn lowlevel_text(exprs: &[Expr]) -> String {
    exprs.iter().map(expr_lowlevel).collect::<Vec<_>>().join(" ")
}

/// nft text of a rule's statements and its comment; falls back to the low-level form
/// (prefixed `# bytecode:`), which `nft -f` would refuse, only for rules nobody but a
/// person editing by hand could have made.
pub fn rule_text(family: Family, exprs: &[Expr], comment: Option<&str>) -> String {
    let body = lift(family, exprs).unwrap_or_else(|| format!("# bytecode: {}", printable(&lowlevel_text(exprs))));
    match comment {
        Some(c) => format!("{body} comment \"{}\"", printable(c)),
        None => body,
    }
}

/// Text from the kernel (a foreign rule's comment) made safe to print: quotes become
/// `'`, control characters (ESC, newline, ...) are escaped, so a comment can neither
/// forge lines of a plan nor send terminal escape sequences.
pub fn printable(s: &str) -> String {
    crate::model::escape::escape_controls(&s.replace('"', "'"))
}

/// `type nat hook prerouting priority -100; policy accept;`
pub fn base_chain_text(b: &BaseChain) -> String {
    format!(
        "type {} hook {} priority {}; policy {};",
        b.chain_type.name(),
        b.hook.name(),
        b.priority,
        if b.policy_accept { "accept" } else { "drop" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_config;
    use crate::desired::compile;
    use crate::render::nft_script::script;

    #[test]
    fn every_default_rule_lifts_to_nft_syntax() {
        let d = compile(&default_config());
        for t in &d.tables {
            for c in &t.chains {
                for r in &c.rules {
                    assert!(
                        lift(t.family, &r.exprs).is_some(),
                        "rule {} did not lift: {}",
                        r.id,
                        lowlevel_text(&r.exprs)
                    );
                }
            }
        }
    }

    #[test]
    fn default_rules_read_as_nft_writes_them() {
        let d = compile(&default_config());
        let s = script(&d, "test");
        for want in [
            "iifname \"docker*\" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679 comment \"credentials-dnat docker+\"",
            "iifname \"ecs-bridge\" ip daddr 169.254.170.2 tcp dport 80 counter dnat to 127.0.0.1:51679 comment \"credentials-dnat ecs-bridge\"",
            "ip daddr 169.254.170.2 tcp dport 80 counter redirect to :51679 comment \"credentials-redirect\"",
            "iifname != \"lo\" iifname != { \"br-*\", \"docker*\", \"ecs-bridge\" } ip daddr 127.0.0.0/8 counter drop comment \"localhost-guard-uplink\"",
            "iifname != \"lo\" ip daddr 127.0.0.0/8 ct state & (established | related) == 0 ct status & dnat == 0 counter drop comment \"localhost-guard\"",
            "iifname != \"lo\" iifname != \"docker0\" tcp dport 51678 counter drop comment \"introspection-guard\"",
            "iifname { \"br-*\", \"docker*\", \"ecs-bridge\" } ip daddr 169.254.169.254 counter drop comment \"imds-block-ipv4\"",
            "iifname { \"br-*\", \"docker*\", \"ecs-bridge\" } ip6 daddr fd00:ec2::254 counter drop comment \"imds-block-ipv6\"",
            "type nat hook prerouting priority -100; policy accept;",
            "type filter hook forward priority 0; policy accept;",
        ] {
            assert!(s.contains(want), "missing {want:?} in\n{s}");
        }
    }

    #[test]
    fn imds_exclusions_come_first() {
        let c = crate::config::parse("t", "[imds_block]\nexclude_interfaces = [\"br-skip\", \"br-x+\"]\n").unwrap();
        let s = script(&compile(&c), "t");
        assert!(
            s.contains(
                "iifname != \"br-skip\" iifname != \"br-x*\" iifname { \"br-*\", \"docker*\", \"ecs-bridge\" } ip daddr 169.254.169.254 counter drop"
            ),
            "{s}"
        );
    }

    #[test]
    fn nat_flags_show_and_comments_cannot_forge_lines() {
        let mut exprs = crate::model::build::dnat(Ipv4Addr::LOCALHOST, 51679).to_vec();
        if let Expr::Nat { flags, .. } = &mut exprs[2] {
            *flags = Some(NAT_RANGE_MAP_IPS | NAT_RANGE_PROTO_SPECIFIED | NAT_RANGE_PERSISTENT);
        }
        assert_eq!(lift(Family::Ip, &exprs).as_deref(), Some("dnat to 127.0.0.1:51679 persistent"));
        let t = rule_text(Family::Ip, &[Expr::Verdict(Verdict::Accept)], Some("x\n\u{1b}[8mNo changes\""));
        assert_eq!(t, "accept comment \"x\\n\\u{1b}[8mNo changes'\"");
        assert!(!t.contains('\n') && !t.contains('\u{1b}'));
    }

    #[test]
    fn unknown_shapes_fall_back_to_bytecode() {
        let exprs = vec![Expr::Other { name: "log".into(), text: "prefix x ".into() }, Expr::Verdict(Verdict::Accept)];
        assert_eq!(lift(Family::Ip, &exprs), None);
        assert!(rule_text(Family::Ip, &exprs, None).starts_with("# bytecode: [ log prefix x ]"));
        // An ip header match in an inet table without its nfproto dependency is not `ip daddr`.
        let bare = crate::model::build::ip_addr(CmpOp::Eq, 16, Ipv4Addr::new(1, 2, 3, 4), 32).to_vec();
        assert_eq!(lift(Family::Inet, &bare), None);
        assert_eq!(lift(Family::Ip, &bare).as_deref(), Some("ip daddr 1.2.3.4"));
    }
}
