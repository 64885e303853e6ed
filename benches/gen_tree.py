#!/usr/bin/env python3
"""Make a synthetic tree for the growth benchmark (benches/scale.py).

Usage: python3 benches/gen_tree.py SIZE [--work DIR] [--seed N] [--mean-bytes B] [--jobs J]

SIZE is one of the shapes below (10k, 100k, 1m: files; dirs10k, dirs100k:
directories only, for the inotify measurement). Prints the root of the
tree. The tree lives in WORK/trees/<size>-s<seed>-m<mean>/root and is
reused when its marker (complete.json next to root/) says it was finished
with the same parameters; anything else there is removed and made anew.

The shape follows issue 14's reference tree (1,000,000 small files in
10,000 directories, 1,010,101 entries with the directories, about 775 MB):
a root, TOP directories, LEAVES directories in each, and ENTRIES entries
in each leaf. About 3 % of the leaf entries are symlinks (a real /usr has
4 %), the rest regular files, so the entry counts match the issue's exactly:

    size      top  leaves/top  entries/leaf   entries     directories
    10k         1      100         100          10,102          102
    100k       10      100         100         101,011        1,011
    1m        100      100         100       1,010,101       10,101
    dirs10k    10    1,000           0          10,011       10,011
    dirs100k  100    1,000           0         100,101      100,101

Deterministic: names, file sizes, modes, contents and symlink targets
come from a PRNG seeded with (seed, leaf directory), so the same seed gives
the same tree however the work is split between processes. Times (mtime,
ctime) are whatever the clock says when the tree is made.

File sizes are drawn from the quantiles of a real /usr (hard-coded below),
scaled down by one factor so that the mean file is --mean-bytes (default
775, the issue's 775 MB per million files): the shape stays that of /usr
(many tiny files, a long tail reaching megabytes), only smaller.
--mean-bytes 0 keeps /usr's own sizes (mean 57 KB: a 1m tree would need
57 GB).

Contents are cheap pseudo-random bytes: a slice, at a random offset, of a
4 MiB random pool, preceded by the file's own path (so no two files longer
than their path have the same content). Writing is split over --jobs processes (default: 2 per
CPU), by leaf directory.
"""
import argparse, bisect, json, math, os, random, shutil, sys, time
from multiprocessing import Pool

GENERATOR_VERSION = 1

SHAPES = {  # name -> (top, leaves per top, entries per leaf)
    "10k": (1, 100, 100),
    "100k": (10, 100, 100),
    "1m": (100, 100, 100),
    "dirs10k": (10, 1000, 0),
    "dirs100k": (100, 1000, 0),
}

# Quantiles of regular-file sizes in bytes, from `find /usr -type f -printf
# '%s\n'` on the benchmark machine (Debian 12 with the Rust toolchain and
# this project's build dependencies: 114,047 files, 6.47 GB, mean 56,720 B,
# median 2,100 B; 854 files, 0.75 %, are empty). (quantile, size) pairs;
# sizes between two quantiles are interpolated on a log scale.
USR_EMPTY = 0.0075
USR_QUANTILES = [
    (0.0075, 1), (0.01, 16), (0.02, 95), (0.05, 203), (0.10, 439),
    (0.15, 612), (0.20, 775), (0.25, 961), (0.30, 1100), (0.35, 1266),
    (0.40, 1480), (0.45, 1723), (0.50, 2100), (0.55, 2577), (0.60, 3168),
    (0.65, 3930), (0.70, 5195), (0.75, 7249), (0.80, 10588), (0.85, 15928),
    (0.90, 25959), (0.93, 39473), (0.95, 58920), (0.97, 102215),
    (0.98, 153742), (0.99, 354536), (0.995, 1175904), (0.998, 3782936),
    (0.999, 8086096), (0.9995, 23168781), (0.9999, 60121896),
    (1.0, 145959730),
]
_QS = [q for q, _ in USR_QUANTILES]

SYMLINK_SHARE = 0.03   # of the entries in a leaf directory
EXEC_SHARE = 0.10      # regular files with mode 0755 (else 0644)
POOL_BYTES = 4 << 20
EXTS = ["", "", "", ".so", ".py", ".h", ".txt", ".gz", ".json", ".pm", ".mo", ".conf", ".html", ".rs"]
LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789_-"


def usr_size(u):
    """/usr's size at quantile u (0 <= u < 1), interpolated log-linearly."""
    if u < USR_EMPTY:
        return 0.0
    i = bisect.bisect_right(_QS, u)
    if i >= len(USR_QUANTILES):
        return float(USR_QUANTILES[-1][1])
    (q0, s0), (q1, s1) = USR_QUANTILES[i - 1], USR_QUANTILES[i]
    t = (u - q0) / (q1 - q0)
    return math.exp(math.log(s0) + t * (math.log(s1) - math.log(s0)))


def scale_for_mean(mean_bytes):
    """The factor that gives the scaled distribution this mean (1 for 0)."""
    if mean_bytes <= 0:
        return 1.0
    steps = 200000  # midpoint rule over the quantile function
    grid = [usr_size((k + 0.5) / steps) for k in range(steps)]

    def mean(f):
        return sum(int(s * f) for s in grid) / steps

    lo, hi = 1e-6, 1.0
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if mean(mid) < mean_bytes:
            lo = mid
        else:
            hi = mid
    return round(hi, 6)


def tree_dir(work, size, seed, mean_bytes):
    return os.path.join(work, "trees", f"{size}-s{seed}-m{mean_bytes}")


