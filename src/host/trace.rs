//! nftrace for `verify`: the temporary trace table ([`TraceTable`]: `table inet
//! ecs-hostnet-verify-<pid>`, base chains at prerouting and output, priority -350, before
//! raw and conntrack, that set `meta nftrace set 1` for the probe's packets only), the trace
//! event socket ([`TraceListener`], `NETLINK_NETFILTER` joined to `NFNLGRP_NFTRACE`), the
//! pure decoder of `NFT_MSG_TRACE` ([`decode_trace`]) and the removal of a killed run's
//! table ([`sweep_dead`]).
//!
//! The table's messages are built here byte by byte (nf_tables netlink attributes,
//! include/uapi/linux/netfilter/nf_tables.h) and sent as one batch: the model has no
//! `meta nftrace set` statement, and this table is never planned or diffed. It carries the
//! kernel's owner flag (`NFT_TABLE_F_OWNER`, kernel 5.12+), so it goes with the socket that
//! made it even when the process is killed; on older kernels it is made without the flag
//! and [`sweep_dead`] removes it on the next run.

use crate::model::trace::{Packet, TraceEvent, TraceType, Verdict};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};
use nix::sys::socket::{setsockopt, sockopt};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, BorrowedFd};

/// What the trace table's name starts with; the pid of the run that made it follows.
/// Not `ecs-hostnet` itself: the watcher repairs only tables named exactly that.
pub const TABLE_PREFIX: &str = "ecs-hostnet-verify-";
/// The trace chains' priority: before raw (-300) and conntrack (-200), so the trace
/// covers every other chain on the hook.
pub const PRIORITY: i32 = -350;

