//! JSON held as text, read in SQL: `json_get_str(text, key)` and `json_get_float(text, key)`
//! give one top-level key of a JSON object — the registry's records in `registry_changes`
//! (`before`, `after`), an alert's or a custom metric's `labels`. Null where the text is null
//! or not an object, the key is absent, or its value is of another kind (a number read as
//! text gives its JSON text; text read as a number gives null).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use serde_json::Value;

/// Registers both functions in `ctx`.
pub fn register(ctx: &SessionContext) {
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    ctx.register_udf(create_udf(
        "json_get_str",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let got = each(args, &text)?;
            Ok(ColumnarValue::Array(
                Arc::new(StringArray::from(got)) as ArrayRef
            ))
        }),
    ));
    ctx.register_udf(create_udf(
        "json_get_float",
        vec![DataType::Utf8, DataType::Utf8],
        DataType::Float64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let got = each(args, &Value::as_f64)?;
            Ok(ColumnarValue::Array(
                Arc::new(Float64Array::from(got)) as ArrayRef
            ))
        }),
    ));
}

/// `read` of the value under the key (second argument) of each row's object (first).
fn each<T>(args: &[ColumnarValue], read: &dyn Fn(&Value) -> Option<T>) -> DfResult<Vec<Option<T>>> {
    let arrays = ColumnarValue::values_to_arrays(args)?;
    let texts = cast(&arrays[0], &DataType::Utf8)?;
    let keys = cast(&arrays[1], &DataType::Utf8)?;
    let (texts, keys) = (texts.as_string::<i32>(), keys.as_string::<i32>());
    Ok((0..texts.len())
        .map(|i| {
            if texts.is_null(i) || keys.is_null(i) {
                return None;
            }
            let object: Value = serde_json::from_str(texts.value(i)).ok()?;
            object.as_object()?.get(keys.value(i)).and_then(read)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_of_json_text_read_as_text_or_numbers_and_anything_else_as_null() {
        let ctx = SessionContext::new();
        register(&ctx);
        let sql = r#"SELECT
            json_get_str('{"id":"m1","w":3000}', 'id') AS id,
            json_get_float('{"id":"m1","w":3000}', 'w') AS w,
            json_get_str('{"id":"m1","w":3000}', 'w') AS w_text,
            json_get_float('{"id":"m1"}', 'id') AS id_number,
            json_get_str('not json', 'id') AS garbage,
            json_get_str('[1,2]', 'id') AS not_object,
            json_get_str(NULL, 'id') AS null_text,
            json_get_str('{"a":{"b":1}}', 'a') AS nested"#;
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let row = &batches[0];
        let text = |i: usize| {
            let col = cast(row.column(i), &DataType::Utf8).unwrap();
            let col = col.as_string::<i32>();
            (!col.is_null(0)).then(|| col.value(0).to_string())
        };
        assert_eq!(text(0).as_deref(), Some("m1"));
        assert_eq!(text(1).as_deref(), Some("3000.0"), "a float");
        assert_eq!(text(2).as_deref(), Some("3000"), "its JSON text");
        assert_eq!(text(3), None);
        assert_eq!(text(4), None);
        assert_eq!(text(5), None);
        assert_eq!(text(6), None);
        assert_eq!(text(7).as_deref(), Some(r#"{"b":1}"#));
    }
}
