#!/bin/bash
# tools/test.sh — build hierindex and run every test; CI runs exactly this.
#
#   bash tools/test.sh [--quick]
#
#   --quick          fuzz each target for 5 s instead of the fuzz Makefile's
#                    default (FUZZ_SECONDS, when set, wins over both)
#   FUZZ_SECONDS=N   seconds per fuzz target
#
# Steps, each under its own header:
#   setup   tools/setup.sh
#   build   make clean; make COPT=-Werror (warnings are errors; the GPU module
#           is built too when nvcc is found); make -C test/bench (the data
#           tools test/t/061 runs, and every benchmark program, so that none
#           stops compiling unseen)
#   unit    make -C test/unit check      counts: the "N passed, N failed"
#                                        lines the test programs print
#   gpu     make -C test/gpu check       counts: as unit (check-gpu when an
#                                        NVIDIA device is visible; skipped
#                                        when the GPU module was not built)
#   regress make installcheck            counts: one per pg_regress test
#           (after make install, against a throwaway cluster)
#   tap     prove test/t/*.pl            counts: TAP assertions
#           (as a non-root user: PostgreSQL::Test::Cluster refuses root)
#   fuzz    make -C test/fuzz run        counts: one per fuzz target
#
# Counting rules, so that the total is honest:
#   * A section whose tests do not exist yet (no Makefile, no test file)
#     counts nothing and does not fail the run; it says so in the summary.
#   * A step that could not run (setup or build failed, no server) counts as
#     one failure, and so does every later section that needed it.
#   * A tool that exits non-zero without reporting a failed test (a crash, a
#     TAP script that died after its last "ok") adds one failure.
# The last line printed is always "N passed, N failed"; the exit status is 0
# exactly when N failed is 0.
#
# `make install` writes PostgreSQL's shared directories, so install, regress
# and tap run under the lock file of tools/cluster.sh (one install-and-test
# at a time on a machine).

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
# shellcheck source=tools/cluster.sh
source "$REPO/tools/cluster.sh"

PG_CONFIG=$CLUSTER_PG_BIN/pg_config
PGXS_DIR=$("$PG_CONFIG" --pgxs 2>/dev/null | sed 's|/src/makefiles/pgxs.mk$||')
[ -n "$PGXS_DIR" ] || PGXS_DIR=/usr/lib/postgresql/15/lib/pgxs

usage()
{
	sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
	case $1 in
		--quick) : "${FUZZ_SECONDS:=5}" ;;
		-h|--help) usage; exit 0 ;;
		*) echo "test.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

TOTAL_PASSED=0
TOTAL_FAILED=0
SUMMARY=()
WORK=$(mktemp -d "${TMPDIR:-/tmp}/hierindex-test.XXXXXX") || exit 1
cluster_at_exit "rm -rf '$WORK'"
START=$SECONDS

header()
{
	printf '\n==== %s ====\n' "$*"
}

# record SECTION PASSED FAILED NOTE
record()
{
	TOTAL_PASSED=$((TOTAL_PASSED + $2))
	TOTAL_FAILED=$((TOTAL_FAILED + $3))
	SUMMARY+=("$(printf '%-8s %5d passed, %5d failed  %s' "$1" "$2" "$3" "$4")")
}

# run_logged LOG CMD...: run CMD, show its output and keep a copy in LOG;
# returns CMD's exit status.
run_logged()
{
	local log=$1
	shift
	"$@" 2>&1 | tee "$log"
	return "${PIPESTATUS[0]}"
}

# count_matches LOG REGEX: how many lines of LOG match REGEX (0 if none).
count_matches()
{
	grep -cE "$2" "$1" 2>/dev/null || true
}

finish()
{
	local line
	header "summary ($((SECONDS - START)) s)"
	for line in "${SUMMARY[@]}"; do
		echo "$line"
	done
	echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
	[ "$TOTAL_FAILED" -eq 0 ]
}

# The OS user that runs servers: see tools/cluster.sh.
if [ "$(id -u)" -eq 0 ]; then
	SERVER_USER=postgres
else
	SERVER_USER=$(id -un)
fi

# as_server_user DIR CMD...: run CMD as SERVER_USER with DIR as the cwd.
as_server_user()
{
	local dir=$1
	shift
	if [ "$(id -u)" -eq 0 ]; then
		(cd "$dir" && runuser -u "$SERVER_USER" -- "$@")
	else
		(cd "$dir" && "$@")
	fi
}

# ---------------------------------------------------------------------------
# setup
# ---------------------------------------------------------------------------
header "setup (tools/setup.sh)"
if ! bash "$REPO/tools/setup.sh"; then
	record setup 0 1 "tools/setup.sh failed; nothing else could run"
	finish
	exit
fi

