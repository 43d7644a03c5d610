//! `careid ra ...`: every RA operation from the command line, over the HTTP API.

use std::path::PathBuf;

use anyhow::anyhow;
use careid_domain::ids::{Email, NamePart, NiNumber, Phone, parse_date};
use careid_domain::model::{ContactDetails, PersonalDetails};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::client::{self, Client, Profiles};

#[derive(Debug, Args)]
pub struct RaArgs {
    #[command(flatten)]
    flags: client::ClientFlags,
    #[command(subcommand)]
    command: RaCommand,
}

/// A document seen at an identity check, written `kind:number` (`passport:123456789`).
fn document(s: &str) -> Result<Value, String> {
    let (kind, number) = s.split_once(':').ok_or("write documents as kind:number, like passport:123456789")?;
    Ok(json!({ "kind": kind, "number": number }))
}

/// A person's details as the command line takes them.
#[derive(Debug, Args)]
pub struct DetailsArgs {
    /// Title (Dr, Mrs, Mr...), if any.
    #[arg(long)]
    title: Option<String>,
    /// Given name, as on the identity documents.
    #[arg(long)]
    given_name: String,
    /// Family name, as on the identity documents.
    #[arg(long)]
    family_name: String,
    /// YYYY-MM-DD.
    #[arg(long)]
    date_of_birth: String,
    /// National Insurance number (AB123456C).
    #[arg(long)]
    ni_number: String,
    /// Email address: where unlock codes and notices go.
    #[arg(long)]
    email: Option<String>,
    /// Phone number.
    #[arg(long)]
    phone: Option<String>,
}

impl DetailsArgs {
    /// The details parsed into domain values, for commands that run in-process (`careid init`).
    pub fn parse(&self) -> anyhow::Result<(PersonalDetails, ContactDetails)> {
        let details = PersonalDetails {
            title: self.title.as_deref().map(|t| NamePart::parse("title", t)).transpose()?,
            given_name: NamePart::parse("given_name", &self.given_name)?,
            family_name: NamePart::parse("family_name", &self.family_name)?,
            date_of_birth: parse_date("date_of_birth", &self.date_of_birth)?,
            ni_number: NiNumber::parse(&self.ni_number)?,
        };
        let contact = ContactDetails {
            email: self.email.as_deref().map(Email::parse).transpose()?,
            phone: self.phone.as_deref().map(Phone::parse).transpose()?,
        };
        Ok((details, contact))
    }

    fn json(&self) -> Value {
        json!({
            "title": self.title, "given_name": self.given_name, "family_name": self.family_name,
            "date_of_birth": self.date_of_birth, "ni_number": self.ni_number,
            "email": self.email, "phone": self.phone,
        })
    }
}

fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

