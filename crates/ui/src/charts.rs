//! Charts drawn on the server as SVG (no JavaScript): line charts of training curves and the
//! confusion matrix as a heat map. Every label is escaped.

use std::fmt::Write;

/// HTML/XML escaping for text placed inside SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// One line of a chart.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

const W: f64 = 640.0;
const H: f64 = 260.0;
const PAD_L: f64 = 56.0;
const PAD_R: f64 = 16.0;
const PAD_T: f64 = 16.0;
const PAD_B: f64 = 40.0;

/// An axis spanning `lo..=hi` with round tick values (1, 2 or 5 times a power of ten, about
/// five ticks), so labels read 0, 500, 1000 rather than -76.7, 400.
fn nice_axis(lo: f64, hi: f64) -> (f64, f64, f64) {
    if !(lo.is_finite() && hi.is_finite()) {
        return (0.0, 1.0, 0.25);
    }
    let (lo, hi) = if (hi - lo).abs() < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    };
    let rough = (hi - lo) / 4.0;
    let magnitude = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|&s| s >= rough)
        .unwrap_or(10.0 * magnitude);
    ((lo / step).floor() * step, (hi / step).ceil() * step, step)
}

/// The plotted ranges, and where their values fall on the canvas.
struct Frame {
    x: (f64, f64, f64),
    y: (f64, f64, f64),
}

impl Frame {
    /// Round axes spanning every point.
    fn around(points: &[(f64, f64)]) -> Self {
        let span = |v: &dyn Fn(&(f64, f64)) -> f64| {
            let lo = points.iter().map(v).fold(f64::INFINITY, f64::min);
            let hi = points.iter().map(v).fold(f64::NEG_INFINITY, f64::max);
            nice_axis(lo, hi)
        };
        Self {
            x: span(&|p| p.0),
            y: span(&|p| p.1),
        }
    }

    fn sx(&self, x: f64) -> f64 {
        PAD_L + (x - self.x.0) / (self.x.1 - self.x.0) * (W - PAD_L - PAD_R)
    }

    fn sy(&self, y: f64) -> f64 {
        H - PAD_B - (y - self.y.0) / (self.y.1 - self.y.0) * (H - PAD_T - PAD_B)
    }
}

/// The values of an axis's ticks.
fn ticks((lo, hi, step): (f64, f64, f64)) -> impl Iterator<Item = f64> {
    let n = ((hi - lo) / step).round() as usize;
    (0..=n).map(move |i| lo + step * i as f64)
}

/// Ranges an axis must span besides its points (a time range, 0 to 100 %).
#[derive(Debug, Clone, Copy, Default)]
pub struct Bounds {
    pub x: Option<(f64, f64)>,
    pub y: Option<(f64, f64)>,
}

/// A line chart of `series` with axis labels; `None` when there is nothing to draw.
pub fn line_chart(title: &str, x_label: &str, series: &[Series]) -> Option<String> {
    line_chart_within(title, x_label, series, Bounds::default())
}

/// [`line_chart`] with axes spanning `bounds` too.
pub fn line_chart_within(
    title: &str,
    x_label: &str,
    series: &[Series],
    bounds: Bounds,
) -> Option<String> {
    let mut points: Vec<(f64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .collect();
    let &(x0, y0) = points.first()?;
    if let Some((lo, hi)) = bounds.x {
        points.extend([(lo, y0), (hi, y0)]);
    }
    if let Some((lo, hi)) = bounds.y {
        points.extend([(x0, lo), (x0, hi)]);
    }
    let frame = Frame::around(&points);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg viewBox="0 0 {W} {H}" role="img" aria-label="{t}" class="chart"><title>{t}</title>"#,
        t = esc(title)
    );
    axes(&mut svg, &frame, x_label);
    for (i, s) in series.iter().enumerate() {
        draw_series(&mut svg, &frame, s);
        legend(&mut svg, i, s);
    }
    svg.push_str("</svg>");
    Some(svg)
}

/// The grid with y ticks, the x ticks and the x axis's label.
fn axes(svg: &mut String, frame: &Frame, x_label: &str) {
    for y in ticks(frame.y) {
        let py = frame.sy(y);
        let _ = write!(
            svg,
            r##"<line x1="{PAD_L}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="#e5e7eb"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#57606a">{}</text>"##,
            W - PAD_R,
            PAD_L - 6.0,
            py + 4.0,
            fmt_tick(y)
        );
    }
    for x in ticks(frame.x) {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="#57606a">{}</text>"##,
            frame.sx(x),
            H - PAD_B + 16.0,
            fmt_tick(x)
        );
    }
    let _ = write!(
        svg,
        r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#24292f">{}</text>"##,
        (W + PAD_L) / 2.0,
        H - 6.0,
        esc(x_label)
    );
}

/// One series: a dot when it has one point, else a line (with dots when short).
fn draw_series(svg: &mut String, frame: &Frame, s: &Series) {
    let pts: Vec<String> = s
        .points
        .iter()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .map(|&(x, y)| format!("{:.1},{:.1}", frame.sx(x), frame.sy(y)))
        .collect();
    let dot = |svg: &mut String, p: &String, r: u32| {
        let (x, y) = p.split_once(',').expect("formatted pair");
        let _ = write!(
            svg,
            r#"<circle cx="{x}" cy="{y}" r="{r}" fill="{}"/>"#,
            s.color
        );
    };
    if pts.len() == 1 {
        dot(svg, &pts[0], 4);
    } else if !pts.is_empty() {
        let _ = write!(
            svg,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"/>"#,
            pts.join(" "),
            s.color
        );
        for p in pts.iter().filter(|_| s.points.len() <= 20) {
            dot(svg, p, 3);
        }
    }
}

