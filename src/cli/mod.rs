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
mod report;
pub mod run;
pub mod validate;

use crate::manifest::{sign, Manifest};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// An error for the user: already says which operation and which path.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CliError(pub String);

impl CliError {
    pub fn io(op: &str, path: &Path, e: std::io::Error) -> CliError {
        CliError(format!("{op} {}: {e}", path.display()))
    }
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
    fn enabled(self) -> bool {
        match self {
            Color::Always => true,
            Color::Never => false,
            Color::Auto => {
                std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
            }
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
        Command::Generate(a) => generate::run(a),
    }
}

/// Read and parse a manifest file; the digest is verified, the signature
/// is not (see [`verify_signature`]).
pub fn load_manifest(path: &Path) -> Result<Manifest, CliError> {
    let bytes = std::fs::read(path).map_err(|e| CliError::io("read manifest", path, e))?;
    Manifest::from_vec(bytes)
        .map_err(|e| CliError(format!("invalid manifest {}: {e}", path.display())))
}

/// How a manifest's signature was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Verified with the trusted key of this id.
    Verified(String),
    /// Not verified: `--allow-unsigned` was given.
    NotVerified,
}

/// Verify a manifest against trusted key files, or accept it unverified
/// when `allow_unsigned` is set. Fails closed: without either flag, or with
/// a signature that does not verify, the manifest is refused.
pub fn verify_signature(
    manifest: &Manifest,
    manifest_path: &Path,
    trusted_keys: &[PathBuf],
    allow_unsigned: bool,
) -> Result<Trust, CliError> {
    if trusted_keys.is_empty() {
        if allow_unsigned {
            return Ok(Trust::NotVerified);
        }
        return Err(CliError(
            "refusing to use a manifest whose signature is not checked: pass --trusted-key FILE (or --allow-unsigned for an unsigned manifest)".into(),
        ));
    }
    let mut keys = Vec::new();
    for p in trusted_keys {
        let text =
            std::fs::read_to_string(p).map_err(|e| CliError::io("read trusted key", p, e))?;
        keys.push(
            sign::parse_public(&text)
                .map_err(|e| CliError(format!("trusted key {}: {e}", p.display())))?,
        );
    }
    sign::verify(manifest, &keys)
        .map(Trust::Verified)
        .map_err(|e| CliError(format!("manifest {}: {e}", manifest_path.display())))
}

/// Write a file atomically (see [`crate::fsutil::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CliError> {
    crate::fsutil::write_atomic(path, bytes, mode).map_err(|e| CliError::io("write", path, e))
}
