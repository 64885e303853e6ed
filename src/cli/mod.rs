//! The command line: one file per subcommand. Only this module prints.
//!
//! Exit status for every command: 0 clean (or success), 1 drifted (or the
//! manifests differ), 2 unknown or error.

pub mod bake;
pub mod check;
pub mod diff;
pub mod generate;
pub mod inspect;
pub mod keygen;
mod progress;
mod report;
pub mod run;
pub mod state;
pub mod validate;

use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// An error for the user: already says which operation and which path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn io(op: &str, path: &Path, e: std::io::Error) -> CliError {
        CliError(format!("{op} {}: {e}", shown(path)))
    }
}

/// A path for text output, escaped with the manifest's one codec
/// ([`crate::manifest::escape`]): a name from an image or a glob may hold
/// terminal escapes, and is shown losslessly, bytes that are not UTF-8
/// included, never raw.
pub(crate) fn shown(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    crate::manifest::escape::escape(path.as_os_str().as_bytes())
}

impl From<crate::config::ConfigError> for CliError {
    fn from(e: crate::config::ConfigError) -> Self {
        CliError(e.to_string())
    }
}

/// Exit status of a command that ran to the end.
pub type Status = u8;

const LONG_ABOUT: &str = "\
driftd makes the promise of immutable infrastructure enforceable.

In the image pipeline, `driftd bake` records every path of the image (type,
mode, owner, size, link target, xattrs, BLAKE3 of the content) with the
policy it was baked with, into a signed manifest. On every host, `driftd
check` compares the live filesystem with that manifest and reports each
path that was added, removed, modified, changed in metadata or in type, or
could not be checked.

Exit status: 0 clean, 1 drifted, 2 unknown (a path could not be checked) or
error. A path that could not be checked never gives 0.";

#[derive(Debug, Parser)]
#[command(name = "driftd", version, about = "Drift detection for immutable infrastructure", long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// More logging (-v info, -vv debug, -vvv trace). RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// One line per finding and a summary, for people.
    Text,
    /// One JSON document (schema in the README), for machines.
    Json,
}

/// When to colour text output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    /// Colour when stdout is a terminal and NO_COLOR is unset.
    Auto,
    Always,
    Never,
}

impl Color {
    /// Colour in what goes to stdout.
    fn enabled(self) -> bool {
        self.enabled_on(std::io::stdout().is_terminal())
    }

    /// Colour on a stream that is (or is not) a terminal.
    fn enabled_on(self, terminal: bool) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => terminal && std::env::var_os("NO_COLOR").is_none(),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Walk an image root and write a (signed) manifest of it.
    Bake(bake::BakeArgs),
    /// Check a live tree against a manifest.
    Check(check::CheckArgs),
    /// Show what changed between two manifests (reviewing an image upgrade).
    Diff(diff::DiffArgs),
    /// Show a manifest's identity, signature and policy (or all its entries).
    Inspect(inspect::InspectArgs),
    /// Generate an ed25519 key pair for signing manifests.
    Keygen(keygen::KeygenArgs),
    /// Run the agent: watch the host, rescan, serve metrics (systemd service).
    Run(run::RunArgs),
    /// Check a config and its manifest without running (the unit's ExecStartPre).
    Validate(validate::ValidateArgs),
    /// Show the agent's persisted verdict, or clear a drift verdict explicitly.
    State(state::StateArgs),
    /// Write man pages and shell completions (for packagers).
    Generate(generate::GenerateArgs),
}

/// Run the parsed command.
pub fn run(cli: Cli) -> Result<Status, CliError> {
    match cli.command {
        Command::Bake(a) => bake::run(a),
        Command::Check(a) => check::run(a),
        Command::Diff(a) => diff::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Run(a) => run::run(a),
        Command::Validate(a) => validate::run(a),
        Command::State(a) => state::run(a),
        Command::Generate(a) => generate::run(a),
    }
}

/// Load a manifest for a verdict (`check`): the one trust rule of
/// [`crate::trust`].
pub fn load_for_verdict(
    path: &Path,
    trusted_keys: &[PathBuf],
    allow_unsigned: bool,
) -> Result<crate::trust::Loaded, CliError> {
    crate::trust::load(
        path,
        crate::trust::Rule::Enforce {
            keys: trusted_keys,
            allow_unsigned,
        },
    )
    .map_err(|e| CliError(e.message))
}

/// Read a manifest for review (`inspect`, `diff`): the digest is always
/// verified, the signature when keys are given.
pub fn load_for_review(
    path: &Path,
    trusted_keys: &[PathBuf],
) -> Result<(crate::manifest::Manifest, crate::trust::Trust), CliError> {
    let m = crate::trust::read(path).map_err(|e| CliError(e.message))?;
    let trust = crate::trust::judge(&m, path, crate::trust::Rule::Review { keys: trusted_keys })
        .map_err(|e| CliError(e.message))?;
    Ok((m, trust))
}

/// Write a file atomically (see [`crate::fsutil::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    crate::fsutil::write_atomic(path, bytes, mode).map_err(|e| CliError::io("write", path, e))
}
