//! Every function and operator that builds values, bounded so no statement can build a value
//! past `query.limits.max_value_bytes` in one step, whichever function it calls (issue 22).
//!
//! `repeat('x', 1e9)` allocates its gigabyte in one call, before any memory pool hears of it,
//! and no time limit can interrupt the allocation; `s || s` doubled ten times does the same in
//! ten small steps. A list of dangerous functions always misses one (issue 22 found `||`,
//! `concat_ws`, `make_array` and `array_concat`), so the bound is generic:
//!
//! - Every scalar function of the session is replaced by a [`Bounded`] wrapper, and an analyzer
//!   rule ([`BoundValues`]) wraps every call the planner made itself (`[a, b]` is `make_array`,
//!   `a || b` on arrays is `array_concat`) and every `||` on strings. Functions a future
//!   DataFusion adds are wrapped the same way, by not being special.
//! - A wrapped call whose result is variable-width (strings, binaries, lists, maps, structs)
//!   first sums the bytes its arguments hold over the batch and refuses when that is over the
//!   limit, then checks the bytes it built. A step can therefore build at most a small multiple
//!   of the limit (`a || b` twice it) before it is refused, and the next step cannot start.
//! - Functions whose result can outgrow their arguments by any factor get an estimate of their
//!   own before they run ([`Shape`]): `repeat`, `lpad`, `rpad`, `replace`, `concat`,
//!   `regexp_replace`, `array_repeat`, `array_resize`, and the scalar `range` and
//!   `generate_series`. The table functions `range`/`generate_series` stream their rows and are
//!   bounded by the time limit instead.
//!
//! - A constant is repeated over every row of a batch wherever an operator needs it as an array
//!   (an aggregate's argument, a projection's column): rows × its size in one allocation that
//!   no function call makes. An optimizer rule that runs last ([`BoundConstants`]) puts every
//!   large variable-width constant behind [`CheckedValue::constant`], which refuses the repetition
//!   before it is built (issue 56: `string_agg(repeat('y', 100000), ',')` over 100 000 rows
//!   folded to a 100 KB constant that a 32 768-row batch repeated past a string array's
//!   offsets, and panicked).
//!
//! A plan sent to a cluster runs there with the functions unwrapped; [`check_constant_calls`]
//! refuses, before it is sent, the calls whose arguments are all constants and over the limit.

use std::hash::Hash;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    DataFusionError, Result, ScalarValue, exec_datafusion_err, resources_datafusion_err,
};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::interval_arithmetic::Interval;
use datafusion::logical_expr::preimage::PreimageResult;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::sort_properties::{ExprProperties, SortProperties};
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ExpressionPlacement, LogicalPlan, Operator,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, StructFieldMapping, Volatility,
};
use datafusion::optimizer::{AnalyzerRule, OptimizerConfig, OptimizerRule};
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
    /// Any other function: at most what its arguments hold, then its result is checked.
    Any,
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

/// Wraps every scalar function of `ctx` so it builds at most `max_bytes` per call (one batch);
/// with `planned_calls`, also every call and `||` the planner makes itself ([`BoundValues`]:
/// local plans only, since a cluster's executors do not know its checking function).
pub fn install(ctx: &SessionContext, max_bytes: usize, planned_calls: bool) -> Result<()> {
    let functions: Vec<Arc<ScalarUDF>> = ctx.state().scalar_functions().values().cloned().collect();
    for inner in functions {
        if inner.inner().downcast_ref::<Bounded>().is_some() {
            continue;
        }
        ctx.register_udf(Bounded::around(inner, max_bytes));
    }
    if planned_calls {
        ctx.add_analyzer_rule(Arc::new(BoundValues { max_bytes }));
        ctx.add_optimizer_rule(Arc::new(BoundConstants { max_bytes }));
    }
    Ok(())
}

/// Constants smaller than this are repeated unchecked: a batch of them stays far below any
/// `max_value_bytes` a config allows, and the common small constant keeps its optimizations.
const CHECKED_CONSTANT_BYTES: usize = 1024;

/// The optimizer rule, after every other, that puts each variable-width constant of at least
/// [`CHECKED_CONSTANT_BYTES`] behind [`CheckedValue::constant`] (see the module docs). `VALUES` rows
/// are left alone: each of their constants is one row.
#[derive(Debug)]
pub struct BoundConstants {
    /// The limit per batch.
    max_bytes: usize,
}

