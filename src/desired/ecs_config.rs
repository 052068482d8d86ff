//! Editing the ECS agent's settings file, `/etc/ecs/ecs.config` (pure, bytes in, bytes out).
//!
//! The file is the agent's `KEY=VALUE` environment file (read by its systemd unit as an
//! `EnvironmentFile=` and by ecs-init). Edits keep every other byte as it was: other keys,
//! comments, blank lines, CRLF line ends, a missing final newline. A key that appears
//! several times is set at its LAST occurrence (the one that wins for the agent) and its
//! earlier occurrences are removed, so one copy is left.
//!
//! Uninstall undoes those edits without a copy of the file, which holds registry
//! credentials: install [`record`]s only the lines of the keys it manages (where they
//! were, their exact bytes), and [`restore`] puts them back into the file as it is at
//! uninstall, keeping every other byte, so a later edit (a rotated secret) is kept.

use crate::model::install_state::{self as state, InstalledEcsConfig, KeyLine};

/// A line of the file with its end (`\n`, `\r\n` or nothing for a last line without one).
struct Line<'a> {
    body: &'a [u8],
    end: &'a [u8],
}

fn lines(text: &[u8]) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let (body, end) = if i > 0 && rest[i - 1] == b'\r' {
                    (&rest[..i - 1], &rest[i - 1..=i])
                } else {
                    (&rest[..i], &rest[i..=i])
                };
                out.push(Line { body, end });
                rest = &rest[i + 1..];
            }
            None => {
                out.push(Line { body: rest, end: b"" });
                rest = b"";
            }
        }
    }
    out
}

/// Why a file cannot be edited line by line without changing what systemd reads from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// 1-based line, as this module splits lines (at `\n`).
    pub line: usize,
    /// 0-based byte offset in the file of the offending byte.
    pub byte: usize,
    /// What is there.
    pub what: UnsafeKind,
}

/// What makes a file unsafe to edit line by line (see [`check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsafeKind {
    /// A carriage return not followed by a line feed: systemd ends a line there.
    LoneCr,
    /// A quoted value (`"` or `'` right after `=`) not closed on its line: systemd reads on.
    QuoteSpansLines,
    /// A line ending in an unescaped backslash: systemd joins it with the next one.
    Continuation,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.what {
            UnsafeKind::LoneCr => "a carriage return (\\r) not followed by a line feed, where systemd ends a line",
            UnsafeKind::QuoteSpansLines => "a quoted value that is not closed on its line, which systemd reads on",
            UnsafeKind::Continuation => "a line ending in a backslash, which systemd joins with the next line",
        };
        write!(f, "line {} (byte {}) holds {what}", self.line, self.byte)
    }
}

impl std::error::Error for Unsafe {}

/// Checks that this module's line splitting is systemd's for `text`: no lone `\r` (a
/// line end for systemd's EnvironmentFile= parser, whose NEWLINE set is `"\n\r"`), no
/// quoted value spanning lines, no line continued with a backslash. On such a file an
/// edit could record or drop a line that is not our key's (a secret), so callers refuse
/// it before writing anything. CRLF line ends are fine.
pub fn check(text: &[u8]) -> Result<(), Unsafe> {
    let mut start = 0;
    for (n, l) in lines(text).iter().enumerate() {
        let at = |off: usize, what| Unsafe { line: n + 1, byte: start + off, what };
        if let Some(i) = l.body.iter().position(|&b| b == b'\r') {
            return Err(at(i, UnsafeKind::LoneCr));
        }
        let trailing = l.body.iter().rev().take_while(|&&b| b == b'\\').count();
        if trailing % 2 == 1 {
            return Err(at(l.body.len() - 1, UnsafeKind::Continuation));
        }
        let s = l.body.trim_ascii_start();
        if let Some(eq) = s.iter().position(|&b| b == b'=')
            && !s.starts_with(b"#")
            && !s.starts_with(b";")
        {
            let eq = eq + (l.body.len() - s.len());
            let v = &l.body[eq + 1..];
            let lead = v.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            let closed = match v.get(lead) {
                Some(b'\'') => v[lead + 1..].contains(&b'\''),
                Some(b'"') => {
                    let mut esc = false;
                    v[lead + 1..].iter().any(|&b| {
                        let close = !esc && b == b'"';
                        esc = !esc && b == b'\\';
                        close
                    })
                }
                _ => true,
            };
            if !closed {
                return Err(at(eq + 1 + lead, UnsafeKind::QuoteSpansLines));
            }
        }
        start += l.body.len() + l.end.len();
    }
    Ok(())
}