/// `NFNLGRP_NFTRACE` (include/uapi/linux/netfilter/nfnetlink.h).
pub const NFNLGRP_NFTRACE: u32 = 9;
/// `NFNL_SUBSYS_NFTABLES`.
const SUBSYS: u16 = 10;
/// `NFT_MSG_TRACE`.
const NFT_MSG_TRACE: u16 = 17;
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_GETTABLE: u16 = 1;
const NFT_MSG_DELTABLE: u16 = 2;
const NFT_MSG_NEWCHAIN: u16 = 3;
const NFT_MSG_NEWRULE: u16 = 6;
/// `NFNL_MSG_BATCH_BEGIN` / `_END`.
const BATCH_BEGIN: u16 = 0x10;
const BATCH_END: u16 = 0x11;
/// `NFPROTO_INET`.
const INET: u8 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A trace failure. OS errors are the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be opened, bound or joined to `NFNLGRP_NFTRACE`.
    #[error("cannot open the nf_tables trace socket")]
    Open {
        /// The OS error.
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("nf_tables trace socket: {what}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused a message of the trace table's batch.
    #[error("the kernel refused the trace table {table}: {source}")]
    Refused {
        /// The table.
        table: String,
        /// The errno.
        source: std::io::Error,
    },
    /// A trace message did not frame.
    #[error("malformed nf_tables trace message: {0}")]
    Malformed(String),
}

/// Appends one netlink attribute (4-byte aligned).
fn attr(buf: &mut Vec<u8>, kind: u16, value: &[u8]) {
    buf.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(value);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// A nested attribute holding what `f` writes.
fn nest(buf: &mut Vec<u8>, kind: u16, f: impl FnOnce(&mut Vec<u8>)) {
    let mut inner = Vec::new();
    f(&mut inner);
    attr(buf, kind | NLA_F_NESTED, &inner);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn be32(n: u32) -> [u8; 4] {
    n.to_be_bytes()
}

/// One message: nlmsghdr + nfgenmsg (family, version 0, res_id) + attributes.
fn message(kind: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(20 + attrs.len());
    m.extend_from_slice(&((20 + attrs.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(flags | libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&[family, 0]);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// One expression (`NFTA_LIST_ELEM` { `NFTA_EXPR_NAME`, `NFTA_EXPR_DATA` }).
fn expr(buf: &mut Vec<u8>, name: &str, data: impl FnOnce(&mut Vec<u8>)) {
    nest(buf, 1, |e| {
        attr(e, 1, &cstr(name));
        nest(e, 2, data);
    });
}

/// Which packets a trace chain marks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Select {
    /// `iifname NAME` (prerouting: the probe's host end).
    Iifname(String),
    /// `meta mark VALUE` (output: the host probe's socket mark, `SO_MARK`).
    Mark(u32),
}

/// The expressions of `<select> meta nftrace set 1`: load the key into register 1,
/// compare, load 1, set nftrace (`NFT_META_IIFNAME` 6 / `NFT_META_MARK` 3,
/// `NFT_META_NFTRACE` 12).
fn trace_rule_exprs(select: &Select) -> Vec<u8> {
    let (key, value) = match select {
        // The kernel compares the whole IFNAMSIZ (16) bytes for an exact name.
        Select::Iifname(n) => {
            let mut v = n.as_bytes().to_vec();
            v.resize(16, 0);
            (6u32, v)
        }
        Select::Mark(m) => (3u32, m.to_ne_bytes().to_vec()),
    };
    let mut list = Vec::new();
    expr(&mut list, "meta", |d| {
        attr(d, 2, &be32(key)); // NFTA_META_KEY
        attr(d, 1, &be32(1)); // NFTA_META_DREG: NFT_REG_1
    });
    expr(&mut list, "cmp", |d| {
        attr(d, 1, &be32(1)); // NFTA_CMP_SREG
        attr(d, 2, &be32(0)); // NFTA_CMP_OP: NFT_CMP_EQ
        nest(d, 3, |v| attr(v, 1, &value)); // NFTA_CMP_DATA { NFTA_DATA_VALUE }
    });
    expr(&mut list, "immediate", |d| {
        attr(d, 1, &be32(1)); // NFTA_IMMEDIATE_DREG
        nest(d, 2, |v| attr(v, 1, &[1])); // NFTA_IMMEDIATE_DATA { NFTA_DATA_VALUE 1 }
    });
    expr(&mut list, "meta", |d| {
        attr(d, 2, &be32(12)); // NFTA_META_KEY: NFT_META_NFTRACE
        attr(d, 3, &be32(1)); // NFTA_META_SREG
    });
    list
}

/// The batch that makes `table inet NAME` with chain `prerouting` (hook 0) selecting
/// `pre` and chain `output` (hook 3) selecting `out`, both filter at [`PRIORITY`]. With
/// `owner`, the table carries `NFT_TABLE_F_OWNER` (2). Pure: bytes out.
pub fn create_batch(name: &str, pre: &Select, out: &Select, owner: bool, seq: u32) -> Vec<u8> {
    let ack = libc::NLM_F_ACK as u16;
    let create = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let mut b = message(BATCH_BEGIN, 0, seq, 0, SUBSYS, &[]);
    let mut t = Vec::new();
    attr(&mut t, 1, &cstr(name));
    if owner {
        attr(&mut t, 2, &be32(2));
    }
    b.extend(message(SUBSYS << 8 | NFT_MSG_NEWTABLE, create | ack, seq + 1, INET, 0, &t));
    for (i, (chain, hook, select)) in [("prerouting", 0u32, pre), ("output", 3, out)].into_iter().enumerate() {
        let mut c = Vec::new();
        attr(&mut c, 1, &cstr(name));
        attr(&mut c, 3, &cstr(chain));
        nest(&mut c, 4, |h| {
            attr(h, 1, &be32(hook));
            attr(h, 2, &be32(PRIORITY as u32));
        });
        attr(&mut c, 7, &cstr("filter"));
        b.extend(message(SUBSYS << 8 | NFT_MSG_NEWCHAIN, create | ack, seq + 2 + 2 * i as u32, INET, 0, &c));
        let mut r = Vec::new();
        attr(&mut r, 1, &cstr(name));
        attr(&mut r, 2, &cstr(chain));
        nest(&mut r, 4, |l| l.extend(trace_rule_exprs(select)));
        let append = (libc::NLM_F_CREATE | libc::NLM_F_APPEND) as u16;
        b.extend(message(SUBSYS << 8 | NFT_MSG_NEWRULE, append | ack, seq + 3 + 2 * i as u32, INET, 0, &r));
    }
    b.extend(message(BATCH_END, 0, seq + 6, 0, SUBSYS, &[]));
    b
}

/// The batch that deletes `table inet NAME` (and its chains and rules). Pure.
pub fn delete_batch(name: &str, seq: u32) -> Vec<u8> {
    let mut b = message(BATCH_BEGIN, 0, seq, 0, SUBSYS, &[]);
    let mut t = Vec::new();
    attr(&mut t, 1, &cstr(name));
    b.extend(message(SUBSYS << 8 | NFT_MSG_DELTABLE, libc::NLM_F_ACK as u16, seq + 1, INET, 0, &t));
    b.extend(message(BATCH_END, 0, seq + 2, 0, SUBSYS, &[]));
    b
}

/// Iterates the netlink messages of a datagram: (type, whole message).
fn messages(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, Error> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes(buf[off..off + 4].try_into().expect("4 bytes")) as usize;
        if len < 16 || off + len > buf.len() {
            return Err(Error::Malformed(format!("message of length {len} at {off} in {} bytes", buf.len())));
        }
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        out.push((kind, &buf[off..off + len]));
        off += len.next_multiple_of(4);
    }
    Ok(out)
}

/// The attributes of `buf`: (type without flags, payload). Stops at a truncated one.
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK, &buf[4..len]));
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
    }
    out
}

fn u32_be(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or_default()).into_owned()
}

