//! Determinism: the same entries give the same bytes whatever order they
//! arrive in (a parallel scan yields them in any order), duplicates
//! included.

use super::*;

#[test]
fn entry_order_does_not_change_the_bytes() {
    let entries = varied_entries();
    let reference = manifest(entries.clone());
    let bytes = reference.to_bytes().unwrap();
    let text = format::encode_text(&reference);
    let mut orders = vec![entries.iter().rev().cloned().collect::<Vec<_>>()];
    for rot in [1, 5, 11] {
        let mut e = entries.clone();
        e.rotate_left(rot);
        orders.push(e);
    }
    // A few deterministic pseudo-random shuffles (xorshift Fisher-Yates).
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..8 {
        let mut e = entries.clone();
        for i in (1..e.len()).rev() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            e.swap(i, (seed % (i as u64 + 1)) as usize);
        }
        orders.push(e);
    }
    for (n, order) in orders.into_iter().enumerate() {
        let m = manifest(order);
        assert_eq!(m, reference, "order #{n}: different manifest");
        assert_eq!(
            String::from_utf8_lossy(&format::encode_text(&m)),
            String::from_utf8_lossy(&text),
            "order #{n}: different text"
        );
        assert!(
            m.to_bytes().unwrap() == bytes,
            "order #{n}: different bytes"
        );
    }
}

#[test]
fn new_drops_exact_duplicates() {
    let e = full_entry(b"/dup", FileKind::File);
    let m = manifest(vec![e.clone(), Entry::new(&b"/"[..], FileKind::Dir), e]);
    assert_eq!(m.entries.len(), 2);
    assert_round_trip(&m);
}

/// Two entries for one path that differ (no scan yields them, but a caller
/// could) must not make the output depend on the input order: whichever is
/// kept, it is the same one whatever order they came in.
#[test]
fn conflicting_duplicates_do_not_depend_on_input_order() {
    let mut a = full_entry(b"/dup", FileKind::File);
    a.mode = Some(0o644);
    let mut b = a.clone();
    b.mode = Some(0o600);
    let first = manifest(vec![a.clone(), b.clone()]);
    let second = manifest(vec![b, a]);
    assert_eq!(
        String::from_utf8_lossy(&format::encode_text(&first)),
        String::from_utf8_lossy(&format::encode_text(&second)),
        "Manifest::new keeps whichever of two conflicting /dup entries came first \
         (kept mode {:o} vs {:o}): the bytes depend on the input order",
        first.entries[0].mode.unwrap(),
        second.entries[0].mode.unwrap(),
    );
}
