//! The rule-set model shared by the compiler, the planner, the renderer and the kernel layer.
//!
//! Rules are held as the kernel's own expression lists (the nf_tables "bytecode" that
//! `nft --debug=netlink` prints), in the canonical form the kernel reports back on a dump.
//! A desired rule and a live rule are therefore compared with plain `==`, and the same
//! [`crate::nftsyntax`] printer shows both to people. Constants come from
//! `include/uapi/linux/netfilter/nf_tables.h` and `nf_conntrack_common.h`.

use serde::Serialize;

/// The one table name ecs-hostnet owns, in each family it uses.
pub const TABLE_NAME: &str = "ecs-hostnet";

/// The (family, name) pairs ecs-hostnet owns. Nothing else is ever read for changes,
/// edited or deleted: a `table ip6 ecs-hostnet` made by someone else is not ours.
pub const OWNED_TABLES: [(Family, &str); 2] = [(Family::Ip, TABLE_NAME), (Family::Inet, TABLE_NAME)];

/// Comment given to every table ecs-hostnet creates (table userdata, shown by `nft list`).
pub const TABLE_COMMENT: &str = "managed by ecs-hostnet; edits are reverted by ecs-hostnet apply";

/// nf_tables address family (`NFPROTO_*` from `linux/netfilter.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `NFPROTO_INET` (1): IPv4 and IPv6 together; used for our filter table.
    Inet,
    /// `NFPROTO_IPV4` (2): used for our NAT table (inet NAT needs kernel >= 5.2).
    Ip,
    /// `NFPROTO_IPV6` (10). Not used by ecs-hostnet; decoded so foreign tables can be named.
    Ip6,
}

impl Family {
    /// The `NFPROTO_*` number sent in `nfgenmsg.nfgen_family`.
    pub fn nfproto(self) -> u8 {
        match self {
            Family::Inet => 1,
            Family::Ip => 2,
            Family::Ip6 => 10,
        }
    }
    /// Inverse of [`Family::nfproto`]; `None` for families we do not model (arp, bridge, netdev).
    pub fn from_nfproto(n: u32) -> Option<Family> {
        match n {
            1 => Some(Family::Inet),
            2 => Some(Family::Ip),
            10 => Some(Family::Ip6),
            _ => None,
        }
    }
    /// The keyword nft uses (`ip`, `ip6`, `inet`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Ip6 => "ip6",
        }
    }
}

/// Netfilter hook a base chain is attached to (`NF_INET_*` from `linux/netfilter.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    /// `NF_INET_PRE_ROUTING` (0) .. `NF_INET_POST_ROUTING` (4).
    pub fn number(self) -> u32 {
        match self {
            Hook::Prerouting => 0,
            Hook::Input => 1,
            Hook::Forward => 2,
            Hook::Output => 3,
            Hook::Postrouting => 4,
        }
    }
    pub fn from_number(n: u32) -> Option<Hook> {
        [Hook::Prerouting, Hook::Input, Hook::Forward, Hook::Output, Hook::Postrouting]
            .into_iter()
            .find(|h| h.number() == n)
    }
    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "prerouting",
            Hook::Input => "input",
            Hook::Forward => "forward",
            Hook::Output => "output",
            Hook::Postrouting => "postrouting",
        }
    }
}

/// Base chain type (`type filter|nat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    Filter,
    Nat,
}

impl ChainType {
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// What makes a chain a base chain: `{ type T hook H priority P; policy accept|drop; }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct BaseChain {
    pub chain_type: ChainType,
    pub hook: Hook,
    /// Hook priority; lower runs first. `-100` is `dstnat`, `0` is `filter`.
    pub priority: i32,
    /// `true` = policy accept (`NF_ACCEPT`), `false` = policy drop.
    pub policy_accept: bool,
}

/// A desired table: what ecs-hostnet wants in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Table {
    pub family: Family,
    pub name: String,
    /// Table comment (userdata TLV `NFTNL_UDATA_TABLE_COMMENT`).
    pub comment: String,
    pub chains: Vec<Chain>,
}

/// A desired chain and its rules, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    pub name: String,
    /// `None` for a regular (jump target) chain.
    pub base: Option<BaseChain>,
    pub rules: Vec<Rule>,
}

/// A desired rule. `id` is stored as the rule comment and is unique within its chain;
/// it is how the planner recognises "the same rule" in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: String,
    #[serde(skip)]
    pub exprs: Vec<Expr>,
}

