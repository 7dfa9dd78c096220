//! The report folder (`--report DIR`, by default `target/compare-report`): the table as it was
//! printed, with the targets and the machine (`table.md`), the machine alone (`machine.txt`),
//! and one bar chart per scenario (`<scenario>.svg`): a panel per row, a bar per server.
//!
//! The charts are SVG written as text, every piece of text and every attribute going through
//! one escaping function, so that they are well-formed whatever the labels hold.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::kind::Kind;
use crate::procfs;
use crate::settings::Settings;
use crate::table::{self, Cell, Row, Unit};

/// Written into every chart, so that a later run removes the charts of scenarios it did not
/// run, and nothing else.
const MARKER: &str = "<!-- tower-eventstream compare report -->";

/// Writes the folder and says where; false (after saying why) if it could not be written.
pub fn write(settings: &Settings, rows: &[Row], skipped: &[String], elapsed: Duration) -> bool {
    let dir = settings.report.as_path();
    match write_folder(dir, settings, rows, skipped, elapsed) {
        Ok(()) => {
            println!("report written to {}", dir.display());
            true
        }
        Err(error) => {
            eprintln!("compare: writing the report to {}: {error}", dir.display());
            false
        }
    }
}

fn write_folder(
    dir: &Path,
    settings: &Settings,
    rows: &[Row],
    skipped: &[String],
    elapsed: Duration,
) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    remove_old_charts(dir)?;
    let machine = procfs::machine();
    let mode = if settings.smoke { "smoke run" } else { "full run" };
    let columns: Vec<Kind> = Kind::ALL.into_iter().filter(|k| settings.serves(*k)).collect();
    let groups = group(rows);

    let heading = format!("tower-eventstream compare ({mode})");
    for (stem, title, rows) in &groups {
        let svg = chart(title, &format!("{heading}, {machine}"), &columns, rows, skipped);
        fs::write(dir.join(format!("{stem}.svg")), svg)?;
    }

    let mut md = String::new();
    let _ = writeln!(md, "# {heading}\n");
    let _ = writeln!(md, "{machine}, {:.0} s\n", elapsed.as_secs_f64());
    md.push_str("Ratios are crate (axum::serve) ÷ peer; for latency, memory and CPU lower is better.\n\n");
    md.push_str(&table::print_table(settings, rows, skipped));
    md.push_str("\n\n## Targets\n\n");
    if settings.smoke {
        md.push_str("(a smoke run: too small to judge the targets; run without --smoke)\n");
    } else {
        let _ = write!(md, "```\n{}```\n", table::judge(rows));
    }
    if !groups.is_empty() {
        md.push_str("\n## Charts\n\n");
        for (stem, title, _) in &groups {
            let _ = writeln!(md, "![{title}]({stem}.svg)\n");
        }
    }
    fs::write(dir.join("table.md"), md)?;

    let mut text = String::new();
    let _ = writeln!(text, "{heading}");
    let _ = writeln!(text, "machine: {machine}");
    if let Some(kernel) = read_trimmed("/proc/sys/kernel/osrelease") {
        let _ = writeln!(text, "kernel: {kernel}");
    }
    if let Some(memory) = fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        info.lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .map(|rest| rest.trim().to_owned())
    }) {
        let _ = writeln!(text, "memory: {memory}");
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let _ = writeln!(text, "options: {}", args.join(" "));
    let _ = writeln!(text, "took: {:.0} s", elapsed.as_secs_f64());
    if let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) {
        let _ = writeln!(text, "finished: {} s after the Unix epoch", now.as_secs());
    }
    fs::write(dir.join("machine.txt"), text)?;
    Ok(())
}

fn read_trimmed(path: &str) -> Option<String> {
    fs::read_to_string(path).ok().map(|text| text.trim().to_owned())
}

/// Removes the charts an earlier report left (those holding `MARKER`), so that the folder
/// holds this run's scenarios only.
fn remove_old_charts(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "svg")
            && fs::read_to_string(&path).is_ok_and(|text| text.contains(MARKER))
        {
            fs::remove_file(&path)?;
        }
    }
    Ok(())
}

/// The rows by scenario, in the order they came: (file stem, title, rows).
fn group(rows: &[Row]) -> Vec<(String, String, Vec<&Row>)> {
    let mut groups: Vec<(String, String, Vec<&Row>)> = Vec::new();
    for row in rows {
        let (stem, title) = scenario_of(&row.metric);
        match groups.iter_mut().find(|(s, _, _)| *s == stem) {
            Some((_, _, members)) => members.push(row),
            None => groups.push((stem, title, vec![row])),
        }
    }
    groups
}

/// The scenario a row belongs to, from the start of its label: its file stem (the name
/// `--scenarios` takes) and its title.
fn scenario_of(metric: &str) -> (String, String) {
    const KNOWN: [(&str, &str); 7] = [
        ("fan-out", "fanout"),
        ("latency", "latency"),
        ("long poll", "longpoll"),
        ("idle", "idle"),
        ("notify", "notify"),
        ("churn", "churn"),
        ("encode", "encode"),
    ];
    if let Some((title, stem)) = KNOWN.iter().find(|(title, _)| metric.starts_with(title)) {
        return ((*stem).to_owned(), (*title).to_owned());
    }
    // A scenario not named above: its label up to a colon ("name: …"), else its first word.
    let title = match metric.split_once(':') {
        Some((head, _)) => head.trim(),
        None => metric.split_whitespace().next().unwrap_or(""),
    };
    let stem: String = (title.chars())
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if stem.is_empty() {
        ("other".to_owned(), "other".to_owned())
    } else {
        (stem, title.to_owned())
    }
}

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
        Kind::Axum => "#e07b1a",
        Kind::Ceiling => "#7a7a7a",
        Kind::Nchan => "#3b9a4a",
    }
}

/// One scenario's chart: a heading, then a panel per row with a bar per server.
fn chart(title: &str, subtitle: &str, columns: &[Kind], rows: &[&Row], notes: &[String]) -> String {
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
