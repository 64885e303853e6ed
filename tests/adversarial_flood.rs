//! Findings are bounded: a host flooded with changes (a million files
//! added) is declared drifted by an agent whose memory does not follow the
//! number of findings, and whose log says so in a bounded number of lines.
//! The real binary, in a memory cgroup limited to 1 GiB (as the unit's
//! `MemoryMax=1G`), with the tree renamed into the root at once: the
//! re-check after that one event meets all of it.
//!
//! The tree (1,000 directories of 1,000 empty files) is made once per run
//! and shared (`common::trees`); making it takes about half a minute, the
//! check about as long.

mod agent_util;
mod common;

use agent_util::Launch;
use common::{skip, skip_unless_root, trees, Dir};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;
const LIMIT: usize = 2000;

/// A memory cgroup (v2, or v1's memory controller) limited to `limit`
/// bytes, removed when dropped. The agent joins it through a shell that
/// writes its own pid to `cgroup.procs` and execs the agent.
struct MemCgroup {
    dir: PathBuf,
    v2: bool,
}

impl MemCgroup {
    fn create(name: &str, limit: u64) -> Result<MemCgroup, String> {
        let v2_root = Path::new("/sys/fs/cgroup");
        let v1_root = Path::new("/sys/fs/cgroup/memory");
        let (dir, v2) = if v2_root.join("cgroup.controllers").exists() {
            let controllers = std::fs::read_to_string(v2_root.join("cgroup.controllers"))
                .map_err(|e| format!("read cgroup.controllers: {e}"))?;
            if !controllers.split_whitespace().any(|c| c == "memory") {
                return Err("cgroup v2 without the memory controller".into());
            }
            // The children of the root get the controller only if the
            // root hands it down.
            let _ = std::fs::write(v2_root.join("cgroup.subtree_control"), "+memory");
            (v2_root.join(name), true)
        } else if v1_root.join("memory.limit_in_bytes").exists() {
            (v1_root.join(name), false)
        } else {
            return Err("no memory cgroup controller mounted".into());
        };
        let _ = std::fs::remove_dir(&dir);
        std::fs::create_dir(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let cg = MemCgroup { dir, v2 };
        let file = if v2 {
            "memory.max"
        } else {
            "memory.limit_in_bytes"
        };
        std::fs::write(cg.dir.join(file), limit.to_string())
            .map_err(|e| format!("write {file}: {e}"))?;
        if v2 {
            // No swap to hide in.
            let _ = std::fs::write(cg.dir.join("memory.swap.max"), "0");
        }
        Ok(cg)
    }

    /// The wrapper that puts the agent in the group.
    fn wrapper(&self) -> Vec<String> {
        vec![
            "sh".into(),
            "-c".into(),
            format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.dir.display()
            ),
        ]
    }

    /// Times the limit was hit and the kernel had to kill (v2: `oom_kill`
    /// in memory.events; v1: `oom_kill` in memory.oom_control).
    fn oom_kills(&self) -> u64 {
        let file = if self.v2 {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        let text = std::fs::read_to_string(self.dir.join(file)).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for MemCgroup {
    fn drop(&mut self) {
        // The agent is gone by now (dropped first); retry while the
        // kernel lets go of it.
        for _ in 0..50 {
            if std::fs::remove_dir(&self.dir).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Renames the shared tree into the root, and back when dropped (so the
/// next test, or the next run, finds it where it was).
struct MovedIn {
    from: PathBuf,
    to: PathBuf,
}

impl Drop for MovedIn {
    fn drop(&mut self) {
        if let Err(e) = std::fs::rename(&self.to, &self.from) {
            eprintln!(
                "could not move {} back to {}: {e}",
                self.to.display(),
                self.from.display()
            );
        }
    }
}

/// The agent's peak resident memory (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmHWM in /proc/PID/status")
        * 1024
}

#[test]
fn a_million_added_files_are_declared_under_a_1_gib_limit_with_a_bounded_log() {
    if skip_unless_root("a memory cgroup") {
        return;
    }
    let cg = match MemCgroup::create(&format!("driftd-flood-{}", std::process::id()), GIB) {
        Ok(cg) => cg,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let tree = trees::flood(1000, 1000);
    let entries: u64 = 1000 * 1001 + 1;
    let d = Dir::standard("adv-flood");
    d.bake_and_assert_clean(&[]);
    let wrapper = cg.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let mut agent = Launch::new(&d)
        .set("findings_limit", &LIMIT.to_string())
        .set("status_findings_limit", "100")
        .wrap(&wrapper)
        .start();
    agent.wait_ready();
    agent.wait_metrics("clean", |m| m.the_verdict() == "clean");

    let to = d.path("/usr/flood");
    std::fs::rename(&tree.path, &to).expect("rename the tree into the root");
    let _back = MovedIn {
        from: tree.path.clone(),
        to,
    };
    let started = Instant::now();
    let metrics = loop {
        if let Some(st) = agent.poll_exit() {
            panic!(
                "the agent exited ({st}; OOM kills in its cgroup: {})\n{}",
                cg.oom_kills(),
                agent.log_tail(30)
            );
        }
        if let Ok(m) = agent.try_metrics() {
            if m.v("driftd_drift_detected") == 1.0 && m.drifted("added") == entries as f64 {
                break m;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "no drift declared with every file counted within 10 minutes\n{}",
            agent.log_tail(30)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!(
        "declared after {:.1?}, peak RSS {} MiB",
        started.elapsed(),
        peak_rss(agent.pid) >> 20
    );
    assert_eq!(metrics.the_verdict(), "drifted");

    // Counts are exact; the list is bounded and says so.
    let status = agent.status();
    assert_eq!(status["counts"]["added"], entries, "{status}");
    assert_eq!(status["findings_total"], entries);
    assert_eq!(status["findings_truncated"], true);
    assert_eq!(status["findings"].as_array().unwrap().len(), 100);
    assert_eq!(status["drift_record"]["findings_total"], entries);

    // The memory does not follow the findings (a finding is a few hundred
    // bytes: a million held would be several hundred MiB).
    let peak = peak_rss(agent.pid);
    assert!(
        peak < 256 << 20,
        "peak RSS {} MiB with {entries} findings",
        peak >> 20
    );
    assert_eq!(cg.oom_kills(), 0);

    // The log: one line per held finding at most, and one summary.
    let log = agent.log_text();
    let finding_lines = log.lines().filter(|l| l.contains("finding path=")).count();
    assert!(
        finding_lines <= LIMIT,
        "{finding_lines} finding lines (limit {LIMIT})"
    );
    assert!(
        finding_lines > 0,
        "findings are logged\n{}",
        agent.log_tail(20)
    );
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("more findings than findings_limit"))
        .collect();
    assert!(
        !summaries.is_empty(),
        "a summary line\n{}",
        agent.log_tail(20)
    );
    assert!(
        summaries
            .iter()
            .any(|l| l.contains(&format!("findings={entries}"))),
        "the summary counts every finding: {summaries:?}"
    );
    assert!(log.len() < 2 << 20, "log of {} bytes", log.len());
    drop(agent);
}
