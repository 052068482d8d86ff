//! The rule-set model shared by the compiler, the planner, the renderer and the kernel layer.
//!
//! Rules are held as the kernel's own expression lists (the nf_tables "bytecode" that
//! `nft --debug=netlink` prints), in the canonical form the kernel reports back on a dump.
//! A desired rule and a live rule are therefore compared with plain `==`, and the same
//! [`crate::nftsyntax`] printer shows both to people. Constants come from
//! `include/uapi/linux/netfilter/nf_tables.h` and `nf_conntrack_common.h`.
//!
//! # JSON form of the live model
//!
//! [`LiveTable`] and everything in it (with [`crate::rtnl::LiveRoute`]) have a stable JSON
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

use serde::{Deserialize, Serialize};

/// The one table name ecs-hostnet owns, in each family it uses.
pub const TABLE_NAME: &str = "ecs-hostnet";

/// The (family, name) pairs ecs-hostnet owns. Nothing else is ever read for changes,
/// edited or deleted: a `table ip6 ecs-hostnet` made by someone else is not ours.
pub const OWNED_TABLES: [(Family, &str); 2] = [(Family::Ip, TABLE_NAME), (Family::Inet, TABLE_NAME)];

/// Comment given to every table ecs-hostnet creates (table userdata, shown by `nft list`).
pub const TABLE_COMMENT: &str = "managed by ecs-hostnet; edits are reverted by ecs-hostnet apply";

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
    /// `NFTA_TABLE_NAME`; always [`TABLE_NAME`] for ours.
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
        /// (addresses and ports in network byte order, interface names as in [`build::ifname_data`]).
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
        /// ct values, see [`build::ct_bits_clear`]).
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
mod hex_bytes {
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

/// An anonymous, constant set bound to one rule, as nft makes for `iifname { ... }`.
/// Equality compares the kernel content only (not [`AnonSet::patterns`]).
///
/// JSON (`patterns` is `null` for a set read from the kernel):
///
/// ```json
/// {"key_type": 41, "key_len": 16, "interval": true,
///  "elements": [{"key": "00000000000000000000000000000000", "interval_end": true}, ...],
///  "patterns": ["br-*", "docker*"]}
/// ```
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonSet {
    /// nft's datatype id of the key (`TYPE_IFNAME` = 41 for interface names).
    pub key_type: u32,
    /// Key length in bytes (16 = IFNAMSIZ for interface names).
    pub key_len: u32,
    /// `NFT_SET_INTERVAL`: elements are interval boundaries.
    pub interval: bool,
    /// Elements in key order; with `interval`, each range is a start element followed by
    /// its exclusive end (`NFT_SET_ELEM_INTERVAL_END`), after a zero key marked as an end.
    pub elements: Vec<SetElem>,
    /// The patterns the set was built from (nft spelling), for printing: adjacent ranges
    /// (`veth0*`, `veth1*`) are merged in the kernel, as nft merges them, and can no
    /// longer be told apart from its elements. `None` for a set read from the kernel.
    pub patterns: Option<Vec<String>>,
}

impl PartialEq for AnonSet {
    fn eq(&self, o: &AnonSet) -> bool {
        self.key_type == o.key_type
            && self.key_len == o.key_len
            && self.interval == o.interval
            && self.elements == o.elements
    }
}

impl Eq for AnonSet {}

/// One set element: key bytes and whether it ends an interval.
///
/// JSON: `{"key": "646f636b657200000000000000000000", "interval_end": false}` (the key in hex).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetElem {
    /// The key, `key_len` bytes.
    #[serde(with = "hex_bytes")]
    pub key: Vec<u8>,
    /// `NFT_SET_ELEM_INTERVAL_END`.
    pub interval_end: bool,
}

/// nft's `TYPE_IFNAME` datatype id, recorded as a set's key type.
pub const TYPE_IFNAME: u32 = 41;

