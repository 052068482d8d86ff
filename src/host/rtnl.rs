//! Routes over rtnetlink (`NETLINK_ROUTE`), with the rust-netlink crates
//! (netlink-packet-route for the messages, netlink-sys for the socket).
//!
//! Used for the awsvpc task IMDS block (BLACKHOLE routes to `169.254.169.254/32` and
//! `fd00:ec2::254/128` inside each task's network namespace, what the ECS agent's CNI
//! plugin installs with `ECS_AWSVPC_BLOCK_IMDS=true`). Routes ecs-hostnet adds carry the
//! route protocol [`ROUTE_PROTOCOL`], so `remove` only ever deletes its own. Also used
//! for the endpoint route (`dev lo`), to read whether `lo` is up, and to read the
//! interfaces the default routes leave through (the uplinks, [`Rtnl::host_routes`] and
//! [`Rtnl::uplinks`]).
//!
//! Owns the rtnetlink socket ([`Rtnl`]) and its failures ([`Error`]).

use netlink_packet_core::{
    DecodeError, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage,
    NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use std::net::IpAddr;

use crate::model::route::*;

/// An rtnetlink failure. OS errors of the socket are the
/// [`source`](std::error::Error::source) (printed after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// socket(2) failed.
    #[error("cannot open a NETLINK_ROUTE socket")]
    Open {
        /// The OS error.
        source: std::io::Error,
    },
    /// bind(2) failed.
    #[error("cannot bind the NETLINK_ROUTE socket")]
    Bind {
        /// The OS error.
        source: std::io::Error,
    },
    /// connect(2) to the kernel failed.
    #[error("cannot connect the NETLINK_ROUTE socket")]
    Connect {
        /// The OS error.
        source: std::io::Error,
    },
    /// Sending a request failed.
    #[error("rtnetlink send")]
    Send {
        /// The OS error.
        source: std::io::Error,
    },
    /// Receiving an answer failed (including the 5 s receive timeout: `EAGAIN`).
    #[error("rtnetlink receive")]
    Receive {
        /// The OS error.
        source: std::io::Error,
    },
    /// An answer could not be decoded.
    #[error("cannot parse an rtnetlink answer: {error}")]
    Parse {
        /// The decoder's complaint.
        error: DecodeError,
    },
    /// An answer's header says its length is 0 (it would never end).
    #[error("rtnetlink answer with length 0")]
    ZeroLength,
    /// The kernel answered the request with an errno (`NLMSG_ERROR`). Printed as the
    /// errno's text alone.
    #[error(transparent)]
    Kernel(std::io::Error),
    /// Adding a route failed (see [`Error::is_exists`] for the case [`Rtnl::add`] forgives).
    #[error("cannot add route {spec}")]
    Add {
        /// The route.
        spec: RouteSpec,
        /// Why.
        source: Box<Error>,
    },
    /// Deleting one of our routes failed.
    #[error("cannot delete route {spec}")]
    Delete {
        /// The route.
        spec: RouteSpec,
        /// Why.
        source: Box<Error>,
    },
    /// Deleting a route in the way of ours failed.
    #[error("cannot delete route {route}")]
    DeleteInTheWay {
        /// The route as read.
        route: LiveRoute,
        /// Why.
        source: Box<Error>,
    },
}

impl Error {
    /// The errno the kernel answered with, looking through [`Error::Add`] and the deletes.
    pub fn kernel_errno(&self) -> Option<Errno> {
        match self {
            Error::Kernel(e) => e.raw_os_error().map(Errno::from_raw),
            Error::Add { source, .. } | Error::Delete { source, .. } | Error::DeleteInTheWay { source, .. } => {
                source.kernel_errno()
            }
            _ => None,
        }
    }

    /// Whether the kernel answered `EEXIST`: the route (or one with the same key) exists.
    pub fn is_exists(&self) -> bool {
        self.kernel_errno() == Some(Errno::EEXIST)
    }
}

/// What one route dump says about the host (see [`Rtnl::host_routes`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostRoutes {
    /// The main table's IPv4 routes with a destination that the caller selected.
    pub ipv4_routes: Vec<LiveRoute>,
    /// Whether the main table has an IPv4 unicast default route.
    pub ipv4_default_route: bool,
    /// The family and interface index of every next hop of the main table's unicast
    /// default routes, IPv4 and IPv6; sorted, without duplicates. [`Rtnl::uplinks`] names
    /// them.
    pub default_route_oifs: Vec<(IpFamily, u32)>,
}

