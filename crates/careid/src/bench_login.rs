//! `careid bench login`: card logins, heartbeats and token exchanges per second, driven over
//! HTTP on loopback against a careid server this command starts (SQLite, group commit), with
//! many virtual cards signing as the agent would; beside the raw P-256 verification rate of
//! this machine, measured in the same run. Every phase has a fixed count: it stops by itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use careid_domain::TERMS_OF_USE_VERSION;
use careid_domain::login::{HeartbeatMessage, LoginMessage, Workstation};
use careid_service::{Ceremony, NewClient, RequestContext};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::SystemClock;
use crate::bench::{card_holders, drive, percentile, tempfile_dir};

/// One virtual card: its key and its certificate.
struct BenchCard {
    key: EcdsaKeyPair,
    certificate: String,
}

/// Verifications per second of raw ECDSA P-256 (ring), for about a second.
fn raw_p256_verify_rate() -> anyhow::Result<f64> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).map_err(|_| anyhow::anyhow!("keygen"))?;
    let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .map_err(|_| anyhow::anyhow!("key"))?;
    let signature = key.sign(&rng, b"careid bench").map_err(|_| anyhow::anyhow!("sign"))?;
    let public =
        ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, key.public_key().as_ref());
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..100 {
            public.verify(b"careid bench", signature.as_ref()).map_err(|_| anyhow::anyhow!("verify"))?;
        }
        n += 100;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

fn sign(card: &BenchCard, message: &[u8]) -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    Ok(STANDARD.encode(card.key.sign(&rng, message).map_err(|_| anyhow::anyhow!("sign"))?))
}

fn print(name: &str, rate: f64, latencies: &[Duration], verify_rate: f64, target: &str) {
    println!(
        "  {name:<44} {rate:>9.0} /s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({:.3} of raw verify; target {target})",
        percentile(latencies, 0.5).as_secs_f64() * 1e3,
        percentile(latencies, 0.99).as_secs_f64() * 1e3,
        rate / verify_rate
    );
}

/// One card login as the agent makes it: a challenge for the workstation, then the signed login.
async fn login(http: &reqwest::Client, url: &str, card: &BenchCard) -> anyhow::Result<(String, String)> {
    let workstation = Workstation::parse("bench-ws")?;
    let challenge = post(http, &format!("{url}/api/v1/login/challenge"), &json!({ "workstation": "bench-ws" })).await?;
    let challenge = challenge["challenge"].as_str().unwrap_or_default().to_owned();
    let time = careid_domain::ports::Clock::now(&SystemClock).unix_timestamp();
    let message = LoginMessage { challenge: &challenge, workstation: &workstation, selected: None, time };
    let body = json!({
        "challenge": challenge, "workstation": "bench-ws", "certificate": card.certificate,
        "time": time, "terms_accepted": TERMS_OF_USE_VERSION, "signature": sign(card, &message.to_bytes())?,
    });
    let session = post(http, &format!("{url}/api/v1/login/card"), &body).await?;
    let id = session["session_id"].as_str().unwrap_or_default().to_owned();
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    Ok((id, token))
}

/// Ends a session as the agent does when its card leaves the reader.
async fn card_removed(http: &reqwest::Client, url: &str, token: &str) -> anyhow::Result<()> {
    let response =
        http.delete(format!("{url}/api/v1/sessions/current?reason=card_removed")).bearer_auth(token).send().await?;
    anyhow::ensure!(response.status().is_success(), "ending the session answered {}", response.status());
    Ok(())
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    let response = http.post(url).json(body).send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {value}");
    Ok(value)
}

