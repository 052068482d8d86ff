//! Docker's API over its unix socket, for the IMDS audit: which container has an address
//! (`GET /containers/json`: each container's `NetworkSettings.Networks.*.IPAddress` and
//! `GlobalIPv6Address`). [`Docker`] keeps the answer and asks again on a miss, at most
//! every [`REFRESH_EVERY`], each request bounded by [`TIMEOUT`], so the watcher never
//! waits long on Docker.
//!
//! The request is HTTP/1.0 (`Connection: close` by default): the daemon (Go's net/http)
//! then answers with the whole body and closes, without chunked transfer coding, so
//! reading to the end is the whole client. awsvpc tasks have a network namespace and an
//! ENI address of their own that Docker does not list: they are found by address only.

use crate::model::audit::Container;
use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The longest one request may take, connect to last byte.
pub const TIMEOUT: Duration = Duration::from_millis(300);
/// The shortest time between two requests (a miss does not ask again sooner).
pub const REFRESH_EVERY: Duration = Duration::from_secs(3);
/// The largest answer read (a host with thousands of containers stays far below).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why Docker did not answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Connecting, writing or reading failed, or took longer than [`TIMEOUT`].
    #[error("Docker's API socket {}: {source}", .socket.display())]
    Io {
        /// The socket.
        socket: PathBuf,
        /// The OS error (`TimedOut` when the deadline passed).
        source: std::io::Error,
    },
    /// The answer was not `200` with a JSON list of containers.
    #[error("Docker's API socket {}: {what}", .socket.display())]
    Answer {
        /// The socket.
        socket: PathBuf,
        /// What was wrong.
        what: String,
    },
}

/// The containers of `GET /containers/json` (a JSON list) by address: every non-empty
/// `IPAddress` and `GlobalIPv6Address` of each container's networks. Entries without an
/// id or an address are skipped. Pure.
///
/// Errors: the body is not a JSON list.
pub fn parse_containers(body: &[u8]) -> Result<Vec<(IpAddr, Container)>, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = v.as_array().ok_or("not a JSON list of containers")?;
    let mut out = Vec::new();
    for c in list {
        let Some(id) = c.get("Id").and_then(|v| v.as_str()) else { continue };
        let name = c.pointer("/Names/0").and_then(|v| v.as_str()).unwrap_or("").trim_start_matches('/');
        let Some(nets) = c.pointer("/NetworkSettings/Networks").and_then(|v| v.as_object()) else { continue };
        for net in nets.values() {
            for key in ["IPAddress", "GlobalIPv6Address"] {
                if let Some(addr) = net.get(key).and_then(|v| v.as_str()).and_then(|s| s.parse::<IpAddr>().ok()) {
                    out.push((addr, Container { id: id.to_string(), name: name.to_string() }));
                }
            }
        }
    }
    Ok(out)
}

/// The body of a `200` answer (`HTTP/1.x 200 ...`, headers, a blank line, the body). Pure.
///
/// Errors: no status line, another status, no end of the headers.
pub fn http_body(answer: &[u8]) -> Result<&[u8], String> {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of the HTTP headers")?;
    let status = answer.split(|b| *b == b'\n').next().map(String::from_utf8_lossy).unwrap_or_default();
    let mut words = status.split_whitespace();
    match (words.next(), words.next()) {
        (Some(v), Some("200")) if v.starts_with("HTTP/1.") => Ok(&answer[end + 4..]),
        _ => Err(format!("answered {:?}", status.trim_end())),
    }
}

/// `GET /containers/json` on `socket` within `timeout`: the raw answer.
fn get_containers(socket: &Path, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))
    };
    // A unix socket's connect does not wait for the server to accept.
    let mut s = UnixStream::connect(socket)?;
    s.set_write_timeout(Some(left()?))?;
    s.write_all(b"GET /containers/json HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        s.set_read_timeout(Some(left()?))?;
        match s.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) if out.len() + n <= MAX_BODY => out.extend_from_slice(&chunk[..n]),
            Ok(_) => return Err(std::io::Error::other("answer larger than 16 MiB")),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The containers by address, asked of Docker when needed.
pub struct Docker {
    socket: PathBuf,
    by_addr: HashMap<IpAddr, Container>,
    asked: Option<Instant>,
}

impl Docker {
    /// A client of `socket` that has asked nothing yet.
    pub fn new(socket: &Path) -> Docker {
        Docker { socket: socket.to_path_buf(), by_addr: HashMap::new(), asked: None }
    }

