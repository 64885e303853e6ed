#!/usr/bin/env python3
"""Growth benchmark (issue 14): how driftd's time and memory grow with the tree.

Usage:
  python3 benches/scale.py [--sizes 10k,100k,1m] [--runs 5] [--write]
  python3 benches/scale.py --inotify [--dir-sizes dirs10k,dirs100k] [--write]
  python3 benches/scale.py --render [--write]   # tables and plot from the results file only

Options: --driftd PATH (default target/release/driftd of this repository,
after `cargo build --release`), --work DIR (default
bench-work/scale/, git-ignored), --aide-runs N (default 1), --aide-limit
SECONDS (default 600), --aide-workers N (default 1, Debian's), --steady
SECONDS (default 10), --label TEXT (names the build in the report, e.g.
"before"). Stdlib only; run as root (the inotify mode writes sysctls).

For each size, the synthetic tree of benches/gen_tree.py (a fixed seed,
file sizes like /usr's scaled to a 775-byte mean; kept and reused in
WORK/trees/<size>-s1-m775/root) is measured:

- `driftd bake` (unsigned) and `driftd check --allow-unsigned` against the
  reference manifest, beside `find ROOT -type f -print0 | xargs -0 -P2 -n
  2000 b3sum` (the hashing floor) and AIDE (`aide --init` and `--check`, a
  standalone config with a sha256 rule written for the tree). Runs are
  interleaved, `--runs` rounds in an order rotated every round, every run
  preceded by an untimed read of the whole tree (page cache warm); wall
  time, CPU time and peak RSS (/usr/bin/time's %M, ru_maxrss: the largest
  single process of the command, so for b3sum one of the two running at
  once) are recorded. AIDE runs in the first --aide-runs rounds, and only at sizes
  where it is expected to finish within --aide-limit seconds (estimated
  from the previous size; a run past the limit is killed and AIDE is left
  out from there on).
- `driftd run` with a minimal config (watch on, no read pacing, full scan
  interval 1 h): the first full scan is awaited (the metric
  driftd_last_full_scan_success_timestamp_seconds), then VmHWM (the peak)
  and VmRSS are read from /proc/PID/status and VmRSS is sampled every
  0.5 s for --steady seconds (steady RSS: the median of the samples).
- The size of the reference manifest (zstd) and of AIDE's database (gzip).

--inotify measures instead the kernel memory that `driftd run`'s inotify
watches cost on directory-only trees (dirs10k, dirs100k): the objects and
slabs of the inotify_inode_mark and fsnotify_mark_connector slab caches
(/sys/kernel/slab, which names them even when SLUB merges them with other
caches) and the machine's SUnreclaim (/proc/meminfo), before the agent
starts, once it watches every directory, and after it stops.
fs.inotify.max_user_watches is raised for the run when it is too low, and
restored afterwards.

Results accumulate in WORK/results.json (a size measured again replaces its
old record; records of another build are dropped from the group, sizes or
inotify, being measured); --render alone reads benches/scale-results.json
when WORK has no results. The report is printed as markdown and drawn as an SVG
(WORK/scale.svg). With --write, the results are also copied to
benches/scale-results.json, the plot to benches/scale.svg, and the
sections between the `scale:results` and `scale:inotify` markers of
BENCHMARKS.md are replaced. Only the work directory (and, with --write,
those three files) is written to.
"""
import argparse, datetime, json, math, os, platform, re, shutil, signal, socket, statistics
import subprocess, sys, time, urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in benches/
import gen_tree  # noqa: E402

MIB = 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ARGS_WORK = [None]  # the work directory, for stderr of commands without an output file
ENTRIES_NOMINAL = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}

# Issue 14's targets, judged at 1M entries (kind, key, limit, unit, text).
TARGETS = [
    ("rss", "bake", 128, "MiB", "`driftd bake` peak RSS ≤ 128 MiB"),
    ("rss", "check", 96, "MiB", "`driftd check` peak RSS ≤ 96 MiB"),
    ("rss", "run_peak", 96, "MiB", "`driftd run` peak RSS (VmHWM) ≤ 96 MiB"),
    ("rss", "run_steady", 64, "MiB", "`driftd run` steady RSS after the first scan ≤ 64 MiB"),
    ("manifest", "manifest", 44e6, "B", "manifest (zstd) ≤ 44 MB"),
    ("ratio", "check_b3sum", 1.1, "×", "warm `driftd check` wall ≤ 1.1 × b3sum (median of interleaved runs)"),
]


def log(msg):
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def die(msg):
    log("error: " + msg)
    sys.exit(2)


# ----------------------------------------------------------------- runs --

