//! `careid agent`: the workstation agent. It waits for a card, asks the holder's passcode at
//! the terminal, logs in by the card's signature over a fresh challenge, lets the holder choose
//! a position when they hold several, and keeps the session alive only while the card proves
//! it is in the reader: a signed heartbeat at the interval the server asks. When the card
//! leaves, the session is ended at once and the agent waits for the next card (switching user
//! is taking one card out and putting another in).
//!
//! The passcode is given to the card once, to log the holder in to it, and then forgotten: the
//! login, its heartbeats and sign-in approvals are signed by the logged-in card, and the agent
//! logs out of the card when the session ends.
//!
//! The session is saved as a CLI profile (default `card`), so `careid ra --as card ...` acts
//! with it; the profile is removed when the session ends. While the session lives, the local
//! endpoint on 127.0.0.1 (`agent_local.rs`) lets careid's sign-in page have the card approve
//! an application's sign-in, and local applications get access tokens for the session.

use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_card::{Card, CardError, CardIdentity, VirtualCard};
use careid_domain::ids::{AssignmentId, OdsCode};
use careid_domain::login::{HeartbeatMessage, LoginMessage, Workstation};
use careid_domain::oidc::AuthorizeMessage;
use careid_domain::{TERMS_OF_USE, TERMS_OF_USE_VERSION};
use clap::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::agent_local::LocalRequest;

use crate::card::{Device, Keyboard, open_device};
use crate::client::{ApiFailure, Client, Profile, Profiles};

impl AgentArgs {
    fn server(&self) -> &str {
        self.server.as_deref().unwrap_or(crate::ra::DEFAULT_SERVER)
    }
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The careid server (default: the address in --config, or http://127.0.0.1:8420).
    #[arg(long, env = "CAREID_SERVER")]
    server: Option<String>,
    /// This workstation's name (default: the host's name).
    #[arg(long)]
    workstation: Option<String>,
    /// Log in to this organisation's position (with --assignment) instead of choosing.
    #[arg(long, requires = "assignment")]
    org: Option<String>,
    /// Log in to this assignment (with --org) instead of choosing.
    #[arg(long, requires = "org")]
    assignment: Option<i64>,
    /// The CLI profile the session is saved as while it lives.
    #[arg(long, default_value = "card")]
    profile: String,
    /// Stop when the card leaves the reader, instead of waiting for the next one.
    #[arg(long)]
    once: bool,
    /// Accept the terms of use of this version without being asked (for unattended use: you
    /// have read them, `careid agent --show-terms`). Without it, the agent shows the terms and
    /// asks at the first login of each version with each card.
    #[arg(long, value_name = "VERSION")]
    accept_terms: Option<String>,
    /// A second reader for the card ceremonies an RA starts from careid's console (issue,
    /// first passcode, unlock, renew, repair, clear): a virtual card file.
    #[arg(long, value_name = "PATH", conflicts_with = "ceremony_slot")]
    ceremony_virtual: Option<std::path::PathBuf>,
    /// ... or a token's slot in --pkcs11-module.
    #[arg(long, value_name = "SLOT")]
    ceremony_slot: Option<u64>,
    /// Print the terms of use and stop.
    #[arg(long)]
    show_terms: bool,
    /// The port of the local endpoint on 127.0.0.1 (careid's `agent_port`); 0 turns it off.
    #[arg(long, default_value_t = 7390)]
    local_port: u16,
    #[command(flatten)]
    device: Device,
}

/// How often the agent looks for the card.
const POLL: Duration = Duration::from_millis(250);

pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')).collect())
        .filter(|h: &String| !h.is_empty())
        .unwrap_or_else(|| "workstation".to_owned())
}

/// Whether the card is in the reader: the virtual card's file is there, or the token answers.
fn present(device: &Device, card: Option<&dyn Card>) -> bool {
    match (&device.virtual_card, card) {
        (Some(path), _) => path.exists(),
        (None, Some(card)) => card.status().is_ok(),
        (None, None) => open_device(device, false).is_ok(),
    }
}

/// Whether the card that logged in is still the one in the reader: its serial and key, read
/// again from the device at every poll (the virtual card's file is read afresh). Another card
/// swapped in within one poll is a removed card.
fn still_present(device: &Device, card: &dyn Card, logged_in: &CardIdentity) -> bool {
    let seen = match &device.virtual_card {
        Some(path) => VirtualCard::open(path).and_then(|c| careid_card::identity(&c)),
        None => careid_card::identity(card),
    };
    seen.is_ok_and(|seen| seen == *logged_in)
}

