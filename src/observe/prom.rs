//! A small strict parser of the Prometheus text exposition format 0.0.4, to check our output.
//!
//! # Invariants
//! - Never panics; the first violation is returned as `line N: what`.
//! - Accepts only what the format allows: metric names `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*` (not `__`-prefixed), label values with exactly the escapes `\\`,
//!   `\"`, `\n`, values as Go's float syntax plus `+Inf`/`-Inf`/`NaN`, optional integer
//!   timestamp, and a final newline.
//! - Metadata is consistent: at most one HELP and one TYPE per family, both before its first
//!   sample; a family's samples are contiguous; no series twice; counters not negative;
//!   histogram samples are `_bucket` (with `le`), `_sum`, `_count`, buckets cumulative with
//!   increasing `le`, ending at `+Inf` equal to `_count`.
//!
//! # Implementation
//! Line by line with a cursor over `&str` (`strip_prefix`, `split_at` on char boundaries found
//! by `find`), never indexing. Histogram series are checked after the last line.

use std::collections::{BTreeMap, HashMap, HashSet};

/// Label `(name, value)` pairs in the order written.
pub type Labels = Vec<(String, String)>;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name as written (`..._bucket` etc. included).
    pub name: String,
    /// Labels in the order written, values unescaped.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// Optional timestamp, milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
}

impl Sample {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

/// Per histogram series (family + labels without `le`): what its lines said.
#[derive(Debug, Default)]
struct HistogramSeries {
    /// `(le, cumulative count)` in order of appearance.
    buckets: Vec<(f64, f64)>,
    /// The `_count` value, once seen.
    count: Option<f64>,
    /// Whether `_sum` was seen.
    sum: bool,
}

/// Parses and checks a whole exposition.
pub fn parse_prometheus_text(text: &str) -> Result<Vec<Sample>, String> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the last line must end with a newline".to_string());
    }
    let mut parser = Parser::default();
    for (index, line) in text.lines().enumerate() {
        parser
            .line(line)
            .map_err(|message| format!("line {}: {message}", index + 1))?;
    }
    parser.finish()?;
    Ok(parser.samples)
}

#[derive(Default)]
struct Parser {
    samples: Vec<Sample>,
    helps: HashSet<String>,
    types: HashMap<String, Kind>,
    /// Families whose group of samples has ended.
    done: HashSet<String>,
    /// Family of the previous sample.
    current: Option<String>,
    /// Families that have at least one sample.
    with_samples: HashSet<String>,
    series: HashSet<(String, Labels)>,
    histograms: BTreeMap<(String, Labels), HistogramSeries>,
}

