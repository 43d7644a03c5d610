//! The API against its own OpenAPI document, from outside: Schemathesis (from PyPI) generates
//! requests from the document a live `careid serve` publishes and checks every answer against
//! it: no server error, no status or content type the document does not list, every body as
//! its schema says. Required where `CAREID_TEST_REQUIRE_SCHEMATHESIS` is set (CI); bounded in
//! time by its example count and a timeout.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use std::process::Command;

use support::{deployment, sign_in};

#[test]
fn generated_requests_get_only_answers_the_openapi_document_describes() {
    let installed = Command::new("schemathesis").arg("--version").output().is_ok_and(|o| o.status.success());
    if !installed {
        assert!(
            std::env::var_os("CAREID_TEST_REQUIRE_SCHEMATHESIS").is_none(),
            "schemathesis is required but not installed"
        );
        eprintln!("schemathesis is not installed: the generated-request check did not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (_server, url, credential) = deployment(dir.path(), &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // An RA Manager's session: the widest any one person holds.
    let token = runtime.block_on(sign_in(&reqwest::Client::new(), &url, &credential));
    // The document is valid OpenAPI, by an independent validator (it comes with Schemathesis's
    // tooling in CI: openapi-spec-validator).
    let document = Command::new("curl").args(["-sf", &format!("{url}/api/openapi.json")]).output().unwrap();
    let path = dir.path().join("openapi.json");
    std::fs::write(&path, &document.stdout).unwrap();
    let validated = Command::new("python3")
        .args([
            "-c",
            "import json, sys; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1])))",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "the OpenAPI document is invalid:\n{}",
        String::from_utf8_lossy(&validated.stderr)
    );
    let run = Command::new("timeout")
        .args(["600", "schemathesis", "run", &format!("{url}/api/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--checks", "not_a_server_error,status_code_conformance,response_schema_conformance"])
        .args(["--checks", "content_type_conformance", "--max-examples", "10", "--seed", "16"])
        // The manager's own session stays up for the whole run.
        .args(["--exclude-path", "/api/v1/sessions/current", "--exclude-path", "/api/v1/sessions/{id}"])
        .env("NO_COLOR", "1")
        // Its cache of examples stays with the test's directory, not in the source tree.
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    let summary: Vec<&str> = said.lines().rev().take(20).collect();
    println!("{}", summary.into_iter().rev().collect::<Vec<_>>().join("\n"));
    assert!(run.status.success(), "schemathesis found answers the document does not describe:\n{said}");
}
