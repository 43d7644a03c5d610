//! The console's pages. Each reads through the same use case as the API's endpoint for it, as
//! the signed-in person, and renders what the service returned; each form posts to a handler
//! that calls the same use case the API's write does.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use careid_domain::access::{Permission, RaAction, RaFunction};
use careid_domain::ids::{OdsCode, PersonUuid, RequestId, parse_date};
use careid_domain::login::SessionEnd;
use careid_proto as wire;
use careid_service::{AlertQuery, ReadAudit};
use maud::{Markup, html};
use serde::Deserialize;

use super::{
    Failed, Page, Posted, Signed, browser_secret, chart, cookie, csrf_field, layout, new_secret, redirect, respond,
    respond_with_agent_script, table,
};
use crate::App;
use crate::convert as c;
use crate::error::ApiError;

fn page(title: &str, signed: &Signed, content: &Markup) -> Response {
    respond(StatusCode::OK, layout(title, Some(signed), content))
}

fn allowed(signed: &Signed, action: RaAction) -> bool {
    signed.actor.permission(action) != Permission::Denied
}

/// A field of an audit record, by name.
fn field<'a>(record: &'a wire::AuditRecord, name: &str) -> &'a str {
    record.fields.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

/// A time as people read it: the date and minutes, UTC.
fn when(rfc3339: &str) -> String {
    rfc3339.get(..16).map_or_else(|| rfc3339.to_owned(), |t| format!("{} UTC", t.replace('T', " ")))
}

// ----- Signing in and out ------------------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct SignInParams {
    ended: Option<String>,
}

/// The sign-in page: the browser gets a fresh secret, and the page asks the workstation agent
/// to have the card approve the secret's name. Nothing is stored until a card approves.
pub(crate) async fn sign_in(State(app): State<App>, headers: HeaderMap, Query(p): Query<SignInParams>) -> Response {
    if let Some(secret) = browser_secret(app.secure_cookies, &headers)
        && app.service.console_actor(&secret).await.is_ok()
    {
        return redirect("/console/");
    }
    let ended = p.ended.as_deref().and_then(SessionEnd::parse).map(|end| match end {
        SessionEnd::SignedOut => "You are signed out of the console.".to_owned(),
        other => format!("Your console session ended: {}.", other.explanation()),
    });
    let secret = new_secret();
    let mut response = sign_in_page(&app, &secret, StatusCode::OK, ended.as_deref(), None);
    response.headers_mut().insert(SET_COOKIE, cookie(app.secure_cookies, Some(&secret)));
    response
}

