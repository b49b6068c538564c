//! A small writer for the Prometheus text exposition format (version 0.0.4).
//!
//! Samples may be added in any order: the writer groups them by metric family and
//! writes each family's `# HELP` and `# TYPE` once, followed by all of its samples, as
//! the format requires. Metric and label names are sanitised to the allowed characters
//! (anything else becomes `_`); label values and help texts are escaped. A sample whose
//! family was already declared with another type is dropped and counted in
//! [`PromWriter::conflicts`] (it would make the whole scrape invalid).
//!
//! Conventions for callers: counters end in `_total`, units are base units
//! (`_bytes`, `_seconds`).
//!
//! ```
//! use fulcrum::admin::PromWriter;
//! let mut w = PromWriter::new();
//! w.counter("fulcrum_packets_total", "Packets forwarded.", &[("service", "web")], 42);
//! w.gauge("fulcrum_backend_healthy", "1 if the backend is healthy.", &[("backend", "10.0.0.1")], 1.0);
//! let mut out = String::new();
//! w.finish(&mut out);
//! assert!(out.contains("fulcrum_packets_total{service=\"web\"} 42\n"));
//! ```

use std::collections::HashMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// `Content-Type` of a scrape in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Quantiles written for histograms: p50, p90, p99.
pub const QUANTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// The `# TYPE` of a metric family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricKind {
    /// A monotonic count.
    Counter,
    /// A value that goes up and down.
    Gauge,
    /// Quantiles plus `_sum` and `_count`.
    Summary,
}

impl MetricKind {
    fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Summary => "summary",
        }
    }
}

#[derive(Debug)]
struct Family {
    name: String,
    help: String,
    kind: MetricKind,
    samples: String,
}

/// Collects samples and renders them grouped by family.
#[derive(Debug, Default)]
pub struct PromWriter {
    families: Vec<Family>,
    index: HashMap<String, usize>,
    conflicts: u64,
}

impl PromWriter {
    /// An empty writer.
    pub fn new() -> PromWriter {
        PromWriter::default()
    }

    /// The family `name`'s sample buffer, declaring it if new; `None` on a type clash.
    fn family(&mut self, name: &str, help: &str, kind: MetricKind) -> Option<&mut String> {
        let name = sanitize_name(name, true);
        let i = match self.index.get(&name) {
            Some(&i) => i,
            None => {
                self.families.push(Family {
                    name: name.clone(),
                    help: help.to_owned(),
                    kind,
                    samples: String::new(),
                });
                let i = self.families.len() - 1;
                self.index.insert(name, i);
                i
            }
        };
        let family = self.families.get_mut(i)?;
        if family.kind != kind {
            self.conflicts += 1;
            return None;
        }
        Some(&mut family.samples)
    }

    /// Adds a counter sample.
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: u64) {
        self.sample(name, help, MetricKind::Counter, labels, &value.to_string());
    }

    /// Adds a counter sample that is not a whole number (seconds of CPU time, say).
    pub fn counter_f64(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(
            name,
            help,
            MetricKind::Counter,
            labels,
            &format_value(value),
        );
    }

    /// Adds a gauge sample.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        self.sample(name, help, MetricKind::Gauge, labels, &format_value(value));
    }

    /// One sample of family `name` (declared as `kind` if new), its value already formatted.
    fn sample(
        &mut self,
        name: &str,
        help: &str,
        kind: MetricKind,
        labels: &[(&str, &str)],
        value: &str,
    ) {
        let full = sanitize_name(name, true);
        if let Some(out) = self.family(name, help, kind) {
            write_sample(out, &full, labels, None, value);
        }
    }

    /// Adds a summary: one sample per `(quantile, value)` plus `_sum` and `_count`.
    pub fn summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        quantiles: &[(f64, f64)],
        sum: f64,
        count: u64,
    ) {
        let full = sanitize_name(name, true);
        if let Some(out) = self.family(name, help, MetricKind::Summary) {
            for (q, v) in quantiles {
                let q = format_value(*q);
                write_sample(
                    out,
                    &full,
                    labels,
                    Some(("quantile", &q)),
                    &format_value(*v),
                );
            }
            write_sample(
                out,
                &format!("{full}_sum"),
                labels,
                None,
                &format_value(sum),
            );
            write_sample(
                out,
                &format!("{full}_count"),
                labels,
                None,
                &count.to_string(),
            );
        }
    }

    /// Adds an hdrhistogram as a summary with [`QUANTILES`] (p50/p90/p99), each value
    /// multiplied by `scale` (e.g. `1e-9` for a histogram of nanoseconds exported in
    /// seconds). An empty histogram gives `NaN` quantiles, as Prometheus clients do.
    pub fn histogram_summary(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        histogram: &Histogram<u64>,
        scale: f64,
    ) {
        let count = histogram.len();
        let quantiles: Vec<(f64, f64)> = QUANTILES
            .iter()
            .map(|&q| {
                let v = if count == 0 {
                    f64::NAN
                } else {
                    histogram.value_at_quantile(q) as f64 * scale
                };
                (q, v)
            })
            .collect();
        let sum = histogram.mean() * count as f64 * scale;
        self.summary(name, help, labels, &quantiles, sum, count);
    }

    /// Samples dropped because their family was declared with another type.
    pub fn conflicts(&self) -> u64 {
        self.conflicts
    }

    /// Appends the exposition to `out`.
    pub fn finish(self, out: &mut String) {
        for f in &self.families {
            let _ = writeln!(out, "# HELP {} {}", f.name, escape_help(&f.help));
            let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind.name());
            out.push_str(&f.samples);
        }
    }
}

