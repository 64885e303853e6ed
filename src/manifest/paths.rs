//! Paths inside a root, as bytes: `/` alone, or `/`-separated components
//! with no trailing slash. PURE.

/// Why `path` is not canonical, or `None` when it is: `/` alone (the
/// root), or `/` followed by `/`-separated components none of which is
/// empty, `.` or `..`. Any other spelling names a place outside the root
/// (`/a/../..`) or one place twice (`/a/./b` and `/a//b` are `/a/b`).
pub fn non_canonical(path: &[u8]) -> Option<&'static str> {
    if path == b"/" {
        return None;
    }
    let Some(rest) = path.strip_prefix(b"/") else {
        return Some("does not start with `/`");
    };
    if rest.ends_with(b"/") {
        return Some("ends with `/`");
    }
    rest.split(|&b| b == b'/').find_map(|c| match c {
        b"" => Some("has an empty component (`//`)"),
        b"." => Some("has a `.` component"),
        b".." => Some("has a `..` component"),
        _ => None,
    })
}

/// Is `path` at or below `start`?
pub fn in_scope(path: &[u8], start: &[u8]) -> bool {
    start == b"/"
        || path == start
        || (path.len() > start.len() && path.starts_with(start) && path[start.len()] == b'/')
}

/// `dir` + `/` + `name` (no doubled slash below the root).
pub fn join(dir: &[u8], name: &[u8]) -> Box<[u8]> {
    if dir == b"/" {
        [b"/", name].concat().into()
    } else {
        [dir, b"/", name].concat().into()
    }
}

/// Paths in *component order*: compared component by component, which is
/// byte order with `/` below every other byte (`/a` < `/a/x` < `/a/x/y` <
/// `/a-b` < `/a0`). A path's subtree follows it without a gap, and a
/// depth-first walk that lists each directory in name order produces
/// exactly this order: the order of manifest entries (format 2).
pub fn cmp_components(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let key = |c: u8| if c == b'/' { 0 } else { c };
    a.iter().map(|&c| key(c)).cmp(b.iter().map(|&c| key(c)))
}

/// Keep only the paths that have no ancestor (or duplicate) in the list:
/// checking a path checks its subtree. The result is in component order.
pub fn fold_subtrees(mut paths: Vec<Box<[u8]>>) -> Vec<Box<[u8]>> {
    paths.sort_unstable_by(|a, b| cmp_components(a, b));
    paths.dedup();
    let mut out: Vec<Box<[u8]>> = Vec::new();
    // In component order a path's subtree follows it: a path with an
    // ancestor in the list comes after that ancestor with only the
    // ancestor's other descendants between them, so the last path kept is
    // the one to compare with.
    for p in paths {
        if !out.last().is_some_and(|a| in_scope(&p, a)) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Ordering;

    #[test]
    fn component_order_puts_a_subtree_right_after_its_root() {
        let mut v: Vec<&[u8]> = vec![
            b"/a0", b"/a-b", b"/a/x/y", b"/", b"/a", b"/a/x", b"/a.b", b"/a\xff", b"/a/\x01",
        ];
        v.sort_by(|a, b| cmp_components(a, b));
        let want: Vec<&[u8]> = vec![
            b"/", b"/a", b"/a/\x01", b"/a/x", b"/a/x/y", b"/a-b", b"/a.b", b"/a0", b"/a\xff",
        ];
        assert_eq!(v, want);
        assert_eq!(cmp_components(b"/a", b"/a"), Ordering::Equal);
        assert_eq!(cmp_components(b"/a/b", b"/a\x01"), Ordering::Less);
    }

    fn b(s: &str) -> Box<[u8]> {
        s.as_bytes().into()
    }

    #[test]
    fn canonical_paths() {
        for ok in [
            "/", "/a", "/a/b", "/.a", "/a./b", "/...", "/a/..b", "/a b/\\n",
        ] {
            assert_eq!(non_canonical(ok.as_bytes()), None, "{ok}");
        }
        for (bad, why) in [
            ("", "start"),
            ("a", "start"),
            ("a/b", "start"),
            ("//", "ends"),
            ("/a/", "ends"),
            ("/a//", "ends"),
            ("//a", "empty"),
            ("/a//b", "empty"),
            ("/.", "`.`"),
            ("/a/./b", "`.`"),
            ("/..", "`..`"),
            ("/a/../b", "`..`"),
            ("/a/..", "`..`"),
        ] {
            let got = non_canonical(bad.as_bytes());
            assert!(got.is_some_and(|g| g.contains(why)), "{bad:?}: {got:?}");
        }
    }

    #[test]
    fn scope_matching() {
        assert!(in_scope(b"/a/b", b"/a"));
        assert!(in_scope(b"/a", b"/a"));
        assert!(!in_scope(b"/ab", b"/a"));
        assert!(!in_scope(b"/a", b"/a/b"));
        assert!(in_scope(b"/anything", b"/"));
    }

    #[test]
    fn joined_paths() {
        assert_eq!(join(b"/", b"etc"), b("/etc"));
        assert_eq!(join(b"/etc", b"x"), b("/etc/x"));
    }

    #[test]
    fn subtrees_fold_into_their_ancestors() {
        assert_eq!(
            fold_subtrees(vec![
                b("/etc/a/b"),
                b("/usr/x"),
                b("/etc/a"),
                b("/etc/a-b"),
                b("/etc/a")
            ]),
            vec![b("/etc/a"), b("/etc/a-b"), b("/usr/x")]
        );
        assert_eq!(fold_subtrees(vec![b("/x"), b("/")]), vec![b("/")]);
    }
}
