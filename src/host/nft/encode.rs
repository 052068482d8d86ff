//! [`Op`] -> nf_tables netlink messages, through libnftnl (nftnl-sys) objects written
//! into an nftnl [`Batch`](nftnl::Batch).
//!
//! Every attribute is set explicitly, in the canonical form the kernel reports back on a
//! dump (see [`crate::model::ruleset::Expr`]), so what we send is what we later read.

use crate::model::ops::{Op, Placement};
use crate::model::ruleset::{BaseChain, Expr, Family, Rule};
use nftnl::nftnl_sys as sys;
use std::ffi::{CString, c_void};
use std::os::raw::c_char;

/// libnftnl udata TLV type of a rule comment (`NFTNL_UDATA_RULE_COMMENT`) and of a table
/// comment (`NFTNL_UDATA_TABLE_COMMENT`): both 0.
pub const UDATA_COMMENT: u8 = 0;

/// `NFT_USERDATA_MAXLEN`: the kernel refuses longer userdata.
pub const USERDATA_MAXLEN: usize = 256;

/// Appends a udata TLV (`struct nftnl_udata { u8 type; u8 len; u8 value[] }`).
/// Returns an error when the value does not fit in one TLV.
pub fn udata_put(buf: &mut Vec<u8>, ty: u8, value: &[u8]) -> Result<(), String> {
    let len = u8::try_from(value.len()).map_err(|_| format!("userdata value of {} bytes exceeds 255", value.len()))?;
    buf.push(ty);
    buf.push(len);
    buf.extend_from_slice(value);
    if buf.len() > USERDATA_MAXLEN {
        return Err(format!("userdata of {} bytes exceeds the kernel's {USERDATA_MAXLEN}", buf.len()));
    }
    Ok(())
}

