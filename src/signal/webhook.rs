//! The webhook backend: a signed JSON POST.
//!
//! The body is the [`Signal`] as JSON (schema `driftd.signal.v1`). Headers
//! follow Standard Webhooks: `webhook-id` (the idempotency key, the same on
//! every retry), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature` (`v1,` + base64 HMAC-SHA256 over
//! `id.timestamp.body`). The secret is read from a file: `whsec_` followed
//! by base64 (the Standard Webhooks form), or else the file's bytes
//! (trimmed); it is refused when others could read it or anyone but its
//! owner could write it ([`crate::fsutil::read_secret`]). Messages show
//! the URL redacted ([`super::redact::url`]). TLS uses the system roots,
//! plus `ca_file` if given. Any 2xx ends the episode; anything else is
//! retried.
//!
//! Config: `url` and `secret_file` (required), `ca_file`, `timeout`
//! (default 10s: the whole request, connecting at most 10s of it).

use super::backend::{in_image, Backend, BackendSpec, BackendType, SendFuture};
use super::Signal;
use crate::spec::Table;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `type = "webhook"`.
pub static TYPE: BackendType = BackendType {
    name: "webhook",
    timeout: Some(Duration::from_secs(10)),
    example: "url = \"https://replacer.example.internal/driftd\"\n\
              secret_file = \"/etc/driftd/webhook.secret\"",
    parse,
};

/// A webhook's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSpec {
    pub url: String,
    /// The secret is read from a file, never written in the config.
    pub secret_file: PathBuf,
    /// Added to the system roots.
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

fn parse(t: &mut Table<'_>, timeout: Duration) -> Option<Box<dyn BackendSpec>> {
    let url: Option<String> = t.take("url");
    let secret_file: Option<PathBuf> = t.take("secret_file");
    let ca_file = t.take("ca_file");
    match (url, secret_file) {
        (Some(url), Some(secret_file)) => match checked_url(&url) {
            Ok(_) => Some(Box::new(WebhookSpec {
                url,
                secret_file,
                ca_file,
                timeout,
            })),
            Err(e) => {
                t.error("url", e);
                None
            }
        },
        (url, _) => {
            t.error(
                if url.is_none() { "url" } else { "secret_file" },
                "required for a webhook (the secret is read from a file, never written inline)",
            );
            None
        }
    }
}

impl WebhookSpec {
    fn webhook(&self, name: &str) -> Result<Webhook, String> {
        Webhook::new(
            name,
            &self.url,
            &self.secret_file,
            self.ca_file.as_deref(),
            self.timeout,
        )
    }
}

impl BackendSpec for WebhookSpec {
    fn kind(&self) -> &'static str {
        TYPE.name
    }

    /// The URL, the secret file and the CA file, as `build` reads them.
    fn preflight(&self) -> Result<String, String> {
        let w = self.webhook(TYPE.name)?;
        Ok(format!("POST to {}", w.shown))
    }

    fn rebase(&mut self, image_root: &Path) {
        self.secret_file = in_image(image_root, &self.secret_file);
        if let Some(ca) = &mut self.ca_file {
            *ca = in_image(image_root, ca);
        }
    }

    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(self.webhook(name)?))
    }
}

