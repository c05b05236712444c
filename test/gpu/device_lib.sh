# shellcheck shell=bash
# test/gpu/device_lib.sh — what the scripts run on the GPU machine share
# (sourced by test/gpu/run-on-device.sh and test/bench/gpu_bench.sh).
#
# The GPU machine has nvcc, gcc and Python but no PostgreSQL and no network.
# test/gpu/prepare-device.sh, run beforehand on a machine with PostgreSQL 15
# and its PGXS files, fills .device/ in the repository (ignored by git,
# carried to the device):
#   .device/pg-bundle.tar.xz   Debian's PostgreSQL 15 (make-pg-bundle.sh)
#   .device/start-pg.sh        unpacks and starts it (a copy of
#                              ../shared/device/start-pg.sh)
#   .device/stage/             `make CUDA=0 install DESTDIR=...`: hierindex.so
#                              and the extension's SQL and control files
#   .device/syslib/            libgomp.so.1, for a device that lacks it
# The device builds what must be built there: hierindex_gpu.so (nvcc) and
# the C test and data tools (gcc).
#
# Local mode (HIERINDEX_DEVICE_LOCAL=1): for trying the SQL side on a
# machine without a GPU.  The server is a throwaway cluster of
# tools/cluster.sh, the extension the one installed on this machine (run
# under the install lock: flock /tmp/hierindex-install.lock ...), large
# memory settings are scaled down, and nothing is built with nvcc.
#
# Functions print as they go, each line prefixed with the seconds since the
# script started, so a run cut off at its time limit still says how far it
# got and how long each step took.

DEVICE_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEVICE_DIR=$DEVICE_REPO/.device
DEVICE_LOCAL=${HIERINDEX_DEVICE_LOCAL:-0}
DEVICE_PG_LIB=/usr/lib/postgresql/15/lib
DEVICE_PG_SHARE=/usr/share/postgresql/15
DEVICE_START=$SECONDS
# logs: $OUT on the device tool, else .device/logs
DEVICE_LOG_DIR=${OUT:-$DEVICE_DIR/logs}
DEVICE_WORK=

say()
{
	printf '[%4ds] %s\n' $((SECONDS - DEVICE_START)) "$*"
}

die()
{
	say "FATAL: $*" >&2
	exit 1
}

# A scratch directory on local disk, removed at exit (device: kept for a
# rerun on the same machine, since its data is expensive to regenerate).
device_workdir()
{
	if [ "$DEVICE_LOCAL" = 1 ]; then
		DEVICE_WORK=$(mktemp -d "${TMPDIR:-/tmp}/hierindex-device.XXXXXX") || die "mktemp failed"
		cluster_at_exit "rm -rf '$DEVICE_WORK'"
	else
		DEVICE_WORK=/tmp/hierindex-device
		mkdir -p "$DEVICE_WORK" || die "cannot create $DEVICE_WORK"
	fi
	chmod 755 "$DEVICE_WORK"
}

# Everything a script needs before it builds: the repository as cwd, the log
# directory, the CUDA toolkit on PATH, and (on the device) the CUDA
# libraries known to the dynamic loader, so that both the test programs and
# the PostgreSQL server can dlopen hierindex_gpu.so.
device_setup()
{
	cd "$DEVICE_REPO" || die "cannot cd to $DEVICE_REPO"
	mkdir -p "$DEVICE_LOG_DIR" || die "cannot create $DEVICE_LOG_DIR"
	if [ "$DEVICE_LOCAL" = 1 ]; then
		# shellcheck source=tools/cluster.sh
		source "$DEVICE_REPO/tools/cluster.sh"
		device_workdir
		say "local mode: tools/cluster.sh server, the installed extension, no GPU"
		return 0
	fi
	export PATH=/usr/local/cuda/bin:$PATH
	device_workdir
	say "machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(df -h /tmp | awk 'NR == 2 { print $4 }') free on /tmp"
	nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader ||
		say "nvidia-smi failed"
	command -v nvcc >/dev/null && say "$(nvcc --version | tail -n 1)"
	local cuda_lib
	for cuda_lib in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
		if [ -e "$cuda_lib/libcublas.so" ] && ! ldconfig -p | grep -q 'libcublas\.so'; then
			echo "$cuda_lib" >/etc/ld.so.conf.d/hierindex-cuda.conf && ldconfig &&
				say "added $cuda_lib to the dynamic loader's path"
			break
		fi
	done
}

