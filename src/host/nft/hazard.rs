//! Messages libnftnl 1.2.4 must never see: the memory-safety defects of its parsers that a
//! malformed nf_tables message reaches. [`ffi`](super::ffi) refuses such a message before
//! handing it to libnftnl, and [`decode_dump`](super::decode_dump) names the defect in its
//! error. Plain byte walking, no allocation: it runs on every message libnftnl parses.

/// The attributes of a netlink attribute stream as `(type, payload)`, the type without its
/// `NLA_F_NESTED` / `NLA_F_NET_BYTEORDER` bits, up to the first one whose header or length
/// does not fit (where libmnl's `mnl_attr_for_each` stops too).
#[derive(Clone)]
struct NlAttrs<'a>(&'a [u8]);

impl<'a> Iterator for NlAttrs<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<(u16, &'a [u8])> {
        let b = self.0;
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            self.0 = &[];
            return None;
        }
        self.0 = &b[len.next_multiple_of(4).min(b.len())..];
        Some((ty, &b[4..len]))
    }
}

fn nl_attrs(b: &[u8]) -> NlAttrs<'_> {
    NlAttrs(b)
}

/// Why libnftnl 1.2.4 would corrupt memory or crash parsing the nf_tables message `m`
/// (whole message: `nlmsghdr`, `nfgenmsg`, attributes), or `None`. The kernel never sends
/// such messages; a fuzzer does. These defects of libnftnl are checked:
///
/// * an expression nest without `NFTA_EXPR_NAME` (in a rule's `NFTA_RULE_EXPRESSIONS`, a
///   set's `NFTA_SET_EXPR` / `NFTA_SET_EXPRESSIONS`, a set element's `NFTA_SET_ELEM_EXPR`
///   / `NFTA_SET_ELEM_EXPRESSIONS`, a `dynset` expression's `NFTA_DYNSET_EXPR` /
///   `NFTA_DYNSET_EXPRESSIONS`): `nftnl_expr_parse` passes `mnl_attr_get_str(NULL)` (address
///   4) to `nftnl_expr_alloc`, whose `strcmp` faults;
/// * a set element attribute of type 12 or more (above `NFTA_SET_ELEM_MAX`, 11):
///   `nftnl_set_elem_parse_attr_cb` checks the type against `NFTA_SET_MAX` and stores the
///   attribute at `tb[type]` of an `NFTA_SET_ELEM_MAX + 1` stack array, past its end (a
///   stack buffer overflow).
///
/// * a verdict (`NFTA_DATA_VERDICT` in any `nft_data` nest libnftnl parses: an
///   expression's data attribute ([`NFT_DATA_ATTRS`]) of expressions at any depth (a
///   rule's, a set's, a set element's, a `dynset`'s), a set element's key or data) without `NFTA_VERDICT_CODE`, or with code `NFT_JUMP` or
///   `NFT_GOTO` and no `NFTA_VERDICT_CHAIN`: `nftnl_parse_verdict` leaves its attribute
///   table uninitialised, then reads the code through (or `strdup`s) whatever pointer the
///   stack held there;
/// * a set description (`NFTA_SET_DESC`) whose `NFTA_SET_DESC_CONCAT` lists more than 16
///   (`NFT_REG32_COUNT`) fields (`NFTA_SET_FIELD_LEN` in `NFTA_LIST_ELEM`):
///   `nftnl_set_desc_concat_field_parse_attr_cb` stores each into
///   `desc.field_len[desc.field_count++]`, a 16-byte array, without a limit (a heap buffer
///   overflow: the 17th overwrites `field_count` itself, the next ones land past it).
///   Set element messages carry no set description.
///
/// libnftnl also ends the process with `exit(1)` ("nf_tables kernel ABI is broken") when an
/// attribute it knows fails its type check (a u32 that is not 4 bytes, ...): that is its
/// design, not checked here. `m` shorter than 20 bytes, or with an `nlmsg_len` past its
/// end, is read as far as it goes.
pub fn libnftnl_hazard(m: &[u8]) -> Option<String> {
    if m.len() < 20 {
        return None;
    }
    let len = (u32::from_ne_bytes([m[0], m[1], m[2], m[3]]) as usize).clamp(20, m.len());
    let attrs = nl_attrs(&m[20..len]);
    let msg = u16::from_ne_bytes([m[4], m[5]]) & 0xff;
    let nested = |ty: u16| attrs.clone().filter(move |(t, _)| *t == ty).map(|(_, v)| v);
    match msg as i32 {
        libc::NFT_MSG_NEWRULE => nested(4).find_map(|v| expr_list_hazard(v, "rule expression")),
        libc::NFT_MSG_NEWSET => nested(9)
            .find_map(concat_hazard)
            .or_else(|| nested(17).find_map(|v| expr_hazard(v, "set expression")))
            .or_else(|| nested(18).find_map(|v| expr_list_hazard(v, "set expression"))),
        libc::NFT_MSG_NEWSETELEM => nested(3).find_map(|list| {
            // As nftnl_set_elems_parse: anything but NFTA_LIST_ELEM ends the parse.
            nl_attrs(list).take_while(|(t, _)| *t == 1).find_map(|(_, elem)| {
                if let Some((t, _)) = nl_attrs(elem).find(|(t, _)| *t > 11) {
                    return Some(format!(
                        "set element attribute type {t} (above NFTA_SET_ELEM_MAX): libnftnl 1.2.4 writes past a stack array"
                    ));
                }
                nl_attrs(elem).find_map(|(t, v)| match t {
                    // NFTA_SET_ELEM_KEY, _DATA, _KEY_END: nft_data nests
                    1 | 2 | 10 => verdict_hazard(v, "set element"),
                    7 => expr_hazard(v, "set element expression"),
                    11 => expr_list_hazard(v, "set element expression"),
                    _ => None,
                })
            })
        }),
        _ => None,
    }
}

