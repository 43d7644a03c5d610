//! The audit log's bytes: the canonical encoding of an audit event, its RFC 6962 leaf hash, and
//! the hash chain that links each record to every one before it. No I/O.
//!
//! The encoding is line-oriented UTF-8 text, one `name value` pair a line, in a fixed order,
//! absent fields omitted, values escaped so that a line never breaks (see
//! `docs/design/audit-log.md`). The same event always encodes to the same bytes.

pub mod index;
pub mod merkle;
pub mod note;
pub mod tiles;
pub mod verify;
pub mod witness;

use careid_domain::audit::{AuditEvent, AuditRecord};
use sha2::{Digest, Sha256};

/// The first line of every entry: names the format and its version.
pub const ENTRY_HEADER: &str = "careid-audit/v1";

/// The chain hash before the first record.
pub const GENESIS: [u8; 32] = [0; 32];

/// Appends `value` escaped so that it never breaks its line.
fn push_escaped(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'\n' | b'\r')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ => out.push(c),
        }
    }
}

fn unescape(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// RFC 3339 with microseconds, always UTC: `2026-11-23T18:21:39.123456Z`.
pub fn format_time(at: time::OffsetDateTime) -> String {
    let mut out = String::with_capacity(27);
    push_time(&mut out, at);
    out
}

fn push_time(out: &mut String, at: time::OffsetDateTime) {
    use std::fmt::Write;
    let at = at.to_offset(time::UtcOffset::UTC);
    let _ = write!(
        out,
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.microsecond()
    );
}

/// Encodes an event canonically. Names in `detail` must be lower-case words; values are escaped.
/// Written straight into one buffer: every write to the log encodes its records while it
/// holds the writer.
pub fn encode(event: &AuditEvent) -> Vec<u8> {
    let mut out = String::with_capacity(512);
    out.push_str(ENTRY_HEADER);
    out.push_str("\nat ");
    push_time(&mut out, event.at);
    let put = |out: &mut String, name: &str, value: &str| {
        out.push('\n');
        out.push_str(name);
        out.push(' ');
        push_escaped(out, value);
    };
    put(&mut out, "request", &event.request_id);
    if let Some(p) = &event.actor.person {
        put(&mut out, "actor.person", p.as_str());
    }
    if let Some(a) = &event.actor.assignment {
        put(&mut out, "actor.assignment", &a.to_string());
    }
    if let Some(r) = &event.actor.role {
        put(&mut out, "actor.role", r);
    }
    if let Some(o) = &event.actor.org {
        put(&mut out, "actor.org", o.as_str());
    }
    put(&mut out, "actor.auth", event.actor.auth);
    if let Some(s) = &event.actor.session {
        put(&mut out, "actor.session", s);
    }
    put(&mut out, "action", event.action.code());
    put(&mut out, "subject", event.subject_kind);
    out.push(' ');
    push_escaped(&mut out, &event.subject_id);
    if let Some(p) = &event.subject_person {
        put(&mut out, "subject.person", p.as_str());
    }
    for o in &event.orgs {
        put(&mut out, "org", o.as_str());
    }
    put(&mut out, "outcome", event.outcome.code());
    if let Some(rule) = event.outcome.rule() {
        put(&mut out, "rule", rule);
    }
    if let Some(w) = &event.workstation {
        put(&mut out, "workstation", w);
    }
    for (name, value) in &event.detail {
        out.push_str("\ndetail.");
        out.push_str(name);
        out.push(' ');
        push_escaped(&mut out, value);
    }
    out.push('\n');
    out.into_bytes()
}

/// The `detail.orgs` value of an `audit.annotate` record: `seq:ORG` pairs, space-separated.
pub fn format_annotation(pairs: &[(u64, careid_domain::ids::OdsCode)]) -> String {
    let mut out = String::with_capacity(pairs.len() * 12);
    for (i, (seq, org)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{seq}:{org}"));
    }
    out
}

/// The pairs an `audit.annotate` record names, or `None` if its value is not such a list.
pub fn parse_annotation(value: &str) -> Option<Vec<(u64, String)>> {
    value
        .split(' ')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (seq, org) = pair.split_once(':')?;
            Some((seq.parse().ok()?, org.to_owned()))
        })
        .collect()
}

