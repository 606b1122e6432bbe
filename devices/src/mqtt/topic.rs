//! Topic patterns and templates, pure: an MQTT filter with `+` wildcards, and the `{n}`
//! placeholders of a site or sensor template that take the n-th wildcard's value.

use adit_schemas::names::is_token;

/// The number of `+` wildcards in `pattern`, or why it is not a supported filter.
pub(super) fn pattern_wildcards(pattern: &str) -> Result<usize, String> {
    if pattern.is_empty() {
        return Err("is empty".into());
    }
    if pattern.contains('\0') {
        return Err("contains a NUL character".into());
    }
    let mut wildcards = 0;
    for level in pattern.split('/') {
        if level.contains('#') {
            return Err("# is not supported; use + for each level".into());
        }
        if level == "+" {
            wildcards += 1;
        } else if level.contains('+') {
            return Err(format!("level {level:?}: + must be a whole level"));
        }
    }
    Ok(wildcards)
}

/// The values of `pattern`'s `+` levels in `topic`, or `None` when `topic` does not match.
/// As MQTT requires, a leading wildcard does not match topics starting with `$`.
pub(super) fn match_topic<'t>(pattern: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    if topic.starts_with('$') && pattern.starts_with('+') {
        return None;
    }
    let mut captures = Vec::new();
    let mut levels = topic.split('/');
    for wanted in pattern.split('/') {
        let level = levels.next()?;
        if wanted == "+" {
            captures.push(level);
        } else if wanted != level {
            return None;
        }
    }
    levels.next().is_none().then_some(captures)
}

/// One part of a site or sensor template.
#[derive(Debug, PartialEq)]
enum Piece<'a> {
    /// Text taken as is.
    Literal(&'a str),
    /// `{n}`: the n-th wildcard's value, from 1.
    Wildcard(usize),
}

/// Splits a template into literal text and `{n}` placeholders.
fn parse_template(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        let Some(open) = rest.find('{') else {
            pieces.push(Piece::Literal(rest));
            break;
        };
        let (literal, after) = rest.split_at(open);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let close = after.find('}').ok_or("unclosed {")?;
        let index = after[1..close]
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{} is not a wildcard number like {{1}}", &after[..=close]))?;
        pieces.push(Piece::Wildcard(index));
        rest = &after[close + 1..];
    }
    if pieces
        .iter()
        .any(|p| matches!(p, Piece::Literal(l) if l.contains('}')))
    {
        return Err("} without {".into());
    }
    Ok(pieces)
}

/// Checks that `template` parses, refers only to existing wildcards and can make a token.
pub(super) fn check_template(template: &str, wildcards: usize) -> Result<(), String> {
    if template.is_empty() {
        return Err("is empty".into());
    }
    for piece in parse_template(template)? {
        match piece {
            Piece::Wildcard(n) if n > wildcards => {
                return Err(format!(
                    "{{{n}}} but the pattern has {wildcards} + wildcard(s)"
                ));
            }
            Piece::Wildcard(_) => {}
            Piece::Literal(text) => {
                if !is_token(text) {
                    return Err(format!(
                        "{text:?} must be 1-64 characters of A-Z a-z 0-9 _ -"
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `template` with each `{n}` replaced by `captures[n - 1]`.
pub(super) fn render(template: &str, captures: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    for piece in parse_template(template)? {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Wildcard(n) => out.push_str(captures.get(n - 1).ok_or_else(|| {
                format!("{{{n}}} but the topic has {} wildcard(s)", captures.len())
            })?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_levels_and_capture_wildcards() {
        let cases: &[(&str, &str, Option<&[&str]>)] = &[
            (
                "farm/+/sensors/+",
                "farm/north/sensors/t1",
                Some(&["north", "t1"]),
            ),
            ("farm/+/sensors/+", "farm/north/sensors", None),
            ("farm/+/sensors/+", "farm/north/sensors/t1/extra", None),
            ("farm/+/sensors/+", "farm/north/fans/t1", None),
            ("farm/+/sensors/+", "Farm/north/sensors/t1", None),
            ("farm/north/t", "farm/north/t", Some(&[])),
            ("farm/+/t", "farm//t", Some(&[""])),
            ("+", "a", Some(&["a"])),
            ("+", "a/b", None),
            ("+/x", "$SYS/x", None),
            ("$SYS/+", "$SYS/x", Some(&["x"])),
        ];
        for (pattern, topic, want) in cases {
            assert_eq!(
                match_topic(pattern, topic).as_deref(),
                *want,
                "{pattern} against {topic}"
            );
        }
    }

    #[test]
    fn templates_take_wildcards_by_position() {
        assert_eq!(render("{1}", &["a", "b"]).unwrap(), "a");
        assert_eq!(render("rack-{2}-{1}", &["a", "b"]).unwrap(), "rack-b-a");
        assert_eq!(render("north", &["a"]).unwrap(), "north");
        assert!(render("{3}", &["a", "b"]).is_err());
        assert_eq!(
            parse_template("x{12}").unwrap(),
            vec![Piece::Literal("x"), Piece::Wildcard(12)]
        );
        for bad in ["{", "{0}", "{a}", "{}", "a}", "{1}}"] {
            assert!(parse_template(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
