#!/usr/bin/env bash
# Builds strata and strata_fsbench (release preset), mounts strata (and gocryptfs if installed)
# in a scratch directory on the repository's disk, runs every workload against every target
# interleaved (for each workload: plain, strata, null, gocryptfs, the order rotated by one for
# each repeat so that no target always runs right after another), and prints a table with ratios
# and the issue's targets as PASS/FAIL lines (information, not asserts). See bench/README.md.
# "null" is strata mounted with --null-data (file contents discarded, read back as zeros): the
# FUSE ceiling, so a data figure splits into FUSE's cost and the engine's. "buffered" (only when
# asked for) is strata with [journal] direct_io = false: what direct journal appends change.
#
# usage: bench/run.sh [--quick] [--targets "plain strata null buffered gocryptfs"]
#                     [--workloads "seq ..."]
#                     [--repeat N] [--wait-quiet SECONDS] [--no-build] [--keep]
#                     [--no-cold-remount] [--chunk-size SIZE]
#                     [-- extra strata_fsbench options]
#   --workloads   any of: seq rand ingest meta (default: all)
#   --chunk-size  strata's chunk_size at mkfs (default: the filesystem default, 64KiB)
#   --repeat      runs of each sequential, random, PACS read and metadata workload (default 3,
#                 quick 1; --seq-repeat is the old name; the PACS tree is ingested once); the
#                 table shows the median, and the range below
#   --wait-quiet  first wait up to SECONDS for the 1-minute load average to fall below 0.7
# Environment: BENCH_TMPDIR  where to make the scratch directory (default: $TMPDIR or /tmp if it
#                            is on the repository's disk, else build/bench/work)
#              BENCH_JOBS    build parallelism (default 2: the machine is shared)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$REPO/build/bench
QUICK=()
TARGETS_REQ=""
BUILD=1
KEEP=0
COLD_REMOUNT=1
REPEAT=""
WAIT_QUIET=0
CHUNK_SIZE=""
GROUPS_REQ="seq rand ingest meta"
EXTRA=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=(--quick) ;;
    --targets) TARGETS_REQ=$2; shift ;;
    --workloads) GROUPS_REQ=$2; shift ;;
    --repeat | --seq-repeat) REPEAT=$2; shift ;;
    --wait-quiet) WAIT_QUIET=$2; shift ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --no-cold-remount) COLD_REMOUNT=0 ;;
    --chunk-size) CHUNK_SIZE=$2; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

[[ $EUID -eq 0 ]] || log "warning: not root: cannot drop the page cache, reads will be warm"
command -v python3 >/dev/null || die "python3 is needed for the summary table"
command -v fusermount3 >/dev/null || die "fusermount3 is needed"

