//! Response compression per route, negotiated from Accept-Encoding (q-values), over h1, h2
//! and h3, checked with independent decoders (flate2, brotli, zstd).

mod common;

use std::io::Read;

use bytes::Bytes;
use common::{EchoServer, Edge, EdgeOptions};
use http::HeaderMap;
use testkit::HttpVersion;

const BODY_BYTES: usize = 20_000;

async fn start(echo: &EchoServer) -> Edge {
    Edge::start_with(
        EdgeOptions::new(format!(
            r#"
[clusters.echo]
addresses = ["{echo}"]

[[routes]]
id = "packed"
path_prefix = "/"
upstream = "echo"
compression = {{ min_size = 1024 }}

[[routes]]
id = "plain"
path_prefix = "/plain"
upstream = "echo"
"#,
            echo = echo.addr
        ))
        .with_http3(),
    )
    .await
}

/// One GET over each protocol: (protocol, headers, body).
async fn get_all(edge: &Edge, path: &str, accept: &str) -> Vec<(&'static str, HeaderMap, Bytes)> {
    let mut out = Vec::new();
    for (name, version) in [("h1", HttpVersion::Http1), ("h2", HttpVersion::Http2)] {
        let response = edge
            .client(version)
            .get(edge.url(path))
            .header("accept-encoding", accept)
            .send()
            .await
            .expect("request");
        let headers = response.headers().clone();
        out.push((name, headers, response.bytes().await.expect("body")));
    }
    let h3 = edge.h3().await;
    let response = h3
        .get(path, &[("accept-encoding", accept)])
        .await
        .expect("h3");
    out.push(("h3", response.headers.clone(), response.body.clone()));
    out
}

fn decode(encoding: &str, body: &[u8], protocol: &str) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{protocol} gzip: {e}"));
        }
        "br" => {
            brotli::Decompressor::new(body, 4096)
                .read_to_end(&mut out)
                .unwrap_or_else(|e| panic!("{protocol} brotli ({} bytes): {e}", body.len()));
        }
        "zstd" => out = zstd::decode_all(body).unwrap_or_else(|e| panic!("{protocol} zstd: {e}")),
        other => panic!("unexpected encoding {other}"),
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_preferred_coding_is_used_on_every_protocol() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let path = format!("/text/{BODY_BYTES}");
    for (accept, expected) in [
        ("gzip", "gzip"),
        ("gzip;q=0.5, br;q=1.0", "br"),
        ("zstd", "zstd"),
        ("br;q=0, gzip, zstd;q=0.1", "gzip"),
        ("gzip, deflate, br, zstd", "br"),
    ] {
        for (protocol, headers, body) in get_all(&edge, &path, accept).await {
            let got = headers
                .get("content-encoding")
                .map(|v| v.to_str().expect("ascii").to_string());
            assert_eq!(got.as_deref(), Some(expected), "{protocol} {accept}");
            assert!(
                headers["vary"]
                    .to_str()
                    .expect("ascii")
                    .to_ascii_lowercase()
                    .contains("accept-encoding"),
                "{protocol}: {headers:?}"
            );
            assert!(
                body.len() < BODY_BYTES / 4,
                "{protocol} {accept}: {} bytes",
                body.len()
            );
            let plain = decode(expected, &body, protocol);
            assert_eq!(plain.len(), BODY_BYTES, "{protocol} {accept}");
            assert!(plain.starts_with(b"vinyl record vinyl"), "{protocol}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_must_not_be_compressed_is_sent_as_it_is() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    for (path, accept, why) in [
        (
            format!("/text/{BODY_BYTES}"),
            "identity",
            "no coding accepted",
        ),
        ("/text/200".to_string(), "gzip", "under min_size"),
        (
            format!("/bytes/{BODY_BYTES}"),
            "gzip",
            "octet-stream is not listed",
        ),
        ("/range".to_string(), "gzip", "a 206 range reply"),
        (
            format!("/plain/text/{BODY_BYTES}"),
            "gzip",
            "route without compression",
        ),
    ] {
        for (protocol, headers, _) in get_all(&edge, &path, accept).await {
            assert!(
                headers.get("content-encoding").is_none(),
                "{protocol} {path}: {why}: {headers:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_decodes_what_the_edge_compresses_and_the_bytes_are_counted() {
    let echo = EchoServer::start().await;
    let edge = start(&echo).await;
    let url = edge.url(&format!("/text/{BODY_BYTES}"));
    // curl decodes with libz, libbrotli and libzstd: implementations independent of ours.
    for (coding, algorithm) in [("br", "brotli"), ("gzip", "gzip"), ("zstd", "zstd")] {
        let output = tokio::process::Command::new("curl")
            .args(["-sS", "--fail", "--compressed", "-D", "-", "--cacert"])
            .arg(edge.pki.ca_path())
            .args(["-H", &format!("accept-encoding: {coding}")])
            .arg(&url)
            .output()
            .await
            .expect("run curl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let (head, body) = text.split_once("\r\n\r\n").expect("headers then body");
        assert!(
            head.to_ascii_lowercase()
                .contains(&format!("content-encoding: {coding}")),
            "{head}"
        );
        assert_eq!(body.len(), BODY_BYTES, "{coding}");
        let bytes_in = edge
            .counter(
                "edge_response_compression_bytes_total",
                &[&format!("algorithm=\"{algorithm}\""), "direction=\"in\""],
            )
            .await;
        assert_eq!(bytes_in, BODY_BYTES as f64, "{algorithm}");
    }
}