pub async fn bench_login(cards: usize, heartbeats: usize, workers: usize) -> anyhow::Result<()> {
    use careid_pki::{BoxRecipient, MasterKey, TokenSigner};

    let verify_rate = raw_p256_verify_rate()?;
    println!("careid bench login: {cards} virtual cards, {workers} concurrent agents, over HTTP on loopback");
    println!("  baseline: raw ECDSA P-256 verifications on this machine  {verify_rate:>9.0} /s");

    // A deployment with a CA, `cards` people in one position, each with an active card.
    let dir = tempfile_dir()?;
    let (store, service, manager, uuids) = card_holders(&dir, "Login", cards).await?;
    let (signer, _) = TokenSigner::generate(&MasterKey::from_hex(&MasterKey::generate_hex()?)?)?;
    let ctx = RequestContext::new("bench");
    let rng = ring::rand::SystemRandom::new();
    let mut bench_cards = Vec::with_capacity(cards);
    for (i, uuid) in uuids.iter().enumerate() {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("keygen"))?;
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .map_err(|_| anyhow::anyhow!("key"))?;
        let spki = careid_pki::p256_spki(key.public_key().as_ref()).ok_or_else(|| anyhow::anyhow!("spki"))?;
        let serial = careid_domain::card::CardSerial::parse(&format!("LOGIN{i:08}"))?;
        let recipient = BoxRecipient::new()?;
        let (id, _) = service.begin_card_issue(&ctx, &manager, uuid, serial, recipient.public_key()).await?;
        let certificate = service.certify_card(&ctx, &manager, id, &spki).await?;
        let recipient = BoxRecipient::new()?;
        service
            .release_administrator_secret(&ctx, &manager, id, Ceremony::FirstPasscode, recipient.public_key())
            .await?;
        service.complete_ceremony(&ctx, &manager, id).await?;
        bench_cards.push(Arc::new(BenchCard { key, certificate: STANDARD.encode(certificate) }));
    }
    let new = NewClient {
        id: "bench-app".into(),
        name: "Bench application".into(),
        kind: "public".into(),
        redirect_uris: vec!["http://127.0.0.1/cb".into()],
        backchannel_logout_uri: None,
    };
    service.register_client(&ctx, &manager, new).await?;

    // The server, on loopback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let oidc = Arc::new(careid_http::Oidc { signer, issuer: url.clone(), agent_port: 0 });
    // One client signs in thousands of times a second from one address: what the benchmark
    // measures is careid's work, not the limits an operator sets for anonymous clients.
    let app =
        careid_http::App::new(service.clone()).with_oidc(oidc).with_limits(careid_http::limit::Limits::unlimited());
    let server = tokio::spawn(careid_http::serve(listener, app, std::future::pending()));
    let http = reqwest::Client::builder().pool_max_idle_per_host(workers).build()?;

    // Logins: challenge, sign, verify, session, audit.
    let sessions = Arc::new(std::sync::Mutex::new(Vec::with_capacity(cards)));
    let (rate, latencies) = {
        let (http, url, sessions) = (http.clone(), url.clone(), sessions.clone());
        drive(bench_cards.clone(), workers, move |card: Arc<BenchCard>| {
            let (http, url, sessions) = (http.clone(), url.clone(), sessions.clone());
            async move {
                let (id, token) = login(&http, &url, &card).await?;
                sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((card, id, token));
                Ok(())
            }
        })
        .await?
    };
    print("card logins (challenge + signed login)", rate, &latencies, verify_rate, ">= 10,000/s, p99 < 10 ms");

    // Heartbeats: each card signs its session's rising counter.
    let live: Vec<(Arc<BenchCard>, String, String)> =
        std::mem::take(&mut *sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let beats: Vec<(Arc<BenchCard>, String, u64)> = (1..=heartbeats as u64)
        .flat_map(|counter| live.iter().map(move |(card, id, _)| (card.clone(), id.clone(), counter)))
        .rev()
        .collect();
    let (rate, latencies) = {
        let (http, url) = (http.clone(), url.clone());
        drive(beats, workers, move |(card, session, counter): (Arc<BenchCard>, String, u64)| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let time = careid_domain::ports::Clock::now(&SystemClock).unix_timestamp();
                let message = HeartbeatMessage { session: &session, counter, time }.to_bytes();
                let body = json!({ "counter": counter, "time": time, "signature": sign(&card, &message)? });
                post(&http, &format!("{url}/api/v1/sessions/{session}/heartbeat"), &body).await?;
                Ok(())
            }
        })
        .await?
    };
    print("heartbeats (signed, counted, audited)", rate, &latencies, verify_rate, ">= 20,000/s");

    // Token exchange: a card session's token for an access token to an application.
    let exchanges: Vec<String> = live.iter().map(|(_, _, token)| token.clone()).collect();
    let (rate, latencies) = {
        let (http, url) = (http.clone(), url.clone());
        drive(exchanges, workers, move |token: String| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("subject_token", token.as_str()),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("audience", "bench-app"),
                ];
                let response = http.post(format!("{url}/oidc/token")).form(&form).send().await?;
                anyhow::ensure!(response.status().is_success(), "token exchange answered {}", response.status());
                Ok(())
            }
        })
        .await?
    };
    print("token exchanges (ES256 access tokens)", rate, &latencies, verify_rate, ">= 20,000/s");

    // Switching user at a shared workstation: one card leaves (its session ends), the next
    // card logs in. Half the cards are taken out first, so that each switch brings in a card
    // with no live session.
    let (leaving, arriving): (Vec<_>, Vec<_>) = live.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let (rate, latencies) = {
        let (http, url) = (http.clone(), url.clone());
        let out: Vec<String> = arriving.iter().map(|(_, (_, _, token))| token.clone()).collect();
        drive(out, workers, move |token: String| {
            let (http, url) = (http.clone(), url.clone());
            async move { card_removed(&http, &url, &token).await }
        })
        .await?
    };
    print("card removals (session ended, tokens revoked)", rate, &latencies, verify_rate, "none set");
    let mut switches: Vec<(String, Arc<BenchCard>)> =
        leaving.into_iter().zip(arriving).map(|((_, (_, _, token)), (_, (card, _, _)))| (token, card)).collect();
    // First one workstation alone: the time a user waits at the desk. Then all agents at once.
    let alone = switches.split_off(switches.len().saturating_sub(100));
    for (label, batch, concurrency) in
        [("switching user, one workstation alone", alone, 1), ("switching user, all agents at once", switches, workers)]
    {
        if batch.is_empty() {
            continue;
        }
        let (http, url) = (http.clone(), url.clone());
        let (rate, latencies) = drive(batch, concurrency, move |(token, card): (String, Arc<BenchCard>)| {
            let (http, url) = (http.clone(), url.clone());
            async move {
                card_removed(&http, &url, &token).await?;
                login(&http, &url, &card).await?;
                Ok(())
            }
        })
        .await?;
        print(label, rate, &latencies, verify_rate, "removal + next login");
    }
    server.abort();
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
