//! What the kernel tells a listener about changes, as `ecs-hostnet watch` sees them: the
//! nf_tables notifications of one committed transaction ([`NftEvent`], multicast group
//! `NFNLGRP_NFTABLES`) and the link and default-route changes of rtnetlink ([`RtEvent`]).
//! Decoded by `host` (its event sockets), judged by `plan::watch`.
//!
//! The numbers are the kernel's, from `include/uapi/linux/netfilter/nf_tables.h`
//! (`enum nf_tables_msg_types`) and `include/uapi/linux/netfilter/nfnetlink.h`.

/// `NFNL_SUBSYS_NFTABLES`: the netlink message type of an nf_tables message is
/// `NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_*`.
pub const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// `NFNLGRP_NFTABLES` (`enum nfnetlink_groups`): the multicast group of nf_tables notifications.
pub const NFNLGRP_NFTABLES: u32 = 7;

/// The `NFT_MSG_*` types a notification can carry (`enum nf_tables_msg_types`).
pub mod msg {
    /// `NFT_MSG_NEWTABLE`.
    pub const NEWTABLE: u8 = 0;
    /// `NFT_MSG_DELTABLE`.
    pub const DELTABLE: u8 = 2;
    /// `NFT_MSG_NEWCHAIN`.
    pub const NEWCHAIN: u8 = 3;
    /// `NFT_MSG_DELCHAIN`.
    pub const DELCHAIN: u8 = 5;
    /// `NFT_MSG_NEWRULE`.
    pub const NEWRULE: u8 = 6;
    /// `NFT_MSG_DELRULE`.
    pub const DELRULE: u8 = 8;
    /// `NFT_MSG_NEWSET`.
    pub const NEWSET: u8 = 9;
    /// `NFT_MSG_DELSET`.
    pub const DELSET: u8 = 11;
    /// `NFT_MSG_NEWSETELEM`.
    pub const NEWSETELEM: u8 = 12;
    /// `NFT_MSG_DELSETELEM`.
    pub const DELSETELEM: u8 = 14;
    /// `NFT_MSG_NEWGEN`: sent after the notifications of each committed transaction.
    pub const NEWGEN: u8 = 15;
    /// `NFT_MSG_NEWOBJ`.
    pub const NEWOBJ: u8 = 18;
    /// `NFT_MSG_DELOBJ`.
    pub const DELOBJ: u8 = 20;
    /// `NFT_MSG_NEWFLOWTABLE`.
    pub const NEWFLOWTABLE: u8 = 22;
    /// `NFT_MSG_DELFLOWTABLE`.
    pub const DELFLOWTABLE: u8 = 24;
    /// `NFT_MSG_DESTROYTABLE` (kernel 6.3+; notified as `DELTABLE`, listed for completeness).
    pub const DESTROYTABLE: u8 = 26;
    /// `NFT_MSG_DESTROYFLOWTABLE`, the last destroy type (6.3+).
    pub const DESTROYFLOWTABLE: u8 = 32;
}

/// What a notification did to an object: made or changed it, or deleted it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    /// `NFT_MSG_NEW*`: created, or (with `NLM_F_REPLACE`) replaced.
    New,
    /// `NFT_MSG_DEL*` / `NFT_MSG_DESTROY*`: deleted.
    Del,
}

/// The kind of object a notification is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// A table.
    Table,
    /// A chain.
    Chain,
    /// A rule.
    Rule,
    /// A set.
    Set,
    /// Elements of a set.
    SetElem,
    /// A stateful object (counter, quota, ...).
    Obj,
    /// A flowtable.
    Flowtable,
}

impl Object {
    /// The kind and verb of an `NFT_MSG_*` type; `None` for GET and GEN types and unknown ones.
    pub fn of(msg_type: u8) -> Option<(Object, Verb)> {
        use Object::*;
        use Verb::*;
        Some(match msg_type {
            msg::NEWTABLE => (Table, New),
            msg::DELTABLE | msg::DESTROYTABLE => (Table, Del),
            msg::NEWCHAIN => (Chain, New),
            msg::DELCHAIN | 27 => (Chain, Del),
            msg::NEWRULE => (Rule, New),
            msg::DELRULE | 28 => (Rule, Del),
            msg::NEWSET => (Set, New),
            msg::DELSET | 29 => (Set, Del),
            msg::NEWSETELEM => (SetElem, New),
            msg::DELSETELEM | 30 => (SetElem, Del),
            msg::NEWOBJ => (Obj, New),
            msg::DELOBJ | 31 => (Obj, Del),
            msg::NEWFLOWTABLE => (Flowtable, New),
            msg::DELFLOWTABLE | msg::DESTROYFLOWTABLE => (Flowtable, Del),
            _ => return None,
        })
    }
}

