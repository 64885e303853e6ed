#!/usr/bin/env python3
"""The shipped Prometheus rules and the fleet guard's query at fleet scale.

Usage: python3 benches/fleet_bench.py [--hosts 10000] [--shards 100] [--write]

- The series of one host are a real agent's: the bench builds driftd, runs
  it on a three-file tree with one (dry-run) signal backend and reads its
  /metrics. Families of the fleet guard's contract that this build does
  not export yet (driftd_host_info, driftd_signal_held, driftd_guard_*,
  driftd_config_reload_success) are added as the guard defines them.
- A stand-in serves --hosts copies of them (each with its own `instance`,
  `host_id` and `hostname`, all of one image: the worst case for the
  guard, whose query matches every host) as --shards scrape targets
  (`honor_labels`), so one real Prometheus scrapes the whole fleet every
  30 s and evaluates packaging/prometheus/driftd.rules.yml every 30 s, as
  the shipped prometheus.yml does.
- Two states: calm (every host clean), then a mass drift (every host
  drifted at once, its signal held by the guard). In each: the head
  series, Prometheus' memory, the time of each rule group evaluation and
  of the recording rules and alerts in it (/api/v1/rules), the guard's
  default query (the one of src/signal/guard/query.rs, for the image's
  digest) timed one at a time and under concurrent load.

With --write the results replace the "Fleet results" section of
BENCHMARKS.md. Only the work directory (bench-work/fleet) is written to.
"""
import argparse, hashlib, http.server, json, math, os, re, shutil, signal, socket, statistics
import subprocess, sys, tempfile, threading, time, urllib.parse, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RULES = os.path.join(ROOT, "packaging/prometheus/driftd.rules.yml")
IMAGE_ID = "ami-bench"
DIGEST = "blake3:" + hashlib.sha256(b"bench").hexdigest()
INTERVAL = 30  # scrape and evaluation interval, as in prometheus.yml

# The guard's families, as the guard defines them (added when missing):
# (name, type, label sets).
GUARD_FAMILIES = [
    ("driftd_host_info", "gauge", [""]),
    ("driftd_signal_held", "gauge", ['backend="retire"']),
    ("driftd_guard_hosts", "gauge", [""]),
    ("driftd_guard_drifted", "gauge", [""]),
    ("driftd_guard_limit", "gauge", [""]),
    ("driftd_guard_errors_total", "counter", [""]),
    ("driftd_guard_dropped_total", "counter", [""]),
    ("driftd_config_reload_success", "gauge", [""]),
]


