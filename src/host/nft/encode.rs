//! [`Op`] -> nf_tables netlink messages, through libnftnl (nftnl-sys) objects written
//! into an nftnl [`Batch`](nftnl::Batch).
//!
//! Every attribute is set explicitly, in the canonical form the kernel reports back on a
//! dump (see [`crate::model::ruleset::Expr`]), so what we send is what we later read.

use super::ffi::{self, Msg, MsgBuf};
use crate::model::ops::{Op, Placement};
use crate::model::ruleset::{BaseChain, Expr, Family, Rule};
use std::ffi::CString;

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

/// Builds the libnftnl expression for one [`Expr`], taking the batch-local id of a lookup's
/// set from `set_ids`. Errors: `Expr::Other` (never desired, no encoding), a lookup without
/// a set id left, a value longer than [`ffi::DATA_MAXLEN`].
fn encode_expr(x: &Expr, set_ids: &mut impl Iterator<Item = u32>) -> Result<ffi::Expr, String> {
    Ok(match x {
        Expr::Meta { key, dreg } => ffi::Expr::meta(*key, *dreg),
        Expr::Payload { base, offset, len, dreg } => ffi::Expr::payload(*base, *offset, *len, *dreg),
        Expr::Cmp { sreg, op, data } => ffi::Expr::cmp(*sreg, op.number(), data)?,
        Expr::Bitwise { sreg, dreg, len, mask, xor } => ffi::Expr::bitwise(*sreg, *dreg, *len, mask, xor)?,
        Expr::Ct { key, dreg } => ffi::Expr::ct(*key, *dreg),
        Expr::Counter => ffi::Expr::counter(),
        Expr::Immediate { dreg, data } => ffi::Expr::immediate(*dreg, data)?,
        Expr::Verdict(v) => ffi::Expr::verdict(crate::model::ruleset::REG_VERDICT, v.code() as u32),
        Expr::Nat { nat_type, family, reg_addr_min, reg_addr_max, reg_proto_min, reg_proto_max, flags } => {
            ffi::Expr::nat(*nat_type, *family, [*reg_addr_min, *reg_addr_max, *reg_proto_min, *reg_proto_max], *flags)
        }
        Expr::Redir { reg_proto_min, reg_proto_max, flags } => ffi::Expr::redir(*reg_proto_min, *reg_proto_max, *flags),
        Expr::Lookup { sreg, invert, .. } => {
            let id = set_ids.next().ok_or("a lookup without its set in the batch")?;
            ffi::Expr::lookup(*sreg, ANON_SET_NAME, id, invert.then_some(NFT_LOOKUP_F_INV))
        }
        Expr::Limit { rate, unit, burst, limit_type, flags } => {
            ffi::Expr::limit(*rate, *unit, *burst, *limit_type, *flags)
        }
        Expr::Log { prefix, group, snaplen } => {
            // The kernel keeps at most 127 bytes of a prefix (NF_LOG_PREFIXLEN 128 with its NUL).
            if prefix.len() > 127 {
                return Err(format!("log prefix of {} bytes exceeds the kernel's 127", prefix.len()));
            }
            let p = CString::new(prefix.as_str()).map_err(|_| "a NUL byte in a log prefix".to_string())?;
            ffi::Expr::log(&p, *group, *snaplen)
        }
        Expr::Other { name, .. } => return Err(format!("cannot encode foreign expression {name}")),
    })
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

impl ffi::WriteMsg for SetMsg<'_> {
    /// The set (`NFT_MSG_NEWSET`: flags, key type and length, size, userdata of an
    /// interface-name set) or its elements in `elements` (`NFT_MSG_NEWSETELEM`), as one
    /// message into `out` with sequence number `seq` (nftnl's [`NlMsg`](nftnl::NlMsg), in
    /// [`ffi`]). Panics on an element key longer than [`ffi::DATA_MAXLEN`], which
    /// [`check_encodable`] refuses first.
    fn write_msg(&self, out: MsgBuf<'_>, seq: u32) {
        let mut st = ffi::Set::new();
        let ct = cstring(self.table);
        st.set_table(&ct);
        st.set_name(ANON_SET_NAME);
        st.set_family(self.family.nfproto() as u32);
        st.set_id(self.id);
        if let Some(range) = &self.elements {
            for el in &self.set.elements[range.clone()] {
                let mut e = ffi::SetElem::new();
                e.set_key(&el.key).expect("set element keys checked before batching");
                if el.interval_end {
                    e.set_flags(SET_ELEM_INTERVAL_END);
                }
                st.add_elem(e);
            }
            let mut msg = header(out, libc::NFT_MSG_NEWSETELEM, self.family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
            msg.put_set_elems(&mut st);
        } else {
            let flags = SET_FLAGS_ANON_CONSTANT | if self.set.interval { SET_FLAG_INTERVAL } else { 0 };
            st.set_flags(flags);
            st.set_key_type(self.set.key_type);
            st.set_key_len(self.set.key_len);
            st.set_desc_size(self.set.elements.len() as u32);
            if self.set.key_type == crate::model::set::TYPE_IFNAME {
                st.set_userdata(&IFNAME_SET_UDATA);
            }
            let mut msg = header(out, libc::NFT_MSG_NEWSET, self.family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq);
            msg.put_set(&mut st);
        }
    }
}

fn header(out: MsgBuf<'_>, msg: i32, family: Family, flags: i32, seq: u32) -> Msg<'_> {
    out.header(msg as u16, family.nfproto() as u16, flags as u16, seq)
}

/// A table's userdata: the comment TLV and, when not empty, the route_localnet record
/// TLV. Errors when it exceeds what the kernel accepts.
pub fn table_udata(comment: &str, record: &crate::model::record::Record) -> Result<Vec<u8>, String> {
    let mut u = Vec::new();
    udata_put(&mut u, UDATA_COMMENT, &strz(comment))?;
    if !record.is_empty() {
        udata_put(&mut u, crate::model::record::UDATA_TYPE, &crate::model::record::encode(record)).map_err(|e| {
            format!(
                "cannot record the route_localnet values found ({e}); list fewer interfaces in route_localnet.enable"
            )
        })?;
    }
    Ok(u)
}

fn write_table(out: MsgBuf<'_>, seq: u32, op: &Op) {
    let (family, name, msg, flags, udata) = match op {
        Op::AddTable { family, name, comment, record } => {
            // Checked before the batch is built (see `check_encodable`).
            let u = table_udata(comment, record).expect("table userdata checked before batching");
            (family, name, libc::NFT_MSG_NEWTABLE, libc::NLM_F_CREATE, Some(u))
        }
        Op::DelTable { family, name } => (family, name, libc::NFT_MSG_DELTABLE, 0, None),
        _ => unreachable!(),
    };
    let mut t = ffi::Table::new();
    let cname = cstring(name);
    t.set_family(family.nfproto() as u32);
    t.set_name(&cname);
    if let Some(u) = &udata {
        t.set_flags(0);
        t.set_userdata(u);
    }
    header(out, msg, *family, flags | libc::NLM_F_ACK, seq).put_table(&t);
}

/// A chain with its family, table and name, and for a base chain its hook, priority, type
/// and policy.
fn chain_object(family: Family, table: &str, name: &str, base: &Option<BaseChain>) -> ffi::Chain {
    let mut c = ffi::Chain::new();
    let (ct, cn) = (cstring(table), cstring(name));
    c.set_family(family.nfproto() as u32);
    c.set_table(&ct);
    c.set_name(&cn);
    if let Some(b) = base {
        c.set_hooknum(b.hook.number());
        c.set_prio(b.priority);
        c.set_type(&cstring(b.chain_type.name()));
        let policy = if b.policy_accept { libc::NF_ACCEPT } else { libc::NF_DROP };
        c.set_policy(policy as u32);
    }
    c
}

/// A rule with its family, table and chain (and nothing else yet).
fn rule_base(family: Family, table: &str, chain: &str) -> ffi::Rule {
    let mut r = ffi::Rule::new();
    let (ct, cc) = (cstring(table), cstring(chain));
    r.set_family(family.nfproto() as u32);
    r.set_table(&ct);
    r.set_chain(&cc);
    r
}

/// Builds the rule object (shared by the batch and the tests' round trip): family, table,
/// chain, the expressions, the comment (`rule.id`) as userdata; a lookup's set is tied by
/// the next id of `set_ids`. Errors: an expression [`encode_expr`] cannot encode, a
/// comment too long for the userdata.
pub(crate) fn rule_object(
    family: Family,
    table: &str,
    chain: &str,
    rule: &Rule,
    set_ids: &[u32],
) -> Result<ffi::Rule, String> {
    let mut set_ids = set_ids.iter().copied();
    let mut r = rule_base(family, table, chain);
    for x in &rule.exprs {
        r.add_expr(encode_expr(x, &mut set_ids)?);
    }
    let mut u = Vec::new();
    udata_put(&mut u, UDATA_COMMENT, &strz(&rule.id))?;
    r.set_userdata(&u);
    Ok(r)
}

impl ffi::WriteMsg for OpMsg<'_> {
    /// The op as one message into `out` with sequence number `seq` (nftnl's
    /// [`NlMsg`](nftnl::NlMsg), in [`ffi`]). Panics on an op [`check_encodable`] refuses.
    fn write_msg(&self, out: MsgBuf<'_>, seq: u32) {
        let op = self.0;
        match op {
            Op::AddTable { .. } | Op::DelTable { .. } => write_table(out, seq, op),
            Op::AddChain { family, table, name, base } => {
                let c = chain_object(*family, table, name, base);
                header(out, libc::NFT_MSG_NEWCHAIN, *family, libc::NLM_F_CREATE | libc::NLM_F_ACK, seq).put_chain(&c);
            }
            Op::DelChain { family, table, name } => {
                let c = chain_object(*family, table, name, &None);
                // Without NLM_F_NONREC the kernel deletes the chain's rules with it.
                header(out, libc::NFT_MSG_DELCHAIN, *family, libc::NLM_F_ACK, seq).put_chain(&c);
            }
            Op::DelRule { family, table, chain, handle } => {
                let mut r = rule_base(*family, table, chain);
                r.set_handle(*handle);
                header(out, libc::NFT_MSG_DELRULE, *family, libc::NLM_F_ACK, seq).put_rule(&mut r);
            }
            Op::AddRule { family, table, chain, rule, placement } => {
                // Checked before the batch is built (see `check_encodable`).
                let mut r = rule_object(*family, table, chain, rule, self.1).expect("rule checked before batching");
                let mut flags = libc::NLM_F_CREATE | libc::NLM_F_EXCL | libc::NLM_F_ACK;
                match placement {
                    Placement::Append => flags |= libc::NLM_F_APPEND,
                    // Without NLM_F_APPEND the kernel inserts before the rule at POSITION.
                    Placement::Before(h) => r.set_position(*h),
                }
                header(out, libc::NFT_MSG_NEWRULE, *family, flags, seq).put_rule(&mut r);
            }
        }
    }
}

/// Fails before anything is sent if an op cannot be encoded (a foreign expression, an
/// oversized comment, or a value or set element key longer than the 64 bytes of
/// `NFT_DATA_VALUE_MAXLEN` in a desired rule would be a bug, reported instead of panicking).
pub fn check_encodable(ops: &[Op]) -> Result<(), String> {
    for op in ops {
        match op {
            Op::AddRule { family, table, chain, rule, .. } => {
                let ids: Vec<u32> = (1..=rule.exprs.len() as u32).collect();
                rule_object(*family, table, chain, rule, &ids)?;
                for x in &rule.exprs {
                    if let Expr::Lookup { set, .. } = x
                        && let Some(el) = set.elements.iter().find(|el| el.key.len() > ffi::DATA_MAXLEN)
                    {
                        return Err(format!(
                            "set element key of {} bytes exceeds nf_tables' {}",
                            el.key.len(),
                            ffi::DATA_MAXLEN
                        ));
                    }
                }
            }
            Op::AddTable { comment, record, .. } => {
                table_udata(comment, record)?;
            }
            _ => {}
        }
    }
    Ok(())
}
