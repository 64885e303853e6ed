//! `driftd inspect`: what a manifest says about itself.

use super::{CliError, Format, Status};
use crate::manifest::escape::escape;
use crate::manifest::format;
use crate::trust::ManifestInfo;
use clap::Args;
use serde::Serialize;
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "The digest is always verified. With --trusted-key the signature is \
verified too (exit 2 if it does not verify). --entries prints the manifest as plain \
sorted text, so two manifests can be compared with diff(1)."
)]
pub struct InspectArgs {
    /// The manifest file.
    pub manifest: PathBuf,
    /// Verify the signature with this public key (repeatable).
    #[arg(long, value_name = "FILE")]
    pub trusted_key: Vec<PathBuf>,
    /// Print the whole manifest as uncompressed text instead of a summary.
    #[arg(long)]
    pub entries: bool,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

pub fn run(a: InspectArgs) -> Result<Status, CliError> {
    let (manifest, trust) = super::load_for_review(&a.manifest, &a.trusted_key)?;
    let mut out = std::io::stdout().lock();
    if a.entries {
        let _ = out.write_all(&format::encode_text(&manifest));
        return Ok(0);
    }
    let info = ManifestInfo::new(&manifest, Some(&a.manifest), &trust);
    match a.format {
        Format::Json => {
            #[derive(Serialize)]
            struct Doc<'a> {
                schema: &'static str,
                manifest: &'a ManifestInfo,
                policy: &'a crate::policy::Policy,
            }
            let _ = serde_json::to_writer_pretty(
                &mut out,
                &Doc {
                    schema: "driftd.inspect.v1",
                    manifest: &info,
                    policy: &manifest.header.policy,
                },
            );
            let _ = writeln!(out);
        }
        Format::Text => {
            // Everything from the manifest is escaped (the key id and the
            // digest are hex, the policy is JSON).
            let _ = writeln!(out, "manifest:        {}", super::shown(&a.manifest));
            let _ = writeln!(out, "format version:  {}", info.format_version);
            let _ = writeln!(
                out,
                "baked by:        driftd {}",
                escape(info.driftd_version.as_bytes())
            );
            let _ = writeln!(
                out,
                "image id:        {}",
                if info.image_id.is_empty() {
                    "(none)".to_string()
                } else {
                    escape(info.image_id.as_bytes())
                }
            );
            let _ = writeln!(out, "digest:          {} (verified)", info.digest);
            let _ = writeln!(
                out,
                "signature:       {}",
                match (&info.key_id, info.signature_verified) {
                    (Some(k), true) => format!("verified, key {k}"),
                    (Some(k), false) => format!("key {k}, not verified (no --trusted-key)"),
                    (None, _) => "unsigned".into(),
                }
            );
            let _ = writeln!(out, "entries:         {}", info.entries);
            let _ = writeln!(
                out,
                "policy:          {}",
                serde_json::to_string(&manifest.header.policy).unwrap_or_default()
            );
        }
    }
    Ok(0)
}
