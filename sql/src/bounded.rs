//! Functions that build values outside DataFusion's memory pool, wrapped so they cannot.
//!
//! `repeat('x', 1e9)` allocates its gigabyte in one call, before any memory pool hears of it,
//! and no time limit can interrupt the allocation. Each function here is replaced, in every
//! session, by a wrapper that first works out an upper bound of the bytes the call would
//! build over its whole batch (from its arguments' lengths and counts) and refuses the call
//! with a clear error when that is over the limit; under it, the built-in function runs as
//! before. The functions: `repeat`, `lpad`, `rpad`, `replace`, `concat`, `regexp_replace`
//! (strings), `array_repeat`, `array_resize`, and the scalar `range` and `generate_series`
//! (arrays, of integers, dates or timestamps). The table functions `range`/`generate_series`
//! stream their rows and are bounded by the time limit instead. The `||` operator is not a
//! function and is not wrapped: its operands are each bounded, so `a || b` is at most their sum.
//!
//! A plan sent to a cluster runs there with the functions unwrapped; [`check_constant_calls`]
//! refuses, before it is sent, the calls whose arguments are all constants and over the limit.

use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Result, ScalarValue, exec_datafusion_err, resources_datafusion_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Shape {
    /// `repeat(s, n)`: `len(s) × n`.
    Repeat,
    /// `lpad(s, n[, fill])`: up to 4 bytes per character of `n`.
    Pad,
    /// `replace(s, from, to)`: every `from` in `s` becomes `to`.
    Replace,
    /// `array_repeat(x, n)`: `n` copies of `x`.
    RepeatElement,
    /// `array_resize(a, n[, v])`: `n` elements the size of `a`'s (or `v`).
    Resize,
    /// `range(a, b[, step])`: `(b − a) / step` elements of 8 bytes (integers, dates and
    /// timestamps with an interval step).
    Series,
    /// `concat(a, b, …)`: the sum of its arguments.
    Concat,
    /// `regexp_replace(s, pattern, to[, flags])`: with `g`, every character could match.
    RegexpReplace,
}

/// The functions wrapped, with their shape.
const WRAPPED: [(&str, Shape); 10] = [
    ("repeat", Shape::Repeat),
    ("lpad", Shape::Pad),
    ("rpad", Shape::Pad),
    ("replace", Shape::Replace),
    ("array_repeat", Shape::RepeatElement),
    ("array_resize", Shape::Resize),
    ("range", Shape::Series),
    ("generate_series", Shape::Series),
    ("concat", Shape::Concat),
    ("regexp_replace", Shape::RegexpReplace),
];

/// A built-in function behind a size check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    shape: Shape,
    max_bytes: usize,
}

/// Replaces the wrapped functions of `ctx` with bounded ones that build at most `max_bytes` per
/// call (one batch).
pub fn install(ctx: &SessionContext, max_bytes: usize) -> Result<()> {
    for (name, shape) in WRAPPED {
        let inner = ctx.udf(name)?;
        let bounded = Bounded {
            inner,
            shape,
            max_bytes,
        };
        ctx.register_udf(ScalarUDF::new_from_impl(bounded));
    }
    Ok(())
}

/// Refuses `plan` when it calls a wrapped function with constant arguments that would build
/// more than the limit: what can be known before the plan leaves the process (for a cluster
/// whose executors run the functions unwrapped). Check the optimized plan, where nested calls
/// have been folded into the arguments of the call that refused to fold.
pub fn check_constant_calls(plan: &LogicalPlan) -> Result<()> {
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && let Some(bounded) = call.func.inner().downcast_ref::<Bounded>()
                    && let Some(args) = constants(&call.args)
                {
                    bounded.check(&args, 1)?;
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(())
}

/// Each argument's value when they are all constants.
fn constants(args: &[Expr]) -> Option<Vec<ColumnarValue>> {
    args.iter()
        .map(|a| match a {
            Expr::Literal(value, _) => Some(ColumnarValue::Scalar(value.clone())),
            _ => None,
        })
        .collect()
}

/// Argument `i` at row `row`: a scalar is the same on every row.
enum Arg {
    Scalar(Option<i64>),
    Lens(Vec<Option<i64>>),
}

impl Arg {
    fn at(&self, row: usize) -> Option<i64> {
        match self {
            Self::Scalar(v) => *v,
            Self::Lens(v) => v.get(row).copied().flatten(),
        }
    }
}

/// The byte length of each string (or list length of each array) of `v`.
fn lengths(v: &ColumnarValue) -> Result<Arg> {
    match v {
        ColumnarValue::Scalar(s) => Ok(Arg::Scalar(scalar_len(s))),
        ColumnarValue::Array(a) => Ok(Arg::Lens(array_lens(a)?)),
    }
}

fn scalar_len(s: &ScalarValue) -> Option<i64> {
    match s {
        ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
            v.as_ref().map(|s| s.len() as i64)
        }
        ScalarValue::List(l) => Some(l.value_length(0) as i64),
        ScalarValue::LargeList(l) => Some(l.value_length(0)),
        s if s.is_null() => None,
        _ => Some(8),
    }
}