# ---------------------------------------------------------------------------
# build: from clean, so that -Werror sees every file
# ---------------------------------------------------------------------------
header "build (make clean; make COPT=-Werror)"
BUILD_OK=1
make -s PG_CONFIG="$PG_CONFIG" clean >/dev/null 2>&1
# the benchmark programs too: test/t/061 runs the data tools, as a user
# that may not be able to write the tree
if run_logged "$WORK/build.log" make -j"$(nproc)" PG_CONFIG="$PG_CONFIG" COPT=-Werror &&
	run_logged "$WORK/bench-tools.log" make -C test/bench; then
	if [ -f hierindex_gpu.so ]; then
		record build 0 0 "ok: hierindex.so and the GPU module hierindex_gpu.so"
	else
		record build 0 0 "ok: hierindex.so (GPU module not built: no nvcc, or CUDA=0)"
	fi
	echo "build: ${SUMMARY[-1]##*  ok: }"
else
	BUILD_OK=0
	record build 0 1 "make COPT=-Werror or make -C test/bench failed"
fi

# ---------------------------------------------------------------------------
# unit and gpu: C test programs that print "N passed, N failed"
# ---------------------------------------------------------------------------

# run_c_tests SECTION DIR TARGET: make -C DIR TARGET, summing the
# "N passed, N failed" lines of the test programs.
run_c_tests()
{
	local section=$1 dir=$2 target=$3 rc passed failed reported note=""
	run_logged "$WORK/$section.log" make -C "$dir" "$target"
	rc=$?
	read -r passed failed < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ { p += $1; f += $3 }
		END { print p + 0, f + 0 }' "$WORK/$section.log")
	reported=$(count_matches "$WORK/$section.log" '^[0-9]+ passed, [0-9]+ failed$')
	if [ "$reported" -eq 0 ]; then
		failed=$((failed + 1))
		note="no 'N passed, N failed' line (exit status $rc)"
	elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="exit status $rc but no failed test reported"
	fi
	record "$section" "$passed" "$failed" "$note"
}

header "unit (make -C test/unit check)"
if [ ! -f test/unit/Makefile ]; then
	echo "no unit tests yet (test/unit/Makefile missing)"
	record unit 0 0 "no tests yet"
else
	run_c_tests unit test/unit check
fi

# The GPU module's tests: `check` verifies that, without a usable GPU, the
# module loads and its probe fails cleanly; `check-gpu` (chosen when an
# NVIDIA device is visible) that the probe describes the device.
GPU_TARGET=check
if [ -e /dev/nvidia0 ] || nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
	GPU_TARGET=check-gpu
fi
header "gpu (make -C test/gpu $GPU_TARGET)"
if [ ! -f test/gpu/Makefile ]; then
	echo "no GPU module tests yet (test/gpu/Makefile missing)"
	record gpu 0 0 "no tests yet"
elif [ "$BUILD_OK" -ne 1 ]; then
	echo "not run: the build failed"
	record gpu 0 1 "not run (no build)"
elif [ ! -f hierindex_gpu.so ]; then
	echo "not run: hierindex_gpu.so was not built (no nvcc, or CUDA=0)"
	record gpu 0 0 "skipped: GPU module not built"
else
	run_c_tests gpu test/gpu "$GPU_TARGET"
fi

# ---------------------------------------------------------------------------
# install, then regress and tap under the install lock
# ---------------------------------------------------------------------------
INSTALL_OK=0
if [ "$BUILD_OK" -eq 1 ]; then
	header "install (make install)"
	if ! install_lock; then
		record install 0 1 "could not take $HIERINDEX_INSTALL_LOCK"
	elif run_logged "$WORK/install.log" make_install; then
		INSTALL_OK=1
		record install 0 0 "ok: $("$PG_CONFIG" --pkglibdir)"
	else
		record install 0 1 "make install failed"
	fi
fi

header "regress (make installcheck against a throwaway cluster)"
if [ "$INSTALL_OK" -ne 1 ]; then
	echo "not run: the extension was not built and installed"
	record regress 0 1 "not run (no build/install)"
elif ! cluster_start; then
	record regress 0 1 "not run (could not start a cluster)"
else
	rm -rf results regression.diffs regression.out
	run_logged "$WORK/regress.log" make PG_CONFIG="$PG_CONFIG" installcheck
	rc=$?
	cluster_stop
	passed=$(count_matches "$WORK/regress.log" '\.\.\. ok( |$)')
	failed=$(count_matches "$WORK/regress.log" '\.\.\. (FAILED|failed)')
	note=""
	if [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ] && [ "$rc" -eq 0 ]; then
		note="no tests yet"
	elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="make installcheck exited $rc without a FAILED test"
	fi
	if [ "$rc" -ne 0 ] && [ -s regression.diffs ]; then
		header "regression.diffs"
		cat regression.diffs
	fi
	record regress "$passed" "$failed" "$note"
fi

