//! The table of malformed bodies: one corruption of the base manifest per
//! case, each refused by the parser itself (not by the digest check) with
//! the line it is on; and numbers in any but their canonical spelling.

use super::*;

const POLICY_UNKNOWN_FIELD: &[u8] = b"policy {\"exclude\":[],\"one_file_system\":true,\
    \"rules\":[],\"allow\":{\"content_may_differ\":[],\"may_appear\":[]},\"x\":1}";
const COLUMNS_SHORT: &[u8] =
    b"columns path type mode uid gid size hash target device xattrs mtime ctime atime";
const COLUMNS_REORDERED: &[u8] =
    b"columns type path mode uid gid size hash target device xattrs mtime ctime atime inode";

/// Body-level corruptions: each is checked with `parse_body` and, with the
/// digest recomputed, with `Manifest::from_bytes` (plain and compressed), so
/// the parser itself (not the digest check) refuses them.
fn body_corruptions() -> Vec<(&'static str, Vec<u8>, Expect)> {
    use Expect::{Line, LineOrOther, Other};
    let mut swapped = base_lines();
    swapped.swap(7, 8);
    let mut header_swapped = base_lines();
    header_swapped.swap(1, 2);
    let mut extra_line = base_lines();
    extra_line.push(b"/d\tf\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-".to_vec());
    let mut blank_between = base_lines();
    blank_between.insert(8, Vec::new());
    let mut trailing_blank = base_lines();
    trailing_blank.push(Vec::new());
    let policy_line = base_lines()[3].clone();
    let mut crlf = base_lines();
    crlf[0].push(b'\r');

    let v = vec![
        // Header.
        ("empty body", Vec::new(), Other),
        ("only a newline", b"\n".to_vec(), Other),
        ("missing driftd-manifest line", remove_line(1), Other),
        (
            "magic in the wrong case",
            set_line(1, b"Driftd-manifest 1"),
            Other,
        ),
        ("wrong version", set_line(1, b"driftd-manifest 2"), Line(1)),
        ("version 0", set_line(1, b"driftd-manifest 0"), Line(1)),
        (
            "version not a number",
            set_line(1, b"driftd-manifest one"),
            Line(1),
        ),
        (
            "version with two spaces",
            set_line(1, b"driftd-manifest  1"),
            Line(1),
        ),
        (
            "version too large",
            set_line(1, b"driftd-manifest 99999999999"),
            Line(1),
        ),
        ("CRLF line ending", join(&crlf), Line(1)),
        ("missing driftd-version line", remove_line(2), Line(2)),
        ("header lines out of order", join(&header_swapped), Line(2)),
        ("missing image-id line", remove_line(3), Line(3)),
        (
            "image-id bad escape",
            set_line(3, b"image-id a\\qb"),
            Line(3),
        ),
        (
            "image-id not UTF-8",
            set_line(3, b"image-id \\xff"),
            Line(3),
        ),
        (
            "image-id raw control byte",
            set_line(3, b"image-id a\x01b"),
            Line(3),
        ),
        (
            "image-id without its space",
            set_line(3, b"image-id"),
            Line(3),
        ),
        ("missing policy line", remove_line(4), Line(4)),
        ("policy not JSON", set_line(4, b"policy {not json"), Line(4)),
        (
            "policy unknown field",
            set_line(4, POLICY_UNKNOWN_FIELD),
            Line(4),
        ),
        (
            "policy missing field",
            set_line(4, b"policy {\"exclude\":[]}"),
            Line(4),
        ),
        (
            "policy truncated",
            set_line(4, &policy_line[..policy_line.len() - 1]),
            Line(4),
        ),
        ("missing columns line", remove_line(5), Line(5)),
        ("bad column line", set_line(5, COLUMNS_SHORT), Line(5)),
        ("columns reordered", set_line(5, COLUMNS_REORDERED), Line(5)),
        (
            "columns trailing space",
            set_line(5, format!("columns {} ", format::COLUMNS).as_bytes()),
            Line(5),
        ),
        ("missing entries line", remove_line(6), Line(6)),
        (
            "entry count not a number",
            set_line(6, b"entries four"),
            Line(6),
        ),
        ("entry count negative", set_line(6, b"entries -1"), Line(6)),
        ("entry count empty", set_line(6, b"entries "), Line(6)),
        ("entry count too high", set_line(6, b"entries 5"), Other),
        (
            "entry count huge",
            set_line(6, b"entries 18446744073709551615"),
            Line(6),
        ),
        ("entry count too low", set_line(6, b"entries 3"), Line(10)),
        ("entry count zero", set_line(6, b"entries 0"), Line(7)),
        ("header only", join(&base_lines()[..6]), Other),
        ("body cut after an entry", join(&base_lines()[..8]), Other),
        ("extra entry line", join(&extra_line), Line(11)),
        (
            "blank line between entries",
            join(&blank_between),
            LineOrOther(9),
        ),
        ("blank line after entries", join(&trailing_blank), Line(11)),
        // Entry lines.
        ("unsorted paths", join(&swapped), Line(9)),
        ("duplicate path", set_field(9, PATH, b"/a"), Line(9)),
        (
            "duplicate path via an escape",
            set_field(9, PATH, b"/\\x61"),
            Line(9),
        ),
        ("root not first", set_field(7, PATH, b"/z"), Line(8)),
        ("relative path", set_field(8, PATH, b"a"), Line(8)),
        ("empty path", set_field(8, PATH, b""), Line(8)),
        ("bad escape in path", set_field(8, PATH, b"/a\\q"), Line(8)),
        (
            "truncated escape in path",
            set_field(8, PATH, b"/a\\x4"),
            Line(8),
        ),
        (
            "bad hex escape in path",
            set_field(8, PATH, b"/a\\xzz"),
            Line(8),
        ),
        (
            "trailing backslash in path",
            set_field(8, PATH, b"/a\\"),
            Line(8),
        ),
        (
            "raw control byte in path",
            set_field(8, PATH, b"/a\x01"),
            Line(8),
        ),
        ("raw CR in path", set_field(8, PATH, b"/a\r"), Line(8)),
        ("raw DEL in path", set_field(8, PATH, b"/a\x7f"), Line(8)),
        ("NUL in path", set_field(8, PATH, b"/a\\x00"), Line(8)),
        ("raw NUL in path", set_field(8, PATH, b"/a\x00"), Line(8)),
        // Canonical paths only, however spelled: each of these would name
        // a place outside the root or one place twice.
        ("trailing slash", set_field(8, PATH, b"/a/"), Line(8)),
        ("double slash", set_field(8, PATH, b"/a//x"), Line(8)),
        ("leading double slash", set_field(8, PATH, b"//a"), Line(8)),
        ("dot component", set_field(8, PATH, b"/a/./x"), Line(8)),
        ("dot at the end", set_field(8, PATH, b"/a/."), Line(8)),
        ("dot-dot component", set_field(8, PATH, b"/a/../x"), Line(8)),
        ("dot-dot at the end", set_field(8, PATH, b"/a/.."), Line(8)),
        (
            "dot-dot below the root",
            set_field(8, PATH, b"/.."),
            Line(8),
        ),
        ("root spelled //", set_field(7, PATH, b"//"), Line(7)),
        ("root spelled /.", set_field(7, PATH, b"/."), Line(7)),
        (
            "dot-dot spelled with escapes",
            set_field(8, PATH, b"/a\\x2f\\x2e\\x2e"),
            Line(8),
        ),
        ("unknown type", set_field(8, TYPE, b"x"), Line(8)),
        ("type in upper case", set_field(8, TYPE, b"F"), Line(8)),
        ("type too long", set_field(8, TYPE, b"ff"), Line(8)),
        ("type empty", set_field(8, TYPE, b""), Line(8)),
        ("bad mode 0999", set_field(8, MODE, b"0999"), Line(8)),
        ("mode too long", set_field(8, MODE, b"10644"), Line(8)),
        ("mode empty", set_field(8, MODE, b""), Line(8)),
        ("mode hex", set_field(8, MODE, b"0x1f"), Line(8)),
        ("mode negative", set_field(8, MODE, b"-644"), Line(8)),
        ("uid negative", set_field(8, UID, b"-1"), Line(8)),
        ("uid too large", set_field(8, UID, b"4294967296"), Line(8)),
        ("uid with sign", set_field(8, UID, b"+1"), Line(8)),
        ("uid empty", set_field(8, UID, b""), Line(8)),
        ("gid not a number", set_field(8, GID, b"root"), Line(8)),
        ("gid with space", set_field(8, GID, b" 0"), Line(8)),
        ("size fractional", set_field(8, SIZE, b"1.5"), Line(8)),
        (
            "size too large",
            set_field(8, SIZE, b"18446744073709551616"),
            Line(8),
        ),
        ("bad hex in hash", set_field(8, HASH, &[b'g'; 64]), Line(8)),
        ("hash too short", set_field(8, HASH, &[b'a'; 63]), Line(8)),
        ("hash too long", set_field(8, HASH, &[b'a'; 66]), Line(8)),
        ("hash empty", set_field(8, HASH, b""), Line(8)),
        (
            "bad escape in target",
            set_field(9, TARGET, b"/a\\q"),
            Line(9),
        ),
        (
            "raw control byte in target",
            set_field(9, TARGET, b"/a\x02"),
            Line(9),
        ),
        ("bad device 1:x", set_field(10, DEVICE, b"1:x"), Line(10)),
        ("bad device x:1", set_field(10, DEVICE, b"x:1"), Line(10)),
        (
            "device without colon",
            set_field(10, DEVICE, b"13"),
            Line(10),
        ),
        (
            "device with three parts",
            set_field(10, DEVICE, b"1:3:0"),
            Line(10),
        ),
        ("device empty", set_field(10, DEVICE, b""), Line(10)),
        ("device negative", set_field(10, DEVICE, b"-1:3"), Line(10)),
        (
            "xattrs not sorted",
            set_field(8, XATTRS, b"user.b=02;user.a=01"),
            Line(8),
        ),
        (
            "xattrs duplicate name",
            set_field(8, XATTRS, b"user.a=01;user.a=02"),
            Line(8),
        ),
        ("xattr without =", set_field(8, XATTRS, b"user.a"), Line(8)),
        ("xattr empty name", set_field(8, XATTRS, b"=01"), Line(8)),
        ("xattr odd hex", set_field(8, XATTRS, b"user.a=0"), Line(8)),
        ("xattr bad hex", set_field(8, XATTRS, b"user.a=zz"), Line(8)),
        (
            "xattr bad escape in name",
            set_field(8, XATTRS, b"user.\\q=00"),
            Line(8),
        ),
        (
            "xattrs trailing separator",
            set_field(8, XATTRS, b"user.a=01;"),
            Line(8),
        ),
        (
            "xattrs leading separator",
            set_field(8, XATTRS, b";user.a=01"),
            Line(8),
        ),
        (
            "bad mtime: short nanoseconds",
            set_field(8, MTIME, b"1.5"),
            Line(8),
        ),
        (
            "bad mtime: no dot",
            set_field(8, MTIME, b"1700000000"),
            Line(8),
        ),
        (
            "bad mtime: letters",
            set_field(8, MTIME, b"x.000000000"),
            Line(8),
        ),
        (
            "bad mtime: no seconds",
            set_field(8, MTIME, b".000000000"),
            Line(8),
        ),
        (
            "bad ctime: 10 digit nanoseconds",
            set_field(8, CTIME, b"1.0000000000"),
            Line(8),
        ),
        (
            "bad ctime: signed nanoseconds",
            set_field(8, CTIME, b"1.+00000000"),
            Line(8),
        ),
        (
            "bad atime: two dots",
            set_field(8, ATIME, b"1.000000000.0"),
            Line(8),
        ),
        (
            "bad atime: seconds overflow",
            set_field(8, ATIME, b"9223372036854775808.000000000"),
            Line(8),
        ),
        ("bad inode", set_field(8, INODE, b"0x10"), Line(8)),
        ("inode negative", set_field(8, INODE, b"-5"), Line(8)),
        ("too many fields", set_field(8, INODE, b"1\t2"), Line(8)),
        (
            "too few fields",
            {
                let mut l = base_lines();
                let cut = l[7].iter().rposition(|&b| b == b'\t').unwrap();
                l[7].truncate(cut);
                join(&l)
            },
            Line(8),
        ),
        ("one field only", set_line(9, b"/b"), Line(9)),
        ("empty entry line after a space", set_line(9, b" "), Line(9)),
        (
            "spaces instead of tabs",
            {
                let mut l = base_lines();
                for b in l[9].iter_mut() {
                    if *b == b'\t' {
                        *b = b' ';
                    }
                }
                join(&l)
            },
            Line(10),
        ),
    ];
    v
}

