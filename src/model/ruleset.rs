//! The rule-set model shared by the compiler, the planner, the renderer and the kernel layer.
//!
//! Rules are held as the kernel's own expression lists (the nf_tables "bytecode" that
//! `nft --debug=netlink` prints), in the canonical form the kernel reports back on a dump.
//! A desired rule and a live rule are therefore compared with plain `==`, and the same
//! [`crate::model::nft_text`] printer shows both to people. Constants come from
//! `include/uapi/linux/netfilter/nf_tables.h` and `nf_conntrack_common.h`.
//!
//! # JSON form of the live model
//!
//! [`crate::model::live::LiveTable`] and everything in it (with [`crate::model::route::LiveRoute`]) have a stable JSON
//! form (serde `Serialize` + `Deserialize`), used by `snapshot` and `plan --against`. It
//! round-trips exactly: deserializing what was serialized gives back an equal value,
//! including [`Expr::Other`], set elements, handles and `None`s (and [`AnonSet::patterns`],
//! which `==` does not compare). The rules, the same for every type:
//!
//! * Struct fields keep their Rust names (snake_case); enum values are lowercase
//!   snake_case strings (`"inet"`, `"prerouting"`, `"eq"`, `"drop"`).
//! * Every byte string (compare data, bitwise mask and xor, immediate data, set keys) is a
//!   lowercase hex string, two digits per byte, `""` for none: `"a9fea9fe"` (upper-case
//!   digits are accepted on input).
//! * An `Option` is written as `null` when `None`, never left out, so the form is fully
//!   explicit. On input a missing `Option` field is read as `None`; every other field is
//!   required.
//! * Unknown fields, unknown enum values and unknown `"expr"` tags are rejected with an
//!   error naming them, as are hex strings of odd length or with a non-hex character.
//! * Values are not checked against each other (a compare whose data is longer than the
//!   register, say): the form holds whatever the model can hold.

use crate::model::set::AnonSet;
use serde::{Deserialize, Serialize};
/// nf_tables address family (`NFPROTO_*` from `linux/netfilter.h`). JSON: `"inet"`, `"ip"`, `"ip6"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
/// JSON: `"prerouting"`, `"input"`, `"forward"`, `"output"`, `"postrouting"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// `NF_INET_PRE_ROUTING` (0): before the routing decision; our credentials DNAT chain.
    Prerouting,
    /// `NF_INET_LOCAL_IN` (1): packets for this host; our guards' `input` chain.
    Input,
    /// `NF_INET_FORWARD` (2): routed packets (container traffic); the IMDS block's chain.
    Forward,
    /// `NF_INET_LOCAL_OUT` (3): locally generated packets; the host-network REDIRECT chain.
    Output,
    /// `NF_INET_POST_ROUTING` (4). Not used by ecs-hostnet; decoded so live chains can be named.
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
    /// Inverse of [`Hook::number`] (the `NFTA_HOOK_HOOKNUM` of a dumped chain); `None` for
    /// hooks we do not model (e.g. `NF_INET_INGRESS`, 5).
    pub fn from_number(n: u32) -> Option<Hook> {
        [Hook::Prerouting, Hook::Input, Hook::Forward, Hook::Output, Hook::Postrouting]
            .into_iter()
            .find(|h| h.number() == n)
    }
    /// The keyword nft uses in `hook NAME`.
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

/// Base chain type (`type filter|nat`). JSON: `"filter"`, `"nat"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChainType {
    /// `type filter`: may drop or accept; our `inet` table's `input` and `forward` chains.
    Filter,
    /// `type nat`: sees only the first packet of each connection; our `ip` table's
    /// `prerouting` (DNAT) and `output` (REDIRECT) chains.
    Nat,
}

impl ChainType {
    /// The type name as nft writes it and as sent in `NFTA_CHAIN_TYPE` (`filter`, `nat`).
    pub fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
        }
    }
}

