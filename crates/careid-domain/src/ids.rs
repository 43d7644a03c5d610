//! Validated identifiers and values: each is parsed once at the edge and trusted after.

use std::fmt;

/// Why a piece of input was refused: which field, and the rule it broke.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct InvalidInput {
    /// The field, as the API and the CLI name it.
    pub field: &'static str,
    /// The rule it broke, in words a person at a desk can act on.
    pub rule: String,
}

impl InvalidInput {
    pub fn new(field: &'static str, rule: impl Into<String>) -> InvalidInput {
        InvalidInput { field, rule: rule.into() }
    }
}

macro_rules! string_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

fn all_ascii_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Luhn (ISO/IEC 7812) check digit for a string of ASCII digits.
fn luhn_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 0 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    ((10 - (sum % 10)) % 10) as u8
}

string_newtype!(
    /// A person's 12-digit unique user identifier (the number under the photo on the card):
    /// eleven digits from a sequence that never goes back, then a Luhn check digit.
    PersonUuid
);

impl PersonUuid {
    /// The smallest serial: identifiers always have twelve digits and never start with 0.
    pub const FIRST_SERIAL: u64 = 10_000_000_000;
    const LAST_SERIAL: u64 = 99_999_999_999;

    pub fn parse(s: &str) -> Result<PersonUuid, InvalidInput> {
        let s = s.trim();
        if s.len() != 12 || !all_ascii_digits(s) {
            return Err(InvalidInput::new("uuid", "must be exactly 12 digits"));
        }
        let (body, check) = s.split_at(11);
        if luhn_check_digit(body) != check.as_bytes()[0] - b'0' {
            return Err(InvalidInput::new("uuid", "check digit does not match (mistyped?)"));
        }
        Ok(PersonUuid(s.to_owned()))
    }

    /// The identifier for the `serial`-th person, from the store's never-reused sequence.
    pub fn from_serial(serial: u64) -> Result<PersonUuid, InvalidInput> {
        if !(Self::FIRST_SERIAL..=Self::LAST_SERIAL).contains(&serial) {
            return Err(InvalidInput::new("uuid", "identifier sequence exhausted"));
        }
        let body = serial.to_string();
        let check = luhn_check_digit(&body);
        Ok(PersonUuid(format!("{body}{check}")))
    }
}

string_newtype!(
    /// An organisation's ODS code: 3 to 9 upper-case letters and digits (`F84003`, `RH8`).
    OdsCode
);

impl OdsCode {
    pub fn parse(s: &str) -> Result<OdsCode, InvalidInput> {
        let s = s.trim().to_ascii_uppercase();
        if !(3..=9).contains(&s.len()) || !s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(InvalidInput::new("ods_code", "must be 3 to 9 letters and digits, like F84003 or RH8"));
        }
        Ok(OdsCode(s))
    }
}

string_newtype!(
    /// A UK National Insurance number, normalised to `QQ123456C` form.
    NiNumber
);

impl NiNumber {
    pub fn parse(s: &str) -> Result<NiNumber, InvalidInput> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let err = || InvalidInput::new("ni_number", "must be two letters, six digits and a letter A-D, like QQ123456C");
        let b = s.as_bytes();
        if b.len() != 9 {
            return Err(err());
        }
        let prefix_ok = b[0].is_ascii_uppercase() && b[1].is_ascii_uppercase();
        let digits_ok = b[2..8].iter().all(u8::is_ascii_digit);
        let suffix_ok = (b'A'..=b'D').contains(&b[8]);
        if !(prefix_ok && digits_ok && suffix_ok) {
            return Err(err());
        }
        // Letters never used in the first two places, and prefixes never allocated (HMRC).
        let bad_first = b"DFIQUV";
        let bad_second = b"DFIOQUV";
        if bad_first.contains(&b[0]) || bad_second.contains(&b[1]) {
            return Err(InvalidInput::new("ni_number", "prefix uses a letter that is never allocated"));
        }
        if ["BG", "GB", "KN", "NK", "NT", "TN", "ZZ"].contains(&&s[..2]) {
            return Err(InvalidInput::new("ni_number", "prefix is never allocated"));
        }
        Ok(NiNumber(s))
    }
}

