//! The alerting kit in `packaging/prometheus/` against the real tools and
//! against the metrics driftd exports:
//!
//! - `promtool check rules` and `promtool test rules` on the alert and
//!   recording rules and their unit tests, `promtool check config` on the
//!   example Prometheus config, `amtool check-config` on the example
//!   Alertmanager config, and that config in a real Alertmanager (the
//!   fleet alert inhibits the per-host pages of its image, one
//!   notification per image);
//! - the unit tests can fail: one mutation per alert (a threshold or a
//!   `for` one step looser), and per recording rule that can be told
//!   wrong, must make `promtool test rules` fail;
//! - every metric the rules, their tests and the Grafana dashboard use is
//!   one driftd exports, or `up`, and every label they match or group by,
//!   with every value they match, is one it exports: all read at run time
//!   from the real metrics module's exposition
//!   (`driftd::telemetry::metrics::Metrics`), so a metric added, renamed or
//!   given a new label value there is followed here without an edit;
//! - every alert has its labels and annotations, a RUNBOOK.md section, and
//!   unit tests both firing and not firing; every recording rule follows
//!   the `level:metric:operations` naming, is unit-tested and is in
//!   RUNBOOK.md's table.
//!
//! Needs `promtool` (Debian: `apt-get install prometheus`) and `amtool`
//! (`apt-get install prometheus-alertmanager`); `.ci/setup` installs both.
//! Without them the tests that run them print a SKIP line and pass, except
//! when the `CI` environment variable is set: there a missing tool fails.

mod common;

use common::tool;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The crate root: every path below is relative to it.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

const RULES: &str = "packaging/prometheus/driftd.rules.yml";
const RULE_TESTS: &str = "packaging/prometheus/driftd.rules.test.yml";
const PROMETHEUS_CONFIG: &str = "packaging/prometheus/prometheus.yml";
const ALERTMANAGER_CONFIG: &str = "packaging/prometheus/alertmanager.yml";
const DASHBOARD: &str = "packaging/prometheus/grafana-dashboard.json";
const RUNBOOK: &str = "packaging/prometheus/RUNBOOK.md";

const RUNBOOK_URL: &str =
    "https://github.com/driftd/driftd/blob/main/packaging/prometheus/RUNBOOK.md#";

/// Series Prometheus itself adds, which the rules and the dashboard may use.
const PROMETHEUS_SERIES: [&str; 1] = ["up"];

/// Labels Prometheus attaches to every scraped series.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// A promtool or amtool run is killed (and the test fails) after this long.
const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

fn read(rel: &str) -> String {
    let path = Path::new(ROOT).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

// ---------------------------------------------------------------------------
// Tools

struct Output {
    cmdline: String,
    code: Option<i32>,
    /// Standard output and standard error, in that order.
    text: String,
}

impl Output {
    fn assert_success(&self) -> &Self {
        assert_eq!(
            self.code,
            Some(0),
            "`{}` failed:\n{}",
            self.cmdline,
            self.text
        );
        self
    }

    fn assert_contains(&self, needle: &str) -> &Self {
        assert!(
            self.text.contains(needle),
            "`{}`: no `{needle}` in its output:\n{}",
            self.cmdline,
            self.text
        );
        self
    }

    fn assert_lacks(&self, needle: &str) -> &Self {
        assert!(
            !self.text.contains(needle),
            "`{}`: `{needle}` in its output:\n{}",
            self.cmdline,
            self.text
        );
        self
    }
}

/// Run `program args...` in `dir`, killing it after [`TOOL_TIMEOUT`].
fn run_in(dir: &Path, program: &Path, args: &[&str]) -> Output {
    let cmdline = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn `{cmdline}`: {e}"));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let err = drain(Box::new(child.stderr.take().expect("stderr is piped")));
    let deadline = Instant::now() + TOOL_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the tool") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{cmdline}` did not finish within {TOOL_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let text = format!(
        "{}{}",
        out.join().expect("stdout reader"),
        err.join().expect("stderr reader")
    );
    Output {
        cmdline,
        code: status.code(),
        text,
    }
}

fn run(program: &Path, args: &[&str]) -> Output {
    run_in(Path::new(ROOT), program, args)
}

// ---------------------------------------------------------------------------
// What driftd exports, read from the real metrics module at run time

/// Backend names to create the per-backend signal series for. Backend
/// names come from the config (`[[signal]] name`), so their values are not
/// checked; one name is enough to make the families and their label names
/// appear.
const BACKENDS: [&str; 1] = ["webhook"];

/// Families a fresh rendering may lack: (name, type, label names). Their
/// only series carry run-time data (which manifest is loaded, which host
/// this is), so `Metrics::new()` cannot create them up front; and the
/// fleet guard's metrics (issue 13), which the fleet rules use and the
/// agent side defines. Used only while the rendering lacks the family;
/// once it has it, the rendering wins and this entry must agree with it.
const SET_AT_RUN_TIME: [(&str, &str, &[&str]); 7] = [
    ("driftd_manifest_info", "gauge", &["image_id", "digest"]),
    ("driftd_host_info", "gauge", &["host_id", "hostname"]),
    ("driftd_signal_held", "gauge", &["backend"]),
    ("driftd_guard_hosts", "gauge", &[]),
    ("driftd_guard_drifted", "gauge", &[]),
    ("driftd_guard_limit", "gauge", &[]),
    ("driftd_guard_errors_total", "counter", &[]),
];

/// Why a name can be missing from the exposition, for failure messages.
const NOT_EXPORTED: &str = "(read from Metrics::new() with register_backends; a family with \
     labels appears only once one of its series exists: create its series in Metrics::new(), \
     or list it in SET_AT_RUN_TIME in tests/alert_rules.rs)";

/// Labels whose values are data (the build, the manifest, the config's
/// backend names, the host), not a bounded set the agent creates at start:
/// a query may match any value of these.
const DATA_LABELS: [&str; 6] = [
    "version", "image_id", "digest", "backend", "host_id", "hostname",
];

/// One metric family of the exposition: its type, its label names (a
/// histogram's `le` excluded) and every value each label takes in the
/// series created at start.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    help: bool,
    labels: BTreeSet<String>,
    values: BTreeMap<String, BTreeSet<String>>,
}

impl Family {
    fn histogram(&self) -> bool {
        self.kind == "histogram"
    }

    /// Whether `label` may equal `value` in a series of this family: any
    /// value of a data label, else one the agent creates at start.
    fn allows(&self, label: &str, value: &str) -> bool {
        DATA_LABELS.contains(&label)
            || self
                .values
                .get(label)
                .is_some_and(|vals| vals.contains(value))
    }
}

