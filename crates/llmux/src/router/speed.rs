//! Speed-aware placement: how fast each deployment reads a prompt and writes an answer, learned from the
//! timings engines report (llama.cpp's `timings`, Ollama's `prompt_eval_*` and `eval_*`), and the time a
//! request is expected to take on each candidate. A home lab mixes a P40 with an M3 Ultra: the busy count alone
//! sends a long agent turn to whichever box is idle, however slow.

use super::{Ask, DeploymentView};

/// A candidate expected to take longer than the quickest one by more than this factor is passed over; closer
/// ones stay for the strategy to share the load among (estimates are rough).
pub const SPEED_MARGIN: f64 = 1.25;
/// Output tokens assumed for a request that sets no `max_tokens` (a typical chat or agent turn).
pub const TYPICAL_OUTPUT_TOKENS: u64 = 256;
/// Fewer prompt tokens than this evaluated in one answer say more about the engine's overhead than its prefill
/// rate (a prompt mostly served from the cache): not learned from.
const MIN_PREFILL_SAMPLE: u64 = 32;
/// Likewise for generated tokens and the decode rate.
const MIN_DECODE_SAMPLE: u64 = 8;
/// Weight of a new sample in the smoothed rates.
const SMOOTHING: f64 = 0.3;

/// What an engine reported about the time one answer took.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Prompt tokens it evaluated (not those it found in its cache).
    pub prompt_n: u64,
    /// Milliseconds it spent on them.
    pub prompt_ms: f64,
    /// Tokens it generated.
    pub predicted_n: u64,
    /// Milliseconds it spent generating them.
    pub predicted_ms: f64,
}

/// Prefill and decode rates one deployment showed, smoothed; `None` until a sample was big enough.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Speeds {
    /// Prompt tokens read per second.
    pub prefill: Option<f64>,
    /// Tokens generated per second.
    pub decode: Option<f64>,
}

impl Speeds {
    /// Learns from one answer's timings.
    pub fn learn(&mut self, t: &Timings) {
        fn smooth(old: Option<f64>, new: f64) -> Option<f64> {
            Some(old.map_or(new, |old| old + SMOOTHING * (new - old)))
        }
        if t.prompt_n >= MIN_PREFILL_SAMPLE && t.prompt_ms > 0.0 {
            self.prefill = smooth(self.prefill, t.prompt_n as f64 * 1e3 / t.prompt_ms);
        }
        if t.predicted_n >= MIN_DECODE_SAMPLE && t.predicted_ms > 0.0 {
            self.decode = smooth(self.decode, t.predicted_n as f64 * 1e3 / t.predicted_ms);
        }
    }
}

/// Rates assumed for a candidate that has not shown its own: the mean of those the others showed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Assumed {
    prefill: Option<f64>,
    decode: Option<f64>,
}

impl Assumed {
    /// `view` with the assumed rates where it has none of its own.
    pub fn fill(&self, mut view: DeploymentView) -> DeploymentView {
        view.prefill_rate = view.prefill_rate.or(self.prefill);
        view.decode_rate = view.decode_rate.or(self.decode);
        view
    }
}

/// The rates to assume for candidates that have not shown theirs, from the `views` of those that have (a
/// decode rate no candidate has shown yet, because answers were too short to tell, is assumed alike for all:
/// it then weighs the same everywhere).
pub fn assumed_rates<'a>(views: impl Iterator<Item = &'a DeploymentView> + Clone) -> Assumed {
    let mean = |rates: &mut dyn Iterator<Item = f64>| {
        let (sum, n) = rates.fold((0.0, 0u32), |(sum, n), r| (sum + r, n + 1));
        (n > 0).then(|| sum / f64::from(n))
    };
    let prefill = mean(&mut views.clone().filter_map(|v| v.prefill_rate));
    let decode = mean(&mut views.filter_map(|v| v.decode_rate)).or(prefill.map(|_| UNKNOWN_DECODE_RATE));
    Assumed { prefill, decode }
}

/// Decode rate assumed for every candidate while none has shown one.
const UNKNOWN_DECODE_RATE: f64 = 20.0;

