//! The lenient first reading of a configuration file: every TOML value with its byte span,
//! then each key read on its own against the embedded default, so that every problem of a
//! file is reported, not only the first.

use super::NameList;
use super::values::{
    AgentOnError, AuditCount, DockerSocket, EndpointRoute, NflogGroup, Port, RouteLocalnet, Textfile, V4, V6, Val,
};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A problem found while reading the file: byte span (when known) and message.
pub(super) type Problem = (Option<Range<usize>>, String);

/// A TOML value as written, with the byte span toml gives for it and for every key and
/// element inside it. [`parse`] reads the file into this lenient shape first (only a syntax
/// error stops it), then reads each key on its own, so that every problem is reported.
#[derive(Debug)]
pub(super) struct Node {
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug)]
pub(super) enum Kind {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) key: String,
    pub(super) key_span: Option<Range<usize>>,
    value: Node,
}

impl Node {
    pub(super) fn table(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Table(entries) => Some(entries),
            _ => None,
        }
    }
}

/// The value of `key` in a table.
pub(super) fn find<'a>(table: &'a [Entry], key: &str) -> Option<&'a Node> {
    table.iter().find(|e| e.key == key).map(|e| &e.value)
}

// toml hands out spans through a private protocol (what `toml::Spanned` asks for): a
// struct with these names is given as the map {start, end, value}. A datetime is given as
// a map with one private key. Both are recognised below only on keys that have no span of
// their own, which no key the user wrote lacks.
const SPANNED: &str = "$__serde_spanned_private_Spanned";
const SPANNED_FIELDS: &[&str] =
    &["$__serde_spanned_private_start", "$__serde_spanned_private_end", "$__serde_spanned_private_value"];
const DATETIME_FIELD: &str = "$__toml_private_datetime";

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        // Values toml has no span for come as they are (no {start, end, value} map).
        d.deserialize_struct(SPANNED, SPANNED_FIELDS, NodeVisitor)
    }
}

/// A [`Node`] read without asking for its span (the `value` of toml's spanned map).
pub(super) struct Bare(pub(super) Node);

impl<'de> Deserialize<'de> for Bare {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Bare, D::Error> {
        d.deserialize_any(NodeVisitor).map(Bare)
    }
}

struct NodeVisitor;

impl NodeVisitor {
    fn node(kind: Kind) -> Node {
        Node { span: None, kind }
    }
}

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E: serde::de::Error>(self, b: bool) -> Result<Node, E> {
        Ok(Self::node(Kind::Bool(b)))
    }
    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Node, E> {
        Ok(Self::node(Kind::Int(n)))
    }
    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Node, E> {
        i64::try_from(n).map(|n| Self::node(Kind::Int(n))).map_err(|_| E::custom(format!("integer {n} is too large")))
    }
    fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Node, E> {
        Ok(Self::node(Kind::Float(x)))
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Node, E> {
        Ok(Self::node(Kind::Str(s.to_string())))
    }
    fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Node, E> {
        Ok(Self::node(Kind::Str(s)))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(n) = a.next_element::<Node>()? {
            items.push(n);
        }
        Ok(Self::node(Kind::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = m.next_key::<Node>()? {
            let Kind::Str(name) = key.kind else {
                return Err(serde::de::Error::custom("a table key is not a string"));
            };
            let private = key.span.is_none() && entries.is_empty();
            if private && name == SPANNED_FIELDS[0] {
                let start: usize = m.next_value()?;
                let (mut end, mut node) = (start, None);
                while let Some(field) = m.next_key::<String>()? {
                    match field.as_str() {
                        f if f == SPANNED_FIELDS[1] => end = m.next_value()?,
                        _ => node = Some(m.next_value::<Bare>()?.0),
                    }
                }
                let mut node = node.ok_or_else(|| serde::de::Error::missing_field(SPANNED_FIELDS[2]))?;
                node.span = Some(start..end);
                return Ok(node);
            }
            if private && name == DATETIME_FIELD {
                m.next_value::<serde::de::IgnoredAny>()?;
                return Ok(Self::node(Kind::Datetime));
            }
            entries.push(Entry { key: name, key_span: key.span, value: m.next_value()? });
        }
        Ok(Self::node(Kind::Table(entries)))
    }
}

/// How serde names a value of this kind in "invalid type" messages.
fn unexpected(kind: &Kind) -> serde::de::Unexpected<'_> {
    use serde::de::Unexpected as U;
    match kind {
        Kind::Str(s) => U::Str(s),
        Kind::Int(n) => U::Signed(*n),
        Kind::Float(x) => U::Float(*x),
        Kind::Bool(b) => U::Bool(*b),
        Kind::Datetime => U::Other("datetime"),
        // TOML's words, not serde's ("sequence", "map").
        Kind::Array(_) => U::Other("array"),
        Kind::Table(_) => U::Other("table"),
    }
}

/// `invalid type: string "x", expected ...`, as serde words it.
pub(super) fn invalid_type(kind: &Kind, expected: &str) -> String {
    <serde::de::value::Error as serde::de::Error>::invalid_type(unexpected(kind), &expected).to_string()
}

/// ``unknown key `x`; allowed: `a`, `b` `` (`what` is `key` or `section`).
pub(super) fn unknown_field(what: &str, name: &str, allowed: &'static [&'static str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("`{a}`")).collect();
    format!("unknown {what} `{}`; allowed: {}", name.escape_default(), allowed.join(", "))
}

