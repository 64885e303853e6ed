//! Unit tests of reading `allow.may_appear`: from TOML (every shape error
//! with its key), the values judged when the policy compiles (every error
//! with its key), and the JSON a manifest holds (a bare pattern stays a
//! string; an older agent refuses a table rather than misreading it).

use super::*;

// ---------------------------------------------------------------- reading TOML

fn read(text: &str) -> (Option<Vec<Appear>>, Vec<String>) {
    let mut doc: toml::Table = text.parse().unwrap();
    let mut errors = Vec::new();
    let v = parse_may_appear(
        "policy.allow.may_appear",
        doc.remove("may_appear"),
        &mut errors,
    );
    (v, errors)
}

#[test]
fn bare_patterns_inline_tables_and_arrays_of_tables_read_alike() {
    let (inline, errs) = read(
        r#"may_appear = [
            "/etc/machine-id",
            { paths = ["/etc/ssh/ssh_host_*"], group = ["root", "ssh_keys"] },
            { paths = ["/srv/x"], type = ["file", "symlink"], mode = "4755", owner = [0, "app"], below = false },
        ]"#,
    );
    assert_eq!(errs, Vec::<String>::new());
    let (tables, errs) = read(
        r#"may_appear = ["/etc/machine-id"]
        "#,
    );
    assert!(errs.is_empty());
    assert_eq!(tables.unwrap(), [Appear::Pattern("/etc/machine-id".into())]);
    let inline = inline.unwrap();
    assert_eq!(inline[0], Appear::Pattern("/etc/machine-id".into()));
    assert_eq!(
        inline[1],
        Appear::Table(Allowance {
            group: vec!["root".into(), "ssh_keys".into()],
            ..Allowance::narrow(vec!["/etc/ssh/ssh_host_*".into()])
        })
    );
    assert_eq!(
        inline[2],
        Appear::Table(Allowance {
            paths: vec!["/srv/x".into()],
            types: vec!["file".into(), "symlink".into()],
            mode: "4755".into(),
            owner: vec![Id::Num(0), "app".into()],
            group: vec!["root".into()],
            below: false,
        })
    );
    let (aot, errs) = read(
        "[[may_appear]]\npaths = [\"/etc/ssh/ssh_host_*\"]\ngroup = [\"root\", \"ssh_keys\"]\n\
         [[may_appear]]\npaths = [\"/d\"]\ntype = \"directory\"\nmode = \"0755\"\nbelow = true\n",
    );
    assert!(errs.is_empty(), "{errs:?}");
    let aot = aot.unwrap();
    assert_eq!(aot[0], inline[1]);
    assert_eq!(
        aot[1],
        Appear::Table(Allowance {
            types: vec!["directory".into()],
            mode: "0755".into(),
            below: true,
            ..Allowance::narrow(vec!["/d".into()])
        })
    );
    assert_eq!(read("").0, None);
}

#[test]
fn every_shape_error_at_once_with_its_key() {
    let (_, errs) = read(
        r#"may_appear = [
            "/ok",
            { paths = "/not-a-list", type = 3, mode = 644, owner = "root", group = [-1, "ok", true], colour = "red", below = "yes" },
            7,
            { paths = ["/x"], type = ["file", 2], mode = true },
        ]"#,
    );
    let k = "policy.allow.may_appear";
    let want = [
        format!("{k}[1].paths: "),
        format!("{k}[1].type: expected a type or an array of types"),
        format!("{k}[1].mode: write the mask as an octal string, like \"0644\" (the number 644 is not octal)"),
        format!("{k}[1].owner: expected an array of names or numbers"),
        format!("{k}[1].group[0]: -1 is not a user or group id"),
        format!("{k}[1].group[2]: expected a name or a number, found boolean"),
        format!("{k}[1].below: "),
        format!("{k}[1].colour: unknown key (known keys here: paths, type, mode, owner, group, below)"),
        format!("{k}[2]: expected a pattern or a table, found integer"),
        format!("{k}[3].type[1]: expected a string, found integer"),
        format!("{k}[3].mode: expected an octal string like \"0644\", found boolean"),
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for (e, w) in errs.iter().zip(&want) {
        assert!(
            e.starts_with(w.as_str()),
            "{e:?} does not start with {w:?}\n{errs:#?}"
        );
    }
    let (_, errs) = read("may_appear = \"/etc/machine-id\"");
    assert_eq!(
        errs,
        [format!(
            "{k}: expected an array of patterns and tables, found string"
        )]
    );
}

