//! The results: one row per metric, one cell per server; printed as a Markdown table with
//! the ratios of this crate to its peers, and judged against the README's targets.

use crate::kind::Kind;
use crate::settings::Settings;

/// One server's figure for one metric.
#[derive(Clone)]
pub enum Cell {
    /// A figure, and a note shown after it.
    Value(f64, Option<String>),
    NotApplicable,
    Failed(String),
}

impl Cell {
    /// A figure, noted `incomplete` if the server did not deliver everything in time.
    pub fn measured(value: f64, complete: bool) -> Cell {
        Cell::Value(value, (!complete).then(|| "incomplete".to_owned()))
    }
}

/// How a row's figures are shown.
#[derive(Clone, Copy)]
pub enum Unit {
    PerSecond,
    Millis,
    KiB,
    Micros,
    Percent,
    /// A plain count (write calls per subscriber).
    Count,
}

/// One metric: its label, its unit and each server's cell.
pub struct Row {
    pub metric: String,
    pub unit: Unit,
    cells: Vec<(Kind, Cell)>,
}

impl Row {
    pub fn new(metric: impl Into<String>, unit: Unit) -> Row {
        Row {
            metric: metric.into(),
            unit,
            cells: Vec::new(),
        }
    }

    /// `kind`'s cell, if it was set.
    pub fn cell(&self, kind: Kind) -> Option<&Cell> {
        self.cells.iter().find(|(k, _)| *k == kind).map(|(_, cell)| cell)
    }

    pub fn value(&self, kind: Kind) -> Option<f64> {
        self.cells.iter().find_map(|(k, cell)| match cell {
            Cell::Value(v, _) if *k == kind && !v.is_nan() => Some(*v),
            _ => None,
        })
    }

    /// Sets `kind`'s cell, silently (for n/a).
    pub fn set(&mut self, kind: Kind, cell: Cell) {
        self.cells.retain(|(k, _)| *k != kind);
        self.cells.push((kind, cell));
    }

    /// Sets `kind`'s cell from `result`, and prints it; false if `result` is an error (shown
    /// as `failed:` in the table).
    pub fn report(&mut self, kind: Kind, result: Result<Cell, String>) -> bool {
        let ok = result.is_ok();
        let cell = result.unwrap_or_else(|error| {
            eprintln!("  {}: {}: {error}", kind.name(), self.metric);
            Cell::Failed(error.chars().take(60).collect())
        });
        println!(
            "  {:<9} {:<34} {}",
            kind.name(),
            self.metric,
            format_cell(Some(&cell), self.unit)
        );
        self.set(kind, cell);
        ok
    }
}

pub fn format_value(value: f64, unit: Unit) -> String {
    if value.is_infinite() {
        return "over the limit: not all delivered".to_owned();
    }
    match unit {
        Unit::PerSecond if value >= 1e6 => format!("{:.2} M/s", value / 1e6),
        Unit::PerSecond => format!("{:.0} k/s", value / 1e3),
        Unit::Millis => format!("{value:.2} ms"),
        Unit::KiB => format!("{value:.1} KiB"),
        Unit::Micros => format!("{value:.2} µs"),
        Unit::Percent => format!("{value:.3} %"),
        Unit::Count => format!("{value:.1}"),
    }
}

fn format_cell(cell: Option<&Cell>, unit: Unit) -> String {
    match cell {
        None => "–".to_owned(),
        Some(Cell::NotApplicable) => "n/a".to_owned(),
        Some(Cell::Failed(reason)) => format!("failed: {reason}"),
        Some(Cell::Value(v, note)) => {
            let text = format_value(*v, unit);
            match note {
                Some(note) => format!("{text} ({note})"),
                None => text,
            }
        }
    }
}

fn ratio(row: &Row, of: Kind, to: Kind) -> Option<f64> {
    Some(row.value(of)? / row.value(to)?)
}

fn format_ratio(r: Option<f64>) -> String {
    match r {
        Some(r) if r.is_finite() && r > 0.0 => format!("{r:.2}×"),
        // One side never delivered everything: no ratio to give.
        _ => "–".to_owned(),
    }
}

