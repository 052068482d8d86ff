//! nf_tables trace events (`NFT_MSG_TRACE`, what `nft monitor trace` prints) as `verify`
//! reads them: one [`TraceEvent`] per table/chain/rule that saw a traced packet, with its
//! verdict, and the packet's addresses and ports ([`Packet`]) parsed from the network and
//! transport headers the kernel copies into the event.

use std::net::IpAddr;

/// What a trace event reports (`enum nft_trace_types`, include/uapi/linux/netfilter/nf_tables.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TraceType {
    /// `NFT_TRACETYPE_RULE` (3): a rule matched and gave its verdict.
    Rule,
    /// `NFT_TRACETYPE_RETURN` (2): the end of a regular chain (back to the caller).
    Return,
    /// `NFT_TRACETYPE_POLICY` (1): the end of a base chain; its policy decided.
    Policy,
    /// Any other number.
    Other,
}

impl TraceType {
    /// From the `NFTA_TRACE_TYPE` number.
    pub fn from_number(n: u32) -> TraceType {
        match n {
            1 => TraceType::Policy,
            2 => TraceType::Return,
            3 => TraceType::Rule,
            _ => TraceType::Other,
        }
    }
}

/// A verdict as the trace reports it (`NFTA_VERDICT_CODE`: the netfilter hook verdicts
/// `NF_DROP` 0, `NF_ACCEPT` 1, `NF_STOLEN` 2, `NF_QUEUE` 3, and nf_tables' own
/// `NFT_CONTINUE` -1, `NFT_BREAK` -2, `NFT_JUMP` -3, `NFT_GOTO` -4, `NFT_RETURN` -5), or
/// the policy of a base chain (`NFTA_TRACE_POLICY`: 0 drop, 1 accept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `drop`: final for the packet, whatever any other chain says.
    Drop,
    /// `accept`: ends this base chain only.
    Accept,
    /// `NF_STOLEN`: the packet was taken (e.g. by a queue or a `dup`/`fwd`).
    Stolen,
    /// `queue`: handed to user space.
    Queue,
    /// `continue`: the rule matched and evaluation goes on (a counter, a mark, a NAT
    /// statement reports its verdict separately).
    Continue,
    /// `break`: the rule did not match further.
    Break,
    /// `jump CHAIN`.
    Jump(String),
    /// `goto CHAIN`.
    Goto(String),
    /// `return`.
    Return,
    /// Any other code.
    Other(i32),
}

impl Verdict {
    /// From a verdict code and its target chain (`NFTA_VERDICT_CHAIN`).
    pub fn from_code(code: i32, chain: Option<String>) -> Verdict {
        match code {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            2 => Verdict::Stolen,
            3 => Verdict::Queue,
            -1 => Verdict::Continue,
            -2 => Verdict::Break,
            -3 => Verdict::Jump(chain.unwrap_or_default()),
            -4 => Verdict::Goto(chain.unwrap_or_default()),
            -5 => Verdict::Return,
            n => Verdict::Other(n),
        }
    }

    /// The verdict in nft syntax (`drop`, `jump DOCKER`).
    pub fn text(&self) -> String {
        match self {
            Verdict::Drop => "drop".into(),
            Verdict::Accept => "accept".into(),
            Verdict::Stolen => "stolen".into(),
            Verdict::Queue => "queue".into(),
            Verdict::Continue => "continue".into(),
            Verdict::Break => "break".into(),
            Verdict::Jump(c) => format!("jump {c}"),
            Verdict::Goto(c) => format!("goto {c}"),
            Verdict::Return => "return".into(),
            Verdict::Other(n) => format!("verdict {n}"),
        }
    }
}

/// The addresses and ports of a traced packet, from `NFTA_TRACE_NETWORK_HEADER` (an IPv4
/// or IPv6 header) and `NFTA_TRACE_TRANSPORT_HEADER` (TCP or UDP: the ports are its first
/// four bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Source address.
    pub src: IpAddr,
    /// Destination address (as the chain saw it: after a DNAT in an earlier chain).
    pub dst: IpAddr,
    /// Transport protocol number (6 TCP).
    pub proto: u8,
    /// Source port; 0 when there is no transport header.
    pub sport: u16,
    /// Destination port; 0 when there is no transport header.
    pub dport: u16,
}

/// One trace event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceEvent {
    /// `NFTA_TRACE_ID`: the same for every event of one packet.
    pub id: u32,
    /// The table's family (`nfgenmsg.nfgen_family`: 1 inet, 2 ip, 10 ip6, 7 bridge, ...).
    pub family: u8,
    /// `NFTA_TRACE_TYPE`.
    pub kind: TraceType,
    /// `NFTA_TRACE_TABLE`.
    pub table: String,
    /// `NFTA_TRACE_CHAIN`.
    pub chain: String,
    /// `NFTA_TRACE_RULE_HANDLE`: the rule that gave the verdict (rule events).
    pub handle: Option<u64>,
    /// `NFTA_TRACE_VERDICT`, or for a policy event `NFTA_TRACE_POLICY`.
    pub verdict: Option<Verdict>,
    /// `NFTA_TRACE_NFPROTO`: the hook's protocol family (2 IPv4, 10 IPv6).
    pub nfproto: Option<u32>,
    /// `NFTA_TRACE_IIF`: the input interface index.
    pub iif: Option<u32>,
    /// `NFTA_TRACE_OIF`: the output interface index.
    pub oif: Option<u32>,
    /// The packet, when its headers were included and parse.
    pub packet: Option<Packet>,
    /// The TCP flags byte (byte 13 of the TCP header: `0x02` SYN, `0x10` ACK) when the
    /// event carries a TCP transport header: tells a probe's SYN from its handshake's ACK,
    /// which share addresses and ports.
    pub tcp_flags: Option<u8>,
}

/// TCP's SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP's ACK flag.
pub const TCP_ACK: u8 = 0x10;

/// The family keyword of a table family number (`nfgen_family`).
pub fn family_name(family: u8) -> &'static str {
    match family {
        1 => "inet",
        2 => "ip",
        3 => "arp",
        5 => "netdev",
        7 => "bridge",
        10 => "ip6",
        _ => "?",
    }
}
