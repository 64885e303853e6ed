//! `selector`: label matchers added to every series the guard reads
//! (`env="prod", region=~"eu-.*"`).
//!
//! The text is parsed into matchers (a label name, one of `=`, `!=`, `=~`,
//! `!~`, a quoted value) and rendered again from that parsed form, so what
//! reaches the query is only matchers: a value cannot close the braces or
//! add a clause. `__name__` is refused (the guard names its own metrics).

use std::fmt;

/// One label matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub name: String,
    pub op: &'static str,
    pub value: String,
}

/// A validated list of label matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector(pub Vec<Matcher>);

/// A PromQL string literal (double quotes, escaped).
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Selector {
    /// Parse `name op "value"` items separated by commas (a trailing comma
    /// is allowed; values in double or single quotes).
    pub fn parse(text: &str) -> Result<Selector, String> {
        let chars: Vec<char> = text.chars().collect();
        let mut i = 0;
        let mut out = Vec::new();
        let skip_ws = |i: &mut usize| {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
        };
        loop {
            skip_ws(&mut i);
            if i >= chars.len() {
                break;
            }
            let start = i;
            if !is_name_start(chars[i]) {
                return Err(format!(
                    "expected a label name at `{}` (matchers like env=\"prod\")",
                    rest(&chars, i)
                ));
            }
            while i < chars.len() && is_name_char(chars[i]) {
                i += 1;
            }
            let name: String = chars[start..i].iter().collect();
            if name == "__name__" {
                return Err("`__name__` cannot be matched: the guard names its own metrics".into());
            }
            skip_ws(&mut i);
            let op = match (chars.get(i), chars.get(i + 1)) {
                (Some('='), Some('~')) => "=~",
                (Some('!'), Some('=')) => "!=",
                (Some('!'), Some('~')) => "!~",
                (Some('='), _) => "=",
                _ => {
                    return Err(format!(
                        "expected =, !=, =~ or !~ after `{name}` at `{}`",
                        rest(&chars, i)
                    ))
                }
            };
            i += op.len();
            skip_ws(&mut i);
            let value =
                string(&chars, &mut i).map_err(|e| format!("the value of `{name}`: {e}"))?;
            out.push(Matcher { name, op, value });
            skip_ws(&mut i);
            match chars.get(i) {
                None => break,
                Some(',') => i += 1,
                Some(_) => {
                    return Err(format!(
                        "expected `,` between matchers at `{}`",
                        rest(&chars, i)
                    ))
                }
            }
        }
        if out.is_empty() {
            return Err("no label matchers".into());
        }
        Ok(Selector(out))
    }
}

fn rest(chars: &[char], i: usize) -> String {
    chars[i.min(chars.len())..].iter().take(20).collect()
}

/// A quoted string at `i` (`"..."` or `'...'`, with `\\`, `\"`, `\'`,
/// `\n`, `\t` escapes); `i` ends after it.
fn string(chars: &[char], i: &mut usize) -> Result<String, String> {
    let q = match chars.get(*i) {
        Some(&c @ ('"' | '\'')) => c,
        _ => return Err("expected a quoted string".into()),
    };
    *i += 1;
    let mut out = String::new();
    loop {
        match chars.get(*i) {
            None => return Err("unterminated string".into()),
            Some(&c) if c == q => {
                *i += 1;
                return Ok(out);
            }
            Some('\\') => {
                let e = chars.get(*i + 1).ok_or("unterminated string")?;
                out.push(match e {
                    '\\' => '\\',
                    '"' => '"',
                    '\'' => '\'',
                    'n' => '\n',
                    't' => '\t',
                    other => return Err(format!("unknown escape `\\{other}`")),
                });
                *i += 2;
            }
            Some(&c) if c.is_control() => return Err("a control character in a value".into()),
            Some(&c) => {
                out.push(c);
                *i += 1;
            }
        }
    }
}

impl fmt::Display for Selector {
    /// The canonical form: `a="x",b=~"y"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, m) in self.0.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}{}", m.name, m.op, quote(&m.value))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_are_parsed_and_rendered_canonically() {
        let s = Selector::parse(" env = \"prod\" , region=~'eu-.*', team!=\"a\\\"b\",x!~\"\",")
            .unwrap();
        assert_eq!(s.0.len(), 4);
        assert_eq!(
            s.to_string(),
            r#"env="prod",region=~"eu-.*",team!="a\"b",x!~"""#
        );
        // The rendering parses back to the same matchers.
        assert_eq!(Selector::parse(&s.to_string()).unwrap(), s);
    }

    #[test]
    fn anything_but_matchers_is_refused() {
        for (text, needle) in [
            ("", "no label matchers"),
            ("env=prod", "expected a quoted string"),
            ("env=\"prod\"} or vector(1) or up{a=\"b\"", "expected `,`"),
            ("env==\"x\"", "expected a quoted string"),
            ("1env=\"x\"", "expected a label name"),
            ("__name__=\"up\"", "__name__"),
            ("env=\"prod", "unterminated"),
            ("env=\"a\\qb\"", "unknown escape"),
            ("env \"x\"", "expected =, !=, =~ or !~"),
            ("env=\"x\" team=\"y\"", "expected `,`"),
        ] {
            let e = Selector::parse(text).unwrap_err();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn quoting_escapes_what_would_end_the_string() {
        assert_eq!(quote("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(quote("\u{1}"), r#""\u0001""#);
    }
}