/// The sign-in page for the browser holding `secret`: the card's approval through the agent,
/// and, for someone without a card yet, their interim credential (with their positions to
/// choose from when they hold several).
fn sign_in_page(
    app: &App,
    secret: &str,
    status: StatusCode,
    said: Option<&str>,
    choices: Option<&[wire::RoleChoice]>,
) -> Response {
    let request = careid_service::console_sign_in_id(secret);
    let content = html! {
        h1 { "Sign in to the careid console" }
        @if let Some(said) = said { p.notice #said role="status" { (said) } }
        h2 { "With your card" }
        p { "Your card signs you in through the careid agent on this computer. Keep it in the reader: "
            "when it leaves, your console session ends with your card session." }
        // After a session ended, the card is asked again only when the person says so.
        @let auto = if said.is_none() { "yes" } else { "no" };
        p #status .notice role="status" aria-live="polite" data-request=(request) data-auto=(auto) {
            @if said.is_none() { "Asking your card…" } @else { "Insert your card, then choose Sign in with your card." }
        }
        p { button #retry type="button" hidden { "Sign in with your card" } }
        noscript { p.notice.error { "Signing in with the card needs this page's script, which talks only to the careid agent on this computer." } }
        h2 { "Without a card yet" }
        form method="post" action="/console/sign-in/credential" {
            input type="hidden" name="csrf" value=(super::csrf_token(secret));
            label for="credential" { "Interim credential (from your RA)" }
            input #credential type="password" name="credential" autocomplete="off" required;
            @if let Some(choices) = choices {
                label for="assignment" { "Position to act in" }
                select #assignment name="assignment" {
                    @for choice in choices {
                        option value=(choice.assignment_id) { (choice.position_name) " (" (choice.role) ") at " (choice.org) }
                    }
                }
            }
            button type="submit" { "Sign in with the credential" }
        }
    };
    respond_with_agent_script(app, status, "Sign in", None, &content, |agent| {
        crate::oidc::card_approval_script(agent, "Signed in: opening the console…")
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct CredentialForm {
    csrf: String,
    credential: String,
    assignment: Option<i64>,
}

/// Signs in with an interim credential, for someone who has no card yet.
pub(crate) async fn sign_in_with_credential(
    State(app): State<App>,
    crate::extract::Ctx(ctx): crate::extract::Ctx,
    headers: HeaderMap,
    axum::Form(form): axum::Form<CredentialForm>,
) -> Response {
    let Some(secret) = browser_secret(app.secure_cookies, &headers) else { return redirect("/console/sign-in") };
    if !super::csrf_ok(&secret, &form.csrf) {
        return redirect("/console/sign-in");
    }
    let credential = careid_domain::secret::Secret::new(form.credential);
    let choice = form.assignment.map(careid_domain::ids::AssignmentId);
    match app.service.console_sign_in_with_credential(&ctx, &secret, &credential, choice).await {
        Ok(()) => redirect("/console/"),
        Err(error) => {
            let error = ApiError::from(error);
            let choices = (!error.detail.choices.is_empty()).then_some(error.detail.choices.as_slice());
            sign_in_page(&app, &secret, error.status, Some(&error.detail.message), choices)
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Empty {}

pub(crate) async fn sign_out(State(app): State<App>, Posted(signed, _): Posted<Empty>) -> Page {
    app.service.console_sign_out(&signed.ctx, &signed.secret).await?;
    let mut response = redirect("/console/sign-in?ended=signed_out");
    response.headers_mut().insert(SET_COOKIE, cookie(app.secure_cookies, None));
    Ok(response)
}

// ----- Every holder ------------------------------------------------------------------------

pub(crate) async fn home(signed: Signed) -> Page {
    let actor = &signed.actor;
    let functions: Vec<String> = actor.functions.iter().map(|f| format!("{f:?}")).collect();
    let content = html! {
        h1 { "Your console" }
        dl.facts {
            dt { "Person" } dd { (actor.person) }
            dt { "Position" } dd { (actor.position) " (" (actor.role) ")" }
            dt { "Organisation" } dd { (actor.org) }
            dt { "RA functions" } dd { @if functions.is_empty() { "none" } @else { (functions.join(", ")) } }
            dt { "Signed in with" } dd { (actor.auth.code()) ", session " (actor.session) }
        }
        h2 { "What you can do here" }
        ul.cards {
            li { a href="/console/activity" { "My activity" } ": everything recorded under your name, with proofs; say “not me”." }
            li { a href="/console/sessions" { "My sessions" } ": where you are signed in; end any of them." }
            li { a href="/console/card" { "My card" } ": its state and certificates; report it lost or stolen at once." }
            @if allowed(&signed, RaAction::DecideRequest) || allowed(&signed, RaAction::CreateProfile) {
                li { a href="/console/queue" { "Work queue" } ": registrations to verify, requests to decide, lost cards under investigation." }
            }
            @if actor.functions.contains(&RaFunction::Sponsor) {
                li { a href="/console/team" { "My team" } ": requests you made, positions, leave." }
            }
            @if allowed(&signed, RaAction::WorkCases) {
                li { a href="/console/cases" { "Cases" } " and " a href="/console/alerts" { "alerts" } ": misuse to investigate." }
            }
            @if allowed(&signed, RaAction::ViewReports) {
                li { a href="/console/dashboard" { "Dashboard" } ": logins, lost cards, expiring certificates, alerts, coverage." }
            }
        }
    };
    Ok(page("Home", &signed, &content))
}

pub(crate) async fn terms(State(app): State<App>, headers: HeaderMap) -> Response {
    let secret = browser_secret(app.secure_cookies, &headers);
    let content = html! {
        h1 { "Terms of use" }
        p { "Version " strong { (careid_domain::TERMS_OF_USE_VERSION) } ". You accept them at registration and at every login." }
        pre.terms { (careid_domain::TERMS_OF_USE) }
    };
    let signed = match secret {
        Some(secret) => app.service.console_actor(&secret).await.ok().map(|actor| Signed {
            ctx: careid_service::RequestContext::new("terms"),
            actor,
            csrf: super::csrf_token(&secret),
            secret,
        }),
        None => None,
    };
    respond(StatusCode::OK, layout("Terms of use", signed.as_ref(), &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Before {
    before: Option<u64>,
}

pub(crate) async fn activity(State(app): State<App>, signed: Signed, Query(p): Query<Before>) -> Page {
    let query = ReadAudit {
        person: Some(signed.actor.person.clone()),
        before_seq: p.before,
        limit: 50,
        ..ReadAudit::default()
    };
    let page_of = app.service.read_audit(&signed.ctx, &signed.actor, query).await?;
    let records: Vec<wire::AuditRecord> = page_of.records.iter().map(c::audit_out).collect();
    let me = signed.actor.person.to_string();
    let rows: Vec<Vec<Markup>> = records
        .iter()
        .map(|r| {
            let mine = field(r, "actor.person") == me;
            vec![
                html! { (r.seq) },
                html! { (when(field(r, "at"))) },
                html! { code { (field(r, "action")) } },
                html! { (field(r, "actor.person")) " " (field(r, "actor.role")) " " (field(r, "actor.org")) },
                html! { (field(r, "outcome")) },
                html! {
                    a href={ "/console/activity/" (r.seq) "/proof" } { "Proof" span.visually-hidden { " of record " (r.seq) } }
                    @if mine {
                        details.inline {
                            summary { "Not me" span.visually-hidden { ": record " (r.seq) } }
                            form method="post" action={ "/console/activity/" (r.seq) "/not-me" } {
                                (csrf_field(&signed))
                                label for={ "comment-" (r.seq) } { "What do you know of it?" }
                                input id={ "comment-" (r.seq) } name="comment" required maxlength="500";
                                button type="submit" { "Report: this was not me" }
                            }
                        }
                    }
                },
            ]
        })
        .collect();
    let content = html! {
        h1 { "My activity" }
        p { "Every record careid keeps with you as the actor or the subject, newest first. Each has a proof "
            "that it is in the signed log; say “not me” of anything done under your name that you did not do." }
        (table("Your records", &["Record", "When", "Action", "Actor", "Outcome", ""], &rows))
        @if let Some(next) = page_of.next_before_seq { p { a href={ "/console/activity?before=" (next) } { "Older records" } } }
    };
    Ok(page("My activity", &signed, &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Comment {
    comment: String,
}

pub(crate) async fn not_me(
    State(app): State<App>,
    Path(seq): Path<u64>,
    Posted(signed, form): Posted<Comment>,
) -> Page {
    let incident = app.service.flag_not_me(&signed.ctx, &signed.actor, seq, &form.comment).await?;
    let content = html! {
        h1 { "Reported: not you" }
        p.notice role="status" { "Record " (seq) " is flagged as not done by you (incident " (incident.id) "). "
            "The RA and the Caldicott Guardian see it; a privacy officer investigates." }
        p { a href="/console/activity" { "Back to my activity" } }
    };
    Ok(page("Reported", &signed, &content))
}

pub(crate) async fn proof(State(app): State<App>, Path(seq): Path<u64>, signed: Signed) -> Page {
    let proof = app.service.prove_audit_record(&signed.ctx, &signed.actor, seq).await?;
    let content = html! {
        h1 { "Proof of record " (seq) }
        p { "The record is leaf " (proof.record.seq) " of the log of " (proof.tree_size) " records whose root the "
            "checkpoint below signs. Anyone can check it: " code { "careid audit prove --entry " (seq) } "." }
        h2 { "The record" }
        dl.facts { @for (k, v) in c::audit_out(&proof.record).fields { dt { (k) } dd { (v) } } }
        h2 { "Inclusion proof" }
        ol.hashes { @for hash in &proof.inclusion { li { code { (hex::encode(hash)) } } } }
        h2 { "Signed checkpoint" }
        pre { (proof.checkpoint) }
    };
    Ok(page("Proof", &signed, &content))
}

pub(crate) async fn sessions(State(app): State<App>, signed: Signed) -> Page {
    let sessions = app.service.my_sessions(&signed.actor).await?;
    let rows: Vec<Vec<Markup>> = sessions
        .iter()
        .map(crate::login::session_out)
        .map(|s| {
            let this = s.session_id == signed.actor.session;
            vec![
                html! { code { (s.session_id) } @if this { " (this one)" } },
                html! { (s.auth) },
                html! { (s.workstation.clone().unwrap_or_default()) },
                html! { (when(&s.created_at)) },
                html! { (s.last_proof_at.as_deref().map(when).unwrap_or_default()) },
                html! {
                    form method="post" action={ "/console/sessions/" (s.session_id) "/end" } {
                        (csrf_field(&signed))
                        button type="submit" { "End" span.visually-hidden { " session " (s.session_id) } }
                    }
                },
            ]
        })
        .collect();
    let content = html! {
        h1 { "My sessions" }
        p { "Where you are signed in now. End any you do not recognise, and report it: your card may be in someone else's reader." }
        (table("Your live sessions", &["Session", "Signed in with", "Workstation", "Since", "Card last proved", ""], &rows))
    };
    Ok(page("My sessions", &signed, &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct EndForm {
    /// The profile the form was on (the RA ending someone's session), to go back to.
    person: Option<String>,
}

pub(crate) async fn end_session(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<EndForm>,
) -> Page {
    // Another's session ends as ended by someone else; the service decides whether it may.
    app.service.end_session(&signed.ctx, &signed.actor, &id, SessionEnd::SignedOut).await?;
    back(form.person.as_deref(), "/console/sessions")
}

/// A person's cards with their certificates, as the API gives them.
async fn cards_of(app: &App, person: &PersonUuid) -> Result<Vec<wire::Card>, Failed> {
    let mut cards = Vec::new();
    for card in app.service.cards_of(person).await? {
        let certificates = app.service.card_certificates(card.id).await?;
        cards.push(crate::cards::card_out(&card, &certificates));
    }
    Ok(cards)
}

pub(crate) async fn my_card(State(app): State<App>, signed: Signed) -> Page {
    let cards = cards_of(&app, &signed.actor.person).await?;
    let content = html! {
        h1 { "My card" }
        @if cards.is_empty() { p.empty { "careid has issued you no card." } }
        @for card in &cards {
            section aria-labelledby={ "card-" (card.card_id) } {
                h2 id={ "card-" (card.card_id) } { "Card " (card.card_id) }
                dl.facts {
                    dt { "Serial" } dd { (card.serial) }
                    dt { "State" } dd { strong { (card.state) } }
                    dt { "Issued" } dd { (when(&card.issued_at)) }
                    @for cert in &card.certificates {
                        dt { "Certificate " (cert.serial) } dd { "valid until " (when(&cert.not_after)) }
                    }
                }
                @if card.state == "active" || card.state == "locked" {
                    form method="post" action={ "/console/cards/" (card.card_id) "/report" } {
                        (csrf_field(&signed))
                        fieldset {
                            legend { "Report this card" }
                            p { "It stops working at once, everywhere; a replacement waits for the investigation." }
                            label { input type="radio" name="reason" value="lost" required; " Lost" }
                            label { input type="radio" name="reason" value="stolen"; " Stolen" }
                            label { input type="radio" name="reason" value="damaged"; " Damaged" }
                            button type="submit" { "Report card " (card.card_id) }
                        }
                    }
                }
            }
        }
    };
    Ok(page("My card", &signed, &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Reason {
    reason: String,
}

// ----- RA ------------------------------------------------------------------------------------

pub(crate) async fn queue(State(app): State<App>, signed: Signed) -> Page {
    let registrations = app.service.registrations(&signed.ctx, &signed.actor, true).await?;
    let requests = app.service.requests(&signed.ctx, &signed.actor, true).await?;
    let lost = if allowed(&signed, RaAction::WorkCases) {
        app.service.cases(&signed.ctx, &signed.actor, None, true, 100).await?
    } else {
        Vec::new()
    };
    let registration_rows: Vec<Vec<Markup>> = registrations
        .iter()
        .map(c::registration_out)
        .map(|r| {
            vec![
                html! { (r.id) },
                html! { (r.details.given_name) " " (r.details.family_name) },
                html! { (r.org) },
                html! { (r.position_sought.map(|p| p.to_string()).unwrap_or_default()) },
                html! { (r.sponsor) },
                verify_form(&signed, r.id),
            ]
        })
        .collect();
    let decide = allowed(&signed, RaAction::DecideRequest);
    let request_rows: Vec<Vec<Markup>> = requests
        .iter()
        .map(c::request_out)
        .map(|r| {
            vec![
                html! { (r.id) },
                html! { a href={ "/console/people/" (r.person) } { (r.person) } },
                html! { (r.kind) " " (r.position.map(|p| p.to_string()).unwrap_or_default()) " at " (r.org) },
                html! { (r.note) },
                html! { (r.requested_by) },
                html! {
                    @if decide {
                        form.inline method="post" action={ "/console/requests/" (r.id) "/grant" } {
                            (csrf_field(&signed))
                            button type="submit" { "Grant" span.visually-hidden { " request " (r.id) } }
                        }
                        details.inline {
                            summary { "Reject" span.visually-hidden { " request " (r.id) } }
                            form method="post" action={ "/console/requests/" (r.id) "/reject" } {
                                (csrf_field(&signed))
                                label for={ "why-" (r.id) } { "Why (the sponsor sees it)" }
                                input id={ "why-" (r.id) } name="reason" required maxlength="500";
                                button type="submit" { "Reject request " (r.id) }
                            }
                        }
                    }
                },
            ]
        })
        .collect();
    let lost_rows: Vec<Vec<Markup>> = lost
        .iter()
        .filter(|case| case.source.code() == "lost_card")
        .map(crate::cases::case_out)
        .map(|case| {
            vec![
                html! { a href={ "/console/cases/" (case.id) } { "Case " (case.id) } },
                html! { (case.subject) },
                html! { (case.org) },
                html! { (when(&case.opened_at)) },
                html! { (case.owner.clone().unwrap_or_else(|| "unassigned".into())) },
            ]
        })
        .collect();
    let content = html! {
        h1 { "Work queue" }
        h2 { "Registrations waiting for an identity check" }
        (table("Pending registrations", &["Id", "Name", "Organisation", "Position sought", "Sponsor", "Identity check"], &registration_rows))
        h2 { "Sponsors' requests" }
        (table("Pending requests", &["Id", "Person", "Asks for", "Note", "Requested by", ""], &request_rows))
        @if allowed(&signed, RaAction::WorkCases) {
            h2 { "Lost and stolen cards under investigation" }
            (table("Open lost-card cases", &["Case", "Holder", "Organisation", "Opened", "Owner"], &lost_rows))
        }
    };
    Ok(page("Work queue", &signed, &content))
}

/// The identity check of a registration at the desk: three documents seen, by kind and number
/// (one photo ID and a different proof of address; careid says which rule a set breaks).
fn verify_form(signed: &Signed, id: i64) -> Markup {
    let kinds = careid_domain::model::DocumentKind::ALL;
    html! {
        @if allowed(signed, RaAction::CreateProfile) {
            details {
                summary { "Check identity" span.visually-hidden { " for registration " (id) } }
                form method="post" action={ "/console/registrations/" (id) "/verify" } {
                    (csrf_field(signed))
                    @for n in 1..=3 {
                        fieldset {
                            legend { "Document " (n) }
                            label for={ "kind-" (id) "-" (n) } { "Kind" }
                            select id={ "kind-" (id) "-" (n) } name={ "kind" (n) } {
                                @for kind in kinds { option value=(kind.code()) { (kind.code().replace('_', " ")) } }
                            }
                            label for={ "number-" (id) "-" (n) } { "Number" }
                            input id={ "number-" (id) "-" (n) } name={ "number" (n) } required autocomplete="off";
                        }
                    }
                    button type="submit" { "Verify and create the profile" }
                }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Documents {
    kind1: String,
    number1: String,
    kind2: String,
    number2: String,
    kind3: String,
    number3: String,
}

pub(crate) async fn verify(
    State(app): State<App>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<Documents>,
) -> Page {
    let documents = [(form.kind1, form.number1), (form.kind2, form.number2), (form.kind3, form.number3)]
        .map(|(kind, number)| wire::Document { kind, number });
    let evidence = c::evidence_in(&documents)?;
    let id = careid_domain::ids::RegistrationId::parse(&id.to_string())?;
    let uuid = app.service.verify_registration(&signed.ctx, &signed.actor, id, evidence).await?;
    Ok(redirect(&format!("/console/people/{uuid}")))
}

pub(crate) async fn grant(State(app): State<App>, Path(id): Path<i64>, Posted(signed, _): Posted<Empty>) -> Page {
    app.service.grant_request(&signed.ctx, &signed.actor, RequestId(id)).await?;
    Ok(redirect("/console/queue"))
}

pub(crate) async fn reject(State(app): State<App>, Path(id): Path<i64>, Posted(signed, form): Posted<Reason>) -> Page {
    app.service.reject_request(&signed.ctx, &signed.actor, RequestId(id), form.reason).await?;
    Ok(redirect("/console/queue"))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Search {
    family_name: Option<String>,
}

pub(crate) async fn people(State(app): State<App>, signed: Signed, Query(p): Query<Search>) -> Page {
    let name = p.family_name.unwrap_or_default();
    let found = if name.trim().is_empty() {
        Vec::new()
    } else {
        app.service.find_people(&signed.actor, name.trim(), 50).await?
    };
    let rows: Vec<Vec<Markup>> = found
        .iter()
        .map(c::person_summary_out)
        .map(|p| {
            vec![
                html! { a href={ "/console/people/" (p.uuid) } { (p.uuid) } },
                html! { (p.given_name) " " (p.family_name) },
                html! { (p.status) },
                html! { (p.registered_org) },
            ]
        })
        .collect();
    let content = html! {
        h1 { "People" }
        form.search method="get" action="/console/people" role="search" {
            label for="family_name" { "Family name begins with" }
            input #family_name name="family_name" value=(name) required;
            button type="submit" { "Find" }
        }
        @if !name.trim().is_empty() { (table("People found", &["Identifier", "Name", "Profile", "Registered at"], &rows)) }
    };
    Ok(page("People", &signed, &content))
}

pub(crate) async fn person(State(app): State<App>, Path(id): Path<String>, signed: Signed) -> Page {
    let uuid = PersonUuid::parse(&id)?;
    let profile = app.service.person_profile(&signed.ctx, &signed.actor, &uuid).await?;
    let person = c::profile_out(&profile, crate::routes::today(&app));
    // Cards, sessions and absences are a records reader's; a finder sees the positions only.
    let reader = app.service.require_records_reader(&signed.ctx, &signed.actor, &uuid).await.is_ok();
    let (cards, absences) = if reader {
        (cards_of(&app, &uuid).await?, app.service.absences(&signed.ctx, &signed.actor, &uuid).await?)
    } else {
        (Vec::new(), Vec::new())
    };
    // Live sessions, for those who may end them.
    let sessions = if allowed(&signed, RaAction::EndSession) && uuid != signed.actor.person {
        Some(app.service.sessions_of(&signed.ctx, &signed.actor, &uuid).await?)
    } else {
        None
    };
    let session_rows: Vec<Vec<Markup>> = sessions
        .iter()
        .flatten()
        .map(crate::login::session_out)
        .map(|s| {
            vec![
                html! { code { (s.session_id) } },
                html! { (s.auth) },
                html! { (s.workstation.clone().unwrap_or_default()) },
                html! { (when(&s.created_at)) },
                html! {
                    form method="post" action={ "/console/sessions/" (s.session_id) "/end" } {
                        (csrf_field(&signed))
                        input type="hidden" name="person" value=(uuid);
                        button type="submit" { "End" span.visually-hidden { " session " (s.session_id) } }
                    }
                },
            ]
        })
        .collect();
    let assignment_rows: Vec<Vec<Markup>> = person
        .assignments
        .iter()
        .map(|a| {
            vec![
                html! { (a.id) },
                html! { (a.position_name.clone().unwrap_or_default()) " " code { (a.role.clone().unwrap_or_default()) } },
                html! { (a.org) },
                html! { (a.start) " – " (a.end.clone().unwrap_or_default()) },
                html! { (a.status) },
                html! { (a.working_hours.clone().unwrap_or_default()) },
            ]
        })
        .collect();
    let card_rows: Vec<Vec<Markup>> = cards
        .iter()
        .map(|card| {
            vec![
                html! { (card.card_id) },
                html! { (card.serial) },
                html! { strong { (card.state) } },
                html! { (when(&card.issued_at)) },
                html! { @for cert in &card.certificates { (cert.serial) " until " (when(&cert.not_after)) br; } },
                card_actions(&signed, &person.uuid, card),
            ]
        })
        .collect();
    let absence_rows: Vec<Vec<Markup>> = absences
        .iter()
        .map(crate::absence::absence_out)
        .map(|a| vec![html! { (a.kind) }, html! { (a.first_day) " – " (a.last_day) }, html! { (a.recorded_by) }])
        .collect();
    let record_leave = allowed(&signed, RaAction::RecordAbsence) && reader;
    let ceremonies = reader && (allowed(&signed, RaAction::IssueCard) || allowed(&signed, RaAction::UnlockCard));
    let content = html! {
        h1 { (person.given_name) " " (person.family_name) }
        dl.facts {
            dt { "Identifier" } dd { (person.uuid) }
            dt { "Profile" } dd { (person.status) }
            dt { "Registered at" } dd { (person.registered_org) }
            dt { "What you see" } dd { (person.disclosure) }
        }
        @if let Some(identifying) = &person.identifying {
            h2 { "Identity" }
            dl.facts {
                dt { "Date of birth" } dd { (identifying.date_of_birth) }
                dt { "NI number" } dd { (identifying.ni_number) }
                dt { "Email" } dd { (identifying.contact.email.clone().unwrap_or_default()) }
            }
            @let check_rows: Vec<Vec<Markup>> = identifying.identity_checks.iter().map(|check| vec![
                html! { (when(&check.checked_at)) },
                html! { (check.purpose) },
                html! { @for d in &check.documents { (d.kind.replace('_', " ")) br; } },
                html! { (check.checked_by.clone().unwrap_or_default()) },
            ]).collect();
            (table("Identity checks", &["When", "Why", "Documents seen", "Checked by"], &check_rows))
        }
        h2 { "Positions over time" }
        (table("Assignments", &["Id", "Position", "Organisation", "From – to", "Status", "Working hours"], &assignment_rows))
        @if sessions.is_some() {
            h2 { "Live sessions" }
            (table("Where they are signed in now", &["Session", "Signed in with", "Workstation", "Since", ""], &session_rows))
        }
        @if reader {
            h2 { "Cards" }
            @if ceremonies {
                p { "Ceremonies run at your workstation: the careid agent asks you to confirm, and the holder "
                    "types their passcode there, never here. Put the card in the agent's ceremony reader first." }
                @if allowed(&signed, RaAction::IssueCard) {
                    p { button.ceremony type="button" data-ceremony="issue" data-person=(person.uuid) { "Issue a card" } }
                }
                p #ceremony-status .notice role="status" aria-live="polite" { "No ceremony running." }
                noscript { p { "Ceremonies need this page's script, which talks only to the careid agent on this computer; "
                    "or run them with " code { "careid card" } "." } }
            }
            (table("Cards and certificates", &["Card", "Serial", "State", "Issued", "Certificates", ""], &card_rows))
            h2 { "Absences" }
            (table("Absences from today", &["Kind", "Days", "Recorded by"], &absence_rows))
        }
        @if record_leave {
            form method="post" action={ "/console/people/" (person.uuid) "/absences" } {
                (csrf_field(&signed))
                fieldset {
                    legend { "Record an absence" }
                    label for="kind" { "Kind" }
                    select #kind name="kind" {
                        option value="annual_leave" { "Annual leave" }
                        option value="sickness" { "Sickness" }
                        option value="other" { "Other" }
                    }
                    label for="first_day" { "First day" }
                    input #first_day type="date" name="first_day" required;
                    label for="last_day" { "Last day" }
                    input #last_day type="date" name="last_day" required;
                    button type="submit" { "Record absence" }
                }
            }
        }
    };
    if !ceremonies {
        return Ok(page("Person", &signed, &content));
    }
    // The ceremony buttons ask the workstation agent to run the ceremony on its reader.
    Ok(respond_with_agent_script(&app, StatusCode::OK, "Person", Some(&signed), &content, ceremony_script))
}

/// The profile page's script: each ceremony button asks the workstation agent at `agent` to run
/// its ceremony on the agent's ceremony reader, then reloads the page with the card's new state.
fn ceremony_script(agent: &str) -> String {
    format!(
        r#"
const out = document.getElementById("ceremony-status");
for (const button of document.querySelectorAll("button[data-ceremony]")) {{
  button.addEventListener("click", async () => {{
    out.className = "notice";
    out.textContent = "Confirm at the careid agent; the holder types their passcode there…";
    const card = button.dataset.card ? Number(button.dataset.card) : null;
    try {{
      const r = await fetch("{agent}/v1/ceremony", {{
        method: "POST",
        headers: {{ "Content-Type": "application/json" }},
        body: JSON.stringify({{ ceremony: button.dataset.ceremony, card_id: card, person: button.dataset.person || null }}),
      }});
      const body = await r.json();
      if (r.ok) {{ out.textContent = "Done. Reloading…"; location.reload(); return; }}
      out.textContent = (body.error && body.error.message) || "The ceremony did not complete.";
    }} catch (e) {{
      out.textContent = "The careid agent is not running on this computer.";
    }}
    out.className = "notice error";
  }});
}}
"#
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct NewAbsence {
    kind: String,
    first_day: String,
    last_day: String,
}

pub(crate) async fn record_absence(
    State(app): State<App>,
    Path(id): Path<String>,
    Posted(signed, form): Posted<NewAbsence>,
) -> Page {
    let uuid = PersonUuid::parse(&id)?;
    let first = parse_date("first_day", &form.first_day)?;
    let last = parse_date("last_day", &form.last_day)?;
    app.service.record_absence(&signed.ctx, &signed.actor, &uuid, &form.kind, first, last).await?;
    Ok(redirect(&format!("/console/people/{uuid}")))
}

/// The sponsor's team: the requests they and their organisation made, and its positions.
pub(crate) async fn team(State(app): State<App>, signed: Signed) -> Page {
    let requests = app.service.requests(&signed.ctx, &signed.actor, false).await?;
    let positions = app.service.positions_at(&signed.actor.org).await?;
    let request_rows: Vec<Vec<Markup>> = requests
        .iter()
        .map(c::request_out)
        .map(|r| {
            vec![
                html! { (r.id) },
                html! { a href={ "/console/people/" (r.person) } { (r.person) } },
                html! { (r.kind) " " (r.position.map(|p| p.to_string()).unwrap_or_default()) },
                html! { strong { (r.status) } },
                html! { (r.decision_reason.clone().unwrap_or_default()) },
            ]
        })
        .collect();
    let position_rows: Vec<Vec<Markup>> = positions
        .iter()
        .map(|p| {
            vec![
                html! { (p.id) },
                html! { (p.name) },
                html! { code { (p.role) } },
                html! { @if p.assignable_by_sponsors { "yes" } @else { "by request" } },
            ]
        })
        .collect();
    let content = html! {
        h1 { "My team at " (signed.actor.org) }
        p { "Find a member of staff under " a href="/console/people" { "People" } " to see their positions and record their leave." }
        h2 { "Requests" }
        (table("Requests at your organisation", &["Id", "Person", "Asks for", "Status", "Decision"], &request_rows))
        h2 { "Positions" }
        (table("Positions at your organisation", &["Id", "Name", "Role", "You may assign"], &position_rows))
    };
    Ok(page("My team", &signed, &content))
}

// ----- Privacy officers and Caldicott Guardians -------------------------------------------

pub(crate) async fn cases(State(app): State<App>, signed: Signed) -> Page {
    let cases = app.service.cases(&signed.ctx, &signed.actor, None, false, 200).await?;
    let rows: Vec<Vec<Markup>> = cases
        .iter()
        .map(crate::cases::case_out)
        .map(|case| {
            vec![
                html! { a href={ "/console/cases/" (case.id) } { "Case " (case.id) } },
                html! { (case.source) },
                html! { (case.subject) },
                html! { (case.org) },
                html! { strong { (case.status) } },
                html! { (case.owner.clone().unwrap_or_else(|| "unassigned".into())) },
                html! { (case.summary) },
            ]
        })
        .collect();
    let content = html! {
        h1 { "Cases" }
        p { "Misuse cases in your scope, routed so that no one investigates their own organisation's manager." }
        (table("Cases", &["Case", "Source", "Subject", "Organisation", "Status", "Owner", "Summary"], &rows))
    };
    Ok(page("Cases", &signed, &content))
}

pub(crate) async fn case(State(app): State<App>, Path(id): Path<i64>, signed: Signed) -> Page {
    let view = app.service.case_view(&signed.ctx, &signed.actor, id).await?;
    let case = crate::cases::case_out(&view.case);
    let rows: Vec<Vec<Markup>> = view
        .entries
        .iter()
        .map(crate::cases::entry_out)
        .map(|e| {
            vec![
                html! { (when(&e.at)) },
                html! { (e.by.clone().unwrap_or_default()) },
                html! { (e.kind) },
                html! { (e.text) },
                html! { (e.record.map(|r| r.to_string()).unwrap_or_default()) },
            ]
        })
        .collect();
    let content = html! {
        h1 { "Case " (case.id) }
        dl.facts {
            dt { "Subject" } dd { (case.subject) }
            dt { "Source" } dd { (case.source) }
            dt { "Organisation" } dd { (case.org) }
            dt { "Status" } dd { strong { (case.status) } }
            dt { "Owner" } dd { (case.owner.clone().unwrap_or_else(|| "unassigned".into())) }
            dt { "Summary" } dd { (case.summary) }
        }
        h2 { "History" }
        (table("The case's history", &["When", "By", "Step", "Text", "Audit record"], &rows))
        @if case.status != "closed" {
            form method="post" action={ "/console/cases/" (case.id) "/notes" } {
                (csrf_field(&signed))
                label for="note" { "Add a note" }
                textarea #note name="note" required maxlength="2000" rows="4" {}
                button type="submit" { "Add note" }
            }
        }
    };
    Ok(page("Case", &signed, &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Note {
    note: String,
}

pub(crate) async fn note_case(State(app): State<App>, Path(id): Path<i64>, Posted(signed, form): Posted<Note>) -> Page {
    app.service.note_case(&signed.ctx, &signed.actor, id, &form.note).await?;
    Ok(redirect(&format!("/console/cases/{id}")))
}

pub(crate) async fn alerts(State(app): State<App>, signed: Signed) -> Page {
    let query = AlertQuery { org: None, include_low: false, before_seq: None, limit: 200 };
    let alerts = app.service.alert_queue(&signed.ctx, &signed.actor, &query).await?;
    let rows: Vec<Vec<Markup>> = alerts
        .iter()
        .map(|a| {
            vec![
                html! { (a.seq) },
                html! { (when(&a.at)) },
                html! { strong { (a.severity) } },
                html! { code { (a.kind) } },
                html! { (a.concerns.clone().unwrap_or_default()) },
                html! { (a.explanation) },
            ]
        })
        .collect();
    let accesses = careid_service::ReadPatientAccess {
        org: None,
        patient: None,
        person: None,
        alerts_only: true,
        before_seq: None,
        limit: 100,
    };
    let accesses = app.service.patient_accesses(&signed.ctx, &signed.actor, accesses).await?;
    let access_rows: Vec<Vec<Markup>> = accesses
        .iter()
        .map(crate::patient::access_out)
        .map(|a| {
            vec![
                html! { (when(&a.accessed_at)) },
                html! { (a.person) },
                html! { (a.patient) },
                html! { (a.relationship) },
                html! { (a.client) },
                html! { strong { (a.alert.clone().unwrap_or_default()) } },
            ]
        })
        .collect();
    let content = html! {
        h1 { "Alerts" }
        p { "Medium and high alerts raised live (off duty, two places, a lost card tried, passcode sweeps, "
            "flagged patients), newest first." }
        (table("Alerts in your scope", &["Record", "When", "Severity", "Kind", "Concerns", "Why"], &rows))
        h2 { "Patient-access alerts" }
        p { "Accesses that clinical applications reported under a self-claimed relationship or as an emergency." }
        (table("Patient accesses to review", &["When", "Member of staff", "Patient", "Relationship", "Application", "Alert"], &access_rows))
    };
    Ok(page("Alerts", &signed, &content))
}

// ----- RA Manager's dashboard ---------------------------------------------------------------

pub(crate) async fn dashboard(State(app): State<App>, signed: Signed) -> Page {
    use careid_domain::report::ReportName;
    // Reports over everyone in scope: at most five minutes old, so that a dashboard left open
    // does not read a million people at every look (the page says when they were computed).
    // Read first: the service refuses whoever may not see reports, before anything else runs.
    let fresh = time::Duration::minutes(5);
    let (expiring, computed_at) =
        app.service.report_for_dashboard(&signed.ctx, &signed.actor, ReportName::ExpiringCertificates, fresh).await?;
    let (coverage, _) =
        app.service.report_for_dashboard(&signed.ctx, &signed.actor, ReportName::Coverage, fresh).await?;
    let now = app.service.clock().now();
    let day_ago = now - time::Duration::hours(24);
    let year_ago = now - time::Duration::days(365);
    // Logins per hour over the last day, from the audit log.
    let logins = audit_times(&app, &signed, "session.create", day_ago).await?;
    // The last 24 whole hours, oldest first.
    let first_hour = (day_ago + time::Duration::hours(1)).hour();
    let mut per_hour: Vec<(String, u64)> = (0..24u8).map(|h| (format!("{:02}:00", (first_hour + h) % 24), 0)).collect();
    for (at, _) in &logins {
        let hour = at.get(11..13).and_then(|h| h.parse::<u8>().ok());
        if let Some(slot) = hour.map(|h| usize::from((h + 24 - first_hour) % 24)) {
            per_hour[slot].1 += 1;
        }
    }
    // Lost and stolen cards per organisation and month, over the last year.
    let reports = audit_times(&app, &signed, "card.report", year_ago).await?;
    let mut lost: BTreeMap<(String, String), u64> = BTreeMap::new();
    for (at, org) in &reports {
        *lost.entry((org.clone(), at.get(..7).unwrap_or_default().to_owned())).or_default() += 1;
    }
    let alerts = app
        .service
        .alert_queue(
            &signed.ctx,
            &signed.actor,
            &AlertQuery { org: None, include_low: true, before_seq: None, limit: 1000 },
        )
        .await?;
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for alert in &alerts {
        *by_kind.entry(alert.kind.clone()).or_default() += 1;
    }
    let mut expiring_by_month: BTreeMap<String, u64> = BTreeMap::new();
    let end_column = expiring.columns.iter().position(|c| c.contains("not_after") || c.contains("expires"));
    for row in &expiring.rows {
        let month = end_column.and_then(|i| row.get(i)).and_then(|d| d.get(..7)).unwrap_or("unknown");
        *expiring_by_month.entry(month.to_owned()).or_default() += 1;
    }
    let coverage_bars: Vec<(String, u64)> = coverage
        .rows
        .iter()
        .filter_map(|row| Some((row.first()?.clone(), row.get(3)?.trim_end_matches('%').parse().ok()?)))
        .collect();
    let lost_bars: Vec<(String, u64)> = lost.iter().map(|((org, month), n)| (format!("{org} {month}"), *n)).collect();
    let content = html! {
        h1 { "Dashboard for " (signed.actor.org) }
        p { "Certificates and coverage as computed at " (when(&computed_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()))
            " (at most five minutes ago); the rest as of now." }
        (chart::bars("Logins per hour, last 24 hours (UTC)", "logins", &per_hour))
        (chart::bars("Lost and stolen cards per organisation and month, last year", "cards reported", &lost_bars))
        (chart::bars("Certificates ending within 90 days, by month", "certificates", &expiring_by_month.into_iter().collect::<Vec<_>>()))
        (chart::bars("Alerts by kind (live, in scope)", "alerts", &by_kind.into_iter().collect::<Vec<_>>()))
        (chart::bars("Registration coverage: staff with a position who hold a live card (%)", "percent", &coverage_bars))
    };
    Ok(page("Dashboard", &signed, &content))
}

/// The times (and acting organisations) of the records of `action` since `since` that the
/// actor may read, newest first, at most 5,000.
async fn audit_times(
    app: &App,
    signed: &Signed,
    action: &str,
    since: time::OffsetDateTime,
) -> Result<Vec<(String, String)>, Failed> {
    let query = ReadAudit {
        org: Some(OdsCode::clone(&signed.actor.org)),
        action: Some(action.to_owned()),
        since: Some(since),
        limit: 5000,
        ..ReadAudit::default()
    };
    let page = app.service.read_audit(&signed.ctx, &signed.actor, query).await?;
    Ok(page
        .records
        .iter()
        .map(c::audit_out)
        .map(|r| (field(&r, "at").to_owned(), field(&r, "actor.org").to_owned()))
        .collect())
}

// ----- Writes from a profile, pre-registration, bulk import ----------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct CardAction {
    reason: Option<String>,
    /// The profile the form was on, to go back to; none from the holder's own card page.
    person: Option<String>,
}

/// Where a form goes back to: the profile it was on (naming its person), or `own`, the
/// signed-in person's own page it was on.
fn back(person: Option<&str>, own: &str) -> Page {
    match person {
        Some(person) => Ok(redirect(&format!("/console/people/{}", PersonUuid::parse(person)?))),
        None => Ok(redirect(own)),
    }
}

/// Reports a card lost, stolen or damaged: the holder's own, or from a person's profile
/// (sponsor, RA). A lost card ends the sessions it signed in: its holder's console with them.
pub(crate) async fn report_card(
    State(app): State<App>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<CardAction>,
) -> Page {
    let report = card_report(form.reason.as_deref().unwrap_or_default())?;
    app.service.report_card(&signed.ctx, &signed.actor, id, report).await?;
    back(form.person.as_deref(), "/console/card")
}

/// Cancels a card from a person's profile (RA).
pub(crate) async fn cancel_card(
    State(app): State<App>,
    Path(id): Path<i64>,
    Posted(signed, form): Posted<CardAction>,
) -> Page {
    app.service.cancel_card(&signed.ctx, &signed.actor, id).await?;
    back(form.person.as_deref(), "/console/card")
}

fn card_report(reason: &str) -> Result<careid_service::CardReport, Failed> {
    match reason {
        "lost" => Ok(careid_service::CardReport::Lost),
        "stolen" => Ok(careid_service::CardReport::Stolen),
        "damaged" => Ok(careid_service::CardReport::Damaged),
        _ => Err(careid_domain::ids::InvalidInput::new("reason", "must be lost, stolen or damaged").into()),
    }
}

/// The ceremonies a card in `state` can go through, each with the permission it needs: run
/// by the workstation agent on its ceremony reader, with the holder typing at the agent.
fn ceremonies_for(state: &str) -> &'static [(&'static str, &'static str, RaAction)] {
    match state {
        "awaiting_passcode" => &[("first_passcode", "Set first passcode", RaAction::UnlockCard)],
        "locked" => &[("unlock", "Unlock", RaAction::UnlockCard), ("repair", "Repair", RaAction::RepairCard)],
        "active" => &[("renew", "Renew", RaAction::RenewCard), ("repair", "Repair", RaAction::RepairCard)],
        "lost" | "stolen" | "damaged" | "cancelled" | "revoked" => {
            &[("clear", "Clear for reuse", RaAction::CancelCard)]
        }
        _ => &[],
    }
}

/// The card actions a person's profile offers for `card`: what the reader's role may do.
fn card_actions(signed: &Signed, person: &str, card: &wire::Card) -> Markup {
    let live = card.state == "active" || card.state == "locked";
    html! {
        @for (ceremony, label, action) in ceremonies_for(&card.state) {
            @if allowed(signed, *action) {
                button.ceremony type="button" data-ceremony=(ceremony) data-card=(card.card_id) {
                    (label) span.visually-hidden { " card " (card.card_id) }
                }
                " "
            }
        }
        @if live && allowed(signed, RaAction::ReportCard) {
            details.inline {
                summary { "Report" span.visually-hidden { " card " (card.card_id) } }
                form method="post" action={ "/console/cards/" (card.card_id) "/report" } {
                    (csrf_field(signed))
                    input type="hidden" name="person" value=(person);
                    label for={ "reason-" (card.card_id) } { "What happened" }
                    select id={ "reason-" (card.card_id) } name="reason" {
                        option value="lost" { "Lost" } option value="stolen" { "Stolen" } option value="damaged" { "Damaged" }
                    }
                    button type="submit" { "Report card " (card.card_id) }
                }
            }
        }
        @if card.state != "cancelled" && allowed(signed, RaAction::CancelCard) {
            form.inline method="post" action={ "/console/cards/" (card.card_id) "/cancel" } {
                (csrf_field(signed))
                input type="hidden" name="person" value=(person);
                button type="submit" { "Cancel" span.visually-hidden { " card " (card.card_id) } }
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct Registering {
    given_name: String,
    family_name: String,
    date_of_birth: String,
    ni_number: String,
    email: Option<String>,
    position: Option<String>,
    note: Option<String>,
}

fn registration_form(signed: &Signed, positions: &[careid_domain::model::Position]) -> Markup {
    html! {
        form method="post" action="/console/register" {
            (csrf_field(signed))
            fieldset {
                legend { "Pre-register someone at " (signed.actor.org) }
                p { "The RA checks their identity face to face before careid creates a profile." }
                label for="given_name" { "Given name" } input #given_name name="given_name" required autocomplete="off";
                label for="family_name" { "Family name" } input #family_name name="family_name" required autocomplete="off";
                label for="date_of_birth" { "Date of birth" } input #date_of_birth type="date" name="date_of_birth" required;
                label for="ni_number" { "National Insurance number" } input #ni_number name="ni_number" required autocomplete="off";
                label for="email" { "Email (optional)" } input #email type="email" name="email" autocomplete="off";
                label for="position" { "Position sought" }
                select #position name="position" {
                    option value="" { "none yet" }
                    @for p in positions { option value=(p.id) { (p.name) " (" (p.role) ")" } }
                }
                label for="note" { "Note for the RA (optional)" } input #note name="note" maxlength="500";
                button type="submit" { "Pre-register" }
            }
        }
    }
}

pub(crate) async fn register(State(app): State<App>, signed: Signed) -> Page {
    let positions = app.service.positions_at(&signed.actor.org).await?;
    let content = html! {
        h1 { "Pre-register a new member of staff" }
        (registration_form(&signed, &positions))
    };
    Ok(page("Pre-register", &signed, &content))
}

pub(crate) async fn submit_registration(State(app): State<App>, Posted(signed, form): Posted<Registering>) -> Page {
    let blank = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let new = wire::NewRegistration {
        org: signed.actor.org.to_string(),
        details: wire::PersonalDetails {
            title: None,
            given_name: form.given_name,
            family_name: form.family_name,
            date_of_birth: form.date_of_birth,
            ni_number: form.ni_number,
        },
        contact: wire::ContactDetails { email: blank(form.email), phone: None },
        position_sought: blank(form.position)
            .map(|p| p.parse().map_err(|_| careid_domain::ids::InvalidInput::new("position", "choose a position")))
            .transpose()?,
        note: form.note.unwrap_or_default(),
    };
    let registration = app.service.pre_register(&signed.ctx, &signed.actor, c::registration_in(&new)?).await?;
    let content = html! {
        h1 { "Pre-registered" }
        p.notice role="status" { "Registration " (registration.0) " waits for the RA's identity check." }
        p { a href="/console/register" { "Pre-register someone else" } " · " a href="/console/team" { "My team" } }
    };
    Ok(page("Pre-registered", &signed, &content))
}

#[derive(Debug, Deserialize)]
pub(crate) struct Batch {
    csv: String,
}

/// The header a bulk import's CSV has.
const IMPORT_COLUMNS: [&str; 7] =
    ["given_name", "family_name", "date_of_birth", "ni_number", "email", "position", "start"];

/// A row of a bulk import: its cells, and the import record they make or what is wrong.
type ImportRow = (Vec<String>, Result<careid_service::ImportPerson, String>);

/// A bulk import's rows, each read into the API's import record or the error that row has.
fn import_rows(csv: &str) -> Result<Vec<ImportRow>, Failed> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(csv.as_bytes());
    let header: Vec<String> =
        reader.headers().map_err(|e| ApiError::malformed(format!("the CSV: {e}")))?.iter().map(str::to_owned).collect();
    if header != IMPORT_COLUMNS {
        let expected = IMPORT_COLUMNS.join(",");
        return Err(careid_domain::ids::InvalidInput::new("csv", format!("the header must be {expected}")).into());
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ApiError::malformed(format!("the CSV: {e}")))?;
        let cells: Vec<String> = record.iter().map(str::to_owned).collect();
        let cell = |i: usize| cells.get(i).cloned().unwrap_or_default();
        let wire = wire::ImportPerson {
            details: wire::PersonalDetails {
                title: None,
                given_name: cell(0),
                family_name: cell(1),
                date_of_birth: cell(2),
                ni_number: cell(3),
            },
            contact: wire::ContactDetails { email: Some(cell(4)).filter(|e| !e.is_empty()), phone: None },
            position: cell(5).parse().unwrap_or(0),
            start: cell(6),
        };
        let read = if cell(5).parse::<i64>().is_err() {
            Err("position: give the position's number".to_owned())
        } else {
            c::import_person_in(&wire).map_err(|e| e.to_string())
        };
        rows.push((cells, read));
    }
    if rows.is_empty() {
        return Err(careid_domain::ids::InvalidInput::new("csv", "no rows under the header").into());
    }
    Ok(rows)
}

pub(crate) async fn import(signed: Signed) -> Page {
    let content = html! {
        h1 { "Bulk import" }
        p { "People already verified by a previous RA system, each with one position, all or none. "
            "Paste the CSV; careid shows each row and what is wrong with it before anything is imported." }
        form method="post" action="/console/import/preview" {
            (csrf_field(&signed))
            label for="csv" { "CSV with the header " code { (IMPORT_COLUMNS.join(",")) } }
            textarea #csv name="csv" rows="12" required {}
            button type="submit" { "Preview" }
        }
    };
    Ok(page("Bulk import", &signed, &content))
}

pub(crate) async fn import_preview(Posted(signed, form): Posted<Batch>) -> Page {
    let rows = import_rows(&form.csv)?;
    let bad = rows.iter().filter(|(_, read)| read.is_err()).count();
    let shown: Vec<Vec<Markup>> = rows
        .iter()
        .enumerate()
        .map(|(i, (cells, read))| {
            vec![
                html! { (i + 1) },
                html! { (cells.first().cloned().unwrap_or_default()) " " (cells.get(1).cloned().unwrap_or_default()) },
                html! { (cells.get(3).cloned().unwrap_or_default()) },
                html! { (cells.get(5).cloned().unwrap_or_default()) },
                html! { (cells.get(6).cloned().unwrap_or_default()) },
                html! { @match read { Ok(_) => "ready", Err(e) => strong.error-text { (e) } } },
            ]
        })
        .collect();
    let content = html! {
        h1 { "Bulk import: preview" }
        @if bad == 0 {
            p.notice role="status" { (rows.len()) " rows are ready. careid checks them again, against everyone already registered, when you import." }
            form method="post" action="/console/import" {
                (csrf_field(&signed))
                input type="hidden" name="csv" value=(form.csv);
                button type="submit" { "Import " (rows.len()) " people" }
            }
        } @else {
            p.notice.error role="alert" { (bad) " of " (rows.len()) " rows have errors: correct them and preview again. Nothing was imported." }
        }
        (table("Rows", &["Row", "Name", "NI number", "Position", "Start", "Check"], &shown))
        p { a href="/console/import" { "Start again" } }
    };
    Ok(page("Bulk import: preview", &signed, &content))
}

pub(crate) async fn import_people(State(app): State<App>, Posted(signed, form): Posted<Batch>) -> Page {
    let rows = import_rows(&form.csv)?;
    let mut people = Vec::with_capacity(rows.len());
    for (i, (_, read)) in rows.into_iter().enumerate() {
        let person = read.map_err(|e| careid_domain::ids::InvalidInput::new("csv", format!("row {}: {e}", i + 1)))?;
        people.push(person);
    }
    let imported = app.service.import_people(&signed.ctx, &signed.actor, people).await?;
    let content = html! {
        h1 { "Imported" }
        p.notice role="status" { (imported.len()) " people imported, each with their position; every one is in the audit log." }
        ul { @for uuid in imported.iter().take(50) { li { a href={ "/console/people/" (uuid) } { (uuid) } } } }
    };
    Ok(page("Imported", &signed, &content))
}

// ----- Organisations and positions -----------------------------------------------------------

#[derive(Debug, Deserialize)]
pub(crate) struct OrgSearch {
    q: Option<String>,
}

/// An organisation's cells in a table: its code (a link to it), name and kind.
fn organisation_cells(o: &wire::Organisation) -> Vec<Markup> {
    vec![
        html! { a href={ "/console/organisations/" (o.ods_code) } { (o.ods_code) } },
        html! { (o.name) },
        html! { (o.kind) },
    ]
}

/// Organisations found by name or code, and the signed-in person's own.
pub(crate) async fn organisations(State(app): State<App>, signed: Signed, Query(p): Query<OrgSearch>) -> Page {
    let q = p.q.unwrap_or_default();
    let found = app.service.find_organisations(Some(q.trim()).filter(|q| !q.is_empty()), 100).await?;
    let rows: Vec<Vec<Markup>> = found
        .iter()
        .map(c::organisation_out)
        .map(|o| {
            let mut cells = organisation_cells(&o);
            cells.push(html! { (o.parent.clone().unwrap_or_default()) });
            cells
        })
        .collect();
    let content = html! {
        h1 { "Organisations" }
        p { "Yours: " a href={ "/console/organisations/" (signed.actor.org) } { (signed.actor.org) } "." }
        form.search method="get" action="/console/organisations" role="search" {
            label for="q" { "Name or ODS code contains" }
            input #q name="q" value=(q);
            button type="submit" { "Find" }
        }
        (table("Organisations", &["ODS code", "Name", "Kind", "Within"], &rows))
    };
    Ok(page("Organisations", &signed, &content))
}

/// An organisation: what it is within, what is under it, and its positions with their job
/// roles and activities.
pub(crate) async fn organisation(State(app): State<App>, Path(ods): Path<String>, signed: Signed) -> Page {
    let code = OdsCode::parse(&ods)?;
    let (org, children) = app.service.organisation(&code).await?;
    let org = c::organisation_out(&org);
    let positions = app.service.positions_at(&code).await?;
    let child_rows: Vec<Vec<Markup>> =
        children.iter().map(c::organisation_out).map(|o| organisation_cells(&o)).collect();
    let position_rows: Vec<Vec<Markup>> = positions
        .iter()
        .map(|p| c::position_out(p, app.service.catalogue()))
        .map(|p| {
            vec![
                html! { (p.id) },
                html! { (p.name) },
                html! { code { (p.role) } " " (p.role_name.clone().unwrap_or_default()) },
                html! { (p.activities.join(", ")) },
                html! { @if p.assignable_by_sponsors { "yes" } @else { "by request" } },
                html! { (p.approved_by) " (" (p.approved_how) ")" },
            ]
        })
        .collect();
    let content = html! {
        h1 { (org.name) " (" (org.ods_code) ")" }
        dl.facts {
            dt { "Kind" } dd { (org.kind) }
            dt { "Within" } dd { @if let Some(parent) = &org.parent { a href={ "/console/organisations/" (parent) } { (parent) } } @else { "none (the top)" } }
        }
        h2 { "Positions" }
        (table("Positions, with their national job role and activities", &["Id", "Name", "Job role", "Activities", "Sponsors may assign", "Approved by"], &position_rows))
        h2 { "Organisations under it" }
        (table("Organisations under it", &["ODS code", "Name", "Kind"], &child_rows))
    };
    Ok(page("Organisation", &signed, &content))
}
