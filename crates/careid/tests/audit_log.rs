//! The audit log as a transparency log, through the binary: a server killed in the middle of a
//! burst of writes loses no acknowledged record and signs nothing inconsistent after its
//! restart; `careid audit verify` and `prove` check it from the database and over HTTP; an
//! independent reader of the tlog-tiles layout (Python, from the specifications) rebuilds the
//! checkpoint's root; and a one-byte edit of the database file is named by its record.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::{careid, deployment, ok, serve, sign_in, stdout};

/// The independent reader needs Python's `cryptography` (for Ed25519); required where
/// `CAREID_TEST_REQUIRE_TLOG_READER` is set (CI).
fn tlog_reader(url: &str, key: &str, checkpoint: Option<&Path>, token: Option<&str>) -> Option<String> {
    let installed =
        Command::new("python3").args(["-c", "import cryptography"]).output().is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("CAREID_TEST_REQUIRE_TLOG_READER").is_none(),
            "python3 with cryptography is required but not installed"
        );
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tlog_reader.py");
    let mut command = Command::new("python3");
    command.arg(script).args([url, key]).env_remove("CAREID_TOKEN");
    if let Some(token) = token {
        command.env("CAREID_TOKEN", token);
    }
    if let Some(file) = checkpoint {
        command.arg("--checkpoint").arg(file);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "the independent tlog reader failed:\n{}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(stdout(&output))
}

/// The session token a `careid ra login` saved for profile `name`.
fn profile_token(dir: &Path, name: &str) -> String {
    let profiles: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap()).unwrap();
    profiles["profiles"][name]["token"].as_str().unwrap().to_owned()
}

fn checkpoint_size(note: &str) -> u64 {
    note.lines().nth(1).unwrap().parse().unwrap()
}

async fn get_text(http: &reqwest::Client, url: &str) -> Option<String> {
    let response = http.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.text().await.ok()
}

