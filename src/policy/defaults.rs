//! The policy a host gets when the config says nothing: what every scan
//! skips and what first boot legitimately changes. Kept apart so the list a
//! reviewer audits is one short file.

use super::{Allow, Allowance, Appear, Policy};

/// The exclusions a host scan needs whatever the image: kernel and runtime
/// filesystems, scratch space, logs and caches, and driftd's own state.
pub const DEFAULT_EXCLUDES: &[&str] = &[
    "/proc",
    "/sys",
    "/dev",
    "/run",
    "/tmp",
    "/var/tmp",
    "/var/log",
    "/var/cache",
    "/var/lib/driftd",
    "/var/lib/systemd",
    "/var/lib/dhcp",
    "/var/backups",
    "/lost+found",
    "/mnt",
    "/media",
];

/// Files systemd, cloud-init and sshd legitimately rewrite on first boot.
pub const DEFAULT_CONTENT_MAY_DIFFER: &[&str] = &[
    "/etc/machine-id",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
    "/etc/ssh/ssh_host_*",
];

/// Where a host mounts a filesystem of its own over the image's tree: the
/// boot partition and the EFI system partition.
pub const DEFAULT_MOUNTS: &[&str] = &["/boot", "/boot/efi", "/efi"];

/// The default `mounts` (also for manifests baked before the key existed).
pub fn default_mounts() -> Vec<String> {
    DEFAULT_MOUNTS.iter().map(|s| s.to_string()).collect()
}

/// Whether `mounts` is the default list.
pub fn is_default_mounts(mounts: &[String]) -> bool {
    mounts
        .iter()
        .map(String::as_str)
        .eq(DEFAULT_MOUNTS.iter().copied())
}

/// Files that appear on first boot though no image contains them, each as
/// narrow as a real host allows: sshd's host keys (regular files within
/// 0644, owned by root, group root or, on RHEL and Fedora, `ssh_keys` with
/// 0640 private keys) and systemd's machine id (within 0444, root:root).
pub fn default_may_appear() -> Vec<Appear> {
    let root = || vec!["root".into()];
    vec![
        Appear::Table(Allowance {
            paths: vec!["/etc/ssh/ssh_host_*".into()],
            types: vec!["file".into()],
            mode: "0644".into(),
            owner: root(),
            group: vec!["root".into(), "ssh_keys".into()],
            below: false,
        }),
        Appear::Table(Allowance {
            paths: vec!["/etc/machine-id".into()],
            types: vec!["file".into()],
            mode: "0444".into(),
            owner: root(),
            group: root(),
            below: false,
        }),
    ]
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            exclude: DEFAULT_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            one_file_system: true,
            rules: Vec::new(),
            allow: Allow {
                content_may_differ: DEFAULT_CONTENT_MAY_DIFFER
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
                may_appear: default_may_appear(),
            },
            mounts: default_mounts(),
        }
    }
}
