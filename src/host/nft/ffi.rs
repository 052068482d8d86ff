//! The FFI boundary: every `unsafe` block of ecs-hostnet is in this module.
//!
//! It wraps what ecs-hostnet uses of libnftnl (nftnl-sys) in safe types:
//!
//! * owned libnftnl objects ([`Table`], [`Chain`], [`Rule`], [`Expr`], [`Set`], [`SetElem`],
//!   [`Obj`], and the generation) that free themselves when dropped (`nftnl_*_free`), with
//!   typed setters and getters for the attributes ecs-hostnet reads and writes; a getter's
//!   string or bytes borrow the object;
//! * parsing: `*::parse` hands libnftnl a whole netlink message only as a [`PaddedMsg`]
//!   (exactly `nlmsg_len` bytes, 4-aligned, zero padding after: libnftnl cannot read past
//!   it), and only after checking the known libnftnl 1.2.4 defects ([`super::hazard`]);
//! * building: [`MsgBuf`] / [`Msg`], a buffer of known capacity that libnftnl writes one
//!   message into; every object counts an upper bound of the bytes it encodes to, checked
//!   against the room left before libnftnl writes (`mnl_attr_put` checks nothing);
//! * nftnl's [`NlMsg`](nftnl::NlMsg) for the batch messages of
//!   [`encode`](super::encode), and the socket's file descriptor as a [`BorrowedFd`].
//!
//! Expressions are built only through constructors of the forms ecs-hostnet generates:
//! libnftnl 1.2.4 copies expression data without checking its length (and some attributes
//! of other expressions take ownership of the pointer they are given), so an arbitrary
//! `(expression, attribute, bytes)` setter could not be safe.

use nftnl::nftnl_sys as sys;
use std::ffi::{CStr, c_char, c_void};
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// The last attribute number of each libnftnl object and expression at the libnftnl floor,
/// 1.1.8 (Cargo.toml's `nftnl-1-1-8`), copied from that release's headers
/// (`libnftnl/{table,chain,rule,set,object,expr}.h`: `__NFTNL_*_MAX - 1`, or the last
/// `NFTNL_EXPR_<TYPE>_*` of each expression's enum). libnftnl prints "attribute N > M
/// (maximum)" and calls exit(1) when a setter is given a number past its own maximum, so every
/// attribute ecs-hostnet names is checked against these at compile time (the `const _` after this module):
/// raising the nftnl feature to bind a newer attribute does not raise the floor.
mod floor {
    pub const TABLE: u32 = 5; // NFTNL_TABLE_USERDATA
    pub const CHAIN: u32 = 15; // __NFTNL_CHAIN_MAX 16
    pub const RULE: u32 = 9; // __NFTNL_RULE_MAX 10
    pub const SET: u32 = 17; // __NFTNL_SET_MAX 18
    pub const SET_ELEM: u32 = 10; // __NFTNL_SET_ELEM_MAX 11 (NFTNL_SET_ELEM_KEY_END)
    pub const OBJ: u32 = 16; // __NFTNL_OBJ_MAX 17
    pub const GEN: u32 = 0; // NFTNL_GEN_ID
    pub const BITWISE: u32 = 7; // NFTNL_EXPR_BITWISE_DATA
    pub const CMP: u32 = 3; // NFTNL_EXPR_CMP_DATA
    pub const CT: u32 = 4; // NFTNL_EXPR_CT_SREG
    pub const CTR: u32 = 2; // NFTNL_EXPR_CTR_BYTES
    pub const IMM: u32 = 4; // NFTNL_EXPR_IMM_CHAIN (CHAIN_ID is not used)
    pub const LOOKUP: u32 = 5; // NFTNL_EXPR_LOOKUP_FLAGS
    pub const META: u32 = 3; // NFTNL_EXPR_META_SREG
    pub const NAT: u32 = 7; // NFTNL_EXPR_NAT_FLAGS
    pub const PAYLOAD: u32 = 8; // NFTNL_EXPR_PAYLOAD_FLAGS
    pub const REDIR: u32 = 3; // NFTNL_EXPR_REDIR_FLAGS
    pub const LIMIT: u32 = 5; // NFTNL_EXPR_LIMIT_FLAGS
    pub const LOG: u32 = 6; // NFTNL_EXPR_LOG_FLAGS
}

/// Every libnftnl attribute this module names is one the floor release knows ([`floor`]):
/// a build fails here, not a host's ecs-hostnet at run time. Every `sys::NFTNL_*` attribute
/// named under src/host/nft/ must be in this list (test `every_named_attribute_is_checked_against_the_floor`).
const _: () = {
    macro_rules! at_floor {
        ($max:expr; $($attr:ident),+ $(,)?) => { $( assert!(sys::$attr <= $max, stringify!($attr)); )+ };
    }
    at_floor!(floor::TABLE; NFTNL_TABLE_FAMILY, NFTNL_TABLE_FLAGS, NFTNL_TABLE_HANDLE, NFTNL_TABLE_NAME, NFTNL_TABLE_USERDATA);
    at_floor!(floor::CHAIN; NFTNL_CHAIN_FAMILY, NFTNL_CHAIN_HOOKNUM, NFTNL_CHAIN_NAME, NFTNL_CHAIN_POLICY, NFTNL_CHAIN_PRIO, NFTNL_CHAIN_TABLE, NFTNL_CHAIN_TYPE);
    at_floor!(floor::RULE; NFTNL_RULE_CHAIN, NFTNL_RULE_FAMILY, NFTNL_RULE_HANDLE, NFTNL_RULE_POSITION, NFTNL_RULE_TABLE, NFTNL_RULE_USERDATA);
    at_floor!(floor::SET; NFTNL_SET_DESC_SIZE, NFTNL_SET_FAMILY, NFTNL_SET_FLAGS, NFTNL_SET_ID, NFTNL_SET_KEY_LEN, NFTNL_SET_KEY_TYPE, NFTNL_SET_NAME, NFTNL_SET_TABLE, NFTNL_SET_USERDATA);
    at_floor!(floor::SET_ELEM; NFTNL_SET_ELEM_FLAGS, NFTNL_SET_ELEM_KEY);
    at_floor!(floor::OBJ; NFTNL_OBJ_FAMILY, NFTNL_OBJ_NAME, NFTNL_OBJ_TABLE);
    at_floor!(floor::GEN; NFTNL_GEN_ID);
    // The one attribute every expression has (NFTNL_EXPR_BASE = 1 starts their own).
    at_floor!(0; NFTNL_EXPR_NAME);
    at_floor!(floor::BITWISE; NFTNL_EXPR_BITWISE_DREG, NFTNL_EXPR_BITWISE_LEN, NFTNL_EXPR_BITWISE_MASK, NFTNL_EXPR_BITWISE_OP, NFTNL_EXPR_BITWISE_SREG, NFTNL_EXPR_BITWISE_XOR);
    at_floor!(floor::CMP; NFTNL_EXPR_CMP_DATA, NFTNL_EXPR_CMP_OP, NFTNL_EXPR_CMP_SREG);
    at_floor!(floor::CT; NFTNL_EXPR_CT_DREG, NFTNL_EXPR_CT_KEY);
    at_floor!(floor::CTR; NFTNL_EXPR_CTR_BYTES, NFTNL_EXPR_CTR_PACKETS);
    at_floor!(floor::IMM; NFTNL_EXPR_IMM_CHAIN, NFTNL_EXPR_IMM_DATA, NFTNL_EXPR_IMM_DREG, NFTNL_EXPR_IMM_VERDICT);
    at_floor!(floor::LOOKUP; NFTNL_EXPR_LOOKUP_DREG, NFTNL_EXPR_LOOKUP_FLAGS, NFTNL_EXPR_LOOKUP_SET, NFTNL_EXPR_LOOKUP_SET_ID, NFTNL_EXPR_LOOKUP_SREG);
    at_floor!(floor::META; NFTNL_EXPR_META_DREG, NFTNL_EXPR_META_KEY);
    at_floor!(floor::NAT; NFTNL_EXPR_NAT_FAMILY, NFTNL_EXPR_NAT_FLAGS, NFTNL_EXPR_NAT_REG_ADDR_MAX, NFTNL_EXPR_NAT_REG_ADDR_MIN, NFTNL_EXPR_NAT_REG_PROTO_MAX, NFTNL_EXPR_NAT_REG_PROTO_MIN, NFTNL_EXPR_NAT_TYPE);
    at_floor!(floor::PAYLOAD; NFTNL_EXPR_PAYLOAD_BASE, NFTNL_EXPR_PAYLOAD_DREG, NFTNL_EXPR_PAYLOAD_LEN, NFTNL_EXPR_PAYLOAD_OFFSET);
    at_floor!(floor::REDIR; NFTNL_EXPR_REDIR_FLAGS, NFTNL_EXPR_REDIR_REG_PROTO_MAX, NFTNL_EXPR_REDIR_REG_PROTO_MIN);
    at_floor!(floor::LIMIT; NFTNL_EXPR_LIMIT_BURST, NFTNL_EXPR_LIMIT_FLAGS, NFTNL_EXPR_LIMIT_RATE, NFTNL_EXPR_LIMIT_TYPE, NFTNL_EXPR_LIMIT_UNIT);
    at_floor!(floor::LOG; NFTNL_EXPR_LOG_FLAGS, NFTNL_EXPR_LOG_GROUP, NFTNL_EXPR_LOG_LEVEL, NFTNL_EXPR_LOG_PREFIX, NFTNL_EXPR_LOG_QTHRESHOLD, NFTNL_EXPR_LOG_SNAPLEN);
};

/// `struct nlmsghdr` (16 bytes) + `struct nfgenmsg` (4 bytes): the fixed part of an
/// nf_tables message, which libnftnl reads without checking.
const NFT_HDR: usize = 20;

/// `NFT_DATA_VALUE_MAXLEN`: the largest value (expression data, set element key) libnftnl
/// 1.2.4 stores; it copies a longer one past its 64-byte array.
pub const DATA_MAXLEN: usize = 64;

/// Upper bound of the bytes an object encodes to besides its attributes: the nests
/// libnftnl opens for it, 4 bytes each (a rule's expression list, a set's element list and
/// description, a chain's hook, an element's `NFTA_LIST_ELEM`, an expression's
/// `NFTA_LIST_ELEM` and `NFTA_EXPR_DATA`, whose name counts as a string attribute).
///
/// The attributes' bounds: a u32 or u64 at most 16 bytes (header 4, value 8, or a verdict's
/// two nests 8 and its code 8), a string 8 + its length with the NUL (header 4, padding 3),
/// data 12 + its length (an `nft_data` nest 4, header 4, padding 3). Checked against what
/// libnftnl 1.2.4's `*_nlmsg_build_payload` and `mnl_attr_put*` write, and by a test.
const OBJECT_BOUND: usize = 16;

/// The byte bound of an object a parser filled in (`*::parse`): unknown, since what
/// libnftnl stored is not counted, so [`Msg`] refuses to write it. Setters add to a bound
/// saturating, so it stays unknown.
const PARSED_BOUND: usize = usize::MAX;

// ---------------------------------------------------------------------------------------
// Reading messages

/// Why `*::parse` did not return an object.
#[derive(Debug)]
pub enum Refused {
    /// The message is shorter than `nlmsghdr` + `nfgenmsg` (20 bytes), its `nlmsg_len` is
    /// below 20 or past the end of the slice, or libnftnl's parser returned an error.
    Malformed,
    /// The message would hit a known libnftnl 1.2.4 defect
    /// ([`libnftnl_hazard`](super::hazard::libnftnl_hazard)'s text); libnftnl never saw it.
    Hazard(String),
}

