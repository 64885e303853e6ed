//! Adversarial writes and secrets, with the real binary: what a local user
//! with a foothold (uid 65534, through `setpriv`) can try against driftd
//! through the filesystem and its messages.
//!
//! 1. **Redirect a write.** In a sticky world-writable directory (mode
//!    1777, as /tmp), the attacker plants symlinks to a file root owns at
//!    the names driftd's writer would use: the old predictable temporary
//!    name (`.NAME.tmp.PID`) for every pid the writer may get, a batch of
//!    guesses at the new random names, and the target itself.
//! 2. **Take the output.** The same names, pre-created as the attacker's
//!    own files (mode 0666), so that driftd would write the secret key into
//!    a file the attacker owns.
//!
//!    Both for `bake --output`, `keygen` (also under a hostile umask), the
//!    agent's state file and its outbox: the symlinks' targets are never
//!    written, the attacker's files never receive a byte, what driftd wrote
//!    is a regular file owned by the writer with the intended mode, and no
//!    temporary file is left.
//! 3. **Use a secret others could read or rewrite.** bake's signing key, a
//!    webhook secret (at agent start and in `validate`) and the web
//!    config's TLS key at 0644, 0666, 0660 or owned by another user are
//!    refused with the file and the fix named; 0640 and 0600 are accepted.
//! 4. **Read credentials off messages.** A webhook URL with userinfo and a
//!    token never shows its secret parts in config errors, `validate`
//!    output or the agent's log.
//!
//! Every case needs root (it runs the attacker as uid 65534 and chowns):
//! `skip_unless_root` and `prepare_for_nobody` fail them under CI instead
//! of skipping. The attacker's plants are made by this test binary itself,
//! re-run as uid 65534 ([`adversary_plants_what_it_is_told`]), so that
//! thousands of names cost one process (the writer's pid stays
//! predictable) and no tool beyond `setpriv` is needed.

mod agent_util;
mod common;
mod signal_util;

use agent_util::{free_port, Agent, WAIT};
use common::{as_nobody, chmod_path, driftd, prepare_for_nobody, run, s, Dir, Output, BIN, NOBODY};
use signal_util::{launch_with, outbox_files, signals_section, start, webhook, Receiver, Secret};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

// ------------------------------------------------------------ the attacker

/// What the attacker's files hold.
const PLANTED: &str = "planted by uid 65534\n";

/// What the victim (a file root owns, outside the shared directory) holds.
const VICTIM: &str = "root's file: must never change\n";

/// The plan file's variable: set, the planter test plants and returns.
const PLAN_ENV: &str = "DRIFTD_TEST_ADVERSARY_PLAN";

/// How the attacker fills a name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Form {
    /// A symlink to the victim.
    Link,
    /// A file of the attacker's, mode 0666.
    File,
}

/// One planted name.
#[derive(Debug, Clone)]
struct Plant {
    path: PathBuf,
    form: Form,
}

