//! `sonicforge-loadtests compare`: one table of several swarm reports side by side
//! (servers in rows), as `make loadtest-vs-icecast` prints per write granularity.

use serde_json::Value;

/// `sonicforge-loadtests compare`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompareArgs {
    /// Heading printed above the table.
    #[arg(long, default_value = "side by side")]
    pub title: String,
    /// Print a Markdown table (for docs/PERFORMANCE.md) instead of aligned text.
    #[arg(long)]
    pub markdown: bool,
    /// `NAME=PATH` of a swarm's JSON report (`--report`), one per row.
    #[arg(required = true)]
    pub reports: Vec<String>,
}

/// Why the table cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{found:?} is not NAME=PATH")]
    Argument { found: String },
    #[error("cannot read report {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("report {path} is not JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
}

/// One server's row: the figures of one swarm report.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub listeners: u64,
    pub established: u64,
    pub kept_up: u64,
    /// Sessions that ended before the run did, for any reason.
    pub disconnects: u64,
    pub cpu_per_listener_hour: Option<f64>,
    /// The same, less the server's idle CPU (measured before the first listener).
    pub listener_cpu_per_listener_hour: Option<f64>,
    pub idle_cpu_percent: Option<f64>,
    pub rss_per_listener_kib: Option<f64>,
    pub first_audio_p50_ms: Option<f64>,
    pub first_audio_p99_ms: Option<f64>,
    pub gap_p99_ms: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    pub load_average: Option<f64>,
    /// Cores other processes kept busy during the steady window.
    pub other_cores: Option<f64>,
}

impl Row {
    /// Reads the figures of a swarm report. Reports from one transport are expected;
    /// counts are summed over every transport's totals, distributions are the first's.
    pub fn of(name: &str, report: &Value) -> Self {
        let totals = report["totals"].as_array().cloned().unwrap_or_default();
        let sum = |field: &str| {
            totals
                .iter()
                .map(|total| total[field].as_u64().unwrap_or(0))
                .sum::<u64>()
        };
        let disconnects = totals
            .iter()
            .flat_map(|total| total["ends"].as_object().cloned().unwrap_or_default())
            .filter(|(reason, _)| reason != "run_ended")
            .map(|(_, count)| count.as_u64().unwrap_or(0))
            .sum();
        let first = totals.first().cloned().unwrap_or(Value::Null);
        let server = &report["server"];
        Self {
            name: name.to_owned(),
            listeners: report["run"]["listeners"].as_u64().unwrap_or(0),
            established: sum("established"),
            kept_up: sum("kept_up"),
            disconnects,
            cpu_per_listener_hour: server["cpu_secs_per_listener_hour"].as_f64(),
            listener_cpu_per_listener_hour: server["listener_cpu_secs_per_listener_hour"].as_f64(),
            idle_cpu_percent: server["idle_cpu_percent"].as_f64(),
            rss_per_listener_kib: server["rss_per_listener_kib"].as_f64(),
            first_audio_p50_ms: first["time_to_first_audio_ms"]["p50"].as_f64(),
            first_audio_p99_ms: first["time_to_first_audio_ms"]["p99"].as_f64(),
            gap_p99_ms: first["gap_ms"]["p99"].as_f64(),
            latency_p50_ms: first["latency_ms"]["p50"].as_f64(),
            latency_p99_ms: first["latency_ms"]["p99"].as_f64(),
            load_average: report["machine"]["load_average_after_ramp"].as_f64(),
            other_cores: report["machine"]["steady_other_cores"].as_f64(),
        }
    }
}

const HEADINGS: [&str; 13] = [
    "server",
    "established",
    "kept up",
    "disconnects",
    "CPU-s/listener-h",
    "above idle",
    "idle CPU %",
    "RSS KiB/listener",
    "first audio p50/p99 ms",
    "gap p99 ms",
    "latency p50/p99 ms",
    "load",
    "other cores",
];

fn figure(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |value| format!("{value:.decimals$}"))
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (None, None) => "-".to_owned(),
        _ => format!("{} / {}", figure(a, 0), figure(b, 0)),
    }
}

