//! The `careid ra` command line: a client of the HTTP API that never opens the database.
//!
//! Sessions are kept as named profiles in `$CAREID_CLI_HOME/profiles.json` (default
//! `~/.careid/`), written readable by the owner only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// One signed-in session the CLI can act as.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub server: String,
    pub token: String,
    pub person: String,
    pub org: String,
    pub role: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Profiles {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub profiles: BTreeMap<String, Profile>,
}

pub fn cli_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CAREID_CLI_HOME") {
        return PathBuf::from(home);
    }
    std::env::var_os("HOME").map_or_else(|| PathBuf::from(".careid"), |h| PathBuf::from(h).join(".careid"))
}

impl Profiles {
    fn named(&self, name: &str) -> anyhow::Result<&Profile> {
        self.profiles
            .get(name)
            .ok_or_else(|| anyhow!("no profile {name:?}; known: {:?}", self.profiles.keys().collect::<Vec<_>>()))
    }

    fn path() -> PathBuf {
        cli_home().join("profiles.json")
    }

    pub fn load() -> anyhow::Result<Profiles> {
        match std::fs::read_to_string(Self::path()) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading {}", Self::path().display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Profiles::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", Self::path().display())),
        }
    }

    pub fn save(&self) -> anyhow::Result<()> {
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        write_private(&path, text.as_bytes())
    }
}

/// Creates a directory (and those above it) that only its owner can enter, whatever the
/// umask; an existing one is made so.
pub fn private_dir(path: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
    owner_only(path, 0o700)
}