impl OptimizerRule for BoundConstants {
    fn name(&self) -> &str {
        "adit_bound_constants"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up_with_subqueries(|node| {
            if matches!(node, LogicalPlan::Values(_)) {
                return Ok(Transformed::no(node));
            }
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                Ok(bound_constants(e, self.max_bytes)?.update_data(|e| saved.restore(e)))
            })
        })
    }
}

/// `expr` with each large variable-width constant behind [`CheckedValue::constant`], once.
fn bound_constants(expr: Expr, max_bytes: usize) -> Result<Transformed<Expr>> {
    expr.transform_down(|e| match e {
        Expr::ScalarFunction(call)
            if call
                .func
                .inner()
                .downcast_ref::<CheckedValue>()
                .is_some_and(|c| c.per_row) =>
        {
            Ok(Transformed::new(
                Expr::ScalarFunction(call),
                false,
                TreeNodeRecursion::Jump,
            ))
        }
        Expr::Literal(ref value, _)
            if variable_width(&value.data_type()) && value.size() >= CHECKED_CONSTANT_BYTES =>
        {
            let checked = Arc::new(ScalarUDF::new_from_impl(CheckedValue::constant(max_bytes)));
            Ok(Transformed::new(
                Expr::ScalarFunction(ScalarFunction::new_udf(checked, vec![e])),
                true,
                TreeNodeRecursion::Jump,
            ))
        }
        other => Ok(Transformed::no(other)),
    })
}

impl Bounded {
    /// `inner` behind the check for its shape.
    fn around(inner: Arc<ScalarUDF>, max_bytes: usize) -> ScalarUDF {
        let shape = WRAPPED
            .iter()
            .find(|(name, _)| *name == inner.name())
            .map_or(Shape::Any, |(_, shape)| *shape);
        ScalarUDF::new_from_impl(Self {
            inner,
            shape,
            max_bytes,
        })
    }
}

/// The analyzer rule that wraps what the planner built without the function registry: calls
/// of functions it took straight from DataFusion (`make_array`, `array_concat`, `get_field`…)
/// and `||` on strings (an operator, checked by [`CheckedValue`]). Names are kept, so the
/// output schema does not change.
#[derive(Debug)]
pub struct BoundValues {
    /// The limit per call.
    max_bytes: usize,
}