impl Parser {
    fn line(&mut self, line: &str) -> Result<(), String> {
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            return Ok(());
        }
        if let Some(comment) = line.strip_prefix('#') {
            return self.comment(comment.trim_start_matches([' ', '\t']));
        }
        self.sample(line)
    }

    fn comment(&mut self, comment: &str) -> Result<(), String> {
        let (keyword, rest) = split_token(comment);
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(());
        }
        let (name, rest) = split_token(rest);
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?} in {keyword}"));
        }
        if self.with_samples.contains(name) {
            return Err(format!("{keyword} for {name} after its samples"));
        }
        if keyword == "HELP" {
            check_help_escapes(rest)?;
            if !self.helps.insert(name.to_string()) {
                return Err(format!("second HELP for {name}"));
            }
            return Ok(());
        }
        let (kind, extra) = split_token(rest);
        if !extra.is_empty() {
            return Err(format!("text after TYPE: {extra:?}"));
        }
        let kind = match kind {
            "counter" => Kind::Counter,
            "gauge" => Kind::Gauge,
            "histogram" => Kind::Histogram,
            "summary" => Kind::Summary,
            "untyped" => Kind::Untyped,
            other => return Err(format!("unknown type {other:?}")),
        };
        if self.types.insert(name.to_string(), kind).is_some() {
            return Err(format!("second TYPE for {name}"));
        }
        Ok(())
    }

    fn sample(&mut self, line: &str) -> Result<(), String> {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(line.len());
        let (name, rest) = line.split_at(name_end);
        if !is_metric_name(name) {
            return Err(format!("bad metric name {name:?}"));
        }
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(inner) => parse_labels(inner)?,
            None => (Vec::new(), rest),
        };
        if !rest.starts_with([' ', '\t']) {
            return Err("expected blank before the value".to_string());
        }
        let (value, rest) = split_token(rest.trim_start_matches([' ', '\t']));
        let value = parse_value(value)?;
        let (timestamp, extra) = split_token(rest);
        if !extra.is_empty() {
            return Err(format!("unexpected text after timestamp: {extra:?}"));
        }
        let timestamp_ms = match timestamp {
            "" => None,
            t => Some(
                t.parse::<i64>()
                    .map_err(|_| format!("bad timestamp {t:?}"))?,
            ),
        };
        let mut sorted = labels.clone();
        sorted.sort();
        if !self.series.insert((name.to_string(), sorted)) {
            return Err(format!("series {name} with these labels given twice"));
        }
        let (family, kind) = self.family_of(name);
        self.group(&family)?;
        self.check_kind(&family, kind, name, &labels, value)?;
        self.samples.push(Sample {
            name: name.to_string(),
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
    }

    /// The family a sample name belongs to, and the family's type.
    fn family_of(&self, name: &str) -> (String, Kind) {
        if let Some(kind) = self.types.get(name) {
            return (name.to_string(), *kind);
        }
        for (suffix, kinds) in [
            ("_bucket", &[Kind::Histogram][..]),
            ("_sum", &[Kind::Histogram, Kind::Summary][..]),
            ("_count", &[Kind::Histogram, Kind::Summary][..]),
        ] {
            if let Some(base) = name.strip_suffix(suffix) {
                if let Some(kind) = self.types.get(base).filter(|k| kinds.contains(k)) {
                    return (base.to_string(), *kind);
                }
            }
        }
        (name.to_string(), Kind::Untyped)
    }

    /// Enforces that a family's samples are contiguous.
    fn group(&mut self, family: &str) -> Result<(), String> {
        if self.current.as_deref() == Some(family) {
            return Ok(());
        }
        if self.done.contains(family) {
            return Err(format!("samples of {family} are not grouped together"));
        }
        if let Some(previous) = self.current.replace(family.to_string()) {
            self.done.insert(previous);
        }
        self.with_samples.insert(family.to_string());
        Ok(())
    }

    fn check_kind(
        &mut self,
        family: &str,
        kind: Kind,
        name: &str,
        labels: &[(String, String)],
        value: f64,
    ) -> Result<(), String> {
        match kind {
            Kind::Counter if value < 0.0 || value.is_nan() => {
                Err(format!("counter {name} has value {value}"))
            }
            Kind::Histogram => {
                let key_labels: Labels =
                    labels.iter().filter(|(k, _)| k != "le").cloned().collect();
                let series = self
                    .histograms
                    .entry((family.to_string(), key_labels))
                    .or_default();
                let suffix = name.strip_prefix(family).unwrap_or("");
                match suffix {
                    "_bucket" => {
                        let le = labels
                            .iter()
                            .find(|(k, _)| k == "le")
                            .ok_or_else(|| format!("{name} without le label"))?;
                        series.buckets.push((parse_value(&le.1)?, value));
                    }
                    "_sum" => series.sum = true,
                    "_count" => series.count = Some(value),
                    _ => return Err(format!("{name} is not a histogram sample of {family}")),
                }
                Ok(())
            }
            Kind::Summary if name == family && !labels.iter().any(|(k, _)| k == "quantile") => {
                Err(format!("summary sample {name} without quantile label"))
            }
            _ => Ok(()),
        }
    }

    fn finish(&self) -> Result<(), String> {
        for ((family, labels), series) in &self.histograms {
            let at = || format!("histogram {family}{labels:?}");
            let mut previous: Option<(f64, f64)> = None;
            for (le, count) in &series.buckets {
                if let Some((prev_le, prev_count)) = previous {
                    if *le <= prev_le {
                        return Err(format!("{}: le {le} not above {prev_le}", at()));
                    }
                    if *count < prev_count {
                        return Err(format!("{}: bucket counts not cumulative", at()));
                    }
                }
                previous = Some((*le, *count));
            }
            match (previous, series.count) {
                (Some((le, inf_count)), Some(count)) if le == f64::INFINITY => {
                    if inf_count != count {
                        return Err(format!(
                            "{}: +Inf bucket {inf_count} != _count {count}",
                            at()
                        ));
                    }
                }
                (_, None) => return Err(format!("{}: no _count", at())),
                _ => return Err(format!("{}: no +Inf bucket", at())),
            }
            if !series.sum {
                return Err(format!("{}: no _sum", at()));
            }
        }
        Ok(())
    }
}

/// Splits off the first blank-separated token; the rest has its leading blanks removed.
fn split_token(text: &str) -> (&str, &str) {
    let end = text.find([' ', '\t']).unwrap_or(text.len());
    let (token, rest) = text.split_at(end);
    (token, rest.trim_start_matches([' ', '\t']))
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

fn check_help_escapes(help: &str) -> Result<(), String> {
    let mut chars = help.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && !matches!(chars.next(), Some('\\' | 'n')) {
            return Err("bad escape in HELP (only \\\\ and \\n)".to_string());
        }
    }
    Ok(())
}

