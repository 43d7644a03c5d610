//! The HTTP API end to end: a real server on port 0 over a temporary SQLite database, and over
//! PostgreSQL too when `CAREID_TEST_POSTGRES_URL` is set (CI), driven over loopback. Bad input
//! is refused with the field named and nothing changes.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

mod support;

use careid_domain::ids::DisplayText;
use std::sync::Arc;

use careid_domain::ports::{FixedClock, Store};
use careid_service::{InitDeployment, OsRandom, RequestContext, Service, ServiceSettings};
use careid_store::{SqlStore, StoreOptions};
use serde_json::{Value, json};
use support::sign_in;
use time::macros::datetime;

struct Server {
    url: String,
    store: SqlStore,
    /// The PostgreSQL schema this server's store lives in, dropped when the test is done.
    schema: Option<String>,
    manager_token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The stores every API test runs on: a SQLite file always, and PostgreSQL (a schema of its
/// own each time) when `CAREID_TEST_POSTGRES_URL` is set, as CI sets it.
fn backends() -> Vec<Option<String>> {
    std::iter::once(None).chain(careid_store::test_postgres_url().map(Some)).collect()
}

impl Server {
    async fn start_on(postgres: Option<&String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let (store, schema) = if let Some(url) = postgres {
            let mut options = StoreOptions::new(url.clone());
            let schema = format!("careid_api_{:016x}", rand::random::<u64>());
            options.schema = Some(schema.clone());
            (SqlStore::open(&options).await.unwrap(), Some(schema))
        } else {
            let url = format!("sqlite://{}?mode=rwc", dir.path().join("careid.db").display());
            (SqlStore::open(&StoreOptions::new(url)).await.unwrap(), None)
        };
        let clock = Arc::new(FixedClock::at(datetime!(2026-11-23 09:00 UTC)));
        let service = Service::new(Arc::new(store.clone()), clock, Arc::new(OsRandom), ServiceSettings::default());
        let init = InitDeployment {
            org: careid_domain::model::Organisation {
                ods_code: careid_domain::ids::OdsCode::parse("QWE").unwrap(),
                name: DisplayText::sanitised("Test ICB"),
                kind: careid_domain::model::OrganisationKind::IntegratedCareBoard,
                parent: None,
            },
            manager: careid_domain::model::PersonalDetails {
                title: None,
                given_name: careid_domain::ids::NamePart::parse("given_name", "Mina").unwrap(),
                family_name: careid_domain::ids::NamePart::parse("family_name", "Manager").unwrap(),
                date_of_birth: time::macros::date!(1980 - 01 - 01),
                ni_number: careid_domain::ids::NiNumber::parse("AB000001A").unwrap(),
            },
            contact: careid_domain::model::ContactDetails::default(),
        };
        let outcome = service.init_deployment(&RequestContext::new("test"), init).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(careid_http::serve(listener, careid_http::App::new(service), std::future::pending()));
        let http = reqwest::Client::new();
        let manager_token = sign_in(&http, &url, outcome.recovery_credential.expose()).await;
        Server { url, store, schema, manager_token, http, _dir: dir }
    }

    /// Drops the PostgreSQL schema, if this server had one.
    async fn finish(self) {
        if let Some(schema) = &self.schema {
            self.store.execute_raw(&format!("DROP SCHEMA \"{schema}\" CASCADE")).await.unwrap();
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/json").body(body.to_owned());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call("POST", path, Some(&self.manager_token), Some(&body.to_string())).await
    }

    async fn audit_len(&self) -> usize {
        let mut tx = self.store.begin_read().await.unwrap();
        tx.audit_range(0, 1_000_000).await.unwrap().len()
    }
}

#[tokio::test]
async fn bad_input_names_the_field_and_changes_nothing() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let (status, _) = server
            .post(
                "/api/v1/organisations",
                &json!({"ods_code": "F84003", "name": "Practice", "kind": "gp_practice", "parent": "QWE"}),
            )
            .await;
        assert_eq!(status, 201);
        let person = json!({
            "org": "F84003", "given_name": "Ada", "family_name": "Lovelace", "date_of_birth": "1985-12-10",
            "ni_number": "AB123456C", "documents": [
                {"kind": "passport", "number": "1"}, {"kind": "utility_bill", "number": "2"}, {"kind": "bank_statement", "number": "3"}]
        });
        let with = |field: &str, value: Value| {
            let mut p = person.clone();
            p[field] = value;
            p
        };
        // (path, body, status, code, field)
        let cases: Vec<(&str, Value, u16, &str, Option<&str>)> = vec![
            (
                "/api/v1/organisations",
                json!({"ods_code": "F8-4003", "name": "X", "kind": "gp_practice", "parent": "QWE"}),
                422,
                "invalid_input",
                Some("ods_code"),
            ),
            (
                "/api/v1/organisations",
                json!({"ods_code": "F84009", "name": "X", "kind": "castle", "parent": "QWE"}),
                422,
                "invalid_input",
                Some("kind"),
            ),
            (
                "/api/v1/organisations",
                json!({"ods_code": "F84009", "name": "X", "kind": "gp_practice", "parent": "NOPE9"}),
                404,
                "not_found",
                None,
            ),
            (
                "/api/v1/organisations",
                json!({"ods_code": "F84003", "name": "X", "kind": "gp_practice", "parent": "QWE"}),
                409,
                "duplicate",
                None,
            ),
            ("/api/v1/people", with("org", json!("f84-003")), 422, "invalid_input", Some("org")),
            ("/api/v1/people", with("ni_number", json!("AB12345")), 422, "invalid_input", Some("ni_number")),
            ("/api/v1/people", with("date_of_birth", json!("10/12/1985")), 422, "invalid_input", Some("date_of_birth")),
            ("/api/v1/people", with("date_of_birth", json!("2030-01-01")), 422, "invalid_input", Some("date_of_birth")),
            ("/api/v1/people", with("email", json!("not-an-email")), 422, "invalid_input", Some("email")),
            (
                "/api/v1/people",
                with("documents", json!([{"kind": "passport", "number": "1"}])),
                422,
                "invalid_input",
                Some("documents"),
            ),
            ("/api/v1/people", with("org", json!("F84999")), 404, "not_found", None),
            (
                "/api/v1/positions",
                json!({"org": "F84003", "name": "GP", "role": "S8000:G8000", "approved_by": "a", "approved_how": "b"}),
                422,
                "invalid_input",
                Some("role"),
            ),
            (
                "/api/v1/positions",
                json!({"org": "F84003", "name": "GP", "role": "S8000:G8000:R0000", "approved_by": "a", "approved_how": "b"}),
                422,
                "invalid_input",
                Some("role"),
            ),
            (
                "/api/v1/positions",
                json!({"org": "F84003", "name": "GP", "role": "S8000:G8000:R0260", "activities": ["B0001"], "approved_by": "a", "approved_how": "b"}),
                422,
                "invalid_input",
                Some("activities"),
            ),
            (
                "/api/v1/positions",
                json!({"org": "F84003", "name": "GP", "role": "S8000:G8000:R0260", "approved_by": "", "approved_how": "b"}),
                422,
                "invalid_input",
                Some("approved_by"),
            ),
            (
                "/api/v1/assignments",
                json!({"person": "123456789012", "position": 1}),
                422,
                "invalid_input",
                Some("uuid"),
            ),
            (
                "/api/v1/assignments",
                json!({"person": "100000000008", "position": 1, "start": "2026-12-01", "end": "2026-11-01"}),
                422,
                "invalid_input",
                Some("end"),
            ),
            ("/api/v1/registrations/0/verify", json!({"documents": []}), 422, "invalid_input", Some("registration_id")),
        ];
        let before = server.audit_len().await;
        for (path, body, status, code, field) in cases {
            let (got, response) = server.post(path, &body).await;
            assert_eq!(got, status, "{path} {body}: {response}");
            assert_eq!(response["error"]["code"], code, "{path} {body}: {response}");
            if let Some(field) = field {
                assert_eq!(response["error"]["field"], field, "{path} {body}: {response}");
            }
            assert!(response["error"]["request_id"].as_str().is_some_and(|r| r.starts_with("req-")));
        }
        assert_eq!(server.audit_len().await, before, "bad input changes nothing, not even the log");

        // Malformed JSON and bad path parameters, in the same error format.
        let (status, response) =
            server.call("POST", "/api/v1/people", Some(&server.manager_token), Some("{not json")).await;
        assert_eq!((status, response["error"]["code"].as_str()), (400, Some("malformed_request")));
        let (status, response) = server.call("GET", "/api/v1/people/12345", Some(&server.manager_token), None).await;
        assert_eq!((status, response["error"]["field"].as_str()), (422, Some("uuid")));
        let (status, response) =
            server.call("GET", "/api/v1/people/100000000009", Some(&server.manager_token), None).await;
        assert_eq!(status, 422, "a wrong check digit is caught: {response}");
        let (status, response) =
            server.call("GET", "/api/v1/people/100000000016", Some(&server.manager_token), None).await;
        assert_eq!((status, response["error"]["code"].as_str()), (404, Some("not_found")));
        let (status, response) = server.call("GET", "/api/v1/nowhere", None, None).await;
        assert_eq!((status, response["error"]["code"].as_str()), (404, Some("not_found")));
        server.finish().await;
    }
}

#[tokio::test]
async fn every_write_needs_a_session() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let before = server.audit_len().await;
        for (method, path) in [
            ("POST", "/api/v1/organisations"),
            ("POST", "/api/v1/people"),
            ("GET", "/api/v1/audit"),
            ("GET", "/api/v1/me"),
        ] {
            let (status, response) = server.call(method, path, None, Some("{}")).await;
            assert_eq!((status, response["error"]["code"].as_str()), (401, Some("unauthenticated")), "{method} {path}");
            let (status, _) = server.call(method, path, Some("careid-session-forged"), Some("{}")).await;
            assert_eq!(status, 401, "{method} {path} with a forged token");
        }
        assert_eq!(server.audit_len().await, before);
        // An application's report is authenticated before its body is read: no credentials, or
        // wrong ones, get 401 whatever the body, never a parse error.
        for authorization in [None, Some("Basic Z3AtcmVjb3JkczpndWVzcw==")] {
            let mut request = server.http.post(format!("{}/api/v1/access-events", server.url)).body("{not json");
            if let Some(value) = authorization {
                request = request.header("authorization", value);
            }
            let status = request.send().await.unwrap().status().as_u16();
            assert_eq!(status, 401, "{authorization:?}");
        }
        // The scheme of an Authorization header is matched without regard to case (RFC 7235).
        for scheme in ["bearer", "BEARER", "Bearer"] {
            let response = server
                .http
                .get(format!("{}/api/v1/me", server.url))
                .header("authorization", format!("{scheme} {}", server.manager_token))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{scheme}");
        }
        let before = server.audit_len().await;
        let (status, response) =
            server.call("POST", "/api/v1/sessions", None, Some(r#"{"credential": "careid-recovery-guess"}"#)).await;
        assert_eq!((status, response["error"]["code"].as_str()), (401, Some("credential_rejected")));
        assert_eq!(server.audit_len().await, before + 1, "a refused sign-in is audited");
        server.finish().await;
    }
}

#[tokio::test]
async fn operations_endpoints_and_request_ids() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let response = server
            .http
            .get(format!("{}/healthz", server.url))
            .header("x-request-id", "my-request-0001")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let id = response.headers()["x-request-id"].to_str().unwrap();
        assert!(
            id.starts_with("req-"),
            "careid's own id, not the caller's: the log must not carry what callers choose"
        );