/// What makes a chain a base chain: `{ type T hook H priority P; policy accept|drop; }`.
///
/// JSON: `{"chain_type": "nat", "hook": "prerouting", "priority": -100, "policy_accept": true}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseChain {
    /// `NFTA_CHAIN_TYPE`.
    pub chain_type: ChainType,
    /// `NFTA_HOOK_HOOKNUM`.
    pub hook: Hook,
    /// Hook priority; lower runs first. `-100` is `dstnat`, `0` is `filter`.
    pub priority: i32,
    /// `true` = policy accept (`NF_ACCEPT`), `false` = policy drop.
    pub policy_accept: bool,
}

/// A desired table: what ecs-hostnet wants in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Table {
    /// The table's family (`nfgenmsg.nfgen_family`): `ip` for NAT, `inet` for filtering.
    pub family: Family,
    /// `NFTA_TABLE_NAME`; always [`crate::model::names::TABLE_NAME`] for ours.
    pub name: String,
    /// Table comment (userdata TLV `NFTNL_UDATA_TABLE_COMMENT`).
    pub comment: String,
    /// The table's chains, in the order they are created and shown.
    pub chains: Vec<Chain>,
}

/// A desired chain and its rules, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Chain {
    /// `NFTA_CHAIN_NAME`, e.g. `prerouting`, `input`.
    pub name: String,
    /// `None` for a regular (jump target) chain.
    pub base: Option<BaseChain>,
    /// The chain's rules, first evaluated first.
    pub rules: Vec<Rule>,
}

/// A desired rule. `id` is stored as the rule comment and is unique within its chain;
/// it is how the planner recognises "the same rule" in the kernel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    /// Stable name such as `credentials-dnat docker+`, sent as the rule comment (userdata
    /// TLV `NFTNL_UDATA_RULE_COMMENT` in `NFTA_RULE_USERDATA`).
    pub id: String,
    /// The rule's expressions (`NFTA_RULE_EXPRESSIONS`), in the kernel's canonical form.
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

/// `enum nft_cmp_ops` subset. JSON: `"eq"`, `"neq"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `NFT_CMP_EQ` (0)
    Eq,
    /// `NFT_CMP_NEQ` (1)
    Neq,
}

impl CmpOp {
    /// The `NFT_CMP_*` value sent in `NFTA_CMP_OP`.
    pub fn number(self) -> u32 {
        match self {
            CmpOp::Eq => 0,
            CmpOp::Neq => 1,
        }
    }
}

/// Verdict codes (`NF_DROP`, `NF_ACCEPT` from `linux/netfilter.h`). JSON: `"drop"`, `"accept"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// `NF_DROP` (0): the packet is discarded; final, whatever other tables say.
    Drop,
    /// `NF_ACCEPT` (1): ends this base chain only; other tables' chains on the hook still run.
    Accept,
}

impl Verdict {
    /// The `NF_*` number sent as `NFTA_VERDICT_CODE`.
    pub fn code(self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
        }
    }
}