/// Polls until the server's latest checkpoint covers at least `size` records; returns it.
async fn checkpoint_covering(http: &reqwest::Client, url: &str, size: u64) -> String {
    for _ in 0..100 {
        if let Some(note) = get_text(http, &format!("{url}/log/checkpoint")).await
            && checkpoint_size(&note) >= size
        {
            return note;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no checkpoint covering {size} records within ten seconds");
}

async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    http.get(url).bearer_auth(token).send().await.unwrap().json().await.unwrap()
}

#[test]
fn a_kill_in_a_write_burst_loses_nothing_acknowledged_and_any_reader_can_check_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut server, url, credential) = deployment(dir, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();

    // A checkpoint kept before the crash, then a burst of audited writes (each read of one's
    // own trail is a record), and the server killed (SIGKILL) in the middle of it.
    let (kept, acknowledged, credential) = runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        let kept = checkpoint_covering(&http, &url, 1).await;
        let acknowledged = Arc::new(AtomicU64::new(0));
        let mut burst = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (http, url, token, acknowledged) = (http.clone(), url.clone(), token.clone(), acknowledged.clone());
            burst.spawn(async move {
                loop {
                    let sent = http.get(format!("{url}/api/v1/me/audit?limit=1")).bearer_auth(&token).send().await;
                    match sent {
                        Ok(response) if response.status().is_success() => acknowledged.fetch_add(1, Ordering::SeqCst),
                        _ => break,
                    };
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        server.0.kill().unwrap();
        server.0.wait().unwrap();
        while burst.join_next().await.is_some() {}
        (kept, acknowledged.load(Ordering::SeqCst), credential)
    });
    assert!(acknowledged > 20, "the burst wrote only {acknowledged} records before the kill");
    let kept_file = dir.join("kept-checkpoint.txt");
    std::fs::write(&kept_file, &kept).unwrap();

    // Restarted: every acknowledged write is in the log, the tree catches up, and the new
    // checkpoints extend the one kept before the crash.
    let (server, url) = serve(dir, &[]);
    let key = runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        let (mut reads, mut last, mut before) = (0u64, 0u64, String::new());
        loop {
            let page =
                get_json(&http, &format!("{url}/api/v1/me/audit?action=audit.read&limit=1000{before}"), &token).await;
            let records = page["records"].as_array().unwrap();
            reads += records.len() as u64;
            last = last.max(records.iter().map(|r| r["seq"].as_u64().unwrap()).max().unwrap_or(0));
            match page["next_before"].as_u64() {
                Some(next) => before = format!("&before={next}"),
                None => break,
            }
        }
        assert!(reads >= acknowledged, "{acknowledged} writes were acknowledged, {reads} are in the log");
        checkpoint_covering(&http, &url, last + 1).await;

        // A holder's record with its proof; careid checks proofs it is given, and says why
        // a bad one fails, writing nothing.
        let proof = get_json(&http, &format!("{url}/api/v1/audit/{last}/proof"), &token).await;
        let check = |body: Value| {
            let http = http.clone();
            let url = url.clone();
            async move {
                let response = http.post(format!("{url}/log/check")).json(&body).send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            }
        };
        let good = json!({ "kind": "inclusion", "entry": proof["entry"], "index": last,
            "tree_size": proof["tree_size"], "proof": proof["inclusion"] });
        assert_eq!(check(good.clone()).await, (200, json!({ "valid": true, "reason": null })));
        let mut wrong_index = good.clone();
        wrong_index["index"] = json!(last - 1);
        let (status, said) = check(wrong_index).await;
        assert_eq!((status, &said["valid"]), (200, &json!(false)), "{said}");
        let mut garbled = good.clone();
        garbled["proof"][0] = json!("not base64!");
        let (status, said) = check(garbled).await;
        assert_eq!(status, 422, "{said}");
        assert!(said.to_string().contains("proof"), "{said}");
        let mut beyond = good;
        beyond["tree_size"] = json!(1_000_000_000u64);
        assert_eq!(check(beyond).await.0, 422);

        get_text(&http, &format!("{url}/log/key")).await.unwrap().trim().to_owned()
    });
    let verified = ok(&careid(dir, &["audit", "verify"]));
    assert!(verified.starts_with("verified: all "), "{verified}");
    // Over HTTP the records themselves (entry bundles) are for auditors in scope only.
    let anonymous = careid(dir, &["audit", "verify", "--url", &url, "--key", &key]);
    assert!(!anonymous.status.success(), "entry bundles served to an anonymous reader");
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&anonymous.stderr)
    );
    ok(&careid(dir, &["ra", "--server", &url, "login", "auditor", "--credential", &credential]));
    let auditor = profile_token(dir, "auditor");
    ok(&careid(dir, &["audit", "--as", "auditor", "verify", "--url", &url, "--key", &key]));
    let old = ok(&careid(
        dir,
        &["audit", "--as", "auditor", "verify", "--url", &url, "--checkpoint", kept_file.to_str().unwrap()],
    ));
    assert!(old.contains(&format!("all {} records", checkpoint_size(&kept))), "{old}");
    let proof = ok(&careid(
        dir,
        &["audit", "prove", "--entry", "3", "--since", &checkpoint_size(&kept).to_string(), "--url", &url],
    ));
    assert!(proof.contains("inclusion proof") && proof.contains("is a prefix of this one"), "{proof}");
    if let Some(read) = tlog_reader(&url, &key, None, Some(&auditor)) {
        assert!(read.starts_with("ok "), "{read}");
        tlog_reader(&url, &key, Some(&kept_file), Some(&auditor));
    }

    // Archived to files, the log stays verifiable without careid's database or server; a
    // second archive adds only what is new.
    let archive = dir.join("archive/log");
    let first = ok(&careid(dir, &["audit", "archive", "--out", archive.to_str().unwrap()]));
    assert!(first.contains("already there"), "{first}");
    let again = ok(&careid(dir, &["audit", "archive", "--out", archive.to_str().unwrap()]));
    assert!(!again.contains(" 0 already there"), "full tiles are kept: {again}");
    let from_files = format!("file://{}", archive.display());
    ok(&careid(dir, &["audit", "verify", "--url", &from_files, "--key", &key]));
    if let Some(read) = tlog_reader(&format!("file://{}", dir.join("archive").display()), &key, None, None) {
        assert!(read.starts_with("ok "), "{read}");
    }
    // An archive edited by one byte is named by its record, as the database is.
    let full = archive.join("tile/entries/000");
    let bundle = if full.is_file() {
        full
    } else {
        std::fs::read_dir(archive.join("tile/entries/000.p")).unwrap().next().unwrap().unwrap().path()
    };
    let mut bytes = std::fs::read(&bundle).unwrap();
    let mut at = 0;
    for _ in 0..3 {
        at += 2 + usize::from(u16::from_be_bytes([bytes[at], bytes[at + 1]]));
    }
    let action = bytes[at..].windows(7).position(|w| w == b"action ").unwrap();
    bytes[at + action + 7] ^= 0x20;
    std::fs::write(&bundle, bytes).unwrap();
    let refused = careid(dir, &["audit", "verify", "--url", &from_files, "--key", &key]);
    assert!(!refused.status.success(), "an edited archive verified");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("record 3 "), "{said}");

    // A one-byte edit of the database file, after a clean shutdown: named by its record.
    let entry = runtime.block_on(async {
        let anonymous = http.get(format!("{url}/log/tile/entries/000.p/5")).send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        let hashes = http.get(format!("{url}/log/tile/0/000.p/5")).send().await.unwrap();
        assert_eq!(hashes.status(), 200, "hash tiles stay public");
        let bundle = http.get(format!("{url}/log/tile/entries/000.p/5")).bearer_auth(&auditor).send().await.unwrap();
        assert_eq!(bundle.headers()["cache-control"], "private, no-store");
        let bundle = bundle.bytes().await.unwrap();
        let mut entries = Vec::new();
        let mut at = 0;
        while at < bundle.len() {
            let len = usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
            entries.push(bundle[at + 2..at + 2 + len].to_vec());
            at += 2 + len;
        }
        entries.swap_remove(3)
    });
    let status = Command::new("kill").args(["-INT", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut server = server;
    server.0.wait().unwrap();
    let db = dir.join("data/careid.db");
    let wal = std::fs::metadata(dir.join("data/careid.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the server moved its write-ahead log into the database file when it stopped");
    let mut bytes = std::fs::read(&db).unwrap();
    // The record's bytes may also linger in free pages (older copies of a page that split):
    // change every copy, the live one among them.
    let action = entry.windows(7).position(|w| w == b"action ").unwrap() + 7;
    let copies: Vec<usize> =
        bytes.windows(entry.len()).enumerate().filter(|(_, w)| *w == entry.as_slice()).map(|(i, _)| i).collect();
    assert!(!copies.is_empty(), "record 3 in the database file");
    for at in copies {
        bytes[at + action] ^= 0x20;
    }
    std::fs::write(&db, bytes).unwrap();
    let refused = careid(dir, &["audit", "verify"]);
    assert!(!refused.status.success(), "an edited database verified");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("record 3 "), "{said}");
}

/// `careid audit verify` from the database, with the store opened behind careid's back.
fn tampered(dir: &Path, runtime: &tokio::runtime::Runtime, sql: &str) {
    runtime.block_on(async {
        let url = format!("sqlite://{}", dir.join("data/careid.db").display());
        let store = careid_store::SqlStore::open(&careid_store::StoreOptions::new(url)).await.unwrap();
        store.execute_raw(sql).await.unwrap();
    });
}

fn refused_saying(dir: &Path, args: &[&str], said: &[&str]) {
    let refused = careid(dir, args);
    let stderr = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success(), "verified after tampering: {}", stdout(&refused));
    for words in said {
        assert!(stderr.contains(words), "{words:?} not in: {stderr}");
    }
}

