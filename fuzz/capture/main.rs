//! `capture-dump`: writes the raw nf_tables dumps of a network namespace to seed files for
//! the `readback` fuzz target (run by `fuzz/capture-seeds`, as root). Not a fuzz target.
//!
//!     capture-dump --netns NAME --out DIR --name PREFIX
//!
//! Enters the named network namespace (setns, required: it never reads the caller's own),
//! opens a `NETLINK_NETFILTER` socket with libmnl and sends the dump requests ecs-hostnet's
//! read-back sends, for every family: `NFT_MSG_GETTABLE`, `GETCHAIN`, `GETSET`, then
//! `GETSETELEM` for each set found, `GETOBJ` and `GETRULE`. Every byte received is kept
//! as received (including each dump's `NLMSG_DONE`). It writes `PREFIX-KIND.bin` for each
//! kind (`tables`, `chains`, `sets`, `setelems`, `objs`, `rules`) that found something, and `PREFIX-full.bin`,
//! all of them in that order, which `ecs_hostnet::host::nft::decode_dump` reads as a whole.
//! Read-only: it sends no request that changes anything.

use ecs_hostnet::host::nft::decode;
use nftnl::nftnl_sys as sys;
use std::os::raw::c_char;
use std::path::PathBuf;

fn main() {
    if let Err(e) = run() {
        eprintln!("capture-dump: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (mut netns, mut out, mut name) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let v = args.next().ok_or_else(|| format!("{a} needs a value"))?;
        match a.as_str() {
            "--netns" => netns = Some(v),
            "--out" => out = Some(PathBuf::from(v)),
            "--name" => name = Some(v),
            _ => return Err(format!("unknown argument {a}; usage: --netns NAME --out DIR --name PREFIX")),
        }
    }
    let (Some(netns), Some(out), Some(name)) = (netns, out, name) else {
        return Err("usage: capture-dump --netns NAME --out DIR --name PREFIX".into());
    };
    ecs_hostnet::host::netns::enter(&netns).map_err(|e| e.to_string())?;
    let mut d = Dumper::open()?;
    let tables = d.dump(libc::NFT_MSG_GETTABLE, 0, |_| {})?;
    let chains = d.dump(libc::NFT_MSG_GETCHAIN, 0, |_| {})?;
    let sets = d.dump(libc::NFT_MSG_GETSET, 0, |_| {})?;
    let mut elems = Vec::new();
    for m in messages(&sets) {
        if m.len() < 20 || m[4..6] == (libc::NLMSG_DONE as u16).to_ne_bytes() {
            continue;
        }
        let family = m[16];
        let (table, set, _) = decode::set(m)?;
        let (ct, cs) = (cstr(&table)?, cstr(&set)?);
        elems.extend(d.dump(libc::NFT_MSG_GETSETELEM, family, |nlh| unsafe {
            let st = sys::nftnl_set_alloc();
            sys::nftnl_set_set_str(st, sys::NFTNL_SET_TABLE as u16, ct.as_ptr());
            sys::nftnl_set_set_str(st, sys::NFTNL_SET_NAME as u16, cs.as_ptr());
            sys::nftnl_set_set_u32(st, sys::NFTNL_SET_FAMILY as u16, family as u32);
            sys::nftnl_set_elems_nlmsg_build_payload(nlh, st);
            sys::nftnl_set_free(st);
        })?);
    }
    let objs = d.dump(libc::NFT_MSG_GETOBJ, 0, |_| {})?;
    let rules = d.dump(libc::NFT_MSG_GETRULE, 0, |_| {})?;
    let kinds =
        [("tables", tables), ("chains", chains), ("sets", sets), ("setelems", elems), ("objs", objs), ("rules", rules)];
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let mut full = Vec::new();
    for (kind, bytes) in &kinds {
        // A dump with nothing in it (only its NLMSG_DONE) is no seed of its own.
        if messages(bytes).len() > 1 {
            write(&out.join(format!("{name}-{kind}.bin")), bytes)?;
        }
        full.extend_from_slice(bytes);
    }
    write(&out.join(format!("{name}-full.bin")), &full)?;
    println!("{name}: {} bytes", full.len());
    Ok(())
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn cstr(s: &str) -> Result<std::ffi::CString, String> {
    std::ffi::CString::new(s).map_err(|_| format!("name with a NUL: {s:?}"))
}

/// The messages of a dump's bytes (the kernel frames them; trusted here).
fn messages(b: &[u8]) -> Vec<&[u8]> {
    let mut v = Vec::new();
    let mut off = 0;
    while off + 16 <= b.len() {
        let len = u32::from_ne_bytes(b[off..off + 4].try_into().unwrap()) as usize;
        if len < 16 || off + len > b.len() {
            break;
        }
        v.push(&b[off..off + len]);
        off += len.next_multiple_of(4);
    }
    v
}

struct Dumper {
    sock: mnl::Socket,
    seq: u32,
    buf: Vec<u64>,
}

impl Dumper {
    fn open() -> Result<Dumper, String> {
        let sock = mnl::Socket::new(mnl::Bus::Netfilter).map_err(|e| format!("netfilter socket: {e}"))?;
        Ok(Dumper { sock, seq: 1, buf: vec![0u64; 64 * 1024 / 8] })
    }

    /// Sends one dump request and returns every byte received up to and including its
    /// `NLMSG_DONE`.
    fn dump(&mut self, msg: i32, family: u8, payload: impl FnOnce(*mut libc::nlmsghdr)) -> Result<Vec<u8>, String> {
        self.seq += 1;
        let mut req = vec![0u64; 512];
        let len = unsafe {
            let nlh = sys::nftnl_nlmsg_build_hdr(
                req.as_mut_ptr() as *mut c_char,
                msg as u16,
                family as u16,
                libc::NLM_F_DUMP as u16,
                self.seq,
            );
            payload(nlh);
            (*nlh).nlmsg_len as usize
        };
        let req = unsafe { std::slice::from_raw_parts(req.as_ptr() as *const u8, len) };
        self.sock.send(req).map_err(|e| format!("send of request {msg}: {e}"))?;
        let mut out = Vec::new();
        loop {
            let bytes = unsafe { std::slice::from_raw_parts_mut(self.buf.as_mut_ptr() as *mut u8, self.buf.len() * 8) };
            let n = self.sock.recv_raw(bytes).map_err(|e| format!("receive for request {msg}: {e}"))?;
            let got = &bytes[..n];
            out.extend_from_slice(got);
            for m in messages(got) {
                let ty = u16::from_ne_bytes([m[4], m[5]]) as i32;
                if ty == libc::NLMSG_DONE {
                    return Ok(out);
                }
                if ty == libc::NLMSG_ERROR {
                    let errno = i32::from_ne_bytes(m[16..20].try_into().unwrap());
                    return Err(format!("request {msg}: {}", std::io::Error::from_raw_os_error(-errno)));
                }
            }
        }
    }
}