    /// The container with address `addr`: from what Docker said last, else (at most every
    /// [`REFRESH_EVERY`]) asked again. `Ok(None)`: no container has it, Docker's socket
    /// does not exist (no Docker on this host), or it was asked too recently.
    ///
    /// Errors: Docker did not answer (within [`TIMEOUT`]) or answered something else; the
    /// next miss after [`REFRESH_EVERY`] asks again.
    pub fn container_of(&mut self, addr: IpAddr) -> Result<Option<Container>, Error> {
        if let Some(c) = self.by_addr.get(&addr) {
            return Ok(Some(c.clone()));
        }
        if self.asked.is_some_and(|t| t.elapsed() < REFRESH_EVERY) {
            return Ok(None);
        }
        self.asked = Some(Instant::now());
        let answer = match get_containers(&self.socket, TIMEOUT) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
                // No Docker (now): nobody to name.
                self.by_addr.clear();
                return Ok(None);
            }
            Err(source) => return Err(Error::Io { socket: self.socket.clone(), source }),
            Ok(a) => a,
        };
        let answer_err = |what| Error::Answer { socket: self.socket.clone(), what };
        let body = http_body(&answer).map_err(answer_err)?;
        let list = parse_containers(body).map_err(answer_err)?;
        self.by_addr = list.into_iter().collect();
        Ok(self.by_addr.get(&addr).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Docker 20.10 answers (abridged to the fields read), one container on the
    /// default bridge, one on a user-defined IPv6 network, one with no network.
    const ANSWER: &[u8] = b"HTTP/1.0 200 OK\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\n\r\n\
[{\"Id\":\"3f2a1b9c0d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd\",\"Names\":[\"/web\"],\
\"NetworkSettings\":{\"Networks\":{\"bridge\":{\"IPAddress\":\"172.17.0.2\",\"GlobalIPv6Address\":\"\"}}}},\
{\"Id\":\"aa11\",\"Names\":[\"/db\"],\"NetworkSettings\":{\"Networks\":{\"ehn-user\":{\"IPAddress\":\"172.30.0.2\",\
\"GlobalIPv6Address\":\"fd00:d0c:30::2\"}}}},\
{\"Id\":\"bb22\",\"Names\":[\"/none\"],\"NetworkSettings\":{\"Networks\":{\"none\":{\"IPAddress\":\"\"}}}}]\n";

    #[test]
    fn addresses_of_every_network_name_their_container() {
        let list = parse_containers(http_body(ANSWER).unwrap()).unwrap();
        let by: HashMap<IpAddr, Container> = list.into_iter().collect();
        assert_eq!(by.len(), 3, "{by:?}");
        let web = &by[&"172.17.0.2".parse::<IpAddr>().unwrap()];
        assert_eq!((web.short_id(), web.name.as_str()), ("3f2a1b9c0d4e", "web"));
        assert_eq!(by[&"fd00:d0c:30::2".parse::<IpAddr>().unwrap()].name, "db");
        assert_eq!(by[&"172.30.0.2".parse::<IpAddr>().unwrap()].id, "aa11");
    }

    #[test]
    fn other_answers_are_errors() {
        assert!(http_body(b"HTTP/1.0 404 Not Found\r\n\r\n{}").unwrap_err().contains("404"));
        assert!(http_body(b"HTTP/1.0 200 OK\r\nX: y").is_err(), "headers without their end");
        assert!(parse_containers(b"{\"message\":\"x\"}").is_err());
        assert!(parse_containers(b"<html>").is_err());
    }

    #[test]
    fn a_missing_socket_is_no_container_and_a_silent_server_is_a_timeout() {
        /// Removed when the test ends, also by a panic.
        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let guard = Dir(std::env::temp_dir().join(format!("ehn-docker-test-{}", std::process::id())));
        let dir = &guard.0;
        std::fs::create_dir_all(dir).unwrap();
        let addr: IpAddr = "172.17.0.2".parse().unwrap();
        let mut d = Docker::new(&dir.join("missing.sock"));
        assert!(matches!(d.container_of(addr), Ok(None)));
        // A server that accepts and never answers: bounded by TIMEOUT.
        let path = dir.join("silent.sock");
        let _server = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let mut d = Docker::new(&path);
        let t0 = Instant::now();
        let r = d.container_of(addr);
        let took = t0.elapsed();
        assert!(matches!(&r, Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::TimedOut), "{r:?}");
        assert!(took < TIMEOUT * 10, "bounded: {took:?}");
        // Asked again only after REFRESH_EVERY.
        assert!(matches!(d.container_of(addr), Ok(None)));
    }
}
