#!/usr/bin/env python3
"""Benchmark `driftd run` on a copy of /usr: memory, idle cost, detection latency.

Usage: python3 benches/agent_bench.py [--tree DIR] [--tries 20] [--idle 60] [--write]

- tree: the tree to watch (default bench-work/root/usr, made by
  benches/bench.sh; /usr is copied there if it is missing).
- Memory: VmHWM and VmRSS of the agent once ready (first full scan done,
  every directory watched).
- Idle: CPU time (utime+stime from /proc/PID/stat) the agent uses over
  --idle seconds with nothing changing; node_exporter's over the same
  window when it is installed (prometheus-node-exporter), for scale.
- Latency: --tries times, a fresh agent (new state dir) is started and made
  ready, a watched file is appended to, and /metrics is polled every 5 ms
  until it shows `driftd_drift_detected 1`; p50 and p99 are reported.

With --write the results replace the "Agent results" section of
BENCHMARKS.md. Only the work directory is written to.
"""
import argparse, os, re, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url, timeout=2):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


class Agent:
    def __init__(self, binary, tree, manifest, work):
        self.port = free_port()
        self.state = tempfile.mkdtemp(dir=work, prefix="state-")
        cfg = os.path.join(self.state, "driftd.toml")
        with open(cfg, "w") as f:
            f.write('[agent]\nread_rate_limit = "0"\ndebounce = "200ms"\nconfirm_delay = "100ms"\n'
                    'full_scan_interval = "1h"\nfull_scan_jitter = "0s"\n')
        self.log = open(os.path.join(self.state, "log"), "w")
        self.proc = subprocess.Popen(
            [binary, "run", "--config", cfg, "--root", tree, "--manifest", manifest,
             "--allow-unsigned", "--state-dir", self.state, "--listen", f"127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log, env={**os.environ, "NO_COLOR": "1"})

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                code, body = get(self.url("/healthz"))
                if code == 200:
                    return
            except Exception as e:
                if getattr(e, "code", None) == 503:
                    pass
            time.sleep(0.05)
        raise SystemExit("agent not ready; log: " + open(self.log.name).read()[-2000:])

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.state, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tree", default=os.path.join(ROOT, "bench-work/root/usr"))
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work/agent"))
    ap.add_argument("--tries", type=int, default=20)
    ap.add_argument("--idle", type=int, default=60)
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    if not os.path.isdir(a.tree):
        print(f"copying /usr to {a.tree} ...", file=sys.stderr)
        os.makedirs(os.path.dirname(a.tree), exist_ok=True)
        subprocess.run(["cp", "-a", "/usr", a.tree], check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(a.work, "driftd")
    shutil.copy2(os.path.join(ROOT, "target/release/driftd"), binary)
    manifest = os.path.join(a.work, "usr.manifest")
    subprocess.run([binary, "bake", "--root", a.tree, "--output", manifest], check=True,
                   stderr=subprocess.DEVNULL)
    target = os.path.join(a.tree, "bin", "driftd-bench-target")
    # The target file must be in the manifest: bake it in, then append to it.
    with open(target, "wb") as f:
        f.write(b"original\n")
    subprocess.run([binary, "bake", "--root", a.tree, "--output", manifest], check=True,
                   stderr=subprocess.DEVNULL)
    entries = subprocess.run([binary, "inspect", manifest, "--format", "json"], check=True,
                             capture_output=True, text=True).stdout
    n_entries = re.search(r'"entries": (\d+)', entries).group(1)

    # Memory and idle cost.
    ag = Agent(binary, a.tree, manifest, a.work)
    t0 = time.time()
    ag.wait_ready()
    ready_s = time.time() - t0
    _, m = get(ag.url("/metrics"))
    watches = metric(m, "driftd_watches")
    hwm, rss = status_kb(ag.proc.pid, "VmHWM"), status_kb(ag.proc.pid, "VmRSS")
    ne_pid = None
    ne = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
    if ne:
        nep = free_port()
        ne_proc = subprocess.Popen([ne, f"--web.listen-address=127.0.0.1:{nep}"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        ne_pid = ne_proc.pid
    c0 = cpu_seconds(ag.proc.pid)
    n0 = cpu_seconds(ne_pid) if ne_pid else None
    time.sleep(a.idle)  # measuring, not synchronising
    idle_cpu = cpu_seconds(ag.proc.pid) - c0
    ne_cpu = cpu_seconds(ne_pid) - n0 if ne_pid else None
    if ne_pid:
        ne_proc.terminate()
    ag.stop()

    # Detection latency.
    lat = []
    for i in range(a.tries):
        with open(target, "wb") as f:
            f.write(b"original\n")
        os.utime(target, None)
        ag = Agent(binary, a.tree, manifest, a.work)
        ag.wait_ready()
        time.sleep(0.3)  # let the restore's own events drain before timing
        t = time.monotonic()
        with open(target, "ab") as f:
            f.write(b"tampered %d\n" % i)
        while True:
            _, m = get(ag.url("/metrics"))
            if metric(m, "driftd_drift_detected") == 1:
                lat.append(time.monotonic() - t)
                break
            if time.monotonic() - t > 30:
                raise SystemExit("no detection within 30 s")
            time.sleep(0.005)
        ag.stop()
    os.remove(target)  # leave the tree as bench.sh copied it
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(round(0.99 * (len(lat) - 1))))]
    load = os.getloadavg()[0]
    rows = [
        ("tree", f"{a.tree} ({n_entries} manifest entries, {int(watches or 0)} directories watched)"),
        ("first full check until ready", f"{ready_s:.1f} s (unpaced)"),
        ("peak RSS (VmHWM) once ready", f"{hwm / 1024:.1f} MiB (target ≤ 64 MB) — {'PASS' if hwm <= 64 * 1024 else 'FAIL'}"),
        ("RSS once ready", f"{rss / 1024:.1f} MiB"),
        (f"idle CPU over {a.idle} s", f"{idle_cpu * 1000:.0f} ms" + (f" (node_exporter, not scraped: {ne_cpu * 1000:.0f} ms)" if ne_cpu is not None else "")),
        (f"detection latency, {a.tries} tries", f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms (target ≤ 2 s) — {'PASS' if lat[-1] <= 2 else 'FAIL'}"),
        ("load average at the end", f"{load:.2f} (nproc {os.cpu_count()})"),
    ]
    out = "| measure | result |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    out += ("\nLatency is from the end of the write to the first scrape showing "
            "`driftd_drift_detected 1`: debounce (200 ms) + targeted re-check + "
            "confirmation delay (100 ms) + confirmation re-read + scrape polling (5 ms).\n")
    print(out)
    if a.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
        begin, end = "<!-- agent-results:begin -->", "<!-- agent-results:end -->"
        section = f"{begin}\n{out}{end}"
        if begin in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
        else:
            text += f"\n## Agent results (`python3 benches/agent_bench.py --write`)\n\n{section}\n"
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