[[ -n $REPEAT ]] || REPEAT=$([[ ${#QUICK[@]} -gt 0 ]] && echo 1 || echo 3)
[[ $REPEAT =~ ^[1-9][0-9]*$ ]] || die "--repeat needs a positive number"

# --- build ------------------------------------------------------------------------------------
STRATA=$REPO/build/release/cli/strata
FSBENCH=$REPO/build/release/bench/strata_fsbench
mkdir -p "$OUT"
if [[ $BUILD == 1 ]]; then
  log "building (release preset, -j${BENCH_JOBS:-2})"
  (cd "$REPO" && cmake --preset release >/dev/null &&
     cmake --build build/release -j"${BENCH_JOBS:-2}" --target strata strata_fsbench) \
    >"$OUT/build.log" 2>&1 || die "build failed: see $OUT/build.log"
fi
[[ -x $STRATA && -x $FSBENCH ]] || die "missing $STRATA or $FSBENCH (build first)"

# --- targets ----------------------------------------------------------------------------------
TARGETS=(plain strata null)
if command -v gocryptfs >/dev/null; then TARGETS+=(gocryptfs); else log "gocryptfs not installed: skipped"; fi
if [[ -n $TARGETS_REQ ]]; then read -r -a TARGETS <<<"$TARGETS_REQ"; fi
for t in "${TARGETS[@]}"; do
  case $t in plain|strata|null|buffered|gocryptfs) ;; *) die "unknown target $t" ;; esac
done

# --- scratch directory: a real disk, the repository's ----------------------------------------
repo_dev=$(stat -c %d "$REPO")
parent=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
fstype=$(stat -f -c %T "$parent" 2>/dev/null || echo unknown)
if [[ -z ${BENCH_TMPDIR:-} ]] && { [[ $(stat -c %d "$parent") != "$repo_dev" ]] ||
                                    [[ $fstype == tmpfs || $fstype == ramfs ]]; }; then
  parent=$OUT/work
  mkdir -p "$parent"
fi
fstype=$(stat -f -c %T "$parent")
[[ $fstype != tmpfs && $fstype != ramfs ]] || die "$parent is $fstype: benchmark a real disk"
WORK=$(mktemp -d "$parent/strata-bench.XXXXXX")
log "scratch directory $WORK ($fstype; same device as the repository: $([[ $(stat -c %d "$WORK") == "$repo_dev" ]] && echo yes || echo NO))"
df -h "$WORK" | sed 's/^/    /' >&2

declare -A PID=() MNT=() DIRS=() HOT=()
JSONL=$WORK/results.jsonl
: >"$JSONL"

# Unmounts one FUSE target and waits for its daemon (by PID) to exit.
unmount_target() {
  local t=$1 pid=${PID[$1]:-} mnt=${MNT[$1]:-}
  [[ -n $pid ]] || return 0
  if mountpoint -q "$mnt"; then
    fusermount3 -u "$mnt" 2>/dev/null || { sleep 1; fusermount3 -u "$mnt" 2>/dev/null; } ||
      fusermount3 -uz "$mnt" 2>/dev/null || true
  fi
  local i
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "warning: $t daemon $pid still running 120 s after unmount: SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    sleep 5
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || log "warning: $t daemon exited with status $? (see $WORK/$t.log)"
  PID[$t]=""
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for t in "${!PID[@]}"; do unmount_target "$t"; done
  if grep -q " $WORK" /proc/mounts; then
    log "something is still mounted under $WORK: not deleting it"
  elif [[ $KEEP == 1 ]]; then
    log "kept $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_mounted() {
  local t=$1 i
  for ((i = 0; i < 300; i++)); do
    mountpoint -q "${MNT[$t]}" && return 0
    kill -0 "${PID[$t]}" 2>/dev/null || die "$t exited before mounting: $(tail -5 "$WORK/$t.log")"
    sleep 0.1
  done
  die "$t did not mount within 30 s"
}

mount_target() {
  local t=$1
  case $t in
    strata | null | buffered)
      # null: the same daemon discarding file data (strata mount --null-data): FUSE's own cost.
      local extra=()
      [[ $t == null ]] && extra=(--null-data)
      "$STRATA" mount "$WORK/$t/config.toml" "${MNT[$t]}" --foreground "${extra[@]}" \
        >>"$WORK/$t.log" 2>&1 &
      PID[$t]=$!
      ;;
    gocryptfs)
      gocryptfs -fg -q -extpass "echo bench-password" "$WORK/gocryptfs/cipher" "${MNT[$t]}" \
        >>"$WORK/$t.log" 2>&1 &
      PID[$t]=$!
      ;;
    *) return 0 ;;
  esac
  wait_mounted "$t"
}

setup_target() {
  local t=$1
  local d=$WORK/$t
  mkdir -p "$d"
  case $t in
    plain)
      DIRS[$t]=$d/data HOT[$t]=$d/data
      mkdir -p "$d/data"
      ;;
    strata | null | buffered)
      MNT[$t]=$d/mnt DIRS[$t]=$d/mnt HOT[$t]=$d/hot
      mkdir -p "$d/hot" "$d/mnt"
      head -c 32 /dev/urandom >"$d/key"
      chmod 600 "$d/key"
      cat >"$d/config.toml" <<EOF
