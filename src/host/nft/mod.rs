//! nf_tables over netlink (libnftnl through nftnl/nftnl-sys, libmnl through mnl).
//!
//! [`Netfilter::read_owned`] reads our tables as one consistent snapshot (the rule-set
//! generation is read before and after, and the dump retried if it moved);
//! [`Netfilter::commit`] sends a whole plan as ONE batch in ONE `sendmsg(2)`, which the
//! kernel applies as one transaction: if any message fails, nothing is applied.
//!
//! The socket belongs to the network namespace the thread was in when it was opened.

mod assemble;
pub mod decode;
pub mod encode;
// The only module with unsafe code: libnftnl objects, message parsing and building, the
// socket's descriptor and the socket options nix lacks behind safe types.
#[allow(unsafe_code)]
mod ffi;
mod hazard;

use crate::model::finding::{ForeignChain, ForwardChain};
use crate::model::live::{LiveRule, LiveTable};
use crate::model::ops::Op;
use crate::model::ruleset::Expr;
use crate::model::ruleset::Family;
use assemble::Assembly;
use ffi::{CapAck, ExtAck, NetnsCookie};
use nix::sys::socket::{self as nixsock, sockopt};
use std::collections::BTreeSet;
use std::ffi::CStr;
use std::os::fd::AsRawFd;
use std::os::raw::c_int;
use thiserror::Error;

/// `NLM_F_CAPPED` in an error message's flags.
const NLM_F_CAPPED: u16 = 0x100;
/// `NLM_F_ACK_TLVS` in an error message's flags.
const NLM_F_ACK_TLVS: u16 = 0x200;
/// `NLMSGERR_ATTR_MSG`.
const NLMSGERR_ATTR_MSG: u16 = 1;
/// `NLM_F_DUMP_INTR`: the dump saw a concurrent change.
const NLM_F_DUMP_INTR: u16 = 0x10;

/// Kernel-facing failures, each one line naming the cause and the object.
#[derive(Debug, Error)]
pub enum KernelError {
    /// `EPERM` from a request, from `sendmsg(2)` of the batch, or from a batch message
    /// while not root: the process lacks `CAP_NET_ADMIN` in the network namespace.
    #[error("nf_tables refused the request: permission denied (ecs-hostnet needs CAP_NET_ADMIN: run it as root)")]
    PermissionDenied,
    /// `EOPNOTSUPP` or `EPROTONOSUPPORT` answering a request: nf_tables is not built or
    /// cannot be loaded. Carries the errno text.
    #[error("this kernel has no nf_tables support (module nf_tables not available): {0}")]
    NoNfTables(String),
    /// Opening the `NETLINK_NETFILTER` socket failed ([`Netfilter::open`]). The OS error is
    /// the source (shown after a colon in an error chain).
    #[error("cannot open a netfilter netlink socket")]
    Socket(#[source] std::io::Error),
    /// A send or receive failed, or a read request (dump, `NFT_MSG_GETGEN`) was answered
    /// with an errno not covered above. The error is the source (shown after a colon in an
    /// error chain).
    #[error("netlink {what} failed")]
    Io {
        /// What was being done: `request N` (the `NFT_MSG_*` number), `send of the batch`,
        /// `receive of the batch answers`.
        what: String,
        /// The OS error or the errno from the kernel's `NLMSG_ERROR`.
        #[source]
        err: std::io::Error,
    },
    /// A message of the batch was answered with an error, so the kernel aborted the whole
    /// transaction. `ERESTART` on the batch begin means the rule-set generation moved
    /// since it was read (`NFNL_BATCH_GENID`); see [`KernelError::is_concurrent_commit`].
    ///
    /// The errno is part of the sentence (`err` is not a `#[source]`: an error chain would
    /// print it twice).
    #[error("the kernel rejected `{op}`: {err}{extack}; nothing was applied (one transaction)")]
    Rejected {
        /// The rejected message as an nft command ([`Op`]'s `Display`), or `batch begin` /
        /// `batch end (commit)`.
        op: String,
        /// The errno from the first `NLMSG_ERROR` of the batch.
        err: std::io::Error,
        /// ` (TEXT)` with the kernel's extended-ack message (`NLMSGERR_ATTR_MSG`), plus a hint
        /// for `EPERM` as root; empty when there is none.
        extack: String,
    },
    /// No answer arrived within 2 s for a message of the batch (and no other message
    /// failed), so whether the transaction was applied is unknown.
    #[error("the kernel did not answer for `{op}`; the state of the transaction is unknown, run `check`")]
    NoAnswer {
        /// The first unanswered message, named as in [`KernelError::Rejected`].
        op: String,
    },
    /// [`Netfilter::read_owned`] saw the generation move with our tables read differently each
    /// time, `NLM_F_DUMP_INTR`, or a rule of
    /// a chain it had not listed, on each of its attempts ([`READ_ATTEMPTS`]).
    #[error(
        "the rule set kept changing while it was read ({} attempts in about {} ms); another program is writing it",
        READ_ATTEMPTS,
        (1u64 << (READ_ATTEMPTS - 1)) - 1
    )]
    Unstable,
    /// An answer libnftnl (or our header parsing) could not parse: a truncated netlink
    /// message, a malformed table/chain/rule or `NFT_MSG_NEWGEN` message, or a batch that
    /// nftnl built without a begin message.
    #[error("cannot read the kernel's answer: {0}")]
    Malformed(String),
    /// An op of the plan cannot be encoded (a foreign expression or oversized userdata in a
    /// desired object), found before anything was sent.
    #[error("{0}")]
    Encode(String),
}

impl KernelError {
    /// Whether the kernel refused the batch because someone else committed between our read
    /// and our batch, so that reading again and re-planning can succeed: [`Rejected`] with
    /// `ERESTART` (the rule-set generation moved: `NFNL_BATCH_GENID`), `ENOENT` (an object
    /// the plan names was deleted), `EEXIST` (an object it adds was added) or `EBUSY` (a
    /// chain or table it deletes gained a reference). Nothing was applied.
    ///
    /// [`Rejected`]: KernelError::Rejected
    pub fn is_concurrent_commit(&self) -> bool {
        matches!(
            self,
            KernelError::Rejected { err, .. }
                if matches!(err.raw_os_error(), Some(libc::ERESTART | libc::ENOENT | libc::EEXIST | libc::EBUSY))
        )
    }
}

