use super::*;

fn p(text: &str) -> Result<Config, ConfigError> {
    parse(text, Path::new("test.toml"))
}

#[test]
fn empty_config_is_the_default() {
    assert_eq!(p("").unwrap(), Config::default());
}

#[test]
fn shipped_config_parses_and_matches_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftd.toml");
    let cfg = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        cfg,
        Config::default(),
        "config/driftd.toml drifted from the code's defaults"
    );
}

#[test]
fn example_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
    let mut n = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let cfg = load(&p).unwrap_or_else(|e| panic!("{e}"));
            kinds.extend(cfg.signal.iter().map(|b| b.spec.kind()));
            n += 1;
        }
    }
    assert!(n >= 5, "examples missing from {}", dir.display());
    for t in backend::BACKENDS {
        assert!(
            kinds.contains(t.name),
            "no example in {} uses the `{}` backend",
            dir.display(),
            t.name
        );
    }
}

#[test]
fn shipped_config_commented_backends_parse() {
    // Uncomment the [[signal]] examples of config/driftd.toml: they
    // must be valid as written.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/driftd.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let tail = &text[text.find("[signals]").unwrap()..];
    let uncommented: String = tail
        .lines()
        .map(|l| match l.strip_prefix("# ") {
            Some(t) if t.starts_with("[[signal]]") || t == "[signals.guard]" || is_setting(t) => {
                t.to_string()
            }
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let cfg = parse(&uncommented, Path::new("driftd.toml"))
        .unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    let kinds: Vec<&str> = cfg.signal.iter().map(|b| b.spec.kind()).collect();
    assert_eq!(kinds, ["webhook", "aws-autoscaling", "kubernetes", "exec"]);
    // The guard's keys, at their defaults.
    let g = cfg.signals.guard.expect("[signals.guard] documented");
    assert_eq!(g.max_drifted, GuardConfig::MAX_DRIFTED);
    assert_eq!(
        (g.settle, g.recheck),
        (GuardConfig::SETTLE, GuardConfig::RECHECK)
    );
    assert_eq!(g.on_error, crate::signal::guard::OnError::Hold);
    assert!(g.selector.is_some() && g.ca_file.is_some());
    assert!(matches!(
        g.auth,
        crate::signal::guard::spec::Auth::Bearer(_)
    ));
    // Every registered backend is documented there, once.
    let mut documented = kinds.clone();
    documented.sort_unstable();
    let mut registered: Vec<&str> = backend::BACKENDS.iter().map(|t| t.name).collect();
    registered.sort_unstable();
    assert_eq!(
        documented, registered,
        "config/driftd.toml vs signal::backend::BACKENDS"
    );
}

fn is_setting(t: &str) -> bool {
    let key = t.split(" = ").next().unwrap_or("");
    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

#[test]
fn every_error_at_once_with_keys() {
    let err = p(r#"
        [scan]
        threads = "many"
        thread = 2
        [policy]
        exlude = ["/x"]
        exclude = ["relative/path"]
        [[policy.rules]]
        paths = ["/etc/**"]
        attributes = ["mode", "colour"]
        [[policy.rules]]
        attributes = ["mode"]
        [policy.allow]
        may_apear = []
        may_appear = [{ paths = "/x", mode = 644 }, { paths = ["/y"], type = "dir", owner = [] }]
    "#)
    .unwrap_err();
    let all = err.to_string();
    for needle in [
        "scan.threads:",
        "scan.thread: unknown key",
        // As the README shows it: the known keys in the order read.
        "policy.exlude: unknown key (known keys here: exclude, one_file_system, mounts, rules, allow)",
        "policy.exclude[0]: pattern `relative/path` must be an absolute path",
        "policy.rules[0].attributes: unknown attribute `colour`",
        "policy.rules[1].paths: required",
        "policy.allow.may_apear: unknown key",
        // A table's shape (once, not again for its value) and values.
        "policy.allow.may_appear[0].paths: invalid type: string",
        "policy.allow.may_appear[0].mode: write the mask as an octal string",
        "policy.allow.may_appear[1].type: unknown type `dir`",
        "policy.allow.may_appear[1].owner: an allowance needs at least one owner",
    ] {
        assert!(all.contains(needle), "missing `{needle}` in:\n{all}");
    }
    assert_eq!(err.errors.len(), 11, "{all}");
}

#[test]
fn syntax_errors_name_the_line() {
    let err = p("[policy\nexclude = 1").unwrap_err();
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn wrong_shapes() {
    let err = p("policy = 3\n").unwrap_err();
    assert!(err.errors[0].contains("policy: expected a table"), "{err}");
    let err = p("[policy]\nrules = 3\n").unwrap_err();
    assert!(
        err.errors[0].contains("policy.rules: expected an array"),
        "{err}"
    );
}
