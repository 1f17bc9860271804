//! Command line: argument definitions (clap derive) and dispatch to the library.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use time::OffsetDateTime;

use crate::ca::{self, CaInit, CertificateAuthority, IfExists, NewCa};
use crate::certinfo::{format_time, CertInfo};
use crate::check::{self, CheckOptions, Status};
use crate::error::{CertsError, Result};
use crate::inspect::{self, InspectOptions};
use crate::issue::{self, IssueReport, LeafRequest, DEFAULT_LEAF_DAYS};
use crate::keys::KeyAlgorithm;
use crate::layout::LayoutChoice;
use crate::rotate::{self, CaChange, RotateOptions};
use crate::san::SubjectAltName;

const ABOUT: &str = "Dev CAs, serving certificates, live rotation, inspection and expiry checks";

const LONG_ABOUT: &str = "\
Dev CAs, serving certificates, live rotation, inspection and expiry checks for the Record \
Platform edge.

A CA directory holds ca.crt + ca.key (0600); the key never leaves it. A serving directory holds \
tls.crt (leaf + intermediates), tls.key (0600) and ca.crt (the bundle clients trust). Every \
write is atomic (temp file in the same directory, fsync, rename).

Exit codes: 0 success; 1 `check` found a certificate expiring within --warn-days; 2 bad input \
or an invalid certificate set (exactly one line on stderr says what and where).";

#[derive(Debug, Parser)]
#[command(name = "certs-tool", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage a certificate authority directory
    #[command(subcommand)]
    Ca(CaCommand),
    /// Issue a serving certificate: writes tls.crt (leaf + chain), tls.key and ca.crt
    #[command(long_about = ISSUE_LONG)]
    Issue(IssueArgs),
    /// Re-issue the serving certificate in place: same SANs, new key, new serial
    #[command(long_about = ROTATE_LONG)]
    Rotate(RotateArgs),
    /// Show certificates and keys: subject, SANs, serial, validity, key match, chain
    #[command(long_about = INSPECT_LONG)]
    Inspect(InspectArgs),
    /// Verdict for cron and probes: exit 0 ok, 1 expiring within --warn-days, 2 invalid
    #[command(long_about = CHECK_LONG)]
    Check(CheckArgs),
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create a self-signed CA: DIR/ca.crt (0644) and DIR/ca.key (0600)
    #[command(long_about = CA_INIT_LONG)]
    Init(CaInitArgs),
}

const CA_INIT_LONG: &str = "\
Create a self-signed CA: DIR/ca.crt (0644) and DIR/ca.key (0600).

Refuses to overwrite an existing CA (every certificate it issued would stop verifying) unless \
--force; --exist-ok instead keeps a valid existing CA and exits 0, which makes `make up` \
idempotent.";

