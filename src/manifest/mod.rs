//! The manifest: what an image looked like, path by path, signed.
//!
//! PURE: this module touches no filesystem and no clock. It defines the
//! entries ([`entry`]), the versioned text format ([`format`]), the path
//! codec ([`escape`]), ed25519 signing ([`sign`]) and the comparison of
//! entries into findings ([`diff`]). Reading and writing files is the CLI's
//! job; producing entries from a live tree is `scan`'s.

pub mod bounded;
pub mod diff;
pub mod entry;
pub mod escape;
pub mod format;
pub mod paths;
pub mod sign;

pub use entry::{Entry, FileKind, Times, Timestamp, Xattrs};
pub use format::FormatError;

use crate::policy::Policy;

/// The only format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

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

/// A whole manifest in memory. `entries` are sorted by path bytes.
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
            a.path.cmp(&b.path).then_with(|| {
                let (mut x, mut y) = (String::new(), String::new());
                format::encode_entry(a, &mut x);
                format::encode_entry(b, &mut y);
                x.cmp(&y)
            })
        });
        entries.dedup_by(|a, b| a.path == b.path);
        let digest = *blake3::hash(&format::encode_body(&header, &entries)).as_bytes();
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
        Manifest::from_text(&format::decompress(bytes)?)
    }

    /// Like [`Manifest::from_bytes`], but frees the compressed bytes as soon
    /// as they are inflated (keeps peak memory down on big manifests).
    pub fn from_vec(bytes: Vec<u8>) -> Result<Manifest, FormatError> {
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

    /// Split, verify the digest and parse the text form.
    fn from_text(text: &[u8]) -> Result<Manifest, FormatError> {
        let (body, digest, signature) = format::split_trailer(text)?;
        let actual = *blake3::hash(body).as_bytes();
        if actual != digest {
            return Err(FormatError::Other(
                "digest mismatch: the manifest is corrupt or was modified after baking".into(),
            ));
        }
        let (header, entries) = format::parse_body(body)?;
        Ok(Manifest {
            header,
            entries,
            digest,
            signature,
        })
    }

    /// The bytes to write to disk (zstd-compressed text).
    pub fn to_bytes(&self) -> std::io::Result<Vec<u8>> {
        format::compress(&format::encode_text(self))
    }

    /// `blake3:<hex>`, the identity used in reports and metrics.
    pub fn digest_string(&self) -> String {
        format!("blake3:{}", escape::to_hex(&self.digest))
    }

    /// Index of the entry for `path`, by binary search.
    pub fn find(&self, path: &[u8]) -> Option<usize> {
        self.entries.binary_search_by(|e| (*e.path).cmp(path)).ok()
    }
}

#[cfg(test)]
mod tests;
