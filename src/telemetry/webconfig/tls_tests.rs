//! TLS for real, in process: a tokio-rustls server with `WebConfig::tls()`
//! and tokio-rustls clients, over 127.0.0.1.

use super::testutil::{client, client_with, exchange, Ca, Dir, TLS};
use super::*;
use rustls::crypto::ring;
use rustls::version::{TLS12, TLS13};
use rustls::{CipherSuite, NamedGroup, ProtocolVersion};
use std::time::Duration;

fn server(d: &Dir, extra: &str) -> Arc<rustls::ServerConfig> {
    let path = d.write("web.yml", &format!("{TLS}{extra}"));
    load(&path).unwrap_or_else(|e| panic!("{e}")).tls().unwrap()
}

#[tokio::test]
async fn the_server_shows_its_certificate_over_tls12_and_tls13() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    let leaf = d.server_cert(&ca);
    let s = server(&d, "");
    for (v, want) in [
        (&TLS12, ProtocolVersion::TLSv1_2),
        (&TLS13, ProtocolVersion::TLSv1_3),
    ] {
        let seen = exchange(s.clone(), client(&ca, &[v], None)).await.unwrap();
        assert_eq!(seen.version, want);
        assert_eq!(seen.peer, leaf.der);
    }
    // A client that trusts another CA refuses the server.
    let e = exchange(s, client(&Ca::new("other"), &[&TLS13], None)).await;
    assert!(e.unwrap_err().contains("UnknownIssuer"));
}

#[tokio::test]
async fn versions_refuse_clients_outside_the_range() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    d.server_cert(&ca);
    let only13 = server(&d, "  min_version: TLS13\n");
    let e = exchange(only13.clone(), client(&ca, &[&TLS12], None)).await;
    assert!(e.is_err(), "a TLS12-only client got in");
    assert!(exchange(only13, client(&ca, &[&TLS13], None)).await.is_ok());
    let only12 = server(&d, "  max_version: TLS12\n");
    assert!(exchange(only12.clone(), client(&ca, &[&TLS13], None))
        .await
        .is_err());
    let seen = exchange(only12, client(&ca, &[&TLS12, &TLS13], None))
        .await
        .unwrap();
    assert_eq!(seen.version, ProtocolVersion::TLSv1_2);
}

#[tokio::test]
async fn cipher_suites_and_their_order_are_honoured_for_tls12() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    d.server_cert(&ca);
    let suites = "  max_version: TLS12\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, \
                  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n";
    // The client prefers AES-256 first, then AES-128, then ChaCha20.
    let mut p = ring::default_provider();
    p.cipher_suites = vec![
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ring::cipher_suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    let c = client_with(p.clone(), &ca, &[&TLS12], None);
    // The server's order wins by default (prefer_server_cipher_suites).
    let seen = exchange(server(&d, suites), c.clone()).await.unwrap();
    assert_eq!(
        seen.suite,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
    );
    let client_order = format!("{suites}  prefer_server_cipher_suites: false\n");
    let seen = exchange(server(&d, &client_order), c).await.unwrap();
    assert_eq!(
        seen.suite,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
    );
    // A client with only a suite the server left out gets nothing.
    p.cipher_suites.truncate(1);
    let only256 = client_with(p, &ca, &[&TLS12], None);
    assert!(exchange(server(&d, suites), only256).await.is_err());
}

#[tokio::test]
async fn curve_preferences_are_honoured() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    d.server_cert(&ca);
    let s = server(&d, "  curve_preferences: [CurveP384]\n");
    let mut p = ring::default_provider();
    p.kx_groups = vec![ring::kx_group::X25519];
    assert!(
        exchange(s.clone(), client_with(p.clone(), &ca, &[&TLS13], None))
            .await
            .is_err()
    );
    p.kx_groups = vec![ring::kx_group::X25519, ring::kx_group::SECP384R1];
    let seen = exchange(s, client_with(p, &ca, &[&TLS13], None))
        .await
        .unwrap();
    assert_eq!(seen.group, Some(NamedGroup::secp384r1));
}

