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
pub const DEFAULT_TOML: &str = include_str!("../rules/default.toml");

/// Name shown for the embedded default in messages.
pub const DEFAULT_NAME: &str = "<embedded rules/default.toml>";

/// Most interfaces `route_localnet.enable` may list: the values found before ecs-hostnet
/// changed them are recorded in the table's userdata, which the kernel caps at 256 bytes
/// (`NFT_USERDATA_MAXLEN`).
pub const MAX_ROUTE_LOCALNET_INTERFACES: usize = 8;

/// A located configuration error: `FILE:LINE:COL: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based line and column; `None` when the error has no position (e.g. a missing file).
    pub position: Option<(usize, usize)>,
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

/// An interface name or iptables-style pattern (`docker+` = every name starting with
/// `docker`), checked against the kernel's `dev_valid_name()` rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfPattern(String);

impl IfPattern {
    /// Parses and checks a pattern. Errors: empty, longer than 15 bytes (IFNAMSIZ - 1),
    /// `.`/`..`, characters the kernel refuses (`/`, `:`, whitespace, NUL) or that would
    /// change meaning in nft (`*`, `"`, `\`, non-printable, non-ASCII), a `+` not at the
    /// end, or a bare `+` (every interface).
    pub fn parse(s: &str, allow_prefix: bool) -> Result<IfPattern, String> {
        let allowed = "allowed: 1-15 bytes of ASCII letters, digits and . _ - @ (and a trailing + for a prefix match)";
        let name = s.strip_suffix('+').unwrap_or(s);
        if s.ends_with('+') && !allow_prefix {
            return Err(format!("\"{s}\": a prefix pattern is not allowed here, give an exact interface name"));
        }
        if s == "+" {
            return Err("\"+\" would match every interface, including the uplink; name the container interfaces".into());
        }
        if name.is_empty() {
            return Err(format!("interface name is empty; {allowed}"));
        }
        if name.len() > 15 {
            return Err(format!(
                "interface name \"{}\" is {} bytes, the kernel allows at most 15 (IFNAMSIZ - 1)",
                name.escape_default(),
                name.len()
            ));
        }
        if name == "." || name == ".." {
            return Err(format!("\"{name}\" is not a valid interface name; {allowed}"));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@+".contains(*c))) {
            return Err(format!(
                "interface name \"{}\" contains {:?}, which the kernel or nft refuses; {allowed}",
                name.escape_default(),
                c
            ));
        }
        if name.contains('+') {
            return Err(format!("\"{s}\": '+' is only allowed at the end (prefix match); {allowed}"));
        }
        Ok(IfPattern(s.to_string()))
    }

    /// The pattern in iptables spelling, as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for a prefix pattern (`docker+`).
    pub fn is_prefix(&self) -> bool {
        self.0.ends_with('+')
    }

    /// The pattern in nft spelling (`docker+` -> `docker*`).
    pub fn nft(&self) -> String {
        match self.0.strip_suffix('+') {
            Some(p) => format!("{p}*"),
            None => self.0.clone(),
        }
    }

    /// Does this pattern match the interface `name`?
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('+') {
            Some(p) => name.starts_with(p),
            None => name == self.0,
        }
    }
}

/// A pattern that may end in `+`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PatternField(pub IfPattern);

impl<'de> Deserialize<'de> for PatternField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IfPattern::parse(&s, true).map(PatternField).map_err(serde::de::Error::custom)
    }
}

/// An exact interface name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IfNameField(pub IfPattern);

impl<'de> Deserialize<'de> for IfNameField {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        IfPattern::parse(&s, false).map(IfNameField).map_err(serde::de::Error::custom)
    }
}

/// A TCP port, 1-65535.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Port(pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u16::try_from(n) {
            Ok(p) if p >= 1 => Ok(Port(p)),
            _ => Err(serde::de::Error::custom(format!("port {n} is out of range; allowed: 1-65535"))),
        }
    }
}

/// An IPv4 address with a message that says which family was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V4(pub Ipv4Addr);

impl<'de> Deserialize<'de> for V4 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(a) = s.parse::<Ipv4Addr>() {
            return Ok(V4(a));
        }
        let hint = if s.parse::<Ipv6Addr>().is_ok() { " (this is an IPv6 address)" } else { "" };
        Err(serde::de::Error::custom(format!(
            "\"{s}\" is not an IPv4 address{hint}; allowed: dotted quad such as 169.254.170.2"
        )))
    }
}

