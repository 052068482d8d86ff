//! The command line's grammar: the clap `Cli`, its `Command`s and their flags. Only
//! declarations; checking flags against each other is [`super::context`]'s, running a
//! command is its own module's.
//!
//! Imports clap only. The `///` comments on arguments, commands and values are the
//! `--help` text (word for word); those on the types themselves and on the flattened and
//! subcommand fields are not shown.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// What `--version` prints after the command's name: `0.2.0 (commit abcdef123456, built
/// 2026-12-05)`; the commit (with `-dirty` for a changed tree, or `unknown`) and the UTC build
/// date come from build.rs.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("ECS_HOSTNET_COMMIT"),
    ", built ",
    env!("ECS_HOSTNET_BUILD_DATE"),
    ")"
);

/// Prepares a Linux host's network for Amazon ECS tasks with IAM roles: the credentials
/// endpoint DNAT/REDIRECT, the localhost and introspection guards, the IMDS block and
/// route_localnet, as one nftables transaction in tables of its own.
///
/// One TOML configuration (default /etc/ecs-hostnet/config.toml, else the built-in
/// defaults) is compiled into nftables rules in ecs-hostnet's own tables, sent to the kernel
/// in one atomic netlink batch and read back to compare; plus the route_localnet sysctls,
/// the endpoint route, the boot unit ecs-hostnet.service, the ecs.service drop-in that runs
/// `ecs-hostnet apply` before the ECS agent, and the agent's keys in /etc/ecs/ecs.config.
/// Rules of other tables (Docker's, iptables', firewalld's) are never changed; plan and check
/// name those that would stop containers from reaching the credentials endpoint.
///
/// Exit status: 0 done or nothing to do; 2 changes or drift (plan, check, diff, task check);
/// 1 error, with a message on standard error, and nothing applied.
#[derive(Parser)]
#[command(version = VERSION, about)]
pub struct Cli {
    /// Act in this network namespace: a name under /run/netns or a path such as
    /// /proc/PID/ns/net.
    /// Repeat it for `task`, which acts in many namespaces.
    #[arg(long, global = true, value_name = "NAME|PATH", action = clap::ArgAction::Append)]
    pub netns: Vec<String>,
    /// Take every path (configuration, units, ecs.config, install state, run directory)
    /// relative to DIR, e.g. an image being built.
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Color the text output: auto = only on a terminal and when NO_COLOR is unset.
    #[arg(long, global = true, value_enum, default_value = "auto", value_name = "WHEN")]
    pub color: ColorArg,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// `-c FILE`, the configuration of every command but `validate` (which takes many).
#[derive(clap::Args)]
pub struct ConfigArg {
    /// Configuration file (default: /etc/ecs-hostnet/config.toml under --root if it
    /// exists, else the embedded rules/default.toml).
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `render --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum RenderFormat {
    /// A script for `nft -f`.
    Nft,
    /// The desired state as JSON (schema "ecs-hostnet.render/v1").
    Json,
}

/// `--color`.
#[derive(Clone, Copy, ValueEnum)]
pub enum ColorArg {
    /// Color only when standard output is a terminal and NO_COLOR is unset or empty.
    Auto,
    /// Always color (overrides NO_COLOR).
    Always,
    /// Never color.
    Never,
}

/// `plan`, `check` and `diff --format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    /// A diff in nft syntax for people, grouped by table and chain.
    Text,
    /// The schema "ecs-hostnet.plan/v1" (docs/json.md).
    Json,
}

/// `verify --format`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum VerifyFormat {
    /// Per probe: PASS/FAIL, the outcome and the path.
    Text,
    /// The verify/v1 document (docs/json.md).
    Json,
}

/// `snapshot --format`.
#[derive(Clone, Copy, ValueEnum)]
pub enum SnapshotFormat {
    /// The schema "ecs-hostnet.snapshot/v1" (docs/json.md).
    Json,
}

/// The flags of `plan` and `check`.
#[derive(clap::Args)]
pub struct PlanArgs {
    /// `-c FILE`.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Plan against a snapshot (from `ecs-hostnet snapshot`) instead of the kernel: no
    /// root, no kernel access.
    #[arg(long, value_name = "SNAPSHOT.json")]
    pub against: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,
}

