//! Pins the text of the host edges' typed errors as the CLI prints them (`{:#}` of the
//! `anyhow::Error` they become): each must read exactly as the `anyhow` context chain or
//! message it replaced, which is written out here the old way next to the new error.

use crate::host::{files, netns, rtnl, run_dir, sysctl};
use crate::model::route::{LiveRoute, RouteKind, RouteSpec};
use anyhow::Context as _;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// How main prints an error.
fn printed(e: impl Into<anyhow::Error>) -> String {
    format!("{:#}", e.into())
}

/// How main printed `Err(io).context(msg)`.
fn old_context(errno: i32, msg: String) -> String {
    let r: Result<(), io::Error> = Err(io::Error::from_raw_os_error(errno));
    printed(r.context(msg).unwrap_err())
}

fn io(errno: i32) -> io::Error {
    io::Error::from_raw_os_error(errno)
}

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

#[test]
fn files_errors_read_as_before() {
    let cases: Vec<(files::Error, String)> = vec![
        (files::Error::Read { path: p("/a/b"), source: io(13) }, old_context(13, "cannot read /a/b".into())),
        (files::Error::Create { path: p("/a"), source: io(20) }, old_context(20, "cannot create /a".into())),
        (
            files::Error::Write { path: p("/a/.b.tmp"), source: io(28) },
            old_context(28, "cannot write /a/.b.tmp".into()),
        ),
        (files::Error::Chmod(io(1)), printed(anyhow::Error::from(io(1)))),
        (files::Error::Chown { path: p("/t"), source: io(1) }, old_context(1, "cannot chown /t".into())),
        (files::Error::Sync { path: p("/t"), source: io(5) }, old_context(5, "cannot sync /t".into())),
        (files::Error::Replace { path: p("/t"), source: io(16) }, old_context(16, "cannot replace /t".into())),
        (files::Error::Remove { path: p("/t"), source: io(21) }, old_context(21, "cannot remove /t".into())),
        (
            files::Error::DanglingSymlink { path: p("/l"), source: io(2) },
            old_context(2, "/l is a symlink to a missing file; remove it first".into()),
        ),
        (
            files::Error::NotARegularFile { path: p("/l"), target: p("/dev/null") },
            printed(anyhow::anyhow!(
                "/l is a symlink to /dev/null, not to a regular file (a masked unit?); unmask or remove it first"
            )),
        ),
        (files::Error::NoFolder, printed(anyhow::anyhow!("a file path has a folder"))),
    ];
    for (new, old) in cases {
        assert_eq!(printed(new), old);
    }
}

#[test]
fn run_dir_errors_read_as_before() {
    let busy = run_dir::Error::Busy { path: p("/run/ecs-hostnet/lock"), timeout: Duration::from_secs(30) };
    assert!(busy.is_busy());
    let cases: Vec<(run_dir::Error, String)> = vec![
        (
            run_dir::Error::CreateRunDir { dir: p("/run/x"), source: io(30) },
            old_context(30, "cannot create the run directory /run/x".into()),
        ),
        (
            run_dir::Error::OpenLock { path: p("/run/x/lock"), source: io(21) },
            old_context(21, "cannot open the lock file /run/x/lock".into()),
        ),
        (
            run_dir::Error::Lock { path: p("/run/x/lock"), source: nix::errno::Errno::ENOLCK.into() },
            old_context(nix::errno::Errno::ENOLCK as i32, "cannot lock /run/x/lock".into()),
        ),
        (
            busy,
            printed(anyhow::anyhow!(
                "another ecs-hostnet apply or remove is still running (lock /run/ecs-hostnet/lock held for more than \
                 30 s); try again later"
            )),
        ),
        (run_dir::Error::CreateDir { dir: p("/r/d"), source: io(28) }, old_context(28, "cannot create /r/d".into())),
        (run_dir::Error::Write { path: p("/r/f"), source: io(28) }, old_context(28, "cannot write /r/f".into())),
        (run_dir::Error::Remove { path: p("/r/f"), source: io(13) }, old_context(13, "cannot remove /r/f".into())),
    ];
    for (new, old) in cases {
        assert_eq!(printed(new), old);
    }
}

#[test]
fn sysctl_errors_read_as_before() {
    let bad = sysctl::route_localnet_path("../x").unwrap_err();
    let reason = crate::model::ifpattern::IfPattern::parse("../x", false).unwrap_err();
    assert_eq!(printed(bad), printed(anyhow::anyhow!("refusing route_localnet for {:?}: {reason}", "../x")));
    let path = p("/proc/sys/net/ipv4/conf/eth0/route_localnet");
    let cases: Vec<(sysctl::Error, String)> = vec![
        (
            sysctl::Error::Read { path: path.clone(), source: io(13) },
            old_context(13, format!("cannot read {}", path.display())),
        ),
        (
            sysctl::Error::Write { value: "1".into(), path: path.clone(), source: io(13) },
            old_context(13, format!("cannot write 1 to {}", path.display())),
        ),
        (sysctl::Error::List { source: io(2) }, old_context(2, "cannot list /proc/sys/net/ipv4/conf".into())),
    ];
    for (new, old) in cases {
        assert_eq!(printed(new), old);
    }
}

