//! The check that needs the host: no container interface pattern may match the host's
//! uplink, the interface its IPv4 or IPv6 default route leaves through (pure).
//!
//! `containers.interfaces` names where container traffic arrives. A pattern that also
//! matches the uplink (`br-+` on a host whose default route leaves through `br-lan`)
//! turns the rules against the host's neighbours: the credentials DNAT hands their
//! requests for the credentials endpoint to the ECS agent, and the IMDS block drops what
//! is forwarded from them to IMDS. Validation cannot see this (it does not know the host);
//! `plan`, `check` and `apply` refuse it here, before the kernel is touched.

use crate::desired::{ContainerInterfaces, Desired};
use crate::model::ifpattern::IfPattern;
use crate::model::route::{IpFamily, Uplink};
use std::fmt;

/// A container interface pattern that matches an uplink, and which rules would match it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkConflict {
    /// The pattern as written in `containers.interfaces` (`br-+`).
    pub pattern: String,
    /// The uplink it matches (`br-lan`).
    pub interface: String,
    /// The families whose default route leaves through it, IPv4 first.
    pub families: Vec<IpFamily>,
    /// The credentials DNAT would serve packets arriving on it.
    pub dnat: bool,
    /// The IMDS block would drop packets forwarded from it (it is not excluded).
    pub imds_block: bool,
}

impl fmt::Display for UplinkConflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (pattern, uplink) = (&self.pattern, &self.interface);
        let families: Vec<String> = self.families.iter().map(IpFamily::to_string).collect();
        let routes = if families.len() > 1 { "routes" } else { "route" };
        write!(
            f,
            "containers.interfaces \"{pattern}\" matches {uplink}, the interface of this host's {} default {routes} \
             (its uplink): ",
            families.join(" and ")
        )?;
        if self.dnat {
            write!(
                f,
                "the credentials DNAT would hand requests for the credentials endpoint from every neighbour on {uplink} to the ECS agent"
            )?;
            if self.imds_block {
                write!(f, ", and the IMDS block would drop traffic forwarded from {uplink} to IMDS")?;
            }
        } else {
            write!(f, "the IMDS block would drop traffic forwarded from {uplink} to IMDS")?;
        }
        if pattern.ends_with('+') {
            write!(
                f,
                "; narrow the pattern (a longer prefix, or the container bridges by name) so that it does not match {uplink}"
            )?;
        } else {
            write!(f, "; remove \"{pattern}\" from containers.interfaces")?;
        }
        if !self.dnat {
            write!(f, ", or add \"{uplink}\" to imds_block.exclude_interfaces")?;
        }
        Ok(())
    }
}

/// Every [`UplinkConflict`] of a configuration on a host (at least one); one line, the
/// conflicts separated by `; also: `.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct UplinkConflicts(pub Vec<UplinkConflict>);

impl fmt::Display for UplinkConflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; also: ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// Checks `desired`'s container interface patterns against the host's `uplinks`.
///
/// Errors: [`UplinkConflicts`], one per (pattern, uplink) pair where the DNAT matches, or
/// the IMDS block matches and no `imds_block.exclude_interfaces` entry covers the uplink.
/// An IMDS exclusion does not help against the DNAT: it only leaves the IMDS block.
pub fn check(desired: &Desired, uplinks: &[Uplink]) -> Result<(), UplinkConflicts> {
    let conflicts = conflicts(&desired.container_interfaces, uplinks);
    if conflicts.is_empty() { Ok(()) } else { Err(UplinkConflicts(conflicts)) }
}

fn conflicts(ci: &ContainerInterfaces, uplinks: &[Uplink]) -> Vec<UplinkConflict> {
    let mut out: Vec<UplinkConflict> = Vec::new();
    for p in &ci.patterns {
        for u in uplinks.iter().filter(|u| p.matches(&u.interface)) {
            if let Some(c) = out.iter_mut().find(|c| c.pattern == p.as_str() && c.interface == u.interface) {
                if !c.families.contains(&u.family) {
                    c.families.push(u.family);
                    c.families.sort();
                }
                continue;
            }
            let excluded = ci.imds_exclusions.iter().any(|e: &IfPattern| e.matches(&u.interface));
            let imds_block = ci.imds_block && !excluded;
            if ci.dnat || imds_block {
                out.push(UplinkConflict {
                    pattern: p.as_str().to_string(),
                    interface: u.interface.clone(),
                    families: vec![u.family],
                    dnat: ci.dnat,
                    imds_block,
                });
            }
        }
    }
    out
}