fn family(ip: &IpAddr) -> AddressFamily {
    if ip.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 }
}

fn message(spec: &RouteSpec) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = family(&spec.dest);
    m.header.destination_prefix_length = spec.prefix_len;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.protocol = RouteProtocol::Other(ROUTE_PROTOCOL);
    m.attributes.push(RouteAttribute::Destination(RouteAddress::from(spec.dest)));
    match spec.kind {
        RouteKind::Blackhole => {
            m.header.kind = RouteType::BlackHole;
            m.header.scope = RouteScope::Universe;
        }
        RouteKind::DevLo => {
            m.header.kind = RouteType::Unicast;
            m.header.scope = RouteScope::Link;
            m.attributes.push(RouteAttribute::Oif(LOOPBACK_IFINDEX));
            // Without a preferred source a link-scope route via lo picks 0.0.0.0 (lo's
            // 127.0.0.1 has host scope) and the redirected connection never completes.
            m.attributes.push(RouteAttribute::PrefSource(RouteAddress::Inet(std::net::Ipv4Addr::LOCALHOST)));
        }
    }
    m
}

fn protocol_number(p: RouteProtocol) -> u8 {
    u8::from(p)
}

/// An rtnetlink socket in the network namespace of the thread that opened it.
pub struct Rtnl {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Rtnl {
    /// Opens a `NETLINK_ROUTE` socket, with extended acks and a 5 s receive timeout.
    ///
    /// Errors: [`Error::Open`], [`Error::Bind`], [`Error::Connect`].
    pub fn open() -> Result<Rtnl, Error> {
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(|source| Error::Open { source })?;
        sock.bind_auto().map_err(|source| Error::Bind { source })?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(|source| Error::Connect { source })?;
        let _ = sock.set_ext_ack(true);
        // The kernel answers within the request; never wait forever for an answer that
        // will not come. (Best effort, as extended acks.)
        let _ = setsockopt(&sock, ReceiveTimeout, &TimeVal::new(5, 0));
        // Filled through `BufMut` (spare capacity, never zeroed); 32 KiB is the most the
        // kernel puts in one dump read (`SKB_WITH_OVERHEAD(32768)`, net/netlink/af_netlink.c).
        Ok(Rtnl { sock, seq: 0, buf: Vec::with_capacity(32 * 1024) })
    }

    /// Sends one request and collects the answers of its sequence number up to the
    /// `NLMSG_DONE` or the ack.
    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.request_filtered(msg, flags, |_| true)
    }

