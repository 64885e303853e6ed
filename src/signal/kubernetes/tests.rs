use super::*;

#[test]
fn node_name_precedence() {
    let r = resolve_node_name;
    assert_eq!(r(Some("a"), Some("b"), Some("c")).unwrap(), "a");
    assert_eq!(r(None, Some("b"), Some("c")).unwrap(), "b");
    assert_eq!(
        r(Some(" "), Some(""), Some("Host-C.Example\n")).unwrap(),
        "host-c.example"
    );
    assert!(r(None, None, None).unwrap_err().contains("no node name"));
    assert!(r(None, None, Some("\n")).is_err());
}

#[test]
fn node_names_that_would_change_the_url_are_refused() {
    for bad in [
        "a/b",
        "a?b",
        "a b",
        "-a",
        "a-",
        "a..b",
        "A",
        &"x".repeat(254),
    ] {
        assert!(
            resolve_node_name(Some(bad), None, None).is_err(),
            "{bad:?} accepted"
        );
    }
    for good in ["node-a", "ip-10-0-0-1.ec2.internal", "0"] {
        assert_eq!(resolve_node_name(Some(good), None, None).unwrap(), good);
    }
}

#[test]
fn only_the_kubeconfig_moves_into_the_image() {
    let mut spec = NodeConditionSpec {
        node_name: Some("/etc/not-a-path".into()),
        cordon: true,
        kubeconfig: Some("/etc/driftd/kubeconfig".into()),
    };
    spec.rebase(Path::new("/mnt/image"));
    assert_eq!(
        spec.kubeconfig.as_deref(),
        Some(Path::new("/mnt/image/etc/driftd/kubeconfig"))
    );
    assert_eq!(spec.node_name.as_deref(), Some("/etc/not-a-path"));
}

#[cfg(not(feature = "kube"))]
#[test]
fn without_the_feature_the_config_is_read_but_refused() {
    let spec = NodeConditionSpec {
        node_name: Some("node-a".into()),
        cordon: false,
        kubeconfig: None,
    };
    let msg = "this driftd was built without the `kube` feature";
    assert_eq!(spec.preflight().unwrap_err(), msg);
    assert_eq!(spec.build("k8s").err().unwrap(), msg);
}

#[test]
fn clip_counts_characters() {
    assert_eq!(clip("abc", 3), "abc");
    assert_eq!(clip("äbcd", 2), "äb…");
}

#[cfg(feature = "kube")]
#[test]
fn the_kubeconfig_is_read_as_a_secret_with_its_relative_files_resolved() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority: ca.crt\n\
         users:\n- name: u\n  user:\n    tokenFile: keys/token\n    client-key: /etc/k.key\n",
    )
    .unwrap();
    let chmod = |m| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    chmod(0o644);
    let e = read_kubeconfig(&path).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "kubeconfig {} is readable by others (mode 0644)",
            path.display()
        )),
        "{e}"
    );
    chmod(0o440);
    let kc = read_kubeconfig(&path).unwrap();
    let d = dir.path().display();
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.certificate_authority, Some(format!("{d}/ca.crt")));
    let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
    assert_eq!(user.token_file, Some(format!("{d}/keys/token")));
    assert_eq!(user.client_key.as_deref(), Some("/etc/k.key"));
}
