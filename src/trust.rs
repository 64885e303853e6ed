//! The one manifest loader and its one trust rule, for the CLI and the
//! agent alike.
//!
//! The rule, for everything that produces a verdict (`check`, `run`,
//! `validate`): a manifest that carries a signature is always verified
//! against the trusted keys, and refused if it does not verify (or if no
//! key is configured to verify it with); `allow_unsigned` only admits a
//! manifest that carries no signature. Reviewing tools (`inspect`, `diff`)
//! verify the signature when keys are given and otherwise say it was not
//! checked. The digest is always verified, and the embedded policy must
//! compile.

use crate::check::manifest_policy;
use crate::manifest::format::ReadError;
use crate::manifest::{sign, Manifest};
use crate::policy::CompiledPolicy;
use crate::verdict::{ManifestFailure, ManifestId, ManifestProblem};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How a manifest's signature is judged.
#[derive(Debug, Clone, Copy)]
pub enum Rule<'a> {
    /// For a verdict: see the module doc.
    Enforce {
        keys: &'a [PathBuf],
        allow_unsigned: bool,
    },
    /// For review: verified when `keys` are given, else not checked.
    Review { keys: &'a [PathBuf] },
}

/// How the signature was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// Verified with the trusted key of this id.
    Verified(String),
    /// The manifest carries no signature and unsigned manifests are
    /// allowed.
    Unsigned,
    /// Not checked (reviewing without keys).
    Unchecked,
}

impl Trust {
    pub fn key_id(&self) -> Option<&str> {
        match self {
            Trust::Verified(k) => Some(k),
            _ => None,
        }
    }
}

/// A manifest that may be used, its compiled policy and how it is trusted.
pub struct Loaded {
    pub manifest: Arc<Manifest>,
    pub policy: Arc<CompiledPolicy>,
    pub trust: Trust,
    pub path: PathBuf,
}

impl Loaded {
    /// What the verdict state machine needs to know of it.
    pub fn id(&self) -> ManifestId {
        ManifestId {
            digest: self.manifest.digest_string(),
            image_id: self.manifest.header.image_id.clone(),
            entries: self.manifest.entries.len() as u64,
        }
    }

    pub fn info(&self) -> ManifestInfo {
        ManifestInfo::new(&self.manifest, Some(&self.path), &self.trust)
    }
}

/// Why a manifest cannot be used: a typed reason and a message that names
/// the operation and the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct LoadError {
    pub problem: ManifestProblem,
    pub message: String,
}

impl LoadError {
    fn new(problem: ManifestProblem, message: impl Into<String>) -> LoadError {
        LoadError {
            problem,
            message: message.into(),
        }
    }
}

impl From<LoadError> for ManifestFailure {
    fn from(e: LoadError) -> ManifestFailure {
        ManifestFailure {
            problem: e.problem,
            message: e.message,
        }
    }
}

/// Read, verify and judge the manifest at `path`.
pub fn load(path: &Path, rule: Rule<'_>) -> Result<Loaded, LoadError> {
    let manifest = read(path)?;
    let trust = judge(&manifest, path, rule)?;
    let policy = manifest_policy(&manifest).map_err(|e| {
        LoadError::new(
            ManifestProblem::Policy,
            format!("manifest {}: {e}", path.display()),
        )
    })?;
    Ok(Loaded {
        manifest: Arc::new(manifest),
        policy: Arc::new(policy),
        trust,
        path: path.to_path_buf(),
    })
}

/// Read and parse a manifest file, verifying its digest (not its
/// signature). The file is read as a stream within the budget of its
/// header (see [`crate::manifest::format::budget`]): a hostile file is
/// refused after costing bounded memory and time.
pub fn read(path: &Path) -> Result<Manifest, LoadError> {
    let io_error = |e: std::io::Error| {
        let problem = if e.kind() == std::io::ErrorKind::NotFound {
            ManifestProblem::Missing
        } else {
            ManifestProblem::Unreadable
        };
        LoadError::new(problem, format!("read manifest {}: {e}", path.display()))
    };
    let file = std::fs::File::open(path).map_err(io_error)?;
    Manifest::from_reader(file).map_err(|e| match e {
        ReadError::Io(e) => io_error(e),
        ReadError::Format(e) => LoadError::new(
            ManifestProblem::Corrupt,
            format!("invalid manifest {}: {e}", path.display()),
        ),
    })
}

/// Judge a manifest's signature by `rule`.
pub fn judge(manifest: &Manifest, path: &Path, rule: Rule<'_>) -> Result<Trust, LoadError> {
    let sig_err = |m: String| LoadError::new(ManifestProblem::Signature, m);
    let (keys, allow_unsigned) = match rule {
        Rule::Review { keys: [] } => return Ok(Trust::Unchecked),
        Rule::Review { keys } => (keys, false),
        Rule::Enforce {
            keys,
            allow_unsigned,
        } => (keys, allow_unsigned),
    };
    match &manifest.signature {
        None if allow_unsigned => return Ok(Trust::Unsigned),
        None if keys.is_empty() => {
            return Err(sig_err(format!(
                "refusing to use manifest {} without a trusted key: give a trusted key \
                 (--trusted-key FILE, agent.trusted_keys) or, for an unsigned manifest, \
                 allow unsigned manifests (--allow-unsigned, agent.allow_unsigned)",
                path.display()
            )))
        }
        Some(sig) if keys.is_empty() => {
            return Err(sig_err(format!(
                "manifest {} is signed (key {}) but no trusted key is given to verify it: \
                 give one (--trusted-key FILE, agent.trusted_keys); allowing unsigned \
                 manifests never admits a signed one unverified",
                path.display(),
                sig.key_id
            )))
        }
        _ => {}
    }
    let mut trusted = Vec::new();
    for k in keys {
        let text = std::fs::read_to_string(k)
            .map_err(|e| sig_err(format!("read trusted key {}: {e}", k.display())))?;
        trusted.push(
            sign::parse_public(&text)
                .map_err(|e| sig_err(format!("trusted key {}: {e}", k.display())))?,
        );
    }
    sign::verify(manifest, &trusted)
        .map(Trust::Verified)
        .map_err(|e| sig_err(format!("manifest {}: {e}", path.display())))
}

