//! What an organisation knows besides its audit events: its staff, their rostered shifts and
//! leave, and its patients, read from CSV files. Every error names the file, the line and the
//! column; staff are linked to their own patient records by name, address and postcode.

use rustc_hash::FxHashMap as HashMap;
use std::path::{Path, PathBuf};

use careid_domain::detect::Shift;
use time::{Date, Time};

/// A CSV file that could not be used, and where.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: {error}")]
    Io { file: PathBuf, error: std::io::Error },
    #[error("{file} line {line}: {message}")]
    Bad { file: PathBuf, line: u64, message: String },
}

/// A member of staff.
#[derive(Debug, Clone)]
pub struct Staff {
    pub uid: String,
    pub given: String,
    pub family: String,
    pub org: String,
    pub role_code: String,
    pub role_name: String,
    /// `family|address|postcode`, normalised: whom they live with shares it.
    pub household: String,
    /// The day they left, if the staff file has a `left` column and it is filled.
    pub left: Option<Date>,
    /// Their own record as a patient, if one matches their name, address and postcode.
    pub own_record: Option<String>,
}

/// A patient as the patient file lists them.
#[derive(Debug, Clone)]
pub struct Patient {
    pub household: String,
    pub registered_org: String,
    pub vip: bool,
    /// The member of staff this patient is (by name, address and postcode).
    pub staff: Option<usize>,
}

/// A leave record: days inclusive.
#[derive(Debug, Clone)]
pub struct Leave {
    pub first_day: Date,
    pub last_day: Date,
    pub kind: String,
}

/// Everything the rules look up, indexed.
#[derive(Debug, Default)]
pub struct Reference {
    pub staff: Vec<Staff>,
    pub staff_by_uid: HashMap<String, usize>,
    /// Each member of staff's shifts (by staff index); the roster's first and last day.
    pub shifts: HashMap<usize, Vec<Shift>>,
    pub roster_days: Option<(Date, Date)>,
    pub leave: HashMap<usize, Vec<Leave>>,
    pub patients: HashMap<String, Patient>,
}

/// The paths of the reference files.
#[derive(Debug, Clone)]
pub struct ReferencePaths {
    pub staff: PathBuf,
    pub roster: Option<PathBuf>,
    pub leave: Option<PathBuf>,
    pub patients: Option<PathBuf>,
}

/// Lower case, punctuation dropped, runs of spaces made one.
fn normalise(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ").to_lowercase()
}

fn household(family: &str, address: &str, postcode: &str) -> String {
    format!("{}|{}|{}", normalise(family), normalise(address), normalise(postcode).replace(' ', ""))
}

/// A CSV file read by column name.
struct Table {
    file: PathBuf,
    reader: csv::Reader<std::fs::File>,
    columns: HashMap<String, usize>,
}

struct Row<'t> {
    file: &'t Path,
    line: u64,
    record: csv::StringRecord,
    columns: &'t HashMap<String, usize>,
}

impl Table {
    fn open(file: &Path, required: &[&str]) -> Result<Table, InputError> {
        let opened = std::fs::File::open(file).map_err(|error| InputError::Io { file: file.to_owned(), error })?;
        let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).flexible(true).from_reader(opened);
        let headers = reader
            .headers()
            .map_err(|e| InputError::Bad { file: file.to_owned(), line: 1, message: e.to_string() })?
            .clone();
        let columns: HashMap<String, usize> =
            headers.iter().enumerate().map(|(i, h)| (h.trim_start_matches('\u{feff}').to_lowercase(), i)).collect();
        for name in required {
            if !columns.contains_key(*name) {
                return Err(InputError::Bad {
                    file: file.to_owned(),
                    line: 1,
                    message: format!("missing column `{name}` (the header must name {})", required.join(",")),
                });
            }
        }
        Ok(Table { file: file.to_owned(), reader, columns })
    }

    fn for_each(mut self, mut f: impl FnMut(&Row<'_>) -> Result<(), InputError>) -> Result<(), InputError> {
        let mut record = csv::StringRecord::new();
        loop {
            let line = self.reader.position().line() + 1;
            match self.reader.read_record(&mut record) {
                Ok(false) => return Ok(()),
                Ok(true) => {}
                Err(e) => return Err(InputError::Bad { file: self.file.clone(), line, message: e.to_string() }),
            }
            let line = record.position().map_or(line, csv::Position::line);
            if record.iter().all(str::is_empty) {
                continue;
            }
            f(&Row { file: &self.file, line, record: record.clone(), columns: &self.columns })?;
        }
    }
}

