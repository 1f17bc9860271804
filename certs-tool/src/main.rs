//! `certs-tool`: see `certs-tool --help` and docs/certs-tool.md.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser;

use certs_tool::cli::{one_line_usage_error, run, Cli};

/// Exit code for bad input and invalid certificate sets (clap uses 2 for usage errors too).
const EXIT_INVALID: u8 = 2;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(err),
    };
    match real_main(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Library errors render as one self-contained line (source included), so the
            // plain Display form is the whole message; `{:#}` would repeat the source.
            eprintln!("certs-tool: {err}");
            ExitCode::from(EXIT_INVALID)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<u8> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    Ok(run(cli, &mut out)?)
}

fn clap_exit(err: clap::Error) -> ExitCode {
    match err.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            // Help and version are output, not errors.
            let _ = err.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // clap would print the whole help to stderr; keep to the one-line rule.
            eprintln!("certs-tool: a subcommand is required (see --help)");
            ExitCode::from(EXIT_INVALID)
        }
        _ => {
            eprintln!(
                "certs-tool: {}",
                one_line_usage_error(&err.render().to_string())
            );
            ExitCode::from(EXIT_INVALID)
        }
    }
}