impl AnonSet {
    /// The interval set nft 1.0 builds for interface name patterns (iptables spelling:
    /// `docker+` is the range of names starting with `docker`, an exact name the range of
    /// that one name). Patterns must not overlap (the configuration refuses that).
    pub fn ifnames(patterns: &[&str]) -> AnonSet {
        fn pad(b: &[u8]) -> Vec<u8> {
            let mut v = b.to_vec();
            v.resize(16, 0);
            v
        }
        let mut ranges: Vec<(Vec<u8>, Vec<u8>)> = patterns
            .iter()
            .map(|p| match p.strip_suffix('+') {
                Some(prefix) => {
                    let start = pad(prefix.as_bytes());
                    let mut end = prefix.as_bytes().to_vec();
                    *end.last_mut().expect("a prefix is not empty") += 1;
                    (start, pad(&end))
                }
                None => {
                    let start = pad(p.as_bytes());
                    let mut end = start.clone();
                    // Big-endian +1 of the 16-byte key (the last byte of a valid name
                    // padding is 0, so no carry).
                    end[15] += 1;
                    (start, end)
                }
            })
            .collect();
        ranges.sort();
        // Adjacent ranges (one ends where the next starts, e.g. `veth0*` and `veth1*`)
        // become one, as nft merges them: the kernel then holds what `nft -f` would load.
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if last.1 == start => last.1 = end,
                _ => merged.push((start, end)),
            }
        }
        let mut elements = vec![SetElem { key: vec![0; 16], interval_end: true }];
        for (start, end) in merged {
            elements.push(SetElem { key: start, interval_end: false });
            elements.push(SetElem { key: end, interval_end: true });
        }
        let mut shown: Vec<String> = patterns
            .iter()
            .map(|p| p.strip_suffix('+').map(|x| format!("{x}*")).unwrap_or_else(|| p.to_string()))
            .collect();
        shown.sort();
        AnonSet { key_type: TYPE_IFNAME, key_len: 16, interval: true, elements, patterns: Some(shown) }
    }

    /// The patterns of an interval set of interface names, in nft spelling (`"docker*"`,
    /// `"ecs-bridge"`), or `None` when it is not one ([`AnonSet::ifnames`] inverted).
    pub fn ifname_patterns(&self) -> Option<Vec<String>> {
        if let Some(p) = &self.patterns {
            return Some(p.clone());
        }
        if self.key_type != TYPE_IFNAME || self.key_len != 16 {
            return None;
        }
        if !self.interval {
            // A plain set of exact names.
            return self
                .elements
                .iter()
                .map(|e| {
                    let n = e.key.iter().position(|&b| b == 0).unwrap_or(e.key.len());
                    std::str::from_utf8(&e.key[..n]).ok().map(str::to_string)
                })
                .collect();
        }
        let mut it = self.elements.iter();
        let first = it.next()?;
        if !(first.interval_end && first.key.iter().all(|&b| b == 0)) {
            return None;
        }
        let rest: Vec<&SetElem> = it.collect();
        // The kernel holds keys of `key_len` bytes; a snapshot read back may not.
        if !rest.len().is_multiple_of(2) || rest.iter().any(|e| e.key.len() != 16) {
            return None;
        }
        let mut out = Vec::new();
        for pair in rest.chunks(2) {
            let (start, end) = (pair[0], pair[1]);
            if start.interval_end || !end.interval_end {
                return None;
            }
            let name_len = start.key.iter().position(|&b| b == 0).unwrap_or(16);
            let name = std::str::from_utf8(&start.key[..name_len]).ok()?;
            let mut exact_end = start.key.clone();
            exact_end[15] = exact_end[15].checked_add(1)?;
            if end.key == exact_end {
                out.push(name.to_string());
                continue;
            }
            let mut prefix_end = start.key[..name_len].to_vec();
            *prefix_end.last_mut()? = prefix_end.last()?.checked_add(1)?;
            prefix_end.resize(16, 0);
            if end.key != prefix_end {
                return None;
            }
            out.push(format!("{name}*"));
        }
        Some(out)
    }
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
            Expr::Redir {
                reg_proto_min: Some(REG_1),
                reg_proto_max: Some(REG_1),
                flags: Some(NAT_RANGE_PROTO_SPECIFIED),
            },
        ]
    }
}