#[derive(Debug, Subcommand)]
enum RaCommand {
    /// Signs in with a recovery or interim credential and saves the session as a profile.
    Login {
        /// The profile name to save the session under (for `--as`).
        name: String,
        /// The credential. Better left out: it is then read from `CAREID_CREDENTIAL`, or asked
        /// for without echo, so that it never shows in the process list or the shell's history.
        #[arg(long)]
        credential: Option<String>,
        /// Which position to act in, if you hold several.
        #[arg(long)]
        assignment: Option<i64>,
    },
    /// Ends the session and forgets the profile.
    Logout,
    /// Shows who the session acts as.
    Whoami,
    /// One of the RA Manager's reports over an organisation and everything below it:
    /// lost-cards, duplicate-live-cards, leavers, expiring-certificates, dormant, coverage,
    /// card-costs.
    Report {
        name: String,
        /// The organisation (default: the one you act at).
        #[arg(long)]
        org: Option<String>,
        /// For card-costs: what one card costs, in pence (default: the deployment's setting).
        #[arg(long)]
        unit_cost_pence: Option<u64>,
        /// Print the table as CSV (a header line, then a line a row).
        #[arg(long)]
        csv: bool,
    },
    /// Records an RA spot check of an organisation: the day of the visit and what it found.
    SpotCheck {
        ods_code: String,
        /// The day of the visit (YYYY-MM-DD).
        #[arg(long)]
        visited_on: String,
        /// What the visit found.
        #[arg(long)]
        findings: String,
    },
    /// Organisations.
    #[command(subcommand)]
    Org(OrgCommand),
    /// The national job roles.
    Roles,
    /// The activity codes and their hierarchy.
    Activities,
    /// Positions.
    #[command(subcommand)]
    Position(PositionCommand),
    /// As a sponsor: pre-register a new member of staff for the RA to meet.
    Register {
        /// The organisation they will work at.
        #[arg(long)]
        org: String,
        #[command(flatten)]
        details: DetailsArgs,
        /// A position the sponsor seeks for them.
        #[arg(long)]
        position: Option<i64>,
        /// A note for the RA agent who will check their identity.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Lists pre-registrations at your organisation and below.
    Registrations {
        /// Include verified and rejected ones.
        #[arg(long)]
        all: bool,
    },
    /// As the RA: verify a pre-registered person's identity face to face and create the profile.
    Verify {
        registration: i64,
        /// Three documents, kind:number (one photo ID, one proof of address, one more).
        #[arg(long = "doc", value_parser = document, required = true)]
        documents: Vec<Value>,
    },
    /// As the RA: reject a pre-registration.
    RejectRegistration {
        registration: i64,
        /// Why it is rejected (the sponsor sees it).
        #[arg(long)]
        reason: String,
    },
    /// People.
    #[command(subcommand)]
    Person(PersonCommand),
    /// As an RA Manager: issue an interim sign-in credential to someone without a card yet.
    IssueCredential { uuid: String },
    /// Assigns a position (RA; sponsors only positions marked assignable).
    Assign {
        uuid: String,
        position: i64,
        /// First day (YYYY-MM-DD; default: today).
        #[arg(long)]
        start: Option<String>,
        /// Last day (YYYY-MM-DD; default: open-ended).
        #[arg(long)]
        end: Option<String>,
    },
    /// Sets when the holder of an assignment works (UK local time), like "mon-fri 08:00-18:30";
    /// a card login outside them is refused or flagged, as the organisation's policy says.
    WorkingHours {
        assignment: i64,
        /// The hours; leave out with --clear.
        #[arg(required_unless_present = "clear")]
        hours: Option<String>,
        /// Any time again.
        #[arg(long)]
        clear: bool,
    },
    /// Absences (leave, sickness) of the people in scope.
    #[command(subcommand)]
    Absence(AbsenceCommand),
    /// Ends an assignment early (it stays visible as removed).
    Unassign {
        assignment: i64,
        /// Why it ends early (kept with the assignment).
        #[arg(long)]
        reason: String,
    },
    /// As a sponsor: ask the RA to assign a position.
    Request {
        uuid: String,
        position: i64,
        /// First day (YYYY-MM-DD; default: today).
        #[arg(long)]
        start: Option<String>,
        /// Last day (YYYY-MM-DD; default: open-ended).
        #[arg(long)]
        end: Option<String>,
        /// Why the position is requested (the RA sees it).
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Lists sponsor requests at your organisation and below.
    Requests {
        /// Decided requests too, not only pending ones.
        #[arg(long)]
        all: bool,
    },
    /// As the RA: grant a sponsor's request.
    Grant { request: i64 },
    /// As the RA: reject a sponsor's request.
    Reject {
        request: i64,
        /// Why it is rejected (the sponsor sees it).
        #[arg(long)]
        reason: String,
    },
    /// Reads the audit log (RA Manager, privacy officer, Caldicott Guardian: in scope).
    Audit(AuditArgs),
    /// Reads your own audit trail.
    MyAudit(AuditArgs),
    /// A record with its inclusion proof in the latest signed checkpoint (your own records;
    /// the RA Manager, privacy officer and Caldicott Guardian: any in scope).
    Proof { seq: u64 },
    /// Says a record naming you was not you: opens an incident with the RA and the Caldicott
    /// Guardian of the organisation it concerns.
    NotMe {
        seq: u64,
        /// What you know of it (where you were, who else could have).
        #[arg(long)]
        comment: String,
    },
    /// The "not me" incidents in your scope (RA, privacy officer, Caldicott Guardian).
    Incidents {
        /// This organisation and those under it (default: your own).
        #[arg(long)]
        org: Option<String>,
    },
    /// Accesses to patient records reported by clinical applications (privacy officer,
    /// Caldicott Guardian, RA Manager), by patient, by person, or the alerts only.
    PatientAccess {
        /// The patient's NHS number.
        #[arg(long)]
        patient: Option<String>,
        /// Accesses by this person (12-digit identifier).
        #[arg(long)]
        person: Option<String>,
        /// This organisation and those under it (default: your own).
        #[arg(long)]
        org: Option<String>,
        /// Only self-claimed and emergency accesses.
        #[arg(long)]
        alerts: bool,
    },
    /// Flags a patient at an organisation: an access without a registration or referral then
    /// raises a high alert at once (privacy officer, Caldicott Guardian, senior RA).
    FlagPatient {
        /// The organisation (and those under it) whose staff's accesses are watched.
        ods_code: String,
        /// The patient's NHS number.
        nhs_number: String,
        /// Why the record needs watching (a VIP, a member of staff's family...).
        #[arg(long)]
        reason: String,
    },
    /// Lifts a patient's flag at an organisation.
    UnflagPatient { ods_code: String, nhs_number: String },
    /// The patients flagged at an organisation and those under it.
    FlaggedPatients { ods_code: String },
    /// Misuse cases: report someone (anyone may), and the queue, history, steps and export
    /// of cases for the privacy officer, Caldicott Guardian and senior RA.
    #[command(subcommand)]
    Cases(CaseCommand),
    /// The misuse alert queue, newest first: medium and high alerts raised live (privacy
    /// officer, Caldicott Guardian, RA).
    Alerts {
        /// This organisation and those under it (default: your own).
        #[arg(long)]
        org: Option<String>,
        /// Low alerts (context) too.
        #[arg(long)]
        low: bool,
    },
}

#[derive(Debug, Subcommand)]
enum CaseCommand {
    /// Reports suspected misuse by someone: the case goes to someone independent of them and
    /// of their sponsor, and they never learn who reported.
    Report {
        /// The 12-digit identifier of the person the report is about.
        subject: String,
        /// What you saw.
        #[arg(long)]
        comment: String,
    },
    /// The cases of your organisation and those under it, newest first.
    List {
        /// This organisation and those under it (default: your own).
        #[arg(long)]
        org: Option<String>,
        /// Closed cases too.
        #[arg(long)]
        all: bool,
    },
    /// One case with its history.
    Show { id: i64 },
    /// Gives a case its owner (never its subject or reporter).
    Assign {
        id: i64,
        /// The owner's 12-digit identifier.
        #[arg(long)]
        owner: String,
    },
    /// Adds a note to a case.
    Note {
        id: i64,
        /// The note (kept in the case's history and its audit record).
        #[arg(long)]
        note: String,
    },
    /// Links an audit record to a case as evidence.
    Evidence {
        id: i64,
        /// The record's position in the log.
        #[arg(long)]
        record: u64,
        /// Why it is evidence.
        #[arg(long, default_value = "")]
        why: String,
    },
    /// Closes a case (its owner): no_case_to_answer, retraining, warning, suspension,
    /// card_revoked, disciplinary or referral_to_ico.
    Close {
        id: i64,
        /// no_case_to_answer, retraining, warning, suspension, card_revoked, disciplinary or referral_to_ico.
        #[arg(long)]
        outcome: String,
        /// What the review found.
        #[arg(long)]
        review: String,
    },
    /// The case's history with each record's inclusion proof, for a tribunal (JSON).
    Export { id: i64 },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Finds organisations by code or name.
    List {
        /// Part of an organisation's ODS code or name.
        #[arg(long)]
        q: Option<String>,
    },
    Show {
        ods_code: String,
    },
    Create {
        /// The organisation's ODS code (F83001).
        #[arg(long)]
        ods_code: String,
        /// The organisation's name.
        #[arg(long)]
        name: String,
        /// icb, trust, gp_practice, pharmacy or other.
        #[arg(long)]
        kind: String,
        /// The ODS code of the organisation above it (which your position must cover).
        #[arg(long)]
        parent: String,
    },
    /// Imports organisations from CSV (header: ods_code,name,kind,parent), all or none.
    Import {
        file: PathBuf,
    },
    /// What a login while absent or outside working hours does here (and below, unless
    /// set there): refuse, or allow_and_alert (the default).
    AbsencePolicy {
        ods_code: String,
        policy: String,
    },
}

#[derive(Debug, Subcommand)]
enum AbsenceCommand {
    /// Records that someone is away, first to last day inclusive (YYYY-MM-DD).
    Record {
        uuid: String,
        /// annual_leave, sickness or other.
        #[arg(long)]
        kind: String,
        /// First day away (YYYY-MM-DD).
        #[arg(long)]
        from: String,
        /// Last day away (YYYY-MM-DD, inclusive).
        #[arg(long)]
        to: String,
    },
    /// Their absences from today on.
    List { uuid: String },
    /// Cancels a recorded absence.
    Cancel { id: i64 },
}

#[derive(Debug, Subcommand)]
enum PositionCommand {
    Create {
        /// The organisation the position is at (ODS code).
        #[arg(long)]
        org: String,
        /// The position's name (Receptionist, GP...).
        #[arg(long)]
        name: String,
        /// Role code triple, S8000:G8000:R8000.
        #[arg(long)]
        role: String,
        /// Activity codes (repeat, or comma-separated).
        #[arg(long = "activity", value_delimiter = ',')]
        activities: Vec<String>,
        /// What the position does.
        #[arg(long, default_value = "")]
        description: String,
        /// Who approved the position's access.
        #[arg(long)]
        approved_by: String,
        /// How it was approved (meeting, minute, reference).
        #[arg(long)]
        approved_how: String,
        /// Sponsors of the organisation may assign it directly.
        #[arg(long)]
        assignable: bool,
    },
    Show {
        id: i64,
    },
    /// The positions of an organisation.
    List {
        org: String,
    },
    /// Marks a position assignable by sponsors (or not, with --no).
    Assignable {
        id: i64,
        /// Mark it not assignable by sponsors.
        #[arg(long)]
        no: bool,
    },
}

#[derive(Debug, Subcommand)]
enum PersonCommand {
    /// As the RA: create a profile directly after a face-to-face check.
    Create {
        /// The organisation that registers them (ODS code).
        #[arg(long)]
        org: String,
        #[command(flatten)]
        details: DetailsArgs,
        /// An identity document seen, KIND:NUMBER (passport:501234567); one photo ID and a separate proof of address.
        #[arg(long = "doc", value_parser = document, required = true)]
        documents: Vec<Value>,
    },
    Show {
        uuid: String,
    },
    /// Finds people by the start of their family name.
    Find {
        family_name: String,
    },
    /// Records a change of name (face to face, with proof).
    ChangeName {
        uuid: String,
        /// The new given name.
        #[arg(long)]
        given_name: String,
        /// The new family name.
        #[arg(long)]
        family_name: String,
        /// A document proving the change, KIND:NUMBER (marriage_certificate:MC1234, deed_poll:DP99).
        #[arg(long = "doc", value_parser = document, required = true)]
        documents: Vec<Value>,
    },
    /// Corrects title, date of birth or NI number (names change through change-name).
    Details {
        uuid: String,
        #[command(flatten)]
        details: DetailsArgs,
    },
    /// Imports people verified by a previous RA system, all or none (RA Manager). CSV header:
    /// given_name,family_name,date_of_birth,ni_number,email,position,start
    Import {
        file: PathBuf,
    },
    /// Changes contact details (your own, or as the RA).
    Contact {
        uuid: String,
        /// The new email address.
        #[arg(long)]
        email: Option<String>,
        /// The new phone number.
        #[arg(long)]
        phone: Option<String>,
    },
    /// Closes a profile (a sponsor's close goes to the RA as a request).
    Close {
        uuid: String,
        /// Why the profile closes (kept with it).
        #[arg(long)]
        reason: String,
    },
    Reopen {
        uuid: String,
    },
    /// A leaver: removes an organisation from the profile.
    Leave {
        uuid: String,
        /// The organisation they leave (ODS code); their positions there end.
        #[arg(long)]
        org: String,
    },
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Records where this person acted or is the subject (12-digit identifier).
    #[arg(long)]
    person: Option<String>,
    /// Records about this organisation and those under it (ODS code).
    #[arg(long)]
    org: Option<String>,
    /// Records of this action (session.create, card.report, person.read...).
    #[arg(long)]
    action: Option<String>,
    /// Records of the sessions this card (its id) logged in.
    #[arg(long)]
    card: Option<i64>,
    /// RFC 3339 time.
    #[arg(long)]
    since: Option<String>,
    /// Records before this time (RFC 3339).
    #[arg(long)]
    until: Option<String>,
    /// Records before this position in the log (for the next page).
    #[arg(long)]
    before: Option<u64>,
    /// How many records (at most 1000).
    #[arg(long)]
    limit: Option<u32>,
}

impl AuditArgs {
    fn query(&self) -> String {
        let mut parts = Vec::new();
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={}", encode(&v)));
            }
        };
        add("person", self.person.clone());
        add("org", self.org.clone());
        add("action", self.action.clone());
        add("card", self.card.map(|c| c.to_string()));
        add("since", self.since.clone());
        add("until", self.until.clone());
        add("before", self.before.map(|b| b.to_string()));
        add("limit", self.limit.map(|l| l.to_string()));
        if parts.is_empty() { String::new() } else { format!("?{}", parts.join("&")) }
    }
}

