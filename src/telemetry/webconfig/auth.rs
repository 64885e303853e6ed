//! Basic auth against `basic_auth_users`, priced so that an outsider cannot
//! spend the agent's CPU with wrong passwords.
//!
//! bcrypt is slow on purpose (cost 10 is about 50 to 100 ms), so:
//! - verifications run on blocking threads, at most [`BCRYPT_SLOTS`] at a
//!   time (a semaphore shared by every config a source loads); a request
//!   that cannot get a slot within [`SLOT_WAIT`] is refused as busy;
//! - a successful (user, password) pair is remembered by its keyed BLAKE3
//!   hash (a random key per process; never the password itself), at most
//!   [`CACHE_ENTRIES`] of them, so a scraping Prometheus costs one bcrypt
//!   per config load, not one per scrape. The lookup compares every entry
//!   in constant time;
//! - an unknown user still costs one bcrypt, against the configured hash of
//!   the highest cost, so user names cannot be probed by timing.
//!
//! Nothing here logs a password or a hash.
//!
//! [`BCRYPT_SLOTS`]: super::BCRYPT_SLOTS

use axum::http::{HeaderValue, StatusCode};
use base64::Engine as _;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::Semaphore;

/// How long a request waits for a bcrypt slot before it is refused.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);

/// How many successful (user, password) pairs are remembered.
pub const CACHE_ENTRIES: usize = 64;

/// Why a request was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no credentials (basic auth is required)")]
    Missing,
    /// Not `Basic base64(user:password)`.
    #[error("malformed Authorization header (expected Basic credentials)")]
    Malformed,
    /// Unknown user or wrong password: the same answer for both.
    #[error("wrong user name or password")]
    Denied,
    /// No bcrypt slot within [`SLOT_WAIT`]: too many verifications at once.
    #[error("too many password checks at once, try again")]
    Busy,
}

impl AuthError {
    /// The HTTP status to answer with: 401 (with `WWW-Authenticate: Basic`)
    /// for missing, malformed or wrong credentials, 503 when busy.
    pub fn status(&self) -> StatusCode {
        match self {
            AuthError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

/// Checks a password against a bcrypt hash (replaced in tests to count and
/// hold verifications).
type Verify = Arc<dyn Fn(&[u8], &str) -> bool + Send + Sync>;

fn bcrypt_verify(password: &[u8], hash: &str) -> bool {
    // A hash that cannot be parsed never matches (hashes are checked at load).
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// The per-process key of the cache's hashes; `None` if the OS gave no
/// randomness, and then nothing is cached (every check runs bcrypt).
fn cache_key() -> Option<&'static [u8; 32]> {
    static KEY: OnceLock<Option<[u8; 32]>> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        getrandom::getrandom(&mut k).ok().map(|_| k)
    })
    .as_ref()
}

/// Basic auth against the users of one web config (see the module doc).
pub struct BasicAuth {
    /// (user, bcrypt hash), sorted by user.
    users: Vec<(String, String)>,
    /// The hash an unknown user is checked against: the costliest one.
    decoy: String,
    pub(super) slots: Arc<Semaphore>,
    slot_wait: Duration,
    cache: Mutex<VecDeque<blake3::Hash>>,
    verify: Verify,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: hashes stay out of logs.
        let names: Vec<&str> = self.users.iter().map(|(u, _)| u.as_str()).collect();
        f.debug_struct("BasicAuth").field("users", &names).finish()
    }
}

/// The cost of a bcrypt hash (`$2b$10$...` is 10); 0 if unreadable.
fn cost(hash: &str) -> u32 {
    hash.get(4..6).and_then(|c| c.parse().ok()).unwrap_or(0)
}

/// Whether `hash` looks like a bcrypt hash htpasswd or Go would write:
/// `$2a$`, `$2b$` or `$2y$`, a cost of 04 to 31, `$`, then 53 characters of
/// bcrypt's base64 (22 of salt, 31 of hash).
pub(super) fn is_bcrypt_hash(hash: &str) -> bool {
    let b = hash.as_bytes();
    b.len() == 60
        && (hash.starts_with("$2a$") || hash.starts_with("$2b$") || hash.starts_with("$2y$"))
        && (4..=31).contains(&cost(hash))
        && b[4].is_ascii_digit()
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/')
}

impl BasicAuth {
    /// Basic auth for `users` (user, bcrypt hash); verifications take slots
    /// of `slots`. `None` when there are no users: nothing to check.
    pub(super) fn new(
        mut users: Vec<(String, String)>,
        slots: Arc<Semaphore>,
    ) -> Option<BasicAuth> {
        users.sort();
        let decoy = users
            .iter()
            .map(|(_, h)| h)
            .max_by_key(|h| cost(h))?
            .clone();
        Some(BasicAuth {
            users,
            decoy,
            slots,
            slot_wait: SLOT_WAIT,
            cache: Mutex::new(VecDeque::with_capacity(CACHE_ENTRIES)),
            verify: Arc::new(bcrypt_verify),
        })
    }

    /// The configured user names, sorted.
    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.users.iter().map(|(u, _)| u.as_str())
    }

    /// Check an `Authorization` header value: the user's name if the
    /// credentials are right, or why not.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> Result<String, AuthError> {
        let (user, password) = parse(authorization.ok_or(AuthError::Missing)?)?;
        let key = cache_key().map(|k| entry(k, &user, &password));
        if let Some(key) = &key {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            // Every entry, each in constant time (`blake3::Hash` equality),
            // no early exit: the time says nothing about which one matched.
            let hit = cache.iter().fold(false, |hit, e| hit | (e == key));
            if hit {
                return Ok(user);
            }
        }
        let known = self.users.iter().find(|(u, _)| *u == user);
        let (hash, known) = match known {
            Some((_, h)) => (h.clone(), true),
            None => (self.decoy.clone(), false),
        };
        let permit = tokio::time::timeout(self.slot_wait, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| AuthError::Busy)?
            .map_err(|_| AuthError::Busy)?;
        let verify = self.verify.clone();
        // The permit moves into the blocking task: a request dropped midway
        // still holds its slot until its bcrypt is done.
        let ok = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify(&password, &hash)
        })
        .await
        .unwrap_or(false);
        // An unknown user is denied even with the decoy's password.
        if !(ok && known) {
            return Err(AuthError::Denied);
        }
        if let Some(key) = key {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            if !cache.contains(&key) {
                if cache.len() >= CACHE_ENTRIES {
                    cache.pop_front();
                }
                cache.push_back(key);
            }
        }
        Ok(user)
    }
}

/// The cache entry of a (user, password) pair: a keyed hash of both, the
/// user's length first so that no two pairs share an encoding.
fn entry(key: &[u8; 32], user: &str, password: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(&(user.len() as u64).to_le_bytes());
    h.update(user.as_bytes());
    h.update(password);
    h.finalize()
}

/// `Basic base64(user:password)` (the scheme in any case, as Go reads it)
/// into the user and the password (split at the first colon).
fn parse(header: &HeaderValue) -> Result<(String, Vec<u8>), AuthError> {
    let text = header.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, rest) = text.split_once(' ').ok_or(AuthError::Malformed)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::Malformed);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .map_err(|_| AuthError::Malformed)?;
    let colon = decoded
        .iter()
        .position(|b| *b == b':')
        .ok_or(AuthError::Malformed)?;
    let user = String::from_utf8(decoded[..colon].to_vec()).map_err(|_| AuthError::Malformed)?;
    Ok((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
#[path = "auth_tests.rs"]
mod tests;