header "tap (prove test/t/*.pl as $SERVER_USER)"
shopt -s nullglob
TAP_FILES=(test/t/*.pl)
shopt -u nullglob
if [ ${#TAP_FILES[@]} -eq 0 ]; then
	echo "no TAP tests yet (test/t/*.pl)"
	record tap 0 0 "no tests yet"
elif [ "$INSTALL_OK" -ne 1 ]; then
	echo "not run: the extension was not built and installed"
	record tap 0 1 "not run (no build/install)"
else
	# TESTDIR holds tmp_check (data directories, logs); it and the cwd must
	# belong to, or at least be readable by, the server user. When that user
	# cannot read the repository (root's clone under /root), the tests run
	# from a copy of the working tree.
	TAP_DIR=$WORK/tap
	mkdir -p "$TAP_DIR/testdir"
	TAP_CWD=$REPO
	if [ "$(id -u)" -eq 0 ]; then
		if ! runuser -u "$SERVER_USER" -- test -r "$REPO/test/t" -a -x "$REPO/test/t" \
				-a -r "${TAP_FILES[0]/#/$REPO/}" 2>/dev/null; then
			TAP_CWD=$TAP_DIR/repo
			mkdir -p "$TAP_CWD"
			tar -C "$REPO" --exclude=./.git -cf - . | tar -C "$TAP_CWD" -xf -
			echo "($SERVER_USER cannot read $REPO: running from a copy in $TAP_CWD)"
		fi
		chown -R "$SERVER_USER": "$TAP_DIR"
		chmod 755 "$WORK"
	fi
	run_logged "$WORK/tap.log" as_server_user "$TAP_CWD" \
		env PERL5LIB="$PGXS_DIR/src/test/perl${PERL5LIB:+:$PERL5LIB}" \
			PATH="$CLUSTER_PG_BIN:$PATH" \
			PG_REGRESS="$PGXS_DIR/src/test/regress/pg_regress" \
			TESTDIR="$TAP_DIR/testdir" \
			LANG=C.UTF-8 \
			prove "${TAP_FILES[@]}" 9>&-
	rc=$?
	# prove's summary: "Files=F, Tests=T, ..." and, per failed file,
	# "t/x.pl (Wstat: W (exited N) Tests: T Failed: K)". A failed file with
	# K = 0 (a script that died, a bad plan) counts as one failure.
	read -r total failed failed_asserts < <(awk '
		/^Files=[0-9]+, Tests=[0-9]+/ { t = $0; sub(/.*Tests=/, "", t); sub(/,.*/, "", t); total = t }
		/\(Wstat: .*Tests: [0-9]+ Failed: [0-9]+\)$/ {
			k = $0; sub(/.*Failed: /, "", k); sub(/\).*/, "", k)
			failed += (k > 0 ? k : 1); asserts += k }
		END { print total + 0, failed + 0, asserts + 0 }' "$WORK/tap.log")
	passed=$((total - failed_asserts))
	note=""
	if ! grep -qE '^Files=[0-9]+, Tests=' "$WORK/tap.log"; then
		passed=0
		failed=1
		note="prove did not finish (exit status $rc)"
	elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="prove exited $rc without a failed test"
	fi
	# The server-side story of each failed file is in its regress_log.
	sed -nE 's|^([^ ]+)\.pl +\(Wstat: .*|\1|p' "$WORK/tap.log" | while read -r file; do
		log=$TAP_DIR/testdir/tmp_check/log/regress_log_${file##*/}
		[ -f "$log" ] || continue
		header "last 60 lines of ${log##*/}"
		tail -n 60 "$log"
	done
	record tap "$passed" "$failed" "$note"
fi

if [ "$INSTALL_OK" -eq 1 ]; then
	install_unlock
fi

# ---------------------------------------------------------------------------
# fuzz: libFuzzer targets, bounded time each
# ---------------------------------------------------------------------------
header "fuzz (make -C test/fuzz run${FUZZ_SECONDS:+ FUZZ_SECONDS=$FUZZ_SECONDS})"
if [ ! -f test/fuzz/Makefile ]; then
	echo "no fuzz targets yet (test/fuzz/Makefile missing)"
	record fuzz 0 0 "no tests yet"
else
	run_logged "$WORK/fuzz.log" make -C test/fuzz run ${FUZZ_SECONDS:+FUZZ_SECONDS="$FUZZ_SECONDS"}
	rc=$?
	passed=$(count_matches "$WORK/fuzz.log" '^fuzz: [^ ]+ ok$')
	failed=$(count_matches "$WORK/fuzz.log" '^fuzz: [^ ]+ FAILED')
	note=""
	if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="make exited $rc without a FAILED target"
	elif [ "$passed" -eq 0 ] && [ "$failed" -eq 0 ]; then
		failed=1
		note="no 'fuzz: NAME ok' line"
	fi
	record fuzz "$passed" "$failed" "$note"
fi

finish
