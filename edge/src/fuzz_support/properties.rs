//! The fuzz bodies as bounded property tests on stable, with generators that reach deep:
//! valid HTTP/3 field sections with one defect each, the embedded config mutated line by
//! line, configs with known bad values that must be reported at their key and line, route
//! tables against requests, and health replies with overflowing lengths.
//! `PROPTEST_CASES=N` runs N cases per property instead of the defaults below.

use proptest::prelude::*;
use quiche::h3::Header;
use testkit::proptest_config as config;

use super::*;
use crate::config::{RouteKind, EMBEDDED_DEFAULT};

fn token() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,12}"
}

/// A field value: visible ASCII, spaces and tabs inside, obs-text bytes.
fn field_value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[!-~]([ -~\t]{0,20}[!-~])?".prop_map(String::into_bytes),
        prop::collection::vec(prop_oneof![0x21u8..0x7f, 0x80u8..=0xff], 1..12),
    ]
}

testkit::listed_enum!(
    /// What makes a request field section malformed.
    H3Defect {
        NoMethod,
        NoScheme,
        NoPath,
        RelativePath,
        TwoPaths,
        PseudoAfterRegular,
        UnknownPseudo,
        UpperCaseName,
        ConnectionHeader,
        TeNotTrailers,
        NoAuthority,
        EmptyAuthority,
        HostDiffers,
        TwoHosts,
        ControlByteInValue,
        SpaceInName,
        BadMethod,
    }
);

fn h3_defect() -> impl Strategy<Value = H3Defect> {
    prop::sample::select(H3Defect::ALL)
}

#[derive(Debug, Clone)]
struct H3Request {
    method: String,
    authority: String,
    path: String,
    host_too: bool,
    te_trailers: bool,
    fields: Vec<(String, Vec<u8>)>,
}

fn h3_request() -> impl Strategy<Value = H3Request> {
    (
        prop::sample::select(vec![
            "GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "PURGE",
        ]),
        "[a-z0-9.-]{1,20}(:[0-9]{1,5})?",
        "/[a-zA-Z0-9/._~%!$&'()*+,;=:@-]{0,30}(\\?[a-zA-Z0-9=&%/]{0,20})?(#[a-z]{0,5})?",
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((token(), field_value()), 0..8),
    )
        .prop_map(
            |(method, authority, path, host_too, te_trailers, fields)| H3Request {
                method: method.to_string(),
                authority,
                path,
                host_too,
                te_trailers,
                fields: fields
                    .into_iter()
                    .filter(|(name, _)| {
                        let name = name.as_bytes();
                        !CONNECTION_SPECIFIC.contains(&name) && name != b"te" && name != b"host"
                    })
                    .collect(),
            },
        )
}

