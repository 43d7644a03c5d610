//! Two `careid serve` nodes on one PostgreSQL database, as a deployment beyond one machine
//! runs: a session started on one node is used on the other, a session ended on one is refused
//! on the other at once, both nodes write the one audit log and one of them signs it, a node
//! killed mid-load loses nothing it acknowledged and the other takes over signing, and the log
//! verifies whole afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{CAREID, INIT, ok, recovery_credential, serve, sign_in};

/// `careid` against the shared store in `schema`.
fn on_store(dir: &Path, postgres: &str, schema: &str, args: &[&str]) -> Output {
    Command::new(CAREID)
        .args(args)
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("CAREID_STORE_URL", postgres)
        .env("CAREID_STORE_SCHEMA", schema)
        .env_remove("CAREID_SERVER")
        .env_remove("CAREID_PROFILE")
        .env_remove("CAREID_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn two_nodes_on_one_postgresql_share_sessions_refusals_and_the_log() {
    let Some(postgres) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: the two-node test was not run");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let schema = format!("careid_nodes_{}", std::process::id());
    let credential = recovery_credential(&ok(&on_store(&a_dir, &postgres, &schema, &INIT)));
    // Both nodes have the deployment's keys (one data directory, as a shared volume or a copy
    // would give them) and one database.
    let settings = [
        ("CAREID_STORE_URL", postgres.clone()),
        ("CAREID_STORE_SCHEMA", schema.clone()),
        ("CAREID_DATA_DIR", a_dir.join("data").display().to_string()),
    ];
    let (node_a, a) = serve(&a_dir, &settings);
    let (node_b, b) = serve(&b_dir, &settings);

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    runtime.block_on(async {
        let me = |url: &str, token: &str| http.get(format!("{url}/api/v1/me")).bearer_auth(token.to_owned()).send();
        // A session started on node A acts on node B.
        let token = sign_in(&http, &a, &credential).await;
        assert_eq!(me(&b, &token).await.unwrap().status(), 200, "node B knows node A's session");
        // Audited reads on both nodes, into the one log.
        for url in [&a, &b, &a, &b] {
            let read = http.get(format!("{url}/api/v1/me/audit?limit=1")).bearer_auth(&token).send().await.unwrap();
            assert_eq!(read.status(), 200);
        }
        // Signed out on node B: node A refuses the session within a second.
        let ended = Instant::now();
        let out = http.delete(format!("{b}/api/v1/sessions/current")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(out.status(), 204);
        let mut refused = false;
        while ended.elapsed() < Duration::from_secs(1) {
            if me(&a, &token).await.unwrap().status() == 401 {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "node A still took a session node B ended");
        println!("a session ended on node B was refused on node A after {} ms", ended.elapsed().as_millis());
        // Both nodes serve the one log's checkpoint, signed by one of them.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for url in [&a, &b] {
            let note = http.get(format!("{url}/log/checkpoint")).send().await.unwrap().text().await.unwrap();
            assert!(note.lines().nth(1).is_some_and(|size| size.parse::<u64>().is_ok_and(|n| n > 0)), "{note}");
        }
    });
    let signs = |dir: &Path| {
        std::fs::read_to_string(dir.join("server.log")).unwrap().contains("this node signs the audit log's checkpoints")
    };
    assert!(signs(&a_dir) != signs(&b_dir), "exactly one node signs the log");
    let (mut leader, leader_url, follower_dir, follower_url) =
        if signs(&a_dir) { (node_a, a, b_dir.clone(), b) } else { (node_b, b, a_dir.clone(), a) };

    // Writes under load on the signing node, which is killed (SIGKILL) in the middle: every
    // write it acknowledged is in the log, the other node takes over signing, and the log
    // verifies whole.
    let acknowledged = runtime.block_on(async {
        let token = sign_in(&http, &leader_url, &credential).await;
        let mut load = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let (http, url, token) = (http.clone(), leader_url.clone(), token.clone());
            load.spawn(async move {
                let mut ids = Vec::new();
                loop {
                    let read = http.get(format!("{url}/api/v1/me/audit?limit=1")).bearer_auth(&token).send().await;
                    match read {
                        Ok(response) if response.status() == 200 => {
                            let id = response.headers()["x-request-id"].to_str().unwrap().to_owned();
                            // Acknowledged only once the whole answer has arrived.
                            if response.bytes().await.is_ok() {
                                ids.push(id);
                            }
                        }
                        Ok(response) => panic!("a read under load answered {}", response.status()),
                        Err(_) => return ids,
                    }
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
        leader.0.kill().unwrap();
        let mut ids = Vec::new();
        while let Some(done) = load.join_next().await {
            ids.extend(done.unwrap());
        }
        ids
    });
    drop(leader);
    assert!(acknowledged.len() > 20, "the load made only {} writes before the kill", acknowledged.len());
    let took_over = Instant::now();
    while !signs(&follower_dir) && took_over.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(signs(&follower_dir), "no node took over signing the log after the signer was killed");
    println!(
        "{} writes acknowledged before the signing node was killed; the other node signed {} ms later",
        acknowledged.len(),
        took_over.elapsed().as_millis()
    );
    runtime.block_on(async {
        // The survivor's checkpoint covers everything written before the kill.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let note = http.get(format!("{follower_url}/log/checkpoint")).send().await.unwrap().text().await.unwrap();
        let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
        let mut options = careid_store::StoreOptions::new(postgres.clone());
        options.schema = Some(schema.clone());
        let store = careid_store::SqlStore::open(&options).await.unwrap();
        let mut tx = careid_domain::ports::Store::begin_read(&store).await.unwrap();
        let records = tx.audit_range(0, 1_000_000).await.unwrap();
        drop(tx);
        assert_eq!(size, records.len() as u64, "the survivor's checkpoint covers the whole log");
        let logged: std::collections::HashSet<String> = records
            .iter()
            .filter_map(|r| careid_audit::decode(&r.entry).ok().and_then(|e| e.get("request").map(str::to_owned)))
            .collect();
        let lost: Vec<&String> = acknowledged.iter().filter(|id| !logged.contains(*id)).collect();
        assert!(lost.is_empty(), "{} acknowledged writes are not in the log: {lost:?}", lost.len());
        store.close().await;
    });
    drop(follower_url);
    // The log the two nodes wrote and signed verifies whole against its signed checkpoint.
    let verified = ok(&on_store(&a_dir, &postgres, &schema, &["audit", "verify"]));
    assert!(verified.starts_with("verified: all "), "{verified}");
    runtime.block_on(async {
        let mut options = careid_store::StoreOptions::new(postgres.clone());
        options.schema = Some(schema.clone());
        let store = careid_store::SqlStore::open(&options).await.unwrap();
        store.execute_raw(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
    });
}
