//! The payload's JSON Schema, derived from the types that write it.

use schemars::JsonSchema;

use super::MessageFields;

/// The whole document as its JSON Schema describes it (payloads are
/// written by [`Payload::to_json`], in two pieces, not through this type).
#[derive(JsonSchema)]
#[schemars(
    title = "MailLaser webhook payload",
    description = "The JSON document MailLaser POSTs for each accepted recipient of a message (docs/payload.md). Optional fields are left out, never null; new fields may be added.",
    deny_unknown_fields
)]
#[allow(dead_code)] // read by the derive only
struct PayloadDocument {
    /// `MAIL FROM` address; `""` for the null reverse-path.
    sender: String,
    /// The accepted `RCPT TO` address, as written.
    recipient: String,
    /// The tag of a `local+tag@domain` recipient (`MAIL_LASER_PLUS_ADDRESSING`).
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient_tag: Option<String>,
    #[serde(flatten)]
    fields: MessageFields,
}

/// The payload's JSON Schema (draft 2020-12), as committed in
/// `docs/payload.schema.json`: optional fields are left out, never `null`,
/// and no object has fields it does not list.
pub fn payload_schema() -> serde_json::Value {
    let mut settings = schemars::generate::SchemaSettings::draft2020_12().for_serialize();
    settings
        .transforms
        .push(Box::new(schemars::transform::RecursiveTransform(
            closed_and_never_null,
        )));
    settings
        .into_generator()
        .into_root_schema_for::<PayloadDocument>()
        .to_value()
}

/// An object lists every field it may have, and an optional field is left
/// out rather than `null` (schemars describes `Option` as nullable).
fn closed_and_never_null(schema: &mut schemars::Schema) {
    use serde_json::Value;
    if schema.get("properties").is_some() && schema.get("additionalProperties").is_none() {
        schema.insert("additionalProperties".into(), false.into());
    }
    if let Some(Value::Array(types)) = schema.get_mut("type") {
        types.retain(|kind| kind != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            schema.insert("type".into(), only);
        }
    }
    let Some(Value::Array(branches)) = schema.get_mut("anyOf") else {
        return;
    };
    branches.retain(|branch| branch.get("type").is_none_or(|kind| kind != "null"));
    if let [only] = branches.as_slice() {
        let only = only.clone();
        schema.remove("anyOf");
        if let (Some(target), Value::Object(fields)) = (schema.as_object_mut(), only) {
            target.extend(fields);
        }
    }
}