/// Carry out a plan: one `L\tPATH\tTARGET` or `F\tPATH` a line. Names that
/// exist already are skipped (the plan may repeat one).
fn execute(plan: &str) {
    for line in plan.lines() {
        let parts: Vec<&str> = line.split('\t').collect();
        match parts.as_slice() {
            ["L", path, target] => match std::os::unix::fs::symlink(target, path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("symlink {path}: {e}"),
            },
            ["F", path] => {
                use std::io::Write;
                match fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(path)
                {
                    Ok(mut f) => {
                        f.write_all(PLANTED.as_bytes()).unwrap();
                        f.set_permissions(fs::Permissions::from_mode(0o666))
                            .unwrap();
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => panic!("create {path}: {e}"),
                }
            }
            _ => panic!("bad plan line {line:?}"),
        }
    }
}

fn plan_text(plants: &[Plant], victim: &Path) -> String {
    plants
        .iter()
        .map(|p| match p.form {
            Form::Link => format!("L\t{}\t{}\n", s(&p.path), s(victim)),
            Form::File => format!("F\t{}\n", s(&p.path)),
        })
        .collect()
}

/// The entry point of the attacker's process; run directly, it proves
/// that a plan is carried out as written.
#[test]
fn adversary_plants_what_it_is_told() {
    if let Some(plan) = std::env::var_os(PLAN_ENV) {
        execute(&fs::read_to_string(plan).expect("read the plan"));
        return;
    }
    let d = Dir::new("planter");
    let victim = d.write_outside("victim", VICTIM);
    let plants = vec![
        Plant {
            path: d.outside("l"),
            form: Form::Link,
        },
        Plant {
            path: d.outside("f"),
            form: Form::File,
        },
    ];
    execute(&plan_text(&plants, &victim));
    execute(&plan_text(&plants, &victim));
    assert_eq!(fs::read_link(d.outside("l")).unwrap(), victim);
    assert_eq!(fs::read_to_string(d.outside("f")).unwrap(), PLANTED);
    assert_eq!(mode(&d.outside("f")), 0o666);
}

/// Plant `plants` as uid 65534 (this binary re-run through `setpriv`).
fn plant_as_nobody(d: &Dir, plants: &[Plant], victim: &Path) {
    let plan = d.write_outside(&format!("plan-{}", plants.len()), plan_text(plants, victim));
    chmod_path(&plan, 0o644);
    let exe = std::env::current_exe().expect("the test binary");
    let o = run(as_nobody(&exe)
        .args([
            "--exact",
            "adversary_plants_what_it_is_told",
            "--test-threads=1",
        ])
        .env(PLAN_ENV, &plan));
    assert!(
        o.code == 0 && o.stdout_str().contains("1 passed"),
        "the attacker could not plant (is the test binary reachable by uid {NOBODY}?)\n{o}"
    );
    for p in plants {
        let md = fs::symlink_metadata(&p.path).unwrap_or_else(|e| panic!("{:?}: {e}", p.path));
        assert_eq!(md.uid(), NOBODY, "{:?} is not the attacker's", p.path);
    }
}

/// A sticky world-writable directory (as /tmp) beside the root, and a
/// victim file root owns outside it.
fn shared(d: &Dir, name: &str) -> (PathBuf, PathBuf) {
    let dir = d.outside(name);
    fs::create_dir(&dir).unwrap();
    chmod_path(&dir, 0o1777);
    let victim = d.write_outside(&format!("{name}-victim"), VICTIM);
    chmod_path(&victim, 0o644);
    (dir, victim)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("stat {p:?}: {e}"))
        .mode()
        & 0o7777
}

fn kernel_number(name: &str) -> u64 {
    fs::read_to_string(format!("/proc/sys/kernel/{name}"))
        .unwrap_or_else(|e| panic!("read {name}: {e}"))
        .trim()
        .parse()
        .unwrap()
}

/// How many pids after the last one the old predictable names cover.
const PID_WINDOW: u64 = 2000;

/// The pids the next process may get: the window after the last pid given.
fn next_pids() -> Vec<u64> {
    let last = kernel_number("ns_last_pid");
    let max = kernel_number("pid_max");
    (1..=PID_WINDOW).map(|i| (last + i) % max).collect()
}

/// Guesses at the random names: 16 hex digits, as the writer makes them.
fn guesses(n: usize, seed: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let h = blake3::hash(format!("{seed}{i}").as_bytes());
            h.to_hex()[..16].to_string()
        })
        .collect()
}

/// Every temporary name a writer of `dir/name` could use, in `form`: the
/// old `.NAME.tmp.PID` for `pids`, and 64 guesses at `.NAME.tmp.RANDOM`.
fn temp_plants(dir: &Path, name: &str, pids: &[u64], form: Form) -> Vec<Plant> {
    let old = pids.iter().map(|p| p.to_string());
    old.chain(guesses(64, &format!("{name}{form:?}")))
        .map(|suffix| Plant {
            path: dir.join(format!(".{name}.tmp.{suffix}")),
            form,
        })
        .collect()
}

