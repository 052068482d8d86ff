//! Configuration -> desired state (pure).
//!
//! The desired state is two tables of our own and the route_localnet sysctls:
//!
//! ```text
//! table ip ecs-hostnet                       # NAT (ip family: works on every kernel)
//!   chain prerouting  nat    prerouting -100  credentials DNAT, one rule per container interface pattern
//!   chain output      nat    output     -100  credentials REDIRECT for host-network-mode tasks
//! table inet ecs-hostnet                     # filter, IPv4 and IPv6
//!   chain input       filter input      0     localhost guards (other interfaces; container
//!                                             interfaces), introspection guard
//!   chain forward     filter forward    0     IMDS block, per address family: the audit rule
//!                                             (rate-limited nfnetlink_log copy), then the drop
//! ```
//!
//! Each rule's id (its comment) names what it is for, e.g. `credentials-dnat docker+`; the
//! chain names and rule ids are defined once, in [`crate::model::names`].
//!
//! May import [`crate::model`] and [`crate::config`] only (docs/architecture.md). Pure: no I/O.

pub mod ecs_config;
pub mod install_files;
pub mod task_routes;

use crate::config::{Config, EndpointRoute};
use crate::model::build;
use crate::model::ifpattern::IfPattern;
use crate::model::names::{TABLE_COMMENT, TABLE_NAME, chain, rule_id};
use crate::model::ruleset::{BaseChain, Chain, ChainType, CmpOp, Expr, Family, Hook, Rule, Table, Verdict, ct};
use std::net::Ipv4Addr;

/// What the host should look like.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    /// Our tables with their chains and rules, in creation order (`ip` then `inet`).
    /// A table is present when it has a chain, or (inet) when it must hold the
    /// route_localnet record.
    pub tables: Vec<Table>,
    /// route_localnet selectors to set to 1: `"all"` or interface names
    /// (`/proc/sys/net/ipv4/conf/<selector>/route_localnet`).
    pub route_localnet: Vec<String>,
    /// The `ENDPOINT/32 dev lo` route for host-network-mode tasks on hosts without an
    /// IPv4 default route; `None`: ecs-hostnet keeps none (and removes its own).
    pub endpoint_route: Option<EndpointRouteWanted>,
    /// The container interface patterns the rules match arriving traffic on, for the
    /// planner's check that none of them matches the host's uplink
    /// ([`crate::plan::uplink`]).
    pub container_interfaces: ContainerInterfaces,
    /// The IMDS audit the watcher receives: the nfnetlink_log group the audit rules send
    /// to; `None` when there is no audit rule (`audit.enabled` or `imds_block.enabled`
    /// false, no container pattern).
    pub audit: Option<AuditWanted>,
}

/// What the watcher binds and asks for the IMDS audit (`[audit]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditWanted {
    /// `audit.nflog_group`: the group of the audit rules' `log`.
    pub group: u16,
    /// [`AUDIT_SNAPLEN`]: bytes of each packet copied.
    pub snaplen: u32,
    /// `audit.docker_socket`; `None`: never ask Docker.
    pub docker_socket: Option<std::path::PathBuf>,
}

/// Where the rules take container interface patterns (`containers.interfaces`) to match
/// arriving traffic. Empty (the default) when no rule uses them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerInterfaces {
    /// `containers.interfaces`; empty when neither the DNAT nor the IMDS block is on.
    pub patterns: Vec<IfPattern>,
    /// The credentials DNAT serves packets arriving on them (`credentials.enabled`).
    pub dnat: bool,
    /// The IMDS block drops packets forwarded from them (`imds_block.enabled`), but for
    /// those arriving on [`ContainerInterfaces::imds_exclusions`].
    pub imds_block: bool,
    /// `imds_block.exclude_interfaces`.
    pub imds_exclusions: Vec<IfPattern>,
}

