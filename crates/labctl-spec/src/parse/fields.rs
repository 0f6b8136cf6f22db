//! Typed readers over the spanned TOML tree; wrong types and unknown keys go to the sink.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::S;
use crate::error::{Sink, suggest};

pub(crate) type Table<'i> = DeTable<'i>;
pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

pub(crate) fn check_keys(t: &Table<'_>, path: &str, allowed: &[&str], sink: &mut Sink<'_>) {
    for key in t.keys() {
        let k = key.get_ref().as_ref();
        if !allowed.contains(&k) {
            let field = join(path, k);
            match suggest(k, allowed.iter().copied()) {
                Some(s) => sink.hint(
                    &key.span(),
                    &field,
                    "unknown key",
                    format!("did you mean `{s}`?"),
                ),
                None => sink.hint(
                    &key.span(),
                    &field,
                    "unknown key",
                    format!("expected one of: {}", allowed.join(", ")),
                ),
            }
        }
    }
}

pub(crate) fn kind_name(v: &DeValue<'_>) -> &'static str {
    match v {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

pub(crate) fn wrong_type(v: &Value<'_>, field: &str, want: &str, sink: &mut Sink<'_>) {
    sink.at(
        &v.span(),
        field,
        format!("expected {want}, found {}", kind_name(v.get_ref())),
    );
}

pub(crate) fn as_table<'a, 'i>(
    v: &'a Value<'i>,
    field: &str,
    sink: &mut Sink<'_>,
) -> Option<&'a Table<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            wrong_type(v, field, "a table", sink);
            None
        }
    }
}

pub(crate) fn get_table<'a, 'i>(
    t: &'a Table<'i>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<(&'a Table<'i>, Range<usize>)> {
    let v = t.get(key)?;
    let field = if path == key {
        key.to_string()
    } else {
        join(path, key)
    };
    as_table(v, &field, sink).map(|tab| (tab, v.span()))
}

pub(crate) fn get_table_array<'a, 'i>(
    t: &'a Table<'i>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Vec<(&'a Table<'i>, Range<usize>)> {
    let field = if path == key {
        key.to_string()
    } else {
        join(path, key)
    };
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                as_table(item, &format!("{field}[{i}]"), sink).map(|tab| (tab, item.span()))
            })
            .collect(),
        DeValue::Table(tab) => {
            sink.hint(
                &v.span(),
                &field,
                "expected an array of tables",
                format!("write `[[{field}]]` instead of `[{field}]`"),
            );
            let _ = tab;
            Vec::new()
        }
        _ => {
            wrong_type(v, &field, "an array of tables", sink);
            Vec::new()
        }
    }
}

pub(crate) fn get_str(
    t: &Table<'_>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<S<String>> {
    let v = t.get(key)?;
    match v.get_ref() {
        DeValue::String(s) => Some(S {
            v: s.to_string(),
            span: v.span(),
        }),
        _ => {
            wrong_type(v, &join(path, key), "a string", sink);
            None
        }
    }
}

pub(super) fn get_bool(
    t: &Table<'_>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Option<S<bool>> {
    let v = t.get(key)?;
    match v.get_ref() {
        DeValue::Boolean(b) => Some(S {
            v: *b,
            span: v.span(),
        }),
        _ => {
            wrong_type(v, &join(path, key), "a boolean (true or false)", sink);
            None
        }
    }
}

fn int_of(v: &Value<'_>) -> Option<i64> {
    match v.get_ref() {
        DeValue::Integer(i) => {
            let digits: String = i.as_str().chars().filter(|c| *c != '_').collect();
            let digits = digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0o"))
                .or_else(|| digits.strip_prefix("0b"))
                .unwrap_or(&digits)
                .to_string();
            i64::from_str_radix(&digits, i.radix()).ok()
        }
        _ => None,
    }
}

pub(crate) fn get_int(t: &Table<'_>, path: &str, key: &str, sink: &mut Sink<'_>) -> Option<S<i64>> {
    let v = t.get(key)?;
    match (v.get_ref(), int_of(v)) {
        (DeValue::Integer(_), Some(n)) => Some(S {
            v: n,
            span: v.span(),
        }),
        (DeValue::Integer(_), None) => {
            sink.at(&v.span(), &join(path, key), "integer is out of range");
            None
        }
        _ => {
            wrong_type(v, &join(path, key), "an integer", sink);
            None
        }
    }
}

pub(crate) fn get_str_array(
    t: &Table<'_>,
    path: &str,
    key: &str,
    sink: &mut Sink<'_>,
) -> Vec<S<String>> {
    let field = join(path, key);
    let Some(v) = t.get(key) else {
        return Vec::new();
    };
    match v.get_ref() {
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| match item.get_ref() {
                DeValue::String(s) => Some(S {
                    v: s.to_string(),
                    span: item.span(),
                }),
                _ => {
                    wrong_type(item, &format!("{field}[{i}]"), "a string", sink);
                    None
                }
            })
            .collect(),
        DeValue::String(s) => vec![S {
            v: s.to_string(),
            span: v.span(),
        }],
        _ => {
            wrong_type(v, &field, "an array of strings", sink);
            Vec::new()
        }
    }
}

pub(super) fn scalar_string(v: &Value<'_>, field: &str, sink: &mut Sink<'_>) -> Option<S<String>> {
    let text = match v.get_ref() {
        DeValue::String(s) => s.to_string(),
        DeValue::Integer(_) => int_of(v)?.to_string(),
        DeValue::Boolean(b) => b.to_string(),
        _ => {
            wrong_type(v, field, "a string, an integer or a boolean", sink);
            return None;
        }
    };
    Some(S {
        v: text,
        span: v.span(),
    })
}

pub(super) fn scalar_map(
    t: &Table<'_>,
    path: &str,
    sink: &mut Sink<'_>,
) -> Vec<(S<String>, S<String>)> {
    t.iter()
        .filter_map(|(k, v)| {
            let name = S {
                v: k.get_ref().to_string(),
                span: k.span(),
            };
            let field = join(path, &name.v);
            scalar_string(v, &field, sink).map(|val| (name, val))
        })
        .collect()
}
