//! The query columns a store keeps beside each entry (time, action, actor, subject, session,
//! the organisations a record concerns), checked against the hashed entry: a column edited
//! behind careid's back would hide a record from every scoped query while the hashes still
//! verify, so every column a query filters on must say what the entry says.

use careid_domain::ports::AuditIndexRow;

use crate::{Entry, decode, format_time};

/// Whether a record's query columns say what its entry says; if not, which column and how.
/// `row.orgs` are the index rows this record is the source of: its own organisations, and for
/// an `audit.annotate` record also the earlier records and organisations it names.
pub fn check_index(entry: &[u8], row: &AuditIndexRow) -> Result<(), String> {
    let entry = decode(entry).map_err(|e| format!("its entry does not decode: {e}"))?;
    let same = |column: &str, stored: Option<&str>, field: &str| -> Result<(), String> {
        let hashed = entry.get(field);
        if stored == hashed {
            Ok(())
        } else {
            Err(format!("its query column `{column}` holds {stored:?} where its entry says {hashed:?}"))
        }
    };
    same("action", Some(row.action.as_str()), "action")?;
    same("actor", row.actor.as_deref(), "actor.person")?;
    same("subject_person", row.subject_person.as_deref(), "subject.person")?;
    same("session", row.session.as_deref(), "actor.session")?;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(row.at_us) * 1000)
        .map(format_time)
        .map_err(|_| format!("its query column `at_us` holds {}, no time", row.at_us))?;
    same("at_us", Some(&at), "at")?;
    let expected = organisations(&entry, row.seq)?;
    let mut stored = row.orgs.clone();
    stored.sort();
    if stored != expected {
        return Err(format!("its organisations in the query index are {stored:?} where its entry says {expected:?}"));
    }
    Ok(())
}

/// The `(seq, org)` index rows an entry is the source of, sorted and without repeats.
fn organisations(entry: &Entry, seq: u64) -> Result<Vec<(u64, String)>, String> {
    let mut pairs: Vec<(u64, String)> =
        entry.fields.iter().filter(|(name, _)| name == "org").map(|(_, org)| (seq, org.clone())).collect();
    if entry.get("action") == Some("audit.annotate") {
        let named = entry.get("detail.orgs").unwrap_or_default();
        let annotated = crate::parse_annotation(named).ok_or_else(|| "its annotation does not parse".to_owned())?;
        if annotated.iter().any(|(annotated, _)| *annotated >= seq) {
            return Err("it annotates a record that is not before it".into());
        }
        pairs.extend(annotated);
    }
    pairs.sort();
    pairs.dedup();
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails loudly")]

    use careid_domain::audit::{Action, AuditActor, AuditEvent, Outcome};
    use careid_domain::ids::{OdsCode, PersonUuid};

    use super::*;

    fn event(action: Action) -> AuditEvent {
        let person = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL).unwrap();
        AuditEvent {
            at: time::macros::datetime!(2026-12-03 10:00:00.000250 UTC),
            request_id: "r".into(),
            actor: AuditActor { person: Some(person.clone()), session: Some("s1".into()), ..AuditActor::system() },
            action,
            subject_kind: "card",
            subject_id: "4".into(),
            subject_person: Some(person),
            orgs: vec![OdsCode::parse("F83001").unwrap(), OdsCode::parse("QWE").unwrap()],
            outcome: Outcome::Success,
            detail: vec![],
            workstation: None,
        }
    }

    type Edit = fn(&mut AuditIndexRow);

    fn row_of(event: &AuditEvent, seq: u64) -> AuditIndexRow {
        AuditIndexRow {
            seq,
            at_us: (event.at.unix_timestamp_nanos() / 1000) as i64,
            action: event.action.code().into(),
            actor: event.actor.person.as_ref().map(ToString::to_string),
            subject_person: event.subject_person.as_ref().map(ToString::to_string),
            session: event.actor.session.clone(),
            orgs: event.orgs.iter().map(|o| (seq, o.to_string())).collect(),
        }
    }

    #[test]
    fn every_query_column_must_say_what_the_entry_says() {
        let event = event(Action::CardReport);
        let entry = crate::encode(&event);
        let row = row_of(&event, 7);
        assert_eq!(check_index(&entry, &row), Ok(()));
        let edits: [(&str, Edit); 7] = [
            ("action", |r| r.action = "card.issue".into()),
            ("actor", |r| r.actor = None),
            ("subject_person", |r| r.subject_person = Some("100000000016".into())),
            ("session", |r| r.session = Some("s2".into())),
            ("at_us", |r| r.at_us += 1),
            ("organisations", |r| r.orgs.clear()),
            ("organisations", |r| r.orgs.push((3, "RH8".into()))),
        ];
        for (column, edit) in edits {
            let mut edited = row.clone();
            edit(&mut edited);
            let refused = check_index(&entry, &edited).unwrap_err();
            assert!(refused.contains(column), "{column}: {refused}");
        }
    }

    #[test]
    fn an_annotation_is_the_source_of_the_organisations_it_names() {
        let mut annotation = event(Action::AuditAnnotate);
        annotation.orgs = vec![OdsCode::parse("QWE").unwrap()];
        let named = [(2, OdsCode::parse("F83001").unwrap()), (5, OdsCode::parse("RH8").unwrap())];
        annotation.detail.push(("orgs", crate::format_annotation(&named)));
        let entry = crate::encode(&annotation);
        let mut row = row_of(&annotation, 9);
        row.orgs.extend([(2, "F83001".to_owned()), (5, "RH8".to_owned())]);
        assert_eq!(check_index(&entry, &row), Ok(()));
        row.orgs.push((6, "RH8".into()));
        assert!(check_index(&entry, &row).unwrap_err().contains("organisations"));
        let mut late = annotation.clone();
        late.detail = vec![("orgs", crate::format_annotation(&[(9, OdsCode::parse("RH8").unwrap())]))];
        assert!(check_index(&crate::encode(&late), &row_of(&late, 9)).unwrap_err().contains("not before it"));
    }
}
