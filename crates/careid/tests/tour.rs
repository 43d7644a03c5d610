//! The commands a newcomer is given run as given: every `careid` command `careid demo` prints
//! is run against the demo it describes, in order, with its placeholders filled from what the
//! commands before it printed; and every command of the README's tour parses.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use support::demo::Demo;
use support::{CAREID, Child, stdout};

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A shell line split into words: single and double quotes group, `\` continues a line, and
/// `#` outside quotes starts a comment.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote = None;
    let mut started = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                started = true;
            }
            (None, '#') if !started => break,
            (None, c) if c.is_whitespace() => {
                if started {
                    out.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            (None, c) => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        out.push(word);
    }
    out
}

/// The `careid ...` commands in a text, each with the comment lines just above it, continuation
/// lines joined, `;` splitting two commands on one line.
fn commands(text: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    let mut comment = String::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut line = line.trim().to_owned();
        if line.starts_with('#') {
            comment.push_str(&line);
            comment.push('\n');
            continue;
        }
        while line.ends_with('\\') {
            line.pop();
            line.push(' ');
            line.push_str(lines.next().unwrap_or_default().trim());
        }
        for part in line.split(" ; ") {
            let words = words(part);
            if words.first().map(String::as_str) == Some("careid") {
                out.push((std::mem::take(&mut comment), words[1..].to_vec()));
            }
        }
        if !line.is_empty() {
            comment.clear();
        }
    }
    out
}

fn ids(list: &serde_json::Value) -> Vec<i64> {
    list.as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect()
}

/// The refusals the tour announces: the same person registered again ("refused as a
/// duplicate"), the sponsor's second assignment (a position not marked assignable), and the
/// agent granting their own request (separation of duties).
#[derive(Default)]
struct Announced {
    registrations: usize,
    sponsor_assignments: usize,
}

impl Announced {
    fn refusal(&mut self, comment: &str, line: &str) -> Option<&'static str> {
        if line.contains(" register ") {
            self.registrations += 1;
            return (self.registrations == 2).then_some("duplicate");
        }
        if comment.contains("not others") || (self.sponsor_assignments == 1 && line.contains(" assign ")) {
            self.sponsor_assignments += 1;
            return (self.sponsor_assignments == 2).then_some("refused");
        }
        line.contains("<THAT_REQUEST>").then_some("separation_of_duties")
    }
}

/// Puts `value` where `placeholder` stands in a command's words.
fn fill(args: &mut [String], placeholder: &str, value: &str) {
    for arg in args {
        *arg = arg.replace(placeholder, value);
    }
}

