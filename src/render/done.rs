//! A carried-out plan as text (`apply`, `remove`): the changes as [`super::plan::text`]
//! shows them, then a past-tense summary line instead of the plan's `Plan: ...` line.
//!
//! Imports [`crate::plan`] and [`super::plan`] only. Pure: no I/O.

use crate::plan::Plan;

/// The changes of `p` without color, then `HEADLINE: N added, N changed, N removed.`
/// (`headline` is e.g. `Applied` or `Removed`).
pub fn text(p: &Plan, headline: &str) -> String {
    let (a, c, r) = p.counts();
    let text = super::plan::text(p, false, "No changes: the host matches the configuration.");
    let body = text.lines().filter(|l| !l.starts_with("Plan: ")).collect::<Vec<_>>().join("\n");
    format!("{body}\n{headline}: {a} added, {c} changed, {r} removed.\n")
}
