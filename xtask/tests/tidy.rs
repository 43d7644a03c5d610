//! The repository's invariants, checked on every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a test fails loudly")]

#[test]
fn sources_are_tidy() {
    let problems = xtask::tidy();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn pure_crates_keep_their_dependencies_pure() {
    let problems = xtask::dependency_check();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_dependency_check_would_see_a_violation() {
    // careid-store does depend on sqlx: the check must be able to see such a thing.
    let deps = xtask::dependencies("careid-store").unwrap();
    assert!(deps.iter().any(|d| d == "sqlx"), "{deps:?}");
}