/// The identity of a manifest, as reports and `/status` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestInfo {
    pub path: Option<String>,
    pub format_version: u32,
    pub driftd_version: String,
    pub image_id: String,
    pub digest: String,
    pub entries: usize,
    pub signed: bool,
    pub key_id: Option<String>,
    pub signature_verified: bool,
}

impl ManifestInfo {
    pub fn new(m: &Manifest, path: Option<&Path>, trust: &Trust) -> ManifestInfo {
        ManifestInfo {
            path: path.map(|p| p.display().to_string()),
            format_version: m.header.format_version,
            driftd_version: m.header.driftd_version.clone(),
            image_id: m.header.image_id.clone(),
            digest: m.digest_string(),
            entries: m.entries.len(),
            signed: m.signature.is_some(),
            key_id: m.signature.as_ref().map(|s| s.key_id.clone()),
            signature_verified: matches!(trust, Trust::Verified(_)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Header;
    use crate::policy::Policy;

    fn manifest() -> Manifest {
        Manifest::new(
            Header {
                format_version: crate::manifest::FORMAT_VERSION,
                driftd_version: "test".into(),
                image_id: "img".into(),
                policy: Policy::default(),
            },
            vec![],
        )
    }

    /// A manifest signed with a fresh key, that key's public file and
    /// another key's public file.
    fn signed(dir: &Path) -> (Manifest, PathBuf, PathBuf) {
        let mut m = manifest();
        let key = sign::from_seed(&[7; 32]);
        sign::sign(&mut m, &key);
        let good = dir.join("good.pub");
        std::fs::write(&good, sign::encode_public(&key.verifying_key())).unwrap();
        let other = dir.join("other.pub");
        let k2 = sign::from_seed(&[8; 32]);
        std::fs::write(&other, sign::encode_public(&k2.verifying_key())).unwrap();
        (m, good, other)
    }

    fn enforce(keys: &[PathBuf], allow_unsigned: bool) -> Rule<'_> {
        Rule::Enforce {
            keys,
            allow_unsigned,
        }
    }

    #[test]
    fn a_signed_manifest_is_always_verified_and_allow_unsigned_admits_only_unsigned_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (m, good, other) = signed(dir.path());
        let p = Path::new("m");
        let ok = judge(&m, p, enforce(std::slice::from_ref(&good), false)).unwrap();
        assert!(matches!(ok, Trust::Verified(_)));
        assert_eq!(
            judge(&m, p, enforce(std::slice::from_ref(&good), true)).unwrap(),
            ok
        );
        for (keys, allow) in [
            (vec![other.clone()], false),
            (vec![other], true),
            (vec![], true),
            (vec![], false),
        ] {
            let e = judge(&m, p, enforce(&keys, allow)).unwrap_err();
            assert_eq!(
                e.problem,
                ManifestProblem::Signature,
                "{keys:?} {allow}: {e}"
            );
        }
        let unsigned = manifest();
        assert_eq!(
            judge(&unsigned, p, enforce(&[], true)).unwrap(),
            Trust::Unsigned
        );
        assert_eq!(
            judge(&unsigned, p, enforce(std::slice::from_ref(&good), true)).unwrap(),
            Trust::Unsigned,
            "the keys are for signed manifests"
        );
        let e = judge(&unsigned, p, enforce(&[good], false)).unwrap_err();
        assert!(e.message.contains("not signed"), "{e}");
        assert!(judge(&unsigned, p, enforce(&[], false)).is_err());
    }

    #[test]
    fn review_verifies_only_when_keys_are_given() {
        let dir = tempfile::tempdir().unwrap();
        let (m, good, other) = signed(dir.path());
        let p = Path::new("m");
        assert_eq!(
            judge(&m, p, Rule::Review { keys: &[] }).unwrap(),
            Trust::Unchecked
        );
        assert!(matches!(
            judge(&m, p, Rule::Review { keys: &[good] }).unwrap(),
            Trust::Verified(_)
        ));
        assert!(judge(&m, p, Rule::Review { keys: &[other] }).is_err());
    }

    #[test]
    fn load_errors_are_typed_and_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let e = load(&missing, Rule::Review { keys: &[] }).err().unwrap();
        assert_eq!(e.problem, ManifestProblem::Missing);
        assert!(e.message.contains("nope"), "{e}");
        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, "not a manifest").unwrap();
        let e = load(&garbage, Rule::Review { keys: &[] }).err().unwrap();
        assert_eq!(e.problem, ManifestProblem::Corrupt);
        let unreadable = dir.path();
        let e = load(unreadable, Rule::Review { keys: &[] }).err().unwrap();
        assert_eq!(e.problem, ManifestProblem::Unreadable, "{e}");
    }
}
