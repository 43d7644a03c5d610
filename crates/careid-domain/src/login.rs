//! Card login and card presence: what the card signs, and why a session ends.
//!
//! A card signs two kinds of message, each a few lines of text whose first line names the kind
//! and version, so that a signature made for one can never be taken for the other (or for
//! anything else careid asks a card to sign):
//! - a **login**, over a fresh single-use challenge the server issued to one workstation, the
//!   position the holder chose and the time;
//! - a **heartbeat**, over the session, a counter that only goes up, and the time.

use time::{Duration, OffsetDateTime};

use crate::ids::{AssignmentId, OdsCode};

/// How long a login challenge can be answered.
pub const CHALLENGE_LIFETIME: Duration = Duration::seconds(60);
/// How far a signed time may stand from the server's clock, either way.
pub const CLOCK_SKEW: Duration = Duration::seconds(30);
/// Workstation identifiers are short printable names.
pub const WORKSTATION_MAX: usize = 64;

/// A workstation's name, as its agent reports it: 1 to 64 of `A-Z a-z 0-9 . _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Workstation(String);

impl Workstation {
    pub fn parse(s: &str) -> Result<Workstation, crate::ids::InvalidInput> {
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if s.is_empty() || s.len() > WORKSTATION_MAX || !s.chars().all(fine) {
            return Err(crate::ids::InvalidInput::new(
                "workstation",
                "must be 1 to 64 characters of letters, digits, '.', '_' or '-'",
            ));
        }
        Ok(Workstation(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Workstation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a card signs to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginMessage<'a> {
    pub challenge: &'a str,
    pub workstation: &'a Workstation,
    /// The organisation and position chosen, or `None` to sign in directly when the holder has
    /// exactly one.
    pub selected: Option<(&'a OdsCode, AssignmentId)>,
    /// Seconds since the Unix epoch, by the workstation's clock.
    pub time: i64,
}

impl LoginMessage<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        let selected = match self.selected {
            Some((org, assignment)) => format!("org {org}\nassignment {assignment}\n"),
            None => "org -\nassignment -\n".to_owned(),
        };
        format!(
            "careid card login v1\nchallenge {}\nworkstation {}\n{selected}time {}\n",
            self.challenge, self.workstation, self.time
        )
        .into_bytes()
    }
}

/// What a card signs to prove it is still in the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatMessage<'a> {
    pub session: &'a str,
    pub counter: u64,
    pub time: i64,
}

impl HeartbeatMessage<'_> {
    pub fn to_bytes(&self) -> Vec<u8> {
        format!("careid card heartbeat v1\nsession {}\ncounter {}\ntime {}\n", self.session, self.counter, self.time)
            .into_bytes()
    }
}

/// Whether a signed time is close enough to the server's: `Err` says which way it is off.
pub fn check_signed_time(signed: i64, now: OffsetDateTime) -> Result<(), &'static str> {
    let now = now.unix_timestamp();
    let skew = CLOCK_SKEW.whole_seconds();
    if signed > now + skew {
        Err("the signed time is in the future: check the workstation's clock")
    } else if signed < now - skew {
        Err("the signed time is too old: sign a fresh challenge")
    } else {
        Ok(())
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The holder signed out.
    SignedOut,
    /// The agent reported the card leaving the reader.
    CardRemoved,
    /// No proof of the card's presence within the grace period.
    PresenceLost,
    /// No activity within the idle timeout.
    IdleTimeout,
    /// The session reached its absolute lifetime.
    Lifetime,
    /// Someone with the right to (the RA, a privacy officer) ended it.
    EndedByOther,
    /// The card stopped being usable (locked, reported, cancelled).
    CardEnded,
    /// The same person logged in again and the policy ends the older session.
    Superseded,
    /// The interim credential that signed it in was revoked: the holder's card became active,
    /// or a newer credential replaced it.
    CredentialRevoked,
    /// The position it acted in ended: the holder left the organisation, the assignment was
    /// removed, or the profile was closed.
    PositionEnded,
}

impl SessionEnd {
    pub fn code(self) -> &'static str {
        match self {
            SessionEnd::SignedOut => "signed_out",
            SessionEnd::CardRemoved => "card_removed",
            SessionEnd::PresenceLost => "presence_lost",
            SessionEnd::IdleTimeout => "idle_timeout",
            SessionEnd::Lifetime => "lifetime",
            SessionEnd::EndedByOther => "ended_by_other",
            SessionEnd::CardEnded => "card_ended",
            SessionEnd::Superseded => "superseded",
            SessionEnd::CredentialRevoked => "credential_revoked",
            SessionEnd::PositionEnded => "position_ended",
        }
    }

    /// Why the session ended, in words for its holder.
    pub fn explanation(self) -> &'static str {
        match self {
            SessionEnd::SignedOut => "you signed out",
            SessionEnd::CardRemoved => "the card left the reader",
            SessionEnd::PresenceLost => {
                "the card's presence was not proved in time (a reader fault, or the card moved)"
            }
            SessionEnd::IdleTimeout => "nothing was done for too long",
            SessionEnd::Lifetime => "it reached the longest a session may last",
            SessionEnd::EndedByOther => "the RA or a privacy officer ended it",
            SessionEnd::CardEnded => "the card was locked, reported lost or stolen, or cancelled",
            SessionEnd::Superseded => "you logged in again elsewhere",
            SessionEnd::CredentialRevoked => "the credential that signed it in was revoked",
            SessionEnd::PositionEnded => "the position it acted in ended",
        }
    }

    pub fn parse(code: &str) -> Option<SessionEnd> {
        [
            SessionEnd::SignedOut,
            SessionEnd::CardRemoved,
            SessionEnd::PresenceLost,
            SessionEnd::IdleTimeout,
            SessionEnd::Lifetime,
            SessionEnd::EndedByOther,
            SessionEnd::CardEnded,
            SessionEnd::Superseded,
            SessionEnd::CredentialRevoked,
            SessionEnd::PositionEnded,
        ]
        .into_iter()
        .find(|e| e.code() == code)
    }
}