impl AnalyzerRule for BoundValues {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        check_types(&plan, self.max_bytes)?;
        plan.transform_up_with_subqueries(|node| {
            let names = NamePreserver::new(&node);
            node.map_expressions(|e| {
                let saved = names.save(&e);
                Ok(bound_expr(e, self.max_bytes)?.update_data(|e| saved.restore(e)))
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "adit_bound_values"
    }
}

/// Refuses `plan` when a type it names or produces (a column of any node, the target of a
/// cast) holds more than `max_bytes` in one value before any data is read: fixed-size lists
/// multiply their widths (issue 56: `CAST(NULL AS TIMESTAMP[3][3]…)` forty deep is 3^40
/// timestamps per row, and overflowed a multiplication while the null array was allocated).
fn check_types(plan: &LogicalPlan, max_bytes: usize) -> Result<()> {
    let check = |t: &DataType| {
        let bytes = fixed_bytes(t);
        if bytes > max_bytes as u128 {
            return Err(resources_datafusion_err!(
                "one value of type {t} takes {bytes} bytes, over the limit of {max_bytes} bytes per call (query.limits.max_value_bytes)"
            ));
        }
        Ok(())
    };
    plan.apply_with_subqueries(|node| {
        for field in node.schema().fields() {
            check(field.data_type())?;
        }
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                match e {
                    Expr::Cast(c) => check(c.field.data_type())?,
                    Expr::TryCast(c) => check(c.field.data_type())?,
                    _ => {}
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map(|_| ())
}

/// The bytes one value of `t` takes whatever it holds: fixed widths, multiplied through
/// fixed-size lists and summed over struct fields (saturating, never overflowing). Every leaf
/// counts at least one byte, a null or a string too: Arrow multiplies the element counts of
/// nested fixed-size lists when it builds even a null one (`VARCHAR[3]` forty deep
/// overflowed that multiplication in the optimizer's constant folding; found by the grammar
/// generator's longer run).
fn fixed_bytes(t: &DataType) -> u128 {
    match t {
        DataType::FixedSizeList(f, n) => fixed_bytes(f.data_type()).saturating_mul(*n as u128),
        DataType::FixedSizeBinary(n) => *n as u128,
        DataType::Struct(fields) => fields.iter().fold(0u128, |sum, f| {
            sum.saturating_add(fixed_bytes(f.data_type()))
        }),
        DataType::Dictionary(key, _) => fixed_bytes(key),
        other => other.primitive_width().unwrap_or(1).max(1) as u128,
    }
}

/// `expr` with every unwrapped call and every string `||` in it wrapped.
fn bound_expr(expr: Expr, max_bytes: usize) -> Result<Transformed<Expr>> {
    expr.transform_up(|e| match e {
        Expr::ScalarFunction(call)
            if call.func.inner().downcast_ref::<Bounded>().is_none()
                && call.func.inner().downcast_ref::<CheckedValue>().is_none() =>
        {
            let func = Arc::new(Bounded::around(call.func, max_bytes));
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(func, call.args),
            )))
        }
        Expr::BinaryExpr(b) if b.op == Operator::StringConcat => {
            let checked = Arc::new(ScalarUDF::new_from_impl(CheckedValue::operator(max_bytes)));
            Ok(Transformed::yes(Expr::ScalarFunction(
                ScalarFunction::new_udf(checked, vec![Expr::BinaryExpr(b)]),
            )))
        }
        other => Ok(Transformed::no(other)),
    })
}

/// `bounded_value(x)` (wraps `||`): `x`, refused when it holds more than the limit; and
/// `bounded_constant(c)` (wraps a large constant): the constant `c`, refused when a batch would
/// repeat it past the limit, left a constant so nothing is repeated here, and volatile so no
/// later simplification folds it away again.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedValue {
    /// The function's name: which of the two it is.
    name: &'static str,
    /// Whether the value is a constant counted once per row of the batch.
    per_row: bool,
    /// The limit.
    max_bytes: usize,
    /// Any one argument.
    signature: Signature,
}

impl CheckedValue {
    /// The check around an operator's result.
    fn operator(max_bytes: usize) -> Self {
        Self {
            name: "bounded_value",
            per_row: false,
            max_bytes,
            signature: Signature::any(1, Volatility::Immutable),
        }
    }

    /// The check around a constant a batch repeats.
    fn constant(max_bytes: usize) -> Self {
        Self {
            name: "bounded_constant",
            per_row: true,
            max_bytes,
            signature: Signature::any(1, Volatility::Volatile),
        }
    }
}

impl ScalarUDFImpl for CheckedValue {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| exec_datafusion_err!("{} needs one argument", self.name))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        args.arg_fields
            .first()
            .cloned()
            .ok_or_else(|| exec_datafusion_err!("{} needs one argument", self.name))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let value = args
            .args
            .into_iter()
            .next()
            .ok_or_else(|| exec_datafusion_err!("{} needs one argument", self.name))?;
        if !self.per_row {
            check_built("||", &value, self.max_bytes)?;
            return Ok(value);
        }
        let bytes = held_bytes(&value, rows);
        if bytes > self.max_bytes as u128 {
            return Err(resources_datafusion_err!(
                "a constant repeated over a batch of {rows} rows would build {bytes} bytes, over the limit of {} bytes per call (query.limits.max_value_bytes)",
                self.max_bytes
            ));
        }
        Ok(value)
    }
}

/// `inner` called on `args`, its failures turned into the statement's: a function that errs or
/// panics on what it was given (`rpad(s, i64::MIN, NULL)` overflowed a capacity,
/// `array_resize(a, i64::MIN)` answered an internal error, a pattern with control characters
/// does not compile) was given arguments it cannot take, which is an error in the statement
/// (400), not in the engine. The panic is caught where it happens, inside the call, so the
/// statement ends with a clear error and nothing else notices.
fn invoke_guarded(inner: &ScalarUDF, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
    let name = inner.name();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        inner.invoke_with_args(args)
    })) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => match e.find_root() {
            // Our own size checks, and memory the pool refused: kept as they are.
            DataFusionError::ResourcesExhausted(_) => Err(e),
            _ => Err(exec_datafusion_err!(
                "{name}() cannot take these arguments: {}",
                e.to_string().lines().next().unwrap_or_default()
            )),
        },
        Err(panic) => {
            let why = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "it failed".into());
            tracing::warn!(function = name, reason = %why, "a SQL function panicked on its arguments; the statement is refused");
            Err(exec_datafusion_err!(
                "{name}() cannot take these arguments: {why}"
            ))
        }
    }
}

