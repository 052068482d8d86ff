//! The checks that involve several values, or the elements of a list together.

use super::values::{RouteLocalnet, Val};
use super::{
    Config, ConfigError, Failed, Located, MAX_ALLOWED_INTERFACES, MAX_CONTAINER_PATTERNS,
    MAX_ROUTE_LOCALNET_INTERFACES, NameList,
};
use crate::model::ifpattern::IfPattern;
use toml::Spanned;

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
pub(super) fn check_consistency(loc: &Located, c: &Config, f: &Failed) -> Vec<ConfigError> {
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
    // The names of a route_localnet list, once every one of them is valid.
    let mut rl_names = None;
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
            rl_names =
                check_list(loc, &mut errs, "route_localnet.enable", &as_val, false, MAX_ROUTE_LOCALNET_INTERFACES)
                    .filter(|_| ok(&[f.route_localnet.enable]));
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
    // The introspection port is the agent's introspection API (it lists the instance's
    // tasks and containers, amazon-ecs-agent#511) whether the guard is on or off: a
    // credentials target there serves that API to containers, or the guard drops them.
    let ig = &c.introspection_guard;
    let fi = &f.introspection_guard;
    let port = ig.port.v.0;
    for (key, val, failed, what) in [
        (
            "credentials.agent_port",
            &cred.agent_port,
            fc.agent_port,
            "the credentials DNAT would send containers to the agent's introspection API instead of its \
             credentials server (51679 by default), and an introspection guard would drop them",
        ),
        (
            "credentials.endpoint_port",
            &cred.endpoint_port,
            fc.endpoint_port,
            "the credentials endpoint would share its port with the agent's introspection API (51678 by \
             default), so the rules for one would act on the other; tasks call the endpoint on port 80",
        ),
    ] {
        if ok(&[fc.enabled, fi.port, failed]) && cred.enabled.v && val.v.0 == port {
            errs.push(loc.err(
                val.span.clone().or(ig.port.span.clone()),
                format!(
                    "{key}{} and introspection_guard.port{} are both {port}: {what}; allowed: any port but the \
                     introspection port, whether introspection_guard is enabled or not",
                    default_tag(val),
                    default_tag(&ig.port),
                ),
            ));
        }
    }
    check_contradictions(loc, c, f, containers.as_deref(), rl_names.as_deref(), &mut errs);
    errs
}

/// ` (the default)` after a value the user did not write, so that a message about a key
/// the file does not mention says where its value came from.
fn default_tag<T>(v: &Val<T>) -> &'static str {
    if v.span.is_none() { " (the default)" } else { "" }
}

/// `route_localnet.enable` as it would be written.
fn route_localnet_text(rl: &RouteLocalnet) -> String {
    match rl {
        RouteLocalnet::Off => "\"off\"".into(),
        RouteLocalnet::All => "\"all\"".into(),
        RouteLocalnet::Interfaces(list) => {
            let names: Vec<String> = list.iter().map(|n| format!("\"{}\"", n.get_ref().escape_default())).collect();
            format!("[{}]", names.join(", "))
        }
    }
}

