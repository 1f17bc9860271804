//! The fuzz bodies as bounded property tests on stable: structured generators that reach
//! past the first byte check (signed tokens with one defect each, JWKS documents mixing
//! real and broken keys, forwarding chains with ports, IPv6, spaces and garbage).
//! `PROPTEST_CASES=N` runs N cases per property instead of the defaults below.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use jsonwebtoken::DecodingKey;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use testkit::proptest_config as config;

use super::*;
use crate::config::{
    CorsPolicy, JwtAlgorithm, JwtMode, JwtRoutePolicy, RateLimitKey, RateLimitRule, RateLimitScope,
    RedisConfig,
};
use crate::jwt::JwtVerifier;
use crate::test_support::TestKey;

/// One key per algorithm and a verifier holding their public halves.
fn keys() -> &'static ([TestKey; 3], JwtVerifier) {
    static KEYS: OnceLock<([TestKey; 3], JwtVerifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = [
            TestKey::ed25519("p-ed"),
            TestKey::es256("p-ec"),
            TestKey::rs256("p-rsa"),
        ];
        let decoding = keys
            .iter()
            .map(|key| {
                let pem = key.public_pem.as_bytes();
                let decoding = match key.algorithm {
                    JwtAlgorithm::EdDSA => DecodingKey::from_ed_pem(pem),
                    JwtAlgorithm::ES256 => DecodingKey::from_ec_pem(pem),
                    JwtAlgorithm::RS256 => DecodingKey::from_rsa_pem(pem),
                }
                .expect("public key");
                (key.kid.clone(), key.algorithm, decoding)
            })
            .collect();
        let verifier = verifier(decoding);
        (keys, verifier)
    })
}

fn alg_name(alg: JwtAlgorithm) -> &'static str {
    match alg {
        JwtAlgorithm::EdDSA => "EdDSA",
        JwtAlgorithm::ES256 => "ES256",
        JwtAlgorithm::RS256 => "RS256",
    }
}

fn now() -> u64 {
    crate::clock::unix_now()
}

testkit::listed_enum!(
    /// What makes a signed token unacceptable; each must be refused on its own.
    Defect {
        AlgNone,
        AlgHs256,
        AlgOfAnotherKey,
        UnknownKid,
        KidMissing,
        TypNotJwt,
        Crit,
        SubMissing,
        SubEmpty,
        SubNotAString,
        SubWithControlByte,
        JtiMissing,
        EmailNotAString,
        Expired,
        ExpMissing,
        NotYetValid,
        WrongIssuer,
        WrongAudience,
        SignatureFlipped,
        SignedByAnotherKey,
        ExtraSegment,
    }
);

fn defect() -> impl Strategy<Value = Defect> {
    prop::sample::select(Defect::ALL)
}

/// Changes that keep a token acceptable.
#[derive(Debug, Clone)]
struct Harmless {
    typ: Option<&'static str>,
    audience_array: bool,
    email: Option<Option<String>>,
    extra_header: Option<(String, Value)>,
    extra_claim: Option<(String, Value)>,
    float_exp: bool,
    nbf_in_the_past: bool,
}

fn harmless() -> impl Strategy<Value = Harmless> {
    (
        prop::option::of(prop::sample::select(vec!["JWT", "jwt", "at+jwt", "AT+JWT"])),
        any::<bool>(),
        prop::option::of(prop::option::of("[a-z0-9.+-]{1,12}@[a-z]{1,8}\\.example")),
        prop::option::of(("x-[a-z]{1,6}", json_leaf())),
        prop::option::of(("[a-z]{1,8}", json_leaf())),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(typ, audience_array, email, extra_header, extra_claim, float_exp, nbf)| Harmless {
                typ,
                audience_array,
                email,
                extra_header,
                extra_claim,
                float_exp,
                nbf_in_the_past: nbf,
            },
        )
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::from)),
        ".{0,12}".prop_map(Value::from),
    ]
}