/// The addresses, protocol and ports of an IPv4 or IPv6 header followed by a transport
/// header (both as the kernel copies them into the trace). `None` when the network header
/// is neither.
pub fn parse_packet(network: &[u8], transport: Option<&[u8]>) -> Option<Packet> {
    let (src, dst, proto): (IpAddr, IpAddr, u8) = match network.first()? >> 4 {
        4 if network.len() >= 20 => (
            Ipv4Addr::from(<[u8; 4]>::try_from(&network[12..16]).ok()?).into(),
            Ipv4Addr::from(<[u8; 4]>::try_from(&network[16..20]).ok()?).into(),
            network[9],
        ),
        6 if network.len() >= 40 => (
            Ipv6Addr::from(<[u8; 16]>::try_from(&network[8..24]).ok()?).into(),
            Ipv6Addr::from(<[u8; 16]>::try_from(&network[24..40]).ok()?).into(),
            network[6],
        ),
        _ => return None,
    };
    let (sport, dport) = match transport {
        Some(t) if t.len() >= 4 => (u16::from_be_bytes([t[0], t[1]]), u16::from_be_bytes([t[2], t[3]])),
        _ => (0, 0),
    };
    Some(Packet { src, dst, proto, sport, dport })
}

/// Decodes the `NFT_MSG_TRACE` messages of one datagram of the trace socket (attributes:
/// include/uapi/linux/netfilter/nf_tables.h `enum nft_trace_attributes`; numbers are big
/// endian, as net/netfilter/nf_tables_trace.c puts them). Other messages are skipped.
/// Pure: bytes in, events out.
///
/// Errors: [`Error::Malformed`] when a message does not frame or lacks its id, table or chain.
pub fn decode_trace(buf: &[u8]) -> Result<Vec<TraceEvent>, Error> {
    let mut out = Vec::new();
    for (kind, m) in messages(buf)? {
        if kind != (SUBSYS << 8 | NFT_MSG_TRACE) {
            continue;
        }
        let family = *m.get(16).ok_or_else(|| Error::Malformed("trace message without nfgenmsg".into()))?;
        let (mut id, mut table, mut chain) = (None, None, None);
        let mut ev = TraceEvent {
            id: 0,
            family,
            kind: TraceType::Other,
            table: String::new(),
            chain: String::new(),
            handle: None,
            verdict: None,
            nfproto: None,
            iif: None,
            oif: None,
            packet: None,
            tcp_flags: None,
        };
        let (mut network, mut transport) = (None, None);
        for (t, v) in attrs(m.get(20..).unwrap_or_default()) {
            match t {
                1 => table = Some(string(v)),
                2 => chain = Some(string(v)),
                3 => ev.handle = v.get(..8).map(|b| u64::from_be_bytes(b.try_into().expect("8 bytes"))),
                4 => ev.kind = TraceType::from_number(u32_be(v).unwrap_or(0)),
                5 => {
                    let inner = attrs(v);
                    let code = inner.iter().find(|(k, _)| *k == 1).and_then(|(_, b)| u32_be(b));
                    let target = inner.iter().find(|(k, _)| *k == 2).map(|(_, b)| string(b));
                    ev.verdict = code.map(|c| Verdict::from_code(c as i32, target));
                }
                6 => id = v.get(..4).map(|b| u32::from_ne_bytes(b.try_into().expect("4 bytes"))),
                8 => network = Some(v),
                9 => transport = Some(v),
                10 => ev.iif = u32_be(v),
                12 => ev.oif = u32_be(v),
                15 => ev.nfproto = u32_be(v),
                16 if ev.verdict.is_none() => ev.verdict = u32_be(v).map(|p| Verdict::from_code(p as i32, None)),
                _ => {}
            }
        }
        let missing = |what: &str| Error::Malformed(format!("trace message without {what}"));
        ev.id = id.ok_or_else(|| missing("NFTA_TRACE_ID"))?;
        ev.table = table.ok_or_else(|| missing("NFTA_TRACE_TABLE"))?;
        ev.chain = chain.ok_or_else(|| missing("NFTA_TRACE_CHAIN"))?;
        ev.packet = network.and_then(|n| parse_packet(n, transport));
        if ev.packet.is_some_and(|p| p.proto == 6) {
            ev.tcp_flags = transport.and_then(|t| t.get(13)).copied();
        }
        out.push(ev);
    }
    Ok(out)
}