fn render(request: &H3Request, defects: &[H3Defect]) -> Vec<Header> {
    use H3Defect::*;
    let has = |d: fn(&H3Defect) -> bool| defects.iter().any(d);
    let mut pseudo: Vec<(String, Vec<u8>)> = Vec::new();
    if !has(|d| matches!(d, NoMethod)) {
        let method = if has(|d| matches!(d, BadMethod)) {
            "G(E)T"
        } else {
            &request.method
        };
        pseudo.push((":method".into(), method.as_bytes().to_vec()));
    }
    if !has(|d| matches!(d, NoScheme)) {
        pseudo.push((":scheme".into(), b"https".to_vec()));
    }
    let authority = if has(|d| matches!(d, EmptyAuthority)) {
        ""
    } else {
        &request.authority
    };
    if !has(|d| matches!(d, NoAuthority)) {
        pseudo.push((":authority".into(), authority.as_bytes().to_vec()));
    }
    if !has(|d| matches!(d, NoPath)) {
        let path = if has(|d| matches!(d, RelativePath)) {
            request.path.trim_start_matches('/').to_string() + "x"
        } else {
            request.path.clone()
        };
        pseudo.push((":path".into(), path.into_bytes()));
    }
    if has(|d| matches!(d, TwoPaths)) {
        // Twice: with NoPath too, one would be a valid request.
        pseudo.push((":path".into(), b"/admin".to_vec()));
        pseudo.push((":path".into(), b"/admin".to_vec()));
    }
    if has(|d| matches!(d, UnknownPseudo)) {
        pseudo.push((":protocol".into(), b"websocket".to_vec()));
    }
    let mut regular = request.fields.clone();
    if request.host_too && !has(|d| matches!(d, NoAuthority | EmptyAuthority)) {
        regular.push(("host".into(), authority.as_bytes().to_vec()));
    }
    if request.te_trailers {
        regular.push(("te".into(), b"trailers".to_vec()));
    }
    for defect in defects {
        match defect {
            UpperCaseName => regular.push(("X-Upper".into(), b"1".to_vec())),
            ConnectionHeader => regular.push(("connection".into(), b"keep-alive".to_vec())),
            TeNotTrailers => regular.push(("te".into(), b"gzip".to_vec())),
            // Without an authority a lone Host is fine: NoAuthority is the defect then.
            HostDiffers if !has(|d| matches!(d, NoAuthority)) => regular.push((
                "host".into(),
                format!("other.{}", request.authority).into_bytes(),
            )),
            TwoHosts => {
                regular.push(("host".into(), request.authority.as_bytes().to_vec()));
                regular.push(("host".into(), request.authority.as_bytes().to_vec()));
            }
            ControlByteInValue => regular.push(("x-ctl".into(), b"a\x00b".to_vec())),
            SpaceInName => regular.push(("x bad".into(), b"1".to_vec())),
            _ => {}
        }
    }
    let mut fields: Vec<Header> = pseudo
        .iter()
        .map(|(n, v)| Header::new(n.as_bytes(), v))
        .collect();
    let regular: Vec<Header> = regular
        .iter()
        .map(|(n, v)| Header::new(n.as_bytes(), v))
        .collect();
    if has(|d| matches!(d, PseudoAfterRegular)) {
        // The first regular field goes before the last pseudo-header.
        let last = fields.pop();
        fields.push(Header::new(b"x-early", b"1"));
        fields.extend(last);
    }
    fields.extend(regular);
    fields
}

proptest! {
    #![proptest_config(config(128))]

    /// A well-formed field section converts and carries everything it said.
    #[test]
    fn valid_h3_requests_convert_and_round_trip(request in h3_request()) {
        let fields = render(&request, &[]);
        let converted = check_h3_request(&fields);
        prop_assert!(converted.is_ok(), "{:?}: {:?}", fields, converted.err());
    }

    /// One or more defects: refused, and the reason is an error, not a panic.
    #[test]
    fn malformed_h3_requests_are_refused(
        request in h3_request(),
        defects in prop::collection::vec(h3_defect(), 1..3),
    ) {
        let fields = render(&request, &defects);
        prop_assert!(check_h3_request(&fields).is_err(), "{:?} accepted with {:?}", fields, defects);
    }

    /// Random names and bytes, pseudo or not: whatever is accepted obeys the rules.
    #[test]
    fn random_h3_fields_never_panic(
        fields in prop::collection::vec(
            (
                prop_oneof![
                    prop::sample::select(vec![":method", ":path", ":scheme", ":authority", ":x", "host", "te", "connection", "Host", ""]).prop_map(String::from),
                    "[ -~]{0,8}",
                ],
                prop::collection::vec(any::<u8>(), 0..16),
            ),
            0..10,
        ),
    ) {
        let fields: Vec<Header> = fields.iter().map(|(n, v)| Header::new(n.as_bytes(), v)).collect();
        let _ = check_h3_request(&fields);
    }

    /// Responses keep every field but the connection-specific ones, in order.
    #[test]
    fn h3_responses_carry_their_fields(
        status in 100u16..600,
        fields in prop::collection::vec(
            (prop_oneof![token(), prop::sample::select(vec!["connection".to_string(), "transfer-encoding".to_string(), "te".to_string(), "upgrade".to_string()])], field_value()),
            0..8,
        ),
    ) {
        let mut response = ResponseHeader::build(status, None).expect("status");
        for (name, value) in &fields {
            response.append_header(name.clone(), value.as_slice()).expect("valid field");
        }
        check_h3_response(&response);
    }

    #[test]
    fn h3_request_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_h3_request(&data);
    }
}