/// Answers a local request with `why` it cannot be done now.
fn decline(request: LocalRequest, why: &str) {
    match request {
        LocalRequest::Authorize { reply, .. } => {
            let _ = reply.send(Err(why.into()));
        }
        LocalRequest::Token { reply, .. } | LocalRequest::Ceremony { reply, .. } => {
            let _ = reply.send(Err(why.into()));
        }
    }
}

/// Sleeps one poll, answering local requests meanwhile: there is no card session to use.
async fn idle(requests: &mut mpsc::Receiver<LocalRequest>) {
    const NO_SESSION: &str = "no card session: insert your card and log in with the careid agent";
    tokio::select! {
        () = tokio::time::sleep(POLL) => {}
        Some(request) = requests.recv() => decline(request, NO_SESSION),
    }
}

async fn wait_for_card(device: &Device, requests: &mut mpsc::Receiver<LocalRequest>) -> anyhow::Result<Box<dyn Card>> {
    loop {
        if present(device, None)
            && let Ok(card) = open_device(device, false)
        {
            return Ok(card);
        }
        idle(requests).await;
    }
}

/// A live card session, as the agent keeps it.
struct Live {
    token: String,
    session: String,
    interval: Duration,
}

pub async fn run(mut args: AgentArgs, default_server: String) -> anyhow::Result<()> {
    if args.show_terms {
        println!("{TERMS_OF_USE}");
        return Ok(());
    }
    if let Some(version) = args.accept_terms.as_deref().filter(|v| *v != TERMS_OF_USE_VERSION) {
        bail!(
            "--accept-terms {version}: the terms of use are now {TERMS_OF_USE_VERSION}; read them \
             (careid agent --show-terms) and accept that version"
        );
    }
    args.server.get_or_insert(default_server);
    let workstation = Workstation::parse(&args.workstation.clone().unwrap_or_else(host_name))?;
    let selected = match (&args.org, args.assignment) {
        (Some(org), Some(a)) => Some((OdsCode::parse(org)?, AssignmentId::parse(&a.to_string())?)),
        _ => None,
    };
    let client = Client::new(args.server(), None);
    let keyboard = Keyboard { stdin: args.device.passcode_stdin };
    let (sender, mut requests) = mpsc::channel(16);
    if args.local_port != 0 {
        let (port, key) = crate::agent_local::serve(args.local_port, args.server(), sender).await?;
        eprintln!("Local endpoint for careid's sign-in page and local applications: http://127.0.0.1:{port}");
        eprintln!("Local applications present the key in {} (yours alone to read)", key.display());
    }
    loop {
        eprintln!("Waiting for a card at {workstation}...");
        let mut card = wait_for_card(&args.device, &mut requests).await?;
        if let Err(error) = terms_accepted(&args, card.as_ref(), &keyboard) {
            eprintln!("Not logged in: {error:#}");
            if args.once {
                return Err(error);
            }
            wait_for_removal(&args.device, card.as_ref(), &mut requests).await;
            continue;
        }
        // The card keeps the holder's login; the passcode is forgotten as soon as it is given.
        let passcode = keyboard.read("Passcode: ")?;
        let opened = card.log_in(&passcode);
        drop(passcode);
        let attempt = match opened {
            // The card's identity is read before the login, so that the session is bound to
            // the card that made it.
            Ok(()) => match careid_card::identity(card.as_ref()) {
                Ok(identity) => login(&client, card.as_mut(), &workstation, selected.clone(), &keyboard)
                    .await
                    .map(|live| (live, identity)),
                Err(error) => Err(error.into()),
            },
            Err(error @ (CardError::WrongPasscode | CardError::Locked)) => {
                report_wrong_passcode(&client, card.as_ref(), &workstation).await;
                Err(error.into())
            }
            Err(error) => Err(error.into()),
        };
        let (live, identity) = match attempt {
            Ok(live) => live,
            Err(error) => {
                card.log_out();
                eprintln!("Not logged in: {error:#}");
                if args.once {
                    return Err(error);
                }
                wait_for_removal(&args.device, card.as_ref(), &mut requests).await;
                continue;
            }
        };
        save_profile(&args, &live)?;
        let ceremonies = Device::for_ceremonies(
            args.ceremony_virtual.clone(),
            Some(&args.device),
            args.ceremony_slot,
            args.device.passcode_stdin,
        );
        let at_card =
            AtCard { device: &args.device, identity: &identity, keyboard: &keyboard, ceremonies: ceremonies.as_ref() };
        let ended = keep_alive(&client, card.as_mut(), &live, &at_card, &mut requests).await;
        card.log_out();
        remove_profile(&args.profile)?;
        match ended {
            Ok(()) => println!("card removed: session {} ended", live.session),
            Err(error) => println!("session {} ended: {error:#}", live.session),
        }
        if args.once {
            return Ok(());
        }
        wait_for_removal(&args.device, card.as_ref(), &mut requests).await;
    }
}

