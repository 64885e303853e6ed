//! Basic auth: credentials, the cache, the decoy, and the bound on bcrypt.

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

fn basic(user: &str, password: &str) -> HeaderValue {
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    HeaderValue::from_str(&format!("Basic {b}")).unwrap()
}

fn slots() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(super::super::BCRYPT_SLOTS))
}

/// Real bcrypt hashes at the lowest cost (4), to keep the tests fast.
fn real(users: &[(&str, &str)]) -> BasicAuth {
    let users = users
        .iter()
        .map(|(u, p)| (u.to_string(), bcrypt::hash(p, 4).unwrap()))
        .collect();
    BasicAuth::new(users, slots()).unwrap()
}

/// Fake hashes (`fake:PASSWORD`) and a verifier that counts its calls.
fn counted(users: &[(&str, &str)]) -> (BasicAuth, Arc<AtomicUsize>) {
    let users = users
        .iter()
        .map(|(u, p)| (u.to_string(), format!("fake:{p}")))
        .collect();
    let mut auth = BasicAuth::new(users, slots()).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    auth.verify = Arc::new(move |pw, hash| {
        c.fetch_add(1, Ordering::SeqCst);
        hash.as_bytes() == [b"fake:", pw].concat()
    });
    (auth, calls)
}

#[tokio::test]
async fn credentials_with_real_bcrypt_hashes_of_every_prefix() {
    let mut auth = real(&[("alice", "s3cret"), ("bob", "hunter2")]);
    // $2a$ and $2y$ hashes (htpasswd writes $2y$) verify like $2b$ ones.
    let h = bcrypt::hash("x:y", 4).unwrap();
    auth.users.push(("a".into(), h.replacen("$2b$", "$2a$", 1)));
    auth.users.push(("y".into(), h.replacen("$2b$", "$2y$", 1)));
    assert_eq!(
        auth.check(Some(&basic("alice", "s3cret"))).await,
        Ok("alice".into())
    );
    assert_eq!(
        auth.check(Some(&basic("bob", "hunter2"))).await,
        Ok("bob".into())
    );
    // The password may contain a colon: the split is at the first one.
    assert_eq!(auth.check(Some(&basic("a", "x:y"))).await, Ok("a".into()));
    assert_eq!(auth.check(Some(&basic("y", "x:y"))).await, Ok("y".into()));
    assert_eq!(
        auth.check(Some(&basic("alice", "hunter2"))).await,
        Err(AuthError::Denied)
    );
    assert_eq!(
        auth.check(Some(&basic("alice", ""))).await,
        Err(AuthError::Denied)
    );
    assert_eq!(
        auth.check(Some(&basic("mallory", "s3cret"))).await,
        Err(AuthError::Denied)
    );
    assert_eq!(auth.check(None).await, Err(AuthError::Missing));
    let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    for h in [format!("bAsIc {b64}"), format!("Basic  {b64} ")] {
        let v = HeaderValue::from_str(&h).unwrap();
        assert_eq!(auth.check(Some(&v)).await, Ok("alice".into()), "{h}");
    }
    let nocolon = base64::engine::general_purpose::STANDARD.encode("alice");
    for h in [
        format!("Bearer {b64}"),
        format!("Basic{b64}"),
        "Basic !!!".to_string(),
        format!("Basic {nocolon}"),
    ] {
        let v = HeaderValue::from_str(&h).unwrap();
        assert_eq!(auth.check(Some(&v)).await, Err(AuthError::Malformed), "{h}");
    }
    assert_eq!(AuthError::Denied.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(AuthError::Missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(AuthError::Busy.status(), StatusCode::SERVICE_UNAVAILABLE);
    // Debug shows names, never hashes.
    assert!(!format!("{auth:?}").contains("$2"));
}

#[tokio::test]
async fn a_good_pair_costs_one_verification_then_comes_from_the_cache() {
    let (auth, calls) = counted(&[("prom", "pw")]);
    for _ in 0..5 {
        assert_eq!(
            auth.check(Some(&basic("prom", "pw"))).await,
            Ok("prom".into())
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Wrong passwords are never cached: each costs a verification.
    for _ in 0..3 {
        assert_eq!(
            auth.check(Some(&basic("prom", "nope"))).await,
            Err(AuthError::Denied)
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    // The cache holds keyed hashes, not passwords.
    let cache = auth.cache.lock().unwrap();
    assert_eq!(cache.len(), 1);
    assert_ne!(cache[0], blake3::hash(b"prom:pw"));
}

#[tokio::test]
async fn the_cache_is_bounded_and_forgets_the_oldest() {
    let n = CACHE_ENTRIES + 6;
    let names: Vec<String> = (0..n).map(|i| format!("u{i}")).collect();
    let users: Vec<(&str, &str)> = names.iter().map(|u| (u.as_str(), "pw")).collect();
    let (auth, calls) = counted(&users);
    for u in &names {
        assert!(auth.check(Some(&basic(u, "pw"))).await.is_ok());
    }
    assert_eq!(calls.load(Ordering::SeqCst), n);
    assert_eq!(auth.cache.lock().unwrap().len(), CACHE_ENTRIES);
    // The newest is still there, the oldest was evicted.
    assert!(auth.check(Some(&basic(&names[n - 1], "pw"))).await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), n);
    assert!(auth.check(Some(&basic(&names[0], "pw"))).await.is_ok());
    assert_eq!(calls.load(Ordering::SeqCst), n + 1);
    assert_eq!(auth.cache.lock().unwrap().len(), CACHE_ENTRIES);
}

#[tokio::test]
async fn an_unknown_user_costs_a_verification_against_the_costliest_hash() {
    let users = vec![
        ("cheap".to_string(), bcrypt::hash("a", 4).unwrap()),
        ("dear".to_string(), bcrypt::hash("b", 5).unwrap()),
    ];
    let mut auth = BasicAuth::new(users, slots()).unwrap();
    assert!(auth.decoy.starts_with("$2b$05$"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    auth.verify = Arc::new(move |pw, hash| {
        s.lock().unwrap().push(hash.to_string());
        bcrypt::verify(pw, hash).unwrap()
    });
    // Even with the decoy's own password, an unknown user is denied.
    assert_eq!(
        auth.check(Some(&basic("nobody", "b"))).await,
        Err(AuthError::Denied)
    );
    assert_eq!(*seen.lock().unwrap(), [auth.decoy.clone()]);
    assert!(auth.cache.lock().unwrap().is_empty());
    assert!(BasicAuth::new(Vec::new(), slots()).is_none());
}

#[tokio::test]
async fn at_most_two_verifications_run_at_once() {
    let (mut auth, _) = counted(&[("prom", "pw")]);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (running.clone(), most.clone());
    auth.verify = Arc::new(move |_, _| {
        let now = r.fetch_add(1, Ordering::SeqCst) + 1;
        m.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(40));
        r.fetch_sub(1, Ordering::SeqCst);
        false
    });
    let auth = Arc::new(auth);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let auth = auth.clone();
            tokio::spawn(
                async move { auth.check(Some(&basic("prom", &format!("guess{i}")))).await },
            )
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(AuthError::Denied));
    }
    assert_eq!(most.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_request_without_a_slot_in_time_is_refused_as_busy() {
    let (mut auth, calls) = counted(&[("prom", "pw")]);
    auth.slot_wait = Duration::from_millis(100);
    // Verifications that hold their slot until released.
    let gate = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
    let g = gate.clone();
    let c = calls.clone();
    auth.verify = Arc::new(move |_, _| {
        c.fetch_add(1, Ordering::SeqCst);
        let (lock, cv) = &*g;
        let open = lock.lock().unwrap();
        // Bounded, so that a broken bound fails the test instead of hanging it.
        let (_open, _) = cv
            .wait_timeout_while(open, Duration::from_secs(5), |open| !*open)
            .unwrap();
        false
    });
    let auth = Arc::new(auth);
    let held: Vec<_> = (0..2)
        .map(|_| {
            let auth = auth.clone();
            tokio::spawn(async move { auth.check(Some(&basic("prom", "x"))).await })
        })
        .collect();
    while calls.load(Ordering::SeqCst) < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Both slots are taken: the right password does not help.
    assert_eq!(
        auth.check(Some(&basic("prom", "pw"))).await,
        Err(AuthError::Busy)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    // A request dropped midway (its client went away) keeps its slot until
    // its bcrypt is done: dropping requests frees no CPU for more of them.
    let mut held = held.into_iter();
    let first = held.next().unwrap();
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    assert_eq!(
        auth.check(Some(&basic("prom", "pw"))).await,
        Err(AuthError::Busy)
    );
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for t in held {
        assert_eq!(t.await.unwrap(), Err(AuthError::Denied));
    }
    // Slots free again.
    assert_eq!(
        auth.check(Some(&basic("prom", "x"))).await,
        Err(AuthError::Denied)
    );
}
