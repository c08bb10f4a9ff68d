//! Small helpers the console's sections share to show stored values: dates, durations and
//! a JSON record as label/value rows (the admin views the API returns).

use crate::clock::UnixTime;

/// `2026-12-02 18:40 UTC`
pub fn when(t: UnixTime) -> String {
    let s = crate::clock::rfc3339(t);
    format!("{} {} UTC", &s[..10.min(s.len())], s.get(11..16).unwrap_or(""))
}

/// `3 d 4 h`, `15 min`, `40 s`
pub fn duration(seconds: i64) -> String {
    let s = seconds.max(0);
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min", s / 60),
        3600..=86399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// One row of a record: a readable label and the value as text.
pub struct Row {
    pub label: String,
    pub value: String,
}

fn label(key: &str) -> String {
    let mut l = key.replace('_', " ");
    if let Some(first) = l.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    l
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "—".into(),
        serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) if a.iter().all(|x| !x.is_object()) => {
            if a.is_empty() {
                "—".into()
            } else {
                a.iter().map(text).collect::<Vec<_>>().join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// The fields of a JSON object as rows, skipping `skip`.
pub fn rows(v: &serde_json::Value, skip: &[&str]) -> Vec<Row> {
    let Some(o) = v.as_object() else { return vec![] };
    o.iter()
        .filter(|(k, _)| !skip.contains(&k.as_str()))
        .map(|(k, v)| Row { label: label(k), value: text(v) })
        .collect()
}

/// A person's directory attributes (as `ldap::signin::attributes` returns them) as rows.
pub fn attribute_rows(attrs: &std::collections::BTreeMap<String, serde_json::Value>) -> Vec<Row> {
    attrs.iter().map(|(k, v)| Row { label: k.clone(), value: text(v) }).collect()
}

/// A string field of a JSON object, or "".
pub fn s<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|x| x.as_str()).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(duration(59), "59 s");
        assert_eq!(duration(3600 + 120), "1 h 2 min");
        assert_eq!(duration(2 * 86400 + 3600), "2 d 1 h");
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        let r = rows(&serde_json::json!({"client_id": "a", "scopes": ["x", "y"], "on": true, "n": null}), &["n"]);
        let shown: Vec<_> = r.iter().map(|r| format!("{}={}", r.label, r.value)).collect();
        assert_eq!(shown, ["Client id=a", "On=yes", "Scopes=x, y"]);
    }
}
