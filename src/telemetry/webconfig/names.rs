//! Go's names for TLS versions, cipher suites and curves (the words the
//! exporter-toolkit format uses), mapped to what rustls with the ring
//! provider has. A name Go knows but driftd cannot honour is an error that
//! says so, never quietly dropped.

use rustls::crypto::ring::{cipher_suite as cs, kx_group};
use rustls::crypto::SupportedKxGroup;
use rustls::{SupportedCipherSuite, SupportedProtocolVersion};

/// `min_version` / `max_version`: `TLS12` or `TLS13`.
pub(super) fn version(name: &str) -> Result<&'static SupportedProtocolVersion, String> {
    match name {
        "TLS12" => Ok(&rustls::version::TLS12),
        "TLS13" => Ok(&rustls::version::TLS13),
        "TLS10" | "TLS11" => Err(format!(
            "{name} is not supported (driftd's TLS library does TLS12 and TLS13)"
        )),
        _ => Err(format!("unknown TLS version {name} (use TLS12 or TLS13)")),
    }
}

/// The TLS 1.2 suites driftd can offer, by their Go names (with Go's older
/// spellings of the ChaCha20 ones).
const TLS12_SUITES: [(&str, SupportedCipherSuite); 8] = [
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

/// Suites Go knows that driftd's TLS library does not have (CBC, RSA key
/// exchange, 3DES, RC4): refused by name.
const GO_UNSUPPORTED_SUITES: [&str; 16] = [
    "TLS_RSA_WITH_RC4_128_SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
];

/// Go's names of the TLS 1.3 suites, which neither Go nor driftd lets a
/// config choose.
const TLS13_SUITES: [&str; 3] = [
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

/// One entry of `cipher_suites`.
pub(super) fn tls12_suite(name: &str) -> Result<SupportedCipherSuite, String> {
    if let Some((_, s)) = TLS12_SUITES.iter().find(|(n, _)| *n == name) {
        return Ok(*s);
    }
    let ours = || {
        let names: Vec<&str> = TLS12_SUITES.iter().map(|(n, _)| *n).collect();
        names.join(", ")
    };
    if GO_UNSUPPORTED_SUITES.contains(&name) {
        Err(format!(
            "{name} is not supported (driftd's TLS library offers only ECDHE key exchange \
             with AES-GCM or ChaCha20-Poly1305 for TLS 1.2: {})",
            ours()
        ))
    } else if TLS13_SUITES.contains(&name) {
        Err(format!(
            "{name} is a TLS 1.3 suite: TLS 1.3 suites are always enabled and cannot be \
             chosen (as in Go); list only TLS 1.2 suites"
        ))
    } else {
        Err(format!(
            "unknown cipher suite {name} (Go's names of the TLS 1.2 suites driftd has: {})",
            ours()
        ))
    }
}

/// One entry of `curve_preferences`.
pub(super) fn curve(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    match name {
        "X25519" => Ok(kx_group::X25519),
        "CurveP256" => Ok(kx_group::SECP256R1),
        "CurveP384" => Ok(kx_group::SECP384R1),
        "CurveP521" | "X25519MLKEM768" => Err(format!(
            "{name} is not supported (driftd's TLS library has X25519, CurveP256 and CurveP384)"
        )),
        _ => Err(format!(
            "unknown curve {name} (use X25519, CurveP256 or CurveP384)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            version("TLS12").unwrap().version,
            rustls::ProtocolVersion::TLSv1_2
        );
        assert_eq!(
            version("TLS13").unwrap().version,
            rustls::ProtocolVersion::TLSv1_3
        );
        assert_eq!(
            version("TLS10").unwrap_err(),
            "TLS10 is not supported (driftd's TLS library does TLS12 and TLS13)"
        );
        assert!(version("TLS11")
            .unwrap_err()
            .starts_with("TLS11 is not supported"));
        assert_eq!(
            version("tls13").unwrap_err(),
            "unknown TLS version tls13 (use TLS12 or TLS13)"
        );
    }

    #[test]
    fn every_go_name_of_an_aead_ecdhe_suite_maps_to_that_suite() {
        use rustls::CipherSuite as C;
        let cases = [
            (
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                C::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                C::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                C::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
                C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
            (
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
                C::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ),
        ];
        for (name, id) in cases {
            assert_eq!(tls12_suite(name).unwrap().suite(), id, "{name}");
        }
    }

    #[test]
    fn other_suites_are_refused_by_name_with_the_reason() {
        for name in GO_UNSUPPORTED_SUITES {
            let e = tls12_suite(name).unwrap_err();
            assert!(e.starts_with(&format!("{name} is not supported")), "{e}");
        }
        let e = tls12_suite("TLS_RSA_WITH_3DES_EDE_CBC_SHA").unwrap_err();
        assert!(e.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), "{e}");
        for name in TLS13_SUITES {
            assert!(tls12_suite(name).unwrap_err().contains("always enabled"));
        }
        assert!(tls12_suite("TLS_MADE_UP")
            .unwrap_err()
            .starts_with("unknown cipher suite TLS_MADE_UP"));
    }

    #[test]
    fn curves() {
        use rustls::NamedGroup as G;
        assert_eq!(curve("X25519").unwrap().name(), G::X25519);
        assert_eq!(curve("CurveP256").unwrap().name(), G::secp256r1);
        assert_eq!(curve("CurveP384").unwrap().name(), G::secp384r1);
        assert!(curve("CurveP521")
            .unwrap_err()
            .starts_with("CurveP521 is not supported"));
        assert!(curve("P-256")
            .unwrap_err()
            .starts_with("unknown curve P-256"));
    }
}
