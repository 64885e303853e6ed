#!/usr/bin/env bash
# Benchmark `driftd check` against b3sum and AIDE on a copy of /usr.
#
#   bash benches/bench.sh [--write] [options]
#
# Prints a markdown report on stdout; with --write it also replaces the
# results section of BENCHMARKS.md. Everything it writes lives in the work
# directory (default: bench-work/ in the repository, gitignored); the
# source tree is only ever read (by `cp -a`). See BENCHMARKS.md for what is
# measured and why.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: bash benches/bench.sh [options]

  --source DIR        tree to copy and benchmark on (default /usr)
  --work DIR          work directory (default <repo>/bench-work)
  --runs N            measured runs of driftd check, driftd bake and b3sum (default 5)
  --aide-runs N       measured runs of each AIDE init and check (default 2)
  --aide-workers "L"  AIDE num_workers values to measure (default "1 2";
                      1 is the Debian package's default and the one the
                      targets are judged against)
  --load-runs N       runs of the manifest-load measurement (default 30)
  --no-install        do not install b3sum / aide / hyperfine
  --no-build          do not run cargo build; use target/release/driftd as is
  --write             replace the results section of BENCHMARKS.md
  -h, --help          this help
EOF
}

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SOURCE=/usr
WORK=$REPO/bench-work
RUNS=5
AIDE_RUNS=2
AIDE_WORKERS="1 2"
LOAD_RUNS=30
INSTALL=1
BUILD=1
WRITE=0

while [[ $# -gt 0 ]]; do
  case $1 in
    --source) SOURCE=$2; shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --aide-runs) AIDE_RUNS=$2; shift 2 ;;
    --aide-workers) AIDE_WORKERS=$2; shift 2 ;;
    --load-runs) LOAD_RUNS=$2; shift 2 ;;
    --no-install) INSTALL=0; shift ;;
    --no-build) BUILD=0; shift ;;
    --write) WRITE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

for n in "$RUNS" "$AIDE_RUNS" "$LOAD_RUNS"; do
  [[ $n =~ ^[0-9]+$ && $n -ge 1 ]] || die "run counts must be positive integers"
done
for w in $AIDE_WORKERS; do
  [[ $w =~ ^[0-9]+$ ]] || die "--aide-workers takes integers, e.g. \"1 2\""
done
FIRST_WORKERS=${AIDE_WORKERS%% *}

