//! The backend registry and the shared `[[signal]]` parser, proven with a
//! backend defined only here and with every registered one.

use super::*;

/// `[[signal]]` tables through `registry`: the configs and the errors.
fn parse_in(registry: &[&BackendType], text: &str) -> (Vec<BackendConfig>, Vec<String>) {
    let mut doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut errors = Vec::new();
    let configs = parse_with(registry, doc.remove("signal"), &mut errors);
    (configs, errors)
}

fn signal(type_name: &str, body: &str) -> String {
    format!("[[signal]]\ntype = \"{type_name}\"\n{body}\n")
}

// A backend defined in this test alone: its type, its spec, its
// `Backend`, and a registry holding it. Nothing else knows about it.

static PIGEON: BackendType = BackendType {
    name: "carrier-pigeon",
    timeout: Some(Duration::from_secs(3600)),
    example: "loft = \"/var/lib/pigeons\"",
    parse: parse_pigeon,
};

#[derive(Debug, Clone)]
struct PigeonSpec {
    loft: PathBuf,
    timeout: Duration,
}

fn parse_pigeon(t: &mut Table<'_>, timeout: Duration) -> Option<Box<dyn BackendSpec>> {
    let Some(loft) = t.take("loft") else {
        t.error("loft", "required");
        return None;
    };
    Some(Box::new(PigeonSpec { loft, timeout }))
}

impl BackendSpec for PigeonSpec {
    fn kind(&self) -> &'static str {
        PIGEON.name
    }
    fn preflight(&self) -> Result<String, String> {
        Ok(format!(
            "loft {} within {:?}",
            self.loft.display(),
            self.timeout
        ))
    }
    fn rebase(&mut self, image_root: &Path) {
        self.loft = in_image(image_root, &self.loft);
    }
    fn build(&self, name: &str) -> Result<Box<dyn Backend>, String> {
        Ok(Box::new(Pigeon(name.to_string())))
    }
}

struct Pigeon(String);

impl Backend for Pigeon {
    fn name(&self) -> &str {
        &self.0
    }
    fn kind(&self) -> &'static str {
        PIGEON.name
    }
    fn send<'a>(&'a self, _signal: &'a Signal) -> SendFuture<'a> {
        Box::pin(async { Ok("released".to_string()) })
    }
}

#[test]
fn a_backend_is_its_own_file_and_one_registry_line() {
    let registry: &[&BackendType] = &[&PIGEON, &exec::TYPE];
    let (configs, errors) = parse_in(
        registry,
        &signal(
            "carrier-pigeon",
            "name = \"coo\"\nloft = \"/srv/loft\"\ntimeout = \"2h\"",
        ),
    );
    assert_eq!(errors, Vec::<String>::new());
    let c = &configs[0];
    assert_eq!((c.name.as_str(), c.spec.kind()), ("coo", "carrier-pigeon"));
    assert_eq!(c.spec.preflight().unwrap(), "loft /srv/loft within 7200s");
    let built = build(&configs).unwrap();
    assert_eq!(built[0].backend.name(), "coo");
    assert_eq!(built[0].backend.kind(), "carrier-pigeon");
    let mut moved = c.clone();
    moved.spec.rebase(Path::new("/mnt/image"));
    assert_eq!(
        moved.spec.preflight().unwrap(),
        "loft /mnt/image/srv/loft within 7200s"
    );
    assert_ne!(&moved, c);
    assert_eq!(&c.clone(), c);

    // Its keys and its default timeout come from its type alone.
    let (configs, errors) = parse_in(registry, &signal("carrier-pigeon", "lof = \"/x\""));
    assert!(configs.is_empty());
    assert_eq!(
        errors,
        [
            "signal[0].loft: required",
            "signal[0].lof: unknown key (known keys here: type, name, dry_run, guard, timeout, loft)",
        ]
    );
    let (configs, _) = parse_in(registry, &signal("carrier-pigeon", PIGEON.example));
    assert!(configs[0]
        .spec
        .preflight()
        .unwrap()
        .ends_with("within 3600s"));

    // Types are those of the registry, listed from it.
    let (_, errors) = parse_in(registry, &signal("webhook", ""));
    assert_eq!(
        errors,
        ["signal[0].type: unknown backend `webhook` (carrier-pigeon, exec)"]
    );
}