#[test]
fn an_edited_query_column_and_a_cut_tail_are_each_refused_by_verify() {
    use careid_domain::ports::Store;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (server, url, credential) = deployment(dir, &[]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    // An early checkpoint, more records, and a later one that this machine verifies and keeps.
    let early = runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        let early = checkpoint_size(&checkpoint_covering(&http, &url, 1).await);
        for _ in 0..5 {
            get_json(&http, &format!("{url}/api/v1/me/audit?limit=1"), &token).await;
        }
        checkpoint_covering(&http, &url, early + 5).await;
        early
    });
    let status = Command::new("kill").args(["-INT", &server.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let mut server = server;
    server.0.wait().unwrap();
    ok(&careid(dir, &["audit", "verify"]));
    let kept = std::fs::read_dir(dir.join("cli/checkpoints")).unwrap().next().unwrap().unwrap().path();
    let kept_size = checkpoint_size(&std::fs::read_to_string(&kept).unwrap());
    assert!(kept_size > early, "the kept checkpoint ({kept_size}) is newer than the early one ({early})");

    // A query column edited with the log's rules dropped: the hashes still verify, the record
    // vanishes from its actor's trail, and verify names it.
    let row = runtime.block_on(async {
        let url = format!("sqlite://{}", dir.join("data/careid.db").display());
        let store = careid_store::SqlStore::open(&careid_store::StoreOptions::new(url)).await.unwrap();
        let mut tx = store.begin_read().await.unwrap();
        tx.audit_index(0, 1000).await.unwrap().into_iter().find(|r| r.actor.is_some()).unwrap()
    });
    let (seq, actor) = (row.seq, row.actor.clone().unwrap());
    tampered(dir, &runtime, "DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete");
    tampered(dir, &runtime, &format!("UPDATE audit_log SET actor = NULL WHERE seq = {seq}"));
    refused_saying(dir, &["audit", "verify"], &[&format!("record {seq}:"), "actor"]);
    tampered(dir, &runtime, &format!("UPDATE audit_log SET actor = '{actor}' WHERE seq = {seq}"));
    // The organisations a record concerns likewise.
    tampered(dir, &runtime, "DROP TRIGGER audit_orgs_no_update; DROP TRIGGER audit_orgs_no_delete");
    tampered(dir, &runtime, &format!("DELETE FROM audit_orgs WHERE seq = {seq}"));
    refused_saying(dir, &["audit", "verify"], &[&format!("record {seq}:"), "organisations"]);
    let back: Vec<String> =
        row.orgs.iter().map(|(s, org)| format!("INSERT INTO audit_orgs VALUES ('{org}', {s}, {seq})")).collect();
    tampered(dir, &runtime, &back.join("; "));
    ok(&careid(dir, &["audit", "verify"]));

    // The tail cut back to the early checkpoint, the newer checkpoints and what they covered
    // deleted: the database agrees with itself, but not with the checkpoint this machine kept.
    tampered(
        dir,
        &runtime,
        &format!(
            "DROP TRIGGER audit_checkpoints_no_delete; DELETE FROM audit_orgs WHERE seq >= {early} OR source >= {early}; \
             DELETE FROM audit_log WHERE seq >= {early}; DELETE FROM audit_checkpoints WHERE size > {early}"
        ),
    );
    refused_saying(dir, &["audit", "verify"], &["shorter than a checkpoint this machine verified before"]);
    // Without what this machine kept, the cut log would pass: the kept checkpoint is the check.
    let elsewhere = Command::new(support::CAREID)
        .args(["audit", "verify"])
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_CLI_HOME", dir.join("another-machine"))
        .output()
        .unwrap();
    assert!(elsewhere.status.success(), "{}", String::from_utf8_lossy(&elsewhere.stderr));
}

#[test]
fn a_witness_cosigns_each_checkpoint_never_goes_back_and_verify_can_require_it() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (server, _, credential) = deployment(dir, &[]);
    drop(server);
    let log_key = ok(&careid(dir, &["audit", "key"])).trim().to_owned();

    // Someone other than the log's operator runs the witness, following this log.
    let port = support::free_port();
    let mut witness = Command::new(support::CAREID)
        .args(["audit", "witness", "--listen", &format!("127.0.0.1:{port}"), "--name", "witness.test/w1"])
        .args(["--key-file", dir.join("witness.key").to_str().unwrap()])
        .args(["--state", dir.join("witness-state").to_str().unwrap(), "--log", &log_key])
        .env("CAREID_DATA_DIR", dir.join("elsewhere"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(witness.stdout.take().unwrap()).read_line(&mut first).unwrap();
    let _witness = support::Child(witness);
    let witness_key = first.trim().strip_prefix("witness key: ").unwrap().to_owned();
    assert!(support::listening(port), "the witness listens");
    let key_file = std::fs::metadata(dir.join("witness.key")).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&key_file.permissions()) & 0o777, 0o600);

    let witnessed = format!("http://127.0.0.1:{port} {witness_key}");
    let (_server, url) = serve(dir, &[("CAREID_LOG_WITNESSES", witnessed)]);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let early = runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        let early = checkpoint_covering(&http, &url, 1).await;
        for _ in 0..3 {
            get_json(&http, &format!("{url}/api/v1/me/audit?limit=1"), &token).await;
        }
        checkpoint_covering(&http, &url, checkpoint_size(&early) + 3).await;
        early
    });
    // Readers require the witness: over HTTP and from the database the checkpoint carries its
    // cosignature; a witness it never asked is missing.
    ok(&careid(dir, &["ra", "--server", &url, "login", "auditor", "--credential", &credential]));
    let verified = careid(
        dir,
        &["audit", "--as", "auditor", "verify", "--url", &url, "--key", &log_key, "--witness", &witness_key],
    );
    let said = String::from_utf8_lossy(&verified.stderr).into_owned();
    assert!(verified.status.success() && said.contains("cosignatures of 1"), "{said}");
    ok(&careid(dir, &["audit", "verify", "--witness", &witness_key]));
    let pkcs8 = careid_audit::note::LogSigner::generate_pkcs8().unwrap();
    let stranger = careid_audit::witness::Cosigner::new("witness.test/w2", &pkcs8).unwrap().verifier_key();
    let args = [
        "audit",
        "--as",
        "auditor",
        "verify",
        "--url",
        &url,
        "--key",
        &log_key,
        "--witness",
        &witness_key,
        "--witness",
        &stranger,
    ];
    let refused = careid(dir, &args);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("missing: witness.test/w2"));
    let with_one = careid(dir, &[&args[..], &["--witnesses-needed", "1"]].concat());
    assert!(with_one.status.success(), "{}", String::from_utf8_lossy(&with_one.stderr));

    // The witness never goes back: the early checkpoint, offered again, is refused with the
    // size it holds; nonsense is refused as such.
    runtime.block_on(async {
        let back = http
            .post(format!("http://127.0.0.1:{port}/add-checkpoint"))
            .body(format!("old 0\n\n{early}"))
            .send()
            .await
            .unwrap();
        assert_eq!(back.status().as_u16(), 409);
        assert_eq!(back.headers()["content-type"], "text/x.tlog.size");
        let held: u64 = back.text().await.unwrap().trim().parse().unwrap();
        assert!(held > checkpoint_size(&early), "it holds {held}");
        let nonsense = http.post(format!("http://127.0.0.1:{port}/add-checkpoint")).body("hello").send().await.unwrap();
        assert_eq!(nonsense.status().as_u16(), 400);
        let unknown = http
            .post(format!("http://127.0.0.1:{port}/add-checkpoint"))
            .body("old 0\n\nsomewhere.else/log\n1\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n")
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status().as_u16(), 404);
    });
}

