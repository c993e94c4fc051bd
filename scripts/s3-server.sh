#!/usr/bin/env bash
# A real S3 server for the tests: a single-node Ceph cluster (1 mon, 1 BlueStore osd on a
# sparse file, radosgw with the beast frontend on 127.0.0.1) kept entirely under one
# directory. No /etc/ceph, no systemd, no root needed beyond what the Ceph binaries need.
#
#   scripts/s3-server.sh start DIR       bring up a fresh cluster, a user and a bucket; write
#                                        DIR/env (shell-sourceable STRATA_S3_* lines)
#   scripts/s3-server.sh stop DIR        stop whatever runs under DIR, remove its data
#   scripts/s3-server.sh status DIR      exit 0 when every daemon runs and S3 answers
#   scripts/s3-server.sh stop-rgw DIR [rgw-NAME]
#                                        stop only radosgw (SIGKILL: a crashed S3 front end)
#   scripts/s3-server.sh start-rgw DIR [rgw-NAME]
#                                        start radosgw again on the same port
#
# With rgw-NAME, stop-rgw/start-rgw act on an extra radosgw of that name in front of the same
# cluster, on its own port, written as STRATA_S3_ENDPOINT=... to DIR/rgw-NAME.env by its first
# start-rgw. A test that stops "the S3 server" uses its own instance, so that the other tests
# running at the same time (ctest -j) keep theirs.
#
# start is idempotent (a running cluster is left alone) and bounded by
# STRATA_S3_START_TIMEOUT seconds (default 120); stop is idempotent and cleans up after a
# start that failed half-way. See docs/s3.md for the reasons behind each Ceph setting.
set -euo pipefail

readonly ACCESS_KEY="STRATATESTACCESSKEY0"
readonly SECRET_KEY="strata-test-secret-key-not-a-real-secret-0"
readonly BUCKET="strata-test"
readonly REGION="us-east-1"
readonly STORAGE_CLASS="COLD"
readonly START_TIMEOUT="${STRATA_S3_START_TIMEOUT:-120}"
readonly STOP_TIMEOUT=15  # seconds per daemon between SIGTERM and SIGKILL

say() { echo "s3-server: $*"; }
die() {
  echo "s3-server: error: $*" >&2
  exit 1
}

SCRIPT="$(realpath -- "$0")"
readonly SCRIPT

usage() {
  echo "usage: $0 start|stop|status DIR" >&2
  echo "       $0 stop-rgw|start-rgw DIR [rgw-NAME]" >&2
  exit 2
}

[[ $# -eq 2 || ($# -eq 3 && ("$1" == stop-rgw || "$1" == start-rgw)) ]] || usage
readonly CMD="$1"
DIR="$(realpath -m -- "$2")"
readonly DIR
readonly RGW="${3:-rgw}"
[[ "$RGW" == rgw || "$RGW" =~ ^rgw-[a-z0-9-]+$ ]] || die "radosgw name '$RGW' is not rgw-NAME"
readonly CONF="$DIR/ceph.conf"
readonly LOG="$DIR/log"
readonly RUN="$DIR/run"

# The pid in DIR/run/NAME.pid, printed only while that process is alive and still the daemon
# we started (a recycled pid is not ours to signal).
daemon_pid() {
  local name="$1" pid exe
  [[ -f "$RUN/$name.pid" ]] || return 1
  pid="$(<"$RUN/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  # A zombie is dead (and has released its port); pid 1 of a container may reap it late.
  [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != [ZX] ]] || return 1
  case "$name" in
    mon) [[ "$exe" == */ceph-mon ]] ;;
    osd) [[ "$exe" == */ceph-osd ]] ;;
    rgw*) [[ "$exe" == */radosgw ]] ;;
  esac || return 1
  echo "$pid"
}