#[test]
fn the_demos_printed_commands_run_as_printed() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path());
    let printed = demo.printed.split("Try, in another terminal").nth(1).unwrap().to_owned();
    let mut announced = Announced::default();
    let mut registration_requests = Vec::new();
    let mut last_request = None;
    let mut ran = 0;
    for (comment, mut args) in commands(&printed) {
        let line = args.join(" ");
        let expected = announced.refusal(&comment, &format!(" {line} "));
        // Fill the placeholders from what the demo now holds.
        if line.contains("<REGISTRATION>") {
            let pending = demo.json(&["ra", "--as", "demo-ra-agent", "registrations"]);
            let priya = pending.as_array().unwrap().iter().find(|r| r["family_name"] == "Shah").unwrap();
            let id = priya["id"].to_string();
            registration_requests = ids(&demo.json(&["ra", "--as", "demo-ra-agent", "requests"]));
            fill(&mut args, "<REGISTRATION>", &id);
        }
        if line.contains("<REQUEST>") {
            let now = ids(&demo.json(&["ra", "--as", "demo-ra-agent", "requests"]));
            let new = now.iter().find(|id| !registration_requests.contains(id)).expect("the verification's request");
            fill(&mut args, "<REQUEST>", &new.to_string());
        }
        if line.contains("<THAT_REQUEST>") {
            let id: i64 = last_request.expect("the agent's own request came first");
            fill(&mut args, "<THAT_REQUEST>", &id.to_string());
        }
        if line.contains("<CASE>") {
            let cases = demo.json(&["ra", "--as", "demo-privacy-officer", "cases", "list"]);
            let open = cases.as_array().unwrap().iter().find(|c| c["status"] != "closed").expect("an open case");
            fill(&mut args, "<CASE>", &open["id"].to_string());
        }
        if line.contains("<SEQ>") {
            let mine = demo.json(&["ra", "--as", "demo-ra-agent", "my-audit", "--limit", "1"]);
            let seq = mine["records"][0]["seq"].to_string();
            fill(&mut args, "<SEQ>", &seq);
        }
        // What a person types at the prompts; the interactive commands read it from stdin.
        let mut input = String::new();
        if args[0] == "agent" {
            run_agent(&demo, &mut args);
            ran += 1;
            continue;
        }
        if args[0] == "card" && args.iter().any(|a| a == "unlock") {
            args.push("--passcode-stdin".into());
            input = "582039\n582039\n".into();
        }
        if args[0] == "card" && args.iter().any(|a| a == "self-unlock") {
            self_unlock(&demo, &mut args);
            ran += 1;
            continue;
        }
        let output = demo.run(&args, &input);
        let said = format!("{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
        assert_ne!(output.status.code(), Some(2), "careid {}: a usage error\n{said}", args.join(" "));
        match expected {
            Some(refusal) => {
                assert!(!output.status.success(), "careid {} should be refused:\n{said}", args.join(" "));
                assert!(said.contains(refusal), "careid {}: refused, but not as {refusal}:\n{said}", args.join(" "));
            }
            None => assert!(output.status.success(), "careid {} failed:\n{said}", args.join(" ")),
        }
        if args.contains(&"request".to_owned()) && args.contains(&"demo-ra-agent".to_owned()) {
            let id = said.lines().find_map(|l| l.strip_prefix("id: ")).expect("the request's id is printed");
            last_request = Some(id.trim().parse().unwrap());
        }
        if line.contains(" grant ") && expected.is_none() {
            assert!(said.contains("granted"), "grant says what it did: {said}");
        }
        ran += 1;
    }
    assert!(ran >= 30, "the demo printed {ran} commands:\n{printed}");
}