/// Percent-encodes a query value.
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8420";

pub async fn run(args: RaArgs, default_server: String) -> anyhow::Result<()> {
    let flags = &args.flags;
    let server = flags.server.as_deref();
    let value = match args.command {
        RaCommand::Login { name, credential, assignment } => {
            let credential = match credential.or_else(|| std::env::var("CAREID_CREDENTIAL").ok()) {
                Some(credential) => zeroize::Zeroizing::new(credential),
                None => zeroize::Zeroizing::new(rpassword::prompt_password("Credential: ")?),
            };
            client::login(server.unwrap_or(&default_server), &name, credential.trim(), assignment).await?
        }
        RaCommand::Logout => {
            let mut profiles = Profiles::load()?;
            let name = flags.profile.clone().or(profiles.default.clone()).ok_or_else(|| anyhow!("not signed in"))?;
            let result = Client::for_profile(Some(&name), server)?.delete("/api/v1/sessions/current").await;
            profiles.profiles.remove(&name);
            if profiles.default.as_deref() == Some(&name) {
                profiles.default = None;
            }
            profiles.save()?;
            result.map(|_| json!({ "signed_out": name }))?
        }
        RaCommand::Report { csv: true, .. } => {
            // The server writes the CSV; it comes back as text.
            let value = call(&flags.client()?, args.command).await?;
            print!("{}", value.as_str().unwrap_or_default());
            return Ok(());
        }
        command => {
            let client = flags.client()?;
            let audit = matches!(command, RaCommand::Audit(_) | RaCommand::MyAudit(_));
            let done = done_message(&command);
            let value = call(&client, command).await?;
            if audit && !flags.json {
                client::print_audit(&value);
                return Ok(());
            }
            if let (Value::Null, Some(done), false) = (&value, done, flags.json) {
                println!("{done}");
                return Ok(());
            }
            value
        }
    };
    flags.print(&value)
}

