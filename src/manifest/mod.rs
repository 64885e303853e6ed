//! The manifest: what an image looked like, path by path, signed.
//!
//! PURE: this module touches no filesystem and no clock. It defines the
//! entries ([`entry`]), the versioned text format ([`format`]), the path
//! codec ([`escape`]), ed25519 signing ([`sign`]), the comparison of
//! entries into findings ([`diff`]), format version 2 in blocks ([`v2`])
//! and a manifest read block by block ([`store`]). Reading and writing files is the CLI's
//! job; producing entries from a live tree is `scan`'s.

pub mod bounded;
pub mod diff;
pub mod entry;
pub mod escape;
pub mod format;
pub mod paths;
pub mod sign;
pub mod store;
pub mod v2;

pub use entry::{Entry, FileKind, Times, Timestamp, Xattrs};
pub use format::FormatError;
pub use store::Store;

use crate::policy::Policy;

/// The format version `bake` writes (see [`v2`]). Version 1 (one text,
/// entries sorted by path bytes) is still read.
pub const FORMAT_VERSION: u32 = v2::VERSION;

/// The manifest header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub format_version: u32,
    /// The driftd that baked it.
    pub driftd_version: String,
    /// Given at bake time (`--image-id`): an AMI build, a git revision.
    pub image_id: String,
    /// The policy the image was baked with; hosts check with it.
    pub policy: Policy,
}

/// An ed25519 signature over the manifest digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSignature {
    /// Hex id of the signing key (see [`sign::key_id`]).
    pub key_id: String,
    pub signature: [u8; 64],
}

/// A whole manifest in memory. `entries` are in component order
/// ([`paths::cmp_components`]), whatever the version of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub header: Header,
    pub entries: Vec<Entry>,
    /// BLAKE3 of the body (header and entry lines).
    pub digest: [u8; 32],
    pub signature: Option<ManifestSignature>,
}

impl Manifest {
    /// Build an unsigned manifest; entries are sorted here, so the result is
    /// the same whatever order a parallel scan produced them in. A scan never
    /// yields two entries for one path; should a caller pass some, the one
    /// whose manifest line sorts first is kept, so even then the output does
    /// not depend on the input order.
    pub fn new(header: Header, mut entries: Vec<Entry>) -> Manifest {
        entries.sort_unstable_by(|a, b| {
            paths::cmp_components(&a.path, &b.path).then_with(|| {
                let (mut x, mut y) = (String::new(), String::new());
                format::encode_entry(a, &mut x);
                format::encode_entry(b, &mut y);
                x.cmp(&y)
            })
        });
        entries.dedup_by(|a, b| a.path == b.path);
        let digest = if header.format_version == 1 {
            *blake3::hash(&format::encode_body(&header, &entries)).as_bytes()
        } else {
            // Sorted and unique: only an entry line over the length limit
            // could be refused (the scan never makes one); such a manifest
            // gets a digest nothing verifies, and `to_bytes` refuses it.
            v2::digest_of(&header, &entries).unwrap_or([0; 32])
        };
        Manifest {
            header,
            entries,
            digest,
            signature: None,
        }
    }

    /// Parse file bytes (compressed or not) and verify the digest. The
    /// signature is *not* checked here: see [`sign::verify`]. Reading is
    /// bounded (see [`format::budget`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Manifest, FormatError> {
        let tail = bytes.len().saturating_sub(v2::TAIL_LEN);
        if v2::parse_tail(&bytes[tail..], bytes.len() as u64).is_some() {
            let flat = |e: format::ReadError| match e {
                format::ReadError::Format(e) => e,
                format::ReadError::Io(e) => FormatError::Other(e.to_string()),
            };
            return Store::open(Box::new(bytes.to_vec()))
                .and_then(|s| s.to_manifest())
                .map_err(flat);
        }
        Manifest::from_text(&format::decompress(bytes)?)
    }

    /// Like [`Manifest::from_bytes`], but frees the compressed bytes as soon
    /// as they are inflated (keeps peak memory down on big manifests).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Manifest, FormatError> {
        let tail = bytes.len().saturating_sub(v2::TAIL_LEN);
        if v2::parse_tail(&bytes[tail..], bytes.len() as u64).is_some() {
            return Manifest::from_bytes(&bytes);
        }
        let text = match format::decompress(&bytes)? {
            std::borrow::Cow::Owned(text) => {
                drop(bytes);
                text
            }
            std::borrow::Cow::Borrowed(_) => bytes,
        };
        Manifest::from_text(&text)
    }

    /// Read a manifest from a stream (an open file), inflating it as it
    /// comes and never beyond the budget of its header: a hostile file
    /// costs bounded memory and time, and its compressed bytes are never
    /// all held.
    pub fn from_reader(r: impl std::io::Read) -> Result<Manifest, format::ReadError> {
        let text = format::read_text(r)?;
        Ok(Manifest::from_text(&text)?)
    }

    /// Split, verify the digest and parse the text form (either version).
    fn from_text(text: &[u8]) -> Result<Manifest, FormatError> {
        if text.starts_with(b"driftd-manifest 2\n") {
            let (header, entries, digest, signature) = v2::parse_text(text)?;
            return Ok(Manifest {
                header,
                entries,
                digest,
                signature,
            });
        }
        let (body, digest, signature) = format::split_trailer(text)?;
        let actual = *blake3::hash(body).as_bytes();
        if actual != digest {
            return Err(FormatError::Other(
                "digest mismatch: the manifest is corrupt or was modified after baking".into(),
            ));
        }
        let (header, mut entries) = format::parse_body(body)?;
        // Version 1 sorts by bytes; in memory every manifest is in
        // component order.
        entries.sort_unstable_by(|a, b| paths::cmp_components(&a.path, &b.path));
        Ok(Manifest {
            header,
            entries,
            digest,
            signature,
        })
    }

    /// The bytes to write to disk: version 2 in blocks (see [`v2`]), or a
    /// version 1 manifest as the zstd-compressed text it was.
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        if self.header.format_version == 1 {
            return format::compress(&format::encode_text(self));
        }
        let mut w = v2::Writer::new(Vec::new(), &self.header).map_err(std::io::Error::other)?;
        for e in &self.entries {
            w.push(e).map_err(std::io::Error::other)?;
        }
        let sig = self.signature.clone();
        let done = w.finish(|_| sig).map_err(std::io::Error::other)?;
        Ok(done.out)
    }

    /// `blake3:<hex>`, the identity used in reports and metrics.
    pub fn digest_string(&self) -> String {
        format!("blake3:{}", escape::to_hex(&self.digest))
    }

    /// Index of the entry for `path`, by binary search.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.entries
            .binary_search_by(|e| paths::cmp_components(&e.path, path))
            .ok()
    }
}

#[cfg(test)]
mod tests;
