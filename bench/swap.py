#!/usr/bin/env python3
"""bench/swap's helper (stdlib only): the simulated home lab, its workloads, the llmux configs, and the report.

Two benchmarks share the lab:

- *residency*: the seed's clients on the seed's four hosts; model loads and time to first token with
  residency-aware vs residency-blind routing;
- *mixed*: long agent turns and short voice commands (Home Assistant) on one model served by six hosts of very
  different speeds (the seed's four and two the issue names), plus a client that hangs up while a model loads;
  completion times for least-busy vs speed-aware placement, the voice commands' with and without priority,
  evictions of a model that was serving, and loads aborted by hang-ups.

    swap.py gen --work DIR [--seed N] [--scale S] [--duration REAL_SECONDS]
        residency: writes DIR/lab.json, DIR/mock-<host>.json (each mock's --config-json), DIR/schedule.jsonl
    swap.py gen-mixed --work DIR [--seed N] [--scale S] [--duration REAL_SECONDS]
        mixed: the same files for the mixed benchmark (use another DIR)
    swap.py config --work DIR --policy blind|aware|lb|speed|prio --ports host=port,... --out FILE
        writes llmux's config.yaml for one policy (blind, aware: residency; lb, speed, prio: mixed)
    swap.py hosts --work DIR
        the hosts of the benchmark generated in DIR, one a line
    swap.py report --work DIR [--mixed DIR] --out FILE
        reads DIR/replay-<policy>.json, DIR/requests-<policy>.jsonl, DIR/stats-<policy>-<host>.json (and the
        same in the mixed DIR) and writes the markdown report

Everything the simulation uses is in "real" (home-lab) time; the mocks and the schedule run SCALE times faster
(load times, keep-alive, prompt processing and token rates alike), so a run of DURATION real seconds takes
DURATION / SCALE seconds of wall time. Times in the report are converted back to real time.
"""

import argparse
import datetime
import json
import math
import random
import subprocess
from pathlib import Path

GB = 1_000_000_000

