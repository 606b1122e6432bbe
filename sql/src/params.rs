//! A statement's placeholder values: text from outside reaches SQL as a value bound to `$n`,
//! never spliced into the statement, so no caller quotes or escapes anything by hand.

use datafusion::common::{ParamValues, ScalarValue};

use crate::engine::StatementOptions;

/// The values of a statement's `$1`, `$2`… placeholders, numbered in the order they are added.
#[derive(Debug, Default, Clone)]
pub struct Params(Vec<ScalarValue>);

impl Params {
    /// No values yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `value` as text; returns the placeholder to write in its place.
    pub fn text(&mut self, value: &str) -> String {
        self.push(ScalarValue::Utf8(Some(value.to_string())))
    }

    /// Adds `value` as a 64-bit integer; returns its placeholder.
    pub fn int(&mut self, value: i64) -> String {
        self.push(ScalarValue::Int64(Some(value)))
    }

    /// Adds each of `values` as text; returns their placeholders joined by commas, for `IN (…)`.
    pub fn texts<'a>(&mut self, values: impl IntoIterator<Item = &'a str>) -> String {
        values
            .into_iter()
            .map(|v| self.text(v))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn push(&mut self, value: ScalarValue) -> String {
        self.0.push(value);
        format!("${}", self.0.len())
    }

    /// How many values it holds.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The options a statement with these values runs with.
    pub fn into_options(self) -> StatementOptions {
        StatementOptions {
            params: (!self.0.is_empty()).then(|| ParamValues::from(self.0)),
            ..StatementOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order_and_values_kept_whole() {
        let mut p = Params::new();
        assert_eq!(p.text("it's; DROP TABLE x --"), "$1");
        assert_eq!(p.int(7), "$2");
        assert_eq!(p.texts(["a", "b"]), "$3, $4");
        let options = p.into_options();
        let Some(ParamValues::List(values)) = options.params else {
            panic!("a list of values");
        };
        assert_eq!(values.len(), 4);
        assert_eq!(
            values[0].value,
            ScalarValue::Utf8(Some("it's; DROP TABLE x --".into()))
        );
        assert!(Params::new().into_options().params.is_none());
    }
}
