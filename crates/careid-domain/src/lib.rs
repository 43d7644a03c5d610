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
