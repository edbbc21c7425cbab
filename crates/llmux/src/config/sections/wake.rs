//! `llmux_settings.hosts.<api_base>.wake`: how to wake an engine host that is suspended when idle
//! (wake-on-LAN), and which requests may do it. A host with `wake` that does not answer is asleep, not dead.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::config::reader::{get_num, get_str, must_be, names};
use crate::config::Diagnostics;

/// The port magic packets go to when the address names none (the "discard" port most NICs listen on).
pub const DEFAULT_WAKE_PORT: u16 = 9;
/// How long a host is given to come up after its packet when the config does not say.
pub const DEFAULT_BOOT: Duration = Duration::from_secs(60);

/// How to wake one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wake {
    /// The network card's MAC address.
    pub mac: [u8; 6],
    /// Where the magic packet goes: the LAN's broadcast address (default `255.255.255.255:9`).
    pub address: SocketAddr,
    /// How long the host takes to answer after its packet (`boot_seconds`); a learned figure may extend it.
    pub boot: Duration,
    /// Request names (groups, aliases, a complexity router's tier targets) that may wake it; empty: any.
    pub wake_for: Vec<String>,
}

impl Wake {
    /// Whether a request that reached `group` by `name` may wake the host.
    pub fn may_wake(&self, name: &str, group: &str) -> bool {
        self.wake_for.is_empty() || self.wake_for.iter().any(|w| w == name || w == group)
    }

    /// The MAC as `aa:bb:cc:dd:ee:ff`.
    pub fn mac_text(&self) -> String {
        self.mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
    }
}

/// A MAC address written `aa:bb:cc:dd:ee:ff`, `aa-bb-cc-dd-ee-ff` or `aabbccddeeff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let text = text.trim();
    let hex: String = if text.contains([':', '-']) {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        parts.concat()
    } else {
        text.to_owned()
    };
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut mac = [0u8; 6];
    for (i, byte) in mac.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(mac)
}

/// `ip:port`, `[ipv6]:port` or a bare IP (port 9).
fn parse_address(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    text.parse::<SocketAddr>()
        .ok()
        .or_else(|| text.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, DEFAULT_WAKE_PORT)))
}