/// The `i`-th legend entry, top right.
fn legend(svg: &mut String, i: usize, s: &Series) {
    let ly = PAD_T + 14.0 * i as f64 + 4.0;
    let _ = write!(
        svg,
        r##"<rect x="{:.1}" y="{:.1}" width="10" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="11" fill="#24292f">{}</text>"##,
        W - PAD_R - 150.0,
        ly,
        s.color,
        W - PAD_R - 135.0,
        ly + 9.0,
        esc(&s.name)
    );
}

fn fmt_tick(v: f64) -> String {
    let text = if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    if text == "-0" {
        "0".into()
    } else {
        text.into()
    }
}

/// The confusion matrix (`rows` = true label, columns = predicted) as a heat map.
pub fn confusion_matrix(labels: &[String], matrix: &[Vec<u64>]) -> Option<String> {
    let n = labels.len();
    if n == 0 || matrix.len() != n || matrix.iter().any(|r| r.len() != n) {
        return None;
    }
    let cell = 96.0;
    let left = 110.0;
    let top = 40.0;
    let size = left + cell * n as f64 + 16.0;
    let height = top + cell * n as f64 + 40.0;
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg viewBox="0 0 {size} {height}" role="img" aria-label="Confusion matrix" class="chart cm"><title>Confusion matrix: rows are true labels, columns predicted</title><text x="{:.1}" y="16" font-size="12" text-anchor="middle" fill="#24292f">predicted</text>"##,
        left + cell * n as f64 / 2.0
    );
    for (j, l) in labels.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#24292f">{}</text>"##,
            left + cell * (j as f64 + 0.5),
            top - 6.0,
            esc(l)
        );
    }
    for (i, row) in matrix.iter().enumerate() {
        let _ = write!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#24292f">{}</text>"##,
            left - 8.0,
            top + cell * (i as f64 + 0.5) + 4.0,
            esc(&labels[i])
        );
        let total: u64 = row.iter().sum();
        for (j, &v) in row.iter().enumerate() {
            let t = v as f64 / max;
            // White to blue; diagonal cells green-tinted so right answers stand out.
            let (r, g, b) = if i == j {
                (255.0 - 200.0 * t, 255.0 - 90.0 * t, 255.0 - 200.0 * t)
            } else {
                (255.0 - 40.0 * t, 255.0 - 180.0 * t, 255.0 - 180.0 * t)
            };
            let ink = if t > 0.55 { "#ffffff" } else { "#24292f" };
            let share = if total > 0 {
                100.0 * v as f64 / total as f64
            } else {
                0.0
            };
            let _ = write!(
                svg,
                r##"<rect x="{:.1}" y="{:.1}" width="{cell}" height="{cell}" fill="rgb({r:.0},{g:.0},{b:.0})" stroke="#ffffff"/><text x="{:.1}" y="{:.1}" font-size="16" text-anchor="middle" fill="{ink}">{v}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{ink}">{share:.1}%</text>"##,
                left + cell * j as f64,
                top + cell * i as f64,
                left + cell * (j as f64 + 0.5),
                top + cell * (i as f64 + 0.5),
                left + cell * (j as f64 + 0.5),
                top + cell * (i as f64 + 0.5) + 18.0,
            );
        }
    }
    let _ = write!(
        svg,
        r##"<text x="12" y="{:.1}" font-size="12" fill="#24292f" transform="rotate(-90 12 {:.1})" text-anchor="middle">true</text></svg>"##,
        top + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0
    );
    Some(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_span_the_data_with_round_ticks() {
        assert_eq!(nice_axis(1.0, 1831.0), (0.0, 2000.0, 500.0));
        let (lo, hi, step) = nice_axis(0.837, 0.881);
        assert!((lo - 0.82).abs() < 1e-9 && (hi - 0.90).abs() < 1e-9 && (step - 0.02).abs() < 1e-9);
        assert_eq!(nice_axis(2.0, 2.0), (1.5, 2.5, 0.25));
        assert_eq!(fmt_tick(0.25), "0.25");
        assert_eq!(fmt_tick(2000.0), "2000");
        assert_eq!(fmt_tick(-0.0), "0");
    }

    #[test]
    fn charts_escape_labels_and_skip_empty_data() {
        let svg = line_chart(
            "loss <script>",
            "step",
            &[Series {
                name: "<b>train</b>".into(),
                color: "#0969da",
                points: vec![(1.0, 0.7), (2.0, 0.5), (3.0, f64::NAN)],
            }],
        )
        .unwrap();
        assert!(svg.contains("loss &lt;script&gt;") && svg.contains("&lt;b&gt;train"));
        assert!(!svg.contains("<script>") && !svg.contains("NaN"));
        assert!(line_chart("x", "y", &[]).is_none());
        let one = [Series {
            name: "a".into(),
            color: "#000",
            points: vec![(-1.0, 50.0)],
        }];
        let bounds = Bounds {
            x: Some((-24.0, 0.0)),
            y: Some((0.0, 100.0)),
        };
        let svg = line_chart_within("t", "x", &one, bounds).unwrap();
        assert!(
            svg.contains(">-20<") && svg.contains(">100<"),
            "the axes span the bounds"
        );
        let cm =
            confusion_matrix(&["neg".into(), "pos".into()], &[vec![8, 2], vec![1, 9]]).unwrap();
        assert!(cm.contains(">8<") && cm.contains("90.0%"));
        assert!(confusion_matrix(&["a".into()], &[vec![1, 2]]).is_none());
        let three = ["negative", "neutral", "positive"].map(String::from);
        let rows = [vec![5, 1, 0], vec![2, 6, 1], vec![0, 1, 7]];
        let cm = confusion_matrix(&three, &rows).unwrap();
        assert!(cm.contains(">neutral<") && cm.contains(">6<") && cm.contains(">7<"));
    }
}
