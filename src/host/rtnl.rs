//! Routes over rtnetlink (`NETLINK_ROUTE`), with the rust-netlink crates
//! (netlink-packet-route for the messages, netlink-sys for the socket).
//!
//! Used for the awsvpc task IMDS block (BLACKHOLE routes to `169.254.169.254/32` and
//! `fd00:ec2::254/128` inside each task's network namespace, what the ECS agent's CNI
//! plugin installs with `ECS_AWSVPC_BLOCK_IMDS=true`). Routes ecs-hostnet adds carry the
//! route protocol [`ROUTE_PROTOCOL`], so `remove` only ever deletes its own.

use anyhow::{Context, Result, bail};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::net::IpAddr;

use crate::model::route::*;

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
    /// Opens a `NETLINK_ROUTE` socket.
    // Temporary, until this setsockopt goes through nix: the crate denies unsafe_code.
    #[allow(unsafe_code)]
    pub fn open() -> Result<Rtnl> {
        let mut sock = Socket::new(NETLINK_ROUTE).context("cannot open a NETLINK_ROUTE socket")?;
        sock.bind_auto().context("cannot bind the NETLINK_ROUTE socket")?;
        sock.connect(&SocketAddr::new(0, 0)).context("cannot connect the NETLINK_ROUTE socket")?;
        let _ = sock.set_ext_ack(true);
        // The kernel answers within the request; never wait forever for an answer that
        // will not come.
        let timeout = libc::timeval { tv_sec: 5, tv_usec: 0 };
        // SAFETY: the descriptor is `sock`'s, open while `sock` lives; `timeout` is a valid
        // `struct timeval` and the length passed is its size.
        unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &timeout as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            );
        }
        // Filled through `BufMut` (spare capacity, never zeroed); 32 KiB is the most the
        // kernel puts in one dump read (`SKB_WITH_OVERHEAD(32768)`, net/netlink/af_netlink.c).
        Ok(Rtnl { sock, seq: 0, buf: Vec::with_capacity(32 * 1024) })
    }

    fn request(&mut self, msg: RouteNetlinkMessage, flags: u16) -> Result<Vec<RouteNetlinkMessage>> {
        self.seq += 1;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        header.sequence_number = self.seq;
        let mut req = NetlinkMessage::new(header, NetlinkPayload::from(msg));
        req.finalize();
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        self.sock.send(&bytes, 0).context("rtnetlink send")?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0).context("rtnetlink receive")?;
            let n = self.buf.len();
            let mut off = 0;
            while off < n {
                let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buf[off..n])
                    .map_err(|e| anyhow::anyhow!("cannot parse an rtnetlink answer: {e}"))?;
                let len = m.header.length as usize;
                if len == 0 {
                    bail!("rtnetlink answer with length 0");
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
                            Some(_) => Err(e.to_io().into()),
                        };
                    }
                    NetlinkPayload::InnerMessage(m) => out.push(m),
                    _ => {}
                }
            }
        }
    }

    fn dump_main(&mut self, ipv6: bool) -> Result<Vec<RouteMessage>> {
        let mut m = RouteMessage::default();
        m.header.address_family = if ipv6 { AddressFamily::Inet6 } else { AddressFamily::Inet };
        let all = self.request(RouteNetlinkMessage::GetRoute(m), NLM_F_DUMP)?;
        Ok(all
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => Some(r),
                _ => None,
            })
            .filter(|r| r.header.table == RouteHeader::RT_TABLE_MAIN || table_attr(r) == Some(254))
            .collect())
    }

    /// Whether the interface with this index is administratively up (`IFF_UP`); a route
    /// through a down interface cannot be added (ENETDOWN).
    pub fn link_is_up(&mut self, index: u32) -> Result<bool> {
        let mut m = netlink_packet_route::link::LinkMessage::default();
        m.header.index = index;
        let answer = self.request(RouteNetlinkMessage::GetLink(m), NLM_F_ACK)?;
        Ok(answer.iter().any(|m| {
            matches!(m, RouteNetlinkMessage::NewLink(l) if l.header.flags.contains(netlink_packet_route::link::LinkFlags::Up))
        }))
    }

    /// The main-table routes of one family (with a destination) that `keep` selects.
    pub fn routes(&mut self, ipv6: bool, keep: impl Fn(&LiveRoute) -> bool) -> Result<Vec<LiveRoute>> {
        Ok(self.routes_and_default(ipv6, keep)?.0)
    }

    /// [`Rtnl::routes`] and whether the main table has a default route (a unicast route
    /// with prefix length 0), from ONE route dump.
    pub fn routes_and_default(
        &mut self,
        ipv6: bool,
        keep: impl Fn(&LiveRoute) -> bool,
    ) -> Result<(Vec<LiveRoute>, bool)> {
        let dump = self.dump_main(ipv6)?;
        let default =
            dump.iter().any(|r| r.header.destination_prefix_length == 0 && r.header.kind == RouteType::Unicast);
        let routes = dump
            .into_iter()
            .filter_map(|r| {
                let dest = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(a)) => Some(IpAddr::V4(*a)),
                    RouteAttribute::Destination(RouteAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
                    _ => None,
                })?;
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
                    RouteType::Unicast if oif == Some(LOOPBACK_IFINDEX) && !has_gateway && loopback_src => {
                        Some(RouteKind::DevLo)
                    }
                    _ => None,
                };
                Some(LiveRoute {
                    dest,
                    prefix_len: r.header.destination_prefix_length,
                    kind,
                    protocol: protocol_number(r.header.protocol),
                    metric,
                })
            })
            .filter(|r| keep(r))
            .collect();
        Ok((routes, default))
    }

    /// Adds `spec` (create-exclusive; an identical route added meanwhile by someone else
    /// counts as done).
    pub fn add(&mut self, spec: &RouteSpec) -> Result<()> {
        let flags = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
        match self.request(RouteNetlinkMessage::NewRoute(message(spec)), flags) {
            // Someone added the same route between our read and now: the goal is met (the
            // caller reads the state back).
            Err(e) if e.downcast_ref::<std::io::Error>().and_then(|e| e.raw_os_error()) == Some(libc::EEXIST) => Ok(()),
            r => r.map(|_| ()).with_context(|| format!("cannot add route {spec}")),
        }
    }

    /// Deletes a route someone else made that is in the way of ours: matched by prefix,
    /// table, protocol and metric, whatever its type.
    pub fn delete_live(&mut self, r: &LiveRoute) -> Result<()> {
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
            .with_context(|| format!("cannot delete route {r}"))?;
        Ok(())
    }

    /// Deletes our route `spec` (only one with [`ROUTE_PROTOCOL`]).
    pub fn delete(&mut self, spec: &RouteSpec) -> Result<()> {
        self.request(RouteNetlinkMessage::DelRoute(message(spec)), NLM_F_ACK)
            .with_context(|| format!("cannot delete route {spec}"))?;
        Ok(())
    }
}

impl Rtnl {
    /// Carries out one route change.
    pub fn run(&mut self, op: &RouteOp) -> Result<()> {
        match op {
            RouteOp::Add { spec } => self.add(spec),
            RouteOp::DeleteInTheWay { route } => self.delete_live(route),
            RouteOp::Delete { spec } => self.delete(spec),
        }
    }
}

fn table_attr(r: &RouteMessage) -> Option<u32> {
    r.attributes.iter().find_map(|a| match a {
        RouteAttribute::Table(t) => Some(*t),
        _ => None,
    })
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

