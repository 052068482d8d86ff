//! What the AWS documentation's commands leave on a host, judged (pure): the ECS task-role
//! page has people run `sysctl -w net.ipv4.conf.all.route_localnet=1`, the credentials DNAT
//! (`-t nat -A PREROUTING -p tcp -d 169.254.170.2 --dport 80 -j DNAT --to-destination
//! 127.0.0.1:51679`) and REDIRECT (`-t nat -A OUTPUT ... -j REDIRECT --to-ports 51679`), and
//! for bridge-mode tasks `iptables --insert DOCKER-USER 1 --in-interface docker+
//! --destination 169.254.169.254/32 --jump DROP`, then persist them in a sysctl file and
//! with `iptables-save > /etc/sysconfig/iptables` (or /etc/iptables/rules.v4) and an enabled
//! restoring service. Each leftover becomes a [`Finding`] naming the file and line (or the
//! live rule) and the fix to paste:
//!
//! - `sysctl-file-route-localnet` (warning): a sysctl file sets route_localnet to non-zero.
//!   systemd-sysctl applies it early at boot, before ecs-hostnet.service puts the localhost
//!   guard in place, and again at every boot after `ecs-hostnet remove`.
//! - `iptables-saved-rules` (warning when the unit restoring the file is enabled, else
//!   info): an `iptables-save` file holds the credentials DNAT/REDIRECT or an IMDS block.
//! - `iptables-imds-block` (info): a live rule of iptables-nft's `ip filter` DOCKER-USER or
//!   FORWARD drops containers' traffic to IMDS: redundant with ecs-hostnet's IMDS block
//!   (when on), and blind to IMDS over IPv6.
//!
//! None blocks: the credentials path works with them; they weaken it or outlive ecs-hostnet.

use super::findings::drops_forwarded_to;
use crate::config::Config;
use crate::model::finding::{Finding, FindingCode, ForwardChain, PathState, Severity, TextFile};
use crate::model::nft_text::rule_text;
use crate::model::ruleset::{Expr, Family};
use std::net::{IpAddr, Ipv4Addr};

/// The findings about leftovers of the AWS commands in `path` (its `files` and `forward`
/// parts), for a host configured by `config`: sysctl files in the order read, then saved
/// rule files, then live IMDS blocks.
pub fn findings(config: &Config, path: &PathState) -> Vec<Finding> {
    let mut out: Vec<Finding> = path.files.sysctl.iter().filter_map(sysctl_finding).collect();
    let addrs = Addrs {
        endpoint: config.credentials.endpoint_address.v.0,
        imds4: config.imds_block.ipv4_address.v.0,
        imds6: config.imds_block.ipv6_address.v.0.into(),
    };
    for f in &path.files.iptables_saves {
        out.extend(saved_rules_finding(f, &addrs, &path.files.enabled_units));
    }
    out.extend(imds_block_findings(config, &path.forward));
    out
}

/// A finding about a file (no table, chain or rule).
fn file_finding(code: FindingCode, severity: Severity, file: &str, line: usize) -> Finding {
    Finding {
        code,
        severity,
        family: None,
        table: String::new(),
        chain: String::new(),
        handle: None,
        rule: None,
        file: Some(file.to_string()),
        line: u32::try_from(line).ok(),
        message: String::new(),
        fix: None,
    }
}

