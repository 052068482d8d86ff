//! A corpus of malformed and hostile configurations, each with the exact error output it
//! must produce. No root, no kernel: when the tests run as root, every command here runs as
//! uid/gid 65534 (a copy of the binary and of the corpus in a fresh world-readable temp dir,
//! see `support::Unprivileged`).
//!
//! `tests/bad-input/NN-short-name.EXT` is a configuration; its sibling `NN-short-name.expected`
//! holds the exact stderr of `ecs-hostnet validate FILE` with the path replaced by `{FILE}`
//! (one `{FILE}:LINE:COL: message` line per error). Cases that need the file system (symlinks,
//! a FIFO, modes, huge or deeply nested files) are made at run time by [`runtime_cases`], each
//! with its expected text here.
//!
//! Every case must be refused by every command that reads a configuration: `validate FILE`,
//! `diff GOOD FILE` and `render -c FILE` each exit 1 with an empty stdout and that same stderr,
//! and never panic or hang. `UPDATE_BAD_INPUT=1 cargo test --test bad_input` rewrites the
//! `.expected` files instead of comparing them (read every one before committing: the message
//! must say what is wrong and what is allowed, at the right line and column).

mod support;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// The corpus must not shrink below this many cases (files + runtime cases).
const MIN_CASES: usize = 60;

/// Every command is killed after this long (a FIFO read, a runaway recursion).
const TIMEOUT: Duration = Duration::from_secs(30);

fn corpus_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad-input")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_BAD_INPUT").is_some_and(|v| v == "1")
}

/// The case files of the corpus (`NN-name.EXT`, not `.expected`, not dotfiles), sorted.
fn corpus_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(corpus_root())
        .unwrap_or_else(|e| panic!("read {}: {e}", corpus_root().display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.') && !n.ends_with(".expected"))
        .collect();
    names.sort();
    names
}

/// `NN-name.EXT` -> `NN-name.expected`.
fn expected_name(case: &str) -> String {
    let stem = case.rsplit_once('.').map_or(case, |(s, _)| s);
    format!("{stem}.expected")
}

/// Runs the unprivileged copy of the binary in `cwd` with [`TIMEOUT`].
fn ehn(u: &Unprivileged, cwd: &Path, args: &[&str]) -> Out {
    let mut cmd = u.command(u.bin(), cwd);
    cmd.args(args);
    let mut out = run_cmd_with(&mut cmd, TIMEOUT);
    out.cmdline = format!("(uid {}, in {}) {}", u.uid(), cwd.display(), out.cmdline.escape_debug());
    out
}

/// The three commands that read a configuration, with `arg` as the configuration. `good.toml`
/// (a valid configuration) must exist in the working directory.
fn commands(arg: &str) -> [(&'static str, Vec<&str>); 3] {
    [
        ("validate", vec!["validate", arg]),
        ("diff", vec!["diff", "good.toml", arg]),
        ("render", vec!["render", "-c", arg]),
    ]
}

/// Runs every command on one case and returns validate's stderr with `arg` replaced by
/// `{FILE}`. Each command must exit 1, print nothing on stdout, not panic, and print `want`
/// (when given) on stderr.
fn run_case(
    u: &Unprivileged,
    cwd: &Path,
    case: &str,
    arg: &str,
    want: Option<&str>,
    problems: &mut Vec<String>,
) -> String {
    let mut validate_stderr = String::new();
    for (name, args) in commands(arg) {
        let out = ehn(u, cwd, &args);
        // The binary escapes control characters of a file name (`\n` -> `\\n`).
        let got = out.stderr.replace(&escape_controls(arg), "{FILE}").replace(arg, "{FILE}");
        if name == "validate" {
            validate_stderr = got.clone();
        }
        let mut wrong = Vec::new();
        if out.code != 1 {
            wrong.push(format!("exit {} (want 1)", out.code));
        }
        if !out.stdout.is_empty() {
            wrong.push("stdout is not empty".to_string());
        }
        if out.stderr.contains("panicked") {
            wrong.push("panicked".to_string());
        }
        // diff and render must say exactly what validate says.
        let want = want.unwrap_or(&validate_stderr);
        if got != want {
            wrong.push(format!(
                "stderr differs from the expected text:\n{}",
                unified_diff(&format!("{case} (expected)"), want, &format!("{name} stderr"), &got)
            ));
        }
        if got.is_empty() || !got.lines().all(|l| l.starts_with("{FILE}:")) {
            wrong.push("a line of stderr does not start with the file's name".to_string());
        }
        if out.stderr.chars().any(|c| c.is_control() && c != '\n') {
            wrong.push("stderr holds a raw control character (a terminal escape, a CR, ...)".to_string());
        }
        if !wrong.is_empty() {
            problems.push(format!("{case}: `{name}`: {}\n{out}", wrong.join("; ")));
        }
    }
    validate_stderr
}

/// `s` with its control characters escaped as Rust does (`\n`, `\u{1b}`).
fn escape_controls(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// Fail with every problem; with UPDATE_BAD_INPUT=1 only print them.
#[track_caller]
fn report(what: &str, problems: &[String]) {
    if problems.is_empty() {
        return;
    }
    let text = format!("{what}: {} problem(s):\n\n{}", problems.len(), problems.join("\n\n"));
    if updating() {
        eprintln!("UPDATE_BAD_INPUT (not failing): {text}");
    } else {
        panic!("{text}");
    }
}

/// Copies the corpus into a fresh directory the unprivileged user can read, with `good.toml`
/// (rules/default.toml) next to it.
fn corpus_copy(u: &Unprivileged, files: &[String]) -> PathBuf {
    let dst = u.subdir("corpus");
    for f in files {
        let bytes = std::fs::read(corpus_root().join(f)).unwrap_or_else(|e| panic!("read tests/bad-input/{f}: {e}"));
        write_readable(&dst.join(f), &bytes);
    }
    write_readable(&dst.join("good.toml"), default_config_text().as_bytes());
    dst
}

/// A case made at run time: `arg` is the path given to the commands (relative to the runtime
/// directory, or absolute), `want` the expected stderr with `{FILE}` for `arg`.
struct RuntimeCase {
    name: &'static str,
    arg: String,
    want: String,
}

fn make_fifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), 0o644) };
    assert_eq!(rc, 0, "mkfifo {}: {}", path.display(), std::io::Error::last_os_error());
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn mode(path: &Path, m: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(m))
        .unwrap_or_else(|e| panic!("chmod {m:o} {}: {e}", path.display()));
}