#[test]
fn every_value_error_at_once_with_its_key() {
    let table = |f: fn(&mut Allowance)| {
        let mut a = Allowance::narrow(vec!["/ok".into()]);
        f(&mut a);
        Appear::Table(a)
    };
    let mut p = Policy::default();
    p.allow.may_appear = vec![
        "relative".into(),
        table(|a| a.paths = vec!["/ok".into(), "/bad/[".into()]),
        table(|a| a.types = vec!["file".into(), "dir".into()]),
        table(|a| a.mode = "0o644".into()),
        table(|a| a.owner = vec![]),
        table(|a| a.group = vec!["bad:name".into()]),
        table(|a| a.below = true),
        table(|a| a.paths = vec![]),
        table(|a| a.types = vec![]),
    ];
    let errs = CompiledPolicy::new(p, "policy").unwrap_err();
    let got: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    let k = "policy.allow.may_appear";
    let want = [
        format!("{k}[0]: pattern `relative` must be an absolute path"),
        format!("{k}[1].paths[1]: invalid glob `/bad/[`"),
        format!("{k}[2].type: unknown type `dir`, expected one of: file, directory, symlink"),
        format!("{k}[3].mode: `0o644` is not an octal mask"),
        format!("{k}[4].owner: an allowance needs at least one owner"),
        format!("{k}[5].group: `bad:name` is not a user or group name"),
        format!("{k}[6].below: `below = true` lets things appear below a directory: add \"directory\" to type"),
        format!("{k}[7].paths: an allowance needs at least one pattern"),
        format!("{k}[8].type: an allowance needs at least one type"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (e, w) in got.iter().zip(&want) {
        assert!(e.starts_with(w.as_str()), "{e:?} does not start with {w:?}");
    }
}

// ---------------------------------------------------------------- the manifest's JSON

#[test]
fn a_bare_pattern_stays_a_json_string_and_a_table_is_an_object() {
    let allow = Policy::default().allow;
    let mut v = allow.clone();
    v.may_appear.insert(0, "/etc/old-style".into());
    let json = serde_json::to_string(&v.may_appear).unwrap();
    assert_eq!(
        json,
        r#"["/etc/old-style",{"paths":["/etc/ssh/ssh_host_*"],"type":["file"],"mode":"0644","owner":["root"],"group":["root","ssh_keys"],"below":false},{"paths":["/etc/machine-id"],"type":["file"],"mode":"0444","owner":["root"],"group":["root"],"below":false}]"#
    );
    let back: Vec<Appear> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, v.may_appear);
    // Numbers stay numbers; absent keys are the narrow default.
    let back: Vec<Appear> =
        serde_json::from_str(r#"[{"paths":["/k"],"owner":[0,"sshd"]}]"#).unwrap();
    assert_eq!(
        back,
        [Appear::Table(Allowance {
            owner: vec![Id::Num(0), "sshd".into()],
            ..Allowance::narrow(vec!["/k".into()])
        })]
    );
}

#[test]
fn an_agent_that_predates_tables_refuses_them_rather_than_misreading() {
    // What an older agent deserialises `allow` into (deny_unknown_fields,
    // strings only): a table in may_appear is an error there, not a pass.
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct OldAllow {
        content_may_differ: Vec<String>,
        may_appear: Vec<String>,
    }
    let json = serde_json::to_string(&Policy::default().allow).unwrap();
    let e = serde_json::from_str::<OldAllow>(&json).unwrap_err();
    assert!(
        e.to_string()
            .contains("invalid type: map, expected a string"),
        "{e}"
    );
    // A malformed table is refused here too, saying what is wrong.
    let e = serde_json::from_str::<Vec<Appear>>(r#"[{"paths":["/k"],"colour":1}]"#).unwrap_err();
    assert!(e.to_string().contains("unknown field `colour`"), "{e}");
    let e = serde_json::from_str::<Vec<Appear>>("[3]").unwrap_err();
    assert!(
        e.to_string()
            .contains("expected a pattern string or an allowance object"),
        "{e}"
    );
}
