//! `perf-chart`: turns the raw per-run CSV of `perf/run.sh` into medians, one chart per
//! scenario (PNG and SVG), the ratios the goals are held against, and the results
//! section of `perf/README.md`.
//!
//! Runs whose `status` is `void` (non-2xx where 2xx was expected, or errors) are left out of
//! the medians and counted; `skip` rows say why a proxy could not run a scenario.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use plotters::coord::Shift;
use plotters::prelude::*;

#[derive(Debug, Parser)]
#[command(
    name = "perf-chart",
    about = "Medians, charts, ratios and the README table"
)]
struct Args {
    /// The raw CSV written by perf/run.sh.
    #[arg(long)]
    csv: PathBuf,
    /// Where charts and summary.md go (file names start with the CSV's stem).
    #[arg(long)]
    out_dir: PathBuf,
    /// README whose `<!-- results:start -->` … `<!-- results:end -->` section is replaced.
    #[arg(long)]
    readme: Option<PathBuf>,
    /// Machine description for the README.
    #[arg(long, default_value = "")]
    machine: String,
    /// The exact command that produced the CSV.
    #[arg(long, default_value = "make bench")]
    command: String,
    /// TrueType font for the PNG/SVG text.
    #[arg(
        long,
        default_value = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
    )]
    font: PathBuf,
}

const NUMERIC: &[&str] = &[
    "rps",
    "cpu_us_per_req",
    "p50_us",
    "p95_us",
    "p99_us",
    "p999_us",
    "max_us",
    "rss_kib",
    "per_conn_kib",
    "completed",
    "non2xx",
    "errors",
];

#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    proxy: String,
    status: String,
    values: BTreeMap<&'static str, Option<f64>>,
    note: String,
}

/// The medians of one (scenario, proxy).
#[derive(Debug, Clone, Default)]
struct Group {
    scenario: String,
    proxy: String,
    runs: usize,
    void: usize,
    skipped: Option<String>,
    median: BTreeMap<&'static str, f64>,
    notes: Vec<String>,
}

impl Group {
    fn get(&self, key: &str) -> Option<f64> {
        self.median.get(key).copied()
    }
}

fn read_rows(path: &Path) -> Result<(String, String, Vec<Row>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| anyhow!("{} is empty", path.display()))?
        .split(',')
        .collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("{} has no column {name}", path.display()))
    };
    let (c_date, c_host, c_scenario, c_proxy, c_status, c_note) = (
        col("date")?,
        col("host")?,
        col("scenario")?,
        col("proxy")?,
        col("status")?,
        col("note")?,
    );
    let mut numeric = Vec::new();
    for name in NUMERIC {
        numeric.push((*name, col(name)?));
    }
    let mut rows = Vec::new();
    let (mut date, mut host) = (String::new(), String::new());
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != header.len() {
            bail!(
                "{} line {}: {} fields, expected {}",
                path.display(),
                i + 2,
                fields.len(),
                header.len()
            );
        }
        date = fields[c_date].to_string();
        host = fields[c_host].to_string();
        let mut values = BTreeMap::new();
        for (name, c) in &numeric {
            values.insert(*name, fields[*c].trim().parse::<f64>().ok());
        }
        rows.push(Row {
            scenario: fields[c_scenario].to_string(),
            proxy: fields[c_proxy].to_string(),
            status: fields[c_status].to_string(),
            values,
            note: fields[c_note].to_string(),
        });
    }
    Ok((date, host, rows))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn group(rows: &[Row]) -> Vec<Group> {
    let mut order: Vec<(String, String)> = Vec::new();
    let mut by_key: BTreeMap<(String, String), Vec<&Row>> = BTreeMap::new();
    for row in rows {
        let key = (row.scenario.clone(), row.proxy.clone());
        if !by_key.contains_key(&key) {
            order.push(key.clone());
        }
        by_key.entry(key).or_default().push(row);
    }
    order
        .into_iter()
        .map(|key| {
            let runs = &by_key[&key];
            let valid: Vec<&&Row> = runs.iter().filter(|r| r.status == "ok").collect();
            let mut g = Group {
                scenario: key.0.clone(),
                proxy: key.1.clone(),
                runs: runs.iter().filter(|r| r.status != "skip").count(),
                void: runs.iter().filter(|r| r.status == "void").count(),
                skipped: runs
                    .iter()
                    .find(|r| r.status == "skip")
                    .map(|r| r.note.clone()),
                ..Group::default()
            };
            for name in NUMERIC {
                let values: Vec<f64> = valid.iter().filter_map(|r| r.values[name]).collect();
                if let Some(m) = median(values) {
                    g.median.insert(name, m);
                }
            }
            for r in runs {
                if !r.note.is_empty() && r.status != "skip" && !g.notes.contains(&r.note) {
                    g.notes.push(r.note.clone());
                }
            }
            g
        })
        .collect()
}

