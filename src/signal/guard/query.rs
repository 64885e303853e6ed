//! What the guard asks Prometheus, and how it reads the answer. No IO here:
//! the HTTP client is in [`super::client`].
//!
//! One instant query per look returns up to three series, told apart by
//! the label `guard`:
//!
//! - `guard="hosts"`: the distinct `host_id`s whose agents report this
//!   manifest digest (`driftd_host_info` joined on `job, instance` with
//!   `driftd_manifest_info{digest="D"}`);
//! - `guard="drifted"`: the distinct *other* `host_id`s of that digest
//!   with `driftd_drift_detected == 1`;
//! - `guard="unknown"`: the same with `driftd_verdict{verdict="unknown"}
//!   == 1` (what a `verdict.unknown` signal is judged by).
//!
//! `count(count by (host_id) (...))` counts hosts, not series: an HA pair
//! of Prometheus servers without deduplication (two copies of each series
//! with a `replica` label) counts each host once. A series absent from a
//! successful answer is 0 (no drifted host has no series at all). A
//! signal of a host without a usable manifest (digest `none`) is judged
//! against every host the selector matches.
//!
//! A `query` override replaces the whole query; it must answer in the
//! same shape, and may use exactly two placeholders, `{digest}` and
//! `{host_id}`, whose values are checked against a safe character set
//! before they are put in (they can never end a string or a selector).

use super::selector::{quote, Selector};
use crate::verdict::SignalEvent;
use serde::Deserialize;

/// The placeholders a query override may use.
pub const PLACEHOLDERS: [&str; 2] = ["{digest}", "{host_id}"];

/// What one look asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookRequest {
    pub event: SignalEvent,
    /// The manifest digest of the episode (`none` without one).
    pub digest: String,
    pub host_id: String,
}

/// What Prometheus answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    /// Hosts of the image (as reported; the guard counts at least 1).
    pub hosts: u64,
    /// Other hosts of the image that are drifted.
    pub drifted: u64,
    /// Other hosts of the image whose verdict is unknown.
    pub unknown: u64,
}

impl Answer {
    /// The other hosts that count against a signal of `event`.
    pub fn others(&self, event: SignalEvent) -> u64 {
        match event {
            SignalEvent::DriftDetected => self.drifted,
            SignalEvent::VerdictUnknown => self.unknown,
        }
    }
}

/// May a placeholder's value go into a query? Letters, digits and
/// `. _ : -` only: a machine id, a hostname, an instance id, a digest.
pub fn safe_value(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 256
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Check a query override: not empty, not too long, and every
/// `{identifier}` in it one of [`PLACEHOLDERS`].
pub fn check_template(q: &str) -> Result<(), String> {
    if q.trim().is_empty() {
        return Err("empty".into());
    }
    if q.len() > super::spec::MAX_QUERY_LEN {
        return Err(format!("longer than {} bytes", super::spec::MAX_QUERY_LEN));
    }
    let mut rest = q;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if name_len > 0 && after[name_len..].starts_with('}') {
            let p = &rest[open..open + name_len + 2];
            if !PLACEHOLDERS.contains(&p) {
                return Err(format!(
                    "unknown placeholder {p}: only {} and {} are replaced",
                    PLACEHOLDERS[0], PLACEHOLDERS[1]
                ));
            }
        }
        rest = after;
    }
    Ok(())
}

/// The query of one look: the override with its placeholders filled in,
/// or the default query.
pub fn render(
    template: Option<&str>,
    selector: Option<&Selector>,
    req: &LookRequest,
) -> Result<String, String> {
    for (what, v) in [("host id", &req.host_id), ("manifest digest", &req.digest)] {
        if !safe_value(v) {
            return Err(format!(
                "the {what} `{}` has characters a query cannot hold safely (letters, digits, `._:-` only)",
                v.escape_debug()
            ));
        }
    }
    Ok(match template {
        Some(t) => t
            .replace("{digest}", &req.digest)
            .replace("{host_id}", &req.host_id),
        None => default_query(selector, &req.digest, &req.host_id),
    })
}

