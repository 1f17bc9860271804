//! `perf/lib.sh`'s `render_template`, which perf/run.sh, perf/callgrind.sh, perf/pgo.sh and
//! perf/ab.sh fill the perf/peers templates with: every shipped template renders completely,
//! and a template that needs a variable the caller did not set, or has a placeholder nobody
//! fills, is an error that names the file and line instead of a config a proxy rejects later.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("perf/ has a parent")
        .to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("perf-render-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

const VARS: [(&str, &str); 8] = [
    ("RUN_DIR", "/perf/run"),
    ("HOST_IP", "127.0.0.1"),
    ("PORT", "19443"),
    ("HTTP_PORT", "19880"),
    ("ADMIN_PORT", "19900"),
    ("BACKEND", "127.0.0.1:18080"),
    ("CERTS", "/perf/certs"),
    ("JWT_DIR", "/perf/jwt"),
];

/// Runs `render_template TEMPLATE OUT` with the given variables set (and no others).
fn render(template: &Path, out: &Path, vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(r#"set -euo pipefail; source perf/lib.sh; render_template "$1" "$2""#)
        .arg("render")
        .arg(template)
        .arg(out)
        .current_dir(root());
    for (name, _) in VARS {
        cmd.env_remove(name);
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("run bash")
}

fn placeholders_outside_comments(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split('@').skip(1).step_by(2).map(str::to_string))
        .filter(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect()
}

#[test]
fn every_shipped_template_renders_without_a_placeholder_left() {
    let dir = scratch("all");
    let peers = root().join("perf/peers");
    let mut rendered = 0;
    for entry in std::fs::read_dir(&peers).expect("perf/peers") {
        let template = entry.expect("entry").path();
        let out = dir.join(template.file_name().expect("name"));
        let output = render(&template, &out, &VARS);
        assert!(
            output.status.success(),
            "{}: {}",
            template.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let text = std::fs::read_to_string(&out).expect("rendered file");
        let source = std::fs::read_to_string(&template).expect("template");
        assert!(
            !placeholders_outside_comments(&source).is_empty(),
            "{} has no placeholder: not a template?",
            template.display()
        );
        assert_eq!(
            placeholders_outside_comments(&text),
            Vec::<String>::new(),
            "{}",
            template.display()
        );
        assert!(
            text.contains("19443"),
            "{}: the port is filled in",
            template.display()
        );
        rendered += 1;
    }
    assert!(rendered >= 6, "only {rendered} templates in perf/peers");
    let edge = std::fs::read_to_string(dir.join("edge.toml")).expect("edge.toml");
    assert!(edge.contains("/perf/certs/tls.crt"), "{edge}");
    let envoy = std::fs::read_to_string(dir.join("envoy.yaml")).expect("envoy.yaml");
    assert!(envoy.contains("port_value: 18080"), "{envoy}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_variable_the_template_needs_and_the_caller_did_not_set_is_named() {
    let dir = scratch("unset");
    let template = root().join("perf/peers/edge-chain.toml");
    let without_jwt: Vec<_> = VARS.into_iter().filter(|(n, _)| *n != "JWT_DIR").collect();
    let output = render(&template, &dir.join("edge.toml"), &without_jwt);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = std::fs::read_to_string(&template)
        .expect("template")
        .lines()
        .position(|l| l.contains("@JWT_PUBLIC@") && !l.trim_start().starts_with('#'))
        .expect("edge-chain.toml uses @JWT_PUBLIC@")
        + 1;
    assert!(
        stderr.contains(&format!(
            "edge-chain.toml:{line}: @JWT_PUBLIC@ needs $JWT_DIR"
        )),
        "{stderr}"
    );
    // The plain edge template does not need it.
    let plain = render(
        &root().join("perf/peers/edge.toml"),
        &dir.join("plain.toml"),
        &without_jwt,
    );
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unknown_placeholder_is_an_error_and_a_comment_is_not() {
    let dir = scratch("unknown");
    let template = dir.join("t.toml");
    std::fs::write(
        &template,
        "# @NAME@ placeholders are filled in\nport = @PORT@\nx = \"@NOPE@\"\n",
    )
    .expect("write template");
    let output = render(&template, &dir.join("out.toml"), &VARS);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("t.toml:3: unknown placeholder @NOPE@"),
        "{stderr}"
    );

    std::fs::write(
        &template,
        "# @NAME@ placeholders are filled in\nport = @PORT@\n",
    )
    .expect("write template");
    let output = render(&template, &dir.join("out.toml"), &VARS);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(dir.join("out.toml")).expect("out");
    assert_eq!(text, "# @NAME@ placeholders are filled in\nport = 19443\n");
    std::fs::remove_dir_all(dir).ok();
}
