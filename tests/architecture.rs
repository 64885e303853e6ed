//! The architecture of `src/`, checked on the source at run time (see
//! STYLE.md, "The shape we want"):
//!
//! - every top-level module (a folder or a file directly under `src/`, not
//!   `lib.rs` or `main.rs`) has a rank in [`RANKS`], and a module uses only
//!   modules of a lower rank: no back-edges. A use is any path `crate::X`
//!   (or `super::...` reaching another module) in a `use` item or anywhere
//!   in the code, comments, doc comments and string literals aside;
//! - so the graph of modules has no cycle (reported with its path);
//! - the pure modules ([`PURE`]) touch no filesystem, network, process,
//!   environment, clock or randomness outside their tests;
//! - `signal`, `watch` and `telemetry` never use `daemon`;
//! - no source file is longer than [`MAX_LINES`] lines.
//!
//! The checker is a small Rust lexer and path reader (no dependency), and
//! each rule is proven to fire on a tiny in-memory file set first.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;

/// The rank of each top-level module, lowest first: a module may use only
/// modules of a strictly lower rank. Rank 0 modules use no other module.
/// A module of `src/` missing here fails the test; a module listed here
/// but not (yet) in `src/` is fine.
const RANKS: [(&str, u32); 15] = [
    ("clock", 0),
    ("fsutil", 0),
    ("spec", 0),
    ("policy", 1),
    ("manifest", 2),
    ("verdict", 3),
    ("scan", 4),
    ("check", 5),
    ("trust", 6),
    ("watch", 7),
    ("telemetry", 8),
    ("signal", 9),
    ("config", 10),
    ("daemon", 11),
    ("cli", 12),
];

/// Modules whose non-test code does no IO and reads no clock or
/// randomness: what they compute depends only on their inputs.
const PURE: [&str; 3] = ["manifest", "policy", "verdict"];

/// What a pure module may not mention: as a path prefix (`std::fs`,
/// `std::fs::File`, `use std::{fs, io}`) or anywhere in a path
/// (`SystemTime::now`, `getrandom`).
const IMPURE: [&str; 11] = [
    "std::fs",
    "std::net",
    "std::process",
    "std::env",
    "tokio::fs",
    "tokio::net",
    "tokio::process",
    "SystemTime::now",
    "Instant::now",
    "rustix::fs",
    "getrandom",
];

/// Modules that must never use `daemon` (they are what the daemon drives).
const NEVER_USE_DAEMON: [&str; 3] = ["signal", "watch", "telemetry"];

/// The longest a source file may be, in lines.
const MAX_LINES: usize = 500;

// ---------------------------------------------------------------------------
// The source files

/// One source file: its path relative to `src/` (with `/`) and its text.
struct SrcFile {
    path: String,
    text: String,
}

fn file(path: &str, text: &str) -> SrcFile {
    SrcFile {
        path: path.to_owned(),
        text: text.to_owned(),
    }
}

/// Every `.rs` file below `src/`, read now.
fn read_src() -> Vec<SrcFile> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    let mut dirs = vec![src.clone()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("list {}: {e}", dir.display()));
        for entry in entries {
            let p = entry.expect("a directory entry").path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&p)
                    .unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
                let rel = p.strip_prefix(&src).expect("below src/");
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                out.push(SrcFile {
                    path: rel.join("/"),
                    text,
                });
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    assert!(
        out.iter().any(|f| f.path == "lib.rs") && out.len() > 5,
        "src/ looks empty: {:?}",
        out.iter().map(|f| &f.path).collect::<Vec<_>>()
    );
    out
}

/// The top-level module a file belongs to (`None` for the crate root
/// files `lib.rs` and `main.rs`).
fn top_module(path: &str) -> Option<String> {
    let first = path.split('/').next().unwrap_or(path);
    if path == first {
        let name = first.strip_suffix(".rs")?;
        return (name != "lib" && name != "main").then(|| name.to_owned());
    }
    Some(first.to_owned())
}

