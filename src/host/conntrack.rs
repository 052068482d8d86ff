//! Connection-tracking entries over ctnetlink (`NETLINK_NETFILTER`, subsystem
//! `NFNL_SUBSYS_CTNETLINK`), built and parsed by hand from byte slices: one filtered dump
//! (`IPCTNL_MSG_CT_GET`) and one delete per entry (`IPCTNL_MSG_CT_DELETE`). No conntrack
//! binary and no library beyond the netlink socket.
//!
//! Why: a container that sent a SYN to the credentials endpoint before the DNAT existed
//! left an entry without NAT (`SYN_SENT`, `UNREPLIED`, 120 s). NAT is decided once per
//! connection, on its first packet, so its retransmissions, and a reconnect from the same
//! source port, keep using that entry and never reach the agent until it expires. Deleting
//! it lets the next packet start a new entry, which the DNAT now rewrites.
//!
//! Owns the ctnetlink socket ([`Conntrack`]), the entries it reads ([`Entry`]) and its
//! failures ([`Error`]).

use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt::ReceiveTimeout};
use nix::sys::time::TimeVal;
use std::net::Ipv4Addr;

/// A ctnetlink failure. OS errors are the [`source`](std::error::Error::source) (printed
/// after `: ` by `{:#}`).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// socket(2), bind(2) or connect(2) of the `NETLINK_NETFILTER` socket failed.
    #[error("cannot open a NETLINK_NETFILTER socket")]
    Open {
        /// The OS error.
        source: std::io::Error,
    },
    /// Sending a request failed.
    #[error("ctnetlink send")]
    Send {
        /// The OS error.
        source: std::io::Error,
    },
    /// Receiving an answer failed (including the 5 s receive timeout: `EAGAIN`).
    #[error("ctnetlink receive")]
    Receive {
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel answered a request with an errno (`NLMSG_ERROR`), e.g. `EOPNOTSUPP`
    /// when ctnetlink (`nf_conntrack_netlink`) is not available.
    #[error("the kernel refused the ctnetlink {request}")]
    Kernel {
        /// `dump` or `delete`.
        request: &'static str,
        /// The errno.
        source: std::io::Error,
    },
    /// An answer is not a well-formed netlink message (a length past the end, or shorter
    /// than its header).
    #[error("malformed ctnetlink answer: {0}")]
    Malformed(&'static str),
}

/// One connection-tracking entry, as much of it as ecs-hostnet needs to select and
/// delete it (IPv4 only: the credentials endpoint is an IPv4 address).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The original direction's source address (`CTA_TUPLE_ORIG` / `CTA_IP_V4_SRC`).
    pub src: Ipv4Addr,
    /// The original direction's destination address (`CTA_IP_V4_DST`).
    pub dst: Ipv4Addr,
    /// The layer-4 protocol number (`CTA_PROTO_NUM`; 6 = TCP).
    pub proto: u8,
    /// The original direction's source port (`CTA_PROTO_SRC_PORT`), 0 when the protocol
    /// has none.
    pub sport: u16,
    /// The original direction's destination port (`CTA_PROTO_DST_PORT`), 0 when none.
    pub dport: u16,
    /// The reply direction's source address (`CTA_TUPLE_REPLY` / `CTA_IP_V4_SRC`): the
    /// original destination unless a DNAT rewrote it.
    pub reply_src: Option<Ipv4Addr>,
    /// The reply direction's source port (`CTA_TUPLE_REPLY` / `CTA_PROTO_SRC_PORT`): the
    /// original destination port unless a DNAT or REDIRECT rewrote it.
    pub reply_sport: Option<u16>,
    /// `CTA_STATUS`: the `IPS_*` bits ([`IPS_SEEN_REPLY`], [`IPS_DST_NAT`], ...).
    pub status: u32,
    /// `CTA_ID`: the entry's id; a delete naming it removes this entry only, not a new
    /// one with the same tuple.
    pub id: Option<u32>,
    /// `CTA_ZONE`: the conntrack zone (0 when absent).
    pub zone: u16,
}

/// `IPS_SEEN_REPLY`: a packet was seen in the reply direction.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
/// `IPS_DST_NAT`: the destination of the original direction was rewritten (DNAT, REDIRECT).
pub const IPS_DST_NAT: u32 = 1 << 5;
/// `IPPROTO_TCP`.
pub const PROTO_TCP: u8 = 6;