/// What a fresh agent exports: the Prometheus text exposition of the real
/// metrics module (every labelled series created at start), with the
/// signal series of [`BACKENDS`].
fn exposition() -> String {
    let m = driftd::telemetry::metrics::Metrics::new();
    m.register_backends(BACKENDS);
    m.render()
}

/// The label pairs of a sample line's `{...}` (without the braces).
fn parse_labels(text: &str, line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let (name, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("a label without `=\"` in {line:?}"));
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("a dangling escape in {line:?}"),
                },
                Some((_, c)) => value.push(c),
                None => panic!("an unterminated label value in {line:?}"),
            }
        };
        out.push((name.trim().trim_start_matches(',').trim().to_owned(), value));
        rest = after[end + 1..].trim_start_matches(',').trim();
    }
    out
}

/// The families of a text exposition, by name.
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split_whitespace().next().expect("HELP names a metric");
            families.entry(name.to_owned()).or_default().help = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut words = rest.split_whitespace();
            let name = words.next().expect("TYPE names a metric");
            let kind = words.next().expect("TYPE gives a type");
            families.entry(name.to_owned()).or_default().kind = kind.to_owned();
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, labels) = match line.split_once('{') {
            Some((series, rest)) => {
                let close = rest
                    .rfind('}')
                    .unwrap_or_else(|| panic!("no `}}` in {line:?}"));
                (series, parse_labels(&rest[..close], line))
            }
            None => (
                line.split_whitespace().next().expect("a sample line"),
                Vec::new(),
            ),
        };
        // A histogram's or summary's series belong to the family they
        // extend; every other sample names its family.
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .filter_map(|suffix| series.strip_suffix(suffix))
            .find(|base| {
                families
                    .get(*base)
                    .is_some_and(|f| f.kind == "histogram" || f.kind == "summary")
            })
            .unwrap_or(series);
        let f = families
            .get_mut(family)
            .unwrap_or_else(|| panic!("sample {line:?} before its # TYPE line"));
        for (label, value) in labels {
            if label == "le" || (label == "quantile" && f.kind == "summary") {
                continue;
            }
            f.labels.insert(label.clone());
            f.values.entry(label).or_default().insert(value);
        }
    }
    families
}

#[test]
fn exposition_parser_reads_types_labels_and_values() {
    let text = "# HELP a_total A.\n# TYPE a_total counter\n\
                a_total{kind=\"x\",result=\"ok\"} 0\na_total{kind=\"y\",result=\"o\\\"k\"} 1\n\
                # HELP h_seconds H.\n# TYPE h_seconds histogram\n\
                h_seconds_bucket{kind=\"full\",le=\"0.1\"} 0\nh_seconds_bucket{kind=\"full\",le=\"+Inf\"} 0\n\
                h_seconds_sum{kind=\"full\"} 0\nh_seconds_count{kind=\"full\"} 0\n\
                # HELP g G.\n# TYPE g gauge\ng 1\n";
    let f = parse_exposition(text);
    assert_eq!(f.keys().collect::<Vec<_>>(), ["a_total", "g", "h_seconds"]);
    assert_eq!(f["a_total"].kind, "counter");
    assert!(f["a_total"].allows("kind", "y") && !f["a_total"].allows("kind", "z"));
    assert!(f["a_total"].allows("result", "o\"k"));
    assert!(f["h_seconds"].histogram());
    assert_eq!(f["h_seconds"].labels, BTreeSet::from(["kind".to_owned()]));
    assert!(f["g"].labels.is_empty() && f["g"].help);
}

/// Every metric family driftd exports, read from the real metrics module.
fn exported_families() -> BTreeMap<String, Family> {
    let text = exposition();
    let mut families = parse_exposition(&text);
    for (name, f) in &families {
        assert!(
            name.starts_with("driftd_"),
            "{name}: every family has the driftd_ prefix"
        );
        assert!(
            f.help && !f.kind.is_empty(),
            "{name}: no HELP or TYPE line in:\n{text}"
        );
    }
    for (name, kind, labels) in SET_AT_RUN_TIME {
        let labels: BTreeSet<String> = labels.iter().map(|l| l.to_string()).collect();
        match families.get(name) {
            Some(f) => assert!(
                f.kind == kind && f.labels == labels,
                "SET_AT_RUN_TIME says {name} is a {kind} with labels {labels:?}, but the \
                 metrics module now renders it as a {} with {:?}: fix (or drop) the entry",
                f.kind,
                f.labels
            ),
            None => {
                families.insert(
                    name.to_owned(),
                    Family {
                        kind: kind.to_owned(),
                        help: true,
                        labels,
                        values: BTreeMap::new(),
                    },
                );
            }
        }
    }
    // The reading must see what the README documents.
    for (name, labels) in [
        ("driftd_build_info", &["version"][..]),
        ("driftd_drift_detected", &[]),
        ("driftd_verdict", &["verdict"]),
        ("driftd_manifest_error", &["reason"]),
        ("driftd_manifest_info", &["digest", "image_id"]),
        ("driftd_signal_requests_total", &["backend", "result"]),
        ("driftd_signal_pending", &["backend"]),
        ("driftd_watch_failures_total", &[]),
    ] {
        let f = families
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not exported:\n{text}"));
        assert_eq!(
            f.labels.iter().collect::<Vec<_>>(),
            labels,
            "label names of {name}"
        );
    }
    for verdict in ["clean", "drifted", "unknown"] {
        assert!(families["driftd_verdict"].allows("verdict", verdict));
    }
    assert!(families["driftd_scan_duration_seconds"].histogram());
    assert!(!families["driftd_verdict"].histogram());
    assert!(
        families.len() >= 20,
        "only {} families read: {families:?}",
        families.len()
    );
    families
}

/// Every series name a query may use: the families, a histogram's
/// `_bucket`/`_sum`/`_count` (not its bare name), and `up`.
fn exported_series(families: &BTreeMap<String, Family>) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = PROMETHEUS_SERIES.iter().map(|s| s.to_string()).collect();
    for (name, f) in families {
        if f.histogram() || f.kind == "summary" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        } else {
            names.insert(name.clone());
        }
    }
    names
}

/// The family a series name belongs to (a histogram's `_bucket` etc.).
fn family_of<'a>(
    families: &'a BTreeMap<String, Family>,
    series: &str,
) -> Option<(&'a str, &'a Family)> {
    if let Some((name, f)) = families.get_key_value(series) {
        return Some((name.as_str(), f));
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| series.strip_suffix(suffix))
        .find_map(|base| families.get_key_value(base))
        .filter(|(_, f)| f.histogram() || f.kind == "summary")
        .map(|(name, f)| (name.as_str(), f))
}

// ---------------------------------------------------------------------------
// PromQL: the series names an expression selects

