//! The figures: Redis's `INFO` counters, the table's rows, their medians.

use std::collections::HashMap;

use crate::must;

/// The table's columns.
pub const HEADER: &str = "| scenario | topics | appends/s offered | achieved | Redis µs/append (commandstats) \
    | Redis µs/append (INFO cpu) | top commands (calls/append × µs/call) | subscribe all (s) \
    | one more p50/p99 (ms) | append→receive p50/p99 (ms) | received/appended |\n|---|---|---|---|---|---|---|---|---|---|---|";

/// `INFO commandstats` as name → (µs, calls), and `INFO cpu` (sys + user) in µs.
pub async fn info(connection: &mut redis::aio::MultiplexedConnection) -> (HashMap<String, (u64, u64)>, f64) {
    let mut command = redis::cmd("INFO");
    command.arg("commandstats").arg("cpu");
    let text: String = must(command.query_async(connection).await, "INFO");
    let (mut commands, mut cpu_us) = (HashMap::new(), 0.0);
    for (key, value) in text.lines().filter_map(|line| line.trim().split_once(':')) {
        if let Some(name) = key.strip_prefix("cmdstat_") {
            let field = |f| value.split(',').find_map(|kv| kv.strip_prefix(f)?.parse().ok());
            let (us, calls) = (field("usec=").unwrap_or(0), field("calls=").unwrap_or(0));
            commands.insert(name.to_owned(), (us, calls));
        } else if key == "used_cpu_sys" || key == "used_cpu_user" {
            cpu_us += value.parse::<f64>().unwrap_or(0.0) * 1e6;
        }
    }
    (commands, cpu_us)
}

/// One table row. `figures`: achieved appends/s, commandstats µs and cpu µs per append,
/// subscribe all (s), one more p50 and p99, append→receive p50 and p99 (ms).
#[derive(Clone, Default)]
pub struct Row {
    pub scenario: String,
    pub topics: usize,
    pub offered: u64,
    pub figures: [f64; 8],
    pub top: String,
    pub received: u64,
    pub appended: u64,
    pub trouble: String,
}

pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let at = ((values.len().max(1) - 1) as f64 * p).round() as usize;
    values.get(at).copied().unwrap_or(f64::NAN)
}

pub fn p50_p99(values: &mut [f64]) -> [f64; 2] {
    [percentile(values, 0.5), percentile(values, 0.99)]
}

pub fn print_row(r: &Row) {
    let (got, sent) = (r.received, r.appended);
    let mut count = format!("{got}/{sent}");
    if got != sent {
        let word = if got < sent { "LOST" } else { "DUPLICATE" };
        count += &format!(" **{word} {}**", got.abs_diff(sent));
    }
    let (scenario, topics, offered, top, trouble) = (&r.scenario, r.topics, r.offered, &r.top, &r.trouble);
    let [achieved, commands, cpu, all, one50, one99, p50, p99] = r.figures;
    println!(
        "| {scenario} | {topics} | {offered} | {achieved:.0} | {commands:.1} | {cpu:.1} | {top} | {all:.3} \
        | {one50:.2} / {one99:.2} | {p50:.2} / {p99:.2} | {count}{trouble} |"
    );
}

/// The median of each figure over the rounds; the top commands of the round nearest the median.
pub fn median(rows: &[Row], scenario: &str) -> Row {
    let mut row = rows[0].clone();
    row.scenario = format!("{scenario}, median of {}", rows.len());
    for i in 0..row.figures.len() {
        let mut values: Vec<f64> = rows.iter().map(|r| r.figures[i]).collect();
        row.figures[i] = percentile(&mut values, 0.5);
    }
    let off = |r: &&Row| (r.figures[1] - row.figures[1]).abs();
    let nearest = rows.iter().min_by(|a, b| off(a).total_cmp(&off(b)));
    row.top = nearest.map(|r| r.top.clone()).unwrap_or_default();
    row.received = rows.iter().map(|r| r.received).sum();
    row.appended = rows.iter().map(|r| r.appended).sum();
    row.trouble = rows.iter().map(|r| r.trouble.as_str()).collect();
    row
}
