//! Editing the ECS agent's settings file, `/etc/ecs/ecs.config` (pure, bytes in, bytes out).
//!
//! The file is the agent's `KEY=VALUE` environment file (read by its systemd unit as an
//! `EnvironmentFile=` and by ecs-init). Edits keep every other byte as it was: other keys,
//! comments, blank lines, CRLF line ends, a missing final newline. A key that appears
//! several times is set at its LAST occurrence (the one that wins for the agent) and its
//! earlier occurrences are removed, so one copy is left.

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

    #[test]
    fn removal_and_lookup() {
        assert_eq!(set(b"A=1\nECS_ENABLE_TASK_IAM_ROLE=true\nB=2\n", K, None), b"A=1\nB=2\n".to_vec());
        assert_eq!(get(b"ECS_ENABLE_TASK_IAM_ROLE=a\nECS_ENABLE_TASK_IAM_ROLE=b\n", K).as_deref(), Some("b"));
        assert_eq!(get(b"#ECS_ENABLE_TASK_IAM_ROLE=a\n", K), None);
        assert_eq!(get(b" ECS_ENABLE_TASK_IAM_ROLE = false \n", K).as_deref(), Some("false"));
    }
}
