#!/usr/bin/env bash
# The tiering benchmark: migration throughput from the hot tier to a directory tier and to S3
# (a real single-node Ceph RGW on loopback), the latency to open and read a whole 512 KiB file
# from each tier with cold caches at 1 and 32 readers (against a plain directory on the same
# disk and against the hot tier), hot reads during a burst of cold S3 reads, and the time of a
# `--dry-run` pass over 10^6 files. It prints figures, ratios and the issue's targets as
# information; it asserts nothing and is not a test. See bench/README.md, "The tiering benchmark".
#
# usage: bench/tiering.sh [--quick] [--no-s3] [--no-build] [--keep]
#                         [--parts "migrate read burst dryrun"] [--dry-run-files N]
#                         [--readahead SIZE]
#   --quick          400 files per tree (default 2,000), 10^5 files for the dry run (default
#                    10^6): about 2 minutes
#   --no-s3          no Ceph cluster: the S3 tier, its rows and the burst are skipped
#   --parts          any of: migrate read burst dryrun (default: all; read and burst need the
#                    migrated trees, so they imply migrate)
#   --dry-run-files  files in the dry-run filesystem
#   --readahead      the cold tiers' readahead (e.g. 0, 512KiB; default: strata's, 1MiB)
#   --keep           keep the scratch directory (and print its path)
# Environment: BENCH_TMPDIR  where to make the scratch directory (as bench/run.sh)
#              BENCH_JOBS    build parallelism (default 2: the machine is shared)
#              BENCH_CONFIG_EXTRA  TOML tables appended to strata's config (experiments)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$REPO/build/bench
QUICK=0
USE_S3=1
BUILD=1
KEEP=0
PARTS="migrate read burst dryrun"
DRY_FILES=""
READAHEAD=""
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --no-s3) USE_S3=0 ;;
    --no-build) BUILD=0 ;;
    --keep) KEEP=1 ;;
    --parts) PARTS=$2; shift ;;
    --dry-run-files) DRY_FILES=$2; shift ;;
    --readahead) READAHEAD=$2; shift ;;
    -h|--help) sed -n '2,/^set /{/^#/p}' "$0"; exit 0 ;;
    *) echo "tiering.sh: unknown argument $1" >&2; exit 1 ;;
  esac
  shift
done

log() { printf '[tiering %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

for p in $PARTS; do
  case $p in migrate|read|burst|dryrun) ;; *) die "unknown part $p (migrate read burst dryrun)" ;; esac
done
if has_part read || has_part burst; then has_part migrate || PARTS="migrate $PARTS"; fi
[[ $EUID -eq 0 ]] || log "warning: not root: cannot drop the page cache, reads will be warm"
command -v python3 >/dev/null || die "python3 is needed for the summary"
command -v fusermount3 >/dev/null || die "fusermount3 is needed"
if [[ $USE_S3 == 1 ]] && ! command -v radosgw >/dev/null; then
  log "radosgw not installed (scripts/setup.sh installs it): S3 skipped"
  USE_S3=0
fi

# Sizes. A tree is the fsbench PACS tree: STUDIES x 5 series x 20 instances of 512 KiB.
if [[ $QUICK == 1 ]]; then
  STUDIES=4 STUDIES_1=1 DRY_DEFAULT=100000 RAW_GETS=20
else
  STUDIES=20 STUDIES_1=5 DRY_DEFAULT=1000000 RAW_GETS=50
fi
DRY_FILES=${DRY_FILES:-$DRY_DEFAULT}
[[ $DRY_FILES =~ ^[1-9][0-9]*$ ]] || die "--dry-run-files needs a positive number"
FILE_KIB=512
TREE=(--studies "$STUDIES" --series 5 --instances 20 --file-kib "$FILE_KIB")
TREE_1=(--studies "$STUDIES_1" --series 5 --instances 20 --file-kib "$FILE_KIB")  # 1 reader

# --- build ------------------------------------------------------------------------------------
STRATA=$REPO/build/release/cli/strata
FSBENCH=$REPO/build/release/bench/strata_fsbench
TIERBENCH=$REPO/build/release/bench/strata_tierbench
mkdir -p "$OUT"
if [[ $BUILD == 1 ]]; then
  log "building (release preset, -j${BENCH_JOBS:-2})"
  (cd "$REPO" && cmake --preset release >/dev/null &&
     cmake --build build/release -j"${BENCH_JOBS:-2}" --target strata strata_fsbench strata_tierbench) \
    >"$OUT/tiering-build.log" 2>&1 || die "build failed: see $OUT/tiering-build.log"
