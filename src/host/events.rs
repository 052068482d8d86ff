//! The event sources of `ecs-hostnet watch`: the nf_tables notification socket
//! ([`NftListener`], `NETLINK_NETFILTER` joined to `NFNLGRP_NFTABLES`) with its pure decoder
//! ([`decode_nft`]), the rtnetlink socket for link and IPv4 route changes ([`RtListener`],
//! `RTNLGRP_LINK` and `RTNLGRP_IPV4_ROUTE`), the termination and reload signals through a
//! signalfd ([`Signals`]), and one `poll(2)` over all of them ([`wait`]). Failures are a
//! typed [`Error`].
//!
//! Sockets belong to the network namespace of the thread that opens them: open them after
//! [`crate::host::netns::enter`]. All are non-blocking, so a read drains what is queued
//! and never waits; the only place the process sleeps is [`wait`] (no timeout when idle:
//! no CPU while nothing happens).

use crate::model::event::{NFNL_SUBSYS_NFTABLES, NFNLGRP_NFTABLES, NftEvent, NftReceived, RtEvent, msg};
use netlink_sys::{Socket, protocols::NETLINK_NETFILTER, protocols::NETLINK_ROUTE};
use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal as NixSignal, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{setsockopt, sockopt};
use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

/// An event source that failed. OS errors are the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be opened, bound, joined to its group or made non-blocking.
    #[error("cannot open the {what} event socket")]
    Open {
        /// `nf_tables` or `rtnetlink`.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading a socket failed (other than "nothing queued" and an overrun).
    #[error("cannot read the {what} event socket")]
    Receive {
        /// `nf_tables` or `rtnetlink`.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A notification did not frame (a length beyond the datagram).
    #[error("malformed nf_tables notification: {0}")]
    Malformed(String),
    /// The signals could not be blocked or their signalfd opened or read.
    #[error("cannot set up the signal descriptor")]
    Signals {
        /// The errno.
        source: Errno,
    },
    /// poll(2) failed.
    #[error("poll failed")]
    Poll {
        /// The errno.
        source: Errno,
    },
}

/// How much one read takes: the kernel coalesces a transaction's notifications into
/// skbs of `NLMSG_GOODSIZE` (a page, at most 8 KiB), so 32 KiB always holds a datagram.
const READ_BYTES: usize = 32 * 1024;
/// The receive queue asked for (`SO_RCVBUFFORCE` as root, else `SO_RCVBUF` up to
/// `net.core.rmem_max`): a `flush ruleset` of a busy host sends one notification per rule.
const RCVBUF_BYTES: usize = 4 * 1024 * 1024;

fn open_socket(protocol: isize, groups: &[u32], what: &'static str) -> Result<Socket, Error> {
    let open = |source| Error::Open { what, source };
    let mut sock = Socket::new(protocol).map_err(open)?;
    sock.bind_auto().map_err(open)?;
    for g in groups {
        sock.add_membership(*g).map_err(open)?;
    }
    sock.set_non_blocking(true).map_err(open)?;
    if setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF_BYTES).is_err() {
        let _ = setsockopt(&sock, sockopt::RcvBuf, &RCVBUF_BYTES);
    }
    Ok(sock)
}

/// Reads every queued datagram of `sock`, handing each to `each`; `Ok(true)` when the
/// queue overran (`ENOBUFS`) since the last read (the kernel dropped notifications).
fn drain(
    sock: &Socket,
    buf: &mut Vec<u8>,
    what: &'static str,
    mut each: impl FnMut(&[u8]) -> Result<(), Error>,
) -> Result<bool, Error> {
    let mut lost = false;
    loop {
        buf.clear();
        match sock.recv(buf, 0) {
            Ok(_) => each(buf)?,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(lost),
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => lost = true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(source) => return Err(Error::Receive { what, source }),
        }
    }
}

/// The nf_tables notification socket of the current network namespace.
pub struct NftListener {
    sock: Socket,
    buf: Vec<u8>,
}

impl NftListener {
    /// Opens a `NETLINK_NETFILTER` socket joined to `NFNLGRP_NFTABLES`, non-blocking, with
    /// a large receive queue.
    ///
    /// Errors: [`Error::Open`].
    pub fn open() -> Result<NftListener, Error> {
        let sock = open_socket(NETLINK_NETFILTER, &[NFNLGRP_NFTABLES], "nf_tables")?;
        Ok(NftListener { sock, buf: Vec::with_capacity(READ_BYTES) })
    }