/// `enum nft_limit_type` and the period of a limit (`NFTA_LIMIT_UNIT`, seconds).
pub mod limit {
    /// `NFT_LIMIT_PKTS`: the bucket counts packets.
    pub const TYPE_PACKETS: u32 = 0;
    /// `NFT_LIMIT_F_INV`: `limit rate over` (match when the bucket is empty).
    pub const FLAG_INVERT: u32 = 1;
    /// One second, what nft writes for `/second`.
    pub const UNIT_SECOND: u64 = 1;
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
///
/// JSON (see the [module docs](self) for the general rules): an object tagged by `"expr"`,
/// the variant's name in snake_case, with the variant's fields beside it; byte strings are
/// hex, `None` is `null`:
///
/// ```json
/// {"expr": "meta", "key": 6, "dreg": 1}
/// {"expr": "payload", "base": 1, "offset": 16, "len": 4, "dreg": 1}
/// {"expr": "cmp", "sreg": 1, "op": "eq", "data": "a9fea902"}
/// {"expr": "bitwise", "sreg": 1, "dreg": 1, "len": 4, "mask": "20000000", "xor": "00000000"}
/// {"expr": "ct", "key": 2, "dreg": 1}
/// {"expr": "counter"}
/// {"expr": "immediate", "dreg": 1, "data": "a9fea902"}
/// {"expr": "verdict", "verdict": "drop"}
/// {"expr": "nat", "nat_type": 1, "family": 2, "reg_addr_min": 1, "reg_addr_max": 1,
///  "reg_proto_min": 2, "reg_proto_max": 2, "flags": 3}
/// {"expr": "redir", "reg_proto_min": 1, "reg_proto_max": 1, "flags": null}
/// {"expr": "lookup", "sreg": 1, "set": {AnonSet}, "invert": false}
/// {"expr": "limit", "rate": 10, "unit": 1, "burst": 10, "limit_type": 0, "flags": 0}
/// {"expr": "log", "prefix": "imds-audit-ipv4", "group": 1254, "snaplen": 128}
/// {"expr": "other", "name": "log", "text": "[ log prefix foo ]"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "expr", rename_all = "snake_case", deny_unknown_fields)]
pub enum Expr {
    /// `[ meta load KEY => reg DREG ]`
    Meta {
        /// `NFTA_META_KEY`: one of [`meta`]'s `NFT_META_*` keys.
        key: u32,
        /// `NFTA_META_DREG`: the register loaded (`NFT_REG_*`).
        dreg: u32,
    },
    /// `[ payload load LENb @ BASE header + OFFSET => reg DREG ]`
    Payload {
        /// `NFTA_PAYLOAD_BASE`: which header, one of [`payload`]'s `NFT_PAYLOAD_*`.
        base: u32,
        /// `NFTA_PAYLOAD_OFFSET`: bytes from the start of that header (e.g. 16 = IPv4 daddr).
        offset: u32,
        /// `NFTA_PAYLOAD_LEN`: bytes loaded, copied as-is (network byte order).
        len: u32,
        /// `NFTA_PAYLOAD_DREG`: the register loaded (`NFT_REG_*`).
        dreg: u32,
    },
    /// `[ cmp OP reg SREG DATA ]`
    Cmp {
        /// `NFTA_CMP_SREG`: the register compared (`NFT_REG_*`).
        sreg: u32,
        /// `NFTA_CMP_OP`.
        op: CmpOp,
        /// `NFTA_CMP_DATA`: the bytes compared with the register's first `data.len()` bytes
        /// (addresses and ports in network byte order, interface names as in [`crate::model::build::ifname_data`]).
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    },
    /// `[ bitwise reg DREG = ( reg SREG & MASK ) ^ XOR ]` (boolean bitwise only)
    Bitwise {
        /// `NFTA_BITWISE_SREG`: the register read (`NFT_REG_*`).
        sreg: u32,
        /// `NFTA_BITWISE_DREG`: the register written (`NFT_REG_*`).
        dreg: u32,
        /// `NFTA_BITWISE_LEN`: bytes operated on (4 for a ct state/status bitmask).
        len: u32,
        /// `NFTA_BITWISE_MASK`: `len` bytes, in the register's byte order (host order for
        /// ct values, see [`crate::model::build::ct_bits_clear`]).
        #[serde(with = "hex_bytes")]
        mask: Vec<u8>,
        /// `NFTA_BITWISE_XOR`: `len` bytes; all zero for the masks ecs-hostnet makes.
        #[serde(with = "hex_bytes")]
        xor: Vec<u8>,
    },
    /// `[ ct load KEY => reg DREG ]`
    Ct {
        /// `NFTA_CT_KEY`: one of [`ct`]'s `NFT_CT_*` keys.
        key: u32,
        /// `NFTA_CT_DREG`: the register loaded (`NFT_REG_*`).
        dreg: u32,
    },
    /// `[ counter ]`. JSON `{"expr": "counter"}`, with no other field.
    #[serde(deserialize_with = "no_fields")]
    Counter,
    /// `[ immediate reg DREG DATA ]`
    Immediate {
        /// `NFTA_IMMEDIATE_DREG`: the register set (`NFT_REG_*`, never `NFT_REG_VERDICT`
        /// here: see [`Expr::Verdict`]).
        dreg: u32,
        /// `NFTA_IMMEDIATE_DATA` value bytes (addresses and ports in network byte order).
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    },
    /// `[ immediate reg 0 drop|accept ]`. JSON `{"expr": "verdict", "verdict": "drop"}`.
    Verdict(#[serde(with = "verdict_body")] Verdict),
    /// `[ nat dnat ip addr_min reg A addr_max reg A proto_min reg P proto_max reg P flags F ]`;
    /// the kernel fills the max registers and the flags itself, so we send them too.
    Nat {
        /// `NFTA_NAT_TYPE`: [`NAT_TYPE_DNAT`] for ours.
        nat_type: u32,
        /// `NFTA_NAT_FAMILY`: the `NFPROTO_*` of the address, `NFPROTO_IPV4` (2) for ours.
        family: u32,
        /// `NFTA_NAT_REG_ADDR_MIN`: register holding the new address; `None` when absent.
        reg_addr_min: Option<u32>,
        /// `NFTA_NAT_REG_ADDR_MAX`: register holding the range's last address.
        reg_addr_max: Option<u32>,
        /// `NFTA_NAT_REG_PROTO_MIN`: register holding the new port (2 bytes, network order).
        reg_proto_min: Option<u32>,
        /// `NFTA_NAT_REG_PROTO_MAX`: register holding the range's last port.
        reg_proto_max: Option<u32>,
        /// `NFTA_NAT_FLAGS`: `NF_NAT_RANGE_*` bits ([`NAT_RANGE_MAP_IPS`],
        /// [`NAT_RANGE_PROTO_SPECIFIED`]).
        flags: Option<u32>,
    },
    /// `[ redir proto_min reg P proto_max reg P flags F ]` (REDIRECT to a local port).
    Redir {
        /// `NFTA_REDIR_REG_PROTO_MIN`: register holding the local port (2 bytes, network order).
        reg_proto_min: Option<u32>,
        /// `NFTA_REDIR_REG_PROTO_MAX`: register holding the range's last port.
        reg_proto_max: Option<u32>,
        /// `NFTA_REDIR_FLAGS`: `NF_NAT_RANGE_*` bits ([`NAT_RANGE_PROTO_SPECIFIED`] for ours).
        flags: Option<u32>,
    },
    /// `[ lookup reg SREG set __set%d ]` (`0x1` flag: `!=`): is the register's value in
    /// the rule's anonymous set? The set's content is part of the expression, so two
    /// rules are equal only when their sets hold the same elements.
    Lookup {
        /// Source register.
        sreg: u32,
        /// The anonymous set (`NFT_SET_ANONYMOUS | NFT_SET_CONSTANT`), bound to this rule.
        set: AnonSet,
        /// `NFT_LOOKUP_F_INV`: match when NOT in the set.
        invert: bool,
    },
    /// `[ limit rate RATE/UNIT burst BURST type packets|bytes flags F ]`: matches while the
    /// token bucket (`net/netfilter/nft_limit.c`) has room. For `type packets` the bucket
    /// holds `burst` packets and refills at `rate` per `unit` seconds; kernels before 5.x
    /// started it with `rate + burst`.
    Limit {
        /// `NFTA_LIMIT_RATE` (u64): packets (or bytes) per `unit`; the kernel refuses 0.
        rate: u64,
        /// `NFTA_LIMIT_UNIT` (u64): the period in seconds ([`limit::UNIT_SECOND`] = 1).
        unit: u64,
        /// `NFTA_LIMIT_BURST` (u32): packets allowed at once; the kernel makes 0 into 5
        /// for `type packets`, so ours is never 0.
        burst: u32,
        /// `NFTA_LIMIT_TYPE` (u32): [`limit::TYPE_PACKETS`] (0) or `NFT_LIMIT_PKT_BYTES` (1).
        limit_type: u32,
        /// `NFTA_LIMIT_FLAGS` (u32): `NFT_LIMIT_F_INV` (1) is `limit rate over`.
        flags: u32,
    },
    /// `[ log prefix PREFIX group GROUP snaplen SNAPLEN ]`: hands a copy of the packet to
    /// nfnetlink_log group `group` (`NF_LOG_TYPE_ULOG`), which a listener bound to the
    /// group receives with `prefix`; no verdict. Only this form (no level, flags or queue
    /// threshold) is modelled: any other `log` is [`Expr::Other`].
    Log {
        /// `NFTA_LOG_PREFIX`: the text the listener receives as `NFULA_PREFIX`.
        prefix: String,
        /// `NFTA_LOG_GROUP` (be16): the nfnetlink_log group.
        group: u16,
        /// `NFTA_LOG_SNAPLEN` (be32): bytes of the packet copied, from its network header.
        snaplen: u32,
    },
    /// An expression ecs-hostnet never generates, kept as libnftnl prints it so a
    /// foreign or altered rule can be shown and is never equal to one of ours.
    Other {
        /// The expression's name (`NFTA_EXPR_NAME`), e.g. `lookup`, `log`.
        name: String,
        /// libnftnl's one-line text of the whole expression, for display.
        text: String,
    },
}

/// `Vec<u8>` as a lowercase hex string in the JSON form (`[0xa9, 0xfe]` is `"a9fe"`, no
/// bytes is `""`). On input upper-case digits are accepted too; an odd length or a character
/// that is not a hex digit is an error naming the problem.
pub(crate) mod hex_bytes {
    use serde::{Deserializer, Serializer, de};
    use std::fmt::Write as _;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            let _ = write!(out, "{b:02x}");
        }
        s.serialize_str(&out)
    }

