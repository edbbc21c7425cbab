use serde_json::{json, Value};

use super::*;

type Reports = Vec<(String, String)>;

/// Parses `params` (a `litellm_params` JSON object) with every name known except those in `unknown`.
fn parse_with(params: Value, unknown: &[&str]) -> (Option<ComplexityRouter>, Reports, Reports) {
    let mut diags = crate::config::Diagnostics::default();
    let map = params.as_object().cloned().unwrap_or_default();
    let router = ComplexityRouter::from_params(&map, &|name| !unknown.contains(&name), &mut diags);
    let pairs = |severity| {
        diags.iter().filter(|d| d.severity == severity).map(|d| (d.path.clone(), d.message.clone())).collect()
    };
    (router, pairs(crate::config::Severity::Error), pairs(crate::config::Severity::Warning))
}

/// A router over `config` (with tiers s/m/c/r unless the config sets its own) and default model `d`.
fn router(mut config: Value) -> ComplexityRouter {
    if config.get("tiers").is_none() {
        config["tiers"] = json!({"SIMPLE": "s", "MEDIUM": "m", "COMPLEX": "c", "REASONING": "r"});
    }
    let (router, errors, _) =
        parse_with(json!({"complexity_router_config": config, "complexity_router_default_model": "d"}), &[]);
    router.unwrap_or_else(|| panic!("config refused: {errors:?}"))
}

fn default_router() -> ComplexityRouter {
    router(json!({}))
}

fn user(text: &str) -> Vec<Value> {
    vec![json!({"role": "user", "content": text})]
}

fn dim<'c>(c: &'c Classification, name: &str) -> &'c Dimension {
    c.dimensions.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("no dimension {name}"))
}