fn find<'a>(groups: &'a [Group], scenario: &str, proxy: &str) -> Option<&'a Group> {
    groups
        .iter()
        .find(|g| g.scenario == scenario && g.proxy == proxy && g.skipped.is_none())
}

/// What a scenario is charted and tabled by.
fn primary_metrics(scenario: &str) -> Vec<(&'static str, &'static str)> {
    if scenario.starts_with("idle") {
        vec![("per_conn_kib", "RSS KiB per idle connection")]
    } else if scenario.starts_with("open-loop") || scenario.starts_with("fixed-rate") {
        vec![("p99_us", "p99 latency µs"), ("p50_us", "p50 latency µs")]
    } else if scenario.starts_with("pg-") {
        vec![("rps", "transactions/s"), ("p99_us", "p99 latency µs")]
    } else {
        vec![
            ("cpu_us_per_req", "proxy CPU µs/request"),
            ("rps", "requests/s"),
        ]
    }
}

fn fmt(v: Option<f64>) -> String {
    match v {
        None => "–".to_string(),
        Some(x) if x >= 1000.0 => format!("{x:.0}"),
        Some(x) if x >= 100.0 => format!("{x:.0}"),
        Some(x) => format!("{x:.1}"),
    }
}

fn table(groups: &[Group]) -> String {
    let mut out = String::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for g in groups {
        if !scenarios.contains(&g.scenario.as_str()) {
            scenarios.push(&g.scenario);
        }
    }
    for scenario in scenarios {
        let _ = writeln!(out, "\n**{scenario}**\n");
        if scenario.starts_with("pg-") {
            let _ = writeln!(
                out,
                "| target | clients | tps | p50 ms | p95 ms | p99 ms | max ms | failures | runs (void) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            );
        } else if scenario.starts_with("idle") {
            let _ = writeln!(
                out,
                "| proxy | connections | RSS before → after KiB | KiB/connection | runs (void) | notes |\n|---|---:|---:|---:|---:|---|"
            );
        } else {
            let _ = writeln!(
                out,
                "| proxy | req/s | CPU µs/req | p50 µs | p99 µs | p99.9 µs | RSS MiB | runs (void) | notes |\n|---|---:|---:|---:|---:|---:|---:|---:|---|"
            );
        }
        for g in groups.iter().filter(|g| g.scenario == scenario) {
            if let Some(why) = &g.skipped {
                let _ = writeln!(out, "| {} | skipped: {why} |", g.proxy);
                continue;
            }
            let runs = format!("{} ({})", g.runs, g.void);
            let notes = g.notes.join("; ");
            if scenario.starts_with("pg-") {
                let ms = |k: &str| fmt(g.get(k).map(|v| v / 1000.0));
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {runs} |",
                    g.proxy,
                    notes,
                    fmt(g.get("rps")),
                    ms("p50_us"),
                    ms("p95_us"),
                    ms("p99_us"),
                    ms("max_us"),
                    fmt(g.get("errors")),
                );
            } else if scenario.starts_with("idle") {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {runs} | {notes} |",
                    g.proxy,
                    fmt(g.get("completed")),
                    fmt(g.get("rss_kib")),
                    fmt(g.get("per_conn_kib")),
                );
            } else {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} | {} | {} | {} | {} | {runs} | {notes} |",
                    g.proxy,
                    fmt(g.get("rps")),
                    fmt(g.get("cpu_us_per_req")),
                    fmt(g.get("p50_us")),
                    fmt(g.get("p99_us")),
                    fmt(g.get("p999_us")),
                    fmt(g.get("rss_kib").map(|k| k / 1024.0)),
                );
            }
        }
    }
    out
}

fn ratio_line(
    out: &mut String,
    label: &str,
    num: Option<f64>,
    den: Option<f64>,
    goal: &str,
    ok: impl Fn(f64) -> bool,
) {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 => {
            let r = n / d;
            let _ = writeln!(
                out,
                "- {label}: {r:.2} ({} / {}) — goal {goal}: {}",
                fmt(Some(n)),
                fmt(Some(d)),
                if ok(r) { "met" } else { "NOT met" }
            );
        }
        _ => {
            let _ = writeln!(out, "- {label}: not measured");
        }
    }
}