impl Entry {
    /// Whether this is a TCP entry toward `addr:port` that nothing answered and no DNAT
    /// rewrote: the stale entry of a connection attempt made before the credentials
    /// DNAT existed. An entry the destination answered is left alone: it is someone's
    /// working connection (and the kernel itself re-opens a closed one on a new SYN).
    pub fn is_stale_toward(&self, addr: Ipv4Addr, port: u16) -> bool {
        self.proto == PROTO_TCP
            && self.dst == addr
            && self.dport == port
            && self.status & (IPS_DST_NAT | IPS_SEEN_REPLY) == 0
    }
}

// nfnetlink and ctnetlink numbers (include/uapi/linux/netfilter/nfnetlink*.h).
const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_NEW: u16 = 0;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));
const AF_INET: u8 = 2;
const NLMSG_HDRLEN: usize = 16;
const NFGENMSG_LEN: usize = 4;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_FILTER: u16 = 25;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_FILTER_ORIG_FLAGS: u16 = 1;
// CTA_FILTER_FLAG(CTA_IP_DST) | CTA_FILTER_FLAG(CTA_PROTO_NUM) | CTA_FILTER_FLAG(CTA_PROTO_DST_PORT)
// (net/netfilter/nf_conntrack_netlink.c; uapi CTA_FILTER_F_*).
const FILTER_DST_PROTO_DPORT: u32 = (1 << 1) | (1 << 3) | (1 << 5);

/// A netlink request being built: header, `nfgenmsg`, attributes (nests patched when
/// closed).
struct Request(Vec<u8>);

impl Request {
    fn new(msg: u16, flags: u16, seq: u32) -> Request {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, set by finish
        b.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | msg).to_ne_bytes());
        b.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
        b.extend_from_slice(&[AF_INET, 0, 0, 0]); // nfgenmsg: family, NFNETLINK_V0, res_id
        Request(b)
    }

    fn attr(&mut self, kind: u16, data: &[u8]) -> &mut Self {
        let len = (4 + data.len()) as u16;
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    /// Opens a nested attribute; returns where its header is, for [`Request::close`].
    fn open(&mut self, kind: u16) -> usize {
        let at = self.0.len();
        self.attr(kind | NLA_F_NESTED, &[]);
        at
    }

    fn close(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    /// `CTA_TUPLE_ORIG` (or another tuple attribute): addresses, protocol, ports
    /// (addresses and ports in network byte order, as the kernel wants them).
    fn tuple(&mut self, kind: u16, src: Option<Ipv4Addr>, dst: Ipv4Addr, proto: u8, sport: Option<u16>, dport: u16) {
        let t = self.open(kind);
        let ip = self.open(CTA_TUPLE_IP);
        if let Some(s) = src {
            self.attr(CTA_IP_V4_SRC, &s.octets());
        }
        self.attr(CTA_IP_V4_DST, &dst.octets());
        self.close(ip);
        let p = self.open(CTA_TUPLE_PROTO);
        self.attr(CTA_PROTO_NUM, &[proto]);
        if let Some(s) = sport {
            self.attr(CTA_PROTO_SRC_PORT, &s.to_be_bytes());
        }
        self.attr(CTA_PROTO_DST_PORT, &dport.to_be_bytes());
        self.close(p);
        self.close(t);
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

/// The request to dump the IPv4 entries whose original destination is `dst:dport` (TCP).
/// The kernel filters by them since Linux 5.8 (`CTA_FILTER`); an older one ignores the
/// filter and dumps every entry, so the caller selects again.
fn dump_request(dst: Ipv4Addr, dport: u16, seq: u32) -> Vec<u8> {
    let mut r = Request::new(IPCTNL_MSG_CT_GET, NLM_F_DUMP, seq);
    r.tuple(CTA_TUPLE_ORIG, None, dst, PROTO_TCP, None, dport);
    let f = r.open(CTA_FILTER);
    r.attr(CTA_FILTER_ORIG_FLAGS, &FILTER_DST_PROTO_DPORT.to_ne_bytes());
    r.close(f);
    r.finish()
}

/// The request to delete `e`: its original tuple, its zone, and its id (so that an entry
/// made since the dump with the same tuple stays).
fn delete_request(e: &Entry, seq: u32) -> Vec<u8> {
    let mut r = Request::new(IPCTNL_MSG_CT_DELETE, NLM_F_ACK, seq);
    r.tuple(CTA_TUPLE_ORIG, Some(e.src), e.dst, e.proto, Some(e.sport), e.dport);
    if let Some(id) = e.id {
        r.attr(CTA_ID, &id.to_be_bytes());
    }
    if e.zone != 0 {
        r.attr(CTA_ZONE, &e.zone.to_be_bytes());
    }
    r.finish()
}

/// The attributes in `b`: (type without flags, payload). A truncated attribute ends the
/// walk (the rest is ignored, never a panic).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let kind = u16::from_ne_bytes([b[2], b[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > b.len() {
            return None;
        }
        let payload = &b[4..len];
        b = &b[len.next_multiple_of(4).min(b.len())..];
        Some((kind, payload))
    })
}

