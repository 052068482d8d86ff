//! Builders for the expression sequences nft 1.0 itself emits for each match, so that
//! `nft -f` of our rendered script and our netlink batch produce identical rules.

use crate::model::ruleset::*;
use crate::model::set::AnonSet;
use std::net::{Ipv4Addr, Ipv6Addr};

/// Interface name data as nft sends it: an exact name is NUL padded to IFNAMSIZ (16);
/// a prefix pattern (`docker+` in iptables, `docker*` in nft) is the prefix alone.
pub fn ifname_data(pattern: &str) -> Vec<u8> {
    match pattern.strip_suffix('+') {
        Some(prefix) => prefix.as_bytes().to_vec(),
        None => {
            let mut d = pattern.as_bytes().to_vec();
            d.resize(16, 0);
            d
        }
    }
}

/// `iifname "NAME"` / `iifname != "NAME"` (pattern in iptables spelling).
pub fn iifname(op: CmpOp, pattern: &str) -> [Expr; 2] {
    [Expr::Meta { key: meta::IIFNAME, dreg: REG_1 }, Expr::Cmp { sreg: REG_1, op, data: ifname_data(pattern) }]
}

/// `iifname { "docker*", "ecs-bridge" }` for several patterns (an anonymous interval
/// set, as nft makes it), or `iifname "docker*"` for one.
pub fn iifname_in(patterns: &[&str]) -> Vec<Expr> {
    if let [one] = patterns {
        return iifname(CmpOp::Eq, one).to_vec();
    }
    vec![
        Expr::Meta { key: meta::IIFNAME, dreg: REG_1 },
        Expr::Lookup { sreg: REG_1, set: AnonSet::ifnames(patterns), invert: false },
    ]
}

/// `iifname != { "docker*", "ecs-bridge" }` for several patterns (the anonymous interval
/// set of [`iifname_in`], looked up inverted), or `iifname != "docker*"` for one. `patterns`
/// must not be empty.
pub fn iifname_not_in(patterns: &[&str]) -> Vec<Expr> {
    if let [one] = patterns {
        return iifname(CmpOp::Neq, one).to_vec();
    }
    vec![
        Expr::Meta { key: meta::IIFNAME, dreg: REG_1 },
        Expr::Lookup { sreg: REG_1, set: AnonSet::ifnames(patterns), invert: true },
    ]
}

/// The implicit `meta nfproto` dependency nft adds before an ip/ip6 header match in
/// an inet table.
pub fn nfproto(family: Family, ipv6: bool) -> Vec<Expr> {
    if family != Family::Inet {
        return vec![];
    }
    vec![
        Expr::Meta { key: meta::NFPROTO, dreg: REG_1 },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![if ipv6 { 10 } else { 2 }] },
    ]
}

/// `ip daddr A` (offset 16) or `ip saddr A` (offset 12) for a prefix of `prefix_len`
/// bits that is a multiple of 8 (nft loads only the covered bytes).
pub fn ip_addr(op: CmpOp, offset: u32, addr: Ipv4Addr, prefix_len: u32) -> [Expr; 2] {
    assert!(prefix_len.is_multiple_of(8) && (8..=32).contains(&prefix_len));
    let n = (prefix_len / 8) as usize;
    [
        Expr::Payload { base: payload::NETWORK, offset, len: n as u32, dreg: REG_1 },
        Expr::Cmp { sreg: REG_1, op, data: addr.octets()[..n].to_vec() },
    ]
}

/// `ip6 daddr A` (IPv6 header offset 24, 16 bytes).
pub fn ip6_daddr(addr: Ipv6Addr) -> [Expr; 2] {
    [
        Expr::Payload { base: payload::NETWORK, offset: 24, len: 16, dreg: REG_1 },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: addr.octets().to_vec() },
    ]
}

/// `tcp dport P`: `meta l4proto tcp` then the 2-byte port at transport header + 2.
pub fn tcp_dport(port: u16) -> [Expr; 4] {
    [
        Expr::Meta { key: meta::L4PROTO, dreg: REG_1 },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![6] },
        Expr::Payload { base: payload::TRANSPORT, offset: 2, len: 2, dreg: REG_1 },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: port.to_be_bytes().to_vec() },
    ]
}

/// `ct KEY & MASK == 0` (nft lists it as `ct KEY ! FLAGS`).
pub fn ct_bits_clear(key: u32, mask: u32) -> [Expr; 3] {
    [
        Expr::Ct { key, dreg: REG_1 },
        Expr::Bitwise { sreg: REG_1, dreg: REG_1, len: 4, mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![0; 4] },
    ]
}

/// `dnat to ADDR:PORT` in an `ip` table, in the kernel's canonical form.
pub fn dnat(addr: Ipv4Addr, port: u16) -> [Expr; 3] {
    [
        Expr::Immediate { dreg: REG_1, data: addr.octets().to_vec() },
        Expr::Immediate { dreg: REG_2, data: port.to_be_bytes().to_vec() },
        Expr::Nat {
            nat_type: NAT_TYPE_DNAT,
            family: Family::Ip.nfproto() as u32,
            reg_addr_min: Some(REG_1),
            reg_addr_max: Some(REG_1),
            reg_proto_min: Some(REG_2),
            reg_proto_max: Some(REG_2),
            flags: Some(NAT_RANGE_MAP_IPS | NAT_RANGE_PROTO_SPECIFIED),
        },
    ]
}

/// `redirect to :PORT`, in the kernel's canonical form.
pub fn redirect(port: u16) -> [Expr; 2] {
    [
        Expr::Immediate { dreg: REG_1, data: port.to_be_bytes().to_vec() },
        Expr::Redir { reg_proto_min: Some(REG_1), reg_proto_max: Some(REG_1), flags: Some(NAT_RANGE_PROTO_SPECIFIED) },
    ]
}

/// `limit rate RATE/second burst BURST packets`, as nft sends it (every attribute set,
/// flags 0). `rate` and `burst` must not be 0 (the kernel refuses a rate of 0 and makes a
/// burst of 0 into 5).
pub fn limit_per_second(rate: u64, burst: u32) -> Expr {
    Expr::Limit { rate, unit: limit::UNIT_SECOND, burst, limit_type: limit::TYPE_PACKETS, flags: 0 }
}

/// `log prefix "PREFIX" group GROUP snaplen SNAPLEN`: a copy of the packet's first
/// `snaplen` bytes to nfnetlink_log group `group`.
pub fn log_group(prefix: &str, group: u16, snaplen: u32) -> Expr {
    Expr::Log { prefix: prefix.to_string(), group, snaplen }
}