/// Sets `path`'s permission bits to `mode` (Unix); elsewhere nothing.
pub fn owner_only(path: &std::path::Path, mode: u32) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("making {} its owner's only", path.display()))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes a file only its owner can read (it holds bearer tokens or credentials).
pub fn write_private(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// An API error, shown as the server said it.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub body: Value,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.body["error"];
        let text = |k: &str| e[k].as_str().map(str::to_owned);
        write!(
            f,
            "{} ({}): {}",
            text("code").unwrap_or_else(|| "error".into()),
            self.status,
            text("message").unwrap_or_default()
        )?;
        if let Some(field) = text("field") {
            write!(f, "\n  field: {field}")?;
        }
        if let Some(rule) = text("rule") {
            write!(f, "\n  rule: {rule}")?;
        }
        if let Some(existing) = text("existing") {
            write!(f, "\n  existing: {existing}")?;
        }
        if let Some(choices) = e["choices"].as_array() {
            for c in choices {
                write!(
                    f,
                    "\n  --assignment {}  {} at {} ({})",
                    c["assignment_id"],
                    c["position_name"].as_str().unwrap_or(""),
                    c["org"].as_str().unwrap_or(""),
                    c["role"].as_str().unwrap_or("")
                )?;
            }
        }
        if let Some(id) = text("request_id") {
            write!(f, "\n  request id: {id}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiFailure {}

/// A client bound to one server and (optionally) one session.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    server: String,
    token: Option<String>,
}

impl Client {
    pub fn new(server: &str, token: Option<String>) -> Client {
        Client { http: reqwest::Client::new(), server: server.trim_end_matches('/').to_owned(), token }
    }

    /// Uses the named profile (or the default one), with `server` overriding its address.
    pub fn for_profile(name: Option<&str>, server: Option<&str>) -> anyhow::Result<Client> {
        let profiles = Profiles::load()?;
        let name = name.map(str::to_owned).or(profiles.default.clone()).ok_or_else(|| {
            anyhow!("not signed in: run `careid ra login NAME --credential ...` first (or pass --as NAME)")
        })?;
        let profile = profiles.named(&name)?;
        Ok(Client::new(server.unwrap_or(&profile.server), Some(profile.token.clone())))
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.server));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Posts an HTML form (the OAuth endpoints take forms, not JSON).
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.server)).form(form)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request.send().await.with_context(|| {
            format!("cannot reach careid at {} (choose the server with --server URL or CAREID_SERVER)", self.server)
        })?;
        let status = response.status();
        let text = response.text().await?;
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() { Ok(value) } else { Err(ApiFailure { status: status.as_u16(), body: value }.into()) }
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: Value) -> anyhow::Result<Value> {
        self.call(reqwest::Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The session token of saved profile `name`.
pub fn profile_token(name: &str) -> anyhow::Result<String> {
    Ok(Profiles::load()?.named(name)?.token.clone())
}

/// The flags every client command takes: which server, which saved session, which output.
#[derive(Debug, clap::Args)]
pub struct ClientFlags {
    /// The careid server (default: the profile's; to sign in, the address in --config, or
    /// http://127.0.0.1:8420).
    #[arg(long, global = true, env = "CAREID_SERVER")]
    pub server: Option<String>,
    /// Act as this saved profile (see `careid ra login`).
    #[arg(long = "as", global = true, env = "CAREID_PROFILE")]
    pub profile: Option<String>,
    /// Print the API's JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

impl ClientFlags {
    pub fn client(&self) -> anyhow::Result<Client> {
        Client::for_profile(self.profile.as_deref(), self.server.as_deref())
    }

    /// Prints a response as these flags ask.
    pub fn print(&self, value: &Value) -> anyhow::Result<()> {
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            print_human(value);
        }
        Ok(())
    }
}

/// Signs in and saves the session as profile `name` (and makes it the default).
pub async fn login(server: &str, name: &str, credential: &str, assignment: Option<i64>) -> anyhow::Result<Value> {
    let client = Client::new(server, None);
    let response =
        client.post("/api/v1/sessions", json!({ "credential": credential, "assignment_id": assignment })).await?;
    let acting = &response["acting"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let profile = Profile {
        server: server.to_owned(),
        token: response["token"].as_str().ok_or_else(|| anyhow!("the server sent no token"))?.to_owned(),
        person: text(&acting["person"]),
        org: text(&acting["org"]),
        role: text(&acting["role"]),
    };
    let mut profiles = Profiles::load()?;
    profiles.profiles.insert(name.to_owned(), profile);
    profiles.default = Some(name.to_owned());
    profiles.save()?;
    // The token stays in the profile file; show the rest.
    Ok(json!({ "profile": name, "acting": acting, "expires_at": response["expires_at"] }))
}

/// Prints a response for people: objects as `key: value` lines, lists one record a block.
pub fn print_human(value: &Value) {
    fn scalar(v: &Value) -> String {
        match v {
            Value::Null => "-".into(),
            Value::String(s) => s.clone(),
            Value::Array(items) if items.is_empty() => "(none)".into(),
            Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
                items.iter().map(scalar).collect::<Vec<_>>().join(", ")
            }
            other => other.to_string(),
        }
    }
    fn object(map: &serde_json::Map<String, Value>, indent: usize) {
        let pad = " ".repeat(indent);
        for (k, v) in map {
            match v {
                Value::Object(inner) => {
                    println!("{pad}{k}:");
                    object(inner, indent + 2);
                }
                Value::Array(items) if items.iter().any(|i| i.is_object() || i.is_array()) => {
                    println!("{pad}{k}:");
                    for item in items {
                        match item {
                            Value::Object(inner) => {
                                object(inner, indent + 4);
                                println!();
                            }
                            Value::Array(pair) => {
                                println!("{pad}    {}", pair.iter().map(scalar).collect::<Vec<_>>().join(" "));
                            }
                            other => println!("{pad}    {}", scalar(other)),
                        }
                    }
                }
                other => println!("{pad}{k}: {}", scalar(other)),
            }
        }
    }
    match value {
        Value::Object(map) => object(map, 0),
        Value::Array(items) if items.is_empty() => println!("no records"),
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(map) => object(map, 0),
                    other => println!("{}", scalar(other)),
                }
                println!();
            }
        }
        Value::Null => println!("done"),
        other => println!("{}", scalar(other)),
    }
}

