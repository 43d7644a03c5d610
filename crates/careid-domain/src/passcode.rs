//! The passcode policy: what a holder may choose. It runs where the holder types the passcode
//! (the workstation agent or the CLI), never on the server, which never receives a passcode.

use std::fmt;

use time::Date;
use zeroize::Zeroizing;

/// The most common PINs, shipped with careid: a passcode on this list is refused.
const COMMON_PINS: &str = include_str!("../data/common-pins.txt");

/// A passcode the holder chose and the policy accepted. No `Display`; `Debug` is redacted;
/// wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(Zeroizing<String>);

impl Passcode {
    /// The digits, for the one place that hands them to the card.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Passcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passcode([redacted])")
    }
}

/// Why a passcode was refused. The message tells the holder what to change and never repeats
/// the passcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasscodeRefused {
    #[error("the passcode must be 6 to 8 digits")]
    Length,
    #[error("the passcode must be digits only")]
    NotDigits,
    #[error("the two entries do not match")]
    Mismatch,
    #[error("the passcode must not be one digit repeated")]
    AllSame,
    #[error("the passcode must not be a run of digits like 123456 or 987654")]
    Sequence,
    #[error("the passcode must not be your date of birth")]
    DateOfBirth,
    #[error("the passcode is one of the most common passcodes: choose another")]
    Common,
}

/// The forms in which people write their date of birth as digits.
fn date_of_birth_forms(dob: Date) -> Vec<String> {
    let (y, m, d) = (dob.year(), u8::from(dob.month()), dob.day());
    let yy = y.rem_euclid(100);
    vec![
        format!("{d:02}{m:02}{yy:02}"),
        format!("{d:02}{m:02}{y:04}"),
        format!("{y:04}{m:02}{d:02}"),
        format!("{yy:02}{m:02}{d:02}"),
        format!("{m:02}{d:02}{yy:02}"),
        format!("{m:02}{d:02}{y:04}"),
        format!("{d}{m}{y:04}"),
    ]
}

fn is_run(digits: &[u8]) -> bool {
    let step = |a: u8, b: u8| i16::from(b) - i16::from(a);
    let first = step(digits[0], digits[1]);
    (first == 1 || first == -1) && digits.windows(2).all(|w| step(w[0], w[1]) == first)
}

/// Checks a new passcode, typed twice, against the policy.
pub fn choose(first: &str, second: &str, date_of_birth: Date) -> Result<Passcode, PasscodeRefused> {
    if first != second {
        return Err(PasscodeRefused::Mismatch);
    }
    if !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PasscodeRefused::NotDigits);
    }
    if !(6..=8).contains(&first.len()) {
        return Err(PasscodeRefused::Length);
    }
    let digits = first.as_bytes();
    if digits.iter().all(|d| *d == digits[0]) {
        return Err(PasscodeRefused::AllSame);
    }
    if is_run(digits) {
        return Err(PasscodeRefused::Sequence);
    }
    if date_of_birth_forms(date_of_birth).iter().any(|form| form == first) {
        return Err(PasscodeRefused::DateOfBirth);
    }
    if COMMON_PINS.lines().map(str::trim).any(|common| common == first) {
        return Err(PasscodeRefused::Common);
    }
    Ok(Passcode(Zeroizing::new(first.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOB: Date = time::macros::date!(1984 - 03 - 07);

    fn check(passcode: &str, expected: Result<(), PasscodeRefused>) {
        assert_eq!(choose(passcode, passcode, DOB).map(|_| ()), expected, "{passcode}");
    }

    #[test]
    fn the_policy() {
        check("582039", Ok(()));
        check("58203917", Ok(()));
        check("58203", Err(PasscodeRefused::Length));
        check("582039175", Err(PasscodeRefused::Length));
        check("5820a9", Err(PasscodeRefused::NotDigits));
        check("777777", Err(PasscodeRefused::AllSame));
        check("00000000", Err(PasscodeRefused::AllSame));
        check("123456", Err(PasscodeRefused::Sequence));
        check("345678", Err(PasscodeRefused::Sequence));
        check("98765432", Err(PasscodeRefused::Sequence));
        check("070384", Err(PasscodeRefused::DateOfBirth));
        check("07031984", Err(PasscodeRefused::DateOfBirth));
        check("19840307", Err(PasscodeRefused::DateOfBirth));
        check("840307", Err(PasscodeRefused::DateOfBirth));
        check("030784", Err(PasscodeRefused::DateOfBirth));
        check("121212", Err(PasscodeRefused::Common));
        check("112233", Err(PasscodeRefused::Common));
        check("159753", Err(PasscodeRefused::Common));
        assert_eq!(choose("582039", "582093", DOB).unwrap_err(), PasscodeRefused::Mismatch);
    }

    #[test]
    fn the_common_list_is_well_formed() {
        let pins: Vec<&str> = COMMON_PINS.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        assert!(pins.len() >= 100, "{}", pins.len());
        assert!(pins.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()) && (6..=8).contains(&p.len())));
    }

    #[test]
    fn debug_never_shows_the_passcode() {
        let passcode = choose("582039", "582039", DOB).unwrap();
        assert!(!format!("{passcode:?}").contains("582039"));
        for refusal in [PasscodeRefused::Common, PasscodeRefused::DateOfBirth, PasscodeRefused::Sequence] {
            assert!(!refusal.to_string().contains("582039"));
        }
    }
}