/// `n` nested arrays: `[[[...]]]`.
fn nested_arrays(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

/// Makes the runtime cases in `dir` (which holds `good.toml`).
fn runtime_cases(u: &Unprivileged, dir: &Path) -> Vec<RuntimeCase> {
    let mut v = Vec::new();
    let mut case = |name: &'static str, arg: &str, want: &str| {
        v.push(RuntimeCase { name, arg: arg.to_string(), want: want.to_string() });
    };
    let write = |name: &str, text: &[u8]| write_readable(&dir.join(name), text);
    const PORT0: &str = "[credentials]\nagent_port = 0\n";
    const PORT0_WANT: &str = "{FILE}:2:14: port 0 is out of range; allowed: 1-65535\n";
    const DIRECTORY: &str = "{FILE}: a directory; give a TOML configuration file\n";
    const DEVICE: &str = "{FILE}: a device; give a TOML configuration file\n";
    const FIFO: &str =
        "{FILE}: a FIFO (a pipe, e.g. from <(...)); write the configuration to a regular file and give that\n";
    const SOCKET: &str = "{FILE}: a socket; give a TOML configuration file\n";
    const ENOENT: &str = "{FILE}: cannot read the configuration: No such file or directory (os error 2)\n";
    const ELOOP: &str = "{FILE}: cannot read the configuration: Too many levels of symbolic links (os error 40)\n";
    const EACCES: &str = "{FILE}: cannot read the configuration: Permission denied (os error 13)\n";
    const ENOTDIR: &str = "{FILE}: cannot read the configuration: Not a directory (os error 20)\n";
    const RECURSION: &str = "recursion limit exceeded\n";

    // --- symlinks: errors name the path given, not the target
    write("port-zero-target.toml", PORT0.as_bytes());
    std::os::unix::fs::symlink("port-zero-target.toml", dir.join("link-to-bad.toml")).unwrap();
    case("symlink-to-bad-file", "link-to-bad.toml", PORT0_WANT);
    std::os::unix::fs::symlink("link-to-bad.toml", dir.join("link-to-link.toml")).unwrap();
    case("symlink-chain-to-bad-file", "link-to-link.toml", PORT0_WANT);
    std::os::unix::fs::symlink("loop-b.toml", dir.join("loop-a.toml")).unwrap();
    std::os::unix::fs::symlink("loop-a.toml", dir.join("loop-b.toml")).unwrap();
    case("symlink-loop", "loop-a.toml", ELOOP);
    std::os::unix::fs::symlink("self.toml", dir.join("self.toml")).unwrap();
    case("symlink-to-itself", "self.toml", ELOOP);
    std::os::unix::fs::symlink("nowhere.toml", dir.join("dangling.toml")).unwrap();
    case(
        "dangling-symlink",
        "dangling.toml",
        "{FILE}: cannot read the configuration: a symlink to nowhere.toml, which does not exist\n",
    );
    std::fs::create_dir(dir.join("a-dir")).unwrap();
    mode(&dir.join("a-dir"), 0o755);
    std::os::unix::fs::symlink("a-dir", dir.join("link-to-dir.toml")).unwrap();
    case("symlink-to-directory", "link-to-dir.toml", DIRECTORY);

    // --- special files and missing paths
    case("missing-file", "no-such-file.toml", ENOENT);
    case("directory", "a-dir", DIRECTORY);
    case("directory-with-slash", "a-dir/", DIRECTORY);
    make_fifo(&dir.join("fifo.toml"));
    case("fifo", "fifo.toml", FIFO);
    case("dev-null", "/dev/null", DEVICE);
    case("dev-zero", "/dev/zero", DEVICE);
    let _socket = std::os::unix::net::UnixListener::bind(dir.join("socket.toml")).unwrap();
    case("unix-socket", "socket.toml", SOCKET);
    case("path-through-a-file", "good.toml/x.toml", ENOTDIR);

    // --- permissions: only meaningful for an unprivileged reader (root reads anything)
    if u.uid() != 0 {
        write("mode-000.toml", b"[credentials]\nenabled = true\n");
        mode(&dir.join("mode-000.toml"), 0o000);
        case("unreadable-file-mode-000", "mode-000.toml", EACCES);
        std::fs::create_dir(dir.join("closed-dir")).unwrap();
        std::fs::write(dir.join("closed-dir/config.toml"), "").unwrap();
        mode(&dir.join("closed-dir"), 0o000);
        case("file-in-unsearchable-directory", "closed-dir/config.toml", EACCES);
        std::os::unix::fs::symlink("mode-000.toml", dir.join("link-to-unreadable.toml")).unwrap();
        case("symlink-to-unreadable-file", "link-to-unreadable.toml", EACCES);
    }

    // --- a hostile file name: the error names it with its control characters escaped
    let evil = "evil\n\x1b[31mname.toml";
    write(evil, PORT0.as_bytes());
    case("newline-and-escape-in-file-name", evil, PORT0_WANT);

    // --- size limits
    let over = 1024 * 1024 + 1;
    let mut text = b"[credentials]\nenabled = true\n".to_vec();
    while text.len() < over {
        let line = format!("# {}\n", "x".repeat(77));
        text.extend_from_slice(&line.as_bytes()[..line.len().min(over - text.len())]);
    }
    write("over-1mib-by-one.toml", &text);
    case(
        "file-1-mib-plus-one-byte",
        "over-1mib-by-one.toml",
        "{FILE}: 1048577 bytes is too large for a configuration (limit 1 MiB)\n",
    );
    // A 1 GiB sparse file: refused by its size, never read into memory.
    let f = std::fs::File::create(dir.join("sparse-1gib.toml")).unwrap();
    f.set_len(1 << 30).unwrap();
    mode(&dir.join("sparse-1gib.toml"), 0o644);
    case(
        "sparse-file-1-gib",
        "sparse-1gib.toml",
        "{FILE}: 1073741824 bytes is too large for a configuration (limit 1 MiB)\n",
    );
    let names: Vec<String> = (0..1025).map(|i| format!("\"c{i}\"")).collect();
    write("interfaces-1025.toml", format!("[containers]\ninterfaces = [{}]\n", names.join(", ")).as_bytes());
    case(
        "interfaces-1025",
        "interfaces-1025.toml",
        "{FILE}:2:14: containers.interfaces has 1025 entries; at most 1024 are allowed\n",
    );
    let names: Vec<String> = (0..1025).map(|i| format!("  \"c{i}\",\n")).collect();
    write("interfaces-1025-multiline.toml", format!("[containers]\ninterfaces = [\n{}]\n", names.concat()).as_bytes());
    case(
        "interfaces-1025-one-per-line",
        "interfaces-1025-multiline.toml",
        "{FILE}:2:14: containers.interfaces has 1025 entries; at most 1024 are allowed\n",
    );

    // --- deep nesting: refused with a located error, no stack overflow
    write("arrays-1000.toml", format!("[containers]\ninterfaces = {}\n", nested_arrays(1000)).as_bytes());
    case("arrays-nested-1000-deep", "arrays-1000.toml", &format!("{{FILE}}:2:93: {RECURSION}"));
    write("arrays-1000-unclosed.toml", format!("[containers]\ninterfaces = {}\n", "[".repeat(1000)).as_bytes());
    case("arrays-nested-1000-deep-unclosed", "arrays-1000-unclosed.toml", &format!("{{FILE}}:2:93: {RECURSION}"));
    // just under the size limit: 499,998 levels
    write("arrays-500k.toml", format!("x = {}\n", nested_arrays(499_998)).as_bytes());
    case("arrays-nested-499998-deep", "arrays-500k.toml", &format!("{{FILE}}:1:84: {RECURSION}"));
    let inline = format!("credentials = {}1{}\n", "{ a = ".repeat(1000), " }".repeat(1000));
    write("inline-tables-1000.toml", inline.as_bytes());
    case("inline-tables-nested-1000-deep", "inline-tables-1000.toml", &format!("{{FILE}}:1:489: {RECURSION}"));
    let inline = format!("[credentials]\nenabled = {}\n", "{a=".repeat(300_000));
    write("inline-tables-300k.toml", inline.as_bytes());
    case(
        "inline-tables-nested-300000-deep-unclosed",
        "inline-tables-300k.toml",
        &format!("{{FILE}}:2:248: {RECURSION}"),
    );
    let dotted = format!("credentials.{} = 1\n", vec!["a"; 1000].join("."));
    write("dotted-key-1000.toml", dotted.as_bytes());
    case("dotted-key-1000-deep", "dotted-key-1000.toml", &format!("{{FILE}}:1:1: {RECURSION}"));
    let header = format!("[credentials.{}]\n", vec!["a"; 1000].join("."));
    write("table-header-1000.toml", header.as_bytes());
    case(
        "table-header-1000-deep",
        "table-header-1000.toml",
        &format!("{{FILE}}:1:2: invalid table header; {RECURSION}"),
    );
    v
}

