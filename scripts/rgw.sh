#!/usr/bin/env bash
# A throwaway Ceph cluster with the RADOS Gateway (RGW, Ceph's S3 server) on 127.0.0.1, for running
# the S3 test suites against a real S3 implementation (see README "Tests against Ceph RGW").
#
#   scripts/rgw.sh start [DIR]   start it (installing Debian's packages when missing, as root),
#                                make a user and a bucket, print the S3_TEST_* environment lines
#   scripts/rgw.sh stop DIR      stop exactly the processes `start` started (their pid files) and
#                                remove DIR
#   scripts/rgw.sh test          start, run the S3 suites against it, stop (also when they fail)
#
# One monitor, one OSD (memstore: objects in the OSD's memory), no manager, no authentication,
# everything bound to 127.0.0.1 on free ports and kept under DIR (default: a fresh temp directory).
# Ceph's own src/vstart.sh (github.com/ceph/ceph) starts its test clusters the same way.
set -euo pipefail

packages=(ceph-mon ceph-osd radosgw ceph-common uuid-runtime)
here="$(cd "$(dirname "$0")/.." && pwd)"
bucket="${RGW_BUCKET:-effect-s3-tier-test}"
access_key="EFFECTS3TIERTESTKEY0"
secret_key="effect-s3-tier-test-secret-key-0000000000"
region="us-east-1"

