//! How results are printed: aligned `name  value` lines for people, one JSON
//! object for machines (`--json`). Every command builds a [`Report`] and
//! prints it through the same [`Output`], so both forms always agree.

use serde_json::{Map, Value};

/// Where results go and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON instead of text.
    pub json: bool,
}

/// An ordered list of fields, each with a JSON value and a human rendering.
#[derive(Debug, Default)]
pub struct Report {
    fields: Vec<(String, Value, String)>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a field whose JSON and human forms differ.
    pub fn field(mut self, name: &str, json: impl Into<Value>, human: impl Into<String>) -> Self {
        self.fields
            .push((name.to_string(), json.into(), human.into()));
        self
    }

    /// Adds a field shown the same way in both forms (its `Display`).
    pub fn text(self, name: &str, value: impl ToString) -> Self {
        let text = value.to_string();
        self.field(name, text.clone(), text)
    }

    /// Adds a number: a JSON number for machines, its decimal form for people.
    pub fn number<N: Into<Value> + ToString + Copy>(self, name: &str, value: N) -> Self {
        self.field(name, value, value.to_string())
    }

    /// The JSON object.
    pub fn to_json(&self) -> Value {
        let map: Map<String, Value> = self
            .fields
            .iter()
            .map(|(name, json, _)| (name.clone(), json.clone()))
            .collect();
        Value::Object(map)
    }

    /// The human form: one `name  value` line per field, names aligned.
    pub fn to_text(&self) -> String {
        let width = self
            .fields
            .iter()
            .map(|(n, _, _)| n.len())
            .max()
            .unwrap_or(0);
        self.fields
            .iter()
            .map(|(name, _, human)| format!("{:width$}  {human}", name.replace('_', " ")))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Output {
    /// Prints a report.
    pub fn report(&self, report: &Report) {
        if self.json {
            println!("{}", report.to_json());
        } else {
            println!("{}", report.to_text());
        }
    }

    /// Prints the result of a write: the bare signature, or `{"signature": ...}`.
    pub fn signature(&self, signature: impl ToString) {
        let signature = signature.to_string();
        if self.json {
            println!("{}", serde_json::json!({ "signature": signature }));
        } else {
            println!("{signature}");
        }
    }

    /// Prints a single value (a public key): bare, or `{name: value}`.
    pub fn single(&self, name: &str, value: impl ToString) {
        let value = value.to_string();
        if self.json {
            let mut map = Map::new();
            map.insert(name.to_string(), Value::String(value));
            println!("{}", Value::Object(map));
        } else {
            println!("{value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_carry_every_field() {
        let r = Report::new()
            .text("operator", "abc")
            .field("stake", 2_500_000u64, "2.5 tokens");
        assert_eq!(
            r.to_json(),
            serde_json::json!({ "operator": "abc", "stake": 2_500_000u64 })
        );
        assert_eq!(r.to_text(), "operator  abc\nstake     2.5 tokens");
    }
}
