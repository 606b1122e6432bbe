//! Line charts drawn as SVG, server-side, so a report needs no script and prints as it shows.
//! Coordinates are written with one decimal, so the same data gives the same bytes.

use maud::{Markup, html};

/// One line: label, colour and a value per step (none: a break in the line).
pub(crate) struct Line<'a> {
    pub(crate) label: &'a str,
    pub(crate) color: &'a str,
    pub(crate) values: &'a [Option<f64>],
}

/// A horizontal reference line (a limit).
pub(crate) struct Rule<'a> {
    pub(crate) label: &'a str,
    pub(crate) color: &'a str,
    pub(crate) value: f64,
}

/// A chart: lines over the day, reference lines, and hour ticks along the bottom.
pub(crate) struct Chart<'a> {
    pub(crate) title: &'a str,
    pub(crate) unit: &'a str,
    pub(crate) lines: Vec<Line<'a>>,
    pub(crate) rules: Vec<Rule<'a>>,
    /// Labels along the x axis: (fraction of the width, text).
    pub(crate) ticks: Vec<(f64, String)>,
}

const W: f64 = 760.0;
const H: f64 = 240.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 28.0;

impl Chart<'_> {
    /// The chart as an `<svg>` element (maud escapes its texts).
    pub(crate) fn render(&self) -> Markup {
        let values = self
            .lines
            .iter()
            .flat_map(|l| l.values.iter().flatten().copied())
            .chain(self.rules.iter().map(|r| r.value));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        html! {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) width=(W)
                height=(H) role="img" aria-label=(self.title) {
                text x=(LEFT) y="16" font-size="13" font-weight="bold" { (self.title) }
                @if lo.is_finite() {
                    (self.plot(lo, hi))
                } @else {
                    text x=(d1(W / 2.0)) y=(d1(H / 2.0)) font-size="13" text-anchor="middle"
                        fill="#666" { "no data" }
                }
            }
        }
    }

    /// The grid, ticks, rules and lines for values between `lo` and `hi`.
    fn plot(&self, lo: f64, hi: f64) -> Markup {
        let lo = if lo > 0.0 { 0.0 } else { lo };
        let hi = if hi - lo < 1e-9 { lo + 1.0 } else { hi * 1.05 };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let y_of = |v: f64| TOP + ph * (1.0 - (v - lo) / (hi - lo));
        let legend_x = |i: usize| W - RIGHT - 170.0 * (self.lines.len() - i) as f64;
        html! {
            @for i in 0..=4 {
                @let v = lo + (hi - lo) * f64::from(i) / 4.0;
                @let y = d1(y_of(v));
                line x1=(LEFT) x2=(d1(W - RIGHT)) y1=(y) y2=(y) stroke="#ddd" {}
                text x=(d1(LEFT - 4.0)) y=(d1(y_of(v) + 3.0)) font-size="10" text-anchor="end" { (d1(v)) }
            }
            @for (frac, label) in &self.ticks {
                @let x = d1(LEFT + pw * frac);
                line x1=(x) x2=(x) y1=(TOP) y2=(d1(H - BOTTOM)) stroke="#eee" {}
                text x=(x) y=(d1(H - BOTTOM + 14.0)) font-size="10" text-anchor="middle" { (label) }
            }
            @for rule in &self.rules {
                @let y = y_of(rule.value);
                line x1=(LEFT) x2=(d1(W - RIGHT)) y1=(d1(y)) y2=(d1(y)) stroke=(rule.color)
                    stroke-dasharray="6 4" {}
                text x=(d1(W - RIGHT)) y=(d1(y - 3.0)) font-size="10" text-anchor="end"
                    fill=(rule.color) { (rule.label) " " (d1(rule.value)) }
            }
            @for (i, l) in self.lines.iter().enumerate() {
                path d=(path(l.values, pw, &y_of)) fill="none" stroke=(l.color) stroke-width="1.5" {}
                rect x=(d1(legend_x(i))) y="8" width="10" height="10" fill=(l.color) {}
                text x=(d1(legend_x(i) + 14.0)) y="17" font-size="11" { (l.label) " (" (self.unit) ")" }
            }
        }
    }
}

/// `v` with one decimal: the same data gives the same bytes.
fn d1(v: f64) -> String {
    format!("{v:.1}")
}

/// The SVG path of `values` across width `pw`, lifting the pen at each gap.
fn path(values: &[Option<f64>], pw: f64, y_of: &dyn Fn(f64) -> f64) -> String {
    let n = values.len().max(2) as f64 - 1.0;
    let mut d = Vec::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let x = LEFT + pw * i as f64 / n;
                let pen = if pen_down { "L" } else { "M" };
                d.push(format!("{pen}{x:.1},{:.1}", y_of(*v)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_breaks_its_line_at_gaps_and_says_no_data_when_empty() {
        let values = [Some(1.0), Some(2.0), None, Some(3.0)];
        let chart = Chart {
            title: "Power <kW>",
            unit: "kW",
            lines: vec![Line {
                label: "site",
                color: "#036",
                values: &values,
            }],
            rules: vec![Rule {
                label: "allocation",
                color: "#c00",
                value: 2.5,
            }],
            ticks: vec![(0.0, "00:00".into())],
        };
        let svg = chart.render().into_string();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let path = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(svg.contains("Power &lt;kW&gt;"));
        assert!(svg.contains("allocation 2.5"));
        assert_eq!(svg, chart.render().into_string());
        let empty = Chart {
            lines: vec![],
            rules: vec![],
            ..chart
        };
        assert!(empty.render().into_string().contains("no data"));
    }
}