/// The module path of a file: `a/b.rs` and `a/b/mod.rs` are `[a, b]`.
fn module_path(path: &str) -> Vec<String> {
    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.strip_suffix(".rs").unwrap_or(&last);
    if !matches!(stem, "mod" | "lib" | "main") {
        parts.push(stem.to_owned());
    }
    parts
}

/// Test-only files: `tests.rs` and anything in a `tests/` folder.
fn is_test_file(path: &str) -> bool {
    let parts: Vec<&str> = path.split('/').collect();
    parts.last() == Some(&"tests.rs") || parts[..parts.len() - 1].contains(&"tests")
}

// ---------------------------------------------------------------------------
// A Rust lexer: identifiers, `::` and punctuation, with line numbers;
// comments, strings, chars and numbers dropped

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Punct(char),
    /// A literal (number, string, char): breaks paths, carries nothing.
    Lit,
}

fn lex(text: &str) -> Vec<(Tok, usize)> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut line = 1;
    let mut i = 0;
    let ident_start = |ch: char| ch.is_alphabetic() || ch == '_';
    let ident_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    // Skip a (raw) string starting at `i` (at `r`, `b`, `c` or `"`); the
    // index after it, counting newlines.
    let skip_string = |i: usize, line: &mut usize| -> usize {
        let mut j = i;
        while j < c.len() && matches!(c[j], 'b' | 'c' | 'r') {
            j += 1;
        }
        let raw = c[i..j].contains(&'r');
        let mut hashes = 0;
        while j < c.len() && c[j] == '#' {
            hashes += 1;
            j += 1;
        }
        j += 1; // the opening quote
        while j < c.len() {
            if c[j] == '\n' {
                *line += 1;
            }
            if !raw && c[j] == '\\' {
                if c.get(j + 1) == Some(&'\n') {
                    *line += 1;
                }
                j += 2;
                continue;
            }
            if c[j] == '"' && (0..hashes).all(|h| c.get(j + 1 + h) == Some(&'#')) {
                return j + 1 + hashes;
            }
            j += 1;
        }
        j
    };
    // Whether a string literal starts at `i`: `"`, or a prefix b" br" br#"
    // c" cr" r" r#" (but not a raw identifier r#name).
    let string_start = |i: usize| -> bool {
        let mut j = i;
        while j < c.len() && matches!(c[j], 'b' | 'c' | 'r') && j - i < 2 {
            j += 1;
        }
        let raw = c[i..j].contains(&'r');
        let mut k = j;
        while raw && k < c.len() && c[k] == '#' {
            k += 1;
        }
        c.get(k) == Some(&'"')
    };
    while i < c.len() {
        let ch = c[i];
        if ch == '\n' {
            line += 1;
            i += 1;
        } else if ch.is_whitespace() {
            i += 1;
        } else if ch == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && c.get(i + 1) == Some(&'*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        line += 1;
                    }
                    i += 1;
                }
            }
        } else if string_start(i) {
            i = skip_string(i, &mut line);
            out.push((Tok::Lit, line));
        } else if ch == 'b' && c.get(i + 1) == Some(&'\'') {
            i += 1; // a byte char: the char literal below
        } else if ch == '\'' {
            // A char literal ('x', '\n', '\u{1F600}') or a lifetime ('a).
            if c.get(i + 1) == Some(&'\\') {
                // Past the backslash and the escaped char ('\'' too).
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push((Tok::Lit, line));
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push((Tok::Lit, line));
            } else {
                i += 1;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
            }
        } else if ch == 'r'
            && c.get(i + 1) == Some(&'#')
            && c.get(i + 2).is_some_and(|&n| ident_start(n))
        {
            let start = i + 2;
            i = start;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ident_start(ch) {
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            out.push((Tok::Ident(c[start..i].iter().collect()), line));
        } else if ch.is_ascii_digit() {
            while i < c.len()
                && (ident_char(c[i])
                    || (c[i] == '.' && c.get(i + 1).is_some_and(|d| d.is_ascii_digit())))
            {
                i += 1;
            }
            out.push((Tok::Lit, line));
        } else if ch == ':' && c.get(i + 1) == Some(&':') {
            out.push((Tok::PathSep, line));
            i += 2;
        } else {
            out.push((Tok::Punct(ch), line));
            i += 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Paths, with the inline module and test-ness of the place they occur

/// A path found in the code.
#[derive(Debug, Clone)]
struct Use {
    /// The segments as written (`use` trees expanded, `::` dropped).
    segments: Vec<String>,
    line: usize,
    /// Inside `#[cfg(test)]` code.
    test: bool,
    /// The inline modules (`mod x { ... }`) it is in, outermost first.
    inline: Vec<String>,
}

impl Use {
    fn text(&self) -> String {
        self.segments.join("::")
    }
}

fn ident(toks: &[(Tok, usize)], i: usize) -> Option<&str> {
    match toks.get(i) {
        Some((Tok::Ident(s), _)) => Some(s),
        _ => None,
    }
}

fn punct(toks: &[(Tok, usize)], i: usize, p: char) -> bool {
    matches!(toks.get(i), Some((Tok::Punct(c), _)) if *c == p)
}

/// The index of the token that closes the bracket opened at `open`.
fn matching(toks: &[(Tok, usize)], open: usize) -> usize {
    let (o, c) = match toks[open].0 {
        Tok::Punct('{') => ('{', '}'),
        Tok::Punct('(') => ('(', ')'),
        Tok::Punct('[') => ('[', ']'),
        _ => return open,
    };
    let mut depth = 0;
    for (j, (t, _)) in toks.iter().enumerate().skip(open) {
        if *t == Tok::Punct(o) {
            depth += 1;
        } else if *t == Tok::Punct(c) {
            depth -= 1;
            if depth == 0 {
                return j;
            }
        }
    }
    toks.len() - 1
}

/// The last token of the item starting at `i`: up to a `;` outside
/// brackets, or through the `{ ... }` block that ends it.
fn item_end(toks: &[(Tok, usize)], mut i: usize) -> usize {
    // Further attributes first.
    while punct(toks, i, '#') && punct(toks, i + 1, '[') {
        i = matching(toks, i + 1) + 1;
    }
    while i < toks.len() {
        match toks[i].0 {
            Tok::Punct(';') => return i,
            Tok::Punct('{') => return matching(toks, i),
            Tok::Punct('(') | Tok::Punct('[') => i = matching(toks, i) + 1,
            _ => i += 1,
        }
    }
    toks.len().saturating_sub(1)
}

/// Expand the `use` tree starting at `i` under `prefix`; the index after it.
fn use_tree(
    toks: &[(Tok, usize)],
    mut i: usize,
    prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    let mut path = prefix;
    if matches!(toks.get(i), Some((Tok::PathSep, _))) {
        i += 1; // a leading `::`
    }
    loop {
        if punct(toks, i, '{') {
            let close = matching(toks, i);
            let mut j = i + 1;
            while j < close {
                j = use_tree(toks, j, path.clone(), out);
                if punct(toks, j, ',') {
                    j += 1;
                }
            }
            return close + 1;
        }
        if punct(toks, i, '*') {
            out.push(path);
            return i + 1;
        }
        let Some(name) = ident(toks, i) else {
            out.push(path);
            return i;
        };
        if name != "self" {
            path.push(name.to_owned());
        }
        i += 1;
        if matches!(toks.get(i), Some((Tok::PathSep, _))) {
            i += 1;
            continue;
        }
        if ident(toks, i) == Some("as") {
            i += 2; // the alias
        }
        out.push(path);
        return i;
    }
}

/// Every path in a file, with where it is.
fn paths(text: &str) -> Vec<Use> {
    let toks = lex(text);
    // Token ranges of `#[cfg(test)]` items and of inline modules.
    let mut test_ranges = Vec::new();
    let mut mods: Vec<(usize, usize, String)> = Vec::new();
    for i in 0..toks.len() {
        let is_cfg_test = punct(&toks, i, '#')
            && punct(&toks, i + 1, '[')
            && ident(&toks, i + 2) == Some("cfg")
            && punct(&toks, i + 3, '(')
            && ident(&toks, i + 4) == Some("test")
            && punct(&toks, i + 5, ')')
            && punct(&toks, i + 6, ']');
        if is_cfg_test {
            test_ranges.push((i, item_end(&toks, i + 7)));
        }
        if ident(&toks, i) == Some("mod") && punct(&toks, i + 2, '{') {
            if let Some(name) = ident(&toks, i + 1) {
                mods.push((i + 2, matching(&toks, i + 2), name.to_owned()));
            }
        }
    }
    let place = |i: usize| -> (bool, Vec<String>) {
        let test = test_ranges.iter().any(|&(s, e)| s <= i && i <= e);
        let inline = mods
            .iter()
            .filter(|(s, e, _)| *s <= i && i <= *e)
            .map(|(_, _, n)| n.clone())
            .collect();
        (test, inline)
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if ident(&toks, i) == Some("use") {
            let line = toks[i].1;
            let mut trees = Vec::new();
            let end = use_tree(&toks, i + 1, Vec::new(), &mut trees);
            let (test, inline) = place(i);
            for segments in trees.into_iter().filter(|s| !s.is_empty()) {
                out.push(Use {
                    segments,
                    line,
                    test,
                    inline: inline.clone(),
                });
            }
            i = end.max(i + 1);
            continue;
        }
        // A path starts at an identifier followed by `::`, unless it
        // continues one (`a::b`, `Vec::<u8>::new`); a leading `::` (as in
        // `::std::fs`) starts one.
        let after_sep = i > 0 && toks[i - 1].0 == Tok::PathSep;
        let continues =
            after_sep && i > 1 && matches!(toks[i - 2].0, Tok::Ident(_) | Tok::Punct('>'));
        let starts_path = ident(&toks, i).is_some()
            && matches!(toks.get(i + 1), Some((Tok::PathSep, _)))
            && !continues;
        if starts_path {
            let line = toks[i].1;
            let mut segments = vec![ident(&toks, i).unwrap_or_default().to_owned()];
            let mut j = i + 1;
            while matches!(toks.get(j), Some((Tok::PathSep, _))) {
                match ident(&toks, j + 1) {
                    Some(s) => segments.push(s.to_owned()),
                    None => break, // a turbofish `::<` or a `::{`
                }
                j += 2;
            }
            let (test, inline) = place(i);
            out.push(Use {
                segments,
                line,
                test,
                inline,
            });
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// The top-level module a path refers to, from a file at `module_path`:
/// `crate::X...`, or `super::...`/`self::...` climbing to the crate root
/// and down to `X`. `None` for paths that stay in the file's module tree or
/// leave the crate.
fn target_module(u: &Use, module_path: &[String]) -> Option<String> {
    let s = &u.segments;
    match s.first().map(String::as_str) {
        Some("crate") => s.get(1).cloned(),
        Some("super") | Some("self") => {
            let mut here: Vec<String> = module_path.to_vec();
            here.extend(u.inline.iter().cloned());
            let mut rest = &s[..];
            if rest.first().map(String::as_str) == Some("self") {
                rest = &rest[1..];
            }
            while rest.first().map(String::as_str) == Some("super") {
                here.pop();
                rest = &rest[1..];
            }
            here.extend(rest.iter().cloned());
            here.first().cloned()
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// The rules

/// One reference from a module to another: where, and what it says.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    at: String,
    path: String,
}

/// Every reference from one top-level module to another (test code too).
fn edges(files: &[SrcFile]) -> Vec<Edge> {
    let modules = modules(files);
    let mut out = Vec::new();
    for f in files {
        let Some(from) = top_module(&f.path) else {
            continue;
        };
        let mp = module_path(&f.path);
        for u in paths(&f.text) {
            let Some(to) = target_module(&u, &mp) else {
                continue;
            };
            let known = modules.contains(&to) || RANKS.iter().any(|(m, _)| *m == to);
            if to != from && known {
                out.push(Edge {
                    from: from.clone(),
                    to,
                    at: format!("src/{}:{}", f.path, u.line),
                    path: u.text(),
                });
            }
        }
    }
    out
}

/// The top-level modules present.
fn modules(files: &[SrcFile]) -> BTreeSet<String> {
    files.iter().filter_map(|f| top_module(&f.path)).collect()
}

fn rank_of(ranks: &[(&str, u32)], m: &str) -> Option<u32> {
    ranks.iter().find(|(n, _)| *n == m).map(|&(_, r)| r)
}

/// Group edges by (from, to) and describe each group: the count and the
/// first few places.
fn describe(edges: &[&Edge]) -> BTreeMap<(String, String), String> {
    let mut groups: BTreeMap<(String, String), Vec<&Edge>> = BTreeMap::new();
    for e in edges {
        groups
            .entry((e.from.clone(), e.to.clone()))
            .or_default()
            .push(e);
    }
    groups
        .into_iter()
        .map(|(k, es)| {
            let mut places: Vec<String> = es
                .iter()
                .take(4)
                .map(|e| format!("{} `{}`", e.at, e.path))
                .collect();
            if es.len() > 4 {
                places.push(format!("and {} more", es.len() - 4));
            }
            (
                k,
                format!("{} reference(s): {}", es.len(), places.join(", ")),
            )
        })
        .collect()
}

/// Modules of `src/` without a rank.
fn unranked(files: &[SrcFile], ranks: &[(&str, u32)]) -> Vec<String> {
    modules(files)
        .into_iter()
        .filter(|m| rank_of(ranks, m).is_none())
        .map(|m| {
            format!(
                "src/{m} is a top-level module without a rank: add it to RANKS in \
                 tests/architecture.rs (lowest first), at the rank of what it may use"
            )
        })
        .collect()
}

/// References to a module of the same or a higher rank.
fn back_edges(files: &[SrcFile], ranks: &[(&str, u32)]) -> Vec<String> {
    let all = edges(files);
    let bad: Vec<&Edge> = all
        .iter()
        .filter(|e| match (rank_of(ranks, &e.from), rank_of(ranks, &e.to)) {
            (Some(a), Some(b)) => b >= a,
            _ => false, // unranked: reported by `unranked`
        })
        .collect();
    describe(&bad)
        .into_iter()
        .map(|((from, to), what)| {
            format!(
                "{from} (rank {}) uses {to} (rank {}): {what}",
                rank_of(ranks, &from).unwrap_or_default(),
                rank_of(ranks, &to).unwrap_or_default()
            )
        })
        .collect()
}

/// Cycles in the graph of modules, one per strongly connected set, each
/// with its path and where each step is.
fn cycles(files: &[SrcFile]) -> Vec<String> {
    let all = edges(files);
    let mut graph: BTreeMap<&str, BTreeMap<&str, &Edge>> = BTreeMap::new();
    for e in &all {
        graph
            .entry(e.from.as_str())
            .or_default()
            .entry(e.to.as_str())
            .or_insert(e);
    }
    let reaches = |from: &str, to: &str| -> Option<Vec<String>> {
        // The shortest path from `from` to `to` (breadth first).
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(n) = queue.pop_front() {
            for &next in graph.get(n).map(|m| m.keys()).into_iter().flatten() {
                if next == to {
                    let mut path = vec![to.to_owned(), n.to_owned()];
                    let mut cur = n;
                    while cur != from {
                        cur = prev[cur];
                        path.push(cur.to_owned());
                    }
                    path.reverse();
                    return Some(path);
                }
                if next != from && !prev.contains_key(next) {
                    prev.insert(next, n);
                    queue.push_back(next);
                }
            }
        }
        None
    };
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    for &m in graph.keys() {
        if seen.contains(m) {
            continue;
        }
        let Some(cycle) = reaches(m, m) else {
            continue;
        };
        seen.extend(cycle.iter().cloned());
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| {
                let e = graph[w[0].as_str()][w[1].as_str()];
                format!("{} -> {} at {} `{}`", w[0], w[1], e.at, e.path)
            })
            .collect();
        out.push(format!(
            "cycle {}: {}",
            cycle.join(" -> "),
            steps.join("; ")
        ));
    }
    out
}

/// Whether a path mentions a forbidden pattern: `a::b` as a prefix of the
/// path (after a leading `::`), or anywhere when it is a type's function
/// (`SystemTime::now`) or a bare crate name (`getrandom`).
fn mentions(segments: &[String], pattern: &str) -> bool {
    let pat: Vec<&str> = pattern.split("::").collect();
    let starts_upper = pat[0].starts_with(|c: char| c.is_ascii_uppercase());
    if pat.len() == 1 || starts_upper {
        segments
            .windows(pat.len())
            .any(|w| w.iter().zip(&pat).all(|(a, b)| a == b))
    } else {
        segments.len() >= pat.len() && segments.iter().zip(&pat).all(|(a, b)| a == b)
    }
}

/// IO, clock or randomness in the non-test code of the pure modules.
fn impurities(files: &[SrcFile]) -> Vec<String> {
    let mut out = Vec::new();
    for f in files {
        let Some(m) = top_module(&f.path) else {
            continue;
        };
        if !PURE.contains(&m.as_str()) || is_test_file(&f.path) {
            continue;
        }
        for u in paths(&f.text).into_iter().filter(|u| !u.test) {
            for pattern in IMPURE {
                if mentions(&u.segments, pattern) {
                    out.push(format!(
                        "src/{}:{}: `{}` in {m}, which is pure (no {pattern})",
                        f.path,
                        u.line,
                        u.text()
                    ));
                }
            }
        }
    }
    out
}

/// Uses of `daemon` by the modules it drives.
fn daemon_uses(files: &[SrcFile]) -> Vec<String> {
    let all = edges(files);
    let bad: Vec<&Edge> = all
        .iter()
        .filter(|e| e.to == "daemon" && NEVER_USE_DAEMON.contains(&e.from.as_str()))
        .collect();
    describe(&bad)
        .into_iter()
        .map(|((from, _), what)| {
            format!("{from} uses daemon (signal, watch and telemetry never use daemon): {what}")
        })
        .collect()
}

/// Files over [`MAX_LINES`] lines.
fn long_files(files: &[SrcFile]) -> Vec<String> {
    files
        .iter()
        .map(|f| (f, f.text.lines().count()))
        .filter(|&(_, n)| n > MAX_LINES)
        .map(|(f, n)| format!("src/{}: {n} lines", f.path))
        .collect()
}

fn assert_none(rule: &str, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{rule}: {} problem(s):\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// The rules on src/

#[test]
fn every_module_has_a_rank() {
    assert_none("unranked modules", unranked(&read_src(), &RANKS));
}

#[test]
fn modules_use_only_modules_of_a_lower_rank() {
    assert_none(
        "back-edges (a module may use only modules of a lower rank; RANKS in \
         tests/architecture.rs)",
        back_edges(&read_src(), &RANKS),
    );
}

#[test]
fn the_module_graph_has_no_cycle() {
    assert_none("cycles between modules", cycles(&read_src()));
}

#[test]
fn pure_modules_do_no_io_and_read_no_clock_or_randomness() {
    assert_none(
        "impure code in manifest, policy or verdict (outside tests)",
        impurities(&read_src()),
    );
}

#[test]
fn signal_watch_and_telemetry_never_use_daemon() {
    assert_none("uses of daemon", daemon_uses(&read_src()));
}

#[test]
fn no_source_file_is_over_500_lines() {
    assert_none(
        &format!("source files over {MAX_LINES} lines"),
        long_files(&read_src()),
    );
}

// ---------------------------------------------------------------------------
// The checker on tiny file sets: each rule fires when it should

#[test]
fn lexer_ignores_comments_strings_and_chars() {
    let text = r##"
        // crate::daemon in a comment
        /// crate::daemon in a doc comment
        /* crate::daemon /* nested */ crate::daemon */
        const A: &str = "crate::daemon";
        const B: &str = r#"crate::daemon "quoted""#;
        const C: &[u8] = b"crate::daemon";
        const D: char = '"';
        const E: [char; 3] = ['\'', '\\', '\u{1F600}'];
        fn f<'a>(x: &'a str) -> &'a str { x }
        use crate::policy::Policy;
    "##;
    let found: Vec<String> = paths(text).iter().map(Use::text).collect();
    assert_eq!(found, ["crate::policy::Policy"]);
    assert_eq!(paths(text)[0].line, 11);
}

#[test]
fn use_trees_and_paths_in_code_are_expanded() {
    let text = "use crate::{manifest::{self, Entry}, policy as p};\n\
                use std::{fs, io::Read};\n\
                fn f() { let x = crate::scan::walk::<u8>(); let t = std::time::SystemTime::now(); }\n";
    let found: Vec<String> = paths(text).iter().map(Use::text).collect();
    assert_eq!(
        found,
        [
            "crate::manifest",
            "crate::manifest::Entry",
            "crate::policy",
            "std::fs",
            "std::io::Read",
            "crate::scan::walk",
            "std::time::SystemTime::now",
        ]
    );
}

#[test]
fn super_paths_resolve_to_their_module() {
    let text = "use super::scan::Walk;\nmod tests { use super::*; use super::super::watch::W; }\n";
    let found: Vec<Option<String>> = paths(text)
        .iter()
        .map(|u| target_module(u, &module_path("check.rs")))
        .collect();
    assert_eq!(
        found,
        [
            Some("scan".to_owned()),
            Some("check".to_owned()),
            Some("watch".to_owned())
        ]
    );
    let u = &paths("use super::state::State;")[0];
    assert_eq!(
        target_module(u, &module_path("daemon/engine.rs")).as_deref(),
        Some("daemon")
    );
}

#[test]
fn cfg_test_items_are_marked_as_tests() {
    let text = "use std::collections::BTreeMap;\n\
                #[cfg(test)]\nmod tests {\n    use std::fs;\n}\n\
                #[cfg(test)]\n#[allow(unused)]\nfn helper() { std::env::var(\"X\"); }\n\
                fn after() { std::process::exit(1) }\n";
    let found: Vec<(String, bool)> = paths(text).iter().map(|u| (u.text(), u.test)).collect();
    assert_eq!(
        found,
        [
            ("std::collections::BTreeMap".to_owned(), false),
            ("std::fs".to_owned(), true),
            ("std::env::var".to_owned(), true),
            ("std::process::exit".to_owned(), false),
        ]
    );
}

/// A small house: every rule holds.
fn clean_house() -> Vec<SrcFile> {
    vec![
        file(
            "lib.rs",
            "pub mod clock;\npub mod manifest;\npub mod policy;\npub mod daemon;\n",
        ),
        file(
            "clock.rs",
            "pub fn now() -> u64 { std::time::SystemTime::now(); 0 }\n",
        ),
        file("policy/mod.rs", "pub struct Policy;\n"),
        file(
            "manifest/mod.rs",
            "use crate::policy::Policy;\n// std::fs::read in a comment\n\
             #[cfg(test)]\nmod tests { use std::fs; }\n",
        ),
        file("manifest/tests.rs", "use std::fs;\nuse crate::policy;\n"),
        file(
            "daemon/mod.rs",
            "use crate::{clock, manifest::Manifest};\nuse std::fs;\n",
        ),
    ]
}

#[test]
fn a_clean_house_passes_every_rule() {
    let files = clean_house();
    assert_eq!(unranked(&files, &RANKS), Vec::<String>::new());
    assert_eq!(back_edges(&files, &RANKS), Vec::<String>::new());
    assert_eq!(cycles(&files), Vec::<String>::new());
    assert_eq!(impurities(&files), Vec::<String>::new());
    assert_eq!(daemon_uses(&files), Vec::<String>::new());
    assert_eq!(long_files(&files), Vec::<String>::new());
}

#[test]
fn checker_finds_a_back_edge() {
    let mut files = clean_house();
    files.push(file(
        "policy/glob.rs",
        "fn f() { let m = super::super::manifest::Manifest::new(); }\n",
    ));
    let found = back_edges(&files, &RANKS);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with(
            "policy (rank 1) uses manifest (rank 2): 1 reference(s): src/policy/glob.rs:1"
        ),
        "{found:?}"
    );
    // Rank 0 modules use nothing, not even each other.
    let mut files = clean_house();
    files.push(file("fsutil.rs", "use crate::clock::now;\n"));
    assert_eq!(back_edges(&files, &RANKS).len(), 1);
}

#[test]
fn checker_finds_an_unranked_module() {
    let mut files = clean_house();
    files.push(file("gadget/mod.rs", "pub struct G;\n"));
    let found = unranked(&files, &RANKS);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("src/gadget is a top-level module without a rank: add it to RANKS")
    );
}

#[test]
fn checker_finds_a_cycle() {
    let mut files = clean_house();
    files.push(file("signal/mod.rs", "use crate::daemon::State;\n"));
    files.push(file("daemon/run.rs", "fn f() { crate::signal::send(); }\n"));
    let found = cycles(&files);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].starts_with("cycle daemon -> signal -> daemon: daemon -> signal at src/daemon/run.rs:1 `crate::signal::send`; signal -> daemon at src/signal/mod.rs:1"),
        "{found:?}"
    );
    // The same files break the daemon rule, named as such.
    let daemon = daemon_uses(&files);
    assert_eq!(daemon.len(), 1, "{daemon:?}");
    assert!(
        daemon[0].starts_with("signal uses daemon (signal, watch and telemetry never use daemon)")
    );
}

#[test]
fn checker_finds_an_impure_import() {
    let mut files = clean_house();
    files.push(file(
        "manifest/load.rs",
        "use std::{fs, io};\nuse std::time::Instant;\nfn f() { let t = Instant::now(); }\n\
         fn g() { let v = std::env::var(\"X\"); let mut b = [0u8; 4]; getrandom::getrandom(&mut b); }\n",
    ));
    files.push(file("policy/net.rs", "use tokio::net::TcpStream;\n"));
    let found = impurities(&files);
    let places: Vec<&str> = found
        .iter()
        .map(|p| p.split(": ").next().unwrap_or(""))
        .collect();
    assert_eq!(
        places,
        [
            "src/manifest/load.rs:1",
            "src/manifest/load.rs:3",
            "src/manifest/load.rs:4",
            "src/manifest/load.rs:4",
            "src/policy/net.rs:1",
        ],
        "{found:#?}"
    );
    assert!(
        found[0].contains("`std::fs` in manifest, which is pure (no std::fs)"),
        "{found:?}"
    );
}

#[test]
fn checker_finds_a_long_file() {
    let mut files = clean_house();
    files.push(file("scan/mod.rs", &"// x\n".repeat(MAX_LINES + 1)));
    files.push(file("scan/ok.rs", &"// x\n".repeat(MAX_LINES)));
    assert_eq!(long_files(&files), ["src/scan/mod.rs: 501 lines"]);
}