/// `NFT_REG_VERDICT`: the register verdicts are written to.
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`, the first 128-bit data register (what nft uses).
pub const REG_1: u32 = 1;
/// `NFT_REG_2`.
pub const REG_2: u32 = 2;

/// `enum nft_meta_keys` values used here.
pub mod meta {
    /// `NFT_META_IIFNAME`: input interface name, 16 bytes (IFNAMSIZ), NUL padded.
    pub const IIFNAME: u32 = 6;
    /// `NFT_META_OIFNAME`.
    pub const OIFNAME: u32 = 7;
    /// `NFT_META_NFPROTO`: 1 byte, `NFPROTO_IPV4` (2) or `NFPROTO_IPV6` (10).
    pub const NFPROTO: u32 = 15;
    /// `NFT_META_L4PROTO`: 1 byte, `IPPROTO_*`.
    pub const L4PROTO: u32 = 16;
}

/// `enum nft_payload_bases`.
pub mod payload {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    pub const NETWORK: u32 = 1;
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    pub const TRANSPORT: u32 = 2;
}

/// `enum nft_ct_keys` and conntrack bit values.
pub mod ct {
    /// `NFT_CT_STATE`: 4-byte bitmask `NF_CT_STATE_BIT(ctinfo)`.
    pub const STATE: u32 = 0;
    /// `NFT_CT_STATUS`: 4-byte `IPS_*` bitmask.
    pub const STATUS: u32 = 2;
    /// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED)`.
    pub const STATE_ESTABLISHED: u32 = 1 << 1;
    /// `NF_CT_STATE_BIT(IP_CT_RELATED)`.
    pub const STATE_RELATED: u32 = 1 << 2;
    /// `NF_CT_STATE_BIT(IP_CT_NEW)`.
    pub const STATE_NEW: u32 = 1 << 3;
    /// `NF_CT_STATE_INVALID_BIT`.
    pub const STATE_INVALID: u32 = 1;
    /// `NF_CT_STATE_UNTRACKED_BIT`.
    pub const STATE_UNTRACKED: u32 = 1 << 6;
    /// `IPS_DST_NAT`: the connection was destination-NATed.
    pub const STATUS_DNAT: u32 = 1 << 5;
    /// `IPS_SRC_NAT`.
    pub const STATUS_SNAT: u32 = 1 << 4;
}

/// `enum nft_cmp_ops` subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `NFT_CMP_EQ` (0)
    Eq,
    /// `NFT_CMP_NEQ` (1)
    Neq,
}

impl CmpOp {
    pub fn number(self) -> u32 {
        match self {
            CmpOp::Eq => 0,
            CmpOp::Neq => 1,
        }
    }
}

/// Verdict codes (`NF_DROP`, `NF_ACCEPT` from `linux/netfilter.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Drop,
    Accept,
}

impl Verdict {
    pub fn code(self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
        }
    }
}

/// `NFT_NAT_DNAT`.
pub const NAT_TYPE_DNAT: u32 = 1;
/// `NF_NAT_RANGE_MAP_IPS`.
pub const NAT_RANGE_MAP_IPS: u32 = 1;
/// `NF_NAT_RANGE_PROTO_SPECIFIED`.
pub const NAT_RANGE_PROTO_SPECIFIED: u32 = 2;

/// One nf_tables expression, in the form the kernel reports it on a dump.
///
/// Register numbers are `NFT_REG_*`; byte strings are in network byte order exactly as
/// they sit in the netlink attribute. Counter values are runtime state and not modelled,
/// so two rules that differ only in their counters are equal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// `[ meta load KEY => reg DREG ]`
    Meta { key: u32, dreg: u32 },
    /// `[ payload load LENb @ BASE header + OFFSET => reg DREG ]`
    Payload { base: u32, offset: u32, len: u32, dreg: u32 },
    /// `[ cmp OP reg SREG DATA ]`
    Cmp { sreg: u32, op: CmpOp, data: Vec<u8> },
    /// `[ bitwise reg DREG = ( reg SREG & MASK ) ^ XOR ]` (boolean bitwise only)
    Bitwise { sreg: u32, dreg: u32, len: u32, mask: Vec<u8>, xor: Vec<u8> },
    /// `[ ct load KEY => reg DREG ]`
    Ct { key: u32, dreg: u32 },
    /// `[ counter ]`
    Counter,
    /// `[ immediate reg DREG DATA ]`
    Immediate { dreg: u32, data: Vec<u8> },
    /// `[ immediate reg 0 drop|accept ]`
    Verdict(Verdict),
    /// `[ nat dnat ip addr_min reg A addr_max reg A proto_min reg P proto_max reg P flags F ]`;
    /// the kernel fills the max registers and the flags itself, so we send them too.
    Nat {
        nat_type: u32,
        family: u32,
        reg_addr_min: Option<u32>,
        reg_addr_max: Option<u32>,
        reg_proto_min: Option<u32>,
        reg_proto_max: Option<u32>,
        flags: Option<u32>,
    },
    /// `[ redir proto_min reg P proto_max reg P flags F ]` (REDIRECT to a local port).
    Redir { reg_proto_min: Option<u32>, reg_proto_max: Option<u32>, flags: Option<u32> },
    /// An expression ecs-hostnet never generates, kept as libnftnl prints it so a
    /// foreign or altered rule can be shown and is never equal to one of ours.
    Other { name: String, text: String },
}