fi
[[ -x $STRATA && -x $FSBENCH && -x $TIERBENCH ]] || die "missing binaries in build/release (build first)"

# --- scratch directory: a real disk, the repository's (as bench/run.sh) ----------------------
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
WORK=$(mktemp -d "$parent/strata-tiering.XXXXXX")
log "scratch directory $WORK ($fstype; same device as the repository: $([[ $(stat -c %d "$WORK") == "$repo_dev" ]] && echo yes || echo NO))"
JSONL=$WORK/results.jsonl
: >"$JSONL"
FS=$WORK/strata  # config, key, hot tier, directory tier, mount point
MNT=$FS/mnt
HOT=$FS/hot
DAEMON=""        # PID of the strata daemon while mounted
S3DIR=$WORK/s3
S3_STARTED=0
BG_PIDS=()       # concurrent readers (the burst), stopped first at exit

# Unmounts strata and waits for its daemon (by PID) to exit: it flushes and commits first.
unmount_strata() {
  local pid=$DAEMON i
  [[ -n $pid ]] || return 0
  if mountpoint -q "$MNT"; then
    fusermount3 -u "$MNT" 2>/dev/null || { sleep 1; fusermount3 -u "$MNT" 2>/dev/null; } ||
      fusermount3 -uz "$MNT" 2>/dev/null || true
  fi
  for ((i = 0; i < 1200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "warning: strata daemon $pid still running 120 s after unmount: SIGTERM"
    kill -TERM "$pid" 2>/dev/null || true
    sleep 5
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  wait "$pid" 2>/dev/null || log "warning: strata daemon exited with status $? (see $FS/daemon.log)"
  DAEMON=""
}

mount_strata() {
  local i
  "$STRATA" mount "$FS/config.toml" "$MNT" --foreground >>"$FS/daemon.log" 2>&1 &
  DAEMON=$!
  for ((i = 0; i < 300; i++)); do
    mountpoint -q "$MNT" && return 0
    kill -0 "$DAEMON" 2>/dev/null || die "strata exited before mounting: $(tail -5 "$FS/daemon.log")"
    sleep 0.1
  done
  die "strata did not mount within 30 s"
}

drop_caches() {
  sync
  if [[ $EUID -eq 0 ]]; then echo 3 >/proc/sys/vm/drop_caches; fi
}

# Cold start for reads: a fresh daemon (empty decoded-chunk cache), an empty read cache on
# the hot tier (<hot>/cache, docs/tiering.md), and empty kernel caches.
cold_remount() {
  unmount_strata
  find "$HOT/cache" -mindepth 1 -delete 2>/dev/null || true
  mount_strata
  drop_caches
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  local p
  for p in "${BG_PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then kill -TERM "$p" 2>/dev/null || true; fi
    wait "$p" 2>/dev/null || true
  done
  unmount_strata
  if [[ $S3_STARTED == 1 ]]; then
    "$REPO/scripts/s3-server.sh" stop "$S3DIR" >>"$WORK/s3-server.log" 2>&1 ||
      log "warning: scripts/s3-server.sh stop $S3DIR failed (see $WORK/s3-server.log)"
  fi
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

# Runs strata_fsbench, shows its human line, keeps its JSON (with LABEL as the target).
fsbench() {
  local label=$1
  shift
  if ! "$FSBENCH" "$@" --target "$label" --json "$JSONL" | { grep '^#' || true; } |
    sed 's/^# /  /'; then
    die "strata_fsbench $1 ($label) failed"
  fi
}

# CPU seconds (user + system) used so far by the given processes, summed.
cpu_seconds() {
  local p ticks=0
  for p in "$@"; do
    [[ -r /proc/$p/stat ]] && ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat")))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
s3_pids() { if [[ $S3_STARTED == 1 ]]; then cat "$S3DIR"/run/*.pid 2>/dev/null || true; fi; }

# Runs fsbench like fsbench(), and records the CPU the strata daemon and the S3 store (the
# Ceph daemons) used meanwhile: on 2 shared cores that explains most of the latency.
fsbench_cpu() {
  local label=$1 c0 s0
  # shellcheck disable=SC2046
  c0=$(cpu_seconds "$DAEMON") s0=$(cpu_seconds $(s3_pids))
  fsbench "$@"
  # shellcheck disable=SC2046
  record workload=cpu target="$label" strata_cpu_s="$(awk -v a="$c0" -v b="$(cpu_seconds "$DAEMON")" 'BEGIN { print b - a }')" \
    store_cpu_s="$(awk -v a="$s0" -v b="$(cpu_seconds $(s3_pids))" 'BEGIN { print b - a }')"
}

# Seconds between two `date +%s.%N` readings.
seconds_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# Appends one JSON object (given as key=value pairs, numbers or strings) to the results.
record() {
  python3 - "$JSONL" "$@" <<'PY'
import json, sys
d = {}
for kv in sys.argv[2:]:
    k, v = kv.split("=", 1)
    try:
        d[k] = json.loads(v)
    except ValueError:
        d[k] = v
with open(sys.argv[1], "a") as f:
    f.write(json.dumps(d) + "\n")
PY
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average at start: $LOAD_START (2 CPUs; other work on the machine adds noise)"
START=$(date +%s)

# --- setup: plain directory, S3, strata with a directory tier and an S3 tier ---------------------
TIERS=(hot directory)
if has_part migrate; then
  mkdir -p "$WORK/plain/data" "$HOT" "$MNT" "$FS/archive"
  if [[ $USE_S3 == 1 ]]; then
    log "starting the S3 server (scripts/s3-server.sh: single-node Ceph RGW on loopback)"
    S3_STARTED=1
    "$REPO/scripts/s3-server.sh" start "$S3DIR" >"$WORK/s3-server.log" 2>&1 ||
      die "scripts/s3-server.sh start failed: $(tail -5 "$WORK/s3-server.log")"
    # shellcheck disable=SC1091
    source "$S3DIR/env"
    printf '[default]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
      "$STRATA_S3_ACCESS_KEY" "$STRATA_S3_SECRET_KEY" >"$FS/s3.credentials"
    chmod 600 "$FS/s3.credentials"
    TIERS+=(s3)
  fi
  head -c 32 /dev/urandom >"$FS/key"
  chmod 600 "$FS/key"
  {
    cat <<EOF
[filesystem]
name = "tierbench-$(basename "$WORK" | tr -c 'a-zA-Z0-9\n' -)"
[keys]
key_file = "$FS/key"
[tiers.hot]
path = "$HOT"
[tiers.archive]
kind = "directory"
path = "$FS/archive"
${READAHEAD:+readahead = \"$READAHEAD\"}
[policy]
file = "$FS/policy.toml"
interval = "off"
EOF
    if [[ $USE_S3 == 1 ]]; then
      cat <<EOF
[tiers.cloud]
kind = "s3"
endpoint = "$STRATA_S3_ENDPOINT"
region = "$STRATA_S3_REGION"
bucket = "$STRATA_S3_BUCKET"
prefix = "tierbench/"
credentials_file = "$FS/s3.credentials"
${READAHEAD:+readahead = \"$READAHEAD\"}
EOF
    fi
    # Whole tables for experiments, e.g. BENCH_CONFIG_EXTRA=$'[cache]\ncold_readers = 12'.
    if [[ -n ${BENCH_CONFIG_EXTRA:-} ]]; then printf '%s\n' "$BENCH_CONFIG_EXTRA"; fi
  } >"$FS/config.toml"
  # The policy grows one rule per migration measured; each pass reloads it.
  : >"$FS/policy.toml"
  "$STRATA" mkfs "$FS/config.toml" >>"$FS/daemon.log" 2>&1 || die "strata mkfs failed: $(tail -3 "$FS/daemon.log")"
  mount_strata
  log "strata mounted on $MNT; tiers: hot, archive (directory, same disk)$([[ $USE_S3 == 1 ]] && echo ", cloud (S3 $STRATA_S3_ENDPOINT)")"
  if [[ -n ${BENCH_CONFIG_EXTRA:-} ]]; then
    log "NOT the default config: BENCH_CONFIG_EXTRA appended ${BENCH_CONFIG_EXTRA//$'\n'/; }"
  fi

  # Trees: plain/data/pacs (baseline), mnt/hot/pacs (stays hot), mnt/dir/pacs -> archive,
  # mnt/s3/pacs -> cloud. Ingest is the fsbench PACS ingest (4 writers, fsync per file).
  log "ingesting ${STUDIES}00 files of 512 KiB per tree"
  fsbench ingest/plain ingest --dir "$WORK/plain/data" "${TREE[@]}"
  for t in "${TIERS[@]}"; do
    d=${t/directory/dir}
    mkdir -p "$MNT/$d"
    fsbench "ingest/$t" ingest --dir "$MNT/$d" "${TREE[@]}"
  done

  # --- migration throughput -------------------------------------------------------------------
  # One pass per target tier, through the mounted daemon, ages evaluated 200 days ahead (so
  # every file is old enough without touching mtimes); kernel caches dropped before each pass.
  migrate_to() {
    local tier=$1 tier_name=$2 dir=$3
    cat >>"$FS/policy.toml" <<EOF
[[rule]]
name = "to-$tier_name"
match = "$dir/**"
older_than = "180d"
to = "$tier_name"
EOF
    drop_caches
    local t0 t1 out
    t0=$(date +%s.%N)
    out=$("$STRATA" migrate "$FS/config.toml" --as-of +200d --json) ||
      die "strata migrate to $tier_name failed: $out"
    t1=$(date +%s.%N)
    local wall
    wall=$(seconds_between "$t0" "$t1")
    record workload=migrate tier="$tier" wall_seconds="$wall" file_bytes=$((FILE_KIB * 1024)) \
      report="$out"
    python3 - "$out" "$wall" $((FILE_KIB * 1024)) "$tier" <<'PY'
import json, sys
r, w, fb, tier = json.loads(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
logical, stored = r["files_moved"] * fb / 1e6, r["bytes_moved"] / 1e6
# Fields a pass may add (compaction, reclaimed journal segments) are shown when not zero.
extra = ", ".join(f"{k} {r[k]}" for k in ("segments_compacted", "bytes_compacted",
                                           "journal_segments_freed", "bytes_freed") if r.get(k))
print(f"  migrate to {tier:<10} {r['files_moved']:6} files {logical:8.1f} MB logical "
      f"{stored:7.1f} MB stored in {w:6.2f} s (pass {r['elapsed_ms'] / 1e3:.2f} s): "
      f"{logical / w:6.1f} MB/s logical, {stored / w:6.1f} MB/s stored, "
      f"{r['segments_written']} segments" + (f" ({extra})" if extra else "")
      + (f"  ERRORS: {r['errors']}" if r["errors"] else ""))
PY
  }
  log "migration passes"
  migrate_to directory archive dir
  [[ $USE_S3 == 1 ]] && migrate_to s3 cloud s3
  status=$("$STRATA" migrate "$FS/config.toml" --status --json) || die "strata migrate --status failed"
  record workload=status report="$status"
fi

# --- cold reads per tier, 1 and 32 readers ------------------------------------------------------
if has_part read; then
  log "cold reads: open + read 512 KiB to EOF + close, per tier, 1 and 32 readers"
  for readers in 1 32; do
    if [[ $readers == 1 ]]; then tree=("${TREE_1[@]}"); else tree=("${TREE[@]}"); fi
    for t in plain "${TIERS[@]}"; do
      if [[ $t == plain ]]; then
        dir=$WORK/plain/data
        drop_caches
      else
        dir=$MNT/${t/directory/dir}
        cold_remount
      fi
      fsbench_cpu "read/$t/$readers" pacsread --dir "$dir" --readers "$readers" "${tree[@]}" \
        --no-drop-caches
    done
  done
fi

# --- hot reads during a burst of cold S3 reads ----------------------------------------------------
# Hot readers (32) alone; during a burst of 32 hot readers on other files of the hot tree (the
# control: what 32 more readers cost on this machine); during a burst of 32 cold S3 readers.
# The hot readers read the first STUDIES_1 studies and start when the burst starts reading, so
# that they finish within it.
burst_run() {
  local name=$1 dir=$2 hot_pid burst_pid running_after=0
  shift 2
  cold_remount
  rm -f "$WORK/burst.ready"
  # The hot readers make their data and wait; the burst starts them when it starts reading.
  "$FSBENCH" pacsread --dir "$MNT/hot" --readers 32 "${TREE_1[@]}" --no-drop-caches \
    --wait-file "$WORK/burst.ready" --target "burst/hot-during-$name" --json "$JSONL" \
    >"$WORK/hot.out" 2>&1 &
  hot_pid=$!
  BG_PIDS+=("$hot_pid")
  "$FSBENCH" pacsread --dir "$dir" --readers 32 "$@" --no-drop-caches \
    --ready-file "$WORK/burst.ready" --target "burst/$name-burst" --json "$JSONL" \
    >"$WORK/burst.out" 2>&1 &
  burst_pid=$!
  BG_PIDS+=("$burst_pid")
  local rc=0
  while kill -0 "$hot_pid" 2>/dev/null; do
    if [[ ! -e $WORK/burst.ready ]] && ! kill -0 "$burst_pid" 2>/dev/null; then
      kill -TERM "$hot_pid" 2>/dev/null || true  # the burst failed before it started
      break
    fi
    sleep 0.05
  done
  wait "$hot_pid" || rc=$?
  kill -0 "$burst_pid" 2>/dev/null && running_after=1
  BG_PIDS=("$burst_pid")  # the hot readers are reaped: their PID may be reused
  [[ $rc == 0 ]] || die "the hot readers failed: $(tail -3 "$WORK/hot.out" "$WORK/burst.out")"
  wait "$burst_pid" || die "the $name burst failed: $(tail -3 "$WORK/burst.out")"
  BG_PIDS=()
  grep -h '^#' "$WORK/hot.out" "$WORK/burst.out" | sed 's/^# /  /'
  record workload=burst_overlap burst="$name" burst_running_after_hot="$running_after"
}
if has_part burst && [[ $USE_S3 == 1 ]]; then
  log "hot reads (32 readers) alone, during a burst of hot reads, during a burst of cold S3 reads"
  cold_remount
  fsbench_cpu burst/hot-alone pacsread --dir "$MNT/hot" --readers 32 "${TREE_1[@]}" \
    --no-drop-caches
  burst_run hot "$MNT/hot" "${TREE[@]}" --first-study "$STUDIES_1"
  burst_run s3 "$MNT/s3" "${TREE[@]}"
fi

# --- raw S3 GET latency (what the store itself costs, for the S3 rows) ------------------------
if has_part migrate && [[ $USE_S3 == 1 ]] && command -v curl >/dev/null; then
  sigv4=(--aws-sigv4 "aws:amz:$STRATA_S3_REGION:s3" --user "$STRATA_S3_ACCESS_KEY:$STRATA_S3_SECRET_KEY"
         -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
  key=$(curl -s "${sigv4[@]}" "$STRATA_S3_ENDPOINT/$STRATA_S3_BUCKET?list-type=2&prefix=tierbench%2F" |
        grep -o '<Key>[^<]*</Key>' | sed 's/<[^>]*>//g' | head -1)
  size=$(curl -s -I "${sigv4[@]}" "$STRATA_S3_ENDPOINT/$STRATA_S3_BUCKET/$key" |
         tr -d '\r' | awk 'tolower($1)=="content-length:"{print $2}')
  per_file=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
  r=json.loads(l)
  if r.get("workload")=="migrate" and r.get("tier")=="s3":
    m=r["report"]; print(m["bytes_moved"]//max(1,m["files_moved"]))' "$JSONL")
  if [[ -n $key && -n $size && -n $per_file ]]; then
    times=()
    for ((i = 0; i < RAW_GETS; i++)); do
      off=$(( (size - per_file) * i / RAW_GETS ))
      times+=("$(curl -s -o /dev/null -w '%{time_total}' "${sigv4[@]}" \
                 -H "Range: bytes=$off-$((off + per_file - 1))" \
                 "$STRATA_S3_ENDPOINT/$STRATA_S3_BUCKET/$key")")
    done
    record workload=s3_raw_get bytes="$per_file" "times=[$(IFS=,; echo "${times[*]}")]"
    # The same from 32 clients at once (each one curl keeping its connection, 20 GETs): what
    # the store alone gives under the concurrency of the 32-reader row, on the same cores.
    par=$(for ((w = 0; w < 32; w++)); do
      off=$(( (size - per_file) * w / 32 ))
      urls=()
      for ((i = 0; i < 20; i++)); do
        urls+=(-o /dev/null "$STRATA_S3_ENDPOINT/$STRATA_S3_BUCKET/$key")
      done
      curl -s -w '%{time_total}\n' "${sigv4[@]}" -H "Range: bytes=$off-$((off + per_file - 1))" \
        "${urls[@]}" &
    done
    wait)
    record workload=s3_raw_get32 bytes="$per_file" "times=[$(echo "$par" | paste -sd,)]"
  else
    log "warning: could not find the S3 segment object for the raw GET baseline"
  fi
fi

# --- dry run over many files ----------------------------------------------------------------------
if has_part dryrun; then
  log "dry run over $DRY_FILES files: building the filesystem through the library (strata_tierbench)"
  if ! "$TIERBENCH" --dir "$WORK/dryrun" --files "$DRY_FILES" --repeat 2 --json "$JSONL" \
    2>"$WORK/tierbench.log" | { grep '^#' || true; } | sed 's/^# /  /'; then
    die "strata_tierbench failed: $(grep -v ' info: ' "$WORK/tierbench.log" | tail -3)"
  fi
  # The same dry run as a user runs it: the CLI, not mounted (it opens the filesystem itself).
  # Twice, caches dropped before each; the faster counts (as strata_tierbench --repeat 2).
  best=""
  for run in 1 2; do
    drop_caches
    t0=$(date +%s.%N)
    out=$("$STRATA" migrate "$WORK/dryrun/config.toml" --dry-run --as-of +200d --json \
            2>>"$WORK/tierbench.log") || die "strata migrate --dry-run failed: $out"
    t1=$(date +%s.%N)
    secs=$(seconds_between "$t0" "$t1")
    echo "  strata migrate --dry-run (CLI, not mounted), run $run: $secs s"
    if [[ -z $best ]] || awk -v a="$secs" -v b="$best" 'BEGIN { exit !(a < b) }'; then best=$secs; fi
  done
  record workload=dryrun_cli wall_seconds="$best" runs=2 report="$out"
  rm -rf "$WORK/dryrun"  # up to a few hundred MB
fi
ELAPSED=$(($(date +%s) - START))

# --- summary --------------------------------------------------------------------------------------
python3 - "$JSONL" "$OUT/tiering.json" "$ELAPSED" "$QUICK" "$LOAD_START" \
  "$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null)$(cd "$REPO" && git diff --quiet 2>/dev/null || echo +dirty)" \
  "$EUID" <<'PY'
import json, os, platform, sys, time
jsonl, out, elapsed, quick, load_start, commit, root = sys.argv[1:8]
root = root == "0"
rows = [json.loads(l) for l in open(jsonl) if l.strip()]

def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 1000:
        s = f"{v:,.0f}"
    elif abs(v) >= 100:
        s = f"{v:.0f}"
    elif abs(v) >= 10:
        s = f"{v:.1f}"
    else:
        s = f"{v:.2f}"
    return s + unit

def table(head, body):
    w = [max(len(r[i]) for r in body + [head]) for i in range(len(head))]
    line = lambda r: "  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r))
    print(line(head))
    print("  ".join("-" * x for x in w))
    for r in body:
        print(line(r))

by_target = {r["target"]: r for r in rows if "target" in r and r.get("workload") != "cpu"}
cpu = {r["target"]: r for r in rows if r.get("workload") == "cpu"}

def cpu_ms(target, key):
    """CPU milliseconds per file read (strata daemon or S3 store) during that run."""
    c, r = cpu.get(target), by_target.get(target)
    if not c or not r or not r.get("files"):
        return "-"
    return fmt(c[key] * 1e3 / r["files"])
summary = {}
goals = {}

# Migration.
ing_hot = by_target.get("ingest/hot")
mig = [r for r in rows if r.get("workload") == "migrate"]
if mig:
    print("\nMigration (one pass per tier through the mounted daemon; MB = 10^6 bytes)")
    body = []
    for r in mig:
        m, w = r["report"], r["wall_seconds"]
        logical = m["files_moved"] * r["file_bytes"]
        mbs = logical / 1e6 / w
        summary[f"migrate_{r['tier']}_mb_per_s"] = mbs
        body.append([f"hot -> {r['tier']}", f"{m['files_moved']:,}", fmt(logical / 1e6),
                     fmt(m["bytes_moved"] / 1e6), fmt(w), fmt(mbs), fmt(m["bytes_moved"] / 1e6 / w),
                     f"{mbs / ing_hot['mb_per_s']:.2f}" if ing_hot else "-"])
    if ing_hot:
        body.append(["ingest -> hot (baseline)", f"{ing_hot['files']:,.0f}",
                     fmt(ing_hot["files"] * ing_hot["file_bytes"] / 1e6), "-",
                     fmt(ing_hot["seconds"]), fmt(ing_hot["mb_per_s"]), "-", "1.00"])
    table(["pass", "files", "MB logical", "MB stored", "seconds", "MB/s logical",
           "MB/s stored", "vs ingest"], body)
    for r in mig:
        if r["report"].get("errors"):
            print(f"  ERRORS in the pass to {r['tier']}: {r['report']['errors']}")

# Cold reads.
reads = [r for r in rows if r.get("target", "").startswith("read/")]
if reads:
    print("\nCold reads: open + read a whole 512 KiB file + close (caches dropped, daemon "
          "remounted, read cache emptied)")
    body = []
    for readers in (1, 32):
        base = by_target.get(f"read/plain/{readers}")
        hot = by_target.get(f"read/hot/{readers}")
        for tier in ("plain", "hot", "directory", "s3"):
            r = by_target.get(f"read/{tier}/{readers}")
            if not r:
                continue
            ratio = lambda b, k: f"{r[k] / b[k]:.2f}" if b and b[k] else "-"
            t = f"read/{tier}/{readers}"
            body.append([tier, str(readers), f"{r['files']:,.0f}", fmt(r["files_per_s"]),
                         fmt(r["mb_per_s"]), fmt(r["file_p50_ms"]), fmt(r["file_p99_ms"]),
                         ratio(base, "file_p50_ms"), ratio(base, "file_p99_ms"),
                         ratio(hot, "file_p50_ms"), ratio(hot, "file_p99_ms"),
                         cpu_ms(t, "strata_cpu_s") if tier != "plain" else "-",
                         cpu_ms(t, "store_cpu_s") if tier == "s3" else "-"])
            summary[f"read_{tier}_{readers}_p50_ms"] = r["file_p50_ms"]
            summary[f"read_{tier}_{readers}_p99_ms"] = r["file_p99_ms"]
    table(["tier", "readers", "files", "files/s", "MB/s", "p50 ms", "p99 ms", "p50/plain",
           "p99/plain", "p50/hot", "p99/hot", "strata CPU ms/file", "S3 store CPU ms/file"],
          body)
    mism = [r["target"] for r in reads if r.get("mismatches")]
    if mism:
        print("  DATA MISMATCH in: " + ", ".join(mism))
    if not root:
        print("  note: not root: the page cache was not dropped, the figures are warm")
raw = next((r for r in rows if r.get("workload") == "s3_raw_get"), None)
if raw:
    t = sorted(x * 1e3 for x in raw["times"])
    p = lambda q: t[min(len(t) - 1, max(0, int(-(-q * len(t) // 1)) - 1))]
    summary["s3_raw_get_p50_ms"] = p(0.5)
    print(f"  raw S3 GET of one file's stored bytes ({raw['bytes']:,} B) with curl, one at a "
          f"time: p50 {fmt(p(0.5))} ms, p99 {fmt(p(0.99))} ms over {len(t)} GETs")
raw32 = next((r for r in rows if r.get("workload") == "s3_raw_get32"), None)
if raw32:
    t = sorted(x * 1e3 for x in raw32["times"])
    p = lambda q: t[min(len(t) - 1, max(0, int(-(-q * len(t) // 1)) - 1))]
    summary["s3_raw_get32_p99_ms"] = p(0.99)
    print(f"  the same from 32 curl clients at once: p50 {fmt(p(0.5))} ms, p99 {fmt(p(0.99))} ms "
          f"over {len(t)} GETs (the store alone, on the same cores)")

# Hot reads during a cold burst.
alone = by_target.get("burst/hot-alone")
during = {k: by_target.get(f"burst/hot-during-{k}") for k in ("hot", "s3")}
bursts = {k: by_target.get(f"burst/{k}-burst") for k in ("hot", "s3")}
overlap = {r["burst"]: r["burst_running_after_hot"] for r in rows
           if r.get("workload") == "burst_overlap"}
if alone and during["s3"]:
    print("\nHot reads (32 readers, cold caches) alone and during a burst of 32 other readers")
    rel = lambda r, b, k: f"{r[k] / b[k]:.2f}" if r and b and b[k] else "-"
    ctl = during["hot"]
    body = [["hot alone", fmt(alone["files_per_s"]), fmt(alone["file_p50_ms"]),
             fmt(alone["file_p99_ms"]), fmt(alone["file_max_ms"]), "1.00", "1.00", "-", "-"]]
    for k, label in (("hot", "hot during a hot burst (control)"),
                     ("s3", "hot during a cold S3 burst")):
        r = during[k]
        if r:
            body.append([label, fmt(r["files_per_s"]), fmt(r["file_p50_ms"]),
                         fmt(r["file_p99_ms"]), fmt(r["file_max_ms"]),
                         rel(r, alone, "file_p50_ms"), rel(r, alone, "file_p99_ms"),
                         rel(r, ctl, "file_p50_ms") if k == "s3" else "1.00",
                         rel(r, ctl, "file_p99_ms") if k == "s3" else "1.00"])
    for k, label in (("hot", "(the hot burst)"), ("s3", "(the cold S3 burst)")):
        r = bursts[k]
        if r:
            body.append([label, fmt(r["files_per_s"]), fmt(r["file_p50_ms"]),
                         fmt(r["file_p99_ms"]), fmt(r["file_max_ms"]), "-", "-", "-", "-"])
    table(["", "files/s", "p50 ms", "p99 ms", "max ms", "p50/alone", "p99/alone",
           "p50/control", "p99/control"], body)
    for k, v in overlap.items():
        if not v:
            print(f"  note: the {k} burst ended before the hot readers did: the overlap was partial")
    summary["burst_hot_p99_vs_alone"] = during["s3"]["file_p99_ms"] / alone["file_p99_ms"]
    if ctl:
        summary["burst_hot_p99_vs_control"] = during["s3"]["file_p99_ms"] / ctl["file_p99_ms"]

# Dry run.
build = next((r for r in rows if r.get("workload") == "tierbuild"), None)
dry = {r["policy"]: r for r in rows if r.get("workload") == "dryrun"}
cli = next((r for r in rows if r.get("workload") == "dryrun_cli"), None)
if dry:
    n = next(iter(dry.values()))["files_scanned"]
    reps = next(iter(dry.values())).get("repeat", 1)
    print(f"\nDry run over {n:,.0f} files (pacs/stNNNNN/seNN/iNNNNNNN.dcm, one chunk each; "
          f"fastest of {reps}, caches dropped before each)")
    body = []
    walk = dry.get("none")
    for k, label in (("none", "walk: a rule that selects none (baseline)"),
                     ("pacs", "policy: pacs/** older_than 180d (selects all)")):
        r = dry.get(k)
        if r:
            body.append([label, fmt(r["seconds"]), fmt(r["files_per_s"]),
                         f"{r['files_selected']:,.0f}",
                         f"{r['seconds'] / walk['seconds']:.2f}" if walk else "-"])
    if cli:
        m = cli["report"]
        body.append(["strata migrate --dry-run (CLI, incl. open)", fmt(cli["wall_seconds"]),
                     fmt(m["files_scanned"] / cli["wall_seconds"]),
                     f"{sum(x['files'] for x in m['rules']):,}",
                     f"{cli['wall_seconds'] / walk['seconds']:.2f}" if walk else "-"])
        summary["dry_run_cli_seconds"] = cli["wall_seconds"]
    table(["pass", "seconds", "files/s", "selected", "vs walk"], body)
    if build:
        print(f"  (built through the library in {fmt(build['seconds'])} s, "
              f"{fmt(build['files_per_s'])} files/s; meta.db {build['meta_db_bytes'] / 2**20:.0f} MiB)")

print("\nTargets from the issue (information, not asserts):")
if not any(r.get("tier") == "s3" for r in rows if r.get("workload") == "migrate"):
    print("  (no S3 tier in this run: the S3 target and the burst were skipped)")
s3r = by_target.get("read/s3/32")
if s3r:
    ok = s3r["file_p99_ms"] < 100
    goals["s3_p99_32_readers_under_100ms"] = ok
    store = (f"; the store alone from 32 clients: p99 {fmt(summary['s3_raw_get32_p99_ms'])} ms"
             if "s3_raw_get32_p99_ms" in summary else "")
    print(f"  S3 p99 at 32 readers < 100 ms: {'PASS' if ok else 'FAIL'} (information): "
          f"{fmt(s3r['file_p99_ms'])} ms{store}")
if alone and during["s3"] and during["hot"]:
    d, c = during["s3"], during["hot"]
    ratio = d["file_p99_ms"] / c["file_p99_ms"]
    ok = ratio <= 1.5
    goals["hot_unaffected_by_cold_burst"] = ok
    print(f"  hot reads unaffected by a burst of cold reads (p99 within 1.5x of the same burst of "
          f"hot reads): {'PASS' if ok else 'FAIL'} (information): p99 {fmt(c['file_p99_ms'])} "
          f"-> {fmt(d['file_p99_ms'])} ms (x{ratio:.2f}); vs no burst: p99 "
          f"{fmt(alone['file_p99_ms'])} ms (x{d['file_p99_ms'] / alone['file_p99_ms']:.2f})")
if cli:
    print(f"  --dry-run over {cli['report']['files_scanned']:,} files: "
          f"{fmt(cli['wall_seconds'])} s (information)")
print(f"\n{len(rows)} results in {elapsed} s; load average {load_start} at start, "
      + " ".join(f"{x:.2f}" for x in os.getloadavg()) + f" at end; JSON in {out}")

doc = {
    "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    "host": platform.node(), "kernel": platform.release(), "cpus": os.cpu_count(),
    "loadavg_at_start": [float(x) for x in load_start.split()], "loadavg_at_end": os.getloadavg(),
    "quick": quick == "1", "strata_commit": commit, "elapsed_seconds": int(elapsed),
    "summary": summary, "goals": goals, "results": rows,
}
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
    f.write("\n")
PY