# What the home lab's hardware does with an 8-9B dense model at 4 bits (the class of qwen3.5:9b), one stream:
# `decode` = tokens generated per second, `prefill` = prompt tokens read per second. Measured figures are from
# public llama.cpp / Ollama benchmarks; where none was found for the exact chip, the figure is derived from a
# measured neighbour by memory bandwidth (decode) or GPU cores (prefill), and says so. The mocks give every model
# on a host the host's rates (a simplification: a bigger model would be slower, a MoE such as gpt-oss:20b faster).
HARDWARE = {
    # Mac Studio M3 Ultra (80-core GPU, 819 GB/s). No llama.cpp 8B figure for the M3 Ultra was found; derived from
    # the M2 Ultra 76-core (800 GB/s) measured with llama-bench, Llama 3 8B Q4_K_M: tg512 78.81 t/s, pp512 994 t/s
    # (https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference, README, "Apple Silicon" LLaMA 3 table):
    # decode x 819/800, prefill taken as the M2 Ultra's.
    "M3 Ultra": dict(decode=81, prefill=994),
    # 2x Tesla P40 (347 GB/s each). LocalScore result quoted at https://insiderllm.com/guides/used-tesla-p40-local-ai
    # ("LocalScore.ai Results"): LLaMA 2 7B Q4_0, prompt 833 t/s, generation 40.9 t/s. A model that fits one card
    # runs no faster on two (llama.cpp splits layers, which run one after the other).
    "2x P40": dict(decode=41, prefill=833),
    # Mac mini M4 Pro (20-core GPU, 273 GB/s). No llama.cpp 8B figure for the M4 Pro was found; derived from the
    # base M4 (10-core GPU, 120 GB/s) measured with llama-bench, Llama 3.1 8B Q4_K_M: pp512 224.81, tg128 20.87 t/s
    # (https://github.com/brand-o/normiebench/issues/3; Ollama's llama3.1:8b gives the same 20.89 t/s at
    # https://github.com/geerlingguy/ai-benchmarks/issues/2): decode x 273/120, prefill x 20/10 GPU cores.
    "M4 Pro": dict(decode=47, prefill=450),
    # RTX 4070 Ti 12 GB, measured with llama-bench, Llama 3 8B Q4_K_M: tg512 83.50 t/s, pp512 3936.29 t/s
    # (https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference, README, "NVIDIA GPUs" LLaMA 3 table).
    "RTX 4070 Ti": dict(decode=83.5, prefill=3936),
    # Radeon RX 7600M (28 CUs, 128-bit GDDR6 at 16 Gbps = 256 GB/s). No figure was found; derived from the RX 6700 XT
    # (40 CUs, 384 GB/s) measured with llama-bench, Mistral 7B Q4_0 on ROCm: pp512 1017.28, tg128 58.97 t/s
    # (https://github.com/ggml-org/llama.cpp/pull/5835, comment by Nindaleth): decode x 256/384, prefill x 28/40.
    "RX 7600M": dict(decode=39, prefill=712),
    # Radeon 890M (Ryzen AI 9 HX 370 iGPU, LPDDR5X ~120 GB/s), measured on a GMKtec EVO-X1 with llama.cpp,
    # Qwen3.5-9B UD-Q4_K_XL: 14 tokens/s output, 43 tokens/s prompt
    # (https://neph-io.com/projects/impact-of-hardware-on-local-hosted-llm). The prompt figure is that page's;
    # it is low for an iGPU, so the 890M host is, if anything, made to look slower than it is.
    "Radeon 890M": dict(decode=14, prefill=43),
}

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
# hardware: Mac Studio M3 Ultra 84, 2x P40 44, RTX 4070 Ti 14, Mac mini M4 Pro 20. Token rates are the hardware's
# decode rate (HARDWARE, real tokens per second of one stream); every model on a host generates at that rate.
HOSTS = {
    "clementine": {"hardware": "M4 Pro", "budget": 20, "models": ["nemotron-3-nano:4b", "embeddinggemma", "qwen3.5:9b", "gpt-oss:20b"]},
    "banana": {"hardware": "RTX 4070 Ti", "budget": 14, "models": ["nemotron-3-nano:4b", "qwen3.5:9b", "embeddinggemma", "gpt-oss:20b"]},
    "star": {"hardware": "M3 Ultra", "budget": 84, "models": ["nemotron-cascade-2:30b", "gpt-oss:120b"]},
    "cranberry": {"hardware": "2x P40", "budget": 44, "models": ["nemotron-cascade-2:30b"]},
}
for _h in HOSTS.values():
    _h["tps"] = HARDWARE[_h["hardware"]]["decode"]
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


def mock_config(name, h, scale, knobs):
    """One simulated host's `--config-json`: its models with their sizes and load times (scaled), its memory
    budget, Ollama's keep-alive, and the engine `knobs` (token rates, reply length, ...)."""
    return {
        "name": name,
        "models": h["models"],
        "record_limit": 0,
        **knobs,
        "residency": {
            "memory_budget": h["budget"] * GB,
            "model_sizes": {m: round(MODELS[m]["size"] * GB) for m in h["models"]},
            "load_ms": {m: round(MODELS[m]["load_s"] * 1000 / scale) for m in h["models"]},
            "keep_alive": f"{round(KEEP_ALIVE_S * 1000 / scale)}ms",
        },
    }


def write_schedule(work, items, scale):
    """DIR/schedule.jsonl for llmux-bench replay from (at, client, path, body, client_timeout) in real seconds."""
    with open(work / "schedule.jsonl", "w") as f:
        for at, client, path, body, timeout in items:
            line = {"at": round(at / scale, 4), "client": client, "path": path, "body": body}
            if timeout:
                line["timeout"] = round(timeout / scale, 4)
            f.write(json.dumps(line) + "\n")