log() { printf 'rgw.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# ------------------------------------------------------------------------------------------------
# Packages
# ------------------------------------------------------------------------------------------------

ensure_packages() {
  local missing=()
  for tool in ceph-mon ceph-osd radosgw radosgw-admin ceph monmaptool ceph-authtool uuidgen; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: installing Debian's ${packages[*]} needs root (or install them first)"
  log "installing ${packages[*]} (missing: ${missing[*]})"
  local started=$SECONDS apt_log
  apt_log=$(mktemp /tmp/rgw-sh-apt-XXXXXX.log)
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$apt_log" 2>&1 || { tail -n 20 "$apt_log" >&2; die "apt-get update failed (log: $apt_log)"; }
  # Package scripts must not start Ceph's system services (only this script starts daemons): a
  # policy-rc.d that refuses every start, unless the system has one already.
  local own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >>"$apt_log" 2>&1 || status=$?
  [ "$own_policy" -eq 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$status" -eq 0 ] || { tail -n 20 "$apt_log" >&2; die "apt-get install failed ($status; log: $apt_log)"; }
  rm -f "$apt_log"
  log "packages installed in $((SECONDS - started)) s"
}

# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

# wait_for SECONDS DESCRIPTION COMMAND...: runs COMMAND every 0.5 s until it succeeds, at most SECONDS.
wait_for() {
  local limit=$1 what=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then log "$what: not after ${limit} s"; return 1; fi
    sleep 0.5
  done
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
osd_up() { ceph -c "$conf" osd dump 2>/dev/null | grep -q '^osd\.0 up'; }
alive() { [ -d "/proc/$1" ]; }

show_logs() {
  for file in "$dir"/log/*.log; do
    [ -f "$file" ] || continue
    log "--- last lines of $file"
    tail -n 15 "$file" >&2 || true
  done
}

write_conf() {
  local fsid=$1 mon_v2=$2 mon_v1=$3 rgw_port=$4
  cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]
mon initial members = a
public network = 127.0.0.1/32
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
run dir = $dir/run
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
log file = $dir/log/\$name.log
keyring = $dir/keyring
crash dir = $dir/crash
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon warn on pool no redundancy = false
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon max pg per osd = 1000
mon osd full ratio = .99
mon osd nearfull ratio = .99
mon osd backfillfull ratio = .99
osd failsafe full ratio = .99
[mon]
mon data = $dir/mon.\$id
mon cluster log file = $dir/log/cluster.log
[osd]
osd data = $dir/osd.\$id
osd objectstore = memstore
memstore device bytes = 4294967296
[client]
ms mon client mode = crc
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$rgw_port
rgw data = $dir/rgw
EOF
}

create_bucket() {
  (cd "$here" && S3_TEST_ENDPOINT="$1" node --input-type=module -e '
    import { S3Client, CreateBucketCommand } from "@aws-sdk/client-s3"
    const client = new S3Client({ endpoint: process.env.S3_TEST_ENDPOINT, region: process.argv[1], forcePathStyle: true,
      credentials: { accessKeyId: process.argv[2], secretAccessKey: process.argv[3] } })
    try { await client.send(new CreateBucketCommand({ Bucket: process.argv[4] })) }
    catch (error) { if (error.name !== "BucketAlreadyOwnedByYou") { console.error(String(error)); process.exit(1) } }
  ' "$region" "$access_key" "$secret_key" "$bucket")
}

# ------------------------------------------------------------------------------------------------
# Commands
# ------------------------------------------------------------------------------------------------

start() {
  ensure_packages
  local started=$SECONDS
  dir="${1:-$(mktemp -d /tmp/effect-s3-tier-rgw-XXXXXX)}"
  mkdir -p "$dir"/{run,log,crash,rgw,mon.a,osd.0}
  conf="$dir/ceph.conf"
  local mon_v2 mon_v1 rgw_port fsid osd_uuid
  mon_v2=$(free_port); mon_v1=$(free_port); rgw_port=$(free_port)
  fsid=$(uuidgen); osd_uuid=$(uuidgen)
  write_conf "$fsid" "$mon_v2" "$mon_v1" "$rgw_port"

  monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_v2,v1:127.0.0.1:$mon_v1]" "$dir/monmap" >/dev/null
  ceph-authtool --create-keyring "$dir/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" --keyring "$dir/keyring"
  ceph-mon -c "$conf" -i a
  wait_for 60 "the monitor" ceph -c "$conf" --connect-timeout 5 mon stat || { show_logs; return 1; }

  local osd_id
  osd_id=$(ceph -c "$conf" osd new "$osd_uuid")
  [ "$osd_id" = "0" ] || { log "unexpected OSD id $osd_id"; return 1; }
  ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>&1 || { show_logs; return 1; }
  ceph-osd -c "$conf" -i 0
  wait_for 120 "osd.0 up" osd_up || { show_logs; return 1; }

  radosgw -c "$conf" -n client.rgw.a
  wait_for 180 "radosgw on 127.0.0.1:$rgw_port" port_open "$rgw_port" || { show_logs; return 1; }
  radosgw-admin -c "$conf" -n client.rgw.a user create --uid effect-s3-tier --display-name effect-s3-tier \
    --access-key "$access_key" --secret-key "$secret_key" >/dev/null
  local endpoint="http://127.0.0.1:$rgw_port"
  wait_for 30 "bucket $bucket" create_bucket "$endpoint" || { show_logs; return 1; }

  cat >"$dir/env" <<EOF
RGW_DIR=$dir
S3_TEST_ENDPOINT=$endpoint
S3_TEST_BUCKET=$bucket
S3_TEST_REGION=$region
S3_TEST_ACCESS_KEY_ID=$access_key
S3_TEST_SECRET_ACCESS_KEY=$secret_key
EOF
  log "RGW ready at $endpoint in $((SECONDS - started)) s (state in $dir; stop with: $0 stop $dir)"
  cat "$dir/env"
}

# Stops the daemons named by DIR's pid files (each checked to be a process started with DIR's
# config), TERM then KILL after 15 s, and removes DIR.
stop() {
  local target=${1:?usage: rgw.sh stop DIR}
  [ -f "$target/ceph.conf" ] || die "$target is not a directory made by rgw.sh start"
  local pids=()
  for file in "$target"/run/*.pid; do
    [ -f "$file" ] || continue
    local pid
    pid=$(cat "$file")
    [[ "$pid" =~ ^[0-9]+$ ]] || continue
    if alive "$pid" && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$target/ceph.conf"; then
      kill -TERM "$pid" 2>/dev/null || true
      pids+=("$pid")
    fi
  done
  local deadline=$((SECONDS + 15))
  for pid in "${pids[@]}"; do
    while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if alive "$pid"; then log "pid $pid did not stop on TERM: KILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  done
  rm -rf "$target"
  log "stopped ${#pids[@]} daemon(s), removed $target"
}

# The S3 suites against a fresh RGW; the cluster is stopped whatever the tests do.
run_tests() {
  local started=$SECONDS env_file
  env_file=$(mktemp)
  dir=""
  trap '[ -n "$dir" ] && [ -d "$dir" ] && stop "$dir"; rm -f "$env_file"' EXIT
  trap 'exit 130' INT TERM
  start >"$env_file"
  set -a
  # shellcheck disable=SC1090
  . "$env_file"
  set +a
  dir="$RGW_DIR"
  local ready=$SECONDS status=0
  # At most 2 concurrent tests per file: RGW's three daemons share the machine's cores with the CLI
  # processes, and a stalled shutdown's 3 s deadline has only ~100 ms of margin for a starved loop.
  (cd "$here" && npx vitest run --maxConcurrency=2 test/layers/S3ObjectStore.test.ts test/layers/StorageOverS3.test.ts test/program/S3.test.ts "$@") || status=$?
  log "RGW start $((ready - started)) s, S3 suites $((SECONDS - ready)) s, exit $status"
  exit "$status"
}

# `start` alone: a start that fails midway stops what it had started.
start_only() {
  started_ok=0
  dir=""
  trap '[ "$started_ok" = 1 ] || { [ -n "$dir" ] && [ -f "$dir/ceph.conf" ] && stop "$dir"; }' EXIT
  start "$@"
  started_ok=1
}

case "${1:-}" in
  start) shift; start_only "$@" ;;
  stop) shift; stop "$@" ;;
  test) shift; run_tests "$@" ;;
  *) die "usage: $0 start [DIR] | stop DIR | test [vitest args]" ;;
esac
