//! The TOML configuration: schema, parsing and validation (pure, no I/O).
//!
//! The schema and every default are documented in `rules/default.toml`, which is embedded
//! in the binary as [`DEFAULT_TOML`]. Errors carry the file, line and column of the
//! offending value (1-based), say what is wrong and what is allowed.

use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use toml::Spanned;

/// The embedded default configuration (`rules/default.toml`).
pub const DEFAULT_TOML: &str = include_str!("../../rules/default.toml");

/// Name shown for the embedded default in messages.
pub const DEFAULT_NAME: &str = "<embedded rules/default.toml>";

/// Most interfaces `route_localnet.enable` may list: the values found before ecs-hostnet
/// changed them are recorded in the table's userdata, which the kernel caps at 256 bytes
/// (`NFT_USERDATA_MAXLEN`).
pub const MAX_ROUTE_LOCALNET_INTERFACES: usize = 8;

/// A located configuration error: `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to [`parse`] (the path read, or [`DEFAULT_NAME`]).
    pub file: String,
    /// 1-based line and column; `None` when the error has no position (e.g. a missing file).
    pub position: Option<(usize, usize)>,
    /// What is wrong and what is allowed, e.g. `"x" is not an IPv6 address; allowed: ...`.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{}:{}: {}", self.file, line, col, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// All errors found in one file (at least one).
#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
use crate::model::ifpattern::IfPattern;

/// A list of interface names or patterns as written, each with its byte span; checked
/// element by element (so each error points at its element) by [`parse`].
pub type NameList = Vec<Spanned<String>>;

/// Most container interface patterns: each costs one DNAT rule and two elements in each
/// IMDS block set; past this, use fewer, wider patterns.
pub const MAX_CONTAINER_PATTERNS: usize = 1024;

/// Most interfaces allowed to reach the introspection port (they make one rule).
pub const MAX_ALLOWED_INTERFACES: usize = 64;

/// A TCP port, 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a TCP port number 1-65535 (an integer)")
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Port, E> {
                match u16::try_from(n) {
                    Ok(p) if p >= 1 => Ok(Port(p)),
                    _ => Err(E::custom(format!("port {n} is out of range; allowed: 1-65535"))),
                }
            }
        }
        d.deserialize_i64(V)
    }
}

/// A string, with `expecting` in the error for any other type (serde's own says only
/// "expected a string").
fn string_for<'de, D: Deserializer<'de>>(d: D, expecting: &'static str) -> Result<String, D::Error> {
    struct V(&'static str);
    impl serde::de::Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_string())
        }
    }
    d.deserialize_str(V(expecting))
}

/// An IPv4 address with a message that says which family was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4(pub Ipv4Addr);

impl<'de> Deserialize<'de> for V4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string_for(d, "an IPv4 address in quotes, such as \"169.254.170.2\"")?;
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(V4(a));
        }
        let hint = if s.parse::<Ipv6Addr>().is_ok() { " (this is an IPv6 address)" } else { "" };
        Err(serde::de::Error::custom(format!(
            "\"{}\" is not an IPv4 address{hint}; allowed: dotted quad such as 169.254.170.2",
            s.escape_default()
        )))
    }
}

/// An IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6(pub Ipv6Addr);

impl<'de> Deserialize<'de> for V6 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string_for(d, "an IPv6 address in quotes, such as \"fd00:ec2::254\"")?;
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Ok(V6(a));
        }
        let hint = if s.parse::<Ipv4Addr>().is_ok() { " (this is an IPv4 address)" } else { "" };
        Err(serde::de::Error::custom(format!(
            "\"{}\" is not an IPv6 address{hint}; allowed: RFC 4291 text such as fd00:ec2::254",
            s.escape_default()
        )))
    }
}

/// `credentials.endpoint_route_via_lo`: when to add the `169.254.170.2/32 dev lo` route
/// that host-network-mode tasks need on hosts without an IPv4 default route (else their
/// connect() fails with "network unreachable" before the output-hook REDIRECT is reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointRoute {
    /// Add it when the namespace has no IPv4 default route; never remove it because one
    /// appeared later (it is harmless on a dual-stack host).
    Auto,
    /// Always keep it.
    Always,
    /// Never add it; remove the one ecs-hostnet added.
    Never,
}