    /// [`Rtnl::request`], skipping unparsed every answer whose raw bytes (its netlink
    /// header first) `wanted` refuses: a dump of every family holds messages this crate
    /// has no use for, and an unusual one must not fail the whole read.
    fn request_filtered(
        &mut self,
        msg: RouteNetlinkMessage,
        flags: u16,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<RouteNetlinkMessage>, Error> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        self.sock.send(&bytes, 0).map_err(|source| Error::Send { source })?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0).map_err(|source| Error::Receive { source })?;
            let n = self.buf.len();
            let mut off = 0;
            while off < n {
                let raw = &self.buf[off..n];
                if raw.len() >= NLMSG_HEADER_LEN && !wanted(raw) {
                    let len = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
                    if len < NLMSG_HEADER_LEN {
                        return Err(Error::ZeroLength);
                    }
                    off += len.next_multiple_of(4);
                    continue;
                }
                let m =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(raw).map_err(|error| Error::Parse { error })?;
                let len = m.header.length as usize;
                if len == 0 {
                    return Err(Error::ZeroLength);
                }
                off += len.next_multiple_of(4);
                if m.header.sequence_number != self.seq {
                    continue;
                }
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(out),
                    NetlinkPayload::Error(e) => {
                        return match e.code {
                            None => Ok(out),
                            Some(_) => Err(Error::Kernel(e.to_io())),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn dump_main(&mut self, ipv6: bool) -> Result<Vec<RouteMessage>, Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = if ipv6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let all = self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .filter(is_main)
            .collect())
    }

    /// Whether the interface with this index is administratively up (`IFF_UP`); a route
    /// through a down interface cannot be added (ENETDOWN).
    ///
    /// Errors: those of the socket ([`Error::Send`], [`Error::Receive`], [`Error::Parse`],
    /// [`Error::ZeroLength`]) and the kernel's answer ([`Error::Kernel`], e.g. `ENODEV`).
    pub fn link_is_up(&mut self, index: u32) -> Result<bool, Error> {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        let answer = self.request(RouteNetlinkMessage::GetLink(m), NLM_F_ACK)?;
        Ok(answer.iter().any(|m| {
            matches!(m, RouteNetlinkMessage::NewLink(l) if l.header.flags.contains(netlink_packet_route::link::LinkFlags::Up))
        }))
    }

    /// The name of the interface with this index; `None` when there is none (it went
    /// away since the route naming it was read).
    ///
    /// Errors: as [`Rtnl::link_is_up`] (but `ENODEV`).
    pub fn link_name(&mut self, index: u32) -> Result<Option<String>, Error> {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        let answer = match self.request(RouteNetlinkMessage::GetLink(m), NLM_F_ACK) {
            Err(e) if e.kernel_errno() == Some(Errno::ENODEV) => return Ok(None),
            r => r?,
        };
        Ok(answer.into_iter().find_map(|m| match m {
            RouteNetlinkMessage::NewLink(l) => l.attributes.into_iter().find_map(|a| match a {
                netlink_packet_route::link::LinkAttribute::IfName(name) => Some(name),
                _ => None,
            }),
            _ => None,
        }))
    }

    /// The main table's IPv4 routes (with a destination) that `keep` selects, whether
    /// there is an IPv4 default route, and the interface of every next hop of the IPv4
    /// and IPv6 default routes, from ONE route dump of every family (IPv4 and IPv6 in
    /// one request: `check` of a converged host pays no extra request for IPv6).
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn host_routes(&mut self, keep: impl Fn(&LiveRoute) -> bool) -> Result<HostRoutes, Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = AddressFamily::Unspec;
        let dump = self.request_filtered(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP, is_ip_route_in_main)?;
        let mut out = HostRoutes::default();
        for r in dump.into_iter().filter_map(|m| match m {
            RouteNetlinkMessage::NewRoute(r) if is_main(&r) => Some(r),
            _ => None,
        }) {
            let family = match r.header.address_family {
                AddressFamily::Inet => IpFamily::Ipv4,
                AddressFamily::Inet6 => IpFamily::Ipv6,
                _ => continue,
            };
            if is_default(&r) {
                out.ipv4_default_route |= family == IpFamily::Ipv4;
                out.default_route_oifs.extend(next_hop_oifs(&r).map(|i| (family, i)));
            }
            if family == IpFamily::Ipv4
                && let Some(route) = live_route(&r)
                && keep(&route)
            {
                out.ipv4_routes.push(route);
            }
        }
        out.default_route_oifs.sort_unstable();
        out.default_route_oifs.dedup();
        Ok(out)
    }

    /// The uplinks named by [`HostRoutes::default_route_oifs`]: one `RTM_GETLINK` per
    /// distinct interface (one on a host whose IPv4 and IPv6 default routes share it);
    /// an interface gone since the dump is left out.
    ///
    /// Errors: as [`Rtnl::link_name`].
    pub fn uplinks(&mut self, oifs: &[(IpFamily, u32)]) -> Result<Vec<Uplink>, Error> {
        let mut names: std::collections::BTreeMap<u32, Option<String>> = Default::default();
        let mut out = Vec::new();
        for &(family, index) in oifs {
            let name = match names.get(&index) {
                Some(n) => n.clone(),
                None => {
                    let n = self.link_name(index)?;
                    names.insert(index, n.clone());
                    n
                }
            };
            if let Some(interface) = name {
                out.push(Uplink { family, interface });
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// The main-table routes of one family (with a destination) that `keep` selects.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn routes(&mut self, ipv6: bool, keep: impl Fn(&LiveRoute) -> bool) -> Result<Vec<LiveRoute>, Error> {
        Ok(self.routes_and_default(ipv6, keep)?.0)
    }

    /// [`Rtnl::routes`] and whether the main table has a default route (a unicast route
    /// with prefix length 0), from ONE route dump.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn routes_and_default(
        &mut self,
        ipv6: bool,
        keep: impl Fn(&LiveRoute) -> bool,
    ) -> Result<(Vec<LiveRoute>, bool), Error> {
        let dump = self.dump_main(ipv6)?;
        let default = dump.iter().any(is_default);
        let routes = dump.iter().filter_map(live_route).filter(|r| keep(r)).collect();
        Ok((routes, default))
    }

    /// Adds `spec` (create-exclusive; an identical route added meanwhile by someone else
    /// counts as done).
    ///
    /// Errors: [`Error::Add`], wrapping the socket's or the kernel's error.
    pub fn add(&mut self, spec: &RouteSpec) -> Result<(), Error> {
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RouteNetlinkMessage::NewRoute(message(spec)), flags) {
            // Someone added the same route between our read and now: the goal is met (the
            // caller reads the state back).
            Err(e) if e.is_exists() => Ok(()),
            r => r.map(|_| ()).map_err(|e| Error::Add { spec: *spec, source: Box::new(e) }),
        }
    }