/// Zero bytes a [`PaddedMsg`] has after its message, at least: libnftnl reads some u32
/// attributes (`NFTA_OBJ_TYPE`, `NFTA_SET_OBJ_TYPE`, `NFTA_SET_ELEM_LIST_SET_ID`, ...)
/// without checking their length, so an empty one at the end of the message is read up to
/// 4 bytes past it (8 for a u64), and strings up to their NUL.
const PAD_BYTES: usize = 16;

/// One nf_tables message in the only form libnftnl is given to parse: exactly `nlmsg_len`
/// bytes (at least `nlmsghdr` + `nfgenmsg`), 4-aligned, followed by at least
/// [`PAD_BYTES`] zero bytes. Every read libnftnl makes past an attribute it does not check
/// (a u32 of an empty attribute, an unterminated string) then ends in the padding, and no
/// byte after `nlmsg_len` is parsed, whatever followed the message where it came from.
///
/// Made only by [`PaddedMsg::copy`]: one allocation and one copy, which the socket reader
/// makes anyway for each message it keeps ([`super::Netfilter`]).
#[derive(Clone)]
pub struct PaddedMsg {
    /// The message then zero words; `u32` for the alignment.
    words: Box<[u32]>,
    /// `nlmsg_len`.
    len: usize,
}

impl PaddedMsg {
    /// A copy of the message at the start of `m`: its first `nlmsg_len` bytes, then zero
    /// bytes. Errors ([`Refused::Malformed`]): `m` is shorter than 20 bytes (`nlmsghdr` +
    /// `nfgenmsg`), or its `nlmsg_len` is below 20 or past the end of `m`.
    pub fn copy(m: &[u8]) -> Result<PaddedMsg, Refused> {
        if m.len() < NFT_HDR {
            return Err(Refused::Malformed);
        }
        let len = u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize;
        if !(NFT_HDR..=m.len()).contains(&len) {
            return Err(Refused::Malformed);
        }
        let mut words = vec![0u32; (len + PAD_BYTES).div_ceil(4)].into_boxed_slice();
        // SAFETY: `words` holds at least `len` bytes, any bit pattern is a valid u32 and u8
        // needs no alignment; `m` has at least `len` bytes; the two do not overlap.
        unsafe { std::ptr::copy_nonoverlapping(m.as_ptr(), words.as_mut_ptr().cast::<u8>(), len) };
        Ok(PaddedMsg { words, len })
    }

    /// The message: exactly `nlmsg_len` bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `words` is initialised and holds at least `len` bytes (`copy`); u8 needs
        // no alignment; the slice borrows `self`, which owns the words.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), self.len) }
    }
}

/// A message the decoders accept: a [`PaddedMsg`], parsed as it is, or bytes (`[u8]`,
/// `Vec<u8>`) holding one message at their start, which are copied into one first (bytes
/// past `nlmsg_len` are not part of it).
pub trait Message {
    /// The message as libnftnl may parse it. Errors as for [`PaddedMsg::copy`].
    fn padded(&self) -> Result<std::borrow::Cow<'_, PaddedMsg>, Refused>;
    /// The bytes as given (for a [`PaddedMsg`], exactly `nlmsg_len`), for decoders that
    /// read the message themselves.
    fn raw(&self) -> &[u8];
}

impl Message for PaddedMsg {
    fn padded(&self) -> Result<std::borrow::Cow<'_, PaddedMsg>, Refused> {
        Ok(std::borrow::Cow::Borrowed(self))
    }
    fn raw(&self) -> &[u8] {
        self.bytes()
    }
}

impl Message for [u8] {
    fn padded(&self) -> Result<std::borrow::Cow<'_, PaddedMsg>, Refused> {
        PaddedMsg::copy(self).map(std::borrow::Cow::Owned)
    }
    fn raw(&self) -> &[u8] {
        self
    }
}

impl Message for Vec<u8> {
    fn padded(&self) -> Result<std::borrow::Cow<'_, PaddedMsg>, Refused> {
        self.as_slice().padded()
    }
    fn raw(&self) -> &[u8] {
        self
    }
}

/// Calls `parse` with a pointer to the message `m` once it is known to hit no known
/// libnftnl defect ([`super::hazard`]). `parse` gets a pointer valid for reads of
/// `nlmsg_len` bytes and the zero padding after them ([`PaddedMsg`]), for the duration of
/// the call only.
fn with_message<R>(m: &PaddedMsg, parse: impl FnOnce(*const libc::nlmsghdr) -> R) -> Result<R, Refused> {
    if let Some(why) = super::hazard::libnftnl_hazard(m.bytes()) {
        return Err(Refused::Hazard(why));
    }
    Ok(parse(m.words.as_ptr().cast()))
}

/// The string at `p`, or `None` for NULL.
///
/// # Safety
/// `p` is NULL or points at a NUL-terminated string that is neither freed nor changed
/// during `'a`.
unsafe fn c_str<'a>(p: *const c_char) -> Option<&'a CStr> {
    // SAFETY: the caller's promise.
    (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) })
}

/// The `len` bytes at `p`, or `None` for NULL.
///
/// # Safety
/// `p` is NULL or valid for reads of `len` bytes that are neither freed nor changed during
/// `'a`.
unsafe fn c_bytes<'a>(p: *const c_void, len: u32) -> Option<&'a [u8]> {
    // SAFETY: the caller's promise.
    (!p.is_null()).then(|| unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len as usize) })
}

/// libnftnl keeps which attributes are set in a 32-bit mask and tests `1 << attr`: an
/// attribute number of 32 or more is undefined behaviour in C, and never set.
fn attr_ok(attr: u32) -> bool {
    attr < 32
}

// ---------------------------------------------------------------------------------------
// Owned objects

/// An owned libnftnl object: allocated by `new`, freed on drop.
macro_rules! object {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $alloc:path, $free:path) => {
        $(#[$doc])*
        pub struct $name {
            ptr: NonNull<$raw>,
            /// Upper bound of the bytes the object encodes to ([`Msg`]).
            bound: usize,
        }

        impl $name {
            /// An empty object. Panics when libnftnl cannot allocate it (out of memory).
            pub fn new() -> $name {
                // SAFETY: the allocator has no precondition; it returns an empty object
                // or NULL, which `NonNull::new` refuses.
                let ptr = unsafe { $alloc() };
                $name { ptr: NonNull::new(ptr).expect("libnftnl: out of memory"), bound: OBJECT_BOUND }
            }

            /// An empty object for a parser to fill in: its byte bound is unknown
            /// ([`PARSED_BOUND`]), so it can never be written into a message.
            #[allow(dead_code, reason = "set elements are parsed only within a set")]
            fn parsed() -> $name {
                let mut o = $name::new();
                o.bound = PARSED_BOUND;
                o
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: `ptr` came from the allocator, belongs to this value alone (it is
                // never copied out, and ownership handed to libnftnl forgets the value),
                // and is freed only here.
                unsafe { $free(self.ptr.as_ptr()) }
            }
        }
    };
}

object!(
    /// An `nftnl_table`.
    Table, sys::nftnl_table, sys::nftnl_table_alloc, sys::nftnl_table_free
);
object!(
    /// An `nftnl_chain`.
    Chain, sys::nftnl_chain, sys::nftnl_chain_alloc, sys::nftnl_chain_free
);
object!(
    /// An `nftnl_rule` and the expressions it owns.
    Rule, sys::nftnl_rule, sys::nftnl_rule_alloc, sys::nftnl_rule_free
);
object!(
    /// An `nftnl_set` and the elements it owns.
    Set, sys::nftnl_set, sys::nftnl_set_alloc, sys::nftnl_set_free
);
object!(
    /// An `nftnl_set_elem` not yet added to a set.
    SetElem, sys::nftnl_set_elem, sys::nftnl_set_elem_alloc, sys::nftnl_set_elem_free
);
object!(
    /// An `nftnl_obj` (a stateful object: counter, quota, ...).
    Obj, sys::nftnl_obj, sys::nftnl_obj_alloc, sys::nftnl_obj_free
);

/// An `nftnl_gen` (`NFT_MSG_NEWGEN`), only ever parsed ([`generation_id`]).
struct Gen {
    ptr: NonNull<sys::nftnl_gen>,
}

impl Gen {
    fn new() -> Gen {
        // SAFETY: the allocator has no precondition; it returns an empty object or NULL,
        // which `NonNull::new` refuses.
        let ptr = unsafe { sys::nftnl_gen_alloc() };
        Gen { ptr: NonNull::new(ptr).expect("libnftnl: out of memory") }
    }

    fn parsed() -> Gen {
        Gen::new()
    }
}

impl Drop for Gen {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `nftnl_gen_alloc`, belongs to this value alone and is
        // freed only here.
        unsafe { sys::nftnl_gen_free(self.ptr.as_ptr()) }
    }
}

/// `parse` (a `nftnl_*_nlmsg_parse`) of the message `m` into a new `$name`.
macro_rules! parse {
    ($name:ident, $parse:path, $m:expr) => {{
        let obj = $name::parsed();
        let ptr = obj.ptr.as_ptr();
        let m = Message::padded($m)?;
        // SAFETY: `nlh` is a whole message libnftnl may read, valid for this call
        // (`with_message`); `ptr` is a live object that nothing else refers to.
        let r = with_message(&m, |nlh| unsafe { $parse(nlh, ptr) })?;
        if r < 0 { Err(Refused::Malformed) } else { Ok(obj) }
    }};
}

/// Bound contribution of a string attribute ([`OBJECT_BOUND`]).
fn str_bound(s: &CStr) -> usize {
    8 + s.to_bytes_with_nul().len()
}

/// Bound contribution of a data attribute, plain or in an `nft_data` nest ([`OBJECT_BOUND`]).
fn data_bound(d: &[u8]) -> usize {
    12 + d.len()
}

/// Bound contribution of a u32 or u64 attribute, a verdict included ([`OBJECT_BOUND`]).
const INT_BOUND: usize = 16;

/// A `u32` length for libnftnl; values ecs-hostnet sets are far shorter.
fn len32(d: &[u8]) -> u32 {
    u32::try_from(d.len()).expect("attribute value longer than 4 GiB")
}

impl Table {
    /// Parses an `NFT_MSG_NEWTABLE` message (`nftnl_table_nlmsg_parse`); see [`Message`]
    /// for what `m` may be.
    pub fn parse<M: Message + ?Sized>(m: &M) -> Result<Table, Refused> {
        parse!(Table, sys::nftnl_table_nlmsg_parse, m)
    }

