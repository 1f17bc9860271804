use super::*;

fn route(toml: &str) -> RouteCacheConfig {
    toml::from_str(toml).expect("cache config")
}

fn response(status: u16, pairs: &[(&str, &str)]) -> ResponseHeader {
    let mut r = ResponseHeader::build(status, None).expect("header");
    for (k, v) in pairs {
        r.append_header(k.to_string(), v.to_string())
            .expect("insert");
    }
    r
}

fn request(uri: &str, pairs: &[(&str, &str)]) -> RequestHeader {
    let mut r = RequestHeader::build("GET", uri.as_bytes(), None).expect("request");
    r.insert_header("host", "Record.Local").expect("host");
    for (k, v) in pairs {
        r.insert_header(k.to_string(), v.to_string())
            .expect("insert");
    }
    r
}

fn fresh_for(cacheable: RespCacheable) -> Option<Duration> {
    match cacheable {
        RespCacheable::Cacheable(meta) => Some(
            meta.fresh_until()
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        ),
        RespCacheable::Uncacheable(_) => None,
    }
}

#[test]
fn the_origins_freshness_wins_and_the_route_ttl_fills_in() {
    let policy = route("ttl = \"30s\"");
    let stated = fresh_for(cacheability(
        &policy,
        &response(200, &[("cache-control", "public, max-age=600")]),
    ))
    .expect("cacheable");
    assert!(stated > Duration::from_secs(590), "{stated:?}");
    let silent = fresh_for(cacheability(&policy, &response(200, &[]))).expect("cacheable");
    assert!(
        silent > Duration::from_secs(25) && silent <= Duration::from_secs(30),
        "{silent:?}"
    );
}

#[test]
fn private_set_cookie_vary_star_and_odd_statuses_are_not_kept() {
    let policy = route("");
    for headers in [
        vec![("cache-control", "private, max-age=60")],
        vec![("cache-control", "no-store")],
        vec![("set-cookie", "session=1")],
        vec![("vary", "accept, *")],
    ] {
        assert!(
            fresh_for(cacheability(&policy, &response(200, &headers))).is_none(),
            "{headers:?}"
        );
    }
    for status in [206, 302, 500, 503] {
        assert!(fresh_for(cacheability(&policy, &response(status, &[]))).is_none());
    }
    assert!(fresh_for(cacheability(&policy, &response(404, &[]))).is_some());
    // no-cache: kept for revalidation, never fresh, never served stale.
    let RespCacheable::Cacheable(meta) =
        cacheability(&policy, &response(200, &[("cache-control", "no-cache")]))
    else {
        panic!("no-cache responses are stored for revalidation");
    };
    assert!(!meta.is_fresh(SystemTime::now()));
    assert_eq!(meta.stale_while_revalidate_sec(), 0);
    assert_eq!(meta.stale_if_error_sec(), 0);
}

#[test]
fn stale_windows_come_from_the_origin_or_the_route() {
    let policy = route("stale_while_revalidate = \"7s\"\nstale_if_error = \"70s\"");
    let RespCacheable::Cacheable(meta) = cacheability(&policy, &response(200, &[])) else {
        panic!("cacheable");
    };
    assert_eq!(meta.stale_while_revalidate_sec(), 7);
    assert_eq!(meta.stale_if_error_sec(), 70);
    let RespCacheable::Cacheable(meta) = cacheability(
        &policy,
        &response(
            200,
            &[("cache-control", "max-age=5, stale-while-revalidate=3")],
        ),
    ) else {
        panic!("cacheable");
    };
    assert_eq!(meta.stale_while_revalidate_sec(), 3);
}

#[test]
fn keys_normalise_the_query_and_separate_users_and_hosts() {
    let a = cache_key(&request("/p?b=2&a=1", &[]), None);
    let b = cache_key(&request("/p?a=1&b=2&", &[]), None);
    assert_eq!(a.primary_key(), b.primary_key());
    let other_path = cache_key(&request("/q?a=1&b=2", &[]), None);
    assert_ne!(a.primary_key(), other_path.primary_key());
    let mine = cache_key(&request("/p?a=1&b=2", &[]), Some("user-1"));
    assert_ne!(a.primary_key(), mine.primary_key());
    let mut elsewhere = request("/p?a=1&b=2", &[]);
    elsewhere
        .insert_header("host", "shop.example")
        .expect("host");
    assert_ne!(a.primary_key(), cache_key(&elsewhere, None).primary_key());
    let primary = std::str::from_utf8(a.primary_key()).expect("utf-8");
    assert_eq!(
        store::origin_of(primary),
        Some(("record.local", "/p?a=1&b=2"))
    );
}

#[test]
fn variance_follows_the_vary_header_and_ignores_the_rest() {
    let meta = |vary: &str| {
        let RespCacheable::Cacheable(meta) =
            cacheability(&route(""), &response(200, &[("vary", vary)]))
        else {
            panic!("cacheable");
        };
        meta
    };
    let by_language = meta("Accept-Language");
    let en = request("/", &[("accept-language", "en"), ("user-agent", "a")]);
    let en_other_agent = request("/", &[("accept-language", "en"), ("user-agent", "b")]);
    let de = request("/", &[("accept-language", "de")]);
    assert_eq!(
        variance(&by_language, &en),
        variance(&by_language, &en_other_agent)
    );
    assert_ne!(variance(&by_language, &en), variance(&by_language, &de));
    let RespCacheable::Cacheable(plain) = cacheability(&route(""), &response(200, &[])) else {
        panic!("cacheable");
    };
    assert_eq!(variance(&plain, &en), None);
}

#[test]
fn status_names_the_phase() {
    assert_eq!(status(Decision::Bypass, CachePhase::Hit), "BYPASS");
    assert_eq!(status(Decision::Use, CachePhase::Hit), "HIT");
    assert_eq!(status(Decision::Use, CachePhase::Miss), "MISS");
    assert_eq!(status(Decision::Use, CachePhase::StaleUpdating), "STALE");
    assert_eq!(status(Decision::Use, CachePhase::Expired), "EXPIRED");
    assert_eq!(
        status(
            Decision::Use,
            CachePhase::Disabled(NoCacheReason::OriginNotCache)
        ),
        "MISS"
    );
}