/// A token signed by key `key` with every harmless change and the given defects applied;
/// also the claims it carries.
fn token(
    key: usize,
    harmless: &Harmless,
    defects: &[Defect],
    sub: &str,
) -> (String, Map<String, Value>) {
    let (keys, _) = keys();
    let signer = &keys[key];
    let other = &keys[(key + 1) % keys.len()];
    let mut header = Map::new();
    header.insert("alg".into(), json!(alg_name(signer.algorithm)));
    header.insert("kid".into(), json!(signer.kid));
    if let Some(typ) = harmless.typ {
        header.insert("typ".into(), json!(typ));
    }
    if let Some((name, value)) = &harmless.extra_header {
        header.insert(name.clone(), value.clone());
    }
    let now = now();
    let mut claims = Map::new();
    claims.insert("sub".into(), json!(sub));
    claims.insert("jti".into(), json!(uuid::Uuid::new_v4().to_string()));
    claims.insert("iss".into(), json!(ISSUER));
    claims.insert(
        "aud".into(),
        if harmless.audience_array {
            json!(["other", AUDIENCE])
        } else {
            json!(AUDIENCE)
        },
    );
    claims.insert(
        "exp".into(),
        if harmless.float_exp {
            json!(now as f64 + 900.5)
        } else {
            json!(now + 900)
        },
    );
    if harmless.nbf_in_the_past {
        claims.insert("nbf".into(), json!(now - 30));
    }
    match &harmless.email {
        Some(Some(email)) => {
            claims.insert("email".into(), json!(email));
        }
        Some(None) => {
            claims.insert("email".into(), Value::Null);
        }
        None => {}
    }
    if let Some((name, value)) = &harmless.extra_claim {
        if !["sub", "jti", "iss", "aud", "exp", "nbf", "email", "iat"].contains(&name.as_str()) {
            claims.insert(name.clone(), value.clone());
        }
    }
    let mut signer = signer;
    let mut flip = false;
    let mut extra_segment = false;
    for defect in defects {
        use Defect::*;
        match defect {
            AlgNone => drop(header.insert("alg".into(), json!("none"))),
            AlgHs256 => drop(header.insert("alg".into(), json!("HS256"))),
            AlgOfAnotherKey => drop(header.insert("alg".into(), json!(alg_name(other.algorithm)))),
            UnknownKid => drop(header.insert("kid".into(), json!("no-such-kid"))),
            KidMissing => drop(header.remove("kid")),
            TypNotJwt => drop(header.insert("typ".into(), json!("JOSE+JSON"))),
            Crit => drop(header.insert("crit".into(), json!(["exp"]))),
            SubMissing => drop(claims.remove("sub")),
            SubEmpty => drop(claims.insert("sub".into(), json!(""))),
            SubNotAString => drop(claims.insert("sub".into(), json!(42))),
            SubWithControlByte => drop(claims.insert("sub".into(), json!(format!("{sub}\n")))),
            JtiMissing => drop(claims.remove("jti")),
            EmailNotAString => drop(claims.insert("email".into(), json!(["a@b.example"]))),
            Expired => drop(claims.insert("exp".into(), json!(now - 120))),
            ExpMissing => drop(claims.remove("exp")),
            NotYetValid => drop(claims.insert("nbf".into(), json!(now + 120))),
            WrongIssuer => drop(claims.insert("iss".into(), json!("someone-else"))),
            WrongAudience => drop(claims.insert("aud".into(), json!(["other"]))),
            SignatureFlipped => flip = true,
            SignedByAnotherKey => signer = other,
            ExtraSegment => extra_segment = true,
        }
    }
    let header_json = serde_json::to_vec(&header).expect("json");
    let claims_json = serde_json::to_vec(&claims).expect("json");
    let mut token = signer.sign_raw(&header_json, &claims_json);
    if flip {
        // Change one base64url character of the signature to another.
        let last = token.pop().expect("signature");
        token.push(if last == 'A' { 'B' } else { 'A' });
    }
    if extra_segment {
        token.push_str(".e30");
    }
    (token, claims)
}