/// A table of ours as read from the kernel.
///
/// JSON (the form `snapshot` writes, one object per table; see the [module docs](self)):
///
/// ```json
/// {"family": "inet", "name": "ecs-hostnet", "handle": 7, "comment": "managed by ...",
///  "flags": 0, "record": {"all": "0"}, "chains": [{LiveChain}, ...], "foreign_objects": []}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveTable {
    /// `ip` or `inet` (see [`OWNED_TABLES`]).
    pub family: Family,
    /// `NFTA_TABLE_NAME`; always [`TABLE_NAME`].
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
    /// Every chain of the table, ours or not, in dump order.
    pub chains: Vec<LiveChain>,
    /// Named sets and stateful objects in the table (`set foo`, `object cnt`): ecs-hostnet
    /// makes none, so any is someone else's.
    pub foreign_objects: Vec<String>,
}

/// A chain of one of our tables, as read from the kernel.
///
/// JSON: `{"name": "input", "base": {BaseChain} or null, "rules": [{LiveRule}, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveChain {
    /// `NFTA_CHAIN_NAME`.
    pub name: String,
    /// `None` for a regular chain. A base chain whose hook or type we do not model is read
    /// as an impossible one (postrouting, priority `i32::MIN`, policy drop) so it never
    /// matches a desired chain.
    pub base: Option<BaseChain>,
    /// The chain's rules in kernel (evaluation) order.
    pub rules: Vec<LiveRule>,
}

/// A rule as read from the kernel: its handle, its comment (our id, if it is ours) and its
/// expressions.
///
/// JSON: `{"handle": 4, "comment": "imds-block" or null, "exprs": [{Expr}, ...]}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRule {
    /// Kernel handle (`NFTA_RULE_HANDLE`), what `NFT_MSG_DELRULE` and a rule position name.
    pub handle: u64,
    /// The rule comment (`NFTNL_UDATA_RULE_COMMENT` in `NFTA_RULE_USERDATA`); for our rules
    /// the [`Rule::id`], `None` when the rule has none.
    pub comment: Option<String>,
    /// The rule's expressions as dumped; anything we do not model is an [`Expr::Other`].
    pub exprs: Vec<Expr>,
}

/// The values of `net.ipv4.conf.<selector>.route_localnet` that ecs-hostnet found before it
/// first changed them, by selector (`all` or an interface name), e.g. `{"all": "0"}`.
///
/// It is kept in the kernel, in the userdata of `table inet ecs-hostnet` (TLV type
/// [`record::UDATA_TYPE`], which nft ignores), so it is written in the same transaction as
/// the localhost guard, lives exactly as long as the rule set in that network namespace,
/// and `remove` can put the values back.
///
/// JSON: an object of strings, keys in sorted order: `{"all": "0", "docker0": "1"}`.
pub type Record = std::collections::BTreeMap<String, String>;

/// Encoding of [`Record`] in table userdata.
pub mod record {
    use super::Record;

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
}

#[cfg(test)]
mod set_tests {
    use super::*;

