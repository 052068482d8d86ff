//! `verify`'s output: text for people (per probe: PASS/FAIL, the outcome, the path it
//! took) and JSON (`ecs-hostnet.verify/v1`, docs/json.md).

use crate::plan::verify::Report;

/// The report as text: the probe's setup, then per probe a `PASS`/`FAIL` line with the
/// outcome and one indented line per table/chain/rule that saw the SYN, then the
/// summary line.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "probe: interface {} (matches {}), addresses {}; trace table inet {}\n",
        r.interface,
        r.pattern,
        r.probe_addresses.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", "),
        r.trace_table
    );
    for c in &r.cleaned {
        s.push_str(&format!("cleaned up after a killed run: table inet {c}\n"));
    }
    for p in &r.probes {
        let mark = if p.judgement.pass { "PASS" } else { "FAIL" };
        s.push_str(&format!(
            "\n{mark} {} ({} -> {}): {}\n",
            p.probe.label(),
            p.source,
            p.destination,
            p.judgement.outcome
        ));
        if p.path.is_empty() {
            s.push_str("    (no nf_tables chain saw the packet)\n");
        }
        for step in &p.path {
            s.push_str(&format!("    {}\n", step.text()));
        }
    }
    for k in &r.skipped {
        s.push_str(&format!("\n{k}\n"));
    }
    let failed = r.probes.iter().filter(|p| !p.judgement.pass).count();
    s.push_str(&format!(
        "\n{} of {} probes passed in {} ms; every probe object was removed.\n",
        r.probes.len() - failed,
        r.probes.len(),
        r.elapsed_ms
    ));
    s
}

/// The report as JSON: `{"schema": "ecs-hostnet.verify/v1", "passed": BOOL, ...}` (docs/json.md).
pub fn json(r: &Report) -> String {
    let mut v = serde_json::to_value(r).expect("a report serializes");
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("schema".into(), "ecs-hostnet.verify/v1".into());
        m.insert("passed".into(), r.passed().into());
        for (p, j) in r.probes.iter().zip(m.get_mut("probes").and_then(|p| p.as_array_mut()).into_iter().flatten()) {
            if let serde_json::Value::Object(o) = j {
                o.insert("steps_text".into(), p.path.iter().map(|s| s.text()).collect::<Vec<_>>().into());
            }
        }
    }
    let mut s = serde_json::to_string_pretty(&v).expect("JSON");
    s.push('\n');
    s
}
