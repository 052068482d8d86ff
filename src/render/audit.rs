//! The journal line of one IMDS attempt ([`line`]), e.g.
//! `IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312 -> 169.254.169.254:80 in on docker0
//! via vethab12cd (container 3f2a1b9c0d4e "web" by source address)`. Pure: no I/O.

use crate::model::audit::{Attempt, Container};
use crate::model::escape::escape_controls;
use std::net::IpAddr;

/// What every audit line starts with (`journalctl -u ecs-hostnet-watch -g 'IMDS attempt'`).
pub const LINE_START: &str = "IMDS attempt blocked:";

/// `ADDR:PORT`, an IPv6 address in brackets (`[fd00:d0c::2]:40312`); the address alone
/// for a protocol without ports.
fn endpoint(addr: IpAddr, port: Option<u16>) -> String {
    match (addr, port) {
        (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
        (a, Some(p)) => format!("{a}:{p}"),
        (a, None) => a.to_string(),
    }
}

/// The protocol's name (`IPPROTO_*`: tcp 6, udp 17, icmp 1, ipv6-icmp 58), else
/// `proto N`; and whether its header starts with the ports.
fn protocol(n: u8) -> (String, bool) {
    match n {
        6 => ("tcp".into(), true),
        17 => ("udp".into(), true),
        1 => ("icmp".into(), false),
        58 => ("ipv6-icmp".into(), false),
        n => (format!("proto {n}"), false),
    }
}

/// One line for the journal: family, protocol, source and destination with their ports,
/// the interface it arrived on (`ifname`: the name of [`Attempt::indev`], or its index
/// when it has none), the bridge port it came through (`physname`: the name of
/// [`Attempt::physindev`], e.g. `via vethab12cd`, the container's host-side veth) and the
/// container Docker lists with the source address, marked `by source address`: a container
/// with CAP_NET_RAW (Docker's default) can send from another's address, the bridge port
/// cannot be forged. Names from the kernel or Docker are escaped (no control characters
/// reach the journal).
pub fn line(a: &Attempt, ifname: Option<&str>, physname: Option<&str>, container: Option<&Container>) -> String {
    let family = if a.ipv6 { "ipv6" } else { "ipv4" };
    let what = match &a.packet {
        Some(p) => {
            let (proto, ports) = protocol(p.proto);
            let (sport, dport) = if ports { (Some(p.sport), Some(p.dport)) } else { (None, None) };
            format!("{proto} {} -> {}", endpoint(p.src, sport), endpoint(p.dst, dport))
        }
        None => "(headers not readable)".into(),
    };
    let dev = match (ifname, a.indev) {
        (Some(n), _) => format!(" in on {}", escape_controls(n)),
        (None, Some(i)) => format!(" in on interface {i}"),
        (None, None) => String::new(),
    };
    let port = match (physname, a.physindev) {
        (Some(n), _) => format!(" via {}", escape_controls(n)),
        (None, Some(i)) => format!(" via interface {i}"),
        (None, None) => String::new(),
    };
    let who = container.map_or(String::new(), |c| {
        format!(
            " (container {} \"{}\" by source address)",
            escape_controls(c.short_id()),
            escape_controls(&c.name).replace('"', "'")
        )
    });
    format!("{LINE_START} {family} {what}{dev}{port}{who}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::trace::Packet;

    fn attempt(src: &str, dst: &str, proto: u8) -> Attempt {
        Attempt {
            ipv6: src.contains(':'),
            indev: Some(7),
            physindev: None,
            prefix: "imds-audit-ipv4".into(),
            packet: Some(Packet {
                src: src.parse().unwrap(),
                dst: dst.parse().unwrap(),
                proto,
                sport: 40312,
                dport: 80,
            }),
        }
    }

    #[test]
    fn a_line_names_family_protocol_addresses_ports_interface_and_container() {
        let c = Container {
            id: "3f2a1b9c0d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd".into(),
            name: "web".into(),
        };
        assert_eq!(
            line(&attempt("172.17.0.2", "169.254.169.254", 6), Some("docker0"), None, Some(&c)),
            "IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312 -> 169.254.169.254:80 in on docker0 (container 3f2a1b9c0d4e \"web\" by source address)"
        );
        let mut bridged = attempt("172.17.0.2", "169.254.169.254", 6);
        bridged.physindev = Some(12);
        assert_eq!(
            line(&bridged, Some("docker0"), Some("vethab12cd"), Some(&c)),
            "IMDS attempt blocked: ipv4 tcp 172.17.0.2:40312 -> 169.254.169.254:80 in on docker0 via vethab12cd (container 3f2a1b9c0d4e \"web\" by source address)"
        );
        assert!(line(&bridged, Some("docker0"), None, None).ends_with("in on docker0 via interface 12"));
        assert_eq!(
            line(&attempt("fd00:d0c::2", "fd00:ec2::254", 17), None, None, None),
            "IMDS attempt blocked: ipv6 udp [fd00:d0c::2]:40312 -> [fd00:ec2::254]:80 in on interface 7"
        );
        assert_eq!(
            line(&attempt("172.17.0.2", "169.254.169.254", 1), Some("br-1"), None, None),
            "IMDS attempt blocked: ipv4 icmp 172.17.0.2 -> 169.254.169.254 in on br-1"
        );
    }

    #[test]
    fn names_from_outside_cannot_forge_journal_lines() {
        let c = Container { id: "abc".into(), name: "x\"\nIMDS attempt blocked: forged".into() };
        let l = line(&attempt("172.17.0.2", "169.254.169.254", 6), Some("eth\n0"), None, Some(&c));
        assert!(!l.contains('\n'), "{l}");
        assert_eq!(l.matches(LINE_START).count(), 2, "the name stays inside the one line: {l}");
        assert!(l.ends_with("(container abc \"x'\\nIMDS attempt blocked: forged\" by source address)"), "{l}");
    }
}