/// Refuses `value` (what `what` built) when it holds more than `max_bytes`.
fn check_built(what: &str, value: &ColumnarValue, max_bytes: usize) -> Result<()> {
    let bytes = held_bytes(value, 1);
    if bytes > max_bytes as u128 {
        return Err(resources_datafusion_err!(
            "{what} built {bytes} bytes in one call, over the limit of {max_bytes} bytes per call (query.limits.max_value_bytes)"
        ));
    }
    Ok(())
}

/// The bytes `value` holds, a scalar counted once per row of `rows`. Arrays count the slice
/// they cover (offsets, values, children), or their whole buffers where arrow cannot slice
/// the count (views, which then err high).
fn held_bytes(value: &ColumnarValue, rows: usize) -> u128 {
    match value {
        ColumnarValue::Scalar(s) => s.size() as u128 * rows as u128,
        ColumnarValue::Array(a) => {
            a.to_data()
                .get_slice_memory_size()
                .ok()
                .filter(|_| !has_views(a.data_type()))
                .unwrap_or_else(|| a.get_array_memory_size()) as u128
        }
    }
}

/// Whether `t` is or holds a view type (whose data buffers arrow's slice count leaves out).
fn has_views(t: &DataType) -> bool {
    match t {
        DataType::Utf8View
        | DataType::BinaryView
        | DataType::ListView(_)
        | DataType::LargeListView(_) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_views(f.data_type()),
        DataType::Struct(fields) => fields.iter().any(|f| has_views(f.data_type())),
        DataType::Dictionary(_, v) => has_views(v),
        _ => false,
    }
}

