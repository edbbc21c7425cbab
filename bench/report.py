#!/usr/bin/env python3
"""Assembles bench/run's raw results (JSON lines from llmux-bench) into the markdown report. Stdlib only."""

import argparse
import json
import re
from pathlib import Path

CONTENDERS = ["direct", "nginx", "llmux", "litellm"]
NAMES = {
    "direct": "direct (mock)",
    "nginx": "nginx `proxy_pass`",
    "llmux": "**llmux**",
    "litellm": "LiteLLM proxy",
}
PATHS = {
    "openai": "OpenAI passthrough, non-streaming (`openai/` deployment → mock `/v1/chat/completions`)",
    "ollama": "Ollama-translated, non-streaming (`ollama_chat/` deployment → mock `/api/chat`)",
    "embeddings": "Embeddings (`openai/` deployment → mock `/v1/embeddings`)",
    "openai-stream": "OpenAI passthrough, streaming (SSE relayed)",
    "ollama-stream": "Ollama-translated, streaming (NDJSON → SSE)",
}


def load(work):
    runs, mem = {}, {}
    for line in (work / "results.jsonl").read_text().splitlines():
        line = line.strip()
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        if "event" in r:
            continue
        label = r.get("label") or ("llmux|startup" if r.get("mode") == "startup" else "")
        parts = label.split("|")
        if r.get("mode") == "mem":
            mem[(parts[0], parts[1])] = r
        elif r.get("mode") == "startup":
            runs[(parts[0], "startup", "startup")] = r
        elif len(parts) == 3:
            runs[tuple(parts)] = r
    return runs, mem


def fmt_t(us):
    """A duration given in µs, in µs below 1 ms, else in ms."""
    if us is None:
        return "—"
    if abs(us) < 1000:
        return f"{us:.0f} µs" if abs(us) >= 100 else f"{us:.1f} µs"
    return f"{us / 1000:.1f} ms" if abs(us) < 100_000 else f"{us / 1000:.0f} ms"


def fmt_added(us):
    if us is None:
        return "—"
    return ("+" if us >= 0 else "−") + fmt_t(abs(us))


def fmt_cpu(ms_per_req):
    """CPU seconds per 1,000 requests (= ms per request)."""
    if ms_per_req is None:
        return "—"
    if ms_per_req >= 100:
        return f"{ms_per_req:.0f}"
    if ms_per_req >= 0.1:
        return f"{ms_per_req:#.3g}"
    return f"{ms_per_req:.4f}"


def fmt_x(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}×"


def mb(kb):
    return "—" if kb is None else f"{kb / 1024:.1f} MB"


def pct(r, key, q):
    if not r or not r.get(key):
        return None
    return r[key].get(q)


def sub(a, b):
    return None if a is None or b is None else a - b


def div(a, b):
    return None if a is None or not b else a / b


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def parse_criterion(text):
    units = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
    results, prev = [], ""
    for line in text.splitlines():
        m = re.search(r"time:\s+\[([\d.]+) (\S+) ([\d.]+) (\S+) ([\d.]+) (\S+)\]", line)
        if m:
            name = line[: line.index("time:")].strip() or prev
            vals = [float(m.group(i)) * units.get(m.group(i + 1), 1.0) for i in (1, 3, 5)]
            results.append((name, *vals))
        elif line.strip() and not line.startswith(" "):
            prev = line.strip()
    return results


def lscpu_summary(text):
    keep = ["Architecture", "CPU(s)", "Model name", "Thread(s) per core", "Core(s) per socket", "CPU max MHz",
            "BogoMIPS", "Hypervisor vendor", "L2 cache", "L3 cache"]
    out = []
    for line in text.splitlines():
        k, _, v = line.partition(":")
        if k.strip() in keep:
            out.append(f"{k.strip()}: {v.strip()}")
    return out