# ---------------------------------------------------------------- safety --
# The work directory must not be / nor overlap the source; the copy is the
# only thing ever deleted, and only below the work directory.
[[ -d $SOURCE ]] || die "source $SOURCE is not a directory"
SOURCE=$(realpath -e "$SOURCE")
[[ $SOURCE != / ]] || die "refusing to copy / (it would contain the work directory)"
mkdir -p "$WORK"
WORK=$(realpath -e "$WORK")
case $WORK in
  /|/usr|/usr/*|/etc|/etc/*|/bin|/sbin|/lib|/lib64|/boot|/proc|/sys|/dev)
    die "refusing work directory $WORK" ;;
esac
case $WORK/ in "$SOURCE"/*) die "work directory $WORK is inside the source $SOURCE" ;; esac
case $SOURCE/ in "$WORK"/*) die "source $SOURCE is inside the work directory $WORK" ;; esac

ROOT=$WORK/root                       # the benchmarked root: holds one copy
NAME=$(basename "$SOURCE")
COPY=$ROOT/$NAME                      # e.g. bench-work/root/usr
MANIFEST=$WORK/manifest.zst
AIDE_DIR=$WORK/aide
LOGS=$WORK/logs
RUNS_TSV=$WORK/runs.tsv
RESULTS=$WORK/results.md
EMPTY=$WORK/empty-root
mkdir -p "$AIDE_DIR" "$LOGS" "$EMPTY" "$WORK/bin"

# --------------------------------------------------------------- install --
as_root() { if [[ $(id -u) == 0 ]]; then "$@"; else sudo "$@"; fi; }

export PATH=$PATH:$HOME/.cargo/bin
APT_UPDATED=0
apt_install() { # package command
  command -v "$2" >/dev/null && return 0
  [[ $INSTALL == 1 ]] || die "$2 not found (and --no-install given)"
  if ! apt-cache show "$1" >/dev/null 2>&1 && [[ $APT_UPDATED == 0 ]]; then
    log "apt-get update"
    as_root apt-get update -qq
    APT_UPDATED=1
  fi
  log "apt-get install $1"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}
if ! command -v b3sum >/dev/null; then
  [[ $INSTALL == 1 ]] || die "b3sum not found (and --no-install given)"
  log "cargo install b3sum --locked"
  cargo install b3sum --locked >&2
fi
apt_install aide aide
apt_install hyperfine hyperfine
apt_install jq jq
# `time` is a shell keyword, so look for the GNU time binary itself.
[[ -x /usr/bin/time ]] || apt_install time /usr/bin/time

# ----------------------------------------------------------------- build --
if [[ $BUILD == 1 ]]; then
  log "cargo build --release"
  (cd "$REPO" && cargo build --release --quiet) >&2
fi
[[ -x $REPO/target/release/driftd ]] || die "no $REPO/target/release/driftd"
# Snapshot the binary (and the source revision it was built from): other
# builds in the tree must not swap it mid-run.
cp "$REPO/target/release/driftd" "$WORK/bin/driftd.tmp"
mv -f "$WORK/bin/driftd.tmp" "$WORK/bin/driftd"
DRIFTD=$WORK/bin/driftd
git_rev=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
git_dirty=$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null | grep -q . &&
  echo " plus uncommitted changes" || true)
HAVE_INSPECT=0
"$DRIFTD" inspect --help >/dev/null 2>&1 && HAVE_INSPECT=1

# ------------------------------------------------------------------ copy --
count_files() { find "$1" -type f 2>/dev/null | wc -l; }
log "counting files in $SOURCE"
SRC_FILES=$(count_files "$SOURCE")
if [[ -d $COPY && $(cat "$WORK/root.source" 2>/dev/null) == "$SOURCE" ]] &&
   [[ $(count_files "$COPY") == "$SRC_FILES" ]]; then
  log "reusing the copy in $COPY ($SRC_FILES files)"
else
  if [[ -e $ROOT ]]; then
    log "removing the stale copy $ROOT"
    rm -rf --one-file-system -- "$ROOT"
  fi
  mkdir -p "$ROOT"
  log "cp -a $SOURCE $ROOT/ ($SRC_FILES files)"
  # Files that vanish or cannot be read while copying are reported but do
  # not stop the benchmark; the file count below says what was copied.
  cp -a "$SOURCE" "$ROOT/" || log "cp reported errors (see above); continuing"
  echo "$SOURCE" >"$WORK/root.source"
fi
COPY_FILES=$(count_files "$COPY")
COPY_BYTES=$(find "$COPY" -type f -printf '%s\n' | awk '{s+=$1} END {printf "%.0f", s}')
COPY_ENTRIES=$(find "$ROOT" | wc -l)

# ------------------------------------------------------------ AIDE config --
# A standalone config (no Debian include directories). root_prefix makes
# AIDE record the paths as /usr/..., as it would for the real /usr.
# gzip_dbout=yes is what Debian's /etc/aide/aide.conf sets. database_attrs=E
# stops AIDE from hashing its own database with every algorithm at the end,
# so AIDE's figure is only the tree (this favours AIDE slightly).
regex_escape() { printf '%s' "$1" | sed 's/[][\.^$*+?(){}|]/\\&/g'; }
aide_conf() { # workers dir root -> path of the config
  local w=$1 dir=$2 root=$3 conf=$2/aide-w$1.conf
  cat >"$conf" <<EOF
# Written by benches/bench.sh: AIDE over the benchmark copy only.
database_in=file:$dir/aide.db
database_out=file:$dir/aide.db.new.w$w
gzip_dbout=yes
database_attrs=E
num_workers=$w
root_prefix=$root
R = p+i+n+u+g+s+m+c+sha256
/$(regex_escape "$NAME") R
EOF
  printf '%s' "$conf"
}

# ---------------------------------------------------------------- sanity --
# Prove that both tools hash content: change a file's bytes while keeping
# its size and mtime; each tool must report it.
log "sanity: both tools detect a same-size, same-mtime content change"
SAN=$WORK/sanity
rm -rf --one-file-system -- "$SAN"
mkdir -p "$SAN/root/$NAME/sub"
printf 'hello world\n' >"$SAN/root/$NAME/sub/file"
touch -d '2020-01-01 00:00:00' "$SAN/root/$NAME/sub/file"
"$DRIFTD" bake --root "$SAN/root" --output "$SAN/m.zst" 2>"$SAN/bake.log"
SAN_CONF=$(aide_conf 1 "$SAN" "$SAN/root")
aide --config="$SAN_CONF" --init >"$SAN/aide-init.log" 2>&1
mv "$SAN/aide.db.new.w1" "$SAN/aide.db"
printf 'hello World\n' >"$SAN/root/$NAME/sub/file"
touch -d '2020-01-01 00:00:00' "$SAN/root/$NAME/sub/file"
set +e
"$DRIFTD" check --manifest "$SAN/m.zst" --root "$SAN/root" --allow-unsigned --color never >"$SAN/check.log" 2>&1
rc_d=$?
aide --config="$SAN_CONF" --check >"$SAN/aide-check.log" 2>&1
rc_a=$?
set -e
[[ $rc_d == 1 ]] && grep -q 'content' "$SAN/check.log" ||
  die "sanity: driftd check did not report the content change (exit $rc_d, $SAN/check.log)"
[[ $rc_a != 0 && $rc_a -lt 14 ]] && grep -q 'SHA256' "$SAN/aide-check.log" ||
  die "sanity: aide --check did not report the SHA256 change (exit $rc_a, $SAN/aide-check.log)"

# ----------------------------------------------------------------- setup --
log "driftd bake (reference manifest)"
"$DRIFTD" bake --root "$ROOT" --output "$MANIFEST" 2>"$LOGS/bake-reference.log"
cat "$LOGS/bake-reference.log" >&2
for w in $AIDE_WORKERS; do aide_conf "$w" "$AIDE_DIR" "$ROOT" >/dev/null; done
log "aide --init (reference database, num_workers=$FIRST_WORKERS)"
rm -f "$AIDE_DIR"/aide.db*
aide --config="$AIDE_DIR/aide-w$FIRST_WORKERS.conf" --init >"$LOGS/aide-init-reference.log" 2>&1 ||
  die "aide --init failed: $LOGS/aide-init-reference.log"
mv "$AIDE_DIR/aide.db.new.w$FIRST_WORKERS" "$AIDE_DIR/aide.db"
AIDE_DB_BYTES=$(stat -c %s "$AIDE_DIR/aide.db")
AIDE_DB_RAW=$(gzip -dc "$AIDE_DIR/aide.db" | wc -c)
AIDE_DB_ENTRIES=$(gzip -dc "$AIDE_DIR/aide.db" | grep -c '^/')
AIDE_DB_SHA=$(gzip -dc "$AIDE_DIR/aide.db" | grep -m1 '^@@db_spec' | grep -c sha256 || true)
[[ $AIDE_DB_SHA == 1 ]] || die "AIDE database has no sha256 column"
MANIFEST_BYTES=$(stat -c %s "$MANIFEST")

# ---------------------------------------------------------------- warm-up --
# Read every file (and stat every directory) so the page cache holds the
# tree. This is repeated, untimed, right before every measured run: some
# machines reclaim page cache that was not touched for a while (e.g. a VM
# whose DAMON "pageout" scheme evicts file pages idle for ~60 s), so one
# warm-up at the start is not enough for a run that follows a long AIDE
# run. When the tree is already cached the re-read costs a few seconds.
warm() {
  find "$ROOT" -type f -print0 | xargs -0 -P2 -n 2000 cat >/dev/null
  cat "$DRIFTD" "$(command -v b3sum)" "$(command -v aide)" "$MANIFEST" "$AIDE_DIR/aide.db" >/dev/null
}
log "warming the page cache (reading every file once)"
WARM_T0=$EPOCHREALTIME
/usr/bin/time -f '%I' -o "$LOGS/warm.time" \
  bash -c 'find "$1" -type f -print0 | xargs -0 -P2 -n 2000 cat >/dev/null' _ "$ROOT"
WARM_S=$(awk -v a="$WARM_T0" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.1f", b-a}')
WARM_IN_MIB=$(tail -n1 "$LOGS/warm.time" | awk '{printf "%d", $1*512/1048576}')

# ------------------------------------------------------------ measurement --
CLK_TCK=$(getconf CLK_TCK)
cpu_busy() { # jiffies the whole machine spent not idle
  awk '/^cpu / {print $2+$3+$4+$7+$8+$9; exit}' /proc/stat
}
printf 'label\tround\twall_s\tuser_s\tsys_s\tmaxrss_kb\tfs_in_blocks\tbg_cores\texit\n' >"$RUNS_TSV"

# run_timed LABEL ROUND WANT_EXIT OUTFILE CMD... : one timed run, appended
# to runs.tsv. Wall time from $EPOCHREALTIME, CPU/RSS/inputs from
# /usr/bin/time (children included), background load = the machine's busy
# CPU time during the run minus the command's own CPU time.
run_timed() {
  local label=$1 round=$2 want=$3 out=$4 rc t0 t1 b0 b1
  shift 4
  b0=$(cpu_busy)
  t0=$EPOCHREALTIME
  set +e
  /usr/bin/time -f '%U %S %M %I' -o "$LOGS/time.tmp" "$@" >"$out" 2>"$LOGS/$label.r$round.err"
  rc=$?
  set -e
  t1=$EPOCHREALTIME
  b1=$(cpu_busy)
  if [[ $rc != "$want" ]]; then
    tail -n 20 "$LOGS/$label.r$round.err" >&2 || true
    [[ $out == /dev/null ]] || tail -n 20 "$out" >&2 || true
    die "$label (round $round) exited $rc, expected $want; see $LOGS/$label.r$round.err"
  fi
  tail -n1 "$LOGS/time.tmp" | awk -v l="$label" -v r="$round" -v t0="$t0" -v t1="$t1" \
      -v b0="$b0" -v b1="$b1" -v hz="$CLK_TCK" -v rc="$rc" '{
    wall = t1 - t0; own = $1 + $2; bg = ((b1 - b0) / hz - own) / wall
    if (bg < 0) bg = 0
    printf "%s\t%s\t%.3f\t%.2f\t%.2f\t%d\t%d\t%.2f\t%s\n", l, r, wall, $1, $2, $3, $4, bg, rc
  }' >>"$RUNS_TSV"
  log "$(tail -n1 "$RUNS_TSV" | awk -F'\t' '{printf "%-16s round %s: %7.2fs wall, %6.2fs cpu, %6.1f MiB, bg %.2f cores", $1, $2, $3, $4+$5, $6/1024, $8}')"
}

B3_CMD='find "$1" -type f -print0 | xargs -0 -P2 -n 2000 b3sum >/dev/null'
do_item() { # item round
  local r=$2
  warm
  case $1 in
    check)
      run_timed driftd-check "$r" 0 "$LOGS/check.out" \
        "$DRIFTD" check --manifest "$MANIFEST" --root "$ROOT" --allow-unsigned --color never ;;
    b3sum)
      run_timed b3sum "$r" 0 /dev/null bash -c "$B3_CMD" _ "$ROOT" ;;
    bake)
      run_timed driftd-bake "$r" 0 /dev/null \
        "$DRIFTD" bake --root "$ROOT" --output "$WORK/bake-run.zst" ;;
    aide-init-w*)
      local w=${1#aide-init-w}
      rm -f "$AIDE_DIR/aide.db.new.w$w"
      run_timed "$1" "$r" 0 /dev/null aide --config="$AIDE_DIR/aide-w$w.conf" --init ;;
    aide-check-w*)
      local w=${1#aide-check-w}
      run_timed "$1" "$r" 0 "$LOGS/aide-check.out" aide --config="$AIDE_DIR/aide-w$w.conf" --check ;;
  esac
}

MAX_ROUNDS=$(( RUNS > AIDE_RUNS ? RUNS : AIDE_RUNS ))
UPTIME_BEFORE=$(uptime)
log "uptime before: $UPTIME_BEFORE"
# Round 0 is one unrecorded warm-up of the three fast commands.
for item in check b3sum bake; do
  do_item "$item" 0
done
sed -i '2,$d' "$RUNS_TSV"
for ((r = 1; r <= MAX_ROUNDS; r++)); do
  items=()
  ((r <= RUNS)) && items+=(check b3sum bake)
  if ((r <= AIDE_RUNS)); then
    for w in $AIDE_WORKERS; do items+=("aide-init-w$w" "aide-check-w$w"); done
  fi
  # Interleave, and rotate the order every round so that no command always
  # runs right after the same other one.
  n=${#items[@]}
  for ((k = 0; k < n; k++)); do
    do_item "${items[(k + r - 1) % n]}" "$r"
  done
done
UPTIME_AFTER=$(uptime)
log "uptime after: $UPTIME_AFTER"

CHECK_SUMMARY=$(tail -n1 "$LOGS/check.out")
FILES_HASHED=$(sed -n 's/.* \([0-9][0-9]*\) files hashed.*/\1/p' "$LOGS/check.out" | tail -n1)

