//! The `web` binary as the edge sees it: real process, real HTTP, on a free port.

use std::path::Path;
use std::time::Duration;

use testkit::reqwest::{self, Method};
use testkit::ChildProcess;

const READY: Duration = Duration::from_secs(30);

struct Web {
    process: ChildProcess,
    base: String,
}

impl Web {
    fn spawn(assets: Option<&Path>) -> (ChildProcess, String) {
        let listen = format!("127.0.0.1:{}", testkit::free_tcp_port());
        let mut args = vec!["--listen".to_string(), listen.clone()];
        if let Some(dir) = assets {
            args.push("--assets-dir".into());
            args.push(dir.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = ChildProcess::spawn(
            "web",
            Path::new(env!("CARGO_BIN_EXE_web")),
            &args,
            &[("RUST_LOG", "info"), ("SHUTDOWN_GRACE", "5s")],
        )
        .expect("spawn web");
        (process, format!("http://{listen}"))
    }

    async fn start(assets: Option<&Path>) -> Web {
        let (process, base) = Self::spawn(assets);
        process
            .wait_for_http_ok(&format!("{base}/readyz"), READY)
            .await
            .expect("web ready");
        Web { process, base }
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.request(Method::GET, path, headers).await
    }

    async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request")
    }
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

fn app_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(
        dir.path().join("index.html"),
        r#"<link rel="stylesheet" href="/assets/site.css"><script src="/assets/site.js" defer></script>"#,
    )
    .expect("index");
    std::fs::write(dir.path().join("site.css"), "body { color: red }").expect("css");
    std::fs::write(dir.path().join("site.js"), "console.log('hi');").expect("js");
    dir
}

/// The fingerprinted URL of `name` as the served page references it.
async fn asset_url(web: &Web, name: &str) -> String {
    let html = web.get("/", &[]).await.text().await.expect("page");
    let (stem, ext) = name.rsplit_once('.').expect("extension");
    html.split('"')
        .find(|part| {
            part.starts_with(&format!("/assets/{stem}.")) && part.ends_with(&format!(".{ext}"))
        })
        .unwrap_or_else(|| panic!("{name} not referenced in {html}"))
        .to_string()
}

#[tokio::test]
async fn the_page_is_revalidated_and_assets_are_immutable_under_their_hash() {
    let dir = app_dir();
    let web = Web::start(Some(dir.path())).await;

    let page = web.get("/", &[]).await;
    assert_eq!(page.status(), 200);
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let etag = header(&page, "etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    let unchanged = web.get("/", &[("if-none-match", &etag)]).await;
    assert_eq!(unchanged.status(), 304);
    assert_eq!(header(&unchanged, "etag"), etag);
    assert_eq!(header(&unchanged, "cache-control"), "no-cache");
    // Compressing proxies weaken ETags; the weak form still matches.
    let weak = web
        .get("/", &[("if-none-match", &format!("W/{etag}"))])
        .await;
    assert_eq!(weak.status(), 304);

    let js = asset_url(&web, "site.js").await;
    let css = asset_url(&web, "site.css").await;
    for (url, content_type, body) in [
        (&js, "text/javascript; charset=utf-8", "console.log('hi');"),
        (&css, "text/css; charset=utf-8", "body { color: red }"),
    ] {
        let asset = web.get(url, &[]).await;
        assert_eq!(asset.status(), 200, "{url}");
        assert_eq!(header(&asset, "content-type"), content_type, "{url}");
        assert_eq!(
            header(&asset, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&asset, "x-content-type-options"), "nosniff");
        assert_eq!(asset.text().await.expect("body"), body);
    }
    // Only under the hash: the plain name would be cached forever with changing content.
    let plain = web.get("/assets/site.js", &[("accept", "text/html")]).await;
    assert_eq!(plain.status(), 404);
    assert_eq!(header(&plain, "content-type"), "application/json");
}

#[tokio::test]
async fn a_changed_asset_gets_a_new_url_after_a_restart() {
    let dir = app_dir();
    let before = Web::start(Some(dir.path())).await;
    let old = asset_url(&before, "site.js").await;
    drop(before);
    std::fs::write(dir.path().join("site.js"), "console.log('changed');").expect("js");
    let after = Web::start(Some(dir.path())).await;
    let new = asset_url(&after, "site.js").await;
    assert_ne!(old, new);
    assert_eq!(after.get(&new, &[]).await.status(), 200);
    assert_eq!(
        after.get(&old, &[]).await.status(),
        404,
        "the old URL is gone"
    );
}

#[tokio::test]
async fn navigations_get_the_page_and_everything_else_a_json_404() {
    let dir = app_dir();
    let web = Web::start(Some(dir.path())).await;
    let html = "text/html,application/xhtml+xml,*/*;q=0.8";

    let deep = web.get("/records/123", &[("accept", html)]).await;
    assert_eq!(deep.status(), 200);
    assert_eq!(header(&deep, "content-type"), "text/html; charset=utf-8");
    assert_eq!(
        header(&deep, "vary"),
        "accept",
        "a cache must key it by Accept"
    );
    assert!(deep.text().await.expect("page").contains("/assets/site."));

    for (method, path, accept) in [
        (Method::GET, "/records/123", "application/json"),
        (Method::GET, "/records/123", "*/*"),
        (Method::GET, "/api/records", html),
        (Method::GET, "/assets/nope.0123456789abcdef.js", html),
        (Method::POST, "/records/123", html),
        (Method::GET, "/metrics", "*/*"),
    ] {
        let response = web
            .request(method.clone(), path, &[("accept", accept)])
            .await;
        assert_eq!(response.status(), 404, "{method} {path} ({accept})");
        assert_eq!(header(&response, "cache-control"), "no-store");
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.expect("body")).expect("JSON");
        assert_eq!(body["error"]["code"], "not_found", "{method} {path}");
        assert!(body["error"]["message"].is_string());
    }

    let post = web.request(Method::POST, "/", &[]).await;
    assert_eq!(post.status(), 405);
    let body: serde_json::Value =
        serde_json::from_str(&post.text().await.expect("body")).expect("JSON");
    assert_eq!(body["error"]["code"], "method_not_allowed");

    let head = web.request(Method::HEAD, "/", &[]).await;
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "etag"),
        header(&web.get("/", &[]).await, "etag")
    );
}

