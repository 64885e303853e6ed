//! The web config of the agent's HTTP port (`--web.config.file`), in the
//! exporter-toolkit format that node_exporter and every official Prometheus
//! exporter read, so one file serves them all:
//!
//! ```yaml
//! tls_server_config:          # TLS (rustls, ring provider)
//!   cert_file: server.pem     # relative paths: against this file's directory
//!   key_file: server.key
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.pem
//!   client_allowed_sans: [prometheus.example]
//!   min_version: TLS12
//! http_server_config:
//!   http2: false              # driftd serves HTTP/1.1 only
//!   headers: {X-Content-Type-Options: nosniff}
//! basic_auth_users:
//!   prometheus: $2y$10$...    # bcrypt
//! ```
//!
//! Every problem of a file is reported at once, each with its key; a key
//! driftd cannot honour is an error that says why, never silently ignored
//! (see `tls.rs` and `names.rs` for what TLS honours). [`load`] reads a file
//! once; [`WebConfigSource`] follows it on disk for certificate rotation;
//! [`BasicAuth`] checks credentials at a bounded CPU price.

mod auth;
mod names;
mod pem;
mod sans;
mod source;
mod tls;
mod yaml;

pub use auth::{AuthError, BasicAuth, CACHE_ENTRIES, SLOT_WAIT};
pub use source::WebConfigSource;

use axum::http::{HeaderName, HeaderValue};
use serde_yaml::Value;
use source::Files;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::sync::Semaphore;
use yaml::Table;

/// How many bcrypt verifications may run at once (per source).
pub const BCRYPT_SLOTS: usize = 2;

/// A parsed, usable web config.
#[derive(Debug)]
pub struct WebConfig {
    /// The server config, and what it does in words (for the log).
    tls: Option<(Arc<rustls::ServerConfig>, String)>,
    headers: Vec<(HeaderName, HeaderValue)>,
    basic_auth: Option<BasicAuth>,
}

impl WebConfig {
    /// The TLS server config; `None`: plain HTTP.
    pub fn tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tls.as_ref().map(|(c, _)| c.clone())
    }

    /// Whether requests need basic auth (`basic_auth_users` is not empty).
    pub fn auth_required(&self) -> bool {
        self.basic_auth.is_some()
    }

    /// The basic auth checker; `Some` exactly when [`Self::auth_required`].
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// Headers to add to every response.
    pub fn headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// One line for the log: what is on (never a secret).
    pub fn describe(&self) -> String {
        let tls = match &self.tls {
            None => "TLS off".to_string(),
            Some((_, what)) => format!("TLS on ({what})"),
        };
        let auth = match &self.basic_auth {
            None => "basic auth off".to_string(),
            Some(a) => format!("basic auth on ({} users)", a.users().count()),
        };
        format!("{tls}, {auth}, {} extra headers", self.headers.len())
    }
}

/// Everything wrong with a web config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebConfigError {
    pub path: PathBuf,
    pub errors: Vec<String>,
}

impl fmt::Display for WebConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        let s = if n == 1 { "" } else { "s" };
        write!(
            f,
            "invalid web config {} ({n} error{s}):",
            self.path.display()
        )?;
        for e in &self.errors {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for WebConfigError {}

/// Read and check the web config at `path` (and the files it names).
pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
    load_files(path, &Arc::new(Semaphore::new(BCRYPT_SLOTS))).0
}

/// [`load`], with the bcrypt slots to use, and the files it read (also on
/// failure, so a broken config is retried when one of them changes).
fn load_files(path: &Path, slots: &Arc<Semaphore>) -> (Result<WebConfig, WebConfigError>, Files) {
    let mut files = Files::new(path);
    let mut errors = Vec::new();
    let config = parse(path, &mut files, slots, &mut errors);
    let result = match config {
        Some(c) if errors.is_empty() => Ok(c),
        _ => Err(WebConfigError {
            path: path.to_path_buf(),
            errors,
        }),
    };
    (result, files)
}

