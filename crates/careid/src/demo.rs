//! `careid demo`: a realistic RA area on a fresh embedded database, then the server.
//!
//! One integrated care board with 30 GP practices and 2 trusts, positions built from national
//! job roles and activities, about 600 staff, RA staff and sponsors, pending registrations and
//! requests, and leavers. Everything is created through the same use cases the API calls, so
//! the audit log tells the whole story. Sessions for the demo's RA staff are saved as CLI
//! profiles (`demo-...`), so the printed commands work at once.

use anyhow::Context;
use careid_domain::access::Actor;
use careid_domain::ids::DisplayText;
use careid_domain::ids::{ActivityCode, Email, NamePart, NiNumber, OdsCode, PersonUuid, PositionId, RoleTriple};
use careid_domain::model::{
    ContactDetails, IdentityDocument, IdentityEvidence, NewPosition, Organisation, OrganisationKind, PersonalDetails,
    PositionApproval,
};
use careid_domain::secret::Secret;
use careid_service::{
    AssignmentTerms, ImportPerson, InitDeployment, NewPerson, NewRegistration, RequestContext, Service,
};
use std::path::PathBuf;
use time::Date;

use crate::client::{Profile, Profiles, write_private};
use crate::config::Config;

/// Where `careid demo` keeps its data unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "careid-demo";

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo's database goes; it is replaced on every run.
    #[arg(long, default_value = DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Address to listen on (overrides the configuration).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Build the data set, print what to try, and exit without serving.
    #[arg(long)]
    no_serve: bool,
}

/// A small deterministic generator, so every demo has the same people.
struct Names {
    state: u64,
}

const GIVEN: &[&str] = &[
    "Amelia", "Oliver", "Priya", "Mohammed", "Grace", "Harry", "Aisha", "Jack", "Chloe", "Daniel", "Fatima", "George",
    "Hannah", "Isaac", "Jasmine", "Kwame", "Laura", "Liam", "Maya", "Noah", "Olivia", "Ravi", "Sophie", "Thomas",
    "Zara", "Ewan", "Siobhan", "Tomasz", "Ngozi", "Yusuf",
];
const FAMILY: &[&str] = &[
    "Smith", "Jones", "Patel", "Khan", "Williams", "Brown", "Taylor", "Davies", "Evans", "Wilson", "Thomas", "Roberts",
    "Johnson", "Walker", "Wright", "Robinson", "Thompson", "White", "Hughes", "Edwards", "Green", "Hall", "Wood",
    "Harris", "Lewis", "Martin", "Jackson", "Clarke", "Clark", "Turner", "Hill", "Scott", "Cooper", "Morris", "Ward",
    "Moore", "King", "Watson", "Baker", "Harrison", "Okafor", "Nowak", "Begum", "Ali", "Chen", "Murphy", "Kelly",
];
const PRACTICE_PLACES: &[&str] = &[
    "Camden Road",
    "Kentish Town",
    "Holloway",
    "Archway",
    "Highgate",
    "Muswell Hill",
    "Crouch End",
    "Finsbury Park",
    "Tufnell Park",
    "Belsize Park",
    "Swiss Cottage",
    "West Hampstead",
    "Kilburn",
    "Somers Town",
    "Caledonian",
    "Barnsbury",
    "Canonbury",
    "Stroud Green",
    "Hornsey",
    "Wood Green",
    "Bounds Green",
    "Palmers Green",
    "Southgate",
    "Enfield Town",
    "Edmonton",
    "Tottenham Hale",
    "Seven Sisters",
    "Hendon",
    "Golders Green",
    "Finchley",
];

