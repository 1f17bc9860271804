//! End-to-end tests: the real `certs-tool` binary in private temp directories, with the system
//! `openssl` and BoringSSL as independent judges of what it writes.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;

use boring::pkey::PKey;
use boring::x509::X509;

const BIN: &str = env!("CARGO_BIN_EXE_certs-tool");
const DEV_SANS: [&str; 6] = [
    "--san",
    "localhost",
    "--san",
    "127.0.0.1",
    "--san",
    "record.local",
];

/// A private directory per test, so tests run in parallel without sharing files.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("create a temp dir for the test"),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("spawn certs-tool")
    }

    /// Runs and requires exit 0; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "certs-tool {args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs and requires exit 2 with exactly one line on stderr; returns that line.
    fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8(out.stderr).expect("stderr is UTF-8");
        assert_eq!(
            out.status.code(),
            Some(2),
            "certs-tool {args:?} should exit 2; stderr: {stderr}"
        );
        assert_eq!(
            stderr.lines().count(),
            1,
            "certs-tool {args:?} should print exactly one line on stderr, got: {stderr:?}"
        );
        assert!(stderr.starts_with("certs-tool: "), "{stderr}");
        stderr.trim_end().to_owned()
    }

    fn dev_ca(&self) {
        self.ok(&["ca", "init", "--dir", "ca"]);
    }

    fn issue(&self, extra: &[&str]) {
        let mut args = vec!["issue", "--ca", "ca", "--out", "out"];
        args.extend_from_slice(&DEV_SANS);
        args.extend_from_slice(extra);
        self.ok(&args);
    }
}

/// `openssl verify -CAfile ca [-untrusted chain] leaf`; returns (verified, output).
fn openssl_verify(ca_file: &Path, untrusted: Option<&Path>, leaf: &Path) -> (bool, String) {
    let mut cmd = Command::new("openssl");
    cmd.args(["verify", "-purpose", "sslserver", "-CAfile"])
        .arg(ca_file);
    if let Some(chain) = untrusted {
        cmd.arg("-untrusted").arg(chain);
    }
    let out = cmd.arg(leaf).output().expect("run openssl verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn openssl_x509(cert: &Path, what: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-in"])
        .arg(cert)
        .args(what)
        .output()
        .expect("run openssl x509");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// Splits a PEM chain into one file per certificate (`<stem>.0.pem`, `<stem>.1.pem`, ...).
fn split_chain(chain: &Path, scratch: &Path, stem: &str) -> Vec<PathBuf> {
    let text = fs::read_to_string(chain).expect("read chain");
    const END: &str = "-----END CERTIFICATE-----";
    text.split_inclusive(END)
        .filter(|block| block.contains("BEGIN CERTIFICATE"))
        .enumerate()
        .map(|(i, block)| {
            let path = scratch.join(format!("{stem}.{i}.pem"));
            fs::write(&path, format!("{}\n", block.trim())).expect("write split cert");
            path
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o777
}

fn serial(cert: &Path) -> String {
    openssl_x509(cert, &["-serial"]).trim().to_owned()
}

fn sans(cert: &Path) -> String {
    openssl_x509(cert, &["-ext", "subjectAltName"])
        .lines()
        .nth(1)
        .expect("SAN line")
        .trim()
        .to_owned()
}

#[test]
fn help_is_available_for_every_subcommand() {
    let sb = Sandbox::new();
    for args in [
        &["--help"][..],
        &["ca", "--help"],
        &["ca", "init", "--help"],
        &["issue", "--help"],
        &["rotate", "--help"],
        &["inspect", "--help"],
        &["check", "--help"],
    ] {
        let stdout = sb.ok(args);
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
    }
    assert!(sb.ok(&["rotate", "--help"]).contains("cross-signed"));
}

#[test]
fn issued_chains_verify_with_openssl_and_files_have_the_right_modes() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&[]);

    let (ok, why) = openssl_verify(&sb.path("out/ca.crt"), None, &sb.path("out/tls.crt"));
    assert!(ok, "{why}");
    let (ok, why) = openssl_verify(&sb.path("ca/ca.crt"), None, &sb.path("out/tls.crt"));
    assert!(ok, "{why}");

    let leaf = sb.path("out/tls.crt");
    assert_eq!(
        sans(&leaf),
        "DNS:localhost, IP Address:127.0.0.1, DNS:record.local"
    );
    let text = openssl_x509(&leaf, &["-text"]);
    assert!(text.contains("NIST CURVE: P-256"), "{text}");
    assert!(text.contains("TLS Web Server Authentication"), "{text}");
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    // 128-bit random serial: 32 hex digits (fewer only if the top byte happens to be 0).
    let serial_hex = serial(&leaf).trim_start_matches("serial=").to_owned();
    assert!((30..=32).contains(&serial_hex.len()), "{serial_hex}");

    for (file, want) in [
        ("ca/ca.key", 0o600),
        ("ca/ca.crt", 0o644),
        ("out/tls.key", 0o600),
        ("out/tls.crt", 0o644),
        ("out/ca.crt", 0o644),
    ] {
        assert_eq!(mode(&sb.path(file)), want, "{file}");
    }
    assert!(
        !sb.path("out/ca.key").exists(),
        "the CA key never leaves the CA dir"
    );
    assert_eq!(
        fs::read(sb.path("out/ca.crt")).expect("read"),
        fs::read(sb.path("ca/ca.crt")).expect("read"),
        "outside a CA rotation the bundle is just the CA"
    );
}

