//! Paths inside a root, as bytes: `/` alone, or `/`-separated components
//! with no trailing slash. PURE.

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