/// The Markdown table: a column per server asked for, then the ratios of this crate
/// (`axum::serve`) to axum, the ceiling and Nchan, then the notes on what was skipped.
pub fn print_table(settings: &Settings, rows: &[Row], skipped: &[String]) -> String {
    let mut out = String::new();
    let columns: Vec<Kind> = Kind::ALL.into_iter().filter(|k| settings.serves(*k)).collect();
    out.push_str("| scenario | ");
    for kind in &columns {
        out.push_str(kind.column());
        out.push_str(" | ");
    }
    out.push_str("crate/axum | crate/ceiling | crate/Nchan |\n|---|");
    for _ in 0..columns.len() + 3 {
        out.push_str("---|");
    }
    out.push('\n');
    for row in rows {
        out.push_str(&format!("| {} | ", row.metric));
        for kind in &columns {
            let cell = row.cells.iter().find(|(k, _)| k == kind).map(|(_, c)| c);
            out.push_str(&format_cell(cell, row.unit));
            out.push_str(" | ");
        }
        for peer in [Kind::Axum, Kind::Ceiling, Kind::Nchan] {
            out.push_str(&format_ratio(ratio(row, Kind::Crate, peer)));
            out.push_str(" | ");
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    for note in skipped {
        out.push_str(&format!("\n{note}"));
    }
    out
}

/// "Well under 1 % of a core": half of it, so that a server that merely scrapes under 1 %
/// is not counted as meeting the target.
const WELL_UNDER_ONE_PERCENT: f64 = 0.5;

/// The targets of the README, judged on the ratios of this run, for both ways of serving
/// this crate.
pub fn judge(rows: &[Row]) -> String {
    let find = |prefix: &str| rows.iter().find(|row| row.metric.starts_with(prefix));
    let mut out = String::new();
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    };
    for kind in [Kind::Crate, Kind::CrateH1, Kind::CrateServer] {
        out.push_str(&format!("targets for {}:\n", kind.column()));
        // Each fan-out size has its row; the targets are the same for all of them.
        for row in rows
            .iter()
            .filter(|row| row.metric.starts_with("fan-out deliveries"))
        {
            let axum = ratio(row, kind, Kind::Axum);
            let ceiling = ratio(row, kind, Kind::Ceiling);
            let sizes = row.metric.trim_start_matches("fan-out deliveries/s ");
            out.push_str(&format!(
                "  fan-out {sizes}: ≥ 3× axum: {} ({}); ≥ 0.7× ceiling: {} ({})\n",
                format_ratio(axum),
                verdict(axum.map(|r| r >= 3.0)),
                format_ratio(ceiling),
                verdict(ceiling.map(|r| r >= 0.7)),
            ));
        }
        for row in rows
            .iter()
            .filter(|row| row.metric.starts_with("fan-out publish-to-receive p99"))
        {
            let r = ratio(row, kind, Kind::Ceiling);
            let sizes = row.metric.trim_start_matches("fan-out publish-to-receive p99 ");
            out.push_str(&format!(
                "  fan-out p99 {sizes} ≤ 1.2× ceiling's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r <= 1.2))
            ));
        }
        if let Some(row) = find("latency p99") {
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  latency p99 ≤ axum's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r <= 1.0))
            ));
        }
        if let Some(row) = find("idle memory") {
            let own = row.value(kind);
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  idle memory ≤ 8 KiB/connection: {} ({}); ≤ 0.5× axum: {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::KiB)),
                verdict(own.map(|v| v <= 8.0)),
                format_ratio(r),
                verdict(r.map(|r| r <= 0.5)),
            ));
        }
        if let Some(row) = find("idle CPU") {
            let own = row.value(kind);
            out.push_str(&format!(
                "  idle cost well under 1 % of a core (≤ 0.5 %): {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::Percent)),
                verdict(own.map(|v| v <= WELL_UNDER_ONE_PERCENT)),
            ));
        }
        // The topic scenarios, for the servers they ran on (medians of their rounds).
        let ran = |row: &&Row| row.value(kind).is_some();
        if let Some(row) = find("notify: memory").filter(ran) {
            let own = row.value(kind);
            out.push_str(&format!(
                "  notify memory ≤ 4 KiB per idle topic + subscriber: {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::KiB)),
                verdict(own.map(|v| v <= 4.0)),
            ));
        }
        if let Some(row) = find("notify: deliveries").filter(ran) {
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  notify deliveries/s ≥ 3× axum's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r >= 3.0))
            ));
        }
        if let Some(row) = find("notify: publish-to-receive p99").filter(ran) {
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  notify p99 ≤ axum's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r <= 1.0))
            ));
        }
        if let Some(row) = find("churn: RSS growth").filter(ran) {
            let own = row.value(kind);
            out.push_str(&format!(
                "  churn RSS growth ≤ 5 %: {} ({})\n",
                own.map_or("–".to_owned(), |v| format_value(v, Unit::Percent)),
                verdict(own.map(|v| v <= 5.0)),
            ));
        }
        if let Some(row) = find("long poll deliveries") {
            let r = ratio(row, kind, Kind::Nchan);
            out.push_str(&format!(
                "  long poll ≥ Nchan's deliveries/s: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r >= 1.0))
            ));
        }
        if let Some(row) = find("pollcap: saturation").filter(ran) {
            let nchan = ratio(row, kind, Kind::Nchan);
            let ceiling = ratio(row, kind, Kind::Ceiling);
            out.push_str(&format!(
                "  long-poll saturation ≥ 2× Nchan's: {} ({}); ≥ 0.7× the ceiling's: {} ({})\n",
                format_ratio(nchan),
                verdict(nchan.map(|r| r >= 2.0)),
                format_ratio(ceiling),
                verdict(ceiling.map(|r| r >= 0.7)),
            ));
        }
        if let Some(row) = find("reconnect: resumes").filter(ran) {
            let r = ratio(row, kind, Kind::Axum);
            out.push_str(&format!(
                "  connection churn ≥ axum's: {} ({})\n",
                format_ratio(r),
                verdict(r.map(|r| r >= 1.0))
            ));
        }
    }
    // The cost of the `metrics` feature: the same server with a recorder, beside it.
    for row in rows
        .iter()
        .filter(|row| row.metric.starts_with("fan-out deliveries"))
    {
        if let Some(r) = ratio(row, Kind::CrateMetrics, Kind::Crate) {
            let sizes = row.metric.trim_start_matches("fan-out deliveries/s ");
            out.push_str(&format!(
                "metrics on, fan-out {sizes}: ≥ 0.95× without: {} ({})\n",
                format_ratio(Some(r)),
                verdict(Some(r >= 0.95))
            ));
        }
    }
    out
}
