//! The IMDS audit's receiver: a `NETLINK_NETFILTER` socket bound to one nfnetlink_log
//! group ([`NflogListener`]) and the pure decoder of what the group delivers
//! ([`decode_packets`]). Messages and attributes are those of
//! include/uapi/linux/netfilter/nfnetlink_log.h.
//!
//! Binding: one `NFULNL_MSG_CONFIG` message with `NFULA_CFG_CMD` `NFULNL_CFG_CMD_BIND`
//! for the group, `NFULA_CFG_MODE` `NFULNL_COPY_PACKET` with the snaplen, and
//! `NFULA_CFG_QTHRESH` 1 (the kernel's default of 100 packets or 1 s would hold an attempt
//! back). No `NFULNL_CFG_CMD_PF_BIND`/`PF_UNBIND`: an nf_tables `log group` rule hands its
//! packets to nfnetlink_log whatever logger the family has, and a PF_BIND would make
//! nfnetlink_log the namespace's default logger (the kernel's own messages about invalid
//! packets would go to group 0). One group has one listener: a group another socket holds
//! is refused with `EPERM` ([`Error::is_held`]). The group is released when the socket closes.
//!
//! The socket belongs to the network namespace of the thread that opens it: open it after
//! [`crate::host::netns::enter`]. It is non-blocking once bound; [`NflogListener::receive`]
//! drains what is queued.

use crate::model::audit::Attempt;
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use std::os::fd::{AsFd, BorrowedFd};

/// `NFNL_SUBSYS_ULOG`: nfnetlink_log's subsystem (the high byte of the message type).
const NFNL_SUBSYS_ULOG: u16 = 4;
/// `NFULNL_MSG_PACKET`: a logged packet.
const NFULNL_MSG_PACKET: u16 = 0;
/// `NFULNL_MSG_CONFIG`.
const NFULNL_MSG_CONFIG: u16 = 1;
/// `NFULA_CFG_CMD` (`struct nfulnl_msg_config_cmd { __u8 command; }`).
const NFULA_CFG_CMD: u16 = 1;
/// `NFULA_CFG_MODE` (`struct nfulnl_msg_config_mode { __be32 copy_range; __u8 copy_mode; __u8 _pad; }`).
const NFULA_CFG_MODE: u16 = 2;
/// `NFULA_CFG_QTHRESH` (be32): packets queued before the kernel sends them.
const NFULA_CFG_QTHRESH: u16 = 5;
/// `NFULNL_CFG_CMD_BIND`.
const CMD_BIND: u8 = 1;
/// `NFULNL_COPY_PACKET`: copy the packet, up to the copy range.
const COPY_PACKET: u8 = 2;
/// `NFULA_IFINDEX_INDEV` (be32).
const NFULA_IFINDEX_INDEV: u16 = 4;
/// `NFULA_IFINDEX_PHYSINDEV` (be32): the bridge port (br_netfilter).
const NFULA_IFINDEX_PHYSINDEV: u16 = 6;
/// `NFULA_PAYLOAD`: the packet from its network header.
const NFULA_PAYLOAD: u16 = 9;
/// `NFULA_PREFIX`: the rule's prefix, NUL-terminated.
const NFULA_PREFIX: u16 = 10;
/// `NFPROTO_IPV6`.
const NFPROTO_IPV6: u8 = 10;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// The receive queue asked for: a burst of attempts is at most `audit.burst` packets of
/// `snaplen` bytes; this is room for thousands.
const RCVBUF_BYTES: usize = 1024 * 1024;
/// How much one read takes (the kernel sends one packet per message with a threshold of 1).
const READ_BYTES: usize = 64 * 1024;

