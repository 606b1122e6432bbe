//! How big a statement's plan becomes once it is optimized and made physical, measured on the
//! logical plan before either runs (issue 56).
//!
//! A logical plan shares its parts: each reference to a CTE is the CTE's plan again, its inputs
//! held once. The optimizer and the physical planner copy every shared part out, so `WITH a1
//! AS (SELECT 1 UNION ALL SELECT 1), a2 AS (SELECT * FROM a1 UNION ALL SELECT * FROM a1), …`
//! thirty levels deep, a statement of two kilobytes, becomes a plan of a billion nodes, built
//! on a thread no time limit can interrupt. The size is therefore counted as those copies will
//! have it, each shared part counted once per place it is used, with the count of each part
//! remembered so the count itself costs the plan's shared size, not its copied one; a plan over
//! [`MAX_PLAN_NODES`] is refused before the optimizer runs.

use std::collections::HashMap;

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;

/// Most nodes a plan may have once its shared parts are copied out.
pub const MAX_PLAN_NODES: u64 = 100_000;

/// The nodes `plan` has once every shared part is copied out (saturating).
pub fn copied_size(plan: &LogicalPlan) -> u64 {
    let mut known = HashMap::new();
    size(plan, &mut known)
}

fn size(plan: &LogicalPlan, known: &mut HashMap<*const LogicalPlan, u64>) -> u64 {
    let key = std::ptr::from_ref(plan);
    if let Some(n) = known.get(&key) {
        return *n;
    }
    let mut n = 1u64;
    for input in plan.inputs() {
        n = n.saturating_add(size(input, known));
    }
    // Subqueries inside expressions (`IN (SELECT …)`, `EXISTS`, scalar subqueries) are plans
    // the optimizer copies too.
    let _ = plan.apply_subqueries(|sub| {
        n = n.saturating_add(size(sub, known));
        Ok(TreeNodeRecursion::Continue)
    });
    known.insert(key, n);
    n
}

/// Refuses `plan` when it is over [`MAX_PLAN_NODES`] once copied out.
pub fn check(plan: &LogicalPlan) -> Result<(), String> {
    let n = copied_size(plan);
    if n > MAX_PLAN_NODES {
        return Err(format!(
            "the statement's plan would have {} nodes once its common table expressions are \
             copied out (at most {MAX_PLAN_NODES}); reference each CTE fewer times",
            if n == u64::MAX {
                "billions of".to_string()
            } else {
                n.to_string()
            }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    /// `WITH a1 AS (… UNION ALL …), a2 AS (a1 UNION ALL a1), …` `levels` deep.
    fn doubling(levels: usize) -> String {
        let mut sql = "WITH a0 AS (SELECT 1 AS x UNION ALL SELECT 2)".to_string();
        for i in 1..=levels {
            sql.push_str(&format!(
                ", a{i} AS (SELECT x FROM a{p} UNION ALL SELECT x FROM a{p})",
                p = i - 1
            ));
        }
        sql.push_str(&format!(" SELECT count(*) FROM a{levels}"));
        sql
    }

    async fn plan(sql: &str) -> LogicalPlan {
        SessionContext::new()
            .state()
            .create_logical_plan(sql)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_plan_is_counted_as_it_will_be_copied_and_the_count_is_cheap() {
        let small = plan(&doubling(3)).await;
        let n = copied_size(&small);
        assert!((16..1_000).contains(&n), "{n}");
        assert!(check(&small).is_ok());
        // 60 levels: 2^60 nodes copied out; counted at once, and refused.
        let started = std::time::Instant::now();
        let huge = plan(&doubling(60)).await;
        let err = check(&huge).unwrap_err();
        assert!(err.contains("common table expressions"), "{err}");
        assert!(copied_size(&huge) > 1 << 50);
        println!("60 levels planned and counted in {:?}", started.elapsed());
        // A subquery in an expression counts too.
        let inside = plan(&format!(
            "SELECT 1 WHERE 1 IN ({})",
            doubling(40).replace("count(*)", "x")
        ))
        .await;
        assert!(check(&inside).is_err());
    }
}
