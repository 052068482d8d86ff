//! ecs-hostnet command line. Exit codes: 0 = done / nothing to do, 2 = changes or drift
//! (plan, check), 1 = error (with a message on stderr).

#![deny(unsafe_code)]

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use ecs_hostnet::engine::load::{self as loader, Loaded};
use ecs_hostnet::engine::{self, install, task};
use ecs_hostnet::host::files::Root;
use ecs_hostnet::host::netns;
use ecs_hostnet::host::run_dir::{LOCK_TIMEOUT, Lock};
use ecs_hostnet::model::escape::escape_controls;
use ecs_hostnet::model::names::sysctl_name;
use ecs_hostnet::model::nft_text as nftsyntax;
use ecs_hostnet::model::route::TaskAction;
use ecs_hostnet::plan::{self, files as artifacts};
use ecs_hostnet::render::{nft_script, plan as report, snapshot};
use std::path::PathBuf;
use std::process::ExitCode;

/// Prepares a Linux host's network for Amazon ECS tasks with IAM roles: the credentials
/// endpoint DNAT/REDIRECT, the localhost and introspection guards, the IMDS block and
/// route_localnet, as one nftables transaction in tables of its own.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    /// Act in this network namespace: a name under /run/netns or a path such as
    /// /proc/PID/ns/net.
    /// Repeat it for `task`, which acts in many namespaces.
    #[arg(long, global = true, value_name = "NAME|PATH", action = clap::ArgAction::Append)]
    netns: Vec<String>,
    /// Take every path (configuration, units, ecs.config, install state, run directory)
    /// relative to DIR, e.g. an image being built.
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Color the text output: auto = only on a terminal and when NO_COLOR is unset.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN")]
    color: ColorArg,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file (default: /etc/ecs-hostnet/config.toml under --root if it
    /// exists, else the embedded rules/default.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RenderFormat {
    /// A script for `nft -f`.
    Nft,
    /// The desired state as JSON (schema "ecs-hostnet.render/v1").
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ColorArg {
    /// Color only when standard output is a terminal and NO_COLOR is unset or empty.
    Auto,
    /// Always color (overrides NO_COLOR).
    Always,
    /// Never color.
    Never,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// A diff in nft syntax for people, grouped by table and chain.
    Text,
    /// The schema "ecs-hostnet.plan/v1" (docs/json.md).
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum SnapshotFormat {
    /// The schema "ecs-hostnet.snapshot/v1" (docs/json.md).
    Json,
}

#[derive(clap::Args)]
struct PlanArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Plan against a snapshot (from `ecs-hostnet snapshot`) instead of the kernel: no
    /// root, no kernel access.
    #[arg(long, value_name = "SNAPSHOT.json")]
    against: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: PlanFormat,
}

#[derive(clap::Args)]
struct TaskArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also every namespace file in this folder (e.g. /run/netns).
    #[arg(long, value_name = "DIR")]
    netns_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Add the missing routes in each namespace. Exit 0: all converged, 1: any failed.
    Apply(TaskArgs),
    /// Report missing routes. Exit 0: all converged, 2: drift, 1: any failed.
    Check(TaskArgs),
    /// Delete the routes ecs-hostnet added. Exit 0: done, 1: any failed.
    Remove(TaskArgs),
}