/// `careid backup` copies the live database while the server writes, owner-only; the copy
/// verifies against the deployment's own checkpoints like the original.
#[test]
fn a_backup_taken_while_serving_verifies_as_the_log_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, url, credential) = deployment(dir, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        for _ in 0..20 {
            get_json(&http, &format!("{url}/api/v1/me/audit?limit=1"), &token).await;
        }
        checkpoint_covering(&http, &url, 20).await;
    });
    let backup = dir.join("careid-backup.db");
    let said = ok(&careid(dir, &["backup", "--out", backup.to_str().unwrap()]));
    assert!(said.contains("careid audit verify"), "{said}");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&backup).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the backup is its owner's alone");
    let verified = Command::new(support::CAREID)
        .args(["audit", "verify"])
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_CLI_HOME", dir.join("cli-backup"))
        .env("CAREID_STORE_URL", format!("sqlite:{}", backup.display()))
        .output()
        .unwrap();
    let verified = ok(&verified);
    assert!(verified.starts_with("verified: all "), "{verified}");
    let again = careid(dir, &["backup", "--out", backup.to_str().unwrap()]);
    assert!(!again.status.success(), "a backup overwrote a file");
}

/// `careid migrate` moves a SQLite deployment to PostgreSQL: the log verifies there against
/// the same signed checkpoint, and careid serves from it. Runs where
/// `CAREID_TEST_POSTGRES_URL` is set (CI).
#[test]
fn a_sqlite_deployment_moved_to_postgresql_verifies_with_the_same_root() {
    let Some(postgres) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: the migration to PostgreSQL was not tried");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (server, url, credential) = deployment(dir, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    runtime.block_on(async {
        let token = sign_in(&http, &url, &credential).await;
        for _ in 0..10 {
            get_json(&http, &format!("{url}/api/v1/me/audit?limit=1"), &token).await;
        }
        checkpoint_covering(&http, &url, 10).await;
    });
    drop(server);
    let on_sqlite = ok(&careid(dir, &["audit", "checkpoint"]));

    let schema = format!("careid_migrate_{}", std::process::id());
    let moved = ok(&careid(dir, &["migrate", "--to", &postgres, "--schema", &schema]));
    assert!(moved.contains("audit_log"), "{moved}");
    let on_postgres = |args: &[&str]| {
        Command::new(support::CAREID)
            .args(args)
            .env("CAREID_DATA_DIR", dir.join("data"))
            .env("CAREID_CLI_HOME", dir.join("cli-postgres"))
            .env("CAREID_STORE_URL", &postgres)
            .env("CAREID_STORE_SCHEMA", &schema)
            .output()
            .unwrap()
    };
    assert_eq!(ok(&on_postgres(&["audit", "checkpoint"])), on_sqlite, "the same signed checkpoint, the same root");
    let verified = ok(&on_postgres(&["audit", "verify"]));
    assert!(verified.starts_with("verified: all "), "{verified}");
    // careid serves from the moved store and the log goes on from where it was: the new
    // records extend the checkpoint the SQLite log had.
    let size = checkpoint_size(&on_sqlite);
    let (pg_server, pg_url) =
        serve(dir, &[("CAREID_STORE_URL", postgres.clone()), ("CAREID_STORE_SCHEMA", schema.clone())]);
    runtime.block_on(async {
        let token = sign_in(&http, &pg_url, &credential).await;
        for _ in 0..3 {
            get_json(&http, &format!("{pg_url}/api/v1/me/audit?limit=1"), &token).await;
        }
        checkpoint_covering(&http, &pg_url, size + 3).await;
    });
    drop(pg_server);
    let extended = ok(&on_postgres(&["audit", "verify"]));
    assert!(extended.starts_with("verified: all "), "{extended}");
    // Into a store that already holds a log: refused, nothing written.
    let again = careid(dir, &["migrate", "--to", &postgres, "--schema", &schema]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds an audit log"));
    runtime.block_on(async {
        let mut options = careid_store::StoreOptions::new(postgres.clone());
        options.schema = Some(schema.clone());
        let store = careid_store::SqlStore::open(&options).await.unwrap();
        store.execute_raw(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
    });
}
