//! Interface names and iptables-style patterns (`docker+`).

/// An interface name or iptables-style pattern (`docker+` = every name starting with
/// `docker`), checked against the kernel's `dev_valid_name()` rules.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IfPattern(String);

impl IfPattern {
    /// Parses and checks a pattern. Errors: empty, longer than 15 bytes (IFNAMSIZ - 1),
    /// `.`/`..`, characters the kernel refuses (`/`, `:`, whitespace, NUL) or that would
    /// change meaning in nft (`*`, `"`, `\`, non-printable, non-ASCII), a `+` not at the
    /// end, or a bare `+` (every interface).
    pub fn parse(s: &str, allow_prefix: bool) -> Result<IfPattern, String> {
        let allowed = "allowed: 1-15 bytes of ASCII letters, digits and . _ - @ (and a trailing + for a prefix match)";
        let name = s.strip_suffix('+').unwrap_or(s);
        if s.ends_with('+') && !allow_prefix {
            return Err(format!(
                "\"{}\": a prefix pattern is not allowed here, give an exact interface name",
                s.escape_default()
            ));
        }
        if s == "+" {
            return Err("\"+\" would match every interface, including the uplink; name the interfaces".into());
        }
        if name.is_empty() {
            return Err(format!("interface name is empty; {allowed}"));
        }
        if s.ends_with('+') && name.len() > 14 {
            return Err(format!(
                "prefix \"{}\" is {} bytes; nft allows at most 14 before the wildcard (a 15-byte prefix is an exact name: drop the '+')",
                name.escape_default(),
                name.len()
            ));
        }
        if name.len() > 15 {
            return Err(format!(
                "interface name \"{}\" is {} bytes, the kernel allows at most 15 (IFNAMSIZ - 1)",
                name.escape_default(),
                name.len()
            ));
        }
        if name == "." || name == ".." {
            return Err(format!("\"{name}\" is not a valid interface name; {allowed}"));
        }
        if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || "._-@+".contains(*c))) {
            return Err(format!(
                "interface name \"{}\" contains {:?}, which the kernel or nft refuses; {allowed}",
                name.escape_default(),
                c
            ));
        }
        if name.contains('+') {
            return Err(format!("\"{s}\": '+' is only allowed at the end (prefix match); {allowed}"));
        }
        Ok(IfPattern(s.to_string()))
    }

    /// The pattern in iptables spelling, as written in the configuration.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `true` for a prefix pattern (`docker+`).
    pub fn is_prefix(&self) -> bool {
        self.0.ends_with('+')
    }

    /// The pattern in nft spelling (`docker+` -> `docker*`).
    pub fn nft(&self) -> String {
        match self.0.strip_suffix('+') {
            Some(p) => format!("{p}*"),
            None => self.0.clone(),
        }
    }

    /// Does this pattern match the interface `name`?
    pub fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('+') {
            Some(p) => name.starts_with(p),
            None => name == self.0,
        }
    }
}