# hierindex_gpu.so in the repository root, with nvcc (incremental).
device_build_module()
{
	local log=$DEVICE_LOG_DIR/build.log

	[ "$DEVICE_LOCAL" = 1 ] && { say "local mode: GPU module not built"; return 0; }
	command -v nvcc >/dev/null || { say "nvcc not found: this needs a CUDA toolkit"; return 1; }
	say "building hierindex_gpu.so (make -C src/gpu) ..."
	if ! make -C src/gpu >"$log" 2>&1; then
		tail -n 40 "$log"
		say "make -C src/gpu failed (log: $log)"
		return 1
	fi
	if ldd hierindex_gpu.so | grep 'not found'; then
		say "hierindex_gpu.so needs libraries the loader cannot find (above)"
		return 1
	fi
	say "hierindex_gpu.so built ($(du -h hierindex_gpu.so | cut -f1))"
}

# The data tools of test/bench (gen_clustered, fvecs_to_copy, knn_truth).
device_build_data_tools()
{
	local log=$DEVICE_LOG_DIR/tools.log

	make -C test/bench hnsw-tools >"$log" 2>&1 || { cat "$log"; die "building the data tools failed"; }
}

# device_start_postgres SETTING=VALUE...: a fresh server with these settings
# and the extension installed; exports PGHOST PGPORT PGUSER PGDATABASE.
device_start_postgres()
{
	local setting

	if [ "$DEVICE_LOCAL" = 1 ]; then
		cluster_start || die "could not start a cluster"
		# callers may run this in a subshell, which does not inherit traps
		trap _cluster_on_exit EXIT
		for setting in "$@"; do
			# this machine is small: keep memory settings modest
			case $setting in
				shared_buffers=*) setting=shared_buffers=256MB ;;
				maintenance_work_mem=*) setting=maintenance_work_mem=1GB ;;
				max_wal_size=*) setting=max_wal_size=2GB ;;
			esac
			psql -X -q -v ON_ERROR_STOP=1 -c "ALTER SYSTEM SET ${setting%%=*} = '${setting#*=}'" ||
				die "ALTER SYSTEM SET $setting failed"
		done
		_cluster_as_owner "$CLUSTER_PG_BIN/pg_ctl" -D "$CLUSTER_DIR/data" \
			-l "$CLUSTER_DIR/server.log" -w -t 60 restart >/dev/null 9>&- ||
			{ cat "$CLUSTER_DIR/server.log"; die "restart failed"; }
		cluster_at_exit "cp '$CLUSTER_DIR/server.log' '$DEVICE_LOG_DIR/server.log' 2>/dev/null"
		say "server: $(psql -X -A -t -c 'SELECT version()' | cut -d, -f1)"
		return 0
	fi

	if [ ! -s "$DEVICE_DIR/pg-bundle.tar.xz" ] || [ ! -s "$DEVICE_DIR/start-pg.sh" ] ||
			[ ! -d "$DEVICE_DIR/stage" ]; then
		die ".device/ is incomplete: run bash test/gpu/prepare-device.sh on the PostgreSQL machine, and carry .device"
	fi
	say "starting PostgreSQL 15 from .device/pg-bundle.tar.xz ..."
	# start-pg.sh is written to be sourced (it exports PATH and LD_LIBRARY_PATH)
	set +eu
	# shellcheck source=/dev/null
	source "$DEVICE_DIR/start-pg.sh" "$DEVICE_DIR/pg-bundle.tar.xz" "$@" >"$DEVICE_LOG_DIR/start-pg.log" 2>&1
	local rc=$?
	set -u
	[ "$rc" -eq 0 ] || { cat "$DEVICE_LOG_DIR/start-pg.log"; die "start-pg.sh failed"; }
	export PGHOST=/tmp/pgd PGPORT=5432 PGUSER=pgu PGDATABASE=postgres
	trap device_stop_postgres EXIT
	device_install_extension
	say "server: $(psql -X -A -t -c 'SELECT version()' | cut -d, -f1); settings: $*"
}