/// Prints audit records one a line: sequence, time, actor, action, subject, outcome.
pub fn print_audit(page: &Value) {
    let Some(records) = page["records"].as_array() else {
        print_human(page);
        return;
    };
    for r in records {
        let fields: BTreeMap<String, String> = r["fields"]
            .as_array()
            .map(|f| {
                f.iter().filter_map(|pair| Some((pair[0].as_str()?.to_owned(), pair[1].as_str()?.to_owned()))).collect()
            })
            .unwrap_or_default();
        let get = |k: &str| fields.get(k).cloned().unwrap_or_else(|| "-".into());
        let outcome = match fields.get("rule") {
            Some(rule) => format!("REFUSED ({rule})"),
            None => get("outcome"),
        };
        println!(
            "#{:<6} {}  {} as {} @ {}  {}  {}  {}",
            r["seq"],
            get("at"),
            get("actor.person"),
            get("actor.role"),
            get("actor.org"),
            get("action"),
            get("subject"),
            outcome
        );
        if let Some(refusal) = fields.get("detail.refusal") {
            println!("        {refusal}");
        }
    }
    if let Some(next) = page["next_before"].as_u64() {
        println!("(more: --before {next})");
    }
}

/// Reads a CSV file whose header must be exactly `columns`, one JSON object a row (empty
/// cells become null, except in `required` columns, where they are refused with the line;
/// `numeric` columns become numbers).
fn csv_objects(path: &std::path::Path, columns: &[&str], required: &[&str], numeric: &[&str]) -> anyhow::Result<Value> {
    let mut reader = csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let headers = reader.headers()?.clone();
    if headers.iter().collect::<Vec<_>>() != columns {
        bail!("{}: the header must be {}", path.display(), columns.join(","));
    }
    let mut out = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{} line {}", path.display(), i + 2))?;
        let mut object = serde_json::Map::new();
        for (column, cell) in columns.iter().zip(row.iter()) {
            let value = if cell.is_empty() {
                if required.contains(column) {
                    bail!("{} line {}: {column} is required", path.display(), i + 2);
                }
                Value::Null
            } else if numeric.contains(column) {
                let n: i64 = cell
                    .parse()
                    .with_context(|| format!("{} line {}: {column} must be a number", path.display(), i + 2))?;
                json!(n)
            } else {
                json!(cell)
            };
            object.insert((*column).to_owned(), value);
        }
        out.push(Value::Object(object));
    }
    Ok(Value::Array(out))
}

/// Organisations from CSV with the header `ods_code,name,kind,parent`.
pub fn organisations_csv(path: &std::path::Path) -> anyhow::Result<Value> {
    csv_objects(path, &["ods_code", "name", "kind", "parent"], &["ods_code", "name", "kind"], &[])
}

/// People from CSV with the header `given_name,family_name,date_of_birth,ni_number,email,position,start`.
pub fn people_csv(path: &std::path::Path) -> anyhow::Result<Value> {
    csv_objects(
        path,
        &["given_name", "family_name", "date_of_birth", "ni_number", "email", "position", "start"],
        &["given_name", "family_name", "date_of_birth", "ni_number", "position", "start"],
        &["position"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_required_cell_is_refused_with_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("people.csv");
        let header = "given_name,family_name,date_of_birth,ni_number,email,position,start";
        std::fs::write(
            &file,
            format!("{header}\nAl,A,1990-01-01,CE700001A,,20,2026-12-01\nBo,B,1990-01-01,CE700002A,,,\n"),
        )
        .unwrap();
        let error = people_csv(&file).unwrap_err().to_string();
        assert!(error.ends_with("line 3: position is required"), "{error}");
        std::fs::write(&file, format!("{header}\nAl,A,1990-01-01,CE700001A,,20,2026-12-01\n")).unwrap();
        let people = people_csv(&file).unwrap();
        assert_eq!(people[0]["position"], json!(20));
        assert_eq!(people[0]["email"], Value::Null, "an optional empty cell is null");
    }
}
