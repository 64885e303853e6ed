//! WebConfigSource: reloads on a change of any file, keeps the last good
//! config when a reload fails, and checks at most once per interval.

use super::testutil::{Ca, Dir, TLS};
use super::*;
use std::time::Duration;

fn header(c: &WebConfig) -> Option<String> {
    c.headers()
        .first()
        .map(|(_, v)| v.to_str().unwrap().to_string())
}

fn with_header(value: &str) -> String {
    format!("{TLS}http_server_config:\n  headers:\n    X-Frame-Options: {value}\n")
}

fn source(d: &Dir, text: &str) -> WebConfigSource {
    let path = d.write("web.yml", text);
    WebConfigSource::open_every(&path, Duration::ZERO).unwrap()
}

#[test]
fn the_first_load_must_succeed() {
    let d = Dir::new();
    let path = d.write("web.yml", "tls_server_config: {}\n");
    let e = WebConfigSource::open(&path).err().unwrap();
    assert_eq!(e.errors.len(), 2, "{e}");
    let e = WebConfigSource::open(&d.path("absent.yml")).err().unwrap();
    assert!(
        e.errors[0].starts_with("cannot read the file: No such file"),
        "{e}"
    );
}

#[test]
fn a_changed_config_file_is_reloaded() {
    let d = Dir::new();
    d.server_cert(&Ca::new("ca"));
    let s = source(&d, &with_header("deny"));
    assert_eq!(s.path(), d.path("web.yml"));
    let first = s.current();
    // Nothing changed: the same config, not a reload.
    assert!(Arc::ptr_eq(&first, &s.current()));
    d.write("web.yml", &with_header("sameorigin"));
    assert_eq!(header(&s.current()).as_deref(), Some("sameorigin"));
    // Rewritten in place (same inode), with another size.
    std::fs::write(d.path("web.yml"), with_header("DENY") + "\n\n").unwrap();
    assert_eq!(header(&s.current()).as_deref(), Some("DENY"));
}

#[test]
fn a_changed_certificate_or_key_file_is_reloaded() {
    let d = Dir::new();
    let ca = Ca::new("ca");
    d.server_cert(&ca);
    let s = source(&d, TLS);
    let first = s.current();
    let leaf = ca.leaf(&["127.0.0.1"]);
    // The key first: a reload between the two writes sees a mismatch and
    // keeps the old pair, then takes the new pair once the certificate is
    // there too.
    d.write("server.key", &leaf.key_pem);
    let mid = s.current();
    assert!(Arc::ptr_eq(&first, &mid), "a mismatched pair is not taken");
    d.write("server.pem", &leaf.cert_pem);
    let next = s.current();
    assert!(!Arc::ptr_eq(&first, &next));
    assert!(next.tls().is_some());
}

#[test]
fn a_rotated_key_refused_for_its_mode_is_taken_once_chmod_fixes_it() {
    use std::os::unix::fs::PermissionsExt;
    let d = Dir::new();
    let ca = Ca::new("ca");
    d.server_cert(&ca);
    let s = source(&d, TLS);
    let first = s.current();
    let leaf = ca.leaf(&["127.0.0.1"]);
    d.write("server.pem", &leaf.cert_pem);
    d.write("server.key", &leaf.key_pem);
    let chmod = |m| {
        std::fs::set_permissions(d.path("server.key"), std::fs::Permissions::from_mode(m)).unwrap()
    };
    chmod(0o644);
    assert!(Arc::ptr_eq(&first, &s.current()), "a key others can read");
    assert_eq!(s.reload_failures(), 1);
    // Only the mode changes: that is a change too.
    chmod(0o640);
    let next = s.current();
    assert!(!Arc::ptr_eq(&first, &next));
    assert_eq!(s.reload_failures(), 1);
}