/// Parses `name="value",...}` (the `{` already consumed); returns the labels and the rest.
fn parse_labels(mut rest: &str) -> Result<(Labels, &str), String> {
    let mut labels: Labels = Vec::new();
    loop {
        rest = rest.trim_start_matches([' ', '\t']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let name_end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let (name, after) = rest.split_at(name_end);
        if !is_label_name(name) {
            return Err(format!("bad label name {name:?}"));
        }
        if labels.iter().any(|(k, _)| k == name) {
            return Err(format!("label {name} given twice"));
        }
        let after = after.trim_start_matches([' ', '\t']);
        let after = after
            .strip_prefix('=')
            .ok_or_else(|| format!("expected = after label {name}"))?
            .trim_start_matches([' ', '\t']);
        let mut chars = after
            .strip_prefix('"')
            .ok_or_else(|| format!("expected \" to open label {name}"))?
            .char_indices();
        let mut value = String::new();
        let tail = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name}")),
                Some((_, '"')) => break chars.as_str(),
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    _ => return Err(format!("bad escape in label {name}")),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((name.to_string(), value));
        let tail = tail.trim_start_matches([' ', '\t']);
        rest = match tail.strip_prefix(',') {
            Some(next) => next,
            None if tail.starts_with('}') => tail,
            None => return Err(format!("expected , or }} after label {name}")),
        };
    }
}

fn parse_value(token: &str) -> Result<f64, String> {
    match token {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if !token.is_empty()
            && token.bytes().any(|b| b.is_ascii_digit())
            && token
                .bytes()
                .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b)) =>
        {
            token
                .parse::<f64>()
                .map_err(|_| format!("bad value {token:?}"))
        }
        _ => Err(format!("bad value {token:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse_prometheus_text(text).expect_err("should be rejected")
    }

    #[test]
    fn prom_valid_families_parse() {
        let text = "# HELP a_total A \\\\ counter\\n.\n# TYPE a_total counter\n\
                    a_total{code=\"1000\",why=\"q\\\"\\\\\\n\"} 3 1700000000000\n\
                    # a comment\n\n\
                    # TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.7\nh_count 2\n\
                    g NaN\ng2 -Inf\n";
        let samples = parse_prometheus_text(text).expect("valid");
        assert_eq!(samples.len(), 7);
        assert_eq!(
            samples.first().and_then(|s| s.label("why")),
            Some("q\"\\\n")
        );
        assert_eq!(
            samples.first().and_then(|s| s.timestamp_ms),
            Some(1_700_000_000_000)
        );
        assert!(samples.iter().any(|s| s.name == "g" && s.value.is_nan()));
    }

    #[test]
    fn prom_syntax_errors_rejected() {
        for bad in [
            "a 1",                    // no final newline
            "1a 1\n",                 // bad name
            "a{b=\"1\"\n",            // unterminated labels
            "a{b=\"1} 1\n",           // unterminated value
            "a{__x=\"1\"} 1\n",       // reserved label
            "a{b=\"1\",b=\"2\"} 1\n", // duplicate label
            "a{b=\"\\t\"} 1\n",       // bad escape
            "a{b=1} 1\n",             // unquoted value
            "a inf\n",                // not a Prometheus float spelling
            "a 1 2 3\n",              // trailing text
            "a 1 x\n",                // bad timestamp
            "a\n",                    // no value
            "a{b=\"1\"}1\n",          // no blank before value
            "# TYPE a counter extra\n",
            "# TYPE a countr\n",
            "# HELP a bad \\t escape\n",
        ] {
            assert!(parse_prometheus_text(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn prom_metadata_inconsistency_rejected() {
        assert!(err("# TYPE a gauge\n# TYPE a gauge\n").contains("second TYPE"));
        assert!(err("# HELP a x\n# HELP a y\n").contains("second HELP"));
        assert!(err("a 1\n# TYPE a gauge\n").contains("after its samples"));
        assert!(err("a{x=\"1\"} 1\nb 1\na{x=\"2\"} 1\n").contains("not grouped"));
        assert!(err("a 1\na 2\n").contains("twice"));
        assert!(err("# TYPE c counter\nc -1\n").contains("counter"));
    }

    #[test]
    fn prom_histogram_inconsistency_rejected() {
        let head = "# TYPE h histogram\n";
        for bad in [
            "h_bucket{le=\"1\"} 2\nh_bucket{le=\"0.5\"} 3\nh_bucket{le=\"+Inf\"} 3\nh_sum 1\nh_count 3\n",
            "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
            "h_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",
            "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
            "h_bucket{le=\"+Inf\"} 2\nh_sum 1\n",
            "h_bucket{le=\"+Inf\"} 2\nh_count 2\n",
            "h_bucket 2\nh_sum 1\nh_count 2\n",
            "h 2\n",
        ] {
            let text = format!("{head}{bad}");
            assert!(parse_prometheus_text(&text).is_err(), "accepted {text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn prom_parse_arbitrary_never_panics(text in "\\PC{0,200}") {
            let _ = parse_prometheus_text(&text);
        }

        #[test]
        fn prom_parse_format_like_never_panics(
            text in "(# (HELP|TYPE) [a-z_]{1,4} [a-z \\\\]{0,8}\n|[a-z_]{1,4}(\\{[a-z_]{1,3}=\"[a-z\\\\\"]{0,4}\"[,]?\\})? [-+0-9.eInfNa]{1,5}( [0-9]{1,3})?\n){0,8}"
        ) {
            let _ = parse_prometheus_text(&text);
        }
    }
}