/// The attacker's plants are as they were, but for `replaced` (targets
/// the writer renamed over), and the victim never changed.
fn assert_untouched(plants: &[Plant], victim: &Path, replaced: &[&Path]) {
    assert_eq!(
        fs::read_to_string(victim).unwrap(),
        VICTIM,
        "the victim was written"
    );
    assert_eq!(mode(victim), 0o644);
    for p in plants
        .iter()
        .filter(|p| !replaced.contains(&p.path.as_path()))
    {
        let md = fs::symlink_metadata(&p.path).unwrap_or_else(|e| panic!("{:?}: {e}", p.path));
        match p.form {
            Form::Link => assert!(md.file_type().is_symlink(), "{:?}", p.path),
            Form::File => {
                assert!(md.file_type().is_file(), "{:?}", p.path);
                assert_eq!(
                    fs::read_to_string(&p.path).unwrap(),
                    PLANTED,
                    "driftd wrote into the attacker's file {:?}",
                    p.path
                );
            }
        }
        assert_eq!(md.uid(), NOBODY);
    }
}

/// `path` is what driftd wrote: a regular file owned by root (the writer)
/// with exactly `want` as mode.
fn assert_written(path: &Path, want: u32) {
    let md = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("stat {path:?}: {e}"));
    assert!(md.file_type().is_file(), "{path:?} is not a regular file");
    assert_eq!((md.uid(), md.gid()), (0, 0), "{path:?} is not the writer's");
    assert_eq!(
        md.mode() & 0o7777,
        want,
        "{path:?} has mode {:o}",
        md.mode() & 0o7777
    );
}

/// Nothing in `dir` but the plants and `expected`: no temporary file left.
fn assert_no_leftovers(dir: &Path, plants: &[Plant], expected: &[&Path]) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        assert!(
            expected.contains(&p.as_path()) || plants.iter().any(|x| x.path == p),
            "left behind: {p:?}"
        );
    }
}

