//! Keeps secrets out of logs and error bodies.
//!
//! Engine error messages can echo a request's headers or URL; every message that leaves llmux passes
//! through [`redact`], which masks the configured secrets and anything shaped like a bearer token or API key.

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Registers the secrets of a loaded config (master key, engine keys). Each reload adds its own; a secret
/// stays masked after a reload drops it, since old log lines or in-flight errors may still carry it.
pub fn register_secrets(secrets: Vec<String>) {
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    for secret in secrets.into_iter().filter(|s| s.len() >= 4) {
        if !known.contains(&secret) {
            known.push(secret);
        }
    }
}

/// `text` with every registered secret and every `sk-…`/`Bearer …` token replaced by `***`.
pub fn redact(text: &str) -> String {
    let mut out = text.to_owned();
    for secret in SECRETS.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
    }
    mask_tokens(&out)
}

/// Masks the word after `Bearer ` and words starting with `sk-`.
fn mask_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut mask_next = false;
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let is_key = word.starts_with("sk-") && word.len() > 6;
        if (mask_next && !word.is_empty()) || is_key {
            out.push_str("***");
        } else {
            out.push_str(word);
        }
        mask_next = word.eq_ignore_ascii_case("bearer");
    }
    out
}

/// `url` as llmux prints it: credentials (`user:password@`) and every query value replaced by `***`, the fragment
/// dropped. Every place llmux shows an engine URL (`/model/info`, `/health`, `/health/hosts`, `llmux check`,
/// logs, response headers) goes through this, since a URL is where people put keys (`?api-key=…`, basic auth).
pub fn url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (before_query, query) = match rest.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(at) => before_query.split_at(at),
        None => (before_query, ""),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    if let Some((_, host)) = authority.rsplit_once('@') {
        out.push_str("***@");
        out.push_str(host);
    } else {
        out.push_str(authority);
    }
    out.push_str(path);
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) => {
                    out.push_str(name);
                    out.push_str("=***");
                }
                None if pair.is_empty() => {}
                None => out.push_str("***"),
            }
        }
    }
    out
}

/// `text` with control characters (newlines, carriage returns, escape sequences) written as escapes, for a
/// value that came from a client or an engine and goes into a log line: a model name with a newline must not
/// forge a second log line, nor an escape sequence repaint a terminal.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A log writer that keeps every event on one line: control characters inside an event (a newline in an engine's
/// error text, a carriage return or terminal escape in a client's model name) are written as escapes, so no value
/// a client or engine sends can forge a log line or repaint a terminal. Each event reaches the writer in one
/// `write` (tracing's formatter buffers it), ending in its own newline, which is kept.
pub struct OneLineStderr {
    /// Keep ESC (ANSI colours) when logs go to a terminal with colours on.
    pub keep_ansi: bool,
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for OneLineStderr {
    type Writer = OneLine<std::io::Stderr>;
    fn make_writer(&'a self) -> Self::Writer {
        OneLine { inner: std::io::stderr(), keep_ansi: self.keep_ansi }
    }
}

/// See [`OneLineStderr`].
pub struct OneLine<W> {
    inner: W,
    keep_ansi: bool,
}

impl<W: std::io::Write> std::io::Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write_all(&one_line(buf, self.keep_ansi))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `event` with its control bytes (but a tab, and ESC when `keep_ansi`) escaped, its final newline kept.
fn one_line(event: &[u8], keep_ansi: bool) -> std::borrow::Cow<'_, [u8]> {
    let (body, newline) = match event.strip_suffix(b"\n") {
        Some(body) => (body, true),
        None => (event, false),
    };
    let escaped = |b: u8| b.is_ascii_control() && b != b'\t' && !(keep_ansi && b == 0x1b);
    if !body.iter().copied().any(escaped) {
        return std::borrow::Cow::Borrowed(event);
    }
    let mut out = Vec::with_capacity(event.len() + 16);
    for &b in body {
        match b {
            b'\n' if escaped(b) => out.extend_from_slice(b"\\n"),
            b'\r' if escaped(b) => out.extend_from_slice(b"\\r"),
            b if escaped(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            b => out.push(b),
        }
    }
    if newline {
        out.push(b'\n');
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_bearer_tokens_and_sk_keys() {
        assert_eq!(mask_tokens("bad header Bearer abc123 here"), "bad header Bearer *** here");
        assert_eq!(mask_tokens("key sk-1234567890 rejected"), "key *** rejected");
        assert_eq!(mask_tokens("model sk- ok"), "model sk- ok");
    }

    #[test]
    fn urls_lose_credentials_and_query_values() {
        assert_eq!(
            url("http://user:pw@gpu:11434/v1?api-key=abc&x=1#frag"),
            "http://***@gpu:11434/v1?api-key=***&x=***"
        );
        assert_eq!(url("https://api.example.com/v1"), "https://api.example.com/v1");
        assert_eq!(url("http://gpu:8080?token"), "http://gpu:8080?***");
        assert_eq!(url("http://a@b@host/p@q"), "http://***@host/p@q");
    }

    #[test]
    fn a_log_event_stays_one_line() {
        let line = |event: &str, ansi| String::from_utf8(one_line(event.as_bytes(), ansi).into_owned()).unwrap();
        assert_eq!(line("WARN request failed: x\n", false), "WARN request failed: x\n");
        assert_eq!(line("WARN model=a\nINFO forged\r\u{1b}[2J\n", false), "WARN model=a\\nINFO forged\\r\\x1b[2J\n");
        assert_eq!(line("\u{1b}[33mWARN\u{1b}[0m a\nb\n", true), "\u{1b}[33mWARN\u{1b}[0m a\\nb\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape("qwen3:8b"), "qwen3:8b");
        assert_eq!(escape("m\nINFO forged"), "m\\nINFO forged");
        assert_eq!(escape("m\r\u{1b}[31m"), "m\\r\\u{1b}[31m");
    }
}