    /// The bytes of `s`, or what is wrong with it.
    pub fn decode(s: &str) -> Result<Vec<u8>, String> {
        // Keep an error short when the string is long (a set key is 32 digits).
        let shown = if s.chars().count() > 40 {
            format!("{}...", s.chars().take(40).collect::<String>())
        } else {
            s.to_string()
        };
        if let Some((i, c)) = s.char_indices().find(|(_, c)| !c.is_ascii_hexdigit()) {
            return Err(format!("invalid hex byte string {shown:?}: {c:?} at offset {i} is not a hex digit"));
        }
        if !s.len().is_multiple_of(2) {
            return Err(format!(
                "invalid hex byte string {shown:?}: odd length {} (each byte is two hex digits)",
                s.len()
            ));
        }
        Ok((0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex digits")).collect())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Hex;
        impl de::Visitor<'_> for Hex {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a hex byte string such as \"a9fea9fe\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Vec<u8>, E> {
                decode(s).map_err(E::custom)
            }
        }
        d.deserialize_str(Hex)
    }
}

/// [`Expr::Verdict`]'s field as `"verdict": "drop"` beside the `"expr"` tag (serde's
/// internal tagging cannot hold a bare enum value).
mod verdict_body {
    use super::Verdict;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize)]
    struct Out<'a> {
        verdict: &'a Verdict,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct In {
        verdict: Verdict,
    }

    pub fn serialize<S: Serializer>(verdict: &Verdict, s: S) -> Result<S::Ok, S::Error> {
        Out { verdict }.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Verdict, D::Error> {
        In::deserialize(d).map(|v| v.verdict)
    }
}

/// A unit variant of [`Expr`] (`{"expr": "counter"}`) refuses other fields, as the struct
/// variants do (serde's internal tagging would ignore them).
fn no_fields<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NoFields {}
    NoFields::deserialize(d).map(|_| ())
}