def cmd_gen(args):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    s = args.scale
    lab = {"seed": args.seed, "scale": s, "duration_real_s": args.duration, "models": MODELS, "hosts": HOSTS,
           "seed_placement": SEED_PLACEMENT, "prompt_processing_s": PROMPT_PROCESSING_S, "keep_alive_s": KEEP_ALIVE_S}
    (work / "lab.json").write_text(json.dumps(lab, indent=1))
    for name, h in HOSTS.items():
        knobs = {"reply_tokens": REPLY_TOKENS, "tokens_per_sec": h["tps"] * s,
                 "ttft_ms": round(PROMPT_PROCESSING_S * 1000 / s), "embedding_dims": 64}
        (work / f"mock-{name}.json").write_text(json.dumps(mock_config(name, h, s, knobs)))
    items = workload(args.seed, args.duration)
    write_schedule(work, [(at, client, path, body, None) for at, client, path, body in items], s)
    print(len(items))


def yaml_str(x):
    return json.dumps(x)  # JSON strings are valid YAML scalars


def config_head(master_key):
    """The lines every config starts with: the master key, a probe of every host each second, and the start of
    `litellm_settings`."""
    return [
        "general_settings:",
        "  master_key: " + yaml_str(master_key),
        "  background_health_checks: true",
        "  health_check_interval: 1",
        "litellm_settings:",
        "  check_provider_endpoint: true",
    ]


