//! Grouped aggregations with one `DISTINCT` argument and counts beside it, planned as two
//! group-bys instead of a set of distinct values kept per group.
//!
//! `SELECT miner, count(DISTINCT hash), count(*), sum(difficulty) … GROUP BY miner` makes
//! DataFusion keep, for each group, the set of its distinct values, through the adapter that
//! feeds a row-at-a-time accumulator group by group (`count(DISTINCT …)` has no vectorised
//! groups accumulator): on the landed bench's shares ⋈ payouts join at 10 M readings, 91 ms of
//! the statement's 145. DataFusion's own `SingleDistinctToGroupBy` rewrites such a statement
//! into a group-by on the groups and the distinct argument under a group-by on the groups, but
//! only when every other aggregate is a `sum`, `min` or `max`. [`DistinctWithCounts`] does the
//! same when counts are among them: the inner group-by computes each plain aggregate per group
//! and distinct value; the outer one adds the counts and the sums up, takes the least and the
//! greatest, and applies the distinct aggregate to the values, each of them one row now.
//!
//! Why each stays exact: a distinct aggregate of a group's values is the plain aggregate of
//! its distinct values (NULL among them is a value of the inner group-by, and ignored by the
//! outer aggregate as by the distinct one); a count or a sum of a group is the sum of its
//! parts' counts or sums, each part at least one row (a sum of parts all NULL is NULL, as the
//! whole's is); the least and greatest likewise. Only grouped statements: over no groups at
//! all an empty input's count is 0 while a sum of no parts is NULL. Sums of floating-point
//! values are added in another order, which may move their last bits, as another
//! partitioning does.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue, internal_err};
use datafusion::functions::expr_fn::coalesce;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, NullTreatment};
use datafusion::logical_expr::{
    Aggregate, AggregateUDF, Expr, LogicalPlan, LogicalPlanBuilder, cast, col, lit,
};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The rule (local engine only: it runs where the statement is planned).
#[derive(Debug, Default)]
pub(crate) struct DistinctWithCounts;

/// The inner group-by's name for the distinct argument.
const DISTINCT_ALIAS: &str = "__adit_distinct";

/// The aggregates that may be the distinct one: each gives over a group's distinct values
/// what it gives over the group with `DISTINCT`.
const DISTINCT_OK: [&str; 5] = ["count", "sum", "min", "max", "avg"];

/// What adds a plain aggregate's parts up, by its name: a count's and a sum's parts are
/// summed, a minimum's and a maximum's taken again. Any other aggregate keeps the statement
/// as it is.
fn outer_of(func: &Arc<AggregateUDF>) -> Option<Arc<AggregateUDF>> {
    match func.name() {
        "count" => Some(sum_udaf()),
        "sum" | "min" | "max" => Some(Arc::clone(func)),
        _ => None,
    }
}

