//! The `careid` binary as an operator and an RA use it: `careid init`, `careid serve` in its own
//! process with debug logging, and the `careid ra` command line against it. Afterwards the
//! server's logs and the audit output are scanned for the secrets the run used.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use support::{CAREID, Child, careid, deployment, free_port, json, listening, ok, stdout, today};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

#[test]
fn init_serve_and_the_ra_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, url, credential) = deployment(dir, &[]);
    // The data directory and everything careid wrote in it are its owner's alone, whatever the
    // umask the test runs under.
    let mode =
        |path: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777;
    let data = dir.join("data");
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("pki")), 0o700);
    for entry in walk(&data) {
        let expected = if entry.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&entry), expected, "{}", entry.display());
    }
    assert!(data.join("careid.db-wal").exists(), "the write-ahead log is there to check");
    // A second init on the same deployment is refused.
    let again = careid(
        dir,
        &[
            "init",
            "--org-code",
            "QWE",
            "--org-name",
            "X",
            "--given-name",
            "A",
            "--family-name",
            "B",
            "--date-of-birth",
            "1980-01-01",
            "--ni-number",
            "AB000002A",
        ],
    );
    assert!(!again.status.success());

    let ra = |args: &[&str]| {
        let mut all = vec!["ra", "--server", url.as_str()];
        all.extend_from_slice(args);
        careid(dir, &all)
    };
    // The credential from the environment (or a prompt), never the command line that `ps` shows.
    let from_env = Command::new(CAREID)
        .args(["ra", "--server", url.as_str(), "login", "ram"])
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("CAREID_CREDENTIAL", &credential)
        .env_remove("CAREID_SERVER")
        .output()
        .unwrap();
    ok(&from_env);
    assert!(ok(&ra(&["whoami"])).contains("ra_manager"));
    // A server pointed at a directory with no deployment refuses to start a new, empty one.
    let empty = dir.join("empty");
    let refused = Command::new(CAREID)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("CAREID_DATA_DIR", &empty)
        .env_remove("CAREID_CONFIG")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("run `careid init` first"));
    let whoami: serde_json::Value = serde_json::from_str(&ok(&ra(&["--json", "whoami"]))).unwrap();
    assert_eq!(whoami["org"], "QWE");
    // The RA Manager's reports, as JSON and as CSV.
    let coverage = ok(&ra(&["report", "coverage", "--csv"]));
    assert_eq!(coverage.lines().next(), Some("org,staff_with_positions,with_live_card,percent"), "{coverage}");
    assert!(coverage.lines().any(|l| l.starts_with("QWE,1,0,")), "{coverage}");
    let lost: serde_json::Value =
        serde_json::from_str(&ok(&ra(&["--json", "report", "lost-cards", "--org", "QWE"]))).unwrap();
    assert_eq!(lost["columns"][0], "year");
    let unknown = ra(&["report", "nonsense"]);
    assert!(!unknown.status.success() && String::from_utf8_lossy(&unknown.stderr).contains("lost-cards"));

    let csv = dir.join("orgs.csv");
    std::fs::write(&csv, "ods_code,name,kind,parent\nF84003,Camden Road Surgery,gp_practice,QWE\nF84004,Holloway Medical Centre,gp_practice,QWE\n").unwrap();
    assert!(ok(&ra(&["org", "import", csv.to_str().unwrap()])).contains("created: 2"));
    let position = ok(&ra(&[
        "--json",
        "position",
        "create",
        "--org",
        "F84003",
        "--name",
        "Receptionist",
        "--role",
        "S0080:G0440:R8009",
        "--activity",
        "B0560,B0825",
        "--approved-by",
        "Caldicott Guardian",
        "--approved-how",
        "minute 7",
        "--assignable",
    ]));
    let position: serde_json::Value = serde_json::from_str(&position).unwrap();
    let person_args = [
        "person",
        "create",
        "--org",
        "F84003",
        "--given-name",
        "Rita",
        "--family-name",
        "Reception",
        "--date-of-birth",
        "1990-02-03",
        "--ni-number",
        "CE123456A",
        "--doc",
        "passport:123456789",
        "--doc",
        "utility_bill:UB77",
        "--doc",
        "bank_statement:BS12",
    ];
    let created: serde_json::Value =
        serde_json::from_str(&ok(&ra(&[&["--json"][..], &person_args[..]].concat()))).unwrap();
    let uuid = created["uuid"].as_str().unwrap().to_owned();
    ok(&ra(&["assign", &uuid, position["id"].as_str().unwrap()]));

    // The duplicate is refused, with the rule and the existing profile named, and a failing exit code.
    let duplicate = ra(&person_args);
    assert!(!duplicate.status.success());
    let message = String::from_utf8_lossy(&duplicate.stderr);
    assert!(message.contains("duplicate") && message.contains(&uuid) && message.contains("request id"), "{message}");

    let people = dir.join("people.csv");
    let header = "given_name,family_name,date_of_birth,ni_number,email,position,start\n";
    let id = position["id"].as_str().unwrap();
    let rows = format!(
        "{header}Ann,Import,1970-01-02,CE200001A,ann@nhs.net,{id},2026-01-01\nBen,Import,1971-03-04,CE200002A,,{id},2026-01-01\n"
    );
    std::fs::write(&people, rows).unwrap();
    let imported: serde_json::Value =
        serde_json::from_str(&ok(&ra(&["--json", "person", "import", people.to_str().unwrap()]))).unwrap();
    assert_eq!(imported.as_array().unwrap().len(), 2);
    let found = ok(&ra(&["person", "find", "Imp"]));
    assert!(
        found.contains("Ann") && found.contains("Ben") && !found.contains("CE200001A"),
        "finding shows names, not NI numbers:\n{found}"
    );

    let audit = ok(&ra(&["audit", "--limit", "50"]));
    // `careid ra audit | head -1`: a reader that goes away ends the command quietly.
    let mut closed = Command::new(CAREID)
        .args(["ra", "--server", url.as_str(), "audit", "--limit", "50"])
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env_remove("CAREID_PROFILE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(closed.stdout.take());
    let closed = closed.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&closed.stderr);
    assert!(!said.contains("panicked"), "{said}");
    assert_eq!(closed.status.code(), Some(141), "{said}");
    for action in
        ["person.create", "assignment.create", "organisation.create", "position.create", "REFUSED (duplicate_person)"]
    {
        assert!(audit.contains(action), "{action} missing from:\n{audit}");
    }

    // Secrets: the recovery credential and the session token appear in no log line and no output.
    let profiles = std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap();
    let profiles: serde_json::Value = serde_json::from_str(&profiles).unwrap();
    let token = profiles["profiles"]["ram"]["token"].as_str().unwrap().to_owned();
    ok(&ra(&["logout"]));
    let logs = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(logs.contains("DEBUG") || logs.contains("INFO"), "the server logged at debug level");
    for secret in [&credential, &token] {
        let random_part = secret.rsplit('-').next().unwrap();
        assert!(!logs.contains(random_part), "a secret reached the server's log");
        assert!(!audit.contains(random_part), "a secret reached the audit output");
    }
}