/// The key a line sets, if it is a `KEY=VALUE` line (leading blanks and blanks before
/// `=` allowed; `#` and `;` start comments, as in systemd's EnvironmentFile).
fn key_of(body: &[u8]) -> Option<&[u8]> {
    let s = body.trim_ascii_start();
    if s.first().is_none_or(|&b| b == b'#' || b == b';') {
        return None;
    }
    let eq = s.iter().position(|&b| b == b'=')?;
    let key = s[..eq].trim_ascii_end();
    (!key.is_empty() && key.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')).then_some(key)
}

/// The value of `key` as the agent sees it (its last occurrence), if set.
pub fn get(text: &[u8], key: &str) -> Option<String> {
    lines(text).iter().rev().find(|l| key_of(l.body) == Some(key.as_bytes())).map(|l| {
        let s = l.body.trim_ascii_start();
        let eq = s.iter().position(|&b| b == b'=').expect("key_of found '='");
        // Blanks around an unquoted value do not count (systemd's EnvironmentFile strips them).
        String::from_utf8_lossy(s[eq + 1..].trim_ascii()).into_owned()
    })
}

/// The line end new lines get: CRLF if the file already uses it, else LF.
fn eol(text: &[u8]) -> &'static [u8] {
    if text.windows(2).any(|w| w == b"\r\n") { b"\r\n" } else { b"\n" }
}

/// Sets `key` to `value` (`None` removes every occurrence). Returns the new bytes.
pub fn set(text: &[u8], key: &str, value: Option<&str>) -> Vec<u8> {
    let ls = lines(text);
    let last = ls.iter().rposition(|l| key_of(l.body) == Some(key.as_bytes()));
    let mut out = Vec::with_capacity(text.len() + key.len() + 8);
    for (i, l) in ls.iter().enumerate() {
        if key_of(l.body) == Some(key.as_bytes()) {
            if Some(i) == last
                && let Some(v) = value
            {
                out.extend_from_slice(format!("{key}={v}").as_bytes());
                out.extend_from_slice(l.end);
            }
            continue;
        }
        out.extend_from_slice(l.body);
        out.extend_from_slice(l.end);
    }
    if last.is_none()
        && let Some(v) = value
    {
        if !out.is_empty() && !out.ends_with(b"\n") {
            out.extend_from_slice(eol(text));
        }
        out.extend_from_slice(format!("{key}={v}").as_bytes());
        out.extend_from_slice(eol(text));
    }
    out
}

/// What a redacted line's value becomes (see [`redact`]).
pub const REDACTED: &str = "<redacted>";

/// The file with every line that does not set one of `keep` made harmless to show: a
/// `KEY=VALUE` line becomes `KEY=<redacted>`, any other non-blank line (a comment)
/// `#<redacted>`; blank lines, line ends and the lines of `keep` stay as they are. The
/// result edits ([`set`]) exactly like the original for the keys in `keep`, so a plan made
/// from it shows the same changes; the agent's secrets (`ECS_ENGINE_AUTH_DATA`, registry
/// credentials) never leave the host. Idempotent.
pub fn redact(text: &[u8], keep: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for l in lines(text) {
        match key_of(l.body) {
            Some(k) if keep.iter().any(|x| x.as_bytes() == k) => out.extend_from_slice(l.body),
            Some(k) => {
                out.extend_from_slice(k);
                out.push(b'=');
                out.extend_from_slice(REDACTED.as_bytes());
            }
            None if l.body.trim_ascii().is_empty() => out.extend_from_slice(l.body),
            None => {
                out.push(b'#');
                out.extend_from_slice(REDACTED.as_bytes());
            }
        }
        out.extend_from_slice(l.end);
    }
    out
}

