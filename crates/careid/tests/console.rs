//! The web console end to end in headless Chromium: the demo, cards issued on the command line
//! to its RA agent, sponsor and privacy officer, and for each role a browser that signs in with
//! the card through a real `careid agent` (the ID checker, who has none, with their interim
//! credential), does the
//! role's main task, is refused out of scope, and checks every page it sees with axe-core.
//! Screenshots of every page go to `target/console-screenshots` (or `CAREID_TEST_SCREENSHOTS`).

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use support::demo::Demo;
use support::{Child, free_port, stdout, today};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// axe-core's script: `CAREID_TEST_AXE`, or where `.ci/run` installs it.
fn axe() -> Option<PathBuf> {
    let path = std::env::var_os("CAREID_TEST_AXE")
        .map_or_else(|| PathBuf::from("/opt/careid-ci/axe/node_modules/axe-core/axe.min.js"), PathBuf::from);
    path.exists().then_some(path)
}

fn browser_ready() -> bool {
    let selenium = Command::new("python3").args(["-c", "import selenium"]).status().is_ok_and(|s| s.success());
    selenium && Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists()
}

/// A card of the demo's, issued on the command line by `issuer` (a CLI profile) to `person`,
/// with its passcode set.
fn issue_card(demo: &Demo, issuer: &str, person: &str, file: &Path, passcode: &str) {
    let file_arg = file.to_str().unwrap().to_owned();
    let card = demo.json(&["card", "--as", issuer, "issue", person, "--virtual", &file_arg]);
    let id = card["card_id"].to_string();
    let args: Vec<String> = ["card", "--as", issuer, "set-passcode", &id, "--virtual", &file_arg, "--passcode-stdin"]
        .map(String::from)
        .to_vec();
    let set = demo.run(&args, &format!("{passcode}\n{passcode}\n"));
    assert!(set.status.success(), "set-passcode for {person}: {}", String::from_utf8_lossy(&set.stderr));
}

/// `careid agent` with `card` in the reader, answering yes to each approval it asks for.
struct Agent {
    _child: Child,
    output: PathBuf,
}

