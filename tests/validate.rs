//! `driftd validate` (the unit's ExecStartPre and the image pipeline's last
//! check) on the shipped configs, and `driftd generate` (man pages and
//! completions for the packages).

mod common;

use common::{driftd_run, s, Dir};
use serde_json::Value;
use std::fs;

const SHIPPED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/driftd.toml");
const TRY_OUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/config/try-out.toml");

/// The checks of a `--format json` run, by name, with the exit status.
fn validate_json(args: &[&str]) -> (i32, Vec<(String, bool, String)>) {
    let mut all = vec!["validate", "--format", "json"];
    all.extend_from_slice(args);
    let o = driftd_run(all);
    let v: Value = o.json();
    let checks = v["checks"]
        .as_array()
        .expect("checks array")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_string(),
                c["ok"].as_bool().unwrap(),
                c["message"].as_str().unwrap().to_string(),
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        v["valid"].as_bool().unwrap(),
        checks.iter().all(|c| c.1),
        "valid disagrees with the checks: {v}"
    );
    (o.code, checks)
}

fn failed(checks: &[(String, bool, String)]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.1)
        .map(|c| c.0.as_str())
        .collect()
}

/// An image tree as the pipeline leaves it: the production config at
/// /etc/driftd/driftd.toml, the public key at /etc/driftd/trusted.pub, and a
/// manifest signed by the secret key (kept outside the tree) at
/// /var/lib/driftd/manifest.
fn baked_image(name: &str) -> (Dir, std::path::PathBuf) {
    let d = Dir::standard(name);
    let (sec, public) = d.keygen("k");
    d.write("/etc/driftd/driftd.toml", fs::read(SHIPPED).unwrap());
    d.write("/etc/driftd/trusted.pub", fs::read(&public).unwrap());
    let manifest = d.path("/var/lib/driftd/manifest");
    fs::create_dir_all(manifest.parent().unwrap()).unwrap();
    d.bake_to(
        &manifest,
        &[
            "--signing-key",
            s(&sec),
            "--config",
            SHIPPED,
            "--image-id",
            "ami-1",
        ],
    );
    (d, public)
}

#[test]
fn shipped_production_config_validates_a_baked_image() {
    let (d, _) = baked_image("validate-image");
    let (code, checks) = validate_json(&["--image", s(&d.root)]);
    assert_eq!(code, 0, "{checks:?}");
    let names: Vec<&str> = checks.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        ["config", "listen", "root", "state_dir", "manifest", "web"]
    );
    // Every path is the image's, not this machine's.
    let state = format!("{}/var/lib/driftd", d.root.display());
    assert!(checks[3].2.starts_with(&state), "{checks:?}");
    let manifest = &checks[4].2;
    assert!(
        manifest.contains("image ami-1") && manifest.contains("signed by trusted key"),
        "{manifest}"
    );
    // Text output for people says the same.
    let o = driftd_run(["validate", "--image", s(&d.root)]);
    o.assert_code(0);
    assert!(o.stdout_str().trim_end().ends_with("valid"), "{o}");
}

#[test]
fn shipped_production_config_validates_on_a_host() {
    // The same files, as a host sees them: the config's paths overridden
    // the way a test must (the real ones are /etc and /var/lib).
    let (d, public) = baked_image("validate-host");
    let manifest = d.path("/var/lib/driftd/manifest");
    let state = d.outside("state");
    let (code, checks) = validate_json(&[
        "--config",
        SHIPPED,
        "--root",
        s(&d.root),
        "--manifest",
        s(&manifest),
        "--trusted-key",
        s(&public),
        "--state-dir",
        s(&state),
    ]);
    assert_eq!(code, 0, "{checks:?}");
}

#[test]
fn try_out_config_validates() {
    let d = Dir::standard("validate-try-out");
    d.bake(&[]);
    let (code, checks) = validate_json(&[
        "--config",
        TRY_OUT,
        "--root",
        s(&d.root),
        "--manifest",
        s(&d.manifest),
    ]);
    assert_eq!(code, 0, "{checks:?}");
    let manifest = &checks.iter().find(|c| c.0 == "manifest").unwrap().2;
    assert!(manifest.contains("NOT verified"), "{manifest}");
}

#[test]
fn a_tampered_or_foreign_manifest_is_invalid() {
    let (d, _) = baked_image("validate-bad-manifest");
    // Signed by another key than the image trusts.
    let (other_sec, _) = d.keygen("other");
    let manifest = d.path("/var/lib/driftd/manifest");
    d.bake_to(
        &manifest,
        &["--signing-key", s(&other_sec), "--config", SHIPPED],
    );
    let (code, checks) = validate_json(&["--image", s(&d.root)]);
    assert_eq!(code, 2);
    assert_eq!(failed(&checks), ["manifest"], "{checks:?}");
    assert!(
        checks[4].2.contains("not among the trusted keys"),
        "{checks:?}"
    );

    // One flipped byte.
    let mut bytes = fs::read(&manifest).unwrap();
    let n = bytes.len() / 2;
    bytes[n] ^= 0x40;
    fs::write(&manifest, bytes).unwrap();
    let (code, checks) = validate_json(&["--image", s(&d.root)]);
    assert_eq!((code, failed(&checks)), (2, vec!["manifest"]), "{checks:?}");

    // Missing: still every other check is reported.
    fs::remove_file(&manifest).unwrap();
    let o = driftd_run(["validate", "--image", s(&d.root)]);
    o.assert_code(2);
    let out = o.stdout_str();
    assert!(
        out.contains("ERROR manifest") && out.contains("No such file"),
        "{o}"
    );
    assert!(
        out.contains("ok    listen") && out.trim_end().ends_with("INVALID"),
        "{o}"
    );
}

