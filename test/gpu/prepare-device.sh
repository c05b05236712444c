#!/bin/bash
# test/gpu/prepare-device.sh — run on the machine with PostgreSQL 15 and its
# PGXS files (not on the GPU machine): fills .device/ with what the GPU
# machine cannot make itself, for test/gpu/run-on-device.sh and
# test/bench/gpu_bench.sh (see test/gpu/device_lib.sh):
#
#   .device/pg-bundle.tar.xz  Debian's PostgreSQL 15, packed by
#                             ../shared/device/make-pg-bundle.sh (kept when
#                             present: it changes only with the server)
#   .device/start-pg.sh       ../shared/device/start-pg.sh, which starts it
#   .device/stage/            hierindex.so and the extension's files, from
#                             make CUDA=0 install DESTDIR=.device/stage (the
#                             GPU module is built on the GPU machine)
#   .device/syslib/           libgomp.so.1, which hierindex.so needs, for a
#                             GPU machine without it
#
# .device/ is ignored by git (.git/info/exclude; added when missing), so it
# travels only when carried:  the device tool's carry [".device"].
#
#   usage: bash test/gpu/prepare-device.sh [--no-clean] [--new-bundle]
#     --no-clean     skip `make clean` before building hierindex.so
#     --new-bundle   remake the PostgreSQL bundle even when present
# Environment: SHARED_DEVICE_DIR (default: ../shared/device beside the
# repository, else /work/shared/device).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEVICE_DIR=$REPO/.device
MAX_MB=40
CLEAN=1
NEW_BUNDLE=0

while [ $# -gt 0 ]; do
	case $1 in
		--no-clean) CLEAN=0 ;;
		--new-bundle) NEW_BUNDLE=1 ;;
		-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) echo "prepare-device.sh: unknown argument '$1'" >&2; exit 2 ;;
	esac
	shift
done

SHARED_DEVICE_DIR=${SHARED_DEVICE_DIR:-$REPO/../shared/device}
[ -d "$SHARED_DEVICE_DIR" ] || SHARED_DEVICE_DIR=/work/shared/device
if [ ! -f "$SHARED_DEVICE_DIR/make-pg-bundle.sh" ] || [ ! -f "$SHARED_DEVICE_DIR/start-pg.sh" ]; then
	echo "prepare-device.sh: make-pg-bundle.sh and start-pg.sh not found in $SHARED_DEVICE_DIR" >&2
	exit 1
fi
cd "$REPO"

# .device/ must never be committed, and must not travel unless carried
exclude=$(git rev-parse --git-common-dir)/info/exclude
if ! git check-ignore -q .device/; then
	mkdir -p "$(dirname "$exclude")"
	echo '.device/' >>"$exclude"
	echo "added .device/ to $exclude"
fi

mkdir -p "$DEVICE_DIR"
rm -rf "$DEVICE_DIR/logs"	# from local runs; on the device, logs go to $OUT
if [ "$NEW_BUNDLE" = 1 ] || [ ! -s "$DEVICE_DIR/pg-bundle.tar.xz" ]; then
	echo "packing PostgreSQL 15 (make-pg-bundle.sh; a minute or two) ..."
	bash "$SHARED_DEVICE_DIR/make-pg-bundle.sh" "$DEVICE_DIR/pg-bundle.tar.xz.tmp"
	mv "$DEVICE_DIR/pg-bundle.tar.xz.tmp" "$DEVICE_DIR/pg-bundle.tar.xz"
else
	echo "PostgreSQL bundle: kept $DEVICE_DIR/pg-bundle.tar.xz (--new-bundle remakes it)"
fi
install -m 644 "$SHARED_DEVICE_DIR/start-pg.sh" "$DEVICE_DIR/start-pg.sh"

# hierindex.so without the GPU module (CUDA=0 also in the environment, for
# PGXS's recursive makes); DESTDIR keeps the system directories untouched,
# so no install lock is needed.
export CUDA=0
[ "$CLEAN" = 1 ] && make -s clean >/dev/null
make -s -j"$(nproc)" COPT=-Werror >/dev/null
rm -rf "$DEVICE_DIR/stage"
make -s install DESTDIR="$DEVICE_DIR/stage" >/dev/null
if [ ! -f "$DEVICE_DIR/stage/usr/lib/postgresql/15/lib/hierindex.so" ] ||
		[ ! -f "$DEVICE_DIR/stage/usr/share/postgresql/15/extension/hierindex.control" ]; then
	echo "prepare-device.sh: the staged install lacks hierindex.so or hierindex.control:" >&2
	find "$DEVICE_DIR/stage" -type f >&2
	exit 1
fi
# no LLVM bitcode on the device: its server has no JIT
rm -rf "$DEVICE_DIR/stage/usr/lib/postgresql/15/lib/bitcode"

rm -rf "$DEVICE_DIR/syslib"
mkdir -p "$DEVICE_DIR/syslib"
gomp=$(ldd "$DEVICE_DIR/stage/usr/lib/postgresql/15/lib/hierindex.so" | awk '/libgomp/ { print $3 }')
[ -n "$gomp" ] && cp -L "$gomp" "$DEVICE_DIR/syslib/libgomp.so.1"

echo "staged:"
(cd "$DEVICE_DIR" && find stage syslib -type f -printf '  %p (%s bytes)\n')
size_mb=$(du -sm "$DEVICE_DIR" | cut -f1)
echo ".device: ${size_mb} MB (limit $MAX_MB MB)"
if [ "$size_mb" -gt "$MAX_MB" ]; then
	echo "prepare-device.sh: .device is over $MAX_MB MB" >&2
	exit 1
fi
echo "next, on the GPU machine (carry [\".device\"]): bash test/gpu/run-on-device.sh"
