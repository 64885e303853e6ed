//! `driftd check`: compare a live tree with a manifest.

use super::progress::{self, Shown};
use super::report;
use super::{CliError, Color, Format, Status};
use crate::check::check_scope;
use crate::scan::ScanControl;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status: 0 clean, 1 drifted, 2 unknown (some path could not be \
checked) or error. The manifest's embedded policy decides what is checked."
)]
pub struct CheckArgs {
    /// The manifest baked from the image.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,
    /// The live tree to check.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Public key the manifest must be signed with (repeatable, for key
    /// rotation).
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Vec<PathBuf>,
    /// Admit a manifest that carries no signature. A signed manifest is
    /// always verified with --trusted-key, this flag or not.
    #[arg(long)]
    pub allow_unsigned: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Colour in text output.
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    /// Hashing threads (0 = one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

pub fn run(a: CheckArgs) -> Result<Status, CliError> {
    let loaded = super::load_for_verdict(&a.manifest, &a.trusted_key, a.allow_unsigned)?;
    let started = std::time::Instant::now();
    // Progress on a terminal's stderr, never beside JSON.
    let shown = Shown::start(
        "checking",
        || progress::goal_of(&loaded.manifest),
        a.color,
        a.format == Format::Text,
    );
    let control = ScanControl {
        progress: shown.handle(),
        ..ScanControl::default()
    };
    let report = check_scope(
        &loaded.manifest,
        &loaded.policy,
        &a.root,
        a.threads,
        &control,
        usize::MAX,
    )
    .map_err(|e| CliError(e.to_string()))?;
    shown.finish();
    let info = loaded.info();
    let elapsed = started.elapsed();
    match a.format {
        Format::Json => report::print_check_json(&report, &info, &a.root, elapsed),
        Format::Text => report::print_check_text(&report, &info, a.color.enabled()),
    }
    Ok(report.verdict.exit_code())
}