/// A comment as a NUL-terminated udata value.
pub fn strz(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn cstring(s: &str) -> CString {
    // Names come from our own configuration, which refuses NUL bytes.
    CString::new(s).expect("no NUL in names")
}

/// Owns an `nftnl_expr` until it is handed to a rule.
fn expr(name: &std::ffi::CStr) -> *mut sys::nftnl_expr {
    let e = unsafe { sys::nftnl_expr_alloc(name.as_ptr()) };
    assert!(!e.is_null(), "libnftnl has no {name:?} expression");
    e
}

unsafe fn set_u32(e: *mut sys::nftnl_expr, attr: u32, v: u32) {
    unsafe { sys::nftnl_expr_set_u32(e, attr as u16, v) }
}

unsafe fn set_data(e: *mut sys::nftnl_expr, attr: u32, d: &[u8]) {
    unsafe { sys::nftnl_expr_set(e, attr as u16, d.as_ptr() as *const c_void, d.len() as u32) };
}

/// Builds the libnftnl expression for one [`Expr`]. `Expr::Other` is never desired and
/// has no encoding.
fn encode_expr(x: &Expr, set_ids: &mut impl Iterator<Item = u32>) -> Result<*mut sys::nftnl_expr, String> {
    unsafe {
        Ok(match x {
            Expr::Meta { key, dreg } => {
                let e = expr(c"meta");
                set_u32(e, sys::NFTNL_EXPR_META_KEY, *key);
                set_u32(e, sys::NFTNL_EXPR_META_DREG, *dreg);
                e
            }
            Expr::Payload { base, offset, len, dreg } => {
                let e = expr(c"payload");
                set_u32(e, sys::NFTNL_EXPR_PAYLOAD_BASE, *base);
                set_u32(e, sys::NFTNL_EXPR_PAYLOAD_OFFSET, *offset);
                set_u32(e, sys::NFTNL_EXPR_PAYLOAD_LEN, *len);
                set_u32(e, sys::NFTNL_EXPR_PAYLOAD_DREG, *dreg);
                e
            }
            Expr::Cmp { sreg, op, data } => {
                let e = expr(c"cmp");
                set_u32(e, sys::NFTNL_EXPR_CMP_SREG, *sreg);
                set_u32(e, sys::NFTNL_EXPR_CMP_OP, op.number());
                set_data(e, sys::NFTNL_EXPR_CMP_DATA, data);
                e
            }
            Expr::Bitwise { sreg, dreg, len, mask, xor } => {
                let e = expr(c"bitwise");
                set_u32(e, sys::NFTNL_EXPR_BITWISE_SREG, *sreg);
                set_u32(e, sys::NFTNL_EXPR_BITWISE_DREG, *dreg);
                set_u32(e, sys::NFTNL_EXPR_BITWISE_LEN, *len);
                set_data(e, sys::NFTNL_EXPR_BITWISE_MASK, mask);
                set_data(e, sys::NFTNL_EXPR_BITWISE_XOR, xor);
                e
            }
            Expr::Ct { key, dreg } => {
                let e = expr(c"ct");
                set_u32(e, sys::NFTNL_EXPR_CT_KEY, *key);
                set_u32(e, sys::NFTNL_EXPR_CT_DREG, *dreg);
                e
            }
            Expr::Counter => expr(c"counter"),
            Expr::Immediate { dreg, data } => {
                let e = expr(c"immediate");
                set_u32(e, sys::NFTNL_EXPR_IMM_DREG, *dreg);
                set_data(e, sys::NFTNL_EXPR_IMM_DATA, data);
                e
            }
            Expr::Verdict(v) => {
                let e = expr(c"immediate");
                set_u32(e, sys::NFTNL_EXPR_IMM_DREG, crate::model::ruleset::REG_VERDICT);
                set_u32(e, sys::NFTNL_EXPR_IMM_VERDICT, v.code() as u32);
                e
            }
            Expr::Nat { nat_type, family, reg_addr_min, reg_addr_max, reg_proto_min, reg_proto_max, flags } => {
                let e = expr(c"nat");
                set_u32(e, sys::NFTNL_EXPR_NAT_TYPE, *nat_type);
                set_u32(e, sys::NFTNL_EXPR_NAT_FAMILY, *family);
                for (attr, v) in [
                    (sys::NFTNL_EXPR_NAT_REG_ADDR_MIN, reg_addr_min),
                    (sys::NFTNL_EXPR_NAT_REG_ADDR_MAX, reg_addr_max),
                    (sys::NFTNL_EXPR_NAT_REG_PROTO_MIN, reg_proto_min),
                    (sys::NFTNL_EXPR_NAT_REG_PROTO_MAX, reg_proto_max),
                    (sys::NFTNL_EXPR_NAT_FLAGS, flags),
                ] {
                    if let Some(v) = v {
                        set_u32(e, attr, *v);
                    }
                }
                e
            }
            Expr::Redir { reg_proto_min, reg_proto_max, flags } => {
                let e = expr(c"redir");
                for (attr, v) in [
                    (sys::NFTNL_EXPR_REDIR_REG_PROTO_MIN, reg_proto_min),
                    (sys::NFTNL_EXPR_REDIR_REG_PROTO_MAX, reg_proto_max),
                    (sys::NFTNL_EXPR_REDIR_FLAGS, flags),
                ] {
                    if let Some(v) = v {
                        set_u32(e, attr, *v);
                    }
                }
                e
            }
            Expr::Lookup { sreg, invert, .. } => {
                let e = expr(c"lookup");
                let id = set_ids.next().ok_or("a lookup without its set in the batch")?;
                set_u32(e, sys::NFTNL_EXPR_LOOKUP_SREG, *sreg);
                sys::nftnl_expr_set_str(e, sys::NFTNL_EXPR_LOOKUP_SET as u16, ANON_SET_NAME.as_ptr());
                set_u32(e, sys::NFTNL_EXPR_LOOKUP_SET_ID, id);
                if *invert {
                    set_u32(e, sys::NFTNL_EXPR_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
                e
            }
            Expr::Other { name, .. } => return Err(format!("cannot encode foreign expression {name}")),
        })
    }
}

/// One [`Op`] as an nftnl message for [`nftnl::Batch::add`], with the batch-local ids of
/// the anonymous sets its rule's lookups use (sent just before it, see [`SetMsg`]).
pub struct OpMsg<'a>(pub &'a Op, pub &'a [u32]);

/// The name nft gives anonymous sets; the kernel replaces `%d` with a number.
pub const ANON_SET_NAME: &std::ffi::CStr = c"__set%d";
/// `NFT_LOOKUP_F_INV`.
pub const NFT_LOOKUP_F_INV: u32 = 1;
/// `NFT_SET_ANONYMOUS | NFT_SET_CONSTANT`, plus `NFT_SET_INTERVAL` for interval sets.
const SET_FLAGS_ANON_CONSTANT: u32 = 1 | 2;
const SET_FLAG_INTERVAL: u32 = 4;
/// `NFT_SET_ELEM_INTERVAL_END`.
pub const SET_ELEM_INTERVAL_END: u32 = 1;

/// The set userdata nft 1.0 writes for `iifname { ... }` (libnftnl udata TLVs: key byte
/// order host, merge adjacent elements, key typeof `meta iifname`), so `nft list` prints
/// our sets exactly as it prints its own.
const IFNAME_SET_UDATA: [u8; 28] = [
    0x00, 0x04, 0x01, 0x00, 0x00, 0x00, // NFTNL_UDATA_SET_KEYBYTEORDER = 1
    0x02, 0x04, 0x01, 0x00, 0x00, 0x00, // NFTNL_UDATA_SET_MERGE_ELEMENTS = 1
    0x03, 0x0e, 0x00, 0x04, 0x09, 0x00, 0x00, 0x00, 0x01, 0x06, 0x00, 0x04, 0x06, 0x00, 0x00,
    0x00, // NFTNL_UDATA_SET_KEY_TYPEOF: meta, key iifname
];

/// An anonymous set for a rule about to be added (`NFT_MSG_NEWSET`), or its elements
/// (`NFT_MSG_NEWSETELEM`), tied to the rule's lookup by the batch-local `id`.
pub struct SetMsg<'a> {
    /// Table family.
    pub family: Family,
    /// Table name.
    pub table: &'a str,
    /// `NFTA_SET_ID`, unique within the batch.
    pub id: u32,
    /// The content.
    pub set: &'a crate::model::set::AnonSet,
    /// `None`: the set itself; `Some(range)`: these of its elements.
    pub elements: Option<std::ops::Range<usize>>,
}

/// Elements per `NFT_MSG_NEWSETELEM` message (16-byte keys: well under the 64 KiB an
/// attribute nest can hold).
pub const SET_ELEMS_PER_MESSAGE: usize = 512;

unsafe impl nftnl::NlMsg for SetMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: nftnl::MsgType) {
        unsafe {
            let st = sys::nftnl_set_alloc();
            let ct = cstring(self.table);
            sys::nftnl_set_set_str(st, sys::NFTNL_SET_TABLE as u16, ct.as_ptr());
            sys::nftnl_set_set_str(st, sys::NFTNL_SET_NAME as u16, ANON_SET_NAME.as_ptr());
            sys::nftnl_set_set_u32(st, sys::NFTNL_SET_FAMILY as u16, self.family.nfproto() as u32);
            sys::nftnl_set_set_u32(st, sys::NFTNL_SET_ID as u16, self.id);
            if let Some(range) = &self.elements {
                for el in &self.set.elements[range.clone()] {
                    let e = sys::nftnl_set_elem_alloc();
                    sys::nftnl_set_elem_set(
                        e,
                        sys::NFTNL_SET_ELEM_KEY as u16,
                        el.key.as_ptr() as *const c_void,
                        el.key.len() as u32,
                    );
                    if el.interval_end {
                        sys::nftnl_set_elem_set_u32(e, sys::NFTNL_SET_ELEM_FLAGS as u16, SET_ELEM_INTERVAL_END);
                    }
                    sys::nftnl_set_elem_add(st, e);
                }
                let nlh = header(buf, libc::NFT_MSG_NEWSETELEM, self.family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
                sys::nftnl_set_elems_nlmsg_build_payload(nlh, st);
            } else {
                let flags = SET_FLAGS_ANON_CONSTANT | if self.set.interval { SET_FLAG_INTERVAL } else { 0 };
                sys::nftnl_set_set_u32(st, sys::NFTNL_SET_FLAGS as u16, flags);
                sys::nftnl_set_set_u32(st, sys::NFTNL_SET_KEY_TYPE as u16, self.set.key_type);
                sys::nftnl_set_set_u32(st, sys::NFTNL_SET_KEY_LEN as u16, self.set.key_len);
                sys::nftnl_set_set_u32(st, sys::NFTNL_SET_DESC_SIZE as u16, self.set.elements.len() as u32);
                if self.set.key_type == crate::model::set::TYPE_IFNAME {
                    sys::nftnl_set_set_data(
                        st,
                        sys::NFTNL_SET_USERDATA as u16,
                        IFNAME_SET_UDATA.as_ptr() as *const c_void,
                        IFNAME_SET_UDATA.len() as u32,
                    );
                }
                let nlh = header(buf, libc::NFT_MSG_NEWSET, self.family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
                sys::nftnl_set_nlmsg_build_payload(nlh, st);
            }
            sys::nftnl_set_free(st);
        }
    }
}

unsafe fn header(buf: *mut c_void, msg: i32, family: Family, flags: i32, seq: u32) -> *mut libc::nlmsghdr {
    unsafe { sys::nftnl_nlmsg_build_hdr(buf as *mut c_char, msg as u16, family.nfproto() as u16, flags as u16, seq) }
}

/// A table's userdata: the comment TLV and, when not empty, the route_localnet record
/// TLV. Errors when it exceeds what the kernel accepts.
pub fn table_udata(comment: &str, record: &crate::model::record::Record) -> Result<Vec<u8>, String> {
    let mut u = Vec::new();
    udata_put(&mut u, UDATA_COMMENT, &strz(comment))?;
    if !record.is_empty() {
        udata_put(&mut u, crate::model::record::UDATA_TYPE, &crate::model::record::encode(record))
            .map_err(|e| format!("cannot record the route_localnet values found ({e}); list fewer interfaces in route_localnet.enable"))?;
    }
    Ok(u)
}

unsafe fn write_table(buf: *mut c_void, seq: u32, op: &Op) {
    let (family, name, msg, flags, udata) = match op {
        Op::AddTable { family, name, comment, record } => {
            // Checked before the batch is built (see `check_encodable`).
            let u = table_udata(comment, record).expect("table userdata checked before batching");
            (family, name, libc::NFT_MSG_NEWTABLE, libc::NLM_F_CREATE, Some(u))
        }
        Op::DelTable { family, name } => (family, name, libc::NFT_MSG_DELTABLE, 0, None),
        _ => unreachable!(),
    };
    unsafe {
        let t = sys::nftnl_table_alloc();
        let cname = cstring(name);
        sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FAMILY as u16, family.nfproto() as u32);
        sys::nftnl_table_set_str(t, sys::NFTNL_TABLE_NAME as u16, cname.as_ptr());
        if let Some(u) = &udata {
            sys::nftnl_table_set_u32(t, sys::NFTNL_TABLE_FLAGS as u16, 0);
            sys::nftnl_table_set_data(t, sys::NFTNL_TABLE_USERDATA as u16, u.as_ptr() as *const c_void, u.len() as u32);
        }
        let nlh = header(buf, msg, *family, flags | libc::NLM_F_ACK, seq);
        sys::nftnl_table_nlmsg_build_payload(nlh, t);
        sys::nftnl_table_free(t);
    }
}

unsafe fn write_chain(buf: *mut c_void, seq: u32, family: Family, table: &str, name: &str, base: &Option<BaseChain>) {
    unsafe {
        let c = sys::nftnl_chain_alloc();
        let (ct, cn) = (cstring(table), cstring(name));
        sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_FAMILY as u16, family.nfproto() as u32);
        sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, ct.as_ptr());
        sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, cn.as_ptr());
        let ty;
        if let Some(b) = base {
            ty = cstring(b.chain_type.name());
            sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_HOOKNUM as u16, b.hook.number());
            sys::nftnl_chain_set_s32(c, sys::NFTNL_CHAIN_PRIO as u16, b.priority);
            sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TYPE as u16, ty.as_ptr());
            let policy = if b.policy_accept { libc::NF_ACCEPT } else { libc::NF_DROP };
            sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_POLICY as u16, policy as u32);
        }
        let nlh = header(buf, libc::NFT_MSG_NEWCHAIN, family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
        sys::nftnl_chain_nlmsg_build_payload(nlh, c);
        sys::nftnl_chain_free(c);
    }
}