fn careid_input(dir: &Path, args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(CAREID)
        .args(args)
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env_remove("CAREID_SERVER")
        .env_remove("CAREID_PROFILE")
        .env_remove("CAREID_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run careid");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl");
    (output.status.success(), format!("{}{}", stdout(&output), String::from_utf8_lossy(&output.stderr)))
}

/// The demo relying application and the independent OpenID Connect client that checks the
/// provider (Python with Authlib), if installed; required where `CAREID_TEST_REQUIRE_OIDC_CLIENT`
/// is set (CI).
struct RelyingApp {
    _app: Child,
    args: Vec<String>,
    key_file: std::path::PathBuf,
}

impl RelyingApp {
    fn start(dir: &Path, url: &str, agent_port: u16) -> Option<RelyingApp> {
        let installed =
            Command::new("python3").args(["-c", "import authlib, requests"]).output().is_ok_and(|o| o.status.success());
        if !installed {
            assert!(
                std::env::var_os("CAREID_TEST_REQUIRE_OIDC_CLIENT").is_none(),
                "authlib and requests are required but not installed"
            );
            return None;
        }
        let port = free_port();
        let app_url = format!("http://127.0.0.1:{port}");
        let registered = json(&careid(
            dir,
            &[
                "client",
                "--server",
                url,
                "--as",
                "ram",
                "--json",
                "register",
                "demo-records",
                "--name",
                "Demo records",
                "--redirect-uri",
                &format!("{app_url}/callback"),
                "--backchannel-logout-uri",
                &format!("{app_url}/backchannel-logout"),
            ],
        ));
        let secret = registered["client_secret"].as_str().unwrap().to_owned();
        let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/relying-app/app.py");
        let app = Child(
            Command::new("python3")
                .arg(examples)
                .args(["--port", &port.to_string()])
                .env("CAREID_ISSUER", url)
                .env("CLIENT_ID", "demo-records")
                .env("CLIENT_SECRET", &secret)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(dir.join("relying-app.log")).unwrap())
                .spawn()
                .unwrap(),
        );
        assert!(listening(port), "the relying application did not start");
        let state = dir.join("oidc-state.json");
        let args = vec![
            url.to_owned(),
            app_url,
            format!("http://127.0.0.1:{agent_port}"),
            "demo-records".to_owned(),
            secret,
            state.display().to_string(),
        ];
        Some(RelyingApp { _app: app, args, key_file: dir.join(format!("run/careid/agent-{agent_port}.key")) })
    }

    /// The key the agent wrote for local programs.
    fn agent_key(&self) -> String {
        std::fs::read_to_string(&self.key_file).unwrap_or_default()
    }

    /// Runs one phase of the independent client's checks.
    fn check(&self, phase: &str) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc_client.py");
        let output = Command::new("python3")
            .arg(script)
            .arg(phase)
            .args(&self.args)
            .env("CAREID_AGENT_KEY", self.agent_key())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "the OpenID Connect client's {phase} checks failed:\n{}\n{}",
            stdout(&output),
            String::from_utf8_lossy(&output.stderr)
        );
        println!("{}", stdout(&output));
    }
}

/// Whether headless Chromium can be driven here (Chromium, ChromeDriver and Selenium);
/// required where `CAREID_TEST_REQUIRE_BROWSER` is set (CI).
fn browser_installed() -> bool {
    let installed = Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists()
        && Command::new("python3").args(["-c", "import selenium"]).output().is_ok_and(|o| o.status.success());
    assert!(
        installed || std::env::var_os("CAREID_TEST_REQUIRE_BROWSER").is_none(),
        "Chromium, ChromeDriver and Selenium are required but not installed"
    );
    installed
}