/// Where the agent remembers which card accepted which version of the terms of use.
fn terms_file() -> std::path::PathBuf {
    crate::client::cli_home().join("terms-accepted.json")
}

/// The holder accepts the current terms of use: shown and asked at the first login of each
/// version with this card (or accepted by --accept-terms); every login then sends the version.
fn terms_accepted(args: &AgentArgs, card: &dyn Card, keyboard: &Keyboard) -> anyhow::Result<()> {
    let serial = card.status()?.serial.to_string();
    let file = terms_file();
    let mut accepted: std::collections::BTreeMap<String, String> = match std::fs::read(&file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => std::collections::BTreeMap::new(),
    };
    if accepted.get(&serial).map(String::as_str) == Some(TERMS_OF_USE_VERSION) {
        return Ok(());
    }
    let asked = || says_yes(keyboard, &format!("{TERMS_OF_USE}\nDo you accept these terms? [y/N]:"));
    if args.accept_terms.is_none() && !asked()? {
        bail!("the terms of use ({TERMS_OF_USE_VERSION}) were not accepted: careid logs nobody in without them");
    }
    accepted.insert(serial, TERMS_OF_USE_VERSION.to_owned());
    if let Some(dir) = file.parent() {
        crate::client::private_dir(dir)?;
    }
    crate::client::write_private(&file, &serde_json::to_vec_pretty(&accepted)?)?;
    Ok(())
}

/// Tells careid the card refused the passcode, so that careid locks it at the third wrong one
/// in a row even where the card itself never locks; says what careid recorded. A report that
/// cannot be made is said too, and the holder is still refused.
async fn report_wrong_passcode(client: &Client, card: &dyn Card, workstation: &Workstation) {
    match report_at_card(client, card, workstation).await {
        Ok(recorded) if recorded["state"] == "locked" => {
            eprintln!(
                "careid has this card locked (three wrong passcodes in a row): ask your RA or sponsor to unlock it"
            );
        }
        Ok(recorded) if recorded["state"] == "active" => eprintln!(
            "careid recorded {} wrong passcode(s) in a row on this card; the third locks it",
            recorded["wrong_passcodes_in_a_row"]
        ),
        Ok(recorded) => eprintln!("this card is {} in careid's records: ask your RA", recorded["state"]),
        Err(error) => eprintln!("careid could not be told of the wrong passcode: {error:#}"),
    }
}

/// Reports a passcode the card refused, proved by the card itself (a fresh challenge for this
/// workstation and the card's certificate) rather than by anyone's session: the holder at
/// their card needs none. Returns what careid recorded.
pub(crate) async fn report_at_card(
    client: &Client,
    card: &dyn Card,
    workstation: &Workstation,
) -> anyhow::Result<Value> {
    let certificate = card.certificate()?.ok_or_else(|| anyhow!("the card holds no certificate"))?;
    let challenge = client.post("/api/v1/login/challenge", json!({ "workstation": workstation.as_str() })).await?;
    let body = json!({
        "challenge": challenge["challenge"],
        "workstation": workstation.as_str(),
        "certificate": STANDARD.encode(&certificate),
    });
    client.post("/api/v1/login/wrong-passcode", body).await
}