impl<'de> Deserialize<'de> for EndpointRoute {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match string_for(d, "one of \"auto\", \"always\", \"never\"")?.as_str() {
            "auto" => Ok(EndpointRoute::Auto),
            "always" => Ok(EndpointRoute::Always),
            "never" => Ok(EndpointRoute::Never),
            other => Err(serde::de::Error::custom(format!(
                "\"{}\" is not allowed; allowed: \"auto\", \"always\", \"never\"",
                other.escape_default()
            ))),
        }
    }
}

/// `route_localnet.enable`: `"all"`, `"off"` or a list of exact interface names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteLocalnet {
    /// `"off"`: ecs-hostnet sets no route_localnet, and puts back any value it recorded.
    Off,
    /// `"all"`: `net.ipv4.conf.all.route_localnet = 1`, which also covers bridges created later.
    All,
    /// Exact interface names as written (checked by [`parse`]).
    Interfaces(NameList),
}

impl<'de> Deserialize<'de> for RouteLocalnet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RouteLocalnet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"all\", \"off\" or a list of interface names")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<RouteLocalnet, E> {
                match s {
                    "all" => Ok(RouteLocalnet::All),
                    "off" => Ok(RouteLocalnet::Off),
                    _ => Err(E::custom(format!(
                        "\"{}\" is not allowed; allowed: \"all\", \"off\" or a list of interface names",
                        s.escape_default()
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<RouteLocalnet, A::Error> {
                let mut v = Vec::new();
                while let Some(name) = a.next_element::<Spanned<String>>()? {
                    v.push(name);
                }
                Ok(RouteLocalnet::Interfaces(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A value from the configuration, with its byte span in the user's file when the user
/// wrote it (`None` when it came from the embedded default).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Val<T> {
    /// The value.
    pub v: T,
    /// Byte range of the value in the user's file (turned into `LINE:COL` for errors).
    pub span: Option<Range<usize>>,
}

/// The sections and their keys; generates [`Config`], one [`section`] struct per section,
/// and `resolve`, which reads each key of the user's file on its own.
macro_rules! file_sections {
    ($( $section:ident { $( $key:ident : $kty:ty ),* $(,)? } )*) => {
        /// One section of the resolved configuration.
        pub mod section {
            use super::*;
            $(
                #[derive(Clone, Debug)]
                #[allow(non_camel_case_types)]
                /// A `[section]` of `rules/default.toml`: one field per key, each the user's
                /// value or the default's.
                pub struct $section { $(
                    /// A key of the section, as documented in `rules/default.toml`.
                    pub $key: Val<$kty>,
                )* }
            )*
        }
        /// The whole, validated configuration; see `rules/default.toml` for every key.
        #[derive(Clone, Debug)]
        pub struct Config { $(
            /// A `[section]`, keys left out of the file filled from the default.
            pub $section: section::$section,
        )* }

        /// The keys whose value in the user's file could not be read (wrong type, bad list
        /// element, or a section that is not a table): consistency checks involving them are
        /// skipped, as their value in [`Config`] is not the user's.
        #[derive(Default)]
        struct Failed { $( $section: failed::$section, )* }

        mod failed { $(
            #[derive(Default)]
            #[allow(non_camel_case_types)]
            pub(super) struct $section { $( pub(super) $key: bool, )* }
        )* }

        /// The section names, in schema order (for "unknown field" messages).
        const SECTIONS: &[&str] = &[$( stringify!($section) ),*];

        /// Builds the configuration from the user's top-level table and the default's: every
        /// unknown section or key and every unreadable value is pushed to `errs`.
        fn resolve(user: &[Entry], default: &[Entry], errs: &mut Vec<Problem>) -> (Config, Failed) {
            for e in user.iter().filter(|e| !SECTIONS.contains(&e.key.as_str())) {
                errs.push((e.key_span.clone(), unknown_field("section", &e.key, SECTIONS)));
            }
            let mut failed = Failed::default();
            $(
                let u = user_section(user, stringify!($section), &[$( stringify!($key) ),*], errs);
                let d = find(default, stringify!($section)).and_then(Node::table).expect("default has every section");
                let $section = section::$section { $(
                    $key: key(&u, d, stringify!($key), &mut failed.$section.$key, errs),
                )* };
            )*
            (Config { $( $section, )* }, failed)
        }
    };
}

file_sections! {
    containers {
        interfaces: NameList,
    }
    route_localnet {
        enable: RouteLocalnet,
    }
    credentials {
        enabled: bool,
        endpoint_address: V4,
        endpoint_port: Port,
        agent_address: V4,
        agent_port: Port,
        redirect_host_traffic: bool,
        endpoint_route_via_lo: EndpointRoute,
    }
    localhost_guard {
        enabled: bool,
        i_accept_that_route_localnet_exposes_localhost_services: bool,
    }
    introspection_guard {
        enabled: bool,
        port: Port,
        allowed_interfaces: NameList,
    }
    imds_block {
        enabled: bool,
        ipv4_address: V4,
        block_ipv6: bool,
        ipv6_address: V6,
        exclude_interfaces: NameList,
    }
    agent {
        manage_ecs_config: bool,
        enable_task_iam_role: bool,
        enable_task_iam_role_network_host: bool,
        awsvpc_block_imds: bool,
    }
}

/// A problem found while reading the file: byte span (when known) and message.
type Problem = (Option<Range<usize>>, String);

/// A TOML value as written, with the byte span toml gives for it and for every key and
/// element inside it. [`parse`] reads the file into this lenient shape first (only a syntax
/// error stops it), then reads each key on its own, so that every problem is reported.
#[derive(Debug)]
struct Node {
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
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
struct Entry {
    key: String,
    key_span: Option<Range<usize>>,
    value: Node,
}

impl Node {
    fn table(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Table(entries) => Some(entries),
            _ => None,
        }
    }
}

/// The value of `key` in a table.
fn find<'a>(table: &'a [Entry], key: &str) -> Option<&'a Node> {
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
struct Bare(Node);

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
fn invalid_type(kind: &Kind, expected: &str) -> String {
    <serde::de::value::Error as serde::de::Error>::invalid_type(unexpected(kind), &expected).to_string()
}

/// ``unknown key `x`; allowed: `a`, `b` `` (`what` is `key` or `section`).
fn unknown_field(what: &str, name: &str, allowed: &'static [&'static str]) -> String {
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
trait FromNode: Sized {
    /// Reads the value, pushing every problem (at the value, or at the list element).
    /// `None` when nothing usable is left; a list comes back without its bad elements.
    fn from_node(n: &Node, errs: &mut Vec<Problem>) -> Option<Self>;
}

/// Reads a scalar with `T`'s `Deserialize` impl.
fn scalar<T: serde::de::DeserializeOwned>(n: &Node, errs: &mut Vec<Problem>) -> Option<T> {
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

scalar_from_node!(bool, Port, V4, V6, EndpointRoute);

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
enum UserSection<'a> {
    Absent,
    /// Not a table (already reported): none of its keys is the user's.
    Broken,
    Table(&'a [Entry]),
}

/// Finds section `name` in the user's top-level table and reports its unknown keys.
fn user_section<'a>(
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
fn key<T: FromNode>(
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

impl Config {
    /// The container-facing interface patterns.
    pub fn container_interfaces(&self) -> Vec<IfPattern> {
        checked(&self.containers.interfaces.v, true)
    }
    /// Interfaces allowed to reach the introspection port.
    pub fn introspection_allowed(&self) -> Vec<IfPattern> {
        checked(&self.introspection_guard.allowed_interfaces.v, true)
    }
    /// The ECS agent settings to write to ecs.config, in file order; empty when
    /// `agent.manage_ecs_config` is false.
    pub fn agent_keys(&self) -> Vec<(String, Option<String>)> {
        let a = &self.agent;
        if !a.manage_ecs_config.v {
            return vec![];
        }
        let values = [a.enable_task_iam_role.v, a.enable_task_iam_role_network_host.v, a.awsvpc_block_imds.v];
        crate::model::names::AGENT_KEYS.iter().zip(values).map(|(k, v)| (k.to_string(), Some(v.to_string()))).collect()
    }

    /// Container interfaces the IMDS block leaves alone.
    pub fn imds_exclusions(&self) -> Vec<IfPattern> {
        checked(&self.imds_block.exclude_interfaces.v, true)
    }

    /// route_localnet selectors to set: `all` or exact interface names; none when off.
    pub fn route_localnet_selectors(&self) -> Vec<String> {
        match &self.route_localnet.enable.v {
            RouteLocalnet::Off => vec![],
            RouteLocalnet::All => vec!["all".into()],
            RouteLocalnet::Interfaces(list) => list.iter().map(|n| n.get_ref().clone()).collect(),
        }
    }
}

/// A list [`parse`] has already checked.
fn checked(list: &NameList, allow_prefix: bool) -> Vec<IfPattern> {
    list.iter().map(|p| IfPattern::parse(p.get_ref(), allow_prefix).expect("checked by parse")).collect()
}

/// The embedded default, parsed.
pub fn default_config() -> Config {
    parse(DEFAULT_NAME, DEFAULT_TOML).expect("the embedded default is valid")
}

/// 1-based (line, column) of byte `offset` in `text` (column counts characters).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let mut col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    // A UTF-8 byte-order mark is not a column.
    if line == 1 && before.starts_with('\u{feff}') {
        col -= 1;
    }
    (line, col)
}

struct Located<'a> {
    file: &'a str,
    text: &'a str,
}

impl Located<'_> {
    fn err(&self, span: Option<Range<usize>>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            position: span.map(|s| line_col(self.text, s.start)),
            message: message.into(),
        }
    }
}

/// Parses and validates a configuration file's text. `file` is the name used in errors.
///
/// Every key missing from `text` takes its value from [`DEFAULT_TOML`]. A syntax error is
/// reported alone (TOML cannot be read past it); otherwise every problem is reported, in
/// file order: each unknown section or key, each value of the wrong type, each bad list
/// element, and each consistency error (those involving a value that could not be read
/// are skipped).
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let loc = Located { file, text };
    if let Some(off) = text.find('\0') {
        return Err(ConfigErrors(vec![
            loc.err(Some(off..off + 1), "the file contains a NUL byte; a configuration is UTF-8 TOML text"),
        ]));
    }
    let user = toml::from_str::<Bare>(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        // The toml crate gives some syntax errors no text (`s=`, a lone CR).
        let msg = if msg.is_empty() { "invalid TOML syntax".to_string() } else { msg };
        ConfigErrors(vec![loc.err(e.span(), msg)])
    })?;
    // The embedded default (or a copy of it, the common case) is parsed once, not twice.
    let parsed_default;
    let default = if text == DEFAULT_TOML {
        &user
    } else {
        parsed_default = toml::from_str::<Bare>(DEFAULT_TOML).expect("embedded default parses");
        &parsed_default
    };
    let table = "a TOML document is a table";
    let mut problems = Vec::new();
    let (config, failed) = resolve(user.0.table().expect(table), default.0.table().expect(table), &mut problems);
    let mut errors: Vec<ConfigError> = problems.into_iter().map(|(span, m)| loc.err(span, m)).collect();
    errors.extend(check_consistency(&loc, &config, &failed));
    // File order; errors without a position last.
    errors.sort_by_key(|e| (e.position.is_none(), e.position));
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
}

/// Checks each element of a name list; returns the parsed patterns when all are valid.
fn check_list(
    loc: &Located,
    errs: &mut Vec<ConfigError>,
    key: &str,
    list: &Val<NameList>,
    allow_prefix: bool,
    max: usize,
) -> Option<Vec<IfPattern>> {
    // Element spans point into the user's file only when the user wrote the list.
    let span = |e: &Spanned<String>| list.span.as_ref().map(|_| e.span());
    let before = errs.len();
    let mut out: Vec<IfPattern> = Vec::new();
    if list.v.len() > max {
        errs.push(loc.err(list.span.clone(), format!("{key} has {} entries; at most {max} are allowed", list.v.len())));
        // The elements are not checked: the overlap check is quadratic, and a list this
        // long is refused anyway.
        return None;
    }
    // Whether any two entries overlap, in O(n log n): sorted by their name (a prefix
    // without its '+'), every name that starts with a prefix follows it directly, so an
    // overlap always shows between neighbours. Only then is each entry compared with the
    // earlier ones (quadratic, but only for a list that is refused), to name the pair.
    let mut bases: Vec<(&str, bool)> =
        list.v.iter().map(|e| (e.get_ref().trim_end_matches('+'), e.get_ref().ends_with('+'))).collect();
    bases.sort_unstable();
    let any_overlap = bases.windows(2).any(|w| w[0].0 == w[1].0 || (w[0].1 && w[1].0.starts_with(w[0].0)));
    for e in &list.v {
        match IfPattern::parse(e.get_ref(), allow_prefix) {
            Err(m) => errs.push(loc.err(span(e), format!("{key}: {m}"))),
            Ok(p) => {
                if let Some(other) = out.iter().take(if any_overlap { usize::MAX } else { 0 }).find(|o| {
                    *o == &p
                        || (o.is_prefix() && o.matches(p.as_str().trim_end_matches('+')))
                        || (p.is_prefix() && p.matches(o.as_str().trim_end_matches('+')))
                }) {
                    let what = if other == &p {
                        "is listed twice".to_string()
                    } else {
                        format!("overlaps \"{}\" (one pattern covers the other)", other.as_str())
                    };
                    errs.push(
                        loc.err(
                            span(e),
                            format!("{key}: \"{}\" {what}; each interface may match one entry", p.as_str()),
                        ),
                    );
                }
                out.push(p);
            }
        }
    }
    (errs.len() == before).then_some(out)
}

/// The checks that involve several values, or a list's elements together. A check that
/// involves a key in `f` (its value could not be read) is skipped; the elements of a list
/// are still checked when only some of them could not be read.
fn check_consistency(loc: &Located, c: &Config, f: &Failed) -> Vec<ConfigError> {
    // None of these keys failed.
    let ok = |keys: &[bool]| !keys.contains(&true);
    let mut errs = Vec::new();
    let containers =
        check_list(loc, &mut errs, "containers.interfaces", &c.containers.interfaces, true, MAX_CONTAINER_PATTERNS)
            .filter(|_| ok(&[f.containers.interfaces]));
    check_list(
        loc,
        &mut errs,
        "introspection_guard.allowed_interfaces",
        &c.introspection_guard.allowed_interfaces,
        true,
        MAX_ALLOWED_INTERFACES,
    );
    let exclusions = check_list(
        loc,
        &mut errs,
        "imds_block.exclude_interfaces",
        &c.imds_block.exclude_interfaces,
        true,
        MAX_CONTAINER_PATTERNS,
    )
    .filter(|_| ok(&[f.imds_block.exclude_interfaces]));
    if let (Some(containers), Some(exclusions)) = (&containers, &exclusions) {
        let span = |i: usize| {
            c.imds_block.exclude_interfaces.span.as_ref().map(|_| c.imds_block.exclude_interfaces.v[i].span())
        };
        for (i, e) in exclusions.iter().enumerate() {
            let stem = e.as_str().trim_end_matches('+');
            if let Some(p) = containers
                .iter()
                .find(|p| e.matches(p.as_str().trim_end_matches('+')) && (e.is_prefix() || !p.is_prefix()))
            {
                errs.push(loc.err(
                    span(i),
                    format!(
                        "imds_block.exclude_interfaces: \"{}\" excludes all of containers.interfaces \"{}\"; drop that pattern from containers.interfaces instead",
                        e.as_str(),
                        p.as_str()
                    ),
                ));
            } else if !containers
                .iter()
                .any(|p| p.matches(stem) || (e.is_prefix() && e.matches(p.as_str().trim_end_matches('+'))))
            {
                errs.push(loc.err(
                    span(i),
                    format!(
                        "imds_block.exclude_interfaces: \"{}\" matches none of containers.interfaces, so it excludes nothing",
                        e.as_str()
                    ),
                ));
            }
        }
    }
    let rl = &c.route_localnet.enable;
    if let RouteLocalnet::Interfaces(list) = &rl.v {
        let as_val = Val { v: list.clone(), span: rl.span.clone() };
        let before = errs.len();
        for e in list {
            if e.get_ref() == "all" || e.get_ref() == "default" {
                errs.push(loc.err(
                    rl.span.as_ref().map(|_| e.span()),
                    format!(
                        "route_localnet.enable: \"{}\" is a sysctl keyword, not an interface; write enable = \"all\"",
                        e.get_ref()
                    ),
                ));
            }
        }
        if errs.len() == before {
            check_list(loc, &mut errs, "route_localnet.enable", &as_val, false, MAX_ROUTE_LOCALNET_INTERFACES);
        }
        if list.is_empty() && ok(&[f.route_localnet.enable]) {
            errs.push(
                loc.err(rl.span.clone(), "route_localnet.enable is an empty list; write enable = \"off\" instead"),
            );
        }
    }
    let rl_on = !matches!(rl.v, RouteLocalnet::Off);
    let guard = &c.localhost_guard;
    let opt_out = &guard.i_accept_that_route_localnet_exposes_localhost_services;
    let (f_rl, f_guard, f_opt_out) = (
        f.route_localnet.enable,
        f.localhost_guard.enabled,
        f.localhost_guard.i_accept_that_route_localnet_exposes_localhost_services,
    );
    if ok(&[f_rl, f_guard, f_opt_out]) && rl_on && !guard.enabled.v && !opt_out.v {
        errs.push(loc.err(
            guard.enabled.span.clone().or(rl.span.clone()),
            "localhost_guard.enabled = false while route_localnet is on would expose every 127.0.0.1 service \
             to L2 neighbours (CVE-2020-8558); keep the guard, set route_localnet.enable = \"off\", or set \
             localhost_guard.i_accept_that_route_localnet_exposes_localhost_services = true",
        ));
    }
    if ok(&[f_guard, f_opt_out]) && guard.enabled.v && opt_out.v {
        errs.push(loc.err(
            opt_out.span.clone(),
            "i_accept_that_route_localnet_exposes_localhost_services = true but localhost_guard.enabled = true; \
             remove the opt-out or disable the guard",
        ));
    }
    let (cred, fc) = (&c.credentials, &f.credentials);
    let agent = cred.agent_address.v.0;
    if ok(&[fc.agent_address]) && (agent.is_unspecified() || agent.is_multicast() || agent.is_broadcast()) {
        errs.push(loc.err(
            cred.agent_address.span.clone(),
            format!(
                "credentials.agent_address {agent} cannot receive a DNAT; allowed: a unicast address such as 127.0.0.1"
            ),
        ));
    }
    let endpoint = cred.endpoint_address.v.0;
    if ok(&[fc.endpoint_address]) && (endpoint.is_unspecified() || endpoint.is_multicast() || endpoint.is_broadcast()) {
        errs.push(loc.err(
            cred.endpoint_address.span.clone(),
            format!(
                "credentials.endpoint_address {endpoint} is not a unicast address; the ECS endpoint is 169.254.170.2"
            ),
        ));
    }
    let imds6 = c.imds_block.ipv6_address.v.0;
    if ok(&[f.imds_block.ipv6_address]) && (imds6.is_unspecified() || imds6.is_multicast() || imds6.is_loopback()) {
        errs.push(loc.err(
            c.imds_block.ipv6_address.span.clone(),
            format!("imds_block.ipv6_address {imds6} is not a unicast address; IMDS is fd00:ec2::254"),
        ));
    } else if ok(&[f.imds_block.ipv6_address]) && imds6.to_ipv4_mapped().is_some() {
        // ::ffff:a.b.c.d never appears as an IPv6 packet's destination: an IPv4 packet
        // goes through the ip daddr rule (ipv4_address) instead.
        errs.push(loc.err(
            c.imds_block.ipv6_address.span.clone(),
            format!(
                "imds_block.ipv6_address {imds6} is an IPv4-mapped address, never an IPv6 destination; \
                 the IPv4 IMDS address goes in ipv4_address; IMDS over IPv6 is fd00:ec2::254"
            ),
        ));
    }
    let imds = c.imds_block.ipv4_address.v.0;
    if ok(&[f.imds_block.ipv4_address]) && (imds.is_unspecified() || imds.is_multicast() || imds.is_broadcast()) {
        errs.push(loc.err(
            c.imds_block.ipv4_address.span.clone(),
            format!("imds_block.ipv4_address {imds} is not a unicast address; IMDS is 169.254.169.254"),
        ));
    }
    if ok(&[fc.enabled, fc.agent_address, f_rl]) && cred.enabled.v && agent.is_loopback() && !rl_on {
        errs.push(loc.err(
            rl.span.clone().or(cred.agent_address.span.clone()),
            format!(
                "route_localnet.enable = \"off\" but credentials.agent_address is {agent} (loopback): the kernel drops \
                 container packets DNATed to 127.0.0.0/8 as martians unless route_localnet is on; allowed: \"all\" \
                 or a list of interfaces"
            ),
        ));
    }
    if containers.as_ref().is_some_and(|l| l.is_empty())
        && ok(&[fc.enabled, f.imds_block.enabled])
        && (cred.enabled.v || c.imds_block.enabled.v)
    {
        errs.push(loc.err(
            c.containers.interfaces.span.clone(),
            "containers.interfaces is empty, so the credentials DNAT and the IMDS block would match nothing; \
             list the container-facing interfaces (e.g. \"docker+\") or disable both",
        ));
    }
    let ig = &c.introspection_guard;
    let fi = &f.introspection_guard;
    if ok(&[fi.enabled, fc.enabled, fi.port, fc.agent_port])
        && ig.enabled.v
        && cred.enabled.v
        && ig.port.v == cred.agent_port.v
    {
        errs.push(loc.err(
            ig.port.span.clone().or(cred.agent_port.span.clone()),
            format!(
                "introspection_guard.port and credentials.agent_port are both {}; the guard would cut \
                 containers off the credentials endpoint",
                cred.agent_port.v.0
            ),
        ));
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        match parse("f.toml", text) {
            Ok(_) => vec![],
            Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn the_embedded_default_is_valid_and_complete() {
        let c = default_config();
        assert_eq!(c.route_localnet_selectors(), vec!["all"]);
        assert_eq!(c.container_interfaces().len(), 3);
    }

    #[test]
    fn keys_left_out_take_the_default() {
        let c = parse("f.toml", "[credentials]\nagent_port = 51680\n").unwrap();
        assert_eq!(c.credentials.agent_port.v.0, 51680);
        assert_eq!(c.credentials.endpoint_port.v.0, 80);
        assert!(c.credentials.agent_port.span.is_some() && c.credentials.endpoint_port.span.is_none());
    }

    #[test]
    fn each_bad_list_element_is_reported_at_its_own_line() {
        let e = errors("[containers]\ninterfaces = [\n  \"docker+\",\n  \"a/b\",\n  \"x y\",\n]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].starts_with("f.toml:4:3: containers.interfaces: interface name \"a/b\" contains '/'"), "{e:?}");
        assert!(e[1].starts_with("f.toml:5:3: "), "{e:?}");
    }

    #[test]
    fn refused_values() {
        for (text, want) in [
            ("[containers]\ninterfaces = [\"abcdefghijklmno+\"]", "at most 14 before the wildcard"),
            ("[containers]\ninterfaces = [\"docker+\", \"docker0\"]", "overlaps \"docker+\""),
            ("[containers]\ninterfaces = [\"docker0\", \"docker0\"]", "is listed twice"),
            ("[containers]\ninterfaces = [\"+\"]", "every interface"),
            ("[credentials]\nagent_address = \"0.0.0.0\"", "cannot receive a DNAT"),
            ("[credentials]\nagent_address = \"224.0.0.1\"", "cannot receive a DNAT"),
            ("[credentials]\nagent_port = \"80\"", "a TCP port number 1-65535"),
            ("credentials = 5", "a table of keys"),
            ("[route_localnet]\nenable = [\"docker0\", \"all\"]", "sysctl keyword"),
            ("[route_localnet]\nenable = [\"docker+\"]", "prefix pattern is not allowed"),
            ("[route_localnet]\nenable = []", "empty list"),
            ("[imds_block]\nexclude_interfaces = [\"eth0\"]", "excludes nothing"),
            ("[imds_block]\nexclude_interfaces = [\"docker+\"]", "excludes all of"),
            ("[imds_block]\nexclude_interfaces = [\"ecs-bridge\"]", "excludes all of"),
        ] {
            let e = errors(text);
            assert!(e.iter().any(|m| m.contains(want)), "{text:?}: want {want:?} in {e:?}");
            assert!(e.iter().all(|m| m.starts_with("f.toml:")), "{e:?}");
        }
        let many: Vec<String> = (0..1025).map(|i| format!("\"c{i}\"")).collect();
        let e = errors(&format!("[containers]\ninterfaces = [{}]", many.join(",")));
        assert!(e[0].contains("at most 1024"), "{e:?}");
    }

    const CREDENTIALS_KEYS: &str = "allowed: `enabled`, `endpoint_address`, `endpoint_port`, \
        `agent_address`, `agent_port`, `redirect_host_traffic`, `endpoint_route_via_lo`";
    const SECTION_NAMES: &str = "allowed: `containers`, `route_localnet`, `credentials`, \
        `localhost_guard`, `introspection_guard`, `imds_block`, `agent`";
    const IFNAME_ALLOWED: &str =
        "allowed: 1-15 bytes of ASCII letters, digits and . _ - @ (and a trailing + for a prefix match)";

    #[test]
    fn every_problem_is_reported_at_its_own_position_in_file_order() {
        let text = "# several independent problems\n\
                    [credentials]\n\
                    enabled = \"yes\"\n\
                    agent_address = \"127.0.0.300\"\n\
                    endpoint_prot = 80\n\
                    \n\
                    [containers]\n\
                    interfaces = [\n  \"docker+\",\n  \"dock/er\",\n  7,\n  \"br-+\",\n]\n\
                    \n\
                    [nosuch]\n\
                    x = 1\n\
                    [imds_block]\n\
                    enabled = true\n\
                    ipv4_address = \"imds\"\n";
        let e = errors(text);
        let want = [
            "f.toml:3:11: invalid type: string \"yes\", expected a boolean".to_string(),
            "f.toml:4:17: \"127.0.0.300\" is not an IPv4 address; allowed: dotted quad such as 169.254.170.2".into(),
            format!("f.toml:5:1: unknown key `endpoint_prot`; {CREDENTIALS_KEYS}"),
            format!(
                "f.toml:10:3: containers.interfaces: interface name \"dock/er\" contains '/', which the kernel or \
                 nft refuses; {IFNAME_ALLOWED}"
            ),
            "f.toml:11:3: invalid type: integer `7`, expected a string".into(),
            format!("f.toml:15:2: unknown section `nosuch`; {SECTION_NAMES}"),
            "f.toml:19:16: \"imds\" is not an IPv4 address; allowed: dotted quad such as 169.254.170.2".into(),
        ];
        assert_eq!(e, want);
        // The same problems, written in another order, come out in file order.
        let text = "verbose = true\n[imds_block]\nipv4_address = \"imds\"\n[credentials]\nenabled = 1\nfoo = 2\n";
        let positions: Vec<String> = errors(text).iter().map(|m| m.split(' ').next().unwrap().to_string()).collect();
        assert_eq!(positions, ["f.toml:1:1:", "f.toml:3:16:", "f.toml:5:11:", "f.toml:6:1:"]);
    }

    #[test]
    fn one_problem_is_one_error() {
        for (text, want) in [
            ("[credentials]\nenabled = true\nendpoint_prot = 80\n", "f.toml:3:1: unknown key `endpoint_prot`"),
            ("[credentials]\nagent_port = \"51679\"\n", "f.toml:2:14: invalid type: string \"51679\""),
            ("# c\n[credential]\nenabled = true\n", "f.toml:2:2: unknown section `credential`"),
            ("[containers]\ninterfaces = [\n  \"docker+\",\n  42,\n]\n", "f.toml:4:3: invalid type: integer `42`"),
            ("credentials = 5", "f.toml:1:15: invalid type: integer `5`, expected a table of keys"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(e[0].starts_with(want), "{text:?}: want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn a_syntax_error_is_reported_alone() {
        // Other problems before the syntax error are not reported: the file cannot be read.
        for (text, want) in [
            ("[credentials\nenabled = true\n", "f.toml:1:13: invalid table header"),
            ("[credentials]\nenabled = \"yes\"\nfoo = 1\nagent_port =\n", "f.toml:4:13: "),
            ("[credentials]\nenabled = true\nenabled = false\n", "f.toml:3:1: duplicate key `enabled`"),
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1, "{text:?}: {e:?}");
            assert!(e[0].starts_with(want), "{text:?}: want {want:?}, got {e:?}");
        }
    }

    #[test]
    fn checks_involving_an_unreadable_value_are_skipped() {
        // Each value below would, if taken as the default, trigger a consistency error
        // (exclusion outside containers.interfaces, empty route_localnet list, guard off).
        let text = "[containers]\ninterfaces = \"docker+\"\n\
                    [imds_block]\nexclude_interfaces = [\"eth0\"]\n\
                    [route_localnet]\nenable = [5]\n\
                    [localhost_guard]\nenabled = \"no\"\n";
        let e = errors(text);
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].starts_with("f.toml:2:14: invalid type: string \"docker+\", expected an array"), "{e:?}");
        assert!(e[1].starts_with("f.toml:6:11: invalid type: integer `5`, expected a string"), "{e:?}");
        assert!(e[2].starts_with("f.toml:8:11: invalid type: string \"no\", expected a boolean"), "{e:?}");
        // A section that is not a table: none of its keys is checked against the others.
        let e = errors("credentials = 5\n[route_localnet]\nenable = \"off\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        // The readable elements of a list with a bad one are still checked.
        let e = errors("[containers]\ninterfaces = [\"docker+\", 42, \"a/b\", \"docker0\"]\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[2].contains("\"docker0\" overlaps \"docker+\""), "{e:?}");
    }

    #[test]
    fn inline_tables_dotted_keys_and_datetimes_are_read() {
        let c = parse("f.toml", "credentials = { agent_port = 51680 }\nimds_block.enabled = false\n").unwrap();
        assert_eq!(c.credentials.agent_port.v.0, 51680);
        assert!(!c.imds_block.enabled.v);
        assert_eq!(c.credentials.agent_port.span, Some(29..34));
        let e = errors("credentials = { enabled = \"x\", foo = 1 }\n[agent]\nmanage_ecs_config = 1979-05-27\n");
        assert_eq!(
            e,
            [
                "f.toml:1:27: invalid type: string \"x\", expected a boolean".to_string(),
                format!("f.toml:1:32: unknown key `foo`; {CREDENTIALS_KEYS}"),
                "f.toml:3:21: invalid type: datetime, expected a boolean".into(),
            ]
        );
    }
}