impl Names {
    fn next(&mut self) -> u64 {
        // SplitMix64: small, fast, and good enough for made-up names.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }

    fn date_of_birth(&mut self) -> Date {
        let year = 1960 + (self.next() % 41) as i32;
        let ordinal = 1 + (self.next() % 365) as u16;
        Date::from_ordinal_date(year, ordinal).unwrap_or(Date::MIN)
    }
}

/// The `n`-th valid NI number of the demo (prefixes HMRC allocates, then six digits).
pub fn demo_ni_number(n: u64) -> NiNumber {
    const FIRST: &[u8] = b"ABCEHJKLMPRSTWY";
    const SECOND: &[u8] = b"ABCEHJKLMPRSWXY";
    let digits = n % 1_000_000;
    let pair = (n / 1_000_000) as usize;
    let first = FIRST[pair / SECOND.len() % FIRST.len()] as char;
    let second = SECOND[pair % SECOND.len()] as char;
    let suffix = ["A", "B", "C", "D"][(n % 4) as usize];
    NiNumber::parse(&format!("{first}{second}{digits:06}{suffix}")).unwrap_or_else(|_| unreachable_ni())
}

fn unreachable_ni() -> NiNumber {
    // Every prefix above is allocatable; this cannot happen, and a test checks it.
    NiNumber::parse("AB000000A").unwrap_or_else(|_| std::process::abort())
}

fn role(s: &str) -> anyhow::Result<RoleTriple> {
    Ok(RoleTriple::parse(s)?)
}

fn activities(codes: &[&str]) -> anyhow::Result<Vec<ActivityCode>> {
    Ok(codes.iter().map(|c| ActivityCode::parse(c)).collect::<Result<_, _>>()?)
}

struct PositionSpec {
    name: &'static str,
    role: &'static str,
    activities: &'static [&'static str],
    assignable: bool,
    /// How many staff hold it in each organisation of its kind.
    staff: usize,
}

const PRACTICE_POSITIONS: &[PositionSpec] = &[
    PositionSpec {
        name: "GP Partner",
        role: "S8000:G8000:R0260",
        activities: &["B0360", "B0825", "B1611", "B0401"],
        assignable: false,
        staff: 2,
    },
    PositionSpec {
        name: "Salaried GP",
        role: "S8000:G8000:R0260",
        activities: &["B0360", "B0401"],
        assignable: false,
        staff: 2,
    },
    PositionSpec {
        name: "Practice Nurse",
        role: "S8000:G8000:R8001",
        activities: &["B0360", "B0428"],
        assignable: true,
        staff: 3,
    },
    PositionSpec {
        name: "Receptionist",
        role: "S0080:G0440:R8009",
        activities: &["B0560", "B0825"],
        assignable: true,
        staff: 5,
    },
    PositionSpec {
        name: "Medical Secretary",
        role: "S0080:G0440:R8006",
        activities: &["B0560"],
        assignable: true,
        staff: 1,
    },
    PositionSpec {
        name: "Practice Manager (Sponsor)",
        role: "S0080:G0440:R8011",
        activities: &["B1300", "B0560", "B9903"],
        assignable: false,
        staff: 1,
    },
];

const TRUST_POSITIONS: &[PositionSpec] = &[
    PositionSpec {
        name: "Consultant",
        role: "S8000:G8000:R0050",
        activities: &["B0360", "B1611", "B0401"],
        assignable: false,
        staff: 22,
    },
    PositionSpec {
        name: "Staff Nurse",
        role: "S8000:G8000:R0620",
        activities: &["B0360", "B0428"],
        assignable: true,
        staff: 40,
    },
    PositionSpec {
        name: "Pharmacist",
        role: "S8000:G8000:R1290",
        activities: &["B0570", "B0401"],
        assignable: false,
        staff: 6,
    },
    PositionSpec { name: "Ward Clerk", role: "S0080:G0440:R8010", activities: &["B0560"], assignable: true, staff: 14 },
    PositionSpec { name: "Sponsor", role: "S0080:G0440:R8011", activities: &["B1300"], assignable: false, staff: 1 },
];

const ICB_POSITIONS: &[PositionSpec] = &[
    PositionSpec {
        name: "RA Agent (Sponsor)",
        role: "S0080:G0450:R5090",
        activities: &["B1300"],
        assignable: false,
        staff: 1,
    },
    PositionSpec {
        name: "RA Agent (Advanced)",
        role: "S0080:G0450:R5090",
        activities: &["B9901"],
        assignable: false,
        staff: 1,
    },
    PositionSpec {
        name: "Identity Checker",
        role: "S0080:G0440:R8010",
        activities: &["B9902"],
        assignable: false,
        staff: 1,
    },
    PositionSpec {
        name: "Privacy Officer",
        role: "S0080:G0450:R0001",
        activities: &["B0015", "B0016"],
        assignable: false,
        staff: 1,
    },
    PositionSpec {
        name: "Caldicott Guardian",
        role: "S8000:G8000:R5105",
        activities: &["B0015", "B0016"],
        assignable: false,
        staff: 1,
    },
];

