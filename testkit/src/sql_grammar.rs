//! A grammar of the SQL adit reads, for generators that nest every production (issue 56).
//!
//! Lists of hostile shapes miss the next one (issue 22 named `1+1+…`; `NULL::int[][]…` and
//! `COPY (…)` passed after it). Here the shapes come from productions: each nonterminal
//! (statement, query, table, expression, type, window) has templates whose `{…}` slots name
//! nonterminals. [`Generator::nested`] takes any production and repeats it as deep as asked:
//! directly when it names its own nonterminal, otherwise round the shortest cycle of
//! productions that leads back to it (a table's subquery through a query's `FROM`), the other
//! slots filled with small random trees. [`Generator::random`] mixes productions at random
//! within a depth. The nesting is built by repeating text, never by recursion, so a generated
//! statement can be as deep as its byte limit allows.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The nonterminals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    /// A whole statement.
    Statement,
    /// A query (`SELECT`, set operations, `VALUES`, `WITH`).
    Query,
    /// A relation in `FROM`.
    Table,
    /// A scalar expression.
    Expr,
    /// A data type.
    Type,
    /// A window specification (inside `OVER (…)`).
    Window,
}

impl Symbol {
    const ALL: [Symbol; 6] = [
        Symbol::Statement,
        Symbol::Query,
        Symbol::Table,
        Symbol::Expr,
        Symbol::Type,
        Symbol::Window,
    ];

    fn slot(self) -> &'static str {
        match self {
            Symbol::Statement => "{statement}",
            Symbol::Query => "{query}",
            Symbol::Table => "{table}",
            Symbol::Expr => "{expr}",
            Symbol::Type => "{type}",
            Symbol::Window => "{window}",
        }
    }

    /// A statement around `text` of this symbol.
    fn statement(self, text: &str) -> String {
        match self {
            Symbol::Statement | Symbol::Query => text.to_string(),
            Symbol::Table => format!("SELECT * FROM {text}"),
            Symbol::Expr => format!("SELECT {text} AS x FROM {BASE}"),
            Symbol::Type => format!("SELECT CAST(NULL AS {text}) AS x"),
            Symbol::Window => format!("SELECT count(*) OVER ({text}) AS x FROM {BASE}"),
        }
    }
}

/// The relation the leaves read.
const BASE: &str = "(VALUES (1, 'a', [1, 2])) AS t(i, s, l)";

/// Every production: the nonterminal it makes and its template.
pub const GRAMMAR: &[(Symbol, &str)] = &[
    (Symbol::Statement, "{query}"),
    (Symbol::Statement, "EXPLAIN {query}"),
    (Symbol::Statement, "EXPLAIN ANALYZE {query}"),
    (Symbol::Statement, "EXPLAIN {statement}"),
    (Symbol::Statement, "COPY ({query}) TO '/dev/null'"),
    (Symbol::Statement, "CREATE VIEW v AS {query}"),
    (Symbol::Statement, "PREPARE p AS {query}"),
    (Symbol::Statement, "INSERT INTO x {query}"),
    (Symbol::Query, "SELECT 1 AS x"),
    (Symbol::Query, "SELECT {expr} AS x"),
    (
        Symbol::Query,
        "SELECT {expr} AS x FROM {table} WHERE {expr}",
    ),
    (
        Symbol::Query,
        "SELECT {expr} AS x FROM {table} GROUP BY 1 HAVING {expr} ORDER BY 1 LIMIT 3",
    ),
    (Symbol::Query, "SELECT DISTINCT {expr} AS x FROM {table}"),
    (Symbol::Query, "{query} UNION ALL {query}"),
    (Symbol::Query, "{query} EXCEPT {query}"),
    (Symbol::Query, "({query})"),
    (Symbol::Query, "WITH c AS ({query}) SELECT * FROM c"),
    (Symbol::Query, "SELECT * FROM ({query}) AS q"),
    (Symbol::Query, "VALUES ({expr}), ({expr})"),
    (
        Symbol::Query,
        "SELECT {expr} AS x FROM {BASE} WINDOW w AS ({window})",
    ),
    (Symbol::Table, "{BASE}"),
    (Symbol::Table, "{table} JOIN {BASE} ON {expr}"),
    (Symbol::Table, "{BASE} CROSS JOIN {table}"),
    (Symbol::Table, "{table} LEFT JOIN {table} USING (i)"),
    (Symbol::Table, "({query}) AS s"),
    (Symbol::Table, "({table})"),
    (Symbol::Table, "unnest({expr}) AS u(i)"),
    (Symbol::Table, "{BASE}, LATERAL ({query}) AS l"),
    (Symbol::Expr, "1"),
    (Symbol::Expr, "'a'"),
    (Symbol::Expr, "NULL"),
    (Symbol::Expr, "i"),
    (Symbol::Expr, "[1, 2]"),
    (Symbol::Expr, "({expr} + {expr})"),
    (Symbol::Expr, "({expr} || {expr})"),
    (Symbol::Expr, "({expr} AND {expr})"),
    (Symbol::Expr, "- {expr}"),
    (Symbol::Expr, "NOT {expr}"),
    (Symbol::Expr, "({expr})"),
    (Symbol::Expr, "CAST({expr} AS {type})"),
    (Symbol::Expr, "TRY_CAST({expr} AS {type})"),
    (Symbol::Expr, "({expr})::{type}"),
    (Symbol::Expr, "CASE WHEN {expr} THEN {expr} ELSE {expr} END"),
    (Symbol::Expr, "CASE {expr} WHEN {expr} THEN {expr} END"),
    (Symbol::Expr, "coalesce({expr}, {expr})"),
    (Symbol::Expr, "abs({expr})"),
    (Symbol::Expr, "({query})"),
    (Symbol::Expr, "EXISTS ({query})"),
    (Symbol::Expr, "({expr} IN ({query}))"),
    (Symbol::Expr, "({expr} IN ({expr}, {expr}))"),
    (Symbol::Expr, "[{expr}, {expr}]"),
    (Symbol::Expr, "({expr})[1]"),
    (Symbol::Expr, "count({expr}) OVER ({window})"),
    (Symbol::Expr, "({expr} IS NULL)"),
    (Symbol::Expr, "({expr} BETWEEN {expr} AND {expr})"),
    (Symbol::Expr, "struct({expr})"),
    (Symbol::Expr, "named_struct('a', {expr})"),
    (Symbol::Expr, "({expr} LIKE {expr})"),
    (Symbol::Expr, "sum({expr}) FILTER (WHERE {expr})"),
    (Symbol::Expr, "array_agg({expr} ORDER BY {expr})"),
    (Symbol::Expr, "string_agg({expr}, ',')"),
    (Symbol::Expr, "({expr} AT TIME ZONE 'UTC')"),
    (Symbol::Expr, "INTERVAL '1 day'"),
    (Symbol::Type, "INT"),
    (Symbol::Type, "VARCHAR"),
    (Symbol::Type, "DOUBLE"),
    (Symbol::Type, "DECIMAL(10, 2)"),
    (Symbol::Type, "TIMESTAMP"),
    (Symbol::Type, "{type}[]"),
    (Symbol::Type, "{type}[3]"),
    (Symbol::Type, "ARRAY<{type}>"),
    (Symbol::Type, "STRUCT<a {type}>"),
    (Symbol::Type, "MAP<VARCHAR, {type}>"),
    (Symbol::Window, "ORDER BY 1"),
    (Symbol::Window, "PARTITION BY {expr} ORDER BY {expr}"),
    (
        Symbol::Window,
        "ORDER BY {expr} ROWS BETWEEN 1 PRECEDING AND CURRENT ROW",
    ),
];