    /// Deletes a route someone else made that is in the way of ours: matched by prefix,
    /// table, protocol and metric, whatever its type.
    ///
    /// Errors: [`Error::DeleteInTheWay`], wrapping the socket's or the kernel's error.
    pub fn delete_live(&mut self, r: &LiveRoute) -> Result<(), Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = family(&r.dest);
        m.header.destination_prefix_length = r.prefix_len;
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::from(r.protocol);
        m.header.scope = RouteScope::NoWhere;
        m.header.kind = RouteType::Unspec;
        m.attributes.push(RouteAttribute::Destination(RouteAddress::from(r.dest)));
        if let Some(metric) = r.metric {
            m.attributes.push(RouteAttribute::Priority(metric));
        }
        self.request(RouteNetlinkMessage::DelRoute(m), NLM_F_ACK)
            .map_err(|e| Error::DeleteInTheWay { route: r.clone(), source: Box::new(e) })?;
        Ok(())
    }

    /// Deletes our route `spec` (only one with [`ROUTE_PROTOCOL`]).
    ///
    /// Errors: [`Error::Delete`], wrapping the socket's or the kernel's error.
    pub fn delete(&mut self, spec: &RouteSpec) -> Result<(), Error> {
        self.request(RouteNetlinkMessage::DelRoute(message(spec)), NLM_F_ACK)
            .map_err(|e| Error::Delete { spec: *spec, source: Box::new(e) })?;
        Ok(())
    }
}

impl Rtnl {
    /// Carries out one route change.
    ///
    /// Errors: those of [`Rtnl::add`], [`Rtnl::delete_live`] and [`Rtnl::delete`].
    pub fn run(&mut self, op: &RouteOp) -> Result<(), Error> {
        match op {
            RouteOp::Add { spec } => self.add(spec),
            RouteOp::DeleteInTheWay { route } => self.delete_live(route),
            RouteOp::Delete { spec } => self.delete(spec),
        }
    }
}

/// Length of a netlink message header (`struct nlmsghdr`).
const NLMSG_HEADER_LEN: usize = 16;
/// `RTM_NEWROUTE`.
const RTM_NEWROUTE: u16 = 24;
/// `RT_TABLE_COMPAT`: the header's table when the real one (above 255) is in `RTA_TABLE`.
const RT_TABLE_COMPAT: u8 = 252;

/// Whether a raw answer of a route dump is worth parsing: anything but a route, or an
/// IPv4 or IPv6 route that may be in the main table. Routes of other families (IPv4 and
/// IPv6 multicast, MPLS) and of the local table are skipped unparsed.
fn is_ip_route_in_main(raw: &[u8]) -> bool {
    // nlmsghdr: len u32, type u16, flags u16, seq u32, pid u32; then struct rtmsg:
    // family, dst_len, src_len, tos, table, protocol, scope, type (u8 each), flags u32.
    if u16::from_ne_bytes([raw[4], raw[5]]) != RTM_NEWROUTE {
        return true;
    }
    let Some(&[family, _, _, _, table]) = raw.get(NLMSG_HEADER_LEN..NLMSG_HEADER_LEN + 5) else {
        // Too short to be a route: let the parser say what is wrong with it.
        return true;
    };
    let ip = family == libc::AF_INET as u8 || family == libc::AF_INET6 as u8;
    ip && (table == RouteHeader::RT_TABLE_MAIN || table == RT_TABLE_COMPAT)
}