/// `NFT_REG32_COUNT`: the entries of libnftnl 1.2.4's `desc.field_len` array.
const CONCAT_FIELDS_MAX: usize = 16;

/// [`libnftnl_hazard`] for one `NFTA_SET_DESC` nest: the `NFTA_SET_FIELD_LEN` attributes
/// libnftnl stores (every one in every `NFTA_LIST_ELEM` of every `NFTA_SET_DESC_CONCAT`:
/// its callbacks skip other types and never reset the count) are at most 16.
fn concat_hazard(desc: &[u8]) -> Option<String> {
    let fields = nl_attrs(desc)
        .filter(|(t, _)| *t == 2)
        .flat_map(|(_, concat)| nl_attrs(concat).filter(|(t, _)| *t == 1))
        .flat_map(|(_, elem)| nl_attrs(elem).filter(|(t, _)| *t == 1))
        .count();
    (fields > CONCAT_FIELDS_MAX).then(|| {
        format!(
            "set description with {fields} concatenation fields (more than {CONCAT_FIELDS_MAX}): libnftnl 1.2.4 writes past its field_len array"
        )
    })
}

/// [`libnftnl_hazard`] for a nest that libnftnl may parse as an `nft_data`: a verdict
/// without `NFTA_VERDICT_CODE`, or a jump or goto verdict (`NFT_JUMP` -3, `NFT_GOTO` -4 in
/// `NFTA_VERDICT_CODE`) without `NFTA_VERDICT_CHAIN`, read as libmnl reads it (up to the
/// first malformed attribute; of a repeated attribute, the last one counts). A code that is
/// not 4 bytes fails libnftnl's type check (it exits) before anything is read.
fn verdict_hazard(data: &[u8], what: &str) -> Option<String> {
    let verdict = nl_attrs(data).filter(|(t, _)| *t == 2).last()?.1;
    let Some((_, code)) = nl_attrs(verdict).filter(|(t, _)| *t == 1).last() else {
        return Some(format!(
            "{what}: a verdict without NFTA_VERDICT_CODE: libnftnl 1.2.4 reads it through an uninitialised pointer"
        ));
    };
    let code = <[u8; 4]>::try_from(code).ok()?;
    let code = i32::from_be_bytes(code);
    let has_chain = nl_attrs(verdict).any(|(t, _)| t == 2);
    ((code == -3 || code == -4) && !has_chain).then(|| {
        format!(
            "{what}: a jump/goto verdict without NFTA_VERDICT_CHAIN: libnftnl 1.2.4 strdup()s an uninitialised pointer"
        )
    })
}

/// [`libnftnl_hazard`] for a list of `NFTA_LIST_ELEM` expression nests (parsing stops at the
/// first other attribute).
fn expr_list_hazard(list: &[u8], what: &str) -> Option<String> {
    nl_attrs(list).take_while(|(t, _)| *t == 1).find_map(|(_, e)| expr_hazard(e, what))
}

