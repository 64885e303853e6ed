//! Unit tests of the policy: defaults, rule order, glob semantics, and
//! every compile error reported with its key.

use super::*;

fn compiled(p: Policy) -> CompiledPolicy {
    CompiledPolicy::new(p, "policy").unwrap()
}

#[test]
fn defaults_exclude_runtime_trees() {
    let p = compiled(Policy::default());
    assert!(p.is_excluded(b"/proc"));
    assert!(p.is_excluded(b"/var/log"));
    assert!(!p.is_excluded(b"/var/lib"));
    assert!(!p.is_excluded(b"/procfs"));
    assert!(!p.is_excluded(b"/etc/passwd"));
}

#[test]
fn first_matching_rule_wins() {
    let mut pol = Policy::default();
    pol.rules = vec![
        Rule {
            paths: vec!["/etc/special".into()],
            attributes: vec!["all".into()],
        },
        Rule {
            paths: vec!["/etc/**".into()],
            attributes: vec!["mode".into(), "uid".into()],
        },
    ];
    let p = compiled(pol);
    assert_eq!(p.attrs_for(b"/etc/special"), AttrSet::all());
    let etc = p.attrs_for(b"/etc/x/y");
    assert!(etc.contains(Attr::Mode) && etc.contains(Attr::Type));
    assert!(!etc.contains(Attr::Content));
    assert_eq!(p.attrs_for(b"/usr/bin/ls"), AttrSet::default_set());
    assert!(!AttrSet::default_set().contains(Attr::Mtime));
}

#[test]
fn star_does_not_cross_directories() {
    let mut pol = Policy::default();
    pol.exclude = vec!["/data/*.tmp".into()];
    let p = compiled(pol);
    assert!(p.is_excluded(b"/data/a.tmp"));
    assert!(!p.is_excluded(b"/data/sub/a.tmp"));
}

#[test]
fn content_may_differ_keeps_mode_and_owner() {
    let p = compiled(Policy::default());
    let a = p.attrs_for(b"/etc/machine-id");
    assert!(!a.contains(Attr::Content) && !a.contains(Attr::Size));
    assert!(a.contains(Attr::Mode) && a.contains(Attr::Uid) && a.contains(Attr::Gid));
    assert!(a.contains(Attr::Type));
}

#[test]
fn may_appear_covers_subtrees_only_with_below() {
    let mut pol = Policy::default();
    pol.allow.may_appear = vec![Appear::Table(Allowance {
        types: vec!["directory".into()],
        mode: "0755".into(),
        below: true,
        ..Allowance::narrow(vec!["/var/lib/cloud".into()])
    })];
    let p = compiled(pol);
    let ids = Ids::default();
    let dir = Seen {
        kind: "directory",
        mode: Some(0o755),
        uid: Some(0),
        gid: Some(0),
    };
    let at = |path: &[u8]| p.admits(path, Some(&dir), &ids);
    assert_eq!(at(b"/var/lib/cloud"), Admission::Admitted);
    assert_eq!(at(b"/var/lib/cloud/instance/x"), Admission::Admitted);
    assert_eq!(at(b"/var/lib/cloudy"), Admission::NotAllowed);
    assert_eq!(at(b"/var/lib"), Admission::NotAllowed);
}

#[test]
fn non_utf8_paths_match() {
    let mut pol = Policy::default();
    pol.exclude = vec!["/odd/**".into()];
    let p = compiled(pol);
    assert!(p.is_excluded(b"/odd/\xff\xfe"));
}

#[test]
fn every_error_is_reported_with_its_key() {
    let mut pol = Policy::default();
    pol.exclude = vec!["relative".into(), "/ok".into(), "/bad/[".into()];
    pol.rules = vec![Rule {
        paths: vec![],
        attributes: vec!["mod".into()],
    }];
    let errs = CompiledPolicy::new(pol, "policy").unwrap_err();
    let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "policy.exclude[0]",
            "policy.exclude[2]",
            "policy.rules[0].paths",
            "policy.rules[0].attributes"
        ]
    );
    assert!(errs[3].reason.contains("unknown attribute `mod`"));
}
