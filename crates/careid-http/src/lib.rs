//! careid's HTTP API: routes, the OpenAPI document, metrics, and the one error-to-HTTP table.
//! Handlers only convert and call the service; no SQL and no rules live here.

mod absence;
mod audit;
mod cards;
mod cases;
mod console;
mod convert;
mod error;
mod extract;
pub mod fhir;
pub mod limit;
mod log;
mod login;
mod metrics;
mod oidc;
mod patient;
mod routes;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post, put};
use careid_service::Service;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use error::ApiError;
pub use metrics::Metrics;
pub use oidc::Oidc;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct App {
    pub service: Arc<Service>,
    pub metrics: Arc<Metrics>,
    /// The OpenID Connect provider, once the deployment has a token signing key.
    pub oidc: Option<Arc<Oidc>>,
    /// The audit log's checkpoint verifier key (C2SP signed-note), served at `/log/key`.
    pub log_key: Option<Arc<str>>,
    /// The rates anonymous clients are held to, and their buckets.
    pub limits: limit::Limits,
    pub limiter: Arc<limit::Limiter>,
    /// The reverse proxy whose `X-Forwarded-For` names the client, if careid runs behind one.
    pub trusted_proxy: Option<std::net::IpAddr>,
    /// careid is reached over TLS: the console's cookie is `Secure` with the `__Host-` prefix.
    pub secure_cookies: bool,
}

impl App {
    pub fn new(service: Service) -> App {
        App {
            service: Arc::new(service),
            metrics: Arc::new(Metrics::default()),
            oidc: None,
            log_key: None,
            limits: limit::Limits::default(),
            limiter: Arc::default(),
            trusted_proxy: None,
            secure_cookies: false,
        }
    }

    /// Marks the console's cookie `Secure` (careid is reached over TLS, directly or through
    /// a proxy that terminates it).
    #[must_use]
    pub fn with_secure_cookies(mut self, secure: bool) -> App {
        self.secure_cookies = secure;
        self
    }

    /// Turns on the OpenID Connect provider.
    #[must_use]
    pub fn with_oidc(mut self, oidc: Arc<Oidc>) -> App {
        self.oidc = Some(oidc);
        self
    }

    /// Holds anonymous clients to `limits` instead of the defaults.
    #[must_use]
    pub fn with_limits(mut self, limits: limit::Limits) -> App {
        self.limits = limits;
        self
    }

    /// Takes the client's address from `X-Forwarded-For` on requests from this proxy.
    #[must_use]
    pub fn behind_proxy(mut self, proxy: Option<std::net::IpAddr>) -> App {
        self.trusted_proxy = proxy;
        self
    }

    /// Serves the audit log's verifier key at `/log/key`.
    #[must_use]
    pub fn with_log_key(mut self, key: String) -> App {
        self.log_key = Some(key.into());
        self
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "careid", description = "Care identity service: Registration Authority and smartcard API"),
    paths(
        routes::healthz, routes::readyz, routes::metrics_get,
        routes::sessions_create, login::sessions_delete, login::login_challenge, login::login_card, login::login_wrong_passcode,
        login::sessions_heartbeat, login::sessions_list, login::sessions_end, routes::me_get, routes::credentials_create,
        routes::organisations_list, routes::organisations_create, routes::organisations_import, routes::organisations_get,
        routes::organisation_positions_list, routes::job_roles_list, routes::activities_list,
        routes::positions_create, routes::positions_get, routes::positions_set_assignable,
        routes::registrations_create, routes::registrations_list, routes::registrations_verify, routes::registrations_reject,
        routes::people_create, routes::people_import, routes::people_list, routes::people_get, routes::people_change_name,
        routes::people_change_contact, routes::people_correct_details, routes::people_close, routes::people_reopen,
        routes::people_leave,
        routes::assignments_create, routes::assignments_remove,
        routes::requests_create, routes::requests_list, routes::requests_grant, routes::requests_reject,
        routes::audit_list, routes::me_audit_list, audit::audit_proof, audit::audit_not_me, audit::audit_incidents,
        patient::access_events, patient::patient_access_list, patient::alerts_list,
        patient::flagged_patients_add, patient::flagged_patients_lift, patient::flagged_patients_list,
        cases::cases_report, cases::cases_list, cases::cases_get, cases::cases_assign, cases::cases_note,
        cases::cases_evidence, cases::cases_close, cases::cases_export, patient::audit_fhir, log::check,
        cards::pki_ca, cards::pki_root, cards::pki_crl, cards::cards_create, cards::cards_certify, cards::cards_ceremony,
        cards::cards_ceremony_complete, cards::cards_wrong_passcode, cards::cards_report, cards::cards_cancel,
        cards::cards_clear, cards::person_cards_list, cards::incidents_close, cards::cards_get,
        cards::cards_unlock_code, cards::cards_self_service_unlock, cards::cards_self_service_complete,
        oidc::authorize_card, oidc::clients_create, oidc::clients_list, oidc::clients_disable,
        absence::absences_create, absence::absences_list, absence::absences_cancel, absence::working_hours_set,
        absence::absence_policy_set, routes::openapi_get, routes::reports_get,
        routes::spot_checks_create,
        oidc::discovery, oidc::jwks, oidc::authorize, oidc::token, oidc::userinfo, oidc::userinfo_post, oidc::revoke, oidc::introspect,
        log::checkpoint, log::key, log::tile,
    ),
    modifiers(&BearerAuth, &ErrorResponses)
)]
struct ApiDoc;

