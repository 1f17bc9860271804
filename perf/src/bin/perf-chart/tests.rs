//! The ratio lines `perf-chart` writes into perf/README.md.

use super::*;

fn row(scenario: &str, proxy: &str, status: &str, cpu: f64) -> Row {
    let mut values: BTreeMap<&'static str, Option<f64>> =
        NUMERIC.iter().map(|n| (*n, None)).collect();
    values.insert("cpu_us_per_req", Some(cpu));
    Row {
        scenario: scenario.into(),
        proxy: proxy.into(),
        status: status.into(),
        values,
        note: String::new(),
    }
}

fn line<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    text.lines().find(|l| l.starts_with(&format!("- {label}:")))
}

#[test]
fn a_plain_run_has_the_edge_lines_and_none_for_a_build_it_did_not_have() {
    let rows = [
        row("h1-tls", "edge", "ok", 36.0),
        row("h1-tls", "pingora", "ok", 30.0),
        row("h3", "edge", "ok", 50.0),
        row("h2-tls", "edge", "ok", 40.0),
    ];
    let text = ratios(&group(&rows));
    assert_eq!(
        line(&text, "h1-tls CPU/request edge ÷ bare Pingora"),
        Some("- h1-tls CPU/request edge ÷ bare Pingora: 1.20 (36.0 / 30.0) — goal ≤ 1.05: NOT met")
    );
    assert!(line(&text, "edge h3 ÷ edge h2 CPU/request").is_some_and(|l| l.contains("1.25")));
    assert!(!text.contains("edge-pgo"), "{text}");
}

#[test]
fn a_pgo_run_is_held_against_both_floors_and_its_own_h2() {
    let rows = [
        row("h2-tls", "edge", "ok", 36.0),
        row("h2-tls", "edge-pgo", "ok", 29.0),
        row("h2-tls", "edge-pgo", "ok", 28.0),
        row("h2-tls", "edge-pgo", "ok", 31.0),
        row("h2-tls", "pingora", "ok", 28.0),
        row("h2-tls", "pingora-pgo", "ok", 25.0),
        row("h3", "edge-pgo", "ok", 42.0),
    ];
    let text = ratios(&group(&rows));
    // The median of the three runs, 29.0.
    assert_eq!(
        line(&text, "h2-tls CPU/request edge-pgo ÷ bare Pingora"),
        Some("- h2-tls CPU/request edge-pgo ÷ bare Pingora: 1.04 (29.0 / 28.0) — goal ≤ 1.05: met")
    );
    assert!(
        line(&text, "h2-tls CPU/request edge-pgo ÷ bare Pingora PGO")
            .is_some_and(|l| l.contains("1.16") && l.contains("NOT met"))
    );
    assert!(
        line(&text, "edge-pgo h3 ÷ edge-pgo h2 CPU/request").is_some_and(|l| l.contains("1.45"))
    );
    // h1 was not run for it: said so, not left out.
    assert_eq!(
        line(&text, "h1-tls CPU/request edge-pgo ÷ bare Pingora"),
        Some("- h1-tls CPU/request edge-pgo ÷ bare Pingora: not measured")
    );
}

#[test]
fn a_skipped_pgo_build_adds_no_lines() {
    let mut skipped = row("h2-tls", "edge-pgo", "skip", 0.0);
    skipped.note = "no profile-guided build".into();
    let rows = [row("h2-tls", "edge", "ok", 36.0), skipped];
    let text = ratios(&group(&rows));
    assert!(!text.contains("edge-pgo"), "{text}");
}