#[test]
fn rsa_and_wildcard_and_ipv6_certificates_verify_too() {
    let sb = Sandbox::new();
    sb.ok(&[
        "ca", "init", "--dir", "ca", "--key", "rsa-2048", "--name", "RSA CA",
    ]);
    sb.ok(&[
        "issue",
        "--ca",
        "ca",
        "--out",
        "out",
        "--san",
        "*.example.com",
        "--san",
        "::1",
        "--key",
        "rsa-2048",
        "--days",
        "10",
    ]);
    let leaf = sb.path("out/tls.crt");
    let (ok, why) = openssl_verify(&sb.path("out/ca.crt"), None, &leaf);
    assert!(ok, "{why}");
    assert_eq!(sans(&leaf), "DNS:*.example.com, IP Address:0:0:0:0:0:0:0:1");
    let text = openssl_x509(&leaf, &["-text"]);
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("Key Encipherment"), "{text}");
}

#[test]
fn rotate_changes_serial_and_key_and_keeps_sans() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&[]);
    let leaf = sb.path("out/tls.crt");
    let (serial_before, sans_before) = (serial(&leaf), sans(&leaf));
    let key_before = fs::read(sb.path("out/tls.key")).expect("read key");

    let stdout = sb.ok(&["rotate", "--ca", "ca", "--out", "out"]);
    assert!(stdout.starts_with("rotated"), "{stdout}");

    assert_ne!(serial(&leaf), serial_before);
    assert_eq!(sans(&leaf), sans_before);
    assert_ne!(
        fs::read(sb.path("out/tls.key")).expect("read key"),
        key_before
    );
    let (ok, why) = openssl_verify(&sb.path("out/ca.crt"), None, &leaf);
    assert!(ok, "{why}");
    assert_eq!(mode(&sb.path("out/tls.key")), 0o600);
}