impl OptimizerRule for DistinctWithCounts {
    fn name(&self) -> &str {
        "adit_distinct_with_counts"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Aggregate(aggregate) if applies(&aggregate) => {
                split(aggregate).map(Transformed::yes)
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

/// The parts of an aggregate function call this rule reads, or `None` for anything else
/// (another expression, a `FILTER`, an `ORDER BY` inside the call).
fn call(expr: &Expr) -> Option<(&Arc<AggregateUDF>, &AggregateFunctionParams)> {
    match expr {
        Expr::AggregateFunction(AggregateFunction { func, params })
            if params.filter.is_none() && params.order_by.is_empty() =>
        {
            Some((func, params))
        }
        _ => None,
    }
}

/// True for a grouped aggregation (no grouping sets) whose distinct calls all take the one
/// same argument, with at least one plain count beside them and every plain call one
/// [`outer_of`] can add up. Without a count, DataFusion's own rule does it.
fn applies(aggregate: &Aggregate) -> bool {
    if aggregate.group_expr.is_empty()
        || matches!(aggregate.group_expr.first(), Some(Expr::GroupingSet(_)))
    {
        return false;
    }
    let mut distinct_arg = None;
    let mut counts = false;
    for expr in &aggregate.aggr_expr {
        let Some((func, params)) = call(expr) else {
            return false;
        };
        if params.distinct {
            let [arg] = params.args.as_slice() else {
                return false;
            };
            if !DISTINCT_OK.contains(&func.name()) || distinct_arg.is_some_and(|a| a != arg) {
                return false;
            }
            distinct_arg = Some(arg);
        } else if outer_of(func).is_none() {
            return false;
        } else {
            counts |= func.name() == "count";
        }
    }
    distinct_arg.is_some() && counts
}

/// `aggregate` as a projection, to its own names and types, over the outer group-by over the
/// inner one (see the module docs). Only for an aggregate [`applies`] accepts.
fn split(aggregate: Aggregate) -> Result<LogicalPlan> {
    let Aggregate {
        input,
        group_expr,
        aggr_expr,
        schema,
        ..
    } = aggregate;
    let mut inner_groups = Vec::new();
    let mut outer_groups = Vec::new();
    for (i, group) in group_expr.into_iter().enumerate() {
        if matches!(group, Expr::Column(_)) {
            outer_groups.push(group.clone());
            inner_groups.push(group);
        } else {
            let name = format!("__adit_group_{i}");
            inner_groups.push(group.alias(&name));
            outer_groups.push(col(name));
        }
    }
    let mut inner_aggr = Vec::new();
    let mut outer_aggr = Vec::new();
    let mut grouped_by_distinct = false;
    for (i, expr) in aggr_expr.into_iter().enumerate() {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return internal_err!("adit_distinct_with_counts: not an aggregate call: {expr}");
        };
        if params.distinct {
            // Every distinct call takes the same argument (`applies`): grouped by once.
            if !grouped_by_distinct {
                let Some(arg) = params.args.into_iter().next() else {
                    return internal_err!("adit_distinct_with_counts: a distinct call of nothing");
                };
                inner_groups.push(arg.alias(DISTINCT_ALIAS));
                grouped_by_distinct = true;
            }
            outer_aggr.push(plain_call(func, vec![col(DISTINCT_ALIAS)], None));
        } else {
            let Some(outer) = outer_of(&func) else {
                return internal_err!("adit_distinct_with_counts: cannot add up {}", func.name());
            };
            let name = format!("__adit_part_{i}");
            inner_aggr.push(plain_call(func, params.args, params.null_treatment).alias(&name));
            outer_aggr.push(plain_call(outer, vec![col(name)], None));
        }
    }
    let inner = Aggregate::try_new(input, inner_groups, inner_aggr)?;
    let outer = LogicalPlan::Aggregate(Aggregate::try_new(
        Arc::new(LogicalPlan::Aggregate(inner)),
        outer_groups,
        outer_aggr,
    )?);
    // Back to the statement's own names, types and nullability: a count, never NULL, is a
    // sum of parts here (of at least one part, so never NULL either; coalesce says so).
    let mut exprs = Vec::new();
    for ((qualifier, field), (was_qualifier, was)) in outer.schema().iter().zip(schema.iter()) {
        let mut expr = Expr::Column(Column::from((qualifier, field)));
        if field.data_type() != was.data_type() {
            expr = cast(expr, was.data_type().clone());
        }
        if field.is_nullable() && !was.is_nullable() {
            expr = coalesce(vec![expr, lit(ScalarValue::new_zero(was.data_type())?)]);
        }
        exprs.push(expr.alias_qualified(was_qualifier.cloned(), was.name()));
    }
    LogicalPlanBuilder::from(outer).project(exprs)?.build()
}

/// A plain call of aggregate `func` on `args`: not distinct, unfiltered, unordered.
fn plain_call(func: Arc<AggregateUDF>, args: Vec<Expr>, nulls: Option<NullTreatment>) -> Expr {
    Expr::AggregateFunction(AggregateFunction::new_udf(
        func,
        args,
        false,
        None,
        vec![],
        nulls,
    ))
}

#[cfg(test)]
mod tests;
