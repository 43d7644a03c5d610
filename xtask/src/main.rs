//! `cargo xtask`: repository automation. `tidy` checks the invariants the compiler does not.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let problems = match task.as_str() {
        "tidy" => {
            let mut problems = xtask::tidy();
            problems.extend(xtask::dependency_check());
            problems
        }
        _ => anyhow::bail!("usage: cargo xtask tidy"),
    };
    for p in &problems {
        eprintln!("{p}");
    }
    anyhow::ensure!(problems.is_empty(), "{} problem(s)", problems.len());
    println!("tidy: ok");
    Ok(())
}