#[test]
fn a_broken_reload_keeps_the_last_good_config_until_fixed() {
    let d = Dir::new();
    d.server_cert(&Ca::new("ca"));
    let s = source(&d, &with_header("deny"));
    let good = s.current();
    for (i, broken) in [
        "tls_server_config: [\n".to_string(),
        with_header("allow-all"),
        with_header("deny").replace("server.pem", "new.pem"),
    ]
    .into_iter()
    .enumerate()
    {
        d.write("web.yml", &broken);
        let now = s.current();
        assert!(Arc::ptr_eq(&good, &now), "{broken}");
        // Tried again only on a further change, not at every check.
        assert!(Arc::ptr_eq(&good, &s.current()));
        assert_eq!(s.reload_failures(), i as u64 + 1);
    }
    // The failed config names new.pem, which does not exist yet: creating
    // it is a change, and the config now loads.
    std::fs::copy(d.path("server.pem"), d.path("new.pem")).unwrap();
    let fixed = s.current();
    assert!(!Arc::ptr_eq(&good, &fixed));
    assert_eq!(s.reload_failures(), 3);
    assert_eq!(header(&fixed).as_deref(), Some("deny"));
}

#[test]
fn files_are_checked_at_most_once_per_interval() {
    let d = Dir::new();
    d.server_cert(&Ca::new("ca"));
    let path = d.write("web.yml", &with_header("deny"));
    let s = WebConfigSource::open_every(&path, Duration::from_secs(3600)).unwrap();
    d.write("web.yml", &with_header("sameorigin"));
    assert_eq!(header(&s.current()).as_deref(), Some("deny"));
    // The production interval is one second.
    let s = WebConfigSource::open(&path).unwrap();
    assert_eq!(s.every, Duration::from_secs(1));
}

#[tokio::test]
async fn reloaded_configs_share_the_bcrypt_slots() {
    let d = Dir::new();
    let h = bcrypt::hash("pw", 4).unwrap();
    let s = source(&d, &format!("basic_auth_users:\n  prom: '{h}'\n"));
    let first = s.current();
    d.write(
        "web.yml",
        &format!("basic_auth_users:\n  prom: '{h}'\n  other: '{h}'\n"),
    );
    let next = s.current();
    assert!(!Arc::ptr_eq(&first, &next));
    let (a, b) = (first.basic_auth().unwrap(), next.basic_auth().unwrap());
    assert!(Arc::ptr_eq(&a.slots, &b.slots));
    assert_eq!(b.users().collect::<Vec<_>>(), ["other", "prom"]);
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Log(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_reload_is_logged_as_an_error_with_every_problem_and_no_secret() {
    let d = Dir::new();
    let h = bcrypt::hash("pw", 4).unwrap();
    let s = source(&d, &format!("basic_auth_users:\n  prom: '{h}'\n"));
    let log = Log::default();
    let sink = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        // Other tests hit the same log call sites from other threads with no
        // subscriber, which may have cached them as disabled: ask again,
        // with this thread's subscriber in place.
        tracing::callsite::rebuild_interest_cache();
        // A truncated hash and a typo, both reported; the hash never.
        d.write(
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{}'\ntypo: 1\n", &h[..50]),
        );
        s.current();
        d.write("web.yml", &format!("basic_auth_users:\n  prom: '{h}'\n"));
        s.current();
    });
    // The fixed file loaded (its log line is not asserted: with parallel
    // tests a thread-local subscriber may miss a call site another thread
    // first hit with none).
    assert_eq!(s.reload_failures(), 1);
    assert!(s.current().basic_auth().is_some());
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let path = d.path("web.yml");
    let want = format!(
        "ERROR driftd::telemetry::webconfig::source: invalid web config {} (2 errors):",
        path.display()
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("  - typo: unknown key"), "{text}");
    assert!(
        text.contains("  - basic_auth_users.prom: not a bcrypt hash"),
        "{text}"
    );
    assert!(
        text.contains("(keeping the last good web config)"),
        "{text}"
    );
    assert!(!text.contains(&h[7..40]), "a hash was logged: {text}");
}