def cpu_busy():
    """Jiffies the whole machine spent busy (for the background load)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def run_timed(cmd, want=(0,), stdout=None, limit=None, label=""):
    """Run cmd (stdout to the file stdout, stderr to stdout + ".err");
    returns wall and CPU time, peak RSS (KiB: the largest single process of
    the command and its descendants), disk reads, and the CPU other
    processes used meanwhile (cores). None when killed at limit seconds.

    Peak RSS and disk reads come from /usr/bin/time (its wait4 rusage of
    the command), not from our own wait4: a child forked (or vforked) from
    this Python process keeps Python's RSS high-water mark across exec, so
    ru_maxrss would never read below ~30 MiB."""
    stdout = stdout or os.devnull
    base = stdout if stdout != os.devnull else os.path.join(ARGS_WORK[0], "last")
    errpath, timepath = base + ".err", base + ".time"
    with open(stdout, "wb") as out, open(errpath, "wb") as err:
        b0, t0 = cpu_busy(), time.monotonic()
        p = subprocess.Popen(["/usr/bin/time", "-f", "%e %U %S %M %I %x", "-o", timepath] + cmd,
                             stdout=out, stderr=err, start_new_session=True)
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG if limit else 0)
            if pid:
                break
            if time.monotonic() - t0 > limit:
                os.killpg(p.pid, signal.SIGKILL)
                os.wait4(p.pid, 0)
                p.returncode = -9
                return None
            time.sleep(0.1)
        wall = time.monotonic() - t0
        b1 = cpu_busy()
    p.returncode = os.waitstatus_to_exitcode(status)
    try:
        _, user, sys_, maxrss, inblock, rc = open(timepath).read().split("\n")[-2].split()
        user, sys_, maxrss, inblock, rc = float(user), float(sys_), int(maxrss), int(inblock), int(rc)
    except (OSError, ValueError, IndexError):
        die(f"{label or cmd[0]}: no /usr/bin/time output in {timepath} (exit {p.returncode}):\n"
            + open(errpath, errors="replace").read()[-3000:])
    if rc not in want:
        die(f"{label or cmd[0]} exited {rc} (expected {want}): {' '.join(cmd)}\n"
            + open(errpath, errors="replace").read()[-3000:])
    cpu = user + sys_
    bg = max(0.0, ((b1 - b0) / TICK - cpu) / wall) if wall > 0 else 0.0
    return {"wall": round(wall, 3), "user": user, "sys": sys_, "maxrss_kib": maxrss,
            "inblock": inblock, "bg_cores": round(bg, 2), "rc": rc}


def warm(root, extra=()):
    """Read every file of the tree (and stat every entry) so the page cache,
    inode and dentry caches hold it; repeated before every measured run
    because some VMs evict page cache that was idle for about a minute."""
    subprocess.run(["bash", "-c", 'find "$1" -type f -print0 | xargs -0 -P2 -n 2000 cat >/dev/null',
                    "_", root], check=True)
    for f in extra:
        if f and os.path.exists(f):
            with open(f, "rb") as fh:
                while fh.read(1 << 20):
                    pass


def med(runs, key="wall"):
    return statistics.median(r[key] for r in runs) if runs else None


def summary(runs):
    if not runs:
        return None
    return {"runs": len(runs), "wall_median": round(med(runs), 3),
            "wall_min": min(r["wall"] for r in runs), "wall_max": max(r["wall"] for r in runs),
            "cpu_median": round(statistics.median(r["user"] + r["sys"] for r in runs), 3),
            "peak_rss_mib": round(max(r["maxrss_kib"] for r in runs) / 1024, 1),
            "bg_cores_median": med(runs, "bg_cores"), "bg_cores_max": max(r["bg_cores"] for r in runs),
            "inblock_max_mib": round(max(r["inblock"] for r in runs) * 512 / MIB, 1),
            "raw": runs}


# ---------------------------------------------------------------- agent --

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metrics_text(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])  # KiB
    return out


class Agent:
    """`driftd run` on a tree, with its own state dir and a loopback port."""

    def __init__(self, binary, root, manifest, state, watch=True):
        shutil.rmtree(state, ignore_errors=True)
        os.makedirs(state)
        self.state, self.port = state, free_port()
        cfg = os.path.join(state, "driftd.toml")
        with open(cfg, "w") as f:
            f.write("# Written by benches/scale.py\n[agent]\n"
                    f"watch = {'true' if watch else 'false'}\n"
                    'read_rate_limit = "0"\ndebounce = "200ms"\nconfirm_delay = "100ms"\n'
                    'full_scan_interval = "1h"\nfull_scan_jitter = "0s"\n')
        self.log = open(os.path.join(state, "agent.log"), "w")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [binary, "run", "--config", cfg, "--root", root, "--manifest", manifest,
             "--allow-unsigned", "--state-dir", state, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, env={**os.environ, "NO_COLOR": "1"})

    def tail(self):
        return open(self.log.name, errors="replace").read()[-3000:]

    def wait_first_scan(self, timeout=7200):
        """Seconds until the first full scan has completed; the metrics then."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"driftd run exited {self.proc.returncode}:\n{self.tail()}")
            try:
                text = metrics_text(self.port)
                ts = metric(text, "driftd_last_full_scan_success_timestamp_seconds")
                if ts and ts > 0:
                    return time.monotonic() - self.t0, text
            except OSError:
                pass
            time.sleep(0.2)
        die(f"driftd run: no full scan within {timeout} s:\n{self.tail()}")

    def wait_watches(self, want, timeout=600):
        """Wait until driftd_watches reaches want and stays put for 2 s."""
        deadline, last, since = time.monotonic() + timeout, None, time.monotonic()
        while time.monotonic() < deadline:
            w = metric(metrics_text(self.port), "driftd_watches")
            if w != last:
                last, since = w, time.monotonic()
            elif w is not None and w >= want and time.monotonic() - since >= 2:
                return int(w)
            time.sleep(0.25)
        die(f"driftd run: driftd_watches is {last}, expected {want}:\n{self.tail()}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def measure_agent(binary, root, manifest, state, steady_s, extra_warm):
    warm(root, extra_warm)
    ag = Agent(binary, root, manifest, state)
    try:
        ready_s, text = ag.wait_first_scan()
        at_ready = proc_status(ag.proc.pid)
        samples = []
        end = time.monotonic() + steady_s
        while time.monotonic() < end:  # sampling, not synchronising
            samples.append(proc_status(ag.proc.pid)["VmRSS"])
            time.sleep(0.5)
        final = proc_status(ag.proc.pid)
        clean = metric(text, 'driftd_verdict{verdict="clean"}')
        res = {
            "first_scan_s": round(ready_s, 2),
            "verdict_clean": clean == 1,
            "watches": int(metric(metrics_text(ag.port), "driftd_watches") or 0),
            "manifest_entries": int(metric(text, "driftd_manifest_entries") or 0),
            "vmhwm_at_ready_mib": round(at_ready["VmHWM"] / 1024, 1),
            "vmrss_at_ready_mib": round(at_ready["VmRSS"] / 1024, 1),
            "peak_mib": round(final["VmHWM"] / 1024, 1),
            "steady_mib": round(statistics.median(samples) / 1024, 1),
            "steady_max_mib": round(max(samples) / 1024, 1),
            "steady_anon_mib": round(final["RssAnon"] / 1024, 1),
            "steady_samples": len(samples), "steady_seconds": steady_s,
        }
    finally:
        ag.stop()
    if not res["verdict_clean"]:
        die(f"driftd run: the first scan of an unchanged tree was not clean:\n{ag.tail()}")
    return res


# ------------------------------------------------------------------ AIDE --

def aide_conf(adir, root, workers):
    conf = os.path.join(adir, "aide.conf")
    with open(conf, "w") as f:
        # Standalone (none of Debian's includes); gzip_dbout=yes as Debian
        # sets it; database_attrs=E so AIDE does not hash its own database
        # at the end (favours AIDE slightly); root_prefix so the paths are
        # recorded relative to the tree's root, as for a real /.
        f.write("# Written by benches/scale.py: AIDE over the synthetic tree only.\n"
                f"database_in=file:{adir}/aide.db\ndatabase_out=file:{adir}/aide.db.new\n"
                f"gzip_dbout=yes\ndatabase_attrs=E\nnum_workers={workers}\nroot_prefix={root}\n"
                "R = p+i+n+u+g+s+m+c+sha256\n/ R\n")
    return conf


# ------------------------------------------------------------ the sizes --

def build_info(binary, default_binary):
    ver = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    info = {"version": ver, "binary": os.path.relpath(binary, REPO) if binary.startswith(REPO + os.sep)
            else binary}
    if default_binary:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
        dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                "Cargo.lock", "build.rs"], cwd=REPO).returncode != 0
        src = subprocess.run(["git", "log", "-1", "--format=%h", "--", "src", "Cargo.toml", "Cargo.lock",
                              "build.rs"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        info.update(commit=rev, src_commit=src, dirty=dirty)
    return info


def same_build(x, y):
    """Same binary: the same version and source (commit of src/ and Cargo.*
    without local changes), or the same path when the commit is unknown."""
    def key(b):
        b = b or {}
        return b.get("version"), b.get("src_commit") or b.get("binary"), b.get("dirty")
    return key(x) == key(y)


def machine_info():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return {"cpus": os.cpu_count(), "cpu": model, "ram_gib": round(mem, 1),
            "kernel": platform.release()}


def tool_versions():
    v = {}
    try:
        v["b3sum"] = subprocess.run(["b3sum", "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    try:
        out = subprocess.run(["aide", "--version"], capture_output=True, text=True)
        v["aide"] = (out.stdout + out.stderr).split("\n")[0].strip()
    except OSError:
        pass
    return v


def measure_size(size, a, binary, aide_state):
    root, tinfo = gen_tree.generate(size, a.work, log=log)
    sdir = os.path.join(a.work, "runs", size)
    os.makedirs(sdir, exist_ok=True)
    manifest = os.path.join(sdir, "manifest.zst")
    log(f"{size}: {tinfo['entries']} entries in {root}; baking the reference manifest")
    warm(root)
    run_timed([binary, "bake", "--root", root, "--output", manifest], label="reference bake")
    extra = [binary, manifest]

    have_aide = shutil.which("aide") is not None
    aide_note, adir = None, os.path.join(sdir, "aide")
    if not have_aide:
        aide_note = "aide not installed"
    elif aide_state.get("stopped"):
        aide_note = aide_state["stopped"]
    elif aide_state.get("per_entry_s"):
        est = aide_state["per_entry_s"] * tinfo["entries"]
        if est > a.aide_limit:
            aide_note = f"not run: estimated {est:.0f} s (from the previous size) > {a.aide_limit} s"
            aide_state["stopped"] = f"not run: a smaller size already exceeded {a.aide_limit} s"
    use_aide = aide_note is None
    if use_aide:
        os.makedirs(adir, exist_ok=True)
        for f in os.listdir(adir):
            os.remove(os.path.join(adir, f))
        conf = aide_conf(adir, root, a.aide_workers)
        extra.append(shutil.which("aide"))

    b3 = ["bash", "-c", 'find "$1" -type f -print0 | xargs -0 -P2 -n 2000 b3sum >/dev/null', "_", root]
    cmds = {
        "check": [binary, "check", "--manifest", manifest, "--root", root, "--allow-unsigned",
                  "--color", "never"],
        "b3sum": b3,
        "bake": [binary, "bake", "--root", root, "--output", os.path.join(sdir, "bake-run.zst")],
    }
    log(f"{size}: unrecorded warm-up runs")
    for k in ("check", "b3sum", "bake"):
        warm(root, extra)
        run_timed(cmds[k], label=k, stdout=os.path.join(sdir, f"{k}.warmup.out"))
    runs = {k: [] for k in ("check", "b3sum", "bake", "aide_init", "aide_check")}
    base = ["check", "b3sum", "bake"]
    for r in range(a.runs):
        order = base[r % 3:] + base[:r % 3]
        if use_aide and r < a.aide_runs:
            order += ["aide_init", "aide_check"]
        for item in order:
            warm(root, extra)
            if item in cmds:
                res = run_timed(cmds[item], label=item, stdout=os.path.join(sdir, f"{item}.out"))
            elif item == "aide_init":
                for f in ("aide.db.new",):
                    if os.path.exists(os.path.join(adir, f)):
                        os.remove(os.path.join(adir, f))
                res = run_timed(["aide", f"--config={conf}", "--init"], label="aide --init",
                                stdout=os.path.join(sdir, "aide-init.out"), limit=a.aide_limit)
                if res is None:
                    use_aide = False
                    aide_note = f"aide --init did not finish within {a.aide_limit} s (killed)"
                    aide_state["stopped"] = f"not run: a smaller size exceeded {a.aide_limit} s"
                    log(f"{size}: {aide_note}")
                    break
                os.replace(os.path.join(adir, "aide.db.new"), os.path.join(adir, "aide.db"))
                extra.append(os.path.join(adir, "aide.db"))
            else:
                res = run_timed(["aide", f"--config={conf}", "--check"], label="aide --check",
                                stdout=os.path.join(sdir, "aide-check.out"), limit=a.aide_limit)
                if res is None:
                    aide_note = f"aide --check did not finish within {a.aide_limit} s (killed)"
                    aide_state["stopped"] = f"not run: a smaller size exceeded {a.aide_limit} s"
                    use_aide = False
                    log(f"{size}: {aide_note}")
                    break
            res["round"] = r + 1
            runs[item].append(res)
            log(f"{size} round {r + 1}: {item:<10} {res['wall']:8.2f} s wall, "
                f"{res['user'] + res['sys']:7.2f} s cpu, {res['maxrss_kib'] / 1024:7.1f} MiB, "
                f"bg {res['bg_cores']:.2f}")
    if runs["aide_init"]:
        aide_state["per_entry_s"] = max(r["wall"] for r in runs["aide_init"] + runs["aide_check"]) \
            / tinfo["entries"]

    log(f"{size}: driftd run (first scan, then {a.steady} s steady)")
    agent = measure_agent(binary, root, manifest, os.path.join(sdir, "agent-state"), a.steady, extra)
    log(f"{size}: agent first scan {agent['first_scan_s']} s, VmHWM {agent['peak_mib']} MiB, "
        f"steady {agent['steady_mib']} MiB")

    aide_db = os.path.join(adir, "aide.db")
    res = {
        "size": size, "tree": {k: tinfo[k] for k in ("entries", "files", "symlinks", "dirs", "bytes",
                                                     "seed", "mean_bytes")},
        "tree_path": os.path.relpath(root, REPO) if root.startswith(REPO + os.sep) else root,
        "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "build": a.build, "label": a.label, "runs_requested": a.runs,
        "manifest_bytes": os.path.getsize(manifest),
        "aide_db_bytes": os.path.getsize(aide_db) if runs["aide_init"] and os.path.exists(aide_db) else None,
        "aide_note": aide_note, "aide_workers": a.aide_workers,
        "agent": agent,
    }
    for k, v in runs.items():
        res[k] = summary(v)
    return res


# -------------------------------------------------------------- inotify --

def slab(name):
    d = f"/sys/kernel/slab/{name}"
    if not os.path.isdir(d):
        return None

    def num(f):
        return int(open(os.path.join(d, f)).read().split()[0])
    return {"objects": num("objects"), "slabs": num("slabs"), "slab_size": num("slab_size"),
            "object_size": num("object_size"), "order": num("order"),
            "aliases": num("aliases"), "cache": os.path.basename(os.path.realpath(d))}


def kernel_watches(pid):
    """Watches the kernel holds for the process: `inotify wd:` lines in the
    fdinfo of its inotify descriptors."""
    n = 0
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return n


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = int(v.split()[0])  # KiB
    return out


def kernel_snapshot():
    return {"mark": slab("inotify_inode_mark"), "conn": slab("fsnotify_mark_connector"),
            "mem": meminfo()}


def delta(a, b):
    """Kernel memory b - a: objects and bytes of the two fsnotify caches."""
    out = {}
    for k in ("mark", "conn"):
        if a[k] and b[k]:
            objs = b[k]["objects"] - a[k]["objects"]
            pages = (b[k]["slabs"] - a[k]["slabs"]) << b[k]["order"]
            out[k] = {"objects": objs, "bytes": objs * b[k]["slab_size"], "slab_bytes": pages * PAGE}
    out["sunreclaim_kib"] = b["mem"]["SUnreclaim"] - a["mem"]["SUnreclaim"]
    out["slab_kib"] = b["mem"]["Slab"] - a["mem"]["Slab"]
    return out


def measure_inotify(size, a, binary):
    root, tinfo = gen_tree.generate(size, a.work, log=log)
    sdir = os.path.join(a.work, "runs", size)
    os.makedirs(sdir, exist_ok=True)
    manifest = os.path.join(sdir, "manifest.zst")
    run_timed([binary, "bake", "--root", root, "--output", manifest], label="bake")
    dirs = tinfo["dirs"]
    knob = "/proc/sys/fs/inotify/max_user_watches"
    old = int(open(knob).read())
    need = dirs + 50_000  # room for other processes' watches of the same user
    raised = old < need
    if raised:
        log(f"{size}: raising fs.inotify.max_user_watches {old} -> {need} for the run")
        open(knob, "w").write(str(need))
    try:
        warm(root)
        time.sleep(1)
        before = kernel_snapshot()
        ag = Agent(binary, root, manifest, os.path.join(sdir, "agent-state"))
        try:
            ag.wait_first_scan()
            watches = ag.wait_watches(dirs)
            ready = kernel_snapshot()
            rss = proc_status(ag.proc.pid)
            kwatches = kernel_watches(ag.proc.pid)
        finally:
            ag.stop()
        time.sleep(2)  # marks are freed after an RCU grace period
        after = kernel_snapshot()
    finally:
        if raised:
            open(knob, "w").write(str(old))
            log(f"{size}: fs.inotify.max_user_watches restored to {old}")
    up, down = delta(before, ready), delta(after, ready)
    ino = slab("ext4_inode_cache")
    den = slab("dentry")
    per_watch = sum(ready[k]["slab_size"] for k in ("mark", "conn") if ready[k])
    res = {"size": size, "dirs": dirs, "watches": watches, "kernel_watches": kwatches,
           "bytes_per_watch": per_watch, "computed_bytes": kwatches * per_watch, "build": a.build, "label": a.label,
           "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "max_user_watches": old, "raised_to": need if raised else None,
           "caches": {k: {kk: ready[k][kk] for kk in ("cache", "aliases", "object_size", "slab_size")}
                      for k in ("mark", "conn") if ready[k]},
           "start_to_ready": up, "ready_to_stopped": down,
           "agent_vmrss_mib": round(rss["VmRSS"] / 1024, 1),
           "agent_vmhwm_mib": round(rss["VmHWM"] / 1024, 1),
           "pinned_per_dir": (ino["slab_size"] if ino else 0) + (den["slab_size"] if den else 0)}
    log(f"{size}: {watches} watches; marks +{up.get('mark', {}).get('objects')} "
        f"(-{down.get('mark', {}).get('objects')} at stop), SUnreclaim {up['sunreclaim_kib']:+d} KiB")
    return res


# -------------------------------------------------------------- reports --

def fmt(v, nd=2):
    return "—" if v is None else f"{v:.{nd}f}"


def build_name(b):
    if not b:
        return "?"
    s = b.get("version", "driftd")
    if b.get("commit"):
        s += f", built at commit {b['commit']}"
        if b.get("src_commit") and b["src_commit"] != b["commit"]:
            s += f" (source as of {b['src_commit']}, its last change to src/ or Cargo.*)"
        s += " + uncommitted changes" if b.get("dirty") else ""
    return s


def render_markdown(data):
    sizes = [data["sizes"][s] for s in sorted(data["sizes"], key=lambda s: data["sizes"][s]["tree"]["entries"])]
    out = []
    if sizes:
        builds = {build_name(s["build"]) for s in sizes}
        labels = {s.get("label") for s in sizes if s.get("label")}
        lab = f"the **{'/'.join(sorted(labels))}** build: " if labels else ""
        out.append(f"Measured with {lab}{'; '.join(sorted(builds))}, by `benches/scale.py` ("
                   f"{', '.join(s['size'] + ' on ' + s['when'] for s in sizes)}).")
        m, tv = data.get("machine", {}), data.get("tools", {})
        out.append("")
        out.append(f"**Machine:** {m.get('cpus')} CPUs ({m.get('cpu')}), {m.get('ram_gib')} GiB RAM, "
                   f"Linux {m.get('kernel')}. **Tools:** {tv.get('b3sum', '?')}, {tv.get('aide', '?')} "
                   f"(num_workers={sizes[0].get('aide_workers')}, the Debian default).")
        out.append("")
        out.append("| tree | entries | files | symlinks | dirs | MB of data | manifest (zstd) bytes | "
                   "bytes per entry | AIDE db (gzip) bytes | location |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for s in sizes:
            t = s["tree"]
            out.append(f"| {s['size']} | {t['entries']:,} | {t['files']:,} | {t['symlinks']:,} | "
                       f"{t['dirs']:,} | {t['bytes'] / 1e6:.0f} | {s['manifest_bytes']:,} | "
                       f"{s['manifest_bytes'] / t['entries']:.1f} | "
                       f"{'{:,}'.format(s['aide_db_bytes']) if s.get('aide_db_bytes') else '—'} | "
                       f"`{s['tree_path']}` |")
        out.append("")
        out.append("Peak RSS, MiB (ru_maxrss; for b3sum the largest of its processes, two of which "
                   "run at once; for the agent VmHWM, and the median VmRSS over "
                   f"{sizes[0]['agent']['steady_seconds']} s after the first full scan):")
        out.append("")
        out.append("| tree | driftd bake | driftd check | driftd run peak | driftd run steady | "
                   "b3sum | aide --init | aide --check |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        for s in sizes:
            g = lambda k: fmt(s[k]["peak_rss_mib"], 1) if s.get(k) else "—"  # noqa: E731
            out.append(f"| {s['size']} | {g('bake')} | {g('check')} | {fmt(s['agent']['peak_mib'], 1)} | "
                       f"{fmt(s['agent']['steady_mib'], 1)} | {g('b3sum')} | {g('aide_init')} | "
                       f"{g('aide_check')} |")
        out.append("")
        out.append("Wall time, seconds, warm cache (median of the interleaved runs, min–max; "
                   "CPU time user+sys in brackets):")
        out.append("")
        out.append("| tree | runs | driftd bake | driftd check | b3sum | check / b3sum | aide --init | "
                   "aide --check | driftd run: first full scan | check / b3sum, CPU time | background cores (median, max) |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        all_bg = []
        for s in sizes:
            def g(k):
                v = s.get(k)
                if not v:
                    return "—"
                return (f"{v['wall_median']:.2f} ({v['wall_min']:.2f}–{v['wall_max']:.2f}) "
                        f"[{v['cpu_median']:.2f}]")
            ratio = s["check"]["wall_median"] / s["b3sum"]["wall_median"]
            bgs = [r["bg_cores"] for k in ("check", "b3sum", "bake", "aide_init", "aide_check")
                   if s.get(k) for r in s[k]["raw"]]
            out.append(f"| {s['size']} | {s['check']['runs']} | {g('bake')} | {g('check')} | {g('b3sum')} | "
                       f"{ratio:.2f} | {g('aide_init')} | {g('aide_check')} | {s['agent']['first_scan_s']:.2f} | "
                       f"{s['check']['cpu_median'] / s['b3sum']['cpu_median']:.2f} | "
                       f"{statistics.median(bgs):.2f}, {max(bgs):.2f} |")
            all_bg += bgs
        loaded = statistics.median(all_bg) > 0.15
        out.append("")
        out.append(f"**Loaded: {'yes' if loaded else 'no'}.** Other processes used a median of "
                   f"{statistics.median(all_bg):.2f} cores (max {max(all_bg):.2f}) of {m.get('cpus')} "
                   "during the measured runs" + (": the wall times, and the check / b3sum ratio, are only "
                   "indicative; CPU time is much less sensitive to the load." if loaded else "."))
        notes = [f"{s['size']}: AIDE {s['aide_note']}" for s in sizes if s.get("aide_note")]
        if notes:
            out.append("")
            out.append("AIDE: " + "; ".join(notes) + ".")
        big = next((s for s in sizes if s["size"] == "1m"), None)
        out.append("")
        if big:
            out.append("Issue 14's targets at 1M entries beside this build's numbers (a ratio above 1 "
                       "is over the target). This is a measurement of the build named above, not a "
                       "verdict on the issue" + (", and the time ratio comes from a loaded machine"
                                                 if loaded else "") + ":")
            out.append("")
            out.append("| target | measured at 1m | measured / target |")
            out.append("|---|---:|---:|")
            vals = {"bake": big["bake"]["peak_rss_mib"], "check": big["check"]["peak_rss_mib"],
                    "run_peak": big["agent"]["peak_mib"], "run_steady": big["agent"]["steady_mib"],
                    "manifest": big["manifest_bytes"],
                    "check_b3sum": big["check"]["wall_median"] / big["b3sum"]["wall_median"]}
            for kind, key, lim, unit, text in TARGETS:
                v = vals[key]
                shown = (f"{v:.1f} MiB" if unit == "MiB" else f"{v / 1e6:.1f} MB" if unit == "B"
                         else f"{v:.2f}×")
                out.append(f"| {text} | {shown} | {v / lim:.2f} |")
        else:
            out.append("The 1m tree was not measured with this build, so issue 14's targets "
                       "(judged at 1M entries) are not compared here.")
        out.append("")
        out.append("![Growth of time and memory with the number of entries](benches/scale.svg)")
    return "\n".join(out) + "\n"


def render_inotify(data):
    ino = [data["inotify"][k] for k in sorted(data.get("inotify", {}), key=lambda k: data["inotify"][k]["dirs"])]
    if not ino:
        return "Not measured yet: `python3 benches/scale.py --inotify --write`.\n"
    out = []
    builds = {build_name(r["build"]) for r in ino}
    labels = {r.get("label") for r in ino if r.get("label")}
    lab = f"the **{'/'.join(sorted(labels))}** build: " if labels else ""
    out.append(f"Measured with {lab}{'; '.join(sorted(builds))}, by `benches/scale.py --inotify` ("
               f"{', '.join(r['size'] + ' on ' + r['when'] for r in ino)}).")
    c = ino[0]["caches"]
    out.append("")
    out.append("| tree | directories | watches (driftd_watches / kernel fdinfo) | kernel memory of the "
               "watches: marks + connectors × object size | inotify_inode_mark objects Δ (start → ready) | "
               "fsnotify_mark_connector objects Δ | SUnreclaim Δ KiB (whole machine) | freed at stop: "
               "marks, SUnreclaim KiB | agent VmRSS MiB |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in ino:
        u, d = r["start_to_ready"], r["ready_to_stopped"]
        mk, cn = u.get("mark", {}), u.get("conn", {})
        out.append(f"| {r['size']} | {r['dirs']:,} | {r['watches']:,} / {r['kernel_watches']:,} | "
                   f"{r['computed_bytes'] / MIB:.2f} MiB ({r['bytes_per_watch']} B per watch) | "
                   f"{mk.get('objects', 0):+,} | {cn.get('objects', 0):+,} | {u['sunreclaim_kib']:+,} | "
                   f"{d.get('mark', {}).get('objects', 0):,}, {d['sunreclaim_kib']:,} | "
                   f"{r['agent_vmrss_mib']} |")
    out.append("")
    out.append(f"Slab caches: `inotify_inode_mark` is SLUB cache `{c['mark']['cache']}` "
               f"({c['mark']['slab_size']} bytes per object, shared with {c['mark']['aliases'] - 1} other "
               f"caches), `fsnotify_mark_connector` is `{c['conn']['cache']}` ({c['conn']['slab_size']} bytes, "
               f"shared with {c['conn']['aliases'] - 1} others): one mark per watch and one connector "
               "per watched inode. The object counts of the two caches (and SUnreclaim, of the whole "
               "machine) also move with other users' allocations in the same window, so they are the "
               "cross-check, and the kernel memory column is the count of watches times the object "
               "sizes. Each watch also pins its "
               f"directory's inode and dentry in memory (about {ino[0]['pinned_per_dir']:,} bytes on ext4: "
               "`ext4_inode_cache` + `dentry` objects), which the kernel could otherwise reclaim; "
               "these were cached by the scan anyway and are not in the figures above.")
    return "\n".join(out) + "\n"


def svg_plot(data):
    sizes = [data["sizes"][s] for s in sorted(data["sizes"], key=lambda s: data["sizes"][s]["tree"]["entries"])]
    series_mem = [
        ("driftd bake", "#1f77b4", "", lambda s: s["bake"]["peak_rss_mib"] if s.get("bake") else None),
        ("driftd check", "#d62728", "", lambda s: s["check"]["peak_rss_mib"] if s.get("check") else None),
        ("driftd run peak", "#2ca02c", "", lambda s: s["agent"]["peak_mib"]),
        ("driftd run steady", "#2ca02c", "6 4", lambda s: s["agent"]["steady_mib"]),
        ("b3sum", "#7f7f7f", "", lambda s: s["b3sum"]["peak_rss_mib"] if s.get("b3sum") else None),
        ("aide --init", "#9467bd", "", lambda s: s["aide_init"]["peak_rss_mib"] if s.get("aide_init") else None),
        ("aide --check", "#9467bd", "6 4", lambda s: s["aide_check"]["peak_rss_mib"] if s.get("aide_check") else None),
    ]
    series_time = [
        ("driftd bake", "#1f77b4", "", lambda s: s["bake"]["wall_median"] if s.get("bake") else None),
        ("driftd check", "#d62728", "", lambda s: s["check"]["wall_median"] if s.get("check") else None),
        ("driftd run first scan", "#2ca02c", "2 3", lambda s: s["agent"]["first_scan_s"]),
        ("b3sum", "#7f7f7f", "", lambda s: s["b3sum"]["wall_median"] if s.get("b3sum") else None),
        ("aide --init", "#9467bd", "", lambda s: s["aide_init"]["wall_median"] if s.get("aide_init") else None),
        ("aide --check", "#9467bd", "6 4", lambda s: s["aide_check"]["wall_median"] if s.get("aide_check") else None),
    ]
    W, H = 1010, 520
    pw, ph, top = 380, 300, 72
    big = next((s for s in sizes if s["size"] == "1m" and s.get("b3sum")), None)
    panels = [(70, "Peak RSS (MiB, log scale)", series_mem,
               [(128, "≤ 128"), (96, "≤ 96"), (64, "≤ 64")]),
              (580, "Wall time, warm cache (s, log scale)", series_time,
               [(1.1 * big["b3sum"]["wall_median"], "≤ 1.1×b3sum")] if big else [])]
    xs = [s["tree"]["entries"] for s in sizes] or [10_000, 1_000_000]
    xlo, xhi = math.log10(min(xs + [10_000]) / 1.6), math.log10(max(xs + [1_000_000]) * 2.8)
    esc = lambda t: t.replace("&", "&amp;").replace("<", "&lt;")  # noqa: E731
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>']
    label = "; ".join(sorted({build_name(s["build"]) for s in sizes}))
    o.append(f'<text x="{W / 2}" y="20" text-anchor="middle" font-size="15">driftd growth on synthetic '
             f'trees: driftd beside b3sum and AIDE</text>')
    o.append(f'<text x="{W / 2}" y="37" text-anchor="middle" fill="#555">{esc(label)}'
             f'{" (" + esc(sizes[0]["label"]) + ")" if sizes and sizes[0].get("label") else ""}</text>')
    for x0, title, series, targets in panels:
        vals = [f(s) for _, _, _, f in series for s in sizes if f(s)] + [t for t, _ in targets]
        if not vals:
            vals = [1, 10]
        ylo = math.floor(math.log10(min(vals) / 1.3))
        yhi = math.ceil(math.log10(max(vals) * 1.3))
        if yhi - ylo < 1:
            yhi = ylo + 1

        def px(v):
            return x0 + (math.log10(v) - xlo) / (xhi - xlo) * pw

        def py(v):
            return top + ph - (math.log10(v) - ylo) / (yhi - ylo) * ph
        o.append(f'<text x="{x0 + pw / 2}" y="{top - 6}" text-anchor="middle" font-weight="bold">{title}</text>')
        o.append(f'<rect x="{x0}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
        for d in range(ylo, yhi + 1):
            for m in (1, 2, 5):
                v = m * 10 ** d
                if not (10 ** ylo <= v <= 10 ** yhi):
                    continue
                y = py(v)
                o.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
                txt = f"{v:g}" if v >= 1 else f"{v:.2g}"
                o.append(f'<text x="{x0 - 5}" y="{y + 4:.1f}" text-anchor="end">{txt}</text>')
        for v, txt in ((10_000, "10k"), (100_000, "100k"), (1_000_000, "1M")):
            x = px(v)
            o.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{top + ph}" stroke="#ddd"/>')
            o.append(f'<text x="{x:.1f}" y="{top + ph + 16}" text-anchor="middle">{txt}</text>')
        o.append(f'<text x="{x0 + pw / 2}" y="{top + ph + 34}" text-anchor="middle">entries in the tree '
                 '(log scale)</text>')
        for t, txt in targets:  # issue 14's targets, judged at 1M entries
            y = py(t)
            x = px(1_000_000)
            o.append(f'<line x1="{x - 12:.1f}" x2="{x + 12:.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e377c2" '
                     'stroke-width="2.5"/>')
            o.append(f'<text x="{x + 15:.1f}" y="{y + 4:.1f}" fill="#c2185b" font-size="10">{esc(txt)}</text>')
        for name, color, dash, f in series:
            pts = [(px(s["tree"]["entries"]), py(f(s))) for s in sizes if f(s)]
            if not pts:
                continue
            d = f' stroke-dasharray="{dash}"' if dash else ""
            if len(pts) > 1:
                o.append(f'<polyline fill="none" stroke="{color}" stroke-width="2"{d} points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + '"/>')
            for x, y in pts:  # hollow markers for the dashed series
                fill = f'fill="white" stroke="{color}" stroke-width="1.5"' if dash else f'fill="{color}"'
                o.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" {fill}/>')
        # legend below the panel
        for i, (name, color, dash, f) in enumerate(series):
            lx, ly = x0 + (i % 2) * 190, top + ph + 55 + (i // 2) * 17
            d = f' stroke-dasharray="{dash}"' if dash else ""
            o.append(f'<line x1="{lx}" x2="{lx + 28}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                     f'stroke-width="2"{d}/>')
            fill = f'fill="white" stroke="{color}" stroke-width="1.5"' if dash else f'fill="{color}"'
            o.append(f'<circle cx="{lx + 14}" cy="{ly - 4}" r="3.5" {fill}/>')
            o.append(f'<text x="{lx + 34}" y="{ly}">{esc(name)}</text>')
    o.append(f'<line x1="70" x2="90" y1="{H - 14}" y2="{H - 14}" stroke="#e377c2" stroke-width="2.5"/>')
    o.append(f'<text x="96" y="{H - 10}" fill="#333">issue 14\'s targets at 1M entries: peak RSS of bake ≤ 128 MiB, '
             'of check and of the agent ≤ 96 MiB, agent steady ≤ 64 MiB; check time ≤ 1.1 × b3sum</text>')
    o.append("</svg>")
    return "\n".join(o) + "\n"


def replace_section(text, name, title, body):
    begin, end = f"<!-- scale:{name}:begin -->", f"<!-- scale:{name}:end -->"
    section = f"{begin}\n{body}{end}"
    if begin in text:
        return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    return text.rstrip("\n") + f"\n\n### {title}\n\n{section}\n"


# ----------------------------------------------------------------- main --

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--driftd", help="driftd binary (default: target/release/driftd, built if missing)")
    ap.add_argument("--sizes", default="10k,100k,1m")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--aide-runs", type=int, default=1)
    ap.add_argument("--aide-limit", type=float, default=600)
    ap.add_argument("--aide-workers", type=int, default=1)
    ap.add_argument("--steady", type=float, default=10)
    ap.add_argument("--work", default=os.path.join(REPO, "bench-work", "scale"))
    ap.add_argument("--label", default="", help='names the build in the report, e.g. "before"')
    ap.add_argument("--inotify", action="store_true", help="measure the kernel memory of the watches")
    ap.add_argument("--dir-sizes", default="dirs10k,dirs100k")
    ap.add_argument("--render", action="store_true", help="only redraw from the results file")
    ap.add_argument("--write", action="store_true",
                    help="also write benches/scale-results.json, benches/scale.svg and BENCHMARKS.md")
    a = ap.parse_args()
    a.work = os.path.abspath(a.work)
    ARGS_WORK[0] = a.work
    os.makedirs(a.work, exist_ok=True)
    results_path = os.path.join(a.work, "results.json")
    data = {"sizes": {}, "inotify": {}}
    # Measuring adds to the work directory's results; --render alone falls
    # back to the checked-in results (a fresh checkout has no work dir).
    sources = [results_path] + ([os.path.join(HERE, "scale-results.json")] if a.render else [])
    for p in sources:
        if os.path.exists(p):
            data = json.load(open(p))
            break

    if not a.render:
        default = a.driftd is None
        src = a.driftd or os.path.join(REPO, "target", "release", "driftd")
        if default:  # so the binary is this checkout's (quick when it already is)
            log("cargo build --release")
            subprocess.run(["cargo", "build", "--release"], cwd=REPO, check=True)
        if not os.path.exists(src):
            die(f"no driftd binary at {src}")
        a.build = build_info(src, default)
        # A private copy, so that other builds cannot replace it mid-run.
        binary = os.path.join(a.work, "driftd")
        shutil.copy2(src, binary)
        for tool in ("b3sum", "bash", "find", "xargs"):
            if not shutil.which(tool):
                die(f"{tool} not found (b3sum: `cargo install b3sum --locked`)")
        data["machine"], data["tools"] = machine_info(), tool_versions()
        # Records of another build are dropped from the group measured now,
        # so a table never mixes builds.
        group = data.setdefault("inotify" if a.inotify else "sizes", {})
        for k in [k for k, v in group.items() if not same_build(v.get("build"), a.build)]:
            log(f"dropping the {k} record of another build ({build_name(group[k].get('build'))})")
            del group[k]
        if a.inotify:
            for size in a.dir_sizes.split(","):
                data.setdefault("inotify", {})[size] = measure_inotify(size.strip(), a, binary)
                json.dump(data, open(results_path, "w"), indent=1)
        else:
            aide_state = {}
            sizes = [s.strip() for s in a.sizes.split(",")]
            for size in sorted(sizes, key=lambda s: ENTRIES_NOMINAL.get(s, 0)):
                if size not in ENTRIES_NOMINAL:
                    die(f"unknown size {size} (one of {', '.join(ENTRIES_NOMINAL)})")
                data["sizes"][size] = measure_size(size, a, binary, aide_state)
                json.dump(data, open(results_path, "w"), indent=1)  # after every size

    md = render_markdown(data) if data.get("sizes") else ""
    ino = render_inotify(data)
    svg = svg_plot(data)
    with open(os.path.join(a.work, "scale.svg"), "w") as f:
        f.write(svg)
    with open(os.path.join(a.work, "report.md"), "w") as f:
        f.write(md + "\n" + ino)
    print(md + "\n" + ino)
    if a.write:
        with open(os.path.join(HERE, "scale-results.json"), "w") as f:
            json.dump(data, f, indent=1)
            f.write("\n")
        with open(os.path.join(HERE, "scale.svg"), "w") as f:
            f.write(svg)
        path = os.path.join(REPO, "BENCHMARKS.md")
        text = open(path).read()
        if md:
            text = replace_section(text, "results", "Growth results", md)
        text = replace_section(text, "inotify", "inotify at scale: results", ino)
        open(path, "w").write(text)
        log("wrote benches/scale-results.json, benches/scale.svg and BENCHMARKS.md")


if __name__ == "__main__":
    main()
