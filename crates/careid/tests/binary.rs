//! The `careid` binary as an operator and an RA use it: `careid init`, `careid serve` in its own
//! process with debug logging, and the `careid ra` command line against it. Afterwards the
//! server's logs and the audit output are scanned for the secrets the run used.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

const CAREID: &str = env!("CARGO_BIN_EXE_careid");

fn careid(dir: &Path, args: &[&str]) -> Output {
    Command::new(CAREID)
        .args(args)
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("CAREID_LOG", "debug")
        .env_remove("CAREID_SERVER")
        .env_remove("CAREID_PROFILE")
        .env_remove("CAREID_CONFIG")
        .output()
        .expect("run careid")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn ok(output: &Output) -> String {
    assert!(output.status.success(), "careid failed: {}\n{}", stdout(output), String::from_utf8_lossy(&output.stderr));
    stdout(output)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the server when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn init_serve_and_the_ra_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let init = ok(&careid(
        dir,
        &[
            "init",
            "--org-code",
            "QWE",
            "--org-name",
            "Test ICB",
            "--given-name",
            "Mina",
            "--family-name",
            "Manager",
            "--date-of-birth",
            "1980-01-01",
            "--ni-number",
            "AB000001A",
        ],
    ));
    let credential =
        init.lines().map(str::trim).find(|l| l.starts_with("careid-recovery-")).expect("credential printed").to_owned();
    // A second init on the same store is refused.
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

    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let _server = Child(
        Command::new(CAREID)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CAREID_DATA_DIR", dir.join("data"))
            .env("CAREID_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(ready, "server did not start");

    let ra = |args: &[&str]| {
        let mut all = vec!["ra", "--server", url.as_str()];
        all.extend_from_slice(args);
        careid(dir, &all)
    };
    ok(&ra(&["login", "ram", "--credential", &credential]));
    assert!(ok(&ra(&["whoami"])).contains("ra_manager"));
    let whoami: serde_json::Value = serde_json::from_str(&ok(&ra(&["--json", "whoami"]))).unwrap();
    assert_eq!(whoami["org"], "QWE");

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
