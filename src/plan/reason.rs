//! Why a change is made ([`Reason`]) and what a person should know besides the changes
//! ([`Note`]), as values named by meaning.
//!
//! Code decides on the variant (`matches!`), never on the text. The text is each value's
//! `Display`: what `plan` prints after a change (`# missing`) and as a `note:` line, and
//! the `reason` and `notes` strings of the JSON plan (`docs/json.md`), which serialize as
//! that same text.

use crate::model::names::sysctl_name;
use crate::model::route::{LiveRoute, RouteSpec};
use serde::{Serialize, Serializer};
use std::fmt;

/// Why a change is made (see [`crate::plan::change::Change::reason`]). Each variant's
/// text is given in its docs; distinct values have distinct texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// `missing`: a table, chain, rule or route the configuration wants is not there.
    Missing,
    /// `missing: no IPv4 default route, host-network-mode tasks need it`: the endpoint
    /// route under `endpoint_route_via_lo = "auto"`.
    MissingNoIpv4DefaultRoute,
    /// `not needed: the host has an IPv4 default route`: the `auto` endpoint route of ours
    /// once an IPv4 default route exists.
    Ipv4DefaultRouteExists,
    /// `no longer in the configuration`: a table, chain, rule or route of ours the
    /// configuration dropped.
    NoLongerConfigured,
    /// `replaced by the current form`: an endpoint route of ours in a form an older
    /// ecs-hostnet made, to the same destination.
    ReplacedByCurrentForm,
    /// `ecs-hostnet remove`: every change of [`crate::plan::plan_removal`].
    RemoveCommand,
    /// `changed by someone; set once the rule set is live, `remove` restores ORIGINAL`:
    /// a route_localnet we set and recorded is no longer 1.
    SysctlChangedBySomeone {
        /// The value recorded before ecs-hostnet set it.
        original: String,
    },
    /// `not set yet; set once the rule set is live, `remove` restores ORIGINAL`: a
    /// route_localnet the configuration wants, not set before.
    SysctlNotSetYet {
        /// The value found now, recorded for `remove`.
        original: String,
    },
    /// `no longer in the configuration: back to the value found before ecs-hostnet set
    /// it`: a recorded route_localnet the configuration dropped.
    SysctlRestored,
    /// `recreated in the same transaction`: a table whose differences cannot be corrected
    /// in place (the change's `details` say which).
    TableRecreated,
    /// `not ecs-hostnet's`: someone else's chain in our table, gone with its recreate.
    ForeignChain,
    /// `modified by someone: policy LIVE -> WANTED, HOW`: a base chain whose policy alone
    /// was changed; HOW is `updated in place` or `restored by the recreate`.
    PolicyModified {
        /// The live policy is `accept` (else `drop`).
        live_accept: bool,
        /// The desired policy is `accept` (else `drop`).
        want_accept: bool,
        /// Corrected in place (else by recreating the table).
        in_place: bool,
    },
    /// `added by someone (no ecs-hostnet id)`: a rule without a comment in our chain.
    ForeignRuleWithoutId,
    /// `added by someone (not an ecs-hostnet id)`: a rule with a foreign comment in our
    /// chain.
    ForeignRuleWithForeignId,
    /// `in the wrong chain (ecs-hostnet puts it in chain CHAIN)`: a copy of one of our
    /// rules in another chain of ours.
    WrongChain {
        /// The chain the rule belongs in.
        belongs_in: String,
    },
    /// `duplicate copy`: a second copy of a rule that is kept.
    DuplicateCopy,
    /// `duplicate copy, modified by someone`: a further copy of a rule, with other
    /// expressions.
    ModifiedDuplicateCopy,
    /// `out of order`: a correct rule moved to its place (deleted and inserted again).
    OutOfOrder,
    /// `differs from the configuration`: a rule of ours with other expressions, or the
    /// ecs-init hook as install wrote it for the other `boot.agent_on_error`.
    DiffersFromConfiguration,
    /// `missing: deleted by someone`: a file install wrote is gone.
    FileDeleted,
    /// `modified by someone`: a file install wrote was changed.
    FileModified,
    /// `missing: the boot unit is not enabled`: the enablement symlink is gone.
    BootUnitNotEnabled,
    /// `agent settings differ from the configuration`: ecs.config's agent keys.
    AgentSettingsDiffer,
    /// `mode MODE owner UID:GID, not 0755 root:root (the units run it as root)`: the
    /// installed binary's mode or owner.
    BinaryModeOrOwner {
        /// Its permission bits now.
        mode: u32,
        /// Its owner now.
        uid: u32,
        /// Its group now.
        gid: u32,
    },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let policy = |accept: bool| if accept { "accept" } else { "drop" };
        match self {
            Reason::Missing => f.write_str("missing"),
            Reason::MissingNoIpv4DefaultRoute => {
                f.write_str("missing: no IPv4 default route, host-network-mode tasks need it")
            }
            Reason::Ipv4DefaultRouteExists => f.write_str("not needed: the host has an IPv4 default route (auto)"),
            Reason::NoLongerConfigured => f.write_str("no longer in the configuration"),
            Reason::ReplacedByCurrentForm => f.write_str("replaced by the current form"),
            Reason::RemoveCommand => f.write_str("ecs-hostnet remove"),
            Reason::SysctlChangedBySomeone { original } => {
                write!(f, "changed by someone; set once the rule set is live, `remove` restores {original}")
            }
            Reason::SysctlNotSetYet { original } => {
                write!(f, "not set yet; set once the rule set is live, `remove` restores {original}")
            }
            Reason::SysctlRestored => {
                f.write_str("no longer in the configuration: back to the value found before ecs-hostnet set it")
            }
            Reason::TableRecreated => f.write_str("recreated in the same transaction"),
            Reason::ForeignChain => f.write_str("not ecs-hostnet's"),
            Reason::PolicyModified { live_accept, want_accept, in_place } => write!(
                f,
                "modified by someone: policy {} -> {}, {}",
                policy(*live_accept),
                policy(*want_accept),
                if *in_place { "updated in place" } else { "restored by the recreate" }
            ),
            Reason::ForeignRuleWithoutId => f.write_str("added by someone (no ecs-hostnet id)"),
            Reason::ForeignRuleWithForeignId => f.write_str("added by someone (not an ecs-hostnet id)"),
            Reason::WrongChain { belongs_in } => {
                write!(f, "in the wrong chain (ecs-hostnet puts it in chain {belongs_in})")
            }
            Reason::DuplicateCopy => f.write_str("duplicate copy"),
            Reason::ModifiedDuplicateCopy => f.write_str("duplicate copy, modified by someone"),
            Reason::OutOfOrder => f.write_str("out of order"),
            Reason::DiffersFromConfiguration => f.write_str("differs from the configuration"),
            Reason::FileDeleted => f.write_str("missing: deleted by someone"),
            Reason::FileModified => f.write_str("modified by someone"),
            Reason::BootUnitNotEnabled => f.write_str("missing: the boot unit is not enabled"),
            Reason::AgentSettingsDiffer => f.write_str("agent settings differ from the configuration"),
            Reason::BinaryModeOrOwner { mode, uid, gid } => {
                write!(f, "mode {mode:04o} owner {uid}:{gid}, not 0755 root:root (the units run it as root)")
            }
        }
    }
}