impl Row<'_> {
    fn bad(&self, message: String) -> InputError {
        InputError::Bad { file: self.file.to_owned(), line: self.line, message }
    }

    /// The column's value, which must be there and not empty.
    fn get(&self, name: &str) -> Result<&str, InputError> {
        match self.columns.get(name).and_then(|i| self.record.get(*i)) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(self.bad(format!("`{name}` is empty"))),
        }
    }

    fn optional(&self, name: &str) -> Option<&str> {
        self.columns.get(name).and_then(|i| self.record.get(*i)).filter(|v| !v.is_empty())
    }

    fn date(&self, name: &str) -> Result<Date, InputError> {
        let value = self.get(name)?;
        parse_date(value).ok_or_else(|| self.bad(format!("`{name}` is not a date (YYYY-MM-DD): {value:?}")))
    }

    fn time(&self, name: &str) -> Result<Time, InputError> {
        let value = self.get(name)?;
        parse_time(value).ok_or_else(|| self.bad(format!("`{name}` is not a time of day (HH:MM): {value:?}")))
    }

    /// A member of staff the file names, who must be in the staff file.
    fn staff(&self, reference: &Reference) -> Result<usize, InputError> {
        let uid = self.get("uid")?;
        reference
            .staff_by_uid
            .get(uid)
            .copied()
            .ok_or_else(|| self.bad(format!("uid {uid:?} is not in the staff file")))
    }
}

pub(crate) fn parse_date(value: &str) -> Option<Date> {
    Date::parse(value, time::macros::format_description!("[year]-[month]-[day]")).ok()
}

fn parse_time(value: &str) -> Option<Time> {
    if value == "24:00" {
        return Time::from_hms(23, 59, 59).ok();
    }
    let (h, m) = value.split_once(':')?;
    Time::from_hms(h.parse().ok()?, m.get(..2)?.parse().ok()?, 0).ok()
}