/// Sets several keys in order (see [`set`]).
pub fn set_all(text: &[u8], keys: &[(String, Option<String>)]) -> Vec<u8> {
    keys.iter().fold(text.to_vec(), |t, (k, v)| set(&t, k, v.as_deref()))
}

/// What install must remember of the file before it sets `keys` (`text`: its content,
/// `None` when it does not exist): for each key, every line that sets it, with its line
/// number and exact bytes; how many lines the file had; and the line end [`set_all`] will
/// add to a last line that has none. Nothing else of the file: no other line, no copy.
pub fn record(text: Option<&[u8]>, keys: &[(String, Option<String>)]) -> InstalledEcsConfig {
    let t = text.unwrap_or_default();
    let ls = lines(t);
    let keys_before = keys
        .iter()
        .map(|(k, _)| {
            let found = ls
                .iter()
                .enumerate()
                .filter(|(_, l)| key_of(l.body) == Some(k.as_bytes()))
                .map(|(index, l)| KeyLine { index, text: state::Line([l.body, l.end].concat()) })
                .collect();
            (k.clone(), found)
        })
        .collect();
    // Replays set_all's one addition to the existing lines: the first key appended to a
    // file whose last line has no end gets one first.
    let mut added_line_end = None;
    let mut now = t.to_vec();
    for (k, v) in keys {
        if added_line_end.is_none() && v.is_some() && get(&now, k).is_none() && !now.is_empty() && !now.ends_with(b"\n")
        {
            added_line_end = Some(String::from_utf8_lossy(eol(&now)).into_owned());
        }
        now = set(&now, k, v.as_deref());
    }
    InstalledEcsConfig { existed: text.is_some(), lines_before: ls.len(), added_line_end, keys_before }
}

/// An owned line: body and end.
type OwnedLine = (Vec<u8>, Vec<u8>);

/// Splits a recorded line into body and end.
fn split_end(text: &[u8]) -> OwnedLine {
    let end = if text.ends_with(b"\r\n") {
        2
    } else if text.ends_with(b"\n") {
        1
    } else {
        0
    };
    (text[..text.len() - end].to_vec(), text[text.len() - end..].to_vec())
}