#[derive(Subcommand)]
enum Command {
    /// Print the rule set the configuration compiles to (no root, no kernel).
    Render {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "nft")]
        format: RenderFormat,
    },
    /// Show what apply would change. Exit 0: nothing to do, 2: changes, 1: error.
    Plan(PlanArgs),
    /// Make the host match the configuration. Exit 0 when converged.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Compare the host with the configuration. Exit 0: converged, 2: drift, 1: error.
    Check(PlanArgs),
    /// What applying NEW would change on a host converged to OLD (no root, no kernel).
    /// Exit 0: no changes, 2: changes, 1: error.
    Diff {
        /// The configuration the host is converged to (e.g. the file on the main branch).
        old: PathBuf,
        /// The configuration to apply (e.g. the file in a pull request).
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: PlanFormat,
    },
    /// Print the live state of this host (or --netns) as JSON, for `plan --against`.
    /// Needs CAP_NET_ADMIN in the namespace (root, or a user namespace that owns it).
    Snapshot {
        /// Output format (JSON only).
        #[arg(long, value_enum, default_value = "json")]
        format: SnapshotFormat,
    },
    /// Remove everything ecs-hostnet made and put route_localnet back to the value found
    /// before ecs-hostnet first set it. Exit 0 when nothing of ours is left.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Install the configuration, the binary, the boot unit (enabled), the ecs-init hook
    /// and the agent's ecs.config keys. Writes only what differs, atomically.
    Install {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove exactly what install added and put back what it replaced.
    Uninstall,
    /// The awsvpc IMDS block: BLACKHOLE routes to the IMDS addresses inside task network
    /// namespaces (given with --netns, repeatable, and/or --netns-dir).
    Task {
        #[command(subcommand)]
        action: TaskCommand,
    },
    /// Check configuration files without root or kernel; every error in every file is
    /// reported. Exit 0: all valid, 1: any invalid.
    Validate {
        /// Configuration files (default as for the other commands).
        #[arg(value_name = "FILE")]
        files: Vec<PathBuf>,
        /// More configuration files (repeatable).
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Vec<PathBuf>,
    },
}

fn render_json(loaded: &Loaded) -> serde_json::Value {
    let d = engine::desired(loaded);
    let tables: Vec<_> = d
        .tables
        .iter()
        .map(|t| {
            let chains: Vec<_> = t
                .chains
                .iter()
                .map(|c| {
                    let rules: Vec<_> = c
                        .rules
                        .iter()
                        .map(|r| serde_json::json!({"id": r.id, "nft": nftsyntax::rule_text(t.family, &r.exprs, None)}))
                        .collect();
                    serde_json::json!({
                        "name": c.name,
                        "type": c.base.map(|b| b.chain_type.name()),
                        "hook": c.base.map(|b| b.hook.name()),
                        "priority": c.base.map(|b| b.priority),
                        "policy": c.base.map(|b| if b.policy_accept { "accept" } else { "drop" }),
                        "rules": rules,
                    })
                })
                .collect();
            serde_json::json!({"family": t.family.name(), "name": t.name, "comment": t.comment, "chains": chains})
        })
        .collect();
    let sysctls: Vec<_> =
        d.route_localnet.iter().map(|s| serde_json::json!({"name": sysctl_name(s), "value": "1"})).collect();
    serde_json::json!({
        "schema": "ecs-hostnet.render/v1",
        "configuration": loaded.source,
        "tables": tables,
        "sysctls": sysctls,
    })
}

