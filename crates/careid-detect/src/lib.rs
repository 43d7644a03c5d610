//! Misuse detection over an organisation's audit export (`careid detect`): FHIR `AuditEvent`
//! lines streamed in bounded memory, parsed on every core, judged in order by the same rules
//! careid applies live (`careid_domain::detect`), with its staff, roster, leave and patient
//! files; and the synthetic months with planted cases that score it.
//!
//! **Architecture Invariant:** no network, no store, no clock: files in, alerts out.

pub mod engine;
pub mod fhir;
pub mod reference;
pub mod score;
pub mod synth;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use serde_json::{Value, json};

pub use engine::{Alert, Counts, Detector};
pub use reference::{InputError, Reference, ReferencePaths};

/// Bytes of events read and parsed at a time: memory stays near this however long the file.
const CHUNK: usize = 8 << 20;

/// How far a run has got, for a progress bar.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub bytes: u64,
    pub total: u64,
    pub events: u64,
}

/// Runs the detector over a file of events, one JSON `AuditEvent` a line.
pub fn detect_file(
    events: &Path,
    reference: &Reference,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<Alert>, Counts), InputError> {
    let io = |error| InputError::Io { file: events.to_owned(), error };
    let file = std::fs::File::open(events).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut detector = Detector::new(reference);
    let mut bytes = 0u64;
    each_chunk(BufReader::with_capacity(1 << 20, file), |lines| {
        bytes += lines.iter().map(|l| l.len() as u64 + 1).sum::<u64>();
        for parsed in parse_lines(lines) {
            match parsed {
                Ok(event) => detector.observe(&event),
                Err(skip) => detector.skip(skip),
            }
        }
        progress(Progress { bytes, total, events: detector.counts.read });
    })
    .map_err(io)?;
    Ok(detector.finish())
}

/// Calls `f` with the lines of each chunk of the input (without their line ends, blank
/// lines dropped).
pub fn each_chunk(mut input: impl BufRead, mut f: impl FnMut(&[&[u8]])) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(CHUNK + (1 << 16));
    loop {
        buffer.clear();
        while buffer.len() < CHUNK {
            if input.read_until(b'\n', &mut buffer)? == 0 {
                break;
            }
        }
        if buffer.is_empty() {
            return Ok(());
        }
        let lines: Vec<&[u8]> = buffer
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .collect();
        f(&lines);
    }
}

/// Parses lines on every core, keeping their order.
pub fn parse_lines<'a>(lines: &[&'a [u8]]) -> Vec<Result<fhir::Event<'a>, fhir::Skip>> {
    let parse = |line: &'a [u8]| std::str::from_utf8(line).map_err(|_| fhir::Skip::NotJson).and_then(fhir::parse);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    if threads == 1 || lines.len() < 1024 {
        return lines.iter().map(|l| parse(l)).collect();
    }
    let per = lines.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = lines
            .chunks(per)
            .map(|part| scope.spawn(move || part.iter().map(|l| parse(l)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_default()).collect()
    })
}

/// Reads every line as JSON and nothing more: the floor `careid bench detect` compares with.
pub fn parse_only(input: impl Read) -> std::io::Result<u64> {
    let mut count = 0u64;
    each_chunk(BufReader::with_capacity(1 << 20, input), |lines| {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
        let per = lines.len().div_ceil(threads).max(1);
        count += std::thread::scope(|scope| {
            let parts: Vec<_> = lines
                .chunks(per)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter().filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok()).count()
                            as u64
                    })
                })
                .collect();
            parts.into_iter().map(|p| p.join().unwrap_or_default()).sum::<u64>()
        });
    })?;
    Ok(count)
}

/// An alert as `alerts.json` writes it.
pub fn alert_json(alert: &Alert) -> Value {
    let time = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    json!({
        "id": alert.id,
        "kind": alert.kind.code(),
        "severity": alert.severity.code(),
        "subjects": alert.subjects,
        "events": alert.events,
        "from": time(alert.from),
        "to": time(alert.to),
        "explanation": alert.explanation,
    })
}

/// What a run skipped, one line a reason, for the summary.
pub fn skipped_summary(counts: &Counts) -> Vec<String> {
    counts.skipped.iter().map(|(skip, n)| format!("{n} skipped: {}", skip.reason())).collect()
}
