//! The rules of the file: every error at once, each with its key.

use super::testutil::{errors, ok, setup, Ca, Dir, TLS};
use super::*;

#[test]
fn an_empty_file_is_plain_http_without_auth() {
    let d = Dir::new();
    for text in ["", "---\n", "{}\n", "http_server_config:\n"] {
        let c = ok(&d, text);
        assert!(c.tls().is_none() && !c.auth_required() && c.headers().is_empty());
        assert_eq!(c.describe(), "TLS off, basic auth off, 0 extra headers");
    }
}

#[test]
fn every_error_at_once_each_with_its_key_and_the_display() {
    let (d, _) = setup();
    let path = d.write(
        "web.yml",
        &format!(
            "{TLS}  min_version: TLS10\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n  \
             curve_preferences: [CurveP521]\n  client_auth_type: RequestClientCert\n\
             http_server_config:\n  http2: true\n  headers:\n    Server: driftd\n\
             basic_auth_users:\n  alice: hunter2\nrate_limit: {{interval: 1s}}\ntls_config: {{}}\n"
        ),
    );
    let e = load(&path).unwrap_err();
    let want = [
        "rate_limit: not supported by driftd",
        "tls_config: unknown key (known keys here: tls_server_config, http_server_config, basic_auth_users)",
        "tls_server_config.client_auth_type: RequestClientCert asks for a client certificate without verifying it, which is insecure",
        "tls_server_config.min_version: TLS10 is not supported (driftd's TLS library does TLS12 and TLS13)",
        "tls_server_config.cipher_suites: TLS_RSA_WITH_AES_128_CBC_SHA is not supported",
        "tls_server_config.curve_preferences: CurveP521 is not supported",
        "http_server_config.http2: driftd serves HTTP/1.1 only",
        "http_server_config.headers.Server: this header cannot be set",
        "basic_auth_users.alice: not a bcrypt hash",
    ];
    assert_eq!(e.errors.len(), want.len(), "{e}");
    for (got, want) in e.errors.iter().zip(want) {
        assert!(
            got.starts_with(want),
            "{got}\n  does not start with\n{want}"
        );
    }
    // The password-like value is never quoted.
    assert!(!e.to_string().contains("hunter2"), "{e}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "invalid web config {} (9 errors):\n  - rate_limit: ",
            path.display()
        )),
        "{text}"
    );
    let one = errors(&d, "nope: 1\n");
    let e = WebConfigError {
        path: "w.yml".into(),
        errors: one,
    };
    assert_eq!(
        e.to_string(),
        "invalid web config w.yml (1 error):\n  - nope: unknown key (known keys here: \
         tls_server_config, http_server_config, basic_auth_users)"
    );
}

#[test]
fn unknown_keys_in_each_section_list_the_known_ones() {
    let (d, _) = setup();
    let e = errors(
        &d,
        &format!("{TLS}  cert_fil: x\nhttp_server_config:\n  http3: false\n"),
    );
    assert_eq!(
        e,
        [
            "tls_server_config.cert_fil: unknown key (known keys here: cert_file, cert, key_file, \
             key, client_auth_type, client_ca_file, client_ca, client_allowed_sans, min_version, \
             max_version, cipher_suites, prefer_server_cipher_suites, curve_preferences)",
            "http_server_config.http3: unknown key (known keys here: http2, headers)",
        ]
    );
}

#[test]
fn wrong_types_name_the_key() {
    let (d, _) = setup();
    let e = errors(
        &d,
        &format!(
            "{TLS}  min_version: [TLS12]\n  prefer_server_cipher_suites: maybe\n  \
             cipher_suites: TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n  key: [1]\n\
             http_server_config:\n  http2: 0\n  headers: [a]\nbasic_auth_users: [bob]\n"
        ),
    );
    let keys: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "tls_server_config.key",
            "tls_server_config.min_version",
            "tls_server_config.cipher_suites",
            "tls_server_config.prefer_server_cipher_suites",
            "http_server_config.http2",
            "http_server_config.headers",
            "basic_auth_users",
        ],
        "{e:#?}"
    );
    let e = errors(&d, "tls_server_config: 3\nbasic_auth_users:\n  bob: 12\n");
    assert_eq!(
        e,
        [
            "tls_server_config: expected a mapping, found a number",
            "basic_auth_users.bob: expected a bcrypt hash (a string), found a number",
        ]
    );
    // A key given twice (say, a user) is an error, not "the last one wins".
    let e = errors(&d, "basic_auth_users:\n  bob: x\n  bob: y\n");
    assert!(
        e[0].starts_with("not valid YAML: ") && e[0].contains("duplicate"),
        "{e:?}"
    );
    let e = errors(&d, "a: [unclosed\n");
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("not valid YAML: "), "{e:?}");
}