/// What the demo built, for the instructions it prints.
pub struct DemoArea {
    pub manager: PersonUuid,
    pub agent: PersonUuid,
    pub sponsor: PersonUuid,
    pub sponsor_practice: OdsCode,
    pub receptionist_position: PositionId,
    pub gp_position: PositionId,
    pub people: usize,
    /// Profile name and the interim (or recovery) credential behind it.
    pub credentials: Vec<(String, PersonUuid, Secret)>,
    pub sample_person: PersonUuid,
    pub privacy_officer: PersonUuid,
    /// Who gets a demo card: the RA staff and the first practice's staff.
    pub card_holders: Vec<PersonUuid>,
}

fn details(names: &mut Names, n: u64) -> anyhow::Result<PersonalDetails> {
    Ok(PersonalDetails {
        title: None,
        given_name: NamePart::parse("given_name", names.pick(GIVEN))?,
        family_name: NamePart::parse("family_name", names.pick(FAMILY))?,
        date_of_birth: names.date_of_birth(),
        ni_number: demo_ni_number(n),
    })
}

fn contact(d: &PersonalDetails, n: u64) -> anyhow::Result<ContactDetails> {
    let email =
        format!("{}.{}{n}@nhs.net", d.given_name.as_str().to_lowercase(), d.family_name.as_str().to_lowercase());
    Ok(ContactDetails { email: Some(Email::parse(&email)?), phone: None })
}

