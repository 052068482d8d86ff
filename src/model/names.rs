//! Names ecs-hostnet owns or reads, in one place: its tables, chains ([`chain`]) and rule
//! ids ([`rule_id`]), the sysctl it sets, the agent keys it manages.

use crate::model::ruleset::Family;

/// The one table name ecs-hostnet owns, in each family it uses.
pub const TABLE_NAME: &str = "ecs-hostnet";

/// The (family, name) pairs ecs-hostnet owns. Nothing else is ever read for changes,
/// edited or deleted: a `table ip6 ecs-hostnet` made by someone else is not ours.
pub const OWNED_TABLES: [(Family, &str); 2] = [(Family::Ip, TABLE_NAME), (Family::Inet, TABLE_NAME)];

/// Comment given to every table ecs-hostnet creates (table userdata, shown by `nft list`).
pub const TABLE_COMMENT: &str = "managed by ecs-hostnet; edits are reverted by ecs-hostnet apply";

/// `net.ipv4.conf.<selector>.route_localnet`.
pub fn sysctl_name(selector: &str) -> String {
    format!("net.ipv4.conf.{selector}.route_localnet")
}

/// The agent keys ecs-hostnet manages, in file order: `[agent]` `enable_task_iam_role`,
/// `enable_task_iam_role_network_host` and `awsvpc_block_imds` (see
/// [`crate::config::Config::agent_keys`]), and the only lines a snapshot keeps.
pub const AGENT_KEYS: [&str; 3] =
    ["ECS_ENABLE_TASK_IAM_ROLE", "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST", "ECS_AWSVPC_BLOCK_IMDS"];

/// The names of the chains ecs-hostnet makes, each named after the hook it is attached
/// to (see [`crate::desired`]): the NAT chains in `table ip ecs-hostnet`, the filter chains
/// in `table inet ecs-hostnet`.
pub mod chain {
    /// `chain prerouting` (ip, nat): the credentials DNAT rules.
    pub const PREROUTING: &str = "prerouting";
    /// `chain output` (ip, nat): the credentials REDIRECT for host-network-mode tasks.
    pub const OUTPUT: &str = "output";
    /// `chain input` (inet, filter): the localhost and introspection guards.
    pub const INPUT: &str = "input";
    /// `chain forward` (inet, filter): the IMDS block.
    pub const FORWARD: &str = "forward";
    /// Every chain ecs-hostnet makes. One of them that the configuration no longer has is
    /// deleted in place; any other chain in our table is someone else's.
    pub const ALL: [&str; 4] = [PREROUTING, OUTPUT, INPUT, FORWARD];
}

/// The ids ecs-hostnet gives its rules (the rule comment, see
/// [`crate::model::ruleset::Rule::id`]): they name what a rule is for.
pub mod rule_id {
    /// What every credentials DNAT rule's id starts with; the container interface
    /// pattern follows (see [`credentials_dnat`]).
    pub const CREDENTIALS_DNAT_PREFIX: &str = "credentials-dnat ";
    /// The credentials REDIRECT (or DNAT) of host traffic, in `chain output`.
    pub const CREDENTIALS_REDIRECT: &str = "credentials-redirect";
    /// The localhost guard, in `chain input`: packets to 127.0.0.0/8 from a non-loopback
    /// interface that were neither DNATed nor part of a known flow.
    pub const LOCALHOST_GUARD: &str = "localhost-guard";
    /// The localhost guard of the other interfaces, in `chain input` before
    /// [`LOCALHOST_GUARD`]: every packet to 127.0.0.0/8 arriving on an interface that is
    /// neither `lo` nor a container interface, DNATed or not.
    pub const LOCALHOST_GUARD_UPLINK: &str = "localhost-guard-uplink";
    /// The introspection guard, in `chain input`.
    pub const INTROSPECTION_GUARD: &str = "introspection-guard";
    /// The IPv4 IMDS block, in `chain forward`.
    pub const IMDS_BLOCK_IPV4: &str = "imds-block-ipv4";
    /// The IPv6 IMDS block, in `chain forward`.
    pub const IMDS_BLOCK_IPV6: &str = "imds-block-ipv6";
    /// The audit of IPv4 IMDS attempts, in `chain forward` just before
    /// [`IMDS_BLOCK_IPV4`], with the same match: a rate-limited copy of the packet to the
    /// nfnetlink_log group of `[audit]`, no verdict. Also its log prefix.
    pub const IMDS_AUDIT_IPV4: &str = "imds-audit-ipv4";
    /// The audit of IPv6 IMDS attempts, just before [`IMDS_BLOCK_IPV6`].
    pub const IMDS_AUDIT_IPV6: &str = "imds-audit-ipv6";

    /// The id of the credentials DNAT rule for one container interface pattern, e.g.
    /// `credentials-dnat docker+`.
    pub fn credentials_dnat(pattern: &str) -> String {
        format!("{CREDENTIALS_DNAT_PREFIX}{pattern}")
    }

    /// Is `id` one that ecs-hostnet generates? Used to tell a rule dropped from the
    /// configuration from a rule someone else put in our chain. Any id starting with one
    /// of ours counts.
    pub fn is_ours(id: &str) -> bool {
        [
            CREDENTIALS_DNAT_PREFIX,
            CREDENTIALS_REDIRECT,
            LOCALHOST_GUARD,
            LOCALHOST_GUARD_UPLINK,
            INTROSPECTION_GUARD,
            IMDS_BLOCK_IPV4,
            IMDS_BLOCK_IPV6,
            IMDS_AUDIT_IPV4,
            IMDS_AUDIT_IPV6,
        ]
        .iter()
        .any(|p| id.starts_with(p))
    }
}

/// The suffix `verify` gives its probe interface after a container pattern's prefix:
/// `v` and its pid in hex (`docker` + `v1f3a` = `dockerv1f3a`), cut to fit IFNAMSIZ.
pub fn verify_probe_suffix(pid: u32) -> String {
    format!("v{pid:x}")
}

/// The pid a probe interface name of `verify` ends with ([`verify_probe_suffix`]): the hex
/// digits after its last `v`; `None` when the name does not end that way (or the suffix
/// was cut). Whether such a run is live is for the caller to check (its trace table).
pub fn verify_probe_pid(ifname: &str) -> Option<u32> {
    let (_, hex) = ifname.rsplit_once('v')?;
    if hex.is_empty() || hex.len() > 8 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod probe_name_tests {
    use super::*;

    #[test]
    fn a_probe_name_gives_back_the_pid_and_other_names_give_none() {
        assert_eq!(verify_probe_pid(&format!("docker{}", verify_probe_suffix(0x1f3a))), Some(0x1f3a));
        assert_eq!(verify_probe_pid("br-v4194304"), Some(0x4194304));
        for name in ["docker0", "vethab12cd", "ecs-bridge", "dockerv", "dockerv12g", "brv123456789"] {
            assert_eq!(verify_probe_pid(name), None, "{name}");
        }
    }
}
