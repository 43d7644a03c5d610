//! The RA Manager's reports over the organisations in scope: each a table, computed from the
//! store in one read and audited as it is handed over (`report.read`).

use std::collections::HashMap;

use careid_domain::access::{Actor, RaAction};
use careid_domain::audit::Action;
use careid_domain::ids::OdsCode;
use careid_domain::report::{self, ReportName, ReportTable};

use crate::audit_orgs::AppendAudit;
use crate::ra::first_refusal;
use crate::{RaError, RequestContext, Service};

impl Service {
    /// Records an RA spot check of `org` (a senior RA whose position covers it): the day of
    /// the visit, never in the future, and what it found.
    pub async fn record_spot_check(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        org: &OdsCode,
        visited_on: time::Date,
        findings: &str,
    ) -> Result<i64, RaError> {
        let findings = careid_domain::ids::parse_note("findings", findings, true)?;
        let now = self.clock.now();
        if visited_on > now.date() {
            return Err(careid_domain::ids::InvalidInput::new("visited_on", "must not be in the future").into());
        }
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::SpotCheckRecord, "organisation", org);
        event.orgs = vec![org.clone()];
        event.detail.push(("visited_on", careid_domain::ids::format_date(visited_on)));
        let scope = self.org_scope(&mut tx, actor, org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::RecordSpotCheck), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let check = report::SpotCheck {
            id: 0,
            org: org.clone(),
            visited_on,
            findings,
            checked_by: actor.person.clone(),
            recorded_at: now,
        };
        let id = tx.insert_spot_check(&check).await?;
        event.detail.push(("spot_check", id.to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Report `name` over `org` (default: the actor's organisation) and everything below it,
    /// for an RA Manager whose position covers `org`. Card costs are at `unit_cost_pence` a
    /// card (default: the deployment's setting).
    pub async fn report(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        name: ReportName,
        org: Option<OdsCode>,
        unit_cost_pence: Option<u64>,
    ) -> Result<ReportTable, RaError> {
        self.report_at_most(ctx, actor, name, org, unit_cost_pence, None).await.map(|(table, _)| table)
    }

    /// A report for a dashboard: as `report` (the same permission, scope and audit record
    /// every time), but a table computed for the same organisation within `max_age` is given
    /// again instead of reading every person in scope once more. Also returns when the table
    /// was computed.
    pub async fn report_for_dashboard(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        name: ReportName,
        max_age: time::Duration,
    ) -> Result<Computed, RaError> {
        self.report_at_most(ctx, actor, name, None, None, Some(max_age)).await
    }

    async fn report_at_most(
        &self,
        ctx: &RequestContext,
        actor: &Actor,
        name: ReportName,
        org: Option<OdsCode>,
        unit_cost_pence: Option<u64>,
        max_age: Option<time::Duration>,
    ) -> Result<Computed, RaError> {
        let org = org.unwrap_or_else(|| actor.org.clone());
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::ReportRead, "report", name.code());
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::ViewReports), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
        let recent = max_age.and_then(|age| self.recent_reports.get(name, &org, now - age));
        let (table, computed_at) = if let Some(hit) = recent {
            event.detail.push(("computed_at", hit.1.to_string()));
            hit
        } else {
            let table = match name {
                ReportName::LostCards => report::lost_cards_by_year(&tx.report_lost_cards(&org).await?),
                ReportName::CardCosts => {
                    let cost = unit_cost_pence.unwrap_or(self.settings.card_unit_cost_pence);
                    event.detail.push(("unit_cost_pence", cost.to_string()));
                    report::card_costs_by_year(&tx.report_card_issues(&org).await?, cost)
                }
                ReportName::Coverage => report::coverage(&tx.report_coverage(&org, now.date()).await?),
                ReportName::SpotChecks => report::spot_checks(&tx.report_spot_checks(&org).await?),
                ReportName::DuplicateLiveCards
                | ReportName::Leavers
                | ReportName::ExpiringCertificates
                | ReportName::Dormant => report::people_report(name, &tx.report_people(&org, now.date()).await?, now),
            };
            if max_age.is_some() {
                self.recent_reports.put(name, &org, now, table.clone());
            }
            (table, now)
        };
        event.detail.push(("rows", table.rows.len().to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok((table, computed_at))
    }
}

/// Reports computed for dashboards, by report and organisation: a dashboard shown every few
/// seconds must not read a million people each time.
#[derive(Debug, Default)]
pub(crate) struct RecentReports {
    tables: std::sync::Mutex<HashMap<(ReportName, OdsCode), Computed>>,
}

/// A report's table and when it was computed.
type Computed = (ReportTable, time::OffsetDateTime);

impl RecentReports {
    /// The table of `name` over `org` if it was computed after `since`.
    fn get(&self, name: ReportName, org: &OdsCode, since: time::OffsetDateTime) -> Option<Computed> {
        let tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.get(&(name, org.clone())).filter(|(_, at)| *at > since).cloned()
    }

    fn put(&self, name: ReportName, org: &OdsCode, at: time::OffsetDateTime, table: ReportTable) {
        let mut tables = self.tables.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tables.insert((name, org.clone()), (table, at));
    }
}
