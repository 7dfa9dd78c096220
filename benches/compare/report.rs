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

use crate::chart::{chart, MARKER};
use crate::kind::Kind;
use crate::procfs;
use crate::settings::Settings;
use crate::table::{self, Row};

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
