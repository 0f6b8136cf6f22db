//! `--json` documents of the read commands: one JSON object on stdout with `"schema": 1` and
//! `"kind"`, the shapes in docs/json.md. A field may be added within a schema version; a
//! field removed, renamed or changed in meaning bumps it.

use serde_json::{Map, Value, json};

/// The version of every read command's JSON shape.
pub(crate) const SCHEMA: u32 = 1;

/// `{"schema": 1, "kind": KIND, ...fields}`.
pub(crate) fn document(kind: &str, fields: Value) -> Value {
    let mut m = Map::new();
    m.insert("schema".into(), json!(SCHEMA));
    m.insert("kind".into(), json!(kind));
    if let Value::Object(f) = fields {
        for (k, v) in f {
            m.insert(k, v);
        }
    }
    Value::Object(m)
}

/// Pretty-printed, for stdout.
pub(crate) fn text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// `snapshot list --json`: the snapshots of each node, and which one is the golden one.
pub(crate) fn snapshot_list(nodes: &[(String, Vec<String>)], golden: Option<&str>) -> Value {
    document(
        "snapshot-list",
        json!({
            "golden": golden,
            "nodes": nodes
                .iter()
                .map(|(n, s)| json!({"node": n, "snapshots": s}))
                .collect::<Vec<_>>(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_start_with_schema_and_kind() {
        let v = document("values", json!({"values": {"a": "1"}}));
        assert_eq!(
            text(&v),
            "{\n  \"kind\": \"values\",\n  \"schema\": 1,\n  \"values\": {\n    \"a\": \"1\"\n  }\n}"
        );
    }

    #[test]
    fn snapshot_list_shape() {
        let v = snapshot_list(
            &[
                ("m-k8s".into(), vec!["provisioned".into(), "before".into()]),
                ("w1-k8s".into(), vec![]),
            ],
            Some("provisioned"),
        );
        insta::assert_snapshot!(text(&v));
    }
}
