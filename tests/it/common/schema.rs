//! Every payload a test receives is checked against the committed
//! `docs/payload.schema.json` (issue 11): the schema describes what is sent.

use std::sync::OnceLock;

use serde_json::Value;

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/payload.schema.json");
        let text = std::fs::read_to_string(path).expect("docs/payload.schema.json is readable");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
    })
}

/// Every way `payload` does not match the schema.
pub fn violations(payload: &Value) -> Vec<String> {
    validator()
        .iter_errors(payload)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

/// Fails the test with every violation when `payload` does not match.
pub fn assert_valid(payload: &Value) {
    let errors = violations(payload);
    assert!(
        errors.is_empty(),
        "the payload does not match docs/payload.schema.json: {errors:#?}"
    );
}