const PROMQL_KEYWORDS: [&str; 8] = [
    "and", "or", "unless", "bool", "offset", "inf", "nan", "start",
];

/// Aggregation operators: `sum by (le) (x)` puts a clause between the
/// operator and its parenthesis.
const PROMQL_AGGREGATIONS: [&str; 14] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// Keywords followed by a parenthesised list of label names.
const PROMQL_GROUPING: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Skip from `open` (at `chars[i]`) to just after the matching `close`,
/// stepping over quoted strings.
fn skip_balanced(chars: &[char], mut i: usize, open: char, close: char) -> usize {
    let mut depth = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(chars, i);
            continue;
        }
        if c == open {
            depth += 1;
        } else if c == close {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    i
}

fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        if chars[j] == '\\' && quote != '`' {
            j += 1;
        }
        j += 1;
    }
    j + 1
}

/// One label matcher of a selector: `label op "value"`.
#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// What a PromQL expression refers to: the series it selects (each with
/// its matchers) and the label names it groups or matches on (`by`,
/// `without`, `on`, `ignoring`, `group_left`, `group_right`).
#[derive(Debug, Default)]
struct PromQl {
    selectors: Vec<(String, Vec<Matcher>)>,
    grouping: Vec<String>,
}

/// The label names of a parenthesised list `( a, b )`, `chars[open]`
/// being `(`; and the index just after it.
fn label_list(chars: &[char], open: usize) -> (Vec<String>, usize) {
    let end = skip_balanced(chars, open, '(', ')');
    let inner: String = chars[open + 1..end.saturating_sub(1)].iter().collect();
    let names = inner
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect();
    (names, end)
}

/// The matchers of `{...}`, `chars[open]` being `{`; and the index just
/// after it.
fn matchers(chars: &[char], open: usize) -> (Vec<Matcher>, usize) {
    let end = skip_balanced(chars, open, '{', '}');
    let mut out = Vec::new();
    let mut i = open + 1;
    while i < end.saturating_sub(1) {
        while i < end && (chars[i].is_whitespace() || chars[i] == ',') {
            i += 1;
        }
        let start = i;
        while i < end && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
            i += 1;
        }
        let label: String = chars[start..i].iter().collect();
        while i < end && chars[i].is_whitespace() {
            i += 1;
        }
        let op_start = i;
        while i < end && matches!(chars[i], '=' | '!' | '~') {
            i += 1;
        }
        let op: String = chars[op_start..i].iter().collect();
        while i < end && chars[i].is_whitespace() {
            i += 1;
        }
        if label.is_empty() || op.is_empty() || !matches!(chars.get(i), Some('"' | '\'' | '`')) {
            break; // `{}` or something this reader does not know: stop.
        }
        let close = skip_string(chars, i);
        let value: String = chars[i + 1..close - 1].iter().collect();
        out.push(Matcher { label, op, value });
        i = close;
    }
    (out, end)
}

