//! An SVG chart of several runs side by side: delivery ratio and latency (median,
//! with the 95th percentile as a whisker) per policy. Plain SVG text, no dependency;
//! deterministic like every other output.
//!
//! ```
//! let svg = ferry_sim::plot::svg("demo", &[]);
//! assert!(svg.starts_with("<svg"));
//! ```

use std::fmt::Write as _;

use crate::report::Report;

const W: f64 = 760.0;
const H: f64 = 360.0;
const PANEL_W: f64 = 330.0;
const PANEL_H: f64 = 230.0;
const TOP: f64 = 60.0;
const COLORS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A "nice" upper bound for an axis: 1, 2 or 5 times a power of ten, at least `v`.
fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// One panel of bars; `values[i] = (bar, whisker)`.
fn panel(
    out: &mut String,
    x0: f64,
    title: &str,
    unit: &str,
    labels: &[String],
    values: &[(Option<f64>, Option<f64>)],
    max: f64,
) {
    let y0 = TOP + PANEL_H;
    let _ = write!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="14" text-anchor="middle">{}</text>"#,
        x0 + PANEL_W / 2.0,
        TOP - 20.0,
        esc(title)
    );
    // Axis and grid.
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let y = y0 - PANEL_H * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{x0:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            x0 + PANEL_W,
            x0 - 4.0,
            y + 3.0,
            if max >= 10.0 {
                format!("{v:.0}{unit}")
            } else {
                format!("{v:.2}{unit}")
            }
        );
    }
    let n = labels.len().max(1) as f64;
    let slot = PANEL_W / n;
    let bar = (slot * 0.6).min(60.0);
    for (i, (label, (v, whisker))) in labels.iter().zip(values).enumerate() {
        let cx = x0 + slot * (i as f64 + 0.5);
        let color = COLORS[i % COLORS.len()];
        match v {
            Some(v) => {
                let h = (v / max).clamp(0.0, 1.0) * PANEL_H;
                let _ = write!(
                    out,
                    r#"<rect x="{:.1}" y="{:.1}" width="{bar:.1}" height="{h:.1}" fill="{color}"/><text x="{cx:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text>"#,
                    cx - bar / 2.0,
                    y0 - h,
                    y0 - h - 4.0,
                    if max >= 10.0 {
                        format!("{v:.0}")
                    } else {
                        format!("{v:.3}")
                    }
                );
            }
            None => {
                let _ = write!(
                    out,
                    r#"<text x="{cx:.1}" y="{:.1}" font-size="10" text-anchor="middle">n/a</text>"#,
                    y0 - 4.0
                );
            }
        }
        if let (Some(_), Some(w)) = (v, whisker) {
            let y = y0 - (w / max).clamp(0.0, 1.0) * PANEL_H;
            let _ = write!(
                out,
                r##"<line x1="{cx:.1}" y1="{y:.1}" x2="{cx:.1}" y2="{:.1}" stroke="#333"/><line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#333"/>"##,
                y0 - (v.unwrap_or(0.0) / max).clamp(0.0, 1.0) * PANEL_H,
                cx - 6.0,
                cx + 6.0
            );
        }
        let _ = write!(
            out,
            r#"<text x="{cx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"#,
            y0 + 16.0,
            esc(label)
        );
    }
    let _ = write!(
        out,
        r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{:.1}" y2="{y0:.1}" stroke="#333"/>"##,
        x0 + PANEL_W
    );
}

/// The chart of `reports` (one bar per report) under `title`.
pub fn svg(title: &str, reports: &[Report]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif"><rect width="100%" height="100%" fill="white"/><text x="{:.1}" y="20" font-size="16" text-anchor="middle">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    let labels: Vec<String> = reports.iter().map(|r| r.policy.clone()).collect();
    let delivery: Vec<(Option<f64>, Option<f64>)> = reports
        .iter()
        .map(|r| (Some(r.delivery_ratio), None))
        .collect();
    panel(
        &mut out,
        50.0,
        "delivery ratio",
        "",
        &labels,
        &delivery,
        1.0,
    );
    let minutes = |s: Option<f64>| s.map(|s| s / 60.0);
    let latency: Vec<(Option<f64>, Option<f64>)> = reports
        .iter()
        .map(|r| (minutes(r.latency_median_s), minutes(r.latency_p95_s)))
        .collect();
    let top = latency
        .iter()
        .filter_map(|(m, p)| p.or(*m))
        .fold(0.0f64, f64::max);
    panel(
        &mut out,
        420.0,
        "latency, minutes (median, p95 whisker)",
        "",
        &labels,
        &latency,
        nice_max(top),
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_are_nice() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(0.7), 1.0);
        assert_eq!(nice_max(13.0), 20.0);
        assert_eq!(nice_max(260.0), 500.0);
        assert_eq!(nice_max(f64::NAN), 1.0);
    }

    #[test]
    fn labels_are_escaped() {
        let s = svg("a<b & \"c\"", &[]);
        assert!(s.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(s.ends_with("</svg>\n"));
    }
}