fn reuse_from_notes(g: &Group) -> Option<f64> {
    g.notes.iter().find_map(|n| {
        n.split(';')
            .find_map(|part| part.trim().strip_prefix("reuse="))
            .and_then(|v| v.trim_end_matches('%').parse::<f64>().ok())
    })
}

fn ratios(groups: &[Group]) -> String {
    let mut out = String::new();
    let cpu = |s: &str, p: &str| find(groups, s, p).and_then(|g| g.get("cpu_us_per_req"));
    let measured = |p: &str| groups.iter().any(|g| g.proxy == p && g.skipped.is_none());
    // The plain build always has its lines ("not measured" when absent); the profile-guided
    // one (`perf/run.sh --pgo`) only when the run had it, against both floors: bare Pingora
    // as built by default, and bare Pingora built with the same profile.
    let builds: Vec<&str> = std::iter::once("edge")
        .chain(measured("edge-pgo").then_some("edge-pgo"))
        .collect();
    for scenario in ["h1-tls", "h2-tls"] {
        for &edge in &builds {
            let mut floors = vec![("pingora", "bare Pingora")];
            if edge == "edge-pgo" && measured("pingora-pgo") {
                floors.push(("pingora-pgo", "bare Pingora PGO"));
            }
            for (floor, name) in floors {
                ratio_line(
                    &mut out,
                    &format!("{scenario} CPU/request {edge} ÷ {name}"),
                    cpu(scenario, edge),
                    cpu(scenario, floor),
                    "≤ 1.05",
                    |r| r <= 1.05,
                );
            }
            ratio_line(
                &mut out,
                &format!("{scenario} CPU/request {edge} ÷ nginx"),
                cpu(scenario, edge),
                cpu(scenario, "nginx"),
                "≤ 1.0",
                |r| r <= 1.0,
            );
            ratio_line(
                &mut out,
                &format!("{scenario} CPU/request {edge} ÷ Envoy"),
                cpu(scenario, edge),
                cpu(scenario, "envoy"),
                "≤ 0.8",
                |r| r <= 0.8,
            );
            let best_peer = ["nginx", "haproxy", "envoy", "caddy"]
                .iter()
                .filter_map(|p| cpu(scenario, p).map(|c| (*p, c)))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((peer, c)) = best_peer {
                ratio_line(
                    &mut out,
                    &format!("{scenario} CPU/request {edge} ÷ best peer ({peer})"),
                    cpu(scenario, edge),
                    Some(c),
                    "≤ 0.9 (PERF-TARGETS)",
                    |r| r <= 0.9,
                );
            }
        }
    }
    for &edge in &builds {
        ratio_line(
            &mut out,
            &format!("{edge} h3 ÷ {edge} h2 CPU/request"),
            cpu("h3", edge),
            cpu("h2-tls", edge),
            "≤ 1.0 (issue 16)",
            |r| r <= 1.0,
        );
    }
    ratio_line(
        &mut out,
        "edge cache HIT ÷ proxied h2 request CPU/request",
        cpu("cache-hit", "edge"),
        cpu("h2-tls", "edge"),
        "< 1.0",
        |r| r < 1.0,
    );
    ratio_line(
        &mut out,
        "JWT + rate-limit chain on ÷ off CPU/request",
        cpu("chain", "edge-chain-on"),
        cpu("chain", "edge-chain-off"),
        "≤ 1.10",
        |r| r <= 1.10,
    );
    for &edge in &builds {
        ratio_line(
            &mut out,
            &format!("gRPC unary CPU/request {edge} ÷ Envoy"),
            cpu("grpc", edge),
            cpu("grpc", "envoy"),
            "(no goal)",
            |_| true,
        );
    }
    let latency_proxies = [
        "edge",
        "edge-pgo",
        "pingora",
        "pingora-pgo",
        "nginx",
        "haproxy",
        "envoy",
        "caddy",
    ];
    for (scenario, proxy) in ["open-loop-2k", "fixed-rate-2k"]
        .iter()
        .flat_map(|s| latency_proxies.map(|p| (*s, p)))
    {
        let direct = find(groups, scenario, "direct");
        let added_over_direct = |proxy: &str, key: &str| {
            let (d, p) = (direct?, find(groups, scenario, proxy)?);
            Some(p.get(key)? - d.get(key)?)
        };
        if let (Some(d), Some(_)) = (direct, find(groups, scenario, proxy)) {
            let added = |k: &str| {
                added_over_direct(proxy, k).map_or_else(|| "–".into(), |v| format!("{v:.0}"))
            };
            // k6 shares CPU 0 with the backend and cannot hold 2k req/s there: its own
            // scheduling delay (tens of ms at p99, direct included) swamps what a proxy adds,
            // so only h2load's fixed-rate run is held against the goal.
            let verdict = if builds.contains(&proxy) && scenario == "open-loop-2k" {
                match d.get("p99_us") {
                    Some(v) => format!(
                        " — not judged: k6 is CPU-starved here (direct's own p99 {v:.0} µs); see fixed-rate-2k"
                    ),
                    None => String::new(),
                }
            } else if builds.contains(&proxy) {
                // Issue 13 item 4: p50 added ≤ 100 µs, p99 added ≤ nginx's in the same run.
                let met = |ok: bool| if ok { "met" } else { "NOT met" };
                let p50 = added_over_direct(proxy, "p50_us");
                let p99 = added_over_direct(proxy, "p99_us");
                let nginx_p99 = added_over_direct("nginx", "p99_us");
                match (p50, p99, nginx_p99) {
                    (Some(p50), Some(p99), Some(nginx)) => format!(
                        " — goal p50 added ≤ 100 µs: {}; p99 added ≤ nginx's ({nginx:.0} µs): {}",
                        met(p50 <= 100.0),
                        met(p99 <= nginx)
                    ),
                    (Some(p50), _, None) => format!(
                        " — goal p50 added ≤ 100 µs: {}; p99 not judged (no nginx in this run)",
                        met(p50 <= 100.0)
                    ),
                    _ => String::new(),
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "- {scenario}, {proxy} added latency over direct: p50 {} µs, p99 {} µs, p99.9 {} µs{verdict}",
                added("p50_us"),
                added("p99_us"),
                added("p999_us"),
            );
        }
    }
    let reuse: Vec<f64> = groups
        .iter()
        .filter(|g| g.proxy.starts_with("edge"))
        .filter_map(reuse_from_notes)
        .collect();
    if let Some(min) = reuse.iter().copied().reduce(f64::min) {
        let _ = writeln!(
            out,
            "- edge backend connection reuse (lowest of all edge runs): {min:.3} % — goal ≥ 99.9 %: {}",
            if min >= 99.9 { "met" } else { "NOT met" }
        );
    }
    for (scenario, &edge) in ["idle-1k", "idle-5k"]
        .iter()
        .flat_map(|s| builds.iter().map(move |e| (*s, e)))
    {
        if let Some(kib) = find(groups, scenario, edge).and_then(|g| g.get("per_conn_kib")) {
            let _ = writeln!(
                out,
                "- {scenario} {edge} RSS per idle connection: {kib:.1} KiB — target ≤ 40 KiB: {}",
                if kib <= 40.0 { "met" } else { "NOT met" }
            );
        }
    }
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    scenario: &str,
    groups: &[&Group],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(|e| anyhow!("{e:?}"))?;
    let title = root
        .titled(&format!("{scenario} (medians)"), ("sans-serif", 22))
        .map_err(|e| anyhow!("{e:?}"))?;
    let metrics = primary_metrics(scenario);
    let panels = title.split_evenly((1, metrics.len()));
    let colors = [
        RGBColor(0xd9, 0x48, 0x1c),
        RGBColor(0x1f, 0x77, 0xb4),
        RGBColor(0x2c, 0xa0, 0x2c),
        RGBColor(0x94, 0x67, 0xbd),
        RGBColor(0x8c, 0x56, 0x4b),
        RGBColor(0x7f, 0x7f, 0x7f),
        RGBColor(0xbc, 0xbd, 0x22),
        RGBColor(0x17, 0xbe, 0xcf),
    ];
    for (panel, (key, label)) in panels.iter().zip(metrics) {
        let bars: Vec<(&str, f64)> = groups
            .iter()
            .filter_map(|g| g.get(key).map(|v| (g.proxy.as_str(), v)))
            .collect();
        if bars.is_empty() {
            continue;
        }
        let max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.15;
        let n = bars.len();
        let names: Vec<String> = bars.iter().map(|b| b.0.to_string()).collect();
        let mut chart = ChartBuilder::on(panel)
            .margin(12)
            .caption(label, ("sans-serif", 16))
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..max)
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 0.01 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 12))
            .draw()
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let color = colors[i % colors.len()];
                Rectangle::new(
                    [(i as f64 + 0.15, 0.0), (i as f64 + 0.85, *v)],
                    color.filled(),
                )
            }))
            .map_err(|e| anyhow!("{e:?}"))?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(
                    fmt(Some(*v)),
                    (i as f64 + 0.3, *v + max * 0.02),
                    ("sans-serif", 12),
                )
            }))
            .map_err(|e| anyhow!("{e:?}"))?;
    }
    root.present().map_err(|e| anyhow!("{e:?}"))?;
    Ok(())
}

