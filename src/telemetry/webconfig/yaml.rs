//! Reading one YAML mapping of the web config: typed values out, every
//! error kept with its dotted key, and each key declared once.
//!
//! The YAML twin of `crate::spec::Table` (which reads TOML): a [`Table`]
//! hands out values by key and records every key it was asked for; `finish`
//! reports whatever is left as an unknown key, listing the known ones in the
//! order they were asked for. A null value (`key:` with nothing after it)
//! reads as absent, as Go's YAML decoder treats it. Messages never quote a
//! value the caller marks as secret.

use serde::de::DeserializeOwned;
use serde_yaml::Value;

/// Takes typed values out of one YAML mapping, recording errors with keys.
pub(super) struct Table<'e> {
    /// The mapping's dotted key (`tls_server_config`); empty at the top.
    key: String,
    entries: Vec<(String, Value)>,
    /// Every key asked for, in order, once.
    known: Vec<&'static str>,
    errors: &'e mut Vec<String>,
}

/// What a YAML value is, for messages (never the value itself).
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The entries of a mapping with string keys, in file order; anything else
/// is reported against `key` (and reads as empty).
pub(super) fn entries(key: &str, value: Value, errors: &mut Vec<String>) -> Vec<(String, Value)> {
    let at = if key.is_empty() { "the file" } else { key };
    match value {
        Value::Null => Vec::new(),
        Value::Mapping(m) => {
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                match k {
                    Value::String(s) => out.push((s, v)),
                    other => errors.push(format!(
                        "{at}: keys must be strings, found {} as a key",
                        kind(&other)
                    )),
                }
            }
            out
        }
        other => {
            errors.push(format!("{at}: expected a mapping, found {}", kind(&other)));
            Vec::new()
        }
    }
}

impl<'e> Table<'e> {
    /// The mapping at `key` (absent or null: empty).
    pub(super) fn new(key: &str, value: Option<Value>, errors: &'e mut Vec<String>) -> Table<'e> {
        let entries = entries(key, value.unwrap_or(Value::Null), errors);
        Table {
            key: key.into(),
            entries,
            known: Vec::new(),
            errors,
        }
    }

    /// The dotted key of `name` in this mapping.
    pub(super) fn key(&self, name: &str) -> String {
        if self.key.is_empty() {
            name.into()
        } else {
            format!("{}.{name}", self.key)
        }
    }

    /// Report a problem with `name`: `key.name: message`.
    pub(super) fn error(&mut self, name: &str, message: impl std::fmt::Display) {
        let key = self.key(name);
        self.errors.push(format!("{key}: {message}"));
    }

    /// The errors list, for checks that span several keys.
    pub(super) fn errors(&mut self) -> &mut Vec<String> {
        self.errors
    }

    /// The value of `name` as written, null included (declares the key).
    pub(super) fn raw(&mut self, name: &'static str) -> Option<Value> {
        if !self.known.contains(&name) {
            self.known.push(name);
        }
        let i = self.entries.iter().position(|(k, _)| k == name)?;
        Some(self.entries.remove(i).1)
    }

    /// The value of `name` as a `T`; `None` if absent, null or of the wrong
    /// type (then with an error naming the key).
    pub(super) fn take<T: DeserializeOwned>(&mut self, name: &'static str) -> Option<T> {
        let v = self.raw(name)?;
        if v.is_null() {
            return None;
        }
        match serde_yaml::from_value::<T>(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(name, e);
                None
            }
        }
    }

    /// A string value that may be a secret: a wrong type is reported
    /// without quoting the value.
    pub(super) fn secret(&mut self, name: &'static str) -> Option<String> {
        match self.raw(name)? {
            Value::Null => None,
            Value::String(s) => Some(s),
            other => {
                let found = kind(&other);
                self.error(name, format_args!("expected a string, found {found}"));
                None
            }
        }
    }

    /// A key driftd knows but cannot honour: present is an error saying why
    /// (it is not listed among the known keys).
    pub(super) fn refuse(&mut self, name: &str, why: &str) {
        if let Some(i) = self.entries.iter().position(|(k, _)| k == name) {
            self.entries.remove(i);
            self.error(name, why);
        }
    }

    /// Report whatever is left as unknown keys.
    pub(super) fn finish(self) {
        let known = self.known.join(", ");
        for (k, _) in &self.entries {
            let key = if self.key.is_empty() {
                k.clone()
            } else {
                format!("{}.{k}", self.key)
            };
            self.errors
                .push(format!("{key}: unknown key (known keys here: {known})"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Option<Value> {
        Some(serde_yaml::from_str(text).unwrap())
    }

    #[test]
    fn keys_types_and_unknown_keys_are_reported_with_dotted_keys() {
        let mut errors = Vec::new();
        let mut t = Table::new(
            "tls_server_config",
            doc("min_version: 12\ncert_file: a.pem\nempty:\nsecret: [1]\ntypo: x\n"),
            &mut errors,
        );
        assert_eq!(t.take::<String>("cert_file").as_deref(), Some("a.pem"));
        assert_eq!(t.take::<String>("min_version"), None);
        assert_eq!(t.take::<String>("empty"), None);
        assert_eq!(t.take::<String>("absent"), None);
        assert_eq!(t.secret("secret"), None);
        t.finish();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors[0].starts_with("tls_server_config.min_version: invalid type: integer"));
        assert_eq!(
            errors[1],
            "tls_server_config.secret: expected a string, found a list"
        );
        assert_eq!(
            errors[2],
            "tls_server_config.typo: unknown key (known keys here: cert_file, min_version, \
             empty, absent, secret)"
        );
    }

    #[test]
    fn not_a_mapping_and_non_string_keys() {
        let mut errors = Vec::new();
        Table::new("http_server_config", doc("[1, 2]"), &mut errors).finish();
        Table::new("", doc("1: x\nok: y\n"), &mut errors).finish();
        assert_eq!(
            errors,
            [
                "http_server_config: expected a mapping, found a list",
                "the file: keys must be strings, found a number as a key",
                "ok: unknown key (known keys here: )",
            ]
        );
    }

    #[test]
    fn refused_keys_say_why_and_are_not_listed_as_known() {
        let mut errors = Vec::new();
        let mut t = Table::new("", doc("rate_limit: {}\nother: 1\n"), &mut errors);
        t.refuse("rate_limit", "not supported");
        t.refuse("absent", "never reported");
        let _ = t.raw("basic_auth_users");
        t.finish();
        assert_eq!(
            errors,
            [
                "rate_limit: not supported",
                "other: unknown key (known keys here: basic_auth_users)"
            ]
        );
    }
}
