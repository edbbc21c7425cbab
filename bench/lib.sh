# Shared by bench/run and bench/soak (sourced, not run). Everything listens on 127.0.0.1 only; every process
# started here runs in its own process group and is stopped by the EXIT trap.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_START=$SECONDS
STARTED_PIDS=()

log() { printf '[%4ss] %s\n' "$((SECONDS - BENCH_START))" "$*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# A TCP port nothing listens on right now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_http URL SECONDS [curl args...]: polls until URL answers 200.
wait_http() {
    local url=$1 limit=$2
    shift 2
    local deadline=$((SECONDS + limit))
    while ((SECONDS < deadline)); do
        if [[ $(curl -s -o /dev/null -m 2 -w '%{http_code}' "$@" "$url" 2>/dev/null) == 200 ]]; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

# Core pinning: with at least 3 cores the contender, the mock upstreams and the load generator each get cores of
# their own, so one cannot take CPU from another between rounds; with fewer they share all cores and the report
# says so. PIN_CONTENDER / PIN_MOCK / PIN_GEN are taskset core lists ("" = not pinned).
PIN_CONTENDER="" PIN_MOCK="" PIN_GEN="" PIN_NOTE=""
plan_pinning() {
    local n
    n=$(nproc)
    if ((n >= 3)) && command -v taskset >/dev/null; then
        PIN_GEN=$((n - 1)) PIN_MOCK=$((n - 2))
        PIN_CONTENDER=$( ((n == 3)) && echo 0 || echo "0-$((n - 3))")
        PIN_NOTE="pinned: contender on cores $PIN_CONTENDER, mocks on core $PIN_MOCK, load generator on core $PIN_GEN"
    else
        PIN_NOTE="not pinned: $n cores (pinning needs at least 3 and taskset), so contender, mocks and load generator share them"
    fi
    log "$PIN_NOTE"
}
plan_pinning

# pinned CORES CMD...: CMD on CORES (a taskset list), or unpinned when CORES is empty.
pinned() {
    local cores=$1
    shift
    if [[ -n $cores ]]; then taskset -c "$cores" "$@"; else "$@"; fi
}

# start_bg LOGFILE CMD...: starts CMD in a new session (process group = its pid); sets LAST_PID. START_CORES
# (a taskset list) pins it.
start_bg() {
    local logfile=$1
    shift
    if [[ -n ${START_CORES:-} ]]; then
        setsid taskset -c "$START_CORES" "$@" >"$logfile" 2>&1 </dev/null &
    else
        setsid "$@" >"$logfile" 2>&1 </dev/null &
    fi
    LAST_PID=$!
    STARTED_PIDS+=("$LAST_PID")
}

# stop_pid PID: SIGTERM to the process group PID leads, SIGKILL after 5 s.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 50); do
        kill -0 -- "-$pid" 2>/dev/null || kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${STARTED_PIDS[@]}"; do
        stop_pid "$pid"
    done
    STARTED_PIDS=()
}

# Raise the open-file limit (5,000 held streams need ~10,000 descriptors in the proxy).
raise_nofile() {
    local hard
    hard=$(ulimit -Hn)
    if [[ $hard == unlimited ]]; then hard=65536; fi
    ulimit -n "$hard" 2>/dev/null || true
}

target_dir() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
        sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' || true)
    echo "${dir:-$ROOT/target}"
}

build_release() {
    log "cargo build --release -p llmux -p llmux-mock -p llmux-bench"
    (cd "$ROOT" && cargo build --release -p llmux -p llmux-mock -p llmux-bench) || die "release build failed"
    local t
    t=$(target_dir)
    LLMUX_BIN=$t/release/llmux
    MOCK_BIN=$t/release/llmux-mock
    GEN=$t/release/llmux-bench
    for b in "$LLMUX_BIN" "$MOCK_BIN" "$GEN"; do [[ -x $b ]] || die "$b was not built"; done
}

# start_mock NAME LOGDIR ARGS...: sets MOCK_PORT and MOCK_PID.
start_mock() {
    local name=$1 dir=$2
    shift 2
    MOCK_PORT=$(free_port)
    START_CORES=$PIN_MOCK start_bg "$dir/mock-$name.log" "$MOCK_BIN" --host 127.0.0.1 --port "$MOCK_PORT" --name "$name" \
        --config-json '{"record_limit":0}' "$@"
    MOCK_PID=$LAST_PID
    wait_http "http://127.0.0.1:$MOCK_PORT/v1/models" 10 || die "mock $name did not start (see $dir/mock-$name.log)"
}

# The upstreams: FAST (no added latency, small fixed reply), PACED (STREAM_TOKENS chunks at STREAM_TPS per
# second), SLOW (one chunk every 5 s, for held streams).
start_mocks() {
    local dir=$1
    start_mock fast "$dir"
    FAST_PORT=$MOCK_PORT FAST_PID=$MOCK_PID
    start_mock paced "$dir" --reply-tokens "${STREAM_TOKENS:-20}" --tokens-per-sec "${STREAM_TPS:-100}"
    PACED_PORT=$MOCK_PORT PACED_PID=$MOCK_PID
    start_mock slow "$dir" --reply-tokens 200 --tokens-per-sec 0.2
    SLOW_PORT=$MOCK_PORT SLOW_PID=$MOCK_PID
    log "mocks: fast :$FAST_PORT, paced :$PACED_PORT (${STREAM_TOKENS:-20} chunks at ${STREAM_TPS:-100}/s), slow :$SLOW_PORT"
}

