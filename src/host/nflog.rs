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
//! is `EBUSY` ([`Error::is_busy`]). The group is released when the socket closes.
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
    #[error("cannot bind nfnetlink_log group {group}{}", if .source.raw_os_error() == Some(libc::EBUSY) {
        " (another listener holds it: choose another audit.nflog_group)"
    } else { "" })]
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
    /// Whether another listener holds the group (`EBUSY`).
    pub fn is_busy(&self) -> bool {
        matches!(self, Error::Bind { source, .. } if source.raw_os_error() == Some(libc::EBUSY))
    }
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
/// IPv4 header of its own length (IHL), or the 40-byte IPv6 header (the ports only when
/// the next header is the transport one). `None` when it is neither.
fn packet_of(payload: &[u8]) -> Option<crate::model::trace::Packet> {
    let transport = match payload.first()? >> 4 {
        4 => payload.get(usize::from(payload[0] & 0x0f) * 4..),
        6 if matches!(payload.get(6), Some(6 | 17)) => payload.get(40..),
        6 => None,
        _ => return None,
    };
    crate::host::trace::parse_packet(payload, transport)
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
        let mut a = Attempt { ipv6: body[0] == NFPROTO_IPV6, indev: None, prefix: String::new(), packet: None };
        for (ty, v) in attributes(&body[4..]) {
            match ty {
                NFULA_IFINDEX_INDEV => a.indev = v.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
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
    /// Errors: [`Error::Open`]; [`Error::Bind`] when the kernel refuses (`EBUSY`: another
    /// listener holds the group; `EPERM` without CAP_NET_ADMIN).
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