/// Reads a host's `wake` mapping at `at` (`llmux_settings.hosts.<api_base>.wake`); `known` says whether a
/// `wake_for` entry names something requests can ask for.
pub(super) fn host_wake(
    value: &Value,
    at: &str,
    known: &dyn Fn(&str) -> bool,
    diags: &mut Diagnostics,
) -> Option<Wake> {
    let entry: &Map<String, Value> = match value {
        Value::Null => return None,
        Value::Object(m) => m,
        other => {
            diags.error(at, must_be("a mapping like {mac: \"aa:bb:cc:dd:ee:ff\"}", other));
            return None;
        }
    };
    for key in entry.keys().filter(|k| !["mac", "address", "boot_seconds", "wake_for"].contains(&k.as_str())) {
        diags.warn(format!("{at}.{key}"), "unknown wake setting; ignored");
    }
    let mac = match get_str(entry, "mac", at, diags) {
        None => {
            diags.error(format!("{at}.mac"), "the host's MAC address is required to wake it (aa:bb:cc:dd:ee:ff)");
            None
        }
        Some(text) => parse_mac(&text).or_else(|| {
            diags.error(format!("{at}.mac"), format!("must be a MAC address like aa:bb:cc:dd:ee:ff, found {text:?}"));
            None
        }),
    };
    let default_address = SocketAddr::new(IpAddr::V4(Ipv4Addr::BROADCAST), DEFAULT_WAKE_PORT);
    let address = match get_str(entry, "address", at, diags) {
        None => Some(default_address),
        Some(text) => parse_address(&text).or_else(|| {
            diags.error(
                format!("{at}.address"),
                format!("must be an IP address and port like 192.168.1.255:9 (the LAN's broadcast), found {text:?}"),
            );
            None
        }),
    };
    let boot = get_num(entry, "boot_seconds", at, diags).map_or(DEFAULT_BOOT, |s| Duration::from_secs_f64(s.min(1e6)));
    let unknown = |i: usize, name: &str, diags: &mut Diagnostics| {
        if !known(name) {
            diags.warn(format!("{at}.wake_for[{i}]"), format!("no group or alias is named {name:?}"));
        }
    };
    let what = ("a model group name", "a list of model groups");
    let wake_for = names(entry.get("wake_for"), &format!("{at}.wake_for"), what, diags, &unknown);
    Some(Wake { mac: mac?, address: address?, boot, wake_for })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_in_the_usual_spellings() {
        let mac = [0xaa, 0xbb, 0xcc, 0x01, 0x02, 0xff];
        for text in ["aa:bb:cc:01:02:ff", "AA-BB-CC-01-02-FF", "aabbcc0102ff", " aa:bb:cc:01:02:ff "] {
            assert_eq!(parse_mac(text), Some(mac), "{text}");
        }
        for bad in ["aa:bb:cc:01:02", "aa:bb:cc:01:02:ff:00", "aa:bb:cc:01:02:fg", "a:bb:cc:01:02:fff", ""] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_address_defaults_to_port_nine() {
        assert_eq!(parse_address("192.168.1.255"), Some("192.168.1.255:9".parse().unwrap()));
        assert_eq!(parse_address("127.0.0.1:4009"), Some("127.0.0.1:4009".parse().unwrap()));
        assert_eq!(parse_address("nas.local:9"), None);
    }

    fn load(wake: &str) -> Result<(crate::config::Config, Diagnostics), Diagnostics> {
        let yaml = format!(
            "model_list:\n  - model_name: big\n    litellm_params: {{model: ollama_chat/m, api_base: \"http://p40:11434\"}}\nllmux_settings:\n  hosts:\n    http://p40:11434:\n      wake: {wake}\n"
        );
        crate::config::load_str(&yaml, &|_| None)
    }

    #[test]
    fn a_hosts_wake_lines_are_read_with_their_defaults() {
        let (config, diags) = load("{mac: \"aa:bb:cc:dd:ee:ff\"}").unwrap();
        assert_eq!(diags.iter().count(), 0, "{diags}");
        let wake = config.hosts[0].wake.clone().unwrap();
        assert_eq!(wake.mac_text(), "aa:bb:cc:dd:ee:ff");
        assert_eq!(wake.address, "255.255.255.255:9".parse().unwrap());
        assert_eq!(wake.boot, DEFAULT_BOOT);
        let (config, diags) =
            load("{mac: \"aa:bb:cc:dd:ee:ff\", address: \"192.168.1.255\", boot_seconds: 45, wake_for: [big, nope]}")
                .unwrap();
        let wake = config.hosts[0].wake.clone().unwrap();
        assert_eq!((wake.address.port(), wake.boot.as_secs(), wake.wake_for.len()), (9, 45, 2));
        let warned: Vec<String> = diags.iter().map(|d| d.path.clone()).collect();
        assert_eq!(warned, ["llmux_settings.hosts.http://p40:11434.wake.wake_for[1]"]);
    }

    #[test]
    fn a_bad_mac_or_address_is_an_error_at_its_path() {
        let err = load("{mac: \"aa:bb:cc\", address: \"nas:9\"}").unwrap_err();
        let paths: Vec<String> = err.errors().map(|d| d.path.clone()).collect();
        let at = "llmux_settings.hosts.http://p40:11434.wake";
        assert_eq!(paths, [format!("{at}.mac"), format!("{at}.address")]);
        let err = load("{address: \"10.0.0.255:9\"}").unwrap_err();
        assert!(err.to_string().contains("MAC address is required"), "{err}");
    }

    #[test]
    fn wake_for_limits_who_may_wake() {
        let wake = Wake {
            mac: [0; 6],
            address: "127.0.0.1:9".parse().unwrap(),
            boot: DEFAULT_BOOT,
            wake_for: vec!["reasoning_slow".into()],
        };
        assert!(wake.may_wake("reasoning_slow", "big"));
        assert!(wake.may_wake("alias", "reasoning_slow"));
        assert!(!wake.may_wake("coding", "coding"));
        assert!(Wake { wake_for: Vec::new(), ..wake }.may_wake("coding", "coding"));
    }
}