/// Challenge, sign, log in; asks the holder to choose when they hold several positions.
async fn login(
    client: &Client,
    card: &mut dyn Card,
    workstation: &Workstation,
    mut selected: Option<(OdsCode, AssignmentId)>,
    keyboard: &Keyboard,
) -> anyhow::Result<Live> {
    let certificate = card.certificate()?.ok_or_else(|| anyhow!("the card holds no certificate"))?;
    loop {
        let challenge = client.post("/api/v1/login/challenge", json!({ "workstation": workstation.as_str() })).await?;
        let challenge = challenge["challenge"].as_str().ok_or_else(|| anyhow!("the server sent no challenge"))?;
        let time = careid_domain::ports::Clock::now(&crate::SystemClock).unix_timestamp();
        let message =
            LoginMessage { challenge, workstation, selected: selected.as_ref().map(|(o, a)| (o, *a)), time }.to_bytes();
        let signature = card.sign_logged_in(&message).context("the card could not sign")?;
        let body = json!({
            "challenge": challenge,
            "workstation": workstation.as_str(),
            "certificate": STANDARD.encode(&certificate),
            "org": selected.as_ref().map(|(o, _)| o.to_string()),
            "assignment_id": selected.as_ref().map(|(_, a)| a.0),
            "time": time,
            "terms_accepted": TERMS_OF_USE_VERSION,
            "signature": STANDARD.encode(signature),
        });
        match client.post("/api/v1/login/card", body).await {
            Ok(response) => {
                let acting = &response["acting"];
                println!(
                    "logged in as {} at {} ({}), session {}",
                    acting["person"].as_str().unwrap_or_default(),
                    acting["org"].as_str().unwrap_or_default(),
                    acting["role"].as_str().unwrap_or_default(),
                    response["session_id"].as_str().unwrap_or_default()
                );
                if let Some(notice) = response["notice"].as_str() {
                    println!("NOTE: {notice}");
                }
                let seconds = response["heartbeat_interval_seconds"].as_u64().unwrap_or(30).max(1);
                return Ok(Live {
                    token: text(&response, "token")?,
                    session: text(&response, "session_id")?,
                    interval: Duration::from_secs(seconds),
                });
            }
            Err(error) => {
                let Some(choices) = role_choices(&error) else { return Err(error) };
                selected = Some(choose(&choices, keyboard)?);
            }
        }
    }
}

fn text(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field].as_str().map(str::to_owned).ok_or_else(|| anyhow!("the server sent no {field}"))
}

fn role_choices(error: &anyhow::Error) -> Option<Vec<Value>> {
    let failure = error.downcast_ref::<ApiFailure>()?;
    (failure.body["error"]["code"] == "role_selection_needed")
        .then(|| failure.body["error"]["choices"].as_array().cloned().unwrap_or_default())
}

fn choose(choices: &[Value], keyboard: &Keyboard) -> anyhow::Result<(OdsCode, AssignmentId)> {
    println!("You hold several positions:");
    for (n, c) in choices.iter().enumerate() {
        println!(
            "  {}. {} at {} ({})",
            n + 1,
            c["position_name"].as_str().unwrap_or_default(),
            c["org"].as_str().unwrap_or_default(),
            c["role"].as_str().unwrap_or_default()
        );
    }
    let answer = keyboard.read("Choose one (number): ")?;
    let picked = answer
        .expose()
        .trim()
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_sub(1))
        .and_then(|n| choices.get(n))
        .ok_or_else(|| anyhow!("no such choice"))?;
    let org = OdsCode::parse(picked["org"].as_str().unwrap_or_default())?;
    let assignment = AssignmentId::parse(&picked["assignment_id"].to_string())?;
    Ok((org, assignment))
}

/// What the agent knows of the card in the reader and of the holder at it.
struct AtCard<'a> {
    device: &'a Device,
    identity: &'a CardIdentity,
    keyboard: &'a Keyboard,
    /// The second reader the RA's ceremonies run on, if the agent has one.
    ceremonies: Option<&'a Device>,
}

