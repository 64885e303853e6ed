//! Unit tests of `allow.may_appear` as a matcher: the narrow default of a
//! bare pattern (also in a manifest baked before tables), masks, owner and
//! group lists, names that do not resolve, `below`, and unread paths. The
//! reading of it (TOML, JSON) is tested in `parse_tests`.

use super::*;
use std::collections::BTreeMap;

fn compiled(may_appear: Vec<Appear>) -> CompiledPolicy {
    let mut p = Policy::default();
    p.allow.may_appear = may_appear;
    CompiledPolicy::new(p, "policy").unwrap_or_else(|e| panic!("{e:?}"))
}

fn file(mode: u32, uid: u32, gid: u32) -> Seen<'static> {
    seen("file", mode, uid, gid)
}

fn seen(kind: &'static str, mode: u32, uid: u32, gid: u32) -> Seen<'static> {
    Seen {
        kind,
        mode: Some(mode),
        uid: Some(uid),
        gid: Some(gid),
    }
}

/// Ids as `scan::ids` would resolve them in an image with these groups.
fn groups(found: &[(&str, u32)]) -> Ids {
    Ids {
        users: IdMap::default(),
        groups: IdMap {
            found: found.iter().map(|(n, g)| (n.to_string(), *g)).collect(),
            error: None,
        },
    }
}

/// The attributes refused, or "admitted" / "unverified" / "not allowed".
fn judge(p: &CompiledPolicy, path: &str, s: Option<Seen<'_>>, ids: &Ids) -> Vec<String> {
    match p.admits(path.as_bytes(), s.as_ref(), ids) {
        Admission::Admitted => vec!["admitted".into()],
        Admission::Unverified => vec!["unverified".into()],
        Admission::NotAllowed => vec!["not allowed".into()],
        Admission::Refused(v) => v.iter().map(|v| v.attribute.to_string()).collect(),
    }
}

fn refusal(
    p: &CompiledPolicy,
    path: &str,
    s: Seen<'_>,
    ids: &Ids,
) -> Vec<(String, String, String)> {
    match p.admits(path.as_bytes(), Some(&s), ids) {
        Admission::Refused(v) => v
            .into_iter()
            .map(|v| (v.attribute.to_string(), v.allowed, v.actual))
            .collect(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

// ---------------------------------------------------------------- the narrow default

#[test]
fn a_bare_pattern_admits_only_a_root_owned_regular_file_within_0644() {
    let p = compiled(vec!["/etc/key".into()]);
    let none = Ids::default();
    for mode in [0o644, 0o600, 0o444, 0o400, 0o640, 0] {
        assert_eq!(
            judge(&p, "/etc/key", Some(file(mode, 0, 0)), &none),
            ["admitted"],
            "{mode:o}"
        );
    }
    let cases: [(Seen, &[&str]); 9] = [
        (file(0o666, 0, 0), &["mode"]),
        (file(0o4644, 0, 0), &["mode"]),
        (file(0o2644, 0, 0), &["mode"]),
        (file(0o1644, 0, 0), &["mode"]),
        (file(0o4755, 0, 0), &["mode"]),
        (file(0o644, 1000, 0), &["uid"]),
        (file(0o644, 0, 1000), &["gid"]),
        // A symlink's own bits mean nothing: only its type is wrong.
        (seen("symlink", 0o777, 0, 0), &["type"]),
        (seen("directory", 0o755, 0, 0), &["type", "mode"]),
    ];
    for (s, want) in cases {
        assert_eq!(judge(&p, "/etc/key", Some(s), &none), want, "{s:?}");
    }
    for kind in ["fifo", "socket", "char-device", "block-device"] {
        assert_eq!(
            judge(&p, "/etc/key", Some(seen(kind, 0o600, 0, 0)), &none),
            ["type"]
        );
    }
    assert_eq!(
        judge(&p, "/etc/other", Some(file(0o644, 0, 0)), &none),
        ["not allowed"]
    );
}

#[test]
fn a_refusal_says_what_was_allowed_and_what_is_there() {
    let p = compiled(vec!["/etc/key".into()]);
    let r = refusal(&p, "/etc/key", file(0o4755, 1000, 1000), &Ids::default());
    let want = [
        ("mode", "within 0644", "4755"),
        ("uid", "root (0)", "1000"),
        ("gid", "root (0)", "1000"),
    ];
    let want: Vec<_> = want.map(|(a, b, c)| (a.into(), b.into(), c.into())).into();
    assert_eq!(r, want);
    let r = refusal(
        &p,
        "/etc/key",
        seen("symlink", 0o777, 0, 0),
        &Ids::default(),
    );
    assert_eq!(r, [("type".into(), "file".into(), "symlink".into())]);
}

#[test]
fn nothing_below_an_allowed_path_unless_it_says_below() {
    let dir = |below| {
        Appear::Table(Allowance {
            types: vec!["directory".into()],
            mode: "0755".into(),
            below,
            ..Allowance::narrow(vec!["/var/lib/cloud".into()])
        })
    };
    let none = Ids::default();
    let p = compiled(vec!["/etc/ssh/ssh_host_*".into(), dir(false)]);
    let d = seen("directory", 0o755, 0, 0);
    assert_eq!(judge(&p, "/var/lib/cloud", Some(d), &none), ["admitted"]);
    for path in [
        "/var/lib/cloud/x",
        "/var/lib/cloud/a/b",
        "/etc/ssh/ssh_host_dir_key/f",
    ] {
        assert_eq!(
            judge(&p, path, Some(file(0o644, 0, 0)), &none),
            ["below"],
            "{path}"
        );
        assert_eq!(judge(&p, path, None, &none), ["below"], "{path}");
    }
    let r = refusal(&p, "/etc/ssh/ssh_host_dir_key/f", file(0o644, 0, 0), &none);
    assert_eq!(
        r,
        [(
            "below".into(),
            "nothing below /etc/ssh/ssh_host_*".into(),
            "file".into()
        )]
    );
    assert_eq!(
        judge(&p, "/var/lib/cloudy", Some(d), &none),
        ["not allowed"]
    );
    assert_eq!(judge(&p, "/var/lib", Some(d), &none), ["not allowed"]);

    let p = compiled(vec![dir(true)]);
    // Anything at all below it: nothing to verify.
    for s in [
        Some(file(0o4777, 1000, 1000)),
        Some(seen("symlink", 0o777, 5, 5)),
        None,
    ] {
        assert_eq!(
            judge(&p, "/var/lib/cloud/instance/x", s, &none),
            ["admitted"]
        );
    }
    // The directory itself is still judged.
    assert_eq!(
        judge(&p, "/var/lib/cloud", Some(file(0o644, 0, 0)), &none),
        ["type"]
    );
}

#[test]
fn an_unread_path_is_unverified_where_an_allowance_names_it() {
    let p = compiled(vec!["/etc/key".into()]);
    let none = Ids::default();
    assert_eq!(judge(&p, "/etc/key", None, &none), ["unverified"]);
    assert_eq!(judge(&p, "/etc/key/below", None, &none), ["below"]);
    assert_eq!(judge(&p, "/etc/other", None, &none), ["not allowed"]);
    assert!(Admission::Unverified.names() && Admission::Admitted.names());
    assert!(!Admission::NotAllowed.names() && !Admission::Refused(vec![]).names());
}

#[test]
fn an_attribute_the_rules_did_not_record_is_refused() {
    let p = compiled(vec!["/etc/key".into()]);
    let s = Seen {
        kind: "file",
        mode: None,
        uid: Some(0),
        gid: None,
    };
    assert_eq!(
        judge(&p, "/etc/key", Some(s), &Ids::default()),
        ["mode", "gid"]
    );
}

#[test]
fn the_first_allowance_that_admits_wins_else_the_first_refusal_answers() {
    let wide = Appear::Table(Allowance {
        mode: "0755".into(),
        owner: vec![Id::Num(1000)],
        ..Allowance::narrow(vec!["/etc/k*".into()])
    });
    let p = compiled(vec!["/etc/key".into(), wide]);
    let none = Ids::default();
    assert_eq!(
        judge(&p, "/etc/key", Some(file(0o755, 1000, 0)), &none),
        ["admitted"]
    );
    assert_eq!(
        judge(&p, "/etc/key", Some(file(0o644, 0, 0)), &none),
        ["admitted"]
    );
    // Refused by both: the first one's reasons.
    assert_eq!(
        judge(&p, "/etc/key", Some(file(0o777, 0, 0)), &none),
        ["mode"]
    );
}

// ---------------------------------------------------------------- masks

#[test]
fn special_bits_only_when_the_mask_names_them() {
    let with = |mode: &str| {
        compiled(vec![Appear::Table(Allowance {
            mode: mode.into(),
            ..Allowance::narrow(vec!["/x".into()])
        })])
    };
    let none = Ids::default();
    let ok = |p: &CompiledPolicy, m| judge(p, "/x", Some(file(m, 0, 0)), &none) == ["admitted"];
    let p = with("0755");
    assert!(ok(&p, 0o755) && ok(&p, 0o700) && ok(&p, 0o511));
    assert!(!ok(&p, 0o4755) && !ok(&p, 0o2755) && !ok(&p, 0o1755) && !ok(&p, 0o775));
    let p = with("4755");
    assert!(ok(&p, 0o4755) && ok(&p, 0o755) && !ok(&p, 0o2755) && !ok(&p, 0o6755));
    let p = with("7777");
    assert!(ok(&p, 0o7777) && ok(&p, 0));
    let p = with("0");
    assert!(ok(&p, 0) && !ok(&p, 0o400));
    // Three digits read as four.
    let p = with("644");
    assert!(ok(&p, 0o644) && !ok(&p, 0o4644));
}

#[test]
fn masks_parse_as_octal_strings() {
    assert_eq!(parse_mask("0644"), Ok(0o644));
    assert_eq!(parse_mask("4755"), Ok(0o4755));
    assert_eq!(parse_mask("7"), Ok(0o7));
    for bad in [
        "",
        "0o644",
        "0x1a4",
        "0648",
        "10644",
        "-644",
        " 644",
        "rw-r--r--",
    ] {
        let e = parse_mask(bad).unwrap_err();
        assert!(
            e.contains("is not an octal mask like \"0644\""),
            "{bad}: {e}"
        );
    }
}

// ---------------------------------------------------------------- owners, groups, names

fn host_keys() -> CompiledPolicy {
    compiled(default_may_appear())
}

#[test]
fn the_shipped_default_fits_real_host_keys_and_nothing_else() {
    let p = host_keys();
    let rhel = groups(&[("ssh_keys", 996)]);
    let debian = Ids::default();
    let k = "/etc/ssh/ssh_host_ed25519_key";
    for ids in [&rhel, &debian] {
        assert_eq!(judge(&p, k, Some(file(0o600, 0, 0)), ids), ["admitted"]);
        assert_eq!(
            judge(&p, &format!("{k}.pub"), Some(file(0o644, 0, 0)), ids),
            ["admitted"]
        );
        assert_eq!(
            judge(&p, "/etc/machine-id", Some(file(0o444, 0, 0)), ids),
            ["admitted"]
        );
        assert_eq!(
            judge(&p, "/etc/machine-id", Some(file(0o644, 0, 0)), ids),
            ["mode"]
        );
        assert_eq!(judge(&p, k, Some(file(0o4755, 0, 0)), ids), ["mode"]);
        assert_eq!(judge(&p, k, Some(file(0o666, 0, 0)), ids), ["mode"]);
        assert_eq!(judge(&p, k, Some(file(0o600, 1000, 0)), ids), ["uid"]);
        assert_eq!(
            judge(&p, k, Some(seen("symlink", 0o777, 0, 0)), ids),
            ["type"]
        );
        assert_eq!(
            judge(
                &p,
                "/etc/machine-id",
                Some(seen("symlink", 0o777, 0, 0)),
                ids
            ),
            ["type"]
        );
        assert_eq!(
            judge(&p, &format!("{k}/x"), Some(file(0o600, 0, 0)), ids),
            ["below"]
        );
    }
    // RHEL's 0640 root:ssh_keys key fits where the image has the group.
    assert_eq!(judge(&p, k, Some(file(0o640, 0, 996)), &rhel), ["admitted"]);
    assert_eq!(judge(&p, k, Some(file(0o640, 0, 997)), &rhel), ["gid"]);
    let r = refusal(&p, k, file(0o640, 0, 997), &rhel);
    assert_eq!(r[0].1, "root (0) or ssh_keys (996)");
    assert_eq!(
        p.id_names().groups.into_iter().collect::<Vec<_>>(),
        ["ssh_keys"]
    );
    assert!(p.id_names().users.is_empty(), "root is never looked up");
}

#[test]
fn a_name_that_does_not_resolve_admits_nothing_and_says_so() {
    let p = host_keys();
    let k = "/etc/ssh/ssh_host_rsa_key";
    // No ssh_keys group in the image: a file of any other group than root
    // is refused, whatever gid the machine running the check calls ssh_keys.
    let r = refusal(&p, k, file(0o640, 0, 996), &Ids::default());
    assert_eq!(
        r,
        [(
            "gid".into(),
            "root (0) or ssh_keys (unknown group: not in the image's /etc/group)".into(),
            "996".into()
        )]
    );
    let unreadable = Ids {
        users: IdMap::default(),
        groups: IdMap {
            found: BTreeMap::new(),
            error: Some("cannot read the image's /etc/group: Permission denied".into()),
        },
    };
    let r = refusal(&p, k, file(0o640, 0, 996), &unreadable);
    assert!(
        r[0].1.contains(
            "ssh_keys (unknown group: cannot read the image's /etc/group: Permission denied)"
        ),
        "{r:?}"
    );
    // An owner by name, not in the image's /etc/passwd.
    let p = compiled(vec![Appear::Table(Allowance {
        owner: vec!["sshd".into(), Id::Num(7)],
        ..Allowance::narrow(vec!["/k".into()])
    })]);
    let r = refusal(&p, "/k", file(0o600, 0, 0), &Ids::default());
    assert_eq!(r[0].0, "uid");
    assert_eq!(
        r[0].1,
        "sshd (unknown user: not in the image's /etc/passwd) or 7"
    );
    assert_eq!(
        judge(&p, "/k", Some(file(0o600, 7, 0)), &Ids::default()),
        ["admitted"]
    );
    let sshd = Ids {
        users: IdMap {
            found: [("sshd".to_string(), 101)].into(),
            error: None,
        },
        groups: IdMap::default(),
    };
    assert_eq!(
        judge(&p, "/k", Some(file(0o600, 101, 0)), &sshd),
        ["admitted"]
    );
}

#[test]
fn root_is_always_zero_whatever_the_database_says() {
    let p = compiled(vec!["/k".into()]);
    let forged = Ids {
        users: IdMap {
            found: [("root".to_string(), 1000)].into(),
            error: None,
        },
        groups: IdMap {
            found: BTreeMap::new(),
            error: Some("unreadable".into()),
        },
    };
    assert_eq!(
        judge(&p, "/k", Some(file(0o600, 0, 0)), &forged),
        ["admitted"]
    );
    assert_eq!(
        judge(&p, "/k", Some(file(0o600, 1000, 0)), &forged),
        ["uid"]
    );
}

// ---------------------------------------------------------------- manifests baked before tables

#[test]
fn a_policy_baked_with_bare_patterns_still_reads_and_means_the_narrow_default() {
    // The `allow` of a manifest baked before tables existed.
    let old = r#"{"content_may_differ":["/etc/machine-id"],"may_appear":["/etc/ssh/ssh_host_*","/etc/machine-id"]}"#;
    let allow: Allow = serde_json::from_str(old).unwrap();
    assert_eq!(
        allow.may_appear,
        ["/etc/ssh/ssh_host_*".into(), "/etc/machine-id".into()] as [Appear; 2]
    );
    let p = compiled(allow.may_appear);
    let none = Ids::default();
    let k = "/etc/ssh/ssh_host_ed25519_key";
    assert_eq!(judge(&p, k, Some(file(0o600, 0, 0)), &none), ["admitted"]);
    assert_eq!(judge(&p, k, Some(file(0o640, 0, 996)), &none), ["gid"]);
    assert_eq!(judge(&p, k, Some(file(0o4755, 0, 0)), &none), ["mode"]);
    assert_eq!(
        judge(&p, &format!("{k}/x"), Some(file(0o600, 0, 0)), &none),
        ["below"]
    );
}
