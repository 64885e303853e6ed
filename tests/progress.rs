//! Progress on a terminal: `driftd bake` and `driftd check` draw a progress
//! line on stderr when, and only when, stderr is a terminal (never beside
//! `--format json`), without colour under `NO_COLOR` or `--color never`,
//! and what goes to stdout (the report, the JSON) and the manifest written
//! are byte for byte the same with a terminal and without one.
//!
//! The terminal is a pseudo-terminal made by `script` (util-linux's
//! bsdutils, installed by .ci/setup): whatever driftd writes to the
//! terminal comes out on `script`'s stdout; driftd's stdout (and, in one
//! case, its stderr) is redirected to a file inside it.

mod common;

use common::{run, s, Dir};
use driftd::policy::{CompiledPolicy, Policy};
use driftd::scan::{scan_with, Progress, ScanControl, ScanOptions};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

/// `sh -c` quoting of one word.
fn quote(w: &str) -> String {
    format!("'{}'", w.replace('\'', r"'\''"))
}

/// What a run on a terminal did.
struct OnTerminal {
    code: i32,
    /// Everything driftd wrote to the terminal.
    terminal: String,
    /// driftd's stdout (redirected to a file).
    stdout: Vec<u8>,
}

/// Run driftd with `args` under a pseudo-terminal (as `TERM=xterm`, 120
/// columns), its stdout sent to a file and, with `stderr_to_file`, its
/// stderr too (then returned as the `terminal` text instead). `None` when
/// `script` is missing (and not in CI, where that fails).
fn on_terminal(
    d: &Dir,
    args: &[&str],
    env: &[(&str, &str)],
    stderr_to_file: bool,
) -> Option<OnTerminal> {
    let script = common::tool("script", "bsdutils")?;
    let (out, err) = (d.outside("tty.stdout"), d.outside("tty.stderr"));
    let mut line = std::iter::once(common::BIN)
        .chain(args.iter().copied())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ");
    line.push_str(&format!(" >{}", quote(s(&out))));
    if stderr_to_file {
        line.push_str(&format!(" 2>{}", quote(s(&err))));
    }
    let mut cmd = Command::new(script);
    cmd.args(["-qec", &format!("stty cols 120; exec {line}"), "/dev/null"])
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("CLICOLOR")
        .env_remove("CLICOLOR_FORCE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = run(&mut cmd);
    let terminal = if stderr_to_file {
        std::fs::read_to_string(&err).expect("read the redirected stderr")
    } else {
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    Some(OnTerminal {
        code: o.code,
        terminal,
        stdout: std::fs::read(&out).expect("read the redirected stdout"),
    })
}

/// A colour (SGR) escape sequence: ESC [ digits and semicolons, then `m`.
fn has_sgr(text: &str) -> bool {
    text.split('\x1b').skip(1).any(|rest| {
        rest.strip_prefix('[').is_some_and(|r| {
            let params = r.trim_start_matches(|c: char| c.is_ascii_digit() || c == ';');
            params.starts_with('m')
        })
    })
}

/// No progress: no carriage return, no escape sequence.
fn assert_no_progress(stderr: &str, what: &str) {
    assert!(
        !stderr.contains('\r') && !stderr.contains('\x1b'),
        "{what}: progress bytes in stderr: {stderr:?}"
    );
}

/// The JSON report with its wall time (the one field that differs from run
/// to run) set to 0.
fn without_duration(json: &[u8]) -> Vec<u8> {
    let text = String::from_utf8(json.to_vec()).expect("UTF-8 JSON");
    let mut out = String::new();
    for l in text.lines() {
        match l.find("\"duration_seconds\": ") {
            Some(i) => out.push_str(&format!("{}\"duration_seconds\": 0", &l[..i])),
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// A standard image baked, then drifted (a file rewritten, one added), and
/// the entry count and bytes the manifest records (from a clean check
/// first).
fn drifted() -> (Dir, u64, u64) {
    let d = Dir::standard("progress");
    d.bake(&[]);
    let clean = d.check();
    clean.assert_clean();
    let summary = &clean.json["summary"];
    let entries = summary["entries_checked"]
        .as_u64()
        .expect("entries_checked");
    let bytes = summary["bytes_hashed"].as_u64().expect("bytes_hashed");
    assert!(entries > 5 && bytes > 0 && bytes < 1024, "{summary}");
    d.rewrite("/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
    d.write("/usr/bin/evil", "#!/bin/sh\n");
    (d, entries, bytes)
}

fn text_args(d: &Dir) -> Vec<&str> {
    let (m, r) = (s(&d.manifest), s(&d.root));
    vec!["check", "--manifest", m, "--root", r, "--allow-unsigned"]
}

#[test]
fn check_shows_progress_against_the_manifest_on_a_terminal_and_stdout_is_unchanged() {
    let (d, entries, bytes) = drifted();
    let args = text_args(&d);
    let Some(tty) = on_terminal(&d, &args, &[], false) else {
        return;
    };
    let plain = run(common::driftd().args(&args));
    assert_eq!(tty.code, 1, "on a terminal:\n{}", tty.terminal);
    plain.assert_code(1);
    let t = &tty.terminal;
    for needle in [
        "checking".to_owned(),
        format!("/{entries} entries"),
        format!("/{bytes} B"),
        "ETA".to_owned(),
    ] {
        assert!(t.contains(&needle), "no {needle:?} on the terminal: {t:?}");
    }
    let (_, after) = t.rsplit_once("\x1b[2K").expect("a cleared line");
    assert!(
        !after.contains("entries"),
        "the progress line is not cleared at the end: {t:?}"
    );
    assert!(has_sgr(t), "no colour on a colour terminal: {t:?}");
    assert_eq!(
        String::from_utf8_lossy(&tty.stdout),
        plain.stdout_str(),
        "the report differs with a terminal on stderr"
    );
    assert!(plain.stdout_str().contains("DRIFTED: 1 added, 1 modified"));
    assert_no_progress(&plain.stderr, "check with stderr a pipe");
}

#[test]
fn check_draws_nothing_with_format_json_even_on_a_terminal() {
    let (d, ..) = drifted();
    let mut args = text_args(&d);
    args.extend(["--format", "json"]);
    let Some(tty) = on_terminal(&d, &args, &[], false) else {
        return;
    };
    let plain = run(common::driftd().args(&args));
    assert_eq!((tty.code, plain.code), (1, 1), "{plain}");
    assert!(
        !tty.terminal.contains("checking") && !tty.terminal.contains('\x1b'),
        "progress drawn beside --format json: {:?}",
        tty.terminal
    );
    assert_eq!(
        String::from_utf8_lossy(&without_duration(&tty.stdout)),
        String::from_utf8_lossy(&without_duration(&plain.stdout)),
        "the JSON differs with a terminal on stderr"
    );
    assert_no_progress(&plain.stderr, "check --format json");
}

#[test]
fn nothing_is_drawn_when_only_stdout_is_a_terminal() {
    let (d, ..) = drifted();
    let Some(check) = on_terminal(&d, &text_args(&d), &[], true) else {
        return;
    };
    assert_eq!(check.code, 1);
    assert_no_progress(&check.terminal, "check with stderr a file");
    let out = d.outside("again.zst");
    let bake = ["bake", "--root", s(&d.root), "--output", s(&out)];
    let bake = on_terminal(&d, &bake, &[], true).expect("script was found");
    assert_eq!(bake.code, 0, "{}", bake.terminal);
    assert_no_progress(&bake.terminal, "bake with stderr a file");
    assert!(bake.terminal.starts_with("baked "), "{}", bake.terminal);
}

#[test]
fn no_color_and_color_never_draw_progress_without_colour() {
    let (d, ..) = drifted();
    let mut never = text_args(&d);
    never.extend(["--color", "never"]);
    let out = d.outside("nc.zst");
    let bake = ["bake", "--root", s(&d.root), "--output", s(&out)];
    let no_color = [("NO_COLOR", "1")];
    for (args, env) in [
        (&text_args(&d)[..], &no_color[..]),
        (&never[..], &[][..]),
        (&bake[..], &no_color[..]),
    ] {
        let Some(tty) = on_terminal(&d, args, env, false) else {
            return;
        };
        let t = &tty.terminal;
        assert!(
            t.contains(" entries"),
            "{args:?} {env:?}: no progress: {t:?}"
        );
        assert!(!has_sgr(t), "{args:?} {env:?}: colour: {t:?}");
    }
}

#[test]
fn bake_shows_a_spinner_on_a_terminal_and_writes_the_same_manifest() {
    let d = Dir::standard("progress-bake");
    let (a, b) = (d.outside("tty.zst"), d.outside("plain.zst"));
    let args = |m: &Path| {
        let v = [
            "bake",
            "--root",
            s(&d.root),
            "--output",
            s(m),
            "--image-id",
            "x",
        ];
        v.map(str::to_owned)
    };
    let tty_args = args(&a);
    let tty_args: Vec<&str> = tty_args.iter().map(String::as_str).collect();
    let Some(tty) = on_terminal(&d, &tty_args, &[], false) else {
        return;
    };
    let plain = run(common::driftd().args(args(&b)));
    assert_eq!(tty.code, 0, "{}", tty.terminal);
    plain.assert_code(0);
    let t = &tty.terminal;
    for needle in ["baking", " entries, ", " hashed, ", "/s"] {
        assert!(t.contains(needle), "no {needle:?} on the terminal: {t:?}");
    }
    // The line is cleared before the summary is printed.
    let (before, summary) = t.rsplit_once("\x1b[2K").expect("a cleared line");
    assert!(before.contains("baking"), "{t:?}");
    assert!(summary.starts_with("baked "), "{t:?}");
    assert!(tty.stdout.is_empty() && plain.stdout.is_empty());
    assert_no_progress(&plain.stderr, "bake with stderr a pipe");
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "the manifest differs when baked on a terminal"
    );
}

#[test]
fn the_scan_counts_every_event_and_the_bytes_it_hashed() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..50usize {
        std::fs::write(dir.path().join(format!("f{i}")), vec![b'x'; i]).unwrap();
    }
    let progress = Arc::new(Progress::default());
    let control = ScanControl {
        progress: Some(progress.clone()),
        ..ScanControl::default()
    };
    let policy = CompiledPolicy::new(Policy::default(), "policy").unwrap();
    let opts = ScanOptions {
        root: dir.path(),
        policy: &policy,
        threads: 2,
    };
    let mut events = 0u64;
    let stats = scan_with(&opts, &control, &mut |_| events += 1).unwrap();
    assert_eq!(events, 51, "the root and 50 files");
    assert_eq!((progress.entries(), progress.bytes()), (51, (0..50).sum()));
    assert_eq!(stats.bytes_hashed, progress.bytes());
    // A handle spans scans: a second one adds to it.
    scan_with(&opts, &control, &mut |_| {}).unwrap();
    assert_eq!(progress.entries(), 102);
}