#[tokio::test]
async fn the_shipped_app_loads_and_every_reference_is_served() {
    // No --assets-dir: the checkout's services/web/assets, as `make up` serves it.
    let web = Web::start(None).await;
    let html = web.get("/", &[]).await.text().await.expect("page");
    let references: Vec<&str> = html
        .split('"')
        .filter(|part| part.starts_with("/assets/"))
        .collect();
    assert!(references.len() >= 8, "{references:?}");
    for url in references {
        let asset = web.get(url, &[]).await;
        assert_eq!(asset.status(), 200, "{url}");
        let expected = match url.rsplit('.').next() {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}: {url}"),
        };
        assert_eq!(header(&asset, "content-type"), expected, "{url}");
    }
    let ready: serde_json::Value =
        serde_json::from_str(&web.get("/readyz", &[]).await.text().await.expect("readyz"))
            .expect("JSON");
    assert_eq!(ready["status"], "ready");
}

#[tokio::test]
async fn a_broken_assets_directory_stops_start_up_with_the_file_named() {
    let dir = app_dir();
    std::fs::write(
        dir.path().join("index.html"),
        r#"<script src="/assets/sight.js"></script>"#,
    )
    .expect("index");
    let (mut process, _) = Web::spawn(Some(dir.path()));
    let code = process.wait_exit(READY).expect("exits");
    assert_ne!(code, Some(0));
    let logs = process.logs();
    assert!(
        logs.contains("index.html references /assets/sight.js") && logs.contains("--assets-dir"),
        "{logs}"
    );
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = app_dir();
    let mut web = Web::start(Some(dir.path())).await;
    assert_eq!(web.get("/", &[]).await.status(), 200);
    web.process.signal(libc::SIGTERM).expect("SIGTERM");
    let code = web
        .process
        .wait_exit(Duration::from_secs(10))
        .expect("exits");
    assert_eq!(code, Some(0), "{}", web.process.logs());
    assert!(web.process.logs().contains("drained; exiting"));
}