/// Builders for the expression sequences nft 1.0 itself emits for each match, so that
/// `nft -f` of our rendered script and our netlink batch produce identical rules.
pub mod build {
    use super::*;
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
        [
            Expr::Meta { key: meta::IIFNAME, dreg: REG_1 },
            Expr::Cmp { sreg: REG_1, op, data: ifname_data(pattern) },
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
        assert!(prefix_len % 8 == 0 && (8..=32).contains(&prefix_len));
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
            Expr::Bitwise {
                sreg: REG_1,
                dreg: REG_1,
                len: 4,
                mask: mask.to_ne_bytes().to_vec(),
                xor: vec![0; 4],
            },
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
            Expr::Redir {
                reg_proto_min: Some(REG_1),
                reg_proto_max: Some(REG_1),
                flags: Some(NAT_RANGE_PROTO_SPECIFIED),
            },
        ]
    }
}

/// A table of ours as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveTable {
    pub family: Family,
    pub name: String,
    /// Kernel handle (`NFTA_TABLE_HANDLE`).
    pub handle: u64,
    /// Table comment, if any.
    pub comment: Option<String>,
    /// `NFTA_TABLE_FLAGS`; ours are created with 0. `NFT_TABLE_F_DORMANT` (1) would switch
    /// every rule of the table off, so anything else is drift.
    pub flags: u32,
    /// The route_localnet record ecs-hostnet keeps in the table's userdata; `None` when
    /// the table has none (or one we cannot read).
    pub record: Option<Record>,
    pub chains: Vec<LiveChain>,
}

/// A chain of one of our tables, as read from the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveChain {
    pub name: String,
    pub base: Option<BaseChain>,
    pub rules: Vec<LiveRule>,
}

/// A rule as read from the kernel: its handle, its comment (our id, if it is ours) and its
/// expressions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveRule {
    pub handle: u64,
    pub comment: Option<String>,
    pub exprs: Vec<Expr>,
}

/// The values of `net.ipv4.conf.<selector>.route_localnet` that ecs-hostnet found before it
/// first changed them, by selector (`all` or an interface name), e.g. `{"all": "0"}`.
///
/// It is kept in the kernel, in the userdata of `table inet ecs-hostnet` (TLV type
/// [`record::UDATA_TYPE`], which nft ignores), so it is written in the same transaction as
/// the localhost guard, lives exactly as long as the rule set in that network namespace,
/// and `remove` can put the values back.
pub type Record = std::collections::BTreeMap<String, String>;

/// Encoding of [`Record`] in table userdata.
pub mod record {
    use super::Record;

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn round_trip_and_hostile_records() {
            let r: Record = [("all".to_string(), "0".to_string()), ("eth0.100".to_string(), "-3".to_string())].into();
            assert_eq!(decode(&encode(&r)), Some(r));
            for bad in [
                "route_localnet:../../../tmp/x=1",
                "route_localnet:a/b=1",
                "route_localnet:all=1;rm",
                "route_localnet:all=",
                "other:all=1",
                "route_localnet:all=99999999999",
            ] {
                assert_eq!(decode(bad.as_bytes()), None, "{bad}");
            }
        }
    }

    /// Our private libnftnl udata TLV type in table userdata (nft knows only type 0,
    /// `NFTNL_UDATA_TABLE_COMMENT`, and skips the others).
    pub const UDATA_TYPE: u8 = 0xec;

    /// `route_localnet:all=0,docker0=1` (at most 255 bytes: a udata TLV length is one byte).
    pub fn encode(r: &Record) -> Vec<u8> {
        let body: Vec<String> = r.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("route_localnet:{}", body.join(",")).into_bytes()
    }

    /// Inverse of [`encode`]; `None` when the bytes are not a record we wrote, or name a
    /// key that is neither `all` nor a valid interface name, or a value that is not an
    /// integer (the kernel's type for route_localnet).
    pub fn decode(b: &[u8]) -> Option<Record> {
        let s = std::str::from_utf8(b).ok()?;
        let body = s.trim_end_matches('\0').strip_prefix("route_localnet:")?;
        let mut r = Record::new();
        for item in body.split(',').filter(|s| !s.is_empty()) {
            let (k, v) = item.split_once('=')?;
            // The key becomes a /proc/sys path: only `all` or a valid interface name.
            // Anyone with CAP_NET_ADMIN in the namespace can write this userdata.
            if k != "all" && crate::config::IfPattern::parse(k, false).is_err() {
                return None;
            }
            v.parse::<i32>().ok()?;
            r.insert(k.to_string(), v.to_string());
        }
        Some(r)
    }
}
