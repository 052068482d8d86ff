//! What the IMDS audit speaks of: a packet the audit rule copied to nfnetlink_log
//! ([`Attempt`], as the watcher receives it) and the Docker container that sent it
//! ([`Container`]).

use crate::model::trace::Packet;

/// One IMDS attempt as an audit rule logged it (`NFULNL_MSG_PACKET` of the nfnetlink_log
/// group): the packet's family, the interface it arrived on, the rule's prefix and the
/// addresses, protocol and ports of the copied headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The packet's family (`nfgen_family`: `NFPROTO_IPV6` 10), else IPv4.
    pub ipv6: bool,
    /// `NFULA_IFINDEX_INDEV`: the interface index it arrived on (the bridge, for a
    /// container); `None` when the kernel did not say.
    pub indev: Option<u32>,
    /// `NFULA_IFINDEX_PHYSINDEV`: the bridge port it came in through (for a container on a
    /// bridge: its host-side veth); `None` when the kernel did not say (it says only for a
    /// packet that br_netfilter handed to the IP hooks, as Docker's hosts have it).
    pub physindev: Option<u32>,
    /// `NFULA_PREFIX`: the audit rule's log prefix (its id, e.g. `imds-audit-ipv4`);
    /// empty when none.
    pub prefix: String,
    /// Addresses, protocol and ports; `None` when the copied bytes are not an IPv4 or IPv6
    /// header.
    pub packet: Option<Packet>,
}

/// A Docker container that has an address (`GET /containers/json`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// The container id (64 hex digits); people see its first 12, as `docker ps` shows.
    pub id: String,
    /// Its name without Docker's leading `/` (`web`).
    pub name: String,
}

impl Container {
    /// The id as `docker ps` shows it: the first 12 characters.
    pub fn short_id(&self) -> &str {
        self.id.get(..12).unwrap_or(&self.id)
    }
}