    /// `NFTNL_TABLE_FAMILY` (`nfgen_family`).
    pub fn set_family(&mut self, family: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live table; a u32 attribute of tables.
        unsafe { sys::nftnl_table_set_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16, family) }
    }

    /// `NFTNL_TABLE_NAME` (libnftnl copies the string).
    pub fn set_name(&mut self, name: &CStr) {
        self.bound = self.bound.saturating_add(str_bound(name));
        // SAFETY: a live table; a string attribute, given a NUL-terminated string.
        unsafe { sys::nftnl_table_set_str(self.ptr.as_ptr(), sys::NFTNL_TABLE_NAME as u16, name.as_ptr()) };
    }

    /// `NFTNL_TABLE_FLAGS`.
    pub fn set_flags(&mut self, flags: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live table; a u32 attribute of tables.
        unsafe { sys::nftnl_table_set_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16, flags) }
    }

    /// `NFTNL_TABLE_USERDATA` (libnftnl copies the bytes).
    pub fn set_userdata(&mut self, udata: &[u8]) {
        self.bound = self.bound.saturating_add(data_bound(udata));
        // SAFETY: a live table; `udata` is valid for `len` bytes, which libnftnl copies.
        unsafe {
            sys::nftnl_table_set_data(
                self.ptr.as_ptr(),
                sys::NFTNL_TABLE_USERDATA as u16,
                udata.as_ptr().cast(),
                len32(udata),
            )
        };
    }

    /// `NFTNL_TABLE_FAMILY` (0 when unset).
    pub fn family(&self) -> u32 {
        // SAFETY: a live table; a u32 attribute of tables.
        unsafe { sys::nftnl_table_get_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FAMILY as u16) }
    }

    /// `NFTNL_TABLE_NAME`, `None` when unset.
    pub fn name(&self) -> Option<&CStr> {
        // SAFETY: a live table; a string attribute, owned by the table, which `&self` keeps
        // alive and unchanged.
        unsafe { c_str(sys::nftnl_table_get_str(self.ptr.as_ptr(), sys::NFTNL_TABLE_NAME as u16)) }
    }

    /// `NFTNL_TABLE_HANDLE` (0 when unset).
    pub fn handle(&self) -> u64 {
        // SAFETY: a live table; a u64 attribute of tables.
        unsafe { sys::nftnl_table_get_u64(self.ptr.as_ptr(), sys::NFTNL_TABLE_HANDLE as u16) }
    }

    /// `NFTNL_TABLE_FLAGS` (0 when unset).
    pub fn flags(&self) -> u32 {
        // SAFETY: a live table; a u32 attribute of tables.
        unsafe { sys::nftnl_table_get_u32(self.ptr.as_ptr(), sys::NFTNL_TABLE_FLAGS as u16) }
    }

    /// `NFTNL_TABLE_USERDATA`, `None` when unset.
    pub fn userdata(&self) -> Option<&[u8]> {
        let t = self.ptr.as_ptr();
        // SAFETY: a live table; `is_set` before `get_data`, which returns the table's own
        // copy of the bytes and their length; `&self` keeps them alive and unchanged.
        unsafe {
            if !sys::nftnl_table_is_set(t, sys::NFTNL_TABLE_USERDATA as u16) {
                return None;
            }
            let mut len = 0u32;
            let p = sys::nftnl_table_get_data(t, sys::NFTNL_TABLE_USERDATA as u16, &mut len);
            c_bytes(p, len)
        }
    }
}

impl Chain {
    /// Parses an `NFT_MSG_NEWCHAIN` message (`nftnl_chain_nlmsg_parse`); see
    /// [`Message`] for what `m` may be.
    pub fn parse<M: Message + ?Sized>(m: &M) -> Result<Chain, Refused> {
        parse!(Chain, sys::nftnl_chain_nlmsg_parse, m)
    }

    fn set_u32(&mut self, attr: u32, v: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live chain; every caller passes a u32 attribute of chains.
        unsafe { sys::nftnl_chain_set_u32(self.ptr.as_ptr(), attr as u16, v) }
    }

    fn set_str(&mut self, attr: u32, s: &CStr) {
        self.bound = self.bound.saturating_add(str_bound(s));
        // SAFETY: a live chain; every caller passes a string attribute of chains, and a
        // NUL-terminated string, which libnftnl copies.
        unsafe { sys::nftnl_chain_set_str(self.ptr.as_ptr(), attr as u16, s.as_ptr()) };
    }

    /// `NFTNL_CHAIN_FAMILY`.
    pub fn set_family(&mut self, family: u32) {
        self.set_u32(sys::NFTNL_CHAIN_FAMILY, family)
    }

    /// `NFTNL_CHAIN_TABLE`.
    pub fn set_table(&mut self, table: &CStr) {
        self.set_str(sys::NFTNL_CHAIN_TABLE, table)
    }

    /// `NFTNL_CHAIN_NAME`.
    pub fn set_name(&mut self, name: &CStr) {
        self.set_str(sys::NFTNL_CHAIN_NAME, name)
    }

    /// `NFTNL_CHAIN_HOOKNUM`.
    pub fn set_hooknum(&mut self, hook: u32) {
        self.set_u32(sys::NFTNL_CHAIN_HOOKNUM, hook)
    }

    /// `NFTNL_CHAIN_PRIO`.
    pub fn set_prio(&mut self, prio: i32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live chain; an s32 attribute of chains.
        unsafe { sys::nftnl_chain_set_s32(self.ptr.as_ptr(), sys::NFTNL_CHAIN_PRIO as u16, prio) }
    }

    /// `NFTNL_CHAIN_TYPE` (`filter`, `nat`, ...).
    pub fn set_type(&mut self, ty: &CStr) {
        self.set_str(sys::NFTNL_CHAIN_TYPE, ty)
    }

    /// `NFTNL_CHAIN_POLICY` (`NF_ACCEPT`, `NF_DROP`).
    pub fn set_policy(&mut self, policy: u32) {
        self.set_u32(sys::NFTNL_CHAIN_POLICY, policy)
    }

    fn is_set(&self, attr: u32) -> bool {
        // SAFETY: a live chain; every caller passes an attribute number below 32.
        unsafe { sys::nftnl_chain_is_set(self.ptr.as_ptr(), attr as u16) }
    }

    fn get_u32(&self, attr: u32) -> u32 {
        // SAFETY: a live chain; every caller passes a u32 attribute of chains.
        unsafe { sys::nftnl_chain_get_u32(self.ptr.as_ptr(), attr as u16) }
    }

    fn get_str(&self, attr: u32) -> Option<&CStr> {
        // SAFETY: a live chain; every caller passes a string attribute of chains, owned by
        // the chain, which `&self` keeps alive and unchanged.
        unsafe { c_str(sys::nftnl_chain_get_str(self.ptr.as_ptr(), attr as u16)) }
    }

    /// `NFTNL_CHAIN_FAMILY` (0 when unset).
    pub fn family(&self) -> u32 {
        self.get_u32(sys::NFTNL_CHAIN_FAMILY)
    }

    /// `NFTNL_CHAIN_TABLE`, `None` when unset.
    pub fn table(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_CHAIN_TABLE)
    }

    /// `NFTNL_CHAIN_NAME`, `None` when unset.
    pub fn name(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_CHAIN_NAME)
    }

    /// `NFTNL_CHAIN_HOOKNUM`, `None` for a regular chain.
    pub fn hooknum(&self) -> Option<u32> {
        self.is_set(sys::NFTNL_CHAIN_HOOKNUM).then(|| self.get_u32(sys::NFTNL_CHAIN_HOOKNUM))
    }

    /// `NFTNL_CHAIN_TYPE`, `None` when unset.
    pub fn chain_type(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_CHAIN_TYPE)
    }

    /// `NFTNL_CHAIN_PRIO` (0 when unset).
    pub fn prio(&self) -> i32 {
        // SAFETY: a live chain; an s32 attribute of chains.
        unsafe { sys::nftnl_chain_get_s32(self.ptr.as_ptr(), sys::NFTNL_CHAIN_PRIO as u16) }
    }

    /// `NFTNL_CHAIN_POLICY`, `None` when unset.
    pub fn policy(&self) -> Option<u32> {
        self.is_set(sys::NFTNL_CHAIN_POLICY).then(|| self.get_u32(sys::NFTNL_CHAIN_POLICY))
    }
}

impl Rule {
    /// Parses an `NFT_MSG_NEWRULE` message (`nftnl_rule_nlmsg_parse`, with its expressions);
    /// see [`Message`] for what `m` may be.
    pub fn parse<M: Message + ?Sized>(m: &M) -> Result<Rule, Refused> {
        parse!(Rule, sys::nftnl_rule_nlmsg_parse, m)
    }

    fn set_u32(&mut self, attr: u32, v: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live rule; every caller passes a u32 attribute of rules.
        unsafe { sys::nftnl_rule_set_u32(self.ptr.as_ptr(), attr as u16, v) }
    }

    fn set_u64(&mut self, attr: u32, v: u64) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live rule; every caller passes a u64 attribute of rules.
        unsafe { sys::nftnl_rule_set_u64(self.ptr.as_ptr(), attr as u16, v) }
    }

    fn set_str(&mut self, attr: u32, s: &CStr) {
        self.bound = self.bound.saturating_add(str_bound(s));
        // SAFETY: a live rule; every caller passes a string attribute of rules, and a
        // NUL-terminated string, which libnftnl copies.
        unsafe { sys::nftnl_rule_set_str(self.ptr.as_ptr(), attr as u16, s.as_ptr()) };
    }

    /// `NFTNL_RULE_FAMILY`.
    pub fn set_family(&mut self, family: u32) {
        self.set_u32(sys::NFTNL_RULE_FAMILY, family)
    }

    /// `NFTNL_RULE_TABLE`.
    pub fn set_table(&mut self, table: &CStr) {
        self.set_str(sys::NFTNL_RULE_TABLE, table)
    }

    /// `NFTNL_RULE_CHAIN`.
    pub fn set_chain(&mut self, chain: &CStr) {
        self.set_str(sys::NFTNL_RULE_CHAIN, chain)
    }

    /// `NFTNL_RULE_HANDLE`.
    pub fn set_handle(&mut self, handle: u64) {
        self.set_u64(sys::NFTNL_RULE_HANDLE, handle)
    }

    /// `NFTNL_RULE_POSITION`: the handle of the rule to insert before.
    pub fn set_position(&mut self, handle: u64) {
        self.set_u64(sys::NFTNL_RULE_POSITION, handle)
    }

    /// `NFTNL_RULE_USERDATA` (libnftnl copies the bytes).
    pub fn set_userdata(&mut self, udata: &[u8]) {
        self.bound = self.bound.saturating_add(data_bound(udata));
        // SAFETY: a live rule; `udata` is valid for `len` bytes, which libnftnl copies.
        unsafe {
            sys::nftnl_rule_set_data(
                self.ptr.as_ptr(),
                sys::NFTNL_RULE_USERDATA as u16,
                udata.as_ptr().cast(),
                len32(udata),
            )
        };
    }

    /// Appends `expr` to the rule's expressions; the rule owns it from now on.
    pub fn add_expr(&mut self, expr: Expr) {
        self.bound = self.bound.saturating_add(expr.bound);
        let e = std::mem::ManuallyDrop::new(expr);
        // SAFETY: a live rule and a live expression that no rule holds yet; the rule frees
        // it with itself, and `ManuallyDrop` keeps `Expr`'s drop from freeing it too.
        unsafe { sys::nftnl_rule_add_expr(self.ptr.as_ptr(), e.ptr.as_ptr()) }
    }

    /// `NFTNL_RULE_FAMILY` (0 when unset).
    pub fn family(&self) -> u32 {
        // SAFETY: a live rule; a u32 attribute of rules.
        unsafe { sys::nftnl_rule_get_u32(self.ptr.as_ptr(), sys::NFTNL_RULE_FAMILY as u16) }
    }

    fn get_str(&self, attr: u32) -> Option<&CStr> {
        // SAFETY: a live rule; every caller passes a string attribute of rules, owned by the
        // rule, which `&self` keeps alive and unchanged.
        unsafe { c_str(sys::nftnl_rule_get_str(self.ptr.as_ptr(), attr as u16)) }
    }

    /// `NFTNL_RULE_TABLE`, `None` when unset.
    pub fn table(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_RULE_TABLE)
    }

    /// `NFTNL_RULE_CHAIN`, `None` when unset.
    pub fn chain(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_RULE_CHAIN)
    }

    /// `NFTNL_RULE_HANDLE` (0 when unset).
    pub fn handle(&self) -> u64 {
        // SAFETY: a live rule; a u64 attribute of rules.
        unsafe { sys::nftnl_rule_get_u64(self.ptr.as_ptr(), sys::NFTNL_RULE_HANDLE as u16) }
    }

    /// `NFTNL_RULE_USERDATA`, `None` when unset.
    pub fn userdata(&self) -> Option<&[u8]> {
        let r = self.ptr.as_ptr();
        // SAFETY: a live rule; `is_set` before `get_data`, which returns the rule's own copy
        // of the bytes and their length; `&self` keeps them alive and unchanged.
        unsafe {
            if !sys::nftnl_rule_is_set(r, sys::NFTNL_RULE_USERDATA as u16) {
                return None;
            }
            let mut len = 0u32;
            let p = sys::nftnl_rule_get_data(r, sys::NFTNL_RULE_USERDATA as u16, &mut len);
            c_bytes(p, len)
        }
    }

    /// The rule's expressions in order (`nftnl_expr_iter_*`). Yields nothing when libnftnl
    /// cannot allocate the iterator.
    pub fn exprs(&self) -> Exprs<'_> {
        // SAFETY: a live rule; the iterator (or NULL) refers to it, and `Exprs` borrows it.
        let it = unsafe { sys::nftnl_expr_iter_create(self.ptr.as_ptr()) };
        Exprs { it: NonNull::new(it), _rule: PhantomData }
    }
}