#[derive(Debug, Args)]
pub struct CaInitArgs {
    /// CA directory (created if missing)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Subject common name of the CA
    #[arg(long, default_value = ca::DEFAULT_CA_NAME)]
    pub name: String,
    /// Validity in days
    #[arg(long, value_name = "N", default_value_t = ca::DEFAULT_CA_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub days: u32,
    /// Key algorithm
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    pub key: KeyAlgorithm,
    /// Replace an existing CA
    #[arg(long, conflicts_with = "exist_ok")]
    pub force: bool,
    /// Keep an existing valid CA and succeed
    #[arg(long)]
    pub exist_ok: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

const ISSUE_LONG: &str = "\
Issue a serving certificate signed by the CA in --ca and publish it in --out:
  tls.crt  leaf, then intermediates (the cross-signed CA during a CA rotation overlap)
  tls.key  the leaf key, 0600
  ca.crt   the CA bundle clients should trust (current CA, plus the previous one during an overlap)

SANs that parse as IP addresses become IP SANs; everything else must be a valid DNS name \
(letters, digits, '-', a whole `*` left-most label for wildcards: *.example.com). The first SAN \
is also the subject CN. Leaves get a random 128-bit serial, serverAuth+clientAuth EKU, \
authority/subject key ids, and a not-before one hour in the past for clock skew; a lifetime \
past the CA's expiry is cut to it.

Layouts: flat writes ca.crt, then tls.key, then tls.crt, each atomically; tls.crt lands last, so \
a reader that reads tls.crt and then tls.key never gets a new certificate with an old key (it \
can briefly get new key + old certificate: check the pair and retry). k8s writes the kubelet \
atomic-writer layout: a new ..<timestamp> directory with all three files, then one rename \
swaps the ..data symlink, and tls.crt/tls.key/ca.crt are symlinks into ..data — the pair \
changes atomically. auto (default) keeps the layout the directory already has, flat for a new \
one.";

#[derive(Debug, Args)]
pub struct IssueArgs {
    /// CA directory (ca.crt, ca.key)
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Output directory (created if missing; must not be the CA directory)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// DNS name or IP address; repeat for several
    #[arg(long = "san", value_name = "NAME", required = true)]
    pub sans: Vec<String>,
    /// Validity in days (cut to the CA's expiry)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LEAF_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Key algorithm
    #[arg(long, value_enum, default_value_t = KeyAlgorithm::EcdsaP256)]
    pub key: KeyAlgorithm,
    /// File layout in --out
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

const ROTATE_LONG: &str = "\
Re-issue the serving certificate in --out: the SANs are read from the current tls.crt, the key \
and serial are new, the key algorithm stays the same unless --key. Written with the same \
guarantees as `issue` (layout auto keeps the directory's layout).

CA rotation (--new-ca), designed so clients that trust either CA keep working during the \
overlap:
  * a new CA key and name (`<name> G2`, G3, ...) become DIR/ca.crt + ca.key; the old CA is kept \
as ca-previous.crt, and ca-cross.crt is the NEW CA (same name, key and key id) signed by the \
OLD CA;
  * tls.crt = leaf (issued by the new CA) + ca-cross.crt, so a client trusting only the old CA \
verifies leaf -> cross -> old CA, and a client trusting only the new CA verifies leaf -> new CA;
  * ca.crt next to the leaf = new CA + old CA, for clients that reload their trust bundle.
Plain rotations during the overlap keep serving the cross certificate. Once every client \
trusts the new CA, end the overlap with --finish-ca-rotation: the cross certificate and the \
old CA are removed and tls.crt/ca.crt carry only the new CA. A second --new-ca also ends the \
previous overlap (only one previous CA is kept).";

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// CA directory (ca.crt, ca.key)
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Serving directory holding the current tls.crt
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Validity of the new leaf in days (cut to the CA's expiry)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LEAF_DAYS,
          value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub days: u32,
    /// Key algorithm of the new leaf (default: same as the current leaf)
    #[arg(long, value_enum)]
    pub key: Option<KeyAlgorithm>,
    /// File layout in --out
    #[arg(long, value_enum, default_value_t = LayoutChoice::Auto)]
    pub layout: LayoutChoice,
    /// Also move to a new CA, cross-signed by the current one (starts an overlap)
    #[arg(long, conflicts_with = "finish_ca_rotation")]
    pub new_ca: bool,
    /// Subject CN of the new CA (default: current name with the generation bumped)
    #[arg(long, value_name = "NAME", requires = "new_ca")]
    pub ca_name: Option<String>,
    /// Validity of the new CA in days
    #[arg(long, value_name = "N", requires = "new_ca",
          value_parser = clap::value_parser!(u32).range(1..=36500))]
    pub ca_days: Option<u32>,
    /// Key algorithm of the new CA (default: same as the current CA)
    #[arg(long, value_enum, requires = "new_ca")]
    pub ca_key: Option<KeyAlgorithm>,
    /// End a CA-rotation overlap: drop the cross certificate and the previous CA
    #[arg(long)]
    pub finish_ca_rotation: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

const INSPECT_LONG: &str = "\
Show each FILE: every certificate (subject, issuer, serial, SANs, not-before/not-after, key \
type, role), whether the private key matches (a key in the file itself, --key, or the .key file \
beside it: tls.crt -> tls.key, ca.crt -> ca.key), and whether the chain verifies (the other \
certificates in the file are intermediates; trust anchors are --ca-file or the ca.crt beside \
the file). A key-only FILE is compared with the .crt beside it.

Exit 0 when everything matches and verifies; 2 (one line on stderr, after the report) on a key \
mismatch, a chain that does not verify, or a file that cannot be read or parsed.";

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// PEM files: certificates, chains, bundles or keys
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Private key to compare with each certificate file
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// CA bundle to verify against (default: ca.crt beside each file)
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Print the reports as a JSON array
    #[arg(long)]
    pub json: bool,
}

const CHECK_LONG: &str = "\
Check a serving directory the way the edge loads it: tls.crt, tls.key and ca.crt present and \
parseable, key matches the leaf, the chain verifies against ca.crt, nothing expired, and every \
--host covered by a SAN. The expiry that counts is the earliest on the verified path (leaf, \
cross certificate, CA). A CA directory (ca.key and no tls.crt) is checked for key match and CA \
expiry.