/// `careid agent` as printed, with the passcode from the demo's file on stdin: the holder
/// accepts the terms, logs in, lists and sees their session, then takes the card out.
fn run_agent(demo: &Demo, args: &mut Vec<String>) {
    let card = args.iter().skip_while(|a| *a != "--virtual").nth(1).unwrap().clone();
    let passcode = demo.passcode_of(&card);
    args.extend(["--passcode-stdin", "--local-port", "0"].map(String::from));
    let out = demo.dir.join("agent.out");
    let mut agent = demo
        .command(args)
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    agent.stdin.take().unwrap().write_all(format!("y\n{passcode}\n").as_bytes()).unwrap();
    let agent = Child(agent);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&out).unwrap_or_default().contains("logged in as") {
        assert!(Instant::now() < deadline, "the agent did not log in: {}", std::fs::read_to_string(&out).unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    let sessions = demo.json(&["sessions", "--as", "card"]);
    assert_eq!(sessions.as_array().unwrap().len(), 1, "the holder sees their session: {sessions}");
    let id = sessions[0]["session_id"].as_str().unwrap().to_owned();
    let ended = demo.run(&["sessions".into(), "--as".into(), "card".into(), "end".into(), id.clone()], "");
    assert!(stdout(&ended).contains(&format!("session {id} ended")), "{}", String::from_utf8_lossy(&ended.stderr));
    drop(agent);
}

/// `careid card self-unlock` as printed: the code arrives in the demo's mailbox, where the
/// holder reads it.
fn self_unlock(demo: &Demo, args: &mut Vec<String>) {
    args.push("--passcode-stdin".into());
    let mailbox = demo.dir.join("careid-demo/mailbox");
    let mut child =
        demo.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        let mail: String = std::fs::read_dir(&mailbox)
            .map(|entries| entries.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok()).collect())
            .unwrap_or_default();
        let code = mail
            .split_whitespace()
            .find(|w| w.len() == 9 && w.ends_with('.') && w[..8].bytes().all(|b| b.is_ascii_digit()))
            .map(|w| w[..8].to_owned());
        if let Some(code) = code {
            break code;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!("no unlock code in {}: {}", mailbox.display(), String::from_utf8_lossy(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    child.stdin.take().unwrap().write_all(format!("{code}\n582039\n582039\n").as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "self-unlock from the demo's mailbox: {}{}",
        stdout(&output),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Every `careid` command of the README's tour parses: run against a server that is not
/// there, each fails for want of the server, a profile or a file, never as a usage error.
#[test]
fn every_command_of_the_readmes_tour_parses() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let tour = readme.split("## A tour of the command line").nth(1).unwrap();
    let tour = tour.split("```sh").nth(1).unwrap().split("```").next().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (_, args) in commands(tour) {
        // Commands that start servers or write deployments are checked by their own tests.
        if ["serve", "init", "bench", "detect", "migrate", "backup", "agent"].contains(&args[0].as_str())
            || (args[0] == "audit" && args.get(1).is_some_and(|a| a == "witness"))
        {
            let mut help = args[..1].to_vec();
            help.push("--help".into());
            let output = Command::new(CAREID).args(&help).output().unwrap();
            assert!(output.status.success(), "careid {}", help.join(" "));
            checked += 1;
            continue;
        }
        let args: Vec<String> = args.into_iter().map(|a| a.replace("<ID>", "0a5f959dc21f8299650d1655")).collect();
        let output = Command::new(CAREID)
            .args(&args)
            .current_dir(dir.path())
            .env("CAREID_CLI_HOME", dir.path().join("cli"))
            .env("CAREID_DATA_DIR", dir.path().join("data"))
            .env("CAREID_SERVER", "http://127.0.0.1:9")
            .env_remove("CAREID_PROFILE")
            .env_remove("CAREID_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&output.stderr);
        assert_ne!(output.status.code(), Some(2), "careid {}: a usage error\n{said}", args.join(" "));
        checked += 1;
    }
    assert!(checked >= 40, "the tour has {checked} commands");
}

#[test]
fn the_tour_reader_splits_lines_as_a_shell_does() {
    let text = "# a comment\ncareid ra --as x request 1 2 --note 'covering sessions'   # why\n\
                careid a ; careid b \\\n    --flag \"two words\"\npip install x\n";
    let found = commands(text);
    assert_eq!(found.len(), 3);
    assert_eq!(found[0].0, "# a comment\n");
    assert_eq!(found[0].1, ["ra", "--as", "x", "request", "1", "2", "--note", "covering sessions"]);
    assert_eq!(found[1].1, ["a"]);
    assert_eq!(found[2].1, ["b", "--flag", "two words"]);
}

/// The demo's deployment moved to PostgreSQL, as an operator outgrowing one machine moves it:
/// `careid migrate` in the demo's directory finds the demo's store, and the moved log carries
/// the same signed checkpoint and verifies whole there.
#[test]
fn the_demo_moved_to_postgresql_verifies_with_the_same_root() {
    let Some(postgres) = careid_store::test_postgres_url() else {
        eprintln!("CAREID_TEST_POSTGRES_URL is not set: the demo was not moved to PostgreSQL");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let demo = Demo::start(dir.path());
    // The demo's signer follows its records every half second.
    std::thread::sleep(Duration::from_secs(2));
    drop(demo);
    let cli = || support::demo::cli(dir.path());
    let on_sqlite = support::ok(&cli().args(["audit", "checkpoint"]).output().unwrap());
    assert!(on_sqlite.lines().nth(1).is_some_and(|size| size.parse::<u64>().is_ok_and(|n| n > 10)), "{on_sqlite}");
    let schema = format!("careid_demo_{}", std::process::id());
    let moved = cli().args(["migrate", "--to", &postgres, "--schema", &schema]).output().unwrap();
    assert!(moved.status.success(), "{}", String::from_utf8_lossy(&moved.stderr));
    let on_postgres = |args: &[&str]| {
        cli()
            .args(args)
            .env("CAREID_DATA_DIR", dir.path().join("careid-demo"))
            .env("CAREID_STORE_URL", &postgres)
            .env("CAREID_STORE_SCHEMA", &schema)
            .output()
            .unwrap()
    };
    assert_eq!(support::ok(&on_postgres(&["audit", "checkpoint"])), on_sqlite, "the same signed checkpoint");
    let verified = support::ok(&on_postgres(&["audit", "verify"]));
    assert!(verified.starts_with("verified: all "), "{verified}");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut options = careid_store::StoreOptions::new(postgres.clone());
        options.schema = Some(schema.clone());
        let store = careid_store::SqlStore::open(&options).await.unwrap();
        store.execute_raw(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
        store.close().await;
    });
}