/// The API's error statuses (`error.rs` maps every error to one) on every operation that does
/// not describe its own, so that generated clients and fuzzers expect them.
struct ErrorResponses;

impl utoipa::Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        const STATUSES: [(&str, &str); 8] = [
            ("400", "a malformed request: the body or parameters do not parse"),
            ("401", "no live session, or a refused sign-in"),
            ("403", "a rule refused the caller: the error names it"),
            ("404", "no such record"),
            ("409", "a rule about the record's state refused the change"),
            ("422", "invalid input: the error names the field"),
            ("429", "too many requests: try again after Retry-After seconds"),
            ("503", "the store is unavailable; nothing was changed"),
        ];
        let error = |why: &str| {
            let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(why).content("application/json", body).build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
            for operation in operations.into_iter().flatten() {
                for (status, why) in STATUSES {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(why).into());
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI 3 document of the API, generated from the handlers and wire types.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Bulk imports may carry many thousands of records.
const IMPORT_BODY_LIMIT: usize = 256 * 1024 * 1024;
/// 5,000 events with their access tokens.
const ACCESS_EVENTS_BODY_LIMIT: usize = 16 * 1024 * 1024;

pub fn router(app: App) -> Router {
    use routes as r;
    let api = Router::new()
        .route("/healthz", get(r::healthz))
        .route("/readyz", get(r::readyz))
        .route("/metrics", get(r::metrics_get))
        .route("/api/openapi.json", get(routes::openapi_get))
        .route("/api/v1/sessions", post(r::sessions_create).get(login::sessions_list))
        .route("/api/v1/sessions/current", delete(login::sessions_delete))
        .route("/api/v1/sessions/{id}", delete(login::sessions_end))
        .route("/api/v1/sessions/{id}/heartbeat", post(login::sessions_heartbeat))
        .route("/api/v1/login/challenge", post(login::login_challenge))
        .route("/api/v1/login/card", post(login::login_card))
        .route("/api/v1/login/wrong-passcode", post(login::login_wrong_passcode))
        .route("/api/v1/me", get(r::me_get))
        .route("/api/v1/me/audit", get(r::me_audit_list))
        .route("/api/v1/audit", get(r::audit_list))
        .route("/api/v1/audit/incidents", get(audit::audit_incidents))
        .route("/api/v1/audit/fhir", get(patient::audit_fhir))
        .route("/api/v1/patient-access", get(patient::patient_access_list))
        .route("/api/v1/alerts", get(patient::alerts_list))
        .route(
            "/api/v1/organisations/{ods_code}/flagged-patients",
            get(patient::flagged_patients_list).post(patient::flagged_patients_add),
        )
        .route("/api/v1/organisations/{ods_code}/flagged-patients/lift", post(patient::flagged_patients_lift))
        .route("/api/v1/cases", get(cases::cases_list).post(cases::cases_report))
        .route("/api/v1/cases/{id}", get(cases::cases_get))
        .route("/api/v1/cases/{id}/assign", post(cases::cases_assign))
        .route("/api/v1/cases/{id}/notes", post(cases::cases_note))
        .route("/api/v1/cases/{id}/evidence", post(cases::cases_evidence))
        .route("/api/v1/cases/{id}/close", post(cases::cases_close))
        .route("/api/v1/cases/{id}/export", get(cases::cases_export))
        .route(
            "/api/v1/access-events",
            post(patient::access_events).layer(DefaultBodyLimit::max(ACCESS_EVENTS_BODY_LIMIT)),
        )
        .route("/api/v1/audit/{seq}/proof", get(audit::audit_proof))
        .route("/api/v1/audit/{seq}/not-me", post(audit::audit_not_me))
        .route("/api/v1/organisations", get(r::organisations_list).post(r::organisations_create))
        .route(
            "/api/v1/organisations/import",
            post(r::organisations_import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route("/api/v1/organisations/{ods_code}", get(r::organisations_get))
        .route("/api/v1/organisations/{ods_code}/positions", get(r::organisation_positions_list))
        .route("/api/v1/job-roles", get(r::job_roles_list))
        .route("/api/v1/activities", get(r::activities_list))
        .route("/api/v1/positions", post(r::positions_create))
        .route("/api/v1/positions/{id}", get(r::positions_get))
        .route("/api/v1/positions/{id}/assignable", put(r::positions_set_assignable))
        .route("/api/v1/registrations", get(r::registrations_list).post(r::registrations_create))
        .route("/api/v1/registrations/{id}/verify", post(r::registrations_verify))
        .route("/api/v1/registrations/{id}/reject", post(r::registrations_reject))
        .route("/api/v1/people", get(r::people_list).post(r::people_create))
        .route("/api/v1/people/import", post(r::people_import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)))
        .route("/api/v1/people/{uuid}", get(r::people_get))
        .route("/api/v1/people/{uuid}/name", post(r::people_change_name))
        .route("/api/v1/people/{uuid}/contact", put(r::people_change_contact))
        .route("/api/v1/people/{uuid}/details", put(r::people_correct_details))
        .route("/api/v1/people/{uuid}/close", post(r::people_close))
        .route("/api/v1/people/{uuid}/reopen", post(r::people_reopen))
        .route("/api/v1/people/{uuid}/leave", post(r::people_leave))
        .route("/api/v1/people/{uuid}/credentials", post(r::credentials_create))
        .route("/api/v1/assignments", post(r::assignments_create))
        .route("/api/v1/assignments/{id}/remove", post(r::assignments_remove))
        .route("/api/v1/requests", get(r::requests_list).post(r::requests_create))
        .route("/api/v1/requests/{id}/grant", post(r::requests_grant))
        .route("/api/v1/requests/{id}/reject", post(r::requests_reject))
        .route("/pki/ca", get(cards::pki_ca))
        .route("/pki/root", get(cards::pki_root))
        .route("/pki/crl", get(cards::pki_crl))
        .route("/log/checkpoint", get(log::checkpoint))
        .route("/log/key", get(log::key))
        .route("/log/check", post(log::check))
        .route("/log/tile/{*path}", get(log::tile))
        .route("/api/v1/cards", post(cards::cards_create))
        .route("/api/v1/cards/unlock-code", post(cards::cards_unlock_code))
        .route("/api/v1/cards/{id}/self-service-unlock", post(cards::cards_self_service_unlock))
        .route("/api/v1/cards/{id}/self-service-unlock/complete", post(cards::cards_self_service_complete))
        .route("/api/v1/cards/{id}", get(cards::cards_get))
        .route("/api/v1/cards/{id}/certify", post(cards::cards_certify))
        .route("/api/v1/cards/{id}/ceremony", post(cards::cards_ceremony))
        .route("/api/v1/cards/{id}/ceremony/complete", post(cards::cards_ceremony_complete))
        .route("/api/v1/cards/{id}/wrong-passcode", post(cards::cards_wrong_passcode))
        .route("/api/v1/cards/{id}/report", post(cards::cards_report))
        .route("/api/v1/cards/{id}/cancel", post(cards::cards_cancel))
        .route("/api/v1/cards/{id}/clear", post(cards::cards_clear))
        .route("/api/v1/people/{uuid}/cards", get(cards::person_cards_list))
        .route("/api/v1/incidents/{id}/close", post(cards::incidents_close))
        .route("/api/v1/people/{uuid}/absences", get(absence::absences_list).post(absence::absences_create))
        .route("/api/v1/absences/{id}/cancel", post(absence::absences_cancel))
        .route("/api/v1/assignments/{id}/working-hours", put(absence::working_hours_set))
        .route("/api/v1/organisations/{ods_code}/absence-policy", put(absence::absence_policy_set))
        .route("/api/v1/reports/{name}", get(r::reports_get))
        .route("/api/v1/organisations/{ods_code}/spot-checks", post(r::spot_checks_create))
        .route("/api/v1/clients", get(oidc::clients_list).post(oidc::clients_create))
        .route("/api/v1/clients/{id}", delete(oidc::clients_disable))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/oidc/jwks", get(oidc::jwks))
        .route("/oidc/authorize", get(oidc::authorize))
        .route("/oidc/authorize/{id}/card", post(oidc::authorize_card))
        .route("/oidc/token", post(oidc::token))
        .route("/oidc/userinfo", get(oidc::userinfo).post(oidc::userinfo_post))
        .route("/oidc/revoke", post(oidc::revoke))
        .route("/oidc/introspect", post(oidc::introspect))
        .merge(console::router())
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), limit::per_source_layer))
        .route_layer(axum::middleware::from_fn_with_state(app.clone(), extract::metrics_layer));
    api.layer(axum::middleware::from_fn(extract::request_id_layer)).with_state(app)
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = router(app).into_make_service_with_connect_info::<tls::Peer>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

/// Serves the API over TLS on `listener` until `shutdown` completes.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    certificate: &Arc<tls::ServerCertificate>,
    app: App,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tls::TlsListener::new(listener, certificate.server_config())?;
    let service = router(app).into_make_service_with_connect_info::<tls::Peer>();
    axum::serve(listener, service).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    /// The routes `router` serves, with their methods, read from its source.
    fn served_routes() -> Vec<(String, Vec<&'static str>)> {
        let source = include_str!("lib.rs");
        let start = source.find("pub fn router(").unwrap();
        let end = source.find("/// Serves the API on `listener`").unwrap();
        source[start..end]
            .split(".route(")
            .skip(1)
            .map(|chunk| {
                let (path, rest) = chunk.trim_start().trim_start_matches('"').split_once('"').unwrap();
                let methods = ["get", "post", "put", "delete"]
                    .into_iter()
                    .filter(|m| rest.contains(&format!("{m}(")) || rest.contains(&format!(".{m}(")))
                    .collect();
                (path.replace("{*", "{"), methods)
            })
            .collect()
    }

    #[test]
    fn the_openapi_document_describes_every_route_and_declares_every_parameter() {
        let doc = serde_json::to_value(super::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let routes = served_routes();
        assert!(routes.len() > 70, "found only {} routes", routes.len());
        let mut operations = 0;
        let mut operation_ids = std::collections::HashSet::new();
        for (path, methods) in &routes {
            for method in methods {
                let operation = &paths.get(path).unwrap_or_else(|| panic!("{path} is not documented"))[method];
                assert!(operation.is_object(), "{} {path} is not documented", method.to_uppercase());
                operations += 1;
                let declared: Vec<(&str, &str)> = operation["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().map(|p| (p["name"].as_str().unwrap(), p["in"].as_str().unwrap())).collect())
                    .unwrap_or_default();
                let in_template: Vec<&str> =
                    path.split('{').skip(1).map(|rest| rest.split_once('}').unwrap().0).collect();
                for name in &in_template {
                    assert!(declared.contains(&(name, "path")), "{method} {path}: {{{name}}} is not declared in path");
                }
                for (name, place) in &declared {
                    assert!(
                        *place != "path" || in_template.contains(name),
                        "{method} {path}: {name} is declared in path but is not in the template"
                    );
                }
                assert!(operation["responses"].as_object().is_some_and(|r| r.contains_key("429")));
                let id = operation["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path}: no operationId"));
                assert!(operation_ids.insert(id.to_owned()), "{method} {path}: operationId {id} is not unique");
            }
        }
        println!("{} routes, {operations} operations documented", routes.len());
        let documented: usize =
            paths.values().map(|p| p.as_object().unwrap().keys().filter(|k| *k != "parameters").count()).sum();
        assert_eq!(documented, operations, "the document describes an operation careid does not serve");
        let _: &Value = &doc["components"]["schemas"]["ErrorBody"];
    }
}