/// Every case of the corpus and every runtime case, through validate, diff and render.
#[test]
fn corpus_of_bad_inputs_is_refused_by_every_command_with_located_messages() {
    let u = Unprivileged::new("bad-input");
    // The commands below really run unprivileged.
    let mut id = u.command("sh", u.dir().path());
    id.args(["-c", "id -u"]);
    let id = u.run(&mut id);
    id.expect_code(0);
    if u.as_nobody {
        assert_eq!(id.stdout.trim(), NOBODY_UID.to_string(), "the commands must run as uid 65534: {id}");
    }
    assert_ne!(id.stdout.trim(), "0", "the commands must not run as root: {id}");

    let mut problems = Vec::new();

    // --- the committed corpus
    let files = corpus_files();
    let mut numbers = std::collections::BTreeSet::new();
    for f in &files {
        // Two digits or more (the corpus outgrew 99), then a dash.
        let digits = f.bytes().take_while(u8::is_ascii_digit).count();
        let ok = digits >= 2 && f.len() > digits + 1 && f.as_bytes()[digits] == b'-';
        if !ok || !numbers.insert(f[..digits].to_string()) {
            problems.push(format!("tests/bad-input/{f}: not named NN-short-name.EXT with a number of its own"));
        }
    }
    for e in std::fs::read_dir(corpus_root()).unwrap() {
        let n = e.unwrap().file_name().to_string_lossy().into_owned();
        if let Some(stem) = n.strip_suffix(".expected")
            && !files.iter().any(|f| f.rsplit_once('.').is_some_and(|(s, _)| s == stem))
        {
            problems.push(format!("tests/bad-input/{n}: no case file next to it"));
        }
    }
    let cwd = corpus_copy(&u, &files);
    for f in &files {
        let exp_path = corpus_root().join(expected_name(f));
        let want = std::fs::read_to_string(&exp_path).ok();
        if updating() {
            let got = run_case(&u, &cwd, f, f, None, &mut problems);
            if want.as_deref() != Some(got.as_str()) {
                std::fs::write(&exp_path, &got).unwrap_or_else(|e| panic!("write {}: {e}", exp_path.display()));
                eprintln!("UPDATE_BAD_INPUT: wrote {}", exp_path.display());
            }
        } else {
            match want {
                Some(w) => {
                    run_case(&u, &cwd, f, f, Some(&w), &mut problems);
                }
                None => problems.push(format!(
                    "tests/bad-input/{}: missing (create it with UPDATE_BAD_INPUT=1 and read it)",
                    expected_name(f)
                )),
            }
        }
    }

    // --- the runtime cases
    let dir = u.subdir("runtime");
    write_readable(&dir.join("good.toml"), default_config_text().as_bytes());
    let runtime = runtime_cases(&u, &dir);
    for c in &runtime {
        run_case(&u, &dir, c.name, &c.arg, Some(&c.want), &mut problems);
    }

    let total = files.len() + runtime.len();
    eprintln!("bad-input corpus: {} files + {} runtime cases = {total} cases", files.len(), runtime.len());
    assert!(
        total >= MIN_CASES,
        "the bad-input corpus has {total} cases ({} files, {} runtime); at least {MIN_CASES} are required",
        files.len(),
        runtime.len()
    );
    // Leave nothing the Drop of the temp dir cannot remove.
    let closed = dir.join("closed-dir");
    if closed.exists() {
        mode(&closed, 0o755);
    }
    report(&format!("bad-input corpus ({total} cases)"), &problems);
}