/// Runs `careid agent` with the holder's virtual card through two insertions; on the way, an
/// application signs the holder in through careid's OpenID Connect provider.
fn agent_session(dir: &Path, url: &str, agent_port: u16, card_file: &Path, holder: &str) {
    use std::io::Write;
    let output = dir.join("agent.out");
    let mut agent = Command::new(CAREID)
        .args(["agent", "--server", url, "--workstation", "desk-1", "--passcode-stdin", "--virtual"])
        .arg(card_file)
        .args(["--local-port", &agent_port.to_string()])
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first login with this card shows the terms of use and asks: the holder accepts.
    agent.stdin.as_mut().unwrap().write_all(b"y\n582039\n").unwrap();
    let agent_stdin = std::sync::Arc::new(std::sync::Mutex::new(agent.stdin.take().unwrap()));
    let agent = Child(agent);
    // The holder at the agent: agrees to what is asked, but not to an application they do not
    // know of.
    let holder_answers = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let at_agent = {
        let (output, stdin, running) = (output.clone(), agent_stdin.clone(), holder_answers.clone());
        std::thread::spawn(move || {
            let mut answered = 0;
            while running.load(std::sync::atomic::Ordering::SeqCst) {
                let said = std::fs::read_to_string(&output).unwrap_or_default();
                for question in said.lines().filter(|l| l.contains("Confirm at the agent")).skip(answered) {
                    let answer: &[u8] = if question.contains("no-such-app") { b"n\n" } else { b"y\n" };
                    stdin.lock().unwrap().write_all(answer).unwrap();
                    answered += 1;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        })
    };
    let said = |what: &str, times: usize| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if std::fs::read_to_string(&output).unwrap_or_default().matches(what).count() >= times {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("the agent never said {what:?}: {}", std::fs::read_to_string(&output).unwrap_or_default());
    };
    said("logged in as", 1);
    assert!(std::fs::read_to_string(&output).unwrap().contains(holder));
    // The RA API takes the card session: the agent saved it as the `card` profile.
    let me = json(&careid(dir, &["ra", "--as", "card", "--json", "whoami"]));
    assert_eq!((me["auth"].as_str(), me["person"].as_str()), (Some("card"), Some(holder)));
    let profiles: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap()).unwrap();
    let token = profiles["profiles"]["card"]["token"].as_str().unwrap().to_owned();
    let sessions = |token: &str| {
        let out = Command::new("curl")
            .args(["-s", "-H", &format!("Authorization: Bearer {token}"), &format!("{url}/api/v1/sessions")])
            .output()
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&stdout(&out)).unwrap()
    };
    // Past the grace period the session lives on: the card's heartbeats prove it is there.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let live = sessions(&token);
    let card_session = live.as_array().unwrap().iter().find(|s| s["auth"] == "card").unwrap().clone();
    assert_eq!(card_session["workstation"], "desk-1");
    assert_ne!(card_session["last_proof_at"], card_session["created_at"], "heartbeats were counted");
    let relying = RelyingApp::start(dir, url, agent_port);
    if let Some(relying) = &relying {
        if browser_installed() {
            relying.check("browser");
        }
        relying.check("signed-in");
    }

    // The card leaves the reader: the session ends, and its token is dead.
    let away = card_file.with_extension("away");
    std::fs::rename(card_file, &away).unwrap();
    said("card removed", 1);
    assert_eq!(sessions(&token)["error"]["code"], "unauthenticated");
    // The application hears of it by back-channel logout; every token of the session is dead.
    if let Some(relying) = &relying {
        relying.check("ended");
    }
    // The local endpoint answers only its holder: a program without the agent's key is
    // refused, and the holder declined a token for an application they did not know.
    if relying.is_some() {
        said("token declined (no-such-app)", 1);
    }
    let key_file = dir.join(format!("run/careid/agent-{agent_port}.key"));
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the agent's key is its user's alone");
    let unkeyed = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST", "-H", "content-type: application/json"])
        .args(["-d", r#"{"audience":"demo-records"}"#, &format!("http://127.0.0.1:{agent_port}/v1/token")])
        .output()
        .unwrap();
    assert_eq!(stdout(&unkeyed), "401", "a local program without the key got an answer");
    // Back in the reader: the holder types the passcode and is logged in again.
    agent_stdin.lock().unwrap().write_all(b"582039\n").unwrap();
    std::fs::rename(&away, card_file).unwrap();
    said("logged in as", 2);
    let shown = std::fs::read_to_string(&output).unwrap();
    assert_eq!(shown.matches("Do you accept these terms?").count(), 1, "asked once a version and card: {shown}");
    assert!(shown.contains("never tell anyone your passcode"), "the terms themselves are shown: {shown}");
    let profiles: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap()).unwrap();
    let token = profiles["profiles"]["card"]["token"].as_str().unwrap().to_owned();
    assert!(sessions(&token).is_array());
    // Another card swapped in within one poll is not the card that logged in: the session ends.
    let original = std::fs::read_to_string(card_file).unwrap();
    let mut other: serde_json::Value = serde_json::from_str(&original).unwrap();
    other["serial"] = "SWAPPED0001".into();
    let swapped = card_file.with_extension("swapped");
    std::fs::write(&swapped, other.to_string()).unwrap();
    std::fs::rename(&swapped, card_file).unwrap();
    said("card removed", 2);
    assert_eq!(sessions(&token)["error"]["code"], "unauthenticated");
    holder_answers.store(false, std::sync::atomic::Ordering::SeqCst);
    at_agent.join().unwrap();
    drop(agent_stdin);
    drop(agent);
    std::fs::write(card_file, original).unwrap();
}

#[test]
fn a_service_manager_stopping_the_server_leaves_the_database_file_whole() {
    // systemd and the like stop a service with SIGTERM: the server stops in order, as on
    // Ctrl-C, and moves the write-ahead log into the database file.
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mut server, url, credential) = deployment(dir, &[]);
    ok(&careid(dir, &["ra", "--server", &url, "login", "ram", "--credential", &credential]));
    let pid = server.0.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = (0..100)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            server.0.try_wait().unwrap()
        })
        .expect("the server stops within five seconds of SIGTERM");
    assert!(status.success(), "{status:?}");
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");
    let wal = dir.join("data/careid.db-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0, "the write-ahead log was moved into the file");
}