pub struct Webhook {
    name: String,
    url: reqwest::Url,
    /// The URL as messages show it: its credentials masked
    /// ([`super::redact::url`]).
    shown: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

/// Parse a secret file's content.
pub fn parse_secret(text: &[u8]) -> Result<Vec<u8>, String> {
    let t = std::str::from_utf8(text).map(str::trim);
    match t {
        Ok(s) if s.starts_with("whsec_") => base64::engine::general_purpose::STANDARD
            .decode(&s["whsec_".len()..])
            .map_err(|e| format!("secret: `whsec_` is not followed by base64: {e}")),
        _ => {
            let raw = text.trim_ascii();
            if raw.is_empty() {
                Err("secret file is empty".into())
            } else {
                Ok(raw.to_vec())
            }
        }
    }
}

/// `v1,<base64 HMAC-SHA256(secret, "id.timestamp.body")>`.
pub fn signature(secret: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// An error and its causes ("error sending request: ... invalid peer
/// certificate: UnknownIssuer"): the outer message alone says too little.
/// The guard's Prometheus client reports its errors the same way.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

/// The URL, parsed and checked; a message shows it redacted (a URL may
/// carry credentials in its userinfo or query).
fn checked_url(text: &str) -> Result<reqwest::Url, String> {
    let shown = super::redact::url(text);
    let url =
        reqwest::Url::parse(text).map_err(|e| format!("`{shown}` is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(format!("`{shown}`: only https and http are supported"));
    }
    Ok(url)
}

impl Webhook {
    pub fn new(
        name: &str,
        url: &str,
        secret_file: &Path,
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<Webhook, String> {
        let url = checked_url(url).map_err(|e| format!("url {e}"))?;
        let shown = super::redact::url(url.as_str());
        // Refused unless only its owner (root or us) and group can read it.
        let bytes =
            crate::fsutil::read_secret(secret_file, "webhook secret").map_err(|e| e.to_string())?;
        let secret = parse_secret(&bytes)
            .map_err(|e| format!("webhook secret {}: {e}", secret_file.display()))?;
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("driftd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("read CA file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        let client = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Webhook {
            name: name.to_string(),
            url,
            shown,
            secret,
            client,
        })
    }

    async fn post(&self, s: &Signal) -> Result<String, String> {
        let body = serde_json::to_vec(s).map_err(|e| e.to_string())?;
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let resp = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", &s.idempotency_key)
            .header("webhook-timestamp", ts.to_string())
            .header(
                "webhook-signature",
                signature(&self.secret, &s.idempotency_key, ts, &body),
            )
            .body(body)
            .send()
            .await
            // The URL may carry credentials: only ever shown redacted.
            .map_err(|e| format!("POST to {}: {}", self.shown, error_chain(&e.without_url())))?;
        let status = resp.status();
        if status.is_success() {
            Ok(format!("HTTP {status}"))
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

impl Backend for Webhook {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, signal: &'a Signal) -> SendFuture<'a> {
        Box::pin(self.post(signal))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_signature() {
        // The example from the Standard Webhooks specification.
        let secret = parse_secret(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    /// The config's errors for one webhook table.
    fn config_errors(url: &str, secret: &Path) -> Vec<String> {
        let text = format!(
            "[[signal]]\ntype = \"webhook\"\nurl = {}\nsecret_file = {}\n",
            toml::Value::String(url.into()),
            toml::Value::String(secret.display().to_string())
        );
        let mut doc: toml::Table = text.parse().unwrap();
        let mut errors = Vec::new();
        super::super::backend::parse(doc.remove("signal"), &mut errors);
        errors
    }

    #[test]
    fn urls_in_errors_and_preflight_show_no_credentials() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("hook.secret");
        std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        let bad = [
            "https://ops:PASSWORD@host:99999/hook?token=TOKEN",
            "ftp://ops:PASSWORD@host/hook?token=TOKEN",
            "https://ops:PASS/WORD@host/hook?token=TOKEN",
        ];
        for url in bad {
            let errors = config_errors(url, &secret);
            let all = errors.join("\n");
            assert_eq!(errors.len(), 1, "{url}: {all}");
            assert!(all.starts_with("signal[0].url: `"), "{all}");
            for word in ["PASSWORD", "TOKEN", "WORD"] {
                assert!(!all.contains(word), "{url}: {all}");
            }
            let spec = WebhookSpec {
                url: url.into(),
                secret_file: secret.clone(),
                ca_file: None,
                timeout: Duration::from_secs(1),
            };
            let e = spec.preflight().unwrap_err();
            assert!(!e.contains("PASSWORD") && !e.contains("TOKEN"), "{e}");
        }
        let good = "https://ops:PASSWORD@host.example/hook?token=TOKEN";
        assert!(config_errors(good, &secret).is_empty());
        let spec = WebhookSpec {
            url: good.into(),
            secret_file: secret.clone(),
            ca_file: None,
            timeout: Duration::from_secs(1),
        };
        assert_eq!(
            spec.preflight().unwrap(),
            "POST to https://ops:***@host.example/hook?token=***"
        );
        // The secret file is held to the secret rule.
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = spec.preflight().unwrap_err();
        assert_eq!(
            e,
            format!(
                "webhook secret {} is readable by others (mode 0644): chmod 0640",
                secret.display()
            )
        );
    }

    #[test]
    fn secrets() {
        assert_eq!(parse_secret(b"  plain-secret\n").unwrap(), b"plain-secret");
        assert!(parse_secret(b"\n").is_err());
        assert!(parse_secret(b"whsec_!!!").is_err());
    }
}