[filesystem]
name = "bench-$t"
${CHUNK_SIZE:+chunk_size = \"$CHUNK_SIZE\"}
[keys]
key_file = "$d/key"
[tiers.hot]
path = "$d/hot"
EOF
      # buffered: strata with its journal appends through the page cache (the choice made before
      # [journal] direct_io; docs/architecture.md).
      [[ $t == buffered ]] && printf '[journal]\ndirect_io = false\n' >>"$d/config.toml"
      "$STRATA" mkfs "$d/config.toml" >>"$WORK/$t.log" 2>&1 || die "strata mkfs failed: $(tail -3 "$WORK/$t.log")"
      mount_target "$t"
      ;;
    gocryptfs)
      MNT[$t]=$d/mnt DIRS[$t]=$d/mnt HOT[$t]=$d/cipher
      mkdir -p "$d/cipher" "$d/mnt"
      gocryptfs -init -q -extpass "echo bench-password" "$d/cipher" >>"$WORK/$t.log" 2>&1 ||
        die "gocryptfs -init failed"
      mount_target "$t"
      ;;
  esac
}

for t in "${TARGETS[@]}"; do setup_target "$t"; done
log "targets: ${TARGETS[*]}${QUICK:+ (quick)}"

# --- workloads, interleaved across targets ---------------------------------------------------
# Each entry is name:kind; a read workload gets cold FUSE daemons (remount) on top of the dropped
# kernel caches. Sequential, random and metadata workloads run REPEAT times (write, read, write,
# read...; the random file is recreated each time, as randread checks its bytes): single runs
# of them swing 1.5-3x on a shared machine (two mounts of the same daemon differed 1.8x).
WORKLOADS=()
for g in $GROUPS_REQ; do
  case $g in
    seq)
      for kind in ct random; do
        for ((r = 0; r < REPEAT; r++)); do WORKLOADS+=("seqwrite:$kind" "seqread:$kind"); done
      done
      ;;
    rand) for ((r = 0; r < REPEAT; r++)); do WORKLOADS+=(randfile randread randwrite); done ;;
    ingest)
      # One tree; its parallel reads repeat (with the rotation below): a single read of it left
      # one target always right after plain, and its p99 swung with the order.
      WORKLOADS+=(ingest)
      for ((r = 0; r < REPEAT; r++)); do WORKLOADS+=(pacsread); done
      ;;
    meta) for ((r = 0; r < REPEAT; r++)); do WORKLOADS+=(meta); done ;;
    *) die "unknown workload group $g (seq rand ingest meta)" ;;
  esac
done

run_workload() {
  local t=$1 name=$2 kind=$3
  if [[ $COLD_REMOUNT == 1 && $name =~ ^(seqread|randread|pacsread)$ && -n ${PID[$t]:-} ]]; then
    unmount_target "$t"
    mount_target "$t"
  fi
  local args=("$name" --dir "${DIRS[$t]}" --target "$t" --kind "$kind" --json "$JSONL")
  [[ $name == seqwrite && $t != null ]] && args+=(--hot "${HOT[$t]}")
  [[ $t == null ]] && args+=(--no-verify)
  if ! "$FSBENCH" "${args[@]}" "${QUICK[@]}" "${EXTRA[@]}" | { grep '^#' || true; } |
    sed 's/^# /  /'; then
    die "$name on $t failed"
  fi
}

if [[ $WAIT_QUIET -gt 0 ]]; then
  log "waiting up to $WAIT_QUIET s for the load average to fall below 0.7 (now $(cut -d' ' -f1 /proc/loadavg))"
  for ((i = 0; i < WAIT_QUIET; i += 5)); do
    awk '{exit !($1 < 0.7)}' /proc/loadavg && break
    sleep 5
  done