        // Live, but not ready: this server was built without the log's signer or a token key.
        let (status, ready) = server.call("GET", "/readyz", None, None).await;
        assert_eq!(status, 503, "{ready}");
        assert_eq!((ready["ready"].as_bool(), ready["store"].as_str()), (Some(false), Some("ok")));
        assert_eq!(ready["log_signer"], "not loaded");

        let (status, doc) = server.call("GET", "/api/openapi.json", None, None).await;
        assert_eq!(status, 200);
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in [
            "/api/v1/registrations/{id}/verify",
            "/api/v1/requests/{id}/grant",
            "/api/v1/audit",
            "/api/v1/people/{uuid}/name",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
        }
        assert!(doc["components"]["schemas"].get("NewRegistration").is_some());

        let (_, _) = server.call("GET", "/api/v1/me", Some(&server.manager_token), None).await;
        let orphan = json!({"ods_code": "Y12345", "name": "Orphan", "kind": "other"}).to_string();
        let (status, _) =
            server.call("POST", "/api/v1/organisations", Some(&server.manager_token), Some(&orphan)).await;
        assert_eq!(status, 403, "a new organisation needs a parent in scope");
        let metrics = server.http.get(format!("{}/metrics", server.url)).send().await.unwrap().text().await.unwrap();
        assert!(
            metrics.contains(r#"careid_http_requests_total{route="/api/v1/me",method="GET",status="200"} 1"#),
            "{metrics}"
        );
        assert!(metrics.contains("careid_http_request_duration_seconds_bucket"));
        assert!(metrics.contains("careid_store_ping_duration_seconds_count 1"));
        assert!(metrics.contains(r#"careid_refusals_total{rule="out_of_scope"} 1"#), "{metrics}");
        server.finish().await;
    }
}

#[tokio::test]
async fn the_fhir_export_pages_as_ndjson_or_as_a_searchset_bundle() {
    for backend in backends() {
        let s = Server::start_on(backend.as_ref()).await;
        // The manager's deployment and sign-in left records; each query adds one more.
        let get = |accept: Option<&'static str>, path: String| {
            let mut request = s.http.get(format!("{}{path}", s.url)).bearer_auth(&s.manager_token);
            if let Some(accept) = accept {
                request = request.header("accept", accept);
            }
            async move {
                let response = request.send().await.unwrap();
                let kind = response.headers()["content-type"].to_str().unwrap().to_owned();
                (response.status().as_u16(), kind, response.text().await.unwrap())
            }
        };
        let (status, kind, text) = get(None, "/api/v1/audit/fhir?limit=2".into()).await;
        assert_eq!((status, kind.as_str()), (200, "application/fhir+ndjson"), "{text}");
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert!(lines.iter().all(|r| r["resourceType"] == "AuditEvent"));

        let (status, kind, text) = get(Some("application/fhir+json"), "/api/v1/audit/fhir?limit=2".into()).await;
        assert_eq!((status, kind.as_str()), (200, "application/fhir+json"), "{text}");
        let bundle: Value = serde_json::from_str(&text).unwrap();
        assert_eq!((bundle["resourceType"].as_str(), bundle["type"].as_str()), (Some("Bundle"), Some("searchset")));
        let entries = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert!(
            entries.iter().all(|e| e["resource"]["resourceType"] == "AuditEvent" && e["search"]["mode"] == "match")
        );
        let last: u64 = entries[1]["resource"]["id"].as_str().unwrap().parse().unwrap();
        let next = bundle["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(next, format!("/api/v1/audit/fhir?limit=2&before={last}"));
        // The next link gives the records before this page's last, newest first.
        let (status, _, text) = get(Some("application/fhir+json"), next).await;
        assert_eq!(status, 200, "{text}");
        let page: Value = serde_json::from_str(&text).unwrap();
        let ids: Vec<u64> = page["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["id"].as_str().unwrap().parse().unwrap())
            .collect();
        assert!(!ids.is_empty() && ids.iter().all(|id| *id < last), "{ids:?} before {last}");
        s.finish().await;
    }
}

#[tokio::test]
async fn anonymous_sign_in_attempts_are_throttled_by_address_and_by_target() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let before = server.audit_len().await;
        let attempt = |credential: String| {
            let request = server.http.post(format!("{}/api/v1/sessions", server.url));
            request.json(&json!({ "credential": credential })).send()
        };
        // One credential tried again and again: held at the target's rate, from any address.
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(attempt("careid-interim-guess".into()).await.unwrap().status().as_u16());
        }
        assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 10, "{statuses:?}");
        let throttled = attempt("careid-interim-guess".into()).await.unwrap();
        assert_eq!(throttled.status(), 429);
        let wait: u64 = throttled.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&wait), "Retry-After {wait}");
        let body: Value = throttled.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        assert!(body["error"]["message"].as_str().unwrap().contains("for this target"), "{body}");

        // 500 different wrong credentials from one address, as fast as it can: the address's
        // burst reaches careid, the rest are answered 429 without any work, and the log grows by
        // one record (the repeats are counted, and recorded as one when the window closes).
        let (mut refused, mut limited) = (0, 0);
        for n in 0..500 {
            match attempt(format!("careid-interim-{n}")).await.unwrap().status().as_u16() {
                401 => refused += 1,
                429 => limited += 1,
                other => panic!("status {other}"),
            }
        }
        assert!(limited >= 400, "only {limited} of 500 throttled ({refused} refused)");
        assert_eq!(server.audit_len().await, before + 1, "the first refusal only; the rest are counted");
        // A signed-in caller is not held to the anonymous limits.
        let (status, _) = server.call("GET", "/api/v1/me", Some(&server.manager_token), None).await;
        assert_eq!(status, 200);
        server.finish().await;
    }
}