/// The link and IPv4 default-route changes in one datagram of an rtnetlink socket joined
/// to `RTNLGRP_LINK` and `RTNLGRP_IPV4_ROUTE` (see [`crate::host::events::RtListener`]):
/// `RTM_NEWLINK` with a name, and `RTM_NEWROUTE`/`RTM_DELROUTE` of an IPv4 unicast default
/// route in the main table. Messages that do not parse, and all others, are skipped: a
/// missed link event costs at most a late check, never a wrong write.
pub fn rt_events(buf: &[u8]) -> Vec<crate::model::event::RtEvent> {
    use crate::model::event::RtEvent;
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= NLMSG_HEADER_LEN {
        let raw = &buf[off..];
        let len = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize;
        if len < NLMSG_HEADER_LEN || len > raw.len() {
            break;
        }
        if let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&raw[..len]) {
            match m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
                    let index = l.header.index;
                    out.extend(l.attributes.into_iter().find_map(|a| match a {
                        netlink_packet_route::link::LinkAttribute::IfName(name) => Some(RtEvent::Link { name, index }),
                        _ => None,
                    }));
                }
                NetlinkPayload::InnerMessage(
                    m @ (RouteNetlinkMessage::NewRoute(_) | RouteNetlinkMessage::DelRoute(_)),
                ) => {
                    let added = matches!(m, RouteNetlinkMessage::NewRoute(_));
                    if let RouteNetlinkMessage::NewRoute(r) | RouteNetlinkMessage::DelRoute(r) = m
                        && r.header.address_family == AddressFamily::Inet
                        && is_main(&r)
                    {
                        if is_default(&r) {
                            out.push(RtEvent::Ipv4DefaultRoute { added });
                        } else if r.header.destination_prefix_length == 32
                            && let Some(IpAddr::V4(dst)) = route_dst(&r)
                        {
                            out.push(RtEvent::Ipv4HostRoute { dst, added });
                        }
                    }
                }
                _ => {}
            }
        }
        off += len.next_multiple_of(4);
    }
    out
}

/// Whether a route is in the main table.
fn is_main(r: &RouteMessage) -> bool {
    r.header.table == RouteHeader::RT_TABLE_MAIN || table_attr(r) == Some(254)
}

/// Whether a route is a unicast default route (prefix length 0).
fn is_default(r: &RouteMessage) -> bool {
    r.header.destination_prefix_length == 0 && r.header.kind == RouteType::Unicast
}

/// The interface of each next hop of a route: `RTA_OIF`, and each hop of `RTA_MULTIPATH`.
fn next_hop_oifs(r: &RouteMessage) -> impl Iterator<Item = u32> + '_ {
    r.attributes
        .iter()
        .flat_map(|a| match a {
            RouteAttribute::Oif(i) => vec![*i],
            RouteAttribute::MultiPath(hops) => hops.iter().map(|h| h.interface_index).collect(),
            _ => vec![],
        })
        .filter(|&i| i != 0)
}

/// A route's destination (`RTA_DST`), if it has one.
fn route_dst(r: &RouteMessage) -> Option<IpAddr> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })
}

/// A route with a destination, reduced to what the planner compares.
fn live_route(r: &RouteMessage) -> Option<LiveRoute> {
    let dest = route_dst(r)?;
    let oif = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    });
    let has_gateway = r.attributes.iter().any(|a| matches!(a, RouteAttribute::Gateway(_)));
    let metric = r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    let loopback_src = r.header.scope == RouteScope::Host
        || r.attributes
            .iter()
            .any(|a| matches!(a, RouteAttribute::PrefSource(RouteAddress::Inet(s)) if s.is_loopback()));
    let kind = match r.header.kind {
        RouteType::BlackHole => Some(RouteKind::Blackhole),
        RouteType::Unicast if oif == Some(LOOPBACK_IFINDEX) && !has_gateway && loopback_src => Some(RouteKind::DevLo),
        _ => None,
    };
    Some(LiveRoute {
        dest,
        prefix_len: r.header.destination_prefix_length,
        kind,
        protocol: protocol_number(r.header.protocol),
        metric,
    })
}

fn table_attr(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    })
}

