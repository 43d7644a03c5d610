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

/// Runs the detector over a file of events, one JSON `AuditEvent` a line. Each chunk is
/// parsed on every core while the detector judges the chunk before it.
pub fn detect_file(
    events: &Path,
    reference: &Reference,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Vec<Alert>, Counts), InputError> {
    let io = |error| InputError::Io { file: events.to_owned(), error };
    let file = std::fs::File::open(events).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut detector = Detector::new(reference);
    let mut bytes = 0u64;
    // Two buffers in turn: one judged while the other is parsed.
    let (mut a, mut b) = (Vec::with_capacity(CHUNK + (1 << 16)), Vec::with_capacity(CHUNK + (1 << 16)));
    fill_chunk(&mut input, &mut a).map_err(io)?;
    let mut parsed_a = parse_chunk(&a);
    loop {
        bytes += a.len() as u64;
        fill_chunk(&mut input, &mut b).map_err(io)?;
        let parsed_b = judge_while_parsing(&mut detector, parsed_a, &b);
        progress(Progress { bytes, total, events: detector.counts.read });
        if b.is_empty() {
            break;
        }
        bytes += b.len() as u64;
        fill_chunk(&mut input, &mut a).map_err(io)?;
        parsed_a = judge_while_parsing(&mut detector, parsed_b, &a);
        progress(Progress { bytes, total, events: detector.counts.read });
        if a.is_empty() {
            break;
        }
    }
    Ok(detector.finish())
}

type Parsed<'a> = Vec<Result<fhir::Event<'a>, fhir::Skip>>;

/// Judges `parsed` on this thread while `next` is parsed on the others.
fn judge_while_parsing<'n>(detector: &mut Detector<'_>, parsed: Parsed<'_>, next: &'n [u8]) -> Parsed<'n> {
    std::thread::scope(|scope| {
        let parsing = scope.spawn(|| {
            let started = std::time::Instant::now();
            let parsed = parse_chunk(next);
            (parsed, started.elapsed())
        });
        let started = std::time::Instant::now();
        for event in parsed {
            match event {
                Ok(event) => detector.observe(&event),
                Err(skip) => detector.skip(skip),
            }
        }
        detector.counts.judging += started.elapsed();
        let (parsed, took) = parsing.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        detector.counts.parsing += took;
        parsed
    })
}

/// Reads about `CHUNK` bytes of whole lines into `buffer` (empty at the end of the input).
fn fill_chunk(input: &mut impl BufRead, buffer: &mut Vec<u8>) -> std::io::Result<()> {
    buffer.clear();
    while buffer.len() < CHUNK {
        if input.read_until(b'\n', buffer)? == 0 {
            break;
        }
    }
    Ok(())
}

/// A chunk's lines, without their line ends, blank lines dropped.
fn lines_of(buffer: &[u8]) -> Vec<&[u8]> {
    buffer
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect()
}

fn parse_chunk(buffer: &[u8]) -> Parsed<'_> {
    parse_lines(&lines_of(buffer))
}

/// Calls `f` with the lines of each chunk of the input (without their line ends, blank
/// lines dropped).
pub fn each_chunk(mut input: impl BufRead, mut f: impl FnMut(&[&[u8]])) -> std::io::Result<()> {
    let mut buffer = Vec::with_capacity(CHUNK + (1 << 16));
    loop {
        fill_chunk(&mut input, &mut buffer)?;
        if buffer.is_empty() {
            return Ok(());
        }
        f(&lines_of(&buffer));
    }
}

/// `f` over every line on every core, keeping their order. A panic in a worker is a bug and
/// goes on up: no line is ever dropped in silence.
fn on_every_core<'a, T: Send>(lines: &[&'a [u8]], f: impl Fn(&'a [u8]) -> T + Sync) -> Vec<T> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    if threads == 1 || lines.len() < 1024 {
        return lines.iter().map(|l| f(l)).collect();
    }
    let per = lines.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> =
            lines.chunks(per).map(|part| scope.spawn(move || part.iter().map(|l| f(l)).collect::<Vec<_>>())).collect();
        parts.into_iter().flat_map(|p| p.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))).collect()
    })
}

/// Parses lines on every core, keeping their order.
pub fn parse_lines<'a>(lines: &[&'a [u8]]) -> Vec<Result<fhir::Event<'a>, fhir::Skip>> {
    on_every_core(lines, |line| std::str::from_utf8(line).map_err(|_| fhir::Skip::NotJson).and_then(fhir::parse))
}

/// Reads every line as JSON and nothing more: the floor `careid bench detect` compares with.
pub fn parse_only(input: impl Read) -> std::io::Result<u64> {
    let mut count = 0u64;
    each_chunk(BufReader::with_capacity(1 << 20, input), |lines| {
        let parsed = on_every_core(lines, |l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok());
        count += parsed.into_iter().filter(|ok| *ok).count() as u64;
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
