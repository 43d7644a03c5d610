//! `careid card ...`: the card ceremonies, run where the card is. The card (virtual or
//! PKCS#11) is driven locally; the server is reached over the API with the session of whoever
//! authorises. Passcodes are typed by the holder at a prompt (or given on standard input for
//! automation), checked against the passcode policy here, and go nowhere but into the card.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_card::{Card, CardError, Pkcs11Card, Pkcs11Module, VirtualCard};
use careid_domain::ids::parse_date;
use careid_domain::login::Workstation;
use careid_domain::passcode::{Passcode, choose};
use careid_domain::secret::Secret;
use careid_pki::BoxRecipient;
use careid_service::{ReleasedSecrets, open_clear_secret, open_issue_secret};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{self, Client};

#[derive(Debug, Args)]
pub struct CardArgs {
    #[command(flatten)]
    flags: client::ClientFlags,
    #[command(subcommand)]
    command: CardCommand,
}

/// Which card: a virtual card file, or a token in a PKCS#11 module.
#[derive(Debug, Clone, Args)]
pub(crate) struct Device {
    /// A virtual card file (created at issue if missing). Not a security device.
    #[arg(long = "virtual", value_name = "PATH", conflicts_with = "pkcs11_module")]
    pub(crate) virtual_card: Option<PathBuf>,
    /// A PKCS#11 module (OpenSC's opensc-pkcs11.so for physical cards, SoftHSM2 for tests).
    #[arg(long, value_name = "PATH")]
    pkcs11_module: Option<PathBuf>,
    /// The slot of the token; at issue, the first blank token's slot by default.
    #[arg(long)]
    slot: Option<u64>,
    /// Read passcodes from standard input, one a line, instead of prompting (automation).
    #[arg(long)]
    pub(crate) passcode_stdin: bool,
}