/// Runs a command; what it prints for stdout goes into `out` (written by `main`, so a
/// closed or full stdout is an error message, not a panic).
fn run(cli: Cli, out: &mut String) -> anyhow::Result<u8> {
    use std::fmt::Write as _;
    if cli.netns.len() > 1 && !matches!(cli.command, Command::Task { .. }) {
        anyhow::bail!("--netns is given {} times; only `task` acts in several namespaces", cli.netns.len());
    }
    let ns = cli.netns.first().map(String::as_str);
    if ns.is_some() && matches!(cli.command, Command::Render { .. } | Command::Validate { .. } | Command::Diff { .. }) {
        eprintln!("ecs-hostnet: note: --netns is ignored: render, validate and diff do not touch a kernel");
    }
    if let (
        Some(ns),
        Command::Plan(PlanArgs { against: Some(_), .. }) | Command::Check(PlanArgs { against: Some(_), .. }),
    ) = (ns, &cli.command)
    {
        anyhow::bail!("--netns {ns} and --against both say what to plan against; give one");
    }
    use std::io::IsTerminal as _;
    let color = match cli.color {
        ColorArg::Auto => report::ColorChoice::Auto,
        ColorArg::Always => report::ColorChoice::Always,
        ColorArg::Never => report::ColorChoice::Never,
    }
    .enabled(
        std::io::stdout().is_terminal(),
        std::env::var("NO_COLOR").ok().as_deref(),
        std::env::var("TERM").ok().as_deref(),
    );
    let enter = || -> anyhow::Result<()> {
        if let Some(ns) = ns {
            netns::enter(ns)?;
        }
        Ok(())
    };
    let context = match ns {
        Some(ns) => format!("network namespace {ns}"),
        None => "the current network namespace".to_string(),
    };
    let is_plan = matches!(cli.command, Command::Plan(_));
    let root = Root::new(cli.root.as_deref());
    if ns.is_some() && matches!(cli.command, Command::Install { .. } | Command::Uninstall) {
        eprintln!("ecs-hostnet: note: --netns is ignored: install and uninstall write files only");
    }
    match cli.command {
        Command::Task { action } => {
            let (args, action) = match action {
                TaskCommand::Apply(a) => (a, TaskAction::Apply),
                TaskCommand::Check(a) => (a, TaskAction::Check),
                TaskCommand::Remove(a) => (a, TaskAction::Remove),
            };
            let loaded = loader::load_config(args.config.config.as_deref(), &root)?;
            let mut paths: Vec<PathBuf> = cli.netns.iter().map(|n| netns::resolve(n)).collect();
            if let Some(dir) = &args.netns_dir {
                paths.extend(netns::namespaces_under(dir)?);
            }
            if paths.is_empty() {
                anyhow::bail!("task needs network namespaces: --netns NAME|PATH (repeatable) or --netns-dir DIR");
            }
            let results = task::run(action, &paths, &ecs_hostnet::desired::task_routes::imds_routes(&loaded.config))?;
            let (mut failed, mut drift) = (0, 0);
            for r in &results {
                match &r.outcome {
                    Ok(ops) if ops.is_empty() => writeln!(out, "{}: converged, nothing to do", r.netns.display())?,
                    Ok(ops) => {
                        drift += 1;
                        let verb = if action == TaskAction::Check { "drift: would" } else { "done:" };
                        let list: Vec<String> = ops.iter().map(|o| o.to_string()).collect();
                        writeln!(out, "{}: {verb} {}", r.netns.display(), list.join("; "))?;
                    }
                    Err(e) => {
                        failed += 1;
                        writeln!(out, "{}: error: {}", r.netns.display(), format!("{e:#}").replace('\n', "; "))?;
                    }
                }
            }
            let verb = if action == TaskAction::Check { "with drift" } else { "changed" };
            writeln!(out, "{} namespace(s): {drift} {verb}, {failed} failed.", results.len())?;
            Ok(if failed > 0 {
                1
            } else if drift > 0 && action == TaskAction::Check {
                2
            } else {
                0
            })
        }
        Command::Install { config } => {
            let (loaded, bytes) = loader::load_config_bytes(config.config.as_deref(), &root)?;
            let binary =
                std::fs::read("/proc/self/exe").context("cannot read this program's binary (/proc/self/exe)")?;
            let _lock = if root.is_system() { Some(Lock::acquire(&root, LOCK_TIMEOUT)?) } else { None };
            eprintln!("configuration: {}; root {}", escape_controls(&loaded.source), root.at("/").display());
            for line in install::install(&root, &bytes, &binary, &loaded.config.agent_keys())? {
                writeln!(out, "{line}")?;
            }
            writeln!(out, "Installed. The rule set is applied at the next boot, or now with `ecs-hostnet apply`.")?;
            Ok(0)
        }
        Command::Uninstall => {
            let _lock = if root.is_system() { Some(Lock::acquire(&root, LOCK_TIMEOUT)?) } else { None };
            let report = install::uninstall(&root)?;
            for line in &report {
                writeln!(out, "{line}")?;
            }
            if !report.iter().any(|l| l.starts_with("nothing installed")) {
                writeln!(out, "Uninstalled. The live rule set is untouched; `ecs-hostnet remove` removes it.")?;
            }
            Ok(0)
        }
        Command::Validate { files, config } => {
            let given: Vec<PathBuf> = files.into_iter().chain(config).collect();
            let paths: Vec<Option<PathBuf>> =
                if given.is_empty() { vec![None] } else { given.into_iter().map(Some).collect() };
            let mut bad = 0;
            for p in &paths {
                match loader::load_config(p.as_deref(), &root) {
                    Ok(l) => writeln!(out, "{}: valid", escape_controls(&l.source))?,
                    Err(e) => {
                        print_error(&e);
                        bad += 1;
                    }
                }
            }
            if paths.len() > 1 {
                eprintln!("{} file(s): {} valid, {bad} invalid.", paths.len(), paths.len() - bad);
            }
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Diff { old, new, format } => {
            // Both files are read first, so that every error of both is reported.
            let (old_loaded, new_loaded) =
                match (loader::load_config(Some(&old), &root), loader::load_config(Some(&new), &root)) {
                    (Ok(o), Ok(n)) => (o, n),
                    (o, n) => {
                        let mut errors: Vec<anyhow::Error> = o.err().into_iter().collect();
                        if old != new {
                            errors.extend(n.err());
                        }
                        errors.iter().for_each(print_error);
                        return Ok(1);
                    }
                };
            eprintln!(
                "configuration: {}; against a host converged to {}",
                escape_controls(&new_loaded.source),
                escape_controls(&old_loaded.source)
            );
            let mut p = plan::diff(&engine::desired(&old_loaded), &engine::desired(&new_loaded));
            p.changes.extend(artifacts::diff_files(&old_loaded.config, &new_loaded.config));
            if let Some(n) = artifacts::diff_files_note(&old_loaded.config, &new_loaded.config) {
                p.notes.push(n);
            }
            let against = report::Against::Configuration { path: old_loaded.source.clone() };
            match format {
                PlanFormat::Json => out.push_str(&report::json(&p, "diff", &new_loaded.source, &against)),
                PlanFormat::Text => out.push_str(&report::text(
                    &p,
                    color,
                    &format!(
                        "No changes: {} changes nothing on a host converged to {}.",
                        new_loaded.source, old_loaded.source
                    ),
                )),
            }
            Ok(if p.is_empty() { 0 } else { 2 })
        }
        Command::Snapshot { format: SnapshotFormat::Json } => {
            enter()?;
            eprintln!("snapshot of {context}");
            let snap = engine::in_namespace(ns, engine::snapshot(&root, ns))?;
            out.push_str(&snap.to_json());
            Ok(0)
        }
        Command::Render { config, format } => {
            let loaded = loader::load_config(config.config.as_deref(), &root)?;
            match format {
                RenderFormat::Nft => out.push_str(&nft_script::script(&engine::desired(&loaded), &loaded.source)),
                RenderFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&render_json(&loaded))?)?,
            }
            Ok(0)
        }
        Command::Plan(args) | Command::Check(args) => {
            let loaded = loader::load_config(args.config.config.as_deref(), &root)?;
            let desired = engine::desired(&loaded);
            let keys = loaded.config.agent_keys();
            let (mut p, against) = match &args.against {
                Some(path) => {
                    let name = path.display().to_string();
                    let bytes =
                        std::fs::read(path).map_err(|e| anyhow::anyhow!("{name}: cannot read the snapshot: {e}"))?;
                    let snap = snapshot::Snapshot::from_json(&name, &bytes)?;
                    eprintln!(
                        "configuration: {}; snapshot {}",
                        escape_controls(&loaded.source),
                        escape_controls(&name)
                    );
                    let live =
                        snap.facts().live_state(&desired, |sel| Ok::<_, anyhow::Error>(snap.route_localnet(sel)))?;
                    let mut p = plan::plan(&desired, &live);
                    if let Some((state, files, link)) = snap.install_view() {
                        p.changes.extend(crate::plan::files::plan_files(&state, &files, link, &keys).0);
                    }
                    (p, report::Against::Snapshot { path: name })
                }
                None => {
                    enter()?;
                    eprintln!("configuration: {}; {context}", escape_controls(&loaded.source));
                    let (_, mut p) = engine::in_namespace(ns, engine::plan_live(&desired, &root))?;
                    p.changes.extend(install::converge_files(&root, &keys, false)?);
                    (p, report::Against::Netns { netns: ns.map(str::to_string) })
                }
            };
            if is_plan && loaded.config.imds_block.enabled.v {
                p.notes.push(
                    "the IMDS block covers bridge-mode containers only. Host-network-mode tasks share the \
                     host's network and still reach IMDS: require IMDSv2 with a hop limit of 1 on the instance \
                     (aws ec2 modify-instance-metadata-options --http-tokens required --http-put-response-hop-limit 1); \
                     awsvpc tasks get blackhole routes (ECS_AWSVPC_BLOCK_IMDS=true, or `ecs-hostnet task apply`)."
                        .into(),
                );
            }
            let command = if is_plan { "plan" } else { "check" };
            match args.format {
                PlanFormat::Json => out.push_str(&report::json(&p, command, &loaded.source, &against)),
                PlanFormat::Text => {
                    out.push_str(&report::text(&p, color, "Converged: the host matches the configuration."))
                }
            }
            Ok(if p.is_empty() { 0 } else { 2 })
        }
        Command::Apply { config } => {
            let loaded = loader::load_config(config.config.as_deref(), &root)?;
            let desired = engine::desired(&loaded);
            // A broken install state is an error before the kernel is touched.
            install::read_state(&root)?;
            enter()?;
            eprintln!("configuration: {}; {context}", escape_controls(&loaded.source));
            let lock = Lock::acquire(&root, LOCK_TIMEOUT)?;
            let mut p = engine::in_namespace(ns, engine::converge(&desired, &root, &lock))?;
            p.changes.extend(install::converge_files(&root, &loaded.config.agent_keys(), true)?);
            if p.is_empty() {
                writeln!(out, "No changes: the host already matches the configuration.")?;
                for n in &p.notes {
                    writeln!(out, "note: {n}")?;
                }
            } else {
                out.push_str(&done_text(&p, "Applied"));
            }
            Ok(0)
        }
        Command::Remove { config } => {
            // The configuration is validated so a typo is not silently ignored, but what
            // is removed is what ecs-hostnet owns, whatever the configuration says now.
            let loaded = loader::load_config(config.config.as_deref(), &root)?;
            enter()?;
            eprintln!("configuration: {}; {context}", escape_controls(&loaded.source));
            let lock = Lock::acquire(&root, LOCK_TIMEOUT)?;
            let p = engine::in_namespace(ns, engine::remove(&root, &lock))?;
            if p.is_empty() {
                writeln!(out, "Nothing to remove: no ecs-hostnet tables or settings are present.")?;
            } else {
                out.push_str(&done_text(&p, "Removed"));
            }
            Ok(0)
        }
    }
}

