//! Tests of `load`: parsing, located problems, validation rules.

use super::*;

fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
    load_str(text, Some(Path::new("edge.toml")), Path::new("/etc/edge"))
}

const GOOD: &str = r#"
[clusters.records]
addresses = ["127.0.0.1:4002"]

[[routes]]
id = "records"
path_prefix = "/api/records"
strip_prefix = "/api"
upstream = "records"
"#;

#[test]
fn embedded_default_is_valid() {
    let loaded = load_str(EMBEDDED_DEFAULT, None, Path::new("."))
        .unwrap_or_else(|e| panic!("embedded default must load:\n{e}"));
    assert!(!loaded.config.routes.is_empty());
    assert!(loaded.config.clusters.contains_key("records"));
}

#[test]
fn the_printable_config_shows_no_credentials() {
    let text = format!(
        "{GOOD}\n[tracing]\notlp_endpoint = \"http://u:pa@ss@collector:4317\"\n\
         [plugins.redis]\nurl = \"redis://:r3d@is@redis:6379\"\n"
    );
    let loaded = load(&text).expect("valid");
    let printed = toml::to_string(&loaded.config.redacted()).expect("print");
    for secret in ["pa@ss", "ss@collector", "r3d", "is@redis"] {
        assert!(!printed.contains(secret), "{secret} leaks in:\n{printed}");
    }
    assert!(printed.contains("***@collector:4317") && printed.contains("***@redis:6379"));
}

#[test]
fn good_config_loads_with_defaults() {
    let loaded = load(GOOD).expect("valid");
    assert_eq!(loaded.config.server.threads, 2);
    assert_eq!(loaded.config.routes[0].hosts, ["*"]);
    assert_eq!(loaded.config.limits.max_request_headers, 100);
}

#[test]
fn typo_in_cluster_name_names_file_line_key_and_suggestion() {
    let text = GOOD.replace("upstream = \"records\"", "upstream = \"recrods\"");
    let err = load(&text).expect_err("unknown cluster");
    let message = err.to_string();
    assert!(
        message.starts_with("edge.toml:9: routes[0].upstream: unknown cluster 'recrods'"),
        "{message}"
    );
    assert!(message.contains("did you mean 'records'?"), "{message}");
}

#[test]
fn unknown_field_is_an_error_with_its_line() {
    let text = GOOD.replace("strip_prefix", "strip_prefx");
    let err = load(&text).expect_err("unknown field");
    let problem = &err.problems[0];
    assert_eq!(problem.line, Some(8), "{err}");
    assert!(problem.key.starts_with("routes[0]"), "{err}");
    assert!(problem.message.contains("strip_prefx"), "{err}");
}

#[test]
fn wrong_type_names_the_key() {
    let text = format!("[server]\nthreads = \"many\"\n{GOOD}");
    let err = load(&text).expect_err("type error");
    assert_eq!(err.problems[0].key, "server.threads", "{err}");
    assert_eq!(err.problems[0].line, Some(2), "{err}");
}

#[test]
fn empty_upstream_pool_is_rejected_at_its_line() {
    let text = format!("[server]\nthreads = 1\nupstream_keepalive_pool_size = 0\n{GOOD}");
    let err = load(&text).expect_err("pool of 0");
    assert_eq!(
        err.problems[0].key, "server.upstream_keepalive_pool_size",
        "{err}"
    );
    assert_eq!(err.problems[0].line, Some(3), "{err}");
    let loaded = load(GOOD).expect("defaults");
    assert_eq!(loaded.config.server.upstream_keepalive_pool_size, 1024);
}