/// One edit of a config text.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Duplicate(usize),
    Swap(usize, usize),
    ReplaceValue(usize, String),
    Insert(usize, String),
    Truncate(usize),
}

fn toml_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "0",
            "-1",
            "1",
            "65536",
            "18446744073709551616",
            "1.5",
            "-0.0",
            "nan",
            "inf",
            "true",
            "\"\"",
            "\"x\"",
            "\"1m\"",
            "\"0s\"",
            "\"-1s\"",
            "\"99999999999999999999h\"",
            "\"127.0.0.1:0\"",
            "\"[::1]:8443\"",
            "\"*\"",
            "\"*.example.com\"",
            "\"/\"",
            "[]",
            "[\"\"]",
            "[1, \"a\"]",
            "{}",
            "{ kind = \"grpc\" }",
            "\"h2\"",
            "\"grpc\"",
            "\"http://u:p@h:1\"",
            "1979-05-27T07:32:00Z",
            "\"\\u0000\"",
            "'''\nx\n'''",
        ])
        .prop_map(String::from),
        "\"[ -~&&[^\"\\\\]]{0,20}\"",
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    let line = 0..200usize;
    prop_oneof![
        1 => line.clone().prop_map(Edit::Delete),
        1 => line.clone().prop_map(Edit::Duplicate),
        1 => (line.clone(), line.clone()).prop_map(|(a, b)| Edit::Swap(a, b)),
        3 => (line.clone(), toml_value()).prop_map(|(l, v)| Edit::ReplaceValue(l, v)),
        2 => (
            line.clone(),
            prop_oneof![
                (prop::sample::select(vec!["threads", "address", "bogus", "path_prefix", "upstream", "hosts", "plugins.jwt", "kind", "max_request_headers"]), toml_value())
                    .prop_map(|(k, v)| format!("{k} = {v}")),
                prop::sample::select(vec!["[server]", "[limits]", "[[routes]]", "[clusters.x]", "[plugins.redis]", "[listeners.https]", "[tls]", "[", "]]", "#", "x", "[routes.plugins]"])
                    .prop_map(String::from),
                "[ -~]{0,30}",
            ],
        )
            .prop_map(|(l, text)| Edit::Insert(l, text)),
        1 => (0..5000usize).prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for edit in edits {
        let n = lines.len().max(1);
        match edit {
            Edit::Delete(i) if !lines.is_empty() => drop(lines.remove(i % n)),
            Edit::Duplicate(i) if !lines.is_empty() => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::Swap(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, value) if !lines.is_empty() => {
                let line = &mut lines[i % n];
                if let Some((key, _)) = line.split_once(" = ") {
                    *line = format!("{key} = {value}");
                }
            }
            Edit::Insert(i, text) => lines.insert(i % (lines.len() + 1), text.clone()),
            Edit::Truncate(at) => {
                let joined = lines.join("\n");
                let mut cut = (*at).min(joined.len());
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = joined[..cut].lines().map(String::from).collect();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

/// A setting that must be refused, where it is written, and the key the error must name.
fn bad_setting() -> impl Strategy<Value = (&'static str, &'static str, &'static str)> {
    prop::sample::select(vec![
        ("server", "threads = 0", "server.threads"),
        (
            "server",
            "upstream_keepalive_pool_size = 0",
            "server.upstream_keepalive_pool_size",
        ),
        (
            "limits",
            "max_request_headers = 0",
            "limits.max_request_headers",
        ),
        (
            "limits",
            "max_request_header_bytes = 0",
            "limits.max_request_header_bytes",
        ),
        (
            "limits",
            "keepalive_requests = 0",
            "limits.keepalive_requests",
        ),
        ("http3", "max_udp_payload = 1199", "http3.max_udp_payload"),
        ("tracing", "sample_ratio = 1.5", "tracing.sample_ratio"),
        (
            "tracing",
            "otlp_endpoint = \"grpc://collector:4317\"",
            "tracing.otlp_endpoint",
        ),
        (
            "listeners.https",
            "health_path = \"healthz\"",
            "listeners.https.health_path",
        ),
        (
            "tls",
            "min_version = \"1.3\"\nmax_version = \"1.2\"",
            "tls.min_version",
        ),
    ])
}

/// A setting that is fine.
fn good_setting() -> impl Strategy<Value = (&'static str, String)> {
    prop_oneof![
        (1..16u32).prop_map(|n| ("server", format!("threads = {n}"))),
        (1..500u32).prop_map(|n| ("limits", format!("max_request_headers = {n}"))),
        (1200..65527u32).prop_map(|n| ("http3", format!("max_udp_payload = {n}"))),
        (0.0..=1.0f64).prop_map(|r| ("tracing", format!("sample_ratio = {r:?}"))),
        Just(("listeners.https", "health_path = \"/up\"".to_string())),
        Just(("admin", "address = \"127.0.0.1:0\"".to_string())),
    ]
}

/// The configs the project ships (dev, k8s, benchmarks): the mutation property's seeds.
const SHIPPED: [&str; 5] = [
    EMBEDDED_DEFAULT,
    include_str!("../../config/dev.toml"),
    include_str!("../../../k8s/base/edge/edge.toml"),
    include_str!("../../../perf/peers/edge.toml"),
    include_str!("../../../perf/peers/edge-chain.toml"),
];

/// A shipped config with perf/run.sh's `@NAME@` placeholders filled in as it would, and
/// its admin token file (read while loading) one that exists here.
fn rendered(shipped: &str) -> String {
    static TOKEN: std::sync::OnceLock<tempfile::NamedTempFile> = std::sync::OnceLock::new();
    let token = TOKEN.get_or_init(|| {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(file.path(), "t".repeat(40)).expect("write the token");
        file
    });
    let token_line = format!("token_file = {:?}", token.path().display().to_string());
    let shipped: String = shipped
        .lines()
        .map(|line| {
            if line.starts_with("token_file = ") {
                &token_line
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    [
        ("@HOST@", "127.0.0.1"),
        ("@PORT@", "8443"),
        ("@HTTP_PORT@", "8080"),
        ("@ADMIN_PORT@", "9000"),
        ("@BACKEND@", "127.0.0.1:9100"),
        ("@RUN@", "/perf/run"),
        ("@CERT@", "/perf/tls.crt"),
        ("@KEY@", "/perf/tls.key"),
        ("@JWT_PUBLIC@", "/perf/jwt.pub"),
    ]
    .iter()
    .fold(shipped.to_string(), |text, (name, value)| {
        text.replace(name, value)
    })
}

const BASE: &str = "[clusters.a]\naddresses = [\"127.0.0.1:4002\"]\n\n[[routes]]\nid = \"r\"\npath_prefix = \"/api\"\nupstream = \"a\"\n";

proptest! {
    #![proptest_config(config(64))]

    /// The embedded default with a few line edits: an error with a location, or a config
    /// that prints and loads again unchanged.
    #[test]
    fn mutated_configs_load_or_say_where(
        base in prop::sample::select(SHIPPED.to_vec()),
        edits in prop::collection::vec(edit(), 1..5),
    ) {
        let _ = check_config(&apply(&rendered(base), &edits));
    }

    /// Known bad values among good ones are each reported at their key and on their line;
    /// without a bad value the config loads.
    #[test]
    fn bad_settings_are_reported_at_their_key_and_line(
        bad in prop::collection::vec(bad_setting(), 0..3),
        good in prop::collection::vec(good_setting(), 0..4),
    ) {
        let mut tables: std::collections::BTreeMap<&str, Vec<String>> = Default::default();
        for (table, line) in &good {
            tables.entry(table).or_default().push(line.clone());
        }
        let mut expected = Vec::new();
        for (table, line, key) in &bad {
            let lines = tables.entry(table).or_default();
            // The last word for a key wins in TOML only once: drop good lines for it.
            let name = line.split(" = ").next().expect("key");
            lines.retain(|l| !l.starts_with(&format!("{name} =")));
            if !lines.iter().any(|l| l == line) {
                lines.push(line.to_string());
                expected.push((*key, name));
            }
        }
        let mut text = BASE.to_string();
        for (table, lines) in &tables {
            let mut seen = std::collections::BTreeSet::new();
            text.push_str(&format!("\n[{table}]\n"));
            for line in lines {
                if seen.insert(line.split(" = ").next().unwrap_or("").to_string()) {
                    text.push_str(line);
                    text.push('\n');
                }
            }
        }
        match check_config(&text) {
            Ok(_) => prop_assert!(expected.is_empty(), "accepted with {:?}:\n{}", expected, text),
            Err(err) => {
                prop_assert!(!expected.is_empty(), "refused:\n{}\n{}", err, text);
                for (key, name) in &expected {
                    let problem = err.problems.iter().find(|p| p.key == *key);
                    prop_assert!(problem.is_some(), "{} not reported:\n{}", key, err);
                    let written = text.lines().position(|l| l.starts_with(&format!("{name} ="))).map(|i| i + 1);
                    prop_assert_eq!(problem.and_then(|p| p.line), written, "{}", err);
                }
            }
        }
    }

    #[test]
    fn config_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_config(&data);
    }
}

fn host_text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "a.example",
            "A.Example",
            "x.a.example",
            "y.x.a.example",
            "example",
            "b.example",
            "a.example.",
            "::1",
            "[::1]",
            "[::1]:8443",
            "127.0.0.1",
            "127.0.0.1:8443",
            "a.example:8443",
            "a.example:",
            "a.example:x",
            "",
            "*",
            "xn--bcher-kva.example",
        ])
        .prop_map(String::from),
        "[a-zA-Z0-9.:\\[\\]-]{0,16}",
    ]
}

fn route_spec() -> impl Strategy<Value = RouteSpec> {
    (
        prop::collection::vec(
            prop::sample::select(vec![
                "*",
                "a.example",
                "*.example",
                "*.a.example",
                "b.example",
                "A.EXAMPLE",
                "::1",
                "127.0.0.1",
                "*.",
            ]),
            1..3,
        ),
        prop::sample::select(vec![
            "/",
            "/api",
            "/api/",
            "/api/records",
            "/api/recordsX",
            "/api/records/",
            "/auth.AuthService/",
            "/auth.AuthService/Login",
            "/x",
            "/api/auth/.well-known/jwks.json",
        ]),
        prop::sample::select(vec![RouteKind::Any, RouteKind::Grpc, RouteKind::Http]),
    )
        .prop_map(|(hosts, prefix, kind)| RouteSpec {
            hosts: hosts.into_iter().map(String::from).collect(),
            path_prefix: prefix.to_string(),
            kind,
        })
}

fn request_path() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "",
            "/",
            "/api",
            "/api/records",
            "/api/recordsX",
            "/auth.AuthService/Login",
            "/x",
            "/api/auth/.well-known/jwks.json",
        ]),
        prop::sample::select(vec!["", "/", "/1", "X", "/a/b", "s"]),
    )
        .prop_map(|(a, b)| {
            let path = format!("{a}{b}");
            if path.starts_with('/') {
                path
            } else {
                format!("/{path}")
            }
        })
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn the_route_found_matches_and_ranks_highest(
        routes in prop::collection::vec(route_spec(), 0..7),
        host in prop::option::of(host_text()),
        path in request_path(),
        grpc in any::<bool>(),
    ) {
        check_route_lookup(&routes, host.as_deref(), &path, grpc);
    }

    #[test]
    fn route_bytes_never_panic(data in "[ -~\n|,]{0,120}") {
        fuzz_route_lookup(data.as_bytes());
    }
}