proptest! {
    #![proptest_config(config(48))]

    /// A correctly signed token with any harmless variation is accepted as its claims say.
    #[test]
    fn valid_tokens_verify_to_their_claims(
        key in 0..3usize,
        harmless in harmless(),
        sub in "[A-Za-z0-9@._~-]{1,24}",
    ) {
        let (token, claims) = token(key, &harmless, &[], &sub);
        let verified = check_token(&keys().1, &token).expect("a valid token verifies");
        prop_assert_eq!(&verified.identity.sub, &sub);
        prop_assert_eq!(Some(verified.identity.jti.as_str()), claims["jti"].as_str());
        prop_assert_eq!(verified.identity.email.as_deref(), claims.get("email").and_then(Value::as_str));
        prop_assert_eq!(verified.algorithm, keys().0[key].algorithm);
    }

    /// One or more defects: refused, never accepted, never a panic.
    #[test]
    fn tokens_with_a_defect_are_refused(
        key in 0..3usize,
        harmless in harmless(),
        defects in prop::collection::vec(defect(), 1..3),
        sub in "[A-Za-z0-9]{1,12}",
    ) {
        let (token, _) = token(key, &harmless, &defects, &sub);
        let result = check_token(&keys().1, &token);
        prop_assert!(result.is_err(), "{:?} accepted with {:?}", token, defects);
    }

    /// Random segments, random JSON headers: errors, not panics.
    #[test]
    fn random_segments_are_errors(
        header in prop::collection::btree_map("alg|kid|typ|crit|[a-z]{1,4}", json_leaf(), 0..5),
        payload in prop::collection::vec(any::<u8>(), 0..64),
        signature in "[A-Za-z0-9_=+/.-]{0,90}",
        base64_header in any::<bool>(),
    ) {
        let header = serde_json::to_vec(&header).expect("json");
        let first = if base64_header {
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &header)
        } else {
            String::from_utf8_lossy(&header).into_owned()
        };
        let token = format!(
            "{first}.{}.{signature}",
            base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &payload)
        );
        prop_assert!(check_token(&keys().1, &token).is_err());
    }

    /// `Authorization` values with odd schemes, spacing and bytes.
    #[test]
    fn authorization_values_parse_as_promised(
        scheme in prop::sample::select(vec!["Bearer ", "bearer ", "BEARER   ", "Bearer", "Bearer\t", "Basic ", "", "Bearerx "]),
        token in prop_oneof![
            "[ -~]{0,40}",
            prop::collection::vec(any::<u8>(), 0..40).prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            (0..3usize, "[A-Za-z0-9]{1,8}").prop_map(|(k, sub)| token(k, &Harmless {
                typ: None, audience_array: false, email: None, extra_header: None,
                extra_claim: None, float_exp: false, nbf_in_the_past: false,
            }, &[], &sub).0),
        ],
        trailing in " {0,3}",
        raw_tail in prop::collection::vec(any::<u8>(), 0..4),
    ) {
        let mut value = format!("{scheme}{token}{trailing}").into_bytes();
        value.extend_from_slice(&raw_tail);
        check_authorization(&keys().1, &value);
    }
}

/// A JWKS entry and what the parser must do with it.
#[derive(Debug, Clone)]
enum Entry {
    /// A real public key (maybe without `alg` or `use`): must be kept.
    Clean(usize, bool, bool),
    /// A real key made unusable: must be skipped.
    Broken(usize, &'static str),
    /// Random fields: anything but a panic.
    Noise(Map<String, Value>),
}

fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(k, a, u)| Entry::Clean(k, a, u)),
        (
            0..3usize,
            prop::sample::select(vec![
                "oct",
                "enc",
                "no-kid",
                "alg-mismatch",
                "short-rsa",
                "kid-number",
                "bad-base64"
            ])
        )
            .prop_map(|(k, how)| Entry::Broken(k, how)),
        prop::collection::btree_map(
            prop::sample::select(vec![
                "kty", "crv", "x", "y", "n", "e", "k", "kid", "alg", "use", "key_ops"
            ]),
            prop_oneof![
                json_leaf(),
                prop::sample::select(vec![
                    "OKP", "EC", "RSA", "oct", "Ed25519", "P-256", "sig", "EdDSA", "ES256",
                    "RS256", "AQAB"
                ])
                .prop_map(Value::from),
                "[A-Za-z0-9_-]{0,400}".prop_map(Value::from),
            ],
            0..8,
        )
        .prop_map(|m| {
            let mut map: Map<String, Value> =
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            // Noise never borrows a kid the oracle reasons about.
            if let Some(Value::String(kid)) = map.get_mut("kid") {
                kid.insert_str(0, "noise-");
            }
            Entry::Noise(map)
        }),
    ]
}