/// An nfnetlink_log failure. OS errors are the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be opened or bound.
    #[error("cannot open the nfnetlink_log socket")]
    Open {
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused the bind or the mode of `group`.
    #[error("cannot bind nfnetlink_log group {group}{}", if matches!(.source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)) {
        held_hint(*group)
    } else { String::new() })]
    Bind {
        /// The group.
        group: u16,
        /// The errno the kernel answered.
        source: std::io::Error,
    },
    /// Reading the socket failed (other than "nothing queued" and an overrun).
    #[error("cannot read the nfnetlink_log socket")]
    Receive {
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// Whether another listener holds the group: `EPERM` (net/netfilter/nfnetlink_log.c,
    /// `nfulnl_recv_config`: the group's instance belongs to another socket's port id) or
    /// `EBUSY` (this socket bound it already).
    pub fn is_held(&self) -> bool {
        matches!(self, Error::Bind { source, .. } if matches!(source.raw_os_error(), Some(libc::EPERM | libc::EBUSY)))
    }
}

/// What an `EPERM`/`EBUSY` bind means. The kernel answers `EPERM` both for a group another
/// socket holds and for a process without CAP_NET_ADMIN; the watcher has it (it converges
/// the rule set), so for the watcher it is the first.
fn held_hint(group: u16) -> String {
    format!(
        ": another listener (ulogd, tcpdump -i nflog:{group}, another watcher) holds nfnetlink_log group {group}, \
         or this process lacks CAP_NET_ADMIN; stop that listener or choose another audit.nflog_group"
    )
}

/// Appends one netlink attribute (4-byte aligned).
fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The `NFULNL_MSG_CONFIG` request that binds `group` with copy mode packet and
/// `snaplen`, and a queue threshold of 1 (`NLM_F_ACK`: the kernel answers with an errno).
pub fn bind_request(group: u16, snaplen: u32, seq: u32) -> Vec<u8> {
    let mut attrs = Vec::new();
    attr(&mut attrs, NFULA_CFG_CMD, &[CMD_BIND]);
    let mut mode = snaplen.to_be_bytes().to_vec();
    mode.extend_from_slice(&[COPY_PACKET, 0]);
    attr(&mut attrs, NFULA_CFG_MODE, &mode);
    attr(&mut attrs, NFULA_CFG_QTHRESH, &1u32.to_be_bytes());
    let mut m = Vec::with_capacity(20 + attrs.len());
    m.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend_from_slice(&((libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: AF_UNSPEC (a bind is for every family), version 0, the group (big endian).
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]);
    m.extend_from_slice(&group.to_be_bytes());
    m.extend_from_slice(&attrs);
    m
}

/// The messages of a datagram: (type, flags-free body after the netlink header). Stops at
/// one that does not frame.
fn messages(buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let h = buf.get(off..off + 16)?;
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < 16 || off + len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let body = &buf[off + 16..off + len];
        off += len.next_multiple_of(4);
        Some((kind, body))
    })
}

/// The attributes of `b`: (type without flag bits, value). Stops at one that does not frame.
fn attributes(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes([*b.first()?, *b.get(1)?]) as usize;
        let ty = u16::from_ne_bytes([*b.get(2)?, *b.get(3)?]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let value = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, value))
    })
}

/// The addresses, protocol and ports of a copied packet (from its network header): an
/// IPv4 header of its own length (IHL), or the 40-byte IPv6 header and its extension
/// headers ([`ipv6_transport`]). `None` when it is neither.
fn packet_of(payload: &[u8]) -> Option<crate::model::trace::Packet> {
    match payload.first()? >> 4 {
        4 => crate::host::trace::parse_packet(payload, payload.get(usize::from(payload[0] & 0x0f) * 4..)),
        6 => {
            let (proto, transport) = ipv6_transport(payload)?;
            let ports = matches!(proto, 6 | 17).then_some(transport).flatten();
            let mut p = crate::host::trace::parse_packet(payload, ports)?;
            p.proto = proto;
            Some(p)
        }
        _ => None,
    }
}

/// The most IPv6 extension headers walked to the transport header (RFC 8200 section 4.1
/// recommends at most one of each, destination options twice: 7 in all).
const MAX_EXTENSION_HEADERS: usize = 8;