type Result<T> = std::result::Result<T, KernelError>;

/// Reads of our tables [`Netfilter::read_owned`] tries before it gives up (pauses of 1, 2,
/// 4, ... ms between them: about 127 ms in all).
pub const READ_ATTEMPTS: u32 = 8;

/// Size of the receive buffer, bytes. The kernel fills one dump skb per `recvmsg` and sizes
/// it after the reader's largest buffer, capped at `SKB_WITH_OVERHEAD(32768)`
/// (`netlink_recvmsg`, net/netlink/af_netlink.c): a larger buffer is never filled, and is
/// only more memory to zero and fault in.
const RECV_BUFFER_BYTES: usize = 32 * 1024;

/// Request size, bytes: a header and a dump filter (a table and a set name).
const REQUEST_BYTES: usize = 4096;

/// `N` bytes aligned for `struct nlmsghdr` (mnl checks the alignment of a receive buffer;
/// libnftnl writes headers and attributes through pointers).
#[repr(C, align(8))]
pub(crate) struct Aligned<const N: usize>(pub(crate) [u8; N]);

/// The `struct nlmsghdr` at the start of `m` (native byte order). `m` is at least 16 bytes.
fn header(m: &[u8]) -> libc::nlmsghdr {
    let u32_at = |i: usize| u32::from_ne_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
    libc::nlmsghdr {
        nlmsg_len: u32_at(0),
        nlmsg_type: u16::from_ne_bytes([m[4], m[5]]),
        nlmsg_flags: u16::from_ne_bytes([m[6], m[7]]),
        nlmsg_seq: u32_at(8),
        nlmsg_pid: u32_at(12),
    }
}

/// Error number and extended-ack text of an `NLMSG_ERROR` message (0 = ACK); the text with
/// its control characters escaped (`report::escape_controls`), one line.
fn parse_error(m: &[u8]) -> (i32, Option<String>) {
    if m.len() < 20 {
        return (libc::EPROTO, None);
    }
    let h = header(m);
    let err = i32::from_ne_bytes(m[16..20].try_into().unwrap());
    let echoed = if m.len() >= 36 { header(&m[20..]).nlmsg_len as usize } else { 16 };
    let mut off = 20 + if h.nlmsg_flags & NLM_F_CAPPED != 0 { 16 } else { echoed };
    off = off.next_multiple_of(4);
    let mut msg = None;
    if h.nlmsg_flags & NLM_F_ACK_TLVS != 0 {
        while off + 4 <= m.len() {
            let len = u16::from_ne_bytes([m[off], m[off + 1]]) as usize;
            let ty = u16::from_ne_bytes([m[off + 2], m[off + 3]]) & 0x3fff;
            if len < 4 || off + len > m.len() {
                break;
            }
            if ty == NLMSGERR_ATTR_MSG {
                // Kernel text, made one printable line here, for every error that quotes it.
                let text = String::from_utf8_lossy(&m[off + 4..off + len]);
                msg = Some(crate::model::escape::escape_controls(text.trim_end_matches('\0')));
            }
            off += len.next_multiple_of(4);
        }
    }
    (-err, msg)
}

/// Writes the filter of a set dump into the request `msg`: `NFTA_SET_TABLE` = `table`, and
/// for the elements of one set (`NFT_MSG_GETSETELEM`) `NFTA_SET_NAME` = `set`.
fn set_dump_filter(msg: &mut ffi::Msg<'_>, family: u8, table: &CStr, set: Option<&CStr>) {
    let mut st = ffi::Set::new();
    st.set_table(table);
    st.set_family(family as u32);
    match set {
        Some(name) => {
            st.set_name(name);
            msg.put_set_elems(&mut st);
        }
        None => msg.put_set(&mut st),
    }
}

/// What one message of a batch is, to name it if the kernel rejects it: an op (index into
/// the plan's ops), the anonymous set of an `AddRule` op's lookup, or a run of that set's
/// elements from the given index.
enum MsgLabel {
    Op(usize),
    Set(usize),
    Elements(usize, usize),
}

impl MsgLabel {
    fn text(&self, ops: &[Op]) -> String {
        let op = |i: usize| short_label(&ops[i].to_string());
        match *self {
            MsgLabel::Op(i) => op(i),
            MsgLabel::Set(i) => format!("add the set of `{}`", op(i)),
            MsgLabel::Elements(i, start) => format!("add elements {start}.. of the set of `{}`", op(i)),
        }
    }
}