/// The expressions of a [`Rule`] ([`Rule::exprs`]).
pub struct Exprs<'a> {
    it: Option<NonNull<sys::nftnl_expr_iter>>,
    _rule: PhantomData<&'a Rule>,
}

impl<'a> Iterator for Exprs<'a> {
    type Item = ExprRef<'a>;

    fn next(&mut self) -> Option<ExprRef<'a>> {
        let it = self.it?;
        // SAFETY: a live iterator over a rule that `'a` keeps alive and unchanged; it
        // returns one of the rule's expressions, or NULL at the end.
        let e = unsafe { sys::nftnl_expr_iter_next(it.as_ptr()) };
        NonNull::new(e).map(|ptr| ExprRef { ptr, _rule: PhantomData })
    }
}

impl Drop for Exprs<'_> {
    fn drop(&mut self) {
        if let Some(it) = self.it {
            // SAFETY: the iterator came from `nftnl_expr_iter_create` and is destroyed only
            // here; it does not own the expressions.
            unsafe { sys::nftnl_expr_iter_destroy(it.as_ptr()) }
        }
    }
}

/// An expression owned by a [`Rule`], read-only.
pub struct ExprRef<'a> {
    ptr: NonNull<sys::nftnl_expr>,
    _rule: PhantomData<&'a Rule>,
}

impl<'a> ExprRef<'a> {
    /// Whether attribute `attr` (an `NFTNL_EXPR_*` number) is set.
    pub fn is_set(&self, attr: u32) -> bool {
        // SAFETY: a live expression; `attr_ok` keeps the number below 32.
        attr_ok(attr) && unsafe { sys::nftnl_expr_is_set(self.ptr.as_ptr(), attr as u16) }
    }

    /// The value of attribute `attr` as libnftnl stores it (`nftnl_expr_get`: a u32 as 4
    /// native-endian bytes, a string with its NUL, data as given); `None` when unset.
    pub fn get(&self, attr: u32) -> Option<&'a [u8]> {
        if !self.is_set(attr) {
            return None;
        }
        let mut len = 0u32;
        // SAFETY: a live expression and a set attribute below 32; libnftnl returns a
        // pointer into the expression and the length of what is there, or NULL. The rule
        // that owns the expression lives and stays unchanged for `'a`.
        unsafe {
            let p = sys::nftnl_expr_get(self.ptr.as_ptr(), attr as u16, &mut len);
            c_bytes(p, len)
        }
    }

    /// `nftnl_expr_get_u32`: `None` when unset, 0 when set with a value that is not 4 bytes.
    pub fn get_u32(&self, attr: u32) -> Option<u32> {
        if !self.is_set(attr) {
            return None;
        }
        Some(self.get(attr).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_ne_bytes).unwrap_or(0))
    }

    /// `nftnl_expr_get_u64`: `None` when unset, 0 when set with a value that is not 8 bytes.
    pub fn get_u64(&self, attr: u32) -> Option<u64> {
        if !self.is_set(attr) {
            return None;
        }
        Some(self.get(attr).and_then(|b| <[u8; 8]>::try_from(b).ok()).map(u64::from_ne_bytes).unwrap_or(0))
    }

    /// A string attribute up to its NUL; `None` when unset or without a NUL.
    pub fn get_str(&self, attr: u32) -> Option<&'a CStr> {
        CStr::from_bytes_until_nul(self.get(attr)?).ok()
    }

    /// `NFTNL_EXPR_NAME` (`meta`, `cmp`, ...).
    pub fn name(&self) -> Option<&'a CStr> {
        self.get_str(sys::NFTNL_EXPR_NAME)
    }

    /// libnftnl's text for the expression (`nftnl_expr_snprintf`, default output), cut at
    /// 1023 bytes.
    pub fn text(&self) -> String {
        let mut buf = [0u8; 1024];
        // SAFETY: a live expression; libnftnl writes at most `buf.len()` bytes, NUL included.
        unsafe {
            sys::nftnl_expr_snprintf(
                buf.as_mut_ptr().cast(),
                buf.len(),
                self.ptr.as_ptr(),
                sys::NFTNL_OUTPUT_DEFAULT,
                0,
            );
        }
        CStr::from_bytes_until_nul(&buf).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// An expression being built, not yet in a rule ([`Rule::add_expr`]). Only the forms
/// ecs-hostnet generates can be built (see the module documentation); values longer than
/// [`DATA_MAXLEN`] are refused.
pub struct Expr {
    ptr: NonNull<sys::nftnl_expr>,
    bound: usize,
}

impl Drop for Expr {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `nftnl_expr_alloc`, belongs to this value alone (a rule
        // that takes it gets it through `ManuallyDrop`), and is freed only here.
        unsafe { sys::nftnl_expr_free(self.ptr.as_ptr()) }
    }
}

impl Expr {
    /// `nftnl_expr_alloc(name)`. Panics when libnftnl has no such expression, or is out
    /// of memory: every name passed is one libnftnl 1.2.4 has.
    fn alloc(name: &CStr) -> Expr {
        // SAFETY: `name` is NUL-terminated; libnftnl returns a new expression or NULL.
        let e = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
        let ptr = NonNull::new(e).unwrap_or_else(|| panic!("libnftnl has no {name:?} expression"));
        Expr { ptr, bound: OBJECT_BOUND + str_bound(name) }
    }

    /// Sets a u32 attribute. Callers pass only attributes their expression stores as a
    /// number of at most 4 bytes.
    fn u32(mut self, attr: u32, v: u32) -> Expr {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live expression; libnftnl copies at most the 4 bytes of `v` (the size
        // of the field, per the callers' choice of attribute).
        unsafe { sys::nftnl_expr_set_u32(self.ptr.as_ptr(), attr as u16, v) }
        self
    }

    /// Sets a u32 attribute when `v` is `Some`.
    fn opt_u32(self, attr: u32, v: Option<u32>) -> Expr {
        match v {
            Some(v) => self.u32(attr, v),
            None => self,
        }
    }

    /// Sets a data attribute (`cmp` data, `bitwise` mask and xor, `immediate` data), which
    /// libnftnl 1.2.4 copies into a [`DATA_MAXLEN`]-byte array without checking: longer
    /// data is an error.
    fn data(mut self, attr: u32, d: &[u8], what: &str) -> Result<Expr, String> {
        if d.len() > DATA_MAXLEN {
            return Err(format!("{what} of {} bytes exceeds nf_tables' {DATA_MAXLEN}", d.len()));
        }
        self.bound = self.bound.saturating_add(data_bound(d));
        // SAFETY: a live expression; callers pass only data attributes, which libnftnl
        // copies (`len` bytes, at most the size of its array).
        unsafe { sys::nftnl_expr_set(self.ptr.as_ptr(), attr as u16, d.as_ptr().cast(), len32(d)) };
        Ok(self)
    }

    /// `meta load KEY => reg DREG`.
    pub fn meta(key: u32, dreg: u32) -> Expr {
        Expr::alloc(c"meta").u32(sys::NFTNL_EXPR_META_KEY, key).u32(sys::NFTNL_EXPR_META_DREG, dreg)
    }

    /// `payload load LEN b @ BASE + OFFSET => reg DREG`.
    pub fn payload(base: u32, offset: u32, len: u32, dreg: u32) -> Expr {
        Expr::alloc(c"payload")
            .u32(sys::NFTNL_EXPR_PAYLOAD_BASE, base)
            .u32(sys::NFTNL_EXPR_PAYLOAD_OFFSET, offset)
            .u32(sys::NFTNL_EXPR_PAYLOAD_LEN, len)
            .u32(sys::NFTNL_EXPR_PAYLOAD_DREG, dreg)
    }

    /// `cmp OP reg SREG DATA`. Errors: `data` longer than [`DATA_MAXLEN`].
    pub fn cmp(sreg: u32, op: u32, data: &[u8]) -> Result<Expr, String> {
        Expr::alloc(c"cmp").u32(sys::NFTNL_EXPR_CMP_SREG, sreg).u32(sys::NFTNL_EXPR_CMP_OP, op).data(
            sys::NFTNL_EXPR_CMP_DATA,
            data,
            "cmp data",
        )
    }

    /// `bitwise reg DREG = (reg SREG & MASK) ^ XOR` over `len` bytes. Errors: `mask` or `xor`
    /// longer than [`DATA_MAXLEN`].
    pub fn bitwise(sreg: u32, dreg: u32, len: u32, mask: &[u8], xor: &[u8]) -> Result<Expr, String> {
        Expr::alloc(c"bitwise")
            .u32(sys::NFTNL_EXPR_BITWISE_SREG, sreg)
            .u32(sys::NFTNL_EXPR_BITWISE_DREG, dreg)
            .u32(sys::NFTNL_EXPR_BITWISE_LEN, len)
            .data(sys::NFTNL_EXPR_BITWISE_MASK, mask, "bitwise mask")?
            .data(sys::NFTNL_EXPR_BITWISE_XOR, xor, "bitwise xor")
    }

    /// `ct load KEY => reg DREG`.
    pub fn ct(key: u32, dreg: u32) -> Expr {
        Expr::alloc(c"ct").u32(sys::NFTNL_EXPR_CT_KEY, key).u32(sys::NFTNL_EXPR_CT_DREG, dreg)
    }

    /// `counter` (no attributes).
    pub fn counter() -> Expr {
        Expr::alloc(c"counter")
    }

    /// `immediate reg DREG DATA`. Errors: `data` longer than [`DATA_MAXLEN`].
    pub fn immediate(dreg: u32, data: &[u8]) -> Result<Expr, String> {
        Expr::alloc(c"immediate").u32(sys::NFTNL_EXPR_IMM_DREG, dreg).data(
            sys::NFTNL_EXPR_IMM_DATA,
            data,
            "immediate data",
        )
    }

    /// `immediate reg DREG VERDICT` (`NF_DROP`, `NF_ACCEPT`, ...; no chain).
    pub fn verdict(dreg: u32, code: u32) -> Expr {
        Expr::alloc(c"immediate").u32(sys::NFTNL_EXPR_IMM_DREG, dreg).u32(sys::NFTNL_EXPR_IMM_VERDICT, code)
    }

    /// `nat TYPE FAMILY` with the optional address/port registers
    /// `[addr_min, addr_max, proto_min, proto_max]` and flags.
    pub fn nat(nat_type: u32, family: u32, regs: [Option<u32>; 4], flags: Option<u32>) -> Expr {
        Expr::alloc(c"nat")
            .u32(sys::NFTNL_EXPR_NAT_TYPE, nat_type)
            .u32(sys::NFTNL_EXPR_NAT_FAMILY, family)
            .opt_u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, regs[0])
            .opt_u32(sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, regs[1])
            .opt_u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, regs[2])
            .opt_u32(sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, regs[3])
            .opt_u32(sys::NFTNL_EXPR_NAT_FLAGS, flags)
    }

    /// `redir` with the optional port registers and flags.
    pub fn redir(reg_proto_min: Option<u32>, reg_proto_max: Option<u32>, flags: Option<u32>) -> Expr {
        Expr::alloc(c"redir")
            .opt_u32(sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN, reg_proto_min)
            .opt_u32(sys::NFTNL_EXPR_REDIR_REG_PROTO_MAX, reg_proto_max)
            .opt_u32(sys::NFTNL_EXPR_REDIR_FLAGS, flags)
    }

    /// `limit rate RATE/UNIT burst BURST type TYPE flags FLAGS`, every attribute set as nft
    /// sets them (rate and unit are u64, burst, type and flags u32 in libnftnl).
    pub fn limit(rate: u64, unit: u64, burst: u32, limit_type: u32, flags: u32) -> Expr {
        let mut e = Expr::alloc(c"limit");
        for (attr, v) in [(sys::NFTNL_EXPR_LIMIT_RATE, rate), (sys::NFTNL_EXPR_LIMIT_UNIT, unit)] {
            e.bound = e.bound.saturating_add(INT_BOUND);
            // SAFETY: a live expression; rate and unit are u64 attributes of `limit`, of
            // which libnftnl copies the 8 bytes of `v`.
            unsafe { sys::nftnl_expr_set_u64(e.ptr.as_ptr(), attr as u16, v) }
        }
        e.u32(sys::NFTNL_EXPR_LIMIT_BURST, burst)
            .u32(sys::NFTNL_EXPR_LIMIT_TYPE, limit_type)
            .u32(sys::NFTNL_EXPR_LIMIT_FLAGS, flags)
    }

    /// `log prefix PREFIX group GROUP snaplen SNAPLEN` (nfnetlink_log), as nft sets it: the
    /// prefix a string, the group a u16, the snaplen a u32; no level, flags or threshold.
    pub fn log(prefix: &CStr, group: u16, snaplen: u32) -> Expr {
        let mut e = Expr::alloc(c"log");
        e.bound = e.bound.saturating_add(str_bound(prefix)).saturating_add(INT_BOUND);
        // SAFETY: a live expression; the prefix is a string attribute of `log`, given a
        // NUL-terminated string, which libnftnl copies; the group is its u16 attribute,
        // of which libnftnl copies the 2 bytes of `group`.
        unsafe {
            sys::nftnl_expr_set_str(e.ptr.as_ptr(), sys::NFTNL_EXPR_LOG_PREFIX as u16, prefix.as_ptr());
            sys::nftnl_expr_set_u16(e.ptr.as_ptr(), sys::NFTNL_EXPR_LOG_GROUP as u16, group);
        }
        e.u32(sys::NFTNL_EXPR_LOG_SNAPLEN, snaplen)
    }

    /// `lookup reg SREG set SET` tied to the set of batch-local id `set_id`
    /// (`NFTNL_EXPR_LOOKUP_SET_ID`), with `NFTNL_EXPR_LOOKUP_FLAGS` when given.
    pub fn lookup(sreg: u32, set: &CStr, set_id: u32, flags: Option<u32>) -> Expr {
        let mut e = Expr::alloc(c"lookup").u32(sys::NFTNL_EXPR_LOOKUP_SREG, sreg);
        e.bound = e.bound.saturating_add(str_bound(set));
        // SAFETY: a live expression; the lookup's set name is a string attribute, given a
        // NUL-terminated string, which libnftnl copies.
        unsafe { sys::nftnl_expr_set_str(e.ptr.as_ptr(), sys::NFTNL_EXPR_LOOKUP_SET as u16, set.as_ptr()) };
        e.u32(sys::NFTNL_EXPR_LOOKUP_SET_ID, set_id).opt_u32(sys::NFTNL_EXPR_LOOKUP_FLAGS, flags)
    }
}

