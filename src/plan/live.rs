//! What the planner compares against: the facts of a host and the live state selected
//! from them for one desired state.

use crate::desired::Desired;
use crate::model::live::{CounterValues, LiveChain, LiveRule, LiveTable};
use crate::model::record::Record;
use crate::model::route::{LiveRoute, ROUTE_PROTOCOL, Uplink};
use crate::model::ruleset::{Expr, Family};
use std::collections::{BTreeMap, BTreeSet};

/// Sysctl values read from the kernel: selector -> value, `None` when the interface does
/// not exist.
pub type LiveSysctls = BTreeMap<String, Option<String>>;

/// The live state the planner compares against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveState {
    /// Our tables only (see [`crate::model::names::OWNED_TABLES`]).
    pub tables: Vec<LiveTable>,
    /// route_localnet values for every selector that is desired or recorded.
    pub route_localnet: LiveSysctls,
    /// The copy of the record kept outside the kernel (a file per network namespace),
    /// used when the kernel's copy is gone: someone deleted our table or flushed the
    /// rule set (`nft flush ruleset`, as Debian's /etc/nftables.conf does).
    pub saved_record: Option<Record>,
    /// Main-table IPv4 routes to the credentials endpoint, and every `dev lo` route
    /// ecs-hostnet made (its route protocol).
    pub endpoint_routes: Vec<LiveRoute>,
    /// Whether the namespace has an IPv4 default route (`0.0.0.0/0` in the main table).
    pub ipv4_default_route: bool,
    /// Whether `lo` is up: a `dev lo` route cannot be added while it is down.
    pub lo_up: bool,
    /// The interfaces the IPv4 and IPv6 default routes leave through; `None` when not
    /// known (a snapshot taken by an older ecs-hostnet). See [`crate::plan::uplink`].
    pub uplinks: Option<Vec<Uplink>>,
}

impl LiveState {
    /// The route_localnet record: the one held in `table inet ecs-hostnet`, else the
    /// saved copy.
    pub fn record(&self) -> Option<&Record> {
        self.tables
            .iter()
            .find(|t| t.family == Family::Inet)
            .and_then(|t| t.record.as_ref())
            .or(self.saved_record.as_ref())
    }
}

/// Is `r` a route the planner looks at: one to the credentials endpoint (whoever made
/// it), or a `dev lo` route ecs-hostnet made ([`ROUTE_PROTOCOL`])?
pub fn is_endpoint_route(desired: &Desired, r: &LiveRoute) -> bool {
    desired.endpoint_route.is_some_and(|w| r.dest == w.spec.dest)
        || (r.protocol == ROUTE_PROTOCOL && r.kind == Some(crate::model::route::RouteKind::DevLo))
}

/// The facts of one host (or network namespace) that a [`LiveState`] is selected from:
/// what the kernel and the run directory hold, before the configuration says which parts
/// matter. `plan` reads them from the kernel; `plan --against` from a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Our tables (see [`crate::model::names::OWNED_TABLES`]).
    pub tables: Vec<LiveTable>,
    /// The saved copy of the route_localnet record (see [`LiveState::saved_record`]).
    pub saved_record: Option<Record>,
    /// Main-table IPv4 routes with a destination: at least every one
    /// [`is_endpoint_route`] selects.
    pub ipv4_routes: Vec<LiveRoute>,
    /// See [`LiveState::ipv4_default_route`].
    pub ipv4_default_route: bool,
    /// See [`LiveState::lo_up`].
    pub lo_up: bool,
    /// See [`LiveState::uplinks`].
    pub uplinks: Option<Vec<Uplink>>,
}

impl HostFacts {
    /// The live state `desired` is planned against: our tables, the route_localnet value
    /// of every selector the plan needs (`sysctl(selector)`, `None` when the interface does
    /// not exist) and the endpoint routes.
    pub fn live_state<E>(
        self,
        desired: &Desired,
        mut sysctl: impl FnMut(&str) -> Result<Option<String>, E>,
    ) -> Result<LiveState, E> {
        let mut route_localnet = LiveSysctls::new();
        for sel in sysctl_selectors(desired, &self.tables, self.saved_record.as_ref()) {
            let value = sysctl(&sel)?;
            route_localnet.insert(sel, value);
        }
        let endpoint_routes = self.ipv4_routes.into_iter().filter(|r| is_endpoint_route(desired, r)).collect();
        Ok(LiveState {
            tables: self.tables,
            route_localnet,
            saved_record: self.saved_record,
            endpoint_routes,
            ipv4_default_route: self.ipv4_default_route,
            lo_up: self.lo_up,
            uplinks: self.uplinks,
        })
    }
}

/// The facts of a host converged to `desired`, as the kernel would report them right
/// after `apply` (rule handles 1, 2, ... in order), for `diff OLD NEW`. The host is a
/// standard one: it has an IPv4 default route and `lo` is up, and each route_localnet
/// value ecs-hostnet set was `original` before (the kernel's default is 0).
pub fn converged_host(desired: &Desired, original: &str) -> HostFacts {
    let record: Record = desired.route_localnet.iter().map(|s| (s.clone(), original.to_string())).collect();
    let mut handle = 0;
    let tables = desired
        .tables
        .iter()
        .map(|t| LiveTable {
            family: t.family,
            name: t.name.clone(),
            handle: 1,
            comment: Some(t.comment.clone()),
            flags: 0,
            foreign_objects: vec![],
            record: (t.family == Family::Inet).then(|| record.clone()),
            chains: t
                .chains
                .iter()
                .map(|c| LiveChain {
                    name: c.name.clone(),
                    base: c.base,
                    rules: c
                        .rules
                        .iter()
                        .map(|r| {
                            handle += 1;
                            // Counters as a fresh rule has them: zero.
                            let counter = r.exprs.contains(&Expr::Counter).then(CounterValues::default);
                            LiveRule { handle, comment: Some(r.id.clone()), exprs: r.exprs.clone(), counter }
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    // Under `auto` (and this host's IPv4 default route) no endpoint route is made.
    let ipv4_routes = desired
        .endpoint_route
        .filter(|w| !w.auto)
        .map(|w| LiveRoute {
            dest: w.spec.dest,
            prefix_len: w.spec.prefix_len,
            kind: Some(w.spec.kind),
            protocol: ROUTE_PROTOCOL,
            metric: None,
        })
        .into_iter()
        .collect();
    HostFacts {
        tables,
        saved_record: (!record.is_empty()).then_some(record),
        ipv4_routes,
        ipv4_default_route: true,
        lo_up: true,
        // The model host's uplink is not known: `diff` compares configurations only.
        uplinks: None,
    }
}

/// Selectors whose route_localnet value the planner needs: desired ones and recorded ones
/// (in the kernel's record or the saved copy).
pub fn sysctl_selectors(desired: &Desired, live_tables: &[LiveTable], saved: Option<&Record>) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = desired.route_localnet.iter().cloned().collect();
    if let Some(r) = live_tables.iter().find(|t| t.family == Family::Inet).and_then(|t| t.record.as_ref()) {
        s.extend(r.keys().cloned());
    }
    if let Some(r) = saved {
        s.extend(r.keys().cloned());
    }
    s
}
