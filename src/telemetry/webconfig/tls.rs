//! `tls_server_config`: read every key, report every problem with its key,
//! and build the rustls server config (ring provider) that honours exactly
//! what was asked, or nothing.

use super::names;
use super::pem::{self, Given, Pem};
use super::sans::SanVerifier;
use super::source::Files;
use super::yaml::{kind, Table};
use rustls::crypto::{ring, CryptoProvider, SupportedKxGroup};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    ProtocolVersion, RootCertStore, ServerConfig, SignatureAlgorithm, SupportedCipherSuite,
    SupportedProtocolVersion,
};
use serde_yaml::Value;
use std::sync::Arc;

/// How a client certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientAuth {
    /// Not asked for.
    None,
    /// Verified against `client_ca_file` when the client sends one.
    VerifyIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerify,
}

/// Read `tls_server_config` (present, even empty: TLS is wanted) and build
/// the server config, with what it does in words; `None` when anything is
/// wrong (with errors).
pub(super) fn parse(
    value: Value,
    files: &mut Files,
    errors: &mut Vec<String>,
) -> Option<(Arc<ServerConfig>, String)> {
    if !matches!(value, Value::Null | Value::Mapping(_)) {
        let found = kind(&value);
        errors.push(format!(
            "tls_server_config: expected a mapping, found {found}"
        ));
        return None;
    }
    let before = errors.len();
    let mut t = Table::new("tls_server_config", Some(value), errors);
    // Read in the order of the exporter-toolkit docs, which is also the
    // order the known keys are listed in.
    let cert = pem::read(&mut t, files, "cert_file", "cert");
    let key = pem::read(&mut t, files, "key_file", "key");
    let auth_name = t.take::<String>("client_auth_type");
    let ca = pem::read(&mut t, files, "client_ca_file", "client_ca");
    let allowed_sans = t
        .take::<Vec<String>>("client_allowed_sans")
        .unwrap_or_default();
    let min_name = t.take::<String>("min_version");
    let max_name = t.take::<String>("max_version");
    let suite_names = t.take::<Vec<String>>("cipher_suites").unwrap_or_default();
    let prefer_server = t.take::<bool>("prefer_server_cipher_suites");
    let curve_names = t
        .take::<Vec<String>>("curve_preferences")
        .unwrap_or_default();

    for (given, name, what) in [
        (
            &cert,
            "cert_file",
            "cert_file (the PEM certificate chain) and key_file",
        ),
        (
            &key,
            "key_file",
            "key_file (the PEM private key of the certificate) and cert_file",
        ),
    ] {
        if matches!(given, Given::Absent) {
            t.error(name, format_args!("missing: TLS needs {what}"));
        }
    }
    let auth = client_auth(&mut t, auth_name.as_deref(), &ca, !allowed_sans.is_empty());
    let min_name = min_name.as_deref().unwrap_or("TLS12");
    let max_name = max_name.as_deref().unwrap_or("TLS13");
    let versions = versions(&mut t, min_name, max_name);
    let (provider, tls12_suites) = provider(&mut t, &suite_names, &curve_names);

    let chain = cert.pem().and_then(|p| pem::certificates(p, t.errors()));
    let key_der = key.pem().and_then(|p| pem::private_key(p, t.errors()));
    let certified = match (chain, key_der, cert.pem(), key.pem()) {
        (Some(chain), Some(key_der), Some(cert), Some(key)) => {
            pem::certified_key(&provider, chain, key_der, cert, key, t.errors())
        }
        _ => None,
    };
    if let Some(ck) = &certified {
        let tls12 = versions
            .iter()
            .any(|v| v.version == ProtocolVersion::TLSv1_2);
        if tls12 {
            suites_fit_key(&mut t, ck, &tls12_suites);
        }
    }
    let verifier = match (auth, ca.pem()) {
        (Some(ClientAuth::None), _) => Some(WebPkiClientVerifier::no_client_auth()),
        (Some(a), Some(ca)) => client_verifier(&provider, a, ca, allowed_sans.clone(), t.errors()),
        _ => None,
    };
    t.finish();
    if errors.len() > before {
        return None;
    }
    let (certified, verifier) = (certified?, verifier?);
    let builder =
        match ServerConfig::builder_with_provider(provider).with_protocol_versions(&versions) {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("tls_server_config: {e}"));
                return None;
            }
        };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.ignore_client_order = prefer_server.unwrap_or(true);
    // driftd serves HTTP/1.1 only (http_server_config.http2 must be false).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let span = if min_name == max_name {
        min_name.to_string()
    } else {
        format!("{min_name}-{max_name}")
    };
    let clients = match auth {
        Some(ClientAuth::RequireAndVerify) if allowed_sans.is_empty() => {
            "client certificates required"
        }
        Some(ClientAuth::RequireAndVerify) => "client certificates required, SANs checked",
        Some(ClientAuth::VerifyIfGiven) => "client certificates verified if given",
        _ => "no client certificates",
    };
    Some((Arc::new(config), format!("{span}, {clients}")))
}

