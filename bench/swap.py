#!/usr/bin/env python3
"""bench/swap's helper (stdlib only): the simulated home lab, its workload, the llmux configs, and the report.

    swap.py gen --work DIR [--seed N] [--scale S] [--duration REAL_SECONDS]
        writes DIR/lab.json (hosts, budgets, models, sizes, load times), DIR/mock-<host>.json (each mock's
        --config-json) and DIR/schedule.jsonl (the arrival schedule, in scaled seconds)
    swap.py config --work DIR --policy blind|aware --ports host=port,... --out FILE
        writes llmux's config.yaml for one policy
    swap.py report --work DIR --out FILE
        reads DIR/replay-<policy>.json, DIR/requests-<policy>.jsonl, DIR/stats-<policy>-<host>.json and writes
        the markdown report

Everything the simulation uses is in "real" (home-lab) time; the mocks and the schedule run SCALE times faster
(load times, keep-alive, prompt processing and token rate alike), so a run of DURATION real seconds takes
DURATION / SCALE seconds of wall time. Times in the report are converted back to real time.
"""

import argparse
import datetime
import json
import random
import subprocess
from pathlib import Path

GB = 1_000_000_000

# Model sizes as Ollama's /api/ps reports them (weights + KV cache at the default context), and load times
# from a local NVMe SSD, in real seconds.
MODELS = {
    "nemotron-3-nano:4b": {"size": 3.5, "load_s": 3},
    "qwen3.5:9b": {"size": 7.0, "load_s": 5},
    "embeddinggemma": {"size": 0.6, "load_s": 2},
    "nemotron-cascade-2:30b": {"size": 20.0, "load_s": 10},
    # Added (not in the seed): the models these boxes carry besides the seed's, so that budgets are contended.
    "gpt-oss:20b": {"size": 13.0, "load_s": 7},
    "gpt-oss:120b": {"size": 65.0, "load_s": 10},
}

# The seed's four hosts. Budgets are the owner's (84, 44, 14, 20 GB); which box has which is our reading of the
# hardware: Mac Studio M3 Ultra 84, 2x P40 44, RTX 4070 Ti 14, Mac mini M4 Pro 20. Token rates are real
# tokens per second of one stream; every model on a host generates at the host's rate.
HOSTS = {
    "clementine": {"budget": 20, "tps": 35, "models": ["nemotron-3-nano:4b", "embeddinggemma", "qwen3.5:9b", "gpt-oss:20b"]},
    "banana": {"budget": 14, "tps": 60, "models": ["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma", "gpt-oss:20b"]},
    "star": {"budget": 84, "tps": 45, "models": ["nemotron-cascade-2:30b", "gpt-oss:120b"]},
    "cranberry": {"budget": 44, "tps": 25, "models": ["nemotron-cascade-2:30b"]},
}
SEED_PLACEMENT = {
    "clementine": ["nemotron-3-nano:4b", "embeddinggemma"],
    "banana": ["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma"],
    "star": ["nemotron-cascade-2:30b"],
    "cranberry": ["nemotron-cascade-2:30b"],
}
PROMPT_PROCESSING_S = 0.2  # real seconds before the first token of a warm model
KEEP_ALIVE_S = 300  # Ollama's default keep_alive (5m)
REPLY_TOKENS = 400  # the mocks' reply length; each request's max_tokens cuts it

