//! Reading `[policy.allow] may_appear` from a config: an array whose items
//! are bare patterns or tables (inline, or `[[policy.allow.may_appear]]`).
//! Each table is read with [`crate::spec::Table`], which declares its keys
//! where they are read (an unknown key is an error) and reports every
//! problem with its dotted key. Only shapes are judged here; the values
//! (globs, type names, the mask, names) are judged when the policy is
//! compiled, so a manifest's embedded policy gets the same checks.

use super::allowance::{Allowance, Appear, Id};
use crate::spec::Table;
use toml::Value;

/// The items of `may_appear` at `key` (`None` when absent or not an
/// array). A table's absent keys take the narrow default of a bare
/// pattern; an item or key of the wrong shape is reported and left out or
/// empty (the config is refused anyway).
pub fn may_appear(
    key: &str,
    value: Option<Value>,
    errors: &mut Vec<String>,
) -> Option<Vec<Appear>> {
    let items = match value? {
        Value::Array(items) => items,
        other => {
            errors.push(format!(
                "{key}: expected an array of patterns and tables, found {}",
                other.type_str()
            ));
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let key = format!("{key}[{i}]");
        out.push(match item {
            Value::String(p) => Appear::Pattern(p),
            Value::Table(_) => Appear::Table(table(&key, item, errors)),
            other => {
                errors.push(format!(
                    "{key}: expected a pattern or a table, found {}",
                    other.type_str()
                ));
                // Keeps the indices of later items (and their keys) right.
                Appear::Table(Allowance::narrow(Vec::new()))
            }
        });
    }
    Some(out)
}

fn table(key: &str, item: Value, errors: &mut Vec<String>) -> Allowance {
    let mut t = Table::new(key, Some(item), errors);
    let mut a = Allowance::narrow(t.take("paths").unwrap_or_default());
    if let Some(v) = t.raw("type") {
        a.types = match v {
            Value::String(s) => vec![s],
            Value::Array(items) => strings(&mut t, "type", items),
            other => {
                let found = other.type_str();
                t.error(
                    "type",
                    format!("expected a type or an array of types, like \"file\" or [\"file\", \"symlink\"], found {found}"),
                );
                Vec::new()
            }
        };
    }
    if let Some(v) = t.raw("mode") {
        a.mode = match v {
            Value::String(s) => s,
            Value::Integer(n) => {
                // `mode = 644` is decimal 644, i.e. 0o1204: refuse the trap.
                t.error(
                    "mode",
                    format!("write the mask as an octal string, like \"0644\" (the number {n} is not octal)"),
                );
                String::new()
            }
            other => {
                let found = other.type_str();
                t.error(
                    "mode",
                    format!("expected an octal string like \"0644\", found {found}"),
                );
                String::new()
            }
        };
    }
    for (name, ids) in [("owner", &mut a.owner), ("group", &mut a.group)] {
        if let Some(v) = t.raw(name) {
            *ids = id_list(&mut t, name, v);
        }
    }
    a.below = t.take("below").unwrap_or(false);
    t.finish();
    a
}

fn strings(t: &mut Table<'_>, name: &str, items: Vec<Value>) -> Vec<String> {
    let mut out = Vec::new();
    for (j, v) in items.into_iter().enumerate() {
        match v {
            Value::String(s) => out.push(s),
            other => t.error(
                &format!("{name}[{j}]"),
                format!("expected a string, found {}", other.type_str()),
            ),
        }
    }
    out
}

fn id_list(t: &mut Table<'_>, name: &str, v: Value) -> Vec<Id> {
    let Value::Array(items) = v else {
        let found = v.type_str();
        t.error(
            name,
            format!("expected an array of names or numbers, like [\"root\"] or [0], found {found}"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (j, v) in items.into_iter().enumerate() {
        match v {
            Value::String(s) => out.push(Id::Name(s)),
            Value::Integer(n) => match u32::try_from(n) {
                Ok(n) => out.push(Id::Num(n)),
                Err(_) => t.error(
                    &format!("{name}[{j}]"),
                    format!("{n} is not a user or group id"),
                ),
            },
            other => t.error(
                &format!("{name}[{j}]"),
                format!("expected a name or a number, found {}", other.type_str()),
            ),
        }
    }
    out
}