fn find(b: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(b).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

fn ipv4(b: &[u8]) -> Option<Ipv4Addr> {
    <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
}

fn be16(b: &[u8]) -> Option<u16> {
    <[u8; 2]>::try_from(b).ok().map(u16::from_be_bytes)
}

fn be32(b: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(b).ok().map(u32::from_be_bytes)
}

/// An entry from the attributes of one `IPCTNL_MSG_CT_NEW` answer (after the
/// `nfgenmsg`); `None` for one that is not IPv4 or lacks its original tuple.
fn parse_entry(b: &[u8]) -> Option<Entry> {
    let orig = find(b, CTA_TUPLE_ORIG)?;
    let ip = find(orig, CTA_TUPLE_IP)?;
    let proto = find(orig, CTA_TUPLE_PROTO)?;
    let reply_src = find(b, CTA_TUPLE_REPLY)
        .and_then(|r| find(r, CTA_TUPLE_IP))
        .and_then(|ip| find(ip, CTA_IP_V4_SRC))
        .and_then(ipv4);
    let reply_sport = find(b, CTA_TUPLE_REPLY)
        .and_then(|r| find(r, CTA_TUPLE_PROTO))
        .and_then(|p| find(p, CTA_PROTO_SRC_PORT))
        .and_then(be16);
    Some(Entry {
        src: ipv4(find(ip, CTA_IP_V4_SRC)?)?,
        dst: ipv4(find(ip, CTA_IP_V4_DST)?)?,
        proto: *find(proto, CTA_PROTO_NUM)?.first()?,
        sport: find(proto, CTA_PROTO_SRC_PORT).and_then(be16).unwrap_or(0),
        dport: find(proto, CTA_PROTO_DST_PORT).and_then(be16).unwrap_or(0),
        reply_src,
        reply_sport,
        status: find(b, CTA_STATUS).and_then(be32).unwrap_or(0),
        id: find(b, CTA_ID).and_then(be32),
        zone: find(b, CTA_ZONE).and_then(be16).unwrap_or(0),
    })
}

/// What one received buffer says: more to read, or the request's end.
enum Read {
    More,
    Done,
}

/// Walks the netlink messages of `buf` answering sequence `seq`: entries go to `out`,
/// `NLMSG_DONE` or an ack ends the request, an error answer is returned.
fn walk(buf: &[u8], seq: u32, request: &'static str, out: &mut Vec<Entry>) -> Result<Read, Error> {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let h = &buf[off..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            return Err(Error::Malformed("a message length is shorter than its header or past the end"));
        }
        let kind = u16::from_ne_bytes([h[4], h[5]]);
        let mseq = u32::from_ne_bytes([h[8], h[9], h[10], h[11]]);
        let body = &h[NLMSG_HDRLEN..len];
        off += len.next_multiple_of(4);
        if mseq != seq {
            continue;
        }
        match kind {
            NLMSG_DONE => return Ok(Read::Done),
            NLMSG_ERROR => {
                let code = body.get(..4).map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
                return match code {
                    Some(0) => Ok(Read::Done),
                    Some(c) => Err(Error::Kernel { request, source: std::io::Error::from_raw_os_error(-c) }),
                    None => Err(Error::Malformed("an error answer without its code")),
                };
            }
            k if k == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW && body.len() >= NFGENMSG_LEN => {
                out.extend(parse_entry(&body[NFGENMSG_LEN..]));
            }
            _ => {}
        }
    }
    Ok(Read::More)
}

