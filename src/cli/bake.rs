//! `driftd bake`: walk an image root and write its manifest.

use super::progress::{Goal, Shown};
use super::{CliError, Color, Status};
use crate::config::{self, Config};
use crate::manifest::escape::escape;
use crate::manifest::{sign, v2, Header, FORMAT_VERSION};
use crate::policy::CompiledPolicy;
use crate::scan::{self, ScanControl, ScanEvent, ScanOptions};
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
    // Entries are written as the walk produces them, in component order
    // (an ordered scan): memory is a block and the scan's window, whatever
    // the size of the tree.
    let control = ScanControl {
        progress: shown.handle(),
        ordered: true,
        ..ScanControl::default()
    };
    let header = Header {
        format_version: FORMAT_VERSION,
        driftd_version: env!("CARGO_PKG_VERSION").to_string(),
        image_id: a.image_id.clone(),
        policy: cfg.policy,
    };
    let opts = ScanOptions {
        root: &root,
        policy: &policy,
        threads: a.threads.unwrap_or(cfg.scan.threads),
    };
    let mut failure: Option<CliError> = None;
    let written = crate::fsutil::write_atomic_stream(&a.output, 0o644, |file| {
        match bake_into(file, &header, &opts, &control, key.as_ref(), &root) {
            Ok(done) => Ok(done),
            Err(e) => {
                failure = Some(e);
                Err(std::io::Error::other("bake failed"))
            }
        }
    });
    shown.finish();
    let (done, stats) = match (written, failure) {
        (_, Some(e)) => return Err(e),
        (Err(e), None) => return Err(CliError::io("write", &a.output, e)),
        (Ok(v), None) => v,
    };
    eprintln!(
        "baked {} entries ({} files, {} bytes hashed) from {} in {:.2}s into {} ({} bytes), digest blake3:{}{}",
        done.entries,
        stats.files_hashed,
        stats.bytes_hashed,
        super::shown(&root),
        started.elapsed().as_secs_f64(),
        super::shown(&a.output),
        done.bytes,
        crate::manifest::escape::to_hex(&done.digest),
        match &done.signature {
            Some(s) => format!(", signed by key {}", s.key_id),
            None => ", unsigned".into(),
        }
    );
    Ok(0)
}

/// How many unreadable paths a failed bake names (all are counted).
const SHOWN_UNREADABLE: usize = 20;

/// Walk the tree and write the manifest into `file` as the walk goes.
fn bake_into(
    file: &mut std::fs::File,
    header: &Header,
    opts: &ScanOptions<'_>,
    control: &ScanControl,
    key: Option<&ed25519_dalek::SigningKey>,
    root: &Path,
) -> Result<(v2::Finished<()>, scan::ScanStats), CliError> {
    let out = std::io::BufWriter::with_capacity(1 << 20, file);
    let mut writer = v2::Writer::new(out, header).map_err(|e| CliError(format!("bake: {e}")))?;
    let mut error: Option<v2::WriteError> = None;
    let mut unreadable: Vec<(Box<[u8]>, String)> = Vec::new();
    let mut unreadable_count = 0usize;
    let mut bad = |path: Box<[u8]>, reason: String| {
        unreadable_count += 1;
        if unreadable.len() < SHOWN_UNREADABLE {
            unreadable.push((path, reason));
        }
    };
    let stats = scan::scan_with(opts, control, &mut |ev| match ev {
        ScanEvent::Entry { entry, .. } => {
            if error.is_none() {
                if let Err(e) = writer.push(&entry) {
                    error = Some(e);
                }
            }
        }
        ScanEvent::Partial { entry, reason, .. } => bad(entry.path, reason),
        ScanEvent::Unreadable { path, reason, .. } => bad(path, reason),
    })
    .map_err(|e| CliError(e.to_string()))?;
    if unreadable_count > 0 {
        let mut msg = format!(
            "bake {}: {unreadable_count} path(s) could not be read; no manifest written:",
            super::shown(root),
        );
        unreadable.sort();
        for (path, reason) in &unreadable {
            msg.push_str(&format!("\n  {}: {reason}", escape(path)));
        }
        if unreadable_count > unreadable.len() {
            msg.push_str(&format!(
                "\n  ... and {} more",
                unreadable_count - unreadable.len()
            ));
        }
        return Err(CliError(msg));
    }
    if let Some(e) = error {
        return Err(CliError(format!("bake {}: {e}", super::shown(root))));
    }
    let done = writer
        .finish(|digest| key.map(|k| sign::sign_digest(digest, k)))
        .map_err(|e| CliError(format!("bake: write the manifest: {e}")))?;
    let v2::Finished {
        out,
        digest,
        signature,
        entries,
        bytes,
    } = done;
    out.into_inner()
        .map_err(|e| CliError(format!("bake: write the manifest: {}", e.error())))?;
    Ok((
        v2::Finished {
            out: (),
            digest,
            signature,
            entries,
            bytes,
        },
        stats,
    ))
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
