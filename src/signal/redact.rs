//! URLs as they may be shown: in config errors, `driftd validate` and the
//! log. A URL can carry credentials (`user:password@`, `?token=...`), so
//! every message that shows one goes through [`url`]: the password and
//! every query value become `***`, the rest stays, so the operator still
//! recognises the URL (`https://user:***@host/path?token=***`).

/// What replaces a secret part.
const MASK: &str = "***";

/// `text` (a URL, valid or not) with its secret parts replaced: the
/// password of the userinfo (a user name alone, as a token often is, is
/// replaced whole), every query value (a query part without `=` whole)
/// and the fragment.
pub fn url(text: &str) -> String {
    // The query and fragment first: nothing after `?` or `#` is userinfo.
    let (before_fragment, fragment) = match text.split_once('#') {
        Some((b, _)) => (b, Some(MASK)),
        None => (text, None),
    };
    let (head, query) = match before_fragment.split_once('?') {
        Some((h, q)) => (h, Some(query(q))),
        None => (before_fragment, None),
    };
    let mut out = userinfo(head);
    if let Some(q) = query {
        out.push('?');
        out.push_str(&q);
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Every URL (`scheme://` up to white space or a quote) in free text, such
/// as a TOML parser's message quoting the line, redacted with [`url`].
pub fn urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters, digits, `+`, `-` and `.` before `://`.
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || "\"'`<>".contains(c))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `key=***` for every `key=value`, `***` for a part without `=`.
fn query(q: &str) -> String {
    q.split('&')
        .map(|part| match part.split_once('=') {
            Some((k, _)) => format!("{k}={MASK}"),
            None if part.is_empty() => String::new(),
            None => MASK.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// The part before the query with the userinfo's secret replaced. A URL
/// with an unencoded `/`, `?` or `#` in its password does not parse, and
/// none of that password may show either: an `@` after a `/` still ends
/// the userinfo when a `:` comes before it, and a `:` followed by
/// something other than a port starts a password whose `@` came after a
/// `?` or `#`.
fn userinfo(head: &str) -> String {
    let (scheme, rest) = match head.find("://") {
        Some(i) => head.split_at(i + 3),
        None => ("", head),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let at = rest[..authority_end]
        .rfind('@')
        .or_else(|| rest.rfind('@').filter(|&at| rest[..at].contains(':')));
    if let Some(at) = at {
        // A user name alone is often a token: masked whole.
        let shown = match rest[..at].split_once(':') {
            Some((user, _)) if !user.contains('/') => format!("{user}:{MASK}"),
            _ => MASK.to_string(),
        };
        return format!("{scheme}{shown}{}", &rest[at..]);
    }
    let authority = &rest[..authority_end];
    match (authority.split_once(':'), authority.rsplit_once(':')) {
        (Some((user, _)), Some((_, port)))
            if !authority.ends_with(']') && !port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            format!("{scheme}{user}:{MASK}")
        }
        _ => head.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_parts_are_masked_and_the_rest_kept() {
        let cases = [
            (
                "https://user:PASSWORD@host.example/path?token=TOKEN&x=1",
                "https://user:***@host.example/path?token=***&x=***",
            ),
            ("https://TOKEN@host/p", "https://***@host/p"),
            ("https://host/p", "https://host/p"),
            ("https://host:8443/p?a", "https://host:8443/p?***"),
            ("https://host/p?", "https://host/p?"),
            ("https://host/p#frag", "https://host/p#***"),
            ("http://u:p@w@host/", "http://u:***@host/"),
            // A `/` in an unencoded password: nothing of it is shown.
            ("https://user:pa/ss@host/x", "https://user:***@host/x"),
            ("https://us/er:pass@host/x", "https://***@host/x"),
            // Not a URL at all: still nothing secret shown.
            ("user:PASSWORD@host/path", "user:***@host/path"),
            ("ftp:/x?key=SECRET", "ftp:/x?key=***"),
            ("https://u:pa?ss@host/", "https://u:***?***"),
            ("https://u:pa#ss@host/", "https://u:***#***"),
            ("https://u:pa/ss?x@h", "https://u:***?***"),
            (
                "https://registry.example/@scope/pkg",
                "https://registry.example/@scope/pkg",
            ),
            ("https://[::1]:8443/hook", "https://[::1]:8443/hook"),
            ("https://[::1]/hook", "https://[::1]/hook"),
            ("", ""),
        ];
        for (given, want) in cases {
            assert_eq!(url(given), want, "{given}");
        }
    }

    #[test]
    fn urls_in_free_text() {
        let text = "TOML parse error at line 4\n  |\n4 | url = \"https://u:PW@h/p?token=TK\"x\n  |";
        let out = urls_in(text);
        assert!(!out.contains("PW") && !out.contains("TK"), "{out}");
        assert!(
            out.contains("url = \"https://u:***@h/p?token=***\"x"),
            "{out}"
        );
        assert_eq!(urls_in("no url here"), "no url here");
        assert_eq!(
            urls_in("a http://h/?a=SECRET b ws://x:Y@z"),
            "a http://h/?a=*** b ws://x:***@z"
        );
    }
}