# SIGTERM, then SIGKILL after STOP_TIMEOUT (or at once with `kill`).
stop_daemon() {
  local name="$1" how="${2:-term}" pid i
  if pid="$(daemon_pid "$name")"; then
    if [[ "$how" == kill ]]; then
      kill -KILL "$pid" 2>/dev/null || true
    else
      kill -TERM "$pid" 2>/dev/null || true
    fi
    for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
      daemon_pid "$name" >/dev/null || break
      sleep 0.05
    done
    if daemon_pid "$name" >/dev/null; then
      say "$name (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      while daemon_pid "$name" >/dev/null; do sleep 0.05; done
    fi
    # The thread-group leader turns zombie before its other threads have exited, and they
    # hold its sockets: wait for them too, or a restart on the same port may find it taken.
    for ((i = 0; i < STOP_TIMEOUT * 20; i++)); do
      [[ "$(ls "/proc/$pid/task" 2>/dev/null | wc -l)" -le 1 ]] && break
      sleep 0.05
    done
  fi
  rm -f "$RUN/$name.pid"
}

# Starts a daemon in the foreground (-f) in its own session, so that ctest's process group
# handling never reaches it and its pid is known without parsing Ceph's own pid files.
start_daemon() {
  local name="$1"
  shift
  setsid "$@" -c "$CONF" -f </dev/null >>"$LOG/$name.out" 2>&1 9>&- &
  echo $! >"$RUN/$name.pid"
}

# Serialises commands on one DIR (two ctest runs, parallel start-rgw). Daemons never inherit
# the lock: start_daemon closes fd 9.
lock_dir() {
  mkdir -p "$DIR"
  exec 9>"$DIR/.lock"
  flock -w 300 9 || die "another s3-server.sh holds $DIR/.lock"
}

conf_get() { [[ ! -f "$DIR/env" ]] || sed -n "s/^$1=//p" "$DIR/env"; }

# N distinct free TCP ports on 127.0.0.1 (bound at the same time, so they differ).
free_ports() {
  python3 -S -c 'import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))' "$1"
}

s3_answers() {
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1/" 2>/dev/null)" || true
  [[ "$code" != "000" && -n "$code" ]]
}

# " (timed out ...)" when a command bounded by `timeout` ran out of time (exit status 124).
timed_out() { [[ "$1" != 124 ]] || echo " (timed out: the start-up limit is ${START_TIMEOUT}s)"; }

remaining() { echo $((START_TIMEOUT - SECONDS > 1 ? START_TIMEOUT - SECONDS : 1)); }

# Like daemon_pid, but also true in the first milliseconds after start_daemon, while the pid
# is still the subshell or setsid and has not exec'd the daemon yet (under load that window
# is long enough for a refused curl to fit in; treating it as an exit made starts flaky).
daemon_starting() {
  local name="$1" pid exe
  daemon_pid "$name" >/dev/null && return 0
  [[ -f "$RUN/$name.pid" ]] || return 1
  pid="$(<"$RUN/$name.pid")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null)" || return 1
  [[ "$exe" == */setsid || "$exe" == */bash ]]
}

# Polls the S3 endpoint of radosgw NAME every 0.1 s until it answers; fails when the daemon
# exits (a port taken since it was chosen, a bad config) or the start deadline passes.
wait_for_rgw() {
  local name="$1" endpoint="$2"
  until s3_answers "$endpoint"; do
    daemon_starting "$name" || fail "radosgw $name exited before answering on $endpoint"
    ((SECONDS < START_TIMEOUT)) ||
      fail "timed out after ${START_TIMEOUT}s waiting for radosgw $name on $endpoint"
    sleep 0.1
  done
}

