//! One scenario's bar chart, as SVG written as text: a panel per row, a bar per server.
//! Every piece of text and every attribute goes through one escaping function, so that the
//! charts are well-formed whatever the labels hold.

use std::fmt::Write as _;

use crate::kind::Kind;
use crate::table::{self, Cell, Row, Unit};

/// Written into every chart, so that a later run removes the charts of scenarios it did not
/// run, and nothing else.
pub const MARKER: &str = "<!-- tower-eventstream compare report -->";

/// Whether a bigger figure is the better one: rates are; times, memory, CPU and counts of
/// write calls are not.
fn higher_is_better(unit: Unit) -> bool {
    matches!(unit, Unit::PerSecond)
}

const WIDTH: f64 = 900.0;
const MARGIN: f64 = 20.0;
/// Server names end here (right-aligned); bars start a little after.
const NAMES_END: f64 = 170.0;
const BARS_START: f64 = 180.0;
/// The longest bar, leaving room after it for its value.
const BARS_LENGTH: f64 = 440.0;
const BAR_STEP: f64 = 24.0;
const BAR_HEIGHT: f64 = 16.0;
/// Where a panel's bars start, below its title and its "better" line.
const PANEL_HEAD: f64 = 44.0;
const PANEL_GAP: f64 = 18.0;

/// A rough width of `text` at `size` px in a sans-serif face, to keep text inside the chart.
fn text_width(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.58
}

