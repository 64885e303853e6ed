//! `client_allowed_sans`: a client verifier that first lets webpki verify
//! the chain, then requires one subject alternative name of the verified
//! certificate (DNS, IP, e-mail or URI) to equal an allowed entry exactly,
//! as exporter-toolkit does. The check runs inside the handshake, so a
//! refused client gets a TLS alert and never reaches HTTP.

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use std::net::IpAddr;
use std::sync::Arc;
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;

/// One subject alternative name of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum San {
    Dns(String),
    Ip(IpAddr),
    Email(String),
    Uri(String),
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            San::Dns(s) => write!(f, "DNS:{s}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Email(s) => write!(f, "email:{s}"),
            San::Uri(s) => write!(f, "URI:{s}"),
        }
    }
}

/// The DNS, IP, e-mail and URI names of a DER certificate (other kinds of
/// names are skipped: exporter-toolkit matches only these four).
pub(super) fn subject_alt_names(cert: &[u8]) -> Result<Vec<San>, x509_cert::der::Error> {
    let cert = x509_cert::Certificate::from_der(cert)?;
    let mut out = Vec::new();
    for ext in cert.tbs_certificate.extensions.iter().flatten() {
        if ext.extn_id != SubjectAltName::OID {
            continue;
        }
        let san = SubjectAltName::from_der(ext.extn_value.as_bytes())?;
        for name in san.0 {
            match name {
                GeneralName::DnsName(s) => out.push(San::Dns(s.to_string())),
                GeneralName::Rfc822Name(s) => out.push(San::Email(s.to_string())),
                GeneralName::UniformResourceIdentifier(s) => out.push(San::Uri(s.to_string())),
                GeneralName::IpAddress(b) => match b.as_bytes().len() {
                    4 => {
                        let o: [u8; 4] = b.as_bytes().try_into().unwrap_or_default();
                        out.push(San::Ip(IpAddr::from(o)));
                    }
                    16 => {
                        let o: [u8; 16] = b.as_bytes().try_into().unwrap_or_default();
                        out.push(San::Ip(IpAddr::from(o)));
                    }
                    // A malformed address can match nothing.
                    _ => {}
                },
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Whether any name equals any allowed entry exactly (an IP entry is
/// compared as an address, so `::1` and `0::1` are the same).
pub(super) fn allowed(allowed: &[String], sans: &[San]) -> bool {
    allowed.iter().any(|a| {
        let ip = a.parse::<IpAddr>().ok();
        sans.iter().any(|san| match san {
            San::Dns(s) | San::Email(s) | San::Uri(s) => s == a,
            San::Ip(addr) => ip == Some(*addr),
        })
    })
}

/// Wraps the webpki client verifier with the SAN check.
#[derive(Debug)]
pub(super) struct SanVerifier {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) allowed: Vec<String>,
}

impl ClientCertVerifier for SanVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        // The chain first: names of an unverified certificate mean nothing.
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let sans = subject_alt_names(end_entity)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if allowed(&self.allowed, &sans) {
            return Ok(verified);
        }
        let found: Vec<String> = sans.iter().map(San::to_string).collect();
        tracing::debug!(
            sans = %found.join(", "),
            "client certificate refused: none of its names is in client_allowed_sans"
        );
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_every_kind_are_read_and_matched_exactly() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example".into()]).unwrap();
        params.subject_alt_names.extend([
            rcgen::SanType::IpAddress("10.0.0.7".parse().unwrap()),
            rcgen::SanType::IpAddress("fd00::1".parse().unwrap()),
            rcgen::SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
            rcgen::SanType::URI("spiffe://example.org/prometheus".try_into().unwrap()),
        ]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let sans = subject_alt_names(cert.der()).unwrap();
        assert_eq!(
            sans,
            [
                San::Dns("client.example".into()),
                San::Ip("10.0.0.7".parse().unwrap()),
                San::Ip("fd00::1".parse().unwrap()),
                San::Email("ops@example.org".into()),
                San::Uri("spiffe://example.org/prometheus".into()),
            ]
        );
        let yes = |a: &str| allowed(&[a.to_string()], &sans);
        assert!(yes("client.example"));
        assert!(yes("10.0.0.7"));
        assert!(yes("fd00:0::1"));
        assert!(yes("ops@example.org"));
        assert!(yes("spiffe://example.org/prometheus"));
        // Exact: no wildcards, no suffixes, no case folding, no prefixes.
        assert!(!yes("*.example"));
        assert!(!yes("example"));
        assert!(!yes("Client.Example"));
        assert!(!yes("spiffe://example.org"));
        assert!(!yes("10.0.0.8"));
        assert!(!allowed(&[], &sans));
        assert!(allowed(&["nope".into(), "ops@example.org".into()], &sans));
    }

    #[test]
    fn a_certificate_without_names_matches_nothing_and_garbage_is_an_error() {
        let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let sans = subject_alt_names(cert.der()).unwrap();
        assert!(sans.is_empty());
        assert!(!allowed(&["".into()], &sans));
        assert!(subject_alt_names(b"not DER").is_err());
    }
}