Exit 0 ok; 1 expiring within --warn-days (one line on stdout); 2 invalid: missing or corrupt \
file, key mismatch, broken chain, expired, host not covered (one line on stderr).";

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Serving directory (tls.crt, tls.key, ca.crt) or CA directory
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Exit 1 when the earliest expiry is fewer than this many days away
    #[arg(long, value_name = "N", default_value_t = 30)]
    pub warn_days: u32,
    /// Host name or IP the leaf must cover; repeat for several
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Print the report as JSON on stdout
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command, writing reports to `out`. Returns the exit code for outcomes that are
/// not errors (0, or 1 for `check` finding an expiring certificate); every error exits 2.
pub fn run(cli: Cli, out: &mut dyn Write) -> Result<u8> {
    let now = OffsetDateTime::now_utc();
    match cli.command {
        Command::Ca(CaCommand::Init(args)) => ca_init(args, now, out),
        Command::Issue(args) => issue_cmd(args, now, out),
        Command::Rotate(args) => rotate_cmd(args, now, out),
        Command::Inspect(args) => inspect_cmd(args, now, out),
        Command::Check(args) => check_cmd(args, now, out),
    }
}

fn ca_init(args: CaInitArgs, now: OffsetDateTime, out: &mut dyn Write) -> Result<u8> {
    let if_exists = match (args.force, args.exist_ok) {
        (true, _) => IfExists::Replace,
        (_, true) => IfExists::Keep,
        _ => IfExists::Fail,
    };
    let opts = CaInit {
        name: args.name,
        days: args.days,
        key: args.key,
        if_exists,
    };
    let (ca, created) = CertificateAuthority::init(&args.dir, &opts, now)?;
    let info = &ca.current.info;
    if args.json {
        let report = serde_json::json!({ "dir": args.dir, "created": created, "ca": info });
        emit(out, &report.to_string())?;
    } else {
        let verb = if created { "created" } else { "kept existing" };
        emit(
            out,
            &format!(
                "{verb} CA {} in {} ({}, serial {}, valid until {})",
                info.subject,
                args.dir.display(),
                info.key_type,
                info.serial,
                format_time(info.not_after)
            ),
        )?;
    }
    Ok(0)
}

fn issue_cmd(args: IssueArgs, now: OffsetDateTime, out: &mut dyn Write) -> Result<u8> {
    let req = LeafRequest {
        sans: SubjectAltName::parse_all(&args.sans)?,
        days: args.days,
        key: args.key,
    };
    let report = issue::issue(&args.ca, &args.out, &req, args.layout, now)?;
    note_clamp(&report);
    if args.json {
        emit(out, &to_json(&report)?)?;
    } else {
        emit(out, &format!("issued {}", describe_issue(&report)))?;
    }
    Ok(0)
}

fn rotate_cmd(args: RotateArgs, now: OffsetDateTime, out: &mut dyn Write) -> Result<u8> {
    let ca_change = if args.new_ca {
        CaChange::New(NewCa {
            name: args.ca_name,
            days: args.ca_days,
            key: args.ca_key,
        })
    } else if args.finish_ca_rotation {
        CaChange::FinishOverlap
    } else {
        CaChange::Keep
    };
    let opts = RotateOptions {
        days: args.days,
        key: args.key,
        layout: args.layout,
        ca_change,
    };
    let report = rotate::rotate(&args.ca, &args.out, &opts, now)?;
    note_clamp(&report.issued);
    if args.json {
        emit(out, &to_json(&report)?)?;
        return Ok(0);
    }
    emit(
        out,
        &format!(
            "rotated (serial {} -> {}) {}",
            report.previous_serial,
            report.issued.leaf.serial,
            describe_issue(&report.issued)
        ),
    )?;
    if let Some(new_ca) = &report.new_ca {
        emit(
            out,
            &format!(
                "new CA {} (serial {}, valid until {}), cross-signed by the previous CA; \
                 tls.crt carries the cross certificate and ca.crt bundles both CAs until \
                 `certs-tool rotate --finish-ca-rotation`",
                new_ca.subject,
                new_ca.serial,
                format_time(new_ca.not_after)
            ),
        )?;
    }
    if report.finished_overlap {
        emit(
            out,
            "CA rotation finished: the previous CA and the cross certificate are gone",
        )?;
    } else if args.finish_ca_rotation {
        emit(
            out,
            "no CA rotation was in progress; only the leaf was rotated",
        )?;
    }
    Ok(0)
}