/// One thread: per-thread runtimes (nothing to steal from); more: Pingora's work stealing;
/// an explicit `work_stealing` wins either way, and a value of the wrong type is located.
#[test]
fn work_stealing_follows_the_thread_count_unless_set() {
    for (server, want) in [
        ("threads = 1", false),
        ("threads = 2", true),
        ("threads = 1\nwork_stealing = true", true),
        ("threads = 4\nwork_stealing = false", false),
    ] {
        let loaded = load(&format!("[server]\n{server}\n{GOOD}")).expect("valid");
        assert_eq!(loaded.config.server.work_stealing(), want, "{server}");
    }
    assert!(load(GOOD).expect("defaults").config.server.work_stealing());
    let err = load(&format!(
        "[server]\nthreads = 1\nwork_stealing = \"no\"\n{GOOD}"
    ))
    .expect_err("a string");
    assert_eq!(err.problems[0].key, "server.work_stealing", "{err}");
    assert_eq!(err.problems[0].line, Some(3), "{err}");
}

#[test]
fn identity_audience_and_jwks_transport_problems_name_their_keys() {
    let text = GOOD.replace(
        "addresses = [\"127.0.0.1:4002\"]",
        "addresses = [\"127.0.0.1:4002\"]\nidentity_audience = \"records service\"",
    );
    let err = load(&text).expect_err("bad audience");
    assert_eq!(
        err.problems[0].key, "clusters.records.identity_audience",
        "{err}"
    );
    assert_eq!(err.problems[0].line, Some(4), "{err}");

    let jwt = |url: &str, extra: &str| {
        format!(
            "{GOOD}\n[plugins.jwt]\nissuer = \"i\"\naudience = \"a\"\njwks_url = \"{url}\"\n{extra}"
        )
    };
    for (text, key) in [
        (
            jwt("http://127.0.0.1:4001/jwks", ""),
            "plugins.jwt.jwks_url",
        ),
        (
            jwt("http://auth.example.com/jwks", "jwks_allow_http = true\n"),
            "plugins.jwt.jwks_allow_http",
        ),
    ] {
        let err = load(&text).expect_err("plain http refused");
        assert_eq!(err.problems[0].key, key, "{err}");
        assert!(err.to_string().contains("https://"), "{err}");
    }
    load(&jwt(
        "http://127.0.0.1:4001/jwks",
        "jwks_allow_http = true\n",
    ))
    .expect("loopback over http when allowed");
    load(&jwt("https://auth.example.com/jwks", "")).expect("https");

    // The v1 key file setting is gone, loudly: a stale config names the key.
    let old = format!("{GOOD}\n[plugins.identity]\nkey_file = \"identity.key\"\n");
    let err = load(&old).expect_err("v1 identity config");
    assert!(err.problems[0].key.starts_with("plugins.identity"), "{err}");
}

#[test]
fn syntax_error_has_a_line() {
    let err = load("[server\nthreads = 2\n").expect_err("syntax");
    assert_eq!(err.problems[0].line, Some(1), "{err}");
}