# Copy the staged extension and the fresh hierindex_gpu.so into the server's
# directories (device only: the bundle lives at the standard Debian paths).
device_install_extension()
{
	if ! install -m 755 "$DEVICE_DIR/stage$DEVICE_PG_LIB/hierindex.so" "$DEVICE_PG_LIB/" ||
			! install -m 644 "$DEVICE_DIR/stage$DEVICE_PG_SHARE"/extension/hierindex* \
				"$DEVICE_PG_SHARE/extension/"; then
		die "installing .device/stage failed"
	fi
	if [ -f hierindex_gpu.so ]; then
		install -m 755 hierindex_gpu.so "$DEVICE_PG_LIB/hierindex_gpu.so" ||
			die "installing hierindex_gpu.so failed"
	else
		say "WARNING: no hierindex_gpu.so to install: GPU builds will fail"
	fi
	if ! ldconfig -p | grep -q 'libgomp\.so\.1 '; then
		cp -a "$DEVICE_DIR"/syslib/libgomp.so.1* /tmp/pg/syslib/ 2>/dev/null &&
			say "libgomp.so.1 from .device/syslib (the machine has none)"
	fi
	if LD_LIBRARY_PATH=/tmp/pg/syslib ldd "$DEVICE_PG_LIB/hierindex.so" | grep 'not found'; then
		die "hierindex.so needs libraries the server cannot find (above)"
	fi
	[ -f "$DEVICE_PG_SHARE/extension/hierindex.control" ] ||
		die "hierindex.control missing after installing .device/stage"
}

device_stop_postgres()
{
	[ -f /tmp/pgd/log ] && tail -c 4000000 /tmp/pgd/log >"$DEVICE_LOG_DIR/server.log" 2>/dev/null
	su pgu -c "LD_LIBRARY_PATH=/tmp/pg/syslib /usr/lib/postgresql/15/bin/pg_ctl -D /tmp/pgd/data -m fast -w stop" \
		>/dev/null 2>&1 || true
}

# psql in database $DB: quiet, unaligned, stop at the first error.
sql()
{
	psql -X -q -A -t -v ON_ERROR_STOP=1 -P pager=off -d "$DB" "$@"
}

# device_new_database NAME: a fresh database with the extension; sets DB.
device_new_database()
{
	DB=$1
	psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "SET client_min_messages = warning" \
		-c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" ||
		die "CREATE DATABASE $DB failed"
	sql -c "CREATE EXTENSION hierindex" || die "CREATE EXTENSION hierindex failed"
}

# device_gen_clustered DIM ROWS SEED OUT: gen_clustered with the centres of
# issue 4's generated set (1000 centres, centre seed 1; the base set uses
# point seed 2, the queries 3); cached by name in the work directory.
device_gen_clustered()
{
	local dim=$1 rows=$2 seed=$3 out=$4

	[ -s "$out" ] && return 0
	if ! test/bench/gen_clustered "$dim" 1000 "$rows" 1 "$seed" >"$out.tmp"; then
		rm -f "$out.tmp"
		die "gen_clustered $dim 1000 $rows 1 $seed failed"
	fi
	mv "$out.tmp" "$out"
}

# device_load_vectors TABLE DIM FVECS: a table (id int4, embedding vector(DIM))
# loaded by binary COPY; ids count from 1 in file order.
device_load_vectors()
{
	local table=$1 dim=$2 fvecs=$3

	sql -c "CREATE TABLE $table (id int4 PRIMARY KEY, embedding vector($dim) NOT NULL)" ||
		die "CREATE TABLE $table failed"
	test/bench/fvecs_to_copy <"$fvecs" | sql -c "\\copy $table FROM pstdin WITH (FORMAT binary)" ||
		die "loading $table failed"
	sql -c "VACUUM ANALYZE $table" || die "VACUUM ANALYZE $table failed"
}

