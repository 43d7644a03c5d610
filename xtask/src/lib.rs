//! Checks of the repository's own invariants, shared by `cargo xtask` and the test suite.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root (this crate lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Style rules the compiler does not check: every file says what it owns in a `//!` line;
/// no debugging macros or placeholders; no ignored test without a stated reason.
pub fn tidy() -> Vec<String> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut problems = Vec::new();
    // Spelled in pieces so that this file does not trip its own checks.
    let banned = [["dbg", "!("].concat(), ["todo", "!("].concat(), ["unimplemented", "!("].concat()];
    let bare_ignore = ["#[", "ignore]"].concat();
    // The service appends records only through `AppendAudit`, which gives each the
    // organisations it concerns: a record appended around it would be invisible to scoped readers.
    let raw_appends = [[".append_audit", "("].concat(), [".append_audit", "_batch("].concat()];
    for file in files {
        let shown = file.strip_prefix(&root).unwrap_or(&file).display().to_string();
        let Ok(text) = std::fs::read_to_string(&file) else {
            problems.push(format!("{shown}: not readable as UTF-8"));
            continue;
        };
        if !text.trim_start().starts_with("//!") {
            problems.push(format!("{shown}: must start with a `//!` line saying what the module owns"));
        }
        for (n, line) in text.lines().enumerate() {
            for b in &banned {
                if line.contains(b.as_str()) {
                    problems.push(format!("{shown}:{}: `{b}` left in", n + 1));
                }
            }
            let service_source = shown.starts_with("crates/careid-service/src/") && !shown.ends_with("audit_orgs.rs");
            if service_source && raw_appends.iter().any(|a| line.contains(a.as_str())) {
                problems.push(format!("{shown}:{}: append audit records through `AppendAudit::record`", n + 1));
            }
            if line.contains(&bare_ignore) {
                problems.push(format!("{shown}:{}: an ignored test needs a reason: ignore = \"why\"", n + 1));
            }
        }
    }
    problems
}

/// Which crates each internal crate must never depend on, even indirectly.
pub const FORBIDDEN: &[(&str, &[&str])] = &[
    ("careid-domain", &["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "cryptoki", "serde"]),
    ("careid-audit", &["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "cryptoki"]),
    (
        "careid-detect",
        &["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "cryptoki", "careid-store", "careid-service"],
    ),
    (
        "careid-card",
        &["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "careid-store", "careid-service", "careid-http"],
    ),
    ("careid-pki", &["tokio", "sqlx", "rusqlite", "axum", "hyper", "reqwest", "careid-store", "careid-service"]),
    ("careid-proto", &["tokio", "sqlx", "rusqlite", "axum", "careid-domain", "careid-service", "careid-store"]),
    (
        "careid-service",
        &["sqlx", "rusqlite", "axum", "hyper", "reqwest", "cryptoki", "careid-store", "careid-http", "careid-card"],
    ),
    ("careid-store", &["axum", "hyper", "reqwest", "careid-service", "careid-http"]),
    ("careid-http", &["sqlx", "rusqlite", "cryptoki", "careid-store"]),
];

/// The crates `package` depends on (normal dependencies, transitively), from `cargo tree`.
pub fn dependencies(package: &str) -> Result<Vec<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args(["tree", "--quiet", "--offline", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p", package])
        .output()
        .map_err(|e| format!("running cargo tree: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo tree -p {package}: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Architecture invariants about dependencies: the pure crates stay pure.
pub fn dependency_check() -> Vec<String> {
    let mut problems = Vec::new();
    for (package, forbidden) in FORBIDDEN {
        match dependencies(package) {
            Ok(deps) => {
                for bad in *forbidden {
                    if deps.iter().any(|d| d == bad) {
                        problems.push(format!("{package} depends on {bad}, which ARCHITECTURE.md forbids"));
                    }
                }
            }
            Err(e) => problems.push(e),
        }
    }
    problems
}
