//! ed25519 keys and manifest signatures.
//!
//! Key files are one line of text, `driftd-ed25519-secret-key <hex>` or
//! `driftd-ed25519-public-key <hex>`, so a key pasted into the wrong flag is
//! recognised. The signature covers a domain-separated message (so it can
//! never be replayed as a signature over something else) holding the
//! manifest digest, which itself covers every byte of the body.

use super::escape::{hex32, to_hex};
use super::{Manifest, ManifestSignature};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

const SECRET_TAG: &str = "driftd-ed25519-secret-key";
const PUBLIC_TAG: &str = "driftd-ed25519-public-key";
const DOMAIN: &[u8] = b"driftd manifest signature v1\0";

/// Why a key or signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    #[error("not a driftd {0} key file (expected one line `{1} <64 hex digits>`)")]
    BadKeyFile(&'static str, &'static str),
    #[error("the public key is not a valid ed25519 point")]
    BadPublicKey,
    #[error("the manifest is not signed; pass --allow-unsigned to check it anyway")]
    Unsigned,
    #[error("the manifest was signed by key {0}, which is not among the trusted keys ({1})")]
    UnknownKey(String, String),
    #[error("the signature by key {0} does not verify: the manifest was not signed by this key or was altered")]
    BadSignature(String),
}

/// Short id of a public key: the first 8 bytes of its BLAKE3, in hex.
pub fn key_id(key: &VerifyingKey) -> String {
    to_hex(&blake3::hash(key.as_bytes()).as_bytes()[..8])
}

fn message(digest: &[u8; 32]) -> Vec<u8> {
    [DOMAIN, digest.as_slice()].concat()
}

/// The key pair of a 32-byte secret seed (which `driftd keygen` draws from
/// the OS random source: this module stays pure).
pub fn from_seed(seed: &[u8; 32]) -> SigningKey {
    SigningKey::from_bytes(seed)
}

pub fn encode_secret(key: &SigningKey) -> String {
    format!("{SECRET_TAG} {}\n", to_hex(key.as_bytes()))
}

pub fn encode_public(key: &VerifyingKey) -> String {
    format!("{PUBLIC_TAG} {}\n", to_hex(key.as_bytes()))
}

fn parse_tagged(text: &str, tag: &str) -> Option<[u8; 32]> {
    let rest = text.trim().strip_prefix(tag)?.strip_prefix(' ')?;
    hex32(rest.trim().as_bytes())
}

pub fn parse_secret(text: &str) -> Result<SigningKey, SignError> {
    parse_tagged(text, SECRET_TAG)
        .map(|b| SigningKey::from_bytes(&b))
        .ok_or(SignError::BadKeyFile("secret", SECRET_TAG))
}

pub fn parse_public(text: &str) -> Result<VerifyingKey, SignError> {
    let bytes =
        parse_tagged(text, PUBLIC_TAG).ok_or(SignError::BadKeyFile("public", PUBLIC_TAG))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| SignError::BadPublicKey)
}

/// Sign the manifest in place.
pub fn sign(manifest: &mut Manifest, key: &SigningKey) {
    manifest.signature = Some(sign_digest(&manifest.digest, key));
}

/// The signature over a manifest digest (a bake that streams signs the
/// digest it computed at the end).
pub fn sign_digest(digest: &[u8; 32], key: &SigningKey) -> ManifestSignature {
    ManifestSignature {
        key_id: key_id(&key.verifying_key()),
        signature: key.sign(&message(digest)).to_bytes(),
    }
}

/// What carries a digest and perhaps a signature over it: a manifest in
/// memory or one read block by block.
pub trait Signed {
    fn digest(&self) -> &[u8; 32];
    fn signature(&self) -> Option<&ManifestSignature>;
}

impl Signed for Manifest {
    fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
    fn signature(&self) -> Option<&ManifestSignature> {
        self.signature.as_ref()
    }
}

/// Verify the signature against the trusted keys; returns the key id used.
/// Fails closed: unsigned, unknown key and bad signature are all errors.
pub fn verify(manifest: &impl Signed, trusted: &[VerifyingKey]) -> Result<String, SignError> {
    let sig = manifest.signature().ok_or(SignError::Unsigned)?;
    let key = trusted
        .iter()
        .find(|k| key_id(k) == sig.key_id)
        .ok_or_else(|| {
            SignError::UnknownKey(
                sig.key_id.clone(),
                trusted.iter().map(key_id).collect::<Vec<_>>().join(", "),
            )
        })?;
    let signature = ed25519_dalek::Signature::from_bytes(&sig.signature);
    key.verify_strict(&message(manifest.digest()), &signature)
        .map_err(|_| SignError::BadSignature(sig.key_id.clone()))?;
    Ok(sig.key_id.clone())
}