# device_build_index TABLE BUILD_DEVICE M EF_CONSTRUCTION: CREATE INDEX
# ${TABLE}_idx USING hnsw (embedding vector_l2_ops) with all cores for a CPU
# build; BUILD_DEVICE gpu, cpu or auto is the build_device index option,
# "default" leaves the option out (a server without it).  Sets BUILD_S,
# SIZE_MB, BUILD_METHOD and INDEX_NAME; BUILD_NOTICES names a file with the
# build's NOTICE lines.  Returns non-zero when CREATE INDEX fails.
device_build_index()
{
	local table=$1 device=$2 m=$3 ef_construction=$4 am=${5:-hnsw} options out

	INDEX_NAME=${table}_idx
	BUILD_NOTICES=$DEVICE_WORK/notices-$table-$device.txt
	BUILD_S=-
	SIZE_MB=-
	BUILD_METHOD=-
	options="m = $m, ef_construction = $ef_construction"
	[ "$device" = default ] || options="$options, build_device = '$device'"
	say "CREATE INDEX $INDEX_NAME ON $table USING $am (embedding vector_l2_ops) WITH ($options) ..."
	if ! out=$(sql -F ' ' 2>"$BUILD_NOTICES" <<SQL
SET hierindex.build_threads = 0;
SET client_min_messages = notice;
SELECT clock_timestamp() AS t0 \gset
CREATE INDEX $INDEX_NAME ON $table USING $am (embedding vector_l2_ops) WITH ($options);
SELECT round(extract(epoch FROM clock_timestamp() - :'t0')::numeric, 2),
	   round(pg_relation_size('$INDEX_NAME') / 1048576.0, 1);
SQL
	); then
		sed 's/^/    /' "$BUILD_NOTICES"
		say "CREATE INDEX with build device $device failed"
		return 1
	fi
	read -r BUILD_S SIZE_MB <<<"$out"
	BUILD_METHOD=$(sql -c "SELECT build_method FROM hierindex_index_info('$INDEX_NAME')") || BUILD_METHOD='?'
	say "built in $BUILD_S s, $SIZE_MB MB, build_method $BUILD_METHOD; the build said:"
	sed 's/^/    /' "$BUILD_NOTICES"
}

# The statement that runs every query through the index: query id and the
# ids of its 10 nearest items.
device_all_queries_sql()
{
	echo "SELECT q.id, array(SELECT i.id FROM $1 i ORDER BY i.embedding <-> q.embedding LIMIT 10) AS ids FROM queries q"
}

# device_exact_truth TABLE: table truth (query_id, ids) from exact sequential
# scans (no index may exist yet; index scans are switched off anyway).
device_exact_truth()
{
	sql <<SQL || die "computing the exact top-10 failed"
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TABLE truth AS $(device_all_queries_sql "$1");
ALTER TABLE truth RENAME COLUMN id TO query_id;
SQL
}

# device_recall TABLE EF: recall@10 of the index against table truth at
# hnsw.ef_search = matryoshka.ef_search = EF ("default": the settings'
# defaults); fails unless the plan really is the index scan (an exact
# sequential scan would score 1 and prove nothing).
device_recall()
{
	local table=$1 ef=$2 plan settings=(-c "SET enable_seqscan = off")

	[ "$ef" = default ] ||
		settings+=(-c "SET hnsw.ef_search = $ef" -c "SET matryoshka.ef_search = $ef")
	plan=$(sql "${settings[@]}" -c "EXPLAIN $(device_all_queries_sql "$table")") || return 1
	if ! grep -q "Index Scan using ${table}_idx" <<<"$plan"; then
		echo "the recall statement does not use ${table}_idx:" >&2
		echo "$plan" >&2
		return 1
	fi
	sql "${settings[@]}" -c "
		SELECT round(avg(cardinality(array(SELECT unnest(r.ids) INTERSECT SELECT unnest(t.ids[1:10]))))::numeric / 10, 4)
		FROM ($(device_all_queries_sql "$table")) AS r JOIN truth AS t ON t.query_id = r.id"
}