/// An entry read back: its fields in order, values unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fields: Vec<(String, String)>,
}

impl Entry {
    /// The first value of a field.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why bytes are not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("entry does not start with {ENTRY_HEADER}")]
    Header,
    #[error("entry is not UTF-8 text")]
    NotText,
    #[error("line {0} is not a `name value` pair")]
    Line(usize),
}

pub fn decode(entry: &[u8]) -> Result<Entry, DecodeError> {
    let fields = lines(entry)?
        .map(|line| {
            let (number, name, value) = line?;
            Ok((name.to_owned(), unescape(value).ok_or(DecodeError::Line(number))?))
        })
        .collect::<Result<_, _>>()?;
    Ok(Entry { fields })
}

/// Whether `entry` decodes, and if not why, as `decode` would say, without building it. A
/// verifier runs this on every record of a log, so it allocates nothing, and an entry with no
/// backslash (nearly every one) is checked eight bytes at a time.
pub fn check_entry(entry: &[u8]) -> Result<(), DecodeError> {
    if !entry.is_ascii() {
        std::str::from_utf8(entry).map_err(|_| DecodeError::NotText)?;
    }
    let fields = match entry.strip_prefix(ENTRY_HEADER.as_bytes()) {
        Some([]) => return Ok(()),
        Some([b'\n', fields @ ..]) => fields,
        _ => return Err(DecodeError::Header),
    };
    if memchr::memchr(b'\\', fields).is_some() {
        // Escapes to check (rare): line by line, as `decode` reads them.
        return lines(entry)?.try_for_each(|line| line.map(drop));
    }
    every_line_named(fields).map_err(DecodeError::Line)
}

/// The high bit of each byte of `word` that equals `byte` (exactly: no carry crosses a byte).
fn bytes_equal(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let y = word ^ (0x0101_0101_0101_0101 * u64::from(byte));
    !(((y & LOW7) + LOW7) | y | LOW7)
}

/// Every line of `fields` (after the header) has a space after its name; otherwise the
/// number of the first line that has none. Words are read little-endian, so a lower bit is an
/// earlier byte; a short last word is padded with zeros, which are neither space nor newline.
fn every_line_named(fields: &[u8]) -> Result<(), usize> {
    let (mut line, mut named) = (2, false);
    let mut word_of = |word: u64| {
        let (mut newlines, mut spaces) = (bytes_equal(word, b'\n'), bytes_equal(word, b' '));
        while newlines != 0 {
            let this = newlines & newlines.wrapping_neg();
            let before = this - 1;
            if !named && spaces & before == 0 {
                return Err(line);
            }
            (line, named) = (line + 1, false);
            (newlines, spaces) = (newlines & !(this | before), spaces & !(this | before));
        }
        named |= spaces != 0;
        Ok(())
    };
    let mut words = fields.chunks_exact(8);
    for chunk in &mut words {
        word_of(u64::from_le_bytes(chunk.try_into().unwrap_or_default()))?;
    }
    let mut last = [0u8; 8];
    last[..words.remainder().len()].copy_from_slice(words.remainder());
    word_of(u64::from_le_bytes(last))?;
    let unfinished = fields.last().is_some_and(|&byte| byte != b'\n');
    if unfinished && !named {
        return Err(line);
    }
    Ok(())
}

/// An entry's field lines after its header: line number, name, value as escaped.
fn lines(entry: &[u8]) -> Result<impl Iterator<Item = Result<(usize, &str, &str), DecodeError>>, DecodeError> {
    let text = std::str::from_utf8(entry).map_err(|_| DecodeError::NotText)?;
    let mut lines = text.split_terminator('\n');
    if lines.next() != Some(ENTRY_HEADER) {
        return Err(DecodeError::Header);
    }
    Ok(lines.enumerate().map(|(i, line)| {
        let number = i + 2;
        let (name, value) = line.split_once(' ').ok_or(DecodeError::Line(number))?;
        if !well_escaped(value.as_bytes()) {
            return Err(DecodeError::Line(number));
        }
        Ok((number, name, value))
    }))
}

