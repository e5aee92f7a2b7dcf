//! Checking a tool call's arguments against the tool's JSON Schema, with errors an agent
//! can act on: which fields are missing, which are wrong, and why.

use super::ToolEntry;
use jsonschema::error::ValidationErrorKind;

/// Why arguments were refused. Field names are top-level argument names (or JSON
/// pointers for nested values).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ArgumentErrors {
    pub missing_fields: Vec<String>,
    pub invalid_fields: Vec<String>,
    pub details: Vec<String>,
}

impl ArgumentErrors {
    pub fn is_empty(&self) -> bool {
        self.missing_fields.is_empty() && self.invalid_fields.is_empty() && self.details.is_empty()
    }
}

/// Validates `arguments` for `tool`; `Ok` when they may be sent.
pub fn validate_arguments(tool: &ToolEntry, arguments: &serde_json::Value) -> Result<(), ArgumentErrors> {
    if !arguments.is_object() {
        return Err(ArgumentErrors { details: vec!["arguments must be a JSON object".into()], ..Default::default() });
    }
    let mut errors = ArgumentErrors::default();
    for error in tool.validator.iter_errors(arguments) {
        let path = error.instance_path().as_str().trim_start_matches('/').to_string();
        match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().map(str::to_string).unwrap_or_else(|| property.to_string());
                let field = if path.is_empty() { name } else { format!("{path}/{name}") };
                errors.details.push(format!("{field} is required"));
                push_unique(&mut errors.missing_fields, field);
            }
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                for name in unexpected {
                    let field = if path.is_empty() { name.clone() } else { format!("{path}/{name}") };
                    errors.details.push(format!("{field} is not an accepted argument"));
                    push_unique(&mut errors.invalid_fields, field);
                }
            }
            _ => {
                let field = if path.is_empty() { "(arguments)".to_string() } else { path };
                errors.details.push(format!("{field}: {error}"));
                push_unique(&mut errors.invalid_fields, field);
            }
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(errors) }
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}
