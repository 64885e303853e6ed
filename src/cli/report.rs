//! Rendering reports: JSON for machines (schema in the README), text for
//! people. Paths are always written with the lossless escaping of
//! [`crate::manifest::escape`].

use crate::check::CheckReport;
use crate::manifest::diff::{Counts, Finding, FindingKind, FindingRecord, Verdict};
use crate::manifest::escape::escape;
use crate::trust::ManifestInfo;
use serde::Serialize;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

fn json_findings(findings: &[Finding]) -> Vec<FindingRecord> {
    findings.iter().map(FindingRecord::from).collect()
}

#[derive(Serialize)]
struct Summary {
    findings: usize,
    #[serde(flatten)]
    counts: Counts,
    #[serde(skip_serializing_if = "Option::is_none")]
    entries_checked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    files_hashed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes_hashed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_seconds: Option<f64>,
}

fn print_json<T: Serialize>(v: &T) {
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is not worth a panic.
    let _ = serde_json::to_writer_pretty(&mut out, v);
    let _ = writeln!(out);
}

pub fn print_check_json(r: &CheckReport, m: &ManifestInfo, root: &Path, elapsed: Duration) {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        verdict: Verdict,
        root: String,
        manifest: &'a ManifestInfo,
        summary: Summary,
        findings: Vec<FindingRecord>,
    }
    print_json(&Doc {
        schema: "driftd.check.v1",
        verdict: r.verdict,
        root: root.display().to_string(),
        manifest: m,
        summary: Summary {
            findings: r.found.held(),
            counts: r.counts,
            entries_checked: Some(r.stats.entries),
            files_hashed: Some(r.stats.files_hashed),
            bytes_hashed: Some(r.stats.bytes_hashed),
            duration_seconds: Some((elapsed.as_secs_f64() * 1000.0).round() / 1000.0),
        },
        findings: r.found.iter().map(FindingRecord::from).collect(),
    });
}

pub fn print_diff_json(
    findings: &[Finding],
    old: &ManifestInfo,
    new: &ManifestInfo,
    policy_changed: bool,
) {
    #[derive(Serialize)]
    struct Doc<'a> {
        schema: &'static str,
        identical: bool,
        old: &'a ManifestInfo,
        new: &'a ManifestInfo,
        policy_changed: bool,
        summary: Summary,
        findings: Vec<FindingRecord>,
    }
    print_json(&Doc {
        schema: "driftd.diff.v1",
        identical: findings.is_empty(),
        old,
        new,
        policy_changed,
        summary: Summary {
            findings: findings.len(),
            counts: Counts::of(findings),
            entries_checked: None,
            files_hashed: None,
            bytes_hashed: None,
            duration_seconds: None,
        },
        findings: json_findings(findings),
    });
}

fn paint(color: bool, code: &str, s: &str) -> String {
    if color {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn kind_color(k: FindingKind) -> &'static str {
    match k {
        FindingKind::Added => "32",
        FindingKind::Removed => "31",
        FindingKind::Modified | FindingKind::Type => "1;31",
        FindingKind::Metadata => "33",
        FindingKind::Unreadable => "35",
    }
}

fn finding_line(f: &Finding, color: bool) -> String {
    let mut line = format!(
        "{} {}",
        paint(color, kind_color(f.kind), &format!("{:<10}", f.kind.name())),
        escape(&f.path)
    );
    if !f.changes.is_empty() {
        let parts: Vec<String> = f
            .changes
            .iter()
            .map(|c| {
                format!(
                    "{} {} -> {}",
                    c.attribute,
                    c.expected.as_deref().unwrap_or("(none)"),
                    c.actual.as_deref().unwrap_or("(none)")
                )
            })
            .collect();
        line.push_str("  ");
        line.push_str(&parts.join("; "));
    }
    if let Some(r) = &f.reason {
        line.push_str("  (");
        line.push_str(r);
        line.push(')');
    }
    line
}

fn counts_text(c: &Counts) -> String {
    let parts: Vec<String> = FindingKind::ALL
        .iter()
        .filter(|k| c.get(**k) > 0)
        .map(|k| format!("{} {}", c.get(*k), k.name()))
        .collect();
    if parts.is_empty() {
        "no findings".into()
    } else {
        parts.join(", ")
    }
}

fn identity(m: &ManifestInfo) -> String {
    format!(
        "image-id {}, digest {}, {}",
        if m.image_id.is_empty() {
            "(none)".to_string()
        } else {
            escape(m.image_id.as_bytes())
        },
        m.digest,
        match (&m.key_id, m.signature_verified) {
            (Some(k), true) => format!("signature verified (key {k})"),
            (Some(k), false) => format!("signed by key {k}, signature NOT verified"),
            (None, _) => "unsigned".into(),
        }
    )
}

pub fn print_check_text(r: &CheckReport, m: &ManifestInfo, color: bool) {
    let mut out = std::io::stdout().lock();
    for f in r.found.iter() {
        let _ = writeln!(out, "{}", finding_line(f, color));
    }
    let verdict = match r.verdict {
        Verdict::Clean => paint(color, "1;32", "clean"),
        Verdict::Drifted => paint(color, "1;31", "DRIFTED"),
        Verdict::Unknown => paint(color, "1;35", "UNKNOWN"),
    };
    let _ = writeln!(
        out,
        "{verdict}: {} ({} entries checked, {} files hashed); manifest {}",
        counts_text(&r.counts),
        r.stats.entries,
        r.stats.files_hashed,
        identity(m)
    );
}

pub fn print_diff_text(
    findings: &[Finding],
    old: &ManifestInfo,
    new: &ManifestInfo,
    policy_changed: bool,
    color: bool,
) {
    let mut out = std::io::stdout().lock();
    for f in findings {
        let _ = writeln!(out, "{}", finding_line(f, color));
    }
    if policy_changed {
        let _ = writeln!(
            out,
            "note: the embedded policy differs between the manifests"
        );
    }
    let _ = writeln!(
        out,
        "{}: {}; old {}; new {}",
        if findings.is_empty() {
            "identical"
        } else {
            "different"
        },
        counts_text(&Counts::of(findings)),
        identity(old),
        identity(new)
    );
}