/// Every backslash in `value` starts one of the escapes `unescape` knows.
fn well_escaped(bytes: &[u8]) -> bool {
    let Some(mut i) = memchr::memchr(b'\\', bytes) else {
        return true;
    };
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            if !matches!(bytes.get(i + 1), Some(b'\\' | b'n' | b'r')) {
                return false;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    true
}

/// RFC 6962 leaf hash: SHA-256(0x00 || entry).
pub fn leaf_hash(entry: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(entry);
    h.finalize().into()
}

/// The chain hash of a record: SHA-256("careid-chain" || previous chain hash || leaf hash).
pub fn chain_hash(previous: &[u8; 32], entry: &[u8]) -> [u8; 32] {
    chain_hash_of_leaf(previous, &leaf_hash(entry))
}

/// The chain hash of a record whose leaf hash is already known.
pub fn chain_hash_of_leaf(previous: &[u8; 32], leaf: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"careid-chain");
    h.update(previous);
    h.update(leaf);
    h.finalize().into()
}

/// Where a chain of records stops being what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("record {expected} is missing: the next record found is {found}")]
    Gap { expected: u64, found: u64 },
    #[error("record {seq} does not match its chain hash (edited, or a record before it changed)")]
    HashMismatch { seq: u64 },
    #[error("record {seq} is not a valid entry: {error}")]
    Undecodable { seq: u64, error: DecodeError },
}

/// Checks records in order, starting after `previous` (the chain hash before `records[0]`).
/// Returns the chain hash after the last record.
pub fn verify_chain(previous: [u8; 32], first_seq: u64, records: &[AuditRecord]) -> Result<[u8; 32], ChainError> {
    verify_chain_leaves(previous, first_seq, records).map(|(hash, _)| hash)
}

/// As [`verify_chain`], and also the records' leaf hashes (each hashed once), for a tree.
pub fn verify_chain_leaves(
    previous: [u8; 32],
    first_seq: u64,
    records: &[AuditRecord],
) -> Result<([u8; 32], Vec<[u8; 32]>), ChainError> {
    let mut hash = previous;
    let mut leaves = Vec::with_capacity(records.len());
    for (expected, record) in (first_seq..).zip(records) {
        if record.seq != expected {
            return Err(ChainError::Gap { expected, found: record.seq });
        }
        decode(&record.entry).map_err(|error| ChainError::Undecodable { seq: record.seq, error })?;
        let leaf = leaf_hash(&record.entry);
        hash = chain_hash_of_leaf(&hash, &leaf);
        if hash != record.chain_hash {
            return Err(ChainError::HashMismatch { seq: record.seq });
        }
        leaves.push(leaf);
    }
    Ok((hash, leaves))
}

#[cfg(test)]
mod tests {
    use careid_domain::audit::{Action, AuditActor, Outcome};
    use careid_domain::ids::{OdsCode, PersonUuid};

    use super::*;

    fn event(detail: &str) -> AuditEvent {
        AuditEvent {
            at: time::macros::datetime!(2026-11-23 18:21:39.123456 UTC),
            request_id: "req-1".into(),
            actor: AuditActor::system(),
            action: Action::PersonCreate,
            subject_kind: "person",
            subject_id: "100000000008".into(),
            subject_person: Some(PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap()),
            orgs: vec![OdsCode::parse("F84003").unwrap()],
            outcome: Outcome::Refused { rule: "duplicate_person" },
            detail: vec![("note", detail.into())],
            workstation: None,
        }
    }

