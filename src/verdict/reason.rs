//! Typed reasons, end to end: every "why" the agent reports is one of these
//! enums, each with its label (a metric label value, a JSON string) and the
//! list of all labels (so every series exists from the start). Nothing is
//! classified by reading an English message back.

use serde::{Deserialize, Serialize};

/// Declares a label enum: variants with their labels, `ALL` and `label()`.
macro_rules! labels {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $l:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $l)] $v,)+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];

            /// The label (as serialised).
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$v => $l,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.label())
            }
        }
    };
}

labels! {
    /// Why a full rescan started (`driftd_rescans_total{reason}`).
    pub enum RescanReason {
        /// The agent started.
        Startup => "startup",
        /// `full_scan_interval` (plus jitter) passed.
        Interval => "interval",
        /// SIGHUP, with the same manifest.
        Sighup => "sighup",
        /// Filesystem events were lost (queue overflow, channel full).
        Overflow => "overflow",
        /// Directories could not be watched (the inotify watch limit).
        WatchFailed => "watch_failed",
        /// The filesystem watcher was re-created after it died: events of
        /// the gap are covered by a full scan.
        WatchRestarted => "watch_restarted",
        /// A reload brought a manifest with another digest.
        ManifestChanged => "manifest_changed",
        /// The mount table changed (inotify sees no event for a mount over
        /// a watched directory).
        MountsChanged => "mounts_changed",
        /// The previous full scan failed or was cancelled.
        Retry => "retry",
        /// A re-check changed a part of the tree whose findings are
        /// counted, not held (more than `findings_limit`): only a full scan
        /// can recount them.
        FindingsLimit => "findings_limit",
    }
}

labels! {
    /// Why the manifest cannot be used (`driftd_manifest_error{reason}`).
    pub enum ManifestProblem {
        /// No file at the configured path.
        Missing => "missing",
        /// The file exists but cannot be read.
        Unreadable => "unreadable",
        /// Not a manifest, a wrong digest, an unknown version, a bad line.
        Corrupt => "corrupt",
        /// No trusted signature where one is required, or one that does not
        /// verify.
        Signature => "signature",
        /// The embedded policy does not compile.
        Policy => "policy",
    }
}

labels! {
    /// The kinds of scan (`driftd_scans_total{kind}`).
    pub enum ScanKind {
        /// Everything under the root.
        Full => "full",
        /// The paths filesystem events touched, or drift being confirmed.
        Targeted => "targeted",
    }
}

labels! {
    /// How a scan ended (`driftd_scans_total{result}`).
    pub enum ScanResult {
        Clean => "clean",
        Drifted => "drifted",
        Unknown => "unknown",
        /// It could not run (the root could not be opened, descriptors ran
        /// out): its scope is unknown until a retry succeeds.
        Error => "error",
        Cancelled => "cancelled",
    }
}

labels! {
    /// Why the verdict is what it is (`driftd_verdict_reason{reason}`, one
    /// of them 1). In order of precedence within a verdict.
    pub enum VerdictReason {
        /// Drifted: drift was confirmed for this manifest (latched).
        DriftConfirmed => "drift_confirmed",
        /// Clean: every path was checked and matched.
        AllChecked => "all_checked",
        /// Unknown: the manifest is missing, unreadable, corrupt, not
        /// trusted or has a bad policy (see `driftd_manifest_error`).
        ManifestUnusable => "manifest_unusable",
        /// Unknown: the state file cannot be read, so an earlier drift
        /// verdict may be lost.
        StateUnusable => "state_unusable",
        /// Unknown: a full scan or a re-check failed; it is retried.
        ScanFailed => "scan_failed",
        /// Unknown: the first full scan of this manifest has not finished.
        FirstScanPending => "first_scan_pending",
        /// Unknown: drift was seen and is being confirmed by a second read.
        DriftUnconfirmed => "drift_unconfirmed",
        /// Unknown: some paths could not be checked (permissions, a mount
        /// point, a file changing while read).
        PathsUnreadable => "paths_unreadable",
    }
}

labels! {
    /// What a control-plane signal is about.
    pub enum SignalEvent {
        /// Drift was confirmed.
        DriftDetected => "drift.detected",
        /// The verdict stayed unknown past `unknown_grace`.
        VerdictUnknown => "verdict.unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_serialise_as_labels() {
        fn check<T: Copy + Serialize + std::fmt::Display>(all: &[T]) {
            let mut seen = std::collections::BTreeSet::new();
            for v in all {
                let json = serde_json::to_string(v).unwrap();
                assert_eq!(json, format!("\"{v}\""));
                assert!(seen.insert(v.to_string()), "duplicate label {v}");
            }
        }
        check(RescanReason::ALL);
        check(ManifestProblem::ALL);
        check(ScanKind::ALL);
        check(ScanResult::ALL);
        check(VerdictReason::ALL);
        check(SignalEvent::ALL);
        assert_eq!(RescanReason::Retry.label(), "retry");
        assert_eq!(SignalEvent::DriftDetected.label(), "drift.detected");
    }
}
