//! careid's domain: identifiers, RA records, the rules that govern them, and the ports the use
//! cases drive. No I/O, no clock, no async runtime: everything here is a plain function of its
//! inputs.

pub mod absence;
pub mod access;
pub mod audit;
pub mod card;
pub mod case;
pub mod catalogue;
pub mod detect;
pub mod ids;
pub mod login;
pub mod model;
pub mod oidc;
pub mod passcode;
pub mod patient;
pub mod ports;
pub mod report;
pub mod secret;

/// The version of the terms of use ("RA01") that holders accept.
pub const TERMS_OF_USE_VERSION: &str = "RA01-2026-1";

/// The terms of use of `TERMS_OF_USE_VERSION`, as the holder reads them before accepting. A
/// change of wording is a new version.
pub const TERMS_OF_USE: &str = "\
Terms of use of your careid smartcard (RA01-2026-1)
1. The card and its passcode are yours alone. Never lend the card, never use anyone else's,
   and never tell anyone your passcode: not IT, not your manager, not the RA.
2. Do not write your passcode down, on the card or anywhere else.
3. Remove your card whenever you leave the workstation: your session ends with it.
4. Report a lost or stolen card at once (`careid card report`, your sponsor or the RA).
5. Everything done under your card is recorded in your name in an audit log you can read
   and check; say \"not me\" for anything you did not do.";
