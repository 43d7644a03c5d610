//! Two `careid serve` nodes on one PostgreSQL database, as a deployment beyond one machine
//! runs: a session started on one node is used on the other, a session ended on one is refused
//! on the other at once, both nodes write and sign the one audit log, and the log verifies
//! whole afterwards.

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
        // Each node's checkpoint is one of the one log's.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        for url in [&a, &b] {
            let note = http.get(format!("{url}/log/checkpoint")).send().await.unwrap().text().await.unwrap();
            assert!(note.lines().nth(1).is_some_and(|size| size.parse::<u64>().is_ok_and(|n| n > 0)), "{note}");
        }
    });
    drop((node_a, node_b));
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