/// What a deployment does when someone logs in with a card while they already have a live
/// card session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConcurrentLogin {
    /// Refuse the new login (the default: two live sessions of one person is F2's pattern).
    #[default]
    Refuse,
    /// End the older session and let the new one start.
    EndOlder,
}

/// When a card session stops being alive, if it is still alive at `now`; the earliest of the
/// card-presence grace, the idle timeout and the absolute lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    pub grace: Duration,
    pub idle: Duration,
}

impl Liveness {
    /// Why a session with these times is over at `now`, or `None` while it lives.
    pub fn ended(
        &self,
        now: OffsetDateTime,
        last_proof: Option<OffsetDateTime>,
        last_seen: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Option<SessionEnd> {
        if now >= expires_at {
            Some(SessionEnd::Lifetime)
        } else if last_proof.is_some_and(|at| now - at > self.grace) {
            Some(SessionEnd::PresenceLost)
        } else if now - last_seen > self.idle {
            Some(SessionEnd::IdleTimeout)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_and_heartbeat_messages_are_distinct_and_cover_every_field() {
        let ws = Workstation::parse("ward-7.pc-03").unwrap();
        let org = OdsCode::parse("RX1").unwrap();
        let a = AssignmentId::parse("12").unwrap();
        let base = LoginMessage { challenge: "c1", workstation: &ws, selected: Some((&org, a)), time: 100 };
        let text = String::from_utf8(base.to_bytes()).unwrap();
        assert_eq!(
            text,
            "careid card login v1\nchallenge c1\nworkstation ward-7.pc-03\norg RX1\nassignment 12\ntime 100\n"
        );
        let other_ws = Workstation::parse("ward-7.pc-04").unwrap();
        let variants = [
            LoginMessage { challenge: "c2", ..base.clone() },
            LoginMessage { workstation: &other_ws, ..base.clone() },
            LoginMessage { selected: None, ..base.clone() },
            LoginMessage { time: 101, ..base.clone() },
        ];
        for v in variants {
            assert_ne!(v.to_bytes(), base.to_bytes(), "{v:?}");
        }
        let beat = HeartbeatMessage { session: "c1", counter: 100, time: 100 }.to_bytes();
        assert!(beat.starts_with(b"careid card heartbeat v1\n"));
        assert_ne!(beat[..20], base.to_bytes()[..20]);
    }

    #[test]
    fn workstation_names_are_short_and_printable() {
        assert!(Workstation::parse("GP-desk_1.local").is_ok());
        for bad in ["", "has space", "new\nline", &"x".repeat(65), "ünï"] {
            assert!(Workstation::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn signed_time_must_be_near_the_server_clock() {
        let now = OffsetDateTime::from_unix_timestamp(1_000_000).unwrap();
        assert!(check_signed_time(1_000_000, now).is_ok());
        assert!(check_signed_time(1_000_030, now).is_ok());
        assert!(check_signed_time(999_970, now).is_ok());
        assert!(check_signed_time(1_000_031, now).unwrap_err().contains("future"));
        assert!(check_signed_time(999_969, now).unwrap_err().contains("old"));
    }

    #[test]
    fn liveness_ends_on_lost_presence_idleness_or_lifetime() {
        let t = |s: i64| OffsetDateTime::from_unix_timestamp(1_000_000 + s).unwrap();
        let live = Liveness { grace: Duration::seconds(60), idle: Duration::minutes(15) };
        let expires = t(12 * 3600);
        assert_eq!(live.ended(t(60), Some(t(0)), t(0), expires), None);
        assert_eq!(live.ended(t(61), Some(t(0)), t(61), expires), Some(SessionEnd::PresenceLost));
        assert_eq!(live.ended(t(901), Some(t(900)), t(0), expires), Some(SessionEnd::IdleTimeout));
        assert_eq!(live.ended(t(12 * 3600), Some(t(12 * 3600)), t(12 * 3600), expires), Some(SessionEnd::Lifetime));
        // A session without card proofs (a credential's) ends only by idleness or lifetime.
        assert_eq!(live.ended(t(600), None, t(0), expires), None);
    }

    #[test]
    fn session_end_codes_round_trip() {
        for code in [
            "signed_out",
            "card_removed",
            "presence_lost",
            "idle_timeout",
            "lifetime",
            "ended_by_other",
            "card_ended",
            "superseded",
        ] {
            assert_eq!(SessionEnd::parse(code).map(SessionEnd::code), Some(code));
        }
        assert_eq!(SessionEnd::parse("other"), None);
    }
}
