//! The awsvpc IMDS blackhole routes a configuration asks for in task namespaces.

use crate::config::Config;
use crate::model::route::{RouteKind, RouteSpec};
use std::net::IpAddr;
/// The IMDS blackhole routes a configuration asks for: IPv4 always, IPv6 when
/// `imds_block.block_ipv6`.
pub fn imds_routes(c: &Config) -> Vec<RouteSpec> {
    let mut v =
        vec![RouteSpec { dest: IpAddr::V4(c.imds_block.ipv4_address.v.0), prefix_len: 32, kind: RouteKind::Blackhole }];
    if c.imds_block.block_ipv6.v {
        v.push(RouteSpec {
            dest: IpAddr::V6(c.imds_block.ipv6_address.v.0),
            prefix_len: 128,
            kind: RouteKind::Blackhole,
        });
    }
    v
}