/// An IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6(pub Ipv6Addr);

impl<'de> Deserialize<'de> for V6 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Ok(V6(a));
        }
        let hint = if s.parse::<Ipv4Addr>().is_ok() { " (this is an IPv4 address)" } else { "" };
        Err(serde::de::Error::custom(format!(
            "\"{s}\" is not an IPv6 address{hint}; allowed: RFC 4291 text such as fd00:ec2::254"
        )))
    }
}

/// `route_localnet.enable`: `"all"`, `"off"` or a list of exact interface names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteLocalnet {
    Off,
    All,
    Interfaces(Vec<IfPattern>),
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
                        "\"{s}\" is not allowed; allowed: \"all\", \"off\" or a list of interface names"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<RouteLocalnet, A::Error> {
                let mut v = Vec::new();
                while let Some(IfNameField(p)) = a.next_element()? {
                    if p.as_str() == "all" || p.as_str() == "default" {
                        return Err(serde::de::Error::custom(format!(
                            "\"{}\" is a sysctl keyword, not an interface; write enable = \"all\"",
                            p.as_str()
                        )));
                    }
                    v.push(p);
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
    pub v: T,
    pub span: Option<Range<usize>>,
}

/// The sections as they may appear in a file: every key optional.
macro_rules! file_sections {
    ($( $section:ident : $sty:ident { $( $key:ident : $kty:ty ),* $(,)? } )*) => {
        #[derive(Deserialize, Debug, Default)]
        #[serde(deny_unknown_fields)]
        struct FileConfig { $( #[serde(default)] $section: Option<$sty>, )* }
        $(
            #[derive(Deserialize, Debug, Default)]
            #[serde(deny_unknown_fields)]
            struct $sty { $( #[serde(default)] $key: Option<Spanned<$kty>>, )* }
        )*
        /// One section of the resolved configuration.
        pub mod section {
            use super::*;
            $(
                #[derive(Clone, Debug)]
                #[allow(non_camel_case_types)]
                pub struct $section { $( pub $key: Val<$kty>, )* }
            )*
        }
        /// The whole, validated configuration; see `rules/default.toml` for every key.
        #[derive(Clone, Debug)]
        pub struct Config { $( pub $section: section::$section, )* }

        fn resolve(user: FileConfig, default: FileConfig) -> Config {
            $(
                let u = user.$section.unwrap_or_default();
                let d = default.$section.expect("default has every section");
                let $section = section::$section { $(
                    $key: match u.$key {
                        Some(s) => { let span = s.span(); Val { v: s.into_inner(), span: Some(span) } }
                        None => Val { v: d.$key.expect("default has every key").into_inner(), span: None },
                    },
                )* };
            )*
            Config { $( $section, )* }
        }
    };
}

file_sections! {
    containers: ContainersFile {
        interfaces: Vec<Spanned<PatternField>>,
    }
    route_localnet: RouteLocalnetFile {
        enable: RouteLocalnet,
    }
    credentials: CredentialsFile {
        enabled: bool,
        endpoint_address: V4,
        endpoint_port: Port,
        agent_address: V4,
        agent_port: Port,
        redirect_host_traffic: bool,
    }
    localhost_guard: LocalhostGuardFile {
        enabled: bool,
        i_accept_that_route_localnet_exposes_localhost_services: bool,
    }
    introspection_guard: IntrospectionGuardFile {
        enabled: bool,
        port: Port,
        allowed_interfaces: Vec<Spanned<PatternField>>,
    }
    imds_block: ImdsBlockFile {
        enabled: bool,
        ipv4_address: V4,
        block_ipv6: bool,
        ipv6_address: V6,
    }
}

impl Config {
    /// The container-facing interface patterns.
    pub fn container_interfaces(&self) -> Vec<IfPattern> {
        self.containers.interfaces.v.iter().map(|p| p.get_ref().0.clone()).collect()
    }
    /// Interfaces allowed to reach the introspection port.
    pub fn introspection_allowed(&self) -> Vec<IfPattern> {
        self.introspection_guard.allowed_interfaces.v.iter().map(|p| p.get_ref().0.clone()).collect()
    }
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
    let col = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
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
/// Every key missing from `text` takes its value from [`DEFAULT_TOML`]. Syntax and type
/// errors stop at the first (TOML cannot be read past them); consistency errors are all
/// reported.
pub fn parse(file: &str, text: &str) -> Result<Config, ConfigErrors> {
    let loc = Located { file, text };
    if let Some(off) = text.find('\0') {
        return Err(ConfigErrors(vec![loc.err(
            Some(off..off + 1),
            "the file contains a NUL byte; a configuration is UTF-8 TOML text",
        )]));
    }
    let user: FileConfig = toml::from_str(text).map_err(|e| {
        let msg = e.message().trim().replace('\n', "; ");
        ConfigErrors(vec![loc.err(e.span(), msg)])
    })?;
    let default: FileConfig = toml::from_str(DEFAULT_TOML).expect("embedded default parses");
    let config = resolve(user, default);
    let errors = check_consistency(&loc, &config);
    if errors.is_empty() { Ok(config) } else { Err(ConfigErrors(errors)) }
}

fn check_consistency(loc: &Located, c: &Config) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let rl = &c.route_localnet.enable;
    let rl_on = !matches!(rl.v, RouteLocalnet::Off);
    let guard = &c.localhost_guard;
    let opt_out = &guard.i_accept_that_route_localnet_exposes_localhost_services;
    if rl_on && !guard.enabled.v && !opt_out.v {
        errs.push(loc.err(
            guard.enabled.span.clone().or(rl.span.clone()),
            "localhost_guard.enabled = false while route_localnet is on would expose every 127.0.0.1 service \
             to L2 neighbours (CVE-2020-8558); keep the guard, set route_localnet.enable = \"off\", or set \
             localhost_guard.i_accept_that_route_localnet_exposes_localhost_services = true",
        ));
    }
    if guard.enabled.v && opt_out.v {
        errs.push(loc.err(
            opt_out.span.clone(),
            "i_accept_that_route_localnet_exposes_localhost_services = true but localhost_guard.enabled = true; \
             remove the opt-out or disable the guard",
        ));
    }
    let cred = &c.credentials;
    if cred.enabled.v && cred.agent_address.v.0.is_loopback() && !rl_on {
        errs.push(loc.err(
            rl.span.clone().or(cred.agent_address.span.clone()),
            format!(
                "route_localnet.enable = \"off\" but credentials.agent_address is {} (loopback): the kernel drops \
                 container packets DNATed to 127.0.0.0/8 as martians unless route_localnet is on; allowed: \"all\" \
                 or a list of interfaces",
                cred.agent_address.v.0
            ),
        ));
    }
    if let RouteLocalnet::Interfaces(list) = &rl.v {
        if list.len() > MAX_ROUTE_LOCALNET_INTERFACES {
            errs.push(loc.err(
                rl.span.clone(),
                format!(
                    "route_localnet.enable lists {} interfaces, at most {MAX_ROUTE_LOCALNET_INTERFACES} are allowed; use \"all\"",
                    list.len()
                ),
            ));
        }
        if list.is_empty() {
            errs.push(loc.err(rl.span.clone(), "route_localnet.enable is an empty list; write enable = \"off\" instead"));
        }
        let mut seen = std::collections::BTreeSet::new();
        for p in list {
            if !seen.insert(p) {
                errs.push(loc.err(rl.span.clone(), format!("route_localnet.enable lists \"{}\" twice", p.as_str())));
            }
        }
    }
    let ifs = &c.containers.interfaces;
    if ifs.v.is_empty() && (cred.enabled.v || c.imds_block.enabled.v) {
        errs.push(loc.err(
            ifs.span.clone(),
            "containers.interfaces is empty, so the credentials DNAT and the IMDS block would match nothing; \
             list the container-facing interfaces (e.g. \"docker+\") or disable both",
        ));
    }
    for (name, list) in [
        ("containers.interfaces", &c.containers.interfaces),
        ("introspection_guard.allowed_interfaces", &c.introspection_guard.allowed_interfaces),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        for p in &list.v {
            if !seen.insert(&p.get_ref().0) {
                let span = list.span.as_ref().map(|_| p.span());
                errs.push(loc.err(span, format!("{name} lists \"{}\" twice", p.get_ref().0.as_str())));
            }
        }
    }
    let ig = &c.introspection_guard;
    if ig.enabled.v && cred.enabled.v && ig.port.v == cred.agent_port.v {
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
