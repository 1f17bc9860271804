//! `edge`: run the edge, `edge check` a config file, or `edge upgrade` the running edge.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Per request, Pingora and the pipeline allocate and free dozens of small objects
// (headers, tasks, buffers); glibc malloc spent ~17 % of the proxy thread's CPU on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "edge",
    version,
    about = "Record Platform edge: TLS, HTTP/1.1, HTTP/2 and HTTP/3 gateway on Pingora",
    long_about = "Runs the edge. Without --config an embedded dev config is used (self-signed \
                  certificate, routes to auth on 127.0.0.1:4001/50051 and records on \
                  127.0.0.1:4002/50052). SIGHUP reloads config and certificates; SIGTERM drains \
                  and exits; start a new process with --upgrade then SIGQUIT the old one for a \
                  zero-downtime binary upgrade."
)]
struct Cli {
    /// The TOML config file (relative paths in it are relative to its directory).
    #[arg(short, long, global = true, env = "EDGE_CONFIG")]
    config: Option<PathBuf>,

    /// Take over the listening sockets of a running edge (graceful upgrade; see docs/upgrade.md).
    #[arg(short, long)]
    upgrade: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate the config (and the certificates and upstream addresses it names), print
    /// the effective config with secrets redacted, exit 0 when valid and 1 otherwise.
    Check,
    /// Replace the running edge (PID in server.pid_file) without dropping its listeners:
    /// start the successor with --upgrade, wait until it waits on server.upgrade_sock, then
    /// SIGQUIT the old one and wait until the new one serves (docs/upgrade.md).
    Upgrade {
        /// The new edge binary (default: this one).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Seconds to wait for each step.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => edge::server::check(cli.config.as_deref()),
        Some(Command::Upgrade { binary, timeout }) => {
            edge::upgrade::run(&edge::upgrade::UpgradeRequest {
                config: cli.config,
                binary,
                timeout: std::time::Duration::from_secs(timeout),
            })
        }
        None => match edge::server::run(cli.config.as_deref(), cli.upgrade) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("edge: {err:#}");
                ExitCode::FAILURE
            }
        },
    }
}