/// The default query (see the module doc).
pub fn default_query(selector: Option<&Selector>, digest: &str, host_id: &str) -> String {
    let sel = selector.map_or(String::new(), |s| s.to_string());
    let with = |m: &str| match (m.is_empty(), sel.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{sel}}}"),
        (false, true) => format!("{{{m}}}"),
        (false, false) => format!("{{{m},{sel}}}"),
    };
    // The hosts of the image: a host's info joined with its manifest.
    let image = |host: &str| {
        let info = format!("driftd_host_info{}", with(host));
        if digest == "none" {
            info
        } else {
            let digest_m = format!("digest={}", quote(digest));
            format!(
                "{info} and on(job, instance) driftd_manifest_info{}",
                with(&digest_m)
            )
        }
    };
    let others = format!("host_id!={}", quote(host_id));
    let count = |inner: String, label: &str| {
        format!("label_replace(count(count by (host_id) ({inner})), \"guard\", \"{label}\", \"\", \"\")")
    };
    let hosts = count(image(""), "hosts");
    let drifted = count(
        format!(
            "{} and on(job, instance) (driftd_drift_detected{} == 1)",
            image(&others),
            with("")
        ),
        "drifted",
    );
    let unknown = count(
        format!(
            "{} and on(job, instance) (driftd_verdict{} == 1)",
            image(&others),
            with("verdict=\"unknown\"")
        ),
        "unknown",
    );
    format!("{hosts} or {drifted} or {unknown}")
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    /// Decoded as samples only once it is known to be a vector.
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct ApiSample {
    metric: std::collections::BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// At most this much of an error text from the server is kept.
const ERROR_TEXT: usize = 300;

fn clip(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_TEXT)
        .collect();
    if s.chars().count() > ERROR_TEXT {
        out.push('…');
    }
    out
}

