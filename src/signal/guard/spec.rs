//! `[signals.guard]`: the guard's settings, read and validated.
//!
//! Every key is declared where it is read (see [`crate::spec::Table`]);
//! every problem is reported with its dotted key. What can be judged
//! without the network is judged here: the URL (http or https, no
//! credentials in it, no query), the limit, the selector (label matchers,
//! re-rendered from their parsed form so nothing but matchers reaches the
//! query), the query override (only the placeholders `{digest}` and
//! `{host_id}`), and the pairing of the credential keys. Secrets are
//! never written in the config: only the files that hold them.

pub use super::limit::Limit;
use super::selector::Selector;
use crate::spec::Table;
use std::path::PathBuf;
use std::time::Duration;

/// The most a query override may be (it is sent on every look).
pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// What a look that fails decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    Hold,
    Send,
}

impl OnError {
    pub fn label(self) -> &'static str {
        match self {
            OnError::Hold => "hold",
            OnError::Send => "send",
        }
    }
}

/// Credentials for the query API, each from a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Bearer(PathBuf),
    Basic {
        user: String,
        password_file: PathBuf,
    },
}

/// The validated `[signals.guard]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// The query API's base (`http://prometheus:9090`, or with a path
    /// prefix such as `http://mimir/prometheus`).
    pub prometheus_url: String,
    pub max_drifted: Limit,
    /// Wait after confirmation before the first look (plus a random
    /// jitter of up to half of it), again after a restart.
    pub settle: Duration,
    /// How often a held signal looks again.
    pub recheck: Duration,
    pub on_error: OnError,
    /// Label matchers added to every series the guard reads.
    pub selector: Option<Selector>,
    /// A full PromQL override (see [`super::query`]).
    pub query: Option<String>,
    /// Added to the system roots.
    pub ca_file: Option<PathBuf>,
    pub auth: Auth,
}

impl GuardConfig {
    /// Defaults of the optional keys (documented in config/driftd.toml).
    pub const MAX_DRIFTED: Limit = Limit::Share(10_000);
    pub const SETTLE: Duration = Duration::from_secs(120);
    pub const RECHECK: Duration = Duration::from_secs(60);

    /// The settings in one line (logs, `driftd validate`).
    pub fn describe(&self) -> String {
        let auth = match &self.auth {
            Auth::None => String::new(),
            Auth::Bearer(f) => format!(", bearer token from {}", f.display()),
            Auth::Basic { user, .. } => format!(", basic auth as {user}"),
        };
        format!(
            "Prometheus at {}, max_drifted {}, settle {} (+ up to half), recheck {}, on_error {}{}{}{auth}",
            crate::signal::redact::url(&self.prometheus_url),
            self.max_drifted,
            humantime::format_duration(self.settle),
            humantime::format_duration(self.recheck),
            self.on_error.label(),
            self.selector
                .as_ref()
                .map_or(String::new(), |s| format!(", selector {s}")),
            if self.query.is_some() {
                ", query overridden"
            } else {
                ""
            },
        )
    }
}

/// Is `url` a usable query API base? (http or https, a host, no
/// credentials, no query or fragment.) Messages show it redacted
/// ([`crate::signal::redact::url`]): a URL refused for holding a secret
/// must not echo it.
pub fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let shown = crate::signal::redact::url(url);
    let u = reqwest::Url::parse(url).map_err(|e| format!("`{shown}`: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("`{shown}`: only http and https are supported"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{shown}`: no host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{shown}`: credentials in the URL: use basic_auth_user and basic_auth_password_file (secrets are read from files)"));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err(format!(
            "`{shown}`: no query or fragment (the path is the API prefix)"
        ));
    }
    Ok(u)
}