/// Links and addresses, for `verify`'s probe: a veth pair with one end in another
/// namespace, addresses without duplicate address detection, default routes, and the
/// names and addresses already in use (so the probe's cannot collide).
impl Rtnl {
    /// Every interface: (index, name).
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn links(&mut self) -> Result<Vec<(u32, String)>, Error> {
        use netlink_packet_route::link::{LinkAttribute, LinkMessage};
        let answer = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => l.attributes.iter().find_map(|a| match a {
                    LinkAttribute::IfName(n) => Some((l.header.index, n.clone())),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Every address of every interface, with its prefix length.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn addresses(&mut self) -> Result<Vec<(IpAddr, u8)>, Error> {
        use netlink_packet_route::address::{AddressAttribute, AddressMessage};
        let answer = self.request(RouteNetlinkMessage::GetAddress(AddressMessage::default()), NLM_F_DUMP)?;
        Ok(answer
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) => a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(ip) => Some((*ip, a.header.prefix_len)),
                    _ => None,
                }),
                _ => None,
            })
            .collect())
    }

    /// Every route's destination (all tables, both families): (address, prefix length).
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn route_destinations(&mut self) -> Result<Vec<(IpAddr, u8)>, Error> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut m = RouteMessage::default();
            m.header.address_family = fam;
            for r in self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)? {
                if let RouteNetlinkMessage::NewRoute(r) = r {
                    let len = r.header.destination_prefix_length;
                    let dest = r.attributes.iter().find_map(|a| match a {
                        RouteAttribute::Destination(RouteAddress::Inet(v4)) => Some(IpAddr::V4(*v4)),
                        RouteAttribute::Destination(RouteAddress::Inet6(v6)) => Some(IpAddr::V6(*v6)),
                        _ => None,
                    });
                    // A default route (no destination) overlaps everything: it is not a
                    // collision, the probe's own connected route is more specific.
                    if let Some(d) = dest {
                        out.push((d, len));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Creates a veth pair: `name` here, `peer` in the network namespace `peer_ns` (an
    /// open nsfs file), both down.
    ///
    /// Errors: as [`Rtnl::link_is_up`]; `EEXIST` when `name` exists.
    pub fn add_veth(&mut self, name: &str, peer: &str, peer_ns: std::os::fd::BorrowedFd<'_>) -> Result<(), Error> {
        use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo, LinkMessage};
        use std::os::fd::AsRawFd;
        let mut p = LinkMessage::default();
        p.attributes.push(LinkAttribute::IfName(peer.into()));
        p.attributes.push(LinkAttribute::NetNsFd(peer_ns.as_raw_fd()));
        let mut m = LinkMessage::default();
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// The index of interface `name`; `None` when there is none.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>, Error> {
        Ok(self.links()?.into_iter().find(|(_, n)| n == name).map(|(i, _)| i))
    }

    /// Sets interface `index` up.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn set_up(&mut self, index: u32) -> Result<(), Error> {
        use netlink_packet_route::link::{LinkFlags, LinkMessage};
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = LinkFlags::Up;
        m.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(m), NLM_F_ACK)?;
        Ok(())
    }

    /// Deletes interface `index` (a veth: its peer goes with it).
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn delete_link(&mut self, index: u32) -> Result<(), Error> {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(m), NLM_F_ACK)?;
        Ok(())
    }

    /// Adds `addr/prefix` to interface `index`, without duplicate address detection
    /// (`IFA_F_NODAD`: an IPv6 address is usable at once).
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn add_address(&mut self, index: u32, addr: IpAddr, prefix: u8) -> Result<(), Error> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
        let mut m = AddressMessage::default();
        m.header.family = if addr.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        m.header.prefix_len = prefix;
        m.header.index = index;
        m.attributes.push(AddressAttribute::Local(addr));
        m.attributes.push(AddressAttribute::Address(addr));
        m.attributes.push(AddressAttribute::Flags(AddressFlags::Nodad));
        self.request(RouteNetlinkMessage::NewAddress(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// Adds a default route via `gateway` (IPv4 or IPv6) in the main table.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn add_default_via(&mut self, gateway: IpAddr) -> Result<(), Error> {
        let mut m = RouteMessage::default();
        m.header.address_family = if gateway.is_ipv4() { AddressFamily::Inet } else { AddressFamily::Inet6 };
        m.header.table = RouteHeader::RT_TABLE_MAIN;
        m.header.protocol = RouteProtocol::Static;
        m.header.scope = RouteScope::Universe;
        m.header.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(m), NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }
}

