#!/bin/bash
# tools/setup.sh — make sure everything hierindex's build, demo and tests need
# is installed.
#
# Why a probe table instead of asking dpkg: the probes check the very files and
# commands the other scripts use, so the fast path ("all present, nothing to
# do") is right on any machine, Debian or not, and costs no apt call. Only when
# something is missing do we map it to its Debian 12 package and, as root, run
# apt-get once. Without root we only say what to install and fail, so that a
# developer's machine is never changed behind their back.
#
# Installing postgresql-15 on Debian creates (and may start) a default cluster
# on port 5432. Nothing here or in the other scripts uses or touches it: they
# start their own throwaway clusters (tools/cluster.sh).
#
# Idempotent: run it as often as you like. Exit status 0 means "ready".

set -u -o pipefail

PG_BIN=/usr/lib/postgresql/15/bin
PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs

# One probe per Debian package: "package|shell test that succeeds when it is
# usable". Keep this list in step with what tools/*.sh and the Makefiles run.
REQUIREMENTS=(
	"build-essential|command -v gcc && command -v g++ && command -v make && test -e /usr/include/stdio.h"
	"postgresql-15|test -x $PG_BIN/initdb && test -x $PG_BIN/pg_ctl && test -x $PG_BIN/postgres"
	"postgresql-client-15|test -x $PG_BIN/psql && test -x $PGXS_DIR/src/test/regress/pg_regress && test -e $PGXS_DIR/src/test/perl/PostgreSQL/Test/Cluster.pm"
	"postgresql-server-dev-15|test -x $PG_BIN/pg_config && test -e $PGXS_DIR/src/makefiles/pgxs.mk && test -e /usr/include/postgresql/15/server/postgres.h"
	"perl|command -v perl && command -v prove && perl -MTest::More -MIO::Socket::INET -e1"
	"libipc-run-perl|perl -MIPC::Run -e1"
	"clang-14|command -v clang-14"
	"libclang-rt-14-dev|compgen -G '/usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a'"
	"util-linux|command -v runuser && command -v flock"
	"coreutils|command -v mktemp && command -v timeout"
	"dataset-fashion-mnist|test -r /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz && test -r /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
)

missing_packages()
{
	local entry pkg probe
	for entry in "${REQUIREMENTS[@]}"; do
		pkg=${entry%%|*}
		probe=${entry#*|}
		if ! bash -c "$probe" >/dev/null 2>&1; then
			printf '%s\n' "$pkg"
		fi
	done
}

mapfile -t MISSING < <(missing_packages)

if [ ${#MISSING[@]} -eq 0 ]; then
	echo "setup: all requirements present"
	exit 0
fi

echo "setup: missing: ${MISSING[*]}"

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: not root, so nothing was installed. Install them with:" >&2
	echo "    sudo apt-get update && sudo apt-get install -y ${MISSING[*]}" >&2
	echo "(Debian 12 package names; other systems: the PostgreSQL 15 server," >&2
	echo " its PGXS development files, Perl with IPC::Run, clang 14 with libFuzzer.)" >&2
	exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
	echo "setup: apt-get not found; this script installs packages on Debian 12 only." >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# Recommends are skipped on purpose: every package we rely on is named above,
# and the recommended extras (documentation, locales, ssl-cert...) only slow
# a fresh install down.
apt-get update -q || { echo "setup: apt-get update failed" >&2; exit 1; }
apt-get install -y -q --no-install-recommends "${MISSING[@]}" ||
	{ echo "setup: apt-get install failed" >&2; exit 1; }

mapfile -t STILL_MISSING < <(missing_packages)
if [ ${#STILL_MISSING[@]} -ne 0 ]; then
	echo "setup: still missing after install: ${STILL_MISSING[*]}" >&2
	exit 1
fi
echo "setup: installed ${MISSING[*]}; all requirements present"
