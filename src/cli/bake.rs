//! `driftd bake`: walk an image root and write its manifest.

use super::progress::{Goal, Shown};
use super::{CliError, Color, Status};
use crate::config::{self, Config};
use crate::manifest::escape::escape;
use crate::manifest::{sign, Header, Manifest, FORMAT_VERSION};
use crate::policy::CompiledPolicy;
use crate::scan::{self, ScanControl, ScanOptions};
use clap::Args;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(
    after_help = "Any path that cannot be read makes bake fail (exit 2) and write \
nothing: a manifest with holes would hide tampering. The output file is excluded \
automatically when it lies inside the root."
)]
pub struct BakeArgs {
    /// The image root to walk (e.g. the mounted image, or / in a build stage).
    #[arg(long, value_name = "DIR")]
    pub root: PathBuf,
    /// Where to write the manifest.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,
    /// Config file whose [policy] is embedded in the manifest (default: the
    /// built-in policy, the same as the shipped config/driftd.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Identity of the image (an AMI build id, a git revision), recorded in
    /// the manifest and shown by check and in metrics.
    #[arg(long, value_name = "ID", default_value = "")]
    pub image_id: String,
    /// Sign the manifest with this secret key (from `driftd keygen`).
    #[arg(long, value_name = "FILE")]
    pub signing_key: Option<PathBuf>,
    /// Also exclude paths matching this glob (repeatable); recorded in the
    /// embedded policy.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Hashing threads (default: [scan] threads from the config; 0 = one
    /// per CPU).
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

pub fn run(a: BakeArgs) -> Result<Status, CliError> {
    let mut cfg = match &a.config {
        Some(p) => config::load(p)?,
        None => Config::default(),
    };
    let key = match &a.signing_key {
        Some(p) => {
            // Refused unless only its owner (root or us) and group can read it.
            let bytes = crate::fsutil::read_secret(p, "signing key")
                .map_err(|e| CliError(e.to_string()))?;
            let text = String::from_utf8_lossy(&bytes);
            Some(
                sign::parse_secret(&text)
                    .map_err(|e| CliError(format!("signing key {}: {e}", p.display())))?,
            )
        }
        None => None,
    };
    let root =
        std::fs::canonicalize(&a.root).map_err(|e| CliError::io("resolve root", &a.root, e))?;
    cfg.policy.exclude.extend(a.exclude.iter().cloned());
    if let Some(inside) = output_inside_root(&root, &a.output) {
        // Policy globs are text: a name that is not UTF-8 cannot be
        // excluded exactly, and a manifest that lists itself never verifies.
        let inside = String::from_utf8(inside).map_err(|_| {
            CliError(format!(
                "bake: --output {} lies inside the root and is not valid UTF-8, so it cannot be excluded; write it outside the root or give it a UTF-8 name",
                a.output.display()
            ))
        })?;
        cfg.policy.exclude.push(glob_literal(&inside));
    }
    let policy = CompiledPolicy::new(cfg.policy.clone(), "policy").map_err(|errs| {
        CliError(format!(
            "invalid policy:\n  - {}",
            errs.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n  - ")
        ))
    })?;
    let started = std::time::Instant::now();
    // Progress on a terminal's stderr (NO_COLOR honoured), cleared before
    // anything else is printed.
    let shown = Shown::start("baking", || Goal::Open, Color::Auto, true);
    let control = ScanControl {
        progress: shown.handle(),
        ..ScanControl::default()
    };
    let scan::Collected {
        entries,
        unreadable,
        stats,
    } = scan::scan_collect_with(
        &ScanOptions {
            root: &root,
            policy: &policy,
            threads: a.threads.unwrap_or(cfg.scan.threads),
        },
        &control,
    )
    .map_err(|e| CliError(e.to_string()))?;
    shown.finish();
    if !unreadable.is_empty() {
        let mut msg = format!(
            "bake {}: {} path(s) could not be read; no manifest written:",
            super::shown(&root),
            unreadable.len()
        );
        for (path, reason) in unreadable.iter().take(20) {
            msg.push_str(&format!("\n  {}: {reason}", escape(path)));
        }
        if unreadable.len() > 20 {
            msg.push_str(&format!("\n  ... and {} more", unreadable.len() - 20));
        }
        return Err(CliError(msg));
    }
    let header = Header {
        format_version: FORMAT_VERSION,
        driftd_version: env!("CARGO_PKG_VERSION").to_string(),
        image_id: a.image_id.clone(),
        policy: cfg.policy,
    };
    let mut manifest = Manifest::new(header, entries);
    if let Some(key) = &key {
        sign::sign(&mut manifest, key);
    }
    let bytes = manifest
        .to_bytes()
        .map_err(|e| CliError(format!("compress manifest: {e}")))?;
    super::write_atomic(&a.output, &bytes, 0o644)?;
    eprintln!(
        "baked {} entries ({} files, {} bytes hashed) from {} in {:.2}s into {} ({} bytes), digest {}{}",
        manifest.entries.len(),
        stats.files_hashed,
        stats.bytes_hashed,
        super::shown(&root),
        started.elapsed().as_secs_f64(),
        super::shown(&a.output),
        bytes.len(),
        manifest.digest_string(),
        match &manifest.signature {
            Some(s) => format!(", signed by key {}", s.key_id),
            None => ", unsigned".into(),
        }
    );
    Ok(0)
}

/// If `output` will be written inside `root`, its path inside the root.
fn output_inside_root(root: &Path, output: &Path) -> Option<Vec<u8>> {
    let parent = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = std::fs::canonicalize(parent).ok()?;
    let full = parent.join(output.file_name()?);
    let rel = full.strip_prefix(root).ok()?;
    let mut v = b"/".to_vec();
    v.extend_from_slice(rel.as_os_str().as_bytes());
    Some(v)
}

/// A glob matching exactly this path (metacharacters escaped).
fn glob_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
