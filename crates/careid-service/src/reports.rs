//! The RA Manager's reports over the organisations in scope: each a table, computed from the
//! store in one read and audited as it is handed over (`report.read`).

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
        let org = org.unwrap_or_else(|| actor.org.clone());
        let now = self.clock.now();
        let mut tx = self.begin_write_as(actor).await?;
        let mut event = self.event(ctx, actor.into(), Action::ReportRead, "report", name.code());
        event.orgs = vec![org.clone()];
        let scope = self.org_scope(&mut tx, actor, &org).await?;
        if let Err(refusal) = first_refusal([actor.require(RaAction::ViewReports), scope]) {
            return Err(self.refuse(tx, event, refusal).await);
        }
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
        event.detail.push(("rows", table.rows.len().to_string()));
        tx.record(&event).await?;
        tx.commit().await?;
        Ok(table)
    }
}