# ---------------------------------------------------------- manifest load --
# `driftd inspect` reads, decompresses, parses and digest-verifies the
# manifest and prints a summary: nothing else. Without it, a check against
# an empty root is the closest command; it also reports every entry as
# removed, so it is only an upper bound.
if [[ $HAVE_INSPECT == 1 ]]; then
  LOAD_KIND="driftd inspect MANIFEST (read + decompress + parse + digest check)"
  LOAD_CMD=("$DRIFTD" inspect "$MANIFEST")
  LOAD_IS_BOUND=0
else
  LOAD_KIND="driftd check against an empty root (upper bound: also reports every entry removed)"
  LOAD_CMD=("$DRIFTD" check --manifest "$MANIFEST" --root "$EMPTY" --allow-unsigned --color never)
  LOAD_IS_BOUND=1
fi
log "manifest load: hyperfine, $LOAD_RUNS runs"
warm
LOAD_B0=$(cpu_busy)
LOAD_T0=$EPOCHREALTIME
hyperfine -N -i --style basic --warmup 3 --runs "$LOAD_RUNS" \
  --export-json "$WORK/load.json" "${LOAD_CMD[*]}" >"$LOGS/load.hyperfine" 2>&1 ||
  die "hyperfine failed: $LOGS/load.hyperfine"
