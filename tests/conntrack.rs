//! Stale connection tracking across `apply` (issue 13, item 3), with real traffic in the
//! namespaces of [`support::Topology`]: a container that sent a SYN to 169.254.170.2:80
//! before the credentials DNAT existed left a conntrack entry without NAT; NAT is decided
//! on a connection's first packet only, so its retransmissions and a reconnect from the
//! same source port would keep missing the DNAT. `apply` deletes such entries (over
//! ctnetlink) after a batch that adds the credentials rules, and only then.
//!
//! The host namespace gets a chain of its own (`table ip prep`, one `ct state new counter`
//! rule) before the first SYN: a namespace in which no rule uses conntrack (a `ct` match
//! or a nat statement; a nat chain alone is not enough) does not track connections at all,
//! while a real host's Docker and ecs-init rules do.

mod support;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::*;

const ENDPOINT: &str = "169.254.170.2:80";

/// Turns connection tracking on in the host namespace without changing any packet.
const PREP: &str = "table ip prep {\n\tchain pre {\n\t\ttype filter hook prerouting priority 0; policy accept;\n\t\tct state new counter\n\t}\n}\n";

/// The lines of the host's conntrack table (`/proc/net/nf_conntrack` read inside the
/// namespace) toward the endpoint from source port `sport`.
fn entries(host: &Netns, sport: u16) -> Vec<String> {
    host.exec_ok("cat", &["/proc/net/nf_conntrack"])
        .lines()
        .filter(|l| l.contains(" tcp ") && l.contains("dst=169.254.170.2 ") && l.contains(&format!(" sport={sport} ")))
        .map(str::to_string)
        .collect()
}

/// A stale entry: nothing answered (`[UNREPLIED]`) and no DNAT (the reply comes from the
/// endpoint itself, not from 127.0.0.1).
fn is_stale(line: &str) -> bool {
    line.contains("[UNREPLIED] src=169.254.170.2 ")
}

/// From inside `ns`, a TCP connect from `local` (a fixed source address and port) to `to`
/// with `timeout`; on success, `GET /` and the response body.
fn get_from(ns: &Netns, local: &str, to: &str, timeout: Duration) -> Result<String, String> {
    let local: SocketAddr = local.parse().unwrap();
    let to: SocketAddr = to.parse().unwrap();
    ns.run(move || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
        s.set_reuse_address(true).map_err(|e| e.to_string())?;
        s.bind(&SockAddr::from(local)).map_err(|e| format!("bind {local}: {e}"))?;
        s.connect_timeout(&SockAddr::from(to), timeout).map_err(|e| format!("connect {local} -> {to}: {e}"))?;
        let mut s: TcpStream = s.into();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
        let mut v = Vec::new();
        s.read_to_end(&mut v).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&v).into_owned();
        Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or(text))
    })
}