    /// The encoding as first written (a line list, joined): the bytes of every record ever
    /// written depend on it, so a faster encoder must give exactly the same.
    fn encode_as_first_written(event: &AuditEvent) -> Vec<u8> {
        let escape = |value: &str| value.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r");
        let mut lines: Vec<(String, String)> = Vec::new();
        let mut put = |name: &str, value: &str| lines.push((name.to_owned(), escape(value)));
        put("at", &format_time(event.at));
        put("request", &event.request_id);
        if let Some(p) = &event.actor.person {
            put("actor.person", p.as_str());
        }
        if let Some(a) = &event.actor.assignment {
            put("actor.assignment", &a.to_string());
        }
        if let Some(r) = &event.actor.role {
            put("actor.role", r);
        }
        if let Some(o) = &event.actor.org {
            put("actor.org", o.as_str());
        }
        put("actor.auth", event.actor.auth);
        if let Some(s) = &event.actor.session {
            put("actor.session", s);
        }
        put("action", event.action.code());
        put("subject", &format!("{} {}", event.subject_kind, event.subject_id));
        if let Some(p) = &event.subject_person {
            put("subject.person", p.as_str());
        }
        for o in &event.orgs {
            put("org", o.as_str());
        }
        put("outcome", event.outcome.code());
        if let Some(rule) = event.outcome.rule() {
            put("rule", rule);
        }
        if let Some(w) = &event.workstation {
            put("workstation", w);
        }
        for (name, value) in &event.detail {
            put(&format!("detail.{name}"), value);
        }
        let mut out = format!("{ENTRY_HEADER}\n");
        for (name, value) in lines {
            out.push_str(&format!("{name} {value}\n"));
        }
        out.into_bytes()
    }

