//! How big a statement's plan becomes once its common table expressions are copied in,
//! counted on the parsed statement before anything is planned (issue 56).
//!
//! Each reference to a CTE is planned as the CTE's whole plan again, so `WITH a1 AS (SELECT 1
//! UNION ALL SELECT 1), a2 AS (SELECT * FROM a1 UNION ALL SELECT * FROM a1), …` thirty levels
//! deep, a statement of two kilobytes, plans a billion nodes on a thread no time limit can
//! interrupt (measured: each level doubles DataFusion's planning time, 0.6 s at 14 levels in
//! a debug build). The count here follows the same copies: a query weighs one, plus the weight
//! of each CTE it names and of the subqueries in it; a CTE's weight is its body's, counted
//! where it is named, not where it is defined. Each is computed once, in one walk of the
//! statement, so counting costs the size of the text, not of the copies. A name defined twice
//! keeps its heavier weight, so the count never falls short of the plan. A statement over
//! [`MAX_PLAN_NODES`] is refused.

use std::collections::HashMap;
use std::ops::ControlFlow;

use datafusion::sql::parser::{CopyToSource, Statement as DfStatement};
use datafusion::sql::sqlparser::ast::{ObjectName, Query, Visit, Visitor};

/// Most CTE copies (weighted as above) one statement may plan.
pub const MAX_PLAN_NODES: u64 = 100_000;

/// The weight of `statement` once its CTEs are copied in (saturating).
pub fn copied_size(statement: &DfStatement) -> u64 {
    let mut weights = Weights::default();
    match statement {
        DfStatement::Statement(s) => {
            let _ = s.visit(&mut weights);
        }
        DfStatement::Explain(e) => return copied_size(&e.statement),
        DfStatement::CopyTo(copy) => {
            if let CopyToSource::Query(query) = &copy.source {
                let _ = query.visit(&mut weights);
            }
        }
        _ => {}
    }
    weights.root.max(1)
}

/// The weights met so far, as the statement is walked.
#[derive(Default)]
struct Weights {
    /// Each CTE name's weight (the heavier of two of one name).
    by_name: HashMap<String, u64>,
    /// The CTE bodies of the queries entered, by address, with their names.
    bodies: HashMap<*const Query, String>,
    /// The weight of each query entered and not yet left, innermost last.
    open: Vec<u64>,
    /// The weight of everything outside any query.
    root: u64,
}

impl Weights {
    /// Adds `weight` to the innermost query open (or the statement).
    fn add(&mut self, weight: u64) {
        let top = self.open.last_mut().unwrap_or(&mut self.root);
        *top = top.saturating_add(weight);
    }
}

impl Visitor for Weights {
    type Break = ();

    // A query weighs one, plus what it names and the subqueries in it. Its CTEs' bodies are
    // visited before its own body (the order of the fields), so each CTE is weighed and named
    // before anything after it refers to it.
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                let body = std::ptr::from_ref(cte.query.as_ref());
                self.bodies
                    .insert(body, cte.alias.name.value.to_lowercase());
            }
        }
        self.open.push(1);
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        let weight = self.open.pop().unwrap_or(1);
        match self.bodies.remove(&std::ptr::from_ref(query)) {
            // A CTE's body is planned where it is named, not where it is defined.
            Some(name) => {
                let held = self.by_name.entry(name).or_default();
                *held = (*held).max(weight);
            }
            None => self.add(weight),
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let named = relation
            .0
            .last()
            .and_then(|part| part.as_ident())
            .and_then(|ident| self.by_name.get(&ident.value.to_lowercase()).copied());
        if let Some(weight) = named {
            self.add(weight);
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{TextLimits, parse};

    /// `WITH a1 AS (… UNION ALL …), a2 AS (a1 UNION ALL a1), …` `levels` deep.
    pub(crate) fn doubling(levels: usize) -> String {
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

    fn weight(sql: &str) -> u64 {
        let statements = datafusion::sql::parser::DFParserBuilder::new(sql)
            .build()
            .and_then(|mut p| p.parse_statements())
            .unwrap();
        copied_size(&statements[0])
    }

    #[test]
    fn ctes_are_weighed_as_they_will_be_copied() {
        assert_eq!(weight("SELECT 1"), 1);
        assert_eq!(weight("WITH a AS (SELECT 1) SELECT * FROM a, a AS b"), 3);
        // Each level doubles: a_k weighs 2^(k+1) - 1, plus the statement's own query.
        assert_eq!(weight(&doubling(3)), 16);
        // A chain of CTEs each naming the one before weighs what it plans, not its square.
        let mut chain = "WITH c0 AS (SELECT 1 AS x)".to_string();
        for i in 1..500 {
            chain.push_str(&format!(", c{i} AS (SELECT x FROM c{})", i - 1));
        }
        chain.push_str(" SELECT * FROM c499");
        assert_eq!(weight(&chain), 501);
        assert_eq!(weight(&doubling(10)), 2048);
        assert_eq!(weight(&doubling(60)), 1 << 61);
        assert_eq!(weight(&doubling(100)), u64::MAX, "saturates");
        // Nested inside a CTE's own WITH, and inside a subquery in an expression.
        let nested = "WITH b AS (WITH a AS (SELECT 1) SELECT * FROM a, a x, a y) \
                      SELECT 1 WHERE 1 IN (SELECT 1 FROM b, b c)";
        assert_eq!(weight(nested), 1 + 1 + 2 * 4);
        // A name shadowed by a lighter one keeps the heavier weight.
        let shadow = format!(
            "{}, z AS (SELECT * FROM (WITH a20 AS (SELECT 1) SELECT * FROM a20) q) SELECT * FROM a20",
            doubling(20).rsplit_once(" SELECT").unwrap().0
        );
        assert!(weight(&shadow) >= 1 << 21);
        // The text's limits refuse it before planning.
        let err = parse(&doubling(30), TextLimits::default()).unwrap_err();
        assert!(
            err.to_string().contains("common table expressions"),
            "{err}"
        );
        assert!(parse(&doubling(10), TextLimits::default()).is_ok());
    }
}
