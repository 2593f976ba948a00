#!/usr/bin/env bash
# A real demo on a fresh Debian 12 machine: installs logpipe in .venv, builds a small busybox
# image without the internet, starts a daemon on a demo data root, runs real containers with
# the json-file and local log drivers, reads their logs (also while one runs), then stops the
# daemon and shows that the logs outlive it. Safe to run again; the daemon stops on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # runc: isolated containers; busybox-static: the demo image's only binary;
  # netavark, aardvark-dns, iptables: the default bridge network and -p (docs/networking.md).
  apt-get install -y -qq --no-install-recommends python3-venv python3-pip runc busybox-static \
    netavark aardvark-dns iptables >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q -e .
lp=.venv/bin/logpipe

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

# Everything under one demo directory: the daemon's data root, its socket and its log.
demo=/tmp/logpipe-demo-$(id -u)
root="$demo/data"
sock="$demo/logpipe.sock"
export LOGPIPE_HOST="unix://$sock" LOGPIPE_NO_AUTOSTART=1
daemon_pid=""

if [ "$(id -u)" = 0 ] && command -v runc >/dev/null; then
  runtime=runc
else
  runtime=process
fi

stop_daemon() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true  # ours: reap it; a previous run's: poll below
    while kill -0 "$daemon_pid" 2>/dev/null; do sleep 0.1; done
  fi
  daemon_pid=""
}
start_daemon() {
  .venv/bin/python -m runtime.cli daemon --data-root "$root" -H "$LOGPIPE_HOST" \
    --default-runtime "$runtime" >>"$demo/daemon.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 100); do
    $lp version >/dev/null 2>&1 && return 0
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "the daemon did not answer on $sock; its log:" >&2
  cat "$demo/daemon.log" >&2
  return 1
}
trap stop_daemon EXIT
trap 'exit 130' INT TERM HUP  # so that the EXIT trap runs on these too

# A previous run's containers are removed (with their logs) by a daemon on its data root:
# the previous run's own daemon if it is still alive (that run was killed), else a new one.
if [ -d "$root" ]; then
  if $lp version >/dev/null 2>&1; then
    daemon_pid=$(cat "$root/daemon.lock")
  else
    start_daemon
  fi
  ids=$($lp ps -aq)
  [ -z "$ids" ] || $lp rm -f $ids >/dev/null
  stop_daemon
fi
rm -rf "$demo"
mkdir -p "$demo"

if [ "$runtime" = runc ]; then
  echo "Running as root with runc: containers are isolated (namespaces, own root filesystem)."
else
  echo "No root or no runc: the demo uses --runtime process, which runs each command directly"
  echo "on this machine with NO isolation (logging works exactly the same)."
fi

say "python3 tests/busybox.py $demo/busybox.tar    # a rootfs from Debian's busybox-static"
if ! .venv/bin/python tests/busybox.py "$demo/busybox.tar"; then
  [ "$runtime" = process ] || exit 1
  # The process runtime runs host commands; any image will do.
  echo "(busybox-static is not installed: importing an empty image instead)"
  tar -cf "$demo/busybox.tar" -C "$demo" --no-recursion .
fi

say "logpipe daemon --data-root $root -H $LOGPIPE_HOST --default-runtime $runtime &"
start_daemon
echo "daemon pid $daemon_pid, log in $demo/daemon.log; the commands below talk to it through"
echo "LOGPIPE_HOST=$LOGPIPE_HOST (or -H); without it the CLI starts a daemon of its own"

say "logpipe import $demo/busybox.tar busybox:latest"
$lp import "$demo/busybox.tar" busybox:latest
$lp images

say "logpipe run --name web --log-driver json-file --log-opt max-size=2k --log-opt max-file=3 --log-opt labels=app --label app=web busybox sh -c '...'"
$lp run --name web --log-driver json-file \
  --log-opt max-size=2k --log-opt max-file=3 --log-opt labels=app --label app=web \
  busybox sh -c 'for i in $(seq 1 60); do echo "GET /item/$i 200 $((i * 7))ms"; done; echo "oops: disk almost full" >&2' \
  >/dev/null
echo "(run attaches: the 60 lines of stdout went to the terminal too, hidden here; stderr shows)"
echo "rotated files (max-size=2k, max-file=3):"
ls -l "$root/containers/$($lp inspect -f '{{.Id}}' web)"/*-json.log*

say "logpipe logs --tail 5 -t --details web"
$lp logs --tail 5 -t --details web

say "logpipe run -d --name worker --log-driver local busybox sh -c '...'"
worker=$($lp run -d --name worker --log-driver local \
  busybox sh -c 'for i in 1 2 3 4 5; do echo "worker step $i"; sleep 0.3; done; echo "worker done"; exit 3')
echo "$worker"

say "logpipe run -d --name failing busybox sh -c 'echo starting; cat /no/such/file'   # daemon default: json-file"
$lp run -d --name failing busybox sh -c 'echo starting; cat /no/such/file' >/dev/null

say "logpipe ps -a"
$lp ps -a

say "logpipe logs -f worker    # follows until the container exits"
$lp logs -f worker

say "logpipe wait failing worker"
$lp wait failing worker || true

say "logpipe inspect -f '{{.Name}} {{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Config}} {{.State.ExitCode}}' web worker failing"
$lp inspect -f '{{.Name}} {{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Config}} {{.State.ExitCode}}' web worker failing

say "logpipe logs failing    # stdout and stderr, as the container wrote them"
$lp logs failing

web=$($lp inspect -f '{{.Id}}' web)
say "kill -TERM $daemon_pid    # stop the daemon: the containers' logs stay on disk"
stop_daemon
say "ls $root/containers/<web's id>/ ; tail -n 2 ...-json.log    # Docker's json-file format"
ls "$root/containers/$web/" | grep -e -json.log
tail -n 2 "$root/containers/$web/$web-json.log"
say "ls $root/containers/<worker's id>/local-logs/    # logpipe's compressed local format"
ls -l "$root/containers/$worker/local-logs/"

say "logpipe daemon --data-root $root -H $LOGPIPE_HOST --default-runtime $runtime &    # a new daemon finds them"
start_daemon
$lp ps -a
say "logpipe logs --tail 2 worker"
$lp logs --tail 2 worker
say "logpipe logs --since 10m web 2>&1 | wc -l    # across the rotated files; max-file=3 dropped the oldest"
$lp logs --since 10m web 2>&1 | wc -l

echo
echo "Demo data root: $root, daemon log: $demo/daemon.log."
echo "The daemon stops when this script exits; the containers and their logs stay until the next run."
