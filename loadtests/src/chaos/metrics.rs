//! Just enough of the Prometheus text format for the chaos checks: samples with their
//! labels, sums over the labels that do not matter, and histogram quantiles
//! interpolated within buckets the way Prometheus's `histogram_quantile` does.

use std::collections::BTreeMap;

/// Label names and values, in the order written.
type Labels = Vec<(String, String)>;

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(label, _)| label == name)
            .map(|(_, value)| value.as_str())
    }

    fn matches(&self, name: &str, selector: &[(&str, &str)]) -> bool {
        self.name == name
            && selector
                .iter()
                .all(|(label, value)| self.label(label) == Some(*value))
    }
}

/// Why a line of the exposition is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line_number}: {reason}: {line:?}")]
pub struct MetricsError {
    pub line_number: usize,
    pub line: String,
    pub reason: &'static str,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    samples: Vec<Sample>,
}

impl Metrics {
    /// Parses the text format; comments and blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self, MetricsError> {
        let samples = text
            .lines()
            .enumerate()
            .filter(|(_, line)| {
                let line = line.trim();
                !line.is_empty() && !line.starts_with('#')
            })
            .map(|(index, line)| {
                parse_line(line.trim()).map_err(|reason| MetricsError {
                    line_number: index + 1,
                    line: line.chars().take(200).collect(),
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { samples })
    }

    /// The sum of every sample of `name` whose labels include `selector` (0 when none).
    pub fn sum(&self, name: &str, selector: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.matches(name, selector))
            .map(|sample| sample.value)
            .sum()
    }

    /// Sums of the samples of `name` matching `selector`, by the value of `label`.
    pub fn sum_by(
        &self,
        name: &str,
        selector: &[(&str, &str)],
        label: &str,
    ) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for sample in self.samples.iter().filter(|s| s.matches(name, selector)) {
            let key = sample.label(label).unwrap_or_default().to_owned();
            *sums.entry(key).or_insert(0.0) += sample.value;
        }
        sums
    }