LOAD_T1=$EPOCHREALTIME
LOAD_B1=$(cpu_busy)
# Background cores during the hyperfine run: the machine's busy time minus
# the (approximate) CPU time of the runs themselves.
LOAD_BG=$(jq -r --arg n "$((LOAD_RUNS + 3))" '.results[0] | (.user + .system) * ($n | tonumber)' "$WORK/load.json" |
  awk -v t0="$LOAD_T0" -v t1="$LOAD_T1" -v b0="$LOAD_B0" -v b1="$LOAD_B1" -v hz="$CLK_TCK" '{
    bg = ((b1 - b0) / hz - $1) / (t1 - t0); if (bg < 0) bg = 0; printf "%.2f", bg}')
LOAD_MED_MS=$(jq -r '.results[0].median * 1000 | . * 10 | round / 10' "$WORK/load.json")
LOAD_MIN_MS=$(jq -r '.results[0].min * 1000 | . * 10 | round / 10' "$WORK/load.json")
LOAD_MAX_MS=$(jq -r '.results[0].max * 1000 | . * 10 | round / 10' "$WORK/load.json")
LOAD_CPU_MS=$(jq -r '(.results[0].user + .results[0].system) * 1000 | . * 10 | round / 10' "$WORK/load.json")
set +e
/usr/bin/time -f '%M' -o "$LOGS/load.time" "${LOAD_CMD[@]}" >/dev/null 2>&1
set -e
LOAD_RSS_MIB=$(tail -n1 "$LOGS/load.time" | awk '{printf "%.1f", $1/1024}')