#[test]
fn relative_paths_are_resolved_against_the_config_files_directory() {
    let d = Dir::new();
    let ca = Ca::new("server CA");
    let leaf = ca.leaf(&["127.0.0.1"]);
    d.write("conf/tls/server.pem", &leaf.cert_pem);
    let key = d.write("elsewhere/server.key", &leaf.key_pem);
    let text = format!(
        "tls_server_config:\n  cert_file: tls/server.pem\n  key_file: {}\n",
        key.display()
    );
    // The working directory is not the config's: only the config's own
    // directory makes `tls/server.pem` resolve.
    let path = d.write("conf/web.yml", &text);
    assert!(load(&path).unwrap().tls().is_some());
    let missing = d.write(
        "conf/web.yml",
        &text.replace("tls/server.pem", "tls/gone.pem"),
    );
    let e = load(&missing).unwrap_err();
    assert_eq!(e.errors.len(), 1, "{e}");
    let want = format!(
        "tls_server_config.cert_file: cannot read {}: No such file",
        d.path("conf/tls/gone.pem").display()
    );
    assert!(e.errors[0].starts_with(&want), "{e}");
}

#[test]
fn headers() {
    let d = Dir::new();
    let c = ok(
        &d,
        "http_server_config:\n  http2: false\n  headers:\n    x-frame-options: DENY\n    \
         Content-Security-Policy: \"default-src 'self'\"\n    X-XSS-Protection: ''\n    \
         strict-transport-security: max-age=31536000\n    X-Content-Type-Options: nosniff\n",
    );
    let got: Vec<(&str, &str)> = c
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.to_str().unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("x-frame-options", "DENY"),
            ("content-security-policy", "default-src 'self'"),
            ("strict-transport-security", "max-age=31536000"),
            ("x-content-type-options", "nosniff"),
        ]
    );
    let e = errors(
        &d,
        "http_server_config:\n  headers:\n    X-Frame-Options: allow-from x\n    \
         X-Content-Type-Options: sniff\n    Content-Security-Policy: \"a\\nb\"\n    \
         x-frame-options: deny\n    X-Frame-OPTIONS: sameorigin\n    Set-Cookie: a=b\n    X-XSS-Protection: [1]\n",
    );
    assert_eq!(
        e,
        [
            "http_server_config.headers.X-Frame-Options: `allow-from x` is not allowed (use deny or sameorigin)",
            "http_server_config.headers.X-Content-Type-Options: `sniff` is not allowed (use nosniff)",
            "http_server_config.headers.Content-Security-Policy: not a valid HTTP header value (no control characters or line breaks)",
            "http_server_config.headers.X-Frame-OPTIONS: X-Frame-Options is set twice (header names ignore case)",
            "http_server_config.headers.Set-Cookie: this header cannot be set (the ones that can: Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security)",
            "http_server_config.headers.X-XSS-Protection: expected a string, found a list",
        ]
    );
    // A number is taken as its text, as Go's YAML decoder does.
    let c = ok(
        &d,
        "http_server_config:\n  headers:\n    X-XSS-Protection: 0\n",
    );
    let (name, value) = &c.headers()[0];
    assert_eq!(
        (name.as_str(), value.to_str().unwrap()),
        ("x-xss-protection", "0")
    );
}

#[test]
fn basic_auth_users_must_be_bcrypt_hashes() {
    let d = Dir::new();
    let h = bcrypt::hash("pw", 4).unwrap();
    let a = h.replacen("$2b$", "$2a$", 1);
    let y = h.replacen("$2b$", "$2y$", 1);
    let c = ok(
        &d,
        &format!("basic_auth_users:\n  b: '{h}'\n  a: '{a}'\n  y: '{y}'\n"),
    );
    assert!(c.auth_required());
    assert_eq!(
        c.basic_auth().unwrap().users().collect::<Vec<_>>(),
        ["a", "b", "y"]
    );
    assert_eq!(
        c.describe(),
        "TLS off, basic auth on (3 users), 0 extra headers"
    );
    let bad = [
        h.replacen("$2b$", "$2x$", 1),
        h.replacen("$2b$04$", "$2b$03$", 1),
        h.replacen("$2b$04$", "$2b$4$", 1),
        h[..59].to_string(),
        format!("{}!", &h[..59]),
        "$1$abc$def".to_string(),
        "plain".to_string(),
    ];
    let mut text = "basic_auth_users:\n".to_string();
    for (i, b) in bad.iter().enumerate() {
        text += &format!("  u{i}: '{b}'\n");
    }
    text += &format!("  'a:b': '{h}'\n");
    let e = errors(&d, &text);
    assert_eq!(e.len(), bad.len() + 1, "{e:#?}");
    for (i, e) in e.iter().take(bad.len()).enumerate() {
        assert!(
            e.starts_with(&format!("basic_auth_users.u{i}: not a bcrypt hash (")),
            "{e}"
        );
        let secret = bad[i].get(7..).unwrap_or(&bad[i]);
        assert!(!e.contains(secret), "the value is quoted: {e}");
    }
    assert!(e[bad.len()]
        .starts_with("basic_auth_users.a:b: a user name must be non-empty and have no `:`"));
}