/// Feeds a scalar [`Kind`] to a type's `Deserialize` impl (its messages are the ones users
/// see); arrays and tables are refused with serde's "invalid type" message.
struct Scalar<'a>(&'a Kind);

impl<'de> Deserializer<'de> for Scalar<'_> {
    type Error = serde::de::value::Error;
    fn deserialize_any<V: serde::de::Visitor<'de>>(self, v: V) -> Result<V::Value, Self::Error> {
        match self.0 {
            Kind::Str(s) => v.visit_str(s),
            Kind::Int(n) => v.visit_i64(*n),
            Kind::Float(x) => v.visit_f64(*x),
            Kind::Bool(b) => v.visit_bool(*b),
            other => Err(serde::de::Error::invalid_type(unexpected(other), &v)),
        }
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option unit
        unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier ignored_any
    }
}

/// A key's type, read from a [`Node`].
pub(super) trait FromNode: Sized {
    /// Reads the value, pushing every problem (at the value, or at the list element).
    /// `None` when nothing usable is left; a list comes back without its bad elements.
    fn from_node(n: &Node, errs: &mut Vec<Problem>) -> Option<Self>;
}

/// Reads a scalar with `T`'s `Deserialize` impl.
pub(super) fn scalar<T: serde::de::DeserializeOwned>(n: &Node, errs: &mut Vec<Problem>) -> Option<T> {
    T::deserialize(Scalar(&n.kind)).map_err(|e| errs.push((n.span.clone(), e.to_string()))).ok()
}

macro_rules! scalar_from_node {
    ($($t:ty),*) => { $(
        impl FromNode for $t {
            fn from_node(n: &Node, errs: &mut Vec<Problem>) -> Option<Self> {
                scalar(n, errs)
            }
        }
    )* };
}

scalar_from_node!(bool, Port, V4, V6, EndpointRoute, AgentOnError, Textfile, NflogGroup, AuditCount, DockerSocket);

impl FromNode for NameList {
    fn from_node(n: &Node, errs: &mut Vec<Problem>) -> Option<Self> {
        let Kind::Array(items) = &n.kind else {
            errs.push((n.span.clone(), invalid_type(&n.kind, "an array")));
            return None;
        };
        // toml gives every element a span; the list's is a fallback that is never used.
        let span = |e: &Node| e.span.clone().or(n.span.clone()).unwrap_or_default();
        Some(items.iter().filter_map(|e| Some(Spanned::new(span(e), scalar::<String>(e, errs)?))).collect())
    }
}

impl FromNode for RouteLocalnet {
    fn from_node(n: &Node, errs: &mut Vec<Problem>) -> Option<Self> {
        match n.kind {
            Kind::Array(_) => NameList::from_node(n, errs).map(RouteLocalnet::Interfaces),
            _ => scalar(n, errs),
        }
    }
}

/// A section of the user's file, as [`resolve`] sees it.
pub(super) enum UserSection<'a> {
    Absent,
    /// Not a table (already reported): none of its keys is the user's.
    Broken,
    Table(&'a [Entry]),
}

/// Finds section `name` in the user's top-level table and reports its unknown keys.
pub(super) fn user_section<'a>(
    user: &'a [Entry],
    name: &str,
    keys: &'static [&'static str],
    errs: &mut Vec<Problem>,
) -> UserSection<'a> {
    let Some(e) = user.iter().find(|e| e.key == name) else { return UserSection::Absent };
    let Some(table) = e.value.table() else {
        let expected = "a table of keys (see rules/default.toml)";
        errs.push((e.value.span.clone().or(e.key_span.clone()), invalid_type(&e.value.kind, expected)));
        return UserSection::Broken;
    };
    for k in table.iter().filter(|k| !keys.contains(&k.key.as_str())) {
        errs.push((k.key_span.clone(), unknown_field("key", &k.key, keys)));
    }
    UserSection::Table(table)
}

/// The value of `key`: the user's when it could be read (a list without its bad elements
/// counts), else the default's. `failed` is set when the user's value had a problem.
pub(super) fn key<T: FromNode>(
    user: &UserSection,
    default: &[Entry],
    key: &str,
    failed: &mut bool,
    errs: &mut Vec<Problem>,
) -> Val<T> {
    match user {
        UserSection::Broken => *failed = true,
        UserSection::Table(table) => {
            if let Some(n) = find(table, key) {
                let before = errs.len();
                let v = T::from_node(n, errs);
                *failed = errs.len() > before;
                if let Some(v) = v {
                    return Val { v, span: n.span.clone() };
                }
            }
        }
        UserSection::Absent => {}
    }
    let n = find(default, key).expect("default has every key");
    Val { v: T::from_node(n, &mut Vec::new()).expect("the default is valid"), span: None }
}