    /// The histogram `name` (its `_bucket`, `_sum` and `_count` series) over every
    /// series matching `selector`, buckets of the same bound added together.
    pub fn histogram(&self, name: &str, selector: &[(&str, &str)]) -> Histogram {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for sample in self
            .samples
            .iter()
            .filter(|s| s.matches(&bucket_name, selector))
        {
            let Some(bound) = sample.label("le").and_then(parse_value) else {
                continue;
            };
            match buckets.iter_mut().find(|(le, _)| *le == bound) {
                Some((_, count)) => *count += sample.value,
                None => buckets.push((bound, sample.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram {
            buckets,
            sum: self.sum(&format!("{name}_sum"), selector),
            count: self.sum(&format!("{name}_count"), selector),
        }
    }
}

/// A cumulative histogram: `(upper bound, observations at or below it)`, by bound.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// What was observed between `before` and `self` (a counter reset reads as zero).
    pub fn since(&self, before: &Histogram) -> Histogram {
        let earlier = |bound: f64| {
            before
                .buckets
                .iter()
                .find(|(le, _)| *le == bound)
                .map_or(0.0, |(_, count)| *count)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| (le, (count - earlier(le)).max(0.0)))
                .collect(),
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// Observations in the histogram (the `+Inf` bucket, else the largest bucket).
    pub fn total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |(_, count)| *count)
    }

    /// The `q` quantile (0..=1), interpolated linearly within its bucket; the lowest
    /// bucket starts at 0. A quantile in the `+Inf` bucket is the largest finite bound.
    /// `None` when the histogram is empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total.is_nan() || total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let position = self.buckets.iter().position(|(_, count)| *count >= rank)?;
        let (upper, count) = self.buckets[position];
        let (lower, below) = match position {
            0 => (0.0_f64.min(upper), 0.0),
            _ => self.buckets[position - 1],
        };
        if upper.is_infinite() {
            return Some(lower);
        }
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

/// A sample value: a float, `+Inf`, `-Inf` or `NaN`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

fn parse_line(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name");
    }
    let mut rest = line[name_end..].trim_start();
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("value is not a number")?;
    if let Some(timestamp) = fields.next()
        && timestamp.parse::<i64>().is_err()
    {
        return Err("timestamp is not an integer");
    }
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `label="value",...}` and returns the labels and the text after the `}`.
fn parse_labels(mut text: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (name, after_name) = text.split_once('=').ok_or("label without '='")?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name");
        }
        let mut chars = after_name
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value is not quoted")?
            .char_indices();
        let mut value = String::new();
        let end = loop {
            match chars.next() {
                None => return Err("unterminated label value"),
                Some((at, '"')) => break at,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped @ ('\\' | '"'))) => value.push(escaped),
                    _ => return Err("bad escape in a label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_owned(), value));
        let quoted = after_name.trim_start();
        // Skip the opening quote, the value and the closing quote.
        text = quoted[1 + end + 1..].trim_start();
        text = text.strip_prefix(',').unwrap_or(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# HELP sonicforge_actor_restarts_total Actors restarted.
# TYPE sonicforge_actor_restarts_total counter
sonicforge_actor_restarts_total{station="main",actor="mixer",reason="panic"} 3
sonicforge_actor_restarts_total{station="main",actor="mixer",reason="stopped"} 2
sonicforge_actor_restarts_total{station="main",actor="encoder",reason="stopped"} 1
sonicforge_actor_restarts_total{station="other",actor="mixer",reason="stopped"} 7

# TYPE sonicforge_actor_restart_seconds histogram
sonicforge_actor_restart_seconds_bucket{station="main",actor="mixer",le="0.001"} 1
sonicforge_actor_restart_seconds_bucket{station="main",actor="mixer",le="0.01"} 3
sonicforge_actor_restart_seconds_bucket{station="main",actor="mixer",le="0.1"} 5
sonicforge_actor_restart_seconds_bucket{station="main",actor="mixer",le="+Inf"} 5
sonicforge_actor_restart_seconds_sum{station="main",actor="mixer"} 0.12
sonicforge_actor_restart_seconds_count{station="main",actor="mixer"} 5
sonicforge_listeners{station="main",note="a \"quoted\" \\ value\nnext"} 12 1700000000000
process_start_time_seconds 1.7e9
"#;

    #[test]
    fn samples_are_summed_over_the_labels_left_out() {
        let metrics = Metrics::parse(EXPOSITION).unwrap();
        let restarts = "sonicforge_actor_restarts_total";
        assert_eq!(
            metrics.sum(restarts, &[("station", "main"), ("actor", "mixer")]),
            5.0
        );
        assert_eq!(metrics.sum(restarts, &[("actor", "mixer")]), 12.0);
        assert_eq!(
            metrics.sum(restarts, &[("station", "main"), ("actor", "listener")]),
            0.0
        );
        assert_eq!(
            metrics.sum_by(restarts, &[("station", "main")], "actor"),
            BTreeMap::from([("encoder".to_owned(), 1.0), ("mixer".to_owned(), 5.0)])
        );
        assert_eq!(metrics.sum("process_start_time_seconds", &[]), 1.7e9);
    }

    #[test]
    fn label_values_are_unescaped_and_timestamps_accepted() {
        let metrics = Metrics::parse(EXPOSITION).unwrap();
        let sample = metrics
            .samples
            .iter()
            .find(|sample| sample.name == "sonicforge_listeners")
            .unwrap();
        assert_eq!(sample.label("note"), Some("a \"quoted\" \\ value\nnext"));
        assert_eq!(sample.value, 12.0);
    }

    #[test]
    fn odd_but_valid_lines_parse() {
        let metrics = Metrics::parse(
            "a_total 1\nb{} 2\nc{x=\"1\",} 3\nd { x = \"}\" , y=\"\" } NaN\ne{le=\"+Inf\"} +Inf\n",
        )
        .unwrap();
        assert_eq!(metrics.samples.len(), 5);
        assert_eq!(metrics.sum("c", &[("x", "1")]), 3.0);
        assert_eq!(
            metrics.samples[3].labels[0],
            ("x".to_owned(), "}".to_owned())
        );
        assert_eq!(
            metrics.samples[3].labels[1],
            ("y".to_owned(), String::new())
        );
        assert!(metrics.samples[3].value.is_nan());
        assert_eq!(metrics.samples[4].value, f64::INFINITY);
    }

    #[test]
    fn malformed_lines_are_errors_naming_the_line() {
        for (text, reason) in [
            ("ok 1\n{x=\"1\"} 2", "no metric name"),
            ("ok 1\nname", "no value"),
            ("ok 1\nname{x=\"1\" 2", "label without '='"),
            ("ok 1\nname{x=1} 2", "label value is not quoted"),
            ("ok 1\nname{x=\"1} 2", "unterminated label value"),
            ("ok 1\nname{x=\"\\t\"} 2", "bad escape in a label value"),
            ("ok 1\nname one", "value is not a number"),
            ("ok 1\nname 1 2 3", "text after the timestamp"),
        ] {
            let error = Metrics::parse(text).unwrap_err();
            assert_eq!((error.line_number, error.reason), (2, reason), "{text:?}");
        }
    }

    #[test]
    fn histogram_adds_series_and_subtracts_an_earlier_scrape() {
        let metrics = Metrics::parse(EXPOSITION).unwrap();
        let histogram = metrics.histogram(
            "sonicforge_actor_restart_seconds",
            &[("station", "main"), ("actor", "mixer")],
        );
        assert_eq!(
            histogram.buckets,
            [(0.001, 1.0), (0.01, 3.0), (0.1, 5.0), (f64::INFINITY, 5.0)]
        );
        assert_eq!((histogram.sum, histogram.count), (0.12, 5.0));
        let before = Histogram {
            buckets: vec![(0.001, 1.0), (0.01, 1.0), (0.1, 1.0), (f64::INFINITY, 1.0)],
            sum: 0.0005,
            count: 1.0,
        };
        let delta = histogram.since(&before);
        assert_eq!(
            delta.buckets,
            [(0.001, 0.0), (0.01, 2.0), (0.1, 4.0), (f64::INFINITY, 4.0)]
        );
        assert_eq!(delta.total(), 4.0);
        assert!(metrics.histogram("missing", &[]).quantile(0.5).is_none());
    }

    #[test]
    fn quantile_interpolates_within_its_bucket() {
        let histogram = Histogram {
            buckets: vec![
                (0.01, 10.0),
                (0.05, 30.0),
                (0.1, 40.0),
                (f64::INFINITY, 40.0),
            ],
            sum: 0.0,
            count: 40.0,
        };
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-12);
        // Rank 20 is halfway through the (0.01, 0.05] bucket's twenty observations.
        assert!(close(histogram.quantile(0.5), 0.03));
        // Rank 2 of the first bucket, which starts at zero.
        assert!(close(histogram.quantile(0.05), 0.002));
        // Rank 39.6 is 96% through the (0.05, 0.1] bucket's ten.
        assert!(close(histogram.quantile(0.99), 0.098));
        assert!(close(histogram.quantile(1.0), 0.1));
        assert!(close(histogram.quantile(0.0), 0.0));
        assert_eq!(histogram.quantile(1.5), None);
    }

    #[test]
    fn quantile_in_the_infinite_bucket_is_the_largest_finite_bound() {
        let histogram = Histogram {
            buckets: vec![(0.01, 1.0), (0.05, 2.0), (f64::INFINITY, 10.0)],
            sum: 0.0,
            count: 10.0,
        };
        assert_eq!(histogram.quantile(0.99), Some(0.05));
        assert_eq!(Histogram::default().quantile(0.5), None);
    }
}