# The seed's aliases and fallbacks, unchanged.
ALIASES = {
    "reasoning_fast": "nemotron-3-nano:4b",
    "reasoning_slow": "nemotron-cascade-2:30b",
    "tools_fast": "nemotron-3-nano:4b",
    "tools_slow": "nemotron-cascade-2:30b",
    "vision": "qwen3.5:9b",
    "embedding": "embeddinggemma",
    "coding": "nemotron-cascade-2:30b",
    "default": "nemotron-cascade-2:30b",
}
FALLBACKS = [
    {"reasoning_fast": ["reasoning_slow", "coding"]},
    {"reasoning_slow": ["coding"]},
    {"tools_fast": ["tools_slow", "coding"]},
    {"tools_slow": ["coding"]},
    {"coding": ["reasoning_slow", "tools_slow"]},
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the home wiki",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
# A 1x1 PNG, for the vision client.
PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
SIMPLE = ["Turn on the kitchen lights.", "What time is it in Tokyo?", "Set a timer for ten minutes."]
COMPLEX = [
    "Prove step by step that the sum of the first n odd numbers is n squared, then analyze the complexity "
    "of computing it with a distributed algorithm and compare the trade-offs of each approach.",
    "Design a fault-tolerant architecture for a home lab with four inference hosts, reason through the "
    "failure modes, and derive the expected availability mathematically.",
]


def chat(alias, text, max_tokens, **extra):
    body = {"model": alias, "messages": [{"role": "user", "content": text}], "stream": True, "max_tokens": max_tokens}
    body.update(extra)
    return body


def poisson(rng, mean_gap, duration, start=0.0):
    """Arrival times of a Poisson process with mean gap `mean_gap` over [start, duration)."""
    t = start + rng.expovariate(1.0 / mean_gap)
    while t < duration:
        yield t
        t += rng.expovariate(1.0 / mean_gap)


def workload(seed, duration):
    """The seed's clients, in real seconds: a list of (at, client, path, body)."""
    rng = random.Random(seed)
    out = []
    add = lambda at, client, body, path="/v1/chat/completions": out.append((at, client, path, body))  # noqa: E731
    # Voice assistant (Home Assistant): conversations of 2-4 quick turns on reasoning_fast.
    for t in poisson(rng, 25, duration):
        for turn in range(rng.randint(2, 4)):
            add(t + turn * rng.uniform(3, 6), "voice", chat("reasoning_fast", rng.choice(SIMPLE), 60))
    # Agents on tools_slow: runs of 3-7 steps, each with tools.
    for t in poisson(rng, 60, duration):
        for step in range(rng.randint(3, 7)):
            add(t + step * rng.uniform(6, 10), "agent", chat("tools_slow", f"Step {step}: find the backup schedule.", 200, tools=TOOLS))
    # Coding assistant in the IDE.
    for t in poisson(rng, 30, duration):
        add(t, "coding", chat("coding", "Refactor this function to use iterators.", 300))
    # Vision: a camera snapshot described.
    for t in poisson(rng, 45, duration):
        content = [{"type": "text", "text": "Who is at the door?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]
        add(t, "vision", {"model": "vision", "messages": [{"role": "user", "content": content}], "stream": True, "max_tokens": 150})
    # Household chat (Open WebUI) on gpt-oss:20b, with a RAG query embedding before each turn.
    for t in poisson(rng, 40, duration):
        for turn in range(rng.randint(2, 3)):
            at = t + turn * rng.uniform(15, 30)
            add(at, "rag-query", {"model": "embedding", "input": "what did we decide about the garden?"}, "/v1/embeddings")
            add(at + 0.3, "chat", chat("gpt-oss:20b", "Summarise our garden plans.", 250))
    # Document indexer: bursts of embedding batches.
    for t in poisson(rng, 90, duration):
        for i in range(rng.randint(6, 10)):
            inputs = [f"chunk {i}-{k} of a household document" for k in range(8)]
            add(t + i * 0.5, "indexer", {"model": "embedding", "input": inputs}, "/v1/embeddings")
    # Deep research on gpt-oss:120b (star only).
    for t in poisson(rng, 120, duration):
        add(t, "research", chat("gpt-oss:120b", "Research home battery options and compare them.", 400))
    # The complexity router: simple prompts go to reasoning_fast, complex ones to reasoning_slow.
    for t in poisson(rng, 40, duration):
        add(t, "smart-router", chat("smart-router", rng.choice(SIMPLE + COMPLEX), 120))
    return sorted((x for x in out if x[0] < duration), key=lambda x: x[0])


def cmd_gen(args):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    s = args.scale
    lab = {"seed": args.seed, "scale": s, "duration_real_s": args.duration, "models": MODELS, "hosts": HOSTS,
           "seed_placement": SEED_PLACEMENT, "prompt_processing_s": PROMPT_PROCESSING_S, "keep_alive_s": KEEP_ALIVE_S}
    (work / "lab.json").write_text(json.dumps(lab, indent=1))
    for name, h in HOSTS.items():
        cfg = {
            "name": name,
            "models": h["models"],
            "record_limit": 0,
            "reply_tokens": REPLY_TOKENS,
            "tokens_per_sec": h["tps"] * s,
            "ttft_ms": round(PROMPT_PROCESSING_S * 1000 / s),
            "embedding_dims": 64,
            "residency": {
                "memory_budget": h["budget"] * GB,
                "model_sizes": {m: round(MODELS[m]["size"] * GB) for m in h["models"]},
                "load_ms": {m: round(MODELS[m]["load_s"] * 1000 / s) for m in h["models"]},
                "keep_alive": f"{round(KEEP_ALIVE_S * 1000 / s)}ms",
            },
        }
        (work / f"mock-{name}.json").write_text(json.dumps(cfg))
    items = workload(args.seed, args.duration)
    with open(work / "schedule.jsonl", "w") as f:
        for at, client, path, body in items:
            f.write(json.dumps({"at": round(at / s, 4), "client": client, "path": path, "body": body}) + "\n")
    print(len(items))


def yaml_str(x):
    return json.dumps(x)  # JSON strings are valid YAML scalars


def cmd_config(args):
    ports = dict(p.split("=") for p in args.ports.split(","))
    lines = [
        f"# Generated by bench/swap ({args.policy}): the home-lab seed's hosts, models and aliases on simulated",
        "# Ollama hosts, every group's deployments in one order tier so that there is a choice of host.",
        "general_settings:",
        "  master_key: " + yaml_str(args.master_key),
        "  background_health_checks: true",
        "  health_check_interval: 1",
        "litellm_settings:",
        "  check_provider_endpoint: true",
        '  default_fallbacks: ["nemotron-cascade-2:30b"]',
        "  request_timeout: 600",
        "router_settings:",
        "  routing_strategy: simple-shuffle",
        f"  residency_routing: {'false' if args.policy == 'blind' else 'true'}",
        "  model_group_alias:",
    ]
    lines += [f"    {yaml_str(k)}: {yaml_str(v)}" for k, v in ALIASES.items()]
    lines.append("  fallbacks:")
    lines += [f"    - {yaml_str(k)}: {json.dumps(v)}" for fb in FALLBACKS for k, v in fb.items()]
    lines.append("model_list:")
    for host, h in HOSTS.items():
        for m in h["models"]:
            mode = "embedding" if m == "embeddinggemma" else "completion"
            lines += [
                f"  - model_name: {yaml_str(m)}",
                "    litellm_params:",
                f"      model: {yaml_str('ollama_chat/' + m)}",
                f"      api_base: http://127.0.0.1:{ports[host]}",
                "    model_info:",
                f"      mode: {mode}",
            ]
    lines += [
        "  - model_name: smart-router",
        "    litellm_params:",
        "      model: auto_router/complexity_router",
        "      complexity_router_config:",
        "        tiers: {SIMPLE: reasoning_fast, MEDIUM: reasoning_fast, COMPLEX: reasoning_slow, REASONING: reasoning_slow}",
        "      complexity_router_default_model: reasoning_fast",
    ]
    if args.policy == "aware":
        # llmux's own per-host settings (LiteLLM has none): each host's memory budget, as its owner would declare it.
        lines.append("llmux_settings:")
        lines.append("  hosts:")
        for host, h in HOSTS.items():
            lines.append(f"    http://127.0.0.1:{ports[host]}: {{memory_budget: {h['budget']}GB}}")
    Path(args.out).write_text("\n".join(lines) + "\n")


def fmt_s(ms, scale):
    return "–" if ms is None else f"{ms * scale / 1000:.2f} s"


def cmd_report(args):
    work = Path(args.work)
    lab = json.loads((work / "lab.json").read_text())
    s = lab["scale"]
    policies = [("blind", "residency-blind (LiteLLM-style `simple-shuffle`)"), ("aware", "**llmux residency-aware**")]
    res, stats, per_host = {}, {}, {}
    for p, _ in policies:
        f = work / f"replay-{p}.json"
        if not f.exists():
            continue
        res[p] = json.loads(f.read_text().strip().splitlines()[-1])
        stats[p] = {h: json.loads((work / f"stats-{p}-{h}.json").read_text()) for h in HOSTS}
        # x-llmux-deployment is "model_list[i] MODEL @ http://127.0.0.1:PORT": count answers per host.
        host_of = {str(port): h for h, port in json.loads((work / f"ports-{p}.json").read_text()).items()}
        served = {}
        for line in (work / f"requests-{p}.jsonl").read_text().splitlines():
            r = json.loads(line)
            d = r.get("deployment") or ""
            if "@" in d:
                port = "".join(ch for ch in d.rsplit(":", 1)[-1] if ch.isdigit())
                h = host_of.get(port, "?")
            else:
                h = "?"  # a stream opened with keep-alive comments before a host answered
            served[h] = served.get(h, 0) + 1
        per_host[p] = served
    n_req = next(iter(res.values()))["overall"]["requests"] if res else 0
    out = []
    w = out.append
    w(f"# Model swaps: residency-aware vs residency-blind routing — {datetime.date.today().isoformat()}")
    w("")
    w("Generated by `bench/swap`. The home-lab seed (`examples/homelab.yaml`) on four simulated Ollama hosts")
    w("(`llmux-mock` with its residency simulation: memory budget, LRU eviction, load times, keep-alive), the same")
    w(f"seed-deterministic schedule of {n_req} requests (seed {lab['seed']}) replayed through llmux twice: with")
    w("`router_settings.residency_routing: false` (shuffle within the order tier, as LiteLLM's `simple-shuffle`) and")
    w("with llmux's default (prefer a host where the model is loaded; each host's `memory_budget` declared under")
    w("`llmux_settings.hosts`). Hosts start empty; llmux probes `/api/tags` + `/api/ps` every second.")
    w("")
    w(f"Simulated time runs {s:g}× faster than the home lab's; all times below are converted back to real time")
    w(f"(a run covers {round(lab['duration_real_s'] / 60, 1):g} real minutes).")
    w("")
    w("| Policy | Requests | Failed | Model loads | Evictions | p50 TTFT | p95 TTFT | p50 total | p95 total |")
    w("|---|---|---|---|---|---|---|---|---|")
    for p, name in policies:
        if p not in res:
            continue
        o = res[p]["overall"]
        loads = sum(stats[p][h].get("loads", 0) for h in HOSTS)
        ev = sum(stats[p][h].get("evictions", 0) for h in HOSTS)
        w(f"| {name} | {o['requests']} | {o['failed']} | {loads} | {ev} | {fmt_s(o['ttft_ms']['p50'], s)} | "
          f"{fmt_s(o['ttft_ms']['p95'], s)} | {fmt_s(o['total_ms']['p50'], s)} | {fmt_s(o['total_ms']['p95'], s)} |")
    if len(res) == 2:
        lb = sum(stats["blind"][h].get("loads", 0) for h in HOSTS)
        la = sum(stats["aware"][h].get("loads", 0) for h in HOSTS)
        tb, ta = res["blind"]["overall"]["ttft_ms"]["p95"], res["aware"]["overall"]["ttft_ms"]["p95"]
        w("")
        if lb and tb and ta:
            w(f"Residency-aware routing: **{(1 - la / lb) * 100:.0f}% fewer model loads** ({lb} → {la}), "
              f"**p95 time to first token {tb / ta:.1f}× lower** ({fmt_s(tb, s)} → {fmt_s(ta, s)}).")
    w("")
    w("TTFT: streamed chat requests only, request sent → first SSE event with generated text. Total: every")
    w("successful request (embeddings included), sent → last byte. Loads and evictions: the mocks' counters")
    w("(`/mock/stats`), summed over the four hosts; the first load of each model counts too.")
    w("")
    w("## Per client")
    w("")
    w("| Client | Requests | " + " | ".join(f"{p} p50 / p95 TTFT" for p, _ in policies if p in res) + " | "
      + " | ".join(f"{p} p95 total" for p, _ in policies if p in res) + " |")
    w("|---|---|" + "---|" * (2 * len(res)))
    clients = sorted(next(iter(res.values()))["by_client"].keys()) if res else []
    for c in clients:
        cells = []
        for p, _ in policies:
            if p in res:
                t = res[p]["by_client"][c]["ttft_ms"]
                cells.append("–" if t["p50"] is None else f"{fmt_s(t['p50'], s)} / {fmt_s(t['p95'], s)}")
        for p, _ in policies:
            if p in res:
                cells.append(fmt_s(res[p]["by_client"][c]["total_ms"]["p95"], s))
        reqs = next(iter(res.values()))["by_client"][c]["requests"]
        w(f"| {c} | {reqs} | " + " | ".join(cells) + " |")
    w("")
    w("## Per host")
    w("")
    w("| Host | Budget | Models (GB) | " + " | ".join(f"{p}: requests / loads / evictions" for p, _ in policies if p in res) + " |")
    w("|---|---|---|" + "---|" * len(res))
    for h, spec in HOSTS.items():
        models = ", ".join(f"{m} {MODELS[m]['size']:g}" + ("" if m in SEED_PLACEMENT[h] else "*") for m in spec["models"])
        cells = []
        for p, _ in policies:
            if p in res:
                st = stats[p][h]
                cells.append(f"{per_host[p].get(h, 0)} / {st.get('loads', 0)} / {st.get('evictions', 0)}")
        w(f"| {h} | {spec['budget']} GB | {models} | " + " | ".join(cells) + " |")
    w("")
    unknown = ", ".join(f"{p} {per_host[p]['?']}" for p, _ in policies if per_host.get(p, {}).get("?"))
    w("`*` = added to the seed's placement (see `bench/README.md`)."
      + (f" Requests without `x-llmux-deployment` (their stream opened with keep-alive comments): {unknown}." if unknown else "")
      + " Loads per model:")
    w("")
    for p, _ in policies:
        if p in res:
            per_model = {}
            for h in HOSTS:
                for m, n in stats[p][h].get("model_loads", {}).items():
                    per_model[f"{m}@{h}"] = n
            w(f"- {p}: " + ", ".join(f"{k} {v}" for k, v in sorted(per_model.items())))
    w("")
    w("## Set-up")
    w("")
    w(f"- Scale {s:g}×: load times " + ", ".join(f"{m} {v['load_s']} s" for m, v in MODELS.items())
      + f"; prompt processing {PROMPT_PROCESSING_S} s; keep-alive {KEEP_ALIVE_S // 60} min; token rates "
      + ", ".join(f"{h} {v['tps']}/s" for h, v in HOSTS.items()) + " (real).")
    w(f"- Failures: " + "; ".join(f"{p}: {json.dumps(res[p]['overall']['errors'])}" for p in res))
    w(f"- Sending accuracy: latest request sent {max(res[p]['max_late_ms'] for p in res):.1f} ms (wall) after its time." if res else "")
    try:
        git = subprocess.run(["git", "-C", str(work.parent.parent), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(work.parent.parent), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout.strip()
        w(f"- Commit {git}{' (with uncommitted changes)' if dirty else ''}; {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} cores.")
    except OSError:
        pass
    text = "\n".join(out) + "\n"
    Path(args.out).write_text(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gen")
    g.add_argument("--work", required=True)
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--scale", type=float, default=4.0)
    g.add_argument("--duration", type=float, default=420.0, help="real seconds of workload")
    c = sub.add_parser("config")
    c.add_argument("--work", required=True)
    c.add_argument("--policy", choices=["blind", "aware"], required=True)
    c.add_argument("--ports", required=True)
    c.add_argument("--master-key", required=True)
    c.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--out", required=True)
    a = ap.parse_args()
    {"gen": cmd_gen, "config": cmd_config, "report": cmd_report}[a.cmd](a)


if __name__ == "__main__":
    main()
