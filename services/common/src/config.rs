//! Flags both services take, with the environment fallbacks of docs/contracts.md
//! ("Service command lines"). A flag wins over its variable. The listener addresses differ per
//! service (`AUTH_HTTP_ADDR` vs `RECORDS_HTTP_ADDR`), so each service declares those itself.

use std::path::PathBuf;
use std::time::Duration;

/// PostgreSQL connection settings (also all that `migrate` needs).
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL, e.g. postgres://user:pass@127.0.0.1:55432/record_platform
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Maximum pooled PostgreSQL connections per process.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 16)]
    pub db_pool_size: usize,

    /// How long a request waits for a connection (or for connecting) before answering 503.
    #[arg(long, env = "DB_TIMEOUT", default_value = "3s", value_parser = parse_duration)]
    pub db_timeout: Duration,
}

/// Redis and identity settings shared by `serve` in both services.
#[derive(Debug, Clone, clap::Args)]
pub struct SharedServeArgs {
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:56379",
        hide_env_values = true
    )]
    pub redis_url: String,

    /// Prefix of every Redis key and channel (empty in dev and prod, unique per test).
    #[arg(long, env = "REDIS_NAMESPACE", default_value = "")]
    pub redis_namespace: String,

    #[command(flatten)]
    pub identity: IdentityArgs,

    /// Longest time a single Redis command may take before the caller gives up on it.
    #[arg(long, env = "REDIS_TIMEOUT", default_value = "500ms", value_parser = parse_duration)]
    pub redis_timeout: Duration,

    /// Largest accepted request body.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

/// How `x-user-assertion` is checked (docs/contracts.md, "Identity from the edge").
#[derive(Debug, Clone, clap::Args)]
pub struct IdentityArgs {
    /// Directory of the HMAC keys shared with the edge: every `<key-id>.key` file (base64 of
    /// at least 32 bytes) is accepted, so a rotation can add a key before the edge signs with
    /// it (docs/identity-rotation.md). Read at start.
    #[arg(long, env = "IDENTITY_KEY_DIR")]
    pub identity_key_dir: PathBuf,

    /// The name assertions must be bound to (the edge's `identity_audience` of the
    /// clusters in front of this service). Default: the service's own name.
    #[arg(long, env = "IDENTITY_AUDIENCE")]
    pub identity_audience: Option<String>,

    /// How old an assertion may be (at most 30s).
    #[arg(long, env = "IDENTITY_MAX_AGE", default_value = "5s", value_parser = parse_duration)]
    pub identity_max_age: Duration,

    /// How far in the future an assertion may be dated: clock skew (at most 10s).
    #[arg(long, env = "IDENTITY_MAX_SKEW", default_value = "2s", value_parser = parse_duration)]
    pub identity_max_skew: Duration,
}

/// `serve` is the default subcommand: `auth --http-addr X` means `auth serve --http-addr X`.
/// clap has no notion of a default subcommand with required arguments, so the argument
/// list is completed before parsing.
pub fn with_default_subcommand(
    mut args: Vec<std::ffi::OsString>,
    subcommands: &[&str],
) -> Vec<std::ffi::OsString> {
    let explicit = args.get(1).and_then(|a| a.to_str()).is_some_and(|first| {
        subcommands.contains(&first)
            || matches!(first, "help" | "-h" | "--help" | "-V" | "--version")
    });
    if !explicit {
        args.insert(1.min(args.len()), "serve".into());
    }
    args
}

/// `250ms`, `3s`, `2m` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 500ms, 3s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("`{text}`: unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serve_is_inserted_unless_a_subcommand_is_named() {
        let run = |args: &[&str]| -> Vec<String> {
            let args = args.iter().map(std::ffi::OsString::from).collect();
            with_default_subcommand(args, &["serve", "migrate"])
                .into_iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(run(&["auth"]), ["auth", "serve"]);
        assert_eq!(
            run(&["auth", "--http-addr", "x"]),
            ["auth", "serve", "--http-addr", "x"]
        );
        assert_eq!(run(&["auth", "migrate"]), ["auth", "migrate"]);
        assert_eq!(run(&["auth", "--help"]), ["auth", "--help"]);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("ms").is_err());
    }
}
