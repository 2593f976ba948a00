#!/usr/bin/env bash
# A real demo on a fresh Debian 12 machine: installs logpipe in .venv, captures the output of
# a few programs with the json-file and local drivers, and reads it back with `logpipe logs`.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv python3-pip >/dev/null
fi
python3 -m venv .venv
.venv/bin/python -m pip install -q -e .
lp=.venv/bin/logpipe
demo=$(mktemp -d /tmp/logpipe-demo.XXXXXX)

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

say "logpipe capture --log-driver json-file --log-opt max-size=2k --log-opt max-file=3 --log-dir $demo/web -- sh -c '...'"
$lp capture --log-driver json-file --log-opt max-size=2k --log-opt max-file=3 \
  --log-opt labels=app --label app=web --log-dir "$demo/web" --name web -- \
  sh -c 'for i in $(seq 1 60); do echo "GET /item/$i 200 $((i * 7))ms"; done; echo "oops: disk almost full" >&2'
ls -l "$demo/web"

say "logpipe logs --log-dir $demo/web --tail 5 -t --details"
$lp logs --log-dir "$demo/web" --tail 5 -t --details

say "logpipe capture --log-driver local --log-dir $demo/worker -- sh -c '...' &   (and follow it)"
$lp capture --log-driver local --log-dir "$demo/worker" --name worker -- \
  sh -c 'for i in 1 2 3 4 5; do echo "worker step $i"; sleep 0.2; done' &
cap=$!
until [ -e "$demo/worker/local-logs/container.log" ]; do sleep 0.05; done
say "logpipe logs --log-dir $demo/worker -f"
$lp logs --log-dir "$demo/worker" -f
wait "$cap"
echo
echo "Demo files are in $demo"