string_newtype!(
    /// A national job-role code (`R8000`).
    JobRoleCode
);

impl JobRoleCode {
    pub fn parse(s: &str) -> Result<JobRoleCode, InvalidInput> {
        let s = s.trim().to_ascii_uppercase();
        if s.len() != 5 || !s.starts_with('R') || !all_ascii_digits(&s[1..]) {
            return Err(InvalidInput::new("job_role", "must be R and four digits, like R8000"));
        }
        Ok(JobRoleCode(s))
    }
}

string_newtype!(
    /// A national RBAC activity code (`B0360`).
    ActivityCode
);

impl ActivityCode {
    pub fn parse(s: &str) -> Result<ActivityCode, InvalidInput> {
        let s = s.trim().to_ascii_uppercase();
        if s.len() != 5 || !s.starts_with('B') || !all_ascii_digits(&s[1..]) {
            return Err(InvalidInput::new("activities", "each must be B and four digits, like B0360"));
        }
        Ok(ActivityCode(s))
    }
}

/// A full role code: staff group, sub group and job role, written `S8000:G8000:R8000`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleTriple {
    text: String,
    job_role: JobRoleCode,
}

impl RoleTriple {
    pub fn parse(s: &str) -> Result<RoleTriple, InvalidInput> {
        let s = s.trim().to_ascii_uppercase();
        let err = || InvalidInput::new("role", "must be a role code triple like S8000:G8000:R8000");
        let parts: Vec<&str> = s.split(':').collect();
        let [staff, group, role] = parts.as_slice() else {
            return Err(err());
        };
        let part_ok = |p: &str, letter: char| p.len() == 5 && p.starts_with(letter) && all_ascii_digits(&p[1..]);
        if !part_ok(staff, 'S') || !part_ok(group, 'G') {
            return Err(err());
        }
        let job_role = JobRoleCode::parse(role).map_err(|_| err())?;
        Ok(RoleTriple { text: s.clone(), job_role })
    }

