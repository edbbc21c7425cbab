//! Small helpers: timestamps, stable hashes and ids.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch (OpenAI's `created`).
pub(crate) fn unix_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The current time as RFC 3339 in UTC with nanoseconds (Ollama's `created_at`).
pub(crate) fn rfc3339_now() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as RFC 3339 in UTC with nanoseconds, e.g. `2024-07-22T20:33:28.123648000Z`.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Converts days since 1970-01-01 to (year, month, day); Howard Hinnant's
/// `civil_from_days`, restricted to dates after the epoch. Hand-rolled so the
/// mock needs no date crate for one timestamp format.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// FNV-1a: a stable hash, so embeddings and digests are the same across runs
/// and platforms (std's hasher is randomly seeded).
pub(crate) fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// One step of SplitMix64, used to stretch a hash into many values.
pub(crate) fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A 64-hex-digit digest derived from `text`, shaped like Ollama's sha256 digests.
pub(crate) fn fake_digest(text: &str) -> String {
    let mut state = fnv1a(text.as_bytes());
    (0..4).map(|_| format!("{:016x}", splitmix64(&mut state))).collect()
}

/// A random id with `prefix`, e.g. `chatcmpl-1f3a...`.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}{:016x}{:08x}", fastrand::u64(..), fastrand::u32(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        let t = UNIX_EPOCH + Duration::new(1_721_680_408, 123_648_000);
        assert_eq!(rfc3339(t), "2024-07-22T20:33:28.123648000Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(leap).starts_with("2000-02-29T00:00:00"));
    }

    #[test]
    fn digest_is_stable_and_sized() {
        assert_eq!(fake_digest("llama3"), fake_digest("llama3"));
        assert_ne!(fake_digest("llama3"), fake_digest("llama2"));
        assert_eq!(fake_digest("x").len(), 64);
    }
}
