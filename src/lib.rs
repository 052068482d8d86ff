//! ecs-hostnet: prepares a Linux host's network for Amazon ECS tasks with IAM roles.
//!
//! The pure core is [`config`] -> [`compile`] -> [`plan`] (no I/O, tested without root);
//! [`nftsyntax`] prints rules for people and for `nft -f`; [`kernel`], [`sysctl`] and
//! [`netns`] talk to the running kernel; [`engine`] ties them together for the commands.

#![warn(missing_docs)]

pub mod agentconfig;
pub mod artifacts;
pub mod compile;
pub mod config;
pub mod engine;
pub mod install;
pub mod kernel;
pub mod netns;
pub mod nftsyntax;
pub mod plan;
pub mod report;
pub mod rtnl;
pub mod ruleset;
pub mod snapshot;
pub mod sysctl;
pub mod task;