/// A JSON string: the `Display` text.
impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Something a person should know that is not a change (see [`crate::plan::Plan::notes`]).
/// Each variant's text is given in its docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// `sysctl and route changes are those of a model host: ...`: `diff OLD NEW` planned
    /// sysctl or route changes against a model host, not a real one.
    ModelHost,
    /// `the localhost guard is off while SYSCTLS is on: ... (CVE-2020-8558); ...`: the
    /// configuration sets route_localnet without the guard.
    GuardOff {
        /// The route_localnet selectors the configuration sets.
        selectors: Vec<String>,
    },
    /// `route_localnet is on (SYSCTLS) but no localhost guard is live: ...`: the host is
    /// exposed now, until apply. `remove` drops this note: it puts route_localnet back.
    ExposedUntilApply {
        /// The route_localnet selectors that are 1.
        selectors: Vec<String>,
    },
    /// `a route ROUTE already leads to the endpoint; WANTED is not added`: someone
    /// else's route to the credentials endpoint.
    EndpointRouteTaken {
        /// The route in place.
        route: LiveRoute,
        /// The endpoint route not added.
        wanted: RouteSpec,
    },
    /// `route WANTED is wanted but lo is down (a fresh network namespace?): ...`.
    LoDown {
        /// The endpoint route not added.
        wanted: RouteSpec,
    },
    /// `interface SELECTOR does not exist, so SYSCTL is not set; ...`.
    InterfaceMissing {
        /// The route_localnet selector (an interface name).
        selector: String,
    },
    /// `SYSCTL is already 1 and no earlier value is recorded ...: 1 is recorded, so
    /// `remove` will leave it at 1`.
    AlreadyOneUnrecorded {
        /// The route_localnet selector.
        selector: String,
    },
    /// `agent.manage_ecs_config is turned on: apply does not change /etc/ecs/ecs.config
    /// on a host installed without it; ...` (`diff OLD NEW`).
    ManageEcsConfigTurnedOn,
    /// `agent.manage_ecs_config is turned off: apply leaves /etc/ecs/ecs.config as it
    /// is; ...` (`diff OLD NEW`).
    ManageEcsConfigTurnedOff,
    /// `the IMDS block covers bridge-mode containers only. ...`: what `plan` says when the
    /// IMDS block is on.
    ImdsBlockScope,
    /// `the snapshot does not name the interfaces of the host's default routes ...`:
    /// `plan --against` a snapshot taken by an older ecs-hostnet could not check that no
    /// container interface pattern matches the host's uplink ([`crate::plan::uplink`]).
    UplinkNotChecked,
}