/// Run `args` of driftd through `sh -c 'umask U; echo PID; exec driftd'`,
/// so the pid it ran as is known: (output, pid).
fn driftd_with_pid(umask: &str, args: &[&str]) -> (Output, u64) {
    let mut c = std::process::Command::new("/bin/sh");
    c.args([
        "-c",
        &format!("umask {umask}; echo \"PID=$$\" >&2; exec \"$0\" \"$@\""),
    ])
    .arg(BIN)
    .args(args);
    let o = run(&mut c);
    let pid = o
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("PID="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no PID line\n{o}"));
    (o, pid)
}

/// The attack reached the old predictable name: the writer's pid was
/// among those planted.
fn assert_pid_covered(pid: u64, pids: &[u64]) {
    assert!(
        pids.contains(&pid),
        "the writer ran as pid {pid}, outside the {PID_WINDOW} pids planted from {}: \
         the machine is too busy for this test",
        pids[0]
    );
}

// ------------------------------------------------------- 1 and 2: writes

#[test]
fn bake_output_in_a_sticky_directory_is_never_redirected_or_taken() {
    let d = Dir::standard("adv-bake");
    if !prepare_for_nobody(&d) {
        return;
    }
    for form in [Form::Link, Form::File] {
        let (dir, victim) = shared(&d, &format!("shared-{form:?}"));
        let out = dir.join("image.manifest");
        let pids = next_pids();
        let mut plants = temp_plants(&dir, "image.manifest", &pids, form);
        // The target itself: a symlink to the victim, or the attacker's file.
        plants.push(Plant {
            path: out.clone(),
            form,
        });
        plant_as_nobody(&d, &plants, &victim);
        let (o, pid) = driftd_with_pid("022", &["bake", "--root", s(&d.root), "--output", s(&out)]);
        o.assert_code(0);
        assert_pid_covered(pid, &pids);
        assert_untouched(&plants, &victim, &[&out]);
        assert_written(&out, 0o644);
        common::load_manifest(&out);
        assert_no_leftovers(&dir, &plants, &[&out]);
    }
}

#[test]
fn keygen_in_a_sticky_directory_keeps_the_secret_key_root_s_under_any_umask() {
    let d = Dir::new("adv-keygen");
    if !prepare_for_nobody(&d) {
        return;
    }
    for (form, umask) in [
        (Form::Link, "000"),
        (Form::File, "077"),
        (Form::Link, "777"),
    ] {
        let (dir, victim) = shared(&d, &format!("shared-{form:?}-{umask}"));
        let (sec, public) = (dir.join("driftd.key"), dir.join("driftd.pub"));
        let pids = next_pids();
        let mut plants = temp_plants(&dir, "driftd.key", &pids, form);
        plants.extend(temp_plants(&dir, "driftd.pub", &pids, form));
        plants.push(Plant {
            path: sec.clone(),
            form,
        });
        plant_as_nobody(&d, &plants, &victim);
        // The attacker keeps a handle on the file it planted as the key.
        let held = d.outside(&format!("held-{form:?}-{umask}"));
        if form == Form::File {
            fs::hard_link(&sec, &held).unwrap();
        }
        let args = [
            "keygen",
            "--secret-key",
            s(&sec),
            "--public-key",
            s(&public),
        ];
        // Without --force, an existing name is refused.
        let (o, _) = driftd_with_pid(umask, &args);
        o.assert_code(2)
            .assert_stderr_contains("refusing to overwrite");
        let mut forced = args.to_vec();
        forced.push("--force");
        let (o, pid) = driftd_with_pid(umask, &forced);
        o.assert_code(0);
        assert_pid_covered(pid, &pids);
        assert_untouched(&plants, &victim, &[&sec]);
        assert_written(&sec, 0o600);
        assert_written(&public, 0o644);
        if form == Form::File {
            assert_eq!(
                fs::read_to_string(&held).unwrap(),
                PLANTED,
                "the key went into the attacker's file"
            );
        }
        // The attacker cannot read the key.
        let o = run(as_nobody("/bin/cat").arg(&sec));
        assert_ne!(o.code, 0, "uid {NOBODY} read the secret key\n{o}");
        assert_no_leftovers(&dir, &plants, &[&sec, &public]);
    }
}

/// The name of the one `*.pending.json` of `backend`.
fn pending_key(state: &Path, backend: &str) -> Option<String> {
    let files = outbox_files(state, backend, ".pending.json");
    let name = files.first()?.file_name()?.to_str()?.to_owned();
    Some(name.strip_suffix(".pending.json")?.to_owned())
}

#[test]
fn the_agent_s_state_file_and_outbox_in_a_sticky_directory_are_never_redirected() {
    let d = Dir::standard("adv-agent");
    d.bake(&[]);
    if !prepare_for_nobody(&d) {
        return;
    }
    let (state, victim) = shared(&d, "state");
    // The outbox as a shared directory too, so the attacker can plant in it.
    let outbox = state.join("outbox/hook");
    fs::create_dir_all(&outbox).unwrap();
    for p in [state.join("outbox"), outbox.clone()] {
        chmod_path(&p, 0o1777);
    }
    let secret = Secret::whsec().write(&d);
    let rx = Receiver::start();
    rx.set_refusing(true);
    let launch = launch_with(
        &d,
        &(signals_section("100ms", "300ms") + &webhook("hook", &rx.url("/hook"), &secret, "")),
    )
    .state_dir(&state);
    let mut a: Agent = start(&launch, &["hook"]);
    let pid = [u64::from(a.pid)];
    let state_file = state.join("state.json");
    let mut plants = temp_plants(&state, "state.json", &pid, Form::Link);
    plants.extend(temp_plants(&state, "state.json", &[], Form::File));
    plant_as_nobody(&d, &plants, &victim);

    // Drift: the state file is written, a signal queued and refused.
    d.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    a.wait_drifted();
    let deadline = Instant::now() + WAIT;
    let key = loop {
        if let Some(k) = pending_key(&state, "hook") {
            break k;
        }
        assert!(
            Instant::now() < deadline,
            "no pending signal\n{}",
            a.log_tail(30)
        );
        std::thread::sleep(agent_util::POLL);
    };
    // Now that the key is known: the pending item's next rewrite and the
    // delivered marker, both at the old names and guessed ones.
    let pending_name = format!("{key}.pending.json");
    let delivered_name = format!("{key}.delivered.json");
    let mut outbox_plants = temp_plants(&outbox, &pending_name, &pid, Form::Link);
    outbox_plants.extend(temp_plants(&outbox, &delivered_name, &pid, Form::File));
    plant_as_nobody(&d, &outbox_plants, &victim);
    let before = rx.requests().len();
    rx.wait_requests(before + 2, &a);
    rx.set_refusing(false);
    let delivered = outbox.join(&delivered_name);
    let deadline = Instant::now() + WAIT;
    while !delivered.exists() || outbox.join(&pending_name).exists() {
        assert!(
            Instant::now() < deadline,
            "not delivered
{}",
            a.log_tail(30)
        );
        std::thread::sleep(agent_util::POLL);
    }
    assert_written(&delivered, 0o640);
    assert!(!outbox.join(&pending_name).exists());
    assert_written(&state_file, 0o640);
    plants.extend(outbox_plants);
    assert_untouched(&plants, &victim, &[]);
    assert_no_leftovers(&outbox, &plants, &[&delivered]);
    assert_no_leftovers(&state, &plants, &[&state_file, &state.join("outbox")]);
    a.assert_running();
}

// ------------------------------------------------------------ 3: secrets

/// The refused secret modes and owners, each with what the message says.
const REFUSED: [(u32, Option<u32>, &str); 4] = [
    (0o644, None, "is readable by others (mode 0644): chmod 0640"),
    (
        0o666,
        None,
        "is readable and writable by others and writable by its group (mode 0666): chmod 0640",
    ),
    (0o660, None, "is writable by its group (mode 0660): chmod 0640"),
    (
        0o600,
        Some(NOBODY),
        "is owned by uid 65534, who could rewrite it (only root may own it) (mode 0600): chown root",
    ),
];

/// The accepted ones.
const ACCEPTED: [u32; 2] = [0o640, 0o600];

/// Give `path` this mode and owner (root unless `owner`).
fn set_secret(path: &Path, mode: u32, owner: Option<u32>) {
    std::os::unix::fs::chown(path, Some(owner.unwrap_or(0)), Some(0)).unwrap();
    chmod_path(path, mode);
}

#[test]
fn bake_refuses_a_signing_key_others_could_read_or_rewrite() {
    if common::skip_unless_root("chown of a signing key") {
        return;
    }
    let d = Dir::standard("adv-signing-key");
    let (sec, public) = d.keygen("k");
    // Also through a symlink (a mounted secret volume): the file counts.
    let link = d.outside("link.key");
    std::os::unix::fs::symlink(&sec, &link).unwrap();
    for key in [&sec, &link] {
        for (m, owner, why) in REFUSED {
            set_secret(&sec, m, owner);
            let out = d.outside("refused.manifest");
            let o = d.try_bake_to(&out, &["--signing-key", s(key)]);
            o.assert_code(2)
                .assert_stderr_contains(&format!("signing key {} {why}", key.display()));
            assert!(
                !out.exists(),
                "a manifest was written with a refused key\n{o}"
            );
        }
        for m in ACCEPTED {
            set_secret(&sec, m, None);
            d.bake(&["--signing-key", s(key)]);
            d.check_with(&["--trusted-key", s(&public)]).assert_clean();
        }
    }
}

/// `driftd validate --format json` with these arguments: (exit status,
/// every check's message, the failed checks' names).
fn validate(args: &[&str]) -> (i32, String, Vec<String>) {
    let mut all = vec!["validate", "--format", "json"];
    all.extend_from_slice(args);
    let o = common::driftd_run(all);
    let v = o.json();
    let checks = v["checks"].as_array().unwrap();
    let text = checks
        .iter()
        .map(|c| format!("{}: {}", c["check"], c["message"].as_str().unwrap()))
        .collect::<Vec<_>>()
        .join("\n");
    let failed = checks
        .iter()
        .filter(|c| c["ok"] == false)
        .map(|c| c["check"].as_str().unwrap().to_string())
        .collect();
    (o.code, format!("{text}\n{}", o.stderr), failed)
}

/// `driftd run` that must refuse to start: its output.
fn run_refused(d: &Dir, config: &Path, extra: &[&str]) -> Output {
    let port = free_port().to_string();
    let listen = format!("127.0.0.1:{port}");
    let state = d.outside("refused-state");
    let mut args = vec![
        "run",
        "--config",
        s(config),
        "--root",
        s(&d.root),
        "--manifest",
        s(&d.manifest),
        "--allow-unsigned",
        "--state-dir",
        s(&state),
        "--listen",
        &listen,
    ];
    args.extend_from_slice(extra);
    let o = run(driftd().args(&args));
    o.assert_code(2);
    o
}

fn agent_config(d: &Dir, name: &str, tables: &str) -> PathBuf {
    d.write_outside(name, format!("[agent]\nallow_unsigned = true\n\n{tables}"))
}

#[test]
fn a_webhook_secret_others_could_read_or_rewrite_is_refused_at_start_and_by_validate() {
    if common::skip_unless_root("chown of a webhook secret") {
        return;
    }
    let d = Dir::standard("adv-webhook-secret");
    d.bake(&[]);
    let secret = Secret::raw().write(&d);
    let rx = Receiver::start();
    let cfg = agent_config(
        &d,
        "hook.toml",
        &webhook("hook", &rx.url("/hook"), &secret, ""),
    );
    let base = [
        "--config",
        s(&cfg),
        "--root",
        s(&d.root),
        "--manifest",
        s(&d.manifest),
    ];
    for (m, owner, why) in REFUSED {
        set_secret(&secret, m, owner);
        let want = format!("webhook secret {} {why}", secret.display());
        let (code, text, failed) = validate(&base);
        assert_eq!((code, failed), (2, vec!["signal".to_string()]), "{text}");
        assert!(text.contains(&want), "{text}");
        run_refused(&d, &cfg, &[]).assert_stderr_contains(&want);
    }
    for m in ACCEPTED {
        set_secret(&secret, m, None);
        let (code, text, _) = validate(&base);
        assert_eq!(code, 0, "{text}");
    }
    // And the agent starts with it (0600 now).
    let launch = launch_with(&d, &webhook("hook", &rx.url("/hook"), &secret, ""));
    let mut a = start(&launch, &["hook"]);
    a.assert_running();
}

/// A self-signed certificate for 127.0.0.1 and its key, as PEM.
fn certificate() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

#[test]
fn a_tls_key_others_could_read_or_rewrite_is_refused_at_start_and_by_validate() {
    if common::skip_unless_root("chown of a TLS key") {
        return;
    }
    let d = Dir::standard("adv-tls-key");
    d.bake(&[]);
    let (cert, key) = certificate();
    d.write_outside("server.crt", cert);
    let key_file = d.write_outside("server.key", &key);
    let web = d.write_outside(
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    let cfg = agent_config(&d, "plain.toml", "");
    let base = [
        "--config",
        s(&cfg),
        "--root",
        s(&d.root),
        "--manifest",
        s(&d.manifest),
        "--web.config.file",
        s(&web),
    ];
    for (m, owner, why) in REFUSED {
        set_secret(&key_file, m, owner);
        let want = format!(
            "tls_server_config.key_file: TLS private key {} {why}",
            key_file.display()
        );
        let (code, text, failed) = validate(&base);
        assert_eq!((code, failed), (2, vec!["web".to_string()]), "{text}");
        assert!(text.contains(&want), "{text}");
        run_refused(&d, &cfg, &["--web.config.file", s(&web)]).assert_stderr_contains(&want);
    }
    for m in ACCEPTED {
        set_secret(&key_file, m, None);
        let (code, text, _) = validate(&base);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("TLS on"), "{text}");
    }
    // A key written inline makes the web config itself the secret.
    let inline = d.write_outside(
        "web-inline.yml",
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key: |\n{}",
            key.lines()
                .map(|l| format!("    {l}\n"))
                .collect::<String>()
        ),
    );
    let args = |w: &Path| -> Vec<String> {
        let mut v: Vec<String> = base[..6].iter().map(|a| a.to_string()).collect();
        v.extend(["--web.config.file".to_string(), s(w).to_string()]);
        v
    };
    chmod_path(&inline, 0o644);
    let a = args(&inline);
    let (code, text, _) = validate(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains(&format!(
            "tls_server_config.key: the web config {} holds a private key and is readable by others (mode 0644): chmod 0640",
            inline.display()
        )),
        "{text}"
    );
    chmod_path(&inline, 0o640);
    let (code, text, _) = validate(&a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{text}");
}

// --------------------------------------------------------------- 4: URLs

/// The secret parts of the URLs below.
const URL_SECRETS: [&str; 3] = ["Pa55w0rd", "t0ken-v4lue", "hunter2"];

fn assert_no_url_secrets(what: &str, text: &str) {
    for secret in URL_SECRETS {
        assert!(!text.contains(secret), "{what} shows {secret:?}:\n{text}");
    }
}

#[test]
fn urls_never_show_their_credentials_in_config_errors_validate_or_the_log() {
    let d = Dir::standard("adv-urls");
    d.bake(&[]);
    let secret = Secret::raw().write(&d);
    let base = |cfg: &Path| {
        vec![
            "--config".to_string(),
            s(cfg).to_string(),
            "--root".to_string(),
            s(&d.root).to_string(),
            "--manifest".to_string(),
            s(&d.manifest).to_string(),
        ]
    };
    let validate_cfg = |cfg: &Path| {
        let args = base(cfg);
        validate(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };

    // Invalid URLs (a bad port, an unsupported scheme, a `/` in the
    // password): config errors, in validate and at start.
    for url in [
        "https://ops:Pa55w0rd@replacer.example:99999/hook?token=t0ken-v4lue",
        "ftp://ops:Pa55w0rd@replacer.example/hook?token=t0ken-v4lue&x=hunter2",
        "https://ops:Pa55/w0rd@replacer.example/hook?token=t0ken-v4lue",
    ] {
        let cfg = agent_config(&d, "bad-url.toml", &webhook("hook", url, &secret, ""));
        let (code, text, failed) = validate_cfg(&cfg);
        assert_eq!((code, failed), (2, vec!["config".to_string()]), "{text}");
        assert!(text.contains("signal[0].url: `"), "{text}");
        assert!(
            text.contains("ops:***@"),
            "the URL is not recognisable: {text}"
        );
        assert_no_url_secrets("validate", &text);
        assert_no_url_secrets(
            "the config error at start",
            &run_refused(&d, &cfg, &[]).stderr,
        );
    }
    // A TOML syntax error quoting the URL's line.
    let cfg = d.write_outside(
        "syntax.toml",
        "[[signal]]\ntype = \"webhook\"\nurl = \"https://ops:Pa55w0rd@h.example/?token=t0ken-v4lue\" oops\n",
    );
    let (code, text, _) = validate_cfg(&cfg);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("https://ops:***@h.example/?token=***"),
        "{text}"
    );
    assert_no_url_secrets("a TOML error", &text);
    assert_no_url_secrets("a TOML error at start", &run_refused(&d, &cfg, &[]).stderr);

    // A valid URL, as validate describes it.
    let port = free_port();
    let url = format!("http://ops:Pa55w0rd@127.0.0.1:{port}/hook?token=t0ken-v4lue&n=hunter2");
    let tables = signals_section("100ms", "200ms") + &webhook("hook", &url, &secret, "");
    let cfg = agent_config(&d, "good-url.toml", &tables);
    let (code, text, _) = validate_cfg(&cfg);
    assert_eq!(code, 0, "{text}");
    let shown = format!("POST to http://ops:***@127.0.0.1:{port}/hook?token=***&n=***");
    assert!(text.contains(&shown), "{text}");
    assert_no_url_secrets("validate", &text);

    // The agent's log: the webhook's send errors (nothing listens there).
    let launch = launch_with(&d, &tables);
    let mut a = start(&launch, &["hook"]);
    d.append("/etc/passwd", b"evil:x:0:0::/:/bin/sh\n");
    a.wait_drifted();
    a.wait_metrics("two failed sends", |m| {
        signal_util::requests(m, "hook", "failure") >= 2.0
    });
    let log = a.log_text();
    assert!(
        log.contains(&shown),
        "the send error does not show the URL redacted:\n{log}"
    );
    assert_no_url_secrets("the agent's log", &log);
}
