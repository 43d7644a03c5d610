//! `cargo xtask`: repository automation. `tidy` checks the invariants the compiler does not;
//! `synth` writes a synthetic month of audit events with planted misuse for `careid detect`.

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let problems = match task.as_str() {
        "tidy" => {
            let mut problems = xtask::tidy();
            problems.extend(xtask::dependency_check());
            problems
        }
        "synth" => return synth(std::env::args().skip(2).collect()),
        _ => anyhow::bail!("usage: cargo xtask tidy | cargo xtask synth --out DIR [--seed N] [--staff N] [--days N]"),
    };
    for p in &problems {
        eprintln!("{p}");
    }
    anyhow::ensure!(problems.is_empty(), "{} problem(s)", problems.len());
    println!("tidy: ok");
    Ok(())
}

/// Writes a synthetic month (deterministic by seed) and its planted cases (`truth.csv`).
fn synth(args: Vec<String>) -> anyhow::Result<()> {
    let mut plan = careid_detect::synth::Plan::default();
    let mut out = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--out" => out = Some(std::path::PathBuf::from(value)),
            "--seed" => plan.seed = value.parse()?,
            "--staff" => plan.staff = value.parse()?,
            "--days" => plan.days = value.parse()?,
            other => anyhow::bail!("unknown option {other}"),
        }
    }
    let out = out.ok_or_else(|| anyhow::anyhow!("--out DIR is required"))?;
    std::fs::create_dir_all(&out)?;
    let month = careid_detect::synth::generate(&plan, &out)?;
    println!(
        "{} events, {} staff, {} days, {} planted cases (truth.csv) in {}",
        month.events,
        month.staff,
        month.days,
        month.cases.len(),
        out.display()
    );
    Ok(())
}
