//! `careid detect`: misuse detection over an organisation's own audit export, offline, and
//! `careid bench detect`: its speed on a synthetic month beside raw JSON parsing, with the
//! month's planted cases scored.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use careid_detect::reference::{Reference, ReferencePaths};
use careid_detect::{Alert, Counts, Progress};
use clap::Args;

#[derive(Debug, Args)]
pub struct DetectArgs {
    /// FHIR R4 AuditEvent resources, one JSON object a line (a clinical system's export, or
    /// careid's own `careid ra audit --fhir`).
    #[arg(long)]
    events: PathBuf,
    /// Staff: uid,given,family,org,role_code,role_name,address,postcode (and optionally left,
    /// the day they left).
    #[arg(long)]
    staff: PathBuf,
    /// Rostered shifts: uid,date,start,end (UK local time; a shift ending before it starts ends
    /// the next day).
    #[arg(long)]
    roster: Option<PathBuf>,
    /// Leave and sickness: uid,start,end,kind (days inclusive).
    #[arg(long)]
    leave: Option<PathBuf>,
    /// Patients: nhs_number,given,family,address,postcode,registered_org,vip (1 or 0).
    #[arg(long)]
    patients: Option<PathBuf>,
    /// Where to write the alerts (a JSON array).
    #[arg(long)]
    out: PathBuf,
}

/// Draws a progress line on the terminal, at most a few times a second.
struct ProgressBar {
    started: Instant,
    last: Instant,
    shown: bool,
}

impl ProgressBar {
    fn new() -> Option<ProgressBar> {
        let now = Instant::now();
        std::io::stderr().is_terminal().then_some(ProgressBar { started: now, last: now, shown: false })
    }

    fn update(&mut self, p: Progress) {
        if self.last.elapsed().as_millis() < 200 {
            return;
        }
        self.last = Instant::now();
        self.shown = true;
        let share = if p.total == 0 { 1.0 } else { p.bytes as f64 / p.total as f64 };
        let width = 30;
        let filled = ((share * f64::from(width)) as u32).min(width);
        let rate = p.events as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {:>3.0}%  {} events  {:.0}/s ",
            "#".repeat(filled as usize),
            " ".repeat((width - filled) as usize),
            share * 100.0,
            p.events,
            rate
        );
        let _ = std::io::stderr().flush();
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}

pub fn run(args: &DetectArgs) -> anyhow::Result<()> {
    let reference = Reference::load(&ReferencePaths {
        staff: args.staff.clone(),
        roster: args.roster.clone(),
        leave: args.leave.clone(),
        patients: args.patients.clone(),
    })?;
    let mut bar = ProgressBar::new();
    let (alerts, counts) = careid_detect::detect_file(&args.events, &reference, &mut |p| {
        if let Some(bar) = &mut bar {
            bar.update(p);
        }
    })?;
    if let Some(bar) = &bar {
        bar.finish();
    }
    write_alerts(&args.out, &alerts)?;
    for line in summary(&alerts, &counts) {
        println!("{line}");
    }
    println!("alerts written to {}", args.out.display());
    Ok(())
}

fn write_alerts(out: &Path, alerts: &[Alert]) -> anyhow::Result<()> {
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut writer = std::io::BufWriter::new(file);
    let json: Vec<serde_json::Value> = alerts.iter().map(careid_detect::alert_json).collect();
    serde_json::to_writer_pretty(&mut writer, &json)?;
    writer.write_all(b"\n")?;
    writer.flush()?;
    Ok(())
}

fn summary(alerts: &[Alert], counts: &Counts) -> Vec<String> {
    let mut lines = vec![format!("{} events read, {} used", counts.read, counts.used())];
    lines.extend(careid_detect::skipped_summary(counts));
    if counts.unknown_users > 0 {
        lines.push(format!("{} events by users not in the staff file (workstation rules only)", counts.unknown_users));
    }
    if counts.out_of_order > 0 {
        lines.push(format!(
            "{} events out of time order by more than five minutes: sort the export by time for the window rules",
            counts.out_of_order
        ));
    }
    let queued = alerts.iter().filter(|a| a.severity.queued()).count();
    lines.push(format!(
        "{queued} alerts for the queue (medium and high), {} low kept as context",
        alerts.len() - queued
    ));
    let mut by_kind: std::collections::BTreeMap<(&str, &str), usize> = std::collections::BTreeMap::new();
    for alert in alerts {
        *by_kind.entry((alert.kind.code(), alert.severity.code())).or_default() += 1;
    }
    for ((kind, severity), n) in by_kind {
        lines.push(format!("  {kind:<24} {severity:<6} {n}"));
    }
    lines
}

/// `careid bench detect`: a synthetic month of `staff` people, generated, parsed raw, then
/// detected; figures and the score printed.
pub fn bench(staff: usize, days: u32, seed: u64, keep: Option<&Path>) -> anyhow::Result<()> {
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.to_owned()
        }
        None => crate::bench::tempfile_dir()?,
    };
    println!("careid bench detect: a synthetic month, {staff} staff, {days} days, seed {seed}");
    let started = Instant::now();
    let month =
        careid_detect::synth::generate(&careid_detect::synth::Plan { seed, staff, days, ..Default::default() }, &dir)?;
    let events_path = dir.join("events.ndjson");
    let size = std::fs::metadata(&events_path)?.len();
    println!(
        "  generated {} events ({:.1} GB) and {} planted cases in {:.1} s",
        month.events,
        size as f64 / 1e9,
        month.cases.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let parsed = careid_detect::parse_only(std::fs::File::open(&events_path)?)?;
    let raw = started.elapsed().as_secs_f64();
    println!(
        "  raw JSON parsing (every line, into nothing): {parsed} lines in {raw:.1} s, {:.0} lines/s",
        parsed as f64 / raw
    );

    let started = Instant::now();
    let reference = Reference::load(&ReferencePaths {
        staff: dir.join("staff.csv"),
        roster: Some(dir.join("roster.csv")),
        leave: Some(dir.join("leave.csv")),
        patients: Some(dir.join("patients.csv")),
    })?;
    let load = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let (alerts, counts) = careid_detect::detect_file(&events_path, &reference, &mut |_| {})?;
    let detect = started.elapsed().as_secs_f64();
    println!(
        "  careid detect: {} events in {detect:.1} s, {:.0} events/s ({:.2}x raw parsing); reference files loaded in {load:.1} s",
        counts.read,
        counts.read as f64 / detect,
        detect / raw
    );
    println!(
        "    of which parsing lines on every core {:.1} s, judging events on one {:.1} s, reading the file the rest",
        counts.parsing.as_secs_f64(),
        counts.judging.as_secs_f64()
    );
    let per_10m = detect * 10e6 / counts.read.max(1) as f64;
    println!("  projected for 10 million events: {per_10m:.0} s (target: under 60 s)");
    let score = careid_detect::score::score(&alerts, &month.cases, month.staff, month.days);
    println!("  score: {}", score.summary());
    for case in &score.missed {
        println!("    missed: {} {} ({})", case.kind.code(), case.uid, case.what);
    }
    let mut false_by_kind: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for alert in &score.false_alerts {
        *false_by_kind.entry(alert.kind.code()).or_default() += 1;
    }
    for (kind, n) in &false_by_kind {
        println!("    false {kind}: {n}");
    }
    for alert in score.false_alerts.iter().take(5) {
        println!(
            "    false: {} {} {:?}: {}",
            alert.kind.code(),
            alert.severity.code(),
            alert.subjects,
            alert.explanation
        );
    }
    if keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}