/// The anonymous column of the authorisation matrix, generated from the OpenAPI document:
/// every operation that needs a session answers 401 to a caller without one, writes nothing,
/// and every operation that needs none is held to a rate limit.
#[tokio::test]
async fn an_anonymous_caller_gets_401_from_every_operation_that_needs_a_session() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let before = server.audit_len().await;
        let (_, doc) = server.call("GET", "/api/openapi.json", None, None).await;
        let (mut refused, mut open) = (0, 0);
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let concrete = path
                    .replace("{uuid}", "100000000008")
                    .replace("{ods_code}", "QWE")
                    .replace("{path}", "entries/000")
                    .replace(['{', '}'], "");
                if operation["security"].is_null() {
                    let route = path.replace("{path}", "{*path}");
                    let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
                    assert!(
                        careid_http::limit::Kind::of_route(&method, &route).is_some(),
                        "{method} {path} needs no session and has no rate limit"
                    );
                    open += 1;
                    continue;
                }
                let (status, body) = server.call(&method.to_uppercase(), &concrete, None, Some("{}")).await;
                assert_eq!(status, 401, "{} {path} answered an anonymous caller: {body}", method.to_uppercase());
                refused += 1;
            }
        }
        assert_eq!(server.audit_len().await, before, "anonymous callers wrote to the log");
        println!("anonymous: {refused} operations refused with 401, {open} open to all and rate-limited");
        assert!(refused >= 50 && open >= 20, "the document lost operations");
        server.finish().await;
    }
}