#[test]
fn a_card_from_issue_to_replacement_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (mail, mut settings) = Mail::start(dir);
    // Heartbeats every second, sessions over after three without: the agent's part in seconds.
    settings.push(("CAREID_HEARTBEAT_INTERVAL_SECONDS", "1".into()));
    settings.push(("CAREID_PRESENCE_GRACE_SECONDS", "3".into()));
    let agent_port = free_port();
    settings.push(("CAREID_AGENT_PORT", agent_port.to_string()));
    let (_server, url, credential) = deployment(dir, &settings);
    let ra = |args: &[&str]| {
        let mut all = vec!["ra", "--server", url.as_str()];
        all.extend_from_slice(args);
        careid(dir, &all)
    };
    let card = |args: &[&str], input: &str| {
        let mut all = vec!["card", "--json"];
        all.extend_from_slice(args);
        careid_input(dir, &all, input)
    };
    // The holder enters a passcode on their card; what careid says back.
    let try_passcode = |card_id: &str, path: &str, passcode: &str| {
        json(&card(
            &["--as", "holder", "try", card_id, "--virtual", path, "--passcode-stdin"],
            &format!("{passcode}\n"),
        ))
    };
    ok(&ra(&["login", "ram", "--credential", &credential]));
    ok(&ra(&[
        "org",
        "create",
        "--ods-code",
        "F84003",
        "--name",
        "Camden Road Surgery",
        "--kind",
        "gp_practice",
        "--parent",
        "QWE",
    ]));
    let position = |name: &str, role: &str, activity: &str| {
        let created = json(&ra(&[
            "--as",
            "ram",
            "--json",
            "position",
            "create",
            "--org",
            "F84003",
            "--name",
            name,
            "--role",
            role,
            "--activity",
            activity,
            "--approved-by",
            "IG group",
            "--approved-how",
            "minute 3",
        ]));
        created["id"].as_str().unwrap().to_owned()
    };
    let sponsor_position = position("Practice Manager", "S0080:G0440:R8011", "B1300");
    let receptionist_position = position("Receptionist", "S0080:G0440:R8009", "B0560");
    let issued_credentials = std::cell::RefCell::new(vec![credential.clone()]);
    let person = |given: &str, ni: &str, position: &str, profile: &str| {
        let created = json(&ra(&[
            "--as",
            "ram",
            "--json",
            "person",
            "create",
            "--org",
            "F84003",
            "--given-name",
            given,
            "--family-name",
            "Staff",
            "--date-of-birth",
            "1990-02-03",
            "--ni-number",
            ni,
            "--doc",
            "passport:1",
            "--doc",
            "utility_bill:2",
            "--doc",
            "bank_statement:3",
        ]));
        let uuid = created["uuid"].as_str().unwrap().to_owned();
        ok(&ra(&["--as", "ram", "assign", &uuid, position]));
        let issued = json(&ra(&["--as", "ram", "--json", "issue-credential", &uuid]));
        issued_credentials.borrow_mut().push(issued["credential"].as_str().unwrap().to_owned());
        ok(&ra(&["login", profile, "--credential", issued["credential"].as_str().unwrap()]));
        uuid
    };
    person("Spo", "CE400001A", &sponsor_position, "sponsor");
    let holder = person("Hol", "CE400002A", &receptionist_position, "holder");
    let card_file = dir.join("card.json");
    let card_path = card_file.to_str().unwrap();

    // Issue: the card leaves the desk locked; the holder sets the passcode, the RA authorising.
    let issued = json(&card(&["--as", "ram", "issue", &holder, "--virtual", card_path], ""));
    let id = issued["card_id"].as_i64().unwrap().to_string();
    let weak =
        card(&["--as", "ram", "set-passcode", &id, "--virtual", card_path, "--passcode-stdin"], "123456\n123456\n");
    assert!(!weak.status.success(), "a weak passcode is refused where it is typed");
    assert!(String::from_utf8_lossy(&weak.stderr).contains("run of digits"));
    // The holder's date of birth (3 February 1990) reaches the ceremony sealed with the card's
    // secrets, never by reading the holder's profile, and is refused as a passcode.
    let birthday =
        card(&["--as", "ram", "set-passcode", &id, "--virtual", card_path, "--passcode-stdin"], "030290\n030290\n");
    assert!(!birthday.status.success(), "the date of birth was accepted as a passcode");
    assert!(String::from_utf8_lossy(&birthday.stderr).contains("date of birth"));
    let set = json(&card(
        &["--as", "ram", "set-passcode", &id, "--virtual", card_path, "--passcode-stdin"],
        "582039\n582039\n",
    ));
    assert_eq!(set["state"], "active");
    assert_eq!(try_passcode(&id, card_path, "582039")["signed"], true);

    // The workstation agent logs the holder in with the card and keeps the session alive
    // while the card is there; taking the card out ends it, putting it back logs in again.
    agent_session(dir, &url, agent_port, &card_file, &holder);

    // Recorded on leave at a practice that refuses such logins: the agent cannot log her in,
    // and says why (F5: actions under the name of someone who was not at work).
    ok(&ra(&["--as", "ram", "org", "absence-policy", "F84003", "refuse"]));
    let today = today();
    let (from, to) = ((today - time::Duration::days(1)).to_string(), (today + time::Duration::days(1)).to_string());
    let absence = json(&ra(&[
        "--as",
        "sponsor",
        "--json",
        "absence",
        "record",
        &holder,
        "--kind",
        "annual_leave",
        "--from",
        &from,
        "--to",
        &to,
    ]));
    let refused = careid_input(
        dir,
        &["agent", "--server", &url, "--once", "--local-port", "0", "--passcode-stdin", "--virtual", card_path],
        "582039\n",
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(said.contains("recorded as absent (annual leave)"), "{said}");
    // At another workstation's agent the terms are asked again; declined, nobody is logged in
    // and the passcode is never asked for.
    let other_desk = dir.join("other-desk");
    let declined = careid_input(
        &other_desk,
        &["agent", "--server", &url, "--once", "--local-port", "0", "--passcode-stdin", "--virtual", card_path],
        "n\n",
    );
    assert!(!declined.status.success());
    let said = String::from_utf8_lossy(&declined.stderr).into_owned();
    assert!(said.contains("terms of use") && said.contains("were not accepted"), "{said}");
    ok(&ra(&["--as", "sponsor", "absence", "cancel", &absence["id"].to_string()]));

    // Three wrong passcodes lock it in careid's records.
    let mut last = serde_json::Value::Null;
    for wrong in ["111112", "111113", "111114"] {
        last = try_passcode(&id, card_path, wrong);
    }
    assert_eq!(last["state"], "locked");
    // The sponsor authorises the unlock; the holder types the new passcode.
    let unlocked = json(&card(
        &["--as", "sponsor", "unlock", &id, "--virtual", card_path, "--passcode-stdin"],
        "740261\n740261\n",
    ));
    assert_eq!(unlocked["state"], "active");
    assert_eq!(try_passcode(&id, card_path, "740261")["signed"], true);

    // Locked again, the holder unlocks it alone, with a code sent to their registered email.
    ok(&ra(&["--as", "ram", "person", "contact", &holder, "--email", "hol.staff@nhs.net"]));
    for wrong in ["111112", "111113", "111114"] {
        last = try_passcode(&id, card_path, wrong);
    }
    assert_eq!(last["state"], "locked");
    let (unlocked, unlock_code) = self_unlock(dir, &url, &mail, card_path, "hol.staff@nhs.net", "318264\n318264\n");
    assert_eq!(json(&unlocked)["state"], "active");
    assert_eq!(try_passcode(&id, card_path, "318264")["signed"], true);

    // openssl accepts the live card's certificate with careid's CA and CRL.
    let hex_certificate: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&card_file).unwrap()).unwrap();
    std::fs::write(dir.join("card.der"), hex_decode(hex_certificate["certificate"].as_str().unwrap())).unwrap();
    let fetch = |path: &str, file: &str| {
        let bytes =
            Command::new("curl").args(["-sf", &format!("{url}{path}")]).output().map(|o| o.stdout).unwrap_or_default();
        std::fs::write(dir.join(file), bytes).unwrap();
    };
    let verify = |label: &str| {
        fetch("/pki/root", "root.pem");
        fetch("/pki/ca", "ca.pem");
        fetch("/pki/crl", "crl.der");
        let chain = format!(
            "{}{}",
            std::fs::read_to_string(dir.join("root.pem")).unwrap(),
            std::fs::read_to_string(dir.join("ca.pem")).unwrap()
        );
        std::fs::write(dir.join("chain.pem"), chain).unwrap();
        assert!(
            openssl(dir, &["crl", "-inform", "DER", "-in", "crl.der", "-out", "crl.pem"]).0,
            "{label}: the CRL parses"
        );
        assert!(openssl(dir, &["x509", "-inform", "DER", "-in", "card.der", "-out", "card.pem"]).0);
        openssl(dir, &["verify", "-crl_check", "-CAfile", "chain.pem", "-CRLfile", "crl.pem", "card.pem"])
    };
    let (verified, text) = verify("live");
    assert!(verified, "{text}");

    // The sponsor reports it lost (the holder's interim credential ended when the card became
    // active): revoked at once, and openssl now refuses it.
    let reported = json(&card(&["--as", "sponsor", "report", &id, "--reason", "lost"], ""));
    assert!(reported["incident_id"].as_i64().is_some(), "{reported}");
    let (verified, text) = verify("revoked");
    assert!(!verified && text.contains("revoked"), "{text}");

    // No replacement until the investigation closes, and the holder cannot close it.
    let new_card = dir.join("replacement.json");
    let refused = card(&["--as", "ram", "issue", &holder, "--virtual", new_card.to_str().unwrap()], "");
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("investigation_open"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    // With no card now, the holder may have an interim credential again; it closes nothing.
    let interim = json(&ra(&["--as", "ram", "--json", "issue-credential", &holder]));
    issued_credentials.borrow_mut().push(interim["credential"].as_str().unwrap().to_owned());
    ok(&ra(&["login", "holder", "--credential", interim["credential"].as_str().unwrap()]));
    let by_holder =
        card(&["--as", "holder", "close-investigation", &id, "--review", "fine", "--outcome", "no case"], "");
    assert!(!by_holder.status.success());
    assert!(String::from_utf8_lossy(&by_holder.stderr).contains("refused"), "{by_holder:?}");
    ok(&card(
        &[
            "--as",
            "ram",
            "close-investigation",
            &id,
            "--review",
            "No use since it was last known safe.",
            "--outcome",
            "no case",
        ],
        "",
    ));
    let replacement = json(&card(&["--as", "ram", "issue", &holder, "--virtual", new_card.to_str().unwrap()], ""));
    assert_eq!(replacement["state"], "awaiting_passcode");

    let cards = json(&card(&["--as", "ram", "list", &holder], ""));
    let states: Vec<&str> = cards.as_array().unwrap().iter().map(|c| c["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["lost", "awaiting_passcode"]);

    // A new certificate is not due for renewal; the RA can repair the card, after which the
    // holder sets a passcode again.
    let new_id = replacement["card_id"].as_i64().unwrap().to_string();
    let new_path = new_card.to_str().unwrap();
    ok(&card(&["--as", "ram", "set-passcode", &new_id, "--virtual", new_path, "--passcode-stdin"], "582039\n582039\n"));
    let early = card(&["--as", "sponsor", "renew", &new_id, "--virtual", new_path, "--passcode-stdin"], "582039\n");
    assert!(
        String::from_utf8_lossy(&early.stderr).contains("renewal_not_due"),
        "{}",
        String::from_utf8_lossy(&early.stderr)
    );
    let repaired = json(&card(&["--as", "ram", "repair", &new_id, "--virtual", new_path], ""));
    assert_eq!(repaired["state"], "awaiting_passcode");
    ok(&card(&["--as", "ram", "set-passcode", &new_id, "--virtual", new_path, "--passcode-stdin"], "906172\n906172\n"));
    assert_eq!(try_passcode(&new_id, new_path, "906172")["signed"], true);
    let shown = json(&card(&["--as", "ram", "show", &new_id], ""));
    let reasons: Vec<&str> = shown["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["revocation_reason"].as_str().unwrap_or("live"))
        .collect();
    assert_eq!(reasons, ["superseded", "live"]);

    // The secrets scan: no passcode, credential, session token, unlock code or private key
    // anywhere careid writes: the server's log, the audit log and every other file in its data
    // directory (the database and its write-ahead log, keys sealed or not), nor in what the API
    // answers an RA Manager reading everything about the holder and the log.
    let profiles: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap()).unwrap();
    let ram = profiles["profiles"]["ram"]["token"].as_str().unwrap().to_owned();
    let reads = [
        "/api/v1/sessions".to_owned(),
        "/api/v1/me/audit?limit=1000".to_owned(),
        "/api/v1/audit?limit=1000".to_owned(),
        "/api/v1/audit/fhir?limit=1000".to_owned(),
        format!("/api/v1/people/{holder}"),
        format!("/api/v1/people/{holder}/cards"),
        format!("/api/v1/people/{holder}/absences"),
        "/api/v1/registrations".to_owned(),
        "/api/v1/requests".to_owned(),
        "/api/v1/clients".to_owned(),
    ];
    let answers: Vec<u8> = reads
        .iter()
        .flat_map(|path| {
            let answer = Command::new("curl")
                .args(["-sf", "-H", &format!("Authorization: Bearer {ram}"), &format!("{url}{path}")])
                .output()
                .unwrap();
            assert!(answer.status.success(), "GET {path}");
            answer.stdout
        })
        .collect();
    std::fs::write(dir.join("api-answers.txt"), &answers).unwrap();
    let mut secrets: Vec<String> = issued_credentials.into_inner();
    secrets.extend(profiles["profiles"].as_object().unwrap().values().map(|p| p["token"].as_str().unwrap().to_owned()));
    let passcodes = ["582039", "740261", "111112", "111113", "111114", "318264", "906172", &unlock_code];
    let scanned = secrets_scan(dir, &secrets, &passcodes);
    println!(
        "secrets scan: {} secrets and {} passcodes and codes, none in {scanned} files",
        secrets.len(),
        passcodes.len()
    );
}

/// Looks for each secret in the server's log, every file of the data directory and the API's
/// answers the test kept; digits-only
/// secrets (passcodes, unlock codes) count only as a whole number, not inside a longer run of digits such as
/// a timestamp. Also looks for private keys in the clear (PEM, or P-256 PKCS#8 DER). Returns
/// how many files it read.
fn secrets_scan(dir: &Path, secrets: &[String], digits: &[&str]) -> usize {
    let mut files: Vec<_> = walk(&dir.join("data")).into_iter().filter(|p| p.is_file()).collect();
    files.push(dir.join("server.log"));
    files.push(dir.join("api-answers.txt"));
    let pkcs8_p256: &[u8] = &[0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let name = file.display();
        for secret in secrets {
            // The message names the kind of secret (its prefix), never the secret.
            let kind: String = secret.chars().take_while(|c| !c.is_ascii_digit()).take(24).collect();
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{name} holds a {kind:?} secret in the clear"
            );
        }
        for (n, passcode) in digits.iter().enumerate() {
            let whole = bytes.windows(passcode.len() + 2).any(|w| {
                !w[0].is_ascii_digit() && !w[w.len() - 1].is_ascii_digit() && &w[1..w.len() - 1] == passcode.as_bytes()
            });
            assert!(!whole, "{name} holds passcode or code number {n} of those given");
        }
        assert!(!bytes.windows(11).any(|w| w == b"PRIVATE KEY"), "{name} holds a PEM private key");
        assert!(!bytes.windows(pkcs8_p256.len()).any(|w| w == pkcs8_p256), "{name} holds a PKCS#8 private key");
    }
    files.len()
}

/// Where the holder's email arrives: a real SMTP server (aiosmtpd, writing a Maildir) that
/// careid delivers its outbox to, or, where aiosmtpd is not installed, careid's outbox table.
enum Mail {
    Smtp { _server: Child, maildir: std::path::PathBuf },
    Outbox,
}

impl Mail {
    /// Starts the SMTP server if there is one; returns the settings that point careid at it.
    fn start(dir: &Path) -> (Mail, Vec<(&'static str, String)>) {
        let installed =
            Command::new("python3").args(["-c", "import aiosmtpd"]).output().is_ok_and(|o| o.status.success());
        if !installed {
            assert!(std::env::var_os("CAREID_TEST_REQUIRE_SMTP").is_none(), "aiosmtpd is required but not installed");
            return (Mail::Outbox, Vec::new());
        }
        let port = free_port();
        let maildir = dir.join("maildir");
        let server = Child(
            Command::new("python3")
                .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}"), "-c", "aiosmtpd.handlers.Mailbox"])
                .arg(&maildir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        assert!(listening(port), "the SMTP server did not start");
        let settings =
            vec![("CAREID_SMTP_URL", format!("smtp://127.0.0.1:{port}")), ("CAREID_OUTBOX_POLL_SECONDS", "1".into())];
        (Mail::Smtp { _server: server, maildir }, settings)
    }

    /// The newest message to `recipient`: an id and its text.
    fn newest(&self, dir: &Path, recipient: &str) -> Option<(String, String)> {
        match self {
            Mail::Smtp { maildir, .. } => {
                let mut messages: Vec<(std::time::SystemTime, String, String)> = std::fs::read_dir(maildir.join("new"))
                    .ok()?
                    .filter_map(Result::ok)
                    .filter_map(|entry| {
                        let text = std::fs::read_to_string(entry.path()).ok()?;
                        let to_them = text.lines().any(|l| l.starts_with("To: ") && l.contains(recipient));
                        let at = entry.metadata().ok()?.modified().ok()?;
                        to_them.then(|| (at, entry.file_name().to_string_lossy().into_owned(), text))
                    })
                    .collect();
                messages.sort();
                messages.pop().map(|(_, id, text)| (id, text))
            }
            Mail::Outbox => tokio::runtime::Runtime::new().unwrap().block_on(async {
                use careid_domain::ports::Store;
                let url = format!("sqlite://{}", dir.join("data/careid.db").display());
                let store = careid_store::SqlStore::open(&careid_store::StoreOptions::new(url)).await.unwrap();
                let mut tx = store.begin_read().await.unwrap();
                let email = careid_domain::ids::Email::parse(recipient).unwrap();
                let messages = tx.outbox(Some(&email), 1).await.unwrap();
                // The body waits sealed: the test opens it with the deployment's master key.
                let key = std::fs::read_to_string(dir.join("data/master.key")).unwrap();
                let key = careid_pki::MasterKey::from_hex(&key).unwrap();
                messages.first().map(|m| (m.id.to_string(), careid_service::open_message_body(&key, &m.body).unwrap()))
            }),
        }
    }
}

/// `careid card self-unlock` as a holder runs it: the command sends the code and waits at its
/// prompt; the holder reads the email and types the code, then the rest.
fn self_unlock(dir: &Path, url: &str, mail: &Mail, card_path: &str, recipient: &str, rest: &str) -> (Output, String) {
    use std::io::Write;
    let before = mail.newest(dir, recipient).map(|(id, _)| id);
    let mut child = Command::new(CAREID)
        .args(["card", "--json", "--server", url, "self-unlock", "--virtual", card_path, "--passcode-stdin"])
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let body = (0..200).find_map(|_| {
        std::thread::sleep(Duration::from_millis(50));
        mail.newest(dir, recipient).filter(|(id, _)| Some(id) != before.as_ref()).map(|(_, body)| body)
    });
    let Some(body) = body else {
        child.kill().unwrap();
        let output = child.wait_with_output().unwrap();
        panic!("the unlock email never arrived: {}", String::from_utf8_lossy(&output.stderr))
    };
    if let Mail::Smtp { .. } = mail {
        assert!(body.contains("Subject: Your careid smartcard unlock code"), "delivered by SMTP:\n{body}");
    }
    let code = body
        .split_whitespace()
        .find(|w| w.len() == 9 && w.ends_with('.') && w[..8].bytes().all(|b| b.is_ascii_digit()))
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{}\n{rest}", &code[..8]).as_bytes()).unwrap();
    (child.wait_with_output().unwrap(), code[..8].to_owned())
}

fn hex_decode(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// SoftHSM2's configuration for this test process: tokens under target/, never the system's.
fn softhsm_module() -> Option<std::path::PathBuf> {
    let module = std::path::PathBuf::from("/usr/lib/softhsm/libsofthsm2.so");
    if !module.exists() {
        assert!(std::env::var_os("CAREID_TEST_REQUIRE_PKCS11").is_none(), "SoftHSM2 is required but not installed");
        return None;
    }
    let conf = std::path::PathBuf::from(std::env::var("SOFTHSM2_CONF").expect("set by .cargo/config.toml"));
    let tokens = conf.parent().unwrap().join("tokens-binary");
    let _ = std::fs::remove_dir_all(&tokens);
    std::fs::create_dir_all(&tokens).unwrap();
    std::fs::write(
        &conf,
        format!("directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n", tokens.display()),
    )
    .unwrap();
    Some(module)
}

#[test]
fn a_card_on_a_pkcs11_token_through_the_command_line() {
    let Some(module) = softhsm_module() else { return };
    let module = module.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let (_server, url, credential) = deployment(dir, &[]);
    ok(&careid(dir, &["ra", "--server", &url, "login", "ram", "--credential", &credential]));
    let created = json(&careid(
        dir,
        &[
            "ra",
            "--json",
            "person",
            "create",
            "--org",
            "QWE",
            "--given-name",
            "Tok",
            "--family-name",
            "Holder",
            "--date-of-birth",
            "1990-02-03",
            "--ni-number",
            "CE500001A",
            "--doc",
            "passport:1",
            "--doc",
            "utility_bill:2",
            "--doc",
            "bank_statement:3",
        ],
    ));
    let holder = created["uuid"].as_str().unwrap();

    let issued = json(&careid_input(dir, &["card", "--json", "issue", holder, "--pkcs11-module", module], ""));
    let id = issued["card_id"].as_i64().unwrap().to_string();
    let serial = issued["serial"].as_str().unwrap().to_owned();

    // OpenSC's pkcs11-tool, an independent PKCS#11 client, finds the token, the certificate and
    // the public key; the private key is not visible without the holder's passcode.
    let slot = slot_of(module, &serial);
    let objects = objects_on(module, slot);
    assert!(objects.contains("Certificate Object") && objects.contains("Public Key Object"), "{objects}");
    assert!(!objects.contains("Private Key Object"), "the private key stays behind the passcode:\n{objects}");

    // The holder sets the passcode (the RA at the desk authorises) and the token signs.
    let device_slot = |args: &mut Vec<String>| {
        args.extend(["--pkcs11-module".to_owned(), module.to_owned(), "--slot".to_owned(), slot.to_string()]);
    };
    let mut set = vec!["card".to_owned(), "--json".to_owned(), "set-passcode".to_owned(), id.clone()];
    device_slot(&mut set);
    set.push("--passcode-stdin".into());
    let set: Vec<&str> = set.iter().map(String::as_str).collect();
    assert_eq!(json(&careid_input(dir, &set, "582039\n582039\n"))["state"], "active");
    let mut try_args = vec!["card".to_owned(), "--json".to_owned(), "try".to_owned(), id.clone()];
    device_slot(&mut try_args);
    try_args.push("--passcode-stdin".into());
    let try_args: Vec<&str> = try_args.iter().map(String::as_str).collect();
    assert_eq!(json(&careid_input(dir, &try_args, "582039\n"))["signed"], true);
    // Without --slot: the only card is used, or the cards there are listed by slot and serial.
    let unnamed = careid_input(dir, &["card", "--json", "status", "--pkcs11-module", module], "");
    if unnamed.status.success() {
        assert_eq!(json(&unnamed)["serial"], serial.as_str());
    } else {
        let said = String::from_utf8_lossy(&unnamed.stderr);
        assert!(said.contains(&format!("--slot {slot}")) && said.contains(serial.as_str()), "{said}");
    }
    // SoftHSM2 never locks a token; careid does, in its own records, at the third wrong passcode
    // in a row, whether the workstation agent saw the card refuse it before any login or the
    // command line did.
    let mut agent = vec!["agent", "--server", &url, "--once", "--local-port", "0", "--workstation", "desk-9"];
    agent.extend(["--accept-terms", careid_domain::TERMS_OF_USE_VERSION]);
    agent.extend(["--passcode-stdin", "--pkcs11-module", module, "--slot"]);
    let slot_text = slot.to_string();
    agent.push(&slot_text);
    for (wrong, in_a_row) in [("111112", 1), ("111113", 2)] {
        let refused = careid_input(dir, &agent, &format!("{wrong}\n"));
        assert!(!refused.status.success());
        let said = String::from_utf8_lossy(&refused.stderr).into_owned();
        assert!(said.contains(&format!("careid recorded {in_a_row} wrong passcode(s) in a row")), "{said}");
        assert!(!said.contains(wrong), "the passcode is never echoed: {said}");
    }
    let last = json(&careid_input(dir, &try_args, "111114\n"));
    assert_eq!(last["state"], "locked");
    let refused = careid_input(dir, &agent, "582039\n");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(!refused.status.success() && said.contains("locked"), "the right passcode no longer logs in: {said}");

    // The RA cancels the card and clears it with the token in hand: careid releases the
    // token's SO PIN to the clearing ceremony, which wipes it; the same token is then issued
    // again, and only its new certificate is on it.
    ok(&careid_input(dir, &["card", "cancel", &id], ""));
    let slot_arg = slot.to_string();
    let cleared =
        json(&careid_input(dir, &["card", "--json", "clear", &id, "--pkcs11-module", module, "--slot", &slot_arg], ""));
    assert_eq!(cleared["state"], "cleared");
    let slot = slot_of(module, &serial);
    let objects = objects_on(module, slot);
    assert!(!objects.contains("Certificate Object") && !objects.contains("Public Key Object"), "{objects}");
    let slot_arg = slot.to_string();
    let again = json(&careid_input(
        dir,
        &["card", "--json", "issue", holder, "--pkcs11-module", module, "--slot", &slot_arg],
        "",
    ));
    assert_eq!((again["serial"].as_str(), again["state"].as_str()), (Some(serial.as_str()), Some("awaiting_passcode")));
    assert_ne!(again["card_id"].as_i64().unwrap().to_string(), id, "a reissue starts a new card record");
}

/// What OpenSC's pkcs11-tool lists on the token in `slot`, without logging in.
fn objects_on(module: &str, slot: u64) -> String {
    stdout(
        &Command::new("pkcs11-tool")
            .args(["--module", module, "--slot", &format!("0x{slot:x}"), "--list-objects"])
            .output()
            .unwrap(),
    )
}

/// The slot id of the token with this serial, as OpenSC's pkcs11-tool lists it.
fn slot_of(module: &str, serial: &str) -> u64 {
    let listing =
        stdout(&Command::new("pkcs11-tool").args(["--module", module, "--list-slots"]).output().expect("pkcs11-tool"));
    let mut current = None;
    for line in listing.lines() {
        if let Some(rest) = line.strip_prefix("Slot ") {
            current = rest
                .split(['(', ')'])
                .nth(1)
                .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok());
        }
        if line.contains("serial num") && line.trim_end().ends_with(serial) {
            return current.expect("a slot line before its serial");
        }
    }
    panic!("no token with serial {serial}:\n{listing}");
}

/// README's first command builds the demo: it must keep working as the rules tighten (its
/// CLI profiles sign in with interim credentials, which careid gives only to people with no
/// active card), and the profiles it saves must act.
#[test]
fn the_demo_builds_and_its_saved_profiles_act() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let built = careid(dir, &["demo", "--no-serve", "--data-dir", dir.join("demo").to_str().unwrap()]);
    let tour = ok(&built);
    assert!(tour.contains("CLI profiles saved for: demo-ra-manager"), "{tour}");
    assert!(tour.contains("lost, investigation open"), "{tour}");
    let profiles: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cli/profiles.json")).unwrap()).unwrap();
    for name in ["demo-ra-manager", "demo-ra-agent", "demo-sponsor", "demo-id-checker", "demo-privacy-officer"] {
        assert!(profiles["profiles"][name]["token"].is_string(), "{name} saved");
    }
}

/// Every file and directory below `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn careid_detect_reads_an_export_and_names_the_file_and_line_of_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let month = careid_detect::synth::generate(
        &careid_detect::synth::Plan { staff: 120, days: 20, ..careid_detect::synth::Plan::default() },
        dir.path(),
    )
    .unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    // A line no system would write, and one that is not an AuditEvent: skipped and counted.
    let mut events = std::fs::read_to_string(path("events.ndjson")).unwrap();
    events.push_str("not json\n{\"resourceType\":\"Patient\"}\n");
    std::fs::write(path("events.ndjson"), events).unwrap();
    let args = |roster: &str| {
        vec![
            "detect".to_owned(),
            "--events".into(),
            path("events.ndjson"),
            "--staff".into(),
            path("staff.csv"),
            "--roster".into(),
            path(roster),
            "--leave".into(),
            path("leave.csv"),
            "--patients".into(),
            path("patients.csv"),
            "--out".into(),
            path("alerts.json"),
        ]
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        careid(dir.path(), &args)
    };
    let summary = ok(&run(args("roster.csv")));
    assert!(summary.contains(&format!("{} events read", month.events + 2)), "{summary}");
    assert!(
        summary.contains("1 skipped: not a JSON object") && summary.contains("1 skipped: not an AuditEvent"),
        "{summary}"
    );
    let alerts: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(path("alerts.json")).unwrap()).unwrap();
    for case in &month.cases {
        assert!(
            alerts.iter().any(|a| a["kind"] == case.kind.code()
                && a["subjects"].as_array().unwrap().iter().any(|s| s == case.uid.as_str())
                && !a["events"].as_array().unwrap().is_empty()
                && a["explanation"].as_str().unwrap().len() > 40),
            "{} about {} not alerted",
            case.kind.code(),
            case.uid
        );
    }

    // A roster with an impossible date: the file and the line are named, and nothing is written.
    std::fs::remove_file(path("alerts.json")).unwrap();
    let mut roster = std::fs::read_to_string(path("roster.csv")).unwrap();
    roster.push_str("555000000001,2026-02-30,09:00,17:00\n");
    let line = roster.lines().count();
    std::fs::write(path("bad-roster.csv"), roster).unwrap();
    let failed = run(args("bad-roster.csv"));
    assert!(!failed.status.success());
    let error = String::from_utf8_lossy(&failed.stderr);
    assert!(
        error.contains(&format!("bad-roster.csv line {line}")) && error.contains("`date` is not a date"),
        "{error}"
    );
    assert!(!dir.path().join("alerts.json").exists());
}

/// The systemd unit in `deploy/` passes systemd's verifier (with this build as the binary),
/// and its command line is one careid accepts.
#[test]
fn the_systemd_unit_verifies_and_its_command_line_parses() {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/careid.service")).unwrap();
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("an ExecStart line");
    let mut words = exec.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/careid"));
    let args: Vec<&str> = words.chain(["--help"]).collect();
    let parsed = Command::new(CAREID).args(&args).output().unwrap();
    assert!(parsed.status.success(), "careid {args:?}: {}", String::from_utf8_lossy(&parsed.stderr));
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        assert!(
            std::env::var("CAREID_TEST_REQUIRE_SYSTEMD").as_deref() != Ok("1"),
            "CAREID_TEST_REQUIRE_SYSTEMD=1 but systemd-analyze is missing"
        );
        eprintln!("systemd-analyze is not installed: the unit's systemd check was not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let here = dir.path().join("careid.service");
    std::fs::write(&here, unit.replace("/usr/local/bin/careid", CAREID)).unwrap();
    let verified = Command::new("systemd-analyze").arg("verify").arg(&here).output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&verified.stdout), String::from_utf8_lossy(&verified.stderr));
    assert!(verified.status.success() && !said.contains("careid.service:"), "{said}");
}