/// Undoes install's edits of the agent's settings file: `now` is the file at uninstall,
/// `rec` what install [`record`]ed. Returns the new content, or `None` when the file is to
/// be removed (install created it and nothing but our keys is in it).
///
/// For each recorded key: absent before, its lines go; present before, its last line now
/// gets the recorded last line's bytes back (appended if someone deleted it), its other
/// lines go, and the earlier recorded lines (duplicates install removed) are put back at
/// their line numbers, never after the last one (which would change what the agent
/// reads). Then the line end install added to the last line is taken off again if the
/// file has its old number of lines. Every other line is kept as it is now.
///
/// On the file as install left it, this gives the original back byte for byte; on the
/// original itself (an install stopped before it wrote the file) it gives the original
/// too; edits made since install are kept (a rotated `ECS_ENGINE_AUTH_DATA` stays
/// rotated).
pub fn restore(now: &[u8], rec: &InstalledEcsConfig) -> Option<Vec<u8>> {
    let eol_now = eol(now).to_vec();
    let mut out: Vec<OwnedLine> = lines(now).into_iter().map(|l| (l.body.to_vec(), l.end.to_vec())).collect();
    let is_key = |l: &OwnedLine, k: &str| key_of(&l.0) == Some(k.as_bytes());
    let mut earlier: Vec<(usize, &str, &[u8])> = Vec::new();
    for (k, before) in &rec.keys_before {
        let last_now = out.iter().rposition(|l| is_key(l, k));
        let Some((last_before, dups)) = before.split_last() else {
            out.retain(|l| !is_key(l, k));
            continue;
        };
        let body = split_end(&last_before.text.0).0;
        match last_now {
            Some(i) => {
                out[i].0 = body;
                let mut n = 0;
                out.retain(|l| {
                    n += 1;
                    n - 1 == i || !is_key(l, k)
                });
            }
            None => {
                if let Some(last) = out.last_mut()
                    && last.1.is_empty()
                {
                    last.1 = eol_now.clone();
                }
                out.push((body, eol_now.clone()));
            }
        }
        earlier.extend(dups.iter().map(|d| (d.index, k.as_str(), &d.text.0[..])));
    }
    // In ascending line order: each insertion then lands where it was, given that the
    // lines before it are the original ones.
    earlier.sort_by_key(|e| e.0);
    for (index, k, text) in earlier {
        let last = out.iter().rposition(|l| is_key(l, k)).unwrap_or(out.len());
        let (body, mut end) = split_end(text);
        if end.is_empty() {
            end = eol_now.clone();
        }
        out.insert(index.min(last), (body, end));
    }
    let lines_now = out.len();
    if let Some(added) = &rec.added_line_end
        && lines_now == rec.lines_before
        && let Some(last) = out.last_mut()
        && last.1 == added.as_bytes()
    {
        last.1.clear();
    }
    let text: Vec<u8> = out.into_iter().flat_map(|(b, e)| [b, e].concat()).collect();
    (rec.existed || !text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &str = "ECS_ENABLE_TASK_IAM_ROLE";

    #[test]
    fn redaction_keeps_our_keys_and_the_shape_and_edits_alike() {
        let text = b"# token abc\r\nECS_ENGINE_AUTH_DATA={\"secret\":1}\r\n\r\n  ECS_CLUSTER = prod\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\ntail";
        let r = redact(text, &[K]);
        assert_eq!(
            r,
            b"#<redacted>\r\nECS_ENGINE_AUTH_DATA=<redacted>\r\n\r\nECS_CLUSTER=<redacted>\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n#<redacted>"
        );
        assert_eq!(redact(&r, &[K]), r, "idempotent");
        let keys = [
            (K.to_string(), Some("true".to_string())),
            ("ECS_AWSVPC_BLOCK_IMDS".to_string(), Some("true".to_string())),
        ];
        let both = ["ECS_ENABLE_TASK_IAM_ROLE", "ECS_AWSVPC_BLOCK_IMDS"];
        assert_eq!(redact(&set_all(text, &keys), &both), set_all(&redact(text, &both), &keys));
    }

    #[test]
    fn edits_keep_everything_else() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("absent file / empty", b"", b"ECS_ENABLE_TASK_IAM_ROLE=true\n"),
            ("other keys", b"ECS_CLUSTER=prod\n", b"ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=true\n"),
            (
                "ours with another value",
                b"A=1\nECS_ENABLE_TASK_IAM_ROLE=false\nB=2\n",
                b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\nB=2\n",
            ),
            (
                "ours twice: last wins, one left",
                b"ECS_ENABLE_TASK_IAM_ROLE=false\nA=1\nECS_ENABLE_TASK_IAM_ROLE=no\n",
                b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\n",
            ),
            (
                "comments kept",
                b"# ECS_ENABLE_TASK_IAM_ROLE=false\n; x\nA=1\n",
                b"# ECS_ENABLE_TASK_IAM_ROLE=false\n; x\nA=1\nECS_ENABLE_TASK_IAM_ROLE=true\n",
            ),
            ("CRLF", b"A=1\r\nB=2\r\n", b"A=1\r\nB=2\r\nECS_ENABLE_TASK_IAM_ROLE=true\r\n"),
            (
                "CRLF in place",
                b"ECS_ENABLE_TASK_IAM_ROLE=false\r\nB=2\r\n",
                b"ECS_ENABLE_TASK_IAM_ROLE=true\r\nB=2\r\n",
            ),
            ("no final newline", b"A=1", b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\n"),
            (
                "no final newline, ours last",
                b"A=1\nECS_ENABLE_TASK_IAM_ROLE=false",
                b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true",
            ),
            ("spaces around", b"  ECS_ENABLE_TASK_IAM_ROLE = false\n", b"ECS_ENABLE_TASK_IAM_ROLE=true\n"),
            (
                "prefix of another key untouched",
                b"ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=false\n",
                b"ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=false\nECS_ENABLE_TASK_IAM_ROLE=true\n",
            ),
            ("non-UTF-8 bytes kept", b"A=\xff\xfe\n", b"A=\xff\xfe\nECS_ENABLE_TASK_IAM_ROLE=true\n"),
        ];
        for (name, before, want) in cases {
            let got = set(before, K, Some("true"));
            assert_eq!(got, want.to_vec(), "{name}: got {:?}", String::from_utf8_lossy(&got));
            assert_eq!(set(&got, K, Some("true")), got, "{name}: not idempotent");
            assert_eq!(get(&got, K).as_deref(), Some("true"), "{name}");
        }
    }

    /// The keys install manages, all set (as `agent_keys()` gives them).
    fn ours(v: &str) -> Vec<(String, Option<String>)> {
        crate::model::names::AGENT_KEYS.iter().map(|k| (k.to_string(), Some(v.to_string()))).collect()
    }

    const SECRET: &str = "ECS_ENGINE_AUTH_DATA={\"https://index.docker.io/v1/\":{\"auth\":\"c2VjcmV0\"}}";

    /// Files before install (`None`: absent), each of a kind tests/install.rs also covers.
    fn originals() -> Vec<(&'static str, Option<Vec<u8>>)> {
        let b = |s: &str| Some(s.as_bytes().to_vec());
        let raw = |s: &[u8]| Some(s.to_vec());
        vec![
            ("absent", None),
            ("empty", b("")),
            ("other keys", b(&format!("ECS_CLUSTER=prod\n{SECRET}\n"))),
            ("ours once", b("ECS_CLUSTER=prod\nECS_ENABLE_TASK_IAM_ROLE=false\nECS_LOGLEVEL=info\n")),
            ("ours twice", b("ECS_AWSVPC_BLOCK_IMDS=false\nECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=no\n")),
            (
                "odd: blanks around '=', duplicate",
                b(
                    "ECS_AWSVPC_BLOCK_IMDS=false\nECS_CLUSTER=prod\n ECS_ENABLE_TASK_IAM_ROLE = false\nECS_AWSVPC_BLOCK_IMDS=false\n",
                ),
            ),
            ("no final newline", b("ECS_CLUSTER=prod")),
            ("no final newline, ours last", b("ECS_CLUSTER=prod\nECS_AWSVPC_BLOCK_IMDS=false")),
            ("CRLF", b(&format!("ECS_CLUSTER=prod\r\n{SECRET}\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n"))),
            ("CRLF, no final line end", b("ECS_CLUSTER=prod\r\nECS_ENABLE_TASK_IAM_ROLE=false")),
            (
                "all ours, already right",
                b(
                    "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\nECS_AWSVPC_BLOCK_IMDS=true\n",
                ),
            ),
            ("comments naming our keys", b("# ECS_ENABLE_TASK_IAM_ROLE=false\n; ECS_AWSVPC_BLOCK_IMDS=x\n\nA=1\n")),
            ("non-UTF-8 value of ours", raw(b"ECS_AWSVPC_BLOCK_IMDS=\xff\nA=\xfe\n")),
        ]
    }

    /// What uninstall leaves for the file `now`: removed (`None`) or `restore`'s bytes.
    fn undo(now: &[u8], rec: &InstalledEcsConfig) -> Option<Vec<u8>> {
        restore(now, rec)
    }

    #[test]
    fn restore_undoes_install_byte_for_byte_without_a_copy() {
        for (name, orig) in originals() {
            for v in ["true", "false"] {
                let keys = ours(v);
                let rec = record(orig.as_deref(), &keys);
                let installed = set_all(orig.as_deref().unwrap_or_default(), &keys);
                let show = |b: &Option<Vec<u8>>| b.as_deref().map(String::from_utf8_lossy).map(|s| format!("{s:?}"));
                assert_eq!(show(&undo(&installed, &rec)), show(&orig), "{name} ({v}): install then uninstall");
                // An install stopped before it wrote the file: uninstall meets the original.
                if let Some(o) = &orig {
                    assert_eq!(show(&undo(o, &rec)), show(&orig), "{name} ({v}): uninstall of an unchanged file");
                }
                // A second install on the installed file records nothing new to undo.
                assert_eq!(set_all(&installed, &keys), installed, "{name}");
            }
        }
    }

    /// xorshift64*: a deterministic generator for the round-trip property below.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
        }
    }

    #[test]
    fn restore_of_install_is_the_identity_on_generated_files() {
        let pool = [
            "ECS_CLUSTER=prod",
            SECRET,
            "# a comment",
            "",
            "  ",
            "ECS_ENABLE_TASK_IAM_ROLE=false",
            " ECS_ENABLE_TASK_IAM_ROLE = true ",
            "ECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=no",
            "ECS_AWSVPC_BLOCK_IMDS=true",
            "ECS_AWSVPC_BLOCK_IMDS",
            "#ECS_AWSVPC_BLOCK_IMDS=false",
            "ECS_AWSVPC_BLOCK_IMDS_X=1",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..3000 {
            let mut f = Vec::new();
            for _ in 0..rng.below(7) {
                f.extend_from_slice(pool[rng.below(pool.len())].as_bytes());
                f.extend_from_slice([&b"\n"[..], b"\r\n"][rng.below(4).min(1) * (round % 2)]);
            }
            if rng.below(3) == 0 && f.ends_with(b"\n") {
                f.truncate(f.len() - 1 - usize::from(f.ends_with(b"\r\n")));
            }
            let keys = ours(["true", "false"][rng.below(2)]);
            let orig = (rng.below(10) > 0).then_some(f);
            let rec = record(orig.as_deref(), &keys);
            let installed = set_all(orig.as_deref().unwrap_or_default(), &keys);
            assert_eq!(
                undo(&installed, &rec),
                orig,
                "round {round}: {:?}",
                orig.as_deref().map(String::from_utf8_lossy)
            );
            if let Some(o) = &orig {
                assert_eq!(undo(o, &rec).as_ref(), Some(o), "round {round}: unchanged file");
            }
        }
    }

    #[test]
    fn the_record_holds_only_our_key_lines() {
        let text =
            format!("# token abc\nECS_CLUSTER=prod\n{SECRET}\nECS_AWSVPC_BLOCK_IMDS=false\nECS_AWSVPC_BLOCK_IMDS=no\n");
        let rec = record(Some(text.as_bytes()), &ours("true"));
        let json = serde_json::to_string(&rec).unwrap();
        for leak in ["ECS_ENGINE_AUTH_DATA", "c2VjcmV0", "docker.io", "ECS_CLUSTER", "prod", "token"] {
            assert!(!json.contains(leak), "{leak} in the record: {json}");
        }
        let lines: Vec<(usize, &[u8])> = rec.keys_before.values().flatten().map(|l| (l.index, &l.text.0[..])).collect();
        assert_eq!(lines, [(3, &b"ECS_AWSVPC_BLOCK_IMDS=false\n"[..]), (4, b"ECS_AWSVPC_BLOCK_IMDS=no\n")]);
        assert_eq!(rec.keys_before.len(), 3, "every managed key, absent ones as empty lists");
        assert_eq!(serde_json::from_str::<InstalledEcsConfig>(&json).unwrap(), rec);
    }

    #[test]
    fn edits_after_install_are_kept_and_a_rotated_secret_stays_rotated() {
        let orig = format!("ECS_CLUSTER=prod\n{SECRET}\nECS_ENABLE_TASK_IAM_ROLE=false\n");
        let keys = ours("true");
        let rec = record(Some(orig.as_bytes()), &keys);
        let installed = String::from_utf8(set_all(orig.as_bytes(), &keys)).unwrap();
        let rotated_secret = SECRET.replace("c2VjcmV0", "bmV3LXNlY3JldA==");
        let edited = installed.replace(SECRET, &rotated_secret) + "ECS_LOGLEVEL=debug\n";
        let got = String::from_utf8(undo(edited.as_bytes(), &rec).unwrap()).unwrap();
        assert_eq!(
            got,
            format!("ECS_CLUSTER=prod\n{rotated_secret}\nECS_ENABLE_TASK_IAM_ROLE=false\nECS_LOGLEVEL=debug\n")
        );
    }

    #[test]
    fn restored_duplicates_never_follow_the_last_copy_and_a_deleted_line_comes_back() {
        let k = "ECS_AWSVPC_BLOCK_IMDS";
        let orig = format!("X=1\nY=2\n{k}=a\nZ=3\n{k}=b\n");
        let keys = ours("true");
        let rec = record(Some(orig.as_bytes()), &keys);
        // Lines before our key deleted since install: the earlier copy's line number is
        // now past the key; it still goes before it (the agent keeps reading `b`).
        let shortened =
            format!("{k}=true\nECS_ENABLE_TASK_IAM_ROLE=true\nECS_ENABLE_TASK_IAM_ROLE_NETWORK_HOST=true\n");
        let got = undo(shortened.as_bytes(), &rec).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), format!("{k}=a\n{k}=b\n"));
        assert_eq!(get(&got, k).as_deref(), Some("b"));
        // Our line deleted since install: it comes back at the end, the copy before it.
        let got = undo(b"X=1\nY=2\nZ=3\n", &rec).unwrap();
        assert_eq!(String::from_utf8_lossy(&got), format!("X=1\nY=2\n{k}=a\nZ=3\n{k}=b\n"));
    }

    #[test]
    fn a_lone_cr_or_a_value_spanning_lines_is_refused_and_crlf_is_not() {
        let bad: &[(&[u8], UnsafeKind, usize, usize)] = &[
            (b"ECS_ENABLE_TASK_IAM_ROLE=false\rECS_ENGINE_AUTH_DATA=SECRET\n", UnsafeKind::LoneCr, 1, 30),
            (b"A=1\nB=2\r", UnsafeKind::LoneCr, 2, 7),
            (b"A=1\r\nB=\"x\nECS_ENABLE_TASK_IAM_ROLE=false\"\n", UnsafeKind::QuoteSpansLines, 2, 7),
            (b"B= 'x\nECS_AWSVPC_BLOCK_IMDS=y'\n", UnsafeKind::QuoteSpansLines, 1, 3),
            (b"B=\"x\\\"\nC=1\"\n", UnsafeKind::QuoteSpansLines, 1, 2),
            (b"B=x\\\nECS_AWSVPC_BLOCK_IMDS=y\n", UnsafeKind::Continuation, 1, 3),
        ];
        for (text, what, line, byte) in bad {
            let e = check(text).expect_err(&String::from_utf8_lossy(text));
            assert_eq!((e.what, e.line, e.byte), (*what, *line, *byte), "{:?}", String::from_utf8_lossy(text));
            assert!(e.to_string().contains(&format!("line {line}")), "{e}");
        }
        for ok in [
            &b"A=1\r\nECS_ENABLE_TASK_IAM_ROLE=false\r\n"[..],
            b"A=\"x y\"\nB='z'\nC=\"a\\\"b\"\nD=x\\\\\n# it's\n",
            b"",
            b"A=1",
        ] {
            assert_eq!(check(ok), Ok(()), "{:?}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn removal_and_lookup() {
        assert_eq!(set(b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\nB=2\n", K, None), b"A=1\nB=2\n".to_vec());
        assert_eq!(get(b"ECS_ENABLE_TASK_IAM_ROLE=a\nECS_ENABLE_TASK_IAM_ROLE=b\n", K).as_deref(), Some("b"));
        assert_eq!(get(b"#ECS_ENABLE_TASK_IAM_ROLE=a\n", K), None);
        assert_eq!(get(b" ECS_ENABLE_TASK_IAM_ROLE = false \n", K).as_deref(), Some("false"));
    }
}
