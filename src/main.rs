//! ecs-hostnet command line. Exit codes: 0 = done / nothing to do, 2 = changes or drift
//! (plan, check), 1 = error (with a message on stderr).

use clap::{Parser, Subcommand, ValueEnum};
use ecs_hostnet::engine::{self, Loaded};
use ecs_hostnet::{netns, nftsyntax, plan::sysctl_name};
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
    #[arg(long, global = true, value_name = "NAME|PATH")]
    netns: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct ConfigArg {
    /// Configuration file (default: /etc/ecs-hostnet/config.toml if it exists, else the
    /// embedded rules/default.toml).
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
    Plan {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Make the host match the configuration. Exit 0 when converged.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Compare the host with the configuration. Exit 0: converged, 2: drift, 1: error.
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove everything ecs-hostnet made and put route_localnet back to the value found
    /// before ecs-hostnet first set it. Exit 0 when nothing of ours is left.
    Remove {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Check configuration files without root or kernel. Exit 0: valid, 1: invalid.
    Validate {
        /// Configuration files (repeatable; default as for the other commands).
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

fn run(cli: Cli) -> anyhow::Result<u8> {
    let ns = cli.netns.as_deref();
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
    let is_plan = matches!(cli.command, Command::Plan { .. });
    match cli.command {
        Command::Validate { config } => {
            let paths: Vec<Option<PathBuf>> =
                if config.is_empty() { vec![None] } else { config.into_iter().map(Some).collect() };
            let mut bad = 0;
            for p in &paths {
                match engine::load_config(p.as_deref()) {
                    Ok(l) => println!("{}: valid", l.source),
                    Err(e) => {
                        eprintln!("{e:#}");
                        bad += 1;
                    }
                }
            }
            Ok(if bad > 0 { 1 } else { 0 })
        }
        Command::Render { config, format } => {
            let loaded = engine::load_config(config.config.as_deref())?;
            match format {
                RenderFormat::Nft => print!("{}", nftsyntax::script(&engine::desired(&loaded), &loaded.source)),
                RenderFormat::Json => println!("{}", serde_json::to_string_pretty(&render_json(&loaded))?),
            }
            Ok(0)
        }
        Command::Plan { config } | Command::Check { config } => {
            let loaded = engine::load_config(config.config.as_deref())?;
            let desired = engine::desired(&loaded);
            enter()?;
            eprintln!("configuration: {}; {context}", loaded.source);
            let (_, p) = engine::in_namespace(ns, engine::plan_live(&desired))?;
            if is_plan || !p.is_empty() {
                print!("{}", p.text());
            } else {
                println!("Converged: the host matches the configuration.");
                for n in &p.notes {
                    println!("note: {n}");
                }
            }
            Ok(if p.is_empty() { 0 } else { 2 })
        }
        Command::Apply { config } => {
            let loaded = engine::load_config(config.config.as_deref())?;
            let desired = engine::desired(&loaded);
            enter()?;
            eprintln!("configuration: {}; {context}", loaded.source);
            let p = engine::in_namespace(ns, engine::converge(&desired))?;
            if p.is_empty() {
                println!("No changes: the host already matches the configuration.");
                for n in &p.notes {
                    println!("note: {n}");
                }
            } else {
                print!("{}", p.text().replace("Plan: ", "Applied: ").replace(" to add,", " added,").replace(" to change,", " changed,").replace(" to remove.", " removed."));
            }
            Ok(0)
        }
        Command::Remove { config } => {
            // The configuration is validated so a typo is not silently ignored, but what
            // is removed is what ecs-hostnet owns, whatever the configuration says now.
            let loaded = engine::load_config(config.config.as_deref())?;
            enter()?;
            eprintln!("configuration: {}; {context}", loaded.source);
            let p = engine::in_namespace(ns, engine::remove())?;
            if p.is_empty() {
                println!("Nothing to remove: no ecs-hostnet tables or settings are present.");
            } else {
                print!("{}", p.text().replace("Plan: ", "Removed: ").replace(" to add,", " added,").replace(" to change,", " changed,").replace(" to remove.", " removed."));
            }
            Ok(0)
        }
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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("ecs-hostnet: {}", format!("{e:#}").replace('\n', "\n  "));
            ExitCode::from(1)
        }
    }
}