/// `SYSCTL, SYSCTL, ...`: the route_localnet sysctl of each selector.
fn sysctls(f: &mut fmt::Formatter<'_>, selectors: &[String]) -> fmt::Result {
    for (i, sel) in selectors.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        f.write_str(&sysctl_name(sel))?;
    }
    Ok(())
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::desired::install_files::ECS_CONFIG_PATH;
        match self {
            Note::ModelHost => f.write_str(
                "sysctl and route changes are those of a model host: it has an IPv4 default route, every interface \
                 named exists, and route_localnet was 0 before ecs-hostnet; `plan --against` a snapshot shows a real host",
            ),
            Note::GuardOff { selectors } => {
                f.write_str("the localhost guard is off while ")?;
                sysctls(f, selectors)?;
                f.write_str(
                    " is on: every 127.0.0.1 service of the host is reachable from \
                     its L2 neighbours (CVE-2020-8558); localhost_guard.i_accept_that_route_localnet_exposes_localhost_services = true accepts that",
                )
            }
            Note::ExposedUntilApply { selectors } => {
                f.write_str("route_localnet is on (")?;
                sysctls(f, selectors)?;
                f.write_str(
                    ") but no localhost guard is live: 127.0.0.1 services are reachable from neighbours until apply",
                )
            }
            Note::EndpointRouteTaken { route, wanted } => {
                write!(f, "a route {route} already leads to the endpoint; {wanted} is not added")
            }
            Note::LoDown { wanted } => write!(
                f,
                "route {wanted} is wanted but lo is down (a fresh network namespace?): not added; bring lo up and apply again"
            ),
            Note::InterfaceMissing { selector } => write!(
                f,
                "interface {selector} does not exist, so {} is not set; run apply again once it exists",
                sysctl_name(selector)
            ),
            Note::AlreadyOneUnrecorded { selector } => write!(
                f,
                "{} is already 1 and no earlier value is recorded (first run on a host where something else set it, \
                 or our tables were flushed by someone): 1 is recorded, so `remove` will leave it at 1",
                sysctl_name(selector)
            ),
            Note::ManageEcsConfigTurnedOn => write!(
                f,
                "agent.manage_ecs_config is turned on: apply does not change {ECS_CONFIG_PATH} on a host installed \
                 without it; run `ecs-hostnet install` there"
            ),
            Note::ManageEcsConfigTurnedOff => write!(
                f,
                "agent.manage_ecs_config is turned off: apply leaves {ECS_CONFIG_PATH} as it is; `ecs-hostnet \
                 uninstall` puts back the values found before install"
            ),
            Note::UplinkNotChecked => f.write_str(
                "the snapshot does not name the interfaces of the host's default routes (an older ecs-hostnet took \
                 it): whether containers.interfaces matches the host's uplink was not checked; take a new snapshot",
            ),
            Note::ImdsBlockScope => f.write_str(
                "the IMDS block covers bridge-mode containers only. Host-network-mode tasks share the \
                 instance's network identity: their packets to IMDS cross no hop, so neither this block nor \
                 an IMDSv2 hop limit stops them from reading the instance role. Give them task roles \
                 (agent.enable_task_iam_role_network_host) so that none needs it, cut the instance role down to \
                 what the ECS agent needs, and run no untrusted task in host network mode; awsvpc tasks get \
                 blackhole routes (ECS_AWSVPC_BLOCK_IMDS=true, or `ecs-hostnet task apply`).",
            ),
        }
    }
}