/// A carried-out plan as text: the changes, then `HEADLINE: N added, N changed, N removed.`
fn done_text(p: &plan::Plan, headline: &str) -> String {
    let (a, c, r) = p.counts();
    let text = p.text();
    let body = text.lines().filter(|l| !l.starts_with("Plan: ")).collect::<Vec<_>>().join("\n");
    format!("{body}\n{headline}: {a} added, {c} changed, {r} removed.\n")
}

/// An error on stderr: a configuration's located errors one per line
/// (`FILE:LINE:COL: message`), anything else as one `ecs-hostnet: ...` line.
/// Control characters (from a file name or a value under review) are escaped.
fn print_error(e: &anyhow::Error) {
    use escape_controls;
    match e.downcast_ref::<ecs_hostnet::config::ConfigErrors>() {
        Some(errors) => errors.0.iter().for_each(|e| eprintln!("{}", escape_controls(&e.to_string()))),
        None => eprintln!("ecs-hostnet: {}", escape_controls(&format!("{e:#}").replace('\n', "; "))),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 1 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let mut out = String::new();
    let result = run(cli, &mut out);
    // Whatever happened, print what the command had to say first.
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_all(out.as_bytes()).and_then(|_| stdout.flush()) {
        eprintln!("ecs-hostnet: cannot write to standard output: {e}");
        return ExitCode::from(1);
    }
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            print_error(&e);
            ExitCode::from(1)
        }
    }
}