/// `word` for a POSIX shell: as it is when it holds only characters no shell treats
/// specially, else in single quotes.
fn sh_quote(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./-+:@%=,".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A `sed` command that deletes exactly the lines `lines` (whole-line matches, so running
/// it twice deletes nothing more): `sed -i -e '/^LINE$/d' ... FILE`, or with `to`, writes
/// the result there instead of editing `file` in place.
fn sed_delete(lines: &[&str], file: &str, to: Option<&str>) -> String {
    let mut cmd = String::from(if to.is_some() { "sed" } else { "sed -i" });
    let mut seen: Vec<&str> = Vec::new();
    for l in lines {
        if seen.contains(l) {
            continue;
        }
        seen.push(l);
        // A basic regular expression matching the line and nothing else.
        let mut re = String::from("/^");
        for c in l.chars() {
            if "\\/.*[]^$".contains(c) {
                re.push('\\');
            }
            re.push(c);
        }
        re.push_str("$/d");
        cmd.push_str(&format!(" -e {}", sh_quote(&re)));
    }
    cmd.push(' ');
    cmd.push_str(&sh_quote(file));
    if let Some(to) = to {
        cmd.push_str(&format!(" > {}", sh_quote(to)));
    }
    cmd
}

/// A sysctl.d(5) line that sets route_localnet to non-zero: the interface part of its key
/// (`all`, `default`, `eth0`, a glob such as `*`), or `None`.
fn route_localnet_iface(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
        return None;
    }
    let (key, value) = line.split_once('=')?;
    let key = key.trim().trim_start_matches('-');
    // "If the first separator is a slash, remaining slashes and dots are swapped."
    let key: String = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'/' => key
            .chars()
            .map(|c| {
                if c == '/' {
                    '.'
                } else if c == '.' {
                    '/'
                } else {
                    c
                }
            })
            .collect(),
        _ => key.to_string(),
    };
    let iface = key.strip_prefix("net.ipv4.conf.")?.strip_suffix(".route_localnet")?;
    let on = value.trim().parse::<i64>().is_ok_and(|v| v != 0);
    (on && !iface.is_empty()).then(|| iface.to_string())
}

/// One finding per sysctl file that turns route_localnet on, naming its first such line and
/// listing all.
fn sysctl_finding(f: &TextFile) -> Option<Finding> {
    let hits: Vec<(usize, &str, String)> = f
        .text
        .lines()
        .enumerate()
        .filter_map(|(i, l)| route_localnet_iface(l).map(|iface| (i + 1, l, iface)))
        .collect();
    let (first, _, _) = hits.first()?;
    let mut out = file_finding(FindingCode::SysctlFileRouteLocalnet, Severity::Warning, &f.path, *first);
    let listed: Vec<String> = hits.iter().map(|(n, l, _)| format!("line {n}: {}", l.trim())).collect();
    let scope = if hits.iter().any(|(_, _, i)| i == "all" || i.contains('*')) {
        "every interface"
    } else if hits.iter().any(|(_, _, i)| i == "default") {
        "every interface created later"
    } else {
        "the interface it names"
    };
    let file = f.path.as_str();
    let name = file.rsplit('/').next().unwrap_or(file);
    let packaged = ["/usr/lib/", "/lib/", "/usr/local/lib/"].iter().any(|p| file.starts_with(p));
    out.message = format!(
        "{file} turns route_localnet on for {scope} ({}), as the AWS page's `sysctl -w \
         net.ipv4.conf.all.route_localnet=1` persisted. systemd-sysctl applies it early at boot, before \
         ecs-hostnet.service has put the localhost guard in place, so services on 127.0.0.1 are reachable from \
         neighbours until then; and it turns route_localnet on again at every boot after `ecs-hostnet remove` or \
         `uninstall`. ecs-hostnet sets route_localnet itself, only once its guard is live: the fix deletes the line{}",
        listed.join("; "),
        if packaged {
            " (the file belongs to a package: a file of the same name in /etc/sysctl.d replaces it, so the fix \
             writes a copy without the line there)"
                .to_string()
        } else if file.starts_with("/run/") {
            "; /run is written at each boot: also remove what writes it (a user-data script, a boot unit)".to_string()
        } else {
            String::new()
        }
    );
    let lines: Vec<&str> = hits.iter().map(|(_, l, _)| *l).collect();
    let to = format!("/etc/sysctl.d/{name}");
    out.fix = Some(sed_delete(&lines, file, packaged.then_some(to.as_str())));
    Some(out)
}

/// The addresses the saved rules are recognised by.
struct Addrs {
    endpoint: Ipv4Addr,
    imds4: Ipv4Addr,
    imds6: IpAddr,
}

/// What one `iptables-save` rule line is, of what the AWS commands add.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Saved {
    /// A DNAT or REDIRECT of the credentials endpoint (table nat).
    Credentials,
    /// A DROP or REJECT of traffic to IMDS (table filter).
    ImdsBlock,
}