#[test]
fn all_problems_are_reported_not_just_the_first() {
    let text = r#"
[clusters.a]
addresses = ["nope", "127.0.0.1:0"]

[[routes]]
id = "x"
path_prefix = "api"
upstream = "b"

[[routes]]
id = "x"
path_prefix = "/y"
strip_prefix = "/z"
upstream = "a"
"#;
    let err = load(text).expect_err("several problems");
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    for expected in [
        "clusters.a.addresses[0]",
        "clusters.a.addresses[1]",
        "routes[0].upstream",
        "routes[0].path_prefix",
        "routes[1].strip_prefix",
        "routes[1].id",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
}

#[test]
fn plugin_problems_are_located_under_the_route() {
    let text = format!("{GOOD}\n[routes.plugins.jwt]\nmode = \"required\"\n");
    let err = load(&text).expect_err("jwt without provider");
    assert_eq!(err.problems[0].key, "routes[0].plugins.jwt", "{err}");
    assert_eq!(err.problems[0].line, Some(11), "{err}");
}

#[test]
fn relative_paths_resolve_against_the_config_directory() {
    let text = format!("[tls.default]\ncert = \"certs/tls.crt\"\nkey = \"/abs/tls.key\"\n{GOOD}");
    let loaded = load(&text).expect("valid");
    let default = loaded.config.tls.default.expect("default cert");
    assert_eq!(default.cert, Path::new("/etc/edge/certs/tls.crt"));
    assert_eq!(default.key, Path::new("/abs/tls.key"));
}

#[test]
fn listener_port_clash_is_reported() {
    let text = format!("[admin]\naddress = \"127.0.0.1:8443\"\n{GOOD}");
    let err = load(&text).expect_err("clash");
    assert_eq!(err.problems[0].key, "admin.address", "{err}");
}

#[test]
fn an_admin_listener_off_loopback_needs_a_readable_long_token() {
    let text = format!("[admin]\naddress = \"0.0.0.0:9000\"\n{GOOD}");
    let err = load(&text).expect_err("no token");
    assert_eq!(err.problems[0].key, "admin.token_file", "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");

    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "too-short").expect("write");
    let text = format!(
        "[admin]\naddress = \"0.0.0.0:9000\"\ntoken_file = {:?}\nallowed_hosts = [\"a b\"]\n{GOOD}",
        token.display().to_string()
    );
    let err = load(&text).expect_err("short token, bad host");
    let keys: Vec<&str> = err.problems.iter().map(|p| p.key.as_str()).collect();
    assert!(keys.contains(&"admin.token_file"), "{err}");
    assert!(keys.contains(&"admin.allowed_hosts[0]"), "{err}");
    assert!(err.to_string().contains("at least 32"), "{err}");

    std::fs::write(&token, "0123456789abcdef0123456789abcdef").expect("write");
    let text = format!(
        "[admin]\naddress = \"0.0.0.0:9000\"\ntoken_file = {:?}\n{GOOD}",
        token.display().to_string()
    );
    load(&text).expect("a token makes a non-loopback admin valid");
}

#[test]
fn a_shared_budget_must_be_defined_alike_on_every_route() {
    let routes = |second: &str| {
        format!(
            r#"[clusters.a]
addresses = ["127.0.0.1:1"]

[[routes]]
id = "login-http"
path_prefix = "/login"
upstream = "a"
plugins.rate_limits = [{{ key = "ip", requests = 10, per = "1m", budget = "login" }}]

[[routes]]
id = "login-grpc"
path_prefix = "/auth.AuthService/Login"
upstream = "a"
plugins.rate_limits = [{second}]
"#
        )
    };
    load(&routes(
        r#"{ key = "ip", requests = 10, per = "1m", budget = "login" }"#,
    ))
    .expect("the same quota twice");
    let err = load(&routes(
        r#"{ key = "ip", requests = 20, per = "1m", budget = "login" }"#,
    ))
    .expect_err("two quotas under one name");
    assert_eq!(
        err.problems[0].key, "routes[1].plugins.rate_limits[0].budget",
        "{err}"
    );
    let err = load(&routes(
        r#"{ key = "ip", requests = 10, per = "1m", budget = "lo gin" }"#,
    ))
    .expect_err("bad name");
    assert!(err.to_string().contains("budget"), "{err}");
}

#[test]
fn a_content_security_policy_needs_the_browser_preset_and_a_valid_value() {
    let route = |extra: &str| {
        format!(
            "[clusters.a]\naddresses = [\"127.0.0.1:1\"]\n\n[[routes]]\nid = \"app\"\nupstream = \"a\"\n{extra}\n"
        )
    };
    load(&route(
        "security_headers = \"browser\"\ncontent_security_policy = \"default-src 'self'\"",
    ))
    .expect("browser with a CSP");
    let err =
        load(&route("content_security_policy = \"default-src 'self'\"")).expect_err("api preset");
    assert_eq!(
        err.problems[0].key, "routes[0].content_security_policy",
        "{err}"
    );
    let err = load(&route(
        "security_headers = \"browser\"\ncontent_security_policy = \"a\\nb\"",
    ))
    .expect_err("newline");
    assert!(
        err.to_string().contains("not a valid header value"),
        "{err}"
    );
    let err = load(&route("security_headers = \"kiosk\"")).expect_err("unknown preset");
    assert_eq!(err.problems[0].key, "routes[0].security_headers", "{err}");
}