/// A ctnetlink socket in the network namespace of the thread that opened it.
pub struct Conntrack {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Conntrack {
    /// Opens a `NETLINK_NETFILTER` socket with a 5 s receive timeout.
    ///
    /// Errors: [`Error::Open`].
    pub fn open() -> Result<Conntrack, Error> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|source| Error::Open { source })?;
        sock.bind_auto().map_err(|source| Error::Open { source })?;
        sock.connect(&SocketAddr::new(0, 0)).map_err(|source| Error::Open { source })?;
        // The kernel answers within the request; never wait forever. (Best effort.)
        let _ = setsockopt(&sock, ReceiveTimeout, &TimeVal::new(5, 0));
        // 32 KiB: the most the kernel puts in one dump read.
        Ok(Conntrack { sock, seq: 0, buf: Vec::with_capacity(32 * 1024) })
    }

    fn request(&mut self, bytes: &[u8], request: &'static str) -> Result<Vec<Entry>, Error> {
        self.sock.send(bytes, 0).map_err(|source| Error::Send { source })?;
        let mut out = Vec::new();
        loop {
            self.buf.clear();
            self.sock.recv(&mut self.buf, 0).map_err(|source| Error::Receive { source })?;
            if let Read::Done = walk(&self.buf, self.seq, request, &mut out)? {
                return Ok(out);
            }
        }
    }

    /// The IPv4 TCP entries whose original destination is `dst:dport`, every zone.
    ///
    /// Errors: [`Error::Send`], [`Error::Receive`], [`Error::Malformed`], and
    /// [`Error::Kernel`] (`dump`).
    pub fn entries_toward(&mut self, dst: Ipv4Addr, dport: u16) -> Result<Vec<Entry>, Error> {
        self.seq += 1;
        let req = dump_request(dst, dport, self.seq);
        let mut all = self.request(&req, "dump")?;
        all.retain(|e| e.proto == PROTO_TCP && e.dst == dst && e.dport == dport);
        Ok(all)
    }

    /// Deletes `e` (by original tuple, zone and id). An entry already gone (`ENOENT`:
    /// it expired, or was deleted meanwhile) counts as deleted.
    ///
    /// Errors: as [`Conntrack::entries_toward`], [`Error::Kernel`] (`delete`).
    pub fn delete(&mut self, e: &Entry) -> Result<(), Error> {
        self.seq += 1;
        let req = delete_request(e, self.seq);
        match self.request(&req, "delete") {
            Err(Error::Kernel { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            r => r.map(|_| ()),
        }
    }

    /// Deletes every entry toward `dst:dport` (TCP) that is stale
    /// ([`Entry::is_stale_toward`]: no reply seen, no DNAT); returns how many.
    ///
    /// Errors: as [`Conntrack::entries_toward`] and [`Conntrack::delete`]; entries
    /// deleted before an error stay deleted.
    pub fn delete_stale_toward(&mut self, dst: Ipv4Addr, dport: u16) -> Result<usize, Error> {
        let stale: Vec<Entry> =
            self.entries_toward(dst, dport)?.into_iter().filter(|e| e.is_stale_toward(dst, dport)).collect();
        for e in &stale {
            self.delete(e)?;
        }
        Ok(stale.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EP: Ipv4Addr = Ipv4Addr::new(169, 254, 170, 2);

    fn entry(status: u32) -> Entry {
        Entry {
            src: Ipv4Addr::new(172, 17, 0, 2),
            dst: EP,
            proto: PROTO_TCP,
            sport: 40000,
            dport: 80,
            reply_src: Some(EP),
            reply_sport: Some(80),
            status,
            id: Some(7),
            zone: 0,
        }
    }

    /// An answer message as the kernel sends it, built with the request builder.
    fn answer(e: &Entry, seq: u32) -> Vec<u8> {
        let mut r = Request::new(IPCTNL_MSG_CT_NEW, 0, seq);
        r.tuple(CTA_TUPLE_ORIG, Some(e.src), e.dst, e.proto, Some(e.sport), e.dport);
        r.tuple(CTA_TUPLE_REPLY, e.reply_src, e.src, e.proto, e.reply_sport, e.sport);
        r.attr(CTA_STATUS, &e.status.to_be_bytes());
        r.attr(CTA_ID, &e.id.unwrap().to_be_bytes());
        r.finish()
    }

    #[test]
    fn only_unanswered_entries_without_dnat_toward_the_endpoint_are_stale() {
        assert!(entry(0).is_stale_toward(EP, 80));
        assert!(entry(1 << 3).is_stale_toward(EP, 80), "IPS_CONFIRMED alone is still stale");
        assert!(!entry(IPS_DST_NAT).is_stale_toward(EP, 80));
        assert!(!entry(IPS_SEEN_REPLY).is_stale_toward(EP, 80));
        assert!(!entry(0).is_stale_toward(EP, 81));
        assert!(!entry(0).is_stale_toward(Ipv4Addr::new(169, 254, 170, 3), 80));
        assert!(!Entry { proto: 17, ..entry(0) }.is_stale_toward(EP, 80));
    }

    #[test]
    fn an_answer_parses_back_into_the_entry() {
        // DNATed to the agent: the reply tuple's source is where the connection went.
        let e = Entry {
            reply_src: Some(Ipv4Addr::LOCALHOST),
            reply_sport: Some(51679),
            ..entry(IPS_DST_NAT | IPS_SEEN_REPLY)
        };
        let mut out = Vec::new();
        let mut buf = answer(&e, 3);
        buf.extend(answer(&entry(0), 4)); // another request's: skipped
        assert!(matches!(walk(&buf, 3, "dump", &mut out), Ok(Read::More)));
        assert_eq!(out, vec![e]);
    }

    #[test]
    fn done_ack_and_errors_end_a_request() {
        let mut done = vec![0u8; 20];
        done[0..4].copy_from_slice(&20u32.to_ne_bytes());
        done[4..6].copy_from_slice(&NLMSG_DONE.to_ne_bytes());
        done[8..12].copy_from_slice(&9u32.to_ne_bytes());
        assert!(matches!(walk(&done, 9, "dump", &mut Vec::new()), Ok(Read::Done)));
        let mut err = done.clone();
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[16..20].copy_from_slice(&(-libc::EPERM).to_ne_bytes());
        match walk(&err, 9, "delete", &mut Vec::new()) {
            Err(Error::Kernel { request: "delete", source }) => assert_eq!(source.raw_os_error(), Some(libc::EPERM)),
            other => panic!("expected a kernel error, got {:?}", other.map(|_| ())),
        }
        err[16..20].copy_from_slice(&0i32.to_ne_bytes());
        assert!(matches!(walk(&err, 9, "delete", &mut Vec::new()), Ok(Read::Done)));
    }

    #[test]
    fn malformed_answers_are_errors_not_panics() {
        let mut b = vec![0u8; 20];
        b[0..4].copy_from_slice(&400u32.to_ne_bytes());
        assert!(matches!(walk(&b, 1, "dump", &mut Vec::new()), Err(Error::Malformed(_))));
        b[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(walk(&b, 1, "dump", &mut Vec::new()), Err(Error::Malformed(_))));
        // A truncated attribute inside a message ends that message's attributes.
        let mut m = answer(&entry(0), 1);
        let n = m.len();
        m[NLMSG_HDRLEN + NFGENMSG_LEN..NLMSG_HDRLEN + NFGENMSG_LEN + 2].copy_from_slice(&(n as u16 * 2).to_ne_bytes());
        let mut out = Vec::new();
        assert!(walk(&m, 1, "dump", &mut out).is_ok());
        assert!(out.is_empty());
    }

    #[test]
    fn the_delete_request_names_tuple_id_and_zone() {
        let e = Entry { zone: 5, ..entry(0) };
        let b = delete_request(&e, 11);
        assert_eq!(u32::from_ne_bytes(b[0..4].try_into().unwrap()) as usize, b.len());
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), (1 << 8) | 2);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), NLM_F_REQUEST | NLM_F_ACK);
        let a = &b[NLMSG_HDRLEN + NFGENMSG_LEN..];
        let parsed = parse_entry(a).unwrap();
        assert_eq!((parsed.src, parsed.dst, parsed.sport, parsed.dport), (e.src, e.dst, 40000, 80));
        assert_eq!(parsed.id, Some(7));
        assert_eq!(parsed.zone, 5);
    }
}
