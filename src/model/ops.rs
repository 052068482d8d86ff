//! The operations a plan is carried out with: nf_tables batch messages ([`Op`]) and
//! route_localnet writes ([`SysctlWrite`]).

use crate::model::names::sysctl_name;
use crate::model::nft_text::{base_chain_text, rule_text};
use crate::model::record::Record;
use crate::model::ruleset::{BaseChain, Family, Rule};
use serde::Serialize;
use std::fmt;

/// Where a new rule goes in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// At the end of the chain (`NLM_F_APPEND`, no position).
    Append,
    /// Just before the live rule with this handle (`NFTA_RULE_POSITION`, no `NLM_F_APPEND`).
    Before(u64),
}

/// One message of the nf_tables batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// `NFT_MSG_NEWTABLE`, with our comment and the route_localnet record as userdata.
    AddTable {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_TABLE_NAME`.
        name: String,
        /// Table comment, userdata TLV `NFTNL_UDATA_TABLE_COMMENT`.
        comment: String,
        /// The route_localnet record, userdata TLV [`crate::model::record::UDATA_TYPE`];
        /// empty (no TLV) except for `table inet ecs-hostnet`.
        record: Record,
    },
    /// `NFT_MSG_DELTABLE` (deletes its chains and rules too).
    DelTable {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_TABLE_NAME`.
        name: String,
    },
    /// `NFT_MSG_NEWCHAIN`.
    AddChain {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_CHAIN_TABLE`.
        table: String,
        /// `NFTA_CHAIN_NAME`.
        name: String,
        /// Type, hook, priority and policy (`NFTA_CHAIN_TYPE`, `NFTA_CHAIN_HOOK`,
        /// `NFTA_CHAIN_POLICY`); `None` for a regular chain.
        base: Option<BaseChain>,
    },
    /// `NFT_MSG_DELCHAIN` of one of our chains the configuration no longer has; the kernel
    /// deletes its rules with it (no `NLM_F_NONREC`).
    DelChain {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_CHAIN_TABLE`.
        table: String,
        /// `NFTA_CHAIN_NAME`.
        name: String,
    },
    /// `NFT_MSG_DELRULE` by handle (never without one: that would flush the chain).
    DelRule {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_RULE_TABLE`.
        table: String,
        /// `NFTA_RULE_CHAIN`.
        chain: String,
        /// `NFTA_RULE_HANDLE` of the live rule to delete.
        handle: u64,
    },
    /// `NFT_MSG_NEWRULE`.
    AddRule {
        /// The table's family (`nfgenmsg.nfgen_family`).
        family: Family,
        /// `NFTA_RULE_TABLE`.
        table: String,
        /// `NFTA_RULE_CHAIN`.
        chain: String,
        /// The rule: its expressions (`NFTA_RULE_EXPRESSIONS`) and its id as the comment
        /// (`NFTA_RULE_USERDATA`).
        rule: Rule,
        /// Appended, or inserted before a kept rule (`NFTA_RULE_POSITION`).
        placement: Placement,
    },
}

impl fmt::Display for Op {
    /// The operation as an nft command, used to name a message the kernel rejected.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::AddTable { family, name, .. } => write!(f, "add table {} {name}", family.name()),
            Op::DelTable { family, name } => write!(f, "delete table {} {name}", family.name()),
            Op::AddChain { family, table, name, base } => {
                write!(f, "add chain {} {table} {name}", family.name())?;
                if let Some(b) = base {
                    write!(f, " {{ {} }}", base_chain_text(b))?;
                }
                Ok(())
            }
            Op::DelChain { family, table, name } => write!(f, "delete chain {} {table} {name}", family.name()),
            Op::DelRule { family, table, chain, handle } => {
                write!(f, "delete rule {} {table} {chain} handle {handle}", family.name())
            }
            Op::AddRule { family, table, chain, rule, placement } => {
                let verb = match placement {
                    Placement::Append => "add rule".to_string(),
                    Placement::Before(h) => format!("insert rule (before handle {h})"),
                };
                write!(
                    f,
                    "{verb} {} {table} {chain} {}",
                    family.name(),
                    rule_text(*family, &rule.exprs, Some(&rule.id))
                )
            }
        }
    }
}

/// A sysctl write: `/proc/sys/net/ipv4/conf/<selector>/route_localnet` <- `value`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SysctlWrite {
    /// `all` or an exact interface name: the `<selector>` in the path.
    pub selector: String,
    /// The decimal text written: `1` to enable, or the value recorded before ecs-hostnet
    /// first set it.
    pub value: String,
}

impl SysctlWrite {
    /// The sysctl's dotted name, e.g. `net.ipv4.conf.all.route_localnet`.
    pub fn name(&self) -> String {
        sysctl_name(&self.selector)
    }
}