MASTER_KEY=sk-llmux-bench-0123456789abcdef0123456789abcdef

# write_config FILE: one LiteLLM proxy config, read unchanged by llmux and by LiteLLM.
write_config() {
    cat >"$1" <<EOF
# Generated by bench/run: every model points at the local mocks.
model_list:
  - model_name: oa-fast
    litellm_params: {model: openai/m, api_base: "http://127.0.0.1:$FAST_PORT/v1", api_key: sk-upstream}
  - model_name: oa-paced
    litellm_params: {model: openai/m, api_base: "http://127.0.0.1:$PACED_PORT/v1", api_key: sk-upstream}
  - model_name: oa-slow
    litellm_params: {model: openai/m, api_base: "http://127.0.0.1:$SLOW_PORT/v1", api_key: sk-upstream}
  - model_name: ol-fast
    litellm_params: {model: ollama_chat/m, api_base: "http://127.0.0.1:$FAST_PORT"}
  - model_name: ol-paced
    litellm_params: {model: ollama_chat/m, api_base: "http://127.0.0.1:$PACED_PORT"}
  - model_name: emb
    litellm_params: {model: openai/e, api_base: "http://127.0.0.1:$FAST_PORT/v1", api_key: sk-upstream}
    model_info: {mode: embedding}

general_settings:
  master_key: $MASTER_KEY

litellm_settings:
  set_verbose: false
  request_timeout: 600
EOF
}

# start_llmux CONFIG LOGDIR: sets LLMUX_PORT and LLMUX_PID.
start_llmux() {
    LLMUX_PORT=$(free_port)
    LLMUX_LOG=warn START_CORES=$PIN_CONTENDER start_bg "$2/llmux.log" "$LLMUX_BIN" --config "$1" --host 127.0.0.1 --port "$LLMUX_PORT"
    LLMUX_PID=$LAST_PID
    wait_http "http://127.0.0.1:$LLMUX_PORT/health/liveliness" 20 || die "llmux did not start (see $2/llmux.log)"
}

# Request bodies; identical for every contender except the model name.
PROMPT='"messages":[{"role":"user","content":"Say hello in five words."}]'
chat_body() { printf '{"model":"%s",%s,"max_tokens":64,"stream":%s}' "$1" "$PROMPT" "$2"; }
ollama_body() { printf '{"model":"%s",%s,"stream":%s,"options":{"num_predict":64}}' "$1" "$PROMPT" "$2"; }
embed_body() { printf '{"model":"%s","input":"The quick brown fox jumps over the lazy dog."}' "$1"; }

# target CONTENDER PATH: sets URL and BODY. Contenders: direct (the mock itself), nginx, llmux, litellm.
# direct and nginx cannot translate, so on the Ollama paths they carry the native Ollama request the proxies
# send upstream (the ceiling/floor for that upstream call).
target() {
    local c=$1 p=$2 fast paced slow
    case $c in
    direct)
        fast=http://127.0.0.1:$FAST_PORT paced=http://127.0.0.1:$PACED_PORT slow=http://127.0.0.1:$SLOW_PORT
        ;;
    nginx)
        fast=http://127.0.0.1:$NGINX_PORT/fast paced=http://127.0.0.1:$NGINX_PORT/paced
        slow=http://127.0.0.1:$NGINX_PORT/slow
        ;;
    llmux) fast=http://127.0.0.1:$LLMUX_PORT paced=$fast slow=$fast ;;
    litellm) fast=http://127.0.0.1:$LITELLM_PORT paced=$fast slow=$fast ;;
    *) die "unknown contender $c" ;;
    esac
    local proxied=0
    [[ $c == llmux || $c == litellm ]] && proxied=1
    case $p in
    openai)
        URL=$fast/v1/chat/completions
        BODY=$(chat_body "$( ((proxied)) && echo oa-fast || echo m)" false)
        ;;
    openai-stream)
        URL=$paced/v1/chat/completions
        BODY=$(chat_body "$( ((proxied)) && echo oa-paced || echo m)" true)
        ;;
    ollama)
        if ((proxied)); then URL=$fast/v1/chat/completions BODY=$(chat_body ol-fast false); else
            URL=$fast/api/chat BODY=$(ollama_body m false); fi
        ;;
    ollama-stream)
        if ((proxied)); then URL=$paced/v1/chat/completions BODY=$(chat_body ol-paced true); else
            URL=$paced/api/chat BODY=$(ollama_body m true); fi
        ;;
    embeddings)
        URL=$fast/v1/embeddings
        BODY=$(embed_body "$( ((proxied)) && echo emb || echo e)")
        ;;
    hold)
        URL=$slow/v1/chat/completions
        BODY=$(chat_body "$( ((proxied)) && echo oa-slow || echo m)" true)
        ;;
    *) die "unknown path $p" ;;
    esac
}