fn array_lens(a: &ArrayRef) -> Result<Vec<Option<i64>>> {
    let n = a.len();
    let lens = match a.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let a = cast(a, &DataType::LargeUtf8)?;
            let a = a.as_string::<i64>();
            (0..n)
                .map(|i| (!a.is_null(i)).then(|| a.value(i).len() as i64))
                .collect()
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            (0..n)
                .map(|i| (!l.is_null(i)).then(|| i64::from(l.value_length(i))))
                .collect()
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            (0..n)
                .map(|i| (!l.is_null(i)).then(|| l.value_length(i)))
                .collect()
        }
        _ => vec![Some(8); n],
    };
    Ok(lens)
}

/// The bytes each row of `v` holds (a scalar: the same on every row).
fn row_bytes(v: &ColumnarValue) -> Arg {
    match v {
        ColumnarValue::Scalar(s) => Arg::Scalar(Some(s.size() as i64)),
        ColumnarValue::Array(a) => {
            let per_row = a.get_array_memory_size() / a.len().max(1);
            Arg::Scalar(Some(per_row as i64))
        }
    }
}

/// A date, timestamp or integer argument as a count of nanoseconds (integers as they are),
/// and an interval as nanoseconds (a month as 28 days, so the count errs high).
fn nanos(v: &ColumnarValue) -> Result<Arg> {
    let of_scalar = |s: &ScalarValue| -> Option<i64> {
        match s {
            ScalarValue::IntervalMonthDayNano(Some(i)) => Some(
                i64::from(i.months) * 28 * 86_400_000_000_000
                    + i64::from(i.days) * 86_400_000_000_000
                    + i.nanoseconds,
            ),
            ScalarValue::IntervalDayTime(Some(i)) => {
                Some(i64::from(i.days) * 86_400_000_000_000 + i64::from(i.milliseconds) * 1_000_000)
            }
            ScalarValue::IntervalYearMonth(Some(m)) => {
                Some(i64::from(*m) * 28 * 86_400_000_000_000)
            }
            ScalarValue::Date32(Some(d)) => Some(i64::from(*d) * 86_400_000_000_000),
            ScalarValue::Date64(Some(ms)) => Some(ms * 1_000_000),
            s if s.data_type().is_integer() => match s.cast_to(&DataType::Int64) {
                Ok(ScalarValue::Int64(v)) => v,
                _ => None,
            },
            s => match s.cast_to(&DataType::Timestamp(
                arrow::datatypes::TimeUnit::Nanosecond,
                None,
            )) {
                Ok(ScalarValue::TimestampNanosecond(v, _)) => v,
                _ => None,
            },
        }
    };
    match v {
        ColumnarValue::Scalar(s) => Ok(Arg::Scalar(of_scalar(s))),
        ColumnarValue::Array(a) => {
            let values = (0..a.len())
                .map(|i| ScalarValue::try_from_array(a, i).map(|s| of_scalar(&s)))
                .collect::<Result<Vec<_>>>()?;
            Ok(Arg::Lens(values))
        }
    }
}

/// Each row's value of an integer argument.
fn integers(v: &ColumnarValue) -> Result<Arg> {
    match v {
        ColumnarValue::Scalar(s) => Ok(Arg::Scalar(match s.cast_to(&DataType::Int64)? {
            ScalarValue::Int64(v) => v,
            _ => None,
        })),
        ColumnarValue::Array(a) => {
            let a = cast(a, &DataType::Int64)?;
            Ok(Arg::Lens(a.as_primitive::<Int64Type>().iter().collect()))
        }
    }
}