fn render(entry: &Entry, index: usize) -> Value {
    let (keys, _) = keys();
    match entry {
        Entry::Clean(k, keep_alg, keep_use) => {
            let mut jwk = keys[*k].jwk.clone();
            let object = jwk.as_object_mut().expect("object");
            object.insert("kid".into(), json!(format!("clean-{index}")));
            if !keep_alg {
                object.remove("alg");
            }
            if !keep_use {
                object.remove("use");
            }
            jwk
        }
        Entry::Broken(k, how) => {
            let mut jwk = keys[*k].jwk.clone();
            let object = jwk.as_object_mut().expect("object");
            object.insert("kid".into(), json!(format!("broken-{index}")));
            match *how {
                "oct" => {
                    object.clear();
                    object.insert("kty".into(), json!("oct"));
                    object.insert("k".into(), json!("c2VjcmV0"));
                    object.insert("kid".into(), json!(format!("broken-{index}")));
                }
                "enc" => drop(object.insert("use".into(), json!("enc"))),
                "no-kid" => drop(object.remove("kid")),
                "alg-mismatch" => {
                    let wrong = if keys[*k].algorithm == JwtAlgorithm::RS256 {
                        "ES256"
                    } else {
                        "RS256"
                    };
                    object.insert("alg".into(), json!(wrong));
                }
                "short-rsa" => {
                    object.clear();
                    object.insert("kty".into(), json!("RSA"));
                    // 100 leading zero bytes and a 200-byte modulus: 1600 bits.
                    let mut modulus = vec![0u8; 100];
                    modulus.extend([0xc5u8; 200]);
                    object.insert(
                        "n".into(),
                        json!(base64::Engine::encode(
                            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                            modulus
                        )),
                    );
                    object.insert("e".into(), json!("AQAB"));
                    object.insert("kid".into(), json!(format!("broken-{index}")));
                }
                "kid-number" => drop(object.insert("kid".into(), json!(index))),
                _ => {
                    for field in ["x", "y", "n"] {
                        if object.contains_key(field) {
                            object.insert(field.into(), json!("!!not base64!!"));
                        }
                    }
                }
            }
            jwk
        }
        Entry::Noise(map) => Value::Object(map.clone()),
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// Real keys are kept under their kid, broken ones skipped, noise survives.
    #[test]
    fn jwks_keeps_exactly_the_usable_keys(entries in prop::collection::vec(entry(), 0..8)) {
        let document = json!({ "keys": entries.iter().enumerate().map(|(i, e)| render(e, i)).collect::<Vec<_>>() });
        let body = serde_json::to_vec(&document).expect("json");
        let clean = entries.iter().filter(|e| matches!(e, Entry::Clean(..))).count();
        match check_jwks(&body) {
            Ok(count) => prop_assert!(count >= clean),
            Err(err) => prop_assert!(clean == 0, "{} clean keys but {}", clean, err),
        }
        // Which kids were kept, through the same parser the fuzz target calls.
        let kept = kept_kids(&body);
        for (i, entry) in entries.iter().enumerate() {
            match entry {
                Entry::Clean(..) => {
                    let kid = format!("clean-{i}");
                    prop_assert!(kept.contains(&kid), "{} skipped", kid);
                }
                Entry::Broken(_, how) => {
                    let kid = format!("broken-{i}");
                    prop_assert!(!kept.contains(&kid), "{} kept although {}", kid, how);
                }
                Entry::Noise(_) => {}
            }
        }
    }

    /// Any bytes, and JSON shaped almost like a JWKS: an error or keys, never a panic.
    #[test]
    fn jwks_garbage_is_an_error(
        body in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..200),
            json_leaf().prop_map(|v| serde_json::to_vec(&json!({ "keys": v })).expect("json")),
            prop::collection::vec(json_leaf(), 0..4).prop_map(|v| serde_json::to_vec(&json!({ "keys": v })).expect("json")),
        ],
    ) {
        prop_assert!(check_jwks(&body).is_err());
    }
}

