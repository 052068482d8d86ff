//! The value types of the configuration (ports, addresses, enums, a value with its span),
//! each deserialized with a message that says what was expected.

use super::NameList;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use toml::Spanned;

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
    /// Keep it exactly while the namespace has no IPv4 default route: added when there is
    /// none, deleted once one exists (re-evaluated by every apply, the agent hook and the
    /// watcher on route events).
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

/// `boot.agent_on_error`: what the ecs-init hook (the `ExecStartPre=` drop-in of
/// `ecs.service`) does when `ecs-hostnet apply` fails before the ECS agent starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentOnError {
    /// `"block"`: the agent does not start (a failed `ExecStartPre=` fails the start), so no
    /// task runs on a host whose guards and IMDS block are not known to be in place.
    Block,
    /// `"start"`: the agent starts anyway (`ExecStartPre=-...`: systemd ignores the failure);
    /// the error is in the journal at priority err. Tasks may then run without the
    /// credentials DNAT, the guards or the IMDS block.
    Start,
}

impl AgentOnError {
    /// The value as written in the configuration.
    pub fn name(self) -> &'static str {
        match self {
            AgentOnError::Block => "block",
            AgentOnError::Start => "start",
        }
    }
}

impl<'de> Deserialize<'de> for AgentOnError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match string_for(d, "one of \"block\", \"start\"")?.as_str() {
            "block" => Ok(AgentOnError::Block),
            "start" => Ok(AgentOnError::Start),
            other => Err(serde::de::Error::custom(format!(
                "\"{}\" is not allowed; allowed: \"block\" (the agent does not start when apply fails), \
                 \"start\" (it starts anyway, the error is logged)",
                other.escape_default()
            ))),
        }
    }
}

/// `metrics.textfile`: where `status` writes its Prometheus exposition for node_exporter's
/// textfile collector (which reads `*.prom` files of one folder); `None` (`""` in the file)
/// = off. An absolute path ending in `.prom`, without `..`, NUL or newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Textfile(pub Option<std::path::PathBuf>);

impl<'de> Deserialize<'de> for Textfile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string_for(d, "a file path in quotes, such as \"/var/lib/node_exporter/textfile/ecs-hostnet.prom\"")?;
        if s.is_empty() {
            return Ok(Textfile(None));
        }
        let path = std::path::Path::new(&s);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let why = if !path.is_absolute() {
            Some("is not an absolute path")
        } else if path.components().any(|c| c == std::path::Component::ParentDir) {
            Some("has a `..` component")
        } else if s.contains(['\0', '\n', '\r']) {
            Some("holds a NUL or line break")
        } else if !name.ends_with(".prom") || name == ".prom" || s.ends_with('/') {
            Some("does not name a file ending in .prom (node_exporter's textfile collector reads only those)")
        } else {
            None
        };
        match why {
            None => Ok(Textfile(Some(path.to_path_buf()))),
            Some(why) => Err(serde::de::Error::custom(format!(
                "\"{}\" {why}; allowed: \"\" (off) or an absolute path ending in .prom, such as \
                 \"/var/lib/node_exporter/textfile/ecs-hostnet.prom\"",
                s.escape_default()
            ))),
        }
    }
}

/// An integer in `lo..=hi`, with `what` and `why` (for 0, say) in the error.
fn bounded<'de, D: Deserializer<'de>>(
    d: D,
    lo: i64,
    hi: i64,
    what: &'static str,
    why: &'static str,
) -> Result<i64, D::Error> {
    struct V(i64, i64, &'static str, &'static str);
    impl serde::de::Visitor<'_> for V {
        type Value = i64;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} {}-{} (an integer)", self.2, self.0, self.1)
        }
        fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<i64, E> {
            if (self.0..=self.1).contains(&n) {
                Ok(n)
            } else {
                Err(E::custom(format!("{} {n} is out of range; allowed: {}-{}{}", self.2, self.0, self.1, self.3)))
            }
        }
    }
    d.deserialize_i64(V(lo, hi, what, why))
}

/// `audit.nflog_group`: the nfnetlink_log group the IMDS audit rules send to and the
/// watcher binds, 1-65535 (a `u16`, `NFTA_LOG_GROUP`). 0 is refused: it is the default
/// group of iptables' `NFLOG` target, ulogd and `tcpdump -i nflog`, so another listener
/// is likely to hold it already (one group has one listener: the bind fails with EBUSY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NflogGroup(pub u16);

impl<'de> Deserialize<'de> for NflogGroup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let why = " (0 is the default group of iptables' NFLOG, ulogd and tcpdump, likely taken by another listener)";
        Ok(NflogGroup(bounded(d, 1, 65_535, "nflog group", why)? as u16))
    }
}

/// Most audit lines per second, and most at once (`audit.rate_per_second`, `audit.burst`):
/// a flood of attempts must not flood the journal.
pub const MAX_AUDIT_RATE: u32 = 1000;

/// `audit.rate_per_second` and `audit.burst`: the token bucket of the audit rules' `limit`
/// (packets), 1-[`MAX_AUDIT_RATE`]. Not 0: the kernel refuses a rate of 0 and turns a
/// burst of 0 into 5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditCount(pub u32);

impl<'de> Deserialize<'de> for AuditCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(AuditCount(bounded(d, 1, MAX_AUDIT_RATE as i64, "the audit limit", "")? as u32))
    }
}

/// `audit.docker_socket`: Docker's API socket, asked which container has the source
/// address of an attempt; `None` (`""`) = never ask. An absolute path without `..`, NUL or
/// line break.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DockerSocket(pub Option<std::path::PathBuf>);

impl<'de> Deserialize<'de> for DockerSocket {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = string_for(d, "a socket path in quotes, such as \"/var/run/docker.sock\"")?;
        if s.is_empty() {
            return Ok(DockerSocket(None));
        }
        let path = std::path::Path::new(&s);
        if path.is_absolute()
            && !path.components().any(|c| c == std::path::Component::ParentDir)
            && !s.contains(['\0', '\n', '\r'])
        {
            return Ok(DockerSocket(Some(path.to_path_buf())));
        }
        Err(serde::de::Error::custom(format!(
            "\"{}\" is not an absolute path without `..`; allowed: \"\" (off) or a path such as \"/var/run/docker.sock\"",
            s.escape_default()
        )))
    }
}

/// `route_localnet.enable`: `"all"`, `"off"` or a list of exact interface names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteLocalnet {
    /// `"off"`: ecs-hostnet sets no route_localnet, and puts back any value it recorded.
    Off,
    /// `"all"`: `net.ipv4.conf.all.route_localnet = 1`, which also covers bridges created later.
    All,
    /// Exact interface names as written (checked by [`crate::config::parse`]).
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