/// `client_auth_type`, checked against `client_ca_file` and
/// `client_allowed_sans`; `None` if unusable (reported).
fn client_auth(t: &mut Table, name: Option<&str>, ca: &Given, sans: bool) -> Option<ClientAuth> {
    let auth = match name {
        None | Some("") | Some("NoClientCert") => ClientAuth::None,
        Some("VerifyClientCertIfGiven") => ClientAuth::VerifyIfGiven,
        Some("RequireAndVerifyClientCert") => ClientAuth::RequireAndVerify,
        // Go's RequireClientCert is an old name of RequireAnyClientCert.
        Some(n @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert")) => {
            t.error(
                "client_auth_type",
                format_args!(
                    "{n} asks for a client certificate without verifying it, which is \
                     insecure, and driftd does not support it (use RequireAndVerifyClientCert \
                     with client_ca_file)"
                ),
            );
            return None;
        }
        Some(n) => {
            t.error(
                "client_auth_type",
                format_args!(
                    "unknown value {n} (use NoClientCert, RequireAndVerifyClientCert or \
                     VerifyClientCertIfGiven)"
                ),
            );
            return None;
        }
    };
    let ca_set = !matches!(ca, Given::Absent);
    if auth == ClientAuth::None && ca_set {
        t.error(
            "client_ca_file",
            "set, but client_auth_type is NoClientCert, so no client certificate would be \
             asked for (set client_auth_type: RequireAndVerifyClientCert)",
        );
    }
    if auth != ClientAuth::None && !ca_set {
        let name = name.unwrap_or_default();
        t.error(
            "client_ca_file",
            format_args!(
                "missing: client_auth_type {name} verifies client certificates against the \
                 CA certificates in client_ca_file"
            ),
        );
    }
    if sans && auth != ClientAuth::RequireAndVerify {
        t.error(
            "client_allowed_sans",
            "needs client_auth_type: RequireAndVerifyClientCert (otherwise a client without \
             a certificate has no name to match and gets in)",
        );
    }
    Some(auth)
}

/// The protocol versions from `min_version` to `max_version`.
fn versions(t: &mut Table, min: &str, max: &str) -> Vec<&'static SupportedProtocolVersion> {
    let mut one = |key, name| match names::version(name) {
        Ok(v) => Some(v),
        Err(e) => {
            t.error(key, e);
            None
        }
    };
    let (Some(lo), Some(hi)) = (one("min_version", min), one("max_version", max)) else {
        return Vec::new();
    };
    let rank = |v: &SupportedProtocolVersion| u16::from(v.version);
    if rank(lo) > rank(hi) {
        t.error(
            "min_version",
            format_args!("{min} is above max_version {max}"),
        );
    }
    [&rustls::version::TLS12, &rustls::version::TLS13]
        .into_iter()
        .filter(|v| rank(v) >= rank(lo) && rank(v) <= rank(hi))
        .collect()
}

/// The ring provider with the chosen suites and curves: TLS 1.3 suites
/// always, then the chosen TLS 1.2 suites in the order given (the server's
/// preference); the chosen curves in order. Also the chosen TLS 1.2 suites.
fn provider(
    t: &mut Table,
    suite_names: &[String],
    curve_names: &[String],
) -> (Arc<CryptoProvider>, Vec<SupportedCipherSuite>) {
    let mut suites: Vec<SupportedCipherSuite> = Vec::new();
    for name in suite_names {
        match names::tls12_suite(name) {
            Ok(s) if !suites.iter().any(|x| x.suite() == s.suite()) => suites.push(s),
            Ok(_) => {}
            Err(e) => t.error("cipher_suites", e),
        }
    }
    let mut curves: Vec<&'static dyn SupportedKxGroup> = Vec::new();
    for name in curve_names {
        match names::curve(name) {
            Ok(c) if !curves.iter().any(|x| x.name() == c.name()) => curves.push(c),
            Ok(_) => {}
            Err(e) => t.error("curve_preferences", e),
        }
    }
    let mut provider = ring::default_provider();
    if !suites.is_empty() {
        let tls13 = |s: &SupportedCipherSuite| s.version().version == ProtocolVersion::TLSv1_3;
        provider.cipher_suites.retain(tls13);
        provider.cipher_suites.extend(suites.iter().copied());
    }
    if !curves.is_empty() {
        provider.kx_groups = curves;
    }
    (Arc::new(provider), suites)
}

/// With TLS 1.2 on and suites chosen, one of them must work with the key:
/// else no TLS 1.2 client could ever connect.
fn suites_fit_key(t: &mut Table, ck: &CertifiedKey, suites: &[SupportedCipherSuite]) {
    if suites.is_empty() {
        return;
    }
    let usable = suites.iter().any(|s| match s {
        SupportedCipherSuite::Tls12(s) => ck.key.choose_scheme(s.sign).is_some(),
        SupportedCipherSuite::Tls13(_) => false,
    });
    if !usable {
        let alg = ck.key.algorithm();
        let kind = if alg == SignatureAlgorithm::RSA {
            "RSA"
        } else {
            "ECDSA"
        };
        t.error(
            "cipher_suites",
            format_args!(
                "none of these TLS 1.2 suites can be used with the {alg:?} key of key_file, \
                 so no TLS 1.2 client could connect (list TLS_ECDHE_{kind}_ suites)"
            ),
        );
    }
}

/// The webpki verifier over the CA certificates of `ca`, wrapped with the
/// SAN check when `client_allowed_sans` is set.
fn client_verifier(
    provider: &Arc<CryptoProvider>,
    auth: ClientAuth,
    ca: &Pem,
    allowed_sans: Vec<String>,
    errors: &mut Vec<String>,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    for (i, c) in pem::certificates(ca, errors)?.into_iter().enumerate() {
        if let Err(e) = roots.add(c) {
            errors.push(format!(
                "{}: {}: certificate {}: not a usable CA certificate: {e}",
                ca.key,
                ca.origin,
                i + 1
            ));
            return None;
        }
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if auth == ClientAuth::VerifyIfGiven {
        builder = builder.allow_unauthenticated();
    }
    let inner = match builder.build() {
        Ok(v) => v,
        Err(e) => {
            errors.push(format!("{}: {}: {e}", ca.key, ca.origin));
            return None;
        }
    };
    if allowed_sans.is_empty() {
        return Some(inner);
    }
    Some(Arc::new(SanVerifier {
        inner,
        allowed: allowed_sans,
    }))
}