/// The transport protocol of an IPv6 packet and its header when the copy holds it: the
/// next-header chain walked from the fixed header through the extension headers (RFC 8200
/// section 4; IANA "IPv6 Extension Header Types"): hop-by-hop options 0, routing 43,
/// destination options 60 (`Hdr Ext Len` in 8-octet units past the first 8), fragment 44
/// (8 octets), authentication 51 (`Payload Len` in 4-octet units past the first 8, RFC
/// 4302). Pure. A
/// non-first fragment has no transport header (`None`); a chain cut by the snaplen stops
/// at the last header read (that header's number is returned). `None` for a copy shorter
/// than the fixed header.
pub fn ipv6_transport(payload: &[u8]) -> Option<(u8, Option<&[u8]>)> {
    let mut next = *payload.get(6)?;
    let mut off = 40usize;
    payload.get(..40)?;
    for _ in 0..MAX_EXTENSION_HEADERS {
        let len = match next {
            0 | 43 | 60 => payload.get(off + 1).map(|l| (usize::from(*l) + 1) * 8),
            51 => payload.get(off + 1).map(|l| (usize::from(*l) + 2) * 4),
            44 => {
                let Some(h) = payload.get(off..off + 8) else { return Some((next, None)) };
                // Fragment offset (13 bits) non-zero: a later fragment, no transport header.
                if u16::from_be_bytes([h[2], h[3]]) & 0xfff8 != 0 {
                    return Some((h[0], None));
                }
                Some(8)
            }
            _ => return Some((next, payload.get(off..))),
        };
        let (Some(len), Some(nh)) = (len, payload.get(off).copied()) else { return Some((next, None)) };
        next = nh;
        off += len;
    }
    Some((next, None))
}