/// One protobuf field of a reply.
#[derive(Debug, Clone)]
enum Field {
    Varint(u64, u64),
    Fixed64(u64),
    Fixed32(u64),
    Bytes(u64, Vec<u8>),
    /// A length-delimited field claiming `length` bytes (maybe far more than follow).
    Lying(u64, u64),
}

fn put_varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn encode(fields: &[Field]) -> (Vec<u8>, Option<u64>) {
    let mut out = Vec::new();
    let mut status = 0;
    for field in fields {
        match field {
            Field::Varint(number, value) => {
                put_varint(number << 3, &mut out);
                put_varint(*value, &mut out);
                if *number == 1 {
                    status = *value;
                }
            }
            Field::Fixed64(number) => {
                put_varint(number << 3 | 1, &mut out);
                out.extend([7; 8]);
            }
            Field::Fixed32(number) => {
                put_varint(number << 3 | 5, &mut out);
                out.extend([5; 4]);
            }
            Field::Bytes(number, bytes) => {
                put_varint(number << 3 | 2, &mut out);
                put_varint(bytes.len() as u64, &mut out);
                out.extend(bytes);
            }
            Field::Lying(number, length) => {
                // Last field of the message: fewer bytes follow than it claims.
                put_varint(number << 3 | 2, &mut out);
                put_varint(*length, &mut out);
                out.push(0);
                return (out, None);
            }
        }
    }
    (out, Some(status))
}