# For comparison, not shipped: DriftdSignalsHeld as it was first written
# (e242d60), one alert per held host with `for: 20m` and query templates.
# Prometheus expands the annotations of every pending and firing alert at
# every evaluation, so in a mass drift this runs five queries per host.
PER_HOST_RULES = """groups:
  - name: bench-per-host
    rules:
      - alert: BenchSignalsHeldPerHost
        expr: |
          (max by (job, instance) (driftd_signal_held) == 1)
          * on(job, instance) group_left(image_id, digest)
            (
                group by (job, instance, image_id, digest) (driftd_manifest_info)
              or on(job, instance)
                group by (job, instance) (driftd_signal_held)
            )
        for: 20m
        annotations:
          description: >-
            {{ range $i, $s := printf "driftd_signal_held{job=%q,instance=%q} == 1" $labels.job $labels.instance | query | sortByLabel "backend" }}{{ if $i }},{{ end }}
            {{ $s.Labels.backend }}{{ end }}
            {{ with printf "increase(driftd_guard_errors_total{job=%q,instance=%q}[20m]) > 0" $labels.job $labels.instance | query }}{{ . | first | value | humanize }}
            {{ else }}{{ range printf "driftd_guard_drifted{job=%q,instance=%q}" $labels.job $labels.instance | query }}
            {{ .Value }}{{ end }}{{ range printf "driftd_guard_hosts{job=%q,instance=%q}" $labels.job $labels.instance | query }}
            {{ .Value }}{{ end }}{{ range printf "driftd_guard_limit{job=%q,instance=%q}" $labels.job $labels.instance | query }}
            {{ .Value }}{{ end }}{{ end }}
"""


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def agent_exposition(work):
    """A real agent's /metrics, once its first full scan is done."""
    subprocess.run(["cargo", "build", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target/debug/driftd")
    tree = os.path.join(work, "tree")
    os.makedirs(tree, exist_ok=True)
    for name in ("a", "b", "c"):
        with open(os.path.join(tree, name), "w") as f:
            f.write(name)
    manifest = os.path.join(work, "manifest")
    subprocess.run([binary, "bake", "--root", tree, "--output", manifest, "--image-id", IMAGE_ID],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tempfile.mkdtemp(dir=work, prefix="state-")
    port = free_port()
    cfg = os.path.join(state, "driftd.toml")
    with open(cfg, "w") as f:
        f.write(f'[agent]\nroot = "{tree}"\nmanifest = "{manifest}"\nallow_unsigned = true\n'
                f'trusted_keys = []\nstate_dir = "{state}"\nlisten = "127.0.0.1:{port}"\n\n'
                '[[signal]]\ntype = "exec"\nname = "retire"\ncommand = ["/bin/true"]\n'
                'dry_run = true\n')
    log = open(os.path.join(state, "log"), "w")
    proc = subprocess.Popen([binary, "run", "--config", cfg], stdout=log, stderr=log)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                text = get(f"http://127.0.0.1:{port}/metrics", 2)
                if re.search(r"^driftd_last_full_scan_success_timestamp_seconds [1-9]", text, re.M):
                    return text
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("agent not ready: " + open(log.name).read()[-2000:])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def families(text):
    """[(name, type, [(series, labels, value)])] in exposition order."""
    fams, by_name = [], {}
    for line in text.splitlines():
        m = re.match(r"# TYPE (\S+) (\S+)", line)
        if m:
            by_name[m.group(1)] = (m.group(1), m.group(2), [])
            fams.append(by_name[m.group(1)])
            continue
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$", line)
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        fam = by_name.get(name) or by_name[base]
        fam[2].append((name, labels, value))
    return fams


def add_guard_families(fams):
    have = {f[0] for f in fams}
    for name, kind, label_sets in GUARD_FAMILIES:
        if name not in have:
            fams.append((name, kind, [(name, labels, "0") for labels in label_sets]))
    return fams


def render_host(fams, i, n, mass, since):
    """The sample lines of host i, by family (a list of lists)."""
    host = f"host-{i:05d}"
    inst = f'instance="{host}:9847"'
    hid = hashlib.md5(host.encode()).hexdigest()
    out = []
    for name, _, samples in fams:
        lines = []
        for series, labels, value in samples:
            if name == "driftd_host_info":
                labels, value = f'host_id="{hid}",hostname="{host}"', "1"
            elif name == "driftd_manifest_info":
                labels, value = f'image_id="{IMAGE_ID}",digest="{DIGEST}"', "1"
            elif name == "driftd_drift_detected":
                value = "1" if mass else "0"
            elif name == "driftd_verdict":
                want = "drifted" if mass else "clean"
                value = "1" if f'verdict="{want}"' in labels else "0"
            elif name == "driftd_first_detection_timestamp_seconds":
                value = f"{since:.3f}" if mass else "0"
            elif name == "driftd_signal_held":
                value = "1" if mass else "0"
            elif name == "driftd_guard_hosts":
                value = str(n) if mass else "0"
            elif name == "driftd_guard_drifted":
                value = str(n) if mass else "0"
            elif name == "driftd_guard_limit":
                value = str(math.ceil(n / 10)) if mass else "0"
            elif name == "driftd_config_reload_success":
                value = "1"
            all_labels = inst + ("," + labels if labels else "")
            lines.append(f"{series}{{{all_labels}}} {value}\n")
        out.append(lines)
    return out


def render_shards(fams, n, shards, mass, since):
    per = math.ceil(n / shards)
    result = []
    for s in range(shards):
        hosts = [render_host(fams, i, n, mass, since) for i in range(s * per, min(n, (s + 1) * per))]
        parts = []
        for k, (name, kind, _) in enumerate(fams):
            parts.append(f"# HELP {name} {name}.\n# TYPE {name} {kind}\n")
            for h in hosts:
                parts.extend(h[k])
        result.append("".join(parts).encode())
    return result


class Fleet(http.server.ThreadingHTTPServer):
    daemon_threads = True
    shards = []


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        m = re.match(r"/metrics/(\d+)$", self.path)
        if not m or int(m.group(1)) >= len(self.server.shards):
            self.send_error(404)
            return
        body = self.server.shards[int(m.group(1))]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Prometheus:
    def __init__(self, work, fleet_port, shards):
        self.port = free_port()
        cfg = os.path.join(work, "prometheus.yml")
        self.compare = os.path.join(work, "per-host.rules.yml")
        with open(self.compare, "w") as f:
            f.write(PER_HOST_RULES)
        self.cfg, self.fleet_port, self.shards = cfg, fleet_port, shards
        self.write_config(False)
        data = os.path.join(work, "data")
        shutil.rmtree(data, ignore_errors=True)
        self.log = open(os.path.join(work, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={data}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                get(self.url("/-/ready"), 2)
                return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("prometheus not ready: " + open(self.log.name).read()[-2000:])

    def write_config(self, compare):
        """The scrape and rule config; with `compare`, the per-host rule too."""
        groups = "".join(
            f"      - targets: ['127.0.0.1:{self.fleet_port}']\n"
            f"        labels: {{__metrics_path__: /metrics/{s}, instance: shard-{s}}}\n"
            for s in range(self.shards))
        rules = f"  - {RULES}\n" + (f"  - {self.compare}\n" if compare else "")
        with open(self.cfg, "w") as f:
            f.write(f"global:\n  scrape_interval: {INTERVAL}s\n  scrape_timeout: 25s\n"
                    f"  evaluation_interval: {INTERVAL}s\nrule_files:\n{rules}"
                    "scrape_configs:\n  - job_name: driftd\n    honor_labels: true\n"
                    f"    static_configs:\n{groups}")

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def query(self, q, stats=False):
        url = self.url("/api/v1/query?query=" + urllib.parse.quote(q) + ("&stats=all" if stats else ""))
        return json.loads(get(url))

    def value(self, q):
        r = self.query(q)["data"]["result"]
        return float(r[0]["value"][1]) if r else None

    def wait_value(self, q, want, timeout=600):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.value(q) == want:
                return
            time.sleep(2)
        raise SystemExit(f"{q} is not {want} after {timeout} s: {self.value(q)}")

    def own(self, name):
        m = re.search(r"^%s(?:\{[^}]*\})? (\S+)$" % re.escape(name), get(self.url("/metrics")), re.M)
        return float(m.group(1)) if m else None

    def group(self, name="driftd"):
        for g in json.loads(get(self.url("/api/v1/rules")))["data"]["groups"]:
            if g["name"] == name:
                return g
        raise SystemExit(f"no rule group {name}")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def guard_query(host_id):
    """The guard's default query (src/signal/guard/query.rs) for the bench image."""
    image = lambda host: (f'driftd_host_info{{{host}}} and on(job, instance) '
                          f'driftd_manifest_info{{digest="{DIGEST}"}}')
    others = f'host_id!="{host_id}"'
    count = lambda inner, label: (f'label_replace(count(count by (host_id) ({inner})), '
                                  f'"guard", "{label}", "", "")')
    return " or ".join([
        count(image(""), "hosts"),
        count(f"{image(others)} and on(job, instance) (driftd_drift_detected == 1)", "drifted"),
        count(f'{image(others)} and on(job, instance) (driftd_verdict{{verdict="unknown"}} == 1)',
              "unknown"),
    ])


def measure(prom, n, evals=3, looks=40, threads=8, load_s=10):
    """Rule evaluation times over `evals` evaluations, then the guard's query."""
    group_s, records_s, alerts_s = [], [], []
    last = None
    while len(group_s) < evals:
        g = prom.group()
        if g["lastEvaluation"] != last:
            if last is not None:
                group_s.append(g["evaluationTime"])
                records_s.append(sum(r["evaluationTime"] for r in g["rules"] if r["type"] == "recording"))
                alerts_s.append({r["name"]: r["evaluationTime"] for r in g["rules"] if r["type"] == "alerting"})
            last = g["lastEvaluation"]
        time.sleep(1)
    q = guard_query(hashlib.md5(b"host-00000").hexdigest())
    walls, server, samples = [], [], None
    for _ in range(looks):
        t0 = time.perf_counter()
        r = prom.query(q, stats=True)
        walls.append(time.perf_counter() - t0)
        server.append(r["data"]["stats"]["timings"]["evalTotalTime"])
        samples = r["data"]["stats"]["samples"]["totalQueryableSamples"]
        answer = {s["metric"]["guard"]: s["value"][1] for s in r["data"]["result"]}
    done, stop = [0], time.time() + load_s
    lock = threading.Lock()

    def hammer():
        while time.time() < stop:
            prom.query(q)
            with lock:
                done[0] += 1
    ts = [threading.Thread(target=hammer) for _ in range(threads)]
    t0 = time.time()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    rate = done[0] / (time.time() - t0)
    slowest = max(alerts_s[-1].items(), key=lambda kv: kv[1])
    return {
        "series": prom.own("prometheus_tsdb_head_series"),
        "rss": status_kb(prom.proc.pid, "VmRSS"),
        "group": statistics.median(group_s),
        "group_max": max(group_s),
        "records": statistics.median(records_s),
        "slowest_alert": slowest,
        "look_wall": statistics.median(walls),
        "look_p95": sorted(walls)[int(0.95 * (len(walls) - 1))],
        "look_server": statistics.median(server),
        "look_samples": samples,
        "answer": answer,
        "rate": rate,
        "threads": threads,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=10000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--work", default=os.path.join(ROOT, "bench-work/fleet"))
    ap.add_argument("--write", action="store_true")
    a = ap.parse_args()
    if not shutil.which("prometheus"):
        raise SystemExit("needs prometheus (apt-get install --no-install-recommends prometheus)")
    os.makedirs(a.work, exist_ok=True)
    fams = add_guard_families(families(agent_exposition(a.work)))
    per_host = sum(len(s) for _, _, s in fams)
    backends = 1
    fleet = Fleet(("127.0.0.1", 0), Handler)
    fleet.shards = render_shards(fams, a.hosts, a.shards, False, 0)
    threading.Thread(target=fleet.serve_forever, daemon=True).start()
    prom = Prometheus(a.work, fleet.server_address[1], a.shards)
    try:
        t0 = time.time()
        prom.wait_value("digest:driftd_host_info:count", a.hosts)
        print(f"calm fleet counted after {time.time() - t0:.0f} s", file=sys.stderr)
        calm = measure(prom, a.hosts)
        since = time.time()
        fleet.shards = render_shards(fams, a.hosts, a.shards, True, since)
        prom.wait_value("digest:driftd_drift_detected:sum", a.hosts)
        print(f"mass drift counted after {time.time() - since:.0f} s", file=sys.stderr)
        mass = measure(prom, a.hosts)
        # The comparison: the per-host rule, loaded now (SIGHUP) so that it
        # does not weigh on the numbers above.
        prom.write_config(True)
        prom.proc.send_signal(signal.SIGHUP)
        cmp_s, shipped, last = [], [], None
        deadline = time.time() + 20 * INTERVAL
        while len(cmp_s) < 2 and time.time() < deadline:
            try:
                g = prom.group("bench-per-host")
            except SystemExit:
                time.sleep(1)
                continue
            if g["lastEvaluation"] != last and g["lastEvaluation"].startswith("2"):
                if last is not None:
                    cmp_s.append(g["evaluationTime"])
                    shipped.append(prom.group()["evaluationTime"])
                last = g["lastEvaluation"]
            time.sleep(1)
        fleet_alerts = prom.value('count(ALERTS{alertname="DriftdFleetMassDrift",alertstate="firing"})')
        host_alerts = prom.value('count(ALERTS{alertname="DriftdDriftDetected",alertstate="firing"})')
        held_alerts = prom.value('count(ALERTS{alertname="BenchSignalsHeldPerHost"})')
    finally:
        prom.stop()
        fleet.shutdown()
    ms = lambda s: f"{s * 1000:.0f} ms" if s >= 0.01 else f"{s * 1000:.1f} ms"
    row = lambda k, f: f"| {k} | {f(calm)} | {f(mass)} |\n"
    out = (f"{a.hosts} hosts of one image, {per_host} series each (a real agent's /metrics with "
           f"{backends} signal backend, plus the guard's), served as {a.shards} scrape targets; one "
           f"Prometheus (`prometheus --version`: "
           f"{subprocess.run(['prometheus', '--version'], capture_output=True, text=True).stdout.split()[2]}) "
           f"scraping them and evaluating the shipped rules every {INTERVAL} s, on "
           f"{os.cpu_count()} cores shared with the stand-in and the load.\n\n"
           "| measure | calm (all clean) | mass drift (all drifted, held) |\n|---|---|---|\n")
    out += row("head series", lambda m: f"{m['series']:,.0f}")
    out += row("Prometheus RSS", lambda m: f"{m['rss'] / 1024 / 1024:.2f} GiB")
    out += row("rule group evaluation (median, max of 3)", lambda m: f"{ms(m['group'])}, {ms(m['group_max'])}")
    out += row("the recording rules", lambda m: ms(m["records"]))
    out += row("slowest alert", lambda m: f"{m['slowest_alert'][0]} {ms(m['slowest_alert'][1])}")
    out += row("one guard look, client (median, p95 of 40)", lambda m: f"{ms(m['look_wall'])}, {ms(m['look_p95'])}")
    out += row("one guard look, server eval (median)", lambda m: ms(m["look_server"]))
    out += row("samples one look reads", lambda m: f"{m['look_samples']:,}")
    out += row("its answer", lambda m: ", ".join(f"{k} {v}" for k, v in sorted(m["answer"].items())))
    out += row(f"guard looks per second, {calm['threads']} concurrent clients", lambda m: f"{m['rate']:.2f}")
    out += (f"\nFor comparison, DriftdSignalsHeld as first written (one alert per held host, "
            f"`for: 20m`, five query templates), loaded after the measures above: its group took "
            f"{', '.join(ms(x) for x in cmp_s)} per evaluation at {a.hosts} held hosts "
            f"(evaluation interval {INTERVAL} s), the shipped group meanwhile "
            f"{', '.join(ms(x) for x in shipped)}.\n")
    out += (f"\nIn the mass drift: DriftdFleetMassDrift firing {fleet_alerts:.0f} time(s), "
            f"DriftdDriftDetected firing for {host_alerts or 0:.0f} hosts (inhibited in Alertmanager), "
            f"the per-host DriftdSignalsHeld of the comparison pending for {held_alerts or 0:.0f} "
            "(the shipped one counts hosts held 20 minutes; none are yet).\n")
    print(out)
    if a.write:
        path = os.path.join(ROOT, "BENCHMARKS.md")
        text = open(path).read()
        begin, end = "<!-- fleet-results:begin -->", "<!-- fleet-results:end -->"
        section = f"{begin}\n{out}{end}"
        if begin in text:
            text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
        else:
            text += f"\n## Fleet results (`python3 benches/fleet_bench.py --write`)\n\n{section}\n"
        open(path, "w").write(text)


if __name__ == "__main__":
    main()