/// The endpoint route and when it is wanted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointRouteWanted {
    /// `169.254.170.2/32 dev lo` (from `credentials.endpoint_address`).
    pub spec: crate::model::route::RouteSpec,
    /// `true`: only when there is no IPv4 default route (and never removed for having one).
    pub auto: bool,
}

/// Priority nft calls `dstnat` (`NF_IP_PRI_NAT_DST`).
pub const PRIORITY_DSTNAT: i32 = -100;
/// Priority nft calls `filter` (`NF_IP_PRI_FILTER`).
pub const PRIORITY_FILTER: i32 = 0;

fn base(chain_type: ChainType, hook: Hook, priority: i32) -> Option<BaseChain> {
    Some(BaseChain { chain_type, hook, priority, policy_accept: true })
}

fn rule(id: String, parts: Vec<Vec<Expr>>) -> Rule {
    // Exactly sized: a flattening collect grows by doubling, and with 1024 container
    // patterns the spare capacity of the DNAT rules was a fifth of apply's peak heap.
    let mut exprs = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for part in parts {
        exprs.extend(part);
    }
    Rule { id, exprs }
}

/// Compiles a validated configuration into the desired state.
pub fn compile(c: &Config) -> Desired {
    let containers = c.container_interfaces();
    let cred = &c.credentials;
    let endpoint = cred.endpoint_address.v.0;
    let endpoint_port = cred.endpoint_port.v.0;
    let agent = cred.agent_address.v.0;
    let agent_port = cred.agent_port.v.0;

    // table ip ecs-hostnet
    let mut nat_chains = Vec::new();
    if cred.enabled.v {
        let match_endpoint = || {
            vec![
                build::ip_addr(CmpOp::Eq, 16, endpoint, 32).to_vec(),
                build::tcp_dport(endpoint_port).to_vec(),
                vec![Expr::Counter],
            ]
        };
        let rules = containers
            .iter()
            .map(|p| {
                let mut parts = vec![build::iifname(CmpOp::Eq, p.as_str()).to_vec()];
                parts.extend(match_endpoint());
                parts.push(build::dnat(agent, agent_port).to_vec());
                rule(rule_id::credentials_dnat(p.as_str()), parts)
            })
            .collect();
        nat_chains.push(Chain {
            name: chain::PREROUTING.into(),
            base: base(ChainType::Nat, Hook::Prerouting, PRIORITY_DSTNAT),
            rules,
        });
        if cred.redirect_host_traffic.v {
            let mut parts = match_endpoint();
            // REDIRECT sends to 127.0.0.1 for locally generated packets; any other agent
            // address needs a DNAT.
            if agent == Ipv4Addr::LOCALHOST {
                parts.push(build::redirect(agent_port).to_vec());
            } else {
                parts.push(build::dnat(agent, agent_port).to_vec());
            }
            nat_chains.push(Chain {
                name: chain::OUTPUT.into(),
                base: base(ChainType::Nat, Hook::Output, PRIORITY_DSTNAT),
                rules: vec![rule(rule_id::CREDENTIALS_REDIRECT.into(), parts)],
            });
        }
    }

    // table inet ecs-hostnet
    let mut input = Vec::new();
    // The AWS agent's iptables guard also exempts 127.0.0.0/8 SOURCES; with
    // route_localnet=1 the kernel accepts such (spoofed) sources from a neighbour, so
    // this guard does not: a loopback source on a non-loopback interface is spoofed.
    if c.localhost_guard.enabled.v {
        let loopback = Ipv4Addr::new(127, 0, 0, 0);
        // Another table may DNAT to 127.0.0.0/8 without an interface match (ecs-init's
        // `-t nat -A PREROUTING -d 169.254.170.2 -p tcp --dport 80 -j DNAT`): exempting
        // DNATed packets would then serve the uplink's neighbours. Only container
        // interfaces have a reason to reach 127.0.0.0/8, so from any other interface the
        // packet is dropped, DNATed or not, established or not.
        let mut not_container = build::iifname(CmpOp::Neq, "lo").to_vec();
        if !containers.is_empty() {
            let names: Vec<&str> = containers.iter().map(IfPattern::as_str).collect();
            not_container.extend(build::iifname_not_in(&names));
        }
        input.push(rule(
            rule_id::LOCALHOST_GUARD_UPLINK.into(),
            vec![
                not_container,
                build::nfproto(Family::Inet, false),
                build::ip_addr(CmpOp::Eq, 16, loopback, 8).to_vec(),
                vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            ],
        ));
        // From a container interface (the only ones left): DNATed or a known flow only.
        input.push(rule(
            rule_id::LOCALHOST_GUARD.into(),
            vec![
                build::iifname(CmpOp::Neq, "lo").to_vec(),
                build::nfproto(Family::Inet, false),
                build::ip_addr(CmpOp::Eq, 16, loopback, 8).to_vec(),
                build::ct_bits_clear(ct::STATE, ct::STATE_ESTABLISHED | ct::STATE_RELATED).to_vec(),
                build::ct_bits_clear(ct::STATUS, ct::STATUS_DNAT).to_vec(),
                vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            ],
        ));
    }
    if c.introspection_guard.enabled.v {
        let mut parts: Vec<Vec<Expr>> =
            c.introspection_allowed().iter().map(|p| build::iifname(CmpOp::Neq, p.as_str()).to_vec()).collect();
        parts.push(build::tcp_dport(c.introspection_guard.port.v.0).to_vec());
        parts.push(vec![Expr::Counter, Expr::Verdict(Verdict::Drop)]);
        input.push(rule(rule_id::INTROSPECTION_GUARD.into(), parts));
    }
    let mut forward = Vec::new();
    if c.imds_block.enabled.v && !containers.is_empty() {
        // Per family the audit rule, then the drop; the patterns in one nft set each.
        let families: &[bool] = if c.imds_block.block_ipv6.v { &[false, true] } else { &[false] };
        for &ipv6 in families {
            if c.audit.enabled.v {
                forward.push(imds_rule(&containers, ipv6, c, true));
            }
            forward.push(imds_rule(&containers, ipv6, c, false));
        }
    }
    let mut filter_chains = Vec::new();
    if !input.is_empty() {
        filter_chains.push(Chain {
            name: chain::INPUT.into(),
            base: base(ChainType::Filter, Hook::Input, PRIORITY_FILTER),
            rules: input,
        });
    }
    if !forward.is_empty() {
        filter_chains.push(Chain {
            name: chain::FORWARD.into(),
            base: base(ChainType::Filter, Hook::Forward, PRIORITY_FILTER),
            rules: forward,
        });
    }

    let route_localnet = c.route_localnet_selectors();

    let mut tables = Vec::new();
    let table = |family, chains| Table { family, name: TABLE_NAME.into(), comment: TABLE_COMMENT.into(), chains };
    if !nat_chains.is_empty() {
        tables.push(table(Family::Ip, nat_chains));
    }
    if !filter_chains.is_empty() || !route_localnet.is_empty() {
        tables.push(table(Family::Inet, filter_chains));
    }
    let endpoint_route = match (cred.enabled.v && cred.redirect_host_traffic.v, cred.endpoint_route_via_lo.v) {
        (false, _) | (_, EndpointRoute::Never) => None,
        (true, mode) => Some(EndpointRouteWanted {
            spec: crate::model::route::RouteSpec {
                dest: std::net::IpAddr::V4(endpoint),
                prefix_len: 32,
                kind: crate::model::route::RouteKind::DevLo,
            },
            auto: mode == EndpointRoute::Auto,
        }),
    };
    let (dnat, imds_block) = (cred.enabled.v, c.imds_block.enabled.v && !containers.is_empty());
    let container_interfaces = if dnat || imds_block {
        ContainerInterfaces { patterns: containers, dnat, imds_block, imds_exclusions: c.imds_exclusions() }
    } else {
        ContainerInterfaces::default()
    };
    let audit = (imds_block && c.audit.enabled.v).then(|| AuditWanted {
        group: c.audit.nflog_group.v.0,
        snaplen: AUDIT_SNAPLEN,
        docker_socket: c.audit.docker_socket.v.0.clone(),
    });
    Desired { tables, route_localnet, endpoint_route, container_interfaces, audit }
}