/// Cuts `text` to about `width` px at `size` px.
fn fit(text: &str, size: f64, width: f64) -> String {
    let most = (width / (size * 0.58)) as usize;
    if text.chars().count() <= most {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(most.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

fn color(kind: Kind) -> &'static str {
    match kind {
        Kind::Crate => "#1f5fa8",
        Kind::CrateH1 => "#3d86d6",
        Kind::CrateServer => "#7fb3ea",
        Kind::CrateMetrics => "#5b4fb0",
        Kind::Axum => "#e07b1a",
        Kind::Ceiling => "#7a7a7a",
        Kind::Nchan => "#3b9a4a",
    }
}

/// One scenario's chart: a heading, then a panel per row with a bar per server.
pub fn chart(title: &str, subtitle: &str, columns: &[Kind], rows: &[&Row], notes: &[String]) -> String {
    let panel_height = PANEL_HEAD + columns.len() as f64 * BAR_STEP + PANEL_GAP;
    let top = 74.0;
    let notes_height = if notes.is_empty() {
        0.0
    } else {
        8.0 + 16.0 * notes.len() as f64
    };
    let height = (top + rows.len() as f64 * panel_height + notes_height + MARGIN).ceil();

    let mut svg = Svg::new(WIDTH, height);
    svg.rect(0.0, 0.0, WIDTH, height, "#ffffff");
    svg.text(MARGIN, 32.0, 20.0, Style::bold(), title);
    let width = WIDTH - 2.0 * MARGIN;
    svg.text(MARGIN, 54.0, 12.0, Style::muted(), &fit(subtitle, 12.0, width));
    let mut y = top;
    for row in rows {
        panel(&mut svg, y, columns, row);
        y += panel_height;
    }
    for note in notes {
        y += 16.0;
        svg.text(MARGIN, y, 11.0, Style::muted(), &fit(note, 11.0, width));
    }
    svg.finish()
}

/// One row's panel, its top at `y`.
fn panel(svg: &mut Svg, y: f64, columns: &[Kind], row: &Row) {
    svg.line(MARGIN, y, WIDTH - MARGIN, y, "#d0d0d0");
    svg.text(
        MARGIN,
        y + 19.0,
        14.0,
        Style::bold(),
        &fit(&row.metric, 14.0, WIDTH - 2.0 * MARGIN),
    );
    let higher = higher_is_better(row.unit);
    let better = if higher {
        "↑ higher is better"
    } else {
        "↓ lower is better"
    };
    svg.text(MARGIN, y + 35.0, 11.5, Style::muted(), better);

    // The scale: from zero (or below, for a negative figure) to the largest finite figure.
    let figures: Vec<f64> = (columns.iter())
        .filter_map(|&kind| row.value(kind))
        .filter(|v| v.is_finite())
        .collect();
    let low = figures.iter().copied().fold(0.0_f64, f64::min);
    let high = figures.iter().copied().fold(0.0_f64, f64::max);
    let span = if high > low { high - low } else { 1.0 };
    let at = |v: f64| BARS_START + (v - low) / span * BARS_LENGTH;
    let best = if higher {
        figures.iter().copied().reduce(f64::max)
    } else {
        figures.iter().copied().reduce(f64::min)
    };

    // The best figure is shown in bold, unless every server has it.
    let some_worse = figures.iter().any(|v| Some(*v) != best);

    let bars_top = y + PANEL_HEAD;
    for (i, &kind) in columns.iter().enumerate() {
        let top = bars_top + i as f64 * BAR_STEP;
        let middle = top + BAR_HEIGHT / 2.0 + 4.0;
        svg.text_anchored(NAMES_END, middle, 12.0, Style::plain(), "end", kind.column());
        svg.rect(BARS_START, top, BARS_LENGTH, BAR_HEIGHT, "#f2f2f2");
        match row.cell(kind) {
            Some(Cell::Value(v, note)) if v.is_finite() => {
                let (from, to) = if *v < 0.0 {
                    (at(*v), at(0.0))
                } else {
                    (at(0.0), at(*v))
                };
                svg.rect(from, top, (to - from).max(1.0), BAR_HEIGHT, color(kind));
                let mut label = table::format_value(*v, row.unit);
                if let Some(note) = note {
                    let _ = write!(label, " ({note})");
                }
                let style = if best == Some(*v) && some_worse {
                    Style::bold()
                } else {
                    Style::plain()
                };
                // After the bar, or inside its end when there is no room after it.
                let after = to.max(at(0.0)) + 6.0;
                if after + text_width(&label, 12.0) <= WIDTH - MARGIN / 2.0 {
                    svg.text(after, middle, 12.0, style, &label);
                } else {
                    svg.text_anchored(to - 6.0, middle, 12.0, style.on_bar(kind), "end", &label);
                }
            }
            Some(Cell::Value(v, _)) => {
                let label = table::format_value(*v, row.unit);
                svg.text(BARS_START + 6.0, middle, 12.0, Style::failed(), &label);
            }
            Some(Cell::NotApplicable) => {
                svg.text(BARS_START + 6.0, middle, 12.0, Style::muted(), "n/a");
            }
            Some(Cell::Failed(reason)) => {
                let label = fit(&format!("failed: {reason}"), 12.0, WIDTH - MARGIN - BARS_START);
                svg.text(BARS_START + 6.0, middle, 12.0, Style::failed(), &label);
            }
            None => svg.text(BARS_START + 6.0, middle, 12.0, Style::muted(), "not run"),
        }
    }
    if low < 0.0 {
        let zero = at(0.0);
        let bottom = bars_top + columns.len() as f64 * BAR_STEP;
        svg.line(zero, bars_top - 3.0, zero, bottom, "#555555");
    }
}

/// How a piece of text is drawn.
#[derive(Clone, Copy)]
struct Style {
    fill: &'static str,
    bold: bool,
    italic: bool,
}

impl Style {
    fn plain() -> Style {
        Style {
            fill: "#222222",
            bold: false,
            italic: false,
        }
    }
    fn bold() -> Style {
        Style {
            fill: "#111111",
            bold: true,
            italic: false,
        }
    }
    fn muted() -> Style {
        Style {
            fill: "#6b6b6b",
            bold: false,
            italic: true,
        }
    }
    fn failed() -> Style {
        Style {
            fill: "#b3261e",
            bold: false,
            italic: false,
        }
    }
    /// Over a bar of `kind`'s color: white, or dark on the light one.
    fn on_bar(self, kind: Kind) -> Style {
        let fill = if kind == Kind::CrateServer {
            "#10243d"
        } else {
            "#ffffff"
        };
        Style { fill, ..self }
    }
}

/// An SVG document being written: elements only through the methods below, text and
/// attributes only through `escape`, so the document is well-formed by construction.
struct Svg {
    out: String,
}

impl Svg {
    fn new(width: f64, height: f64) -> Svg {
        let mut out = String::new();
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
             viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\">"
        );
        out.push_str(MARKER);
        out.push('\n');
        Svg { out }
    }

    fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, fill: &str) {
        let _ = writeln!(
            self.out,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{height:.1}\" fill=\"{}\"/>",
            escape(fill)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, stroke: &str) {
        let _ = writeln!(
            self.out,
            "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{}\" stroke-width=\"1\"/>",
            escape(stroke)
        );
    }

    fn text(&mut self, x: f64, y: f64, size: f64, style: Style, text: &str) {
        self.text_anchored(x, y, size, style, "start", text);
    }

    fn text_anchored(&mut self, x: f64, y: f64, size: f64, style: Style, anchor: &str, text: &str) {
        let _ = write!(
            self.out,
            "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" fill=\"{}\" text-anchor=\"{}\"",
            escape(style.fill),
            escape(anchor)
        );
        if style.bold {
            self.out.push_str(" font-weight=\"bold\"");
        }
        if style.italic {
            self.out.push_str(" font-style=\"italic\"");
        }
        let _ = writeln!(self.out, ">{}</text>", escape(text));
    }

    fn finish(mut self) -> String {
        self.out.push_str("</svg>\n");
        self.out
    }
}

/// `text` fit for an XML attribute or element: markup characters escaped, and characters
/// XML does not allow (control characters) dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(' '),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}