impl Rtnl {
    /// Whether interface `index` is operationally up (`IFF_RUNNING`): the kernel sets it
    /// from linkwatch, asynchronously after the link and its peer are set up; until then
    /// its queue discipline drops what is sent.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn link_running(&mut self, index: u32) -> Result<bool, Error> {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        let answer = self.request(RouteNetlinkMessage::GetLink(m), NLM_F_ACK)?;
        Ok(answer.iter().any(|m| {
            matches!(m, RouteNetlinkMessage::NewLink(l) if l.header.flags.contains(netlink_packet_route::link::LinkFlags::Running))
        }))
    }
}

impl Rtnl {
    /// Whether interface `index` has an IPv6 address that is still tentative
    /// (`IFA_F_TENTATIVE`): even without duplicate address detection, an address added
    /// before the link was ready stays tentative until addrconf sees the link up, and
    /// neighbour solicitations for it go unanswered until then.
    ///
    /// Errors: as [`Rtnl::link_is_up`].
    pub fn has_tentative(&mut self, index: u32) -> Result<bool, Error> {
        use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage};
        let mut m = AddressMessage::default();
        m.header.family = AddressFamily::Inet6;
        let answer = self.request(RouteNetlinkMessage::GetAddress(m), NLM_F_DUMP)?;
        Ok(answer.iter().any(|m| match m {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                a.header.flags.contains(AddressHeaderFlags::Tentative)
                    || a.attributes
                        .iter()
                        .any(|x| matches!(x, AddressAttribute::Flags(f) if f.contains(AddressFlags::Tentative)))
            }
            _ => false,
        }))
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    fn round_trip(r: &LiveRoute) -> String {
        let json = serde_json::to_string(r).unwrap();
        let back: LiveRoute = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, r, "{json}");
        json
    }

    #[test]
    fn live_routes_round_trip_through_json() {
        let v4 = LiveRoute {
            dest: "169.254.170.2".parse().unwrap(),
            prefix_len: 32,
            kind: Some(RouteKind::DevLo),
            protocol: ROUTE_PROTOCOL,
            metric: None,
        };
        assert_eq!(
            round_trip(&v4),
            r#"{"dest":"169.254.170.2","prefix_len":32,"kind":"dev_lo","protocol":236,"metric":null}"#
        );
        let v6 = LiveRoute {
            dest: "fd00:ec2::254".parse().unwrap(),
            prefix_len: 128,
            kind: Some(RouteKind::Blackhole),
            protocol: ROUTE_PROTOCOL,
            metric: Some(1024),
        };
        assert_eq!(
            round_trip(&v6),
            r#"{"dest":"fd00:ec2::254","prefix_len":128,"kind":"blackhole","protocol":236,"metric":1024}"#
        );
        let foreign = LiveRoute { kind: None, protocol: 4, metric: Some(0), ..v4 };
        assert!(round_trip(&foreign).contains(r#""kind":null"#));
        // A missing Option field reads as None.
        let short: LiveRoute =
            serde_json::from_str(r#"{"dest":"169.254.170.2","prefix_len":32,"protocol":236,"kind":"dev_lo"}"#).unwrap();
        assert_eq!(short, v4);
    }

    /// A serialized rtnetlink notification.
    fn notification(msg: RouteNetlinkMessage) -> Vec<u8> {
        let mut m = NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(msg));
        m.finalize();
        let mut b = vec![0; m.buffer_len()];
        m.serialize(&mut b);
        b
    }

    fn route(family: AddressFamily, dst_len: u8, table: u8, kind: RouteType) -> RouteMessage {
        let mut r = RouteMessage::default();
        r.header.address_family = family;
        r.header.destination_prefix_length = dst_len;
        r.header.table = table;
        r.header.kind = kind;
        r
    }

    #[test]
    fn notifications_of_links_and_ipv4_default_routes_are_events() {
        use crate::model::event::RtEvent;
        let mut link = netlink_packet_route::link::LinkMessage::default();
        link.header.index = 7;
        link.attributes.push(netlink_packet_route::link::LinkAttribute::IfName("ecs-bridge".into()));
        let main = RouteHeader::RT_TABLE_MAIN;
        let mut d = notification(RouteNetlinkMessage::NewLink(link));
        d.extend(notification(RouteNetlinkMessage::NewRoute(route(AddressFamily::Inet, 0, main, RouteType::Unicast))));
        d.extend(notification(RouteNetlinkMessage::DelRoute(route(AddressFamily::Inet, 0, main, RouteType::Unicast))));
        // Not a default route, not IPv4, not the main table, not unicast: none of them count.
        for r in [
            route(AddressFamily::Inet, 24, main, RouteType::Unicast),
            route(AddressFamily::Inet6, 0, main, RouteType::Unicast),
            route(AddressFamily::Inet, 0, 255, RouteType::Unicast),
            route(AddressFamily::Inet, 0, main, RouteType::Unreachable),
        ] {
            d.extend(notification(RouteNetlinkMessage::NewRoute(r)));
        }
        // A route to one address (the endpoint route) names its destination.
        let mut host = route(AddressFamily::Inet, 32, main, RouteType::Unicast);
        host.attributes.push(RouteAttribute::Destination(RouteAddress::Inet([169, 254, 170, 2].into())));
        d.extend(notification(RouteNetlinkMessage::DelRoute(host)));
        assert_eq!(
            rt_events(&d),
            vec![
                RtEvent::Link { name: "ecs-bridge".into(), index: 7 },
                RtEvent::Ipv4DefaultRoute { added: true },
                RtEvent::Ipv4DefaultRoute { added: false },
                RtEvent::Ipv4HostRoute { dst: [169, 254, 170, 2].into(), added: false },
            ]
        );
        assert_eq!(rt_events(&d[..10]), vec![], "a cut datagram yields nothing, never a panic");
    }

    /// A raw `RTM_NEWROUTE` of `family` in header table `table`.
    fn raw_route(family: u8, table: u8) -> Vec<u8> {
        let mut m = vec![0u8; NLMSG_HEADER_LEN + 12];
        let len = m.len() as u32;
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m[4..6].copy_from_slice(&RTM_NEWROUTE.to_ne_bytes());
        m[NLMSG_HEADER_LEN] = family;
        m[NLMSG_HEADER_LEN + 4] = table;
        m
    }

    #[test]
    fn a_dump_of_every_family_parses_only_ip_routes_that_may_be_in_the_main_table() {
        let (inet, inet6) = (libc::AF_INET as u8, libc::AF_INET6 as u8);
        assert!(is_ip_route_in_main(&raw_route(inet, 254)));
        assert!(is_ip_route_in_main(&raw_route(inet6, 254)));
        // The real table is in RTA_TABLE: parsed, then judged by it.
        assert!(is_ip_route_in_main(&raw_route(inet, RT_TABLE_COMPAT)));
        // The local table; IPv4 multicast (RTNL_FAMILY_IPMR), MPLS.
        assert!(!is_ip_route_in_main(&raw_route(inet6, 255)));
        assert!(!is_ip_route_in_main(&raw_route(128, 254)));
        assert!(!is_ip_route_in_main(&raw_route(libc::AF_MPLS as u8, 254)));
        // Anything but a route (the dump's NLMSG_DONE, an error) and a truncated route
        // go to the parser.
        let mut done = raw_route(0, 0);
        done[4..6].copy_from_slice(&3u16.to_ne_bytes());
        assert!(is_ip_route_in_main(&done));
        assert!(is_ip_route_in_main(&raw_route(128, 254)[..NLMSG_HEADER_LEN + 2]));
    }

    #[test]
    fn malformed_live_routes_are_refused() {
        let err = |json: &str| serde_json::from_str::<LiveRoute>(json).unwrap_err().to_string();
        let e = err(r#"{"dest":"1.2.3.4","prefix_len":32,"kind":null,"protocol":4,"metric":null,"table":254}"#);
        assert!(e.contains("unknown field `table`"), "{e}");
        let e = err(r#"{"dest":"1.2.3.4","prefix_len":32,"kind":"devlo","protocol":4,"metric":null}"#);
        assert!(e.contains("unknown variant `devlo`"), "{e}");
        let e = err(r#"{"dest":"1.2.3.400","prefix_len":32,"kind":null,"protocol":4,"metric":null}"#);
        assert!(e.contains("invalid IP address"), "{e}");
        let e = err(r#"{"dest":"1.2.3.4","kind":null,"protocol":4,"metric":null}"#);
        assert!(e.contains("missing field `prefix_len`"), "{e}");
    }
}