/// Builds the demo RA area through the service. `service` must be on an empty store.
pub async fn build(service: &Service) -> anyhow::Result<DemoArea> {
    let ctx = RequestContext::new("demo-setup");
    let icb = OdsCode::parse("QMJ")?;
    let init = service
        .init_deployment(
            &ctx,
            InitDeployment {
                org: Organisation {
                    ods_code: icb.clone(),
                    name: DisplayText::sanitised("NHS North Central London Integrated Care Board"),
                    kind: OrganisationKind::IntegratedCareBoard,
                    parent: None,
                },
                manager: PersonalDetails {
                    title: Some(NamePart::parse("title", "Ms")?),
                    given_name: NamePart::parse("given_name", "Amira")?,
                    family_name: NamePart::parse("family_name", "Okafor")?,
                    date_of_birth: Date::from_calendar_date(1978, time::Month::May, 14)?,
                    ni_number: NiNumber::parse("JT493810B")?,
                },
                contact: ContactDetails { email: Some(Email::parse("amira.okafor@nhs.net")?), phone: None },
            },
        )
        .await?;
    let manager = service.login(&ctx, &init.recovery_credential, None).await?.actor;

    let mut orgs = vec![
        Organisation {
            ods_code: OdsCode::parse("RAL")?,
            name: DisplayText::sanitised("Royal Free London NHS Foundation Trust"),
            kind: OrganisationKind::NhsTrust,
            parent: Some(icb.clone()),
        },
        Organisation {
            ods_code: OdsCode::parse("RRV")?,
            name: DisplayText::sanitised("University College London Hospitals NHS Foundation Trust"),
            kind: OrganisationKind::NhsTrust,
            parent: Some(icb.clone()),
        },
    ];
    for (i, place) in PRACTICE_PLACES.iter().enumerate() {
        let suffix = if i % 3 == 0 {
            "Surgery"
        } else if i % 3 == 1 {
            "Medical Centre"
        } else {
            "Group Practice"
        };
        orgs.push(Organisation {
            ods_code: OdsCode::parse(&format!("F83{:03}", i + 1))?,
            name: DisplayText::sanitised(&format!("{place} {suffix}")),
            kind: OrganisationKind::GpPractice,
            parent: Some(icb.clone()),
        });
    }
    service.import_organisations(&ctx, &manager, orgs.clone()).await?;

    let mut names = Names { state: 0x00CA_4E1D };
    let mut serial = 1u64;
    let mut batch = Vec::new();
    let mut positions_by_org = Vec::new();
    let start = service.clock().now().date() - time::Duration::days(400);
    let org_specs: Vec<(OdsCode, &[PositionSpec])> = std::iter::once((icb.clone(), ICB_POSITIONS))
        .chain(orgs.iter().map(|o| {
            let specs = if o.kind == OrganisationKind::NhsTrust { TRUST_POSITIONS } else { PRACTICE_POSITIONS };
            (o.ods_code.clone(), specs)
        }))
        .collect();
    for (org, specs) in &org_specs {
        let mut ids = Vec::new();
        for spec in *specs {
            let id = service
                .create_position(
                    &ctx,
                    &manager,
                    NewPosition {
                        org: org.clone(),
                        name: DisplayText::sanitised(spec.name),
                        role: role(spec.role)?,
                        activities: activities(spec.activities)?,
                        description: format!("{} at {org}", spec.name),
                        approval: PositionApproval {
                            approved_by: DisplayText::sanitised("NCL ICB Information Governance Group"),
                            how: DisplayText::sanitised("IGG minute 2025/14, standard role profile"),
                        },
                        assignable_by_sponsors: spec.assignable,
                    },
                )
                .await?;
            ids.push(id);
            for _ in 0..spec.staff {
                let d = details(&mut names, serial)?;
                batch.push(ImportPerson { contact: contact(&d, serial)?, details: d, position: id, start });
                serial += 1;
            }
        }
        positions_by_org.push((org.clone(), ids));
    }
    let people = service.import_people(&ctx, &manager, batch).await?;

    // Who is who: the import keeps order, so the n-th person holds the n-th slot above.
    let slot = |org_index: usize, position_index: usize| -> usize {
        let mut n = 0;
        for (i, (_, specs)) in org_specs.iter().enumerate() {
            for (j, spec) in specs.iter().enumerate() {
                if i == org_index && j == position_index {
                    return n;
                }
                n += spec.staff;
            }
        }
        n
    };
    let agent = people[slot(0, 0)].clone();
    let id_checker = people[slot(0, 2)].clone();
    let privacy_officer = people[slot(0, 3)].clone();
    // The practice manager of the first practice (organisation index 3: ICB, 2 trusts, then practices).
    let sponsor = people[slot(3, 5)].clone();
    let sponsor_practice = OdsCode::parse("F83001")?;
    let practice_positions = &positions_by_org[3].1;
    let gp_position = practice_positions[1];
    let receptionist_position = practice_positions[3];

    let mut credentials = vec![("demo-ra-manager".to_owned(), init.manager.clone(), init.recovery_credential)];
    for (name, who) in [
        ("demo-ra-agent", &agent),
        ("demo-sponsor", &sponsor),
        ("demo-id-checker", &id_checker),
        ("demo-privacy-officer", &privacy_officer),
    ] {
        let (secret, _) = service.issue_credential(&ctx, &manager, who).await?;
        credentials.push((name.to_owned(), who.clone(), secret));
    }
    let sponsor_actor = login(service, &credentials[2].2).await?;
    let agent_actor = login(service, &credentials[1].2).await?;

    // Pending pre-registrations at the first practice.
    for _ in 0..3 {
        let d = details(&mut names, serial)?;
        let registration = NewRegistration {
            org: sponsor_practice.clone(),
            contact: contact(&d, serial)?,
            details: d,
            position_sought: Some(receptionist_position),
            note: "starts next month".into(),
        };
        service.pre_register(&ctx, &sponsor_actor, registration).await?;
        serial += 1;
    }
    // Sponsor requests for positions only the RA may assign: a receptionist moving up to GP
    // work is not something a practice manager may grant alone.
    let receptionists = slot(3, 3);
    for person in &people[receptionists..receptionists + 2] {
        service
            .request_position(
                &ctx,
                &sponsor_actor,
                person,
                AssignmentTerms { position: gp_position, start: start + time::Duration::days(400), end: None },
                "GP registrar rotation".into(),
            )
            .await?;
    }
    // One person the RA created directly after a face-to-face check.
    let d = details(&mut names, serial)?;
    let documents = vec![
        IdentityDocument::parse("passport", "533401982")?,
        IdentityDocument::parse("council_tax_bill", "CT88120")?,
        IdentityDocument::parse("bank_statement", "40112233")?,
    ];
    let direct = NewPerson {
        org: sponsor_practice.clone(),
        contact: contact(&d, serial)?,
        details: d,
        evidence: IdentityEvidence::new(documents)?,
    };
    let sample_person = service.create_person(&ctx, &agent_actor, direct).await?;
    // Leavers: three staff left the second practice; one profile closed.
    let second = slot(4, 3);
    let second_practice = OdsCode::parse("F83002")?;
    for person in &people[second..second + 3] {
        service.remove_from_organisation(&ctx, &agent_actor, person, &second_practice).await?;
    }
    service.close_profile(&ctx, &agent_actor, &people[second], "left the NHS".into()).await?;
    // A practice manager reports a receptionist she saw using a colleague's card (seed F3):
    // the case goes to the ICB's privacy officer and RA Manager, never back to the practice.
    service
        .report_misuse(
            &ctx,
            &sponsor_actor,
            &people[receptionists + 2],
            "seen logging in at reception with a colleague's card",
        )
        .await?;

    // Demo cards: every member of staff at the first practice but its practice manager. The
    // demo's RA staff and sponsor act from the command line with interim credentials, which
    // careid gives only to people without an active card.
    let card_holders: Vec<PersonUuid> =
        people[slot(3, 0)..slot(4, 0)].iter().filter(|p| **p != sponsor).cloned().collect();
    Ok(DemoArea {
        manager: init.manager,
        agent,
        sponsor,
        sponsor_practice,
        receptionist_position,
        gp_position,
        people: people.len() + 2,
        card_holders,
        credentials,
        sample_person,
        privacy_officer,
    })
}