#[test]
fn every_registered_backend_parses_its_example_and_reports_its_kind() {
    for ty in BACKENDS {
        let (configs, errors) = parse_in(BACKENDS, &signal(ty.name, ty.example));
        assert_eq!(errors, Vec::<String>::new(), "{}", ty.name);
        let c = &configs[0];
        assert_eq!(c.spec.kind(), ty.name);
        assert_eq!(c.name, ty.name, "the name defaults to the type");
        assert!(!c.dry_run);
        assert!(c.guard, "guarded unless `guard = false`");
        assert_eq!(&c.clone(), c);
        // A key no backend has is reported with the backend's own keys.
        let (_, errors) = parse_in(
            BACKENDS,
            &signal(ty.name, &format!("{}\nzzz = 1", ty.example)),
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].starts_with(
                "signal[0].zzz: unknown key (known keys here: type, name, dry_run, guard, timeout"
            ),
            "{errors:?}"
        );
    }
    let mut names: Vec<&str> = BACKENDS.iter().map(|t| t.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), BACKENDS.len(), "two backends of one type");
}

#[test]
fn unknown_or_missing_type_lists_every_registered_backend() {
    let all = BACKENDS
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ");
    let (configs, errors) = parse_in(
        BACKENDS,
        "[[signal]]\ntype = \"carrier-pigeon\"\nname = \"d\"\n[[signal]]\nname = \"e\"\n",
    );
    assert!(configs.is_empty());
    assert_eq!(
        errors,
        [
            format!("signal[0].type: unknown backend `carrier-pigeon` ({all})"),
            format!("signal[1].type: required ({all})"),
        ]
    );
}

#[test]
fn timeouts_default_per_type_and_are_refused_where_unused() {
    for ty in BACKENDS {
        let (_, errors) = parse_in(
            BACKENDS,
            &signal(ty.name, &format!("{}\ntimeout = \"5s\"", ty.example)),
        );
        match ty.timeout {
            Some(_) => assert_eq!(errors, Vec::<String>::new(), "{}", ty.name),
            None => assert_eq!(
                errors,
                ["signal[0].timeout: not used by this backend (it has its own timeouts)"],
                "{}",
                ty.name
            ),
        }
    }
    let (_, errors) = parse_in(
        BACKENDS,
        &signal("exec", "command = [\"true\"]\ntimeout = \"soon\""),
    );
    assert_eq!(errors.len(), 1);
    assert!(errors[0].starts_with("signal[0].timeout: `soon` is not a duration"));
}

#[test]
fn names_are_checked_and_unique_also_across_broken_backends() {
    let (configs, errors) = parse_in(
        BACKENDS,
        r#"
        [[signal]]
        type = "webhook"
        name = "a"
        url = "http://127.0.0.1:9/hook"
        [[signal]]
        type = "exec"
        name = "a"
        command = ["/bin/true"]
        [[signal]]
        type = "exec"
        name = "Not OK"
        command = ["/bin/true"]
        guard = false
        [[signal]]
        type = "exec"
        command = ["/bin/true"]
        dry_run = true
        "#,
    );
    assert_eq!(
        errors,
        [
            "signal[0].secret_file: required for a webhook (the secret is read from a file, never written inline)",
            "signal[1].name: `a` is used twice; give each backend its own name",
            "signal[2].name: `Not OK` must be non-empty [a-z0-9_-]",
        ]
    );
    let names: Vec<(&str, bool, bool)> = configs
        .iter()
        .map(|c| (c.name.as_str(), c.dry_run, c.guard))
        .collect();
    assert_eq!(
        names,
        [
            ("a", false, true),
            ("Not OK", false, false),
            ("exec", true, true)
        ]
    );
}

#[test]
fn signal_must_be_an_array_of_tables() {
    let (_, errors) = parse_in(BACKENDS, "signal = \"webhook\"\n");
    assert_eq!(
        errors,
        ["signal: expected an array of tables ([[signal]]), found string"]
    );
    let (_, errors) = parse_in(BACKENDS, "signal = [3]\n");
    assert_eq!(errors[0], "signal[0]: expected a table, found integer");
}

#[test]
fn in_image_keeps_paths_inside_the_tree() {
    let img = Path::new("/mnt/image");
    assert_eq!(
        in_image(img, Path::new("/etc/a")),
        Path::new("/mnt/image/etc/a")
    );
    assert_eq!(
        in_image(img, Path::new("etc/a")),
        Path::new("/mnt/image/etc/a")
    );
}