#[tokio::test]
async fn a_report_comes_as_json_or_as_csv() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let (status, json) = server.call("GET", "/api/v1/reports/coverage", Some(&server.manager_token), None).await;
        assert_eq!(status, 200, "{json}");
        assert_eq!(json["columns"][0], "org");
        assert_eq!(json["rows"][0][0], "QWE");
        let csv = server
            .http
            .get(format!("{}/api/v1/reports/coverage?format=csv", server.url))
            .bearer_auth(&server.manager_token)
            .send()
            .await
            .unwrap();
        assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
        let text = csv.text().await.unwrap();
        assert_eq!(text, "org,staff_with_positions,with_live_card,percent\nQWE,1,0,0\n");
        let (status, body) =
            server.call("GET", "/api/v1/reports/coverage?format=xml", Some(&server.manager_token), None).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("format")));
        let (status, body) = server.call("GET", "/api/v1/reports/nonsense", Some(&server.manager_token), None).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("name")));
        server.finish().await;
    }
}

#[tokio::test]
async fn cases_and_alerts_over_http() {
    for backend in backends() {
        let server = Server::start_on(backend.as_ref()).await;
        let token = Some(server.manager_token.as_str());
        let (status, me) = server.call("GET", "/api/v1/me", token, None).await;
        assert_eq!(status, 200, "{me}");
        let manager = me["person"].as_str().unwrap().to_owned();
        // Nobody reports themselves (their own name used is a "not me"); the refusal says why.
        let report = json!({ "subject": manager, "comment": "I did it" });
        let (status, body) = server.post("/api/v1/cases", &report).await;
        assert_eq!((status, body["error"]["rule"].as_str()), (403, Some("separation_of_duties.own_record")), "{body}");
        let (status, body) = server.post("/api/v1/cases", &json!({ "subject": "12345", "comment": "x" })).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("uuid")), "{body}");
        // The queues answer, empty; a case that does not exist is 404; a bad outcome is named.
        let (status, cases) = server.call("GET", "/api/v1/cases?all=true", token, None).await;
        assert_eq!((status, cases), (200, json!([])));
        let (status, alerts) = server.call("GET", "/api/v1/alerts?low=true", token, None).await;
        assert_eq!((status, alerts), (200, json!([])));
        let (status, _) = server.call("GET", "/api/v1/cases/999", token, None).await;
        assert_eq!(status, 404);
        // Flagged patients: the number goes in the body and is checked there (flagging itself is
        // tested in the service's patient.rs, with a deployment's patient key).
        let (status, list) = server.call("GET", "/api/v1/organisations/QWE/flagged-patients", token, None).await;
        assert_eq!((status, list), (200, json!([])));
        let bad = json!({ "nhs_number": "9434765918", "reason": "x" });
        let (status, body) = server.post("/api/v1/organisations/QWE/flagged-patients", &bad).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("patient")), "{body}");
        let close = json!({ "outcome": "sacked", "review": "x" });
        let (status, body) = server.post("/api/v1/cases/999/close", &close).await;
        assert_eq!((status, body["error"]["field"].as_str()), (422, Some("outcome")), "{body}");
        server.finish().await;
    }
}