async fn login(service: &Service, credential: &Secret) -> anyhow::Result<Actor> {
    Ok(service.login(&RequestContext::new("demo-setup"), credential, None).await?.actor)
}

pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    crate::client::private_dir(&args.data_dir)?;
    for file in ["careid.db", "careid.db-wal", "careid.db-shm"] {
        let _ = std::fs::remove_file(args.data_dir.join(file));
    }
    config.data_dir.clone_from(&args.data_dir);
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    config.store_url.0.clear();
    // Demo sessions stay alive for a working day, so the printed commands keep working.
    config.session_idle_timeout_seconds = config.session_absolute_lifetime_seconds;
    for dir in ["pki", "cards"] {
        let _ = std::fs::remove_dir_all(args.data_dir.join(dir));
    }
    let _ = std::fs::remove_file(config.master_key_path());
    crate::create_card_authority(&config, "careid demo")?;
    let (store, service) = crate::open_service(&config).await?;
    eprintln!("building the demo RA area...");
    let area = build(&service).await?;
    eprintln!("issuing demo virtual cards...");
    let cards = issue_demo_cards(&config, &service, &area, &args.data_dir.join("cards")).await?;

    let address = config.listen;
    let listener = tokio::net::TcpListener::bind(address).await.with_context(|| format!("listening on {address}"))?;
    let url = format!("http://{}", listener.local_addr()?);
    let default_profile = save_profiles(&service, &url, &area).await?;
    let credentials_file = args.data_dir.join("credentials.txt");
    let mut listing = String::new();
    for (name, person, secret) in &area.credentials {
        listing.push_str(&format!("{name} {person} {}\n", secret.expose()));
    }
    write_private(&credentials_file, listing.as_bytes())?;
    print_tour(&url, &area, &credentials_file, &default_profile);
    println!("{cards}");
    if !args.no_serve {
        println!("\nPress Ctrl-C to stop.");
    }
    if args.no_serve {
        store.checkpoint_wal().await;
        return Ok(());
    }
    if config.smtp_url.0.is_empty() {
        // No relay: the demo's email goes to files its user can read (self-service unlock codes).
        let mailbox = crate::mail::MailboxDir::new(&args.data_dir.join("mailbox"))?;
        let every = std::time::Duration::from_secs(u64::from(config.outbox_poll_seconds));
        tokio::spawn(crate::mail::deliver_forever(service.clone(), mailbox, every));
    }
    let served = crate::serve(listener, service, &config).await;
    // As `careid serve` does: the database file alone holds the demo once it stops.
    store.checkpoint_wal().await;
    served
}