/// `status --format`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// A short report for people.
    Text,
    /// The schema "ecs-hostnet.status/v1" (docs/json.md).
    Json,
    /// The Prometheus text exposition format 0.0.4 (ecs_hostnet_* metrics).
    Prometheus,
}

/// The flags of `status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// `-c FILE`.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: StatusFormat,
    /// Also write the Prometheus exposition to FILE (for node_exporter's textfile
    /// collector: a temporary file in the same folder, then a rename; mode 0644). Default:
    /// metrics.textfile of the configuration.
    #[arg(long, value_name = "FILE.prom", value_parser = textfile_path)]
    pub textfile: Option<PathBuf>,
}

/// `--textfile`: an absolute path ending in `.prom`, as `metrics.textfile` must be.
fn textfile_path(s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if p.is_absolute() && name.ends_with(".prom") && name != ".prom" && !s.ends_with('/') {
        Ok(p)
    } else {
        Err("an absolute path ending in .prom (node_exporter's textfile collector reads only those) is needed".into())
    }
}

/// The flags of `task apply|check|remove`.
#[derive(clap::Args)]
pub struct TaskArgs {
    /// `-c FILE`.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Also every namespace file in this folder (e.g. /run/netns).
    #[arg(long, value_name = "DIR")]
    pub netns_dir: Option<PathBuf>,
}

/// `task`'s subcommands.
#[derive(Subcommand)]
pub enum TaskCommand {
    /// Add the missing routes in each namespace. Exit 0: all converged, 1: any failed.
    Apply(TaskArgs),
    /// Report missing routes. Exit 0: all converged, 2: drift, 1: any failed.
    Check(TaskArgs),
    /// Delete the routes ecs-hostnet added. Exit 0: done, 1: any failed.
    Remove(TaskArgs),
}

