//! Reading one TOML table of a config: typed values out, every error kept
//! with its dotted key, and each key declared once.
//!
//! A [`Table`] hands out values by key (`take`, `duration`, `bytes`, `raw`)
//! and records every key it was asked for, present or not; `finish` then
//! reports whatever is left as an unknown key, listing the known ones in the
//! order they were asked for. So the code that reads a key is also the list
//! of keys: there is no second list to forget. Errors are pushed onto a
//! shared list rather than returned, so one run reports every problem of a
//! file (each as `dotted.key: reason`).
//!
//! This module sits at the bottom of the crate (toml, serde, humantime and
//! std only): both `config` and the signal backends, which declare their own
//! keys, read their tables with it.

use serde::de::DeserializeOwned;
use std::time::Duration;

/// Takes typed values out of one TOML table, recording errors with keys.
pub struct Table<'e> {
    /// The table's dotted key (`policy.allow`, `signal[2]`); empty at the
    /// top of a file.
    key: String,
    table: toml::Table,
    /// Every key asked for, in order, once.
    known: Vec<String>,
    errors: &'e mut Vec<String>,
}

impl<'e> Table<'e> {
    /// The table at `key` (absent: an empty table; not a table: an error
    /// and an empty table, so its keys still read as defaults).
    pub fn new(key: &str, value: Option<toml::Value>, errors: &'e mut Vec<String>) -> Table<'e> {
        let table = match value {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t,
            Some(other) => {
                errors.push(format!(
                    "{key}: expected a table, found {}",
                    other.type_str()
                ));
                toml::Table::new()
            }
        };
        Table {
            key: key.into(),
            table,
            known: Vec::new(),
            errors,
        }
    }

    /// The whole document: keys are reported without a prefix.
    pub fn root(doc: toml::Table, errors: &'e mut Vec<String>) -> Table<'e> {
        Table::new("", Some(toml::Value::Table(doc)), errors)
    }

    /// The dotted key of `name` in this table (`agent.listen`).
    pub fn key(&self, name: &str) -> String {
        if self.key.is_empty() {
            name.into()
        } else {
            format!("{}.{name}", self.key)
        }
    }

    /// Record `name` as a key of this table.
    fn declare(&mut self, name: &str) {
        if !self.known.iter().any(|k| k == name) {
            self.known.push(name.into());
        }
    }

    /// Report a problem with the value of `name`: `key.name: message`.
    pub fn error(&mut self, name: &str, message: impl std::fmt::Display) {
        let key = self.key(name);
        self.errors.push(format!("{key}: {message}"));
    }

    /// The value of `name`, untyped (for nested tables and arrays).
    pub fn raw(&mut self, name: &str) -> Option<toml::Value> {
        self.declare(name);
        self.table.remove(name)
    }

    /// The value of `name` as a `T`; `None` if absent or of the wrong type
    /// (then with an error).
    pub fn take<T: DeserializeOwned>(&mut self, name: &str) -> Option<T> {
        let v = self.raw(name)?;
        match v.try_into::<T>() {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(name, e.message().trim());
                None
            }
        }
    }

    /// A duration written as text: `200ms`, `30s`, `1h 30m`.
    pub fn duration(&mut self, name: &str) -> Option<Duration> {
        let text: String = self.take(name)?;
        match humantime::parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    name,
                    format_args!("`{text}` is not a duration like 30s or 1h ({e})"),
                );
                None
            }
        }
    }

    /// A size written as text: `64MiB` (see [`parse_bytes`]).
    pub fn bytes(&mut self, name: &str) -> Option<u64> {
        let text: String = self.take(name)?;
        match parse_bytes(&text) {
            Ok(n) => Some(n),
            Err(e) => {
                self.error(name, e);
                None
            }
        }
    }

    /// An array of tables (`[[name]]`): each item with its key `name[i]`,
    /// for [`Table::new`].
    pub fn tables(&mut self, name: &str) -> Vec<(String, toml::Value)> {
        let key = self.key(name);
        let value = self.raw(name);
        array_of_tables(&key, value, self.errors)
    }

    /// Report whatever is left as unknown keys (a misspelt key is an error,
    /// never silently ignored).
    pub fn finish(self) {
        let known = self.known.join(", ");
        for k in self.table.keys() {
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

/// The items of an array of tables (`[[key]]`) at `key`, each with its key
/// `key[i]`; anything else but an array is reported (the items themselves
/// are judged by [`Table::new`]).
pub fn array_of_tables(
    key: &str,
    value: Option<toml::Value>,
    errors: &mut Vec<String>,
) -> Vec<(String, toml::Value)> {
    match value {
        None => Vec::new(),
        Some(toml::Value::Array(items)) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (format!("{key}[{i}]"), item))
            .collect(),
        Some(other) => {
            errors.push(format!(
                "{key}: expected an array of tables ([[{key}]]), found {}",
                other.type_str()
            ));
            Vec::new()
        }
    }
}

/// Parse a size such as `64MiB`, `512KiB`, `1GiB`, `100MB` or `0`.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size like 64MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB or GB)"
            ))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn unknown_keys_are_listed_with_the_known_ones_in_the_order_asked() {
        let mut errors = Vec::new();
        let mut t = Table::new(
            "agent",
            Some(toml::Value::Table(doc("listen = \"x\"\nlisen = 1\n"))),
            &mut errors,
        );
        // Absent keys count as known too; a key asked twice is listed once.
        assert_eq!(t.take::<String>("root"), None);
        assert_eq!(t.take::<String>("listen").as_deref(), Some("x"));
        assert_eq!(t.duration("debounce"), None);
        assert_eq!(t.raw("root"), None);
        t.finish();
        assert_eq!(
            errors,
            ["agent.lisen: unknown key (known keys here: root, listen, debounce)"]
        );
    }

    #[test]
    fn every_error_at_once_with_its_dotted_key() {
        let mut errors = Vec::new();
        let mut top = Table::root(
            doc(r#"
                a = "not a number"
                b = "soon"
                c = "12 parsecs"
                d = 3
                extra = true
                [t]
                x = 1
            "#),
            &mut errors,
        );
        assert_eq!(top.take::<u32>("a"), None);
        assert_eq!(top.duration("b"), None);
        assert_eq!(top.bytes("c"), None);
        let d = top.take::<u32>("d");
        top.error("d", "must be even");
        let t_v = top.raw("t");
        top.finish();
        let mut t = Table::new("t", t_v, &mut errors);
        assert_eq!(t.take::<u32>("x"), Some(1));
        t.finish();
        assert_eq!(d, Some(3));
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors[0].starts_with("a: invalid type: string"),
            "{errors:#?}"
        );
        assert!(
            errors[1].starts_with("b: `soon` is not a duration like 30s or 1h ("),
            "{errors:#?}"
        );
        assert!(
            errors[2].starts_with("c: unknown unit `parsecs`"),
            "{errors:#?}"
        );
        assert_eq!(errors[3], "d: must be even");
        assert_eq!(
            errors[4],
            "extra: unknown key (known keys here: a, b, c, d, t)"
        );
    }

    #[test]
    fn wrong_types() {
        let mut errors = Vec::new();
        let mut t = Table::new(
            "s",
            Some(toml::Value::Table(doc(
                "list = [1, \"two\"]\nflag = \"yes\"\nwait = 30\nsize = 64\n",
            ))),
            &mut errors,
        );
        assert_eq!(t.take::<Vec<u32>>("list"), None);
        assert_eq!(t.take::<bool>("flag"), None);
        // Durations and sizes are text, never bare numbers (30 what?).
        assert_eq!(t.duration("wait"), None);
        assert_eq!(t.bytes("size"), None);
        t.finish();
        let keys: Vec<&str> = errors
            .iter()
            .map(|e| e.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            ["s.list", "s.flag", "s.wait", "s.size"],
            "{errors:#?}"
        );
        assert!(
            errors.iter().all(|e| e.contains("invalid type")),
            "{errors:#?}"
        );

        let mut errors = Vec::new();
        let t = Table::new("policy", Some(toml::Value::Integer(3)), &mut errors);
        t.finish();
        assert_eq!(errors, ["policy: expected a table, found integer"]);
    }

    #[test]
    fn durations() {
        let mut errors = Vec::new();
        let mut t = Table::root(
            doc("a = \"200ms\"\nb = \"1h 30m\"\nc = \"0s\"\nd = \"5 fortnights\"\n"),
            &mut errors,
        );
        assert_eq!(t.duration("a"), Some(Duration::from_millis(200)));
        assert_eq!(t.duration("b"), Some(Duration::from_secs(5400)));
        assert_eq!(t.duration("c"), Some(Duration::ZERO));
        assert_eq!(t.duration("d"), None);
        assert_eq!(t.duration("absent"), None);
        t.finish();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(errors[0].starts_with("d: `5 fortnights` is not a duration"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes(" 512 KiB "), Ok(512 << 10));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("100MB"), Ok(100_000_000));
        assert_eq!(parse_bytes("3kB"), Ok(3_000));
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("7B"), Ok(7));
        assert!(parse_bytes("MiB").unwrap_err().contains("not a size"));
        assert!(parse_bytes("-1MiB").unwrap_err().contains("not a size"));
        assert!(parse_bytes("1 TiB")
            .unwrap_err()
            .contains("unknown unit `TiB`"));
        assert!(parse_bytes("99999999999GiB")
            .unwrap_err()
            .contains("too large"));

        let mut errors = Vec::new();
        let mut t = Table::new(
            "agent",
            Some(toml::Value::Table(doc(
                "r = \"64MiB\"\ns = \"64 mebibytes\"\n",
            ))),
            &mut errors,
        );
        assert_eq!(t.bytes("r"), Some(64 << 20));
        assert_eq!(t.bytes("s"), None);
        t.finish();
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("agent.s: unknown unit `mebibytes`"));
    }

    #[test]
    fn arrays_of_tables_are_keyed_by_index() {
        let mut errors = Vec::new();
        let mut t = Table::new(
            "policy",
            Some(toml::Value::Table(doc(
                "[[rules]]\npaths = []\n[[rules]]\nattributes = []\n",
            ))),
            &mut errors,
        );
        let items = t.tables("rules");
        assert!(t.tables("absent").is_empty());
        t.finish();
        let keys: Vec<&str> = items.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["policy.rules[0]", "policy.rules[1]"]);
        let mut errors = Vec::new();
        let mut t = Table::root(doc("signal = \"webhook\"\n"), &mut errors);
        assert!(t.tables("signal").is_empty());
        t.finish();
        assert_eq!(
            errors,
            ["signal: expected an array of tables ([[signal]]), found string"]
        );
    }
}