fn field() -> impl Strategy<Value = Field> {
    // Field 1 is the status, a varint; the others are what a newer server may add.
    let other = 2..40u64;
    prop_oneof![
        3 => (Just(1u64), prop_oneof![0..4u64, any::<u64>()]).prop_map(|(n, v)| Field::Varint(n, v)),
        1 => (other.clone(), any::<u64>()).prop_map(|(n, v)| Field::Varint(n, v)),
        1 => other.clone().prop_map(Field::Fixed64),
        1 => other.clone().prop_map(Field::Fixed32),
        1 => (other.clone(), prop::collection::vec(any::<u8>(), 0..12)).prop_map(|(n, b)| Field::Bytes(n, b)),
        1 => (other, prop_oneof![Just(u64::MAX), Just(u64::MAX - 1), Just(1 << 63), 2..1000u64]).prop_map(|(n, l)| Field::Lying(n, l)),
    ]
}

proptest! {
    #![proptest_config(config(256))]

    /// The last status field wins, unknown fields of any wire type are skipped, and a
    /// length that points past the message (up to u64::MAX) is an error, not a panic.
    #[test]
    fn health_replies_decode_like_protobuf(
        fields in prop::collection::vec(field(), 0..6),
        trailing in prop::collection::vec(any::<u8>(), 0..4),
        declared_extra in prop_oneof![Just(0u32), 1..10u32, Just(u32::MAX)],
    ) {
        let (message, status) = encode(&fields);
        let mut framed = vec![0];
        let declared = (message.len() as u32).saturating_add(declared_extra);
        framed.extend(declared.to_be_bytes());
        framed.extend(&message);
        framed.extend(&trailing);
        let expected = if declared_extra as usize > trailing.len() { None } else { status };
        // Bytes after the frame are not part of the message; when the declared length
        // takes some of them in, they are read as fields and the outcome is open.
        if declared_extra == 0 || expected.is_none() {
            prop_assert_eq!(check_health_reply(&framed), expected);
        } else {
            let _ = check_health_reply(&framed);
        }
    }

    #[test]
    fn health_reply_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..64)) {
        fuzz_health_reply(&data);
    }
}

#[test]
fn the_byte_fuzzers_accept_their_seed_inputs() {
    fuzz_h3_request(b":method GET\n:scheme https\n:authority a.example\n:path /\naccept */*");
    fuzz_config(EMBEDDED_DEFAULT.as_bytes());
    fuzz_route_lookup(b"*|/api|a\na.example|/|g\n--\na.example|/api/x|h");
    fuzz_health_reply(&[0, 0, 0, 0, 2, 0x08, 0x01]);
    for (i, shipped) in SHIPPED.iter().enumerate() {
        if let Err(err) = check_config(&rendered(shipped)) {
            panic!("shipped config {i} does not load:\n{err}");
        }
    }
    assert_eq!(check_health_reply(&[0, 0, 0, 0, 2, 0x08, 0x01]), Some(1));
}