/// Waits (up to 3 s) until the host tracks a connection from `sport`; returns its lines.
fn wait_for_entry(host: &Netns, sport: u16) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let e = entries(host, sport);
        if !e.is_empty() || Instant::now() > deadline {
            return e;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// (a) A SYN from a fixed source port before apply leaves a stale entry. Control: the same
/// DNAT put in place by hand (another table, route_localnet on) does not help a reconnect
/// from that port, while a fresh port gets through; after `apply` (its batch adds the
/// credentials rules) the entry is gone and the reconnect from the same port reaches the
/// agent. A converged apply deletes nothing: a stale entry made afterwards (a neighbour's
/// SYN, which no DNAT rewrites) survives it.
#[test]
fn a_reconnect_from_the_same_source_port_reaches_the_agent_after_apply() {
    let t = Topology::new();
    let (host, c) = (&t.host, &t.container);
    let cfg = t.dir.default_config();
    host.nft_load(&t.dir, PREP);
    let stale_port = 41001;
    let local = format!("{CONTAINER_V4}:{stale_port}");

    let before = get_from(c, &local, ENDPOINT, Duration::from_millis(700));
    assert!(before.is_err(), "nothing serves the endpoint before apply: {before:?}");
    let e = wait_for_entry(host, stale_port);
    assert!(e.len() == 1 && is_stale(&e[0]), "one stale entry from port {stale_port} before apply: {e:#?}");

    // Control: the DNAT exists, but the stale entry keeps the reconnect from using it.
    host.nft_load(
        &t.dir,
        "table ip ctl {\n\tchain pre {\n\t\ttype nat hook prerouting priority -100; policy accept;\n\t\t\
         iifname \"docker0\" ip daddr 169.254.170.2 tcp dport 80 dnat to 127.0.0.1:51679\n\t}\n}\n",
    );
    host.set_sysctl("net.ipv4.conf.all.route_localnet", "1");
    let fresh = get_from(c, &format!("{CONTAINER_V4}:41002"), ENDPOINT, Duration::from_secs(2));
    assert_eq!(fresh.as_deref(), Ok(CREDS_BODY), "control: the hand-made DNAT serves a fresh source port");
    let control = get_from(c, &local, ENDPOINT, Duration::from_millis(1500));
    assert!(control.is_err(), "control: the stale entry must keep the reconnect from the DNAT: {control:?}");
    let e = entries(host, stale_port);
    assert!(e.len() == 1 && is_stale(&e[0]), "the stale entry is still there: {e:#?}");
    host.nft(&["delete", "table", "ip", "ctl"]);
    host.set_sysctl("net.ipv4.conf.all.route_localnet", "0");

    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    assert_eq!(entries(host, stale_port), Vec::<String>::new(), "apply deletes the stale entry");
    let after = get_from(c, &local, ENDPOINT, Duration::from_secs(2));
    assert_eq!(after.as_deref(), Ok(CREDS_BODY), "the reconnect from port {stale_port} after apply");
    let e = entries(host, stale_port);
    assert!(e.iter().all(|l| l.contains(" src=127.0.0.1 ")), "the new entry is DNATed: {e:#?}");

    // A converged apply sends nothing, so it deletes nothing either.
    let n_port = 41003;
    let from_neighbour =
        get_from(&t.neighbour, &format!("{NEIGHBOUR_V4}:{n_port}"), ENDPOINT, Duration::from_millis(500));
    assert!(from_neighbour.is_err(), "the neighbour is not served: {from_neighbour:?}");
    let e = wait_for_entry(host, n_port);
    assert!(e.len() == 1 && is_stale(&e[0]), "the neighbour's SYN left a stale entry: {e:#?}");
    let out = host.ehn(&["apply", "-c", &cfg]);
    out.expect_code(0);
    assert!(out.stdout.contains("No changes"), "{out}");
    assert_eq!(entries(host, n_port), e, "a converged apply left the entry alone");
}

/// (b) A connect in flight across apply: the container's SYN is retransmitted on the
/// stale entry until apply deletes it; the next retransmission (1 s, 3 s after the first)
/// is DNATed and the connection completes.
#[test]
fn a_connect_in_flight_across_apply_reaches_the_agent() {
    let t = Topology::new();
    let host = &t.host;
    let cfg = t.dir.default_config();
    host.nft_load(&t.dir, PREP);
    let port = 41011;
    let ns = t.container.name.clone();
    let local = format!("{CONTAINER_V4}:{port}");
    let start = Instant::now();
    let client = std::thread::spawn(move || {
        let l: SocketAddr = local.parse().unwrap();
        let to: SocketAddr = ENDPOINT.parse().unwrap();
        in_netns(&ns, move || -> Result<String, String> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
            s.bind(&SockAddr::from(l)).map_err(|e| e.to_string())?;
            s.connect_timeout(&SockAddr::from(to), Duration::from_secs(6)).map_err(|e| e.to_string())?;
            let mut s: TcpStream = s.into();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
            let mut v = Vec::new();
            s.read_to_end(&mut v).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&v).into_owned())
        })
    });
    let e = wait_for_entry(host, port);
    assert!(e.len() == 1 && is_stale(&e[0]), "the first SYN left a stale entry before apply: {e:#?}");
    host.ehn(&["apply", "-c", &cfg]).expect_code(0);
    let applied = start.elapsed();
    let got = client.join().expect("client thread");
    let took = start.elapsed();
    let got = got.unwrap_or_else(|e| panic!("the in-flight connect failed after {took:?} (apply at {applied:?}): {e}"));
    assert!(got.ends_with(CREDS_BODY), "the in-flight connect reached the agent: {got:?}");
}