/// A JSON string: the `Display` text.
impl Serialize for Note {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::route::RouteKind;

    /// Each text as the planner wrote it before reasons and notes were values: the plan's
    /// text and JSON output must not change.
    #[test]
    fn texts_are_the_plans_words() {
        let r = |r: Reason| r.to_string();
        assert_eq!(r(Reason::Missing), "missing");
        assert_eq!(
            r(Reason::MissingNoIpv4DefaultRoute),
            "missing: no IPv4 default route, host-network-mode tasks need it"
        );
        assert_eq!(r(Reason::NoLongerConfigured), "no longer in the configuration");
        assert_eq!(r(Reason::Ipv4DefaultRouteExists), "not needed: the host has an IPv4 default route (auto)");
        assert_eq!(r(Reason::ReplacedByCurrentForm), "replaced by the current form");
        assert_eq!(r(Reason::RemoveCommand), "ecs-hostnet remove");
        assert_eq!(
            r(Reason::SysctlChangedBySomeone { original: "0".into() }),
            "changed by someone; set once the rule set is live, `remove` restores 0"
        );
        assert_eq!(
            r(Reason::SysctlNotSetYet { original: "0".into() }),
            "not set yet; set once the rule set is live, `remove` restores 0"
        );
        assert_eq!(
            r(Reason::SysctlRestored),
            "no longer in the configuration: back to the value found before ecs-hostnet set it"
        );
        assert_eq!(r(Reason::TableRecreated), "recreated in the same transaction");
        assert_eq!(r(Reason::ForeignChain), "not ecs-hostnet's");
        assert_eq!(
            r(Reason::PolicyModified { live_accept: false, want_accept: true, in_place: true }),
            "modified by someone: policy drop -> accept, updated in place"
        );
        assert_eq!(
            r(Reason::PolicyModified { live_accept: true, want_accept: false, in_place: false }),
            "modified by someone: policy accept -> drop, restored by the recreate"
        );
        assert_eq!(r(Reason::ForeignRuleWithoutId), "added by someone (no ecs-hostnet id)");
        assert_eq!(r(Reason::ForeignRuleWithForeignId), "added by someone (not an ecs-hostnet id)");
        assert_eq!(
            r(Reason::WrongChain { belongs_in: crate::model::names::chain::INPUT.into() }),
            "in the wrong chain (ecs-hostnet puts it in chain input)"
        );
        assert_eq!(r(Reason::DuplicateCopy), "duplicate copy");
        assert_eq!(r(Reason::ModifiedDuplicateCopy), "duplicate copy, modified by someone");
        assert_eq!(r(Reason::OutOfOrder), "out of order");
        assert_eq!(r(Reason::DiffersFromConfiguration), "differs from the configuration");
        assert_eq!(r(Reason::FileDeleted), "missing: deleted by someone");
        assert_eq!(r(Reason::FileModified), "modified by someone");
        assert_eq!(r(Reason::BootUnitNotEnabled), "missing: the boot unit is not enabled");
        assert_eq!(r(Reason::AgentSettingsDiffer), "agent settings differ from the configuration");
        assert_eq!(
            r(Reason::BinaryModeOrOwner { mode: 0o644, uid: 1000, gid: 0 }),
            "mode 0644 owner 1000:0, not 0755 root:root (the units run it as root)"
        );

        let spec = RouteSpec { dest: "169.254.170.2".parse().unwrap(), prefix_len: 32, kind: RouteKind::DevLo };
        let route = LiveRoute { dest: spec.dest, prefix_len: 32, kind: None, protocol: 4, metric: None };
        let sels = vec!["all".to_string(), "docker0".to_string()];
        let names = "net.ipv4.conf.all.route_localnet, net.ipv4.conf.docker0.route_localnet";
        let n = |n: Note| n.to_string();
        assert_eq!(
            n(Note::ModelHost),
            "sysctl and route changes are those of a model host: it has an IPv4 default route, every interface \
             named exists, and route_localnet was 0 before ecs-hostnet; `plan --against` a snapshot shows a real host"
        );
        assert_eq!(
            n(Note::GuardOff { selectors: sels.clone() }),
            format!(
                "the localhost guard is off while {} is on: every 127.0.0.1 service of the host is reachable from \
                 its L2 neighbours (CVE-2020-8558); localhost_guard.i_accept_that_route_localnet_exposes_localhost_services = true accepts that",
                names
            )
        );
        assert_eq!(
            n(Note::ExposedUntilApply { selectors: sels }),
            format!(
                "route_localnet is on ({}) but no localhost guard is live: 127.0.0.1 services are reachable from neighbours until apply",
                names
            )
        );
        assert_eq!(
            n(Note::EndpointRouteTaken { route: route.clone(), wanted: spec }),
            format!("a route {route} already leads to the endpoint; {spec} is not added")
        );
        assert_eq!(
            n(Note::LoDown { wanted: spec }),
            format!(
                "route {} is wanted but lo is down (a fresh network namespace?): not added; bring lo up and apply again",
                spec
            )
        );
        assert_eq!(
            n(Note::InterfaceMissing { selector: "docker0".into() }),
            "interface docker0 does not exist, so net.ipv4.conf.docker0.route_localnet is not set; run apply again once it exists"
        );
        assert_eq!(
            n(Note::AlreadyOneUnrecorded { selector: "all".into() }),
            "net.ipv4.conf.all.route_localnet is already 1 and no earlier value is recorded (first run on a host where \
             something else set it, or our tables were flushed by someone): 1 is recorded, so `remove` will leave it at 1"
        );
        assert_eq!(
            n(Note::ManageEcsConfigTurnedOn),
            "agent.manage_ecs_config is turned on: apply does not change /etc/ecs/ecs.config on a host installed \
             without it; run `ecs-hostnet install` there"
        );
        assert_eq!(
            n(Note::ManageEcsConfigTurnedOff),
            "agent.manage_ecs_config is turned off: apply leaves /etc/ecs/ecs.config as it is; `ecs-hostnet \
             uninstall` puts back the values found before install"
        );
        assert_eq!(
            n(Note::UplinkNotChecked),
            "the snapshot does not name the interfaces of the host's default routes (an older ecs-hostnet took \
             it): whether containers.interfaces matches the host's uplink was not checked; take a new snapshot"
        );
        assert_eq!(
            n(Note::ImdsBlockScope),
            "the IMDS block covers bridge-mode containers only. Host-network-mode tasks share the \
             instance's network identity: their packets to IMDS cross no hop, so neither this block nor \
             an IMDSv2 hop limit stops them from reading the instance role. Give them task roles \
             (agent.enable_task_iam_role_network_host) so that none needs it, cut the instance role down to \
             what the ECS agent needs, and run no untrusted task in host network mode; awsvpc tasks get \
             blackhole routes (ECS_AWSVPC_BLOCK_IMDS=true, or `ecs-hostnet task apply`)."
        );
    }

    /// In JSON a reason and a note are their text.
    #[test]
    fn json_is_the_text() {
        let reason = Reason::WrongChain { belongs_in: "in\"put".into() };
        assert_eq!(serde_json::to_string(&reason).unwrap(), serde_json::to_string(&reason.to_string()).unwrap());
        let note = Note::InterfaceMissing { selector: "eth\n0".into() };
        assert_eq!(serde_json::to_string(&note).unwrap(), serde_json::to_string(&note.to_string()).unwrap());
    }
}