impl Set {
    /// Parses an `NFT_MSG_NEWSET` message (`nftnl_set_nlmsg_parse`); see [`Message`]
    /// for what `m` may be.
    pub fn parse<M: Message + ?Sized>(m: &M) -> Result<Set, Refused> {
        parse!(Set, sys::nftnl_set_nlmsg_parse, m)
    }

    /// Parses an `NFT_MSG_NEWSETELEM` message (`nftnl_set_elems_nlmsg_parse`): a set with
    /// its table, name and the message's elements; see [`Message`] for what `m` may be.
    pub fn parse_elems<M: Message + ?Sized>(m: &M) -> Result<Set, Refused> {
        parse!(Set, sys::nftnl_set_elems_nlmsg_parse, m)
    }

    fn set_u32(&mut self, attr: u32, v: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live set; every caller passes a u32 attribute of sets.
        unsafe { sys::nftnl_set_set_u32(self.ptr.as_ptr(), attr as u16, v) }
    }

    fn set_str(&mut self, attr: u32, s: &CStr) {
        self.bound = self.bound.saturating_add(str_bound(s));
        // SAFETY: a live set; every caller passes a string attribute of sets, and a
        // NUL-terminated string, which libnftnl copies.
        unsafe { sys::nftnl_set_set_str(self.ptr.as_ptr(), attr as u16, s.as_ptr()) };
    }

    /// `NFTNL_SET_TABLE`.
    pub fn set_table(&mut self, table: &CStr) {
        self.set_str(sys::NFTNL_SET_TABLE, table)
    }

    /// `NFTNL_SET_NAME` (`__set%d` for a new anonymous set).
    pub fn set_name(&mut self, name: &CStr) {
        self.set_str(sys::NFTNL_SET_NAME, name)
    }

    /// `NFTNL_SET_FAMILY`.
    pub fn set_family(&mut self, family: u32) {
        self.set_u32(sys::NFTNL_SET_FAMILY, family)
    }

    /// `NFTNL_SET_ID`: the set's batch-local id.
    pub fn set_id(&mut self, id: u32) {
        self.set_u32(sys::NFTNL_SET_ID, id)
    }

    /// `NFTNL_SET_FLAGS` (`NFT_SET_ANONYMOUS`, ...).
    pub fn set_flags(&mut self, flags: u32) {
        self.set_u32(sys::NFTNL_SET_FLAGS, flags)
    }

    /// `NFTNL_SET_KEY_TYPE`.
    pub fn set_key_type(&mut self, key_type: u32) {
        self.set_u32(sys::NFTNL_SET_KEY_TYPE, key_type)
    }

    /// `NFTNL_SET_KEY_LEN`, bytes.
    pub fn set_key_len(&mut self, key_len: u32) {
        self.set_u32(sys::NFTNL_SET_KEY_LEN, key_len)
    }

    /// `NFTNL_SET_DESC_SIZE`: the number of elements.
    pub fn set_desc_size(&mut self, size: u32) {
        self.set_u32(sys::NFTNL_SET_DESC_SIZE, size)
    }

    /// `NFTNL_SET_USERDATA` (libnftnl copies the bytes).
    pub fn set_userdata(&mut self, udata: &[u8]) {
        self.bound = self.bound.saturating_add(data_bound(udata));
        // SAFETY: a live set; `udata` is valid for `len` bytes, which libnftnl copies.
        unsafe {
            sys::nftnl_set_set_data(
                self.ptr.as_ptr(),
                sys::NFTNL_SET_USERDATA as u16,
                udata.as_ptr().cast(),
                len32(udata),
            )
        };
    }

    /// Adds `elem` to the set's elements; the set owns it from now on.
    pub fn add_elem(&mut self, elem: SetElem) {
        self.bound = self.bound.saturating_add(elem.bound);
        let e = std::mem::ManuallyDrop::new(elem);
        // SAFETY: a live set and a live element that no set holds yet; the set frees it
        // with itself, and `ManuallyDrop` keeps `SetElem`'s drop from freeing it too.
        unsafe { sys::nftnl_set_elem_add(self.ptr.as_ptr(), e.ptr.as_ptr()) }
    }

    fn get_u32(&self, attr: u32) -> u32 {
        // SAFETY: a live set; every caller passes a u32 attribute of sets.
        unsafe { sys::nftnl_set_get_u32(self.ptr.as_ptr(), attr as u16) }
    }

    fn get_str(&self, attr: u32) -> Option<&CStr> {
        // SAFETY: a live set; every caller passes a string attribute of sets, owned by the
        // set, which `&self` keeps alive and unchanged.
        unsafe { c_str(sys::nftnl_set_get_str(self.ptr.as_ptr(), attr as u16)) }
    }

    /// `NFTNL_SET_TABLE`, `None` when unset.
    pub fn table(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_SET_TABLE)
    }

    /// `NFTNL_SET_NAME`, `None` when unset.
    pub fn name(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_SET_NAME)
    }

    /// `NFTNL_SET_FLAGS` (0 when unset).
    pub fn flags(&self) -> u32 {
        self.get_u32(sys::NFTNL_SET_FLAGS)
    }

    /// `NFTNL_SET_KEY_TYPE` (0 when unset).
    pub fn key_type(&self) -> u32 {
        self.get_u32(sys::NFTNL_SET_KEY_TYPE)
    }

    /// `NFTNL_SET_KEY_LEN` (0 when unset).
    pub fn key_len(&self) -> u32 {
        self.get_u32(sys::NFTNL_SET_KEY_LEN)
    }

    /// The set's elements in order (`nftnl_set_elems_iter_*`). Yields nothing when libnftnl
    /// cannot allocate the iterator.
    pub fn elems(&self) -> Elems<'_> {
        // SAFETY: a live set; the iterator (or NULL) refers to it, and `Elems` borrows it.
        let it = unsafe { sys::nftnl_set_elems_iter_create(self.ptr.as_ptr()) };
        Elems { it: NonNull::new(it), _set: PhantomData }
    }
}

/// The elements of a [`Set`] ([`Set::elems`]).
pub struct Elems<'a> {
    it: Option<NonNull<sys::nftnl_set_elems_iter>>,
    _set: PhantomData<&'a Set>,
}

impl<'a> Iterator for Elems<'a> {
    type Item = ElemRef<'a>;

    fn next(&mut self) -> Option<ElemRef<'a>> {
        let it = self.it?;
        // SAFETY: a live iterator over a set that `'a` keeps alive and unchanged; it returns
        // one of the set's elements, or NULL at the end.
        let e = unsafe { sys::nftnl_set_elems_iter_next(it.as_ptr()) };
        NonNull::new(e).map(|ptr| ElemRef { ptr, _set: PhantomData })
    }
}

