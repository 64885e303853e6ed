//! The outbox's files through crashes at every step.

use super::*;
use crate::signal::Host;

const KEY: &str = "1e8c33dd7095ff2762dabf641036fa26";

fn item(backend: &str) -> Item {
    Item {
        backend: backend.into(),
        signal: Signal {
            schema: "driftd.signal.v1".into(),
            event: "drift.detected".into(),
            idempotency_key: KEY.into(),
            host: Host {
                id: "host".into(),
                hostname: "web-17".into(),
            },
            image_id: "ami-1".into(),
            manifest_digest: "blake3:00".into(),
            verdict: "drifted".into(),
            reason: None,
            counts: Default::default(),
            findings_total: 0,
            findings: vec![],
            first_detected: "2026-11-26T05:33:11Z".into(),
            first_detected_unix: 1_795_671_191.0,
            created: "2026-11-26T05:33:11Z".into(),
        },
        attempts: 1,
        next_attempt_unix: 0.0,
        last_error: None,
        released_unix: None,
    }
}

/// The names in `outbox/BACKEND/`, sorted (temporary files included).
fn files(state: &Path, backend: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(state.join("outbox").join(backend))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
fn a_pending_item_is_loaded_to_be_sent() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    o.save(&item("cp")).unwrap();
    let loaded = o.load();
    assert_eq!(loaded.items, vec![item("cp")]);
    assert!(loaded.errors.is_empty() && loaded.recovered.is_empty());
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.pending.json")]);
}

#[test]
fn delivery_renames_the_pending_file_into_the_one_marker() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    o.save(&item("cp")).unwrap();
    o.delivered(&item("cp"), "200 OK").unwrap();
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.delivered.json")]);
    let marker = read_json(&o.path("cp", KEY, DELIVERED));
    assert_eq!(marker["state"], "delivered");
    assert_eq!(marker["idempotency_key"], KEY);
    assert_eq!(marker["backend"], "cp");
    assert_eq!(marker["attempts"], 1);
    assert_eq!(marker["response"], "200 OK");
    assert!(o.is_delivered("cp", KEY) && !o.is_pending("cp", KEY));
    let loaded = o.load();
    assert!(loaded.items.is_empty() && loaded.recovered.is_empty());
}

#[test]
fn a_dry_run_renames_the_pending_file_into_the_one_marker() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    o.save(&item("cp")).unwrap();
    o.dry_run_done(&item("cp")).unwrap();
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.dryrun.json")]);
    assert_eq!(read_json(&o.path("cp", KEY, DRY_RUN))["state"], "dryrun");
    assert!(o.is_dry_run_done("cp", KEY) && !o.is_delivered("cp", KEY));
    assert!(o.load().items.is_empty());
}

/// A crash between the two steps leaves the record in the pending
/// file: at start it is completed, not sent.
#[test]
fn a_record_left_in_the_pending_file_is_completed_not_sent() {
    for (state, finished) in [(DELIVERED, "delivered"), (DRY_RUN, "dryrun")] {
        let dir = tempfile::tempdir().unwrap();
        let o = Outbox::new(dir.path());
        o.save(&item("cp")).unwrap();
        o.seal(&item("cp"), state, Some("200 OK")).unwrap();
        assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.pending.json")]);
        let loaded = o.load();
        assert!(loaded.items.is_empty(), "{state}: {:?}", loaded.items);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        assert_eq!(loaded.recovered.len(), 1, "{:?}", loaded.recovered);
        assert!(loaded.recovered[0].contains(KEY), "{:?}", loaded.recovered);
        assert_eq!(
            files(dir.path(), "cp"),
            [format!("{KEY}.{finished}.json")],
            "{state}"
        );
        assert_eq!(read_json(&o.path("cp", KEY, state))["state"], state);
    }
}

/// An older version wrote the marker, then removed the pending file;
/// a crash between the two left both.
#[test]
fn a_pending_item_beside_its_delivered_marker_is_removed_not_sent() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    o.save(&item("cp")).unwrap();
    o.save(&item("other")).unwrap();
    let old_marker = br#"{"backend":"cp","idempotency_key":"1e8c33dd7095ff2762dabf641036fa26","attempts":1,"response":"200"}"#;
    write_atomic(&o.path("cp", KEY, DELIVERED), old_marker).unwrap();
    let loaded = o.load();
    assert_eq!(
        loaded.items,
        vec![item("other")],
        "only the undelivered one"
    );
    assert_eq!(loaded.recovered.len(), 1, "{:?}", loaded.recovered);
    assert!(loaded.recovered[0].contains("outbox/cp/"));
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.delivered.json")]);
    assert_eq!(
        std::fs::read(o.path("cp", KEY, DELIVERED)).unwrap(),
        old_marker,
        "the marker is kept as it was"
    );
    assert_eq!(files(dir.path(), "other"), [format!("{KEY}.pending.json")]);
}

#[test]
fn an_unreadable_item_is_reported_and_left_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    write_atomic(&o.path("cp", KEY, PENDING), b"{not json").unwrap();
    let loaded = o.load();
    assert!(loaded.items.is_empty());
    assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
    assert!(loaded.errors[0].starts_with("corrupt outbox item "));
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.pending.json")]);
}

#[test]
fn a_dropped_item_becomes_its_marker_and_is_never_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    o.save(&item("cp")).unwrap();
    o.dropped(&item("cp"), "manifest replaced").unwrap();
    assert_eq!(files(dir.path(), "cp"), [format!("{KEY}.dropped.json")]);
    let marker = read_json(&o.path("cp", KEY, DROPPED));
    assert_eq!(marker["state"], "dropped");
    assert_eq!(marker["response"], "manifest replaced");
    assert!(o.is_dropped("cp", KEY) && !o.is_delivered("cp", KEY));
    assert!(o.load().items.is_empty());
    // A crash between the two steps is completed at start.
    o.save(&item("b")).unwrap();
    o.seal(&item("b"), DROPPED, Some("x")).unwrap();
    let loaded = o.load();
    assert!(
        loaded.items.is_empty() && loaded.recovered.len() == 1,
        "{loaded:?}"
    );
    assert!(o.is_dropped("b", KEY));
}

#[test]
fn the_guards_release_is_kept_in_the_item_and_its_delivery_record() {
    let dir = tempfile::tempdir().unwrap();
    let o = Outbox::new(dir.path());
    assert_eq!(o.released_mark(KEY), None, "no outbox yet");
    o.save(&item("a")).unwrap();
    assert_eq!(o.released_mark(KEY), None);
    let mut released = item("b");
    released.released_unix = Some(1_800_000_000.5);
    o.save(&released).unwrap();
    assert_eq!(o.released_mark(KEY), Some(1_800_000_000.5));
    assert_eq!(
        o.load()
            .items
            .iter()
            .filter(|i| i.released_unix.is_some())
            .count(),
        1
    );
    o.delivered(&released, "200").unwrap();
    assert_eq!(
        read_json(&o.path("b", KEY, DELIVERED))["released_unix"],
        1_800_000_000.5
    );
    assert_eq!(
        o.released_mark(KEY),
        Some(1_800_000_000.5),
        "from the record"
    );
    // Files written without a guard carry no such field.
    o.delivered(&item("a"), "200").unwrap();
    let text = std::fs::read_to_string(o.path("a", KEY, DELIVERED)).unwrap();
    assert!(!text.contains("released"), "{text}");
}
