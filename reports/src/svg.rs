//! Line charts drawn as SVG text, server-side, so a report needs no script and prints as it
//! shows. Coordinates are written with one decimal, so the same data gives the same bytes.

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

/// Escapes text for SVG/HTML.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Chart<'_> {
    /// The chart as an `<svg>` element.
    pub(crate) fn render(&self) -> String {
        let values = self
            .lines
            .iter()
            .flat_map(|l| l.values.iter().flatten().copied())
            .chain(self.rules.iter().map(|r| r.value));
        let (lo, hi) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
        let mut svg = String::new();
        svg.push_str(&format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{t}"><text x="{LEFT}" y="16" font-size="13" font-weight="bold">{t}</text>"#,
            t = esc(self.title)
        ));
        if !lo.is_finite() {
            svg.push_str(&format!(
                r##"<text x="{x:.1}" y="{y:.1}" font-size="13" text-anchor="middle" fill="#666">no data</text></svg>"##,
                x = W / 2.0,
                y = H / 2.0
            ));
            return svg;
        }
        let lo = if lo > 0.0 { 0.0 } else { lo };
        let hi = if hi - lo < 1e-9 { lo + 1.0 } else { hi * 1.05 };
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let y_of = |v: f64| TOP + ph * (1.0 - (v - lo) / (hi - lo));
        for i in 0..=4 {
            let v = lo + (hi - lo) * f64::from(i) / 4.0;
            let y = y_of(v);
            svg.push_str(&format!(
                r##"<line x1="{LEFT}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{tx:.1}" y="{ty:.1}" font-size="10" text-anchor="end">{v:.1}</text>"##,
                x2 = W - RIGHT,
                tx = LEFT - 4.0,
                ty = y + 3.0
            ));
        }
        for (frac, text) in &self.ticks {
            let x = LEFT + pw * frac;
            svg.push_str(&format!(
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{TOP}" y2="{yb:.1}" stroke="#eee"/><text x="{x:.1}" y="{ty:.1}" font-size="10" text-anchor="middle">{t}</text>"##,
                yb = H - BOTTOM,
                ty = H - BOTTOM + 14.0,
                t = esc(text)
            ));
        }
        for rule in &self.rules {
            let y = y_of(rule.value);
            svg.push_str(&format!(
                r#"<line x1="{LEFT}" x2="{x2:.1}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-dasharray="6 4"/><text x="{x2:.1}" y="{ty:.1}" font-size="10" text-anchor="end" fill="{c}">{l} {v:.1}</text>"#,
                x2 = W - RIGHT,
                ty = y - 3.0,
                c = esc(rule.color),
                l = esc(rule.label),
                v = rule.value
            ));
        }
        let mut legend_x = W - RIGHT - 170.0 * self.lines.len() as f64;
        for line in &self.lines {
            let n = line.values.len().max(2) as f64 - 1.0;
            let mut d = String::new();
            let mut pen_down = false;
            for (i, v) in line.values.iter().enumerate() {
                match v {
                    Some(v) => {
                        let x = LEFT + pw * i as f64 / n;
                        d.push_str(&format!(
                            "{}{x:.1},{:.1}",
                            if pen_down { " L" } else { " M" },
                            y_of(*v)
                        ));
                        pen_down = true;
                    }
                    None => pen_down = false,
                }
            }
            svg.push_str(&format!(
                r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"/><rect x="{legend_x:.1}" y="8" width="10" height="10" fill="{c}"/><text x="{tx:.1}" y="17" font-size="11">{l} ({u})</text>"#,
                d = d.trim(),
                c = esc(line.color),
                tx = legend_x + 14.0,
                l = esc(line.label),
                u = esc(self.unit)
            ));
            legend_x += 170.0;
        }
        svg.push_str("</svg>");
        svg
    }
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
        let svg = chart.render();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        let path = svg.split("d=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(path.matches('M').count(), 2, "{path}");
        assert!(svg.contains("Power &lt;kW&gt;"));
        assert!(svg.contains("allocation 2.5"));
        assert_eq!(svg, chart.render());
        let empty = Chart {
            lines: vec![],
            rules: vec![],
            ..chart
        };
        assert!(empty.render().contains("no data"));
    }
}