/// Settings that are each valid but contradict each other: the agent is told to hand out
/// credentials on a path ecs-hostnet does not make, route_localnet is turned on where no
/// DNAT to 127.0.0.0/8 needs it (it then serves nothing and only makes the host's
/// 127.0.0.1 services routable from outside, CVE-2020-8558), or the credentials endpoint
/// is the IMDS address. `containers` and `rl_names` are the parsed patterns of
/// `containers.interfaces` and of a `route_localnet.enable` list, when all are valid.
///
/// A check that involves a key that could not be read is skipped, as in
/// [`check_consistency`]. Whether a container pattern matches the host's uplink needs the
/// host: `plan`, `check` and `apply` refuse that (`crate::plan::uplink`).
fn check_contradictions(
    loc: &Located,
    c: &Config,
    f: &Failed,
    containers: Option<&[IfPattern]>,
    rl_names: Option<&[IfPattern]>,
    errs: &mut Vec<ConfigError>,
) {
    let ok = |keys: &[bool]| !keys.contains(&true);
    let (cred, fc, agent, fa) = (&c.credentials, &f.credentials, &c.agent, &f.agent);
    let endpoint = cred.endpoint_address.v.0;
    // The agent keys reach ecs.config only when ecs-hostnet manages it. Otherwise they are
    // never read, and whatever ecs.config says is not ecs-hostnet's to judge: refusing
    // would make people flip a default that has no effect.
    let manages = ok(&[fa.manage_ecs_config]) && agent.manage_ecs_config.v;
    let network_host = &agent.enable_task_iam_role_network_host;
    if manages
        && ok(&[fc.enabled, fc.redirect_host_traffic, fa.enable_task_iam_role_network_host])
        && cred.enabled.v
        && !cred.redirect_host_traffic.v
        && network_host.v
    {
        errs.push(loc.err(
            cred.redirect_host_traffic.span.clone().or(network_host.span.clone()),
            format!(
                "credentials.redirect_host_traffic = false, but agent.enable_task_iam_role_network_host = true{} \
                 has ecs-hostnet tell the ECS agent (ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST) to give host-network-mode \
                 tasks credentials at {endpoint}, which they cannot reach without the REDIRECT; set \
                 redirect_host_traffic = true, or agent.enable_task_iam_role_network_host = false",
                default_tag(network_host)
            ),
        ));
    }
    if manages && ok(&[fc.enabled]) && !cred.enabled.v {
        let keys = [
            (
                "enable_task_iam_role",
                &agent.enable_task_iam_role,
                fa.enable_task_iam_role,
                "ECS_ENABLE_TASK_IAM_ROLE",
                "bridge-mode and awsvpc tasks",
                "DNAT",
            ),
            (
                "enable_task_iam_role_network_host",
                network_host,
                fa.enable_task_iam_role_network_host,
                "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST",
                "host-network-mode tasks",
                "REDIRECT",
            ),
        ];
        for (key, val, failed, setting, tasks, rule) in keys {
            if failed || !val.v {
                continue;
            }
            errs.push(loc.err(
                val.span.clone().or(cred.enabled.span.clone()),
                format!(
                    "agent.{key} = true{} has ecs-hostnet tell the ECS agent ({setting}) to give {tasks} \
                     credentials at {endpoint}, but credentials.enabled = false: no {rule} takes them to the \
                     agent; set agent.{key} = false, or credentials.enabled = true (or, when another tool serves \
                     the endpoint, agent.manage_ecs_config = false)",
                    default_tag(val)
                ),
            ));
        }
    }
    let rl = &c.route_localnet.enable;
    let rl_on = match &rl.v {
        RouteLocalnet::Off => false,
        RouteLocalnet::All => true,
        // A list with a bad name has its own error.
        RouteLocalnet::Interfaces(_) => rl_names.is_some(),
    };
    let agent_addr = cred.agent_address.v.0;
    // An agent address that cannot receive a DNAT has its own error.
    let dnat_target = !(agent_addr.is_unspecified() || agent_addr.is_multicast() || agent_addr.is_broadcast());
    let rl_is = format!("route_localnet.enable = {}{}", route_localnet_text(&rl.v), default_tag(rl));
    let exposes =
        "route_localnet only makes the host's 127.0.0.1 services routable from other interfaces (CVE-2020-8558)";
    if ok(&[f.route_localnet.enable]) && rl_on {
        if ok(&[fc.enabled]) && !cred.enabled.v {
            errs.push(loc.err(
                rl.span.clone().or(cred.enabled.span.clone()),
                format!(
                    "{rl_is} turns route_localnet on, but credentials.enabled = false: route_localnet is there \
                     only for the credentials DNAT to {agent_addr}; without that DNAT, {exposes}; set \
                     route_localnet.enable = \"off\""
                ),
            ));
        } else if ok(&[fc.enabled, fc.agent_address]) && !agent_addr.is_loopback() && dnat_target {
            errs.push(loc.err(
                rl.span.clone().or(cred.agent_address.span.clone()),
                format!(
                    "{rl_is} turns route_localnet on, but credentials.agent_address {agent_addr} is not a \
                     loopback address: route_localnet is needed only for a DNAT to 127.0.0.0/8; here {exposes}; \
                     set route_localnet.enable = \"off\""
                ),
            ));
        } else if let (true, Some(names), Some(containers), RouteLocalnet::Interfaces(list)) =
            (ok(&[fc.enabled, fc.agent_address]), rl_names, containers, &rl.v)
        {
            for (name, written) in names.iter().zip(list) {
                if containers.iter().any(|p| p.matches(name.as_str())) {
                    continue;
                }
                errs.push(loc.err(
                    rl.span.as_ref().map(|_| written.span()),
                    format!(
                        "route_localnet.enable: \"{name}\" matches none of containers.interfaces: no credentials \
                         DNAT arrives on {name}, so route_localnet there only makes the host's 127.0.0.1 services \
                         routable from it (CVE-2020-8558); list only container interfaces (e.g. \"docker0\"), or \
                         add it to containers.interfaces if containers use it",
                        name = name.as_str()
                    ),
                ));
            }
        }
    }
    let imds = &c.imds_block;
    if ok(&[fc.enabled, fc.endpoint_address, f.imds_block.enabled, f.imds_block.ipv4_address])
        && cred.enabled.v
        && imds.enabled.v
        && endpoint == imds.ipv4_address.v.0
    {
        errs.push(loc.err(
            cred.endpoint_address.span.clone().or(imds.ipv4_address.span.clone()),
            format!(
                "credentials.endpoint_address and imds_block.ipv4_address are both {endpoint}: the credentials \
                 DNAT would take the containers' IMDS traffic to the ECS agent before the IMDS block sees it; the \
                 ECS credentials endpoint is 169.254.170.2, IMDS is 169.254.169.254"
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::errors;

    /// Credentials off, with everything that only served them off too.
    const CREDENTIALS_OFF: &str = "[credentials]\nenabled = false\n[route_localnet]\nenable = \"off\"\n\
                                   [agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n";

    #[test]
    fn no_redirect_while_the_agent_serves_host_network_tasks_is_refused_at_the_redirect() {
        let e = errors("[credentials]\nredirect_host_traffic = false\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "f.toml:2:25: credentials.redirect_host_traffic = false, but agent.enable_task_iam_role_network_host = \
                 true (the default) has ecs-hostnet tell the ECS agent (ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST)"
            ),
            "{e:?}"
        );
        assert!(e[0].ends_with("set redirect_host_traffic = true, or agent.enable_task_iam_role_network_host = false"));
        // Either fix is accepted.
        assert_eq!(
            errors(
                "[credentials]\nredirect_host_traffic = false\n[agent]\nenable_task_iam_role_network_host = false\n"
            ),
            Vec::<String>::new()
        );
        // ecs-hostnet does not write the agent's keys: not its contradiction.
        assert_eq!(
            errors("[credentials]\nredirect_host_traffic = false\n[agent]\nmanage_ecs_config = false\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn credentials_off_refuses_what_only_served_them_each_at_its_own_place() {
        let e = errors("[credentials]\nenabled = false\n");
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e.iter().all(|m| m.starts_with("f.toml:2:11: ")), "{e:?}");
        assert!(e[0].contains("agent.enable_task_iam_role = true (the default) has ecs-hostnet tell the ECS agent (ECS_ENABLE_TASK_IAM_ROLE)"), "{e:?}");
        assert!(e[0].contains("no DNAT takes them to the agent"), "{e:?}");
        assert!(e[1].contains("agent.enable_task_iam_role_network_host = true (the default)"), "{e:?}");
        assert!(e[1].contains("no REDIRECT takes them to the agent"), "{e:?}");
        assert!(
            e[2].contains(
                "route_localnet.enable = \"all\" (the default) turns route_localnet on, but credentials.enabled = false"
            ),
            "{e:?}"
        );
        assert!(e[2].ends_with("set route_localnet.enable = \"off\""), "{e:?}");
        // Written keys are pointed at where they are written.
        let e = errors(
            "[credentials]\nenabled = false\n[route_localnet]\nenable = [\"docker0\"]\n[agent]\nenable_task_iam_role = true\n\
             enable_task_iam_role_network_host = false\n",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("f.toml:4:10: route_localnet.enable = [\"docker0\"] turns route_localnet on"),
            "{e:?}"
        );
        assert!(e[1].starts_with("f.toml:6:24: agent.enable_task_iam_role = true has ecs-hostnet"), "{e:?}");
        assert_eq!(errors(CREDENTIALS_OFF), Vec::<String>::new());
        let unmanaged =
            "[credentials]\nenabled = false\n[route_localnet]\nenable = \"off\"\n[agent]\nmanage_ecs_config = false\n";
        assert_eq!(errors(unmanaged), Vec::<String>::new());
    }

    #[test]
    fn route_localnet_without_a_dnat_to_loopback_is_refused() {
        let e = errors("[credentials]\nagent_address = \"10.0.0.5\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "f.toml:2:17: route_localnet.enable = \"all\" (the default) turns route_localnet on, but \
                 credentials.agent_address 10.0.0.5 is not a loopback address"
            ),
            "{e:?}"
        );
        assert_eq!(
            errors("[credentials]\nagent_address = \"10.0.0.5\"\n[route_localnet]\nenable = \"off\"\n"),
            Vec::<String>::new()
        );
        // An agent address that cannot receive a DNAT has its own error, and only that.
        let e = errors("[credentials]\nagent_address = \"0.0.0.0\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].contains("cannot receive a DNAT"), "{e:?}");
    }

    #[test]
    fn route_localnet_on_an_interface_no_container_pattern_matches_is_refused_at_that_name() {
        let e = errors("[route_localnet]\nenable = [\"docker0\", \"eth0\", \"ecs-bridge\", \"lo\"]\n");
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with("f.toml:2:22: route_localnet.enable: \"eth0\" matches none of containers.interfaces"),
            "{e:?}"
        );
        assert!(e[1].starts_with("f.toml:2:44: route_localnet.enable: \"lo\" matches none"), "{e:?}");
        assert_eq!(
            errors("[route_localnet]\nenable = [\"docker0\", \"br-1\", \"ecs-bridge\"]\n"),
            Vec::<String>::new()
        );
        // A bad list has its own errors only.
        let e = errors("[route_localnet]\nenable = [\"eth0\", \"a/b\"]\n");
        assert_eq!(e.len(), 1, "{e:?}");
        // So has a bad containers.interfaces.
        let e = errors("[containers]\ninterfaces = [\"a/b\"]\n[route_localnet]\nenable = [\"eth0\"]\n");
        assert_eq!(e.len(), 1, "{e:?}");
    }

    #[test]
    fn the_credentials_endpoint_cannot_be_the_imds_address() {
        let e = errors("[credentials]\nendpoint_address = \"169.254.169.254\"\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "f.toml:2:20: credentials.endpoint_address and imds_block.ipv4_address are both 169.254.169.254"
            ),
            "{e:?}"
        );
        assert_eq!(
            errors("[credentials]\nendpoint_address = \"169.254.169.254\"\n[imds_block]\nenabled = false\n"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_credentials_port_on_the_introspection_port_is_refused_guard_on_or_off() {
        for guard in ["true", "false"] {
            let e = errors(&format!("[credentials]\nagent_port = 51678\n[introspection_guard]\nenabled = {guard}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(
                    "f.toml:2:14: credentials.agent_port and introspection_guard.port (the default) are both 51678: \
                     the credentials DNAT would send containers to the agent's introspection API"
                ),
                "{e:?}"
            );
            let e =
                errors(&format!("[credentials]\nendpoint_port = 51678\n[introspection_guard]\nenabled = {guard}\n"));
            assert_eq!(e.len(), 1, "{e:?}");
            assert!(
                e[0].starts_with(
                    "f.toml:2:17: credentials.endpoint_port and introspection_guard.port (the default) are both 51678"
                ),
                "{e:?}"
            );
        }
        // Written on the guard's side, the message points there.
        let e = errors("[introspection_guard]\nport = 80\n");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(
                "f.toml:2:8: credentials.endpoint_port (the default) and introspection_guard.port are both 80"
            ),
            "{e:?}"
        );
        // Credentials off: no credentials target, nothing to refuse.
        assert_eq!(
            errors(&CREDENTIALS_OFF.replace("enabled = false\n", "enabled = false\nagent_port = 51678\n")),
            Vec::<String>::new()
        );
    }

    #[test]
    fn contradiction_checks_involving_an_unreadable_value_are_skipped() {
        for text in [
            "[credentials]\nenabled = \"no\"\n",
            "[credentials]\nredirect_host_traffic = 0\n",
            "[credentials]\nenabled = false\n[agent]\nmanage_ecs_config = \"no\"\n[route_localnet]\nenable = 1\n",
            "[credentials]\nagent_address = \"10.0.0.300\"\n",
        ] {
            let e = errors(text);
            assert_eq!(e.len(), 1 + usize::from(text.contains("enable = 1")), "{text:?}: {e:?}");
            assert!(e.iter().all(|m| m.contains("invalid type") || m.contains("is not")), "{text:?}: {e:?}");
        }
    }
}