    #[test]
    fn interface_pattern_sets_are_nfts_intervals_and_read_back() {
        let s = AnonSet::ifnames(&["ecs-bridge", "docker+", "br-+"]);
        // nft 1.0.6 sends exactly these elements for iifname { "docker*", "br-*", "ecs-bridge" }.
        let hex: Vec<String> = s
            .elements
            .iter()
            .map(|e| {
                format!(
                    "{}{}",
                    e.key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
                    if e.interval_end { "E" } else { "" }
                )
            })
            .collect();
        assert_eq!(
            hex,
            [
                "00000000000000000000000000000000E",
                "62722d00000000000000000000000000",
                "62722e00000000000000000000000000E",
                "646f636b657200000000000000000000",
                "646f636b657300000000000000000000E",
                "6563732d627269646765000000000000",
                "6563732d627269646765000000000001E",
            ]
        );
        assert_eq!(s.ifname_patterns().unwrap(), ["br-*", "docker*", "ecs-bridge"]);
        let mut broken = s.clone();
        broken.elements.pop();
        broken.patterns = None;
        assert_eq!(broken.ifname_patterns(), None);
        // Adjacent ranges merge (nft does the same), and still print as written.
        let adj = AnonSet::ifnames(&["veth1+", "veth0+"]);
        assert_eq!(adj.elements.len(), 3, "{adj:?}");
        assert_eq!(adj.ifname_patterns().unwrap(), ["veth0*", "veth1*"]);
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    /// Our tables as a converged host holds them (like the planner tests' `converged()`),
    /// plus what the kernel may also report: a foreign expression, a set lookup, a regular
    /// chain, a rule without a comment.
    fn live_default() -> Vec<LiveTable> {
        let d = crate::compile::compile(&crate::config::default_config());
        let mut tables = crate::plan::converged_host(&d, "0").tables;
        let last = tables.last_mut().unwrap();
        last.foreign_objects.push("set blocked".to_string());
        last.chains.push(LiveChain {
            name: "extra".to_string(),
            base: None,
            rules: vec![
                LiveRule {
                    handle: u64::MAX,
                    comment: None,
                    exprs: vec![
                        Expr::Meta { key: meta::IIFNAME, dreg: REG_1 },
                        Expr::Lookup { sreg: REG_1, set: AnonSet::ifnames(&["docker+", "br-+"]), invert: true },
                        Expr::Counter,
                        Expr::Other { name: "log".to_string(), text: "[ log prefix \"x \\\" y\" ]".to_string() },
                        Expr::Verdict(Verdict::Accept),
                    ],
                },
                LiveRule {
                    handle: 99,
                    comment: Some(String::new()),
                    exprs: vec![
                        Expr::Immediate { dreg: REG_1, data: vec![] },
                        Expr::Redir { reg_proto_min: None, reg_proto_max: None, flags: None },
                    ],
                },
            ],
        });
        tables.push(LiveTable {
            family: Family::Ip6,
            name: TABLE_NAME.to_string(),
            handle: 12,
            comment: None,
            flags: 1,
            record: None,
            chains: vec![],
            foreign_objects: vec![],
        });
        tables
    }

    /// Every set in the tables with its patterns, which `==` on [`AnonSet`] ignores.
    fn patterns(tables: &[LiveTable]) -> Vec<Option<Vec<String>>> {
        let rules = tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules);
        rules
            .flat_map(|r| &r.exprs)
            .filter_map(|e| match e {
                Expr::Lookup { set, .. } => Some(set.patterns.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn live_tables_round_trip_through_json() {
        let tables = live_default();
        let json = serde_json::to_string_pretty(&tables).unwrap();
        let back: Vec<LiveTable> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, tables);
        assert_eq!(patterns(&back), patterns(&tables));
        assert!(patterns(&back).iter().any(|p| p.is_some()), "{json}");
        assert_eq!(serde_json::to_string_pretty(&back).unwrap(), json);
        // A set read from the kernel has no patterns: null, kept as None.
        let mut kernel = tables.clone();
        for t in &mut kernel {
            for c in &mut t.chains {
                for r in &mut c.rules {
                    for e in &mut r.exprs {
                        if let Expr::Lookup { set, .. } = e {
                            set.patterns = None;
                        }
                    }
                }
            }
        }
        let json = serde_json::to_string(&kernel).unwrap();
        assert!(json.contains(r#""patterns":null"#), "{json}");
        let back: Vec<LiveTable> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, kernel);
        assert!(patterns(&back).iter().all(|p| p.is_none()));
        // Nothing is left out: every None is an explicit null.
        for key in ["\"comment\":null", "\"base\":null", "\"record\":null", "\"flags\":null"] {
            assert!(json.contains(key), "{key} in {json}");
        }
    }

    #[test]
    fn default_table_json_is_readable() {
        let tables = live_default();
        let ip = serde_json::to_value(&tables[0]).unwrap();
        assert_eq!(ip["family"], "ip");
        assert_eq!(ip["comment"], TABLE_COMMENT);
        assert_eq!(ip["record"], serde_json::Value::Null);
        let base = &ip["chains"][0]["base"];
        assert_eq!(
            base,
            &serde_json::json!({"chain_type": "nat", "hook": "prerouting", "priority": -100, "policy_accept": true})
        );
        let inet = serde_json::to_value(&tables[1]).unwrap();
        assert_eq!(inet["record"], serde_json::json!({"all": "0"}));
    }

    #[test]
    fn each_expression_has_its_exact_json() {
        let cases: Vec<(Expr, &str)> = vec![
            (Expr::Meta { key: meta::IIFNAME, dreg: REG_1 }, r#"{"expr":"meta","key":6,"dreg":1}"#),
            (
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 4, dreg: REG_1 },
                r#"{"expr":"payload","base":1,"offset":16,"len":4,"dreg":1}"#,
            ),
            (
                Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: vec![0xa9, 0xfe, 0xa9, 0x02] },
                r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9fea902"}"#,
            ),
            (
                Expr::Cmp { sreg: REG_1, op: CmpOp::Neq, data: vec![] },
                r#"{"expr":"cmp","sreg":1,"op":"neq","data":""}"#,
            ),
            (
                Expr::Bitwise { sreg: REG_1, dreg: REG_1, len: 4, mask: vec![0x20, 0, 0, 0], xor: vec![0; 4] },
                r#"{"expr":"bitwise","sreg":1,"dreg":1,"len":4,"mask":"20000000","xor":"00000000"}"#,
            ),
            (Expr::Ct { key: ct::STATUS, dreg: REG_1 }, r#"{"expr":"ct","key":2,"dreg":1}"#),
            (Expr::Counter, r#"{"expr":"counter"}"#),
            (Expr::Immediate { dreg: REG_2, data: vec![0x0f, 0xff] }, r#"{"expr":"immediate","dreg":2,"data":"0fff"}"#),
            (Expr::Verdict(Verdict::Drop), r#"{"expr":"verdict","verdict":"drop"}"#),
            (Expr::Verdict(Verdict::Accept), r#"{"expr":"verdict","verdict":"accept"}"#),
            (
                Expr::Nat {
                    nat_type: NAT_TYPE_DNAT,
                    family: 2,
                    reg_addr_min: Some(1),
                    reg_addr_max: Some(1),
                    reg_proto_min: Some(2),
                    reg_proto_max: None,
                    flags: Some(3),
                },
                concat!(
                    r#"{"expr":"nat","nat_type":1,"family":2,"reg_addr_min":1,"reg_addr_max":1,"#,
                    r#""reg_proto_min":2,"reg_proto_max":null,"flags":3}"#
                ),
            ),
            (
                Expr::Redir { reg_proto_min: Some(1), reg_proto_max: Some(1), flags: None },
                r#"{"expr":"redir","reg_proto_min":1,"reg_proto_max":1,"flags":null}"#,
            ),
            (
                Expr::Lookup {
                    sreg: REG_1,
                    set: AnonSet {
                        key_type: TYPE_IFNAME,
                        key_len: 16,
                        interval: false,
                        elements: vec![SetElem { key: b"eth0\0\0\0\0\0\0\0\0\0\0\0\0".to_vec(), interval_end: false }],
                        patterns: None,
                    },
                    invert: false,
                },
                concat!(
                    r#"{"expr":"lookup","sreg":1,"set":{"key_type":41,"key_len":16,"interval":false,"#,
                    r#""elements":[{"key":"65746830000000000000000000000000","interval_end":false}],"#,
                    r#""patterns":null},"invert":false}"#
                ),
            ),
            (
                Expr::Other { name: "log".to_string(), text: "[ log ]".to_string() },
                r#"{"expr":"other","name":"log","text":"[ log ]"}"#,
            ),
        ];
        for (expr, want) in &cases {
            assert_eq!(serde_json::to_string(expr).unwrap(), *want, "{expr:?}");
            assert_eq!(&serde_json::from_str::<Expr>(want).unwrap(), expr, "{want}");
        }
        // Upper-case hex and a missing Option field are accepted on input.
        let e: Expr = serde_json::from_str(r#"{"expr":"redir","reg_proto_min":1,"reg_proto_max":1}"#).unwrap();
        assert_eq!(e, Expr::Redir { reg_proto_min: Some(1), reg_proto_max: Some(1), flags: None });
        let e: Expr = serde_json::from_str(r#"{"data":"A9FE","expr":"cmp","sreg":1,"op":"eq"}"#).unwrap();
        assert_eq!(e, Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![0xa9, 0xfe] });
    }

    fn refusal<T: serde::de::DeserializeOwned + std::fmt::Debug>(json: &str) -> String {
        serde_json::from_str::<T>(json).expect_err(json).to_string()
    }

    #[test]
    fn malformed_json_is_refused_with_the_reason() {
        let cases: &[(&str, &str)] = &[
            (r#"{"expr":"meta","key":6,"dreg":1,"sreg":2}"#, "unknown field `sreg`"),
            (r#"{"expr":"counter","packets":3}"#, "unknown field `packets`"),
            (r#"{"expr":"verdict","verdict":"drop","chain":"x"}"#, "unknown field `chain`"),
            (r#"{"expr":"verdict","verdict":"return"}"#, "unknown variant `return`"),
            (r#"{"expr":"verdict"}"#, "missing field `verdict`"),
            (r#"{"expr":"masq"}"#, "unknown variant `masq`"),
            (r#"{"key":6,"dreg":1}"#, "missing field `expr`"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9f"}"#, "odd length 3"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9fz"}"#, "'z' at offset 3 is not a hex digit"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":"a9 f"}"#, "' ' at offset 2 is not a hex digit"),
            (r#"{"expr":"cmp","sreg":1,"op":"eq","data":[169]}"#, "expected a hex byte string"),
            (r#"{"expr":"cmp","sreg":1,"op":"gt","data":""}"#, "unknown variant `gt`"),
            (r#"{"expr":"immediate","dreg":1,"data":"é0"}"#, "not a hex digit"),
            (r#"{"expr":"meta","key":-1,"dreg":1}"#, "invalid value: integer `-1`"),
        ];
        for (json, want) in cases {
            let e = refusal::<Expr>(json);
            assert!(e.contains(want), "{json}: {e}");
        }
        let table = concat!(
            r#"{"family":"ip","name":"ecs-hostnet","handle":1,"comment":null,"flags":0,"record":null,"#,
            r#""chains":[],"foreign_objects":[]}"#
        );
        serde_json::from_str::<LiveTable>(table).unwrap();
        let e = refusal::<LiveTable>(&table.replace("[]}", "[],\"sets\":[]}"));
        assert!(e.contains("unknown field `sets`"), "{e}");
        let e = refusal::<LiveTable>(&table.replace("\"ip\"", "\"arp\""));
        assert!(e.contains("unknown variant `arp`"), "{e}");
        let e = refusal::<LiveTable>(&table.replace("\"handle\":1,", ""));
        assert!(e.contains("missing field `handle`"), "{e}");
        let e = refusal::<LiveChain>(concat!(
            r#"{"name":"c","rules":[],"#,
            r#""base":{"chain_type":"nat","hook":"input","priority":0,"policy_accept":true,"device":"lo"}}"#
        ));
        assert!(e.contains("unknown field `device`"), "{e}");
        let e = refusal::<LiveRule>(r#"{"handle":1,"comment":null,"exprs":[],"position":0}"#);
        assert!(e.contains("unknown field `position`"), "{e}");
        let e = refusal::<SetElem>(r#"{"key":"00","interval_end":false,"flags":0}"#);
        assert!(e.contains("unknown field `flags`"), "{e}");
        let e = refusal::<SetElem>(r#"{"key":"0","interval_end":false}"#);
        assert!(e.contains("odd length 1"), "{e}");
        let e = refusal::<AnonSet>(
            r#"{"key_type":41,"key_len":16,"interval":true,"elements":[],"patterns":null,"name":"__set0"}"#,
        );
        assert!(e.contains("unknown field `name`"), "{e}");
    }

    #[test]
    fn sets_with_short_keys_from_a_snapshot_do_not_panic() {
        let mut s = AnonSet::ifnames(&["docker+", "br-+"]);
        s.patterns = None;
        for e in &mut s.elements[1..] {
            e.key.truncate(4);
        }
        let json = serde_json::to_string(&s).unwrap();
        let back: AnonSet = serde_json::from_str(&json).unwrap();
        assert_eq!(back.ifname_patterns(), None);
    }
}