impl Row {
    fn cells(&self) -> [String; 13] {
        [
            self.name.clone(),
            format!("{}/{}", self.established, self.listeners),
            format!("{}/{}", self.kept_up, self.listeners),
            self.disconnects.to_string(),
            figure(self.cpu_per_listener_hour, 3),
            figure(self.listener_cpu_per_listener_hour, 3),
            figure(self.idle_cpu_percent, 1),
            figure(self.rss_per_listener_kib, 2),
            pair(self.first_audio_p50_ms, self.first_audio_p99_ms),
            figure(self.gap_p99_ms, 0),
            pair(self.latency_p50_ms, self.latency_p99_ms),
            figure(self.load_average, 2),
            figure(self.other_cores, 2),
        ]
    }
}

/// The rows as aligned text or a Markdown table.
pub fn table(title: &str, rows: &[Row], markdown: bool) -> String {
    let cells: Vec<[String; 13]> = rows.iter().map(Row::cells).collect();
    let mut out = String::new();
    if markdown {
        out.push_str(&format!("| {} |\n", HEADINGS.join(" | ")));
        out.push_str(&format!("|{}\n", " --- |".repeat(HEADINGS.len())));
        for row in &cells {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
        }
        return out;
    }
    let widths: Vec<usize> = (0..HEADINGS.len())
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].len())
                .chain([HEADINGS[column].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    out.push_str(&format!("== {title} ==\n"));
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:>width$}"))
            .collect::<Vec<_>>()
            .join("  ")
            + "\n"
    };
    out.push_str(&line(HEADINGS.to_vec()));
    for row in &cells {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Reads every report and prints the table.
pub fn run(args: &CompareArgs) -> Result<String, CompareError> {
    let mut rows = Vec::with_capacity(args.reports.len());
    for argument in &args.reports {
        let Some((name, path)) = argument.split_once('=') else {
            return Err(CompareError::Argument {
                found: argument.clone(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| CompareError::Read {
            path: path.to_owned(),
            source,
        })?;
        let report: Value = serde_json::from_str(&text).map_err(|source| CompareError::Json {
            path: path.to_owned(),
            source,
        })?;
        rows.push(Row::of(name, &report));
    }
    Ok(table(&args.title, &rows, args.markdown))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report() -> Value {
        json!({
            "run": { "listeners": 1000 },
            "totals": [{
                "established": 1000,
                "kept_up": 998,
                "ends": { "run_ended": 998, "server_closed: stalled (1008)": 2 },
                "time_to_first_audio_ms": { "p50": 12.0, "p99": 80.5 },
                "gap_ms": { "p99": 41.0 },
                "latency_ms": { "p50": 30.0, "p99": 61.0 }
            }],
            "server": {
                "cpu_secs_per_listener_hour": 0.5,
                "listener_cpu_secs_per_listener_hour": 0.25,
                "idle_cpu_percent": 3.5,
                "rss_per_listener_kib": 2.25
            },
            "machine": { "load_average_after_ramp": 1.5, "steady_other_cores": 0.1 }
        })
    }

    #[test]
    fn row_takes_the_figures_of_a_report() {
        let row = Row::of("sonicforge ws", &report());
        assert_eq!(row.established, 1000);
        assert_eq!(row.kept_up, 998);
        assert_eq!(row.disconnects, 2);
        assert_eq!(row.listener_cpu_per_listener_hour, Some(0.25));
        assert_eq!(row.first_audio_p99_ms, Some(80.5));
        assert_eq!(row.latency_p99_ms, Some(61.0));
    }

    #[test]
    fn missing_figures_show_as_dashes() {
        let row = Row::of(
            "icecast",
            &json!({ "run": { "listeners": 10 }, "totals": [] }),
        );
        let text = table("20 ms", &[row], false);
        assert!(text.starts_with("== 20 ms ==\n"), "{text}");
        assert!(text.lines().nth(2).unwrap().contains("0/10"), "{text}");
        assert!(
            text.lines().nth(2).unwrap().trim_end().ends_with('-'),
            "{text}"
        );
    }

    #[test]
    fn markdown_table_has_a_row_per_report() {
        let rows = [Row::of("a", &report()), Row::of("b", &report())];
        let text = table("x", &rows, true);
        assert_eq!(text.lines().count(), 4);
        assert!(
            text.contains("| a | 1000/1000 | 998/1000 | 2 | 0.500 | 0.250 |"),
            "{text}"
        );
    }

    #[test]
    fn argument_without_a_name_is_refused() {
        let args = CompareArgs {
            title: String::new(),
            markdown: false,
            reports: vec!["report.json".into()],
        };
        assert!(matches!(run(&args), Err(CompareError::Argument { .. })));
    }
}