fn inspect_cmd(args: InspectArgs, now: OffsetDateTime, out: &mut dyn Write) -> Result<u8> {
    let opts = InspectOptions {
        key: args.key,
        ca_file: args.ca_file,
    };
    let reports = inspect::inspect(&args.files, &opts)?;
    if args.json {
        emit(out, &to_json(&reports)?)?;
    } else {
        write_out(out, &inspect::render_text(&reports, now))?;
    }
    // The report is out; a problem is still a failure for scripts.
    match reports.iter().find_map(inspect::FileReport::problem) {
        Some(problem) => Err(problem),
        None => Ok(0),
    }
}

fn check_cmd(args: CheckArgs, now: OffsetDateTime, out: &mut dyn Write) -> Result<u8> {
    let opts = CheckOptions {
        warn_days: args.warn_days,
        hosts: args.hosts,
    };
    let report = check::check(&args.dir, &opts, now);
    if args.json {
        emit(out, &to_json(&report)?)?;
    }
    match report.status {
        Status::Invalid => Err(CertsError::Invalid(format!("invalid: {}", report.message))),
        status => {
            if !args.json {
                let label = if status == Status::Ok {
                    "ok"
                } else {
                    "expiring"
                };
                emit(out, &format!("{label}: {}", report.message))?;
            }
            Ok(status.exit_code())
        }
    }
}

fn describe_issue(report: &IssueReport) -> String {
    let leaf: &CertInfo = &report.leaf;
    let sans: Vec<String> = leaf.sans.iter().map(ToString::to_string).collect();
    let overlap = if report.overlap {
        ", with cross-signed chain (CA rotation overlap)"
    } else {
        ""
    };
    format!(
        "{}: {} serial {}, SANs {}, {}, valid until {}; layout {}{overlap}",
        report.out.join(crate::layout::TLS_CRT).display(),
        leaf.subject,
        leaf.serial,
        sans.join(" "),
        leaf.key_type,
        format_time(leaf.not_after),
        report.layout
    )
}

fn note_clamp(report: &IssueReport) {
    if report.clamped_to_ca {
        // A warning, not an error: the certificate is usable, just shorter than asked.
        eprintln!(
            "certs-tool: note: leaf validity cut to the CA's expiry ({}); rotate the CA soon",
            format_time(report.leaf.not_after)
        );
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map_err(|e| CertsError::Usage(format!("cannot encode JSON: {e}")))
}

fn emit(out: &mut dyn Write, line: &str) -> Result<()> {
    writeln!(out, "{line}").map_err(|e| CertsError::write("<stdout>", e))
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<()> {
    out.write_all(text.as_bytes())
        .map_err(|e| CertsError::write("<stdout>", e))
}

/// Turns a clap error into one line (the first paragraph of clap's message, joined), so bad
/// arguments obey the same one-line rule as every other error.
pub fn one_line_usage_error(rendered: &str) -> String {
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let text = first_paragraph.join(" ");
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    format!("{text} (see --help)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_subcommand_has_help() {
        for args in [
            &["certs-tool", "ca", "init", "--help"][..],
            &["certs-tool", "issue", "--help"],
            &["certs-tool", "rotate", "--help"],
            &["certs-tool", "inspect", "--help"],
            &["certs-tool", "check", "--help"],
        ] {
            let err = Cli::try_parse_from(args).expect_err("help exits early");
            assert_eq!(err.kind(), clap::error::ErrorKind::DisplayHelp);
        }
    }

    #[test]
    fn clap_errors_collapse_to_one_line() {
        let err = Cli::try_parse_from(["certs-tool", "issue", "--san", "x"]).expect_err("missing");
        let line = one_line_usage_error(&err.render().to_string());
        assert!(!line.contains('\n'));
        assert!(line.contains("--ca <DIR>"), "{line}");
        assert!(line.ends_with("(see --help)"));
    }

    #[test]
    fn ca_options_need_new_ca_and_exclude_finishing() {
        for extra in [
            &["--ca-name", "X"][..],
            &["--new-ca", "--finish-ca-rotation"],
        ] {
            let mut args = vec!["certs-tool", "rotate", "--ca", "a", "--out", "b"];
            args.extend_from_slice(extra);
            assert!(Cli::try_parse_from(args).is_err(), "{extra:?}");
        }
    }
}
