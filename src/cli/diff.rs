//! `driftd diff`: what changed between two manifests.

use super::report::{self, ManifestInfo};
use super::{CliError, Color, Format, Status, Trust};
use crate::manifest::diff::diff_manifests;
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
    let old = super::load_manifest(&a.old)?;
    let new = super::load_manifest(&a.new)?;
    let trust = |m, p| super::verify_signature(m, p, &a.trusted_key, a.trusted_key.is_empty());
    let old_trust: Trust = trust(&old, &a.old)?;
    let new_trust: Trust = trust(&new, &a.new)?;
    let findings = diff_manifests(&old, &new);
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
