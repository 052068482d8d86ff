//! Output: plans as text for people and JSON for machines ([`plan`]), a carried-out plan
//! as text ([`done`]), the desired state as an `nft -f` script ([`nft_script`]) or as JSON
//! ([`desired_json`]), the `snapshot` document ([`snapshot`]) and the `status` report ([`status`]).
//!
//! May import [`crate::model`], [`crate::config`], [`crate::desired`] and [`crate::plan`];
//! never the host edges or the engine. Pure: no I/O.

pub mod audit;
pub mod desired_json;
pub mod done;
pub mod nft_script;
pub mod plan;
pub mod snapshot;
pub mod status;
pub mod verify;
pub mod watch;