impl Reference {
    /// Reads the reference files; the first error stops the load, naming its file and line.
    pub fn load(paths: &ReferencePaths) -> Result<Reference, InputError> {
        let mut reference = Reference::default();
        let staff_columns = ["uid", "given", "family", "org", "role_code", "role_name", "address", "postcode"];
        Table::open(&paths.staff, &staff_columns)?.for_each(|row| {
            let uid = row.get("uid")?.to_owned();
            if reference.staff_by_uid.contains_key(&uid) {
                return Err(row.bad(format!("uid {uid:?} appears twice")));
            }
            let left = match row.optional("left") {
                Some(value) => {
                    Some(parse_date(value).ok_or_else(|| row.bad(format!("`left` is not a date: {value:?}")))?)
                }
                None => None,
            };
            reference.staff_by_uid.insert(uid.clone(), reference.staff.len());
            reference.staff.push(Staff {
                uid,
                given: row.get("given")?.to_owned(),
                family: row.get("family")?.to_owned(),
                org: row.get("org")?.to_owned(),
                role_code: row.get("role_code")?.to_owned(),
                role_name: row.get("role_name")?.to_owned(),
                household: household(row.get("family")?, row.get("address")?, row.get("postcode")?),
                left,
                own_record: None,
            });
            Ok(())
        })?;
        if let Some(roster) = &paths.roster {
            Table::open(roster, &["uid", "date", "start", "end"])?.for_each(|row| {
                let staff = row.staff(&reference)?;
                let shift = Shift { date: row.date("date")?, start: row.time("start")?, end: row.time("end")? };
                let days = reference.roster_days.get_or_insert((shift.date, shift.date));
                days.0 = days.0.min(shift.date);
                days.1 = days.1.max(shift.date);
                reference.shifts.entry(staff).or_default().push(shift);
                Ok(())
            })?;
        }
        for shifts in reference.shifts.values_mut() {
            shifts.sort_by_key(|s| s.date);
        }
        if let Some(leave) = &paths.leave {
            Table::open(leave, &["uid", "start", "end", "kind"])?.for_each(|row| {
                let staff = row.staff(&reference)?;
                let (first_day, last_day) = (row.date("start")?, row.date("end")?);
                if last_day < first_day {
                    return Err(row.bad("`end` is before `start`".into()));
                }
                reference.leave.entry(staff).or_default().push(Leave {
                    first_day,
                    last_day,
                    kind: row.get("kind")?.to_owned(),
                });
                Ok(())
            })?;
        }
        if let Some(patients) = &paths.patients {
            // Staff are patients too: their own record is the one with their name and home.
            let mut staff_by_person: HashMap<String, usize> = HashMap::default();
            for (i, s) in reference.staff.iter().enumerate() {
                staff_by_person.insert(format!("{}|{}", normalise(&s.given), s.household), i);
            }
            let columns = ["nhs_number", "given", "family", "address", "postcode", "registered_org", "vip"];
            Table::open(patients, &columns)?.for_each(|row| {
                let nhs = row.get("nhs_number")?.replace(' ', "");
                if nhs.len() != 10 || !nhs.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(row.bad(format!("`nhs_number` is not 10 digits: {nhs:?}")));
                }
                let vip = match row.get("vip")? {
                    "1" => true,
                    "0" => false,
                    other => return Err(row.bad(format!("`vip` must be 1 or 0, not {other:?}"))),
                };
                let home = household(row.get("family")?, row.get("address")?, row.get("postcode")?);
                let staff = staff_by_person.get(&format!("{}|{home}", normalise(row.get("given")?))).copied();
                if let Some(s) = staff {
                    reference.staff[s].own_record = Some(nhs.clone());
                }
                reference.patients.insert(
                    nhs,
                    Patient { household: home, registered_org: row.get("registered_org")?.to_owned(), vip, staff },
                );
                Ok(())
            })?;
        }
        Ok(reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn paths(dir: &Path) -> ReferencePaths {
        ReferencePaths {
            staff: write(
                dir,
                "staff.csv",
                "uid,given,family,org,role_code,role_name,address,postcode\n\
                 100000000001,Ann,Lee,F83001,R8000,Clinical Practitioner,\"1 High St, Leeds\",LS1 1AA\n\
                 100000000002,Bob,Roe,F83001,R8001,Receptionist,2 Low Rd,LS2 2BB\n",
            ),
            roster: Some(write(dir, "roster.csv", "uid,date,start,end\n100000000001,2026-11-02,09:00,17:00\n")),
            leave: Some(write(dir, "leave.csv", "uid,start,end,kind\n100000000002,2026-11-02,2026-11-06,annual\n")),
            patients: Some(write(
                dir,
                "patients.csv",
                "nhs_number,given,family,address,postcode,registered_org,vip\n\
                 9434765919,ANN,lee,\"1 High St. Leeds\",ls11aa,F83001,0\n\
                 4010232137,Cal,Lee,1 High St Leeds,LS1 1AA,F83001,1\n",
            )),
        }
    }

    #[test]
    fn staff_are_linked_to_their_own_records_by_name_and_home() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let reference = Reference::load(&paths(dir)).unwrap();
        assert_eq!(reference.staff[0].own_record.as_deref(), Some("9434765919"));
        assert_eq!(reference.staff[1].own_record, None);
        let cal = &reference.patients["4010232137"];
        assert_eq!(cal.household, reference.staff[0].household, "a family member shares the household");
        assert!(cal.vip && cal.staff.is_none());
        assert_eq!(reference.leave[&1][0].kind, "annual");
        assert_eq!(reference.shifts[&0].len(), 1);
    }

    #[test]
    fn errors_name_the_file_the_line_and_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path();
        let mut p = paths(dir);
        p.roster = Some(write(
            dir,
            "roster.csv",
            "uid,date,start,end\n100000000001,2026-11-02,09:00,17:00\n100000000001,2026-13-02,09:00,17:00\n",
        ));
        let error = Reference::load(&p).unwrap_err().to_string();
        assert!(error.contains("roster.csv line 3") && error.contains("`date` is not a date"), "{error}");
        p.roster = Some(write(dir, "roster.csv", "uid,date,start\n"));
        let error = Reference::load(&p).unwrap_err().to_string();
        assert!(error.contains("roster.csv line 1") && error.contains("missing column `end`"), "{error}");
        p.roster = None;
        p.leave = Some(write(dir, "leave.csv", "uid,start,end,kind\n999,2026-11-02,2026-11-06,annual\n"));
        let error = Reference::load(&p).unwrap_err().to_string();
        assert!(error.contains("leave.csv line 2") && error.contains("not in the staff file"), "{error}");
    }
}