/// Decodes the `NFULNL_MSG_PACKET` messages of one datagram of the nfnetlink_log socket
/// into [`Attempt`]s, in order; other messages (acks, errors) are skipped, and so is a
/// packet message without its `nfgenmsg`. Pure: bytes in, values out.
pub fn decode_packets(buf: &[u8]) -> Vec<Attempt> {
    let mut out = Vec::new();
    for (kind, body) in messages(buf) {
        if kind != (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET || body.len() < 4 {
            continue;
        }
        let mut a = Attempt {
            ipv6: body[0] == NFPROTO_IPV6,
            indev: None,
            physindev: None,
            prefix: String::new(),
            packet: None,
        };
        for (ty, v) in attributes(&body[4..]) {
            match ty {
                NFULA_IFINDEX_INDEV => a.indev = v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
                NFULA_IFINDEX_PHYSINDEV => {
                    a.physindev = v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
                }
                NFULA_PREFIX => {
                    let s = v.split(|c| *c == 0).next().unwrap_or_default();
                    a.prefix = String::from_utf8_lossy(s).into_owned();
                }
                NFULA_PAYLOAD => a.packet = packet_of(v),
                _ => {}
            }
        }
        out.push(a);
    }
    out
}

/// The errno of the `NLMSG_ERROR` answering `seq` in `buf`: `Some(0)` for an ack.
fn ack_errno(buf: &[u8], seq: u32) -> Option<i32> {
    messages(buf).find_map(|(kind, body)| {
        // struct nlmsgerr { int error; struct nlmsghdr msg; }: the request's seq at 4+8.
        if kind != libc::NLMSG_ERROR as u16 || body.len() < 20 {
            return None;
        }
        let echoed = u32::from_ne_bytes([body[12], body[13], body[14], body[15]]);
        (echoed == seq).then(|| -i32::from_ne_bytes([body[0], body[1], body[2], body[3]]))
    })
}

/// A socket bound to one nfnetlink_log group of the current network namespace.
pub struct NflogListener {
    sock: Socket,
    buf: Vec<u8>,
    group: u16,
}

impl NflogListener {
    /// Opens the socket and binds `group`, copying `snaplen` bytes of each packet; then
    /// non-blocking.
    ///
    /// Errors: [`Error::Open`]; [`Error::Bind`] when the kernel refuses (`EPERM`: another
    /// socket holds the group, or no CAP_NET_ADMIN; [`Error::is_held`]).
    pub fn open(group: u16, snaplen: u32) -> Result<NflogListener, Error> {
        let open = |source| Error::Open { source };
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(open)?;
        sock.bind_auto().map_err(open)?;
        if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF_BYTES).is_err() {
            let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF_BYTES);
        }
        let seq = 1;
        let bind = |source| Error::Bind { group, source };
        sock.send_to(&bind_request(group, snaplen, seq), &SocketAddr::new(0, 0), 0).map_err(bind)?;
        // The kernel answers before send returns; nothing else is queued before the bind.
        let mut buf = Vec::with_capacity(READ_BYTES);
        loop {
            buf.clear();
            sock.recv(&mut buf, 0).map_err(bind)?;
            match ack_errno(&buf, seq) {
                Some(0) => break,
                Some(e) => return Err(bind(std::io::Error::from_raw_os_error(e))),
                None => {}
            }
        }
        sock.set_non_blocking(true).map_err(open)?;
        Ok(NflogListener { sock, buf, group })
    }

    /// The group bound.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Everything queued, decoded, and how many times the queue overran since the last
    /// read (`ENOBUFS`: the kernel dropped packets it would have delivered).
    ///
    /// Errors: [`Error::Receive`].
    pub fn receive(&mut self) -> Result<(Vec<Attempt>, u64), Error> {
        let mut out = Vec::new();
        let mut overruns = 0;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => out.extend(decode_packets(&self.buf)),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok((out, overruns)),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overruns += 1,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::Receive { source }),
            }
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    /// A `NFULNL_MSG_PACKET` as nfnetlink_log builds it (`__build_packet_message`):
    /// nfgenmsg (family, version 0, the group big endian), then NFULA_PACKET_HDR,
    /// NFULA_PREFIX, NFULA_IFINDEX_INDEV, NFULA_TIMESTAMP-less, NFULA_PAYLOAD.
    fn packet_msg(family: u8, group: u16, prefix: &[u8], indev: u32, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![family, 0];
        body.extend_from_slice(&group.to_be_bytes());
        attr(&mut body, 1, &[0x08, 0x00, 2, 0]); // hw_protocol ETH_P_IP, hook forward
        attr(&mut body, NFULA_PREFIX, prefix);
        attr(&mut body, NFULA_IFINDEX_INDEV, &indev.to_be_bytes());
        attr(&mut body, NFULA_PAYLOAD, payload);
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET).to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    /// The first 60 bytes of a SYN from 172.17.0.2:40312 to 169.254.169.254:80, as a
    /// container's kernel sends it (IPv4 header of 20 bytes, TCP with options).
    const SYN_V4: [u8; 60] = [
        0x45, 0x00, 0x00, 0x3c, 0x5d, 0x2b, 0x40, 0x00, 0x3f, 0x06, 0x00, 0x00, 172, 17, 0, 2, 169, 254, 169, 254,
        0x9d, 0x78, 0x00, 0x50, 0x6f, 0x1e, 0x2a, 0x11, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, 0x00, 0x00,
        0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x12, 0x34, 0x56, 0x78, 0x00, 0x00, 0x00, 0x00,
        0x01, 0x03, 0x03, 0x07,
    ];

    #[test]
    fn a_logged_ipv4_syn_decodes_to_its_interface_prefix_addresses_and_ports() {
        let m = packet_msg(2, 1254, b"imds-audit-ipv4\0", 5, &SYN_V4);
        let got = decode_packets(&m);
        assert_eq!(got.len(), 1);
        let a = &got[0];
        assert_eq!((a.ipv6, a.indev, a.prefix.as_str()), (false, Some(5), "imds-audit-ipv4"));
        let p = a.packet.as_ref().unwrap();
        assert_eq!(
            (p.src, p.dst, p.proto, p.sport, p.dport),
            ("172.17.0.2".parse::<IpAddr>().unwrap(), "169.254.169.254".parse::<IpAddr>().unwrap(), 6, 40312, 80)
        );
    }

    #[test]
    fn ipv6_ipv4_options_and_several_messages_in_one_datagram() {
        let mut v6 = vec![0u8; 44];
        v6[0] = 0x60;
        v6[6] = 6;
        v6[8..24].copy_from_slice(&"fd00:d0c::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6[24..40].copy_from_slice(&"fd00:ec2::254".parse::<std::net::Ipv6Addr>().unwrap().octets());
        v6[40..44].copy_from_slice(&[0x9d, 0x78, 0, 80]);
        // An IPv4 header with 4 bytes of options (IHL 6): the ports follow at 24.
        let mut opt = SYN_V4[..20].to_vec();
        opt[0] = 0x46;
        opt.extend_from_slice(&[1, 1, 1, 0, 0x12, 0x34, 0, 80]);
        let mut d = packet_msg(10, 1254, b"imds-audit-ipv6\0", 9, &v6);
        d.extend(packet_msg(2, 1254, b"imds-audit-ipv4\0", 5, &opt));
        let got = decode_packets(&d);
        assert_eq!(got.len(), 2);
        assert!(got[0].ipv6);
        let p = got[0].packet.as_ref().unwrap();
        assert_eq!((p.dst.to_string().as_str(), p.sport, p.dport), ("fd00:ec2::254", 40312, 80));
        let p = got[1].packet.as_ref().unwrap();
        assert_eq!((p.sport, p.dport), (0x1234, 80));
    }

    #[test]
    fn acks_and_truncated_messages_are_not_attempts_and_a_short_copy_has_no_packet() {
        let mut d = packet_msg(2, 1, b"x\0", 1, &SYN_V4[..8]);
        assert_eq!(decode_packets(&d)[0].packet, None, "8 bytes are no IPv4 header");
        // An ack (NLMSG_ERROR 0) for seq 7 first, then a message cut short.
        let mut ack = vec![0u8; 36];
        ack[..4].copy_from_slice(&36u32.to_ne_bytes());
        ack[4..6].copy_from_slice(&(libc::NLMSG_ERROR as u16).to_ne_bytes());
        ack[28..32].copy_from_slice(&7u32.to_ne_bytes());
        assert_eq!(ack_errno(&ack, 7), Some(0));
        ack[16..20].copy_from_slice(&(-libc::EBUSY).to_ne_bytes());
        assert_eq!(ack_errno(&ack, 7), Some(libc::EBUSY));
        assert_eq!(ack_errno(&ack, 8), None);
        let n = d.len() as u32 + 4;
        d[..4].copy_from_slice(&n.to_ne_bytes());
        ack.extend(d);
        assert!(decode_packets(&ack).is_empty());
    }

    /// An IPv6 SYN from [fd00:d0c::2]:40312 to [fd00:ec2::254]:80 behind `ext`
    /// (extension headers as (number, bytes)), the fixed header's next header the first.
    fn v6_with(ext: &[(u8, Vec<u8>)], last: u8) -> Vec<u8> {
        let mut p = vec![0u8; 40];
        p[0] = 0x60;
        p[6] = ext.first().map_or(last, |e| e.0);
        p[8..24].copy_from_slice(&"fd00:d0c::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        p[24..40].copy_from_slice(&"fd00:ec2::254".parse::<std::net::Ipv6Addr>().unwrap().octets());
        for (i, (_, bytes)) in ext.iter().enumerate() {
            let mut h = bytes.clone();
            h[0] = ext.get(i + 1).map_or(last, |e| e.0);
            p.extend(h);
        }
        p.extend([0x9d, 0x78, 0, 80, 0, 0, 0, 1]);
        p
    }

    #[test]
    fn ipv6_extension_headers_are_walked_to_the_protocol_and_ports() {
        // Hop-by-hop (8 octets: Hdr Ext Len 0), routing type 4 with one segment (24: len 2),
        // fragment (first: offset 0, M set), destination options (16: len 1): 96 bytes of
        // headers, within the snaplen of 128.
        let hbh = vec![0, 0, 5, 2, 0, 0, 1, 0];
        let mut rh = vec![0u8; 24];
        rh[1] = 2;
        let frag = vec![0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef];
        let mut dst = vec![0u8; 16];
        dst[1] = 1;
        let p = v6_with(&[(0, hbh.clone()), (43, rh), (44, frag), (60, dst)], 6);
        assert!(p.len() <= 128);
        let got = packet_of(&p).unwrap();
        assert_eq!((got.proto, got.sport, got.dport), (6, 40312, 80), "{got:?}");
        assert_eq!(got.src.to_string(), "fd00:d0c::2");
        // UDP behind hop-by-hop alone.
        let got = packet_of(&v6_with(&[(0, hbh.clone())], 17)).unwrap();
        assert_eq!((got.proto, got.sport, got.dport), (17, 40312, 80));
        // A later fragment (offset 8 octets): the protocol, no ports.
        let got = packet_of(&v6_with(&[(44, vec![0, 0, 0, 8, 0, 0, 0, 1])], 6)).unwrap();
        assert_eq!((got.proto, got.sport, got.dport), (6, 0, 0));
        // A chain cut by the snaplen: the last header read, no ports.
        let cut = v6_with(&[(0, hbh), (60, vec![0u8; 16])], 6);
        let got = packet_of(&cut[..49]).unwrap();
        assert_eq!((got.proto, got.sport, got.dport), (60, 0, 0));
        // The destination options header read, the TCP header past the copy: tcp, no ports.
        let got = packet_of(&cut[..50]).unwrap();
        assert_eq!((got.proto, got.sport, got.dport), (6, 0, 0));
        // The line then names the protocol and ports (was `ipv6 proto 60 ...`).
        let a = Attempt {
            ipv6: true,
            indev: None,
            physindev: None,
            prefix: String::new(),
            packet: packet_of(&v6_with(&[(60, vec![0u8; 8])], 6)),
        };
        assert!(crate::render::audit::line(&a, None, None, None).contains("ipv6 tcp [fd00:d0c::2]:40312 ->"));
    }

    #[test]
    fn the_bridge_port_is_decoded_when_the_kernel_gives_it() {
        let mut m = packet_msg(2, 1254, b"imds-audit-ipv4\0", 5, &SYN_V4);
        assert_eq!(decode_packets(&m)[0].physindev, None);
        // Appended after the payload: the kernel's order does not matter to the decoder.
        let before = m.len();
        attr(&mut m, NFULA_IFINDEX_PHYSINDEV, &17u32.to_be_bytes());
        let n = m.len() as u32;
        m[..4].copy_from_slice(&n.to_ne_bytes());
        assert!(m.len() > before);
        let a = &decode_packets(&m)[0];
        assert_eq!((a.indev, a.physindev), (Some(5), Some(17)));
    }

    #[test]
    fn a_group_another_socket_holds_is_named_so() {
        // nfulnl_recv_config answers EPERM when the group's instance has another port id.
        let e = Error::Bind { group: 1254, source: std::io::Error::from_raw_os_error(libc::EPERM) };
        assert!(e.is_held());
        let text = e.to_string();
        assert!(
            text.contains(
                "another listener (ulogd, tcpdump -i nflog:1254, another watcher) holds nfnetlink_log group 1254"
            ),
            "{text}"
        );
        let other = Error::Bind { group: 1254, source: std::io::Error::from_raw_os_error(libc::EINVAL) };
        assert!(!other.is_held() && !other.to_string().contains("another listener"));
    }

    #[test]
    fn the_bind_request_frames_the_group_mode_and_threshold() {
        let m = bind_request(1254, 128, 3);
        assert_eq!(u32::from_ne_bytes(m[..4].try_into().unwrap()) as usize, m.len());
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), 0x0401);
        assert_eq!(&m[18..20], &1254u16.to_be_bytes());
        let attrs: Vec<(u16, Vec<u8>)> = attributes(&m[20..]).map(|(t, v)| (t, v.to_vec())).collect();
        assert_eq!(
            attrs,
            vec![
                (NFULA_CFG_CMD, vec![CMD_BIND]),
                (NFULA_CFG_MODE, vec![0, 0, 0, 128, COPY_PACKET, 0]),
                (NFULA_CFG_QTHRESH, vec![0, 0, 0, 1]),
            ]
        );
    }
}