def leaf_rng(seed, leaf):
    return random.Random(f"driftd-scale:{seed}:{leaf}")


def name(rng, taken):
    while True:
        n = "".join(rng.choice(LETTERS) for _ in range(rng.randint(3, 16))) + rng.choice(EXTS)
        if n not in taken and n not in (".", ".."):
            taken.add(n)
            return n


def make_leaves(args):
    """Fill leaf directories [first, last) under root; returns (files, bytes, links)."""
    root, seed, scale, shape, first, last = args
    top, per_top, per_leaf = shape
    pool = random.Random(f"driftd-scale-pool:{seed}").randbytes(POOL_BYTES)
    files = nbytes = links = 0
    for leaf in range(first, last):
        rel = os.path.join(f"d{leaf // per_top:03d}", f"e{leaf % per_top:03d}")
        path = os.path.join(root, rel)
        os.mkdir(path, 0o755)
        if per_leaf == 0:
            continue
        rng = leaf_rng(seed, leaf)
        taken = set()
        names = [name(rng, taken) for _ in range(per_leaf)]
        kinds = ["l" if rng.random() < SYMLINK_SHARE else "f" for _ in names]
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for n, k in zip(names, kinds):
                if k == "l":
                    # A sibling (possibly itself), a name in another leaf
                    # (almost always dangling: names are drawn afresh), or
                    # an obviously missing name. Only the link is recorded,
                    # never followed, by every tool measured.
                    r = rng.random()
                    if r < 0.6:
                        target = rng.choice(names)
                    elif r < 0.95:
                        other = rng.randrange(top * per_top)
                        target = f"../../d{other // per_top:03d}/e{other % per_top:03d}/{name(rng, set())}"
                    else:
                        target = f"missing-{rng.randrange(1 << 30):x}"
                    os.symlink(target, n, dir_fd=fd)
                    links += 1
                    continue
                size = min(int(usr_size(rng.random()) * scale), 1 << 40)
                mode = 0o755 if rng.random() < EXEC_SHARE else 0o644
                head = f"{rel}/{n}\n".encode()
                if size <= len(head):
                    data = head[:size]
                else:
                    rest = size - len(head)
                    off = rng.randrange(POOL_BYTES)
                    chunks = [head]
                    while rest > 0:
                        take = min(rest, POOL_BYTES - off)
                        chunks.append(pool[off:off + take])
                        rest -= take
                        off = 0
                    data = b"".join(chunks)
                f = os.open(n, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, dir_fd=fd)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(f, view):]
                finally:
                    os.close(f)
                files += 1
                nbytes += size
        finally:
            os.close(fd)
    return files, nbytes, links


def generate(size, work, seed=1, mean_bytes=775, jobs=None, log=print):
    """Make (or reuse) the tree; returns (root, marker dict)."""
    if size not in SHAPES:
        raise SystemExit(f"gen_tree: unknown size {size!r} (one of {', '.join(SHAPES)})")
    shape = SHAPES[size]
    base = tree_dir(work, size, seed, mean_bytes)
    root = os.path.join(base, "root")
    marker = os.path.join(base, "complete.json")
    want = {"generator": GENERATOR_VERSION, "size": size, "shape": list(shape), "seed": seed,
            "mean_bytes": mean_bytes}
    if os.path.exists(marker):
        try:
            have = json.load(open(marker))
        except ValueError:
            have = {}
        if {k: have.get(k) for k in want} == want and os.path.isdir(root):
            return root, have
    if os.path.exists(base):
        log(f"gen_tree: removing the incomplete or stale {base}")
        shutil.rmtree(base)
    partial = os.path.join(base, "root.partial")
    os.makedirs(partial)
    scale = scale_for_mean(mean_bytes)
    top, per_top, per_leaf = shape
    old_umask = os.umask(0o022)
    t0 = time.monotonic()
    try:
        for t in range(top):
            os.mkdir(os.path.join(partial, f"d{t:03d}"), 0o755)
        leaves = top * per_top
        jobs = jobs or 2 * (os.cpu_count() or 1)
        step = max(1, min(100, leaves // (jobs * 4) or 1))
        work_items = [(partial, seed, scale, shape, a, min(a + step, leaves)) for a in range(0, leaves, step)]
        files = nbytes = links = 0
        with Pool(jobs) as p:
            for f, b, l in p.imap_unordered(make_leaves, work_items):
                files, nbytes, links = files + f, nbytes + b, links + l
    finally:
        os.umask(old_umask)
    os.chmod(partial, 0o755)
    os.rename(partial, root)
    dirs = 1 + top + top * per_top
    info = dict(want, scale=scale, files=files, bytes=nbytes, symlinks=links, dirs=dirs,
                entries=dirs + files + links, seconds=round(time.monotonic() - t0, 1))
    with open(marker + ".tmp", "w") as f:
        json.dump(info, f, indent=1)
    os.rename(marker + ".tmp", marker)
    log(f"gen_tree: {size}: {info['entries']} entries ({files} files, {links} symlinks, "
        f"{dirs} dirs), {nbytes / 1e6:.0f} MB in {info['seconds']} s")
    return root, info


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("size", choices=list(SHAPES))
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--work", default=os.path.join(here, "bench-work", "scale"))
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mean-bytes", type=int, default=775)
    ap.add_argument("--jobs", type=int, default=None)
    a = ap.parse_args()
    root, _ = generate(a.size, a.work, a.seed, a.mean_bytes, a.jobs,
                       log=lambda m: print(m, file=sys.stderr))
    print(root)


if __name__ == "__main__":
    main()
