//! The guard's one piece of IO: an instant query against the Prometheus
//! HTTP API (`POST <prometheus_url>/api/v1/query`), behind the small
//! [`FleetQuery`] trait so the dispatcher can be tested without a server.
//!
//! Any server with that API answers it: Prometheus, Thanos Querier, Mimir
//! (with its `/prometheus` prefix in the URL), VictoriaMetrics. A transport
//! error, the timeout ([`QUERY_TIMEOUT`], also sent to the server as the
//! query's `timeout`), a non-success HTTP status and an answer with
//! `warnings` (partial data) are errors; the caller's `on_error` decides.
//! Errors name the operation and the URL (redacted, [`crate::signal::redact`]),
//! never a credential: the bearer token or the basic-auth password is read
//! from its file for every query (a rotated file is picked up without a
//! reload), under the secret-file rule, and never logged.

use super::query::{parse_answer, render, Answer, LookRequest};
use super::spec::{check_url, Auth, GuardConfig};
use crate::signal::webhook::error_chain;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

/// The longest one look may take, connecting included.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The most of an answer that is read (a look's answer is three numbers).
const MAX_ANSWER: usize = 1 << 20;

/// The most of a secret file that is read.
const MAX_SECRET: u64 = 64 * 1024;

/// A look in progress.
pub type LookFuture<'a> = Pin<Box<dyn Future<Output = Result<Answer, String>> + Send + 'a>>;

/// Asks the fleet's Prometheus about one signal.
pub trait FleetQuery: Send + Sync {
    fn look<'a>(&'a self, req: &'a LookRequest) -> LookFuture<'a>;
}

