//! Keyword matching as LiteLLM's `_keyword_matches` does it, for all four lists in one pass.
//!
//! LiteLLM tests each keyword separately against the lower-cased text: a keyword containing a space or a CJK
//! character is a plain substring test; any other is `re.search(r"\b" + re.escape(kw) + r"\b", text)`. Here every
//! distinct lower-cased keyword of every list goes into one Aho-Corasick automaton built at config load; one
//! overlapping scan reports each occurrence, and a word-boundary check on the characters around it stands in
//! for the two `\b`. A keyword counts once however often it occurs; a list entry counts once per entry (a list
//! that repeats a keyword counts it twice, as LiteLLM's list comprehension does).

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};

/// The four keyword lists, in LiteLLM's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum List {
    Code = 0,
    Reasoning = 1,
    Technical = 2,
    Simple = 3,
}

/// One list entry: the keyword as configured (reported back) and its distinct lower-cased pattern.
#[derive(Debug, Clone)]
struct Entry {
    keyword: String,
    pattern: usize,
}

/// A distinct lower-cased keyword.
#[derive(Debug, Clone)]
struct Pattern {
    /// Matched as a plain substring (contains a space or a CJK character) rather than between word boundaries.
    substring: bool,
}

/// Every list's keywords, precompiled.
#[derive(Debug, Clone)]
pub(super) struct Matcher {
    automaton: Option<AhoCorasick>,
    /// Indexed by automaton pattern id, then the empty keyword (if any) last.
    patterns: Vec<Pattern>,
    /// The empty keyword's pattern id: `\b\b` matches wherever a word boundary exists.
    empty: Option<usize>,
    lists: [Vec<Entry>; 4],
}

/// Equal when every list holds the same keywords in the same order (the automaton is built from them).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.lists
            .iter()
            .zip(&other.lists)
            .all(|(a, b)| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.keyword == y.keyword))
    }
}

/// Which distinct patterns occur in one text (a bitset over pattern ids).
pub(super) struct Hits(Vec<u64>);

impl Hits {
    fn contains(&self, id: usize) -> bool {
        self.0.get(id / 64).is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
    fn insert(&mut self, id: usize) {
        if let Some(w) = self.0.get_mut(id / 64) {
            *w |= 1 << (id % 64);
        }
    }
}

impl Matcher {
    /// Compiles the lists (in [`List`] order). Fails only if the automaton cannot be built.
    pub(super) fn new(lists: [Vec<String>; 4]) -> Result<Self, String> {
        let mut distinct: Vec<String> = Vec::new();
        let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        let mut empty = false;
        let mut compiled: [Vec<Entry>; 4] = Default::default();
        // Ids of the non-empty patterns first (they are the automaton's pattern ids); the empty one is appended.
        let mut pending_empty: Vec<(usize, usize)> = Vec::new();
        for (l, list) in lists.into_iter().enumerate() {
            for (k, keyword) in list.into_iter().enumerate() {
                let lowered = keyword.to_lowercase();
                if lowered.is_empty() {
                    empty = true;
                    pending_empty.push((l, k));
                    compiled[l].push(Entry { keyword, pattern: usize::MAX });
                    continue;
                }
                let next = distinct.len();
                let pattern = *index.entry(lowered.clone()).or_insert_with(|| {
                    distinct.push(lowered);
                    next
                });
                compiled[l].push(Entry { keyword, pattern });
            }
        }
        let mut patterns: Vec<Pattern> =
            distinct.iter().map(|p| Pattern { substring: is_substring_keyword(p) }).collect();
        let empty = empty.then(|| {
            patterns.push(Pattern { substring: false });
            patterns.len() - 1
        });
        if let Some(id) = empty {
            for (l, k) in pending_empty {
                compiled[l][k].pattern = id;
            }
        }
        let automaton = if distinct.is_empty() {
            None
        } else {
            // A DFA: the lists are small (≈120 patterns), so its memory is trivial and the scan is fastest.
            let built = AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(&distinct)
                .or_else(|_| AhoCorasick::builder().match_kind(MatchKind::Standard).build(&distinct))
                .map_err(|e| format!("cannot compile the keyword lists: {e}"))?;
            Some(built)
        };
        Ok(Matcher { automaton, patterns, empty, lists: compiled })
    }

    /// Scans `lowered` (the already lower-cased text) once for every list.
    pub(super) fn scan(&self, lowered: &str) -> Hits {
        let mut hits = Hits(vec![0; self.patterns.len().div_ceil(64)]);
        if let Some(automaton) = &self.automaton {
            for m in automaton.find_overlapping_iter(lowered) {
                let id = m.pattern().as_usize();
                if hits.contains(id) {
                    continue;
                }
                let substring = self.patterns.get(id).is_some_and(|p| p.substring);
                if substring || (word_boundary(lowered, m.start()) && word_boundary(lowered, m.end())) {
                    hits.insert(id);
                }
            }
        }
        if let Some(id) = self.empty {
            // `\b\b` finds a position with a word character on exactly one side: any word character will do.
            if lowered.chars().any(is_word) {
                hits.insert(id);
            }
        }
        hits
    }

    /// The configured keywords of `list` that matched, in list order (one item per matching entry).
    pub(super) fn matched<'a>(&'a self, hits: &'a Hits, list: List) -> impl Iterator<Item = &'a str> + 'a {
        self.lists[list as usize].iter().filter(|e| hits.contains(e.pattern)).map(|e| e.keyword.as_str())
    }
}

/// LiteLLM's `_CJK_CHARACTER` class: kana, CJK strokes, unified ideographs (with extension A and the
/// supplementary planes 2–3), compatibility ideographs and half-width katakana. Hangul is not in it.
fn is_cjk(c: char) -> bool {
    matches!(c,
        '\u{3040}'..='\u{30FF}'
        | '\u{31F0}'..='\u{31FF}'
        | '\u{3400}'..='\u{4DBF}'
        | '\u{4E00}'..='\u{9FFF}'
        | '\u{F900}'..='\u{FAFF}'
        | '\u{FF66}'..='\u{FF9D}'
        | '\u{20000}'..='\u{3FFFF}')
}

/// A keyword LiteLLM matches as a substring: it contains a space (U+0020 only) or a CJK character.
pub(super) fn is_substring_keyword(lowered: &str) -> bool {
    lowered.contains(' ') || lowered.chars().any(is_cjk)
}

/// A word character for Python's Unicode `\b`: alphanumeric or `_`. (Python's `isalnum` excludes the combining
/// marks that Rust's `is_alphabetic` includes via Other_Alphabetic; only a keyword touching such a mark could
/// match differently.)
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Python's `\b` at byte offset `at` of `text`: a word character on exactly one side (text edges count as
/// non-word).
fn word_boundary(text: &str, at: usize) -> bool {
    let before = text.get(..at).and_then(|s| s.chars().next_back()).is_some_and(is_word);
    let after = text.get(at..).and_then(|s| s.chars().next()).is_some_and(is_word);
    before != after
}