/// Builds the rule object (shared by the batch and the tests' round trip).
pub(crate) fn rule_object(
    family: Family,
    table: &str,
    chain: &str,
    rule: &Rule,
    set_ids: &[u32],
) -> Result<*mut sys::nftnl_rule, String> {
    let mut set_ids = set_ids.iter().copied();
    unsafe {
        let r = sys::nftnl_rule_alloc();
        let (ct, cc) = (cstring(table), cstring(chain));
        sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, family.nfproto() as u32);
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, ct.as_ptr());
        sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, cc.as_ptr());
        for x in &rule.exprs {
            match encode_expr(x, &mut set_ids) {
                Ok(e) => sys::nftnl_rule_add_expr(r, e),
                Err(err) => {
                    sys::nftnl_rule_free(r);
                    return Err(err);
                }
            }
        }
        let mut u = Vec::new();
        if let Err(e) = udata_put(&mut u, UDATA_COMMENT, &strz(&rule.id)) {
            sys::nftnl_rule_free(r);
            return Err(e);
        }
        sys::nftnl_rule_set_data(r, sys::NFTNL_RULE_USERDATA as u16, u.as_ptr() as *const c_void, u.len() as u32);
        Ok(r)
    }
}

unsafe impl nftnl::NlMsg for OpMsg<'_> {
    unsafe fn write(&self, buf: *mut c_void, seq: u32, _: nftnl::MsgType) {
        let op = self.0;
        unsafe {
            match op {
                Op::AddTable { .. } | Op::DelTable { .. } => write_table(buf, seq, op),
                Op::AddChain { family, table, name, base } => write_chain(buf, seq, *family, table, name, base),
                Op::DelChain { family, table, name } => {
                    let c = sys::nftnl_chain_alloc();
                    let (ct, cn) = (cstring(table), cstring(name));
                    sys::nftnl_chain_set_u32(c, sys::NFTNL_CHAIN_FAMILY as u16, family.nfproto() as u32);
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_TABLE as u16, ct.as_ptr());
                    sys::nftnl_chain_set_str(c, sys::NFTNL_CHAIN_NAME as u16, cn.as_ptr());
                    // Without NLM_F_NONREC the kernel deletes the chain's rules with it.
                    let nlh = header(buf, libc::NFT_MSG_DELCHAIN, *family, libc::NLM_F_ACK, seq);
                    sys::nftnl_chain_nlmsg_build_payload(nlh, c);
                    sys::nftnl_chain_free(c);
                }
                Op::DelRule { family, table, chain, handle } => {
                    let r = sys::nftnl_rule_alloc();
                    let (ct, cc) = (cstring(table), cstring(chain));
                    sys::nftnl_rule_set_u32(r, sys::NFTNL_RULE_FAMILY as u16, family.nfproto() as u32);
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_TABLE as u16, ct.as_ptr());
                    sys::nftnl_rule_set_str(r, sys::NFTNL_RULE_CHAIN as u16, cc.as_ptr());
                    sys::nftnl_rule_set_u64(r, sys::NFTNL_RULE_HANDLE as u16, *handle);
                    let nlh = header(buf, libc::NFT_MSG_DELRULE, *family, libc::NLM_F_ACK, seq);
                    sys::nftnl_rule_nlmsg_build_payload(nlh, r);
                    sys::nftnl_rule_free(r);
                }
                Op::AddRule { family, table, chain, rule, placement } => {
                    // Checked before the batch is built (see `check_encodable`).
                    let r = rule_object(*family, table, chain, rule, self.1).expect("rule checked before batching");
                    let mut flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
                    match placement {
                        Placement::Append => flags |= libc::NLM_F_APPEND,
                        // Without NLM_F_APPEND the kernel inserts before the rule at POSITION.
                        Placement::Before(h) => sys::nftnl_rule_set_u64(r, sys::NFTNL_RULE_POSITION as u16, *h),
                    }
                    let nlh = header(buf, libc::NFT_MSG_NEWRULE, *family, flags, seq);
                    sys::nftnl_rule_nlmsg_build_payload(nlh, r);
                    sys::nftnl_rule_free(r);
                }
            }
        }
    }
}

/// Fails before anything is sent if an op cannot be encoded (a foreign expression or an
/// oversized comment in a desired rule would be a bug, reported instead of panicking).
pub fn check_encodable(ops: &[Op]) -> Result<(), String> {
    for op in ops {
        match op {
            Op::AddRule { family, table, chain, rule, .. } => {
                let ids: Vec<u32> = (1..=rule.exprs.len() as u32).collect();
                let r = rule_object(*family, table, chain, rule, &ids)?;
                unsafe { sys::nftnl_rule_free(r) };
            }
            Op::AddTable { comment, record, .. } => {
                table_udata(comment, record)?;
            }
            _ => {}
        }
    }
    Ok(())
}
