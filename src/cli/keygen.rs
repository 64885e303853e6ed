//! `driftd keygen`: a new ed25519 key pair.

use super::{CliError, Status};
use crate::manifest::sign;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Keep the secret key outside the image (a CI secret, a KMS-backed \
file); ship only the public key on hosts and pass it to `check --trusted-key`."
)]
pub struct KeygenArgs {
    /// Where to write the secret key (created with mode 0600).
    #[arg(long, value_name = "FILE")]
    pub secret_key: PathBuf,
    /// Where to write the public key.
    #[arg(long, value_name = "FILE")]
    pub public_key: PathBuf,
    /// Overwrite existing key files.
    #[arg(long)]
    pub force: bool,
}

pub fn run(a: KeygenArgs) -> Result<Status, CliError> {
    if !a.force {
        for p in [&a.secret_key, &a.public_key] {
            if p.exists() {
                return Err(CliError(format!(
                    "refusing to overwrite {} (pass --force)",
                    super::shown(p)
                )));
            }
        }
    }
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| CliError(format!("read OS random source: {e}")))?;
    let key = sign::from_seed(&seed);
    super::write_atomic(&a.secret_key, sign::encode_secret(&key).as_bytes(), 0o600)?;
    super::write_atomic(
        &a.public_key,
        sign::encode_public(&key.verifying_key()).as_bytes(),
        0o644,
    )?;
    eprintln!(
        "wrote secret key {} and public key {} (key id {})",
        super::shown(&a.secret_key),
        super::shown(&a.public_key),
        sign::key_id(&key.verifying_key())
    );
    Ok(0)
}