/// Signs the demo's staff in and saves their sessions as CLI profiles; the RA Manager's
/// becomes the default only where there was none. Returns a line saying which it is.
async fn save_profiles(service: &Service, url: &str, area: &DemoArea) -> anyhow::Result<String> {
    let mut profiles = Profiles::load()?;
    for (name, _, credential) in &area.credentials {
        let outcome = service.login(&RequestContext::new("demo-setup"), credential, None).await?;
        profiles.profiles.insert(
            name.clone(),
            Profile {
                server: url.to_owned(),
                token: outcome.token.expose().to_owned(),
                person: outcome.actor.person.to_string(),
                org: outcome.actor.org.to_string(),
                role: outcome.actor.role.to_string(),
            },
        );
    }
    let said = match &profiles.default {
        Some(kept) if kept != "demo-ra-manager" => {
            format!("Your default CLI profile ({kept}) is unchanged: the commands below name theirs with --as.")
        }
        _ => {
            profiles.default = Some("demo-ra-manager".into());
            "Default CLI profile: demo-ra-manager (commands without --as act as the RA Manager).".to_owned()
        }
    };
    profiles.save()?;
    Ok(said)
}

fn print_tour(url: &str, area: &DemoArea, credentials_file: &std::path::Path, default_profile: &str) {
    let r = area.receptionist_position;
    let gp = area.gp_position;
    let practice = &area.sponsor_practice;
    println!(
        "
careid demo: {url}
  NHS North Central London ICB (QMJ): 2 trusts, 30 GP practices, {people} people.
  RA Manager {manager}, RA agent {agent}, sponsor {sponsor} (practice manager at {practice}).
  CLI profiles saved for: demo-ra-manager, demo-ra-agent, demo-sponsor, demo-id-checker, demo-privacy-officer
  (credentials in {creds}). OpenAPI: {url}/api/openapi.json  Metrics: {url}/metrics
  {default_profile}

Try, in another terminal (prefix `cargo run --release --` if careid is not installed):

  # A sponsor pre-registers a new receptionist at {practice}
  careid ra --as demo-sponsor register --org {practice} --given-name Priya --family-name Shah \\
      --date-of-birth 1991-04-12 --ni-number JK123456A --email priya.shah@nhs.net --position {r}
  # ... and the same person again: refused as a duplicate
  careid ra --as demo-sponsor register --org {practice} --given-name Priya --family-name Shah \\
      --date-of-birth 1991-04-12 --ni-number JK123456A
  # The RA agent meets her, checks three documents, creates her profile
  careid ra --as demo-ra-agent registrations
  careid ra --as demo-ra-agent verify <REGISTRATION> --doc passport:501234567 --doc utility_bill:E123 --doc bank_statement:9911
  # The position she was pre-registered for is a request: the agent grants it
  careid ra --as demo-ra-agent requests
  careid ra --as demo-ra-agent grant <REQUEST>
  # The sponsor may assign positions marked assignable ({r}), not others ({gp}):
  careid ra --as demo-sponsor assign {sample} {r}
  careid ra --as demo-sponsor assign {sample} {gp}
  careid ra --as demo-sponsor request {sample} {gp} --note 'covering sessions'
  # The agent (also a sponsor) requests a position, then tries to grant their own request: refused
  careid ra --as demo-ra-agent request {sample} {gp} --start 2030-01-01
  careid ra --as demo-ra-agent grant <THAT_REQUEST>
  # Everything above is in the audit log, refusals included
  careid ra --as demo-ra-manager audit --limit 20
  careid ra --as demo-ra-agent my-audit
  # The RA Manager's reports: lost cards and whether each was investigated before replacement,
  # leavers still holding cards, certificates about to expire, coverage (also as --csv)
  careid ra --as demo-ra-manager report lost-cards
  careid ra --as demo-ra-manager report expiring-certificates
  careid ra --as demo-ra-manager report coverage --csv
  # Misuse: a practice manager's report and the lost card above are cases for the ICB's privacy
  # officer (never for the practice); off-duty logins and passcode sweeps raise alerts
  careid ra --as demo-privacy-officer cases list
  careid ra --as demo-ra-manager cases assign <CASE> --owner {privacy_officer}
  careid ra --as demo-privacy-officer cases close <CASE> --outcome retraining --review 'spoke to her'
  careid ra --as demo-privacy-officer alerts",
        people = area.people,
        creds = credentials_file.display(),
        sample = area.sample_person,
        manager = area.manager,
        agent = area.agent,
        sponsor = area.sponsor,
        privacy_officer = area.privacy_officer,
    );
}