/// Bytes of each audited packet copied to user space (`log ... snaplen`): an IPv4 header
/// with options (at most 60) or an IPv6 header (40), plus the ports of the transport header.
pub const AUDIT_SNAPLEN: u32 = 128;

/// The IMDS drop rule of one family or, with `audit`, its audit rule: the same match,
/// then `limit rate N/second burst B packets counter log prefix "ID" group G snaplen S`
/// and no verdict (nftables goes on to the drop right after). The limit is a rule of its
/// own: in the drop rule it would limit the drop.
fn imds_rule(patterns: &[IfPattern], ipv6: bool, c: &Config, audit: bool) -> Rule {
    let (id, addr) = if ipv6 {
        let id = if audit { rule_id::IMDS_AUDIT_IPV6 } else { rule_id::IMDS_BLOCK_IPV6 };
        (id.to_string(), build::ip6_daddr(c.imds_block.ipv6_address.v.0).to_vec())
    } else {
        let id = if audit { rule_id::IMDS_AUDIT_IPV4 } else { rule_id::IMDS_BLOCK_IPV4 };
        (id.to_string(), build::ip_addr(CmpOp::Eq, 16, c.imds_block.ipv4_address.v.0, 32).to_vec())
    };
    let action = if audit {
        let a = &c.audit;
        vec![
            build::limit_per_second(u64::from(a.rate_per_second.v.0), a.burst.v.0),
            Expr::Counter,
            build::log_group(&id, a.nflog_group.v.0, AUDIT_SNAPLEN),
        ]
    } else {
        vec![Expr::Counter, Expr::Verdict(Verdict::Drop)]
    };
    // Exclusions come first, as `iifname != "..."`; then one set of all container patterns.
    let mut parts: Vec<Vec<Expr>> =
        c.imds_exclusions().iter().map(|e| build::iifname(CmpOp::Neq, e.as_str()).to_vec()).collect();
    let names: Vec<&str> = patterns.iter().map(IfPattern::as_str).collect();
    parts.push(build::iifname_in(&names));
    rule(id, vec![parts.concat(), build::nfproto(Family::Inet, ipv6), addr, action])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::nft_text::rule_text;

    fn input_rules(text: &str) -> Vec<(String, String)> {
        let d = compile(&crate::config::parse("t", text).unwrap());
        let inet = d.tables.iter().find(|t| t.family == Family::Inet).unwrap();
        let input = inet.chains.iter().find(|c| c.name == chain::INPUT).unwrap();
        input.rules.iter().map(|r| (r.id.clone(), rule_text(Family::Inet, &r.exprs, None))).collect()
    }

    #[test]
    fn other_interfaces_lose_127_0_0_0_8_whether_dnated_or_not_before_the_container_guard() {
        let rules = input_rules("");
        let ids: Vec<&str> = rules.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [rule_id::LOCALHOST_GUARD_UPLINK, rule_id::LOCALHOST_GUARD, rule_id::INTROSPECTION_GUARD]);
        assert_eq!(
            rules[0].1,
            "iifname != \"lo\" iifname != { \"br-*\", \"docker*\", \"ecs-bridge\" } ip daddr 127.0.0.0/8 counter drop"
        );
        // Neither a ct status nor a ct state exemption: a foreign DNAT cannot open it.
        assert!(!rules[0].1.contains("ct "), "{}", rules[0].1);
    }

    #[test]
    fn one_container_pattern_is_a_comparison_and_none_drops_every_other_interface() {
        let one = input_rules("[containers]\ninterfaces = [\"docker0\"]\n");
        assert_eq!(one[0].1, "iifname != \"lo\" iifname != \"docker0\" ip daddr 127.0.0.0/8 counter drop");
        let none = input_rules(
            "[containers]\ninterfaces = []\n[credentials]\nenabled = false\n[imds_block]\nenabled = false\n\
             [route_localnet]\nenable = \"off\"\n[agent]\nenable_task_iam_role = false\n\
             enable_task_iam_role_network_host = false\n",
        );
        assert_eq!(
            none[0],
            (rule_id::LOCALHOST_GUARD_UPLINK.into(), "iifname != \"lo\" ip daddr 127.0.0.0/8 counter drop".into())
        );
    }

    fn forward_rules(text: &str) -> Vec<(String, String)> {
        let d = compile(&crate::config::parse("t", text).unwrap());
        let inet = d.tables.iter().find(|t| t.family == Family::Inet).unwrap();
        let Some(fwd) = inet.chains.iter().find(|c| c.name == chain::FORWARD) else { return vec![] };
        fwd.rules.iter().map(|r| (r.id.clone(), rule_text(Family::Inet, &r.exprs, None))).collect()
    }

    #[test]
    fn each_imds_drop_follows_its_rate_limited_audit_rule_with_the_same_match() {
        let rules = forward_rules("");
        let ids: Vec<&str> = rules.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids,
            [rule_id::IMDS_AUDIT_IPV4, rule_id::IMDS_BLOCK_IPV4, rule_id::IMDS_AUDIT_IPV6, rule_id::IMDS_BLOCK_IPV6]
        );
        let set = "iifname { \"br-*\", \"docker*\", \"ecs-bridge\" }";
        assert_eq!(
            rules[0].1,
            format!(
                "{set} ip daddr 169.254.169.254 limit rate 10/second burst 10 packets counter log prefix \
                 \"imds-audit-ipv4\" group 1254 snaplen 128"
            )
        );
        assert_eq!(rules[1].1, format!("{set} ip daddr 169.254.169.254 counter drop"));
        assert!(
            rules[2].1.starts_with(&format!("{set} ip6 daddr fd00:ec2::254 limit rate 10/second")),
            "{}",
            rules[2].1
        );
        assert!(rules[2].1.ends_with("log prefix \"imds-audit-ipv6\" group 1254 snaplen 128"), "{}", rules[2].1);
    }

    #[test]
    fn audit_keys_shape_the_audit_rules_and_off_removes_them() {
        let rules = forward_rules(
            "[audit]\nnflog_group = 7\nrate_per_second = 2\nburst = 5\n[imds_block]\nblock_ipv6 = false\n\
             exclude_interfaces = [\"br-x\"]\n",
        );
        assert_eq!(rules.len(), 2, "{rules:?}");
        // nft leaves its default burst (5) out, and the exclusions come first here too.
        assert!(rules[0].1.starts_with("iifname != \"br-x\" iifname {"), "{}", rules[0].1);
        assert!(rules[0].1.contains("limit rate 2/second counter log prefix \"imds-audit-ipv4\" group 7 snaplen 128"));
        let off = forward_rules("[audit]\nenabled = false\n");
        let ids: Vec<&str> = off.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [rule_id::IMDS_BLOCK_IPV4, rule_id::IMDS_BLOCK_IPV6]);
        assert!(forward_rules("[imds_block]\nenabled = false\n").is_empty(), "no IMDS block, nothing to audit");
    }

    #[test]
    fn guard_off_drops_both_guard_rules() {
        let rules = input_rules(
            "[localhost_guard]\nenabled = false\ni_accept_that_route_localnet_exposes_localhost_services = true\n",
        );
        let ids: Vec<&str> = rules.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, [rule_id::INTROSPECTION_GUARD]);
    }
}