# ---------------------------------------------------------------- report --
med() { # label column -> median of that column over the label's runs
  awk -F'\t' -v l="$1" -v c="$2" '$1 == l {print $c}' "$RUNS_TSV" | sort -g |
    awk '{v[NR] = $1} END {if (NR == 0) {print "nan"; exit}
      if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
maxcol() { awk -F'\t' -v l="$1" -v c="$2" '$1 == l && $c > m {m = $c} END {print m + 0}' "$RUNS_TSV"; }
mincol() { awk -F'\t' -v l="$1" -v c="$2" '$1 == l && (m == "" || $c < m) {m = $c} END {print m + 0}' "$RUNS_TSV"; }
cpu_med() { awk -F'\t' -v l="$1" '$1 == l {print $4 + $5}' "$RUNS_TSV" | sort -g |
  awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
nruns() { awk -F'\t' -v l="$1" '$1 == l' "$RUNS_TSV" | wc -l; }
calc() { awk "BEGIN {printf \"$1\", $2}"; }
verdict() { if awk "BEGIN {exit !($1)}"; then echo PASS; else echo FAIL; fi; }

row() { # label description
  printf '| %s | %d | %.2f | %.2f–%.2f | %.2f | %.1f | %.2f | %.0f |\n' "$2" "$(nruns "$1")" \
    "$(med "$1" 3)" "$(mincol "$1" 3)" "$(maxcol "$1" 3)" "$(cpu_med "$1")" \
    "$(calc %.1f "$(maxcol "$1" 6)/1024")" "$(med "$1" 8)" "$(calc %.1f "$(maxcol "$1" 7)*512/1048576")"
}

CHECK=$(med driftd-check 3)
B3=$(med b3sum 3)
AIDE1=$(med "aide-check-w$FIRST_WORKERS" 3)
CHECK_RSS_KB=$(maxcol driftd-check 6)
R_B3=$(calc %.3f "$CHECK/$B3")
R_AIDE=$(calc %.1f "$AIDE1/$CHECK")
BG_MED=$(awk -F'\t' 'NR > 1 {print $8}' "$RUNS_TSV" | sort -g |
  awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2}')
BG_MAX=$(awk -F'\t' 'NR > 1 && $8 > m {m = $8} END {print m + 0}' "$RUNS_TSV")
# Runs that shared the machine with more than 0.15 cores of other work.
BUSY_RUNS=$(awk -F'\t' 'NR > 1 && $8 > 0.15 {printf "%s%s r%s (%.2f)", sep, $1, $2, $8; sep = ", "}' "$RUNS_TSV")
if awk "BEGIN {exit !($LOAD_BG > 0.15)}"; then
  BUSY_RUNS="${BUSY_RUNS:+$BUSY_RUNS, }manifest load ($LOAD_BG)"
fi
if [[ -z $BUSY_RUNS ]]; then LOADED="no"; else LOADED="yes: $BUSY_RUNS"; fi

cpu_model=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem_total=$(awk '/^MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)
fsys=$(df -PT "$ROOT" | awk 'NR == 2 {print $2}')

{
  echo "Run of $(date -u '+%Y-%m-%d %H:%M UTC') by \`bash benches/bench.sh\`."
  echo
  echo "**Machine:** $(nproc) CPUs, $cpu_model, $mem_total RAM, Linux $(uname -r), work dir on $fsys."
  echo
  echo "**Versions:** $("$DRIFTD" --version) (built from commit $git_rev$git_dirty), $(b3sum --version), AIDE $(aide --version 2>&1 | awk 'NR == 1 {print $2}'), $(hyperfine --version)."
  echo
  echo "**Tree:** copy of \`$SOURCE\` in \`${COPY#"$REPO"/}\`: $COPY_FILES regular files, $(calc %.2f "$COPY_BYTES/1073741824") GiB, $COPY_ENTRIES paths in all. driftd check hashed $FILES_HASHED files per run."
  echo
  echo "**Load:** background CPU use by other processes during the measured runs: median $BG_MED, max $BG_MAX cores (of $(nproc)); $LOAD_BG during the manifest-load runs. Runs with more than 0.15 background cores: **$LOADED**. uptime before: \`${UPTIME_BEFORE# }\`; after: \`${UPTIME_AFTER# }\`."
  echo
  echo "**Cache:** the first warm-up read of every file took ${WARM_S}s (${WARM_IN_MIB} MiB from disk) and is repeated, untimed, before every measured run; the last column below is the most a run read from disk (getrusage inblock), 0 when the cache was warm throughout."
  echo
  echo "| command | runs | median wall s | min–max s | median CPU s (user+sys) | peak RSS MiB | median background cores | max disk read MiB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  row driftd-check "\`driftd check\` (2 threads)"
  row b3sum "\`find -print0 \\| xargs -0 -P2 -n 2000 b3sum\`"
  row driftd-bake "\`driftd bake\`"
  for w in $AIDE_WORKERS; do
    note=""; [[ $w == 1 ]] && note=", Debian default"
    row "aide-check-w$w" "\`aide --check\` (num_workers=$w$note)"
    row "aide-init-w$w" "\`aide --init\` (num_workers=$w$note)"
  done
  echo
  echo "| ratio | value |"
  echo "|---|---:|"
  echo "| driftd check / b3sum | $R_B3 |"
  echo "| driftd check / b3sum, CPU time (less sensitive to background load) | $(calc %.3f "$(cpu_med driftd-check)/$(cpu_med b3sum)") |"
  for w in $AIDE_WORKERS; do
    echo "| aide --check (num_workers=$w) / driftd check | $(calc %.1f "$(med "aide-check-w$w" 3)/$CHECK") |"
    echo "| aide --init (num_workers=$w) / driftd bake | $(calc %.1f "$(med "aide-init-w$w" 3)/$(med driftd-bake 3)") |"
  done
  echo
  echo "| file | bytes |"
  echo "|---|---:|"
  echo "| driftd manifest (zstd) | $MANIFEST_BYTES |"
  echo "| AIDE database (gzip_dbout=yes, Debian default; $AIDE_DB_ENTRIES entries) | $AIDE_DB_BYTES |"
  echo "| AIDE database uncompressed | $AIDE_DB_RAW |"
  echo
  echo "Manifest load: \`${LOAD_KIND}\`: median ${LOAD_MED_MS} ms (min ${LOAD_MIN_MS}, max ${LOAD_MAX_MS}; hyperfine, $LOAD_RUNS runs); mean CPU time (user+sys) ${LOAD_CPU_MS} ms, the floor of the wall time on a quiet machine; peak RSS $LOAD_RSS_MIB MiB."
  echo
  echo "| target | measured | verdict |"
  echo "|---|---:|---|"
  echo "| check ≤ 1.25 × b3sum | ${R_B3}× | $(verdict "$CHECK <= 1.25 * $B3") |"
  echo "| AIDE check (num_workers=$FIRST_WORKERS) ≥ 15 × check | ${R_AIDE}× | $(verdict "$AIDE1 >= 15 * $CHECK") |"
  echo "| check peak RSS ≤ 64 MiB | $(calc %.1f "$CHECK_RSS_KB/1024") MiB | $(verdict "$CHECK_RSS_KB <= 65536") |"
  if [[ $LOAD_IS_BOUND == 1 ]]; then
    v=$(verdict "$LOAD_MED_MS <= 150"); [[ $v == FAIL ]] && v="unknown (upper bound exceeds)"
    echo "| manifest load ≤ 150 ms | ≤ ${LOAD_MED_MS} ms | $v |"
  else
    echo "| manifest load ≤ 150 ms | ${LOAD_MED_MS} ms | $(verdict "$LOAD_MED_MS <= 150") |"
  fi
  echo "| manifest ≤ AIDE database | $MANIFEST_BYTES vs $AIDE_DB_BYTES B | $(verdict "$MANIFEST_BYTES <= $AIDE_DB_BYTES") |"
  echo
  echo "Raw runs: \`${RUNS_TSV#"$REPO"/}\`, logs in \`${LOGS#"$REPO"/}/\`."
} >"$RESULTS"

cat "$RESULTS"

if [[ $WRITE == 1 ]]; then
  BM=$REPO/BENCHMARKS.md
  BEGIN='<!-- bench:results:begin -->'
  END='<!-- bench:results:end -->'
  if [[ -f $BM ]] && grep -qF "$BEGIN" "$BM" && grep -qF "$END" "$BM"; then
    awk -v b="$BEGIN" -v e="$END" -v f="$RESULTS" '
      $0 == b {print; while ((getline line < f) > 0) print line; skip = 1; next}
      $0 == e {skip = 0}
      !skip' "$BM" >"$BM.tmp"
    mv "$BM.tmp" "$BM"
  else
    { [[ -f $BM ]] && cat "$BM" && echo
      echo "## Results"; echo; echo "$BEGIN"; cat "$RESULTS"; echo "$END"; } >"$BM.tmp"
    mv "$BM.tmp" "$BM"
  fi
  log "wrote the results section of $BM"
fi