impl Drop for Elems<'_> {
    fn drop(&mut self) {
        if let Some(it) = self.it {
            // SAFETY: the iterator came from `nftnl_set_elems_iter_create` and is destroyed
            // only here; it does not own the elements.
            unsafe { sys::nftnl_set_elems_iter_destroy(it.as_ptr()) }
        }
    }
}

/// A set element owned by a [`Set`], read-only.
pub struct ElemRef<'a> {
    ptr: NonNull<sys::nftnl_set_elem>,
    _set: PhantomData<&'a Set>,
}

impl<'a> ElemRef<'a> {
    /// `NFTNL_SET_ELEM_KEY`, `None` when unset.
    pub fn key(&self) -> Option<&'a [u8]> {
        let mut len = 0u32;
        // SAFETY: a live element; libnftnl returns a pointer to its key and the key's
        // length, or NULL when unset. The set that owns the element lives and stays
        // unchanged for `'a`.
        unsafe {
            let p = sys::nftnl_set_elem_get(self.ptr.as_ptr(), sys::NFTNL_SET_ELEM_KEY as u16, &mut len);
            c_bytes(p, len)
        }
    }

    /// `NFTNL_SET_ELEM_FLAGS` (`NFT_SET_ELEM_INTERVAL_END`), `None` when unset.
    pub fn flags(&self) -> Option<u32> {
        let e = self.ptr.as_ptr();
        // SAFETY: a live element; a u32 attribute of elements, read only when set.
        unsafe {
            sys::nftnl_set_elem_is_set(e, sys::NFTNL_SET_ELEM_FLAGS as u16)
                .then(|| sys::nftnl_set_elem_get_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16))
        }
    }
}

impl SetElem {
    /// `NFTNL_SET_ELEM_KEY`. Errors: a key longer than [`DATA_MAXLEN`], which libnftnl 1.2.4
    /// would copy past its array.
    pub fn set_key(&mut self, key: &[u8]) -> Result<(), String> {
        if key.len() > DATA_MAXLEN {
            return Err(format!("set element key of {} bytes exceeds nf_tables' {DATA_MAXLEN}", key.len()));
        }
        self.bound = self.bound.saturating_add(data_bound(key));
        // SAFETY: a live element; at most DATA_MAXLEN bytes, which libnftnl copies into its
        // key array of that size.
        unsafe {
            sys::nftnl_set_elem_set(self.ptr.as_ptr(), sys::NFTNL_SET_ELEM_KEY as u16, key.as_ptr().cast(), len32(key))
        };
        Ok(())
    }

    /// `NFTNL_SET_ELEM_FLAGS`.
    pub fn set_flags(&mut self, flags: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live element; a u32 attribute of elements.
        unsafe { sys::nftnl_set_elem_set_u32(self.ptr.as_ptr(), sys::NFTNL_SET_ELEM_FLAGS as u16, flags) }
    }
}

impl Obj {
    /// Parses an `NFT_MSG_NEWOBJ` message (`nftnl_obj_nlmsg_parse`); see [`Message`]
    /// for what `m` may be.
    pub fn parse<M: Message + ?Sized>(m: &M) -> Result<Obj, Refused> {
        parse!(Obj, sys::nftnl_obj_nlmsg_parse, m)
    }

    /// `NFTNL_OBJ_TABLE`.
    pub fn set_table(&mut self, table: &CStr) {
        self.bound = self.bound.saturating_add(str_bound(table));
        // SAFETY: a live object; a string attribute, given a NUL-terminated string, which
        // libnftnl copies.
        unsafe { sys::nftnl_obj_set_str(self.ptr.as_ptr(), sys::NFTNL_OBJ_TABLE as u16, table.as_ptr()) }
    }

    /// `NFTNL_OBJ_FAMILY`.
    pub fn set_family(&mut self, family: u32) {
        self.bound = self.bound.saturating_add(INT_BOUND);
        // SAFETY: a live object; a u32 attribute of objects.
        unsafe { sys::nftnl_obj_set_u32(self.ptr.as_ptr(), sys::NFTNL_OBJ_FAMILY as u16, family) }
    }

    fn get_str(&self, attr: u32) -> Option<&CStr> {
        // SAFETY: a live object; every caller passes a string attribute of objects, owned by
        // the object, which `&self` keeps alive and unchanged (libnftnl's getter only reads,
        // though its prototype takes a mutable pointer).
        unsafe { c_str(sys::nftnl_obj_get_str(self.ptr.as_ptr(), attr as u16)) }
    }

    /// `NFTNL_OBJ_TABLE`, `None` when unset.
    pub fn table(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_OBJ_TABLE)
    }

    /// `NFTNL_OBJ_NAME`, `None` when unset.
    pub fn name(&self) -> Option<&CStr> {
        self.get_str(sys::NFTNL_OBJ_NAME)
    }
}

/// The rule-set generation id of an `NFT_MSG_NEWGEN` message (`nftnl_gen_nlmsg_parse`,
/// `NFTNL_GEN_ID`); see [`Message`] for what `m` may be.
pub fn generation_id<M: Message + ?Sized>(m: &M) -> Result<u32, Refused> {
    let g: Gen = parse!(Gen, sys::nftnl_gen_nlmsg_parse, m)?;
    // SAFETY: a live, parsed generation object; a u32 attribute.
    Ok(unsafe { sys::nftnl_gen_get_u32(g.ptr.as_ptr(), sys::NFTNL_GEN_ID as u16) })
}

// ---------------------------------------------------------------------------------------
// Building messages

/// Room for one netlink message: at least 20 bytes (`nlmsghdr` + `nfgenmsg`), 4-aligned,
/// writable for `'a`.
pub struct MsgBuf<'a> {
    ptr: NonNull<u8>,
    cap: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

impl<'a> MsgBuf<'a> {
    /// The whole of `buf`. Panics when `buf` is not 4-aligned or shorter than 20 bytes.
    pub fn new(buf: &'a mut [u8]) -> MsgBuf<'a> {
        assert!(
            buf.as_ptr().align_offset(4) == 0 && buf.len() >= NFT_HDR,
            "a message buffer is 4-aligned, >= 20 bytes"
        );
        let cap = buf.len();
        MsgBuf { ptr: NonNull::from(buf).cast(), cap, _buf: PhantomData }
    }

    /// nftnl's batch buffer for one message ([`nftnl::NlMsg::write`]).
    ///
    /// # Safety
    /// `buf` is valid for writes of [`nftnl::nft_nlmsg_maxsize`] bytes, 4-aligned, and
    /// nothing else uses those bytes during `'a`.
    unsafe fn from_batch(buf: *mut c_void) -> MsgBuf<'a> {
        debug_assert!(buf.cast::<u32>().is_aligned());
        let ptr = NonNull::new(buf.cast()).expect("nftnl passes a batch buffer");
        MsgBuf { ptr, cap: nftnl::nft_nlmsg_maxsize() as usize, _buf: PhantomData }
    }

    /// Writes the message header (`nftnl_nlmsg_build_hdr`: `nlmsghdr` with `NFNL_SUBSYS_NFTABLES
    /// << 8 | msg_type`, `NLM_F_REQUEST | flags` and `seq`, then `nfgenmsg` with `family`),
    /// to which one object's payload can be added.
    pub fn header(self, msg_type: u16, family: u16, flags: u16, seq: u32) -> Msg<'a> {
        // SAFETY: the buffer has room for the 20 bytes libnftnl writes here, is 4-aligned
        // and ours for `'a` (`new`, `from_batch`).
        let nlh =
            unsafe { sys::nftnl_nlmsg_build_hdr(self.ptr.as_ptr().cast::<c_char>(), msg_type, family, flags, seq) };
        Msg {
            nlh: NonNull::new(nlh).expect("the header is at the start of the buffer"),
            cap: self.cap,
            _buf: PhantomData,
        }
    }
}

/// A message being built in a [`MsgBuf`]: its header, and at most one object's payload.
pub struct Msg<'a> {
    nlh: NonNull<libc::nlmsghdr>,
    cap: usize,
    _buf: PhantomData<&'a mut [u8]>,
}

impl Msg<'_> {
    /// `nlmsg_len`: the bytes written so far, header included.
    pub fn len(&self) -> usize {
        // SAFETY: `nlh` points at the header `MsgBuf::header` wrote, in a buffer still ours.
        unsafe { (*self.nlh.as_ptr()).nlmsg_len as usize }
    }

    /// Runs `build` (one `nftnl_*_nlmsg_build_payload`) on the header after checking that
    /// a payload of at most `bound` bytes fits in the buffer after what is there: panics
    /// otherwise, since libnftnl would write past its end, and for an object parsed from a
    /// message, whose bound is unknown ([`PARSED_BOUND`]). Debug builds check afterwards
    /// that the bound held.
    fn put(&mut self, bound: usize, build: impl FnOnce(*mut libc::nlmsghdr)) {
        assert!(
            bound != PARSED_BOUND,
            "an object parsed from a message has no known byte bound: it cannot be written into a message"
        );
        let before = self.len();
        assert!(
            before.checked_add(bound).is_some_and(|end| end <= self.cap),
            "an nf_tables message of up to {} bytes does not fit its {}-byte buffer",
            before.saturating_add(bound),
            self.cap
        );
        build(self.nlh.as_ptr());
        debug_assert!(
            self.len() <= before + bound,
            "libnftnl wrote {} bytes, over the bound {bound}",
            self.len() - before
        );
    }

    /// Adds a table's attributes (`nftnl_table_nlmsg_build_payload`).
    pub fn put_table(&mut self, t: &Table) {
        // SAFETY: `put` checked that the table's encoding fits after `nlh`; libnftnl only
        // reads `t`.
        self.put(t.bound, |nlh| unsafe { sys::nftnl_table_nlmsg_build_payload(nlh, t.ptr.as_ptr()) })
    }

    /// Adds a chain's attributes (`nftnl_chain_nlmsg_build_payload`).
    pub fn put_chain(&mut self, c: &Chain) {
        // SAFETY: `put` checked that the chain's encoding fits after `nlh`; libnftnl only
        // reads `c`.
        self.put(c.bound, |nlh| unsafe { sys::nftnl_chain_nlmsg_build_payload(nlh, c.ptr.as_ptr()) })
    }

    /// Adds a rule's attributes and expressions (`nftnl_rule_nlmsg_build_payload`).
    pub fn put_rule(&mut self, r: &mut Rule) {
        // SAFETY: `put` checked that the rule's encoding fits after `nlh`; `r` is borrowed
        // mutably, as libnftnl's prototype asks.
        self.put(r.bound, |nlh| unsafe { sys::nftnl_rule_nlmsg_build_payload(nlh, r.ptr.as_ptr()) })
    }

    /// Adds a set's attributes, without its elements (`nftnl_set_nlmsg_build_payload`).
    pub fn put_set(&mut self, s: &mut Set) {
        // SAFETY: `put` checked that the set's encoding fits after `nlh`; `s` is borrowed
        // mutably, as libnftnl's prototype asks.
        self.put(s.bound, |nlh| unsafe { sys::nftnl_set_nlmsg_build_payload(nlh, s.ptr.as_ptr()) })
    }

    /// Adds a set's name, table, id and elements (`nftnl_set_elems_nlmsg_build_payload`).
    pub fn put_set_elems(&mut self, s: &mut Set) {
        // SAFETY: `put` checked that the set's encoding (elements included) fits after
        // `nlh`; `s` is borrowed mutably, as libnftnl's prototype asks.
        self.put(s.bound, |nlh| unsafe { sys::nftnl_set_elems_nlmsg_build_payload(nlh, s.ptr.as_ptr()) })
    }

    /// Adds an object's attributes (`nftnl_obj_nlmsg_build_payload`).
    pub fn put_obj(&mut self, o: &Obj) {
        // SAFETY: `put` checked that the object's encoding fits after `nlh`; libnftnl only
        // reads `o`.
        self.put(o.bound, |nlh| unsafe { sys::nftnl_obj_nlmsg_build_payload(nlh, o.ptr.as_ptr()) })
    }
}

