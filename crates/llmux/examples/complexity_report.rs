//! Scores a labelled prompt corpus with the complexity router's DEFAULT config (LiteLLM's keyword lists, weights,
//! boundaries and tiers) and prints the confusion matrix (expected × predicted) and the accuracy.
//!
//! Usage: `cargo run -q -p llmux --example complexity_report -- [CORPUS.jsonl] [--misses] [--dump]`
//! (wrapped by `tests/complexity_report`). Each corpus line is `{"prompt": "...", "expected": "SIMPLE|…"}`.
//! `--misses` lists the prompts whose tier differs from the label, with their score and signals; `--dump` prints
//! one JSON line per prompt (`tier`, `score`; tier `NONE` when there is no user text) instead, for comparing with another implementation.

use std::process::ExitCode;

use anyhow::{bail, Context};
use llmux::router::complexity::{ComplexityRouter, Tier};
use serde_json::{json, Map, Value};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("complexity_report: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let mut path = String::from("tests/data/complexity_corpus.jsonl");
    let (mut misses, mut dump) = (false, false);
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--misses" => misses = true,
            "--dump" => dump = true,
            flag if flag.starts_with("--") => bail!("unknown option {flag}"),
            file => path = file.to_owned(),
        }
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;

    // The default config: no complexity_router_config at all, so LiteLLM's default tiers apply; every name is
    // accepted because no real config is behind this report.
    let mut params = Map::new();
    params.insert("complexity_router_default_model".into(), json!("gpt-4o"));
    let mut diags = llmux::config::Diagnostics::default();
    let router = ComplexityRouter::from_params(&params, &|_| true, &mut diags);
    let Some(router) = router else { bail!("default config refused:\n{diags}") };

    let mut matrix = [[0usize; 4]; 4];
    let mut missed = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let row: Value = serde_json::from_str(line).with_context(|| format!("{path}:{}: not JSON", n + 1))?;
        let prompt = row["prompt"].as_str().with_context(|| format!("{path}:{}: no prompt", n + 1))?;
        let expected = row["expected"]
            .as_str()
            .and_then(Tier::from_name)
            .with_context(|| format!("{path}:{}: expected must be SIMPLE, MEDIUM, COMPLEX or REASONING", n + 1))?;
        let c = router.classify(&[json!({"role": "user", "content": prompt})]);
        if dump {
            let line = if c.no_user_text { json!({"tier": "NONE"}) } else { json!({"tier": c.tier, "score": c.score}) };
            println!("{line}");
            continue;
        }
        matrix[expected as usize][c.tier as usize] += 1;
        if c.tier != expected {
            let signals: Vec<&str> = c.dimensions.iter().filter_map(|d| d.signal.as_deref()).collect();
            missed.push(format!(
                "{expected:>9} → {:<9} {:+.3}  {}  [{}]",
                c.tier,
                c.score,
                prompt.chars().take(70).collect::<String>(),
                signals.join("; ")
            ));
        }
    }
    if dump {
        return Ok(());
    }

    let total: usize = matrix.iter().flatten().sum();
    let correct: usize = (0..4).map(|i| matrix[i][i]).sum();
    println!(
        "expected \\ predicted  {:>9} {:>9} {:>9} {:>9}   total  recall",
        "SIMPLE", "MEDIUM", "COMPLEX", "REASONING"
    );
    for tier in Tier::ALL {
        let row = matrix[tier as usize];
        let n: usize = row.iter().sum();
        let recall = if n == 0 { 0.0 } else { 100.0 * row[tier as usize] as f64 / n as f64 };
        println!(
            "{:<20} {:>9} {:>9} {:>9} {:>9}   {n:>5}  {recall:5.1}%",
            tier.as_str(),
            row[0],
            row[1],
            row[2],
            row[3]
        );
    }
    let mut within_one = 0usize;
    for (i, row) in matrix.iter().enumerate() {
        for (j, n) in row.iter().enumerate() {
            if i.abs_diff(j) <= 1 {
                within_one += n;
            }
        }
    }
    let pct = |k: usize| if total == 0 { 0.0 } else { 100.0 * k as f64 / total as f64 };
    println!("accuracy: {correct}/{total} = {:.1}%  (within one tier: {:.1}%)", pct(correct), pct(within_one));
    if misses {
        println!();
        for m in missed {
            println!("{m}");
        }
    }
    Ok(())
}
