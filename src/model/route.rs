//! Routes ecs-hostnet reads and makes: the awsvpc IMDS blackholes and the credentials
//! endpoint route via `lo`, and the route changes that carry a plan out.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
/// `rtm_protocol` of the routes ecs-hostnet adds (`ip route` shows `proto 236`). Values
/// above `RTPROT_STATIC` (4) are free for routing daemons; this one marks ours.
pub const ROUTE_PROTOCOL: u8 = 236;

/// `LOOPBACK_IFINDEX`: `lo` is interface 1 in every network namespace.
pub const LOOPBACK_IFINDEX: u32 = 1;

/// What a route does with matching packets. JSON: `"blackhole"`, `"dev_lo"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteKind {
    /// `blackhole PREFIX`: `connect()` fails at once (EINVAL), nothing is sent.
    Blackhole,
    /// `PREFIX dev lo`: locally delivered (for the credentials endpoint on hosts without
    /// an IPv4 default route).
    DevLo,
}

/// A route in the main table: destination prefix and kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination address (`RTA_DST`).
    pub dest: IpAddr,
    /// Destination prefix length in bits (`rtm_dst_len`): 32 or 128 for one address.
    pub prefix_len: u8,
    /// What the route does.
    pub kind: RouteKind,
}

impl std::fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            RouteKind::Blackhole => write!(f, "blackhole {}/{}", self.dest, self.prefix_len),
            RouteKind::DevLo => write!(f, "{}/{} dev lo src 127.0.0.1", self.dest, self.prefix_len),
        }
    }
}

/// A route as read from the kernel, reduced to what the planner compares.
///
/// JSON (the same rules as [`crate::model::live::LiveTable`]'s: `None` is written `null` and
/// read back from `null` or a missing field, unknown fields are rejected):
///
/// ```json
/// {"dest": "169.254.170.2", "prefix_len": 32, "kind": "dev_lo", "protocol": 236, "metric": null}
/// {"dest": "fd00:ec2::254", "prefix_len": 128, "kind": "blackhole", "protocol": 236, "metric": 1024}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LiveRoute {
    /// Destination address (`RTA_DST`); in JSON the usual text form (`"169.254.169.254"`,
    /// `"fd00:ec2::254"`).
    pub dest: IpAddr,
    /// Destination prefix length in bits.
    pub prefix_len: u8,
    /// `None` for a kind ecs-hostnet does not make (a gateway route, unreachable, ...).
    pub kind: Option<RouteKind>,
    /// `rtm_protocol`; [`ROUTE_PROTOCOL`] for ours.
    pub protocol: u8,
    /// `RTA_PRIORITY` (the metric; lower wins), if the kernel reported one.
    pub metric: Option<u32>,
}

impl std::fmt::Display for LiveRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.kind {
            Some(RouteKind::Blackhole) => "blackhole ",
            _ => "",
        };
        write!(f, "{kind}{}/{} proto {}", self.dest, self.prefix_len, self.protocol)?;
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        if self.kind == Some(RouteKind::DevLo) {
            write!(f, " dev lo")?;
        }
        Ok(())
    }
}

impl LiveRoute {
    /// Does this live route satisfy `want` (whoever made it)?
    pub fn satisfies(&self, want: &RouteSpec) -> bool {
        self.dest == want.dest && self.prefix_len == want.prefix_len && self.kind == Some(want.kind)
    }
}

/// The address family of a default route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpFamily {
    /// IPv4 (`0.0.0.0/0`). JSON `"ipv4"`.
    Ipv4,
    /// IPv6 (`::/0`). JSON `"ipv6"`.
    Ipv6,
}

impl std::fmt::Display for IpFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IpFamily::Ipv4 => "IPv4",
            IpFamily::Ipv6 => "IPv6",
        })
    }
}

/// An interface that a main-table unicast default route leaves through (each next hop
/// of a multipath one): the host's uplink, where its neighbours are.
///
/// JSON (unknown fields are rejected): `{"family": "ipv4", "interface": "eth0"}`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Uplink {
    /// The family of the default route.
    pub family: IpFamily,
    /// The interface's name (`IFLA_IFNAME`), as the kernel reports it.
    pub interface: String,
}

/// What to do in each namespace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskAction {
    /// Add the missing routes.
    Apply,
    /// Report the missing routes (exit 2 when any).
    Check,
    /// Delete the routes ecs-hostnet added ([`ROUTE_PROTOCOL`]); others are left alone.
    Remove,
}

/// One route change in a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteOp {
    /// Add `spec`.
    Add {
        /// The route to add.
        spec: RouteSpec,
    },
    /// Delete a route to the same prefix that is not what we want (a gateway route to
    /// IMDS would defeat the blackhole whatever its metric). Not restored by `remove`.
    DeleteInTheWay {
        /// The route as read.
        route: LiveRoute,
    },
    /// Delete our route `spec` (only one with [`ROUTE_PROTOCOL`]).
    Delete {
        /// The route to delete.
        spec: RouteSpec,
    },
}

impl std::fmt::Display for RouteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteOp::Add { spec } => write!(f, "add route {spec}"),
            RouteOp::DeleteInTheWay { route } if route.protocol == ROUTE_PROTOCOL => write!(f, "delete route {route}"),
            RouteOp::DeleteInTheWay { route } => write!(f, "delete route {route} (in the way)"),
            RouteOp::Delete { spec } => write!(f, "delete route {spec}"),
        }
    }
}