/// The attributes of each expression that libnftnl 1.2.4 parses as an `nft_data`
/// (`nftnl_parse_data`, which may hold a verdict): immediate's `NFTA_IMMEDIATE_DATA`,
/// cmp's `NFTA_CMP_DATA`, bitwise's `NFTA_BITWISE_MASK`, `_XOR`, `_DATA`, range's
/// `NFTA_RANGE_FROM_DATA`, `_TO_DATA`. Other expressions' attributes are never read as one.
const NFT_DATA_ATTRS: &[(&[u8], &[u16])] =
    &[(b"immediate", &[2]), (b"cmp", &[3]), (b"bitwise", &[4, 5, 7]), (b"range", &[3, 4])];

/// Whether libnftnl may read the `NFTA_EXPR_NAME` payload `name` as `want`: `strcmp` reads
/// up to the first NUL, past the attribute when it has none (then only a prefix is known).
fn name_may_be(name: &[u8], want: &[u8]) -> bool {
    match name.iter().position(|b| *b == 0) {
        Some(nul) => &name[..nul] == want,
        None => want.starts_with(name),
    }
}

/// [`libnftnl_hazard`] for one expression nest (`NFTA_EXPR_NAME`, `NFTA_EXPR_DATA`): its
/// name, its data attributes that libnftnl parses as an `nft_data` ([`NFT_DATA_ATTRS`]: a
/// verdict), and the expressions a `dynset` carries (`NFTA_DYNSET_EXPR`, `_EXPRESSIONS`),
/// which libnftnl parses as expressions of their own.
fn expr_hazard(e: &[u8], what: &str) -> Option<String> {
    let Some((_, name)) = nl_attrs(e).filter(|(t, _)| *t == 1).last() else {
        return Some(format!("{what} without NFTA_EXPR_NAME: libnftnl 1.2.4 dereferences a NULL name"));
    };
    let dynset = name_may_be(name, b"dynset");
    let is_data = |t: u16| NFT_DATA_ATTRS.iter().any(|(n, attrs)| attrs.contains(&t) && name_may_be(name, n));
    let data = nl_attrs(e).filter(|(t, _)| *t == 2).flat_map(|(_, d)| nl_attrs(d));
    for (t, v) in data {
        let found = match t {
            7 if dynset => expr_hazard(v, "dynset expression"),
            10 if dynset => expr_list_hazard(v, "dynset expression"),
            t if is_data(t) => verdict_hazard(v, what),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An expression's attribute is checked as a verdict only where libnftnl parses one:
    /// a nest of another expression that looks like a verdict without a code is not
    /// refused; a name libnftnl may read past its attribute counts as any it may be.
    #[test]
    fn verdicts_are_checked_only_where_libnftnl_parses_them() {
        let attr = |ty: u16, p: &[u8]| {
            let mut a = ((4 + p.len()) as u16).to_ne_bytes().to_vec();
            a.extend_from_slice(&ty.to_ne_bytes());
            a.extend_from_slice(p);
            a.resize(a.len().next_multiple_of(4), 0);
            a
        };
        let no_code = attr(2, &attr(2, b"x\0"));
        let expr = |name: &[u8], ty: u16| {
            let mut e = attr(1, name);
            e.extend(attr(2, &attr(ty, &no_code)));
            e
        };
        assert!(expr_hazard(&expr(b"immediate\0", 2), "e").is_some());
        assert!(expr_hazard(&expr(b"cmp\0", 3), "e").is_some());
        assert!(expr_hazard(&expr(b"bitwise\0", 7), "e").is_some());
        assert!(expr_hazard(&expr(b"range\0", 4), "e").is_some());
        assert!(expr_hazard(&expr(b"match\0", 3), "e").is_none());
        assert!(expr_hazard(&expr(b"cmp\0", 2), "e").is_none());
        // No NUL: libnftnl reads on past the attribute.
        assert!(expr_hazard(&expr(b"cm", 3), "e").is_some());
        assert!(name_may_be(b"dyn", b"dynset") && !name_may_be(b"dyn\0", b"dynset"));
    }

    /// The walk stops at the first attribute that does not fit, as libmnl's does.
    #[test]
    fn attribute_walk_stops_at_a_bad_length() {
        let b = [8u8, 0, 1, 0, 1, 2, 3, 4, 5, 0, 2, 0, 9, 0, 0, 0, 8, 0, 3, 0];
        let got: Vec<_> = nl_attrs(&b).collect();
        assert_eq!(got, vec![(1u16, &[1u8, 2, 3, 4][..]), (2, &[9][..])]);
        let truncated = [8u8, 0, 1, 0, 1, 2, 3, 4, 9, 0, 2, 0];
        assert_eq!(nl_attrs(&truncated).count(), 1);
    }
}
