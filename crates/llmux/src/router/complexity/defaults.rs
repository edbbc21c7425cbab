//! LiteLLM's defaults for the complexity router, value for value
//! (`litellm/router_strategy/complexity_router/config.py`: `DEFAULT_*`). The lists are the same in every version
//! checked (legacy v1.81.x and the current one), so a change here is a deliberate divergence, never a tidy-up.

/// `DEFAULT_CODE_KEYWORDS` (45 entries). `let`, `var`, `const` and `export` are in it, so "Let's …" counts as code:
/// that is LiteLLM's behaviour and is kept.
pub(super) const CODE: &[&str] = &[
    "function",
    "class",
    "def",
    "const",
    "let",
    "var",
    "import",
    "export",
    "return",
    "async",
    "await",
    "try",
    "catch",
    "exception",
    "error",
    "debug",
    "api",
    "endpoint",
    "request",
    "response",
    "database",
    "sql",
    "query",
    "schema",
    "algorithm",
    "implement",
    "refactor",
    "optimize",
    "python",
    "javascript",
    "typescript",
    "java",
    "rust",
    "golang",
    "react",
    "vue",
    "angular",
    "node",
    "docker",
    "kubernetes",
    "git",
    "commit",
    "merge",
    "branch",
    "pull request",
];

/// `DEFAULT_REASONING_KEYWORDS` (19 entries).
pub(super) const REASONING: &[&str] = &[
    "step by step",
    "think through",
    "let's think",
    "reason through",
    "analyze this",
    "break down",
    "explain your reasoning",
    "show your work",
    "chain of thought",
    "think carefully",
    "consider all",
    "evaluate",
    "pros and cons",
    "compare and contrast",
    "weigh the options",
    "logical",
    "deduce",
    "infer",
    "conclude",
];

/// `DEFAULT_TECHNICAL_KEYWORDS` (28 entries).
pub(super) const TECHNICAL: &[&str] = &[
    "architecture",
    "distributed",
    "scalable",
    "microservice",
    "machine learning",
    "neural network",
    "deep learning",
    "encryption",
    "authentication",
    "authorization",
    "performance",
    "latency",
    "throughput",
    "benchmark",
    "concurrency",
    "parallel",
    "threading",
    "memory",
    "cpu",
    "gpu",
    "optimization",
    "protocol",
    "tcp",
    "http",
    "grpc",
    "websocket",
    "container",
    "orchestration",
];

/// `DEFAULT_SIMPLE_KEYWORDS` (26 entries; LiteLLM removed "ok" because it matched inside "token", "book").
pub(super) const SIMPLE: &[&str] = &[
    "what is",
    "what's",
    "define",
    "definition of",
    "who is",
    "who was",
    "when did",
    "when was",
    "where is",
    "where was",
    "how many",
    "how much",
    "yes or no",
    "true or false",
    "simple",
    "brief",
    "short",
    "quick",
    "hello",
    "hi",
    "hey",
    "thanks",
    "thank you",
    "goodbye",
    "bye",
    "okay",
];

/// `DEFAULT_ESCALATION_KEYWORDS`: a case-sensitive substring of the newest user turn that bumps the tier one
/// configured step up (latest versions; not in legacy).
pub(super) const ESCALATION: &[&str] = &["LITELLM ESCALATE"];

/// `HOUSEKEEPING_ASK_SENTINELS`: coding agents' conversation-title requests, routed to the cheapest configured
/// tier without scoring (latest versions; not in legacy). Case-sensitive substrings of the newest user turn.
pub(super) const HOUSEKEEPING: &[&str] = &[
    "Write the title in the predominant language of the session",
    "You are coming up with a succinct title for a coding session",
];

/// `DEFAULT_DIMENSION_WEIGHTS`, in the order LiteLLM sums the dimensions (the order matters for the last bit of
/// the score, see `weighted_sum`).
pub(super) const WEIGHTS: [(&str, f64); 7] = [
    ("tokenCount", 0.10),
    ("codePresence", 0.30),
    ("reasoningMarkers", 0.25),
    ("technicalTerms", 0.25),
    ("simpleIndicators", 0.05),
    ("multiStepPatterns", 0.03),
    ("questionComplexity", 0.02),
];

/// `DEFAULT_TIER_BOUNDARIES` keys, with the defaults `_effective_tier_boundaries` fills in for missing keys.
pub(super) const BOUNDARIES: [(&str, f64); 3] =
    [("simple_medium", 0.15), ("medium_complex", 0.35), ("complex_reasoning", 0.60)];

/// `DEFAULT_TOKEN_THRESHOLDS` keys, with the defaults `_score_token_count` uses for missing keys.
pub(super) const TOKEN_THRESHOLDS: [(&str, i64); 2] = [("simple", 15), ("complex", 400)];

/// `DEFAULT_TIER_MODELS`: used only when `tiers` is absent (a configured map replaces it whole).
pub(super) const TIER_MODELS: [(&str, &str); 4] = [
    ("SIMPLE", "gpt-4o-mini"),
    ("MEDIUM", "gpt-4o"),
    ("COMPLEX", "claude-sonnet-4-20250514"),
    ("REASONING", "claude-sonnet-4-20250514"),
];

/// The harness-reminder delimiters stripped from user text before scoring (latest version only).
pub(super) const REMINDER_MARKERS: (&str, &str) = ("<system-reminder>", "</system-reminder>");

/// LiteLLM's multi-step patterns (`_multi_step_patterns`), searched in the lower-cased user text, written so the
/// `regex` crate matches exactly what Python's `re` does:
/// - `first.*?then` (IGNORECASE): Python's IGNORECASE also lets `i` match the dotless `ı` (its case-fold fix-ups),
///   which Rust's simple case folding does not, hence `[iı]`; `s`/`ſ` fold alike in both.
/// - `step\s*\d` (IGNORECASE): Python's `\s` also counts U+001C–U+001F (`str.isspace`), Rust's does not.
/// - `\d+\.\s` (case-sensitive): only whether it occurs matters, so `\d` stands for `\d+`.
/// - `[a-z]\)\s` (IGNORECASE): Python documents that this class also matches `İ ı ſ K`; on lower-cased text only
///   `ı` and `ſ` can remain.
pub(super) const MULTI_STEP: [(&str, &str); 4] = [
    ("first.*?then", r"(?i)f[iı]rst.*?then"),
    (r"step\s*\d", r"(?i)step[\s\x1c-\x1f]*\d"),
    (r"\d+\.\s", r"\d\.[\s\x1c-\x1f]"),
    (r"[a-z]\)\s", r"[a-zA-ZİıſK]\)[\s\x1c-\x1f]"),
];