#[test]
fn malformed_bodies_are_refused_with_the_right_line() {
    let cases = body_corruptions();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    // The base itself is valid: the corruptions are what fails.
    let base = join(&base_lines());
    assert_eq!(
        format::parse_body(&base).unwrap(),
        (base_manifest().header, base_manifest().entries)
    );
    assert_eq!(
        Manifest::from_bytes(&with_digest(&base)).unwrap(),
        base_manifest()
    );
    for (name, body, want) in cases {
        assert_ne!(body, base, "{name}: the corruption changed nothing");
        assert_refused(name, format::parse_body(&body), want);
        let text = with_digest(&body);
        assert_refused(name, Manifest::from_bytes(&text), want);
        let z = format::compress(&text).unwrap();
        assert_refused(name, Manifest::from_bytes(&z), want);
    }
}

/// A body announcing fewer entries than it holds is wrong at the first line
/// past the count, whatever follows: a later malformed line must not be
/// reported instead (the entry parser checks the count before it parses a
/// line).
#[test]
fn an_extra_line_is_reported_before_a_later_bad_line() {
    let mut l = base_lines();
    l[5] = b"entries 2".to_vec();
    set_field_in(&mut l, 10, MODE, b"0999");
    let body = join(&l);
    let want = Expect::Line(9);
    assert_refused(
        "count 2, bad mode on line 10",
        format::parse_body(&body),
        want,
    );
    let text = with_digest(&body);
    assert_refused(
        "count 2, bad mode on line 10",
        Manifest::from_bytes(&text),
        want,
    );
}