/// A batch message that safe code writes into a bounded [`MsgBuf`] (the encoder's ops and
/// sets), sent through nftnl's batch by wrapping it in [`Batched`].
pub trait WriteMsg {
    /// Writes one message with sequence number `seq` into `out`.
    fn write_msg(&self, out: MsgBuf<'_>, seq: u32);
}

/// A [`WriteMsg`] as nftnl's `NlMsg`, the only way a message reaches a batch page.
pub struct Batched<T>(pub T);

// SAFETY: `write` writes one message at `buf` with `MsgBuf`/`Msg`, which never let libnftnl
// write past the nft_nlmsg_maxsize() bytes nftnl provides there.
unsafe impl<T: WriteMsg> nftnl::NlMsg for Batched<T> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: nftnl::MsgType) {
        // SAFETY: NlMsg::write's contract: `buf` has room for nft_nlmsg_maxsize() bytes, at a
        // 4-aligned message boundary of nftnl's batch page, for this call.
        let out = unsafe { MsgBuf::from_batch(buf) };
        self.0.write_msg(out, seq)
    }
}

// ---------------------------------------------------------------------------------------
// The socket

// nix's macro for socket options it lacks (it expands to the other two, and to unsafe
// `setsockopt`/`getsockopt` calls with the option's C type and size, which it derives from
// the Rust type given here: `bool` as a C int, `u64` as 8 bytes).
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};

/// `SOL_NETLINK` (linux/socket.h).
const SOL_NETLINK: libc::c_int = 270;
/// `NETLINK_CAP_ACK`: errors do not echo the whole request back.
const NETLINK_CAP_ACK: libc::c_int = 10;
/// `NETLINK_EXT_ACK`: errors carry the kernel's text message.
const NETLINK_EXT_ACK: libc::c_int = 11;
/// `SO_NETNS_COOKIE` (asm-generic/socket.h, kernel >= 5.14).
const SO_NETNS_COOKIE: libc::c_int = 71;

sockopt_impl!(
    /// `NETLINK_CAP_ACK` on a netlink socket: errors do not echo the whole request back.
    CapAck,
    SetOnly,
    SOL_NETLINK,
    NETLINK_CAP_ACK,
    bool
);
sockopt_impl!(
    /// `NETLINK_EXT_ACK` on a netlink socket: errors carry the kernel's text message.
    ExtAck,
    SetOnly,
    SOL_NETLINK,
    NETLINK_EXT_ACK,
    bool
);
sockopt_impl!(
    /// `SO_NETNS_COOKIE`: the socket's network namespace cookie (u64).
    NetnsCookie,
    GetOnly,
    libc::SOL_SOCKET,
    SO_NETNS_COOKIE,
    u64
);

