//! `driftd diff`: what changed between two manifests.

use super::report;
use super::{CliError, Color, Format, Status};
use crate::manifest::diff::diff_manifests;
use crate::trust::ManifestInfo;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 identical entries, 1 different, 2 error. Both \
digests are always verified; signatures only when --trusted-key is given."
)]
pub struct DiffArgs {
    /// The older manifest.
    pub old: PathBuf,
    /// The newer manifest.
    pub new: PathBuf,
    /// Verify both manifests' signatures with this public key (repeatable).
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Colour in text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

pub fn run(a: DiffArgs) -> Result<Status, CliError> {
    let (old, old_trust) = super::load_for_review(&a.old, &a.trusted_key)?;
    let (new, new_trust) = super::load_for_review(&a.new, &a.trusted_key)?;
    let findings = diff_manifests(&old, &new).map_err(|e| CliError(format!("diff: {e}")))?;
    let old_info = ManifestInfo::new(&old, Some(&a.old), &old_trust);
    let new_info = ManifestInfo::new(&new, Some(&a.new), &new_trust);
    let policy_changed = old.header.policy != new.header.policy;
    match a.format {
        Format::Json => report::print_diff_json(&findings, &old_info, &new_info, policy_changed),
        Format::Text => report::print_diff_text(
            &findings,
            &old_info,
            &new_info,
            policy_changed,
            a.color.enabled(),
        ),
    }
    Ok(u8::from(!findings.is_empty()))
}
