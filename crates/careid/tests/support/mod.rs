//! What the binary's tests share: running `careid` with a data directory of its own, a server
//! on a free port that dies with the test, and a deployment made by `careid init`.

#![allow(dead_code, reason = "each test binary uses a part of what is here")]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

pub mod demo;

pub const CAREID: &str = env!("CARGO_BIN_EXE_careid");

pub fn careid(dir: &Path, args: &[&str]) -> Output {
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

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn ok(output: &Output) -> String {
    assert!(output.status.success(), "careid failed: {}\n{}", stdout(output), String::from_utf8_lossy(&output.stderr));
    stdout(output)
}

/// Today's date by the real clock, as the server running beside the test reads it.
#[allow(clippy::disallowed_methods, reason = "the test talks to a server on the real clock")]
pub fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the server when the test ends, however it ends.
/// Waits up to five seconds for something to listen on `port`.
pub fn listening(port: u16) -> bool {
    (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
}

pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `careid serve` on a free port with its log in `server.log`; returns the URL.
pub fn serve(dir: &Path, settings: &[(&str, String)]) -> (Child, String) {
    let port = free_port();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    let child = Child(
        Command::new(CAREID)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("CAREID_DATA_DIR", dir.join("data"))
            .env("CAREID_LOG", "debug")
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    assert!(listening(port), "server did not start");
    (child, format!("http://127.0.0.1:{port}"))
}

/// The arguments of `careid init` every test deployment is made with.
pub const INIT: [&str; 13] = [
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
];

/// The recovery credential `careid init` printed.
pub fn recovery_credential(init: &str) -> String {
    init.lines().map(str::trim).find(|l| l.starts_with("careid-recovery-")).unwrap().to_owned()
}

/// `careid init` and `careid serve`: the server, its URL and the recovery credential.
pub fn deployment(dir: &Path, settings: &[(&str, String)]) -> (Child, String, String) {
    let credential = recovery_credential(&ok(&careid(dir, &INIT)));
    let (server, url) = serve(dir, settings);
    (server, url, credential)
}

pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_str(&ok(output)).unwrap()
}

/// Signs in with a credential over the API; the session's bearer token.
pub async fn sign_in(http: &reqwest::Client, url: &str, credential: &str) -> String {
    let response: serde_json::Value = http
        .post(format!("{url}/api/v1/sessions"))
        .json(&serde_json::json!({ "credential": credential }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["token"].as_str().unwrap().to_owned()
}