fn write_png(path: &Path, width: u32, height: u32, rgb: &[u8]) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut encoder = png::Encoder::new(std::io::BufWriter::new(file), width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.write_header()?.write_image_data(rgb)?;
    Ok(())
}

fn charts(groups: &[Group], out_dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut scenarios: Vec<&str> = Vec::new();
    for g in groups {
        if !scenarios.contains(&g.scenario.as_str()) {
            scenarios.push(&g.scenario);
        }
    }
    for scenario in scenarios {
        let members: Vec<&Group> = groups
            .iter()
            .filter(|g| g.scenario == scenario && g.skipped.is_none() && !g.median.is_empty())
            .collect();
        if members.is_empty() {
            continue;
        }
        let (w, h) = (1000u32, 420u32);
        let svg = out_dir.join(format!("{stem}-{scenario}.svg"));
        draw(
            SVGBackend::new(&svg, (w, h)).into_drawing_area(),
            scenario,
            &members,
        )?;
        let mut buffer = vec![0u8; (w * h * 3) as usize];
        draw(
            BitMapBackend::with_buffer(&mut buffer, (w, h)).into_drawing_area(),
            scenario,
            &members,
        )?;
        let png = out_dir.join(format!("{stem}-{scenario}.png"));
        write_png(&png, w, h, &buffer)?;
        written.push(png);
        written.push(svg);
    }
    Ok(written)
}