fn write_sample(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: &str,
) {
    out.push_str(name);
    let mut all = labels.iter().copied().chain(extra).peekable();
    if all.peek().is_some() {
        out.push('{');
        for (i, (k, v)) in all.enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&sanitize_name(k, false));
            out.push_str("=\"");
            escape_label_value(v, out);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// A metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`, `colon` true) or label name
/// (`[a-zA-Z_][a-zA-Z0-9_]*`) made of `raw`, other characters replaced by `_`.
pub fn sanitize_name(raw: &str, colon: bool) -> String {
    let mut s = String::with_capacity(raw.len() + 1);
    for (i, c) in raw.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || (colon && c == ':');
        if ok || (i > 0 && c.is_ascii_digit()) {
            s.push(c);
        } else if i == 0 && c.is_ascii_digit() {
            s.push('_');
            s.push(c);
        } else {
            s.push('_');
        }
    }
    if s.is_empty() {
        s.push('_');
    }
    s
}

/// Appends `v` escaped for a label value: `\` → `\\`, `"` → `\"`, newline → `\n`.
pub fn escape_label_value(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `help` escaped for a `# HELP` line: `\` → `\\`, newline → `\n`.
pub fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A sample value as Prometheus writes it (`NaN`, `+Inf`, `-Inf`, else decimal).
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(w: PromWriter) -> String {
        let mut s = String::new();
        w.finish(&mut s);
        s
    }

    #[test]
    fn families_are_grouped_and_declared_once() {
        let mut w = PromWriter::new();
        w.counter("a_total", "A.", &[("s", "x")], 1);
        w.counter("b_total", "B.", &[("s", "x")], 2);
        w.counter("a_total", "A.", &[("s", "y")], 3);
        let out = render(w);
        assert_eq!(
            out,
            "# HELP a_total A.\n# TYPE a_total counter\na_total{s=\"x\"} 1\na_total{s=\"y\"} 3\n\
             # HELP b_total B.\n# TYPE b_total counter\nb_total{s=\"x\"} 2\n"
        );
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut w = PromWriter::new();
        w.gauge("g", "line1\nback\\slash", &[("v", "a\"b\\c\nd")], 0.5);
        let out = render(w);
        assert!(out.contains("# HELP g line1\\nback\\\\slash\n"), "{out}");
        assert!(out.contains("g{v=\"a\\\"b\\\\c\\nd\"} 0.5\n"), "{out}");
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(
            sanitize_name("fulcrum:rx-packets", true),
            "fulcrum:rx_packets"
        );
        assert_eq!(sanitize_name("a:b", false), "a_b");
        assert_eq!(sanitize_name("0day", false), "_0day");
        assert_eq!(sanitize_name("", true), "_");
    }

    #[test]
    fn type_clash_is_dropped_and_counted() {
        let mut w = PromWriter::new();
        w.counter("m", "M.", &[], 1);
        w.gauge("m", "M.", &[], 2.0);
        assert_eq!(w.conflicts(), 1);
        let out = render(w);
        assert_eq!(out.matches("\nm ").count(), 1, "{out}");
    }

    #[test]
    fn special_values() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_value(3.0), "3");
        assert_eq!(format_value(0.25), "0.25");
    }

    #[test]
    fn histogram_summary_writes_quantiles_sum_count() {
        let mut h = Histogram::<u64>::new(3).expect("3 significant digits is valid");
        for v in 1..=100u64 {
            h.record(v).expect("in range");
        }
        let mut w = PromWriter::new();
        w.histogram_summary("loop_seconds", "Loop time.", &[("worker", "0")], &h, 0.001);
        let out = render(w);
        assert!(out.contains("# TYPE loop_seconds summary\n"), "{out}");
        assert!(
            out.contains("loop_seconds{worker=\"0\",quantile=\"0.5\"} 0.05\n"),
            "{out}"
        );
        assert!(
            out.contains("loop_seconds{worker=\"0\",quantile=\"0.99\"} 0.099\n"),
            "{out}"
        );
        assert!(
            out.contains("loop_seconds_count{worker=\"0\"} 100\n"),
            "{out}"
        );
        assert!(out.contains("loop_seconds_sum{worker=\"0\"} 5.05"), "{out}");

        let empty = Histogram::<u64>::new(3).expect("valid");
        let mut w = PromWriter::new();
        w.histogram_summary("e", "E.", &[], &empty, 1.0);
        let out = render(w);
        assert!(out.contains("e{quantile=\"0.9\"} NaN\n"), "{out}");
        assert!(out.contains("e_count 0\n"), "{out}");
    }
}