/// The symbol named by the slot that starts `text`, with the slot's length.
fn slot_at(text: &str) -> Option<(Symbol, usize)> {
    Symbol::ALL
        .into_iter()
        .find(|s| text.starts_with(s.slot()))
        .map(|s| (s, s.slot().len()))
}

/// A statement generator, seeded.
#[derive(Debug)]
pub struct Generator {
    rng: StdRng,
}

impl Generator {
    /// A generator whose choices follow from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
    }

    /// The productions [`Generator::nested`] can nest: every one with a slot. Those on a
    /// cycle of the grammar repeat themselves; the others (a statement around a query, such as
    /// `COPY ({query}) TO …`) hold a deep nesting of a production of their slot's symbol.
    pub fn nestable() -> Vec<usize> {
        (0..GRAMMAR.len())
            .filter(|&p| slots(p).next().is_some())
            .collect()
    }

    /// A random statement whose trees are at most `depth` productions deep.
    pub fn random(&mut self, depth: usize) -> String {
        let text = self.fill(Symbol::Statement, depth);
        text.replace("{BASE}", BASE)
    }

    /// A statement in which production `production` is repeated `times` deep (round its
    /// shortest cycle when it does not name its own symbol; around a deep nesting of its first
    /// slot's symbol when it is on no cycle); the other slots are small random trees. `None`
    /// for a production without a slot.
    pub fn nested(&mut self, production: usize, times: usize) -> Option<String> {
        let text = self.nested_text(production, times)?;
        Some(
            GRAMMAR[production]
                .0
                .statement(&text)
                .replace("{BASE}", BASE),
        )
    }

    /// The text of [`Generator::nested`], of the production's own symbol.
    fn nested_text(&mut self, production: usize, times: usize) -> Option<String> {
        let template = GRAMMAR[production].1;
        let Some(path) = cycle(production) else {
            let (at, inner) = slots(production).next()?;
            let on_cycles: Vec<usize> = (0..GRAMMAR.len())
                .filter(|&q| GRAMMAR[q].0 == inner && cycle(q).is_some())
                .collect();
            let q = *on_cycles.get(self.rng.random_range(0..on_cycles.len().max(1)))?;
            let deep = self.nested_text(q, times)?;
            let (_, len) = slot_at(&template[at..])?;
            let before = self.expand(&template[..at], 1);
            let after = self.expand(&template[at + len..], 1);
            return Some(format!("{before}{deep}{after}"));
        };
        let symbol = GRAMMAR[production].0;
        // Each production of the cycle split at the slot the cycle goes through.
        let mut prefix = String::new();
        let mut suffix = String::new();
        for (p, at) in &path {
            let template = GRAMMAR[*p].1;
            let (_, len) = slot_at(&template[*at..]).expect("a cycle goes through a slot");
            let before = self.expand(&template[..*at], 1);
            let after = self.expand(&template[*at + len..], 1);
            prefix.push_str(&before);
            suffix.insert_str(0, &after);
        }
        let seed = self.fill(symbol, 0);
        let mut text = String::with_capacity((prefix.len() + suffix.len()) * times + seed.len());
        for _ in 0..times {
            text.push_str(&prefix);
        }
        text.push_str(&seed);
        for _ in 0..times {
            text.push_str(&suffix);
        }
        Some(text)
    }

    /// A random tree of `symbol` at most `depth` deep.
    fn fill(&mut self, symbol: Symbol, depth: usize) -> String {
        let choices: Vec<&str> = GRAMMAR
            .iter()
            .filter(|(s, t)| *s == symbol && (depth > 0 || !t.contains("{") || *t == "{BASE}"))
            .map(|(_, t)| *t)
            .collect();
        let choices = if choices.is_empty() {
            // A symbol with no leaf: its first production, its slots as leaves.
            GRAMMAR
                .iter()
                .filter(|(s, _)| *s == symbol)
                .map(|(_, t)| *t)
                .take(1)
                .collect()
        } else {
            choices
        };
        let template = choices[self.rng.random_range(0..choices.len())];
        self.expand(template, depth.saturating_sub(1))
    }

    /// `template` with each slot filled by a random tree at most `depth` deep.
    fn expand(&mut self, template: &str, depth: usize) -> String {
        let mut out = String::new();
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            match slot_at(&rest[i..]) {
                Some((symbol, len)) => {
                    out.push_str(&self.fill(symbol, depth));
                    rest = &rest[i + len..];
                }
                None => {
                    out.push('{');
                    rest = &rest[i + 1..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// The shortest cycle of productions from `production` back to its own symbol: each step a
/// production and the byte offset of the slot the cycle leaves it through. `None` when no
/// slot of it leads back.
fn cycle(production: usize) -> Option<Vec<(usize, usize)>> {
    let (home, _) = GRAMMAR[production];
    // Breadth first over (symbol reached, path so far), starting from each slot of the
    // production; a path never repeats a symbol.
    let mut frontier: Vec<(Symbol, Vec<(usize, usize)>)> = slots(production)
        .map(|(at, s)| (s, vec![(production, at)]))
        .collect();
    for _ in 0..Symbol::ALL.len() {
        if let Some((_, path)) = frontier.iter().find(|(s, _)| *s == home) {
            return Some(path.clone());
        }
        let mut next = Vec::new();
        for (symbol, path) in &frontier {
            for p in (0..GRAMMAR.len()).filter(|&p| GRAMMAR[p].0 == *symbol) {
                for (at, s) in slots(p) {
                    if path.iter().all(|(q, _)| GRAMMAR[*q].0 != s) || s == home {
                        let mut longer = path.clone();
                        longer.push((p, at));
                        next.push((s, longer));
                    }
                }
            }
        }
        frontier = next;
    }
    None
}

/// The slots of production `p`: byte offset and symbol.
fn slots(p: usize) -> impl Iterator<Item = (usize, Symbol)> {
    let template = GRAMMAR[p].1;
    template
        .match_indices('{')
        .filter_map(|(at, _)| slot_at(&template[at..]).map(|(s, _)| (at, s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_production_on_a_cycle_nests_as_deep_as_asked() {
        let nestable = Generator::nestable();
        // Every production with a slot nests, the leaves do not; only statements around a
        // query are on no cycle.
        for (p, (symbol, template)) in GRAMMAR.iter().enumerate() {
            assert_eq!(
                nestable.contains(&p),
                template.contains("{") && *template != "{BASE}",
                "{template}"
            );
            if nestable.contains(&p) && cycle(p).is_none() {
                assert_eq!(*symbol, Symbol::Statement, "{template}");
            }
        }
        let mut g = Generator::new(1);
        for &p in &nestable {
            let once = g.nested(p, 1).unwrap();
            let deep = g.nested(p, 50).unwrap();
            assert!(deep.len() > once.len(), "{}", GRAMMAR[p].1);
            assert!(!deep.contains('{'), "{deep}");
        }
        let typed = g.nested(GRAMMAR.iter().position(|p| p.1 == "{type}[]").unwrap(), 3);
        assert!(typed.unwrap().contains("[][][]"));
        let copy = GRAMMAR
            .iter()
            .position(|p| p.1.starts_with("COPY"))
            .unwrap();
        let deep = g.nested(copy, 300).unwrap();
        assert!(deep.starts_with("COPY (") && deep.len() > 1000, "{deep}");
    }

    #[test]
    fn random_statements_fill_every_slot() {
        let mut g = Generator::new(7);
        for _ in 0..200 {
            let s = g.random(4);
            assert!(!s.contains("{query}") && !s.contains("{expr}"), "{s}");
        }
    }
}