/// Whether the `-A`/`-I` rule line `line` of table `table` is one of [`Saved`]: its
/// destination (`-d`/`--destination`, not negated, `/32` or `/128` or none) is the endpoint
/// (nat, `-j DNAT` or `-j REDIRECT`) or IMDS (filter, `-j DROP` or `-j REJECT`).
fn classify(table: &str, line: &str, a: &Addrs) -> Option<Saved> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |flags: &[&str]| words.windows(2).find(|w| flags.contains(&w[0])).map(|w| w[1]);
    let negated = words.windows(2).any(|w| w[0] == "!" && (w[1] == "-d" || w[1] == "--destination"));
    let dst = after(&["-d", "--destination"]).filter(|_| !negated)?;
    let (addr, len) = dst.split_once('/').map_or((dst, None), |(a, l)| (a, Some(l)));
    let addr: IpAddr = addr.parse().ok()?;
    let host_len = if addr.is_ipv4() { "32" } else { "128" };
    if len.is_some_and(|l| l != host_len) {
        return None;
    }
    let target = after(&["-j", "--jump"])?;
    match (table, target) {
        ("nat", "DNAT" | "REDIRECT") if addr == IpAddr::V4(a.endpoint) => Some(Saved::Credentials),
        ("filter", "DROP" | "REJECT") if addr == IpAddr::V4(a.imds4) || addr == a.imds6 => Some(Saved::ImdsBlock),
        _ => None,
    }
}

/// The unit that restores `file` at boot.
fn restoring_unit(file: &str) -> &'static str {
    match file {
        "/etc/sysconfig/iptables" => "iptables.service",
        "/etc/sysconfig/ip6tables" => "ip6tables.service",
        _ => "netfilter-persistent.service",
    }
}

/// One finding per saved rule file holding the credentials DNAT/REDIRECT or an IMDS block.
fn saved_rules_finding(f: &TextFile, a: &Addrs, enabled_units: &[String]) -> Option<Finding> {
    let mut table = "";
    let mut hits: Vec<(usize, &str, Saved)> = Vec::new();
    let mut other_rules = 0;
    let mut docker_chains = false;
    for (i, raw) in f.text.lines().enumerate() {
        let l = raw.trim();
        if let Some(t) = l.strip_prefix('*') {
            table = t;
        } else if l.starts_with(":DOCKER") {
            docker_chains = true;
        } else if l.starts_with("-A ") || l.starts_with("-I ") {
            match classify(table, l, a) {
                Some(kind) => hits.push((i + 1, raw, kind)),
                None => other_rules += 1,
            }
        }
    }
    let (first, _, _) = hits.first()?;
    let file = f.path.as_str();
    let unit = restoring_unit(file);
    let enabled = enabled_units.iter().any(|u| u == unit);
    let severity = if enabled { Severity::Warning } else { Severity::Info };
    let mut out = file_finding(FindingCode::IptablesSavedRules, severity, file, *first);
    let has = |k: Saved| hits.iter().any(|h| h.2 == k);
    let mut what = Vec::new();
    if has(Saved::Credentials) {
        what.push(format!(
            "the credentials DNAT/REDIRECT of {} (it has no interface match: a neighbour that routes the endpoint to \
             this host is DNATed too, and ecs-init adds its own copy at every ECS agent start)",
            a.endpoint
        ));
    }
    if has(Saved::ImdsBlock) {
        what.push(
            "an IMDS block (redundant with ecs-hostnet's, which also covers IPv6 and every container interface)".into(),
        );
    }
    let listed: Vec<String> = hits.iter().map(|(n, l, _)| format!("line {n}: {}", l.trim())).collect();
    let restore = if enabled {
        format!(
            "{unit} is enabled and restores it at every boot, outside ecs-hostnet's control and after `ecs-hostnet \
             remove`"
        )
    } else {
        format!(
            "{unit} is not enabled, so nothing restores it now; enabling it later (or a package that does) would \
             bring the rules back"
        )
    };
    let frozen = if docker_chains {
        "; it also holds Docker's chains as they were when saved (restored before Docker starts, they carry stale \
         per-container rules)"
    } else {
        ""
    };
    out.message = format!(
        "{file} (an `iptables-save` file, as the AWS page persists its rules) holds {} ({}). {restore}{frozen}",
        what.join(" and "),
        listed.join("; ")
    );
    // Stopping iptables.service flushes every iptables table, Docker's too: only disable it.
    out.fix = Some(if other_rules == 0 {
        if enabled {
            format!("systemctl disable {unit} && rm {}", sh_quote(file))
        } else {
            format!("rm {}", sh_quote(file))
        }
    } else {
        let lines: Vec<&str> = hits.iter().map(|(_, l, _)| *l).collect();
        sed_delete(&lines, file, None)
    });
    if other_rules == 0 {
        out.message.push_str(&format!(
            ". It holds nothing else: the fix {}removes the file",
            if enabled {
                "disables the unit (without stopping it: its stop flushes every iptables table) and "
            } else {
                ""
            }
        ));
    } else {
        out.message.push_str(". The fix deletes those lines and keeps the rest");
    }
    Some(out)
}

