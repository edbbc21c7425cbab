//! The routing decision's cost as the config grows: `router::resolve` + `router::pick` for one request, with
//! 10, 1,000 and 10,000 deployments (groups of 4), and one group of 1,000 deployments.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed step is a failed test

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use llmux::config::{load_str, Config};
use llmux::protocol::openai::Operation;
use llmux::router::{pick, resolve, Ask, DeploymentView};

fn config(deployments: usize, group_size: usize) -> Config {
    let mut yaml = String::from("model_list:\n");
    for i in 0..deployments {
        let group = i / group_size;
        let order = i % 2 + 1;
        yaml.push_str(&format!(
            "  - model_name: g{group}\n    litellm_params: {{model: ollama_chat/m{group}, api_base: \"http://h{i}:11434\", order: {order}}}\n"
        ));
    }
    load_str(&yaml, &|_| None).map(|(c, _)| c).unwrap_or_else(|d| panic!("{d}"))
}

fn decision(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing decision");
    for (deployments, group_size) in [(10, 4), (1_000, 4), (10_000, 4), (1_000, 1_000)] {
        let config = config(deployments, group_size);
        let name = format!("g{}", (deployments / group_size).saturating_sub(1) / 2);
        let views = vec![DeploymentView::default(); group_size];
        let mut rng = fastrand::Rng::with_seed(1);
        let id = BenchmarkId::from_parameter(format!("{deployments} deployments, group of {group_size}"));
        group.bench_with_input(id, &name, |b, name| {
            b.iter(|| {
                let target = resolve(&config, Operation::Chat, black_box(name)).ok()?;
                let picked = pick(&config, &target, &Ask::default(), &views, 0, &mut rng).ok()?;
                Some(black_box(picked.deployment))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