/// A passcode the policy accepts, for a demo card.
fn demo_passcode(names: &mut Names, date_of_birth: Date) -> careid_domain::passcode::Passcode {
    loop {
        let digits = format!("{:06}", names.next() % 1_000_000);
        if let Ok(passcode) = careid_domain::passcode::choose(&digits, &digits, date_of_birth) {
            return passcode;
        }
    }
}

/// Issues demo virtual cards through the same ceremonies a desk runs: most active, two locked
/// by wrong passcodes, one lost with its investigation open, two expiring within 90 days.
/// Their passcodes go to a file labelled as a demo: with real cards nobody but the holder
/// knows one.
async fn issue_demo_cards(
    config: &Config,
    service: &Service,
    area: &DemoArea,
    dir: &std::path::Path,
) -> anyhow::Result<String> {
    use careid_card::{Card, VirtualCard};
    use careid_pki::BoxRecipient;
    use careid_service::{CardReport, Ceremony, ReleasedSecrets, open_issue_secret};

    crate::client::private_dir(dir)?;
    let ctx = RequestContext::new("demo-setup");
    let agent = login(service, &area.credentials[1].2).await?;
    // Two cards are issued by a CA configured for short certificates, so they fall due soon.
    let mut short = crate::load_card_authority(config)?.ok_or_else(|| anyhow::anyhow!("the demo CA is missing"))?;
    short.certificate_validity = time::Duration::days(60);
    let soon = Service::new(
        service.store().clone(),
        service.clock().clone(),
        std::sync::Arc::new(careid_service::OsRandom),
        config.service_settings(),
    )
    .with_card_authority(short);
    let mut names = Names { state: 0x000C_A4D5 };
    let mut passcodes = String::from(
        "# DEMO ONLY. These are virtual cards, not security devices: a real card's passcode is known\n\
         # to its holder alone. person card_id card_file passcode state\n",
    );
    let mut summary = Vec::new();
    let mut locked_example = None;
    let mut self_unlock_example = None;
    let mut active_example = None;
    for (n, holder) in area.card_holders.iter().enumerate() {
        let issuer = &agent;
        let path = dir.join(format!("{holder}.json"));
        let mut card = VirtualCard::create(&path)?;
        let recipient = BoxRecipient::new()?;
        let (id, sealed) =
            service.begin_card_issue(&ctx, issuer, holder, card.status()?.serial, recipient.public_key()).await?;
        let administrator = open_issue_secret(recipient, &sealed)?;
        card.initialise(&Secret::new("careid-transport".into()), &administrator, "careid demo")?;
        let public_key = card.generate_key(&administrator)?;
        let certifier = if n == 4 || n == 5 { &soon } else { service };
        card.store_certificate(&certifier.certify_card(&ctx, issuer, id, &public_key).await?)?;
        let date_of_birth = service.person(holder).await?.person.details.date_of_birth;
        let passcode = demo_passcode(&mut names, date_of_birth);
        let recipient = BoxRecipient::new()?;
        let sealed = service
            .release_administrator_secret(&ctx, issuer, id, Ceremony::FirstPasscode, recipient.public_key())
            .await?;
        let secrets = ReleasedSecrets::open(recipient, &sealed)?;
        card.set_passcode_as_administrator(&secrets.current, &passcode)?;
        card.rotate_administrator_secret(&secrets.current, &secrets.next)?;
        service.complete_ceremony(&ctx, issuer, id).await?;
        let state = match n {
            6 | 7 => {
                for _ in 0..3 {
                    service.record_wrong_passcode(&ctx, issuer, id).await?;
                }
                if locked_example.is_some() {
                    self_unlock_example.get_or_insert(path.clone());
                }
                locked_example.get_or_insert((id, path.clone()));
                "locked"
            }
            8 => {
                service.report_card(&ctx, &agent, id, CardReport::Lost).await?;
                "lost, investigation open"
            }
            4 | 5 => "active, certificate expires within 90 days",
            _ => {
                active_example.get_or_insert(path.clone());
                "active"
            }
        };
        passcodes.push_str(&format!("{holder} {id} {} {} {state}\n", path.display(), passcode.expose()));
        if n <= 8 {
            summary.push(format!("  card {id:>3}  {holder}  {state}"));
        }
    }
    let file = dir.join("passcodes.txt");
    write_private(&file, passcodes.as_bytes())?;
    let (locked_id, locked_path) = locked_example.ok_or_else(|| anyhow::anyhow!("the demo has no locked card"))?;
    let active_path = active_example.ok_or_else(|| anyhow::anyhow!("the demo has no active card"))?;
    let self_unlock_path = self_unlock_example.ok_or_else(|| anyhow::anyhow!("the demo has no second locked card"))?;
    let mailbox = dir.parent().unwrap_or(dir).join("mailbox");
    Ok(format!(
        "Demo virtual cards ({} issued; files and DEMO-ONLY passcodes in {}):\n{}\n\n\
         Try, with a demo card:\n  \
         careid card --as demo-ra-agent show {locked_id}\n  \
         # the practice's sponsor authorises an unlock; the holder types a new passcode (twice)\n  \
         careid card --as demo-sponsor unlock {locked_id} --virtual {}\n  \
         careid card --as demo-ra-agent report {locked_id} --reason stolen\n  \
         # the other locked card's holder unlocks it alone, with a code emailed to them: the demo's\n  \
         # email lands in {mailbox}/<address>.txt\n  \
         careid card self-unlock --server {url} --virtual {self_unlock}\n  \
         curl -s {}/pki/ca ; curl -s {}/pki/crl | openssl crl -inform DER -noout -text\n\n\
         Log in with a card (its passcode is in the file above), then sign in to a clinical application:\n  \
         careid agent --server {} --virtual {active} --workstation desk-1\n  \
         careid client --as demo-ra-manager register demo-records --name 'Demo records' \\\n      \
         --redirect-uri http://127.0.0.1:8500/callback --backchannel-logout-uri http://127.0.0.1:8500/backchannel-logout\n  \
         pip install authlib requests   # the demo application is an ordinary OpenID Connect client\n  \
         CAREID_ISSUER={} CLIENT_ID=demo-records CLIENT_SECRET=<the secret printed above> \\\n      \
         python3 examples/relying-app/app.py --port 8500\n  \
         # open http://127.0.0.1:8500/ and sign in: the agent's card approves, the page shows the claims.\n  \
         # Move the card file away: within seconds the application's session ends (back-channel logout).\n\n\
         The audit log, which anyone can check and every holder can read:\n  \
         # every record against the signed checkpoint (the records are an auditor's to read; the\n  \
         # checkpoint and hash tiles are public)\n  \
         careid audit verify --as demo-ra-manager --url {}\n  \
         careid ra --as demo-ra-agent my-audit --limit 5\n  \
         careid ra --as demo-ra-agent proof <SEQ>          # a record of yours with its inclusion proof\n  \
         careid ra --as demo-ra-agent not-me <SEQ> --comment 'I was not at work that day'\n  \
         careid ra --as demo-ra-manager incidents          # the RA and the Caldicott Guardian see it",
        area.card_holders.len(),
        file.display(),
        summary.join("\n"),
        locked_path.display(),
        config.public_url(),
        config.public_url(),
        config.public_url(),
        config.public_url(),
        config.public_url(),
        active = active_path.display(),
        self_unlock = self_unlock_path.display(),
        mailbox = mailbox.display(),
        url = config.public_url(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_ni_numbers_are_valid_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for n in (0..3_000_000).step_by(997) {
            assert!(seen.insert(demo_ni_number(n)), "{n}");
        }
    }

    #[test]
    fn demo_names_are_deterministic() {
        let mut a = Names { state: 1 };
        let mut b = Names { state: 1 };
        for _ in 0..100 {
            assert_eq!(a.pick(FAMILY), b.pick(FAMILY));
        }
    }
}