/// Numbers are ASCII digits only. Rust's `str::parse`/`from_str_radix`
/// accept a leading `+`; a parser built on them would accept text the
/// encoder never writes (two bodies, two digests, one manifest) in the
/// mode, the device, a timestamp's seconds, the version or the count.
#[test]
fn numbers_with_a_plus_sign_are_refused() {
    use Expect::Line;
    let cases = [
        ("mode +755", set_field(8, MODE, b"+644"), Line(8)),
        ("device +1:+3", set_field(10, DEVICE, b"+1:+3"), Line(10)),
        (
            "mtime +1700000000",
            set_field(8, MTIME, b"+1700000000.123456789"),
            Line(8),
        ),
        (
            "format version +1",
            set_line(1, b"driftd-manifest +1"),
            Line(1),
        ),
        ("entry count +4", set_line(6, b"entries +4"), Line(6)),
    ];
    let accepted: Vec<&str> = cases
        .iter()
        .filter(|(_, body, _)| format::parse_body(body).is_ok())
        .map(|(name, _, _)| *name)
        .collect();
    assert!(
        accepted.is_empty(),
        "non-canonical numbers were accepted: {accepted:?}"
    );
    for (name, body, want) in cases {
        assert_refused(name, format::parse_body(&body), want);
    }
}