def cmd_config(args):
    ports = dict(p.split("=") for p in args.ports.split(","))
    if args.policy in ("lb", "speed", "prio"):
        config_mixed(args, ports)
        return
    lines = [
        f"# Generated by bench/swap ({args.policy}): the home-lab seed's hosts, models and aliases on simulated",
        "# Ollama hosts, every group's deployments in one order tier so that there is a choice of host.",
        *config_head(args.master_key),
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


# ---------------------------------------------------------------------------------------------------------------
# The mixed benchmark: agents and voice on one model over six hosts of very different speeds.

# The hosts: the seed's four and two boxes the issue names that the seed does not have (marked `added`).
# `budget` = memory the loaded models may take (GB). Every host serves qwen3.5:9b (the seed's vision model, 7 GB,
# the one model every box here holds); banana and star also carry gpt-oss:20b (13 GB) for a notification client.
# On banana (14 GB) the two cannot be loaded together, so one evicts the other.
MIXED_HOSTS = {
    "clementine": {"hardware": "M4 Pro", "budget": 20, "models": ["qwen3.5:9b"]},
    "banana": {"hardware": "RTX 4070 Ti", "budget": 14, "models": ["qwen3.5:9b", "gpt-oss:20b"]},
    "star": {"hardware": "M3 Ultra", "budget": 84, "models": ["qwen3.5:9b", "gpt-oss:20b"]},
    "cranberry": {"hardware": "2x P40", "budget": 44, "models": ["qwen3.5:9b"]},
    # Added: a mini PC with a Radeon RX 7600M (8 GB of VRAM) and one with a Ryzen AI 9 HX 370 (Radeon 890M iGPU,
    # 16 GB of its shared memory given to the GPU).
    "fig": {"hardware": "RX 7600M", "budget": 8, "models": ["qwen3.5:9b"], "added": True},
    "kiwi": {"hardware": "Radeon 890M", "budget": 16, "models": ["qwen3.5:9b"], "added": True},
}
MIXED_MODEL = "qwen3.5:9b"
MIXED_OVERHEAD_S = 0.05  # real seconds an engine takes before reading the prompt
MIXED_REPLY_TOKENS = 2000  # the mocks' reply length; each request's max_tokens cuts it
HANGUP_S = 4.0  # the notification client's time limit (real seconds): less than gpt-oss:20b's 7 s load
# Voice commands (Home Assistant Assist): the exposed entities and the command, a short answer.
HA_CONTEXT = ("You are a voice assistant for Home Assistant. Answer in one short sentence. Exposed entities: "
              + ", ".join(f"light.room_{i} (off)" for i in range(40)) + ". ")
MIXED_POLICIES = [
    ("lb", "least-busy (LiteLLM's `least-busy`, `residency_routing: false`)"),
    ("speed", "**llmux speed-aware** (`least-busy`, llmux's default residency and speed rules)"),
    ("prio", "**llmux speed-aware + voice priority** (as above, `assist` alias `priority: -1`)"),
]


def filler(rng, tokens, tag):
    """A prompt of about `tokens` tokens (4 characters each, as llmux and the mock estimate), unique from its
    first characters so that no engine's prompt cache holds any of it."""
    words = ["backup", "schedule", "config", "service", "error", "retry", "deploy", "volume", "network", "module"]
    text = f"[{tag}] "
    while len(text) < tokens * 4:
        text += rng.choice(words) + " "
    return text[: tokens * 4]


def mixed_workload(seed, duration):
    """The mixed clients, in real seconds: a list of (at, client, path, body, client_timeout)."""
    rng = random.Random(seed)
    out = []
    n = [0]

    def add(at, client, body, timeout=None):
        n[0] += 1
        out.append((at, client, "/v1/chat/completions", body, timeout))

    def agent_turn(at, client, prompt, answer):
        text = filler(rng, prompt, f"{client} {n[0]}")
        add(at, client, chat("agent", text, answer))

    # Coding agents working alone: one long turn at a time (a 1.5-5k-token prompt, a 200-500-token answer).
    for t in poisson(rng, 20, duration):
        agent_turn(t, "agent", rng.randint(1500, 5000), rng.randint(200, 500))
    # An orchestrating agent fanning out to sub-agents: 4-9 turns at once, enough to fill every host.
    for t in poisson(rng, 60, duration):
        for _ in range(rng.randint(4, 9)):
            agent_turn(t + rng.uniform(0, 1.5), "subagent", rng.randint(1000, 3000), rng.randint(150, 400))
    # Voice commands (Home Assistant): a ~350-token prompt, a one-sentence answer.
    for t in poisson(rng, 8, duration):
        add(t, "voice", chat("assist", HA_CONTEXT + rng.choice(SIMPLE), 40))
    # Notifications summarised by gpt-oss:20b; the client gives up after HANGUP_S (while a cold model loads).
    for t in poisson(rng, 45, duration):
        add(t, "notify", chat("gpt-oss:20b", "Summarise: the washing machine has finished.", 30), HANGUP_S)
    return sorted((x for x in out if x[0] < duration), key=lambda x: x[0])


def cmd_gen_mixed(args):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    s = args.scale
    lab = {"kind": "mixed", "seed": args.seed, "scale": s, "duration_real_s": args.duration, "models": MODELS,
           "hosts": MIXED_HOSTS, "hardware": HARDWARE, "keep_alive_s": KEEP_ALIVE_S}
    (work / "lab.json").write_text(json.dumps(lab, indent=1))
    for name, h in MIXED_HOSTS.items():
        hw = HARDWARE[h["hardware"]]
        knobs = {"reply_tokens": MIXED_REPLY_TOKENS, "tokens_per_sec": hw["decode"] * s,
                 "prefill_tokens_per_sec": hw["prefill"] * s, "ttft_ms": max(1, round(MIXED_OVERHEAD_S * 1000 / s))}
        (work / f"mock-{name}.json").write_text(json.dumps(mock_config(name, h, s, knobs)))
    items = mixed_workload(args.seed, args.duration)
    write_schedule(work, items, s)
    print(len(items))


def cmd_hosts(args):
    lab = json.loads((Path(args.work) / "lab.json").read_text())
    print("\n".join(lab["hosts"]))


def config_mixed(args, ports):
    """llmux's config for one mixed policy: lb (least-busy, residency rules off), speed (least-busy within
    llmux's residency and speed rules), prio (speed, and the voice alias ahead in the queue)."""
    lines = [
        f"# Generated by bench/swap (mixed, {args.policy}): six simulated Ollama hosts of different speeds, one",
        "# slot each (Ollama's OLLAMA_NUM_PARALLEL=1): a request finding every host busy waits in llmux's queue.",
        *config_head(args.master_key),
        "  request_timeout: 3600",
        "router_settings:",
        "  routing_strategy: least-busy",
        f"  residency_routing: {'false' if args.policy == 'lb' else 'true'}",
        "  queue_timeout: 3600",
        "  model_group_alias:",
        f'    "assist": {yaml_str(MIXED_MODEL)}',
        f'    "agent": {yaml_str(MIXED_MODEL)}',
        "model_list:",
    ]
    # The model's deployments first, in host order, then gpt-oss:20b's (banana before star).
    for model in [MIXED_MODEL, "gpt-oss:20b"]:
        for host, h in MIXED_HOSTS.items():
            if model in h["models"]:
                lines += [
                    f"  - model_name: {yaml_str(model)}",
                    "    litellm_params:",
                    f"      model: {yaml_str('ollama_chat/' + model)}",
                    f"      api_base: http://127.0.0.1:{ports[host]}",
                    "      max_parallel_requests: 1",
                    "    model_info:",
                    "      mode: completion",
                ]
    # Each host's memory budget, as its owner would declare it (read only where residency_routing is on).
    lines += ["llmux_settings:", "  hosts:"]
    lines += [f"    http://127.0.0.1:{ports[host]}: {{memory_budget: {h['budget']}GB}}" for host, h in MIXED_HOSTS.items()]
    if args.policy == "prio":
        lines += ["  groups:", "    assist: {priority: -1}"]
    Path(args.out).write_text("\n".join(lines) + "\n")


def load_requests(work, policy):
    return [json.loads(x) for x in (work / f"requests-{policy}.jsonl").read_text().splitlines() if x.strip()]


def pct(values, p):
    """Nearest-rank percentile, as llmux-bench's."""
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v), max(1, math.ceil(p * len(v)))) - 1]


