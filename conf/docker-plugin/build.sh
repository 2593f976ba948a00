#!/bin/sh
# Build logpipe as a managed Docker plugin without the internet:
#   conf/docker-plugin/build.sh [NAME] [WORKDIR]      (as root; NAME defaults to logpipe)
# The rootfs is this host's Python interpreter (the binary, the shared libraries ldd names,
# its standard library) and logpipe with its dependencies installed by pip from the
# configured index (a local mirror works: nothing else is downloaded). Then
# `docker plugin create NAME WORKDIR`; enable it with `docker plugin enable NAME`.
set -eu
NAME=${1:-logpipe}
WORK=${2:-$(mktemp -d)}
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
PY=${PYTHON:-python3}
PYBIN=$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
VER=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
STDLIB=$("$PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')
ROOT="$WORK/rootfs"
mkdir -p "$ROOT/usr/bin" "$ROOT/opt/logpipe" "$ROOT/run/docker/plugins" \
         "$ROOT/var/lib/logpipe/docker-plugin" "$ROOT/tmp" "$ROOT/etc"
# At its own path, so that it finds its standard library where it looks (relative to its
# real location); config.json's /usr/bin/python3 links to it.
mkdir -p "$ROOT$(dirname "$PYBIN")"
cp "$PYBIN" "$ROOT$PYBIN"
[ "$PYBIN" = /usr/bin/python3 ] || ln -sf "$PYBIN" "$ROOT/usr/bin/python3"
# The interpreter's shared libraries, at the paths the dynamic loader looks them up.
ldd "$PYBIN" | awk '/=> \// {print $3} /^\t\// {print $1}' | while read -r lib; do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
# The standard library, less what a server never imports.
mkdir -p "$ROOT$STDLIB"
tar -C "$STDLIB" --exclude=test --exclude=idlelib --exclude=tkinter --exclude=ensurepip \
    --exclude=turtledemo --exclude=__pycache__ --exclude=site-packages \
    --exclude=dist-packages -cf - . | tar -C "$ROOT$STDLIB" -xf -
"$PY" -m pip install -q --disable-pip-version-check --no-compile --target "$ROOT/opt/logpipe" "$REPO"
# The shared libraries of extension modules (lib-dynload's ssl, ffi, lzma...; the wheels'
# lz4, grpc...) that are not in the rootfs yet.
find "$ROOT$STDLIB" "$ROOT/opt/logpipe" -name '*.so*' -type f -exec ldd {} \; 2>/dev/null \
    | awk '/=> \// {print $3}' | sort -u | while read -r lib; do
    [ -e "$ROOT$lib" ] || { mkdir -p "$ROOT$(dirname "$lib")"; cp -L "$lib" "$ROOT$lib"; }
done
for f in /etc/ssl/certs/ca-certificates.crt /etc/passwd /etc/group /etc/nsswitch.conf; do
    [ -e "$f" ] && { mkdir -p "$ROOT$(dirname "$f")"; cp -L "$f" "$ROOT$f"; }
done
cp "$HERE/config.json" "$WORK/config.json"
echo "rootfs: $(du -sh "$ROOT" | cut -f1) in $WORK" >&2
docker plugin create "$NAME" "$WORK"