def progress_line(r):
    """One line of progress for a llmux-bench result, for bench/run's log."""
    lat = r.get("ttfc_us") or r.get("lat_us") or {}
    line = (f"    {r.get('label')}: {r.get('achieved_rps', 0):,.0f} req/s, p50 {lat.get('p50', '-')} µs, "
            f"p99 {lat.get('p99', '-')} µs, CPU {r.get('cpu_ms_per_req', 0) * 1000:.1f} µs/req, "
            f"errors {r.get('errors', 0)}")
    if r.get("event") == "sample":
        return (f"    {r['t_s']:7.1f} s  {r['completed']:>9,} requests  RSS {r['rss_kb'] / 1024:6.1f} MB  "
                f"errors {r['errors']}")
    if r.get("event") == "open":
        return f"    {r['opened']:,} streams open after {r['open_s']:.1f} s ({r['failed']} failed)"
    if r.get("mode") == "wait-quiet":
        if r.get("quiet"):
            return None
        return (f"    (other processes use {r.get('busy_cores')} cores after waiting {r.get('waited_s')} s; "
                "measuring anyway)")
    if r.get("mode") == "hold":
        line = (f"    {r.get('label')}: {r.get('opened')} opened, RSS {r.get('rss_kb_open', 0) / 1024:.1f} MB open, "
                f"{r.get('rss_kb_after', 0) / 1024:.1f} MB after")
    return line


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work")
    ap.add_argument("--out")
    ap.add_argument("--line", action="store_true", help="print a progress line for the JSON result on stdin")
    ap.add_argument("--follow", action="store_true", help="print a progress line for each JSON line on stdin")
    args = ap.parse_args()
    if args.follow:
        import sys
        for raw in sys.stdin:
            if raw.strip().startswith("{"):
                line = progress_line(json.loads(raw))
                if line:
                    print(line, flush=True)
        return
    if args.line:
        import sys
        line = progress_line(json.loads(sys.stdin.read()))
        if line:
            print(line)
        return
    if not args.work or not args.out:
        ap.error("--work and --out are required")
    work = Path(args.work)
    runs, mem = load(work)
    meta = json.loads((work / "meta.json").read_text())
    p = meta["params"]
    rates = p["rates"]
    top_rate = max(rates)
    low_rate = min(rates)
    ll_rate = p["litellm_rate"]
    have = {c for (c, _, _) in runs}

    def r(c, path, load_):
        return runs.get((c, path, load_))

    def rate_run(c, path, rate):
        return r(c, path, f"rate{ll_rate}") if c == "litellm" else r(c, path, f"rate{rate}")

    def rounds(c, kind):
        """Results of the interleaved rounds for contender c, kind 'sat' or 'rate<N>', in round order."""
        found = [(int(m.group(1)), v) for (cc, path, load_), v in runs.items()
                 if cc == c and path == "openai" and (m := re.fullmatch(rf"r(\d+)-{kind}", load_))]
        return [v for _, v in sorted(found, key=lambda x: x[0])]

    def median(xs):
        xs = sorted(x for x in xs if x is not None)
        if not xs:
            return None
        n = len(xs)
        return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2

    have_rounds = bool(rounds("llmux", "sat")) and bool(rounds("nginx", "sat")) and bool(rounds("direct", "sat"))
    rk = f"rate{top_rate}"

    def rmed(c, kind, f):
        return median([f(v) for v in rounds(c, kind)])

    def cpu_of(v):
        return v.get("cpu_ms_per_req") if v.get("completed") else None

    def lat_of(q):
        return lambda v: (v.get("lat_us") or {}).get(q)

    def rps_of(v):
        return v.get("achieved_rps")

    L = []
    L.append(f"# llmux benchmark — {meta['date']}{' (quick mode)' if meta['quick'] else ''}")
    L.append("")
    L.append("Generated by `bench/run`"
             f"{' --quick' if meta['quick'] else ''}; see [bench/README.md](../README.md) for what each column "
             "means. One run, one machine: read ratios, not absolutes.")
    L.append("")
    L.append("Machine: " + "; ".join(lscpu_summary(meta["lscpu"])) + f"; {meta['kernel']}.")
    L.append("")
    if meta.get("pinning"):
        L.append(f"Cores: {meta['pinning']}.")
        L.append("")
    L.append(f"Software: llmux {meta['git']}, {meta['rustc']}, {meta['nginx']}"
             + (f", LiteLLM {meta['litellm']} ({meta['litellm_workers']} workers, one per core)" if meta["litellm"]
                else "") + ".")
    L.append("")
    L.append(f"Load: {p['duration_s']} s measured after {p['warmup_s']} s warm-up per run; fixed rates "
             f"{', '.join(f'{x:,}' for x in rates)} req/s and a closed-loop saturation run, "
             f"{p['sat_connections']} keep-alive connections; streams: {p['stream_rate']} streams/s, each "
             f"{p['stream_tokens']} chunks at {p['stream_tps']:g} chunks/s. LiteLLM (≈ 47 req/s per worker here) "
             f"gets {ll_rate} req/s and {p['litellm_stream_rate']} streams/s for {p['litellm_duration_s']} s; its "
             "CPU figures are per request, so they compare directly. The load generator is `llmux-bench` (one "
             "thread)" + ("; contender, mocks and generator each ran on cores of their own."
                          if meta.get("pinning", "").startswith("pinned") else
                          ", sharing the cores with the contender and the mock."))
    L.append("")

    others = sorted((k, v["other_cpu_pct"]) for k, v in runs.items() if "other_cpu_pct" in v)
    if others:
        vals = sorted(v for _, v in others)
        noisy = [f"{'|'.join(k)} ({v:.0f}%)" for k, v in others if v > 20]
        L.append(f"Background load: CPU used by processes other than the contender, the mock upstream and the load "
                 f"generator during the measured windows: median {vals[len(vals) // 2]:.0f}%, max {vals[-1]:.0f}% "
                 "of one core." + (f" Runs above 20%: {', '.join(noisy)}." if noisy else ""))
        L.append("")

    # ------------------------------------------------------------ targets
    targets = []

    def target(name, goal, measured, ok):
        targets.append((name, goal, measured, "—" if ok is None else ("✅" if ok else "❌")))

    def cpu(c, path, load_="sat"):
        x = r(c, path, load_)
        return x.get("cpu_ms_per_req") if x and x.get("completed") else None

    ll = cpu("litellm", "openai")
    # With rounds, every ratio is the median of the per-round ratios with their min–max: a change is a regression
    # only when it loses more than that spread.
    def spread_of(xs, f):
        xs = [x for x in xs if x is not None]
        return f" (rounds {f(min(xs))} – {f(max(xs))})" if len(xs) > 1 else ""

    def pair_rounds(a, b, f, g):
        return [g(f(x), f(y)) for x, y in zip(rounds(a[0], a[1]), rounds(b[0], b[1]))]

    if have_rounds:
        n_r = len(rounds("llmux", "sat"))
        how = f"median of {n_r} interleaved rounds"
        lx, ng = rmed("llmux", "sat", cpu_of), rmed("nginx", "sat", cpu_of)
        cpu_rounds = pair_rounds(("llmux", "sat"), ("nginx", "sat"), cpu_of, div)
        cpu_x = median(cpu_rounds)
        cpu_spread = spread_of(cpu_rounds, fmt_x)
        add_rounds = {q: pair_rounds(("llmux", rk), ("direct", rk), lat_of(q), sub) for q in ("p50", "p99")}
        add = {q: median(add_rounds[q]) for q in add_rounds}
        add_spread = {q: spread_of(add_rounds[q], fmt_added) for q in add_rounds}
        sat_rounds = pair_rounds(("llmux", "sat"), ("direct", "sat"), rps_of, div)
        sat_x = median(sat_rounds)
        sat_spread = spread_of(sat_rounds, fmt_x)
        sat_l, sat_d = rmed("llmux", "sat", rps_of), rmed("direct", "sat", rps_of)
    else:
        how = "single run"
        lx, ng = cpu("llmux", "openai"), cpu("nginx", "openai")
        cpu_x, cpu_spread = div(lx, ng), ""
        add = {q: sub(pct(r("llmux", "openai", rk), "lat_us", q), pct(r("direct", "openai", rk), "lat_us", q))
               for q in ("p50", "p99")}
        add_spread = {"p50": "", "p99": ""}
        s_l, s_d = r("llmux", "openai", "sat"), r("direct", "openai", "sat")
        sat_l, sat_d = s_l and s_l["achieved_rps"], s_d and s_d["achieved_rps"]
        sat_x, sat_spread = div(sat_l, sat_d), ""
    target(f"CPU per request vs nginx (OpenAI passthrough, saturation, {how})", "≤ 1.5×",
           f"{fmt_x(cpu_x)} ({fmt_cpu(lx)} vs {fmt_cpu(ng)} s/1k req){cpu_spread}",
           None if cpu_x is None else cpu_x <= 1.5)
    x = div(ll, lx)
    target("CPU per request, LiteLLM ÷ llmux (OpenAI passthrough, saturation, single run)", "≥ 50×",
           f"{x:,.0f}× ({fmt_cpu(ll)} vs {fmt_cpu(lx)} s/1k req)" if x else "—",
           None if x is None else x >= 50)
    for q, goal in (("p50", 100), ("p99", 500)):
        a = add[q]
        target(f"Added latency at {top_rate:,} req/s, {q} (OpenAI passthrough, {how})", f"≤ {goal / 1000:g} ms",
               fmt_added(a) + add_spread[q], None if a is None else a <= goal)
    target(f"Saturation throughput vs direct (OpenAI passthrough, {how})", "≥ 0.6×",
           f"{fmt_x(sat_x)} ({sat_l:,.0f} vs {sat_d:,.0f} req/s){sat_spread}" if sat_x else "—",
           None if sat_x is None else sat_x >= 0.6)
    worst_ttfc, worst_gap50, worst_gap99 = None, None, None
    for path in ("openai-stream", "ollama-stream"):
        a, d = r("llmux", path, "stream"), r("direct", path, "stream")
        t = sub(pct(a, "ttfc_us", "p99"), pct(d, "ttfc_us", "p99"))
        g50 = sub(pct(a, "gap_us", "p50"), pct(d, "gap_us", "p50"))
        g99 = sub(pct(a, "gap_us", "p99"), pct(d, "gap_us", "p99"))
        if t is not None:
            worst_ttfc = t if worst_ttfc is None else max(worst_ttfc, t)
        if g50 is not None:
            worst_gap50 = g50 if worst_gap50 is None else max(worst_gap50, abs(g50))
        if g99 is not None:
            worst_gap99 = g99 if worst_gap99 is None else max(worst_gap99, g99)
    target("Streaming: added time to first chunk, p99 (worst of both stream paths)", "≤ 1 ms",
           fmt_added(worst_ttfc), None if worst_ttfc is None else worst_ttfc <= 1000)
    target("Streaming: chunk spacing preserved (gap p50 within 0.5 ms of direct, gap p99 within 1 ms)",
           f"interval {1e3 / p['stream_tps']:g} ms",
           f"p50 off by {fmt_t(worst_gap50)}, p99 {fmt_added(worst_gap99)}" if worst_gap50 is not None else "—",
           None if worst_gap50 is None else (worst_gap50 <= 500 and worst_gap99 <= 1000))
    idle = mem.get(("llmux", "idle"))
    target("RSS idle", "≤ 15 MB", mb(idle and idle["rss_kb"]), None if not idle else idle["rss_kb"] <= 15 * 1024)
    h = r("llmux", "hold", f"hold{p['hold_streams']}")
    if h:
        ok = h["rss_kb_open"] <= 64 * 1024 and h["opened"] == p["hold_streams"]
        target(f"RSS with {p['hold_streams']:,} open streams", "≤ 64 MB",
               f"{mb(h['rss_kb_open'])} ({h['opened']:,} opened, {h['still_open_at_end']:,} still open at the end)",
               ok)
    crit = []
    cpath = work / "criterion.txt"
    if cpath.exists():
        crit = parse_criterion(cpath.read_text())
    if crit:
        # Flat = independent of the config's size (10 to 10,000 deployments in groups of 4); a single group of
        # 1,000 deployments is a different axis (the pick is linear in the candidates) and is listed separately.
        flat = [c for c in crit if "group of 1000" not in c[0]] or crit
        worst = max(c[2] for c in flat)
        best = min(c[2] for c in flat)
        big = [c for c in crit if "group of 1000" in c[0]]
        note = f"; one group of 1,000: {big[0][2] / 1000:,.1f} µs" if big else ""
        target("Routing decision (criterion, median), 10 → 10,000 deployments in groups of 4", "≤ 2 µs, flat",
               f"{best:,.0f}–{worst:,.0f} ns (max/min {worst / best:.2f}×){note}", worst <= 2000 and worst / best < 2)
    su = r("llmux", "startup", "startup")
    if su:
        target("Start-up to /health/liveliness 200 (examples/homelab.yaml, median)", "< 50 ms",
               f"{su['median_ms']:.1f} ms (min {su['min_ms']:.1f}, max {su['max_ms']:.1f}, {su['runs']} runs)",
               su["median_ms"] < 50)
    L.append("## Targets")
    L.append("")
    L.append(md_table(["Target", "Goal", "Measured", "Met"], targets))
    L.append("")

    # ------------------------------------------------------------ interleaved rounds
    if have_rounds:
        k = f"{top_rate // 1000}k" if top_rate % 1000 == 0 else str(top_rate)
        rows = []
        d_sat = rmed("direct", "sat", rps_of)
        n_cpu = rmed("nginx", "sat", cpu_of)
        for c in ("direct", "nginx", "llmux"):
            sat_rps = rmed(c, "sat", rps_of)
            p50, p99 = rmed(c, rk, lat_of("p50")), rmed(c, rk, lat_of("p99"))
            rows.append([
                NAMES[c], f"{sat_rps:,.0f}", fmt_x(div(sat_rps, d_sat)), fmt_t(p50), fmt_t(p99),
                "—" if c == "direct" else fmt_added(sub(p50, rmed("direct", rk, lat_of("p50")))),
                "—" if c == "direct" else fmt_added(sub(p99, rmed("direct", rk, lat_of("p99")))),
                fmt_cpu(rmed(c, "sat", cpu_of)), fmt_cpu(rmed(c, rk, cpu_of)),
                "—" if c != "llmux" else fmt_x(div(rmed(c, "sat", cpu_of), n_cpu), 2),
                " / ".join(f"{cpu_of(v) * 1000:.0f}" for v in rounds(c, "sat") if cpu_of(v)),
            ])
        L.append(f"## Head to head: OpenAI passthrough, median of {len(rounds('llmux', 'sat'))} interleaved rounds")
        L.append("")
        L.append(f"direct, nginx and llmux take turns ({p.get('round_duration_s')} s at {top_rate:,} req/s, then "
                 f"{p.get('round_duration_s')} s saturation, each), so background load hits them alike. These "
                 "medians are what the targets above are checked against.")
        L.append("")
        L.append(md_table(["Contender", "Sat. req/s", "× direct", f"p50 @{k}", f"p99 @{k}", f"added p50 @{k}",
                           f"added p99 @{k}", "CPU s/1k req (sat)", f"CPU s/1k req (@{k})", "CPU × nginx",
                           "CPU µs/req (sat), each round"], rows))
        L.append("")

    # ------------------------------------------------------------ non-streaming
    L.append("## Non-streaming paths")
    L.append("")
    L.append(f"Latency: send → last byte of the answer, open loop at a fixed rate. Added = contender − direct at the "
             f"same rate (LiteLLM: at {ll_rate} req/s, against direct at {low_rate:,} req/s). CPU: user+system "
             "seconds of the contender's process tree per 1,000 completed requests (direct: the mock's own).")
    L.append("")
    foot = False
    for path in ("openai", "ollama", "embeddings"):
        rows = []
        d_sat = r("direct", path, "sat")
        ng_cpu = cpu("nginx", path)
        for c in CONTENDERS:
            if c not in have:
                continue
            sat = r(c, path, "sat")
            row = [NAMES[c]]
            row.append(f"{sat['achieved_rps']:,.0f}" if sat else "—")
            row.append(fmt_x(div(sat and sat["achieved_rps"], d_sat and d_sat["achieved_rps"])))
            for rate in sorted(rates):
                rr = rate_run(c, path, rate)
                mark = ""
                if c == "litellm":
                    if rate != top_rate:
                        row += ["—", "—"]
                        continue
                    mark = " †"
                    foot = True
                row += [fmt_t(pct(rr, "lat_us", "p50")) + mark, fmt_t(pct(rr, "lat_us", "p99")) + mark]
            rr = rate_run(c, path, top_rate)
            dd = r("direct", path, f"rate{low_rate if c == 'litellm' else top_rate}")
            if c == "direct":
                row += ["—", "—"]
            else:
                row += [fmt_added(sub(pct(rr, "lat_us", "p50"), pct(dd, "lat_us", "p50"))),
                        fmt_added(sub(pct(rr, "lat_us", "p99"), pct(dd, "lat_us", "p99")))]
            row.append(fmt_cpu(cpu(c, path)))
            row.append(fmt_cpu(cpu(c, path, f"rate{ll_rate if c == 'litellm' else top_rate}")))
            row.append("—" if c in ("direct", "nginx") else fmt_x(div(cpu(c, path), ng_cpu), 1 if c == "llmux" else 0))
            errs = sum((x or {}).get("errors", 0) + (x or {}).get("dropped", 0)
                       for x in [sat] + [rate_run(c, path, rt) for rt in rates])
            row.append(str(errs))
            rows.append(row)
        header = ["Contender", "Sat. req/s", "× direct"]
        for rate in sorted(rates):
            k = f"{rate // 1000}k" if rate % 1000 == 0 else str(rate)
            header += [f"p50 @{k}", f"p99 @{k}"]
        k = f"{top_rate // 1000}k" if top_rate % 1000 == 0 else str(top_rate)
        header += [f"added p50 @{k}", f"added p99 @{k}", "CPU s/1k req (sat)", f"CPU s/1k req (@{k})", "CPU × nginx",
                   "errors"]
        L.append(f"### {PATHS[path]}")
        L.append("")
        L.append(md_table(header, rows))
        L.append("")
    if foot:
        L.append(f"† LiteLLM measured at {ll_rate} req/s (its 2 workers saturate near 90 req/s here).")
        L.append("")

    # ------------------------------------------------------------ streaming
    L.append("## Streaming paths")
    L.append("")
    L.append(f"Open loop of streaming requests; the mock sends {p['stream_tokens']} chunks "
             f"{1e3 / p['stream_tps']:g} ms apart. TTFC: send → first non-empty body chunk. Gap: time between "
             "consecutive body chunks of one stream (the trailing finish/[DONE] chunks come right after the last "
             "token, so low percentiles include them). Added = contender − direct.")
    L.append("")
    for path in ("openai-stream", "ollama-stream"):
        rows = []
        d = r("direct", path, "stream")
        for c in CONTENDERS:
            s = r(c, path, "stream")
            if not s:
                continue
            rows.append([
                NAMES[c], f"{s['target_rate']:g}", fmt_t(pct(s, "ttfc_us", "p50")), fmt_t(pct(s, "ttfc_us", "p99")),
                "—" if c == "direct" else fmt_added(sub(pct(s, "ttfc_us", "p50"), pct(d, "ttfc_us", "p50"))),
                "—" if c == "direct" else fmt_added(sub(pct(s, "ttfc_us", "p99"), pct(d, "ttfc_us", "p99"))),
                fmt_t(pct(s, "gap_us", "p50")), fmt_t(pct(s, "gap_us", "p99")),
                f"{s.get('frames_mean', 0):g}", fmt_cpu(s.get("cpu_ms_per_req") if s.get("completed") else None),
                str(s.get("errors", 0) + s.get("dropped", 0)),
            ])
        L.append(f"### {PATHS[path]}")
        L.append("")
        L.append(md_table(["Contender", "Streams/s", "TTFC p50", "TTFC p99", "added TTFC p50", "added TTFC p99",
                           "gap p50", "gap p99", "chunks/stream", "CPU s/1k streams", "errors"], rows))
        L.append("")

    # ------------------------------------------------------------ memory and start-up
    L.append("## Memory and start-up")
    L.append("")
    n = p["hold_streams"]
    rows = []
    for c in CONTENDERS:
        if c not in have or c == "direct":
            continue
        idle, peak = mem.get((c, "idle")), mem.get((c, "peak"))
        h = r(c, "hold", f"hold{n}")
        su = r(c, "startup", "startup")
        rows.append([
            NAMES[c], mb(idle and idle["rss_kb"]), mb(peak and peak["hwm_kb"]),
            mb(h and h["rss_kb_open"]), f"{h['opened']:,}/{n:,}" if h else "—", mb(h and h["rss_kb_after"]),
            ("—" if not su else f"{su['median_ms']:.1f} ms" if su["median_ms"] < 1000 else f"{su['median_ms'] / 1000:.1f} s"),
            str(idle["procs"]) if idle else "—",
        ])
    L.append(md_table(["Contender", "Idle RSS", "Peak RSS (VmHWM, before the held streams)",
                       f"RSS, {n:,} open streams", "streams opened", "RSS after they closed", "Start-up to ready",
                       "processes"], rows))
    L.append("")
    L.append("RSS and VmHWM are summed over the contender's processes (nginx: master + workers; LiteLLM: every "
             "worker). Held streams come from a mock that sends one chunk every 5 s. llmux start-up: spawn → first "
             f"200 from `/health/liveliness` on `examples/homelab.yaml`, median of {p['startup_runs']} runs; "
             "LiteLLM: spawn → ready with the bench config, one run.")
    L.append("")

    # ------------------------------------------------------------ routing decision
    if crit:
        L.append("## Routing decision (`cargo bench -p llmux --bench routing`)")
        L.append("")
        L.append(md_table(["Benchmark", "median", "95% interval"],
                          [[name, f"{mid:,.0f} ns", f"{lo:,.0f}–{hi:,.0f} ns"] for name, lo, mid, hi in crit]))
        L.append("")

    # ------------------------------------------------------------ cross-checks
    wrk_rows = []
    for c in CONTENDERS:
        w = r(c, "openai", "wrk")
        s = r(c, "openai", "sat")
        if w:
            wrk_rows.append([NAMES[c], f"{w['rps']:,.0f}", f"{s['achieved_rps']:,.0f}" if s else "—",
                             str(w.get("non2xx", 0))])
    if wrk_rows:
        L.append("## Cross-check: wrk (1 thread, 16 connections) on the OpenAI non-streaming path")
        L.append("")
        L.append(md_table(["Contender", "wrk req/s", "llmux-bench saturate req/s", "wrk non-2xx"], wrk_rows))
        L.append("")
    gen_rows = []
    for c in CONTENDERS:
        s = r(c, "openai", "sat")
        if s and s.get("completed"):
            gen_rows.append(f"{c} {s['gen_cpu_s'] * 1e6 / s['completed']:.0f} µs")
    if gen_rows:
        L.append("Load generator's own CPU per request in the saturation runs (OpenAI path): " + ", ".join(gen_rows)
                 + ".")
        L.append("")

    Path(args.out).write_text("\n".join(L))


if __name__ == "__main__":
    main()