fn open_socket(groups: &[u32]) -> Result<Socket, Error> {
    let open = |source| Error::Open { source };
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(open)?;
    sock.bind_auto().map_err(open)?;
    sock.connect(&SocketAddr::new(0, 0)).map_err(open)?;
    for g in groups {
        sock.add_membership(*g).map_err(open)?;
    }
    // A queue large enough for the events of a few packets through a busy rule set.
    if setsockopt(&sock, sockopt::RcvBufForce, &(1usize << 21)).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &(1usize << 21));
    }
    Ok(sock)
}

/// The trace event socket of the current network namespace, non-blocking. Join it
/// before the first traced packet: the kernel emits trace events only while someone
/// listens (`nfnetlink_has_listeners`).
pub struct TraceListener {
    sock: Socket,
    buf: Vec<u8>,
}

impl TraceListener {
    /// Opens a `NETLINK_NETFILTER` socket joined to [`NFNLGRP_NFTRACE`].
    ///
    /// Errors: [`Error::Open`].
    pub fn open() -> Result<TraceListener, Error> {
        let sock = open_socket(&[NFNLGRP_NFTRACE])?;
        sock.set_non_blocking(true).map_err(|source| Error::Open { source })?;
        Ok(TraceListener { sock, buf: Vec::with_capacity(64 * 1024) })
    }