fn parse(
    path: &Path,
    files: &mut Files,
    slots: &Arc<Semaphore>,
    errors: &mut Vec<String>,
) -> Option<WebConfig> {
    let text = match files.read_config(path) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("cannot read the file: {e}"));
            return None;
        }
    };
    let doc: Value = match serde_yaml::from_slice(&text) {
        Ok(d) => d,
        Err(e) => {
            errors.push(format!("not valid YAML: {e}"));
            return None;
        }
    };
    let mut top = Table::new("", Some(doc), errors);
    let tls_v = top.raw("tls_server_config");
    let http_v = top.raw("http_server_config");
    let users_v = top.raw("basic_auth_users");
    top.refuse(
        "rate_limit",
        "not supported by driftd (its HTTP server bounds connections and requests itself)",
    );
    top.refuse(
        "auth_excluded_paths",
        "not supported by driftd: every path needs the same authentication",
    );
    top.finish();

    // Present, even empty, means TLS is wanted: then it needs a certificate.
    let tls = tls_v.and_then(|v| tls::parse(v, files, errors));
    let headers = http_server_config(http_v, errors);
    let users = users(users_v, errors);
    Some(WebConfig {
        tls,
        headers,
        basic_auth: BasicAuth::new(users, slots.clone()),
    })
}

/// The headers exporter-toolkit lets a config set (any case), each with the
/// values it accepts (none listed: any valid header value).
const HEADERS: [(&str, &[&str]); 5] = [
    ("Content-Security-Policy", &[]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-XSS-Protection", &[]),
    ("Strict-Transport-Security", &[]),
];

fn http_server_config(
    value: Option<Value>,
    errors: &mut Vec<String>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut t = Table::new("http_server_config", value, errors);
    if t.take::<bool>("http2") == Some(true) {
        t.error(
            "http2",
            "driftd serves HTTP/1.1 only; set http2: false (or leave it out)",
        );
    }
    let headers_v = t.raw("headers");
    t.finish();
    let mut out: Vec<(HeaderName, HeaderValue)> = Vec::new();
    let entries = yaml::entries(
        "http_server_config.headers",
        headers_v.unwrap_or(Value::Null),
        errors,
    );
    for (name, value) in entries {
        let key = format!("http_server_config.headers.{name}");
        let Some((canonical, allowed)) =
            HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<&str> = HEADERS.iter().map(|(h, _)| *h).collect();
            errors.push(format!(
                "{key}: this header cannot be set (the ones that can: {})",
                names.join(", ")
            ));
            continue;
        };
        // Go's YAML decoder takes a number or a boolean as its text here
        // (`X-XSS-Protection: 0`), so the same file works in both.
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                errors.push(format!(
                    "{key}: expected a string, found {}",
                    yaml::kind(&other)
                ));
                continue;
            }
        };
        // Blank: unset, as in exporter-toolkit.
        if text.is_empty() {
            continue;
        }
        if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&text)) {
            errors.push(format!(
                "{key}: `{text}` is not allowed (use {})",
                allowed.join(" or ")
            ));
            continue;
        }
        let hname = HeaderName::from_static(match *canonical {
            "Content-Security-Policy" => "content-security-policy",
            "X-Frame-Options" => "x-frame-options",
            "X-Content-Type-Options" => "x-content-type-options",
            "X-XSS-Protection" => "x-xss-protection",
            _ => "strict-transport-security",
        });
        if out.iter().any(|(n, _)| *n == hname) {
            errors.push(format!(
                "{key}: {canonical} is set twice (header names ignore case)"
            ));
            continue;
        }
        match HeaderValue::from_str(&text) {
            Ok(v) => out.push((hname, v)),
            Err(_) => errors.push(format!(
                "{key}: not a valid HTTP header value (no control characters or line breaks)"
            )),
        }
    }
    out
}

/// `basic_auth_users`: user name to bcrypt hash. Messages never quote a
/// hash.
fn users(value: Option<Value>, errors: &mut Vec<String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (user, hash) in yaml::entries("basic_auth_users", value.unwrap_or(Value::Null), errors) {
        let key = format!("basic_auth_users.{user}");
        if user.is_empty() || user.contains(':') {
            errors.push(format!(
                "{key}: a user name must be non-empty and have no `:` (basic auth splits at the first colon)"
            ));
            continue;
        }
        match hash {
            Value::String(h) if auth::is_bcrypt_hash(&h) => out.push((user, h)),
            Value::String(_) => errors.push(format!(
                "{key}: not a bcrypt hash ($2a$, $2b$ or $2y$, a cost of 04 to 31, then 53 \
                 characters, as `htpasswd -nBC 10 \"\" | tr -d ':\\n'` prints)"
            )),
            other => errors.push(format!(
                "{key}: expected a bcrypt hash (a string), found {}",
                yaml::kind(&other)
            )),
        }
    }
    out
}

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod source_tests;

#[cfg(test)]
mod tls_parse_tests;

#[cfg(test)]
mod tls_tests;
