//! The PEM material of `tls_server_config`: from a `*_file` key (a path,
//! relative to the config's directory) or its inline twin, parsed into
//! certificates and a private key, each problem named with its key and
//! path. Key material is never quoted in a message. The private key is a
//! secret: its file (or the config holding it inline) is refused when
//! others could read it or anyone but its owner could write it.

use super::source::Files;
use super::yaml::Table;
use crate::fsutil::SecretError;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{Error, InconsistentKeys};

/// The key naming the private key's file: read as a secret, refused when
/// others could read it or anyone but its owner write it (see
/// [`crate::fsutil::read_secret`]).
const PRIVATE_KEY_FILE: &str = "key_file";

/// PEM text from a `*_file` key or its inline twin, with where it came
/// from (the key and the path) for messages.
pub(super) struct Pem {
    pub(super) key: String,
    pub(super) origin: String,
    bytes: Vec<u8>,
}

/// What a `*_file` key and its inline twin gave.
pub(super) enum Given {
    Absent,
    /// Set, but unusable (reported).
    Failed,
    Pem(Pem),
}

impl Given {
    pub(super) fn pem(&self) -> Option<&Pem> {
        match self {
            Given::Pem(p) => Some(p),
            _ => None,
        }
    }
}

/// The PEM of `file_key` (a path, relative to the config's directory) or
/// of `inline_key` (the PEM itself).
pub(super) fn read(
    t: &mut Table,
    files: &mut Files,
    file_key: &'static str,
    inline_key: &'static str,
) -> Given {
    let file = t.take::<String>(file_key).filter(|s| !s.is_empty());
    let inline = t.secret(inline_key).filter(|s| !s.is_empty());
    match (file, inline) {
        (Some(_), Some(_)) => {
            t.error(
                inline_key,
                format_args!("set either {inline_key} or {file_key}, not both"),
            );
            Given::Failed
        }
        (Some(name), None) => {
            let path = files.resolve(&name);
            let cannot_read = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
            let read = if file_key == PRIVATE_KEY_FILE {
                files
                    .read_secret(&path, "TLS private key")
                    .map_err(|e| match e {
                        SecretError::Io { source, .. } => cannot_read(source),
                        unsafe_file => unsafe_file.to_string(),
                    })
            } else {
                files.read(&path).map_err(cannot_read)
            };
            match read {
                Ok(bytes) => Given::Pem(Pem {
                    key: t.key(file_key),
                    origin: path.display().to_string(),
                    bytes,
                }),
                Err(e) => {
                    t.error(file_key, e);
                    Given::Failed
                }
            }
        }
        (None, Some(text)) => {
            // A private key written inline makes the config file a secret.
            let problem = if file_key == PRIVATE_KEY_FILE {
                files.config_as_secret()
            } else {
                None
            };
            if let Some(problem) = problem {
                t.error(inline_key, problem);
                return Given::Failed;
            }
            Given::Pem(Pem {
                key: t.key(inline_key),
                origin: "the inline PEM".into(),
                bytes: text.into_bytes(),
            })
        }
        (None, None) => Given::Absent,
    }
}

/// Every certificate of a PEM text (a chain, or the CA bundle).
pub(super) fn certificates(
    pem: &Pem,
    errors: &mut Vec<String>,
) -> Option<Vec<CertificateDer<'static>>> {
    let mut certs = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem.bytes) {
        match item {
            Ok(c) => certs.push(c),
            Err(e) => {
                errors.push(format!("{}: {}: invalid PEM: {e}", pem.key, pem.origin));
                return None;
            }
        }
    }
    if certs.is_empty() {
        errors.push(format!(
            "{}: {}: no certificate in it (no CERTIFICATE block)",
            pem.key, pem.origin
        ));
        return None;
    }
    Some(certs)
}

/// The private key of a PEM text (PKCS#8, PKCS#1 RSA or SEC1 EC). The
/// message never quotes the text: it is a secret.
pub(super) fn private_key(pem: &Pem, errors: &mut Vec<String>) -> Option<PrivateKeyDer<'static>> {
    match PrivateKeyDer::from_pem_slice(&pem.bytes) {
        Ok(k) => Some(k),
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            errors.push(format!(
                "{}: {}: no private key in it (no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block)",
                pem.key, pem.origin
            ));
            None
        }
        Err(_) => {
            errors.push(format!("{}: {}: invalid PEM", pem.key, pem.origin));
            None
        }
    }
}

/// The certificate chain with its key, checked to belong together.
pub(super) fn certified_key(
    provider: &CryptoProvider,
    chain: Vec<CertificateDer<'static>>,
    key_der: PrivateKeyDer<'static>,
    cert: &Pem,
    key: &Pem,
    errors: &mut Vec<String>,
) -> Option<CertifiedKey> {
    let signing = match provider.key_provider.load_private_key(key_der) {
        Ok(k) => k,
        Err(e) => {
            errors.push(format!(
                "{}: {}: unusable private key: {e}",
                key.key, key.origin
            ));
            return None;
        }
    };
    let ck = CertifiedKey::new(chain, signing);
    match ck.keys_match() {
        // Unknown: the key cannot tell its public half; the handshake will.
        Ok(()) | Err(Error::InconsistentKeys(InconsistentKeys::Unknown)) => Some(ck),
        Err(Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            errors.push(format!(
                "{}: the key in {} does not match the certificate in {}",
                key.key, key.origin, cert.origin
            ));
            None
        }
        Err(e) => {
            errors.push(format!(
                "{}: {}: invalid certificate: {e}",
                cert.key, cert.origin
            ));
            None
        }
    }
}