#[test]
fn rotate_new_ca_keeps_clients_of_either_ca_working_until_finished() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&[]);
    let old_ca = sb.path("old-ca.pem");
    fs::copy(sb.path("ca/ca.crt"), &old_ca).expect("keep the old CA as a client would");

    let stdout = sb.ok(&["rotate", "--ca", "ca", "--out", "out", "--new-ca"]);
    assert!(stdout.contains("cross-signed"), "{stdout}");
    let new_ca = sb.path("ca/ca.crt");
    assert_ne!(
        fs::read(&new_ca).expect("read"),
        fs::read(&old_ca).expect("read")
    );

    // The promise, for every leaf issued during the overlap (the rotation's own and later
    // plain rotations): verifies under the OLD CA alone and under the NEW CA alone.
    for round in 0..2 {
        let parts = split_chain(&sb.path("out/tls.crt"), sb.dir.path(), &format!("r{round}"));
        assert_eq!(parts.len(), 2, "leaf + cross-signed CA");
        let (leaf, cross) = (&parts[0], &parts[1]);
        let (ok, why) = openssl_verify(&old_ca, Some(cross), leaf);
        assert!(ok, "old CA alone, round {round}: {why}");
        let (ok, why) = openssl_verify(&new_ca, Some(cross), leaf);
        assert!(
            ok,
            "new CA alone with the served chain, round {round}: {why}"
        );
        let (ok, why) = openssl_verify(&new_ca, None, leaf);
        assert!(ok, "new CA alone, leaf only, round {round}: {why}");
        let (ok, why) = openssl_verify(&sb.path("out/ca.crt"), Some(cross), leaf);
        assert!(ok, "bundle, round {round}: {why}");

        // BoringSSL (what the edge and its clients link) agrees.
        let leaf_x = X509::from_pem(&fs::read(leaf).expect("read")).expect("leaf");
        let cross_x = X509::from_pem(&fs::read(cross).expect("read")).expect("cross");
        for anchor in [&old_ca, &new_ca] {
            let anchor_x = X509::from_pem(&fs::read(anchor).expect("read")).expect("anchor");
            let verdict = certs_tool::verify::verify_chain(
                &leaf_x,
                std::slice::from_ref(&cross_x),
                &[anchor_x],
            )
            .expect("verify");
            assert!(verdict.is_verified(), "boring, {anchor:?}: {verdict:?}");
        }

        let bundle = fs::read_to_string(sb.path("out/ca.crt")).expect("read bundle");
        assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
        sb.ok(&["check", "--dir", "out"]);
        sb.ok(&["rotate", "--ca", "ca", "--out", "out"]);
    }

    let stdout = sb.ok(&[
        "rotate",
        "--ca",
        "ca",
        "--out",
        "out",
        "--finish-ca-rotation",
    ]);
    assert!(stdout.contains("CA rotation finished"), "{stdout}");
    let parts = split_chain(&sb.path("out/tls.crt"), sb.dir.path(), "done");
    assert_eq!(parts.len(), 1, "no cross certificate after the overlap");
    let (ok, _) = openssl_verify(&old_ca, None, &parts[0]);
    assert!(!ok, "the old CA no longer vouches for new leaves");
    let (ok, why) = openssl_verify(&new_ca, None, &parts[0]);
    assert!(ok, "{why}");
    assert_eq!(
        fs::read(sb.path("out/ca.crt")).expect("read"),
        fs::read(&new_ca).expect("read")
    );
    assert!(!sb.path("ca/ca-cross.crt").exists() && !sb.path("ca/ca-previous.crt").exists());
}

#[test]
fn inspect_reports_fields_and_detects_a_mismatched_key() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&[]);

    let text = sb.ok(&["inspect", "out/tls.crt", "out/ca.crt", "out/tls.key"]);
    for want in [
        "subject:    CN=localhost",
        "issuer:     CN=Record Platform Dev CA",
        "DNS:localhost, IP:127.0.0.1, DNS:record.local",
        "key type:   ECDSA P-256",
        "not after:",
        "matches out/tls.crt",
        "chain:        verifies against out/ca.crt",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    let json = sb.ok(&["inspect", "--json", "out/tls.crt"]);
    let reports: serde_json::Value = serde_json::from_str(&json).expect("inspect --json parses");
    let report = &reports[0];
    let leaf = &report["certificates"][0];
    assert_eq!(leaf["subject"], "CN=localhost");
    assert_eq!(leaf["key_type"], "ECDSA P-256");
    assert_eq!(leaf["sans"][1]["type"], "ip");
    assert_eq!(leaf["sans"][1]["value"], "127.0.0.1");
    assert_eq!(
        format!("serial={}", leaf["serial"].as_str().expect("serial")),
        serial(&sb.path("out/tls.crt"))
    );
    assert_eq!(report["key"]["matches_certificate"], true);
    assert_eq!(report["chain"]["verified"], true);

    // A key from another issuance dropped into the directory.
    let mut other = vec!["issue", "--ca", "ca", "--out", "other"];
    other.extend_from_slice(&DEV_SANS);
    sb.ok(&other);
    fs::copy(sb.path("other/tls.key"), sb.path("out/tls.key")).expect("swap key");
    let out = sb.run(&["inspect", "--json", "out/tls.crt"]);
    assert_eq!(out.status.code(), Some(2));
    let reports: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("report still printed as JSON");
    assert_eq!(reports[0]["key"]["matches_certificate"], false);
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("key mismatch"), "{stderr}");

    let line = sb.fails(&["inspect", "out/tls.crt", "--key", "other/tls.key"]);
    assert!(line.contains("does not belong"), "{line}");
}