/// The file descriptor of `sock`, borrowed from it (mnl's socket has no `AsFd`).
pub fn socket_fd(sock: &mnl::Socket) -> BorrowedFd<'_> {
    // SAFETY: the descriptor belongs to `sock`, which closes it only when dropped; the
    // borrow of `sock` keeps it open for the `BorrowedFd`'s lifetime.
    unsafe { BorrowedFd::borrow_raw(sock.as_raw_fd()) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::nft::Aligned;

    /// The floor list (the `const _` after [`floor`]) names every libnftnl attribute that
    /// src/host/nft/ names, so the compile-time check covers them all.
    #[test]
    fn every_named_attribute_is_checked_against_the_floor() {
        let this = include_str!("ffi.rs");
        let start = this.find("const _: () = {").expect("the floor list");
        let list = &this[start..start + this[start..].find("\n};").expect("its end")];
        let sources = [this, include_str!("decode.rs"), include_str!("encode.rs"), include_str!("mod.rs")];
        let mut named = 0;
        for src in sources {
            for (at, _) in src.match_indices("sys::NFTNL_") {
                let name: String =
                    src[at + 5..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                // NFTNL_OUTPUT_DEFAULT is snprintf's output type, not an attribute; a bare
                // `NFTNL_` is this test's own pattern.
                if name == "NFTNL_OUTPUT_DEFAULT" || name == "NFTNL_" {
                    continue;
                }
                named += 1;
                assert!(
                    list.contains(&format!(" {name},")) || list.contains(&format!(" {name})")),
                    "{name} is not checked against the floor"
                );
            }
        }
        assert!(named > 60, "only {named} attribute uses found: the scan is broken");
    }

    /// An `NFT_MSG_NEWTABLE` message for table `name` with userdata `udata`, as libnftnl
    /// builds it (exactly `nlmsg_len` bytes).
    fn table_message(name: &CStr, udata: &[u8]) -> Vec<u8> {
        let mut buf = Aligned([0u8; 1024]);
        let mut t = Table::new();
        t.set_family(libc::NFPROTO_IPV4 as u32);
        t.set_name(name);
        t.set_userdata(udata);
        let mut msg = MsgBuf::new(&mut buf.0).header(libc::NFT_MSG_NEWTABLE as u16, libc::NFPROTO_IPV4 as u16, 0, 7);
        msg.put_table(&t);
        let len = msg.len();
        buf.0[..len].to_vec()
    }

    /// A message is parsed the same wherever it sits and whatever follows it (always from
    /// a padded copy of its `nlmsg_len` bytes).
    #[test]
    fn a_message_parses_the_same_aligned_unaligned_or_unterminated() {
        let m = table_message(c"t", &[0, 2, b'x', 0xff]);
        assert_ne!(m.last(), Some(&0), "the message must end with a non-zero byte for this test");
        let read = |m: &[u8]| {
            let t = Table::parse(m).unwrap();
            (t.family(), t.name().map(CStr::to_owned), t.userdata().map(<[u8]>::to_vec))
        };
        let expected = (libc::NFPROTO_IPV4 as u32, Some(c"t".to_owned()), Some(vec![0, 2, b'x', 0xff]));
        assert_eq!(read(&m), expected);
        let mut shifted = vec![0u8];
        shifted.extend_from_slice(&m);
        assert_eq!(read(&shifted[1..]), expected);
        let mut padded = m.clone();
        padded.extend_from_slice(&[0; 4]);
        assert_eq!(read(&padded), expected);
    }

    /// Framing is checked before libnftnl sees anything.
    #[test]
    fn a_message_that_does_not_frame_is_refused() {
        let m = table_message(c"t", b"u");
        assert!(matches!(Table::parse(&m[..19]), Err(Refused::Malformed)));
        // nlmsg_len past the end of the slice, and below nlmsghdr + nfgenmsg.
        assert!(matches!(Table::parse(&m[..m.len() - 1]), Err(Refused::Malformed)));
        let mut short = m.clone();
        short[..4].copy_from_slice(&16u32.to_ne_bytes());
        assert!(matches!(Table::parse(&short), Err(Refused::Malformed)));
        // Bytes past nlmsg_len are not parsed.
        let mut longer = m.clone();
        longer.extend_from_slice(&[0xff; 9]);
        assert_eq!(Table::parse(&longer).unwrap().name(), Some(c"t"));
    }

    /// A set element attribute above NFTA_SET_ELEM_MAX never reaches libnftnl 1.2.4.
    #[test]
    fn a_libnftnl_hazard_is_refused_before_parsing() {
        let mut m = vec![0u8; 20];
        m[4..6].copy_from_slice(&(((10u16) << 8) | libc::NFT_MSG_NEWSETELEM as u16).to_ne_bytes());
        // NFTA_SET_ELEM_LIST_ELEMENTS { NFTA_LIST_ELEM { type 12, u32 } }
        m.extend_from_slice(&[20, 0, 3, 0x80, 16, 0, 1, 0x80, 8, 0, 12, 0, 0, 0, 0, 1, 4, 0, 1, 0]);
        let n = m.len() as u32;
        m[..4].copy_from_slice(&n.to_ne_bytes());
        match Set::parse_elems(&m) {
            Err(Refused::Hazard(why)) => assert!(why.contains("above NFTA_SET_ELEM_MAX"), "{why}"),
            Err(e) => panic!("{e:?}"),
            Ok(_) => panic!("parsed"),
        }
    }

    /// A netlink attribute: header, payload, zero padding to 4 bytes.
    pub(crate) fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
        let mut a = ((4 + payload.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(payload);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    /// An nf_tables message `NFT_MSG_*` `msg` (family ip) with the attributes `attrs`,
    /// `nlmsg_len` = its length.
    pub(crate) fn nft_msg(msg: i32, attrs: &[u8]) -> Vec<u8> {
        let mut m = vec![0u8; 20];
        m[4..6].copy_from_slice(&((10u16 << 8) | msg as u16).to_ne_bytes());
        m[16] = libc::NFPROTO_IPV4 as u8;
        m.extend_from_slice(attrs);
        let n = m.len() as u32;
        m[..4].copy_from_slice(&n.to_ne_bytes());
        m
    }

    /// An `NFT_MSG_NEWSET` whose `NFTA_SET_DESC` / `NFTA_SET_DESC_CONCAT` lists `fields`
    /// concatenation fields (`NFTA_LIST_ELEM { NFTA_SET_FIELD_LEN }`) of 240 bits.
    pub(crate) fn set_with_concat_fields(fields: usize) -> Vec<u8> {
        let field = attr(1 | 0x8000, &attr(1, &240u32.to_be_bytes()));
        let concat = attr(2 | 0x8000, &field.repeat(fields));
        let mut attrs = attr(1, b"t\0");
        attrs.extend(attr(2, b"s\0"));
        attrs.extend(attr(9 | 0x8000, &concat));
        nft_msg(libc::NFT_MSG_NEWSET, &attrs)
    }

    /// libnftnl 1.2.4 stores concatenation fields into a 16-entry array without a limit:
    /// 16 parse, 17 are refused before libnftnl sees them.
    #[test]
    fn a_set_with_more_than_16_concatenation_fields_is_refused() {
        assert!(Set::parse(&set_with_concat_fields(16)).is_ok());
        for n in [17, 40] {
            match Set::parse(&set_with_concat_fields(n)) {
                Err(Refused::Hazard(why)) => assert!(why.contains("concatenation fields"), "{why}"),
                Err(e) => panic!("{n}: {e:?}"),
                Ok(_) => panic!("{n}: parsed"),
            }
        }
    }

    /// An `nft_data` nest holding a verdict with the attributes `verdict`.
    pub(crate) fn verdict_data(verdict: &[u8]) -> Vec<u8> {
        attr(2 | 0x8000, verdict)
    }

    /// A rule with one `immediate` expression whose data is `data` (an `nft_data` nest's
    /// content).
    pub(crate) fn rule_with_immediate(data: &[u8]) -> Vec<u8> {
        let mut imm = attr(1, &0u32.to_be_bytes()); // NFTA_IMMEDIATE_DREG
        imm.extend(attr(2 | 0x8000, data)); // NFTA_IMMEDIATE_DATA
        let mut e = attr(1, b"immediate\0");
        e.extend(attr(2 | 0x8000, &imm));
        let mut attrs = attr(1, b"t\0");
        attrs.extend(attr(2, b"c\0"));
        attrs.extend(attr(4 | 0x8000, &attr(1 | 0x8000, &e)));
        nft_msg(libc::NFT_MSG_NEWRULE, &attrs)
    }

    /// A verdict without `NFTA_VERDICT_CODE` (libnftnl reads its uninitialised attribute
    /// table) is refused wherever libnftnl parses a verdict: a rule expression, a set
    /// element's data, an expression of a set, of a set element, of a dynset.
    #[test]
    fn a_verdict_without_a_code_is_refused_wherever_libnftnl_parses_one() {
        let no_code = verdict_data(&attr(2, b"x\0"));
        let accept = verdict_data(&attr(1, &1u32.to_be_bytes()));
        let hazard = |r: Result<(), Refused>| match r {
            Err(Refused::Hazard(why)) => assert!(why.contains("without NFTA_VERDICT_CODE"), "{why}"),
            other => panic!("{other:?}"),
        };
        assert!(Rule::parse(&rule_with_immediate(&accept)).is_ok());
        hazard(Rule::parse(&rule_with_immediate(&no_code)).map(drop));
        // An empty verdict nest.
        hazard(Rule::parse(&rule_with_immediate(&verdict_data(&[]))).map(drop));

        // A set element's data (NFTA_SET_ELEM_DATA).
        let elems = |elem: &[u8]| {
            let mut attrs = attr(1, b"t\0");
            attrs.extend(attr(2, b"s\0"));
            attrs.extend(attr(3 | 0x8000, &attr(1 | 0x8000, elem)));
            nft_msg(libc::NFT_MSG_NEWSETELEM, &attrs)
        };
        let mut elem = attr(1 | 0x8000, &attr(1, &[10, 0, 0, 1]));
        elem.extend(attr(2 | 0x8000, &no_code));
        hazard(Set::parse_elems(&elems(&elem)).map(drop));

        // An immediate expression carrying the verdict, in a set element
        // (NFTA_SET_ELEM_EXPR), a set (NFTA_SET_EXPR), and a dynset's NFTA_DYNSET_EXPR.
        let imm_expr = |data: &[u8]| {
            let mut imm = attr(1, &0u32.to_be_bytes());
            imm.extend(attr(2 | 0x8000, data));
            let mut e = attr(1, b"immediate\0");
            e.extend(attr(2 | 0x8000, &imm));
            e
        };
        let mut elem = attr(1 | 0x8000, &attr(1, &[10, 0, 0, 1]));
        elem.extend(attr(7 | 0x8000, &imm_expr(&no_code)));
        hazard(Set::parse_elems(&elems(&elem)).map(drop));
        let mut set = attr(1, b"t\0");
        set.extend(attr(2, b"s\0"));
        set.extend(attr(17 | 0x8000, &imm_expr(&no_code)));
        hazard(Set::parse(&nft_msg(libc::NFT_MSG_NEWSET, &set)).map(drop));
        let mut dynset = attr(1, b"s\0"); // NFTA_DYNSET_SET_NAME
        dynset.extend(attr(7 | 0x8000, &imm_expr(&no_code))); // NFTA_DYNSET_EXPR
        let mut e = attr(1, b"dynset\0");
        e.extend(attr(2 | 0x8000, &dynset));
        let mut rule = attr(1, b"t\0");
        rule.extend(attr(2, b"c\0"));
        rule.extend(attr(4 | 0x8000, &attr(1 | 0x8000, &e)));
        hazard(Rule::parse(&nft_msg(libc::NFT_MSG_NEWRULE, &rule)).map(drop));
    }

    /// `f` on a copy of `m` that ends right before an inaccessible page (two pages mapped,
    /// the second `PROT_NONE`): a read past the end of the slice faults.
    fn at_page_end<R>(m: &[u8], f: impl FnOnce(&[u8]) -> R) -> R {
        use nix::sys::mman::{MapFlags, ProtFlags, mmap_anonymous, mprotect, munmap};
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).unwrap().unwrap() as usize;
        assert!(m.len() <= page);
        let two = std::num::NonZeroUsize::new(2 * page).unwrap();
        // SAFETY: a new private anonymous mapping, placed by the kernel (no address given).
        let base =
            unsafe { mmap_anonymous(None, two, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_PRIVATE) }
                .unwrap();
        // SAFETY: the second page of the mapping made above, which nothing references.
        unsafe { mprotect(base.byte_add(page), page, ProtFlags::PROT_NONE) }.unwrap();
        // SAFETY: the first page is readable and writable, ours alone; the slice ends at its
        // end and lives until the munmap below.
        let r = unsafe {
            let start = base.cast::<u8>().as_ptr().add(page - m.len());
            std::ptr::copy_nonoverlapping(m.as_ptr(), start, m.len());
            f(std::slice::from_raw_parts(start, m.len()))
        };
        // SAFETY: the mapping made above; the slice handed to `f` is no longer used.
        unsafe { munmap(base, 2 * page) }.unwrap();
        r
    }

    /// An empty `NFTA_OBJ_TYPE`, `NFTA_SET_OBJ_TYPE` or `NFTA_SET_ELEM_LIST_SET_ID` as the
    /// last attribute: libnftnl reads a u32 from it unchecked, 4 bytes past the message.
    /// Parsed from a slice that ends right before an inaccessible page (4-aligned, ending
    /// with a zero byte), nothing past the slice is read.
    #[test]
    fn a_u32_libnftnl_reads_unchecked_at_the_end_is_not_read_past_the_slice() {
        let decode = super::super::decode::object;
        let mut obj = attr(1, b"t\0");
        obj.extend(attr(2, b"o\0"));
        obj.extend(attr(3, &[]));
        let m = nft_msg(libc::NFT_MSG_NEWOBJ, &obj);
        assert_eq!(m.len() % 4, 0);
        assert_eq!(m.last(), Some(&0));
        let got = at_page_end(&m, |m| {
            assert_eq!(m.as_ptr().align_offset(4), 0);
            decode(m)
        });
        assert_eq!(got, Ok(("t".to_string(), "o".to_string())));

        let mut set = attr(1, b"t\0");
        set.extend(attr(2, b"s\0"));
        set.extend(attr(15, &[]));
        let m = nft_msg(libc::NFT_MSG_NEWSET, &set);
        let got = at_page_end(&m, |m| super::super::decode::set(m).map(|(t, n, _)| (t, n)));
        assert_eq!(got, Ok(("t".to_string(), "s".to_string())));

        let mut elems = attr(1, b"t\0");
        elems.extend(attr(2, b"s\0"));
        elems.extend(attr(4, &[]));
        let m = nft_msg(libc::NFT_MSG_NEWSETELEM, &elems);
        let got = at_page_end(&m, super::super::decode::set_elements_owner);
        assert_eq!(got, Ok(("t".to_string(), "s".to_string())));
    }

    /// Bytes after `nlmsg_len` are never parsed, even when the slice goes on (4-aligned,
    /// ending with a zero byte): an unterminated string attribute ends with the message.
    #[test]
    fn an_unterminated_string_does_not_run_past_nlmsg_len() {
        let mut m = nft_msg(libc::NFT_MSG_NEWTABLE, &[7, 0, 1, 0, b'a', b'b', b'c']);
        let len = 27u32;
        m.truncate(len as usize);
        m[..4].copy_from_slice(&len.to_ne_bytes());
        m.extend_from_slice(b"XYZ\0\0");
        let mut buf = Aligned([0u8; 32]);
        buf.0.copy_from_slice(&m);
        let t = super::super::decode::table(&buf.0[..]).unwrap();
        assert_eq!(t.name, "abc");
    }

    /// A parsed object's byte bound is unknown: writing it back into a buffer refuses
    /// (panics) before libnftnl writes, instead of writing past the buffer; setters keep
    /// it unknown.
    #[test]
    fn a_parsed_object_is_never_written_past_its_buffer() {
        let m = table_message(c"t", &[7u8; 200]);
        let t = Table::parse(&m).unwrap();
        let mut big = Aligned([0xa5u8; 1024]);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            MsgBuf::new(&mut big.0[..64]).header(libc::NFT_MSG_NEWTABLE as u16, 2, 0, 1).put_table(&t);
        }));
        assert!(r.is_err(), "the put was refused");
        assert!(big.0[64..].iter().all(|b| *b == 0xa5), "libnftnl wrote past the 64-byte buffer");
        let mut t = t;
        t.set_flags(0);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            MsgBuf::new(&mut big.0).header(libc::NFT_MSG_NEWTABLE as u16, 2, 0, 1).put_table(&t);
        }));
        let e = r.unwrap_err();
        let why = e.downcast_ref::<&str>().copied().unwrap_or_default();
        assert!(why.contains("parsed from a message"), "{why:?}");
    }

    /// libnftnl 1.2.4 copies values into 64-byte arrays unchecked: longer ones are errors.
    #[test]
    fn values_longer_than_an_nft_data_are_refused() {
        assert!(Expr::cmp(1, 0, &[7; DATA_MAXLEN]).is_ok());
        assert!(Expr::cmp(1, 0, &[7; DATA_MAXLEN + 1]).err().unwrap().contains("65 bytes"));
        assert!(Expr::immediate(1, &[7; DATA_MAXLEN + 1]).is_err());
        assert!(Expr::bitwise(1, 1, 4, &[0; 4], &[0; DATA_MAXLEN + 1]).is_err());
        let mut e = SetElem::new();
        assert!(e.set_key(&[1; DATA_MAXLEN]).is_ok());
        assert!(e.set_key(&[1; DATA_MAXLEN + 1]).is_err());
    }

    /// What would not fit the buffer panics before libnftnl writes anything.
    #[test]
    #[should_panic(expected = "does not fit its 256-byte buffer")]
    fn a_payload_larger_than_its_buffer_panics_before_it_is_written() {
        let mut buf = Aligned([0u8; 256]);
        let mut t = Table::new();
        t.set_name(&std::ffi::CString::new("x".repeat(300)).unwrap());
        MsgBuf::new(&mut buf.0).header(libc::NFT_MSG_NEWTABLE as u16, 2, 0, 1).put_table(&t);
    }

    /// The byte bound of an object is never below what libnftnl writes, for the largest
    /// messages ecs-hostnet builds: 512 interval elements with flags and 16-byte keys.
    #[test]
    fn the_byte_bound_covers_what_libnftnl_writes() {
        let mut st = Set::new();
        st.set_table(c"ecs-hostnet");
        st.set_name(c"__set%d");
        st.set_family(1);
        st.set_id(1);
        for i in 0..512u32 {
            let mut e = SetElem::new();
            e.set_key(&[i as u8; 16]).unwrap();
            e.set_flags(1);
            st.add_elem(e);
        }
        let bound = st.bound;
        let mut raw = Box::new(Aligned([0u8; 65536 + 4096]));
        let mut msg = MsgBuf::new(&mut raw.0).header(libc::NFT_MSG_NEWSETELEM as u16, 1, 0, 1);
        msg.put_set_elems(&mut st);
        let written = msg.len() - NFT_HDR;
        assert!(written <= bound && bound <= nftnl::nft_nlmsg_maxsize() as usize, "{written} > {bound}");
        assert!(written > 512 * 16, "{written}");
    }
}