fail() {
  echo "s3-server: error: $*" >&2
  local f
  for f in "$LOG"/*.log "$LOG"/*.out; do
    [[ -s "$f" ]] || continue
    echo "----- last lines of $f -----" >&2
    tail -n 15 "$f" >&2
  done
  if [[ "$CMD" == start ]]; then
    say "stopping what was started (logs stay in $LOG)" >&2
    do_stop >&2
  fi
  exit 1
}

ceph_cli() { timeout "$(remaining)" ceph -c "$CONF" --connect-timeout "$(remaining)" "$@"; }
rgw_admin() {
  timeout "$(remaining)" radosgw-admin -c "$CONF" "$@" >>"$LOG/radosgw-admin.out" 2>&1
}

# A throwaway CA and a server certificate for 127.0.0.1, localhost and BUCKET.localhost (for
# virtual-host style; OpenSSL refuses a *.localhost wildcard), so that
# tests can check TLS verification and ca_file against the real server.
make_tls() {
  local tls="$DIR/tls"
  mkdir -p "$tls"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=strata test CA" -keyout "$tls/ca.key" -out "$tls/ca.pem" &&
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
      -keyout "$tls/server.key" -out "$tls/server.csr" &&
    printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:$BUCKET.localhost" \
      "basicConstraints=CA:FALSE" "extendedKeyUsage=serverAuth" >"$tls/server.ext" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 30 -extfile "$tls/server.ext" -out "$tls/server.pem"
}

write_conf() {
  local mon_port="$1" frontends="$2" fsid="$3"
  cat >"$CONF" <<EOF
# Generated by scripts/s3-server.sh for tests: one node, no authentication, no redundancy.
[global]
fsid = $fsid
mon host = v2:127.0.0.1:$mon_port
public addr = 127.0.0.1
# No cephx: the cluster is private to this directory and to loopback. Without crc mode the
# msgr2 client of radosgw never connects when auth is none.
auth cluster required = none
auth service required = none
auth client required = none
ms mon client mode = crc
# One osd: pools of size 1, placement across osds rather than hosts, few PGs, no mgr.
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool delete = true
# Start-up speed: each pool creation waits a paxos round (default 1 s), each close of the
# BlueStore file waits one aio poll period (default 250 ms).
paxos propose interval = 0.05
bdev aio poll ms = 20
# A nearly full CI disk must not stop the mon.
mon data avail crit = 1
mon data avail warn = 2
# Everything under this directory.
run dir = $RUN
admin socket = $RUN/\$name.asok
log file = $LOG/\$name.log
mon cluster log file = $LOG/cluster.log
crash dir = $DIR/crash
keyring = $DIR/keyring
log to stderr = false
err to stderr = false

[mon.a]
mon data = $DIR/mon

[osd.0]
osd data = $DIR/osd
osd objectstore = bluestore
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mkfs = false
osd memory target = 939524096

[client]
# An op sent while the osd is still booting waits for a newer osdmap, which a client asks for on
# its tick (default 5 s): radosgw-admin would idle ~4 s of every start.
objecter tick interval = 0.2
rgw data = $DIR/rgw
# Virtual-host style requests to http://BUCKET.localhost:PORT (curl resolves *.localhost).
rgw dns name = localhost
rgw thread pool size = 64
rgw enable usage log = false
# Formatting rgw's level 2-5 messages into the in-memory log costs ~0.35 ms of CPU per GET
# (~17% of a 128 KiB GET on 2 cores, measured in alternating pairs); level 1 keeps the
# per-request lines in the log.
debug rgw = 1/1

[client.rgw]
rgw frontends = $frontends
EOF
}

do_start() {
  command -v ceph-mon >/dev/null && command -v ceph-osd >/dev/null &&
    command -v radosgw >/dev/null && command -v radosgw-admin >/dev/null &&
    command -v ceph >/dev/null && command -v monmaptool >/dev/null ||
    die "the Ceph packages are not installed; run scripts/setup.sh (as root)"
  command -v curl >/dev/null && command -v python3 >/dev/null ||
    die "curl and python3 are needed; run scripts/setup.sh (as root)"

  if do_status >/dev/null 2>&1; then
    say "already running: $(conf_get STRATA_S3_ENDPOINT) (DIR/env is $DIR/env)"
    return 0
  fi
  do_stop >/dev/null  # whatever a failed or half-stopped start left behind

  SECONDS=0
  rm -rf "$LOG"  # the previous run's logs, kept by stop for a post-mortem
  mkdir -p "$DIR" "$LOG" "$RUN" "$DIR/mon" "$DIR/osd" "$DIR/rgw" "$DIR/crash"
  : >"$DIR/keyring"
  local mon_port rgw_port tls_port fsid osd_uuid
  read -r mon_port rgw_port tls_port < <(free_ports 3)
  fsid="$(</proc/sys/kernel/random/uuid)"
  osd_uuid="$(</proc/sys/kernel/random/uuid)"
  local endpoint="http://127.0.0.1:$rgw_port"
  # tcp_nodelay: without it a GET's tail waits ~40 ms on Nagle + delayed ACK (docs/s3.md).
  local frontends="beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1"
  local tls_endpoint="" ca_file=""
  if command -v openssl >/dev/null && make_tls >>"$LOG/setup.out" 2>&1; then
    tls_endpoint="https://127.0.0.1:$tls_port"
    ca_file="$DIR/tls/ca.pem"
    frontends+=" ssl_endpoint=127.0.0.1:$tls_port ssl_certificate=$DIR/tls/server.pem"
    frontends+=" ssl_private_key=$DIR/tls/server.key"
  else
    say "no openssl: the TLS endpoint is left out"
  fi
  write_conf "$mon_port" "$frontends" "$fsid"

  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" "$DIR/monmap" \
    >>"$LOG/setup.out" 2>&1 || fail "monmaptool failed"
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" >>"$LOG/setup.out" 2>&1 ||
    fail "ceph-mon --mkfs failed"
  start_daemon mon ceph-mon -i a
  # BlueStore's mkfs is local work: do it while the mon starts.
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" >>"$LOG/setup.out" 2>&1 &
  local mkfs_pid=$!
  local osd_id
  osd_id="$(ceph_cli osd new "$osd_uuid" 2>>"$LOG/setup.out")" ||
    fail "ceph osd new failed$(timed_out $?)"
  [[ "$osd_id" == 0 ]] || fail "the mon gave osd id '$osd_id', expected 0"
  wait "$mkfs_pid" || fail "ceph-osd --mkfs failed"
  start_daemon osd ceph-osd -i 0
  say "mon and osd started after ${SECONDS}s"

  # Creates the default realm-less zone, zonegroup and pools (waits for the osd to be up).
  rgw_admin user create --uid strata-test --display-name "strata tests" \
    --access-key "$ACCESS_KEY" --secret-key "$SECRET_KEY" ||
    fail "radosgw-admin user create failed$(timed_out $?)"
  # An extra storage class must be in the zonegroup and zone before radosgw starts.
  rgw_admin zonegroup placement add --rgw-zonegroup default --placement-id default-placement \
    --storage-class "$STORAGE_CLASS" ||
    fail "radosgw-admin zonegroup placement add failed$(timed_out $?)"
  rgw_admin zone placement add --rgw-zone default --placement-id default-placement \
    --storage-class "$STORAGE_CLASS" --data-pool default.rgw.cold.data ||
    fail "radosgw-admin zone placement add failed$(timed_out $?)"
  say "user and placement created after ${SECONDS}s"

  start_daemon rgw radosgw -n client.rgw
  wait_for_rgw rgw "$endpoint"
  say "radosgw answers after ${SECONDS}s"

  local empty_sha=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  local out
  out="$(curl -sS --max-time 30 --aws-sigv4 "aws:amz:$REGION:s3" \
    --user "$ACCESS_KEY:$SECRET_KEY" -H "x-amz-content-sha256: $empty_sha" -X PUT \
    -w '\n%{http_code}' "$endpoint/$BUCKET" 2>&1)" || fail "creating bucket $BUCKET failed: $out"
  [[ "${out##*$'\n'}" == 200 ]] || fail "creating bucket $BUCKET failed: $out"

  cat >"$DIR/env.tmp" <<EOF
STRATA_S3_ENDPOINT=$endpoint
STRATA_S3_REGION=$REGION
STRATA_S3_BUCKET=$BUCKET
STRATA_S3_ACCESS_KEY=$ACCESS_KEY
STRATA_S3_SECRET_KEY=$SECRET_KEY
STRATA_S3_STORAGE_CLASS=$STORAGE_CLASS
STRATA_S3_TLS_ENDPOINT=$tls_endpoint
STRATA_S3_CA_FILE=$ca_file
STRATA_S3_DIR=$DIR
STRATA_S3_SERVER_SCRIPT=$SCRIPT
STRATA_S3_MON_PID_FILE=$RUN/mon.pid
STRATA_S3_OSD_PID_FILE=$RUN/osd.pid
STRATA_S3_RGW_PID_FILE=$RUN/rgw.pid
EOF
  mv "$DIR/env.tmp" "$DIR/env"
  say "S3 on $endpoint (bucket $BUCKET) ready after ${SECONDS}s; settings in $DIR/env"
}

do_stop() {
  local name f
  for f in "$RUN"/rgw*.pid; do
    [[ -e "$f" ]] || continue
    name="$(basename "$f" .pid)"
    stop_daemon "$name"
  done
  stop_daemon osd
  stop_daemon mon
  # Keep the logs and the config (for a post-mortem); drop the data, including the sparse
  # BlueStore file, and the env files so that nobody talks to a stopped server.
  rm -rf "$DIR/osd" "$DIR/mon" "$DIR/rgw" "$DIR/crash" "$DIR/tls" "$DIR/monmap" \
    "$DIR"/env "$DIR"/*.env "$DIR/env.tmp" "$RUN"/*.port "$RUN"/*.asok
  say "stopped ($DIR)"
}

do_status() {
  local name pid ok=0 endpoint
  for name in mon osd rgw; do
    if pid="$(daemon_pid "$name")"; then
      echo "$name: running (pid $pid)"
    else
      echo "$name: not running"
      ok=1
    fi
  done
  endpoint="$(conf_get STRATA_S3_ENDPOINT)"
  if [[ -n "$endpoint" ]] && s3_answers "$endpoint"; then
    echo "s3: $endpoint answers"
  else
    echo "s3: not answering${endpoint:+ on $endpoint}"
    ok=1
  fi
  return "$ok"
}

do_stop_rgw() {
  stop_daemon "$RGW" kill
  say "radosgw $RGW stopped"
}

do_start_rgw() {
  [[ -f "$DIR/env" ]] || die "no server set up under $DIR (run: $0 start $DIR)"
  daemon_pid mon >/dev/null && daemon_pid osd >/dev/null ||
    die "mon and osd are not running under $DIR (run: $0 start $DIR)"
  SECONDS=0
  local endpoint port
  if [[ "$RGW" == rgw ]]; then
    endpoint="$(conf_get STRATA_S3_ENDPOINT)"
    daemon_pid rgw >/dev/null || start_daemon rgw radosgw -n client.rgw
  else
    # An extra instance keeps the port of its first start.
    [[ -f "$RUN/$RGW.port" ]] || free_ports 1 >"$RUN/$RGW.port"
    port="$(<"$RUN/$RGW.port")"
    endpoint="http://127.0.0.1:$port"
    echo "STRATA_S3_ENDPOINT=$endpoint" >"$DIR/$RGW.env"
    daemon_pid "$RGW" >/dev/null || start_daemon "$RGW" radosgw -n "client.$RGW" \
      --rgw-frontends "beast endpoint=127.0.0.1:$port tcp_nodelay=1"
  fi
  wait_for_rgw "$RGW" "$endpoint"
  say "radosgw $RGW answers on $endpoint after ${SECONDS}s"
}

case "$CMD" in
  start) lock_dir && do_start ;;
  stop) if [[ -d "$DIR" ]]; then lock_dir && do_stop; fi ;;
  status) do_status ;;
  stop-rgw) lock_dir && do_stop_rgw ;;
  start-rgw) lock_dir && do_start_rgw ;;
  *) usage ;;
esac