    #[test]
    fn the_encoding_is_byte_for_byte_what_it_always_was() {
        let tricky = ["", "plain", "a \\ b\nc\r", "\\", "\n\n", "caf\u{e9} \u{1f600}", "ends with \\"];
        for (i, value) in tricky.iter().enumerate() {
            let mut full = event(value);
            full.at = time::macros::datetime!(2026-03-29 01:30:00.000001 +01:00);
            full.request_id = format!("req {value}");
            full.actor = AuditActor {
                person: Some(PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + i as u64).unwrap()),
                assignment: Some(careid_domain::ids::AssignmentId(40 + i as i64)),
                role: Some(format!("S8000:G8000:R8000{value}")),
                org: Some(OdsCode::parse("F83001").unwrap()),
                auth: "card",
                session: Some(format!("session{value}")),
            };
            full.subject_id = format!("id {value}");
            full.workstation = Some(format!("ws{value}"));
            full.detail.push(("other", (*value).to_owned()));
            let mut bare = event(value);
            bare.subject_person = None;
            bare.orgs.clear();
            bare.outcome = Outcome::Success;
            bare.detail.clear();
            for e in [&full, &bare, &event(value)] {
                assert_eq!(encode(e), encode_as_first_written(e), "{}", String::from_utf8_lossy(&encode(e)));
                assert!(check_entry(&encode(e)).is_ok());
            }
        }
    }

    #[test]
    fn encoding_is_canonical_and_round_trips() {
        let tricky = "line one\nline two \\ with a backslash\r";
        let bytes = encode(&event(tricky));
        assert_eq!(bytes, encode(&event(tricky)), "same event, same bytes");
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert_eq!(
            text.lines().take(3).collect::<Vec<_>>(),
            ["careid-audit/v1", "at 2026-11-23T18:21:39.123456Z", "request req-1"]
        );
        let entry = decode(&bytes).unwrap();
        assert_eq!(entry.get("detail.note"), Some(tricky));
        assert_eq!(entry.get("outcome"), Some("refused"));
        assert_eq!(entry.get("rule"), Some("duplicate_person"));
        assert_eq!(entry.get("subject"), Some("person 100000000008"));
    }

    #[test]
    fn check_entry_says_what_decode_says() {
        let good = encode(&event("a \\ b\nc"));
        let text = String::from_utf8(good.clone()).unwrap();
        let cases: Vec<Vec<u8>> = vec![
            good.clone(),
            vec![0xff, 0xfe],
            b"careid-audit/v2\nat x\n".to_vec(),
            text.replacen("request req-1", "requestreq-1", 1).into_bytes(),
            text.replacen("request req-1", "request req\\x", 1).into_bytes(),
            text.replacen("request req-1", "request req\\", 1).into_bytes(),
            text.replacen("request req-1", "req\\x req-1", 1).into_bytes(),
            text.replacen("request req-1\n", "request req-1\n\n", 1).into_bytes(),
            format!("{text}last line").into_bytes(),
            format!("{text}last value").into_bytes(),
            format!("{text}last value\\").into_bytes(),
            ENTRY_HEADER.as_bytes().to_vec(),
            text.replacen("request req-1", "request r\u{e9}q-1", 1).into_bytes(),
            text.replacen("request req-1", "r\u{e9}quest req-1", 1).into_bytes(),
            text.replacen("request req-1\n", "request req-1\nnospace\n", 1).into_bytes(),
            text.replace('\\', "").replacen("request req-1\n", "request req-1\nnospace\n", 1).into_bytes(),
            format!("{ENTRY_HEADER}\n").into_bytes(),
            format!("{ENTRY_HEADER}x\nat y\n").into_bytes(),
            Vec::new(),
        ];
        for (i, entry) in cases.iter().enumerate() {
            assert_eq!(check_entry(entry), decode(entry).map(|_| ()), "case {i}");
        }
        // Every byte of a good entry turned into each byte that matters, and the entry cut short
        // at every length: one with escapes, and one without (checked a word at a time).
        let plain = encode(&event("a plain note"));
        assert!(!plain.contains(&b'\\'));
        for good in [&good, &plain] {
            for at in 0..good.len() {
                for byte in [b'\n', b' ', b'\\', b'n', b'x', 0xc3, 0x00] {
                    let mut edited = good.clone();
                    edited[at] = byte;
                    assert_eq!(check_entry(&edited), decode(&edited).map(|_| ()), "{byte} at {at}");
                    // Two bytes, to reach lines next to each other.
                    if at + 1 < good.len() {
                        edited[at + 1] = b'\n';
                        assert_eq!(check_entry(&edited), decode(&edited).map(|_| ()), "{byte} and a newline at {at}");
                    }
                }
                assert_eq!(check_entry(&good[..at]), decode(&good[..at]).map(|_| ()), "cut at {at}");
            }
        }
        assert!(check_entry(&good).is_ok());
        assert_eq!(check_entry(&cases[4]), Err(DecodeError::Line(3)));
    }

    #[test]
    fn leaf_hash_is_rfc6962() {
        // RFC 6962 test vector: the hash of the empty leaf.
        assert_eq!(hex::encode(leaf_hash(b"")), "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d");
    }

    pub(crate) fn chain(n: u64) -> Vec<AuditRecord> {
        let mut previous = GENESIS;
        (0..n)
            .map(|seq| {
                let entry = encode(&event(&format!("record {seq}")));
                previous = chain_hash(&previous, &entry);
                AuditRecord { seq, entry, chain_hash: previous }
            })
            .collect()
    }

    #[test]
    fn chain_verification_names_the_first_bad_record() {
        let records = chain(5);
        assert!(verify_chain(GENESIS, 0, &records).is_ok());

        let mut edited = records.clone();
        let last = edited[2].entry.len() - 2;
        edited[2].entry[last] ^= 1;
        assert_eq!(verify_chain(GENESIS, 0, &edited), Err(ChainError::HashMismatch { seq: 2 }));

        let mut deleted = records.clone();
        deleted.remove(3);
        assert_eq!(verify_chain(GENESIS, 0, &deleted), Err(ChainError::Gap { expected: 3, found: 4 }));

        let mut reordered = records.clone();
        reordered.swap(1, 2);
        assert_eq!(verify_chain(GENESIS, 0, &reordered), Err(ChainError::Gap { expected: 1, found: 2 }));

        // Renumbering after a swap still breaks the chain.
        let mut renumbered = records;
        renumbered.swap(1, 2);
        renumbered[1].seq = 1;
        renumbered[2].seq = 2;
        assert_eq!(verify_chain(GENESIS, 0, &renumbered), Err(ChainError::HashMismatch { seq: 1 }));
    }
}
