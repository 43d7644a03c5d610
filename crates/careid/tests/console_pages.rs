//! Snapshots of the console's pages: each page's HTML for the RA Manager of a small
//! deployment on a fixed clock, with random identifiers masked, against the files in
//! `tests/console-pages/`. A change to a page shows here as a diff to review; to accept it,
//! run `UPDATE_EXPECT=1 cargo test -p careid --test console_pages`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

use std::sync::Arc;

use careid_domain::ids::{DisplayText, NamePart, NiNumber, OdsCode};
use careid_domain::model::{ContactDetails, Organisation, OrganisationKind, PersonalDetails};
use careid_domain::ports::FixedClock;
use careid_service::{InitDeployment, OsRandom, RequestContext, Service, ServiceSettings};
use careid_store::{SqlStore, StoreOptions};
use expect_test::expect_file;
use time::macros::{date, datetime};

/// The browser's secret: fixed, so that the forms' token is too.
const SECRET: &str = "5d41402abc4b2a76b9719d911017c592aaf1e4b0c1f2e3d4a5b6c7d8e9f00112";

/// Random identifiers (sessions, nonces, request names) masked; everything else as served.
fn masked(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut run = String::new();
    for c in html.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
            run.push(c);
            continue;
        }
        if run.len() >= 16 && run.bytes().any(|b| b.is_ascii_alphabetic()) {
            out.push_str("[hex]");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    // One element a line, so that a change reads as a diff of lines.
    out.replace("><", ">\n<")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_renders_as_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("pages.db").display());
    let store = SqlStore::open(&StoreOptions::new(url)).await.unwrap();
    let clock = Arc::new(FixedClock::at(datetime!(2026-11-23 09:00 UTC)));
    let service = Service::new(Arc::new(store), clock, Arc::new(OsRandom), ServiceSettings::default());
    let ctx = RequestContext::new("snapshot");
    let init = service
        .init_deployment(
            &ctx,
            InitDeployment {
                org: Organisation {
                    ods_code: OdsCode::parse("QWE").unwrap(),
                    name: DisplayText::sanitised("Test ICB"),
                    kind: OrganisationKind::IntegratedCareBoard,
                    parent: None,
                },
                manager: PersonalDetails {
                    title: None,
                    given_name: NamePart::parse("given_name", "Mina").unwrap(),
                    family_name: NamePart::parse("family_name", "Manager").unwrap(),
                    date_of_birth: date!(1980 - 02 - 03),
                    ni_number: NiNumber::parse("AB000001A").unwrap(),
                },
                contact: ContactDetails::default(),
            },
        )
        .await
        .unwrap();
    service.console_sign_in_with_credential(&ctx, SECRET, &init.recovery_credential, None).await.unwrap();
    let manager = init.manager.to_string();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = careid_http::App::new(service);
    tokio::spawn(careid_http::serve(listener, app, std::future::pending()));
    let http = reqwest::Client::new();
    let pages = [
        ("home", "/console/".to_owned()),
        ("activity", "/console/activity".to_owned()),
        ("sessions", "/console/sessions".to_owned()),
        ("card", "/console/card".to_owned()),
        ("queue", "/console/queue".to_owned()),
        ("people", "/console/people?family_name=Man".to_owned()),
        ("person", format!("/console/people/{manager}")),
        ("team", "/console/team".to_owned()),
        ("organisations", "/console/organisations".to_owned()),
        ("organisation", "/console/organisations/QWE".to_owned()),
        ("register", "/console/register".to_owned()),
        ("import", "/console/import".to_owned()),
        ("cases", "/console/cases".to_owned()),
        ("alerts", "/console/alerts".to_owned()),
        ("dashboard", "/console/dashboard".to_owned()),
        ("terms", "/console/terms".to_owned()),
        ("refused", "/console/cases/999".to_owned()),
    ];
    for (name, path) in pages {
        let response = http
            .get(format!("{base}{path}"))
            .header("cookie", format!("careid-console={SECRET}"))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let html = response.text().await.unwrap();
        assert!(status == 200 || name == "refused", "{path}: {status}\n{html}");
        let file = format!("console-pages/{name}.html");
        expect_file![file].assert_eq(&masked(&html));
    }
    // Anonymous: the sign-in page (its nonce and request name masked).
    let html = http.get(format!("{base}/console/sign-in")).send().await.unwrap().text().await.unwrap();
    expect_file!["console-pages/sign-in.html"].assert_eq(&masked(&html));
}

#[test]
fn masking_hides_random_hex_and_keeps_words_and_numbers() {
    assert_eq!(masked("<p>session 0a5f959dc21f8299650d1655</p>"), "<p>session [hex]</p>");
    assert_eq!(masked("<p>100000000008 at QWE, faced</p>"), "<p>100000000008 at QWE, faced</p>");
}
