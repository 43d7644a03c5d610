//! What crosses the network: `careid serve` speaks TLS with the operator's certificate, reads
//! it again on SIGHUP, and refuses to carry identity data in clear beyond loopback. Checked
//! from outside with curl and the real openssl binary.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use std::path::Path;
use std::process::Command;

use support::{CAREID, deployment, ok};

fn openssl(args: &[&str]) {
    let made = Command::new("openssl").args(args).output().unwrap();
    assert!(made.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&made.stderr));
}

/// The operator's certificate authority (a P-256 root, by the openssl binary): its file.
fn authority(dir: &Path) -> String {
    let (cert, key) = (dir.join("ca.crt"), dir.join("ca.key"));
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=Operator CA",
        "-keyout",
        key,
        "-out",
        cert,
    ]);
    cert.to_owned()
}

/// A server certificate for 127.0.0.1 named `name`, issued by `authority`: (chain, key) files.
fn certificate(dir: &Path, name: &str) -> (String, String) {
    let file = |ext: &str| dir.join(format!("{name}.{ext}")).to_str().unwrap().to_owned();
    let (cert, key, request, extensions) = (file("crt"), file("key"), file("csr"), file("ext"));
    std::fs::write(
        &extensions,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (ca_cert, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));
    openssl(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        &format!("/CN={name}"),
        "-keyout",
        &key,
        "-out",
        &request,
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &request,
        "-CA",
        ca_cert.to_str().unwrap(),
        "-CAkey",
        ca_key.to_str().unwrap(),
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &extensions,
        "-out",
        &cert,
    ]);
    (cert, key)
}

/// `curl -v` over TLS: the status it got and the subject of the certificate it was shown.
fn curl(url: &str, ca: Option<&str>) -> (String, String) {
    let mut command = Command::new("curl");
    command.args(["-sv", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "10"]);
    match ca {
        Some(ca) => command.args(["--cacert", ca]),
        None => command.arg("-k"),
    };
    let output = command.arg(url).output().unwrap();
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    let subject = said.lines().find_map(|l| l.split_once("subject: ").map(|(_, s)| s.trim().to_owned()));
    (String::from_utf8_lossy(&output.stdout).into_owned(), subject.unwrap_or_default())
}

#[test]
fn careid_serves_https_reloads_its_certificate_on_sighup_and_refuses_clear_text_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let ca = authority(dir);
    let (cert, key) = certificate(dir, "first");
    let tls = [("CAREID_TLS_CERTIFICATE_FILE", cert.clone()), ("CAREID_TLS_KEY_FILE", key.clone())];
    let (server, url, credential) = deployment(dir, &tls);
    let https = url.replacen("http://", "https://", 1);

    // HTTPS with the operator's certificate, verified by curl against it; the issuer says https.
    assert_eq!(curl(&format!("{https}/healthz"), Some(&ca)), ("200".into(), "CN=first".into()));
    let discovery = Command::new("curl")
        .args(["-sf", "--cacert", &ca, &format!("{https}/.well-known/openid-configuration")])
        .output()
        .unwrap();
    let discovery: serde_json::Value = serde_json::from_slice(&discovery.stdout).unwrap();
    assert!(discovery["issuer"].as_str().unwrap().starts_with("https://127.0.0.1:"), "{discovery}");
    // A whole deployment is ready: store, the log's signer, the token key.
    let ready = Command::new("curl").args(["-sf", "--cacert", &ca, &format!("{https}/readyz")]).output().unwrap();
    let ready: serde_json::Value = serde_json::from_slice(&ready.stdout).unwrap();
    assert_eq!(ready["ready"], true, "{ready}");
    // Plain HTTP to the TLS port gets no answer from careid.
    let plain = Command::new("curl").args(["-s", "--max-time", "5", &format!("{url}/healthz")]).output().unwrap();
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("ok"), "served in clear");

    // careid's own client trusts the certificate through SSL_CERT_FILE, as any rustls client.
    let login = Command::new(CAREID)
        .args(["ra", "--server", &https, "login", "ram", "--credential", &credential])
        .env("CAREID_CLI_HOME", dir.join("cli"))
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    ok(&login);

    // A renewed certificate in the same files, and SIGHUP: new handshakes get it, no restart.
    let (second_cert, second_key) = certificate(dir, "second");
    std::fs::copy(&second_cert, &cert).unwrap();
    std::fs::copy(&second_key, &key).unwrap();
    let hangup = |server: &support::Child| {
        let sent = Command::new("kill").args(["-HUP", &server.0.id().to_string()]).status().unwrap();
        assert!(sent.success());
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    hangup(&server);
    assert_eq!(curl(&format!("{https}/healthz"), Some(&ca)), ("200".into(), "CN=second".into()));
    // A key that does not match is reported and the certificate in use stays.
    let (_, third_key) = certificate(dir, "third");
    std::fs::copy(&third_key, &key).unwrap();
    hangup(&server);
    assert_eq!(curl(&format!("{https}/healthz"), None), ("200".into(), "CN=second".into()));
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap();
    assert!(log.contains("TLS certificate not reloaded"), "the bad pair was not reported");
    assert!(!log.contains("PRIVATE KEY"), "the server's log quotes a key");

    // Beyond loopback, careid refuses to listen without TLS unless a proxy is named.
    let clear = Command::new(CAREID)
        .args(["serve", "--listen", "0.0.0.0:0"])
        .env("CAREID_DATA_DIR", dir.join("data"))
        .output()
        .unwrap();
    assert!(!clear.status.success(), "served in clear beyond loopback");
    assert!(
        String::from_utf8_lossy(&clear.stderr).contains("without TLS"),
        "{}",
        String::from_utf8_lossy(&clear.stderr)
    );
    // A half-given TLS configuration is refused by name.
    let half = Command::new(CAREID)
        .arg("config-reference")
        .env("CAREID_DATA_DIR", dir.join("data"))
        .env("CAREID_TLS_CERTIFICATE_FILE", &cert)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&half.stderr).contains("tls_certificate_file and tls_key_file together"));
}