#[test]
fn netns_errors_read_as_before() {
    use nix::errno::Errno;
    let spec = "ns\"1";
    let cases: Vec<(netns::Error, String)> = vec![
        (
            netns::Error::EmptyName,
            printed(anyhow::anyhow!(
                "--netns needs a namespace name (under /run/netns) or a path such as /proc/PID/ns/net"
            )),
        ),
        (
            netns::Error::NotFound { spec: spec.into(), path: p("/run/netns/ns\"1") },
            printed(anyhow::anyhow!("network namespace {spec:?} not found (/run/netns/ns\"1 does not exist)")),
        ),
        (netns::Error::Open { path: p("/x"), source: io(6) }, printed(anyhow::anyhow!("cannot open /x: {}", io(6)))),
        (
            netns::Error::OpenNamed { spec: spec.into(), path: p("/x"), source: io(6) },
            printed(anyhow::anyhow!("network namespace {spec:?}: {}", anyhow::anyhow!("cannot open /x: {}", io(6)))),
        ),
        (netns::Error::NotANetns { path: p("/x") }, printed(anyhow::anyhow!("/x is not a network namespace"))),
        (
            netns::Error::PermissionDenied { spec: spec.into() },
            printed(anyhow::anyhow!("entering network namespace {spec:?} needs CAP_SYS_ADMIN: run as root")),
        ),
        (
            netns::Error::PathPermissionDenied { path: p("/x") },
            printed(anyhow::anyhow!("entering /x needs CAP_SYS_ADMIN: run as root")),
        ),
        (
            netns::Error::Enter { spec: spec.into(), path: p("/x"), source: Errno::ENOMEM },
            printed(anyhow::anyhow!("cannot enter network namespace {spec:?} (/x): {}", Errno::ENOMEM)),
        ),
        (
            netns::Error::EnterPath { path: p("/x"), source: Errno::ENOMEM },
            printed(anyhow::anyhow!("cannot enter /x: {}", Errno::ENOMEM)),
        ),
        (
            netns::Error::OpenHome { source: io(24) },
            old_context(24, "cannot open this thread's network namespace".into()),
        ),
        (
            netns::Error::ReturnHome { source: Errno::EINVAL },
            printed(
                Err::<(), _>(Errno::EINVAL).context("cannot return to the original network namespace").unwrap_err(),
            ),
        ),
        (netns::Error::List { dir: p("/d"), source: io(20) }, old_context(20, "cannot list /d".into())),
    ];
    for (new, old) in cases {
        assert_eq!(printed(new), old);
    }
}

#[test]
fn rtnl_errors_read_as_before() {
    let spec = RouteSpec { dest: "169.254.169.254".parse().unwrap(), prefix_len: 32, kind: RouteKind::Blackhole };
    let live =
        LiveRoute { dest: "169.254.170.2".parse().unwrap(), prefix_len: 32, kind: None, protocol: 4, metric: Some(0) };
    let kernel = |errno| Box::new(rtnl::Error::Kernel(io(errno)));
    let old_kernel = |errno, msg: String| printed(anyhow::Error::from(io(errno)).context(msg));
    let cases: Vec<(rtnl::Error, String)> = vec![
        (rtnl::Error::Open { source: io(97) }, old_context(97, "cannot open a NETLINK_ROUTE socket".into())),
        (rtnl::Error::Bind { source: io(98) }, old_context(98, "cannot bind the NETLINK_ROUTE socket".into())),
        (rtnl::Error::Connect { source: io(111) }, old_context(111, "cannot connect the NETLINK_ROUTE socket".into())),
        (rtnl::Error::Send { source: io(105) }, old_context(105, "rtnetlink send".into())),
        (rtnl::Error::Receive { source: io(11) }, old_context(11, "rtnetlink receive".into())),
        (
            rtnl::Error::Parse { error: "buffer too short".into() },
            printed(anyhow::anyhow!(
                "cannot parse an rtnetlink answer: {}",
                netlink_packet_core::DecodeError::from("buffer too short")
            )),
        ),
        (rtnl::Error::ZeroLength, printed(anyhow::anyhow!("rtnetlink answer with length 0"))),
        (rtnl::Error::Kernel(io(19)), printed(anyhow::Error::from(io(19)))),
        (rtnl::Error::Add { spec, source: kernel(22) }, old_kernel(22, format!("cannot add route {spec}"))),
        (rtnl::Error::Delete { spec, source: kernel(3) }, old_kernel(3, format!("cannot delete route {spec}"))),
        (
            rtnl::Error::DeleteInTheWay { route: live.clone(), source: kernel(1) },
            old_kernel(1, format!("cannot delete route {live}")),
        ),
        (
            rtnl::Error::Add { spec, source: Box::new(rtnl::Error::Receive { source: io(11) }) },
            printed(
                anyhow::Error::from(io(11)).context("rtnetlink receive").context(format!("cannot add route {spec}")),
            ),
        ),
    ];
    for (new, old) in cases {
        assert_eq!(printed(new), old);
    }
    assert!(rtnl::Error::Add { spec, source: kernel(nix::errno::Errno::EEXIST as i32) }.is_exists());
    assert!(rtnl::Error::Kernel(io(nix::errno::Errno::EEXIST as i32)).is_exists());
    assert!(!rtnl::Error::Kernel(io(nix::errno::Errno::ENOENT as i32)).is_exists());
    assert!(!rtnl::Error::Send { source: io(nix::errno::Errno::EEXIST as i32) }.is_exists());
}
