//! Names ecs-hostnet owns or reads, in one place: its tables, chains and rule ids, the
//! sysctl it sets, the agent keys it manages.

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
