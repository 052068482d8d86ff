//! Escaping text from outside before it is printed.

/// Text from outside (a foreign comment, a foreign object's name, a file name, a value
/// from a configuration under review) can hold control characters: escape them (`\n`,
/// `\u{1b}`) so that nothing printed can forge a line or send a terminal escape sequence.
pub fn escape_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
