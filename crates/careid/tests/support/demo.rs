//! `careid demo` run as a newcomer runs it: in a directory of its own, on a free port, with
//! the CLI's home beside it; and the commands it prints run against it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{CAREID, Child, free_port};

/// careid run in `dir`, as a newcomer runs it there: the CLI's home and the agent's runtime
/// directory inside it, and nothing from the caller's environment.
pub fn cli(dir: &Path) -> Command {
    let mut command = Command::new(CAREID);
    command
        .current_dir(dir)
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("XDG_RUNTIME_DIR", dir.join("run"))
        .env_remove("CAREID_SERVER")
        .env_remove("CAREID_PROFILE")
        .env_remove("CAREID_CONFIG")
        .env_remove("CAREID_DATA_DIR");
    command
}

pub struct Demo {
    pub dir: std::path::PathBuf,
    _server: Child,
    pub printed: String,
}

impl Demo {
    pub fn start(dir: &Path) -> Demo {
        Demo::start_with(dir, &[])
    }

    /// The demo with these settings (`CAREID_*` variables) too.
    pub fn start_with(dir: &Path, settings: &[(&str, String)]) -> Demo {
        let port = free_port();
        let out = dir.join("demo.out");
        let server = Child(
            cli(dir)
                .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
                .envs(settings.iter().map(|(k, v)| (*k, v.as_str())))
                .stdout(std::fs::File::create(&out).unwrap())
                .stderr(std::fs::File::create(dir.join("demo.err")).unwrap())
                .spawn()
                .unwrap(),
        );
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let printed = std::fs::read_to_string(&out).unwrap_or_default();
            if printed.contains("Press Ctrl-C to stop.") {
                return Demo { dir: dir.to_owned(), _server: server, printed };
            }
            assert!(Instant::now() < deadline, "the demo did not start: {printed}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn command(&self, args: &[String]) -> Command {
        let mut command = cli(&self.dir);
        command.args(args);
        command
    }

    pub fn run(&self, args: &[String], input: &str) -> Output {
        let mut child =
            self.command(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        args.push("--json".into());
        let output = self.run(&args, "");
        assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// A demo card's passcode, from the demo's labelled file.
    pub fn passcode_of(&self, card_file: &str) -> String {
        let listing = std::fs::read_to_string(self.dir.join("careid-demo/cards/passcodes.txt")).unwrap();
        let line = listing.lines().find(|l| l.contains(card_file)).unwrap();
        line.split_whitespace().nth(3).unwrap().to_owned()
    }
}
