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

/// Component order: `a` and `b` compared component by component, each
/// component by its bytes, a path before everything below it. It is byte
/// order with `/` ranked below every other byte: `/a` < `/a/x` < `/a/x/y`
/// < `/a-b` < `/a0` (plain byte order puts `/a-b` between `/a` and
/// `/a/x`). A depth-first walk that lists each directory's names in byte
/// order visits paths in exactly this order. A total order: `Equal` only
/// for equal slices (`/` ranks below every byte, NUL included, though a
/// path never holds a NUL).
pub fn cmp_components(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    match (a.get(common), b.get(common)) {
        (Some(&x), Some(&y)) => rank(x).cmp(&rank(y)),
        // One is a prefix of the other: the shorter comes first.
        _ => a.len().cmp(&b.len()),
    }
}

/// A byte's place in [`cmp_components`]: `/` first, then every other byte
/// in its own order.
fn rank(byte: u8) -> u16 {
    if byte == b'/' {
        0
    } else {
        u16::from(byte) + 1
    }
}

/// Keep only the paths that have no ancestor (or duplicate) in the list:
/// checking a path checks its subtree. The result is sorted.
pub fn fold_subtrees(mut paths: Vec<Box<[u8]>>) -> Vec<Box<[u8]>> {
    paths.sort();
    paths.dedup();
    let mut out: Vec<Box<[u8]>> = Vec::new();
    // Sorted order puts "/a" before "/a/b" but also "/a-b" between them, so
    // test every kept path, not only the last.
    for p in paths {
        if !out.iter().any(|a| in_scope(&p, a)) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn component_order_puts_a_directory_before_its_neighbours() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        // Each before the next: a path, what is below it, then the names
        // that extend its last component ('-' and '.' sort below '/' in
        // plain byte order, '0' and 0xff above it).
        let sorted: &[&[u8]] = &[
            b"/",
            b"/a",
            b"/a/x",
            b"/a/x/y",
            b"/a/x-",
            b"/a/x.",
            b"/a/x\xff",
            b"/a\x01",
            b"/a-b",
            b"/a-b/c",
            b"/a.b",
            b"/a0",
            b"/a\xff",
            b"/a\xff/b",
            b"/a\xff\xfe",
            b"/b",
            b"/\xff",
        ];
        for (i, a) in sorted.iter().enumerate() {
            for (j, b) in sorted.iter().enumerate() {
                let want = i.cmp(&j);
                assert_eq!(
                    cmp_components(a, b),
                    want,
                    "{} vs {}",
                    a.escape_ascii(),
                    b.escape_ascii()
                );
            }
        }
        // Plain byte order disagrees exactly where '/' meets '-' or '.'.
        assert_eq!(b"/a-b".as_slice().cmp(b"/a/x".as_slice()), Less);
        assert_eq!(cmp_components(b"/a-b", b"/a/x"), Greater);
        assert_eq!(cmp_components(b"", b""), Equal);
        assert_eq!(cmp_components(b"/a", b"/a\0"), Less, "a prefix first");
        assert_eq!(cmp_components(b"/a/", b"/a\0"), Less, "'/' below NUL");
    }

    /// Component by component, each by its bytes: the definition that
    /// [`cmp_components`] must agree with, for every pair of short paths
    /// over an alphabet of the bytes around '/'.
    #[test]
    fn component_order_is_comparing_component_by_component() {
        let alphabet: &[u8] = b"/-.0a\xff";
        let mut all: Vec<Vec<u8>> = vec![Vec::new()];
        let mut last: Vec<Vec<u8>> = vec![Vec::new()];
        for _ in 0..4 {
            last = last
                .iter()
                .flat_map(|p| alphabet.iter().map(move |&c| [p.as_slice(), &[c]].concat()))
                .collect();
            all.extend(last.iter().cloned());
        }
        // Splitting is one-to-one (joining the pieces with '/' gives the
        // path back), so only equal paths compare equal here too.
        let by_components =
            |a: &[u8], b: &[u8]| a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'));
        for a in &all {
            for b in &all {
                assert_eq!(
                    cmp_components(a, b),
                    by_components(a, b),
                    "{} vs {}",
                    a.escape_ascii(),
                    b.escape_ascii()
                );
            }
        }
        let mut sorted = all.clone();
        sorted.sort_by(|a, b| cmp_components(a, b));
        sorted.dedup();
        assert_eq!(sorted.len(), all.len(), "Equal only for equal paths");
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
