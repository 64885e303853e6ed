//! The rules of `tls_server_config`: each error with its key and path.

use super::testutil::{errors, ok, openssl, setup, Ca, Dir, TLS};

#[test]
fn unusable_pem_files_name_the_key_and_the_path() {
    let (d, _) = setup();
    let other = Ca::new("other").leaf(&["127.0.0.1"]);
    d.write("other.key", &other.key_pem);
    d.write("empty.pem", "");
    d.write(
        "junk.pem",
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    );
    let cases = [
        (
            "cert_file: empty.pem",
            "cert_file: {empty.pem}: no certificate in it",
        ),
        ("cert_file: junk.pem", "cert_file: {junk.pem}: invalid PEM"),
        (
            "key_file: server.pem",
            "key_file: {server.pem}: no private key in it",
        ),
        (
            "key_file: other.key",
            "key_file: the key in {other.key} does not match the certificate in {server.pem}",
        ),
    ];
    for (line, want) in cases {
        let key = line.split(':').next().unwrap();
        let text = TLS
            .lines()
            .map(|l| {
                if l.trim().starts_with(key) {
                    format!("  {line}")
                } else {
                    l.into()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let e = errors(&d, &text);
        let mut want = format!("tls_server_config.{want}");
        for f in ["empty.pem", "junk.pem", "server.pem", "other.key"] {
            want = want.replace(&format!("{{{f}}}"), &d.path(f).display().to_string());
        }
        assert_eq!(e.len(), 1, "{e:#?}");
        assert!(e[0].starts_with(&want), "{}\n  vs\n{want}", e[0]);
    }
}

#[test]
fn a_tls_section_needs_a_certificate_and_a_key() {
    let d = Dir::new();
    for text in ["tls_server_config:\n", "tls_server_config: {}\n"] {
        let e = errors(&d, text);
        assert_eq!(e.len(), 2, "{e:#?}");
        assert!(e[0].starts_with("tls_server_config.cert_file: missing"));
        assert!(e[1].starts_with("tls_server_config.key_file: missing"));
    }
}

#[test]
fn inline_certificates_and_keys_work_but_not_together_with_files() {
    let (d, ca) = setup();
    let leaf = ca.leaf(&["127.0.0.1"]);
    let indent = |s: &str| s.replace('\n', "\n    ");
    let text = format!(
        "tls_server_config:\n  cert: |\n    {}\n  key: |\n    {}\n",
        indent(&leaf.cert_pem),
        indent(&leaf.key_pem)
    );
    assert!(ok(&d, &text).tls().is_some());
    let e = errors(
        &d,
        &format!("{TLS}  cert: |\n    {}\n", indent(&leaf.cert_pem)),
    );
    assert_eq!(
        e,
        ["tls_server_config.cert: set either cert or cert_file, not both"]
    );
}

#[test]
fn key_formats_pkcs8_pkcs1_rsa_and_sec1_ec() {
    let d = Dir::new();
    let dir = d.dir.path();
    // SEC1 (EC PRIVATE KEY) and PKCS#1 (RSA PRIVATE KEY) keys, each with a
    // self-signed certificate, made by openssl.
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "ec.key",
        ],
    );
    openssl(dir, &["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    for k in ["ec", "rsa"] {
        let key = format!("{k}.key");
        let cert = format!("{k}.pem");
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                &key,
                "-out",
                &cert,
                "-subj",
                "/CN=127.0.0.1",
                "-days",
                "2",
            ],
        );
    }
    assert!(std::fs::read_to_string(d.path("ec.key"))
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    assert!(std::fs::read_to_string(d.path("rsa.key"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    let tls = |k: &str| format!("tls_server_config:\n  cert_file: {k}.pem\n  key_file: {k}.key\n");
    assert!(ok(&d, &tls("ec")).tls().is_some());
    assert!(ok(&d, &tls("rsa")).tls().is_some());
    // A TLS 1.2 suite list must fit the key, or TLS 1.2 clients never get in.
    let e = errors(
        &d,
        &format!(
            "{}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
            tls("rsa")
        ),
    );
    assert_eq!(e.len(), 1);
    assert!(
        e[0].starts_with("tls_server_config.cipher_suites: none of these TLS 1.2 suites can be used with the RSA key"),
        "{e:?}"
    );
    ok(
        &d,
        &format!(
            "{}  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
            tls("rsa")
        ),
    );
    // With TLS 1.3 only, the TLS 1.2 suites do not matter.
    ok(
        &d,
        &format!(
            "{}  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n",
            tls("rsa")
        ),
    );
}

#[test]
fn client_auth_types() {
    let (d, ca) = setup();
    d.write("clients.pem", &ca.pem());
    let with = |auth: Option<&str>, ca: bool| {
        let mut t = TLS.to_string();
        if let Some(a) = auth {
            t += &format!("  client_auth_type: {a}\n");
        }
        if ca {
            t += "  client_ca_file: clients.pem\n";
        }
        t
    };
    for a in [None, Some("NoClientCert")] {
        assert_eq!(
            ok(&d, &with(a, false)).describe(),
            "TLS on (TLS12-TLS13, no client certificates), basic auth off, 0 extra headers"
        );
        let e = errors(&d, &with(a, true));
        assert!(
            e[0].starts_with(
                "tls_server_config.client_ca_file: set, but client_auth_type is NoClientCert"
            ),
            "{e:?}"
        );
    }
    for (a, what) in [
        ("RequireAndVerifyClientCert", "client certificates required"),
        (
            "VerifyClientCertIfGiven",
            "client certificates verified if given",
        ),
    ] {
        assert!(ok(&d, &with(Some(a), true)).describe().contains(what));
        let e = errors(&d, &with(Some(a), false));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with(&format!(
                "tls_server_config.client_ca_file: missing: client_auth_type {a} verifies"
            )),
            "{e:?}"
        );
    }
    for a in ["RequestClientCert", "RequireAnyClientCert"] {
        let e = errors(&d, &with(Some(a), true));
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with(&format!("tls_server_config.client_auth_type: {a} asks for a client certificate without verifying it, which is insecure")));
    }
    let e = errors(&d, &with(Some("Mutual"), true));
    assert_eq!(e, ["tls_server_config.client_auth_type: unknown value Mutual (use NoClientCert, RequireAndVerifyClientCert or VerifyClientCertIfGiven)"]);
    d.write("empty.pem", "\n");
    let e = errors(
        &d,
        &with(Some("RequireAndVerifyClientCert"), true).replace("clients.pem", "empty.pem"),
    );
    assert!(
        e[0].starts_with("tls_server_config.client_ca_file: ")
            && e[0].ends_with("no certificate in it (no CERTIFICATE block)")
    );
}

#[test]
fn allowed_sans_need_required_and_verified_client_certificates() {
    let (d, ca) = setup();
    d.write("clients.pem", &ca.pem());
    let sans = "  client_ca_file: clients.pem\n  client_allowed_sans: [prometheus]\n";
    let c = ok(
        &d,
        &format!("{TLS}{sans}  client_auth_type: RequireAndVerifyClientCert\n"),
    );
    assert!(c.describe().contains("SANs checked"));
    let e = errors(
        &d,
        &format!("{TLS}{sans}  client_auth_type: VerifyClientCertIfGiven\n"),
    );
    assert!(e[0].starts_with(
        "tls_server_config.client_allowed_sans: needs client_auth_type: RequireAndVerifyClientCert"
    ));
    let e = errors(&d, &format!("{TLS}  client_allowed_sans: [prometheus]\n"));
    assert!(
        e[0].starts_with("tls_server_config.client_allowed_sans: needs"),
        "{e:?}"
    );
}

#[test]
fn versions_suites_order_and_curves_reach_the_server_config() {
    let (d, _) = setup();
    let e = errors(
        &d,
        &format!("{TLS}  min_version: TLS13\n  max_version: TLS12\n"),
    );
    assert_eq!(
        e,
        ["tls_server_config.min_version: TLS13 is above max_version TLS12"]
    );
    let e = errors(
        &d,
        &format!("{TLS}  max_version: TLS11\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
    );
    assert!(e[0].starts_with("tls_server_config.max_version: TLS11 is not supported"));
    assert!(e[1].contains("TLS 1.3 suites are always enabled"));

    let c = ok(
        &d,
        &format!(
            "{TLS}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  \
             curve_preferences: [CurveP384, X25519]\n"
        ),
    );
    let tls = c.tls().unwrap();
    assert!(
        tls.ignore_client_order,
        "prefer_server_cipher_suites defaults to true"
    );
    assert_eq!(tls.alpn_protocols, [b"http/1.1".to_vec()]);
    use rustls::CipherSuite as C;
    let suites: Vec<C> = tls
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    assert_eq!(
        suites,
        [
            C::TLS13_AES_256_GCM_SHA384,
            C::TLS13_AES_128_GCM_SHA256,
            C::TLS13_CHACHA20_POLY1305_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            C::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]
    );
    let groups: Vec<_> = tls
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(
        groups,
        [rustls::NamedGroup::secp384r1, rustls::NamedGroup::X25519]
    );
    let c = ok(
        &d,
        &format!("{TLS}  prefer_server_cipher_suites: false\n  min_version: TLS13\n"),
    );
    assert!(!c.tls().unwrap().ignore_client_order);
    assert!(c.describe().contains("(TLS13, no client certificates)"));
}

#[test]
fn a_private_key_others_could_read_or_rewrite_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let (d, ca) = setup();
    let chmod = |name: &str, m| {
        std::fs::set_permissions(d.path(name), std::fs::Permissions::from_mode(m)).unwrap()
    };
    let key = d.path("server.key").display().to_string();
    for (m, why) in [
        (0o644, "is readable by others (mode 0644): chmod 0640"),
        (0o660, "is writable by its group (mode 0660): chmod 0640"),
    ] {
        chmod("server.key", m);
        let path = d.write("web.yml", TLS);
        let e = super::load(&path).unwrap_err().errors;
        assert_eq!(
            e,
            [format!(
                "tls_server_config.key_file: TLS private key {key} {why}"
            )]
        );
    }
    // The certificate is no secret; the key at 0640 or 0600 is fine.
    chmod("server.pem", 0o644);
    for m in [0o640, 0o600] {
        chmod("server.key", m);
        assert!(ok(&d, TLS).tls().is_some());
    }
    // Inline, the key makes the web config a secret.
    let leaf = d.server_cert(&ca);
    let text = format!(
        "tls_server_config:\n  cert_file: server.pem\n  key: |\n    {}\n",
        leaf.key_pem.replace('\n', "\n    ")
    );
    assert!(ok(&d, &text).tls().is_some(), "at 0600");
    let path = d.write("web.yml", &text);
    chmod("web.yml", 0o604);
    let e = super::load(&path).unwrap_err().errors;
    assert_eq!(
        e,
        [format!(
            "tls_server_config.key: the web config {} holds a private key and is readable by others (mode 0604): chmod 0600",
            path.display()
        )]
    );
}