fn ip_text() -> impl Strategy<Value = String> {
    prop_oneof![
        // Trusted-looking and public addresses, v4 and v6, v4-mapped.
        (
            prop::sample::select(vec![10u8, 198, 203, 192]),
            any::<u8>(),
            any::<u8>()
        )
            .prop_map(|(a, b, c)| format!("{a}.{}.{b}.{c}", if a == 10 { 0 } else { 51 })),
        any::<u16>().prop_map(|x| format!("2001:db8::{x:x}")),
        any::<u16>().prop_map(|x| format!("fd00::{x:x}")),
        any::<u8>().prop_map(|x| format!("::ffff:10.0.0.{x}")),
    ]
}

fn xff_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => ip_text(),
        2 => (ip_text(), any::<u16>()).prop_map(|(ip, port)| if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }),
        1 => Just(String::new()),
        1 => prop::sample::select(vec!["unknown", "_hidden", "[::1", "1.2.3.4:99999", "::ffff:", "for=1.2.3.4", "\u{e9}"]).prop_map(String::from),
        1 => "[ -~]{0,10}",
    ]
}

fn xff_line() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(
            (
                xff_entry(),
                prop::sample::select(vec![",", ", ", " , ", ",\t"]),
            ),
            0..5,
        ),
        prop::collection::vec(any::<u8>(), 0..2),
    )
        .prop_map(|(entries, raw)| {
            let mut line = entries
                .into_iter()
                .map(|(e, sep)| format!("{sep}{e}"))
                .collect::<String>();
            if line.starts_with(',') {
                line.remove(0);
            }
            let mut bytes = line.trim_start().as_bytes().to_vec();
            bytes.extend(raw);
            bytes
        })
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn client_ip_is_the_peer_or_the_nearest_untrusted_hop(
        trusted in prop::collection::vec(prop::sample::select(vec!["10.0.0.0/8", "fd00::/8", "::ffff:10.0.0.0/104", "203.0.113.0/24", "0.0.0.0/0"]), 0..3),
        peer in (ip_text(), any::<u16>()),
        lines in prop::collection::vec(xff_line(), 0..4),
    ) {
        let trusted: Vec<IpNet> = trusted.iter().map(|n| n.parse().expect("net")).collect();
        let peer = SocketAddr::new(peer.0.parse::<IpAddr>().expect("ip"), peer.1);
        let lines: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        check_client_ip(&trusted, Some(peer), &lines);
    }

    #[test]
    fn client_ip_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..120)) {
        fuzz_client_ip(&data);
    }
}

fn url() -> impl Strategy<Value = (String, Vec<String>)> {
    (
        prop::sample::select(vec!["redis://", "rediss://", "http://", "https://", ""]),
        prop::option::of(("[A-Z]{3,8}", prop::option::of("[A-Z@:]{3,12}"))),
        "[a-z0-9-]{1,12}(\\.[a-z]{2,5})?(:[0-9]{1,5})?",
        "(/[a-z0-9.]{0,8}){0,3}",
        prop::collection::vec(
            (
                prop::sample::select(vec![
                    "token", "api_key", "Password", "sig", "page", "q", "db",
                ]),
                "[A-Z]{4,10}",
            ),
            0..3,
        ),
        prop::option::of("[a-z]{0,5}"),
    )
        .prop_map(|(scheme, userinfo, host, path, query, fragment)| {
            let mut secrets = Vec::new();
            let mut url = scheme.to_string();
            if let Some((user, password)) = userinfo {
                secrets.push(user.clone());
                url.push_str(&user);
                if let Some(password) = password {
                    secrets.push(password.clone());
                    url.push(':');
                    url.push_str(&password);
                }
                url.push('@');
            }
            url.push_str(&host);
            url.push_str(&path);
            for (i, (name, value)) in query.iter().enumerate() {
                url.push(if i == 0 { '?' } else { '&' });
                url.push_str(&format!("{name}={value}"));
                if !["page", "q", "db"].contains(name) {
                    secrets.push(value.clone());
                }
            }
            if let Some(fragment) = fragment {
                url.push('#');
                url.push_str(&fragment);
            }
            (url, secrets)
        })
}