/// Whether a rule jumps (or goes) to `chain`: libnftnl prints the verdict of an
/// `immediate` as `[ immediate reg 0 jump -> CHAIN ]`.
fn jumps_to(exprs: &[Expr], chain: &str) -> bool {
    let arrow = format!("-> {chain} ");
    exprs.iter().any(|e| matches!(e, Expr::Other { name, text } if name == "immediate" && text.contains(&arrow)))
}

/// One info finding per live rule of `ip filter` FORWARD or DOCKER-USER that drops
/// containers' traffic to the IMDS IPv4 address.
fn imds_block_findings(config: &Config, forward: &[ForwardChain]) -> Vec<Finding> {
    let ib = &config.imds_block;
    let imds = ib.ipv4_address.v.0;
    let forward_chain = forward.iter().find(|c| c.name == "FORWARD");
    let mut out = Vec::new();
    for c in forward {
        for (i, r) in c.rules.iter().enumerate() {
            if !drops_forwarded_to(r, imds) {
                continue;
            }
            let unreached = c.name == "DOCKER-USER"
                && forward_chain.is_some_and(|f| !f.rules.iter().any(|r| jumps_to(&r.exprs, "DOCKER-USER")));
            let mut message = format!(
                "rule handle {} of ip filter {} (iptables-nft; the AWS page's `iptables --insert DOCKER-USER 1 \
                 --in-interface docker+ --destination {imds}/32 --jump DROP`) drops containers' traffic to IMDS {imds}",
                r.handle, c.name
            );
            if unreached {
                message.push_str(", but FORWARD has no jump to DOCKER-USER, so it is never reached");
            }
            let ipv6 = format!(
                ". It does not cover IMDS over IPv6 ({}), and a firewalld reload or an iptables.service restart \
                 flushes its table",
                ib.ipv6_address.v.0
            );
            let fix = if ib.enabled.v {
                message.push_str(&format!(
                    ": redundant with ecs-hostnet's IMDS block (a drop in its own forward chain for every container \
                     interface{}), which holds whatever happens to this table; keep it or delete it{ipv6}",
                    if ib.block_ipv6.v { ", IPv6 included" } else { "" }
                ));
                Some(format!("iptables -D {} {}", c.name, i + 1))
            } else {
                message.push_str(&format!(
                    ": ecs-hostnet's own IMDS block is off ([imds_block] enabled = false), so this is the host's only \
                     one; keep it, or turn ecs-hostnet's on and then delete it{ipv6}"
                ));
                None
            };
            out.push(Finding {
                code: FindingCode::IptablesImdsBlock,
                severity: Severity::Info,
                family: Some(Family::Ip),
                table: "filter".into(),
                chain: c.name.clone(),
                handle: Some(r.handle),
                rule: Some(rule_text(Family::Ip, &r.exprs, None)),
                file: None,
                line: None,
                message,
                fix,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::finding::LeftoverFiles;
    use crate::model::live::LiveRule;
    use crate::model::ruleset::{CmpOp, Verdict, meta, payload};

    fn text(path: &str, text: &str) -> TextFile {
        TextFile { path: path.into(), text: text.into() }
    }

    fn run_files(files: LeftoverFiles) -> Vec<Finding> {
        findings(&crate::config::default_config(), &PathState { files, ..Default::default() })
    }

    fn sysctl(files: Vec<TextFile>) -> Vec<Finding> {
        run_files(LeftoverFiles { sysctl: files, ..Default::default() })
    }

    #[test]
    fn a_route_localnet_line_in_a_sysctl_file_is_a_warning_with_its_line_and_a_sed_that_deletes_it() {
        let f = sysctl(vec![text(
            "/etc/sysctl.d/99-ecs.conf",
            "# ECS\nvm.swappiness = 10\nnet.ipv4.conf.all.route_localnet = 1\n",
        )]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].code, f[0].severity), (FindingCode::SysctlFileRouteLocalnet, Severity::Warning));
        assert_eq!((f[0].file.as_deref(), f[0].line, f[0].family), (Some("/etc/sysctl.d/99-ecs.conf"), Some(3), None));
        assert!(f[0].message.contains("line 3: net.ipv4.conf.all.route_localnet = 1"), "{}", f[0].message);
        assert!(f[0].message.contains("every interface"), "{}", f[0].message);
        assert_eq!(
            f[0].fix.as_deref(),
            Some(r"sed -i -e '/^net\.ipv4\.conf\.all\.route_localnet = 1$/d' /etc/sysctl.d/99-ecs.conf")
        );
    }

    /// sysctl.d(5) forms: the slash form, `-` (ignore errors), globs, interfaces, `;`
    /// comments; zero, comments and other keys are not findings.
    #[test]
    fn every_sysctl_d_spelling_of_route_localnet_on_is_recognised_and_nothing_else() {
        for (line, iface) in [
            ("net.ipv4.conf.all.route_localnet=1", Some("all")),
            ("  -net.ipv4.conf.default.route_localnet = 1", Some("default")),
            ("net/ipv4/conf/all/route_localnet = 1", Some("all")),
            ("net/ipv4/conf/eth0.100/route_localnet = 1", Some("eth0/100")),
            ("net.ipv4.conf.*.route_localnet = 1", Some("*")),
            ("net.ipv4.conf.docker0.route_localnet = 1", Some("docker0")),
            ("net.ipv4.conf.all.route_localnet = 0", None),
            ("# net.ipv4.conf.all.route_localnet = 1", None),
            ("; net.ipv4.conf.all.route_localnet = 1", None),
            ("net.ipv4.conf.all.rp_filter = 1", None),
            ("net.ipv4.conf.all.route_localnet", None),
            ("net.ipv6.conf.all.route_localnet = 1", None),
        ] {
            assert_eq!(route_localnet_iface(line).as_deref(), iface, "{line:?}");
        }
    }

    /// A package's file is replaced by a same-named copy in /etc/sysctl.d; two lines in one
    /// file are one finding naming the first, deleted by one sed.
    #[test]
    fn a_packaged_sysctl_file_is_overridden_from_etc_and_two_lines_are_one_finding() {
        let f = sysctl(vec![
            text("/usr/lib/sysctl.d/50-x.conf", "a = 1\nnet.ipv4.conf.default.route_localnet=1\n"),
            text("/etc/sysctl.conf", "net.ipv4.conf.all.route_localnet=1\nx=2\nnet.ipv4.conf.eth0.route_localnet=1\n"),
            text("/etc/sysctl.d/10-clean.conf", "net.ipv4.ip_forward = 1\n"),
        ]);
        assert_eq!(f.len(), 2, "{f:#?}");
        assert_eq!(f[0].line, Some(2));
        assert!(f[0].message.contains("every interface created later"), "{}", f[0].message);
        assert_eq!(
            f[0].fix.as_deref(),
            Some(
                r"sed -e '/^net\.ipv4\.conf\.default\.route_localnet=1$/d' /usr/lib/sysctl.d/50-x.conf > /etc/sysctl.d/50-x.conf"
            )
        );
        assert_eq!((f[1].file.as_deref(), f[1].line), (Some("/etc/sysctl.conf"), Some(1)));
        assert!(f[1].message.contains("line 3: net.ipv4.conf.eth0.route_localnet=1"), "{}", f[1].message);
        assert_eq!(f[1].fix.as_deref().map(|s| s.matches(" -e ").count()), Some(2));
    }

    /// What `iptables-save` wrote after the AWS page's commands on an ECS-optimized AMI:
    /// Docker's chains, ecs-init's rules, the DOCKER-USER block.
    const SAVED: &str = "# Generated by iptables-save v1.8.8 (nf_tables)\n\
        *nat\n\
        :PREROUTING ACCEPT [0:0]\n\
        :OUTPUT ACCEPT [0:0]\n\
        :DOCKER - [0:0]\n\
        -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER\n\
        -A PREROUTING -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 127.0.0.1:51679\n\
        -A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 51679\n\
        COMMIT\n\
        *filter\n\
        :FORWARD DROP [0:0]\n\
        :DOCKER-USER - [0:0]\n\
        -A FORWARD -j DOCKER-USER\n\
        -A DOCKER-USER -d 169.254.169.254/32 -i docker+ -j DROP\n\
        -A DOCKER-USER -j RETURN\n\
        COMMIT\n";

    fn saves(files: Vec<TextFile>, enabled: &[&str]) -> Vec<Finding> {
        let enabled_units = enabled.iter().map(|u| u.to_string()).collect();
        run_files(LeftoverFiles { iptables_saves: files, enabled_units, ..Default::default() })
    }

    #[test]
    fn a_saved_iptables_file_restored_at_boot_is_a_warning_and_its_lines_are_deleted_by_content() {
        let f = saves(vec![text("/etc/sysconfig/iptables", SAVED)], &["iptables.service"]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!((f[0].code, f[0].severity), (FindingCode::IptablesSavedRules, Severity::Warning));
        assert_eq!((f[0].file.as_deref(), f[0].line), (Some("/etc/sysconfig/iptables"), Some(7)));
        for needle in [
            "line 7: -A PREROUTING",
            "line 8: -A OUTPUT",
            "line 14: -A DOCKER-USER",
            "iptables.service is enabled",
            "Docker's chains",
        ] {
            assert!(f[0].message.contains(needle), "{needle:?} missing: {}", f[0].message);
        }
        let fix = f[0].fix.as_deref().unwrap();
        assert!(fix.starts_with("sed -i -e '/^-A PREROUTING -d 169\\.254\\.170\\.2\\/32 "), "{fix}");
        assert_eq!(fix.matches(" -e ").count(), 3, "{fix}");
        assert!(fix.ends_with(" /etc/sysconfig/iptables"), "{fix}");
        // Not enabled: info, and it says nothing restores it.
        let f = saves(vec![text("/etc/sysconfig/iptables", SAVED)], &["netfilter-persistent.service"]);
        assert_eq!(f[0].severity, Severity::Info);
        assert!(f[0].message.contains("iptables.service is not enabled"), "{}", f[0].message);
    }

    /// A file with nothing but the AWS rules: the fix disables the unit (never stops it) and
    /// removes the file; IPv6 IMDS in rules.v6; a file without them is no finding.
    #[test]
    fn a_saved_file_holding_only_the_aws_rules_is_removed_and_others_are_left_alone() {
        let only =
            "*filter\n:DOCKER-USER - [0:0]\n-I DOCKER-USER -i docker+ --destination 169.254.169.254 -j DROP\nCOMMIT\n";
        let v6 = "*filter\n-A FORWARD -d fd00:ec2::254/128 -j REJECT\nCOMMIT\n";
        let clean = "*nat\n-A PREROUTING -d 10.0.0.1/32 -j DNAT --to-destination 10.0.0.2\n-A POSTROUTING ! -d 169.254.170.2/32 -j MASQUERADE\nCOMMIT\n";
        let f = saves(
            vec![
                text("/etc/iptables/rules.v4", only),
                text("/etc/iptables/rules.v6", v6),
                text("/etc/sysconfig/iptables", clean),
            ],
            &["netfilter-persistent.service"],
        );
        assert_eq!(
            f.iter().map(|f| f.file.as_deref()).collect::<Vec<_>>(),
            [Some("/etc/iptables/rules.v4"), Some("/etc/iptables/rules.v6")]
        );
        assert_eq!(
            f[0].fix.as_deref(),
            Some("systemctl disable netfilter-persistent.service && rm /etc/iptables/rules.v4")
        );
        assert!(f[0].message.contains("without stopping it"), "{}", f[0].message);
        assert_eq!(f[1].line, Some(2));
        let f = saves(vec![text("/etc/sysconfig/iptables", SAVED.replace("169.254.", "10.1.").as_str())], &[]);
        assert_eq!(f, vec![]);
    }

    /// `-i docker+ -d 169.254.169.254/32 -j DROP` as iptables-nft writes it.
    fn docker_user_drop(handle: u64) -> LiveRule {
        let mut exprs = vec![
            Expr::Meta { key: meta::IIFNAME, dreg: 1 },
            Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: b"docker".to_vec() },
        ];
        exprs.extend(crate::model::build::ip_addr(CmpOp::Eq, 16, Ipv4Addr::new(169, 254, 169, 254), 32));
        exprs.extend([Expr::Counter, Expr::Verdict(Verdict::Drop)]);
        LiveRule { handle, comment: None, exprs, counter: None }
    }

    fn jump(handle: u64, to: &str) -> LiveRule {
        let text = format!("[ immediate reg 0 jump -> {to} ]");
        LiveRule {
            handle,
            comment: None,
            exprs: vec![Expr::Counter, Expr::Other { name: "immediate".into(), text }],
            counter: None,
        }
    }

    fn forward(config: &Config, chains: Vec<ForwardChain>) -> Vec<Finding> {
        findings(config, &PathState { forward: chains, ..Default::default() })
    }

    #[test]
    fn a_live_docker_user_imds_drop_is_info_redundant_with_ours_and_blind_to_ipv6() {
        let config = crate::config::default_config();
        let chains = |fwd: Vec<LiveRule>| {
            vec![
                ForwardChain { name: "FORWARD".into(), rules: fwd },
                ForwardChain { name: "DOCKER-USER".into(), rules: vec![jump(5, "RETURN-NOT"), docker_user_drop(9)] },
            ]
        };
        let f = forward(&config, chains(vec![jump(3, "DOCKER-USER")]));
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(
            (f[0].code, f[0].severity, f[0].family, f[0].chain.as_str(), f[0].handle),
            (FindingCode::IptablesImdsBlock, Severity::Info, Some(Family::Ip), "DOCKER-USER", Some(9))
        );
        assert!(f[0].message.contains("redundant with ecs-hostnet's IMDS block"), "{}", f[0].message);
        assert!(f[0].message.contains("IPv6 (fd00:ec2::254)"), "{}", f[0].message);
        assert!(!f[0].message.contains("never reached"), "{}", f[0].message);
        assert_eq!(f[0].fix.as_deref(), Some("iptables -D DOCKER-USER 2"));
        assert!(f[0].rule.as_deref().is_some_and(|r| r.contains("169.254.169.254") && r.contains("drop")), "{f:#?}");
        // FORWARD without the jump: never reached.
        let f = forward(&config, chains(vec![]));
        assert!(f[0].message.contains("FORWARD has no jump to DOCKER-USER"), "{}", f[0].message);
        // Ours off: the only block, no fix.
        let mut off = config.clone();
        off.imds_block.enabled.v = false;
        let f = forward(&off, chains(vec![jump(3, "DOCKER-USER")]));
        assert!(f[0].message.contains("the host's only one"), "{}", f[0].message);
        assert_eq!(f[0].fix, None);
    }

    /// A drop of another address, an accept of IMDS, a rule matching every destination:
    /// none is an IMDS block.
    #[test]
    fn only_drops_about_the_imds_address_are_imds_blocks() {
        let config = crate::config::default_config();
        let mut other = docker_user_drop(2);
        other.exprs = other
            .exprs
            .into_iter()
            .map(|e| match e {
                Expr::Cmp { sreg, op, data } if data.len() == 4 => Expr::Cmp { sreg, op, data: vec![10, 0, 0, 1] },
                e => e,
            })
            .collect();
        let mut accept = docker_user_drop(3);
        *accept.exprs.last_mut().unwrap() = Expr::Verdict(Verdict::Accept);
        let everything = LiveRule {
            handle: 4,
            comment: None,
            exprs: vec![Expr::Counter, Expr::Verdict(Verdict::Drop)],
            counter: None,
        };
        let prefix = LiveRule {
            handle: 5,
            comment: None,
            exprs: vec![
                Expr::Payload { base: payload::NETWORK, offset: 16, len: 2, dreg: 1 },
                Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![169, 254] },
                Expr::Verdict(Verdict::Drop),
            ],
            counter: None,
        };
        let f = forward(
            &config,
            vec![ForwardChain { name: "FORWARD".into(), rules: vec![other, accept, everything, prefix] }],
        );
        // The link-local prefix covers IMDS: it counts; the others do not.
        assert_eq!(f.iter().map(|f| f.handle).collect::<Vec<_>>(), [Some(5)], "{f:#?}");
    }
}