/// `text` padded with a keyword-free word to exactly `chars` characters, so `tokenCount` is 0 (15..=400 tokens)
/// for 60..=1603 characters.
fn padded(text: &str, chars: usize) -> String {
    let mut s = text.to_owned();
    while s.chars().count() < chars {
        s.push_str(" zz");
    }
    s.chars().take(chars).collect()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ---- dimensions -------------------------------------------------------------------------------------------

#[test]
fn token_count_is_code_points_over_four_with_strict_thresholds() {
    let r = default_router();
    let raw = |n: usize| dim(&r.score(&"z".repeat(n)), "tokenCount").raw;
    assert_eq!(raw(59), -1.0, "14 tokens < 15");
    assert_eq!(raw(60), 0.0, "15 tokens is not < 15");
    assert_eq!(raw(1603), 0.0, "400 tokens is not > 400");
    assert_eq!(raw(1604), 1.0, "401 tokens");
    // Python's len() counts code points, not bytes.
    let c = r.score(&"é".repeat(60));
    assert_eq!((c.tokens, c.scored_chars), (15, 60));
    assert_eq!(dim(&c, "tokenCount").raw, 0.0);
    assert_eq!(dim(&r.score("zz"), "tokenCount").signal.as_deref(), Some("short (0 tokens)"));
}

#[test]
fn token_thresholds_are_configurable_key_by_key() {
    let r = router(json!({"token_thresholds": {"simple": 2}}));
    assert_eq!(dim(&r.score("zzzzzzzz"), "tokenCount").raw, 0.0, "2 tokens is not < 2");
    assert_eq!(dim(&r.score(&"z".repeat(1604)), "tokenCount").raw, 1.0, "complex keeps its default 400");
}

#[test]
fn code_presence_scores_zero_half_one() {
    let r = default_router();
    assert_eq!(dim(&r.score(&padded("nothing here", 80)), "codePresence").raw, 0.0);
    let one = r.score(&padded("a python thing", 80));
    assert_eq!(dim(&one, "codePresence").raw, 0.5);
    assert_eq!(dim(&one, "codePresence").signal.as_deref(), Some("code (python)"));
    let two = r.score(&padded("a python function", 80));
    assert_eq!(dim(&two, "codePresence").raw, 1.0);
    assert_eq!(dim(&two, "codePresence").matched, ["function", "python"], "list order, not text order");
}

#[test]
fn reasoning_markers_score_zero_point_seven_one() {
    let r = default_router();
    assert_eq!(dim(&r.score(&padded("nothing", 80)), "reasoningMarkers").raw, 0.0);
    assert_eq!(dim(&r.score(&padded("please evaluate it", 80)), "reasoningMarkers").raw, 0.7);
    assert_eq!(dim(&r.score(&padded("evaluate it step by step", 80)), "reasoningMarkers").raw, 1.0);
}

#[test]
fn technical_terms_need_two_and_saturate_at_four() {
    let r = default_router();
    let one = r.score(&padded("latency", 80));
    assert_eq!(dim(&one, "technicalTerms").raw, 0.0);
    assert_eq!(dim(&one, "technicalTerms").matched, ["latency"], "matched but below the threshold");
    assert_eq!(dim(&one, "technicalTerms").signal, None);
    assert_eq!(dim(&r.score(&padded("latency throughput", 80)), "technicalTerms").raw, 0.5);
    assert_eq!(dim(&r.score(&padded("latency throughput memory", 80)), "technicalTerms").raw, 0.5);
    let four = r.score(&padded("latency throughput memory cpu", 80));
    assert_eq!(dim(&four, "technicalTerms").raw, 1.0);
    assert_eq!(dim(&four, "technicalTerms").signal.as_deref(), Some("technical (latency, throughput, memory)"));
}

#[test]
fn simple_indicators_are_minus_one_from_the_first_match() {
    let r = default_router();
    assert_eq!(dim(&r.score(&padded("nothing", 80)), "simpleIndicators").raw, 0.0);
    assert_eq!(dim(&r.score(&padded("hello", 80)), "simpleIndicators").raw, -1.0);
    assert_eq!(dim(&r.score(&padded("hello, what is this, thanks", 80)), "simpleIndicators").raw, -1.0);
}

#[test]
fn multi_step_patterns_as_python_re_finds_them() {
    let r = default_router();
    let hits = |t: &str| dim(&r.score(t), "multiStepPatterns").matched.clone();
    assert_eq!(hits("First open it, then close it"), ["first.*?then"]);
    assert!(hits("first open it\nthen close it").is_empty(), "`.` stops at a newline");
    assert_eq!(hits("do Step 2 now"), [r"step\s*\d"]);
    assert_eq!(hits("step2"), [r"step\s*\d"]);
    assert_eq!(hits("1. buy milk"), [r"\d+\.\s"]);
    assert!(hits("pi is 3.14").is_empty());
    assert_eq!(hits("A) yes"), [r"[a-z]\)\s"], "lower-cased text, IGNORECASE pattern");
    assert!(hits("(a)b").is_empty());
    // Python's IGNORECASE lets `i` match the dotless ı; Rust's case folding alone would not.
    assert_eq!(hits("fırst this then that"), ["first.*?then"]);
    let c = r.score("first a, then b");
    assert_eq!(
        (dim(&c, "multiStepPatterns").raw, dim(&c, "multiStepPatterns").signal.as_deref()),
        (0.5, Some("multi-step"))
    );
}

#[test]
fn question_complexity_needs_more_than_three_question_marks() {
    let r = default_router();
    assert_eq!(dim(&r.score("a? b? c?"), "questionComplexity").raw, 0.0);
    let c = r.score("a? b? c? d?");
    assert_eq!(dim(&c, "questionComplexity").raw, 0.5);
    assert_eq!(dim(&c, "questionComplexity").signal.as_deref(), Some("4 questions"));
}

// ---- keyword matching ------------------------------------------------------------------------------------

#[test]
fn single_words_match_between_word_boundaries_only() {
    let r = default_router();
    let code = |t: &str| dim(&r.score(t), "codePresence").matched.clone();
    assert!(code("the capital of france").is_empty(), "api inside capital");
    assert!(code("classical music").is_empty(), "class inside classical");
    assert!(code("my_api_key").is_empty(), "underscore is a word character");
    assert!(code("api2").is_empty(), "a digit is a word character");
    assert_eq!(code("Call the API."), ["api"], "case-insensitive, punctuation is a boundary");
    assert_eq!(code("re-api"), ["api"]);
    assert_eq!(code("café api"), ["api"]);
    assert!(code("apié").is_empty(), "a non-ASCII letter is a word character");
    // An apostrophe keyword is still a single word: `\bwhat's\b`.
    assert_eq!(dim(&r.score("what's up"), "simpleIndicators").matched, ["what's"]);
    assert!(dim(&r.score("this is fine"), "simpleIndicators").matched.is_empty(), "hi inside this");
}

#[test]
fn multi_word_and_cjk_keywords_match_as_substrings() {
    let r = default_router();
    assert_eq!(dim(&r.score("open two pull requests"), "codePresence").matched, ["pull request"]);
    // LiteLLM's substring test finds "what is" inside "somewhat isolated"; kept.
    assert_eq!(dim(&r.score("a somewhat isolated spot"), "simpleIndicators").matched, ["what is"]);
    let r = router(json!({"code_keywords": ["发票", "api"]}));
    assert_eq!(dim(&r.score("我需要开发票"), "codePresence").matched, ["发票"], "CJK has no word boundaries");
}

#[test]
fn blank_keywords_behave_as_in_litellm_and_are_warned_about() {
    let (router, _, warnings) =
        parse_with(json!({"complexity_router_config": {"tiers": {"MEDIUM": "m"}, "code_keywords": ["", " "]}}), &[]);
    let r = router.unwrap_or_else(|| panic!("refused"));
    assert!(warnings.iter().any(|(p, _)| p == "complexity_router_config.code_keywords[0]"));
    // `\b\b` finds a boundary wherever there is a word character; " " is a substring keyword.
    assert_eq!(dim(&r.score("!!"), "codePresence").matched, Vec::<String>::new());
    assert_eq!(dim(&r.score("ok"), "codePresence").matched, [""]);
    assert_eq!(dim(&r.score("ok ok"), "codePresence").matched, ["", " "]);
}

#[test]
fn a_keyword_counts_once_however_often_it_occurs() {
    let r = default_router();
    let c = r.score(&padded("python python python python", 80));
    assert_eq!(dim(&c, "codePresence").matched, ["python"]);
    assert_eq!(dim(&c, "codePresence").raw, 0.5);
    // A keyword listed twice is two entries, as in LiteLLM's list comprehension.
    let r = router(json!({"code_keywords": ["api", "API"]}));
    let c = r.score(&padded("the api", 80));
    assert_eq!(dim(&c, "codePresence").matched, ["api", "API"]);
    assert_eq!(dim(&c, "codePresence").raw, 1.0);
}

// ---- tiers -----------------------------------------------------------------------------------------------

#[test]
fn each_tier_from_the_score_with_default_boundaries() {
    let r = default_router();
    let hi = r.score("hi");
    assert!(approx(hi.score, -0.15));
    assert_eq!(hi.tier, Tier::Simple);
    let medium = r.score(&padded("a python function", 80));
    assert!(approx(medium.score, 0.3));
    assert_eq!(medium.tier, Tier::Medium);
    let complex = r.score(&padded("a python function with better latency and throughput", 80));
    assert!(approx(complex.score, 0.425));
    assert_eq!(complex.tier, Tier::Complex);
    let reasoning = r.score(&padded("evaluate a python function for latency throughput memory cpu", 80));
    assert!(approx(reasoning.score, 0.725));
    assert_eq!((reasoning.tier, reasoning.reasoning_override), (Tier::Reasoning, false));
}

#[test]
fn a_score_on_a_boundary_belongs_to_the_tier_above() {
    let r = default_router();
    let on = r.score(&padded("a python thing", 80));
    assert_eq!(on.score, 0.15, "0.3 × 0.5 is exactly the boundary");
    assert_eq!(on.tier, Tier::Medium);
    let below = r.score(&padded("a python thing, thanks", 80));
    assert!(approx(below.score, 0.10));
    assert_eq!(below.tier, Tier::Simple);
    let text = padded("a python function", 80); // 0.3
    let at = |b: Value| router(json!({ "tier_boundaries": b })).score(&text).tier;
    assert_eq!(at(json!({"medium_complex": 0.3})), Tier::Complex);
    assert_eq!(at(json!({"medium_complex": 0.31})), Tier::Medium);
    assert_eq!(at(json!({"medium_complex": 0.2, "complex_reasoning": 0.3})), Tier::Reasoning);
    assert_eq!(at(json!({"simple_medium": 0.31})), Tier::Simple, "partial map: the others keep their defaults");
}

#[test]
fn two_reasoning_markers_override_only_above_the_floor() {
    let r = default_router();
    let text = padded("go step by step and evaluate it", 80);
    let c = r.score(&text);
    assert!(approx(c.score, 0.25));
    assert_eq!((c.tier, c.reasoning_override), (Tier::Reasoning, true), "0.25 would be MEDIUM by score");
    // Short and chatty: 2 markers but -0.1 + 0.25 - 0.05 = 0.1 < 0.15 (the simple_medium boundary).
    let low = r.score("step by step, think through it. hi");
    assert!(approx(low.score, 0.1));
    assert_eq!((low.tier, low.reasoning_override), (Tier::Simple, false));
    // The floor follows simple_medium when unset, and an explicit 0 restores the legacy unconditional override.
    let moved = router(json!({"tier_boundaries": {"simple_medium": 0.05}}));
    assert_eq!(moved.score("step by step, think through it. hi").tier, Tier::Reasoning);
    let zero = router(json!({"reasoning_override_min_score": 0}));
    assert_eq!(zero.score("step by step, think through it. hi").tier, Tier::Reasoning);
    let high = router(json!({"reasoning_override_min_score": 0.3}));
    assert_eq!(high.score(&text).tier, Tier::Medium);
}

// ---- text selection ----------------------------------------------------------------------------------------

#[test]
fn reminder_blocks_are_stripped_before_scoring() {
    let r = default_router();
    let c = r.classify(&user("<system-reminder>python rust kubernetes docker</system-reminder>turn off the light"));
    assert_eq!(c.scored_chars, "turn off the light".len());
    assert!(dim(&c, "codePresence").matched.is_empty());
    assert_eq!(r.classify(&user("a <SYSTEM-Reminder>python</system-REMINDER> b")).scored_chars, 3, "\"a b\"");
    let unclosed = "<system-reminder> python";
    assert_eq!(r.classify(&user(unclosed)).scored_chars, unclosed.len(), "an unclosed tag is kept");
    let two = "x<system-reminder>1</system-reminder> y <system-reminder>2</system-reminder>z";
    assert_eq!(r.classify(&user(two)).scored_chars, "x y z".len());
}

#[test]
fn reminder_spans_cut_the_original_by_code_point_like_python() {
    let r = default_router();
    // `İ` lower-cases to two code points, so Python's cut lands one character late: "İ<" … "z".
    let c = r.classify(&user("İ<system-reminder>x</system-reminder>yz"));
    assert_eq!(c.scored_chars, "İ< z".chars().count());
}

#[test]
fn custom_reminder_markers_replace_the_default_pair() {
    let r = router(json!({"reminder_markers": [{"open": " <CTX> ", "close": "</ctx>"}]}));
    assert_eq!(r.classify(&user("<ctx>python</ctx>hi")).scored_chars, 2);
    let kept = "<system-reminder>x</system-reminder>";
    assert_eq!(r.classify(&user(kept)).scored_chars, kept.len());
}

#[test]
fn the_last_user_message_with_text_is_scored() {
    let r = default_router();
    let messages = vec![
        json!({"role": "system", "content": "You are a python rust kubernetes docker assistant."}),
        json!({"role": "user", "content": "turn off the kitchen light"}),
        json!({"role": "assistant", "content": "Done."}),
        json!({"role": "tool", "content": "python function class"}),
        json!({"role": "user", "content": [{"type": "tool_result", "content": "python"}]}),
        json!({"role": "user", "content": "  <system-reminder>python</system-reminder>  "}),
        json!({"role": "user", "content": "   "}),
        json!("not a message"),
    ];
    let c = r.classify(&messages);
    assert_eq!(c.scored_chars, "turn off the kitchen light".len());
    assert!(dim(&c, "codePresence").matched.is_empty(), "the system prompt is not scored");
    assert_eq!(c.tier, Tier::Simple);
}

#[test]
fn list_content_joins_text_parts_with_spaces() {
    let r = default_router();
    let messages = vec![json!({"role": "user", "content": [
        {"type": "text", "text": " python "},
        {"type": "image_url", "image_url": {"url": "data:,"}},
        {"type": "text", "text": "function"},
        {"type": "text"},
    ]})];
    let c = r.classify(&messages);
    // "python  function " trimmed: the missing text joins as "" after a space.
    assert_eq!(c.scored_chars, "python  function".len());
    assert_eq!(dim(&c, "codePresence").matched, ["function", "python"]);
}

#[test]
fn no_user_text_routes_to_the_default_model() {
    let r = default_router();
    let mut rng = fastrand::Rng::with_seed(7);
    for messages in
        [vec![], vec![json!({"role": "system", "content": "python"})], user("<system-reminder>x</system-reminder>")]
    {
        let c = r.classify(&messages);
        assert!(c.no_user_text);
        assert_eq!(c.tier, Tier::Medium);
        assert!(c.dimensions.is_empty());
        assert_eq!(r.route(&c, &mut rng), Some("d"));
    }
}

// ---- escalation and housekeeping -------------------------------------------------------------------------

#[test]
fn the_escalation_keyword_bumps_one_configured_tier() {
    let r = default_router();
    let c = r.classify(&user("turn off the light LITELLM ESCALATE"));
    assert_eq!((c.tier, c.escalated, c.escalation_keyword.as_deref()), (Tier::Medium, true, Some("LITELLM ESCALATE")));
    assert_eq!(r.classify(&user("turn off the light, litellm escalate")).tier, Tier::Simple, "case-sensitive");
    // The next *configured* tier: MEDIUM is skipped when absent; the top tier stays put.
    let gaps = router(json!({"tiers": {"SIMPLE": "s", "COMPLEX": "c"}}));
    assert_eq!(gaps.classify(&user("hi LITELLM ESCALATE")).tier, Tier::Complex);
    let top = gaps.classify(&user(&padded("LITELLM ESCALATE a python function with latency and throughput", 80)));
    assert_eq!((top.tier, top.escalated, top.escalation_keyword.is_some()), (Tier::Complex, false, true));
    // Only the newest user turn counts, and a reminder-only newest turn carries no ask.
    let older = vec![
        json!({"role": "user", "content": "hi LITELLM ESCALATE"}),
        json!({"role": "assistant", "content": "hello"}),
        json!({"role": "user", "content": "hi"}),
    ];
    assert_eq!(r.classify(&older).tier, Tier::Simple);
    let reminder_last = vec![
        json!({"role": "user", "content": "hi LITELLM ESCALATE"}),
        json!({"role": "user", "content": "<system-reminder>x</system-reminder>"}),
    ];
    assert_eq!(r.classify(&reminder_last).tier, Tier::Simple);
    let off = router(json!({"escalation_keywords": [" "]}));
    assert_eq!(off.classify(&user("hi LITELLM ESCALATE")).tier, Tier::Simple, "blank entries are dropped: off");
    let custom = router(json!({"escalation_keywords": [" MORE POWER "]}));
    assert_eq!(custom.classify(&user("hi MORE POWER")).tier, Tier::Medium);
}

#[test]
fn housekeeping_title_requests_go_to_the_cheapest_tier_unscored() {
    let ask = "Refactor the python kubernetes operator. You are coming up with a succinct title for a coding session";
    let r = router(json!({"tiers": {"MEDIUM": "m", "REASONING": "r"}}));
    let c = r.classify(&user(ask));
    assert_eq!(c.tier, Tier::Medium, "the cheapest configured tier");
    assert!(c.housekeeping.is_some() && c.dimensions.is_empty());
    let bumped = r.classify(&user(&format!("{ask} LITELLM ESCALATE")));
    assert_eq!(bumped.tier, Tier::Reasoning, "escalation applies on top");
    let off = router(json!({"route_housekeeping_to_cheapest_tier": false}));
    assert!(off.classify(&user(ask)).housekeeping.is_none());
    let extra = router(json!({"housekeeping_patterns": ["Summarize this session as a title"]}));
    assert_eq!(extra.classify(&user("python rust. Summarize this session as a title")).tier, Tier::Simple);
}

// ---- config ------------------------------------------------------------------------------------------------

#[test]
fn configured_keyword_lists_replace_the_defaults_unless_empty() {
    let r = router(json!({"code_keywords": ["banana"]}));
    let c = r.score(&padded("python function banana", 80));
    assert_eq!(dim(&c, "codePresence").matched, ["banana"]);
    let (router, _, warnings) =
        parse_with(json!({"complexity_router_config": {"tiers": {"MEDIUM": "m"}, "code_keywords": []}}), &[]);
    let r = router.unwrap_or_else(|| panic!("refused"));
    assert_eq!(dim(&r.score("python"), "codePresence").matched, ["python"], "empty keeps the default list");
    assert!(warnings.iter().any(|(p, _)| p == "complexity_router_config.code_keywords"));
}

#[test]
fn custom_technical_keywords_are_appended_without_duplicates() {
    let r = router(json!({"custom_technical_keywords": ["Kubernetes Operator", "LATENCY", "kubernetes operator"]}));
    let c = r.score(&padded("a kubernetes operator with latency", 80));
    // Base entries first; the custom duplicate of "latency" is dropped; the repeated custom one keeps its last
    // spelling.
    assert_eq!(dim(&c, "technicalTerms").matched, ["latency", "kubernetes operator"]);
    assert_eq!(dim(&c, "technicalTerms").raw, 0.5);
    let replaced = router(json!({"technical_keywords": ["gizmo"], "custom_technical_keywords": ["widget"]}));
    assert_eq!(dim(&replaced.score("gizmo widget latency"), "technicalTerms").matched, ["gizmo", "widget"]);
}

#[test]
fn a_configured_weight_map_replaces_the_defaults_whole() {
    let (router, _, warnings) = parse_with(
        json!({"complexity_router_config": {"tiers": {"MEDIUM": "m"}, "dimension_weights": {"codePresence": 1}}}),
        &[],
    );
    let r = router.unwrap_or_else(|| panic!("refused"));
    let c = r.score("hi python");
    assert_eq!(c.score, 0.5, "tokenCount and simpleIndicators weigh 0 now");
    assert!(warnings
        .iter()
        .any(|(p, m)| p == "complexity_router_config.dimension_weights" && m.contains("tokenCount")));
}

#[test]
fn tier_resolution_falls_back_to_default_model_then_medium() {
    let mut rng = fastrand::Rng::with_seed(1);
    let r = router(json!({"tiers": {"SIMPLE": "s", "MEDIUM": "m"}}));
    assert_eq!(r.target(Tier::Simple, &mut rng), Some("s"));
    assert_eq!(r.target(Tier::Complex, &mut rng), Some("d"), "missing tier → default model");
    // Without any default model LiteLLM derives it from MEDIUM (then SIMPLE).
    let (r, errors, _) =
        parse_with(json!({"complexity_router_config": {"tiers": {"SIMPLE": "s", "MEDIUM": "m"}}}), &[]);
    let r = r.unwrap_or_else(|| panic!("{errors:?}"));
    assert_eq!(r.default_model(), Some("m"));
    assert_eq!(r.target(Tier::Reasoning, &mut rng), Some("m"));
    let (r, _, _) = parse_with(json!({"complexity_router_config": {"tiers": {"SIMPLE": "s"}}}), &[]);
    assert_eq!(r.and_then(|r| r.target(Tier::Reasoning, &mut rng).map(str::to_owned)), Some("s".to_owned()));
    // complexity_router_default_model wins over complexity_router_config.default_model.
    let (r, _, _) = parse_with(
        json!({"complexity_router_config": {"tiers": {"MEDIUM": "m"}, "default_model": "x"}, "complexity_router_default_model": "y"}),
        &[],
    );
    assert_eq!(r.as_ref().and_then(|r| r.default_model()), Some("y"));
    // An empty complexity_router_config derives nothing (LiteLLM only derives from a non-empty config).
    let (r, errors, _) = parse_with(json!({"complexity_router_config": {}}), &[]);
    assert!(r.is_none());
    assert_eq!(errors[0].0, "complexity_router_default_model");
    // An empty complexity_router_default_model passes LiteLLM's presence check but is no model.
    let (r, _, _) = parse_with(
        json!({"complexity_router_config": {"tiers": {"MEDIUM": "m"}, "default_model": "x"}, "complexity_router_default_model": ""}),
        &[],
    );
    assert_eq!(r.as_ref().and_then(|r| r.default_model()), Some("x"));
    // Neither a default nor a MEDIUM/SIMPLE tier: LiteLLM refuses the deployment.
    let (r, errors, _) = parse_with(json!({"complexity_router_config": {"tiers": {"COMPLEX": "c"}}}), &[]);
    assert!(r.is_none());
    assert_eq!(errors[0].0, "complexity_router_default_model");
}

#[test]
fn list_targets_are_picked_uniformly() {
    let r = router(json!({"tiers": {"MEDIUM": ["a", "b", "c"], "SIMPLE": ["only"]}}));
    let mut rng = fastrand::Rng::with_seed(42);
    let mut counts = std::collections::HashMap::new();
    for _ in 0..3000 {
        *counts.entry(r.target(Tier::Medium, &mut rng).unwrap_or("none")).or_insert(0) += 1;
    }
    for name in ["a", "b", "c"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!((900..=1100).contains(&n), "{name}: {n} of 3000");
    }
    assert_eq!(r.target(Tier::Simple, &mut rng), Some("only"));
    let targets: Vec<&str> = r.targets().collect();
    assert_eq!(targets, ["only", "a", "b", "c", "d"]);
}

#[test]
fn config_errors_carry_their_paths() {
    let errors_of = |config: Value, unknown: &[&str]| {
        let (router, errors, _) =
            parse_with(json!({"complexity_router_config": config, "complexity_router_default_model": "d"}), unknown);
        assert!(router.is_none(), "accepted: {config}");
        errors
    };
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "tier_boundaries": {"simple_medium": "high"}}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.tier_boundaries.simple_medium");
    assert!(e[0].1.contains("must be a number"), "{e:?}");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "tier_boundaries": [0.1, 0.2]}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.tier_boundaries");
    let e = errors_of(json!({"tiers": {"simple": "s", "MEDIUM": "m"}}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.tiers.simple");
    assert!(e[0].1.contains("upper-case: SIMPLE"), "{e:?}");
    let e = errors_of(json!({"tiers": {"ULTRA": "s", "MEDIUM": "m"}}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.tiers.ULTRA");
    let e = errors_of(json!({"tiers": {"MEDIUM": ["m", "nope"]}}), &["nope"]);
    assert_eq!(e[0].0, "complexity_router_config.tiers.MEDIUM[1]");
    assert!(e[0].1.contains("unknown model \"nope\""), "{e:?}");
    let e = errors_of(json!({"tiers": {"MEDIUM": "nope"}}), &["nope"]);
    assert_eq!(e[0].0, "complexity_router_config.tiers.MEDIUM");
    let e = errors_of(json!({"tiers": {"MEDIUM": []}}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.tiers.MEDIUM");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}}), &["d"]);
    assert_eq!(e[0].0, "complexity_router_default_model");
    let e = errors_of(json!({}), &["gpt-4o-mini"]);
    assert_eq!(e[0].0, "complexity_router_config.tiers", "LiteLLM's default tiers name models this config lacks");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "token_thresholds": {"simple": 1.5}}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.token_thresholds.simple");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "code_keywords": "python"}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.code_keywords");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "classifier_type": "llm"}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.classifier_type");
    let e = errors_of(
        json!({"tiers": {"MEDIUM": "m"}, "keyword_tier_rules": [{"keywords": ["x"], "tier": "SIMPLE"}]}),
        &[],
    );
    assert_eq!(e[0].0, "complexity_router_config.keyword_tier_rules");
    let e = errors_of(json!({"tiers": {"MEDIUM": "m"}, "reminder_markers": [{"open": "<a>", "close": "<A>"}]}), &[]);
    assert_eq!(e[0].0, "complexity_router_config.reminder_markers[0]");
    let (router, errors, _) = parse_with(json!({"complexity_router_config": "{}"}), &[]);
    assert!(router.is_none());
    assert_eq!(errors[0].0, "complexity_router_config");
}

#[test]
fn ignored_options_are_warnings() {
    let (router, errors, warnings) = parse_with(
        json!({"complexity_router_config": {
            "tiers": {"MEDIUM": "m"},
            "classifier_type": "heuristic",
            "session_affinity": true,
            "keyword_tier_rules": [],
            "colour": "blue",
            "tier_boundaries": {"simple_medium": 0.5, "medium_complex": 0.35, "typo": 1},
        }}),
        &[],
    );
    assert!(router.is_some(), "{errors:?}");
    let paths: Vec<&str> = warnings.iter().map(|(p, _)| p.as_str()).collect();
    for expected in [
        "complexity_router_config.session_affinity",
        "complexity_router_config.colour",
        "complexity_router_config.tier_boundaries.typo",
        "complexity_router_config.tier_boundaries",
    ] {
        assert!(paths.contains(&expected), "{expected} not in {paths:?}");
    }
}

#[test]
fn routers_compare_by_their_settings() {
    assert_eq!(default_router(), default_router());
    assert_ne!(default_router(), router(json!({"code_keywords": ["banana"]})));
    assert_ne!(default_router(), router(json!({"tier_boundaries": {"simple_medium": 0.2}})));
}

#[test]
fn classification_serializes_with_litellm_names() {
    let r = default_router();
    let value = serde_json::to_value(r.classify(&user("hi"))).unwrap_or_default();
    assert_eq!(value["tier"], "SIMPLE");
    assert_eq!(value["dimensions"][0]["name"], "tokenCount");
    assert_eq!(value["dimensions"][4]["matched"], json!(["hi"]));
    assert_eq!(value["no_user_text"], false);
    assert_eq!(Tier::Reasoning.to_string(), "REASONING");
}

#[test]
fn the_sum_is_python_3_12_compensated() {
    // Naive left-to-right addition gives 0.6000000000000001; CPython ≥ 3.12's sum() gives 0.6.
    assert_eq!(python_sum([0.1, 0.2, 0.3].into_iter()), 0.6);
    assert_eq!(python_sum(std::iter::empty()), 0.0);
}