impl Bounded {
    /// An upper bound of the bytes this call builds over its `rows`.
    fn estimate(&self, args: &[ColumnarValue], rows: usize) -> Result<u128> {
        let arg = |i: usize| {
            args.get(i).ok_or_else(|| {
                exec_datafusion_err!("{} needs argument {}", self.inner.name(), i + 1)
            })
        };
        let pos = |v: Option<i64>| u128::try_from(v.unwrap_or(0).max(0)).unwrap_or(0);
        let mut total: u128 = 0;
        match self.shape {
            Shape::Repeat => {
                let (s, n) = (lengths(arg(0)?)?, integers(arg(1)?)?);
                for r in 0..rows {
                    total += pos(s.at(r)) * pos(n.at(r));
                }
            }
            Shape::Pad => {
                let n = integers(arg(1)?)?;
                for r in 0..rows {
                    total += 4 * pos(n.at(r));
                }
            }
            Shape::Replace => {
                let (s, from, to) = (lengths(arg(0)?)?, lengths(arg(1)?)?, lengths(arg(2)?)?);
                for r in 0..rows {
                    let (s, from, to) = (pos(s.at(r)), pos(from.at(r)), pos(to.at(r)));
                    total += s + s.checked_div(from).unwrap_or(0) * to;
                }
            }
            Shape::RepeatElement => {
                let (each, n) = (row_bytes(arg(0)?), integers(arg(1)?)?);
                for r in 0..rows {
                    total += pos(each.at(r)).max(8) * pos(n.at(r));
                }
            }
            Shape::Resize => {
                let (list, n) = (row_bytes(arg(0)?), integers(arg(1)?)?);
                let lens = lengths(arg(0)?)?;
                let fill = args.get(2).map(row_bytes);
                for r in 0..rows {
                    let each = pos(list.at(r)) / pos(lens.at(r)).max(1);
                    let each = each.max(fill.as_ref().map_or(8, |f| pos(f.at(r)))).max(8);
                    total += each * pos(n.at(r));
                }
            }
            Shape::Concat => {
                for a in args {
                    let each = lengths(a)?;
                    for r in 0..rows {
                        total += pos(each.at(r));
                    }
                }
            }
            Shape::RegexpReplace => {
                let (s, to) = (lengths(arg(0)?)?, lengths(arg(2)?)?);
                let global = match args.get(3) {
                    Some(ColumnarValue::Scalar(f)) => f.to_string().contains('g'),
                    Some(ColumnarValue::Array(_)) => true,
                    None => false,
                };
                for r in 0..rows {
                    let (s, to) = (pos(s.at(r)), pos(to.at(r)));
                    total += s + if global { (s + 1) * to } else { to };
                }
            }
            Shape::Series => {
                // range(stop) or range(start, stop[, step]), over integers, dates or
                // timestamps (step an interval): its element count.
                let (start, stop) = if args.len() == 1 {
                    (Arg::Scalar(Some(0)), nanos(arg(0)?)?)
                } else {
                    (nanos(arg(0)?)?, nanos(arg(1)?)?)
                };
                let step = match args.get(2) {
                    Some(s) => nanos(s)?,
                    None if args.iter().all(|a| a.data_type().is_integer()) => Arg::Scalar(Some(1)),
                    None => Arg::Scalar(Some(86_400_000_000_000)),
                };
                for r in 0..rows {
                    let span =
                        i128::from(stop.at(r).unwrap_or(0)) - i128::from(start.at(r).unwrap_or(0));
                    let step = i128::from(step.at(r).unwrap_or(1)).unsigned_abs().max(1);
                    total += 8 * (span.unsigned_abs() / step + 1);
                }
            }
        }
        Ok(total)
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = if args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)))
        {
            1
        } else {
            args.number_rows
        };
        self.check(&args.args, rows)?;
        self.inner.invoke_with_args(args)
    }
}

impl Bounded {
    /// Refuses a call over `rows` that would build more than the limit.
    fn check(&self, args: &[ColumnarValue], rows: usize) -> Result<()> {
        let bytes = self.estimate(args, rows)?;
        if bytes > self.max_bytes as u128 {
            return Err(resources_datafusion_err!(
                "{}() would build {bytes} bytes in one call, over the limit of {} bytes per call (query.limits.max_value_bytes)",
                self.inner.name(),
                self.max_bytes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(sql: &str) -> Result<usize> {
        let ctx = SessionContext::new();
        install(&ctx, 1 << 20)?;
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn huge_values_are_refused_and_small_ones_work() {
        for sql in [
            "SELECT repeat('x', 1000000000)",
            "SELECT lpad('x', 2000000000, 'y')",
            "SELECT rpad('x', 1000000)",
            "SELECT replace(repeat('x', 1000), 'x', repeat('y', 100000))",
            "SELECT array_repeat(1, 100000000)",
            "SELECT range(1, 100000000000)",
            "SELECT generate_series(1, 100000000000)",
            "SELECT repeat(s, 200) FROM (VALUES (repeat('x', 1000))) AS t(s), (SELECT * FROM generate_series(1, 100)) AS u",
            "SELECT array_repeat(repeat('x', 1000000), 1000)",
            "SELECT array_repeat(array_repeat(repeat('x', 1000), 1000), 1000)",
            "SELECT range(TIMESTAMP '1970-01-01', TIMESTAMP '2100-01-01', INTERVAL '1 second')",
            "SELECT concat(repeat('x', 600000), repeat('x', 600000))",
            "SELECT regexp_replace(repeat('x', 100000), 'x', repeat('y', 100), 'g')",
        ] {
            let e = run(sql).await.unwrap_err().to_string();
            assert!(e.contains("over the limit"), "{sql}: {e}");
        }
        assert_eq!(
            run("SELECT repeat('ab', 3), lpad('x', 5, '-'), replace('aaa', 'a', 'bb')")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            run("SELECT range(1, 1000), array_repeat('a', 3)")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            run("SELECT range(DATE '2026-01-01', DATE '2026-12-31', INTERVAL '1 day'), concat('a', 'b'), regexp_replace('aaa', 'a', 'b', 'g')")
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            run("SELECT * FROM generate_series(1, 10)").await.unwrap(),
            10
        );
    }
}