/// What a PromQL expression refers to (Grafana variables such as `$job` or
/// `$__rate_interval` allowed): metric names are identifiers that are not
/// functions, keywords or label names, outside strings and ranges.
fn promql(expr: &str) -> PromQl {
    let chars: Vec<char> = expr.chars().collect();
    let ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = PromQl::default();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if matches!(c, '"' | '\'' | '`') {
            i = skip_string(&chars, i);
        } else if c == '{' {
            // A selector without a name (`{__name__=...}`): not used here.
            i = skip_balanced(&chars, i, '{', '}');
        } else if c == '[' {
            i = skip_balanced(&chars, i, '[', ']');
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '$' {
            i += 1;
            if chars.get(i) == Some(&'{') {
                i = skip_balanced(&chars, i, '{', '}');
            } else {
                while i < chars.len() && ident(chars[i]) {
                    i += 1;
                }
            }
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // A number or a duration (1e3, 0x1f, 1h30m).
            while i < chars.len() && (ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if ident_start(c) {
            let start = i;
            while i < chars.len() && ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let call = chars.get(next) == Some(&'(');
            let lower = word.to_ascii_lowercase();
            if PROMQL_GROUPING.contains(&lower.as_str()) {
                if call {
                    let (labels, end) = label_list(&chars, next);
                    out.grouping.extend(labels);
                    i = end;
                }
            } else if call
                || PROMQL_KEYWORDS.contains(&lower.as_str())
                || PROMQL_AGGREGATIONS.contains(&lower.as_str())
            {
                // A function or an aggregation: its arguments come next.
            } else if chars.get(next) == Some(&'{') {
                let (m, end) = matchers(&chars, next);
                out.selectors.push((word, m));
                i = end;
            } else {
                out.selectors.push((word, Vec::new()));
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The metric names selected by a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    promql(expr).selectors.into_iter().map(|(n, _)| n).collect()
}

/// The label values a regular-expression matcher can match when it is a
/// plain alternation of words (`a|b`), else `None` (not checked).
fn regex_alternatives(value: &str) -> Option<Vec<&str>> {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'|' || b == b'-')
        .then(|| value.split('|').collect())
}

/// What is wrong with the labels `expr` uses: a matcher on a label its
/// series does not have, a value the agent never exports for an enum
/// label, or a grouping label no family has. Empty when all is well.
fn label_problems(families: &BTreeMap<String, Family>, expr: &str) -> Vec<String> {
    let q = promql(expr);
    let mut problems = Vec::new();
    for (series, matchers) in &q.selectors {
        let family = family_of(families, series);
        for m in matchers {
            if TARGET_LABELS.contains(&m.label.as_str()) {
                continue;
            }
            if PROMETHEUS_SERIES.contains(&series.as_str()) {
                problems.push(format!("`{series}` has no label `{}`", m.label));
                continue;
            }
            let Some((name, f)) = family else {
                continue; // an unknown series is reported by the name check
            };
            let bucket_le = m.label == "le" && series.ends_with("_bucket");
            if !f.labels.contains(&m.label) && !bucket_le {
                problems.push(format!(
                    "`{series}` has no label `{}` (driftd exports {name} with {:?})",
                    m.label, f.labels
                ));
                continue;
            }
            if bucket_le || m.value.contains('$') || DATA_LABELS.contains(&m.label.as_str()) {
                continue;
            }
            let values: Vec<&str> = match m.op.as_str() {
                "=" | "!=" => vec![m.value.as_str()],
                _ => regex_alternatives(&m.value).unwrap_or_default(),
            };
            for v in values {
                if !f.allows(&m.label, v) {
                    problems.push(format!(
                        "`{series}{{{}{}\"{}\"}}`: driftd never exports {}=\"{v}\" (it has {:?})",
                        m.label,
                        m.op,
                        m.value,
                        m.label,
                        f.values.get(&m.label).cloned().unwrap_or_default()
                    ));
                }
            }
        }
    }
    for label in &q.grouping {
        let known = TARGET_LABELS.contains(&label.as_str())
            || label == "le"
            || families.values().any(|f| f.labels.contains(label));
        if !known {
            problems.push(format!("no exported series has the label `{label}`"));
        }
    }
    problems
}

#[test]
fn promql_metric_names_are_found() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(driftd_scan_duration_seconds_bucket{kind="full", job=~"$job"}[$__rate_interval])))"#
        ),
        ["driftd_scan_duration_seconds_bucket"]
    );
    assert_eq!(
        metric_names(
            "(time() - a_b) > 3 * 3600 and on(job, instance) c offset 1h == 0\n\
             unless ignoring (x) d or vector(0) * on() group_left(reason) e"
        ),
        ["a_b", "c", "d", "e"]
    );
    assert_eq!(
        metric_names(r#"count(up{job="driftd"} == 0) or vector(0) + sum(x) without (y, z)"#),
        ["up", "x"]
    );
    assert_eq!(metric_names(r#"absent(up{job="a{b}"})"#), ["up"]);
}

#[test]
fn promql_matchers_and_grouping_labels_are_found() {
    let q = promql(
        r#"sum by (kind, result) (rate(a_total{kind="full", result=~"ok|bad", job=~"$job"}[5m])) and on(job) b"#,
    );
    assert_eq!(q.grouping, ["kind", "result", "job"]);
    assert_eq!(q.selectors.len(), 2);
    assert_eq!(q.selectors[0].0, "a_total");
    let m: Vec<(&str, &str, &str)> = q.selectors[0]
        .1
        .iter()
        .map(|m| (m.label.as_str(), m.op.as_str(), m.value.as_str()))
        .collect();
    assert_eq!(
        m,
        [
            ("kind", "=", "full"),
            ("result", "=~", "ok|bad"),
            ("job", "=~", "$job")
        ]
    );
    assert_eq!(q.selectors[1], ("b".to_owned(), Vec::new()));
}

/// The label check fails when it should: a label the family lacks, a value
/// the agent never exports, a grouping label nobody has.
#[test]
fn label_problems_are_found() {
    let families = parse_exposition(
        "# HELP v V.\n# TYPE v gauge\nv{verdict=\"clean\"} 0\nv{verdict=\"unknown\"} 0\n\
         # HELP h H.\n# TYPE h histogram\nh_bucket{kind=\"full\",le=\"+Inf\"} 0\n\
         h_sum{kind=\"full\"} 0\nh_count{kind=\"full\"} 0\n\
         # HELP i I.\n# TYPE i gauge\ni{image_id=\"x\"} 1\n",
    );
    let ok = r#"sum by (le) (rate(h_bucket{kind="full",le="+Inf",job="d"}[5m])) and on(instance) v{verdict=~"clean|unknown"} == 1 and i{image_id="any"}"#;
    assert_eq!(label_problems(&families, ok), Vec::<String>::new());
    for (bad, says) in [
        (r#"v{verdikt="clean"}"#, "no label `verdikt`"),
        (r#"v{verdict="dirty"}"#, "never exports verdict=\"dirty\""),
        (
            r#"v{verdict=~"clean|dirty"}"#,
            "never exports verdict=\"dirty\"",
        ),
        (
            r#"sum by (reason) (v)"#,
            "no exported series has the label `reason`",
        ),
        (r#"up{verdict="clean"}"#, "`up` has no label `verdict`"),
    ] {
        let p = label_problems(&families, bad);
        assert!(
            p.iter().any(|p| p.contains(says)),
            "`{bad}`: no problem saying {says:?}: {p:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// The rules file, read line by line (its layout is ours)

#[derive(Debug)]
struct Alert {
    name: String,
    /// The rule's lines, from `- alert:` (or `- record:`) to the next rule.
    text: String,
    exprs: Vec<String>,
}

/// Every rule of the file, alerting (`- alert:`) and recording
/// (`- record:`), with whether it is an alert.
fn rules_of(rules: &str) -> Vec<(bool, Alert)> {
    let lines: Vec<&str> = rules.lines().collect();
    let starts: Vec<(usize, bool)> = (0..lines.len())
        .filter_map(|i| {
            let t = lines[i].trim_start();
            if t.starts_with("- alert:") {
                Some((i, true))
            } else if t.starts_with("- record:") {
                Some((i, false))
            } else {
                None
            }
        })
        .collect();
    let mut out = Vec::new();
    for (n, &(s, alert)) in starts.iter().enumerate() {
        let e = starts.get(n + 1).map_or(lines.len(), |&(e, _)| e);
        let block = &lines[s..e];
        let key = if alert { "- alert:" } else { "- record:" };
        let name = block[0]
            .trim_start()
            .trim_start_matches(key)
            .trim()
            .to_owned();
        out.push((
            alert,
            Alert {
                name,
                text: block.join("\n"),
                exprs: yaml_values(block, "expr"),
            },
        ));
    }
    out
}

/// The alerting rules.
fn alerts(rules: &str) -> Vec<Alert> {
    rules_of(rules)
        .into_iter()
        .filter_map(|(alert, a)| alert.then_some(a))
        .collect()
}

/// The values of `key:` in these YAML lines, inline or a `|`/`>` block.
fn yaml_values(lines: &[&str], key: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        let trimmed = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let prefix = format!("{key}:");
        let Some(rest) = trimmed.strip_prefix(&prefix) else {
            i += 1;
            continue;
        };
        let rest = rest.trim();
        i += 1;
        if rest.starts_with('|') || rest.starts_with('>') {
            let mut value = String::new();
            while i < lines.len()
                && (lines[i].trim().is_empty()
                    || lines[i].len() - lines[i].trim_start().len() > indent)
            {
                value.push_str(lines[i].trim());
                value.push('\n');
                i += 1;
            }
            out.push(value);
        } else {
            out.push(rest.trim_matches('\'').to_owned());
        }
    }
    out
}

/// For each alert name: (tested firing, tested not firing) in the unit
/// tests.
fn tested_alerts(tests: &str) -> BTreeMap<String, (bool, bool)> {
    let mut tested: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in tests.lines() {
        let t = line.trim_start().trim_start_matches("- ");
        if let Some(name) = t.strip_prefix("alertname:") {
            current = Some(name.trim().to_owned());
        } else if let Some(rest) = t.strip_prefix("exp_alerts:") {
            let name = current
                .take()
                .unwrap_or_else(|| panic!("exp_alerts without alertname: {line:?}"));
            let entry = tested.entry(name).or_default();
            if rest.trim() == "[]" {
                entry.1 = true;
            } else {
                entry.0 = true;
            }
        }
    }
    tested
}

// ---------------------------------------------------------------------------
// promtool and amtool

#[test]
fn rules_pass_promtool_check() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    run(&promtool, &["check", "rules", RULES])
        .assert_success()
        .assert_contains("SUCCESS")
        // Lint findings (such as duplicate rules) print FAILED with exit 0.
        .assert_lacks("FAILED");
}

#[test]
fn rule_unit_tests_pass() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    run(&promtool, &["test", "rules", RULE_TESTS])
        .assert_success()
        .assert_contains("SUCCESS")
        .assert_lacks("FAILED");
}

#[test]
fn prometheus_example_config_is_valid() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    // The rule file is found relative to the config, wherever we run from.
    run(&promtool, &["check", "config", PROMETHEUS_CONFIG])
        .assert_success()
        .assert_contains("SUCCESS: 1 rule files found")
        .assert_contains("driftd.rules.yml")
        .assert_lacks("FAILED");
}

#[test]
fn alertmanager_example_config_is_valid() {
    let Some(amtool) = tool("amtool", "prometheus-alertmanager") else {
        return;
    };
    run(&amtool, &["check-config", ALERTMANAGER_CONFIG])
        .assert_success()
        .assert_contains("SUCCESS")
        .assert_lacks("FAILED");
}

#[test]
fn alertmanager_routes_pages_to_the_pager_and_the_rest_to_tickets() {
    let Some(amtool) = tool("amtool", "prometheus-alertmanager") else {
        return;
    };
    let config = read(ALERTMANAGER_CONFIG);
    assert!(
        config.contains("group_by: [alertname, instance]"),
        "{ALERTMANAGER_CONFIG}: group by alertname and instance"
    );
    for a in alerts(&read(RULES)) {
        let severity = yaml_values(&a.text.lines().collect::<Vec<_>>(), "severity").join("");
        let want = if severity == "page" {
            "pager"
        } else {
            "ticket"
        };
        let config_flag = format!("--config.file={ALERTMANAGER_CONFIG}");
        let alertname = format!("alertname={}", a.name);
        let severity_label = format!("severity={severity}");
        let out = run(
            &amtool,
            &[
                "config",
                "routes",
                "test",
                &config_flag,
                &alertname,
                &severity_label,
                "job=driftd",
                "instance=web-17:9847",
            ],
        );
        out.assert_success();
        let got = out.text.lines().next().unwrap_or("").trim();
        assert_eq!(got, want, "{} ({severity}) is routed to {got}", a.name);
    }
}

/// Each mutation loosens one rule by one step (a threshold or its `for`),
/// or breaks what makes it robust (counting each host once, paging for a
/// host without image labels); the unit tests' edge cases must catch
/// every one. Every alert has at least one; a recording rule has one
/// where it can be told wrong.
const MUTATIONS: [(&str, &str, &str); 26] = [
    (
        "digest:driftd_host_info:count",
        "group by (image_id, digest, host_id) (",
        "(",
    ),
    (
        "digest:driftd_drift_detected:sum",
        "max by (image_id, digest, host_id) (",
        "(",
    ),
    (
        "digest:driftd_signal_held:sum",
        "max by (image_id, digest, host_id) (",
        "(",
    ),
    (
        "verdict:driftd_verdict:sum",
        "max by (verdict, host_id) (",
        "(",
    ),
    ("DriftdFleetMassDrift", ">= 3", ">= 2"),
    ("DriftdFleetMassDrift", "> 0.1", ">= 0.1"),
    ("DriftdFleetMassDrift", ">= 10", ">= 9"),
    ("DriftdDriftDetected", "for: 0m", "for: 1m"),
    (
        "DriftdDriftDetected",
        "group by (job, instance) (driftd_drift_detected)",
        "group by (job, instance) (driftd_manifest_info)",
    ),
    (
        "DriftdDriftNotRemediated",
        "group by (job, instance) (driftd_first_detection_timestamp_seconds)",
        "group by (job, instance) (driftd_manifest_info)",
    ),
    (
        "DriftdDriftNotRemediated",
        "unless on(job, instance) driftd_signal_held == 1",
        "",
    ),
    (
        "DriftdSignalsHeld",
        "min_over_time(driftd_signal_held[20m]) and driftd_signal_held offset 20m\n",
        "min_over_time(driftd_signal_held[19m]) and driftd_signal_held offset 20m\n",
    ),
    (
        "DriftdSignalsHeld",
        " and driftd_signal_held offset 20m\n",
        "\n",
    ),
    (
        "DriftdSignalsHeld",
        "group by (job, instance) (driftd_signal_held)",
        "group by (job, instance) (driftd_manifest_info)",
    ),
    ("DriftdDriftNotRemediated", "> 1800", "> 1740"),
    (
        "DriftdDriftNotRemediated",
        "and on(job, instance) driftd_first_detection_timestamp_seconds > 0",
        "",
    ),
    ("DriftdVerdictUnknown", "for: 30m", "for: 29m"),
    ("DriftdScanStale", "> 3 * 3600", "> 3 * 3540"),
    (
        "DriftdScanStale",
        "max_over_time(driftd_last_full_scan_success_timestamp_seconds[1h]) == 0",
        "driftd_last_full_scan_success_timestamp_seconds == 0",
    ),
    ("DriftdScanStale", "offset 1h", "offset 59m"),
    ("DriftdAgentDown", "for: 5m", "for: 4m"),
    ("DriftdAgentAbsent", "for: 10m", "for: 9m"),
    ("DriftdManifestInvalid", "for: 5m", "for: 4m"),
    (
        "DriftdSignalDeliveryFailing",
        "driftd_signal_pending > 0",
        "driftd_signal_pending >= 0",
    ),
    ("DriftdWatchFailing", "[1h]", "[62m]"),
    ("DriftdStatePersistFailing", "[15m]", "[17m]"),
];

#[test]
fn rule_unit_tests_catch_a_loosened_rule() {
    let Some(promtool) = tool("promtool", "prometheus") else {
        return;
    };
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    let all = rules_of(&rules);
    let names: BTreeSet<&str> = all
        .iter()
        .filter(|(alert, _)| *alert)
        .map(|(_, a)| a.name.as_str())
        .collect();
    let mutated: BTreeSet<&str> = MUTATIONS.iter().map(|m| m.0).collect();
    assert!(
        names.is_subset(&mutated),
        "every alert needs a mutation: {:?}",
        names.difference(&mutated).collect::<Vec<_>>()
    );
    let dir = tempfile::Builder::new()
        .prefix("alert-rules-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir");
    std::fs::write(dir.path().join("driftd.rules.test.yml"), &tests).expect("write tests");
    for (name, from, to) in MUTATIONS {
        let alert = names.contains(name);
        // Replace `from` inside this rule only: from its `- alert:` or
        // `- record:` line to the next rule.
        let key = if alert { "alert" } else { "record" };
        let start = rules
            .find(&format!("- {key}: {name}\n"))
            .unwrap_or_else(|| panic!("no rule {name}"));
        let end = ["- alert: ", "- record: "]
            .iter()
            .filter_map(|k| rules[start + 1..].find(k))
            .min()
            .map_or(rules.len(), |e| start + 1 + e);
        let rule = &rules[start..end];
        assert_eq!(
            rule.matches(from).count(),
            1,
            "`{from}` must occur once in {name}:\n{rule}"
        );
        let broken = format!(
            "{}{}{}",
            &rules[..start],
            rule.replacen(from, to, 1),
            &rules[end..]
        );
        std::fs::write(dir.path().join("driftd.rules.yml"), broken).expect("write rules");
        let out = run_in(
            dir.path(),
            &promtool,
            &["test", "rules", "driftd.rules.test.yml"],
        );
        assert_ne!(
            out.code,
            Some(0),
            "the unit tests pass although {name} has `{to}` instead of `{from}`:\n{}",
            out.text
        );
        // The rule's own test fails, not only one that uses it.
        let own = if alert {
            format!("alertname: {name},")
        } else {
            format!("expr: \"{name}\",")
        };
        out.assert_contains("FAILED").assert_contains(&own);
    }
}

// ---------------------------------------------------------------------------
// The files against each other and against what driftd exports

#[test]
fn every_alert_is_documented_labelled_and_tested() {
    let rules = read(RULES);
    let runbook = read(RUNBOOK);
    let tested = tested_alerts(&read(RULE_TESTS));
    let alerts = alerts(&rules);
    assert!(alerts.len() >= 9, "{alerts:?}");
    let names: BTreeSet<&str> = alerts.iter().map(|a| a.name.as_str()).collect();
    for required in [
        "DriftdFleetMassDrift",
        "DriftdSignalsHeld",
        "DriftdDriftDetected",
        "DriftdDriftNotRemediated",
        "DriftdVerdictUnknown",
        "DriftdScanStale",
        "DriftdAgentDown",
        "DriftdAgentAbsent",
        "DriftdManifestInvalid",
        "DriftdSignalDeliveryFailing",
    ] {
        assert!(names.contains(required), "no alert {required}");
    }
    assert!(
        rules.contains("\n  - name: driftd\n"),
        "the group is `driftd`"
    );
    for a in &alerts {
        let name = &a.name;
        assert_eq!(a.exprs.len(), 1, "{name}: one expr:\n{}", a.text);
        let severity = yaml_values(&a.text.lines().collect::<Vec<_>>(), "severity");
        assert!(
            matches!(
                severity.as_slice(),
                [s] if ["page", "critical", "warning"].contains(&s.as_str())
            ),
            "{name}: severity is page, critical or warning, not {severity:?}"
        );
        for key in ["summary", "description"] {
            assert!(
                a.text.contains(&format!("\n          {key}: ")),
                "{name}: no {key} annotation:\n{}",
                a.text
            );
        }
        let anchor = name.to_ascii_lowercase();
        let url = format!("runbook_url: {RUNBOOK_URL}{anchor}\n");
        assert!(
            format!("{}\n", a.text).contains(&url),
            "{name}: no `{url}`:\n{}",
            a.text
        );
        // GitHub's anchor for the heading `## DriftdX` is `#driftdx`.
        assert!(
            runbook.lines().any(|l| l == format!("## {name}")),
            "{RUNBOOK}: no section `## {name}`"
        );
        assert_eq!(
            tested.get(name.as_str()),
            Some(&(true, true)),
            "{RULE_TESTS}: {name} needs a test where it fires and one where it does not \
             (firing, not firing): {tested:?}"
        );
    }
    for (name, _) in tested {
        assert!(
            names.contains(name.as_str()),
            "{RULE_TESTS} tests unknown alert {name}"
        );
    }
}

#[test]
fn every_recording_rule_is_named_tested_and_documented() {
    let rules = read(RULES);
    let tests = read(RULE_TESTS);
    let runbook = read(RUNBOOK);
    let records: Vec<Alert> = rules_of(&rules)
        .into_iter()
        .filter_map(|(alert, r)| (!alert).then_some(r))
        .collect();
    assert!(records.len() >= 4, "{records:?}");
    let tested: BTreeSet<String> = yaml_values(&tests.lines().collect::<Vec<_>>(), "expr")
        .into_iter()
        .map(|e| e.trim().to_owned())
        .collect();
    for r in &records {
        let name = &r.name;
        let parts: Vec<&str> = name.split(':').collect();
        assert!(
            parts.len() == 3
                && parts.iter().all(|p| !p.is_empty())
                && parts[1].starts_with("driftd_"),
            "{name}: a recording rule is named level:metric:operations, the metric a driftd_ one"
        );
        assert!(
            tested.contains(name.as_str()),
            "{RULE_TESTS}: no promql_expr_test with `expr: {name}`"
        );
        assert!(
            runbook.contains(&format!("| `{name}` |")),
            "{RUNBOOK}: `{name}` is not in the table of recording rules"
        );
    }
    // Before the alerts: a group's rules run in order, so the alerts read
    // the counts of the same evaluation.
    let first_alert = rules.find("- alert: ").expect("an alert");
    let last_record = rules.rfind("- record: ").expect("a recording rule");
    assert!(last_record < first_alert, "recording rules come first");
}

#[test]
fn rules_use_only_exported_metrics() {
    let families = exported_families();
    let mut series = exported_series(&families);
    let rules = read(RULES);
    let all = rules_of(&rules);
    // A recording rule's output is a series the other rules may use.
    for (alert, r) in &all {
        if !alert {
            series.insert(r.name.clone());
        }
    }
    for (alert, r) in &all {
        let what = if *alert { "alert" } else { "recording rule" };
        assert_eq!(r.exprs.len(), 1, "{what} {}: one expr:\n{}", r.name, r.text);
        for expr in &r.exprs {
            for m in metric_names(expr) {
                assert!(
                    series.contains(&m),
                    "{what} {}: `{m}` is not a metric driftd exports (nor `up`) {NOT_EXPORTED}:\n{expr}",
                    r.name
                );
            }
            let problems = label_problems(&families, expr);
            assert!(
                problems.is_empty(),
                "{what} {}: {}\n{expr}",
                r.name,
                problems.join("; ")
            );
        }
    }
    // The annotations' template queries too: any driftd_ name anywhere.
    for (at, _) in rules.match_indices("driftd_") {
        if at > 0 && rules.as_bytes()[at - 1].is_ascii_alphanumeric() {
            continue;
        }
        let word: String = rules[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if word == "driftd_" {
            continue; // the prefix, as in "the driftd_* series"
        }
        assert!(series.contains(&word), "{RULES}: `{word}` is not exported");
    }
}

#[test]
fn rule_tests_use_the_label_sets_driftd_exports() {
    let families = exported_families();
    let tests = read(RULE_TESTS);
    let mut seen = 0;
    for series in yaml_values(&tests.lines().collect::<Vec<_>>(), "series") {
        let (name, labels) = series
            .split_once('{')
            .unwrap_or_else(|| panic!("series without labels: {series}"));
        let labels = labels
            .strip_suffix('}')
            .unwrap_or_else(|| panic!("series not ending in `}}`: {series}"));
        let names: BTreeSet<&str> = labels
            .split(',')
            .map(|kv| kv.split_once('=').expect("label=value").0.trim())
            .collect();
        for t in TARGET_LABELS {
            assert!(names.contains(t), "{series}: no `{t}` label");
        }
        let own: BTreeSet<&str> = names
            .iter()
            .copied()
            .filter(|l| !TARGET_LABELS.contains(l))
            .collect();
        if PROMETHEUS_SERIES.contains(&name) {
            assert!(
                own.is_empty(),
                "{series}: `{name}` has only job and instance"
            );
        } else {
            let f = families.get(name).unwrap_or_else(|| {
                panic!("{series}: `{name}` is not a metric driftd exports {NOT_EXPORTED}")
            });
            let want: BTreeSet<&str> = f.labels.iter().map(String::as_str).collect();
            assert_eq!(
                own, want,
                "{series}: driftd exports {name} with these labels"
            );
            for kv in labels.split(',') {
                let (label, value) = kv.split_once('=').expect("label=value");
                let (label, value) = (label.trim(), value.trim().trim_matches('"'));
                if TARGET_LABELS.contains(&label) {
                    continue;
                }
                assert!(
                    f.allows(label, value),
                    "{series}: driftd never exports {label}=\"{value}\" (it has {:?})",
                    f.values.get(label).cloned().unwrap_or_default()
                );
            }
        }
        seen += 1;
    }
    assert!(seen > 50, "only {seen} series parsed from {RULE_TESTS}");
}

/// Every panel, rows' nested panels included.
fn all_panels(panels: &[Value]) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in panels {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(all_panels(nested));
        }
    }
    out
}

#[test]
fn dashboard_queries_use_only_exported_metrics() {
    let families = exported_families();
    let mut series = exported_series(&families);
    // The recording rules' outputs are series the dashboard may use.
    for (alert, r) in rules_of(&read(RULES)) {
        if !alert {
            series.insert(r.name);
        }
    }
    let text = read(DASHBOARD);
    let dash: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD} is not JSON: {e}"));
    let schema = dash["schemaVersion"].as_u64().expect("schemaVersion");
    assert!(schema >= 36, "schemaVersion {schema}");
    assert!(dash["uid"].is_string() && dash["title"].is_string());

    // A Prometheus data source variable, used by every query.
    let vars = dash["templating"]["list"].as_array().expect("templating");
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no `datasource` variable of type datasource (prometheus): {vars:?}"
    );
    let mut exprs: Vec<(String, String)> = Vec::new();
    for v in vars.iter().filter(|v| v["type"] == "query") {
        let q = v["query"]["query"]
            .as_str()
            .or(v["query"].as_str())
            .expect("a query variable has a query");
        // label_values(SELECTOR, LABEL): only the selector names a series,
        // and LABEL must be one of its labels.
        let q = match q.strip_prefix("label_values(") {
            Some(args) => {
                let (sel, label) = args
                    .strip_suffix(')')
                    .and_then(|a| a.rsplit_once(','))
                    .unwrap_or_else(|| {
                        panic!("variable {}: label_values(SELECTOR, LABEL)", v["name"])
                    });
                let label = label.trim();
                let name = metric_names(sel).into_iter().next().unwrap_or_default();
                let has = TARGET_LABELS.contains(&label)
                    || family_of(&families, &name).is_some_and(|(_, f)| f.labels.contains(label));
                assert!(
                    has,
                    "variable {}: `{name}` has no label `{label}`",
                    v["name"]
                );
                sel.to_owned()
            }
            None => q.to_owned(),
        };
        exprs.push((format!("variable {}", v["name"]), q));
    }

    let panels = all_panels(dash["panels"].as_array().expect("panels"));
    let mut ids = BTreeSet::new();
    let mut queried = 0;
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?").to_owned();
        assert!(
            ids.insert(p["id"].as_u64().expect("panel id")),
            "duplicate panel id in {title}"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].is_u64(), "{title}: gridPos.{k}");
        }
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{title}");
            let expr = t["expr"].as_str().expect("expr").to_owned();
            exprs.push((format!("panel {title:?} {}", t["refId"]), expr));
        }
        queried += 1;
    }
    assert!(queried >= 8, "only {queried} panels with queries");

    let mut used = BTreeSet::new();
    for (what, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{what}: no metric in `{expr}`");
        for m in names {
            assert!(
                series.contains(&m),
                "{what}: `{m}` is not a metric driftd exports (nor `up`) {NOT_EXPORTED}: {expr}"
            );
            used.insert(m);
        }
        let problems = label_problems(&families, expr);
        assert!(
            problems.is_empty(),
            "{what}: {}: {expr}",
            problems.join("; ")
        );
    }
    // The fleet view the dashboard promises.
    for (what, needle) in [
        ("hosts by verdict", "count by (verdict) (driftd_verdict"),
        ("image ids", "count by (image_id) (driftd_manifest_info"),
        (
            "signal results",
            "sum by (backend, result) (rate(driftd_signal_requests_total",
        ),
        ("scan duration quantiles", "histogram_quantile("),
        (
            "drifted share per image",
            "digest:driftd_drift_detected:ratio",
        ),
        ("hosts per verdict, each once", "verdict:driftd_verdict:sum"),
        ("signals held per image", "digest:driftd_signal_held:sum"),
    ] {
        assert!(
            exprs.iter().any(|(_, e)| e.contains(needle)),
            "no {what} query (`{needle}`)"
        );
    }
    for m in [
        "driftd_drift_detected",
        "driftd_signal_pending",
        "driftd_scan_errors_total",
        "driftd_watch_failures_total",
        "driftd_scan_duration_seconds_bucket",
    ] {
        assert!(used.contains(m), "the dashboard does not show {m}");
    }
}