/// Whether values of `t` can be of any size (what the wrappers check).
fn variable_width(t: &DataType) -> bool {
    !t.is_primitive()
        && !matches!(
            t,
            DataType::Boolean
                | DataType::Null
                | DataType::Decimal128(..)
                | DataType::Decimal256(..)
                | DataType::FixedSizeBinary(_)
        )
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
            Shape::Any => {
                for a in args {
                    total += held_bytes(a, rows);
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

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.inner().schema_name(args)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn with_updated_config(&self, config: &ConfigOptions) -> Option<ScalarUDF> {
        let updated = self.inner.inner().with_updated_config(config)?;
        Some(Bounded::around(Arc::new(updated), self.max_bytes))
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_strict(&self) -> bool {
        self.inner.inner().is_strict()
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
        let checked = self.shape != Shape::Any || variable_width(args.return_field.data_type());
        if checked {
            self.check(&args.args, rows)?;
        }
        let built = invoke_guarded(&self.inner, args)?;
        if checked {
            check_built(&format!("{}()", self.inner.name()), &built, self.max_bytes)?;
        }
        Ok(built)
    }

    /// The function's own simplification, with whatever calls it produces wrapped again.
    fn simplify(&self, args: Vec<Expr>, info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(match self.inner.inner().simplify(args, info)? {
            ExprSimplifyResult::Simplified(e) => {
                ExprSimplifyResult::Simplified(bound_expr(e, self.max_bytes)?.data)
            }
            original => original,
        })
    }

    fn preimage(
        &self,
        args: &[Expr],
        lit_expr: &Expr,
        info: &SimplifyContext,
    ) -> Result<PreimageResult> {
        self.inner.inner().preimage(args, lit_expr, info)
    }

    fn short_circuits(&self) -> bool {
        self.inner.inner().short_circuits()
    }

    fn conditional_arguments<'a>(
        &self,
        args: &'a [Expr],
    ) -> Option<(Vec<&'a Expr>, Vec<&'a Expr>)> {
        self.inner.inner().conditional_arguments(args)
    }

    fn evaluate_bounds(&self, input: &[&Interval]) -> Result<Interval> {
        self.inner.inner().evaluate_bounds(input)
    }

    fn propagate_constraints(
        &self,
        interval: &Interval,
        inputs: &[&Interval],
    ) -> Result<Option<Vec<Interval>>> {
        self.inner.inner().propagate_constraints(interval, inputs)
    }

    fn output_ordering(&self, inputs: &[ExprProperties]) -> Result<SortProperties> {
        self.inner.inner().output_ordering(inputs)
    }

    fn preserves_lex_ordering(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().preserves_lex_ordering(inputs)
    }

    fn strictly_order_preserving(&self, inputs: &[ExprProperties]) -> Result<bool> {
        self.inner.inner().strictly_order_preserving(inputs)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn struct_field_mapping(
        &self,
        literal_args: &[Option<ScalarValue>],
    ) -> Option<StructFieldMapping> {
        self.inner.inner().struct_field_mapping(literal_args)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.inner().documentation()
    }

    fn placement(&self, args: &[ExpressionPlacement]) -> ExpressionPlacement {
        self.inner.inner().placement(args)
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

    /// `s || s` nine times over: 1000 bytes become 512 KB, then 1 MB, then 2 MB…
    const DOUBLING_BY_CONCAT_OPERATOR: &str = "WITH a0 AS (SELECT repeat('x', 1000) s), \
        a1 AS (SELECT s || s s FROM a0), a2 AS (SELECT s || s s FROM a1), \
        a3 AS (SELECT s || s s FROM a2), a4 AS (SELECT s || s s FROM a3), \
        a5 AS (SELECT s || s s FROM a4), a6 AS (SELECT s || s s FROM a5), \
        a7 AS (SELECT s || s s FROM a6), a8 AS (SELECT s || s s FROM a7), \
        a9 AS (SELECT s || s s FROM a8), a10 AS (SELECT s || s s FROM a9), \
        a11 AS (SELECT s || s s FROM a10) SELECT length(s) FROM a11";

    async fn run(sql: &str) -> Result<usize> {
        let ctx = SessionContext::new();
        install(&ctx, 1 << 20, true)?;
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
            // Issue 22: functions and operators no list named, doubling step by step.
            DOUBLING_BY_CONCAT_OPERATOR,
            "WITH a AS (SELECT repeat('x', 400000) s) SELECT concat_ws(',', s, s, s) FROM a",
            "WITH a AS (SELECT repeat('x', 400000) s) SELECT make_array(s, s, s) FROM a",
            "WITH a AS (SELECT repeat('x', 400000) s) SELECT [s, s, s] FROM a",
            "WITH a AS (SELECT [repeat('x', 400000)] s) SELECT array_concat(s, s, s) FROM a",
            "WITH a AS (SELECT [repeat('x', 400000)] s) SELECT s || s || s FROM a",
            "WITH a AS (SELECT repeat('x', 400000) s) SELECT upper(s || s || s) FROM a",
            // Issue 56: a folded constant repeated over a batch, by an aggregate's argument or
            // a projection's column.
            "SELECT string_agg(repeat('y', 100000), ',') FROM generate_series(1, 100000)",
            "SELECT array_agg(repeat('y', 100000)) FROM generate_series(1, 100000)",
            "SELECT repeat('y', 100000) AS y FROM generate_series(1, 100000)",
            // A type whose one value is past the limit before any data.
            "SELECT CAST(NULL AS TIMESTAMP[3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3]) AS x",
            "SELECT TRY_CAST(NULL AS INT[1000][1000]) AS x",
            "SELECT CAST(NULL AS VARCHAR[3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3]) AS x",
            "SELECT CAST(NULL AS VARCHAR[3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3][3]) IS NULL AS x",
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
        // A large constant over a few rows is still answered.
        assert_eq!(
            run("SELECT repeat('y', 100000) AS y, string_agg(repeat('z', 2000), ',') FROM generate_series(1, 5) GROUP BY 1")
                .await
                .unwrap(),
            1
        );
        // Under the limit everything still works, with the names it always had.
        let ctx = SessionContext::new();
        install(&ctx, 1 << 20, true).unwrap();
        let sql = "SELECT 'a' || 'b', concat_ws('-', 'x', 'y'), [1, 2] || [3], make_array('p'), \
                   upper('q' || 'r'), now() IS NOT NULL AS now_works";
        let df = ctx.sql(sql).await.unwrap();
        let names: Vec<String> = df
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(names[0], "Utf8(\"a\") || Utf8(\"b\")");
        let batches = df.collect().await.unwrap();
        let text = arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string();
        assert!(text.contains("| ab "), "{text}");
        assert!(text.contains("x-y"), "{text}");
        assert!(text.contains("[1, 2, 3]"), "{text}");
        assert!(text.contains("QR"), "{text}");
        assert!(text.contains("true"), "{text}");
    }
}
