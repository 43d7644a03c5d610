//! The national catalogue of job roles and activity codes, with the activity hierarchy.
//!
//! The data is compiled in from `data/` (see its README for where it came from).

use std::collections::{BTreeMap, BTreeSet};

use crate::ids::{ActivityCode, InvalidInput, JobRoleCode, RoleTriple};

const JOB_ROLES_CSV: &str = include_str!("../data/sds-job-roles.csv");
const NATIONAL_ACTIVITIES_CSV: &str = include_str!("../data/activities.csv");
const CAREID_ACTIVITIES_CSV: &str = include_str!("../data/careid-activities.csv");

/// One activity code: its name where public, and the parent that grants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub code: ActivityCode,
    pub name: String,
    pub parent: Option<ActivityCode>,
}

/// Job roles and activities known to this deployment.
#[derive(Debug, Clone)]
pub struct Catalogue {
    job_roles: BTreeMap<JobRoleCode, String>,
    activities: BTreeMap<ActivityCode, Activity>,
}

fn rows(csv_text: &str) -> impl Iterator<Item = csv::StringRecord> + '_ {
    csv::Reader::from_reader(csv_text.as_bytes())
        .into_records()
        // The files are compiled in and checked by a test; a bad row is a build defect.
        .filter_map(Result::ok)
}

impl Catalogue {
    /// The catalogue compiled into careid.
    pub fn national() -> Catalogue {
        let job_roles = rows(JOB_ROLES_CSV)
            .filter_map(|r| Some((JobRoleCode::parse(r.get(0)?).ok()?, r.get(1)?.to_owned())))
            .collect();
        let activities = rows(NATIONAL_ACTIVITIES_CSV)
            .chain(rows(CAREID_ACTIVITIES_CSV))
            .filter_map(|r| {
                let code = ActivityCode::parse(r.get(0)?).ok()?;
                let parent = r.get(2).filter(|p| !p.is_empty()).and_then(|p| ActivityCode::parse(p).ok());
                Some((code.clone(), Activity { code, name: r.get(1)?.to_owned(), parent }))
            })
            .collect();
        Catalogue { job_roles, activities }
    }

    pub fn job_role_name(&self, code: &JobRoleCode) -> Option<&str> {
        self.job_roles.get(code).map(String::as_str)
    }

    pub fn job_roles(&self) -> impl Iterator<Item = (&JobRoleCode, &str)> {
        self.job_roles.iter().map(|(c, n)| (c, n.as_str()))
    }

    pub fn activity(&self, code: &ActivityCode) -> Option<&Activity> {
        self.activities.get(code)
    }

    pub fn activities(&self) -> impl Iterator<Item = &Activity> {
        self.activities.values()
    }

    /// Checks that a role triple names a known job role.
    pub fn check_role(&self, role: &RoleTriple) -> Result<(), InvalidInput> {
        if self.job_roles.contains_key(role.job_role()) {
            Ok(())
        } else {
            Err(InvalidInput::new("role", format!("job role {} is not in the national catalogue", role.job_role())))
        }
    }

    /// Checks that every activity is known.
    pub fn check_activities(&self, codes: &[ActivityCode]) -> Result<(), InvalidInput> {
        match codes.iter().find(|c| !self.activities.contains_key(c)) {
            Some(unknown) => Err(InvalidInput::new("activities", format!("{unknown} is not a known activity code"))),
            None => Ok(()),
        }
    }

    /// Every activity the given codes grant: the codes themselves and all their descendants.
    pub fn granted(&self, held: &[ActivityCode]) -> BTreeSet<ActivityCode> {
        let mut granted: BTreeSet<ActivityCode> = held.iter().cloned().collect();
        // The hierarchy is small; iterate to a fixed point rather than keep child lists.
        loop {
            let before = granted.len();
            for activity in self.activities.values() {
                if let Some(parent) = &activity.parent {
                    if granted.contains(parent) {
                        granted.insert(activity.code.clone());
                    }
                }
            }
            if granted.len() == before {
                return granted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> ActivityCode {
        ActivityCode::parse(s).unwrap()
    }

    #[test]
    fn national_data_loads_whole() {
        let catalogue = Catalogue::national();
        assert_eq!(catalogue.job_roles().count(), 392);
        assert_eq!(
            catalogue.job_role_name(&JobRoleCode::parse("R5080").unwrap()),
            Some("Registration Authority Manager")
        );
        assert_eq!(catalogue.activities().count(), 32 + 3);
    }

    #[test]
    fn a_parent_activity_grants_its_descendants() {
        let catalogue = Catalogue::national();
        let granted = catalogue.granted(&[code("B0360")]);
        for child in ["B0790", "B0380", "B8028", "B8029", "B1693", "B1694", "B0064", "B0071"] {
            assert!(granted.contains(&code(child)), "{child} should be granted by B0360");
        }
        assert!(!granted.contains(&code("B0570")));
        // Holding a child grants nothing above it.
        assert_eq!(catalogue.granted(&[code("B8029")]), [code("B8029")].into_iter().collect());
    }

    #[test]
    fn unknown_codes_are_named() {
        let catalogue = Catalogue::national();
        let err = catalogue.check_activities(&[code("B0360"), code("B0001")]).unwrap_err();
        assert!(err.rule.contains("B0001"));
        assert!(catalogue.check_role(&RoleTriple::parse("S0000:G0000:R0000").unwrap()).is_err());
        assert!(catalogue.check_role(&RoleTriple::parse("S8000:G8000:R8000").unwrap()).is_ok());
    }
}