// ---------------------------------------------------------------------------
// The shipped alertmanager.yml in a real Alertmanager

/// A child process, killed and reaped on drop; its output goes to `log`.
struct Child {
    child: std::process::Child,
    log: std::path::PathBuf,
}

impl Child {
    fn log(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|e| format!("(cannot read {:?}: {e})", self.log))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.0 request to 127.0.0.1:`port` (the server closes the
/// connection after its answer): the status and the body.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<(u16, String), String> {
    use std::io::Write;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let io = |e: std::io::Error| format!("{method} http://{addr}{path}: {e}");
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(io)?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(io)?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{method} {path}: no end of headers in {raw:?}"))?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// Start `prometheus-alertmanager` with `config` on a free loopback port,
/// gossip off, and wait until it is ready.
fn start_alertmanager(bin: &Path, dir: &Path, config: &str) -> (Child, u16) {
    let mut last = String::new();
    for attempt in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral port")
            .port();
        let log = dir.join(format!("alertmanager-{attempt}.log"));
        let out = std::fs::File::create(&log).expect("create the log");
        let mut child = Child {
            child: Command::new(bin)
                .arg(format!("--config.file={config}"))
                .arg(format!("--storage.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("clone the log"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.child.try_wait() {
                last = format!("exited with {status}:\n{}", child.log());
                break;
            }
            if matches!(http(port, "GET", "/-/ready", ""), Ok((200, _))) {
                return (child, port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if last.is_empty() {
            panic!("Alertmanager not ready within 30 s:\n{}", child.log());
        }
    }
    panic!("Alertmanager did not start (a port taken each time?): {last}");
}

/// The shipped alertmanager.yml, for real: while DriftdFleetMassDrift fires
/// for an image, the other pages of that image are inhibited and those of
/// other images (or of a host without image labels) are not; and the fleet
/// alerts of two images are two notifications, one per image, to the
/// pager.
#[test]
fn alertmanager_inhibits_the_pages_of_a_mass_drifted_image() {
    let Some(bin) = tool("prometheus-alertmanager", "prometheus-alertmanager") else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("alertmanager-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("create temp dir");
    let config = Path::new(ROOT).join(ALERTMANAGER_CONFIG);
    let (am, port) = start_alertmanager(&bin, dir.path(), &config.display().to_string());

    let (a, b, c) = ("blake3:aaaa", "blake3:bbbb", "blake3:cccc");
    let alert = |name: &str, labels: &[(&str, &str)]| {
        let mut l = serde_json::Map::new();
        l.insert("alertname".into(), name.into());
        l.insert("severity".into(), "page".into());
        for (k, v) in labels {
            l.insert((*k).into(), (*v).into());
        }
        serde_json::json!({ "labels": l })
    };
    let host = |name: &str, instance: &str, digest: Option<&str>| {
        let mut labels = vec![("job", "driftd"), ("instance", instance)];
        if let Some(d) = digest {
            labels.extend([("image_id", "ami-x"), ("digest", d)]);
        }
        alert(name, &labels)
    };
    let alerts = serde_json::json!([
        alert(
            "DriftdFleetMassDrift",
            &[("image_id", "ami-a"), ("digest", a)]
        ),
        alert(
            "DriftdFleetMassDrift",
            &[("image_id", "ami-c"), ("digest", c)]
        ),
        alert("DriftdSignalsHeld", &[("image_id", "ami-a"), ("digest", a)]),
        alert("DriftdSignalsHeld", &[("image_id", "ami-b"), ("digest", b)]),
        host("DriftdDriftDetected", "web-01:9847", Some(a)),
        host("DriftdDriftNotRemediated", "web-02:9847", Some(a)),
        host("DriftdDriftDetected", "api-01:9847", Some(b)),
        host("DriftdDriftNotRemediated", "api-02:9847", Some(b)),
        host("DriftdDriftDetected", "web-19:9847", None),
    ]);
    let (status, body) = http(port, "POST", "/api/v2/alerts", &alerts.to_string())
        .unwrap_or_else(|e| panic!("{e}\n{}", am.log()));
    assert_eq!(status, 200, "POST /api/v2/alerts: {body}\n{}", am.log());

    // (alertname, instance or digest) -> suppressed, once the inhibitor
    // has seen the sources (it learns of new alerts asynchronously).
    let want: BTreeMap<(String, String), bool> = [
        ("DriftdFleetMassDrift", a, false),
        ("DriftdFleetMassDrift", c, false),
        ("DriftdSignalsHeld", a, true),
        ("DriftdSignalsHeld", b, false),
        ("DriftdDriftDetected", "web-01:9847", true),
        ("DriftdDriftNotRemediated", "web-02:9847", true),
        ("DriftdDriftDetected", "api-01:9847", false),
        ("DriftdDriftNotRemediated", "api-02:9847", false),
        ("DriftdDriftDetected", "web-19:9847", false),
    ]
    .into_iter()
    .map(|(n, k, s)| ((n.to_owned(), k.to_owned()), s))
    .collect();
    let state = || -> BTreeMap<(String, String), bool> {
        let (_, body) = http(port, "GET", "/api/v2/alerts", "").unwrap_or_default();
        let list: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        list.as_array()
            .into_iter()
            .flatten()
            .map(|a| {
                let l = &a["labels"];
                let key = l["instance"]
                    .as_str()
                    .or(l["digest"].as_str())
                    .unwrap_or("");
                let name = l["alertname"].as_str().unwrap_or("").to_owned();
                ((name, key.to_owned()), a["status"]["state"] == "suppressed")
            })
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = state();
    while got != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        got = state();
    }
    assert_eq!(
        got,
        want,
        "(alert, host or image) -> suppressed\n{}",
        am.log()
    );

    // One group per image for each fleet alert, to the pager.
    let (_, body) = http(port, "GET", "/api/v2/alerts/groups", "").expect("groups");
    let groups: Value = serde_json::from_str(&body).expect("groups are JSON");
    let mut fleet: Vec<(Value, Value, usize)> = groups
        .as_array()
        .expect("a list of groups")
        .iter()
        .filter(|g| {
            ["DriftdFleetMassDrift", "DriftdSignalsHeld"]
                .contains(&g["labels"]["alertname"].as_str().unwrap_or(""))
        })
        .map(|g| {
            let n = g["alerts"].as_array().map_or(0, Vec::len);
            (g["labels"].clone(), g["receiver"]["name"].clone(), n)
        })
        .collect();
    fleet.sort_by_key(|g| g.0.to_string());
    let mut expected: Vec<(Value, Value, usize)> = [
        ("DriftdFleetMassDrift", a),
        ("DriftdFleetMassDrift", c),
        ("DriftdSignalsHeld", a),
        ("DriftdSignalsHeld", b),
    ]
    .iter()
    .map(|(name, d)| {
        let labels = serde_json::json!({"alertname": name, "digest": d});
        (labels, Value::from("pager"), 1)
    })
    .collect();
    expected.sort_by_key(|g| g.0.to_string());
    assert_eq!(fleet, expected, "fleet alert groups:\n{body}");
}
