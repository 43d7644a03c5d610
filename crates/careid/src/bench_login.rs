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
use crate::bench::{drive, percentile, tempfile_dir};

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

/// The servers under load: `careid bench node` processes on one store.
struct Nodes {
    children: Vec<std::process::Child>,
    urls: Vec<String>,
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Nodes {
    /// Starts `count` server processes on the deployment `config` describes.
    fn start(config: &[(&str, String)], count: usize) -> anyhow::Result<Nodes> {
        use std::io::BufRead;
        let mut nodes = Nodes { children: Vec::new(), urls: Vec::new() };
        for _ in 0..count {
            let mut child = std::process::Command::new(std::env::current_exe()?)
                .args(["bench", "node"])
                .env_remove("CAREID_CONFIG")
                .envs(config.iter().map(|(k, v)| (k, v)))
                .env("CAREID_LOG", "warn")
                .stdout(std::process::Stdio::piped())
                .spawn()?;
            let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("the node's output"))?;
            nodes.children.push(child);
            let mut line = String::new();
            std::io::BufReader::new(stdout).read_line(&mut line)?;
            let url = line.trim().strip_prefix("serving ").ok_or_else(|| anyhow::anyhow!("a node said {line:?}"))?;
            nodes.urls.push(url.to_owned());
        }
        Ok(nodes)
    }

    /// The node the `n`th request goes to.
    fn url(&self, n: usize) -> &str {
        &self.urls[n % self.urls.len()]
    }
}

/// `careid bench node`: serves the deployment in `config` on a loopback port of its own, with
/// no rate limits, until killed.
pub async fn node(config: crate::config::Config) -> anyhow::Result<()> {
    let (_store, service) = crate::open_service(&config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("serving http://{}", listener.local_addr()?);
    crate::serve_with_limits(listener, service, &config, careid_http::limit::Limits::unlimited()).await
}

/// CPU seconds (user and system) a process has used, from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// CPU seconds used by every PostgreSQL process on this machine (the server is the database's
/// only user while the benchmark runs).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0.0 };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "postgres").then(|| cpu_seconds(&pid)).flatten()
        })
        .sum()
}

/// What one phase cost: CPU in the servers, the database and this client, and the servers'
/// write batches (from their `/metrics`).
#[derive(Default, Clone, Copy)]
struct Costs {
    server_cpu: f64,
    database_cpu: f64,
    client_cpu: f64,
    batches: f64,
    transactions: f64,
    serial_seconds: f64,
}

impl Costs {
    async fn now(http: &reqwest::Client, nodes: &Nodes) -> Costs {
        let mut costs = Costs {
            server_cpu: nodes.children.iter().filter_map(|c| cpu_seconds(&c.id().to_string())).sum(),
            database_cpu: postgres_cpu_seconds(),
            client_cpu: cpu_seconds("self").unwrap_or_default(),
            ..Costs::default()
        };
        for url in &nodes.urls {
            let Ok(response) = http.get(format!("{url}/metrics")).send().await else { continue };
            let text = response.text().await.unwrap_or_default();
            let metric = |name: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse::<f64>().ok()))
                    .unwrap_or_default()
            };
            costs.batches += metric("careid_store_write_batches_total ");
            costs.transactions += metric("careid_store_write_transactions_total ");
            costs.serial_seconds += metric("careid_store_serial_section_seconds_total ");
        }
        costs
    }

    /// Prints what the phase since `before` cost for each of its `ops` operations, and the
    /// ceiling its serial section sets on the whole deployment.
    fn print_since(self, before: Costs, ops: usize) {
        let per_op = |seconds: f64| seconds / ops.max(1) as f64 * 1e3;
        let serial = self.serial_seconds - before.serial_seconds;
        let transactions = self.transactions - before.transactions;
        let batches = (self.batches - before.batches).max(1.0);
        println!(
            "      CPU per operation: server {:.3} ms, database {:.3} ms, load {:.3} ms; serial section {:.1} µs an operation, {:.1} transactions a batch: ceiling {:.0} /s",
            per_op(self.server_cpu - before.server_cpu),
            per_op(self.database_cpu - before.database_cpu),
            per_op(self.client_cpu - before.client_cpu),
            per_op(serial) * 1e3,
            transactions / batches,
            if serial > 0.0 { ops as f64 / serial } else { f64::INFINITY },
        );
    }
}