/// Parse `[signals.guard]` (the value of the key `guard` in `[signals]`);
/// `None` when absent or invalid (then with errors).
pub fn parse(value: Option<toml::Value>, errors: &mut Vec<String>) -> Option<GuardConfig> {
    value.as_ref()?;
    let before = errors.len();
    let mut t = Table::new("signals.guard", value, errors);
    let url: Option<String> = t.take("prometheus_url");
    let max_drifted = match t.raw("max_drifted") {
        None => Some(GuardConfig::MAX_DRIFTED),
        Some(toml::Value::Integer(n)) => match u64::try_from(n) {
            Ok(n) => Some(Limit::Count(n)),
            Err(_) => {
                t.error("max_drifted", format_args!("`{n}` is negative"));
                None
            }
        },
        Some(toml::Value::String(s)) => match Limit::parse(&s) {
            Ok(l) => Some(l),
            Err(e) => {
                t.error("max_drifted", e);
                None
            }
        },
        Some(other) => {
            t.error(
                "max_drifted",
                format_args!(
                    "expected a count (\"3\") or a share (\"10%\"), found {}",
                    other.type_str()
                ),
            );
            None
        }
    };
    let settle = t.duration("settle").unwrap_or(GuardConfig::SETTLE);
    let recheck = t.duration("recheck").unwrap_or(GuardConfig::RECHECK);
    let on_error = match t.take::<String>("on_error").as_deref() {
        None | Some("hold") => OnError::Hold,
        Some("send") => OnError::Send,
        Some(other) => {
            t.error(
                "on_error",
                format_args!("`{other}`: expected \"hold\" or \"send\""),
            );
            OnError::Hold
        }
    };
    let selector = match t.take::<String>("selector") {
        Some(s) if !s.trim().is_empty() => match Selector::parse(&s) {
            Ok(sel) => Some(sel),
            Err(e) => {
                t.error("selector", e);
                None
            }
        },
        _ => None,
    };
    let query = t.take::<String>("query");
    if let Some(q) = &query {
        if let Err(e) = super::query::check_template(q) {
            t.error("query", e);
        }
    }
    let ca_file: Option<PathBuf> = t.take("ca_file");
    let bearer: Option<PathBuf> = t.take("bearer_token_file");
    let user: Option<String> = t.take("basic_auth_user");
    let password_file: Option<PathBuf> = t.take("basic_auth_password_file");
    for inline in ["bearer_token", "basic_auth_password"] {
        if t.raw(inline).is_some() {
            t.error(
                inline,
                format_args!(
                    "secrets are read from files, never written in the config: use {inline}_file"
                ),
            );
        }
    }
    let auth = match (bearer, user, password_file) {
        (None, None, None) => Auth::None,
        (Some(f), None, None) => Auth::Bearer(f),
        (None, Some(user), Some(password_file)) => {
            if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
                t.error(
                    "basic_auth_user",
                    "must be non-empty, without `:` or control characters",
                );
            }
            Auth::Basic {
                user,
                password_file,
            }
        }
        (Some(_), _, _) => {
            t.error(
                "bearer_token_file",
                "choose one: a bearer token or basic auth, not both",
            );
            Auth::None
        }
        (None, Some(_), None) => {
            t.error("basic_auth_password_file", "required with basic_auth_user");
            Auth::None
        }
        (None, None, Some(_)) => {
            t.error("basic_auth_user", "required with basic_auth_password_file");
            Auth::None
        }
    };
    match &url {
        None => t.error(
            "prometheus_url",
            "required (without [signals.guard] there is no guard)",
        ),
        Some(u) => {
            if let Err(e) = check_url(u) {
                t.error("prometheus_url", e);
            }
        }
    }
    if recheck < Duration::from_secs(1) {
        t.error("recheck", "must be at least 1s");
    }
    t.finish();
    if errors.len() > before {
        return None;
    }
    Some(GuardConfig {
        prometheus_url: url?,
        max_drifted: max_drifted?,
        settle,
        recheck,
        on_error,
        selector,
        query,
        ca_file,
        auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(text: &str) -> Result<GuardConfig, Vec<String>> {
        let v: toml::Table = text.parse().unwrap();
        let mut errors = Vec::new();
        let g = parse(Some(toml::Value::Table(v)), &mut errors);
        match g {
            Some(g) if errors.is_empty() => Ok(g),
            _ => Err(errors),
        }
    }

    #[test]
    fn defaults_and_every_key() {
        let g = guard("prometheus_url = \"http://prometheus:9090\"").unwrap();
        assert_eq!(g.max_drifted, Limit::Share(10_000));
        assert_eq!(g.settle, Duration::from_secs(120));
        assert_eq!(g.recheck, Duration::from_secs(60));
        assert_eq!(g.on_error, OnError::Hold);
        assert_eq!((g.selector, g.query, g.ca_file), (None, None, None));
        assert_eq!(g.auth, Auth::None);
        let g = guard(
            r#"
            prometheus_url = "https://thanos.example.internal/prefix/"
            max_drifted = 3
            settle = "30s"
            recheck = "10s"
            on_error = "send"
            selector = 'env="prod", region=~"eu-.*"'
            query = 'count(driftd_manifest_info{digest="{digest}"})'
            ca_file = "/etc/driftd/prom-ca.pem"
            basic_auth_user = "driftd"
            basic_auth_password_file = "/etc/driftd/prom.password"
        "#,
        )
        .unwrap();
        assert_eq!(g.max_drifted, Limit::Count(3));
        assert_eq!(g.on_error, OnError::Send);
        assert_eq!(
            g.selector.unwrap().to_string(),
            "env=\"prod\",region=~\"eu-.*\""
        );
        assert!(matches!(g.auth, Auth::Basic { ref user, .. } if user == "driftd"));
        let g = guard(
            "prometheus_url = \"http://p:9090\"\nbearer_token_file = \"/t\"\nmax_drifted = \"0\"",
        )
        .unwrap();
        assert_eq!(g.auth, Auth::Bearer("/t".into()));
        assert_eq!(g.max_drifted, Limit::Count(0));
    }

    #[test]
    fn every_error_at_once_with_its_key() {
        let errors = guard(
            r#"
            max_drifted = "0%"
            settle = "soon"
            recheck = "10ms"
            on_error = "panic"
            selector = 'env=prod'
            query = 'up{job="{job}"}'
            bearer_token_file = "/t"
            basic_auth_user = "u"
            bearer_token = "s3cret"
            colour = "blue"
        "#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for needle in [
            "signals.guard.prometheus_url: required",
            "signals.guard.max_drifted: `0%` would still let one host go",
            "signals.guard.settle: `soon` is not a duration",
            "signals.guard.recheck: must be at least 1s",
            "signals.guard.on_error: `panic`: expected \"hold\" or \"send\"",
            "signals.guard.selector: ",
            "signals.guard.query: unknown placeholder {job}",
            "signals.guard.bearer_token_file: choose one",
            "signals.guard.bearer_token: secrets are read from files",
            "signals.guard.colour: unknown key",
        ] {
            assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
        }
        assert!(!all.contains("s3cret"), "a secret echoed:\n{all}");
    }

    #[test]
    fn urls_are_checked_and_credentials_never_echoed() {
        for (url, needle) in [
            ("ftp://p:21", "only http and https"),
            ("http://user:hunter2@p:9090", "credentials in the URL"),
            ("http://p:9090/?x=1", "no query"),
            (
                "http://p:9090/?token=hunter2",
                "`http://p:9090/?token=***`: no query",
            ),
            // Does not parse: still shown redacted.
            ("http://user:hunter2/x@p:9090", "`http://user:***@p:9090`: "),
            ("prometheus:9090", "only http and https"),
            ("not a url", "relative URL"),
        ] {
            let e = check_url(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
        check_url("https://mimir.example.internal/prometheus").unwrap();
        let errors =
            guard("prometheus_url = \"http://u:pw@p\"\nbasic_auth_user = \"u\"").unwrap_err();
        assert!(!errors.join("\n").contains("pw@"), "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("basic_auth_password_file: required")),
            "{errors:?}"
        );
    }
}