/// The one line `validate` prints instead of this check, when the configuration has
/// prefix patterns in use (an exact name is as clear in the file as on the host): which
/// patterns, and who checks them.
pub fn not_checked_note(desired: &Desired) -> Option<String> {
    let prefixes: Vec<&str> =
        desired.container_interfaces.patterns.iter().filter(|p| p.is_prefix()).map(IfPattern::as_str).collect();
    (!prefixes.is_empty()).then(|| {
        format!(
            "containers.interfaces has prefix patterns ({}): whether one matches a host's uplink (the interface \
             of its default route) is checked by plan, check and apply on that host, not here",
            prefixes.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use crate::desired::compile;

    fn desired(text: &str) -> Desired {
        compile(&parse("f.toml", text).unwrap_or_else(|e| panic!("{e}")))
    }

    fn up(family: IpFamily, name: &str) -> Uplink {
        Uplink { family, interface: name.to_string() }
    }

    #[test]
    fn a_pattern_matching_the_ipv4_uplink_is_refused_with_the_pattern_the_interface_and_the_fix() {
        let d = desired("");
        let e = check(&d, &[up(IpFamily::Ipv4, "br-lan")]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(
            e.to_string(),
            "containers.interfaces \"br-+\" matches br-lan, the interface of this host's IPv4 default route \
             (its uplink): the credentials DNAT would hand requests for the credentials endpoint from every \
             neighbour on br-lan to the ECS agent, and the IMDS block would drop traffic forwarded from br-lan to \
             IMDS; narrow the pattern (a longer prefix, or the container bridges by name) so that it does not \
             match br-lan"
        );
    }

    #[test]
    fn both_families_through_one_uplink_make_one_conflict() {
        let d = desired("");
        let e = check(&d, &[up(IpFamily::Ipv6, "docker9"), up(IpFamily::Ipv4, "docker9")]).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        assert_eq!(e.0[0].families, [IpFamily::Ipv4, IpFamily::Ipv6]);
        assert!(
            e.to_string()
                .contains("\"docker+\" matches docker9, the interface of this host's IPv4 and IPv6 default routes"),
            "{e}"
        );
    }

    #[test]
    fn an_ipv6_only_uplink_is_checked_too() {
        let e = check(&desired(""), &[up(IpFamily::Ipv6, "ecs-bridge")]).unwrap_err();
        assert!(e.to_string().contains("IPv6 default route"), "{e}");
        // An exact name: the fix is to remove it.
        assert!(e.to_string().ends_with("; remove \"ecs-bridge\" from containers.interfaces"), "{e}");
    }

    #[test]
    fn an_uplink_no_pattern_matches_passes() {
        let d = desired("");
        assert_eq!(check(&d, &[up(IpFamily::Ipv4, "eth0"), up(IpFamily::Ipv6, "ens5")]), Ok(()));
        assert_eq!(check(&d, &[]), Ok(()));
        // A narrowed pattern no longer matches.
        let d = desired("[containers]\ninterfaces = [\"docker+\", \"br-0\", \"ecs-bridge\"]\n");
        assert_eq!(check(&d, &[up(IpFamily::Ipv4, "br-lan")]), Ok(()));
    }

    #[test]
    fn with_the_credentials_off_an_imds_exclusion_resolves_it_and_the_message_says_so() {
        let off = "[credentials]\nenabled = false\n[route_localnet]\nenable = \"off\"\n\
                   [agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n";
        let e = check(&desired(off), &[up(IpFamily::Ipv4, "br-lan")]).unwrap_err();
        let text = e.to_string();
        assert!(!text.contains("DNAT"), "{text}");
        assert!(text.contains("the IMDS block would drop traffic forwarded from br-lan to IMDS"), "{text}");
        assert!(text.ends_with("or add \"br-lan\" to imds_block.exclude_interfaces"), "{text}");
        let excluded = format!("{off}[imds_block]\nexclude_interfaces = [\"br-lan\"]\n");
        assert_eq!(check(&desired(&excluded), &[up(IpFamily::Ipv4, "br-lan")]), Ok(()));
    }

    #[test]
    fn an_imds_exclusion_does_not_excuse_the_dnat() {
        let d = desired("[imds_block]\nexclude_interfaces = [\"br-lan\"]\n");
        let e = check(&d, &[up(IpFamily::Ipv4, "br-lan")]).unwrap_err();
        assert!(e.0[0].dnat && !e.0[0].imds_block, "{e:?}");
        assert!(!e.to_string().contains("IMDS"), "{e}");
    }

    #[test]
    fn no_rule_matching_container_interfaces_means_no_conflict() {
        let d = desired(
            "[credentials]\nenabled = false\n[route_localnet]\nenable = \"off\"\n[imds_block]\nenabled = false\n\
             [agent]\nenable_task_iam_role = false\nenable_task_iam_role_network_host = false\n",
        );
        assert_eq!(check(&d, &[up(IpFamily::Ipv4, "br-lan")]), Ok(()));
        assert_eq!(not_checked_note(&d), None);
    }

    #[test]
    fn every_conflict_is_named() {
        let d = desired("[containers]\ninterfaces = [\"br-+\", \"eth+\"]\n");
        let e = check(&d, &[up(IpFamily::Ipv4, "br-lan"), up(IpFamily::Ipv6, "eth1")]).unwrap_err();
        assert_eq!(e.0.len(), 2, "{e}");
        assert!(e.to_string().contains("; also: containers.interfaces \"eth+\" matches eth1"), "{e}");
    }

    #[test]
    fn validate_names_the_prefix_patterns_it_cannot_check() {
        let note = not_checked_note(&desired("")).unwrap();
        assert!(note.starts_with("containers.interfaces has prefix patterns (\"docker+\", \"br-+\"): "), "{note}");
        assert_eq!(not_checked_note(&desired("[containers]\ninterfaces = [\"docker0\"]\n")), None);
    }
}