/// A server CA, a client CA, the server's certificate, and clients.pem.
fn mtls() -> (Dir, Ca, Ca) {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    d.server_cert(&ca);
    let clients = Ca::new("client CA");
    d.write("clients.pem", &clients.pem());
    (d, ca, clients)
}

#[tokio::test]
async fn require_and_verify_client_cert() {
    let (d, ca, clients) = mtls();
    let s = server(
        &d,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n",
    );
    for v in [&TLS12, &TLS13] {
        let good = clients.leaf(&["prometheus.example"]);
        assert!(exchange(s.clone(), client(&ca, &[v], Some(&good)))
            .await
            .is_ok());
        let e = exchange(s.clone(), client(&ca, &[v], None))
            .await
            .unwrap_err();
        assert!(e.contains("server: Err"), "{e}");
        // Another CA, even one with the same name, is refused.
        let stranger = Ca::new("client CA").leaf(&["prometheus.example"]);
        let e = exchange(s.clone(), client(&ca, &[v], Some(&stranger))).await;
        let e = e.unwrap_err();
        assert!(
            e.contains("server: Err(\"invalid peer certificate: BadSignature"),
            "{e}"
        );
        let stranger = Ca::new("another CA").leaf(&["prometheus.example"]);
        let e = exchange(s.clone(), client(&ca, &[v], Some(&stranger))).await;
        let e = e.unwrap_err();
        assert!(
            e.contains("server: Err(\"invalid peer certificate: UnknownIssuer"),
            "{e}"
        );
    }
}

#[tokio::test]
async fn verify_client_cert_if_given() {
    let (d, ca, clients) = mtls();
    let s = server(
        &d,
        "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: clients.pem\n",
    );
    assert!(exchange(s.clone(), client(&ca, &[&TLS13], None))
        .await
        .is_ok());
    let good = clients.leaf(&["x"]);
    assert!(exchange(s.clone(), client(&ca, &[&TLS13], Some(&good)))
        .await
        .is_ok());
    let stranger = Ca::new("other").leaf(&["x"]);
    assert!(exchange(s, client(&ca, &[&TLS13], Some(&stranger)))
        .await
        .is_err());
}

#[tokio::test]
async fn client_allowed_sans_refuse_a_verified_certificate_with_other_names() {
    let (d, ca, clients) = mtls();
    let s = server(
        &d,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n  \
         client_allowed_sans: [prometheus.example, 10.1.2.3]\n",
    );
    for v in [&TLS12, &TLS13] {
        for names in [&["prometheus.example"][..], &["other", "10.1.2.3"]] {
            let good = clients.leaf(names);
            assert!(
                exchange(s.clone(), client(&ca, &[v], Some(&good)))
                    .await
                    .is_ok(),
                "{names:?}"
            );
        }
        let wrong = clients.leaf(&["grafana.example", "10.1.2.4"]);
        let e = exchange(s.clone(), client(&ca, &[v], Some(&wrong)))
            .await
            .unwrap_err();
        assert!(e.contains("ApplicationVerificationFailure"), "{e}");
        // Right names from the wrong CA: the chain is checked first.
        let forged = Ca::new("client CA").leaf(&["prometheus.example"]);
        assert!(exchange(s.clone(), client(&ca, &[v], Some(&forged)))
            .await
            .is_err());
    }
}

#[tokio::test]
async fn a_replaced_certificate_is_served_after_the_reload() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    let old = d.server_cert(&ca);
    let path = d.write("web.yml", TLS);
    let source = WebConfigSource::open_every(&path, Duration::ZERO).unwrap();
    let c = client(&ca, &[&TLS13], None);
    let seen = exchange(source.current().tls().unwrap(), c.clone())
        .await
        .unwrap();
    assert_eq!(seen.peer, old.der);
    let new = d.server_cert(&ca);
    assert_ne!(new.der, old.der);
    let seen = exchange(source.current().tls().unwrap(), c).await.unwrap();
    assert_eq!(seen.peer, new.der);
}