/// The commands; each runs in the module of its name (plan and check in `plan`,
/// install and uninstall in `install`).
#[derive(Subcommand)]
pub enum Command {
    /// Print the rule set the configuration compiles to (no root, no kernel).
    Render {
        #[command(flatten)]
        config: ConfigArg,
        #[arg(long, value_enum, default_value = "nft")]
        format: RenderFormat,
    },
    /// Show what apply would change. Exit 0: nothing to do, 2: changes, 1: error.
    ///
    /// Reads the host (or --netns, or a snapshot with --against) and prints the changes apply
    /// would make, as a diff in nft syntax grouped by table and chain, with the reason for
    /// each, and notes on foreign rules and leftovers (an iptables DNAT from ecs-init, a
    /// DOCKER-USER drop) that matter to the credentials endpoint. Changes nothing.
    Plan(PlanArgs),
    /// Make the host match the configuration. Exit 0 when converged.
    ///
    /// Replaces ecs-hostnet's tables in one nf_tables transaction (all or nothing), sets
    /// route_localnet and the endpoint route, removes stale conntrack entries of the
    /// endpoint, then reads the host back and fails unless it matches. A converged host gets
    /// no transaction at all. Needs CAP_NET_ADMIN in the network namespace.
    ///
    /// On an installed host it also repairs the installed files (units, drop-ins, agent keys)
    /// that drifted, unless --kernel-only.
    Apply {
        #[command(flatten)]
        config: ConfigArg,
        /// Converge the kernel only (rule set, route_localnet, endpoint route, conntrack) and
        /// leave installed files as they are, drifted or not. The nftables.service drop-in runs
        /// this: that unit's sandbox (ProtectSystem=full) makes /etc read-only, and a file
        /// repair that cannot be made would otherwise stop the whole apply.
        #[arg(long)]
        kernel_only: bool,
    },
    /// Compare the host with the configuration. Exit 0: converged, 2: drift, 1: error.
    ///
    /// The same comparison as plan, for monitoring: `--format json` prints the schema
    /// "ecs-hostnet.plan/v1" (docs/json.md), one document per host for a fleet report.
    Check(PlanArgs),
    /// Show the live state: each rule's packet and byte counters, converged or not, the
    /// localhost guard, route_localnet, the findings and the watcher. Exit 0: converged
    /// and no blocking finding, 2: otherwise, 1: error.
    ///
    /// One read, the same as check. --format prometheus prints the Prometheus text
    /// exposition (ecs_hostnet_* metrics); --textfile (or metrics.textfile) also writes it
    /// for node_exporter's textfile collector.
    Status(StatusArgs),
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
    ///
    /// Deletes ecs-hostnet's tables in one transaction and the endpoint route it added;
    /// installed files stay (uninstall removes them).
    Remove {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Stay converged: apply once, then repair within milliseconds whatever undoes the
    /// rules (nft flush ruleset, a firewall reload), set route_localnet on new matching
    /// interfaces and keep the "auto" endpoint route in step with the IPv4 default route.
    /// Runs until SIGTERM (exit 0, rules kept); SIGHUP reloads the configuration.
    Watch {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Prove the credentials and IMDS paths with traced probe packets: a temporary probe
    /// seen as a container is (a veth named like a container interface, in a namespace of
    /// its own), one TCP SYN each to the credentials endpoint, IMDS (IPv4, IPv6) and from
    /// the host, traced with nftrace; prints each table/chain/rule that saw it and the
    /// outcome. Exit 0: every expectation holds; 2: one does not; 1: error. Everything it
    /// makes is removed.
    Verify {
        #[command(flatten)]
        config: ConfigArg,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: VerifyFormat,
    },
    /// Install and enable ecs-hostnet on this host: the configuration, the boot unit, the
    /// ecs-init hook, the nftables.service drop-in, the watch unit (watch.enabled) and the
    /// metrics timer (metrics.textfile set), and the agent's ecs.config keys. Writes only what
    /// differs, atomically.
    ///
    /// From a tarball or the source tree it copies its own binary to
    /// /usr/local/sbin/ecs-hostnet and writes the units into /etc/systemd/system. Beside the
    /// ecs-hostnet package (/usr/sbin/ecs-hostnet and /usr/lib/systemd/system/ecs-hostnet.service
    /// present) it copies no binary and writes no unit: it enables the package's units, and
    /// writes only the configuration, the two drop-ins and the agent keys ("package": true in
    /// the install state); uninstall then never removes a file of the package's.
    ///
    /// With --root DIR it writes into an image being built. What it wrote and replaced is
    /// recorded in an install state file (/var/lib/ecs-hostnet/install.json), which uninstall
    /// reads.
    Install {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Remove exactly what install added and put back what it replaced.
    ///
    /// Reads the install state file that install wrote. On the running system (or with
    /// --netns) it first removes the live rule set, as remove does; for another --root alone
    /// it changes files only.
    Uninstall {
        /// For the package's prerm and %preun: uninstall only an install made beside the
        /// package (the install state says "package": true); do nothing when nothing is
        /// installed or the install is a tarball one (its binary in /usr/local/sbin stays);
        /// fail when the state cannot be read, so that the removal stops instead of leaving
        /// ecs.service's drop-in running a deleted binary.
        #[arg(long, hide = true)]
        package_removal: bool,
    },
    /// The awsvpc IMDS block: BLACKHOLE routes to the IMDS addresses inside task network
    /// namespaces (given with --netns, repeatable, and/or --netns-dir).
    ///
    /// The routes the ECS agent's CNI plugin adds with ECS_AWSVPC_BLOCK_IMDS=true
    /// (169.254.169.254/32 and fd00:ec2::254/128), for tasks whose namespaces were made
    /// without it. Each namespace is handled on its own; one failure does not stop the rest.
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
    /// Write the manual pages (OUTDIR/man, section 8) and the bash, zsh and fish
    /// completions (OUTDIR/completions) of this command line. A packaging step: hidden.
    #[command(hide = true)]
    GenerateDocs {
        /// The folder to write man/ and completions/ into (created if missing).
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
    },
    /// Write the unit files the package ships (/usr/sbin/ecs-hostnet; with --local those
    /// `install` writes, /usr/local/sbin/ecs-hostnet) into OUTDIR. A packaging step: hidden.
    #[command(hide = true)]
    GenerateUnits {
        /// The units `install` writes from a tarball or source, not the package's.
        #[arg(long)]
        local: bool,
        /// The folder to write the units into (created if missing).
        #[arg(value_name = "OUTDIR")]
        outdir: PathBuf,
    },
}