/// Read an `/api/v1/query` answer. An error status, a warning (partial
/// data: a store or a shard did not answer), a result that is not a
/// vector, a series without a known `guard` label or a value that is not
/// a count is an error: the guard never decides on a partial count.
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let r: ApiResponse = serde_json::from_slice(body)
        .map_err(|e| format!("the answer is not a Prometheus API response: {e}"))?;
    if r.status != "success" {
        return Err(format!(
            "query failed: {}: {}",
            r.error_type.as_deref().unwrap_or("error"),
            clip(r.error.as_deref().unwrap_or("(no message)"))
        ));
    }
    if !r.warnings.is_empty() {
        return Err(format!(
            "partial answer (warnings: {})",
            clip(&r.warnings.join("; "))
        ));
    }
    let data = r.data.ok_or("a success without data")?;
    if data.result_type != "vector" {
        return Err(format!(
            "the query answered a {}, not a vector of series labelled guard=\"hosts\", \"drifted\", \"unknown\"",
            data.result_type
        ));
    }
    let samples: Vec<ApiSample> = serde_json::from_value(data.result)
        .map_err(|e| format!("the answer's vector cannot be read: {e}"))?;
    let mut answer = Answer::default();
    let mut seen = Vec::new();
    for s in samples {
        let label = s.metric.get("guard").map(String::as_str).unwrap_or("");
        let v: f64 = s.value.1.parse().map_err(|_| {
            format!(
                "guard=\"{}\": `{}` is not a number",
                clip(label),
                clip(&s.value.1)
            )
        })?;
        if !v.is_finite() || v < 0.0 || v.fract() != 0.0 || v > 1e15 {
            return Err(format!("guard=\"{}\": {v} is not a count", clip(label)));
        }
        let slot = match label {
            "hosts" => &mut answer.hosts,
            "drifted" => &mut answer.drifted,
            "unknown" => &mut answer.unknown,
            "" => return Err("a series without a guard label (the query must label its series guard=\"hosts\", \"drifted\", \"unknown\")".into()),
            other => return Err(format!("unknown series guard=\"{}\"", clip(other))),
        };
        if seen.contains(&label.to_string()) {
            return Err(format!("two series guard=\"{label}\""));
        }
        seen.push(label.to_string());
        *slot = v as u64;
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(event: SignalEvent) -> LookRequest {
        LookRequest {
            event,
            digest: "blake3:00ff".into(),
            host_id: "i-0abc".into(),
        }
    }

    #[test]
    fn the_default_query_counts_distinct_hosts_of_the_image() {
        let q = render(None, None, &req(SignalEvent::DriftDetected)).unwrap();
        assert_eq!(
            q,
            "label_replace(count(count by (host_id) (driftd_host_info and on(job, instance) \
             driftd_manifest_info{digest=\"blake3:00ff\"})), \"guard\", \"hosts\", \"\", \"\") \
             or label_replace(count(count by (host_id) (driftd_host_info{host_id!=\"i-0abc\"} and on(job, instance) \
             driftd_manifest_info{digest=\"blake3:00ff\"} and on(job, instance) (driftd_drift_detected == 1))), \
             \"guard\", \"drifted\", \"\", \"\") \
             or label_replace(count(count by (host_id) (driftd_host_info{host_id!=\"i-0abc\"} and on(job, instance) \
             driftd_manifest_info{digest=\"blake3:00ff\"} and on(job, instance) (driftd_verdict{verdict=\"unknown\"} == 1))), \
             \"guard\", \"unknown\", \"\", \"\")"
        );
        let sel = Selector::parse("env=\"prod\"").unwrap();
        let q = render(None, Some(&sel), &req(SignalEvent::DriftDetected)).unwrap();
        for part in [
            "driftd_host_info{env=\"prod\"} and",
            "driftd_host_info{host_id!=\"i-0abc\",env=\"prod\"}",
            "driftd_manifest_info{digest=\"blake3:00ff\",env=\"prod\"}",
            "(driftd_drift_detected{env=\"prod\"} == 1)",
            "(driftd_verdict{verdict=\"unknown\",env=\"prod\"} == 1)",
        ] {
            assert!(q.contains(part), "no `{part}` in {q}");
        }
        let mut none = req(SignalEvent::VerdictUnknown);
        none.digest = "none".into();
        let q = render(None, None, &none).unwrap();
        assert!(!q.contains("driftd_manifest_info"), "{q}");
    }

    #[test]
    fn overrides_get_exactly_two_checked_placeholders() {
        check_template("count(up{digest=\"{digest}\", host!=\"{host_id}\"})").unwrap();
        // Matchers and grouping braces are not placeholders.
        check_template("sum by (x) (up{job=\"a\"}) or vector(0){}").unwrap();
        for (q, needle) in [
            ("up{job=\"{job}\"}", "unknown placeholder {job}"),
            ("{image_id}", "unknown placeholder {image_id}"),
            ("  ", "empty"),
        ] {
            let e = check_template(q).unwrap_err();
            assert!(e.contains(needle), "{q}: {e}");
        }
        let q = render(
            Some("a{{digest}} b{host_id}"),
            None,
            &req(SignalEvent::DriftDetected),
        )
        .unwrap();
        assert_eq!(q, "a{blake3:00ff} bi-0abc");
        let mut bad = req(SignalEvent::DriftDetected);
        bad.host_id = "x\"} or vector(1) or up{a=\"".into();
        let e = render(Some("{host_id}"), None, &bad).unwrap_err();
        assert!(e.contains("host id"), "{e}");
        assert!(render(None, None, &bad).is_err(), "the default query too");
        assert!(safe_value("5f1c0e2d9a") && safe_value("web-17.example.internal"));
        assert!(!safe_value("") && !safe_value("a b") && !safe_value("a\"b") && !safe_value("a}b"));
    }

    #[test]
    fn answers_are_read_strictly() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"guard":"hosts"},"value":[1700000000.1,"20"]},
            {"metric":{"guard":"drifted"},"value":[1700000000.1,"3"]}]}}"#;
        assert_eq!(
            parse_answer(ok).unwrap(),
            Answer {
                hosts: 20,
                drifted: 3,
                unknown: 0
            }
        );
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(parse_answer(empty).unwrap(), Answer::default());
        // Prometheus 2.45+ adds informational notes: not an error.
        let infos =
            br#"{"status":"success","infos":["x"],"data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_answer(infos).is_ok());
        for (body, needle) in [
            (&br#"{"status":"success","warnings":["store eu-1 unavailable"],"data":{"resultType":"vector","result":[]}}"#[..], "partial answer"),
            (br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#, "bad_data: parse error"),
            (br#"{"status":"success","data":{"resultType":"scalar","result":[1,"2"]}}"#, "not a vector"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"2"]}]}}"#, "without a guard label"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"guard":"x"},"value":[1,"2"]}]}}"#, "unknown series"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"guard":"hosts"},"value":[1,"NaN"]}]}}"#, "not a count"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"guard":"hosts"},"value":[1,"2.5"]}]}}"#, "not a count"),
            (br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"guard":"hosts"},"value":[1,"2"]},{"metric":{"guard":"hosts"},"value":[1,"2"]}]}}"#, "two series"),
            (b"<html>", "not a Prometheus API response"),
        ] {
            let e = parse_answer(body).unwrap_err();
            assert!(e.contains(needle), "{}: {e}", String::from_utf8_lossy(body));
        }
    }
}