/// A record's inclusion proof. The log is signed every second or so: a record newer than the
/// latest checkpoint gets its proof from the next one, waited for a few seconds.
async fn proof(c: &Client, seq: u64) -> anyhow::Result<Value> {
    let path = format!("/api/v1/audit/{seq}/proof");
    for _ in 0..10 {
        match c.get(&path).await {
            Err(e)
                if e.downcast_ref::<client::ApiFailure>().is_some_and(|f| {
                    f.status == 404 && f.body["error"]["message"].as_str().is_some_and(|m| m.contains("checkpoint"))
                }) =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
    c.get(&path).await
}

/// What a command that answers with no body did, said in words.
fn done_message(command: &RaCommand) -> Option<String> {
    Some(match command {
        RaCommand::Grant { request } => {
            format!("request {request} granted: the position is assigned (see `careid ra requests --all`)")
        }
        RaCommand::Reject { request, .. } => format!("request {request} rejected; the sponsor sees the reason"),
        RaCommand::RejectRegistration { registration, .. } => format!("registration {registration} rejected"),
        RaCommand::Unassign { assignment, .. } => {
            format!("assignment {assignment} removed early; it stays visible as removed")
        }
        RaCommand::UnflagPatient { nhs_number, ods_code } => {
            format!("patient {nhs_number} is no longer flagged at {ods_code}")
        }
        _ => return None,
    })
}

async fn call(c: &Client, command: RaCommand) -> anyhow::Result<Value> {
    match command {
        RaCommand::Login { .. } | RaCommand::Logout => unreachable_command(),
        RaCommand::Whoami => c.get("/api/v1/me").await,
        RaCommand::SpotCheck { ods_code, visited_on, findings } => {
            let body = json!({ "visited_on": visited_on, "findings": findings });
            c.post(&format!("/api/v1/organisations/{}/spot-checks", encode(&ods_code)), body).await
        }
        RaCommand::Report { name, org, unit_cost_pence, csv } => {
            let mut query = if csv { vec!["format=csv".to_owned()] } else { Vec::new() };
            query.extend(org.map(|o| format!("org={}", encode(&o))));
            query.extend(unit_cost_pence.map(|p| format!("unit_cost_pence={p}")));
            c.get(&format!("/api/v1/reports/{}?{}", encode(&name), query.join("&"))).await
        }
        RaCommand::Org(org) => match org {
            OrgCommand::List { q } => {
                c.get(&format!("/api/v1/organisations?q={}", encode(q.as_deref().unwrap_or("")))).await
            }
            OrgCommand::Show { ods_code } => c.get(&format!("/api/v1/organisations/{}", encode(&ods_code))).await,
            OrgCommand::Create { ods_code, name, kind, parent } => {
                c.post(
                    "/api/v1/organisations",
                    json!({ "ods_code": ods_code, "name": name, "kind": kind, "parent": parent }),
                )
                .await
            }
            OrgCommand::Import { file } => {
                c.post("/api/v1/organisations/import", client::organisations_csv(&file)?).await
            }
            OrgCommand::AbsencePolicy { ods_code, policy } => {
                let path = format!("/api/v1/organisations/{}/absence-policy", encode(&ods_code));
                c.put(&path, json!({ "policy": policy })).await
            }
        },
        RaCommand::Roles => c.get("/api/v1/job-roles").await,
        RaCommand::Activities => c.get("/api/v1/activities").await,
        RaCommand::Position(p) => match p {
            PositionCommand::Create {
                org,
                name,
                role,
                activities,
                description,
                approved_by,
                approved_how,
                assignable,
            } => {
                let body = json!({
                    "org": org, "name": name, "role": role, "activities": activities, "description": description,
                    "approved_by": approved_by, "approved_how": approved_how, "assignable_by_sponsors": assignable,
                });
                c.post("/api/v1/positions", body).await
            }
            PositionCommand::Show { id } => c.get(&format!("/api/v1/positions/{id}")).await,
            PositionCommand::List { org } => c.get(&format!("/api/v1/organisations/{}/positions", encode(&org))).await,
            PositionCommand::Assignable { id, no } => {
                c.put(&format!("/api/v1/positions/{id}/assignable"), json!({ "assignable_by_sponsors": !no })).await
            }
        },
        RaCommand::Register { org, details, position, note } => {
            let body = merge(details.json(), json!({ "org": org, "position_sought": position, "note": note }));
            c.post("/api/v1/registrations", body).await
        }
        RaCommand::Registrations { all } => c.get(&format!("/api/v1/registrations?pending={}", !all)).await,
        RaCommand::Verify { registration, documents } => {
            c.post(&format!("/api/v1/registrations/{registration}/verify"), json!({ "documents": documents })).await
        }
        RaCommand::RejectRegistration { registration, reason } => {
            c.post(&format!("/api/v1/registrations/{registration}/reject"), json!({ "reason": reason })).await
        }
        RaCommand::Person(p) => person(c, p).await,
        RaCommand::IssueCredential { uuid } => {
            c.post(&format!("/api/v1/people/{}/credentials", encode(&uuid)), json!({})).await
        }
        RaCommand::Assign { uuid, position, start, end } => {
            c.post("/api/v1/assignments", json!({ "person": uuid, "position": position, "start": start, "end": end }))
                .await
        }
        RaCommand::WorkingHours { assignment, hours, clear } => {
            let hours = if clear { None } else { hours };
            c.put(&format!("/api/v1/assignments/{assignment}/working-hours"), json!({ "working_hours": hours })).await
        }
        RaCommand::Absence(absence) => match absence {
            AbsenceCommand::Record { uuid, kind, from, to } => {
                let body = json!({ "kind": kind, "first_day": from, "last_day": to });
                c.post(&format!("/api/v1/people/{}/absences", encode(&uuid)), body).await
            }
            AbsenceCommand::List { uuid } => c.get(&format!("/api/v1/people/{}/absences", encode(&uuid))).await,
            AbsenceCommand::Cancel { id } => c.post(&format!("/api/v1/absences/{id}/cancel"), json!({})).await,
        },
        RaCommand::Unassign { assignment, reason } => {
            c.post(&format!("/api/v1/assignments/{assignment}/remove"), json!({ "reason": reason })).await
        }
        RaCommand::Request { uuid, position, start, end, note } => {
            let body = json!({ "person": uuid, "position": position, "start": start, "end": end, "note": note });
            c.post("/api/v1/requests", body).await
        }
        RaCommand::Requests { all } => c.get(&format!("/api/v1/requests?pending={}", !all)).await,
        RaCommand::Grant { request } => c.post(&format!("/api/v1/requests/{request}/grant"), json!({})).await,
        RaCommand::Reject { request, reason } => {
            c.post(&format!("/api/v1/requests/{request}/reject"), json!({ "reason": reason })).await
        }
        RaCommand::Audit(a) => c.get(&format!("/api/v1/audit{}", a.query())).await,
        RaCommand::MyAudit(a) => c.get(&format!("/api/v1/me/audit{}", a.query())).await,
        RaCommand::Proof { seq } => proof(c, seq).await,
        RaCommand::NotMe { seq, comment } => {
            c.post(&format!("/api/v1/audit/{seq}/not-me"), json!({ "comment": comment })).await
        }
        RaCommand::PatientAccess { patient, person, org, alerts } => {
            let mut parts = vec![format!("alerts={alerts}")];
            for (name, value) in [("patient", patient), ("person", person), ("org", org)] {
                if let Some(value) = value {
                    parts.push(format!("{name}={}", encode(&value)));
                }
            }
            c.get(&format!("/api/v1/patient-access?{}", parts.join("&"))).await
        }
        RaCommand::FlagPatient { ods_code, nhs_number, reason } => {
            let body = json!({ "nhs_number": nhs_number, "reason": reason });
            c.post(&format!("/api/v1/organisations/{}/flagged-patients", encode(&ods_code)), body).await
        }
        RaCommand::UnflagPatient { ods_code, nhs_number } => {
            let body = json!({ "nhs_number": nhs_number });
            c.post(&format!("/api/v1/organisations/{}/flagged-patients/lift", encode(&ods_code)), body).await
        }
        RaCommand::FlaggedPatients { ods_code } => {
            c.get(&format!("/api/v1/organisations/{}/flagged-patients", encode(&ods_code))).await
        }
        RaCommand::Cases(command) => match command {
            CaseCommand::Report { subject, comment } => {
                c.post("/api/v1/cases", json!({ "subject": subject, "comment": comment })).await
            }
            CaseCommand::List { org, all } => {
                let mut query = format!("?all={all}");
                if let Some(org) = org {
                    query.push_str(&format!("&org={}", encode(&org)));
                }
                c.get(&format!("/api/v1/cases{query}")).await
            }
            CaseCommand::Show { id } => c.get(&format!("/api/v1/cases/{id}")).await,
            CaseCommand::Assign { id, owner } => {
                c.post(&format!("/api/v1/cases/{id}/assign"), json!({ "owner": owner })).await
            }
            CaseCommand::Note { id, note } => {
                c.post(&format!("/api/v1/cases/{id}/notes"), json!({ "note": note })).await
            }
            CaseCommand::Evidence { id, record, why } => {
                c.post(&format!("/api/v1/cases/{id}/evidence"), json!({ "record": record, "why": why })).await
            }
            CaseCommand::Close { id, outcome, review } => {
                c.post(&format!("/api/v1/cases/{id}/close"), json!({ "outcome": outcome, "review": review })).await
            }
            CaseCommand::Export { id } => c.get(&format!("/api/v1/cases/{id}/export")).await,
        },
        RaCommand::Alerts { org, low } => {
            let mut query = format!("?low={low}");
            if let Some(org) = org {
                query.push_str(&format!("&org={}", encode(&org)));
            }
            c.get(&format!("/api/v1/alerts{query}")).await
        }
        RaCommand::Incidents { org } => {
            let query = org.map(|o| format!("?org={}", encode(&o))).unwrap_or_default();
            c.get(&format!("/api/v1/audit/incidents{query}")).await
        }
    }
}

fn unreachable_command() -> anyhow::Result<Value> {
    Err(anyhow!("login and logout are handled before a session is needed"))
}

async fn person(c: &Client, command: PersonCommand) -> anyhow::Result<Value> {
    match command {
        PersonCommand::Create { org, details, documents } => {
            c.post("/api/v1/people", merge(details.json(), json!({ "org": org, "documents": documents }))).await
        }
        PersonCommand::Show { uuid } => c.get(&format!("/api/v1/people/{}", encode(&uuid))).await,
        PersonCommand::Find { family_name } => {
            c.get(&format!("/api/v1/people?family_name={}", encode(&family_name))).await
        }
        PersonCommand::ChangeName { uuid, given_name, family_name, documents } => {
            let body = json!({ "given_name": given_name, "family_name": family_name, "documents": documents });
            c.post(&format!("/api/v1/people/{}/name", encode(&uuid)), body).await
        }
        PersonCommand::Details { uuid, details } => {
            c.put(&format!("/api/v1/people/{}/details", encode(&uuid)), details.json()).await
        }
        PersonCommand::Import { file } => c.post("/api/v1/people/import", client::people_csv(&file)?).await,
        PersonCommand::Contact { uuid, email, phone } => {
            c.put(&format!("/api/v1/people/{}/contact", encode(&uuid)), json!({ "email": email, "phone": phone })).await
        }
        PersonCommand::Close { uuid, reason } => {
            c.post(&format!("/api/v1/people/{}/close", encode(&uuid)), json!({ "reason": reason })).await
        }
        PersonCommand::Reopen { uuid } => c.post(&format!("/api/v1/people/{}/reopen", encode(&uuid)), json!({})).await,
        PersonCommand::Leave { uuid, org } => {
            c.post(&format!("/api/v1/people/{}/leave", encode(&uuid)), json!({ "org": org })).await
        }
    }
}