/// Where `careid bench login` runs its servers.
pub struct BenchStore {
    /// Server processes on the one store.
    pub nodes: usize,
    /// PostgreSQL instead of SQLite.
    pub postgres_url: Option<String>,
    /// People without cards in the store beside the card holders.
    pub people: usize,
}

/// A process's resident memory now and at its peak, in MB, from `/proc/PID/status`.
fn memory_mb(pid: u32) -> Option<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok().map(|kb| kb / 1024.0))
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub async fn bench_login(cards: usize, heartbeats: usize, workers: usize, store: BenchStore) -> anyhow::Result<()> {
    use careid_pki::BoxRecipient;
    let BenchStore { nodes, postgres_url, people } = store;

    anyhow::ensure!(nodes == 1 || postgres_url.is_some(), "more than one node needs --postgres-url");
    let verify_rate = raw_p256_verify_rate()?;
    let backend = if postgres_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!(
        "careid bench login: {cards} virtual cards, {workers} concurrent agents, over HTTP on loopback to {nodes} \
         server process(es) on {backend}"
    );
    println!("  baseline: raw ECDSA P-256 verifications on this machine  {verify_rate:>9.0} /s");

    // A deployment (its CA and keys in a data directory, as `careid init` makes them) with
    // `cards` people in one position, each with an active card; the servers are started on it
    // afterwards.
    let dir = tempfile_dir()?;
    let mut settings = vec![("CAREID_DATA_DIR", dir.join("data").display().to_string())];
    let schema = format!("careid_bench_login_{}", std::process::id());
    if let Some(url) = &postgres_url {
        settings.push(("CAREID_STORE_URL", url.clone()));
        settings.push(("CAREID_STORE_SCHEMA", schema.clone()));
    }
    let config = crate::config::Config::load(None, settings.iter().map(|(k, v)| ((*k).to_owned(), v.clone())))?;
    crate::create_card_authority(&config, "careid bench")?;
    let (store, service) = crate::open_service(&config).await?;
    let (manager, position, uuids) = crate::bench::people_in_one_position(&service, "Login", cards).await?;
    if people > 0 {
        let started = Instant::now();
        crate::bench::import_bench_people(&service, &manager, position, people, cards as u64 + 1).await?;
        println!("  ({people} more people without cards imported in {:.1} s)", started.elapsed().as_secs_f64());
    }
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
    store.checkpoint_wal().await;
    store.close().await;
    drop((service, store));

    let servers = Arc::new(Nodes::start(&settings, nodes)?);
    let http = reqwest::Client::builder().pool_max_idle_per_host(workers).build()?;

    // Logins: challenge, sign, verify, session, audit.
    let sessions = Arc::new(std::sync::Mutex::new(Vec::with_capacity(cards)));
    let before = Costs::now(&http, &servers).await;
    let (rate, latencies) = {
        let (http, servers, sessions) = (http.clone(), servers.clone(), sessions.clone());
        let numbered: Vec<(usize, Arc<BenchCard>)> = bench_cards.iter().cloned().enumerate().collect();
        drive(numbered, workers, move |(n, card): (usize, Arc<BenchCard>)| {
            let (http, servers, sessions) = (http.clone(), servers.clone(), sessions.clone());
            async move {
                let (id, token) = login(&http, servers.url(n), &card).await?;
                sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push((card, id, token));
                Ok(())
            }
        })
        .await?
    };
    print("card logins (challenge + signed login)", rate, &latencies, verify_rate, ">= 10,000/s, p99 < 10 ms");
    Costs::now(&http, &servers).await.print_since(before, cards);

    // Heartbeats: each card signs its session's rising counter, each to the next node in turn.
    let live: Vec<(Arc<BenchCard>, String, String)> =
        std::mem::take(&mut *sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    let beats: Vec<(Arc<BenchCard>, String, u64, usize)> = (1..=heartbeats as u64)
        .flat_map(|counter| {
            live.iter()
                .enumerate()
                .map(move |(n, (card, id, _))| (card.clone(), id.clone(), counter, n + counter as usize))
        })
        .rev()
        .collect();
    let count = beats.len();
    let before = Costs::now(&http, &servers).await;
    let (rate, latencies) = {
        let (http, servers) = (http.clone(), servers.clone());
        drive(beats, workers, move |(card, session, counter, n): (Arc<BenchCard>, String, u64, usize)| {
            let (http, servers) = (http.clone(), servers.clone());
            async move {
                let time = careid_domain::ports::Clock::now(&SystemClock).unix_timestamp();
                let message = HeartbeatMessage { session: &session, counter, time }.to_bytes();
                let body = json!({ "counter": counter, "time": time, "signature": sign(&card, &message)? });
                post(&http, &format!("{}/api/v1/sessions/{session}/heartbeat", servers.url(n)), &body).await?;
                Ok(())
            }
        })
        .await?
    };
    print("heartbeats (signed, counted)", rate, &latencies, verify_rate, ">= 20,000/s");
    Costs::now(&http, &servers).await.print_since(before, count);

    // Token exchange: a card session's token for an access token to an application.
    let exchanges: Vec<(usize, String)> = live.iter().map(|(_, _, token)| token.clone()).enumerate().collect();
    let before = Costs::now(&http, &servers).await;
    let (rate, latencies) = {
        let (http, servers) = (http.clone(), servers.clone());
        drive(exchanges, workers, move |(n, token): (usize, String)| {
            let (http, servers) = (http.clone(), servers.clone());
            async move {
                let form = [
                    ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                    ("subject_token", token.as_str()),
                    ("subject_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                    ("audience", "bench-app"),
                ];
                let response = http.post(format!("{}/oidc/token", servers.url(n + 1))).form(&form).send().await?;
                anyhow::ensure!(response.status().is_success(), "token exchange answered {}", response.status());
                Ok(())
            }
        })
        .await?
    };
    print("token exchanges (ES256 access tokens)", rate, &latencies, verify_rate, ">= 20,000/s");
    Costs::now(&http, &servers).await.print_since(before, live.len());

    // Switching user at a shared workstation: one card leaves (its session ends), the next
    // card logs in. Half the cards are taken out first, so that each switch brings in a card
    // with no live session.
    let (leaving, arriving): (Vec<_>, Vec<_>) = live.into_iter().enumerate().partition(|(i, _)| i % 2 == 0);
    let out: Vec<(usize, String)> = arriving.iter().map(|(n, (_, _, token))| (*n, token.clone())).collect();
    let count = out.len();
    let before = Costs::now(&http, &servers).await;
    let (rate, latencies) = {
        let (http, servers) = (http.clone(), servers.clone());
        drive(out, workers, move |(n, token): (usize, String)| {
            let (http, servers) = (http.clone(), servers.clone());
            async move { card_removed(&http, servers.url(n), &token).await }
        })
        .await?
    };
    print("card removals (session ended, tokens revoked)", rate, &latencies, verify_rate, "none set");
    Costs::now(&http, &servers).await.print_since(before, count);
    let mut switches: Vec<(usize, String, Arc<BenchCard>)> =
        leaving.into_iter().zip(arriving).map(|((n, (_, _, token)), (_, (card, _, _)))| (n, token, card)).collect();
    // First one workstation alone: the time a user waits at the desk. Then all agents at once.
    let alone = switches.split_off(switches.len().saturating_sub(100));
    for (label, batch, concurrency) in
        [("switching user, one workstation alone", alone, 1), ("switching user, all agents at once", switches, workers)]
    {
        if batch.is_empty() {
            continue;
        }
        let count = batch.len();
        let before = Costs::now(&http, &servers).await;
        let (http_, servers_) = (http.clone(), servers.clone());
        let (rate, latencies) = drive(batch, concurrency, move |(n, token, card): (usize, String, Arc<BenchCard>)| {
            let (http, servers) = (http_.clone(), servers_.clone());
            async move {
                card_removed(&http, servers.url(n), &token).await?;
                login(&http, servers.url(n), &card).await?;
                Ok(())
            }
        })
        .await?;
        print(label, rate, &latencies, verify_rate, "removal + next login");
        Costs::now(&http, &servers).await.print_since(before, count);
    }
    for (n, child) in servers.children.iter().enumerate() {
        if let Some((rss, peak)) = memory_mb(child.id()) {
            println!(
                "  server {} memory: {rss:.0} MB resident, {peak:.0} MB peak ({} people in the store; target <= 600 MB)",
                n + 1,
                cards + people + 1
            );
        }
    }
    drop(servers);
    if let Some(url) = postgres_url {
        let mut options = careid_store::StoreOptions::new(url);
        options.schema = Some(schema);
        crate::bench::drop_schema(&options).await?;
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