/// One nf_tables notification about an object, or the end of a transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftEvent {
    /// An object notification (`NFT_MSG_NEW*`/`DEL*`).
    Object {
        /// The `NFT_MSG_*` type (the low byte of the netlink type).
        msg_type: u8,
        /// `nfgenmsg.nfgen_family` (`NFPROTO_*`: 1 inet, 2 ip, 10 ip6, 3 arp, 5 netdev, 7 bridge).
        family: u8,
        /// The table's name (attribute 1 in every object message: `NFTA_TABLE_NAME`,
        /// `NFTA_CHAIN_TABLE`, `NFTA_RULE_TABLE`, `NFTA_SET_TABLE`, `NFTA_SET_ELEM_LIST_TABLE`,
        /// `NFTA_OBJ_TABLE`, `NFTA_FLOWTABLE_TABLE`); `None` when absent.
        table: Option<String>,
        /// The chain's name for chain (`NFTA_CHAIN_NAME`, 3) and rule (`NFTA_RULE_CHAIN`, 2)
        /// messages.
        chain: Option<String>,
    },
    /// `NFT_MSG_NEWGEN`: the transaction whose notifications came before it is committed.
    NewGen {
        /// `NFTA_GEN_ID` (1): the rule-set generation after the commit.
        id: u32,
        /// `NFTA_GEN_PROC_PID` (2): the committing task's pid (in the kernel's initial pid
        /// namespace); 0 when absent.
        pid: u32,
        /// `NFTA_GEN_PROC_NAME` (3): its `comm` (at most 15 bytes); empty when absent.
        name: String,
    },
}

/// What one read of the nf_tables event socket gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NftReceived {
    /// Notifications, in the kernel's order (possibly none).
    Events(Vec<NftEvent>),
    /// The socket's receive queue overran (`ENOBUFS`): notifications were dropped, so the
    /// listener must read the rule set itself.
    Lost,
}

/// An rtnetlink change the watcher cares about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtEvent {
    /// `RTM_NEWLINK` with `IFLA_IFNAME`: an interface appeared, was renamed or changed.
    Link {
        /// Its name.
        name: String,
        /// Its index (`ifi_index`), which stays meaningful after the link is gone.
        index: u32,
    },
    /// `RTM_NEWROUTE`/`RTM_DELROUTE` of an IPv4 unicast default route (dst_len 0) in the
    /// main table.
    Ipv4DefaultRoute {
        /// `true` for a new route, `false` for a deleted one.
        added: bool,
    },
    /// `RTM_NEWROUTE`/`RTM_DELROUTE` of an IPv4 route to one address (dst_len 32) in the
    /// main table, any type: the endpoint route `169.254.170.2/32 dev lo` is one.
    Ipv4HostRoute {
        /// Its destination (`RTA_DST`).
        dst: std::net::Ipv4Addr,
        /// `true` for a new route, `false` for a deleted one.
        added: bool,
    },
}

/// The nft name of an `NFPROTO_*` family number (`ip`, `ip6`, `inet`, `arp`, `bridge`,
/// `netdev`), or the number itself.
pub fn family_name(family: u8) -> String {
    match family {
        1 => "inet".into(),
        2 => "ip".into(),
        3 => "arp".into(),
        5 => "netdev".into(),
        7 => "bridge".into(),
        10 => "ip6".into(),
        n => format!("family {n}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_types_map_to_kind_and_verb() {
        assert_eq!(Object::of(msg::DELTABLE), Some((Object::Table, Verb::Del)));
        assert_eq!(Object::of(msg::NEWRULE), Some((Object::Rule, Verb::New)));
        assert_eq!(Object::of(28), Some((Object::Rule, Verb::Del)), "NFT_MSG_DESTROYRULE");
        assert_eq!(Object::of(msg::NEWGEN), None);
        assert_eq!(Object::of(1), None, "NFT_MSG_GETTABLE");
        assert_eq!(family_name(1), "inet");
        assert_eq!(family_name(99), "family 99");
    }
}
