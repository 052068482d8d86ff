//! The edges: everything that touches the running system. nf_tables over netlink
//! ([`nft`], the only FFI), routes over rtnetlink ([`rtnl`]), route_localnet under
//! `/proc/sys` ([`sysctl`]), network namespaces ([`netns`]), files under a root directory
//! ([`files`]) and the AWS commands' leftovers in them ([`leftovers`]), the run directory with its lock ([`run_dir`]) and `systemctl`
//! ([`systemd`]), and stale connection-tracking entries over ctnetlink ([`conntrack`]).
//!
//! May import [`crate::model`] only: it reads and writes model objects and knows nothing
//! of configurations, plans or how they are printed.

pub mod conntrack;
pub mod docker;
pub mod events;
pub mod files;
pub mod leftovers;
pub mod netns;
pub mod nflog;
pub mod nft;
pub mod notify;
pub mod rtnl;
pub mod run_dir;
pub mod sysctl;
pub mod systemd;
pub mod trace;