/// A secret from a file, read under the secret-file rule
/// ([`crate::fsutil::read_secret`]: refused when others could read or
/// write it, or an owner other than root or driftd's user could rewrite
/// it): UTF-8, trimmed, non-empty, one line, at most 64 KiB. `what` names
/// it ("bearer token file"); errors name the file, never its content.
pub fn read_secret_file(path: &Path, what: &str) -> Result<String, String> {
    let bytes = crate::fsutil::read_secret(path, what).map_err(|e| e.to_string())?;
    let shown = || format!("{what} {}", path.display());
    if bytes.len() as u64 > MAX_SECRET {
        return Err(format!("{}: larger than {MAX_SECRET} bytes", shown()));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8 text", shown()))?;
    let t = text.trim();
    if t.is_empty() {
        return Err(format!("{}: empty", shown()));
    }
    if t.chars().any(char::is_control) {
        return Err(format!(
            "{}: more than one line, or control characters",
            shown()
        ));
    }
    Ok(t.to_string())
}

/// The file of each credential, with the name its messages give it.
fn secret_of(auth: &Auth) -> Option<(&Path, &'static str)> {
    match auth {
        Auth::None => None,
        Auth::Bearer(f) => Some((f, "bearer token file")),
        Auth::Basic { password_file, .. } => Some((password_file, "basic auth password file")),
    }
}

/// The query API of one Prometheus.
pub struct PromClient {
    endpoint: reqwest::Url,
    /// What errors and logs show: the URL, redacted (the config refuses
    /// credentials in it; redacted all the same).
    shown: String,
    auth: Auth,
    client: reqwest::Client,
    template: Option<String>,
    selector: Option<super::selector::Selector>,
}

impl PromClient {
    /// The client of a validated config: reads the CA file and checks that
    /// the secret files can be read. No network IO.
    pub fn new(cfg: &GuardConfig) -> Result<PromClient, String> {
        let base = check_url(&cfg.prometheus_url).map_err(|e| format!("prometheus_url: {e}"))?;
        let mut endpoint = base.clone();
        let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        let mut b = reqwest::Client::builder()
            .timeout(QUERY_TIMEOUT)
            .connect_timeout(QUERY_TIMEOUT)
            .user_agent(concat!("driftd/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &cfg.ca_file {
            let pem =
                std::fs::read(ca).map_err(|e| format!("read CA file {}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
            b = b.add_root_certificate(cert);
        }
        if let Some((f, what)) = secret_of(&cfg.auth) {
            read_secret_file(f, what)?;
        }
        let client = b.build().map_err(|e| format!("HTTP client: {e}"))?;
        Ok(PromClient {
            shown: crate::signal::redact::url(endpoint.as_str()),
            endpoint,
            auth: cfg.auth.clone(),
            client,
            template: cfg.query.clone(),
            selector: cfg.selector.clone(),
        })
    }

    /// The query a look sends.
    pub fn query_for(&self, req: &LookRequest) -> Result<String, String> {
        render(self.template.as_deref(), self.selector.as_ref(), req)
    }

    async fn query(&self, req: &LookRequest) -> Result<Answer, String> {
        let q = self.query_for(req)?;
        let op = format!("POST {}", self.shown);
        let timeout = format!("{}s", QUERY_TIMEOUT.as_secs());
        let mut r = self
            .client
            .post(self.endpoint.clone())
            .form(&[("query", q.as_str()), ("timeout", timeout.as_str())]);
        match &self.auth {
            Auth::None => {}
            Auth::Bearer(f) => r = r.bearer_auth(read_secret_file(f, "bearer token file")?),
            Auth::Basic {
                user,
                password_file,
            } => {
                let pw = read_secret_file(password_file, "basic auth password file")?;
                r = r.basic_auth(user, Some(pw));
            }
        }
        let mut resp = r
            .send()
            .await
            .map_err(|e| format!("{op}: {}", error_chain(&e.without_url())))?;
        let status = resp.status();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            format!(
                "{op}: reading the answer: {}",
                error_chain(&e.without_url())
            )
        })? {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(format!(
                    "{op}: the answer is larger than {MAX_ANSWER} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            // Prometheus explains a failed query in a JSON body.
            let why = parse_answer(&body).err().unwrap_or_default();
            return Err(format!(
                "{op}: HTTP {status}{}",
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            ));
        }
        parse_answer(&body).map_err(|e| format!("{op}: {e}"))
    }
}

impl FleetQuery for PromClient {
    fn look<'a>(&'a self, req: &'a LookRequest) -> LookFuture<'a> {
        Box::pin(self.query(req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults, asking the Prometheus at `url`.
    fn config(url: &str) -> GuardConfig {
        GuardConfig {
            prometheus_url: url.into(),
            max_drifted: GuardConfig::MAX_DRIFTED,
            settle: GuardConfig::SETTLE,
            recheck: GuardConfig::RECHECK,
            on_error: super::super::spec::OnError::Hold,
            selector: None,
            query: None,
            ca_file: None,
            auth: Auth::None,
        }
    }

    #[test]
    fn secret_files_are_one_trimmed_line() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let write = |content: &[u8], mode: u32| {
            std::fs::write(&p, content).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write(b"  tok3n\n", 0o600);
        assert_eq!(read_secret_file(&p, "bearer token file").unwrap(), "tok3n");
        for (content, needle) in [
            (&b"\n\n"[..], "empty"),
            (b"a\nb\n", "more than one line"),
            (b"\xff\xfe", "not UTF-8"),
        ] {
            write(content, 0o600);
            let e = read_secret_file(&p, "bearer token file").unwrap_err();
            assert!(
                e.contains(needle) && e.contains(&p.display().to_string()),
                "{e}"
            );
        }
        write(&[b'a'; 70_000], 0o600);
        assert!(read_secret_file(&p, "x")
            .unwrap_err()
            .contains("larger than"));
        let e = read_secret_file(&dir.path().join("missing"), "bearer token file").unwrap_err();
        assert!(
            e.starts_with("read bearer token file ") && e.contains("missing"),
            "{e}"
        );
    }

    #[test]
    fn secret_files_others_could_read_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        std::fs::write(&p, "tok3n\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&p, "bearer token file").unwrap_err();
        assert!(
            e.contains("readable by others") && e.contains("chmod 0640") && !e.contains("tok3n"),
            "{e}"
        );
    }

    #[test]
    fn the_endpoint_keeps_the_path_prefix() {
        for (url, want) in [
            ("http://p:9090", "http://p:9090/api/v1/query"),
            ("http://p:9090/", "http://p:9090/api/v1/query"),
            (
                "https://m.example/prometheus/",
                "https://m.example/prometheus/api/v1/query",
            ),
        ] {
            let cfg = config(url);
            let c = PromClient::new(&cfg).unwrap();
            assert_eq!(c.endpoint.as_str(), want);
        }
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_the_url() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = config(&format!("http://127.0.0.1:{port}"));
        let c = PromClient::new(&cfg).unwrap();
        let req = LookRequest {
            event: crate::verdict::SignalEvent::DriftDetected,
            digest: "blake3:00".into(),
            host_id: "h".into(),
        };
        let e = c.look(&req).await.unwrap_err();
        assert!(
            e.starts_with(&format!("POST http://127.0.0.1:{port}/api/v1/query: ")),
            "{e}"
        );
    }
}