fn update_readme(readme: &Path, section: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(readme).with_context(|| format!("reading {}", readme.display()))?;
    let (start, end) = ("<!-- results:start -->", "<!-- results:end -->");
    let (Some(a), Some(b)) = (text.find(start), text.find(end)) else {
        bail!("{} has no {start} … {end} section", readme.display());
    };
    let updated = format!("{}{start}\n{section}\n{}", &text[..a], &text[b..]);
    std::fs::write(readme, updated)?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let font = std::fs::read(&args.font).with_context(|| {
        format!(
            "reading the chart font {} (Debian: apt-get install fonts-dejavu-core)",
            args.font.display()
        )
    })?;
    plotters::style::register_font(
        "sans-serif",
        FontStyle::Normal,
        Box::leak(font.into_boxed_slice()),
    )
    .map_err(|_| anyhow!("{} is not a usable TrueType font", args.font.display()))?;
    let (date, host, rows) = read_rows(&args.csv)?;
    let groups = group(&rows);
    std::fs::create_dir_all(&args.out_dir)?;
    let stem = args
        .csv
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("results")
        .to_string();
    let files = charts(&groups, &args.out_dir, &stem)?;
    let tables = table(&groups);
    let ratio_text = ratios(&groups);
    let chart_links: String = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "png"))
        .filter_map(|f| f.file_name().and_then(|n| n.to_str()))
        .map(|n| {
            format!(
                "[{}](results/{n}) ",
                n.trim_start_matches(&format!("{stem}-"))
            )
        })
        .collect();
    let section = format!(
        "Latest run: **{date}** on `{host}` — {machine}\n\nCommand: `{command}` · raw data: \
         [`results/{stem}.csv`](results/{stem}.csv) · charts: {chart_links}\n\n\
         Medians of the valid runs; \"runs (void)\" counts all runs and, in brackets, those void \
         (non-2xx or errors) and left out.\n{tables}\n### Ratios against the goals (issues 7, 13 and 16)\n\n{ratio_text}",
        machine = args.machine,
        command = args.command,
    );
    // The section's links are relative to perf/README.md; the summary sits beside the CSV
    // and the charts, in the results directory itself.
    let summary = args.out_dir.join(format!("{stem}-summary.md"));
    std::fs::write(&summary, section.replace("](results/", "]("))?;
    println!("{tables}\nRatios:\n{ratio_text}");
    println!("summary: {}", summary.display());
    for f in &files {
        println!("chart: {}", f.display());
    }
    if let Some(readme) = &args.readme {
        update_readme(readme, &section)?;
        println!("updated {}", readme.display());
    }
    Ok(())
}

#[cfg(test)]
#[path = "perf-chart/tests.rs"]
mod tests;