    pub fn job_role(&self) -> &JobRoleCode {
        &self.job_role
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for RoleTriple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

string_newtype!(
    /// A person's name part (given or family name, title): trimmed, 1 to 100 characters, no control characters.
    NamePart
);

/// Whether `c` may stand in a name people read: no control character (NUL, CR, LF, ...), no
/// line or paragraph separator, and none of the invisible bidirectional controls (embeddings,
/// overrides, isolates, marks) that make text read other than it is stored ("\u{202e}evil").
pub fn displayable(c: char) -> bool {
    !c.is_control()
        && !matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{feff}' | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Text shown to people as a name (of a person, position, organisation, application, or who
/// approved something): trimmed, 1 to `max` characters, every one `displayable`.
pub fn display_text(field: &'static str, s: &str, max: usize) -> Result<String, InvalidInput> {
    let s = s.trim();
    if s.is_empty() || s.chars().count() > max {
        return Err(InvalidInput::new(field, format!("must be 1 to {max} characters")));
    }
    if !s.chars().all(displayable) {
        return Err(InvalidInput::new(
            field,
            "must not contain control characters, line breaks or bidirectional controls",
        ));
    }
    Ok(s.to_owned())
}

string_newtype!(
    /// The one type of every name people read (of an organisation, a position, an
    /// application, who approved a position and how): trimmed, 1 to 200 characters, no control
    /// characters, line separators or bidirectional controls, so that it reads on every
    /// screen as it is stored.
    DisplayText
);

impl DisplayText {
    pub const MAX: usize = 200;

    pub fn parse(field: &'static str, s: &str) -> Result<DisplayText, InvalidInput> {
        display_text(field, s, DisplayText::MAX).map(DisplayText)
    }

    /// Text careid wrote itself, or stored before names were checked: made displayable rather
    /// than refused (each character that is not becomes U+FFFD, and it is cut to the bound),
    /// so that an old record still reads and still reads safely.
    pub fn sanitised(s: &str) -> DisplayText {
        let clean: String = s
            .trim()
            .chars()
            .map(|c| if displayable(c) { c } else { char::REPLACEMENT_CHARACTER })
            .take(DisplayText::MAX)
            .collect();
        DisplayText(if clean.is_empty() { char::REPLACEMENT_CHARACTER.to_string() } else { clean })
    }
}

impl NamePart {
    pub fn parse(field: &'static str, s: &str) -> Result<NamePart, InvalidInput> {
        let s = display_text(field, s, 100)?;
        if !s.chars().any(char::is_alphabetic) {
            return Err(InvalidInput::new(field, "must contain a letter"));
        }
        Ok(NamePart(s))
    }
}

string_newtype!(
    /// An email address: one `@`, a dotted domain, no spaces, at most 254 characters.
    Email
);

impl Email {
    pub fn parse(s: &str) -> Result<Email, InvalidInput> {
        let s = s.trim();
        let err = || InvalidInput::new("email", "must be an address like name@example.nhs.uk");
        let (local, domain) = s.split_once('@').ok_or_else(err)?;
        let ok = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && s.len() <= 254
            && !s.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(err());
        }
        Ok(Email(s.to_ascii_lowercase()))
    }
}

string_newtype!(
    /// A telephone number: digits with an optional leading `+`, spaces removed, 10 to 15 digits.
    Phone
);

impl Phone {
    pub fn parse(s: &str) -> Result<Phone, InvalidInput> {
        let compact: String = s.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let digits = compact.strip_prefix('+').unwrap_or(&compact);
        if !(10..=15).contains(&digits.len()) || !all_ascii_digits(digits) {
            return Err(InvalidInput::new("phone", "must be 10 to 15 digits, optionally starting with +"));
        }
        Ok(Phone(compact))
    }
}

/// Free text recorded with a decision (a reason, a note): trimmed, at most 1,000 characters.
pub fn parse_note(field: &'static str, s: &str, required: bool) -> Result<String, InvalidInput> {
    let s = s.trim();
    if required && s.is_empty() {
        return Err(InvalidInput::new(field, "is required"));
    }
    if s.chars().count() > 1000 || s.chars().any(|c| c.is_control() && c != '\n') {
        return Err(InvalidInput::new(field, "must be at most 1,000 characters of text"));
    }
    Ok(s.to_owned())
}

/// A date written `YYYY-MM-DD`.
pub fn parse_date(field: &'static str, s: &str) -> Result<time::Date, InvalidInput> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s.trim(), &format).map_err(|_| InvalidInput::new(field, "must be a date written YYYY-MM-DD"))
}

/// A date written `YYYY-MM-DD`, the way careid writes dates everywhere.
pub fn format_date(date: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", date.year(), u8::from(date.month()), date.day())
}

macro_rules! int_id {
    ($(#[$meta:meta])* $name:ident, $field:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub i64);

        impl $name {
            pub fn parse(s: &str) -> Result<$name, InvalidInput> {
                s.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .map($name)
                    .ok_or_else(|| InvalidInput::new($field, "must be a positive whole number"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

int_id!(
    /// A position, unique across the deployment.
    PositionId,
    "position_id"
);
int_id!(
    /// One person's assignment to one position (the national "person role id").
    AssignmentId,
    "assignment_id"
);
int_id!(
    /// A sponsor's request waiting for the RA.
    RequestId,
    "request_id"
);
int_id!(
    /// A sponsor's pre-registration of a new person.
    RegistrationId,
    "registration_id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_text_refuses_what_would_read_other_than_it_is_stored() {
        for good in ["Receptionist", "Ó Súilleabháin", "Dr O'Neil-Smith", "GP records (Emis)"] {
            assert_eq!(display_text("name", good, 100).as_deref(), Ok(good));
        }
        for bad in [
            "a\u{0}b",
            "line\nbreak",
            "cr\rhere",
            "sep\u{2028}arated",
            "\u{202e}evil",
            "iso\u{2066}late",
            "mark\u{200f}",
        ] {
            let refused = display_text("name", bad, 100).unwrap_err();
            assert_eq!(refused.field, "name", "{bad:?}");
        }
        assert!(display_text("name", "   ", 100).is_err());
        assert!(display_text("name", &"x".repeat(101), 100).is_err());
        assert!(NamePart::parse("given_name", "\u{202e}nnA").is_err(), "names of people too");
        assert!(DisplayText::parse("name", "\u{202e}evil").is_err(), "one type for every other name");
        assert_eq!(DisplayText::parse("name", "  Camden Road  ").unwrap().as_str(), "Camden Road");
        // A name stored before names were checked still reads, and reads safely.
        assert_eq!(DisplayText::sanitised("\u{202e}evil\n").as_str(), "\u{fffd}evil");
        assert_eq!(DisplayText::sanitised(&"x".repeat(300)).as_str().chars().count(), DisplayText::MAX);
        assert!(
            crate::model::parse_organisation_name("\u{202e}evil").is_err(),
            "and of organisations and applications"
        );
    }

    #[allow(clippy::needless_pass_by_value, reason = "reads best as check(parse(..), true)")]
    fn check<T: fmt::Debug>(result: Result<T, InvalidInput>, ok: bool) {
        assert_eq!(result.is_ok(), ok, "{result:?}");
    }

    #[test]
    fn person_uuid_has_a_check_digit_that_catches_typos() {
        let uuid = PersonUuid::from_serial(PersonUuid::FIRST_SERIAL + 4321).unwrap();
        assert_eq!(uuid.as_str().len(), 12);
        check(PersonUuid::parse(uuid.as_str()), true);
        // Every single-digit error is caught by Luhn.
        for pos in 0..12 {
            let mut bytes = uuid.as_str().as_bytes().to_vec();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + 1) % 10;
            check(PersonUuid::parse(std::str::from_utf8(&bytes).unwrap()), false);
        }
        check(PersonUuid::parse("12345"), false);
        check(PersonUuid::parse("12345678901a"), false);
        check(PersonUuid::from_serial(9), false);
    }

    #[test]
    fn ods_codes() {
        check(OdsCode::parse("F84003"), true);
        check(OdsCode::parse("rh8"), true);
        assert_eq!(OdsCode::parse("rh8").unwrap().as_str(), "RH8");
        check(OdsCode::parse("R8"), false);
        check(OdsCode::parse("ABCDEFGHIJ"), false);
        check(OdsCode::parse("F84-003"), false);
    }

    #[test]
    fn ni_numbers() {
        check(NiNumber::parse("AB 12 34 56 C"), true);
        check(NiNumber::parse("AB123456E"), false);
        check(NiNumber::parse("DA123456A"), false);
        check(NiNumber::parse("GB123456A"), false);
        check(NiNumber::parse("AB12345A"), false);
    }

    #[test]
    fn role_triples_and_codes() {
        let triple = RoleTriple::parse("s8000:g8000:r8000").unwrap();
        assert_eq!(triple.as_str(), "S8000:G8000:R8000");
        assert_eq!(triple.job_role().as_str(), "R8000");
        check(RoleTriple::parse("S8000:G8000"), false);
        check(RoleTriple::parse("S8000:X8000:R8000"), false);
        check(ActivityCode::parse("B0360"), true);
        check(ActivityCode::parse("B036"), false);
        check(JobRoleCode::parse("R80000"), false);
    }

    #[test]
    fn contact_details() {
        check(Email::parse("a.smith@nhs.net"), true);
        check(Email::parse("a smith@nhs.net"), false);
        check(Email::parse("nhs.net"), false);
        check(Phone::parse("+44 20 7946 0000"), true);
        check(Phone::parse("12345"), false);
        check(NamePart::parse("family_name", "O'Brien"), true);
        check(NamePart::parse("family_name", "  "), false);
        check(NamePart::parse("family_name", "1234"), false);
        check(parse_date("date_of_birth", "1980-02-29"), true);
        check(parse_date("date_of_birth", "1981-02-29"), false);
    }
}