    /// Every event queued now (none when nothing is queued); `Ok(true)` in the second
    /// place when the queue overran and events were lost.
    ///
    /// Errors: [`Error::Io`], [`Error::Malformed`].
    pub fn receive(&mut self) -> Result<(Vec<TraceEvent>, bool), Error> {
        let mut out = Vec::new();
        let mut lost = false;
        loop {
            self.buf.clear();
            match self.sock.recv(&mut self.buf, 0) {
                Ok(_) => out.extend(decode_trace(&self.buf)?),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok((out, lost)),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => return Err(Error::Io { what: "receive", source }),
            }
        }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// Sends `batch` and reads the answers up to the ack of its last message; the first
/// error answer is the result.
fn send_batch(sock: &Socket, batch: &[u8], last_seq: u32, table: &str) -> Result<(), Error> {
    sock.send(batch, 0).map_err(|source| Error::Io { what: "send", source })?;
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        sock.recv(&mut buf, 0).map_err(|source| Error::Io { what: "receive", source })?;
        for (kind, m) in messages(&buf)? {
            if kind as i32 != libc::NLMSG_ERROR || m.len() < 20 {
                continue;
            }
            let errno = -i32::from_ne_bytes(m[16..20].try_into().expect("4 bytes"));
            let seq = u32::from_ne_bytes(m[8..12].try_into().expect("4 bytes"));
            if errno != 0 {
                return Err(Error::Refused { table: table.into(), source: std::io::Error::from_raw_os_error(errno) });
            }
            if seq == last_seq {
                return Ok(());
            }
        }
    }
}

/// The temporary trace table, deleted in [`TraceTable::remove`] or when dropped (and by
/// the kernel with its socket, when it carries the owner flag).
pub struct TraceTable {
    sock: Socket,
    name: String,
    removed: bool,
}

impl TraceTable {
    /// Makes the trace table `table inet NAME` ([`create_batch`]) in the current network
    /// namespace, with the owner flag when the kernel has it.
    ///
    /// Errors: [`Error::Open`], [`Error::Io`], [`Error::Refused`].
    pub fn create(name: &str, pre: &Select, out: &Select) -> Result<TraceTable, Error> {
        let sock = open_socket(&[])?;
        let _ = setsockopt(&sock, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(2, 0));
        let seq = 1000;
        match send_batch(&sock, &create_batch(name, pre, out, true, seq), seq + 5, name) {
            // EOPNOTSUPP: a kernel before 5.12 without table flag owner.
            Err(Error::Refused { source, .. }) if source.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                send_batch(&sock, &create_batch(name, pre, out, false, seq + 10), seq + 15, name)?
            }
            r => r?,
        }
        Ok(TraceTable { sock, name: name.into(), removed: false })
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the table.
    ///
    /// Errors: [`Error::Io`], [`Error::Refused`].
    pub fn remove(&mut self) -> Result<(), Error> {
        if self.removed {
            return Ok(());
        }
        self.removed = true;
        send_batch(&self.sock, &delete_batch(&self.name, 2000), 2001, &self.name)
    }
}

impl Drop for TraceTable {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// The names of the `inet` tables whose name is [`TABLE_PREFIX`] + a pid.
fn trace_tables(sock: &Socket) -> Result<Vec<(String, u32)>, Error> {
    let dump = message(SUBSYS << 8 | NFT_MSG_GETTABLE, libc::NLM_F_DUMP as u16, 1, INET, 0, &[]);
    sock.send(&dump, 0).map_err(|source| Error::Io { what: "send", source })?;
    let mut out = Vec::new();
    let mut buf = Vec::with_capacity(32 * 1024);
    loop {
        buf.clear();
        sock.recv(&mut buf, 0).map_err(|source| Error::Io { what: "receive", source })?;
        for (kind, m) in messages(&buf)? {
            if kind as i32 == libc::NLMSG_DONE || kind as i32 == libc::NLMSG_ERROR {
                return Ok(out);
            }
            let name =
                attrs(m.get(20..).unwrap_or_default()).into_iter().find(|(k, _)| *k == 1).map(|(_, v)| string(v));
            if let Some(pid) = name.as_deref().and_then(|n| n.strip_prefix(TABLE_PREFIX)).and_then(|p| p.parse().ok()) {
                out.push((name.expect("matched"), pid));
            }
        }
    }
}

/// The pids of the `verify` runs whose trace table is live in the current network
/// namespace (tables named [`TABLE_PREFIX`] + pid).
///
/// Errors: [`Error::Open`], [`Error::Io`].
pub fn live_runs() -> Result<Vec<u32>, Error> {
    let sock = open_socket(&[])?;
    let _ = setsockopt(&sock, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(2, 0));
    Ok(trace_tables(&sock)?.into_iter().map(|(_, pid)| pid).collect())
}

/// Whether process `pid` (in this pid namespace) is an `ecs-hostnet` (`/proc/PID/comm`).
pub fn is_ecs_hostnet_process(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == "ecs-hostnet")
}

/// Deletes the trace tables of runs whose process is gone (`alive` says whether a pid
/// still runs): what a verify killed with SIGKILL left on a kernel without table flag
/// owner. Returns the names deleted.
///
/// Errors: [`Error::Open`], [`Error::Io`], [`Error::Refused`].
pub fn sweep_dead(alive: impl Fn(u32) -> bool) -> Result<Vec<String>, Error> {
    let sock = open_socket(&[])?;
    let _ = setsockopt(&sock, sockopt::ReceiveTimeout, &nix::sys::time::TimeVal::new(2, 0));
    let mut deleted = Vec::new();
    for (name, pid) in trace_tables(&sock)? {
        if !alive(pid) {
            match send_batch(&sock, &delete_batch(&name, 3000), 3001, &name) {
                Ok(()) => deleted.push(name),
                // Deleted meanwhile by another run's sweep.
                Err(Error::Refused { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built NFT_MSG_TRACE as nf_tables_trace.c writes it.
    fn trace_msg(
        family: u8,
        kind: u32,
        table: &str,
        chain: &str,
        handle: Option<u64>,
        verdict: Option<i32>,
    ) -> Vec<u8> {
        let mut a = Vec::new();
        attr(&mut a, 1, &cstr(table));
        attr(&mut a, 2, &cstr(chain));
        if let Some(h) = handle {
            attr(&mut a, 3, &h.to_be_bytes());
        }
        attr(&mut a, 4, &be32(kind));
        if let Some(v) = verdict {
            nest(&mut a, 5, |n| {
                attr(n, 1, &be32(v as u32));
                if v == -3 {
                    attr(n, 2, &cstr("DOCKER"));
                }
            });
        }
        attr(&mut a, 6, &0xdead_beefu32.to_ne_bytes());
        let mut ip = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip.extend([198, 18, 7, 2, 169, 254, 169, 254]);
        attr(&mut a, 8, &ip);
        // A TCP header: ports 50000 -> 80, data offset 5, flags SYN.
        attr(&mut a, 9, &[0xc3, 0x50, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        attr(&mut a, 10, &be32(42));
        attr(&mut a, 15, &be32(2));
        if kind == 1 {
            attr(&mut a, 16, &be32(0));
        }
        message(SUBSYS << 8 | NFT_MSG_TRACE, 0, 0, family, 0, &a)
    }

    #[test]
    fn a_rule_event_decodes_with_its_packet() {
        let ev = decode_trace(&trace_msg(1, 3, "ecs-hostnet", "forward", Some(7), Some(0))).unwrap();
        assert_eq!(ev.len(), 1);
        let e = &ev[0];
        assert_eq!(
            (e.family, e.kind, e.table.as_str(), e.chain.as_str()),
            (1, TraceType::Rule, "ecs-hostnet", "forward")
        );
        assert_eq!((e.handle, e.verdict.clone(), e.iif, e.nfproto), (Some(7), Some(Verdict::Drop), Some(42), Some(2)));
        assert_eq!(e.id, 0xdead_beef);
        let p = e.packet.unwrap();
        assert_eq!(p.src, "198.18.7.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "169.254.169.254".parse::<IpAddr>().unwrap());
        assert_eq!((p.proto, p.sport, p.dport), (6, 50000, 80));
        assert_eq!(e.tcp_flags, Some(crate::model::trace::TCP_SYN));
    }

    #[test]
    fn policy_jump_and_several_messages_in_one_datagram() {
        let mut buf = trace_msg(2, 3, "filter", "FORWARD", Some(3), Some(-3));
        buf.extend(message(SUBSYS << 8 | 6, 0, 0, 2, 0, &[])); // a NEWRULE: skipped
        buf.extend(trace_msg(1, 1, "cis", "input", None, None));
        let ev = decode_trace(&buf).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(ev[0].verdict, Some(Verdict::Jump("DOCKER".into())));
        assert_eq!(ev[0].family, 2);
        assert_eq!((ev[1].kind, ev[1].verdict.clone(), ev[1].handle), (TraceType::Policy, Some(Verdict::Drop), None));
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut m = trace_msg(1, 3, "t", "c", None, Some(1));
        m.truncate(m.len() - 3);
        assert!(matches!(decode_trace(&m), Err(Error::Malformed(_))), "length past the datagram");
        let no_id = message(SUBSYS << 8 | NFT_MSG_TRACE, 0, 0, 1, 0, &{
            let mut a = Vec::new();
            attr(&mut a, 1, &cstr("t"));
            attr(&mut a, 2, &cstr("c"));
            a
        });
        assert!(matches!(decode_trace(&no_id), Err(Error::Malformed(e)) if e.contains("NFTA_TRACE_ID")));
    }

    #[test]
    fn ipv6_packets_parse() {
        let mut ip6 = vec![0x60, 0, 0, 0, 0, 20, 6, 64];
        ip6.extend("fd12::2".parse::<Ipv6Addr>().unwrap().octets());
        ip6.extend("fd00:ec2::254".parse::<Ipv6Addr>().unwrap().octets());
        let p = parse_packet(&ip6, Some(&[0, 1, 0, 80])).unwrap();
        assert_eq!(p.dst, "fd00:ec2::254".parse::<IpAddr>().unwrap());
        assert_eq!((p.proto, p.sport, p.dport), (6, 1, 80));
        assert_eq!(parse_packet(&[0x20; 40], None), None, "neither IPv4 nor IPv6");
    }

    #[test]
    fn the_create_batch_frames_and_names_the_table_and_select() {
        let b = create_batch("ecs-hostnet-verify-7", &Select::Iifname("docker1a".into()), &Select::Mark(9), true, 1);
        let msgs = messages(&b).unwrap();
        let kinds: Vec<u16> = msgs.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds, [0x10, 0xa00, 0xa03, 0xa06, 0xa03, 0xa06, 0x11]);
        let table = attrs(&msgs[1].1[20..]);
        assert_eq!(table[0], (1, &b"ecs-hostnet-verify-7\0"[..]));
        assert_eq!(table[1], (2, &be32(2)[..]), "owner flag");
        assert!(b.windows(8).any(|w| w == b"docker1a"));
        let d = delete_batch("x", 5);
        assert_eq!(messages(&d).unwrap().iter().map(|(k, _)| *k).collect::<Vec<_>>(), [0x10, 0xa02, 0x11]);
    }
}