fi
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START (2 CPUs; other work on the machine adds noise)"
START=$(date +%s)
# The n-th run of a workload starts the target list at its n-th target: a target that always
# ran right after plain paid for plain's writeback (seen on the metadata figures, bench/README.md).
declare -A SEEN=()
for w in "${WORKLOADS[@]}"; do
  name=${w%%:*} kind=${w#*:}
  [[ $kind == "$w" ]] && kind=ct
  n=${SEEN[$w]:-0}
  SEEN[$w]=$((n + 1))
  for ((i = 0; i < ${#TARGETS[@]}; i++)); do
    run_workload "${TARGETS[$(((i + n) % ${#TARGETS[@]}))]}" "$name" "$kind"
  done
done
ELAPSED=$(($(date +%s) - START))

# zstd -1 of the same CT-like bytes (the generator is deterministic).
SEQ_MIB=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
  r=json.loads(l)
  if r["workload"]=="seqwrite" and r["kind"]=="ct": print(r["bytes"]>>20); break' "$JSONL")
ZSTD_BYTES=""
if [[ -n $SEQ_MIB ]] && command -v zstd >/dev/null; then
  ZSTD_BYTES=$("$FSBENCH" gen ct --size-mib "$SEQ_MIB" | zstd -1 -q -c | wc -c)
fi

# --- summary ---------------------------------------------------------------------------------
python3 - "$JSONL" "$OUT/latest.json" "${ZSTD_BYTES:-0}" "$ELAPSED" "${#QUICK[@]}" \
  "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet 2>/dev/null || echo +dirty)" \
  "$(if command -v gocryptfs >/dev/null; then gocryptfs -version 2>/dev/null | head -1; fi)" \
  "$LOAD_START" <<'PY'
import json, os, platform, sys, time
jsonl, out, zstd_bytes, elapsed, quick, commit, gocryptfs_version, load_start = sys.argv[1:9]
zstd_bytes = int(zstd_bytes)
rows = [json.loads(l) for l in open(jsonl) if l.strip()]
targets = []
for r in rows:
    if r["target"] not in targets:
        targets.append(r["target"])
res = {}  # workload[-kind] -> target -> [records] (several when repeated)
for r in rows:
    key = r["workload"] + ("-" + r["kind"] if "kind" in r else "")
    res.setdefault(key, {}).setdefault(r["target"], []).append(r)

# (label, key, field, unit, higher_is_better)
figures = [
    ("seq write CT-like", "seqwrite-ct", "mb_per_s", "MB/s", True),
    ("seq read CT-like (cold)", "seqread-ct", "mb_per_s", "MB/s", True),
    ("seq write random", "seqwrite-random", "mb_per_s", "MB/s", True),
    ("seq read random (cold)", "seqread-random", "mb_per_s", "MB/s", True),
    ("4k random read", "randread", "ops_per_s", "ops/s", True),
    ("4k random read p50", "randread", "lat_p50_ms", "ms", False),
    ("4k random read p99", "randread", "lat_p99_ms", "ms", False),
    ("4k random write (+fsync)", "randwrite", "ops_per_s", "ops/s", True),
    ("4k random write p50", "randwrite", "lat_p50_ms", "ms", False),
    ("4k random write p99", "randwrite", "lat_p99_ms", "ms", False),
    ("PACS ingest", "ingest", "files_per_s", "files/s", True),
    ("PACS ingest", "ingest", "mb_per_s", "MB/s", True),
    ("PACS ingest file p99", "ingest", "file_p99_ms", "ms", False),
    ("PACS 32 readers", "pacsread", "files_per_s", "files/s", True),
    ("PACS 32 readers", "pacsread", "mb_per_s", "MB/s", True),
    ("PACS read file p50", "pacsread", "file_p50_ms", "ms", False),
    ("PACS read file p99", "pacsread", "file_p99_ms", "ms", False),
    ("meta create", "meta", "create_per_s", "ops/s", True),
    ("meta stat (cold)", "meta", "stat_per_s", "ops/s", True),
    ("meta readdir (cold)", "meta", "readdir_per_s", "entries/s", True),
    ("meta rename", "meta", "rename_per_s", "ops/s", True),
    ("meta unlink", "meta", "unlink_per_s", "ops/s", True),
    ("CT-like stored ratio", "seqwrite-ct", "stored_ratio", "x", True),
]

def get(key, t, field):
    """The median over repeated runs (the lower middle one for an even count)."""
    vals = sorted(r[field] for r in res.get(key, {}).get(t, [])
                  if isinstance(r.get(field), (int, float)))
    return vals[(len(vals) - 1) // 2] if vals else None

def spread(key, t, field):
    vals = [r[field] for r in res.get(key, {}).get(t, []) if isinstance(r.get(field), (int, float))]
    return (min(vals), max(vals)) if len(vals) > 1 else None

def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if abs(v) >= 0.1 else f"{v:.3f}"

ratio_cols = [t for t in ("plain", "null", "buffered", "gocryptfs")
              if t in targets and "strata" in targets]
head = ["figure", "unit"] + targets + [f"strata/{t}" for t in ratio_cols]
table = []
worse_than_gocryptfs, compared = [], 0
for label, key, field, unit, higher in figures:
    vals = [get(key, t, field) for t in targets]
    if all(v is None for v in vals):
        continue
    row = [label, unit + ("" if higher else " (lower=better)")] + [fmt(v) for v in vals]
    s = get(key, "strata", field)
    for t in ratio_cols:
        o = get(key, t, field)
        row.append(f"{s / o:.2f}" if s is not None and o else "-")
    table.append(row)
    g = get(key, "gocryptfs", field)
    if s is not None and g is not None:
        compared += 1
        if (s < g) if higher else (s > g):
            worse_than_gocryptfs.append(f"{label} [{unit}]: {fmt(s)} vs {fmt(g)}")

widths = [max(len(r[i]) for r in table + [head]) for i in range(len(head))]
def line(r):
    return "  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(r))
print()
print(line(head))
print("  ".join("-" * w for w in widths))
for r in table:
    print(line(r))

ranges = []
for label, key, field, unit, higher in figures:
    parts = [f"{t} {fmt(sp[0])}-{fmt(sp[1])}" for t in targets if (sp := spread(key, t, field))]
    if parts:
        n = max(len(res[key][t]) for t in res[key])
        ranges.append(f"  {label} [{unit}], median of {n}: " + ", ".join(parts))
if ranges:
    print("\nRange over the repeated runs:")
    print("\n".join(ranges))

mism = [f'{r["workload"]} on {r["target"]}' for r in rows if r.get("mismatches")]
cold = all(r.get("dropped_caches", True) for r in rows)
print()
print("Targets from the issue (information, not asserts):")
goals = {}
w = get("seqwrite-ct", "strata", "mb_per_s")
if w is not None:
    goals["seq_write_ct_300"] = w >= 300
    print(f'  [{"PASS" if w >= 300 else "FAIL"}] seq write CT-like >= 300 MB/s with compression+'
          f"encryption: strata {w:.1f} MB/s")
if "gocryptfs" in targets and "strata" in targets:
    ok = not worse_than_gocryptfs
    goals["every_figure_ge_gocryptfs"] = ok
    print(f'  [{"PASS" if ok else "FAIL"}] every figure >= gocryptfs: strata is worse in '
          f"{len(worse_than_gocryptfs)} of {compared}")
    for x in worse_than_gocryptfs:
        print(f"           - {x}")
stored = get("seqwrite-ct", "strata", "stored_bytes")
if stored and zstd_bytes:
    rel = stored / zstd_bytes
    goals["ct_stored_within_10pct_of_zstd1"] = rel <= 1.10
    print(f'  [{"PASS" if rel <= 1.10 else "FAIL"}] CT-like stored bytes within 10% of zstd -1: '
          f"strata {stored / 2**20:.1f} MiB, zstd -1 {zstd_bytes / 2**20:.1f} MiB "
          f"({(rel - 1) * 100:+.1f}%)")
if mism:
    print("  DATA MISMATCH in: " + ", ".join(mism))
if not cold:
    print("  note: page cache could not be dropped (not root): read figures are warm")
print(f"\n{len(rows)} results in {elapsed} s; load average {load_start} at start, "
      + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" at end; JSON in {out}")

doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
    "loadavg_at_start": [float(x) for x in load_start.split()], "loadavg_at_end": os.getloadavg(), "quick": quick != "0", "strata_commit": commit,
    "gocryptfs": gocryptfs_version, "elapsed_seconds": int(elapsed),
    "zstd1_ct_bytes": zstd_bytes or None, "goals": goals, "results": rows,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
PY