/// An op's text cut to a length an error line can carry (a set of 1000 names is long).
fn short_label(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// `NFNL_BATCH_GENID`: attribute of the batch begin message.
const NFNL_BATCH_GENID: u16 = 1;

/// A copy of nftnl's batch begin message (`NFNL_MSG_BATCH_BEGIN`: header and nfgenmsg,
/// same sequence number and flags) with an `NFNL_BATCH_GENID` attribute (u32, network
/// byte order) appended.
fn batch_begin_with_genid(begin: &[u8], generation: u32) -> Vec<u8> {
    let mut m = begin[..20].to_vec(); // nlmsghdr (16) + nfgenmsg (4)
    m.extend_from_slice(&8u16.to_ne_bytes());
    m.extend_from_slice(&NFNL_BATCH_GENID.to_ne_bytes());
    m.extend_from_slice(&generation.to_be_bytes());
    let len = m.len() as u32;
    m[..4].copy_from_slice(&len.to_ne_bytes());
    m
}

/// A netfilter netlink socket in the current network namespace.
pub struct Netfilter {
    sock: mnl::Socket,
    seq: u32,
    buf: Box<Aligned<RECV_BUFFER_BYTES>>,
    /// A dump answered since the last reset carried `NLM_F_DUMP_INTR` (a commit, anyone's,
    /// happened while it was produced); see [`Netfilter::read_owned`].
    dump_interrupted: bool,
    /// Other programs' base chains on the credentials path seen in the chain dumps of the
    /// last [`Netfilter::read_owned`] (see [`Netfilter::read_path`]), and the families
    /// those dumps covered.
    path_chains: Vec<decode::ChainInfo>,
    path_families: Vec<Family>,
}

impl Netfilter {
    /// Opens a `NETLINK_NETFILTER` socket with extended ACKs.
    pub fn open() -> Result<Netfilter> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter).map_err(KernelError::Socket)?;
        // Best effort: old kernels lack these; errors then carry less detail.
        let _ = nixsock::setsockopt(&ffi::socket_fd(&sock), CapAck, &true);
        let _ = nixsock::setsockopt(&ffi::socket_fd(&sock), ExtAck, &true);
        let seq =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
        Ok(Netfilter {
            sock,
            seq,
            buf: Box::new(Aligned([0; RECV_BUFFER_BYTES])),
            dump_interrupted: false,
            path_chains: vec![],
            path_families: vec![],
        })
    }

    /// The network namespace cookie (`SO_NETNS_COOKIE`, kernel >= 5.14): a 64-bit id that
    /// is unique for the boot and never reused, unlike an nsfs inode number. `None` on
    /// older kernels.
    pub fn netns_cookie(&self) -> Option<u64> {
        nixsock::getsockopt(&ffi::socket_fd(&self.sock), NetnsCookie).ok()
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Sends one request (`payload` adds its filter to the header) and collects the
    /// answer's messages (a dump until `NLMSG_DONE`, a plain GET until its ACK), each
    /// copied once out of the receive buffer, as the decoders parse it
    /// ([`decode::PaddedMsg`]).
    fn request(
        &mut self,
        msg: u32,
        family: u8,
        dump: bool,
        payload: impl FnOnce(&mut ffi::Msg<'_>),
    ) -> Result<Vec<decode::PaddedMsg>> {
        let seq = self.next_seq();
        let mut req = Aligned([0; REQUEST_BYTES]);
        let flags = if dump { libc::NLM_F_DUMP } else { libc::NLM_F_ACK };
        let mut m = ffi::MsgBuf::new(&mut req.0).header(msg as u16, family as u16, flags as u16, seq);
        payload(&mut m);
        let len = m.len();
        let what = format!("request {msg}");
        self.sock.send(&req.0[..len]).map_err(|err| KernelError::Io { what: what.clone(), err })?;
        let portid = self.sock.portid();
        let mut out = Vec::new();
        // A dump interrupted by a concurrent commit is read to its end and returned; the
        // interruption is noted for read_owned, which decides whether the read stands.
        loop {
            let n = self.sock.recv_raw(&mut self.buf.0).map_err(|err| KernelError::Io { what: what.clone(), err })?;
            let mut data = &self.buf.0[..n];
            while data.len() >= 16 {
                let h = header(data);
                // libnftnl trusts nlmsg_len: a message that does not fit what was received
                // is refused, never handed on truncated.
                let l = h.nlmsg_len as usize;
                if l < 16 || l > data.len() {
                    return Err(KernelError::Malformed(format!(
                        "netlink message of length {l} in {} bytes received",
                        data.len()
                    )));
                }
                let m = &data[..l];
                data = &data[l.next_multiple_of(4).min(data.len())..];
                if h.nlmsg_seq != seq || (h.nlmsg_pid != portid && h.nlmsg_pid != 0) {
                    continue; // a late answer to an earlier request
                }
                if h.nlmsg_flags & NLM_F_DUMP_INTR != 0 {
                    self.dump_interrupted = true;
                }
                match h.nlmsg_type as c_int {
                    libc::NLMSG_DONE => return Ok(out),
                    libc::NLMSG_ERROR => {
                        let (errno, _) = parse_error(m);
                        return match errno {
                            0 => Ok(out),
                            libc::EPERM => Err(KernelError::PermissionDenied),
                            // A dump still running on this socket (a concurrent commit):
                            // read again.
                            libc::EBUSY if dump => Err(KernelError::Unstable),
                            // A filtered dump (the elements of a set, the rules of a table)
                            // of something a concurrent commit just deleted: read again.
                            libc::ENOENT if dump => Err(KernelError::Unstable),
                            libc::EOPNOTSUPP | libc::EPROTONOSUPPORT => {
                                Err(KernelError::NoNfTables(std::io::Error::from_raw_os_error(errno).to_string()))
                            }
                            e => Err(KernelError::Io { what, err: std::io::Error::from_raw_os_error(e) }),
                        };
                    }
                    // nlmsghdr (16) + nfgenmsg (4), which libnftnl reads unchecked.
                    _ if l < 20 => {
                        return Err(KernelError::Malformed(format!(
                            "nf_tables message of {l} bytes, shorter than its header"
                        )));
                    }
                    _ => out.push(decode::PaddedMsg::copy(m).map_err(|_| {
                        KernelError::Malformed(format!("nf_tables message of {l} bytes does not frame"))
                    })?),
                }
            }
        }
    }

    /// The rule-set generation id (`NFT_MSG_GETGEN`); it changes with every commit.
    pub fn generation(&mut self) -> Result<u32> {
        let msgs = self.request(libc::NFT_MSG_GETGEN as u32, 0, false, |_| {})?;
        let m = msgs.first().ok_or_else(|| KernelError::Malformed("no NEWGEN answer".into()))?;
        ffi::generation_id(m).map_err(|_| KernelError::Malformed("NEWGEN".into()))
    }

    /// Reads the tables ecs-hostnet owns ([`OWNED_TABLES`](crate::model::names::OWNED_TABLES)) with their chains and rules,
    /// as one consistent snapshot, and the rule-set generation it belongs to (pass it to
    /// [`Netfilter::commit`]). Foreign tables are listed but not read.
    ///
    /// A read stands when the generation did not move while it ran and no dump was
    /// interrupted (`NLM_F_DUMP_INTR`). When another program keeps committing (to its own
    /// tables: Docker, a firewall daemon; the kernel's generation and dump checks do not say
    /// which table changed), two whole reads in a row that found our tables identical,
    /// handles included, stand too: our tables had that state, and the later generation is
    /// returned, so a batch planned on it is still refused if anything changed since. Up to
    /// [`READ_ATTEMPTS`] reads, with a pause before each retry (1 ms, doubling). Errors:
    /// [`KernelError::Unstable`] when no read stood; the dumps' own errors.
    pub fn read_owned(&mut self) -> Result<(Vec<LiveTable>, u32)> {
        let mut previous: Option<Vec<LiveTable>> = None;
        let mut pause = std::time::Duration::from_millis(1);
        for attempt in 0..READ_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(pause);
                pause *= 2;
            }
            let before = self.generation()?;
            self.dump_interrupted = false;
            match self.read_owned_once() {
                Ok(tables) => {
                    let after = self.generation()?;
                    if (after == before && !self.dump_interrupted) || previous.as_ref() == Some(&tables) {
                        return Ok((tables, after));
                    }
                    previous = Some(tables);
                }
                Err(KernelError::Unstable) => previous = None,
                Err(e) => return Err(e),
            }
        }
        Err(KernelError::Unstable)
    }

    /// One read of our tables: per table, its chains (the kernel cannot filter a chain dump
    /// by table: every chain of the table's family comes back and the others are dropped),
    /// its sets and objects (filtered by the kernel: `NFTA_SET_TABLE`, `NFTA_OBJ_TABLE`), the
    /// elements of each anonymous set, and its rules (`NFTA_RULE_TABLE`). Other programs'
    /// sets, objects and rules are never sent to us, whatever their number. Nothing is dumped
    /// beyond the table list when none of our tables exists.
    fn read_owned_once(&mut self) -> Result<Vec<LiveTable>> {
        let mut tables = Vec::new();
        for m in self.request(libc::NFT_MSG_GETTABLE as u32, 0, true, |_| {})? {
            let t = decode::table(&m).map_err(KernelError::Malformed)?;
            tables.extend(t.into_owned_table());
        }
        let mut asm = Assembly::new(tables);
        self.path_chains.clear();
        self.path_families.clear();
        if asm.is_empty() {
            return Ok(asm.finish());
        }
        let owned: Vec<(Family, String)> = asm.tables().iter().map(|t| (t.family, t.name.clone())).collect();
        for (i, (fam, name)) in owned.iter().enumerate() {
            let family = fam.nfproto();
            let tname = std::ffi::CString::new(name.clone()).expect("owned names have no NUL");
            // The family's chain dump (it cannot be filtered by table) also lists other
            // programs' base chains: those on the credentials path are kept for read_path.
            for m in self.request(libc::NFT_MSG_GETCHAIN as u32, family, true, |_| {})? {
                let c = decode::chain(&m).map_err(KernelError::Malformed)?;
                if on_credentials_path(&c) {
                    self.path_chains.push(c.clone());
                }
                asm.add_chain(c);
            }
            self.path_families.push(*fam);
            let msgs =
                self.request(libc::NFT_MSG_GETSET as u32, family, true, |m| set_dump_filter(m, family, &tname, None))?;
            for m in msgs {
                let (table, set_name, set) = decode::set(&m).map_err(KernelError::Malformed)?;
                asm.add_set(Some(*fam), &table, set_name, set);
            }
            for set_name in asm.set_names(i) {
                let cname =
                    std::ffi::CString::new(set_name.clone()).map_err(|_| KernelError::Malformed("set name".into()))?;
                let msgs = self.request(libc::NFT_MSG_GETSETELEM as u32, family, true, |m| {
                    set_dump_filter(m, family, &tname, Some(&cname))
                })?;
                for m in msgs {
                    let mut elems = Vec::new();
                    decode::set_elements(&m, &mut elems).map_err(KernelError::Malformed)?;
                    asm.add_set_elements(Some(*fam), name, &set_name, elems);
                }
            }
            let msgs = self.request(libc::NFT_MSG_GETOBJ as u32, family, true, |m| {
                let mut o = ffi::Obj::new();
                o.set_table(&tname);
                o.set_family(family as u32);
                m.put_obj(&o);
            })?;
            for m in msgs {
                let (table, obj_name) = decode::object(&m).map_err(KernelError::Malformed)?;
                asm.add_object(Some(*fam), &table, &obj_name);
            }
        }
        asm.sort_set_elements();
        // One rule dump per table, filtered by the kernel (NFTA_RULE_TABLE). Not one for
        // both with NFPROTO_UNSPEC: with a table name, nf_tables_dump_rules stops after the
        // first table of that name.
        for (fam, name) in &owned {
            let cname = std::ffi::CString::new(name.clone()).expect("owned names have no NUL");
            let rules = self.request(libc::NFT_MSG_GETRULE as u32, fam.nfproto(), true, |m| {
                let mut r = ffi::Rule::new();
                r.set_table(&cname);
                r.set_family(fam.nfproto() as u32);
                m.put_rule(&mut r);
            })?;
            for m in rules {
                let sets = asm.sets_of(Some(*fam), name).expect("one of ours");
                let r = decode::rule(&m, sets).map_err(KernelError::Malformed)?;
                asm.add_rule(r).map_err(|_| KernelError::Unstable)?;
            }
        }
        Ok(asm.finish())
    }

    /// Other programs' base chains on the credentials path (families `ip` and `inet`; nat
    /// prerouting and output, filter input and output), each with its rules.
    ///
    /// Cheap whatever else the rule set holds: the chains come from the chain dumps of the
    /// last [`Netfilter::read_owned`] (a family it did not dump, because no table of ours
    /// has it, is dumped here), and the rules of each chain on the path come from one rule
    /// dump filtered by table AND chain (`NFTA_RULE_TABLE`, `NFTA_RULE_CHAIN`): no other
    /// chain's rules are sent to us. Call it right after `read_owned`.
    ///
    /// Never fails on a rule it does not understand: expressions not modelled are
    /// `Expr::Other`, lookups are read without their sets, and a rule the decoder refuses
    /// is kept as one `Expr::Other` named `unreadable`. A chain deleted between the chain
    /// and the rule dump is left out. Errors: the dumps' own (permission, socket).
    pub fn read_path(&mut self) -> Result<Vec<ForeignChain>> {
        let mut heads = self.path_chains.clone();
        for fam in [Family::Ip, Family::Inet] {
            if self.path_families.contains(&fam) {
                continue;
            }
            for m in self.request(libc::NFT_MSG_GETCHAIN as u32, fam.nfproto(), true, |_| {})? {
                let c = decode::chain(&m).map_err(KernelError::Malformed)?;
                if on_credentials_path(&c) {
                    heads.push(c);
                }
            }
        }
        let mut out = Vec::new();
        for c in heads {
            let (Some(family), Some(base)) = (c.family, c.base) else { continue };
            // Deleted since the chain dump: nothing of it is on the path any more.
            let Some(rules) = self.chain_rules(family.nfproto(), &c.table, &c.name)? else { continue };
            out.push(ForeignChain { family, table: c.table, name: c.name, base, rules });
        }
        Ok(out)
    }

    /// iptables-nft's `ip filter` chains `FORWARD` and `DOCKER-USER` with their rules, those
    /// that exist: where the AWS page's IMDS block (`iptables --insert DOCKER-USER 1
    /// --in-interface docker+ --destination 169.254.169.254/32 --jump DROP`) lives. Two rule
    /// dumps filtered by table and chain; a chain (or table) that does not exist is left
    /// out. Errors: the dumps' own (permission, socket).
    pub fn read_forward(&mut self) -> Result<Vec<ForwardChain>> {
        let mut out = Vec::new();
        for name in ["FORWARD", "DOCKER-USER"] {
            if let Some(rules) = self.chain_rules(Family::Ip.nfproto(), "filter", name)? {
                out.push(ForwardChain { name: name.to_string(), rules });
            }
        }
        Ok(out)
    }

    /// The rules of one chain of any table (`nfproto` is the table's `nfgen_family`: trace
    /// events name bridge and netdev tables too), from one rule dump filtered by table and
    /// chain; `None` when the chain does not exist (`ENOENT`) or was deleted meanwhile. Never
    /// fails on a rule it does not understand: expressions not modelled are `Expr::Other`,
    /// lookups are read without their sets, a rule the decoder refuses is one `Expr::Other`
    /// named `unreadable`. Used by the findings and by `verify`, which names the rule a trace
    /// event reports by its handle.
    ///
    /// Errors: the dump's own (permission, socket).
    pub fn chain_rules(&mut self, nfproto: u8, table: &str, chain: &str) -> Result<Option<Vec<LiveRule>>> {
        let (Ok(ctable), Ok(cchain)) = (std::ffi::CString::new(table), std::ffi::CString::new(chain)) else {
            return Ok(None);
        };
        let msgs = match self.request(libc::NFT_MSG_GETRULE as u32, nfproto, true, |m| {
            let mut r = ffi::Rule::new();
            r.set_table(&ctable);
            r.set_chain(&cchain);
            r.set_family(nfproto as u32);
            m.put_rule(&mut r);
        }) {
            Ok(msgs) => msgs,
            Err(KernelError::Unstable) => return Ok(None),
            Err(e) => return Err(e),
        };
        let no_sets = decode::AnonSets::new();
        let mut rules = Vec::new();
        for m in msgs {
            match decode::rule(&m, &no_sets) {
                Ok(r) if r.table == table && r.chain == chain => rules.push(r.rule),
                Ok(_) => {}
                Err(e) => rules.push(LiveRule {
                    handle: 0,
                    comment: None,
                    exprs: vec![Expr::Other { name: "unreadable".into(), text: e }],
                    counter: None,
                }),
            }
        }
        Ok(Some(rules))
    }

    /// Sends `ops` as one nf_tables batch and waits for every answer. Does nothing for an
    /// empty list. On any error the kernel has applied nothing.
    ///
    /// `generation` is the rule-set generation the ops were planned against: the batch
    /// begin message carries it (`NFNL_BATCH_GENID`), so the kernel refuses the batch with
    /// `ERESTART` if anyone committed in between, instead of applying a stale plan (e.g.
    /// a second concurrent apply appending duplicate rules). Kernels before 4.20 ignore it.
    pub fn commit(&mut self, ops: &[Op], generation: u32) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        encode::check_encodable(ops).map_err(KernelError::Encode)?;
        let mut batch = nftnl::Batch::new();
        // One label per message: an op, or the anonymous set (and its elements) a rule's
        // lookup needs, sent just before the rule and tied to it by a batch-local id. The
        // text is made only for a message the kernel rejects.
        let mut labels: Vec<MsgLabel> = Vec::new();
        let mut next_set_id = 1u32;
        for (i, op) in ops.iter().enumerate() {
            let mut ids = Vec::new();
            if let Op::AddRule { family, table, rule, .. } = op {
                for x in &rule.exprs {
                    if let crate::model::ruleset::Expr::Lookup { set, .. } = x {
                        let m = encode::SetMsg { family: *family, table, id: next_set_id, set, elements: None };
                        batch.add(&ffi::Batched(m), nftnl::MsgType::Add);
                        labels.push(MsgLabel::Set(i));
                        // Elements in several messages: one NEWSETELEM holds at most
                        // 64 KiB of attributes.
                        let n = set.elements.len();
                        for start in (0..n).step_by(encode::SET_ELEMS_PER_MESSAGE) {
                            let range = start..(start + encode::SET_ELEMS_PER_MESSAGE).min(n);
                            let m =
                                encode::SetMsg { family: *family, table, id: next_set_id, set, elements: Some(range) };
                            batch.add(&ffi::Batched(m), nftnl::MsgType::Add);
                            labels.push(MsgLabel::Elements(i, start));
                        }
                        ids.push(next_set_id);
                        next_set_id += 1;
                    }
                }
            }
            batch.add(&ffi::Batched(encode::OpMsg(op, &ids)), nftnl::MsgType::Add);
            labels.push(MsgLabel::Op(i));
        }
        let batch = batch.finalize();
        let seqs = batch.sequence_numbers();
        // Kernels >= 6.10 also ACK the batch begin/end messages (nftnl sets F_ACK then).
        let first_op_seq = if seqs.len() == labels.len() + 2 { seqs.start + 1 } else { seqs.start };
        let label = |seq: u32, begin_seq: u32| -> String {
            if seq == begin_seq {
                return "batch begin (the rule set changed after it was read)".into();
            }
            match seq.checked_sub(first_op_seq).and_then(|i| labels.get(i as usize)) {
                Some(l) => l.text(ops),
                None if seq == seqs.start => "batch begin".into(),
                None => "batch end (commit)".into(),
            }
        };

        // The whole batch goes in one sendmsg (one skb): mnl's send_all would send one
        // page per call, and the kernel rejects a batch split across skbs past ~480 rules.
        let mut pages: Vec<&[u8]> = batch.iter().collect();
        // Replace nftnl's batch begin message with one that carries the generation.
        let first = pages.first().copied().unwrap_or_default();
        if first.len() < 20 {
            return Err(KernelError::Malformed("batch without a begin message".into()));
        }
        let begin_len = header(first).nlmsg_len as usize;
        let begin = batch_begin_with_genid(&first[..begin_len], generation);
        // Before 6.10 nftnl sends the begin message with sequence 0 and no ACK flag, but
        // the kernel still answers it with an error (ERESTART for a stale generation).
        let begin_seq = header(&begin).nlmsg_seq;
        pages[0] = &first[begin_len..];
        pages.insert(0, &begin);
        let total: usize = pages.iter().map(|p| p.len()).sum();
        // Socket buffers for the whole batch and its answers (set as C ints, as the kernel
        // reads them). Needs CAP_NET_ADMIN, which writing nf_tables needs anyway.
        let snd = total + 64 * 1024;
        let rcv = seqs.len() * 1024 + 64 * 1024;
        let _ = nixsock::setsockopt(&ffi::socket_fd(&self.sock), sockopt::SndBufForce, &snd);
        let _ = nixsock::setsockopt(&ffi::socket_fd(&self.sock), sockopt::RcvBufForce, &rcv);
        let iov: Vec<std::io::IoSlice<'_>> = pages.iter().map(|p| std::io::IoSlice::new(p)).collect();
        let kernel = nixsock::NetlinkAddr::new(0, 0);
        if let Err(errno) =
            nixsock::sendmsg(self.sock.as_raw_fd(), &iov, &[], nixsock::MsgFlags::empty(), Some(&kernel))
        {
            let err = std::io::Error::from(errno);
            return Err(match err.raw_os_error() {
                Some(libc::EPERM) => KernelError::PermissionDenied,
                _ => KernelError::Io { what: "send of the batch".into(), err },
            });
        }

        // The kernel processes the batch inside sendmsg(); all answers are queued now.
        let mut pending: BTreeSet<u32> = seqs.clone().collect();
        let mut first_error: Option<(u32, i32, Option<String>)> = None;
        let portid = self.sock.portid();
        while !pending.is_empty() {
            let mut pfd = [nix::poll::PollFd::new(ffi::socket_fd(&self.sock), nix::poll::PollFlags::POLLIN)];
            // A timeout (2 s) or an error ends the wait: what is pending then is unanswered.
            if !matches!(nix::poll::poll(&mut pfd, 2000u16), Ok(n) if n > 0) {
                break;
            }
            let n = self
                .sock
                .recv_raw(&mut self.buf.0)
                .map_err(|err| KernelError::Io { what: "receive of the batch answers".into(), err })?;
            let mut data = &self.buf.0[..n];
            while data.len() >= 16 {
                let h = header(data);
                let l = (h.nlmsg_len as usize).clamp(16, data.len());
                let m = &data[..l];
                data = &data[l.next_multiple_of(4).min(data.len())..];
                if h.nlmsg_pid != portid && h.nlmsg_pid != 0 {
                    continue;
                }
                if h.nlmsg_type as c_int != libc::NLMSG_ERROR {
                    continue;
                }
                if !pending.remove(&h.nlmsg_seq) && h.nlmsg_seq != begin_seq {
                    continue;
                }
                let (errno, ext) = parse_error(m);
                if errno != 0 && first_error.is_none() {
                    first_error = Some((h.nlmsg_seq, errno, ext));
                }
            }
            if first_error.is_some() {
                break; // the transaction is aborted; later answers add nothing
            }
        }
        if let Some((seq, errno, ext)) = first_error {
            let mut extack = ext.map(|e| format!(" ({e})")).unwrap_or_default();
            if errno == libc::EPERM {
                if !nix::unistd::geteuid().is_root() {
                    return Err(KernelError::PermissionDenied);
                }
                // Root and still EPERM: a table held by another process (`flags owner`).
                extack.push_str(" (as root this means the table is owned by another process: `nft list tables` shows `flags owner`)");
            }
            return Err(KernelError::Rejected {
                op: label(seq, begin_seq),
                err: std::io::Error::from_raw_os_error(errno),
                extack,
            });
        }
        if let Some(seq) = pending.into_iter().next() {
            return Err(KernelError::NoAnswer { op: label(seq, begin_seq) });
        }
        Ok(())
    }
}