/// Prints `question` and reads the answer at the agent's keyboard; only `y` or `yes` agrees.
fn says_yes(keyboard: &Keyboard, question: &str) -> anyhow::Result<bool> {
    println!("{question}");
    let answer = tokio::task::block_in_place(|| keyboard.read("> "))?;
    Ok(matches!(answer.expose().trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// Asks the holder at the agent to confirm. The agent waits for the answer: a holder who walks
/// away lets the session lapse, which fails safe.
fn holder_agrees(keyboard: &Keyboard, question: &str) -> bool {
    says_yes(keyboard, &format!("{question} Confirm at the agent [y/N]:")).unwrap_or(false)
}

/// A ceremony asked for by careid's console: the RA confirms at the agent, then it runs on the
/// ceremony reader. The answer is the ceremony's result, or why it did not run.
async fn ceremony_at_agent(
    client: &Client,
    device: Option<&Device>,
    keyboard: Keyboard,
    ceremony: &str,
    card: Option<i64>,
    person: Option<String>,
) -> Result<Value, String> {
    let Some(device) = device else {
        return Err("this agent has no ceremony reader: start it with --ceremony-virtual or --ceremony-slot".into());
    };
    let target = match (&card, &person) {
        (Some(card), _) => format!("card {card}"),
        (None, Some(person)) => format!("a new card for {person}"),
        (None, None) => return Err("name the card (card_id) or, to issue, the person".into()),
    };
    if !holder_agrees(&keyboard, &format!("Run the {ceremony} ceremony on the card in the ceremony reader ({target})?"))
    {
        println!("ceremony declined ({ceremony}, {target})");
        return Err("the holder declined at the agent".into());
    }
    let done = run_ceremony(client, device, ceremony, card, person.as_deref()).await;
    match &done {
        Ok(_) => println!("ceremony done ({ceremony}, {target})"),
        Err(error) => println!("ceremony failed ({ceremony}, {target}): {error:#}"),
    }
    done.map_err(|e| reason(&e))
}

/// A card ceremony on the ceremony reader, as `careid card` runs it at the desk, with the
/// agent's session: the RA's, who authorises it.
async fn run_ceremony(
    client: &Client,
    device: &Device,
    ceremony: &str,
    card: Option<i64>,
    person: Option<&str>,
) -> anyhow::Result<Value> {
    match (ceremony, card, person) {
        ("issue", _, Some(person)) => crate::card::issue(client, person, device).await,
        ("first_passcode" | "unlock", Some(card), _) => {
            crate::card::passcode_ceremony(client, card, device, ceremony).await
        }
        ("renew" | "repair", Some(card), _) => crate::card::rekey_ceremony(client, card, device, ceremony).await,
        ("clear", Some(card), _) => crate::card::clear(client, card, device).await,
        _ => Err(anyhow!("the {ceremony} ceremony needs {}", if ceremony == "issue" { "a person" } else { "a card" })),
    }
}

/// Heartbeats while the card is there; ends the session when it leaves. `Err` when the
/// server ended the session first (or refused a proof).
async fn keep_alive(
    client: &Client,
    card: &mut dyn Card,
    live: &Live,
    at_card: &AtCard<'_>,
    requests: &mut mpsc::Receiver<LocalRequest>,
) -> anyhow::Result<()> {
    let session_client = Client::new(client.server(), Some(live.token.clone()));
    let mut counter = 0u64;
    let mut next_beat = tokio::time::Instant::now() + live.interval;
    // Applications the holder agreed may have tokens for this card session.
    let mut agreed = std::collections::HashSet::new();
    let mut ceremony_running: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        if !still_present(at_card.device, &*card, at_card.identity) {
            session_client.delete("/api/v1/sessions/current?reason=card_removed").await?;
            return Ok(());
        }
        if tokio::time::Instant::now() >= next_beat {
            counter += 1;
            let time = careid_domain::ports::Clock::now(&crate::SystemClock).unix_timestamp();
            let message = HeartbeatMessage { session: &live.session, counter, time }.to_bytes();
            let signature = card.sign_logged_in(&message).context("the card could not sign a heartbeat")?;
            let body = json!({ "counter": counter, "time": time, "signature": STANDARD.encode(signature) });
            client.post(&format!("/api/v1/sessions/{}/heartbeat", live.session), body).await?;
            next_beat += live.interval;
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            Some(request) = requests.recv() => match request {
                // One question at the agent at a time: the holder answers them on one keyboard.
                request if ceremony_running.as_ref().is_some_and(|task| !task.is_finished()) => {
                    decline(request, "a card ceremony is running at this agent: try again when it is done");
                }
                // A ceremony uses the ceremony reader, not this card: it runs beside the
                // heartbeats, so that the RA's session does not lapse while the holder types.
                LocalRequest::Ceremony { ceremony, card: target, person, reply } => {
                    let (client, device, keyboard) =
                        (session_client.clone(), at_card.ceremonies.cloned(), at_card.keyboard.clone());
                    ceremony_running = Some(tokio::spawn(async move {
                        let done = ceremony_at_agent(&client, device.as_ref(), keyboard, &ceremony, target, person).await;
                        let _ = reply.send(done);
                    }));
                }
                other => answer(&session_client, card, live, at_card, &mut agreed, other).await,
            },
        }
    }
}

/// Answers a local request with the live session, once the holder agrees: the card signs an
/// approval (each one confirmed), or the agent exchanges the session's token for an
/// application's access token (the first for each application confirmed).
async fn answer(
    client: &Client,
    card: &mut dyn Card,
    live: &Live,
    at_card: &AtCard<'_>,
    agreed: &mut std::collections::HashSet<String>,
    request: LocalRequest,
) {
    const DECLINED: &str = "the holder declined at the agent";
    match request {
        LocalRequest::Authorize { authorization, reply } => {
            let what = if authorization.starts_with(careid_service::CONSOLE_SIGN_IN_PREFIX) {
                "the careid console"
            } else {
                "an application"
            };
            if !holder_agrees(at_card.keyboard, &format!("Sign in to {what} with your card (request {authorization})?"))
            {
                println!("sign-in declined ({authorization})");
                let _ = reply.send(Err(DECLINED.into()));
                return;
            }
            let approved = async {
                let time = careid_domain::ports::Clock::now(&crate::SystemClock).unix_timestamp();
                let message = AuthorizeMessage { authorization: &authorization, session: &live.session, time };
                let signature = card.sign_logged_in(&message.to_bytes()).context("the card could not sign")?;
                let body = json!({ "session_id": live.session, "time": time, "signature": STANDARD.encode(signature) });
                let approved = client.post(&format!("/oidc/authorize/{authorization}/card"), body).await?;
                text(&approved, "redirect")
            }
            .await;
            if approved.is_ok() {
                println!("card approved a sign-in ({authorization})");
            }
            let _ = reply.send(approved.map_err(|e| reason(&e)));
        }
        LocalRequest::Ceremony { ceremony, card, person, reply } => {
            // `keep_alive` runs ceremonies beside the heartbeats; answered here all the same.
            let done =
                ceremony_at_agent(client, at_card.ceremonies, at_card.keyboard.clone(), &ceremony, card, person).await;
            let _ = reply.send(done);
        }
        LocalRequest::Token { audience, reply } => {
            if !agreed.contains(&audience) {
                if !holder_agrees(
                    at_card.keyboard,
                    &format!("Let the application {audience} act with your card session?"),
                ) {
                    println!("token declined ({audience})");
                    let _ = reply.send(Err(DECLINED.into()));
                    return;
                }
                agreed.insert(audience.clone());
            }
            let form = [
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", live.token.as_str()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                ("audience", audience.as_str()),
            ];
            let token = client.post_form("/oidc/token", &form).await;
            let _ = reply.send(token.map_err(|e| reason(&e)));
        }
    }
}

/// What the server said was wrong, for the local caller.
fn reason(error: &anyhow::Error) -> String {
    match error.downcast_ref::<ApiFailure>() {
        Some(failure) => failure.body["error"]["message"]
            .as_str()
            .or_else(|| failure.body["error_description"].as_str())
            .map_or_else(|| error.to_string(), str::to_owned),
        None => format!("{error:#}"),
    }
}

async fn wait_for_removal(device: &Device, card: &dyn Card, requests: &mut mpsc::Receiver<LocalRequest>) {
    while present(device, Some(card)) {
        idle(requests).await;
    }
}

fn save_profile(args: &AgentArgs, live: &Live) -> anyhow::Result<()> {
    let mut profiles = Profiles::load()?;
    let profile = Profile {
        server: args.server().to_owned(),
        token: live.token.clone(),
        person: String::new(),
        org: String::new(),
        role: String::new(),
    };
    profiles.profiles.insert(args.profile.clone(), profile);
    profiles.save()
}

fn remove_profile(name: &str) -> anyhow::Result<()> {
    let mut profiles = Profiles::load()?;
    profiles.profiles.remove(name);
    if profiles.default.as_deref() == Some(name) {
        profiles.default = None;
    }
    profiles.save()
}