#[test]
fn host_patterns() {
    for ok in [
        "example.com",
        "*.example.com",
        "*",
        "127.0.0.1",
        "localhost",
        "a-b.c",
    ] {
        assert!(is_valid_host_pattern(ok), "{ok}");
    }
    for bad in [
        "",
        "exa mple.com",
        "*.*.com",
        "-a.com",
        "a..com",
        "*.127.0.0.1",
    ] {
        assert!(!is_valid_host_pattern(bad), "{bad}");
    }
}

#[test]
fn edit_distance_suggests_only_close_names() {
    assert_eq!(
        closest("recrods", ["records", "auth"].into_iter()),
        Some("records")
    );
    assert_eq!(closest("zzz", ["records", "auth"].into_iter()), None);
}

#[test]
fn cache_problems_name_their_keys() {
    let route = |cache: &str| format!("{GOOD}cache = {cache}\n");
    for (text, key) in [
        (route("{ ttl = \"0s\" }"), "routes[0].cache.ttl"),
        (route("{ per_user = true }"), "routes[0].cache.per_user"),
        (
            format!(
                "{}\n[cache]\nmax_bytes = 1000\n",
                route("{ max_object_bytes = 5000 }")
            ),
            "routes[0].cache.max_object_bytes",
        ),
    ] {
        let err = load(&text).expect_err(key);
        assert_eq!(err.problems[0].key, key, "{err}");
        assert_eq!(err.problems[0].line, Some(10), "{err}");
    }
    let loaded = load(&route("{}")).expect("defaults");
    let cache = loaded.config.routes[0].cache.as_ref().expect("cache");
    assert_eq!(cache.ttl, std::time::Duration::from_secs(10));
    assert_eq!(loaded.config.cache.max_bytes, 64 * 1024 * 1024);
}

#[test]
fn a_read_buffer_out_of_range_names_its_key_and_the_default_is_small() {
    let loaded = load(GOOD).expect("valid");
    assert_eq!(loaded.config.listeners.https.read_buffer_bytes, 4096);
    for bad in [0, 100, 2 * 1024 * 1024] {
        let text = format!("[listeners.https]\nread_buffer_bytes = {bad}\n{GOOD}");
        let err = load(&text).expect_err("out of range");
        assert_eq!(
            err.problems[0].key, "listeners.https.read_buffer_bytes",
            "{err}"
        );
        assert!(err.to_string().contains(":2:"), "names the line: {err}");
    }
}

#[test]
fn a_route_taking_early_data_needs_the_listener_to_accept_0rtt() {
    let route = format!("{GOOD}early_data = true\n");
    let err = load(&route).expect_err("0-RTT is off by default");
    let message = err.to_string();
    assert!(
        message.starts_with("edge.toml:10: routes[0].early_data: needs http3.enable_0rtt = true"),
        "{message}"
    );

    let off_listener =
        format!("[listeners.https]\nhttp3 = false\n[http3]\nenable_0rtt = true\n{route}");
    let err = load(&off_listener).expect_err("no HTTP/3 listener");
    assert_eq!(err.problems[0].key, "routes[0].early_data", "{err}");

    let on = format!("[http3]\nenable_0rtt = true\n{route}");
    let loaded = load(&on).expect("0-RTT on, route opted in");
    assert!(loaded.config.routes[0].early_data);
    assert!(!load(GOOD).expect("valid").config.routes[0].early_data);

    let empty_record =
        format!("[http3]\nenable_0rtt = true\nearly_data_replay_entries = 0\n{GOOD}");
    let err = load(&empty_record).expect_err("an empty replay record");
    assert_eq!(
        err.problems[0].key, "http3.early_data_replay_entries",
        "{err}"
    );
    assert_eq!(err.problems[0].line, Some(3), "{err}");
}