impl Device {
    /// The reader an agent runs the RA's ceremonies on: a virtual card file, or a slot of the
    /// agent's own PKCS#11 module.
    pub(crate) fn for_ceremonies(
        virtual_card: Option<PathBuf>,
        pkcs11_module: Option<&Device>,
        slot: Option<u64>,
        passcode_stdin: bool,
    ) -> Option<Device> {
        match (virtual_card, slot) {
            (Some(path), _) => {
                Some(Device { virtual_card: Some(path), pkcs11_module: None, slot: None, passcode_stdin })
            }
            (None, Some(slot)) => Some(Device {
                virtual_card: None,
                pkcs11_module: pkcs11_module.and_then(|d| d.pkcs11_module.clone()),
                slot: Some(slot),
                passcode_stdin,
            }),
            (None, None) => None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum CardCommand {
    /// As the RA, with the holder present: issue a card. It leaves the desk locked.
    Issue {
        person: String,
        #[command(flatten)]
        device: Device,
    },
    /// The holder sets their first passcode; whoever is signed in authorises (the RA at the desk).
    SetPasscode {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// Unlock a locked card: a sponsor, unlocker or the RA authorises, the holder chooses the passcode.
    Unlock {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// In a certificate's last 90 days (RA, sponsor or unlocker authorising; holder present
    /// with passcode): a new key on the card and a new certificate.
    Renew {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// After expiry or a fault (RA, card present): a new key and certificate; the holder then
    /// sets a new passcode with set-passcode.
    Repair {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// The holder alone unlocks their locked card with a code emailed to them (no session).
    SelfUnlock {
        #[command(flatten)]
        device: Device,
    },
    /// The holder enters their passcode: the card signs a test message. Wrong passcodes are
    /// reported, and the third in a row locks the card.
    Try {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// The holder changes their passcode (signed in as themselves).
    ChangePasscode {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// What the card itself says.
    Status {
        #[command(flatten)]
        device: Device,
    },
    /// Report a card lost, stolen or damaged: it is revoked at once.
    Report {
        card_id: i64,
        /// lost, stolen or damaged.
        #[arg(long)]
        reason: String,
    },
    /// Cancel a card (RA).
    Cancel { card_id: i64 },
    /// Clear an ended card for reuse (RA, card in hand): careid releases the card's
    /// administrative secret to this ceremony, which wipes the card back to blank.
    Clear {
        card_id: i64,
        #[command(flatten)]
        device: Device,
    },
    /// One card, with its certificates.
    Show { card_id: i64 },
    /// A person's cards.
    List { person: String },
    /// Close a lost-card investigation with the review of the card's use since it was last safe.
    /// Closes the investigation of a card reported lost or stolen (a senior RA, privacy officer
    /// or Caldicott Guardian who is neither its holder nor who reported it): its holder may
    /// then be given a new card. Takes the card's id, like every other `card` command.
    CloseInvestigation {
        /// The lost or stolen card's id.
        card: i64,
        /// What the investigation found.
        #[arg(long)]
        review: String,
        /// Its outcome (for the case it carries, one of no_case_to_answer, retraining, warning,
        /// suspension, card_revoked, disciplinary, referral_to_ico).
        #[arg(long)]
        outcome: String,
    },
}

/// The SO PIN a blank card is initialised with before careid accepts the issue.
const TRANSPORT_SECRET: &str = "careid-transport";

/// Where passcodes come from: the terminal, without echo, or standard input.
#[derive(Debug, Clone)]
pub(crate) struct Keyboard {
    pub(crate) stdin: bool,
}

impl Keyboard {
    pub(crate) fn read(&self, prompt: &str) -> anyhow::Result<Secret> {
        if self.stdin {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).context("reading a passcode from standard input")?;
            return Ok(Secret::new(line.trim_end_matches(['\r', '\n']).to_owned()));
        }
        Ok(Secret::new(rpassword::prompt_password(prompt).context("reading the passcode")?))
    }

    /// A new passcode, typed twice and checked against the policy, retried until it passes.
    fn new_passcode(&self, date_of_birth: time::Date) -> anyhow::Result<Passcode> {
        for _ in 0..5 {
            let first = self.read("New passcode (6 to 8 digits): ")?;
            let second = self.read("Type it again: ")?;
            match choose(first.expose(), second.expose(), date_of_birth) {
                Ok(passcode) => return Ok(passcode),
                Err(refused) => eprintln!("{refused}"),
            }
        }
        bail!("no acceptable passcode after five tries")
    }
}

pub(crate) fn open_device(device: &Device, issuing: bool) -> anyhow::Result<Box<dyn Card>> {
    if let Some(path) = &device.virtual_card {
        let card = if issuing && !path.exists() { VirtualCard::create(path)? } else { VirtualCard::open(path)? };
        return Ok(Box::new(card));
    }
    let module = device
        .pkcs11_module
        .as_ref()
        .ok_or_else(|| anyhow!("name the card: --virtual PATH or --pkcs11-module PATH"))?;
    let module = Pkcs11Module::load(module)?;
    let slot = match device.slot {
        Some(slot) => slot,
        None if issuing => *module
            .blank_slots()?
            .first()
            .ok_or_else(|| anyhow!("no blank token in {}: no free slot", module_name(device)))?,
        // One card in the reader: that one. Several: say which there are.
        None => match module.tokens()?.as_slice() {
            [(slot, _, _)] => *slot,
            [] => bail!("no card in {}: insert one", module_name(device)),
            tokens => {
                let list: Vec<String> = tokens
                    .iter()
                    .map(|(slot, label, serial)| format!("  --slot {slot}  {label} (serial {serial})"))
                    .collect();
                bail!("{} cards in {}: name one with --slot\n{}", tokens.len(), module_name(device), list.join("\n"))
            }
        },
    };
    Ok(Box::new(Pkcs11Card::open(module, slot)?))
}

fn module_name(device: &Device) -> String {
    device.pkcs11_module.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

fn b64(value: &Value, field: &str) -> anyhow::Result<Vec<u8>> {
    let text = value[field].as_str().ok_or_else(|| anyhow!("the server sent no {field}"))?;
    STANDARD.decode(text).with_context(|| format!("{field} is not base64"))
}

/// The holder's date of birth, for the passcode policy.
async fn date_of_birth(c: &Client, card_id: i64) -> anyhow::Result<time::Date> {
    let card = c.get(&format!("/api/v1/cards/{card_id}")).await?;
    let person = card["person"].as_str().ok_or_else(|| anyhow!("the server sent no person"))?;
    let profile = c.get(&format!("/api/v1/people/{person}")).await?;
    Ok(parse_date("date_of_birth", profile["date_of_birth"].as_str().unwrap_or_default())?)
}

/// First passcode or unlock: release, set on the card, rotate, complete.
pub(crate) async fn passcode_ceremony(
    c: &Client,
    card_id: i64,
    device: &Device,
    ceremony: &str,
) -> anyhow::Result<Value> {
    let mut card = open_device(device, false)?;
    let keyboard = Keyboard { stdin: device.passcode_stdin };
    let recipient = BoxRecipient::new()?;
    let body = json!({ "ceremony": ceremony, "ceremony_key": STANDARD.encode(recipient.public_key()) });
    let response = c.post(&format!("/api/v1/cards/{card_id}/ceremony"), body).await?;
    let secrets = ReleasedSecrets::open(recipient, &b64(&response, "sealed_secrets")?)?;
    // The holder's date of birth comes sealed with the secrets: whoever runs the ceremony
    // for them need not read their identifying details.
    let passcode = keyboard.new_passcode(secrets.holder_date_of_birth)?;
    card.set_passcode_as_administrator(&secrets.current, &passcode)?;
    card.rotate_administrator_secret(&secrets.current, &secrets.next)?;
    c.post(&format!("/api/v1/cards/{card_id}/ceremony/complete"), json!({})).await
}

fn unreachable_self_unlock() -> anyhow::Result<Value> {
    Err(anyhow!("self-unlock needs no session and is handled first"))
}

/// The holder alone: a code by email, a new passcode, and the card's proof that it is done.
async fn self_unlock(c: &Client, device: &Device) -> anyhow::Result<Value> {
    let mut card = open_device(device, false)?;
    let serial = card.status()?.serial;
    let sent = c.post("/api/v1/cards/unlock-code", json!({ "serial": serial.to_string() })).await?;
    eprintln!("A one-time code was sent to {}.", sent["sent_to"].as_str().unwrap_or("your registered email"));
    let keyboard = Keyboard { stdin: device.passcode_stdin };
    let code = keyboard.read("Code from the email: ")?;
    let card_id = sent["card_id"].as_i64().ok_or_else(|| anyhow!("the server sent no card id"))?;
    let recipient = BoxRecipient::new()?;
    let body = json!({ "code": code.expose(), "ceremony_key": STANDARD.encode(recipient.public_key()) });
    let response = c.post(&format!("/api/v1/cards/{card_id}/self-service-unlock"), body).await?;
    let secrets = ReleasedSecrets::open(recipient, &b64(&response, "sealed_secrets")?)?;
    let passcode = keyboard.new_passcode(secrets.holder_date_of_birth)?;
    card.set_passcode_as_administrator(&secrets.current, &passcode)?;
    card.rotate_administrator_secret(&secrets.current, &secrets.next)?;
    let message = careid_service::self_service_completion_message(card_id, &secrets.next);
    let proof = card.sign(&Secret::new(passcode.expose().to_owned()), &message)?;
    c.post(
        &format!("/api/v1/cards/{card_id}/self-service-unlock/complete"),
        json!({ "signature": STANDARD.encode(proof) }),
    )
    .await
}

/// Renew or repair: release, a new key on the card, certify, store, rotate, complete.
pub(crate) async fn rekey_ceremony(c: &Client, card_id: i64, device: &Device, ceremony: &str) -> anyhow::Result<Value> {
    let mut card = open_device(device, false)?;
    let passcode =
        if ceremony == "renew" { Some(Keyboard { stdin: device.passcode_stdin }.read("Passcode: ")?) } else { None };
    let recipient = BoxRecipient::new()?;
    let body = json!({ "ceremony": ceremony, "ceremony_key": STANDARD.encode(recipient.public_key()) });
    let response = c.post(&format!("/api/v1/cards/{card_id}/ceremony"), body).await?;
    let secrets = ReleasedSecrets::open(recipient, &b64(&response, "sealed_secrets")?)?;
    let public_key = match &passcode {
        Some(passcode) => match card.rekey(&secrets.current, passcode) {
            Ok(key) => key,
            Err(e @ (CardError::WrongPasscode | CardError::Locked)) => {
                c.post(&format!("/api/v1/cards/{card_id}/wrong-passcode"), json!({})).await?;
                return Err(e.into());
            }
            Err(other) => return Err(other.into()),
        },
        None => card.generate_key(&secrets.current)?,
    };
    let certified = c
        .post(&format!("/api/v1/cards/{card_id}/certify"), json!({ "public_key": STANDARD.encode(&public_key) }))
        .await?;
    card.store_certificate(&b64(&certified, "certificate")?)?;
    card.rotate_administrator_secret(&secrets.current, &secrets.next)?;
    c.post(&format!("/api/v1/cards/{card_id}/ceremony/complete"), json!({})).await
}

pub async fn run(args: CardArgs, default_server: String) -> anyhow::Result<()> {
    if let CardCommand::SelfUnlock { device } = &args.command {
        let server = args.flags.server.clone().unwrap_or(default_server);
        let value = self_unlock(&Client::new(&server, None), device).await?;
        return args.flags.print(&value);
    }
    let c = args.flags.client()?;
    let value = match args.command {
        CardCommand::Issue { person, device } => issue(&c, &person, &device).await?,
        CardCommand::SetPasscode { card_id, device } => {
            passcode_ceremony(&c, card_id, &device, "first_passcode").await?
        }
        CardCommand::Unlock { card_id, device } => passcode_ceremony(&c, card_id, &device, "unlock").await?,
        CardCommand::SelfUnlock { .. } => unreachable_self_unlock()?,
        CardCommand::Renew { card_id, device } => rekey_ceremony(&c, card_id, &device, "renew").await?,
        CardCommand::Repair { card_id, device } => rekey_ceremony(&c, card_id, &device, "repair").await?,
        CardCommand::Try { card_id, device } => {
            let mut card = open_device(&device, false)?;
            let passcode = Keyboard { stdin: device.passcode_stdin }.read("Passcode: ")?;
            let mut challenge = [0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut challenge)
                .map_err(|_| anyhow!("no randomness"))?;
            match card.sign(&passcode, &challenge) {
                Ok(signature) => {
                    let ok = careid_card::verify_signature(&card.public_key()?, &challenge, &signature);
                    json!({ "card_id": card_id, "signed": ok })
                }
                Err(CardError::WrongPasscode | CardError::Locked) => {
                    // Reported by the card's own proof: a holder whose card is active has no
                    // other session than the card's.
                    let workstation = Workstation::parse(&crate::agent::host_name())?;
                    let anonymous = Client::new(c.server(), None);
                    let state = crate::agent::report_at_card(&anonymous, card.as_ref(), &workstation).await?;
                    json!({ "card_id": card_id, "signed": false, "wrong_passcode": true, "state": state["state"] })
                }
                Err(other) => return Err(other.into()),
            }
        }
        CardCommand::ChangePasscode { card_id, device } => {
            let dob = date_of_birth(&c, card_id).await?;
            let mut card = open_device(&device, false)?;
            let keyboard = Keyboard { stdin: device.passcode_stdin };
            let old = keyboard.read("Current passcode: ")?;
            let new = keyboard.new_passcode(dob)?;
            match card.change_passcode(&old, &new) {
                Ok(()) => json!({ "card_id": card_id, "changed": true }),
                Err(CardError::WrongPasscode | CardError::Locked) => {
                    let state = c.post(&format!("/api/v1/cards/{card_id}/wrong-passcode"), json!({})).await?;
                    json!({ "card_id": card_id, "changed": false, "wrong_passcode": true, "state": state["state"] })
                }
                Err(other) => return Err(other.into()),
            }
        }
        CardCommand::Status { device } => {
            let card = open_device(&device, false)?;
            let status = card.status()?;
            json!({
                "serial": status.serial.to_string(), "label": status.label, "passcode_set": status.passcode_set,
                "tries": format!("{:?}", status.tries).to_lowercase(), "has_certificate": card.certificate()?.is_some(),
            })
        }
        CardCommand::Report { card_id, reason } => {
            c.post(&format!("/api/v1/cards/{card_id}/report"), json!({ "report": reason })).await?
        }
        CardCommand::Cancel { card_id } => c.post(&format!("/api/v1/cards/{card_id}/cancel"), json!({})).await?,
        CardCommand::Clear { card_id, device } => clear(&c, card_id, &device).await?,
        CardCommand::Show { card_id } => c.get(&format!("/api/v1/cards/{card_id}")).await?,
        CardCommand::List { person } => c.get(&format!("/api/v1/people/{person}/cards")).await?,
        CardCommand::CloseInvestigation { card, review, outcome } => {
            let record = c.get(&format!("/api/v1/cards/{card}")).await?;
            let Some(incident) = record["incident_id"].as_i64() else {
                anyhow::bail!("card {card} has no investigation: only a card reported lost or stolen has one");
            };
            c.post(&format!("/api/v1/incidents/{incident}/close"), json!({ "review": review, "outcome": outcome }))
                .await?
        }
    };
    args.flags.print(&value)
}

/// The clearing ceremony: careid revokes the card and releases its administrative secret to
/// this process, which wipes the card (keys, certificate, passcode) back to a blank token under
/// the transport secret, ready for a new issue.
pub(crate) async fn clear(c: &Client, card_id: i64, device: &Device) -> anyhow::Result<Value> {
    let mut card = open_device(device, false)?;
    let recipient = BoxRecipient::new()?;
    let body = json!({ "ceremony_key": STANDARD.encode(recipient.public_key()) });
    let cleared = c.post(&format!("/api/v1/cards/{card_id}/clear"), body).await?;
    let administrator = open_clear_secret(recipient, &b64(&cleared, "sealed_secret")?)?;
    let transport = Secret::new(TRANSPORT_SECRET.into());
    card.initialise(&administrator, &transport, "careid blank")?;
    let serial = card.status()?.serial;
    Ok(json!({ "card_id": card_id, "serial": serial.to_string(), "state": "cleared", "card": "blank" }))
}

/// The issuing ceremony: the server records the card and seals a new administrative secret to
/// this process; the card is initialised with it and makes its key; the server certifies the
/// key; the certificate goes onto the card. The card leaves locked.
pub(crate) async fn issue(c: &Client, person: &str, device: &Device) -> anyhow::Result<Value> {
    let mut card = open_device(device, true)?;
    // A blank token has no serial until it is initialised. It is initialised under the
    // well-known transport secret first (no key, no passcode: nothing to protect yet), so a
    // refused issue leaves it reusable; once careid accepts, the secret rotates to careid's.
    let transport = Secret::new(TRANSPORT_SECRET.into());
    card.initialise(&transport, &transport, &format!("careid {person}"))?;
    let serial = card.status()?.serial;
    let recipient = BoxRecipient::new()?;
    let body = json!({ "person": person, "serial": serial.to_string(), "ceremony_key": STANDARD.encode(recipient.public_key()) });
    let started = c.post("/api/v1/cards", body).await?;
    let card_id = started["card_id"].as_i64().ok_or_else(|| anyhow!("the server sent no card id"))?;
    let administrator = open_issue_secret(recipient, &b64(&started, "sealed_secret")?)?;
    card.rotate_administrator_secret(&transport, &administrator)?;
    let public_key = card.generate_key(&administrator)?;
    let certified = c
        .post(&format!("/api/v1/cards/{card_id}/certify"), json!({ "public_key": STANDARD.encode(&public_key) }))
        .await?;
    card.store_certificate(&b64(&certified, "certificate")?)?;
    Ok(json!({
        "card_id": card_id,
        "serial": serial.to_string(),
        "state": "awaiting_passcode",
        "next": format!("the holder sets their passcode: careid card set-passcode {card_id} ..."),
    }))
}