#[test]
fn check_exits_0_ok_1_expiring_2_invalid() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&[]);
    let stdout = sb.ok(&["check", "--dir", "out", "--warn-days", "30"]);
    assert!(stdout.starts_with("ok: "), "{stdout}");
    sb.ok(&[
        "check",
        "--dir",
        "out",
        "--host",
        "record.local",
        "--host",
        "127.0.0.1",
    ]);
    sb.ok(&["check", "--dir", "ca", "--warn-days", "30"]);

    let mut short = vec!["issue", "--ca", "ca", "--out", "short", "--days", "5"];
    short.extend_from_slice(&DEV_SANS);
    sb.ok(&short);
    let out = sb.run(&["check", "--dir", "short", "--warn-days", "30"]);
    assert_eq!(out.status.code(), Some(1), "expiring within warn-days");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(stdout.starts_with("expiring: "), "{stdout}");
    assert_eq!(stdout.lines().count(), 1);

    let json = sb.run(&["check", "--dir", "short", "--warn-days", "30", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(report["status"], "expiring");
    assert!(report["days_left"]
        .as_i64()
        .is_some_and(|d| (4..=5).contains(&d)));

    let line = sb.fails(&["check", "--dir", "out", "--host", "elsewhere.example"]);
    assert!(line.contains("does not cover"), "{line}");

    fs::write(
        sb.path("out/tls.crt"),
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    )
    .expect("corrupt the cert");
    let line = sb.fails(&["check", "--dir", "out"]);
    assert!(
        line.contains("invalid") && line.contains("tls.crt"),
        "{line}"
    );

    let line = sb.fails(&["check", "--dir", "nowhere"]);
    assert!(line.contains("missing"), "{line}");
}

#[test]
fn bad_input_gives_one_line_and_exit_2() {
    let sb = Sandbox::new();
    // Missing CA.
    let line = sb.fails(&[
        "issue",
        "--ca",
        "nope",
        "--out",
        "out",
        "--san",
        "localhost",
    ]);
    assert!(line.contains("ca init"), "{line}");
    let line = sb.fails(&["rotate", "--ca", "nope", "--out", "out"]);
    assert!(line.contains("nope/ca.crt"), "{line}");

    sb.dev_ca();
    // SAN syntax.
    let line = sb.fails(&["issue", "--ca", "ca", "--out", "out", "--san", "bad..name"]);
    assert!(line.contains("invalid SAN \"bad..name\""), "{line}");
    sb.fails(&["issue", "--ca", "ca", "--out", "out", "--san", "*.com"]);
    sb.fails(&[
        "issue",
        "--ca",
        "ca",
        "--out",
        "out",
        "--san",
        "under_score.local",
    ]);
    assert!(
        !sb.path("out/tls.crt").exists(),
        "nothing written on bad input"
    );
    // Unreadable files.
    let line = sb.fails(&["inspect", "does-not-exist.crt"]);
    assert!(line.contains("does-not-exist.crt"), "{line}");
    let line = sb.fails(&["inspect", "ca"]);
    assert!(line.contains("cannot read ca"), "{line}");
    // Usage errors from clap follow the same rule.
    let line = sb.fails(&["issue", "--ca", "ca", "--out", "out"]);
    assert!(line.contains("--san"), "{line}");
    sb.fails(&[
        "issue", "--ca", "ca", "--out", "out", "--san", "x.local", "--days", "0",
    ]);
    sb.fails(&["ca", "init", "--dir", "ca", "--key", "dsa"]);
    sb.fails(&[]);
    sb.fails(&["ca"]);
    sb.fails(&["frobnicate"]);
    // The output directory may not be the CA directory.
    sb.fails(&["issue", "--ca", "ca", "--out", "ca", "--san", "localhost"]);
    // An existing CA is not silently replaced; --exist-ok keeps it.
    let before = fs::read(sb.path("ca/ca.crt")).expect("read");
    let line = sb.fails(&["ca", "init", "--dir", "ca"]);
    assert!(line.contains("already exists"), "{line}");
    sb.ok(&["ca", "init", "--dir", "ca", "--exist-ok"]);
    assert_eq!(fs::read(sb.path("ca/ca.crt")).expect("read"), before);
    // Key/cert mismatch in the CA directory.
    sb.ok(&["ca", "init", "--dir", "other-ca"]);
    fs::copy(sb.path("other-ca/ca.key"), sb.path("ca/ca.key")).expect("swap CA key");
    let line = sb.fails(&["issue", "--ca", "ca", "--out", "out", "--san", "localhost"]);
    assert!(line.contains("key mismatch"), "{line}");
}

/// A reader that reads the pair the way the edge does in a k8s-layout directory: resolve
/// `..data` before and after reading through the stable top-level names, retry if it moved.
fn read_pair_seqlock(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    loop {
        let before = fs::read_link(dir.join("..data")).expect("..data exists throughout");
        let crt = fs::read(dir.join("tls.crt")).expect("tls.crt resolves throughout");
        let key = fs::read(dir.join("tls.key")).expect("tls.key resolves throughout");
        let after = fs::read_link(dir.join("..data")).expect("..data exists throughout");
        if before == after {
            return (crt, key);
        }
    }
}

/// A reader that resolves `..data` once and reads both files from that generation.
fn read_pair_resolved(dir: &Path) -> Option<(Vec<u8>, Vec<u8>)> {
    let generation = fs::canonicalize(dir.join("..data")).ok()?;
    // The generation may be cleaned up after two more swaps; that is a retry, not a mismatch.
    let crt = fs::read(generation.join("tls.crt")).ok()?;
    let key = fs::read(generation.join("tls.key")).ok()?;
    Some((crt, key))
}

/// (matches, leaf serial) for a PEM pair, judged by BoringSSL public-key comparison.
fn judge(crt: &[u8], key: &[u8]) -> (bool, String) {
    let cert = X509::from_pem(crt).expect("tls.crt is never partial");
    let key = PKey::private_key_from_pem(key).expect("tls.key is never partial");
    let matches = cert.public_key().expect("public key").public_eq(&key);
    let serial = cert
        .serial_number()
        .to_bn()
        .expect("serial")
        .to_hex_str()
        .expect("hex")
        .to_string();
    (matches, serial)
}

#[test]
fn k8s_layout_swaps_the_pair_atomically_under_concurrent_readers() {
    let sb = Sandbox::new();
    sb.dev_ca();
    sb.issue(&["--layout", "k8s"]);
    let out = sb.path("out");

    // Layout shape and modes.
    let data = fs::read_link(out.join("..data")).expect("..data is a symlink");
    assert!(data.to_string_lossy().starts_with(".."), "{data:?}");
    for name in ["tls.crt", "tls.key", "ca.crt"] {
        assert_eq!(
            fs::read_link(out.join(name)).expect("top-level symlink"),
            Path::new("..data").join(name)
        );
    }
    assert_eq!(mode(&out.join(&data).join("tls.key")), 0o600);
    assert_eq!(mode(&out.join(&data).join("tls.crt")), 0o644);
    assert_eq!(mode(&out.join(&data).join("ca.crt")), 0o644);

    const ROTATIONS: usize = 20;
    let done = Arc::new(AtomicBool::new(false));
    // Readers are running before the first rotation starts.
    let start = Arc::new(Barrier::new(3));
    let mut readers = Vec::new();
    for resolved in [false, true] {
        let (done, start, out) = (done.clone(), start.clone(), out.clone());
        readers.push(thread::spawn(move || {
            let mut mismatches = 0usize;
            let mut serials = std::collections::BTreeSet::new();
            let mut reads = 0usize;
            start.wait();
            loop {
                // Read once more after `done` so the final generation is always seen.
                let finished = done.load(Ordering::Acquire);
                let pair = if resolved {
                    read_pair_resolved(&out)
                } else {
                    Some(read_pair_seqlock(&out))
                };
                if let Some((crt, key)) = pair {
                    let (matches, serial) = judge(&crt, &key);
                    reads += 1;
                    if !matches {
                        mismatches += 1;
                    }
                    serials.insert(serial);
                }
                if finished {
                    return (mismatches, serials, reads);
                }
            }
        }));
    }
    start.wait();
    for _ in 0..ROTATIONS {
        sb.ok(&["rotate", "--ca", "ca", "--out", "out"]);
    }
    done.store(true, Ordering::Release);

    for reader in readers {
        let (mismatches, serials, reads) = reader.join().expect("reader thread");
        assert_eq!(
            mismatches, 0,
            "a reader saw a mismatched pair ({reads} reads)"
        );
        assert!(
            serials.len() >= 2,
            "the reader observed the rotations ({} serials in {reads} reads)",
            serials.len()
        );
    }

    // Only the current and the previous generation remain.
    let generations = fs::read_dir(&out)
        .expect("ls")
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("..") && name != "..data"
        })
        .count();
    assert_eq!(generations, 2);
    sb.ok(&["check", "--dir", "out"]);
    let (ok, why) = openssl_verify(&out.join("ca.crt"), None, &out.join("tls.crt"));
    assert!(ok, "{why}");
}