#[test]
fn config_errors_name_the_key_and_stop_there() {
    let d = Dir::new("validate-config-typo");
    let cfg = d.write_outside(
        "c.toml",
        "[agent]\nlisten = \"127.0.0.1:1\"\nwatch_this = true\n",
    );
    let (code, checks) = validate_json(&["--config", s(&cfg)]);
    assert_eq!(code, 2);
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert!(
        !checks[0].1 && checks[0].2.contains("watch_this"),
        "{checks:?}"
    );
}

#[test]
fn listen_root_state_dir_and_signals_are_checked() {
    let d = Dir::standard("validate-signals");
    d.bake(&[]);
    d.write("/file", "x");
    let cfg = d.write_outside(
        "c.toml",
        r#"
[agent]
allow_unsigned = true

[[signal]]
type = "webhook"
name = "cp"
url = "https://replacer.example.internal/driftd"
secret_file = "/nonexistent/driftd-webhook.secret"

[[signal]]
type = "exec"
name = "retire"
command = ["/nonexistent/retire-host"]

[[signal]]
type = "exec"
name = "ok-exec"
command = ["true"]
dry_run = true
"#,
    );
    let state_file = d.write_outside("state-is-a-file", "");
    let (code, checks) = validate_json(&[
        "--config",
        s(&cfg),
        "--root",
        s(&d.path("/file")),
        "--manifest",
        s(&d.manifest),
        "--state-dir",
        s(&state_file),
        "--listen",
        "localhost",
    ]);
    assert_eq!(code, 2);
    assert_eq!(
        failed(&checks),
        ["listen", "root", "state_dir", "signal", "signal"],
        "{checks:?}"
    );
    let msgs: Vec<&str> = checks.iter().map(|c| c.2.as_str()).collect();
    let all = msgs.join("\n");
    assert!(all.contains("/nonexistent/driftd-webhook.secret"), "{all}");
    assert!(all.contains("command /nonexistent/retire-host"), "{all}");
    assert!(all.contains("`ok-exec`: exec (dry run)"), "{all}");
}

#[test]
fn generate_writes_man_pages_and_completions_for_every_command() {
    let d = Dir::new("generate");
    let out = d.outside("assets");
    driftd_run(["generate", "--out-dir", s(&out)]).assert_code(0);
    let help = driftd_run(["--help"]).stdout_str();
    // The commands, as --help lists them.
    let commands: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() >= 8, "{commands:?} from\n{help}");
    let top = fs::read_to_string(out.join("man/driftd.1")).unwrap();
    assert!(top.contains(".TH driftd 1"), "{top}");
    assert!(top.contains("EXIT STATUS") && top.contains("/etc/driftd/driftd.toml"));
    for c in &commands {
        let page = fs::read_to_string(out.join(format!("man/driftd-{c}.1")))
            .unwrap_or_else(|e| panic!("man page of {c}: {e}"));
        assert!(page.contains(&format!(".TH driftd-{c} 1")), "{c}");
        assert!(top.contains(&format!("driftd\\-{c}")), "driftd.1 lists {c}");
        for shell in ["driftd.bash", "_driftd", "driftd.fish"] {
            let comp = fs::read_to_string(out.join("completions").join(shell)).unwrap();
            assert!(comp.contains(c.as_str()), "{shell} lacks {c}");
        }
    }
    // The run page documents its flags.
    let run = fs::read_to_string(out.join("man/driftd-run.1")).unwrap();
    assert!(run.contains("\\-\\-state\\-dir"), "{run}");
}

/// The web config (TLS, basic auth) is judged by validate too: every
/// problem with its key, and a good one described without its secrets.
#[test]
fn the_web_config_is_validated_with_every_error_named() {
    let d = Dir::standard("validate-web");
    d.bake(&[]);
    let bad = d.write_outside(
        "web-bad.yml",
        "tls_server_config:\n  cert_file: nope.crt\n  key_file: nope.key\n  min_version: TLS10\n\
         basic_auth_users:\n  ops: not-a-hash\nrate_limit:\n  interval: 1s\n",
    );
    let base = [
        "--root",
        s(&d.root),
        "--manifest",
        s(&d.manifest),
        "--allow-unsigned",
    ];
    let mut args = base.to_vec();
    args.extend(["--web.config.file", s(&bad)]);
    let (code, checks) = validate_json(&args);
    assert_eq!(code, 2, "{checks:?}");
    assert_eq!(failed(&checks), ["web"], "{checks:?}");
    let msg = &checks.iter().find(|c| c.0 == "web").unwrap().2;
    for needle in [
        "tls_server_config.cert_file",
        "tls_server_config.min_version",
        "basic_auth_users.ops",
        "rate_limit",
    ] {
        assert!(msg.contains(needle), "missing {needle} in: {msg}");
    }
    let hash = bcrypt::hash("pw", 4).unwrap();
    let good = d.write_outside(
        "web-good.yml",
        format!("basic_auth_users:\n  ops: '{hash}'\n"),
    );
    let mut args = base.to_vec();
    args.extend(["--web.config.file", s(&good)]);
    let (code, checks) = validate_json(&args);
    assert_eq!(code, 0, "{checks:?}");
    let msg = &checks.iter().find(|c| c.0 == "web").unwrap().2;
    assert!(msg.contains("basic auth on"), "{msg}");
    assert!(!msg.contains(&hash), "the hash is shown: {msg}");
}