def host_of_request(r, host_of):
    d = r.get("deployment") or ""
    if "@" not in d:
        return "?"
    return host_of.get("".join(ch for ch in d.rsplit(":", 1)[-1] if ch.isdigit()), "?")


def mixed_report(work):
    """The mixed benchmark's section of the report (markdown lines)."""
    lab = json.loads((work / "lab.json").read_text())
    s = lab["scale"]
    hosts = lab["hosts"]
    got = [(p, name) for p, name in MIXED_POLICIES if (work / f"requests-{p}.jsonl").exists()]
    if not got:
        return []
    reqs = {p: load_requests(work, p) for p, _ in got}
    stats = {p: {h: json.loads((work / f"stats-{p}-{h}.json").read_text()) for h in hosts} for p, _ in got}
    total = lambda p, h, k: sum(stats[p][x].get(k, 0) for x in (hosts if h is None else [h]))  # noqa: E731
    sec = lambda ms: "–" if ms is None else f"{ms * s / 1000:.1f} s"  # noqa: E731

    def times(p, clients):
        return [r["total_ms"] for r in reqs[p] if r["ok"] and r["client"] in clients]

    def failed(p, clients):
        return sum(1 for r in reqs[p] if not r["ok"] and r["client"] in clients)

    counts = {}
    for r in next(iter(reqs.values())):
        counts[r["client"]] = counts.get(r["client"], 0) + 1
    agents = ("agent", "subagent")
    out = []
    w = out.append
    w(f"## Mixed: agents and voice on hosts of different speeds ({sum(counts.values())} requests, "
      f"{round(lab['duration_real_s'] / 60, 1):g} real minutes, seed {lab['seed']})")
    w("")
    w(f"One model ({MIXED_MODEL}) on six simulated Ollama hosts, each at its hardware's cited decode and prefill")
    w("rates (*Where the requests went* below), one request at a time per host (`max_parallel_requests: 1`, as")
    w("Ollama's default of one parallel request): a request that finds every host busy waits in llmux's queue.")
    w(f"Clients: {counts.get('agent', 0)} coding-agent turns (1.5–5k-token prompts, 200–500-token answers); "
      f"{counts.get('subagent', 0)} sub-agent")
    w("turns in fan-out bursts of 4–9 at once (1–3k-token prompts, 150–400-token answers); "
      f"{counts.get('voice', 0)} Home Assistant voice")
    w("commands (`assist` alias, ~350-token prompt, 40-token answer); "
      f"{counts.get('notify', 0)} notification summaries on gpt-oss:20b from a")
    w(f"client that hangs up after {HANGUP_S:g} s (gpt-oss:20b loads in {MODELS['gpt-oss:20b']['load_s']} s). "
      "Every prompt is new to the engines (no prompt-cache hits).")
    w("Completion time: request sent → last byte, successful requests only, real time. Policies, all with the same")
    w("hosts, budgets (`llmux_settings.hosts`) and one slot per deployment:")
    w("")
    w("- *least-busy*: `routing_strategy: least-busy`, `residency_routing: false` — LiteLLM's rule: the deployment")
    w("  with the fewest requests in flight, ties to the first in file order (hosts in the order of the table below);")
    w("  no residency, eviction or speed rule; cold models load inside the client's request.")
    w("- *llmux speed-aware*: the same strategy with llmux's default `residency_routing: true` — a host where loading")
    w("  would evict a model that is serving is passed over; a warm host beats a cold one unless loading is quicker")
    w("  than the queue; among what is left, the candidate expected to finish first (learned prefill and decode")
    w("  rates, queue, load) and those within 1.25× of it; least-busy among those. Cold loads are set off by llmux.")
    w("- *+ voice priority*: as above, and `llmux_settings.groups.assist.priority: -1`, so a queued voice command")
    w("  takes the next free slot before queued agent turns (priority 0).")
    w("")
    w("| Policy | agent turns p50 / p95 | all turns p95 | voice p50 / p95 | failed | client hang-ups |")
    w("|---|---|---|---|---|---|")
    for p, name in got:
        a, v = times(p, agents), times(p, ("voice",))
        every = times(p, agents + ("voice",))
        w(f"| {name} | {sec(pct(a, .5))} / {sec(pct(a, .95))} | {sec(pct(every, .95))} | "
          f"{sec(pct(v, .5))} / {sec(pct(v, .95))} | {failed(p, agents + ('voice',))} | "
          f"{failed(p, ('notify',))} of {counts.get('notify', 0)} |")
    w("")
    w("*All turns*: agent, sub-agent and voice requests together. *Failed*: agent and voice requests that did not")
    w("complete (the notification client's hang-ups are counted apart).")
    w("")
    w("| Policy | Model loads | Evictions | **Evictions of a serving model** (target 0) | **Loads aborted by hang-ups** (target 0) |")
    w("|---|---|---|---|---|")
    for p, name in got:
        w(f"| {name} | {total(p, None, 'loads')} | {total(p, None, 'evictions')} | "
          f"{total(p, None, 'evicted_busy')} | {total(p, None, 'aborted_loads')} |")
    w("")
    w("*Evictions of a serving model*: the mocks' `evicted_busy`, evictions of a model that was still serving a")
    w("request when the load that pushed it out was asked for (the load waited for it to finish, as Ollama does, and")
    w("the next request for it pays its load again). *Loads aborted*: the mocks' `aborted_loads`, loads every waiting")
    w("request of which went away before they finished (Ollama aborts them; the next request loads again).")
    w("")
    w("### Where the requests went")
    w("")
    w("| Host | Hardware | decode / prefill (t/s) | " + " | ".join(f"{p}: agent / voice / notify (engine)" for p, _ in got)
      + " |")
    w("|---|---|---|" + "---|" * len(got))
    served = {}
    for p, _ in got:
        host_of = {str(port): h for h, port in json.loads((work / f"ports-{p}.json").read_text()).items()}
        c = {}
        for r in reqs[p]:
            if not r["ok"]:
                continue
            kind = "agent" if r["client"] in agents else r["client"]
            key = (host_of_request(r, host_of), kind)
            c[key] = c.get(key, 0) + 1
        served[p] = c
    for h, spec in hosts.items():
        hw = HARDWARE[spec["hardware"]]
        name = f"{h}{' (added)' if spec.get('added') else ''}"
        cells = [f"{served[p].get((h, 'agent'), 0)} / {served[p].get((h, 'voice'), 0)} / {served[p].get((h, 'notify'), 0)}"
                 f" ({stats[p][h].get('requests', {}).get('/api/chat', 0)})" for p, _ in got]
        w(f"| {name} | {spec['hardware']} | {hw['decode']:g} / {hw['prefill']:g} | " + " | ".join(cells) + " |")
    unknown = {p: sum(v for (h, _), v in served[p].items() if h == "?") for p, _ in got}
    w("")
    w("Counted from `x-llmux-deployment`; *(engine)*: chat requests the host's engine received (`/mock/stats`), which")
    w("also counts the answers without that header"
      + (" (" + ", ".join(f"{p} {n}" for p, n in unknown.items()) + ")" if any(unknown.values()) else "")
      + ": streams that opened with keep-alive comments because")
    w("their first token was slow to come (a cold model, or a long prompt on a slow host).")
    w("")
    slow = {p: sum(1 for r in reqs[p] if r["ok"] and r["client"] in agents and r["total_ms"] * s / 1000 > 40) for p, _ in got}
    a = {p: times(p, agents) for p, _ in got}
    v = {p: times(p, ("voice",)) for p, _ in got}
    if "lb" in a and "speed" in a:
        w(f"Speed-aware vs least-busy: agent turns p50 {sec(pct(a['lb'], .5))} → {sec(pct(a['speed'], .5))}, "
          f"p95 {sec(pct(a['lb'], .95))} → {sec(pct(a['speed'], .95))}.")
    if "speed" in v and "prio" in v:
        w(f"Voice priority: voice commands p95 {sec(pct(v['speed'], .95))} → {sec(pct(v['prio'], .95))}.")
    w("Agent turns that took over 40 s: " + ", ".join(f"{p} {n}" for p, n in slow.items()) + " — turns read by")
    w("the slowest host (kiwi, 43 prompt tokens/s) when every other host was busy: with one slot per host a full")
    w("deployment is passed over before speeds are compared, so a turn is never held back for a fast host while a")
    w("slow one is free.")
    w("")
    return out


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
    w(f"# Model swaps, host speeds and priorities — {datetime.date.today().isoformat()}")
    w("")
    w("Generated by `bench/swap`: two benchmarks on simulated home-lab hosts (`llmux-mock`'s residency simulation).")
    w("")
    w("## Residency: residency-aware vs residency-blind routing")
    w("")
    w("The home-lab seed (`examples/homelab.yaml`) on four simulated Ollama hosts")
    w("(`llmux-mock` with its residency simulation: memory budget, LRU eviction, load times, keep-alive), the same")
    w(f"seed-deterministic schedule of {n_req} requests (seed {lab['seed']}) replayed through llmux twice: with")
    w("`router_settings.residency_routing: false` (shuffle within the order tier, as LiteLLM's `simple-shuffle`) and")
    w("with llmux's default (prefer a host where the model is loaded; each host's `memory_budget` declared under")
    w("`llmux_settings.hosts`). Hosts start empty; llmux probes `/api/tags` + `/api/ps` every second.")
    w("")
    w(f"Simulated time runs {s:g}× faster than the home lab's; all times below are converted back to real time")
    w(f"(a run covers {round(lab['duration_real_s'] / 60, 1):g} real minutes).")
    w("")
    w("| Policy | Requests | Failed | Model loads | Evictions (of a serving model) | p50 TTFT | p95 TTFT | p50 total | p95 total |")
    w("|---|---|---|---|---|---|---|---|---|")
    for p, name in policies:
        if p not in res:
            continue
        o = res[p]["overall"]
        loads = sum(stats[p][h].get("loads", 0) for h in HOSTS)
        ev = sum(stats[p][h].get("evictions", 0) for h in HOSTS)
        busy = sum(stats[p][h].get("evicted_busy", 0) for h in HOSTS)
        w(f"| {name} | {o['requests']} | {o['failed']} | {loads} | {ev} ({busy}) | {fmt_s(o['ttft_ms']['p50'], s)} | "
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
    w("(`/mock/stats`), summed over the four hosts; the first load of each model counts too. *Of a serving model*:")
    w("evictions of a model that was still serving when the load that pushed it out was asked for (`evicted_busy`).")
    w("")
    w("### Per client")
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
    w("### Per host")
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
    mixed = Path(args.mixed) if args.mixed else None
    if mixed and (mixed / "lab.json").exists():
        out.extend(mixed_report(mixed))
    w("## Set-up")
    w("")
    w(f"- Scale {s:g}×: load times " + ", ".join(f"{m} {v['load_s']} s" for m, v in MODELS.items())
      + f"; prompt processing {PROMPT_PROCESSING_S} s; keep-alive {KEEP_ALIVE_S // 60} min; token rates "
      + ", ".join(f"{h} {v['tps']}/s" for h, v in HOSTS.items()) + " (real).")
    w(f"- Failures: " + "; ".join(f"{p}: {json.dumps(res[p]['overall']['errors'])}" for p in res))
    w(f"- Sending accuracy: latest request sent {max(res[p]['max_late_ms'] for p in res):.1f} ms (wall) after its time." if res else "")
    if mixed and (mixed / "lab.json").exists():
        mres = {p: json.loads((mixed / f"replay-{p}.json").read_text().strip().splitlines()[-1])
                for p, _ in MIXED_POLICIES if (mixed / f"replay-{p}.json").exists()}
        ml = json.loads((mixed / "lab.json").read_text())
        w(f"- Mixed: scale {ml['scale']:g}×, {round(ml['duration_real_s'] / 60, 1):g} real minutes; load times "
          + ", ".join(f"{m} {MODELS[m]['load_s']} s" for m in ("qwen3.5:9b", "gpt-oss:20b"))
          + f"; keep-alive {KEEP_ALIVE_S // 60} min; {MIXED_OVERHEAD_S} s engine overhead before the prompt; hosts"
          " start empty; rates from `HARDWARE` in `bench/swap.py` (each cited there).")
        w("- Mixed failures: " + "; ".join(f"{p}: {json.dumps(v['overall']['errors'])}" for p, v in mres.items()))
        if mres:
            w(f"- Mixed sending accuracy: latest request sent {max(v['max_late_ms'] for v in mres.values()):.1f} ms (wall) after its time.")
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
    for name, duration in (("gen", 420.0), ("gen-mixed", 600.0)):
        g = sub.add_parser(name)
        g.add_argument("--work", required=True)
        g.add_argument("--seed", type=int, default=42)
        g.add_argument("--scale", type=float, default=4.0)
        g.add_argument("--duration", type=float, default=duration, help="real seconds of workload")
    c = sub.add_parser("config")
    c.add_argument("--work", required=True)
    c.add_argument("--policy", choices=["blind", "aware", "lb", "speed", "prio"], required=True)
    c.add_argument("--ports", required=True)
    c.add_argument("--master-key", required=True)
    c.add_argument("--out", required=True)
    h = sub.add_parser("hosts")
    h.add_argument("--work", required=True)
    r = sub.add_parser("report")
    r.add_argument("--work", required=True)
    r.add_argument("--mixed", help="the mixed benchmark's work folder")
    r.add_argument("--out", required=True)
    a = ap.parse_args()
    cmds = {"gen": cmd_gen, "gen-mixed": cmd_gen_mixed, "hosts": cmd_hosts, "config": cmd_config, "report": cmd_report}
    cmds[a.cmd](a)


if __name__ == "__main__":
    main()