    /// Everything queued: the decoded notifications, or [`NftReceived::Lost`] when the
    /// queue overran (what was read besides is then of no use: the caller reads the rule set).
    ///
    /// Errors: [`Error::Receive`], [`Error::Malformed`].
    pub fn receive(&mut self) -> Result<NftReceived, Error> {
        let mut events = Vec::new();
        let lost = drain(&self.sock, &mut self.buf, "nf_tables", |b| {
            events.extend(decode_nft(b)?);
            Ok(())
        })?;
        Ok(if lost { NftReceived::Lost } else { NftReceived::Events(events) })
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// The netlink header's length (`struct nlmsghdr`).
const NLMSG_HDRLEN: usize = 16;
/// `struct nfgenmsg`: family, version, resource id.
const NFGENMSG_LEN: usize = 4;
/// The attribute type bits (`NLA_TYPE_MASK`: without `NLA_F_NESTED` and `NLA_F_NET_BYTEORDER`).
const NLA_TYPE_MASK: u16 = 0x3fff;

/// Decodes one datagram of the nf_tables notification socket: one [`NftEvent`] per
/// nf_tables object or generation message, in order; other messages (netlink control
/// messages, other subsystems, GET types) are skipped. Pure: byte slices in, values out.
///
/// Errors: [`Error::Malformed`] when a message's length is shorter than its header or
/// runs past the datagram.
pub fn decode_nft(buf: &[u8]) -> Result<Vec<NftEvent>, Error> {
    let mut out = Vec::new();
    let mut off = 0;
    while buf.len() - off >= NLMSG_HDRLEN {
        let h = &buf[off..];
        let len = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if len < NLMSG_HDRLEN || len > h.len() {
            return Err(Error::Malformed(format!("message length {len} at offset {off} of {}", buf.len())));
        }
        let ty = u16::from_ne_bytes([h[4], h[5]]);
        if ty >> 8 == NFNL_SUBSYS_NFTABLES && len >= NLMSG_HDRLEN + NFGENMSG_LEN {
            let body = &h[NLMSG_HDRLEN..len];
            out.extend(decode_message((ty & 0xff) as u8, body[0], &body[NFGENMSG_LEN..]));
        }
        off += len.next_multiple_of(4);
    }
    Ok(out)
}

/// One nf_tables message (its `NFT_MSG_*` type, `nfgen_family` and attributes).
fn decode_message(msg_type: u8, family: u8, attrs: &[u8]) -> Option<NftEvent> {
    let attr = |want: u16| attributes(attrs).find(|(t, _)| *t == want).map(|(_, v)| v);
    let text = |v: &[u8]| String::from_utf8_lossy(v.split(|b| *b == 0).next().unwrap_or_default()).into_owned();
    let be32 = |v: &[u8]| <[u8; 4]>::try_from(v.get(..4)?).ok().map(u32::from_be_bytes);
    if msg_type == msg::NEWGEN {
        return Some(NftEvent::NewGen {
            id: attr(1).and_then(be32).unwrap_or(0),
            pid: attr(2).and_then(be32).unwrap_or(0),
            name: attr(3).map(text).unwrap_or_default(),
        });
    }
    crate::model::event::Object::of(msg_type)?;
    // NFTA_CHAIN_NAME is 3 in chain messages, NFTA_RULE_CHAIN 2 in rule messages.
    let chain = match msg_type {
        msg::NEWCHAIN | msg::DELCHAIN | 27 => attr(3).map(text),
        msg::NEWRULE | msg::DELRULE | 28 => attr(2).map(text),
        _ => None,
    };
    Some(NftEvent::Object { msg_type, family, table: attr(1).map(text), chain })
}

/// The netlink attributes (`struct nlattr`: length, type, value padded to 4) of `b`:
/// (type without flag bits, value). Stops at the first one that does not frame.
fn attributes(b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut off = 0;
    std::iter::from_fn(move || {
        let h = b.get(off..off + 4)?;
        let len = u16::from_ne_bytes([h[0], h[1]]) as usize;
        let ty = u16::from_ne_bytes([h[2], h[3]]) & NLA_TYPE_MASK;
        let value = b.get(off + 4..off + len.max(4))?;
        if len < 4 {
            return None;
        }
        off += len.next_multiple_of(4);
        Some((ty, value))
    })
}

/// `RTNLGRP_LINK` (`enum rtnetlink_groups`, include/uapi/linux/rtnetlink.h).
const RTNLGRP_LINK: u32 = 1;
/// `RTNLGRP_IPV4_ROUTE`.
const RTNLGRP_IPV4_ROUTE: u32 = 7;

/// The rtnetlink socket for link and IPv4 route changes of the current namespace.
pub struct RtListener {
    sock: Socket,
    buf: Vec<u8>,
}

impl RtListener {
    /// Opens a `NETLINK_ROUTE` socket joined to `RTNLGRP_LINK` and `RTNLGRP_IPV4_ROUTE`.
    ///
    /// Errors: [`Error::Open`].
    pub fn open() -> Result<RtListener, Error> {
        let sock = open_socket(NETLINK_ROUTE, &[RTNLGRP_LINK, RTNLGRP_IPV4_ROUTE], "rtnetlink")?;
        Ok(RtListener { sock, buf: Vec::with_capacity(READ_BYTES) })
    }

    /// The changes queued ([`crate::host::rtnl::rt_events`]) and whether the queue overran.
    ///
    /// Errors: [`Error::Receive`].
    pub fn receive(&mut self) -> Result<(Vec<RtEvent>, bool), Error> {
        let mut events = Vec::new();
        let lost = drain(&self.sock, &mut self.buf, "rtnetlink", |b| {
            events.extend(crate::host::rtnl::rt_events(b));
            Ok(())
        })?;
        Ok((events, lost))
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

/// A signal the watcher acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// `SIGTERM` or `SIGINT`: stop.
    Stop,
    /// `SIGHUP`: reload the configuration (systemd's `ExecReload=/bin/kill -HUP $MAINPID`).
    Reload,
}

/// `SIGTERM`, `SIGINT` and `SIGHUP`, blocked and delivered through a signalfd.
pub struct Signals {
    fd: SignalFd,
}

impl Signals {
    /// Blocks the three signals for this (single-threaded) process and opens their
    /// signalfd, non-blocking.
    ///
    /// Errors: [`Error::Signals`].
    pub fn open() -> Result<Signals, Error> {
        let mut mask = SigSet::empty();
        for s in [NixSignal::SIGTERM, NixSignal::SIGINT, NixSignal::SIGHUP] {
            mask.add(s);
        }
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|source| Error::Signals { source })?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|source| Error::Signals { source })?;
        Ok(Signals { fd })
    }

    /// The signals delivered since the last call, in order.
    ///
    /// Errors: [`Error::Signals`].
    pub fn take(&mut self) -> Result<Vec<Signal>, Error> {
        let mut out = Vec::new();
        while let Some(info) = self.fd.read_signal().map_err(|source| Error::Signals { source })? {
            out.push(if info.ssi_signo == NixSignal::SIGHUP as u32 { Signal::Reload } else { Signal::Stop });
        }
        Ok(out)
    }

    /// The signals delivered since the last call, by name (`SIGTERM`, `SIGINT`, `SIGHUP`),
    /// in order: for a run that stops at any of them and says which (`verify`).
    ///
    /// Errors: [`Error::Signals`].
    pub fn take_names(&mut self) -> Result<Vec<&'static str>, Error> {
        let mut out = Vec::new();
        while let Some(info) = self.fd.read_signal().map_err(|source| Error::Signals { source })? {
            out.push(NixSignal::try_from(info.ssi_signo as i32).map(NixSignal::as_str).unwrap_or("a signal"));
        }
        Ok(out)
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout` passed (`None`: no timeout). Returns,
/// per descriptor, whether it is readable (or in error: its read reports it). An
/// interrupted wait returns all `false`.
///
/// Errors: [`Error::Poll`].
pub fn wait(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> Result<Vec<bool>, Error> {
    let mut pfds: Vec<PollFd> = fds.iter().map(|fd| PollFd::new(*fd, PollFlags::POLLIN)).collect();
    let timeout = match timeout {
        None => PollTimeout::NONE,
        // Rounded up: a wake-up before the deadline would only poll again.
        Some(d) => {
            PollTimeout::try_from(d.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
        }
    };
    match poll(&mut pfds, timeout) {
        Ok(_) => Ok(pfds.iter().map(|p| p.revents().is_some_and(|r| !r.is_empty())).collect()),
        Err(Errno::EINTR) => Ok(vec![false; fds.len()]),
        Err(source) => Err(Error::Poll { source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A netlink message of `ty` (nf_tables subsystem) with `family` and attributes.
    fn nft_msg(msg_type: u8, family: u8, attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut body = vec![family, 0, 0, 0];
        for (t, v) in attrs {
            let len = 4 + v.len();
            body.extend_from_slice(&(len as u16).to_ne_bytes());
            body.extend_from_slice(&t.to_ne_bytes());
            body.extend_from_slice(v);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&((NFNL_SUBSYS_NFTABLES << 8) | msg_type as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn a_deleted_table_then_its_generation() {
        let mut d = nft_msg(msg::DELTABLE, 1, &[(1, b"ecs-hostnet\0"), (3, &7u32.to_be_bytes())]);
        d.extend(nft_msg(msg::NEWGEN, 0, &[(1, &57u32.to_be_bytes()), (2, &4242u32.to_be_bytes()), (3, b"nft\0")]));
        assert_eq!(
            decode_nft(&d).unwrap(),
            vec![
                NftEvent::Object { msg_type: msg::DELTABLE, family: 1, table: Some("ecs-hostnet".into()), chain: None },
                NftEvent::NewGen { id: 57, pid: 4242, name: "nft".into() },
            ]
        );
    }

    #[test]
    fn chains_and_rules_name_their_table_and_chain() {
        // NFTA_CHAIN_HANDLE (2, nested flag set on purpose) must not be taken for the name.
        let chain =
            nft_msg(msg::DELCHAIN, 1, &[(1, b"ecs-hostnet\0"), (2 | 0x4000, &9u64.to_be_bytes()), (3, b"input\0")]);
        let rule = nft_msg(msg::NEWRULE, 2, &[(1, b"nat\0"), (2, b"PREROUTING\0"), (3, &1u64.to_be_bytes())]);
        let set = nft_msg(msg::NEWSETELEM, 10, &[(1, b"filter\0"), (2, b"myset\0")]);
        let mut d = chain;
        d.extend(rule);
        d.extend(set);
        assert_eq!(
            decode_nft(&d).unwrap(),
            vec![
                NftEvent::Object {
                    msg_type: msg::DELCHAIN,
                    family: 1,
                    table: Some("ecs-hostnet".into()),
                    chain: Some("input".into())
                },
                NftEvent::Object {
                    msg_type: msg::NEWRULE,
                    family: 2,
                    table: Some("nat".into()),
                    chain: Some("PREROUTING".into())
                },
                NftEvent::Object { msg_type: msg::NEWSETELEM, family: 10, table: Some("filter".into()), chain: None },
            ]
        );
    }

    #[test]
    fn control_messages_get_types_and_short_attributes_are_skipped() {
        // NLMSG_DONE (3): not nf_tables.
        let mut d = vec![0u8; 20];
        d[..4].copy_from_slice(&20u32.to_ne_bytes());
        d[4..6].copy_from_slice(&3u16.to_ne_bytes());
        d.extend(nft_msg(1, 1, &[(1, b"t\0")])); // NFT_MSG_GETTABLE
        // A NEWGEN whose attributes are cut short: values absent, not garbage.
        d.extend(nft_msg(msg::NEWGEN, 0, &[(2, &[1, 2])]));
        assert_eq!(decode_nft(&d).unwrap(), vec![NftEvent::NewGen { id: 0, pid: 0, name: String::new() }]);
    }

    #[test]
    fn a_length_past_the_datagram_is_malformed() {
        let mut d = nft_msg(msg::DELTABLE, 1, &[(1, b"ecs-hostnet\0")]);
        let n = d.len() as u32 + 8;
        d[..4].copy_from_slice(&n.to_ne_bytes());
        assert!(matches!(decode_nft(&d), Err(Error::Malformed(_))));
        d[..4].copy_from_slice(&4u32.to_ne_bytes());
        assert!(matches!(decode_nft(&d), Err(Error::Malformed(_))));
    }
}