/// The valid neighbours of the corpus: an empty file (every key takes the default), and
/// exactly at each limit (1 MiB, 1024 container interfaces, 8 route_localnet interfaces).
#[test]
fn empty_file_and_inputs_at_the_limits_are_valid() {
    let u = Unprivileged::new("bad-input-valid");
    let dir = u.subdir("valid");
    write_readable(&dir.join("good.toml"), default_config_text().as_bytes());
    write_readable(&dir.join("empty.toml"), b"");
    let mut mib = b"[credentials]\nenabled = true\n".to_vec();
    while mib.len() < 1024 * 1024 {
        let n = (1024 * 1024 - mib.len()).min(80);
        mib.extend(std::iter::repeat_n(b'#', n - 1));
        mib.push(b'\n');
    }
    write_readable(&dir.join("one-mib.toml"), &mib);
    let names: Vec<String> = (0..1024).map(|i| format!("\"c{i}\"")).collect();
    write_readable(
        &dir.join("interfaces-1024.toml"),
        format!("[containers]\ninterfaces = [{}]\n", names.join(", ")).as_bytes(),
    );
    // (names under a container pattern: route_localnet elsewhere is refused)
    let names: Vec<String> = (0..8).map(|i| format!("\"docker{i}\"")).collect();
    write_readable(
        &dir.join("route-localnet-8.toml"),
        format!("[route_localnet]\nenable = [{}]\n", names.join(", ")).as_bytes(),
    );
    write_readable(&dir.join("bom-crlf.toml"), b"\xef\xbb\xbf[credentials]\r\nagent_port = 51679\r\n");
    let mut problems = Vec::new();
    for f in ["empty.toml", "one-mib.toml", "interfaces-1024.toml", "route-localnet-8.toml", "bom-crlf.toml"] {
        let out = ehn(&u, &dir, &["validate", f]);
        // The one note on stderr a valid file may get: its prefix patterns are checked
        // against a host's uplink only on that host.
        let note = format!("ecs-hostnet: note: {f}: containers.interfaces has prefix patterns (");
        let stderr_ok = out.stderr.is_empty() || (out.stderr.starts_with(&note) && out.stderr.lines().count() == 1);
        if out.code != 0 || out.stdout != format!("{f}: valid\n") || !stderr_ok {
            problems.push(format!("{f} must be valid: {out}"));
        }
        let out = ehn(&u, &dir, &["render", "-c", f]);
        if out.code != 0 || out.stderr.contains("panicked") {
            problems.push(format!("render -c {f} must succeed: {out}"));
        }
    }
    assert_eq!(mib.len(), 1024 * 1024);
    report("inputs at the limits", &problems);
}