/// Seconds the request `ask` is expected to take on a candidate: the queue ahead of it (requests in flight
/// times how long one holds the deployment), loading the model if it is not loaded, reading the part of the
/// prompt its cache does not hold, and writing the answer. `None` while its rates are not known.
pub fn expected_seconds(view: &DeploymentView, ask: &Ask<'_>) -> Option<f64> {
    let (prefill, decode) = (view.prefill_rate?, view.decode_rate?);
    if prefill <= 0.0 || decode <= 0.0 {
        return None;
    }
    let queue = f64::from(view.in_flight) * view.service.or(view.latency).unwrap_or(0.0);
    let load = if view.warm { 0.0 } else { view.load_cost.unwrap_or(0.0) };
    let unread = ask.prompt_tokens.saturating_sub(view.cached);
    let output = if ask.output_tokens > 0 { ask.output_tokens } else { TYPICAL_OUTPUT_TOKENS };
    Some(queue + load + unread as f64 / prefill + output as f64 / decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_learned_from_big_enough_samples() {
        let mut s = Speeds::default();
        s.learn(&Timings { prompt_n: 10, prompt_ms: 100.0, predicted_n: 4, predicted_ms: 100.0 });
        assert_eq!(s, Speeds::default(), "a cached prompt and a four-token answer teach nothing");
        s.learn(&Timings { prompt_n: 1_000, prompt_ms: 2_000.0, predicted_n: 100, predicted_ms: 5_000.0 });
        assert_eq!(s, Speeds { prefill: Some(500.0), decode: Some(20.0) });
        s.learn(&Timings { prompt_n: 1_000, prompt_ms: 1_000.0, predicted_n: 100, predicted_ms: 2_500.0 });
        let prefill = s.prefill.unwrap();
        assert!(prefill > 500.0 && prefill < 1_000.0, "smoothed: {prefill}");
    }

    #[test]
    fn a_candidate_without_rates_of_its_own_is_assumed_as_fast_as_the_others() {
        let known = |prefill, decode| DeploymentView {
            prefill_rate: Some(prefill),
            decode_rate: decode,
            ..DeploymentView::default()
        };
        let views = [known(100.0, Some(10.0)), known(300.0, Some(30.0)), DeploymentView::default()];
        let filled = assumed_rates(views.iter()).fill(views[2]);
        assert_eq!((filled.prefill_rate, filled.decode_rate), (Some(200.0), Some(20.0)));
        assert_eq!(assumed_rates(views.iter()).fill(views[0]).prefill_rate, Some(100.0), "its own rates stay");
        let short_answers = [known(100.0, None), DeploymentView::default()];
        let filled = assumed_rates(short_answers.iter()).fill(short_answers[1]);
        assert_eq!((filled.prefill_rate, filled.decode_rate), (Some(100.0), Some(UNKNOWN_DECODE_RATE)));
        let none = [DeploymentView::default(); 2];
        assert_eq!(assumed_rates(none.iter()), Assumed::default(), "nothing shown: nothing assumed");
    }

    #[test]
    fn the_estimate_adds_queue_load_unread_prompt_and_answer() {
        let ask = Ask { prompt_tokens: 10_000, output_tokens: 100, ..Ask::default() };
        let view = DeploymentView {
            prefill_rate: Some(1_000.0),
            decode_rate: Some(50.0),
            warm: true,
            ..DeploymentView::default()
        };
        assert_eq!(expected_seconds(&view, &ask), Some(10.0 + 2.0));
        let cached = DeploymentView { cached: 9_000, ..view };
        assert_eq!(expected_seconds(&cached, &ask), Some(1.0 + 2.0));
        let busy_cold = DeploymentView { in_flight: 2, service: Some(3.0), warm: false, load_cost: Some(4.0), ..view };
        assert_eq!(expected_seconds(&busy_cold, &ask), Some(6.0 + 4.0 + 12.0));
        assert_eq!(expected_seconds(&DeploymentView::default(), &ask), None);
    }
}