fn rule() -> impl Strategy<Value = RateLimitRule> {
    (
        prop::sample::select(vec![
            RateLimitKey::Ip,
            RateLimitKey::User,
            RateLimitKey::UserOrIp,
        ]),
        0..3u32,
        0..3u64,
        any::<u32>(),
        prop::sample::select(vec![RateLimitScope::Local, RateLimitScope::Cluster]),
    )
        .prop_map(|(key, requests, per, burst, scope)| RateLimitRule {
            key,
            requests,
            per: std::time::Duration::from_secs(per),
            burst,
            scope,
            budget: None,
        })
}

proptest! {
    #![proptest_config(config(96))]

    /// No userinfo and no secret query value survives; the host does.
    #[test]
    fn printed_urls_carry_no_credentials((url, secrets) in url()) {
        let printed = check_redact_url(&url);
        for secret in &secrets {
            prop_assert!(!printed.contains(secret.as_str()), "{} leaks from {}", secret, url);
        }
    }

    /// Route policy problems are located (paths the edge can point at), one per defect.
    #[test]
    fn route_policy_problems_are_located(
        jwt in prop::option::of((prop::sample::select(vec![JwtMode::Required, JwtMode::Optional, JwtMode::Off]), prop::collection::vec(prop::sample::select(ALL_ALGORITHMS.to_vec()), 0..3))),
        rules in prop::collection::vec(rule(), 0..4),
        cors in prop::option::of((prop::collection::vec(prop::sample::select(vec!["*", "https://app.example"]), 0..3), any::<bool>())),
        global_jwt in any::<bool>(),
        global_redis in prop::option::of(url()),
    ) {
        let route = RoutePolicy {
            jwt: jwt.map(|(mode, algorithms)| JwtRoutePolicy { mode, algorithms, revocation_fail_mode: None }),
            rate_limits: rules.clone(),
            cors: cors.map(|(origins, allow_credentials)| CorsPolicy {
                allowed_origins: origins.into_iter().map(String::from).collect(),
                allowed_methods: Vec::new(),
                allowed_headers: Vec::new(),
                expose_headers: Vec::new(),
                allow_credentials,
                max_age: std::time::Duration::from_secs(1),
            }),
        };
        let mut global = PluginsConfig::default();
        if global_jwt {
            global.jwt = Some(serde_json::from_value(json!({"issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://127.0.0.1:1/jwks"})).expect("jwt config"));
        }
        global.redis = global_redis.map(|(url, _)| RedisConfig {
            url,
            namespace: String::new(),
            connect_timeout: std::time::Duration::from_secs(1),
            command_timeout: std::time::Duration::from_secs(1),
        });
        check_plugins_config(&global);
        check_route_policy(&route, &global);
        let issues = route.validate(&global);
        for (i, rule) in rules.iter().enumerate() {
            let at = |field: &str| issues.iter().any(|issue| issue.path == format!("rate_limits[{i}].{field}"));
            prop_assert_eq!(at("requests"), rule.requests == 0);
            prop_assert_eq!(at("per"), rule.per.is_zero());
            prop_assert_eq!(at("scope"), rule.scope == RateLimitScope::Cluster && global.redis.is_none());
        }
    }

    #[test]
    fn plugins_config_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..120)) {
        fuzz_plugins_config(&data);
        fuzz_jwt(&data);
        fuzz_jwks(&data);
    }
}

#[test]
fn the_byte_fuzzers_accept_their_seed_inputs() {
    fuzz_jwt(b"Bearer eyJhbGciOiJFZERTQSIsImtpZCI6ImZ1enotZWQifQ.e30.c2ln");
    fuzz_jwks(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}"#);
    assert_eq!(
        check_jwks(br#"{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"a"}]}"#).ok(),
        Some(1)
    );
    fuzz_client_ip(b"10.0.0.0/8\n10.0.0.1:4000\n198.51.100.7, 10.0.0.5");
    fuzz_plugins_config(br#"{"redis":{"url":"redis://:pw@redis:6379"}}"#);
}