/// The iptables-legacy (x_tables) IPv4 tables of the current thread's network namespace
/// (`/proc/thread-self/net/ip_tables_names`: `nat`, `filter`, ...). Empty when the file is
/// missing (module `ip_tables` not loaded: no legacy table can exist) or unreadable: this
/// is advice, never a reason to fail.
pub fn legacy_table_names() -> Vec<String> {
    std::fs::read_to_string("/proc/thread-self/net/ip_tables_names")
        .map(|s| s.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// Whether a dumped chain is someone else's base chain on a hook the credentials traffic
/// crosses: family `ip` or `inet`, type nat at prerouting or output, or type filter at
/// prerouting, input or output; never one of our tables.
fn on_credentials_path(c: &decode::ChainInfo) -> bool {
    use crate::model::ruleset::{ChainType, Hook};
    let Some(base) = c.base else { return false };
    !c.unmodelled
        && matches!(c.family, Some(Family::Ip | Family::Inet))
        && c.table != crate::model::names::TABLE_NAME
        && matches!(
            (base.chain_type, base.hook),
            (ChainType::Nat, Hook::Prerouting | Hook::Output)
                | (ChainType::Filter, Hook::Prerouting | Hook::Input | Hook::Output)
        )
}

/// Decodes a captured nf_tables dump, without a socket, into the tables ecs-hostnet owns,
/// through the same libnftnl decoders ([`decode`]) that [`Netfilter::read_owned`] uses.
/// It serves the `readback` fuzz target and its regression tests (`tests/fuzz_regressions.rs`).
///
/// `buf` holds netlink messages back to back, as `recv(2)` returns a dump: each starts with
/// a `struct nlmsghdr` whose `nlmsg_len` counts the header, then `struct nfgenmsg` and
/// attributes; the next one starts at `nlmsg_len` rounded up to 4. Any alignment of `buf`
/// is accepted. Message types are the answers to the `NFT_MSG_GETTABLE`, `GETCHAIN`,
/// `GETSET`, `GETSETELEM`, `GETOBJ` and `GETRULE` dumps (`NFNL_SUBSYS_NFTABLES << 8 |
/// NFT_MSG_NEW*`), in any order and of any family; `NLMSG_NOOP`, `NLMSG_DONE` and an ACK
/// (`NLMSG_ERROR` with errno 0) are skipped.
///
/// Before libnftnl sees a message its framing is checked (`nlmsg_len` at least 20 =
/// `nlmsghdr` + `nfgenmsg`, and within `buf`), it is refused if it would hit a known
/// libnftnl memory-safety defect ([`decode::libnftnl_hazard`]), and its `nlmsg_len` bytes
/// are copied to a 4-aligned buffer followed by zero bytes ([`decode::PaddedMsg`]: an
/// unterminated string attribute then ends inside the copy). Every nf_tables message is decoded, those of foreign tables too. The
/// result is what `read_owned` builds: the tables of [`OWNED_TABLES`](crate::model::names::OWNED_TABLES) (ip first, in dump
/// order), each with its chains in dump order, each chain's rules in dump order with the
/// lookups resolved against the table's anonymous sets (their elements sorted), and its
/// named sets and stateful objects as `foreign_objects` (`set NAME`, `object NAME`). Set
/// elements are matched to their set by the family, table and set name they carry.
///
/// Not an error but the end of the process: libnftnl itself calls `exit(1)` ("nf_tables
/// kernel ABI is broken") when an attribute it knows fails its type check, e.g. a u32
/// attribute that is not 4 bytes long (it would end `read_owned` the same way).
///
/// # Errors
/// One line starting with `byte OFFSET:` (the offset of the message in `buf`): bytes left
/// over that are not a whole `nlmsghdr`, an `nlmsg_len` below 16 (20 for an nf_tables
/// message) or past the end of `buf`, a message flagged `NLM_F_DUMP_INTR` (the dump saw a
/// concurrent change: `read_owned` reads again), an `NLMSG_ERROR` with an errno, a message
/// type that is not an nf_tables dump answer, a libnftnl hazard (`refused before libnftnl
/// parses it: ...`), a message libnftnl cannot parse (`malformed ... message`), or a rule
/// of one of our tables in a chain that no chain message listed (what makes `read_owned`
/// read again).
pub fn decode_dump(buf: &[u8]) -> std::result::Result<Vec<LiveTable>, String> {
    const HDR: usize = 16; // struct nlmsghdr
    const NFT_HDR: usize = 20; // struct nlmsghdr + struct nfgenmsg
    const NFNL_SUBSYS_NFTABLES: u16 = 10;
    // Framing: (offset, message) per kind, each message exactly nlmsg_len bytes.
    let (mut tables_m, mut chains_m, mut sets_m, mut elems_m, mut objs_m, mut rules_m) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut off = 0;
    while off < buf.len() {
        let rest = &buf[off..];
        if rest.len() < HDR {
            return Err(format!("byte {off}: {} bytes left over, less than a netlink header (16)", rest.len()));
        }
        let h = header(rest);
        let len = h.nlmsg_len as usize;
        if len < HDR {
            return Err(format!("byte {off}: nlmsg_len {len} is shorter than the netlink header (16)"));
        }
        if len > rest.len() {
            return Err(format!(
                "byte {off}: nlmsg_len {len} runs past the end of the dump ({} bytes left)",
                rest.len()
            ));
        }
        let m = &rest[..len];
        if h.nlmsg_flags & NLM_F_DUMP_INTR != 0 {
            return Err(format!("byte {off}: the dump was interrupted by a concurrent change (NLM_F_DUMP_INTR)"));
        }
        match h.nlmsg_type as c_int {
            libc::NLMSG_NOOP | libc::NLMSG_DONE => {}
            libc::NLMSG_ERROR => match parse_error(m) {
                (0, _) => {}
                (errno, ext) => {
                    let ext = ext.map(|e| format!(" ({e})")).unwrap_or_default();
                    let err = std::io::Error::from_raw_os_error(errno);
                    return Err(format!("byte {off}: the kernel answered with an error: {err}{ext}"));
                }
            },
            _ if h.nlmsg_type >> 8 == NFNL_SUBSYS_NFTABLES => {
                if len < NFT_HDR {
                    return Err(format!("byte {off}: nlmsg_len {len} is shorter than nlmsghdr + nfgenmsg (20)"));
                }
                if let Some(why) = decode::libnftnl_hazard(m) {
                    return Err(format!("byte {off}: refused before libnftnl parses it: {why}"));
                }
                let kind = match (h.nlmsg_type & 0xff) as c_int {
                    libc::NFT_MSG_NEWTABLE => &mut tables_m,
                    libc::NFT_MSG_NEWCHAIN => &mut chains_m,
                    libc::NFT_MSG_NEWSET => &mut sets_m,
                    libc::NFT_MSG_NEWSETELEM => &mut elems_m,
                    libc::NFT_MSG_NEWOBJ => &mut objs_m,
                    libc::NFT_MSG_NEWRULE => &mut rules_m,
                    t => return Err(format!("byte {off}: nf_tables message {t} is not a dump answer")),
                };
                // libnftnl reads string attributes up to their NUL and some u32s unchecked:
                // each message gets one copy followed by zero bytes, which the decoders
                // parse as it is.
                let padded = decode::PaddedMsg::copy(m).map_err(|_| format!("byte {off}: malformed message"))?;
                kind.push((off, padded));
            }
            t => return Err(format!("byte {off}: message type {t:#x} is not an nf_tables message")),
        }
        off += len.next_multiple_of(4).min(rest.len());
    }
    let family_of = |m: &decode::PaddedMsg| Family::from_nfproto(m.bytes()[16] as u32);
    let at = |off: usize| move |e: String| format!("byte {off}: {e}");

    let mut tables = Vec::new();
    for (off, m) in &tables_m {
        tables.extend(decode::table(m).map_err(at(*off))?.into_owned_table());
    }
    let mut asm = Assembly::new(tables);
    for (off, m) in &chains_m {
        asm.add_chain(decode::chain(m).map_err(at(*off))?);
    }
    for (off, m) in &sets_m {
        let (table, name, set) = decode::set(m).map_err(at(*off))?;
        asm.add_set(family_of(m), &table, name, set);
    }
    for (off, m) in &elems_m {
        let (table, set) = decode::set_elements_owner(m).map_err(at(*off))?;
        let mut found = Vec::new();
        decode::set_elements(m, &mut found).map_err(at(*off))?;
        asm.add_set_elements(family_of(m), &table, &set, found);
    }
    asm.sort_set_elements();
    for (off, m) in &objs_m {
        let (table, name) = decode::object(m).map_err(at(*off))?;
        asm.add_object(family_of(m), &table, &name);
    }
    // Every rule is decoded (a malformed one is refused, whoever owns it); those of our
    // tables again with the table's anonymous sets.
    let no_sets = decode::AnonSets::new();
    for (off, m) in &rules_m {
        let r = decode::rule(m, &no_sets).map_err(at(*off))?;
        let Some(sets) = asm.sets_of(r.family, &r.table) else { continue };
        let r = decode::rule(m, sets).map_err(at(*off))?;
        asm.add_rule(r).map_err(|e| {
            format!(
                "byte {off}: a rule of chain {:?} in table {} {}, which the dump did not list",
                e.chain,
                e.family.name(),
                e.table
            )
        })?;
    }
    Ok(asm.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejected message is named by its op in nft syntax, its set by the op it serves.
    #[test]
    fn a_rejected_message_is_named_by_its_op() {
        let desired = crate::desired::compile(&crate::config::default_config());
        let ops = crate::plan::plan(&desired, &crate::plan::live::LiveState::default()).ops;
        let (i, _) = ops
            .iter()
            .enumerate()
            .find(|(_, op)| {
                matches!(op, Op::AddRule { chain, rule, .. } if chain == "forward" && rule.exprs.iter().any(|x| matches!(x, crate::model::ruleset::Expr::Lookup { .. })))
            })
            .expect("the default has an IMDS rule with a set");
        let op = MsgLabel::Op(i).text(&ops);
        assert!(op.starts_with("add rule inet ecs-hostnet forward ") && op.contains("169.254.169.254"), "{op}");
        assert_eq!(MsgLabel::Set(i).text(&ops), format!("add the set of `{op}`"));
        assert_eq!(MsgLabel::Elements(i, 64).text(&ops), format!("add elements 64.. of the set of `{op}`"));
        assert!(MsgLabel::Op(0).text(&ops).starts_with("add table ip ecs-hostnet"));
    }

    /// A batch refused for someone else's commit is retried; any other refusal is not.
    #[test]
    fn concurrent_commits_are_told_from_other_refusals() {
        let rejected = |errno| KernelError::Rejected {
            op: "batch begin".into(),
            err: std::io::Error::from_raw_os_error(errno),
            extack: String::new(),
        };
        for errno in [libc::ERESTART, libc::ENOENT, libc::EEXIST, libc::EBUSY] {
            assert!(rejected(errno).is_concurrent_commit(), "{errno}");
        }
        for errno in [libc::EPERM, libc::EINVAL, libc::ENOSPC] {
            assert!(!rejected(errno).is_concurrent_commit(), "{errno}");
        }
        let io = KernelError::Io { what: "request 13".into(), err: std::io::Error::from_raw_os_error(libc::ENOENT) };
        assert!(!io.is_concurrent_commit());
        assert!(!KernelError::Unstable.is_concurrent_commit());
    }

    /// The io errors are sources, and an error chain (`{:#}`, as the CLI prints errors)
    /// reads as the one-line message did before.
    #[test]
    fn io_errors_print_once_in_an_error_chain() {
        let io = KernelError::Io { what: "request 13".into(), err: std::io::Error::from_raw_os_error(libc::ENOENT) };
        assert!(std::error::Error::source(&io).is_some());
        let text = format!("{:#}", anyhow::Error::from(io));
        assert_eq!(text, format!("netlink request 13 failed: {}", std::io::Error::from_raw_os_error(libc::ENOENT)));
        let sock = KernelError::Socket(std::io::Error::from_raw_os_error(libc::EMFILE));
        let text = format!("{:#}", anyhow::Error::from(sock));
        assert_eq!(
            text,
            format!("cannot open a netfilter netlink socket: {}", std::io::Error::from_raw_os_error(libc::EMFILE))
        );
    }

    /// A set element key longer than libnftnl's 64-byte array is refused before a batch is
    /// built.
    #[test]
    fn an_oversized_set_key_is_not_encodable() {
        let desired = crate::desired::compile(&crate::config::default_config());
        let mut ops = crate::plan::plan(&desired, &crate::plan::live::LiveState::default()).ops;
        encode::check_encodable(&ops).unwrap();
        let set = ops
            .iter_mut()
            .find_map(|op| match op {
                Op::AddRule { rule, .. } => rule.exprs.iter_mut().find_map(|x| match x {
                    crate::model::ruleset::Expr::Lookup { set, .. } => Some(set),
                    _ => None,
                }),
                _ => None,
            })
            .expect("the default has a rule with a set");
        set.elements[0].key = vec![0; 65];
        let err = encode::check_encodable(&ops).unwrap_err();
        assert!(err.contains("65 bytes"), "{err}");
    }
}
