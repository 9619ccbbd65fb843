//! Where a finished sign-in may send the browser: only paths on this service's own origin.
//!
//! Anything else falls back to `/`. Browsers are lenient (they read `/\host` and `//host` as
//! other hosts, strip tabs and newlines, and some proxies decode `%2F`), so the rules are
//! strict: a single leading `/`, no backslash, no control or space characters, nothing that
//! decodes into those, and the result must still resolve to our own origin.

use url::Url;

pub const FALLBACK: &str = "/";
const MAX_LEN: usize = 2048;

pub fn sanitize(candidate: Option<&str>) -> String {
    candidate
        .filter(|c| is_safe_local_path(c))
        .map(str::to_owned)
        .unwrap_or_else(|| FALLBACK.to_owned())
}

fn is_safe_local_path(p: &str) -> bool {
    if p.is_empty() || p.len() > MAX_LEN || !p.starts_with('/') {
        return false;
    }
    if p.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || b >= 0x80)
    {
        return false;
    }
    // Decoded forms must be just as harmless: `/%2F%2Fevil`, `/%5Cevil`, `/%09/evil`.
    let decoded = percent_decode_repeatedly(p);
    if decoded.starts_with("//")
        || decoded.bytes().any(|b| b == b'\\' || b.is_ascii_control())
        || decoded.starts_with("/\\")
    {
        return false;
    }
    if p.starts_with("//") {
        return false;
    }
    let Ok(base) = Url::parse("http://gatehouse.invalid/") else {
        return false;
    };
    matches!(base.join(p), Ok(u) if u.host_str() == Some("gatehouse.invalid") && u.port().is_none() && u.username().is_empty())
}

/// Decodes until stable (bounded), so double encodings are judged by what they become.
fn percent_decode_repeatedly(p: &str) -> String {
    let mut current = p.to_owned();
    for _ in 0..4 {
        let next = percent_encoding::percent_decode_str(&current)
            .decode_utf8_lossy()
            .into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

#[cfg(test)]
mod tests {
    use super::sanitize;

    #[test]
    fn keeps_local_paths() {
        for ok in ["/", "/app", "/x/y?z=1&w=%20", "/a#frag", "/path;p=1"] {
            assert_eq!(sanitize(Some(ok)), ok, "{ok}");
        }
    }

    #[test]
    fn refuses_everything_else() {
        for bad in [
            "//evil.com",
            "/\\evil.com",
            "\\\\evil.com",
            "https://evil.com",
            "http:evil.com",
            "javascript:alert(1)",
            "%2F%2Fevil.com",
            "/%2F%2Fevil.com",
            "/%2f%2fevil.com",
            "/%5Cevil.com",
            "/\tevil",
            "/\n/evil.com",
            "//user@evil.com",
            "/%252F%252Fevil.com",
            "",
            "evil.com",
            " /x",
            "/\u{3000}/evil",
            "/%09/evil.com",
        ] {
            assert_eq!(sanitize(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(sanitize(None), "/");
    }
}