impl Agent {
    fn start(demo: &Demo, url: &str, port: u16, card: &Path, passcode: &str, name: &str, extra: &[String]) -> Agent {
        let output = demo.dir.join(format!("agent-{name}.out"));
        let args: Vec<String> = [
            "agent".into(),
            "--server".into(),
            url.into(),
            "--workstation".into(),
            format!("desk-{name}"),
            "--local-port".into(),
            port.to_string(),
            "--accept-terms".into(),
            careid_domain::TERMS_OF_USE_VERSION.into(),
            "--passcode-stdin".into(),
            "--virtual".into(),
            card.to_str().unwrap().into(),
            "--profile".into(),
            format!("card-{name}"),
        ]
        .into_iter()
        .chain(extra.iter().cloned())
        .collect();
        let mut child = demo
            .command(&args)
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&output).unwrap())
            .stderr(std::fs::File::create(output.with_extension("err")).unwrap())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{passcode}\n").as_bytes()).unwrap();
        let watched = output.clone();
        // The holder at the agent: yes to every sign-in it asks about; at a ceremony, yes, and
        // the card's holder types their new passcode twice.
        std::thread::spawn(move || {
            let mut answered = 0;
            for _ in 0..1200 {
                let said = std::fs::read_to_string(&watched).unwrap_or_default();
                for question in said.lines().filter(|l| l.contains("Confirm at the agent")).skip(answered) {
                    let answer: &[u8] = if question.contains("ceremony") { b"y\n740261\n740261\n" } else { b"y\n" };
                    if stdin.write_all(answer).is_err() {
                        return;
                    }
                    answered += 1;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let agent = Agent { _child: Child(child), output };
        agent.wait_for("logged in as");
        agent
    }

    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(40);
        while !std::fs::read_to_string(&self.output).unwrap_or_default().contains(what) {
            assert!(
                Instant::now() < deadline,
                "the agent never said {what:?}: {}{}",
                std::fs::read_to_string(&self.output).unwrap_or_default(),
                std::fs::read_to_string(self.output.with_extension("err")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

#[test]
fn each_role_signs_in_with_a_card_and_does_its_work_in_the_browser() {
    let required = std::env::var("CAREID_TEST_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
    let (Some(axe), true) = (axe(), browser_ready()) else {
        assert!(!required, "CAREID_TEST_REQUIRE_BROWSER=1 but Chromium, ChromeDriver, Selenium or axe-core is missing");
        eprintln!("skipped: the console's browser test needs Chromium, ChromeDriver, Selenium and axe-core");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let agent_port = free_port();
    let demo = Demo::start_with(dir.path(), &[("CAREID_AGENT_PORT", agent_port.to_string())]);
    let url = demo.printed.lines().find_map(|l| l.strip_prefix("careid demo: ")).unwrap().trim().to_owned();
    let shots = std::env::var_os("CAREID_TEST_SCREENSHOTS").map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/console-screenshots")),
        PathBuf::from,
    );
    std::fs::create_dir_all(&shots).unwrap();

    // Who is who, from the demo's credentials file: name, person, credential.
    let credentials = std::fs::read_to_string(dir.path().join("careid-demo/credentials.txt")).unwrap();
    let person_of = |name: &str| {
        let line = credentials.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
        line.split_whitespace().nth(1).unwrap().to_owned()
    };
    // The ID checker has no card: they sign in with their interim credential.
    let interim_credential =
        credentials.lines().find(|l| l.starts_with("demo-id-checker ")).unwrap().split_whitespace().nth(2).unwrap();
    // A practice's card holder, whose card the demo issued.
    let passcodes = std::fs::read_to_string(dir.path().join("careid-demo/cards/passcodes.txt")).unwrap();
    let holder_line = passcodes.lines().find(|l| l.ends_with(" active")).unwrap();
    let holder: Vec<&str> = holder_line.split_whitespace().collect();
    let (holder_uuid, holder_card, holder_passcode) = (holder[0], PathBuf::from(holder[2]), holder[3]);
    let holder_card = if holder_card.is_absolute() { holder_card } else { dir.path().join(holder_card) };
    // A locked card, for the RA agent to unlock from the console.
    let locked: Vec<&str> = passcodes.lines().find(|l| l.ends_with(" locked")).unwrap().split_whitespace().collect();
    let (locked_holder, locked_id) = (locked[0], locked[1]);
    let locked_card = PathBuf::from(locked[2]);
    let locked_card = if locked_card.is_absolute() { locked_card } else { dir.path().join(locked_card) };
    let summary = demo.json(&["ra", "--as", "demo-ra-agent", "person", "show", holder_uuid]);
    let family = summary["family_name"].as_str().unwrap().to_owned();

    let positions = demo.json(&["ra", "--as", "demo-ra-manager", "position", "list", "F83001"]);
    let position = positions[0]["id"].as_i64().unwrap();

    // Cards for the demo's RA staff, sponsor and privacy officer. A card ends its holder's
    // interim credential, so the RA agent issues the RA Manager's (who signed in with the
    // deployment's recovery credential) before the RA Manager issues the agent's.
    let mut cards = Vec::new();
    for (issuer, name) in [
        ("demo-ra-manager", "demo-sponsor"),
        ("demo-ra-manager", "demo-privacy-officer"),
        ("demo-ra-agent", "demo-ra-manager"),
        ("demo-ra-manager", "demo-ra-agent"),
    ] {
        let file = dir.path().join(format!("{name}.json"));
        issue_card(&demo, issuer, &person_of(name), &file, "582039");
        cards.push((name, file));
    }
    // One live session a person: the RA Manager signs out of the command line to use the card.
    let signed_out = demo.run(&["ra", "--as", "demo-ra-manager", "logout"].map(String::from), "");
    assert!(signed_out.status.success(), "{}", String::from_utf8_lossy(&signed_out.stderr));

    let today = today();
    let signal = dir.path().join("card-out");
    let state = serde_json::json!({
        "interim_credential": interim_credential,
        "holder": holder_uuid,
        "search": family,
        "position": position,
        "locked_holder": locked_holder,
        "locked_card": locked_id,
        "signal": signal,
        "leave_from": (today + time::Duration::days(30)).to_string(),
        "leave_to": (today + time::Duration::days(32)).to_string(),
    });
    let state_file = dir.path().join("state.json");
    std::fs::write(&state_file, state.to_string()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/console_browser.py");
    let browse = |role: &str| {
        let output = Command::new("python3")
            .args([script, &url, role, shots.to_str().unwrap(), axe.to_str().unwrap(), state_file.to_str().unwrap()])
            .output()
            .unwrap();
        let said = format!("{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success() && said.contains("all checks passed"), "{role} in the browser:\n{said}");
        println!("{said}");
    };

    // The holder: their trail, "not me", their sessions and card; then the card leaves the
    // reader while the browser waits, and the console ends with the card session.
    {
        let agent = Agent::start(&demo, &url, agent_port, &holder_card, holder_passcode, "holder", &[]);
        let moved = holder_card.with_extension("out");
        let browser = std::thread::scope(|scope| {
            let browser = scope.spawn(|| browse("holder"));
            let deadline = Instant::now() + Duration::from_secs(180);
            while !signal.exists() && Instant::now() < deadline && !browser.is_finished() {
                std::thread::sleep(Duration::from_millis(100));
            }
            if signal.exists() {
                std::fs::rename(&holder_card, &moved).unwrap();
                agent.wait_for("card removed");
            }
            browser.join()
        });
        browser.unwrap();
        std::fs::rename(&moved, &holder_card).unwrap();
    }
    for (name, file) in &cards {
        let role = name.trim_start_matches("demo-");
        // The RA agent's workstation has a second reader for ceremonies, with a locked card in it.
        let extra = if role == "ra-agent" {
            vec!["--ceremony-virtual".to_owned(), locked_card.to_str().unwrap().to_owned()]
        } else {
            Vec::new()
        };
        let _agent = Agent::start(&demo, &url, agent_port, file, "582039", role, &extra);
        browse(role);
    }
    browse("id-checker");
    let taken = std::fs::read_dir(&shots).unwrap().count();
    assert!(taken >= 25, "screenshots of every page: {taken} in {}", shots.display());
}
