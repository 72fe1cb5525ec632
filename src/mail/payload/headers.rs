//! [`Headers`]: the forwarded headers, an object in message order.

use schemars::JsonSchema;
use serde::ser::{Serialize, SerializeMap, Serializer};

/// Forwarded headers; serialises as a JSON object in message order.
///
/// JSON object keys should be unique, so when a name repeats
/// (ASCII case-insensitively) the **first occurrence wins** and later ones
/// are dropped; the key keeps the spelling of that first occurrence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    /// Collects `(name, value)` pairs, keeping the first of each name.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut seen = std::collections::HashSet::new();
        Self(
            pairs
                .into_iter()
                .filter(|(name, _)| seen.insert(name.to_ascii_lowercase()))
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Value of `name`, compared ASCII case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// `(name, value)` pairs in message order.
    /// Whether every header's name starts with one of `prefixes`.
    pub fn all_match(&self, prefixes: &[String]) -> bool {
        self.0
            .iter()
            .all(|(name, _)| crate::mail::parse::has_prefix(name, prefixes))
    }

    /// The headers whose names start with one of `prefixes`.
    #[must_use]
    pub fn matching(&self, prefixes: &[String]) -> Self {
        Self(
            self.0
                .iter()
                .filter(|(name, _)| crate::mail::parse::has_prefix(name, prefixes))
                .cloned()
                .collect(),
        )
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }
}

impl JsonSchema for Headers {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Headers".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "Header name as sent → decoded value, in message order; the first occurrence of a name wins."
        })
    }
}

impl Serialize for Headers {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}
