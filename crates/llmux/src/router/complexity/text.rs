//! Which text LiteLLM scores: the last user message carrying real human text, with harness reminder blocks
//! removed (`_extract_current_ask_and_system_prompt`, `_human_text`, `_strip_reminder_blocks` in the latest
//! `complexity_router.py`).
//!
//! Python semantics are kept where they show: `str.strip()` trims `str.isspace()` characters (which include
//! U+001C–U+001F, unlike Rust's `trim`), and reminder spans are found in the lower-cased text but cut out of the
//! original by code-point index, exactly like the Python slicing does.

use std::borrow::Cow;

use aho_corasick::AhoCorasick;
use serde_json::Value;

/// Python's `str.isspace()`: Unicode White_Space plus the ASCII information separators U+001C–U+001F.
pub(super) fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no argument.
pub(super) fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// The reminder delimiter pairs, lower-cased, and a cheap pre-check for whether any opening marker can occur.
#[derive(Debug, Clone)]
pub(super) struct Reminders {
    /// `(open, close)` pairs, trimmed and lower-cased like LiteLLM's `ReminderMarkerPair`.
    pairs: Vec<(String, String)>,
    /// ASCII-case-insensitive search for the opening markers, valid on ASCII text when every marker is ASCII.
    open: Option<AhoCorasick>,
}

/// Equal when the delimiter pairs are (the pre-check is built from them).
impl PartialEq for Reminders {
    fn eq(&self, other: &Self) -> bool {
        self.pairs == other.pairs
    }
}

impl Reminders {
    /// Builds the matcher; `pairs` must already be trimmed, lower-cased and non-blank.
    pub(super) fn new(pairs: Vec<(String, String)>) -> Self {
        let all_ascii = pairs.iter().all(|(o, _)| o.is_ascii());
        // On ASCII text, lower-casing is ASCII lower-casing, so an ASCII-case-insensitive search of the original
        // finds exactly what a search of the lower-cased text finds; anything else takes the slow path.
        let open = all_ascii
            .then(|| {
                AhoCorasick::builder().ascii_case_insensitive(true).build(pairs.iter().map(|(o, _)| o.as_str())).ok()
            })
            .flatten();
        Reminders { pairs, open }
    }

    /// `_strip_reminder_blocks`: removes every complete block, joins the trimmed text around them with single
    /// spaces; an unclosed opening marker ends the scan and is kept.
    pub(super) fn strip<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if let Some(open) = &self.open {
            if text.is_ascii() && !open.is_match(text) {
                return Cow::Borrowed(py_strip(text));
            }
        }
        let lowered = text.to_lowercase();
        // Spans as byte offsets into `lowered`, in the order LiteLLM sorts them (start, then end).
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for (open, close) in &self.pairs {
            let mut cursor = 0;
            while let Some(start) = lowered.get(cursor..).and_then(|rest| rest.find(open.as_str())) {
                let start = cursor + start;
                let after_open = start + open.len();
                let Some(end) = lowered.get(after_open..).and_then(|rest| rest.find(close.as_str())) else {
                    break;
                };
                cursor = after_open + end + close.len();
                spans.push((start, cursor));
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(py_strip(text));
        }
        spans.sort_unstable();
        // Python finds the spans in the lower-cased string and slices the original with them, by code point.
        // Lower-casing keeps the code-point count except for `İ` (→ `i̇`), where Python's cut lands shifted; the
        // same indices are used here so the result is the same.
        let to_char = |byte: usize| lowered.get(..byte).map_or(0, |s| s.chars().count());
        let original: Vec<(usize, char)> = text.char_indices().collect();
        let byte_at = |idx: usize| original.get(idx).map_or(text.len(), |&(b, _)| b);
        let slice = |from: usize, to: usize| -> &'t str {
            if from >= to {
                return "";
            }
            text.get(byte_at(from)..byte_at(to)).unwrap_or("")
        };
        let mut out = String::with_capacity(text.len());
        let mut keep_from = 0usize;
        for &(start, end) in &spans {
            push_kept(&mut out, slice(keep_from, to_char(start)));
            // Blocks of different pairs can nest or overlap: resume after the furthest end seen so far.
            keep_from = keep_from.max(to_char(end));
        }
        push_kept(&mut out, slice(keep_from, original.len()));
        Cow::Owned(out)
    }
}

fn push_kept(out: &mut String, segment: &str) {
    let kept = py_strip(segment);
    if !kept.is_empty() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(kept);
    }
}

/// `_message_text`: a string content as is; a list content as its `type: "text"` parts joined with spaces and
/// trimmed; anything else empty. A text part whose `text` is not a string counts as empty (Python's `join` would
/// raise there and fail the request).
pub(super) fn message_text(content: Option<&Value>) -> Cow<'_, str> {
    match content {
        Some(Value::String(s)) => Cow::Borrowed(s),
        Some(Value::Array(parts)) => {
            let mut texts = parts.iter().filter_map(|part| {
                let part = part.as_object()?;
                (part.get("type").and_then(Value::as_str) == Some("text"))
                    .then(|| part.get("text").and_then(Value::as_str).unwrap_or(""))
            });
            let Some(first) = texts.next() else { return Cow::Borrowed("") };
            let Some(second) = texts.next() else { return Cow::Borrowed(py_strip(first)) };
            let mut joined = String::with_capacity(first.len() + second.len() + 1);
            joined.push_str(first);
            joined.push(' ');
            joined.push_str(second);
            for t in texts {
                joined.push(' ');
                joined.push_str(t);
            }
            Cow::Owned(py_strip(&joined).to_owned())
        }
        _ => Cow::Borrowed(""),
    }
}

/// The scored text: walking from the newest message, the first `user` message whose human text (content text
/// minus complete reminder blocks) is non-empty; `None` when there is none, which LiteLLM routes to the default
/// model. System messages are not read: the latest version scores the user's ask only.
///
/// The flag says whether that message is also the newest `user` message, i.e. whether it is LiteLLM's
/// `_newest_turn_ask`, the only text escalation keywords and housekeeping sentinels are looked for in.
pub(super) fn user_text<'m>(messages: &'m [Value], reminders: &Reminders) -> Option<(Cow<'m, str>, bool)> {
    let mut newest = true;
    messages.iter().rev().find_map(|message| {
        let message = message.as_object()?;
        if message.get("role").and_then(Value::as_str) != Some("user") {
            return None;
        }
        let text = match message_text(message.get("content")) {
            Cow::Borrowed(raw) => reminders.strip(raw),
            Cow::Owned(raw) => Cow::Owned(reminders.strip(&raw).into_owned()),
        };
        let is_newest = std::mem::replace(&mut newest, false);
        (!text.is_empty()).then_some((text, is_newest))
    })
}
