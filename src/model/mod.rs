//! The vocabulary every layer speaks, and nothing else: nf_tables tables, chains, rules and
//! expressions in the kernel's own form ([`ruleset`], [`set`], [`build`]), the same objects
//! as read back ([`live`]), the operations a plan is carried out with ([`ops`], [`route`]),
//! the names ecs-hostnet owns ([`names`]), and how the model is printed in nft syntax
//! ([`nft_text`], [`escape`]).
//!
//! A leaf: it imports no other layer of the crate. Pure: no I/O.

pub mod audit;
pub mod build;
pub mod escape;
pub mod event;
pub mod finding;
pub mod ifpattern;
pub mod install_state;
pub mod live;
pub mod names;
pub mod nft_text;
pub mod ops;
pub mod record;
pub mod route;
pub mod ruleset;
pub mod set;
pub mod trace;
pub mod watch_state;
