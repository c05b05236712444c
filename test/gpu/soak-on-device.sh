#!/bin/bash
# test/gpu/soak-on-device.sh — test/t/016_soak.pl's soak at the scale of the
# lent machine's 16 cores: many clients inserting, deleting, updating and
# querying through a live index while VACUUM runs in a loop, for each access
# method, then the same checks as 016.
#
# Why on the device machine: CI and the development VM have two cores, and
# races need threads that really run at once (the parallel build's race of
# issue 6 left elements unfound in every 16-core run and in 1 of 25 runs on
# two cores).  The device machine has 16 cores and, like CI, no network; it
# needs no GPU for this.  The script uses nothing but PostgreSQL's own
# programs (psql, pgbench): the machine's Perl may lack the TAP modules.
#
#   on the machine with PostgreSQL:  bash test/gpu/prepare-device.sh
#   on the device machine:           bash test/gpu/soak-on-device.sh
#   (the device tool: carry [".device"]; HIERINDEX_DEVICE_LOCAL=1 runs it
#   here against a tools/cluster.sh server, to try it)
#
#   --seconds S    soak per access method (default 150)
#   --clients C    pgbench clients (default: the machine's cores)
#   --rows N       rows before the soak (default 20000)
#   --dim D        dimensions (default 64; matryoshka on granularities D/2,
#                  3D/4, as the TAP tests)
#   --ams "A B"    access methods (default "hnsw matryoshka")
#   --weights "I D U Q"  the pgbench weights of INSERT, DELETE, UPDATE and
#                  query (default "1 1 1 2"; 0 leaves that kind out), to
#                  tell which kind of change a finding needs
#   --no-vacuum-loop   no VACUUM beside pgbench (only the last one)
#   --setting NAME=VALUE  a server setting more (repeatable), e.g.
#                  log_min_messages=debug1 for VACUUM's counts in the log
#   --measure-before   also measure the index (recall, rows found first)
#                  before the last VACUUM, to tell what the soak left from
#                  what that VACUUM does
#
# Per access method, in a database of its own: 100 clustered centres in
# [-1,1]^D, the rows their points (HierindexTest.pm's recipe), an l2 index,
# a btree on id; then pgbench for S seconds with C clients, each
# transaction one of (weights) INSERT of a new row (1), DELETE of a random
# row (1), UPDATE of a random row's vector (1), an index query (2), while
# another session runs VACUUM in a loop.  Then, as 016 checks:
#   * pgbench exits 0 with no failed transaction and nothing on stderr; the
#     VACUUM loop ran and never failed; the server log of the soak has no
#     ERROR, FATAL or PANIC and no terminated server process;
#   * after one last VACUUM: one heap TID per row, every deleted element
#     free, every element live with one row or free; hierindex_check finds
#     nothing; recall@10 at ef_search 200 over 100 queries against a
#     sequential scan at least 0.95; of the rows the soak inserted or
#     updated (a random 20000 of them when there are more), as many come
#     back first from a query with their own vector at ef_search 200 as do
#     from an index built afresh on the CPU on the same rows afterwards,
#     less one in a thousand (016 asks for every one of its 4000-row
#     table; on a table of 100000 rows and more even a fresh build misses a
#     few of these hard 64-d points).  On the device machine a GPU build of
#     the same rows is measured too, and printed, not checked: its graph
#     (each element linked from an exact search) is better on these points
#     than any graph linked by the CPU's search, which inserts also use.
#
# Findings (2026-11-25, H100 host, README "Testing on the device machine"):
# VACUUM's repair lost the graph's links between clusters when most
# elements were deleted at once; fixed (src/hnsw/README, VACUUM; test/t/
# 020).  Inserts alone, 16 clients, are as good as a CPU build.  hnsw under
# 16 clients with the default weights still finds 19655-19747 of 20000 (a
# CPU build 19918-19981), its writers outrunning the VACUUM loop (9-12 runs
# in 120 s), with or without the repair's substitutes (which fixed the
# same symptom where rows are updated several times before one VACUUM),
# and most of the gap is there before the last VACUUM (--measure-before).
# With writes slowed down (--weights "1 1 1 20") 120-190 rows were still
# lost, until the repair kept each list's live members (src/hnsw/README,
# VACUUM): 20000 of 20000.  The default weights, where the writers outrun
# the loop, still lose about 1.2% (19689 against 19931): open.  With 4
# clients (27 runs), and for matryoshka (19 runs), nothing is lost.
# Logs go to $OUT when set, else .device/logs.  The last lines are a table of
# the checks; the exit status is non-zero when any failed.
set -uo pipefail
# shellcheck source=test/gpu/device_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/device_lib.sh"

SOAK_SECONDS=150
SOAK_CLIENTS=$(nproc)
SOAK_ROWS=20000
SOAK_DIM=64
SOAK_AMS="hnsw matryoshka"
SOAK_WEIGHTS="1 1 1 2"
VACUUM_LOOP=1
MEASURE_BEFORE=0
EXTRA_SETTINGS=()
SOAK_QUERIES=100
SOAK_EF_SEARCH=200
SOAK_MIN_RECALL=0.95
SOAK_SELF_SAMPLE=20000
CENTRES=100

while [ $# -gt 0 ]; do
	case $1 in
		--seconds) SOAK_SECONDS=${2:?--seconds needs a number}; shift ;;
		--clients) SOAK_CLIENTS=${2:?--clients needs a number}; shift ;;
		--rows) SOAK_ROWS=${2:?--rows needs a number}; shift ;;
		--dim) SOAK_DIM=${2:?--dim needs a number}; shift ;;
		--ams) SOAK_AMS=${2:?--ams needs a list}; shift ;;
		--weights) SOAK_WEIGHTS=${2:?--weights needs four numbers}; shift ;;
		--no-vacuum-loop) VACUUM_LOOP=0 ;;
		--measure-before) MEASURE_BEFORE=1 ;;
		--setting) [[ ${2:-} == ?*=* ]] || die "--setting needs NAME=VALUE"
			EXTRA_SETTINGS+=("$2"); shift ;;
		-h|--help) sed -n '2,/^set /p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
		*) die "unknown argument '$1' (--help lists them)" ;;
	esac
	shift
done
for n in "$SOAK_SECONDS" "$SOAK_CLIENTS" "$SOAK_ROWS" "$SOAK_DIM"; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "'$n' is not a positive whole number"
done
[ $((SOAK_DIM % 4)) -eq 0 ] || die "--dim must be a multiple of 4 (granularities D/2, 3D/4)"
read -r -a WEIGHTS <<<"$SOAK_WEIGHTS"
[ ${#WEIGHTS[@]} -eq 4 ] || die "--weights needs four numbers, not '$SOAK_WEIGHTS'"
for n in "${WEIGHTS[@]}"; do
	[[ $n =~ ^[0-9]+$ ]] || die "--weights: '$n' is not a whole number"
done
[ $((WEIGHTS[0] + WEIGHTS[1] + WEIGHTS[2] + WEIGHTS[3])) -gt 0 ] || die "--weights: all are 0"

CHECKS=()
FAILED=0

# check NAME OK(0|1) DETAIL: one line of the final table
check()
{
	local status=pass

	[ "$2" -eq 1 ] || { status=FAIL; FAILED=$((FAILED + 1)); }
	CHECKS+=("$(printf '%-10s %-4s %-58s %s' "$AM" "$status" "$1" "$3")")
	say "$AM: $status: $1 ($3)"
}

server_log()
{
	if [ "$DEVICE_LOCAL" = 1 ]; then echo "$CLUSTER_DIR/server.log"; else echo /tmp/pgd/log; fi
}

# A random point of centre :c, as a pgbench script draws it.
random_point_sql()
{
	echo "(SELECT array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($SOAK_DIM)
		FROM centres, generate_series(1, $SOAK_DIM) d WHERE c = :c)"
}

write_scripts()
{
	local dir=$1 draw_id
	draw_id="SELECT last_value FROM inserted_ids \\gset
\\set from random(1, :last_value)
SELECT coalesce((SELECT id FROM items WHERE id >= :from ORDER BY id LIMIT 1), 0) AS id \\gset"

	cat >"$dir/insert.sql" <<SQL
\\set c random(0, $((CENTRES - 1)))
INSERT INTO items VALUES (nextval('inserted_ids'), $(random_point_sql));
SQL
	cat >"$dir/delete.sql" <<SQL
$draw_id
DELETE FROM items WHERE id = :id;
SQL
	cat >"$dir/update.sql" <<SQL
$draw_id
\\set c random(0, $((CENTRES - 1)))
WITH updated_row AS (UPDATE items SET v = $(random_point_sql) WHERE id = :id RETURNING id)
INSERT INTO updated SELECT id FROM updated_row;
SQL
	cat >"$dir/select.sql" <<SQL
\\set qid random(1, $SOAK_QUERIES)
SET enable_seqscan = off;
SET jit = off;
SELECT id FROM items ORDER BY v <-> (SELECT q FROM queries WHERE qid = :qid) LIMIT 10;
SQL
}

soak_one()
{
	local options='' dir=$DEVICE_WORK/soak-$AM log log_offset rc out
	local vacuum_pid vacuums loop_errors problems

	[ "$AM" = matryoshka ] &&
		options="WITH (granularities = '$((SOAK_DIM / 2)),$((3 * SOAK_DIM / 4))')"
	mkdir -p "$dir" || die "cannot create $dir"
	device_new_database "soak_$AM"
	say "$AM: $SOAK_ROWS clustered ${SOAK_DIM}-d rows and the index ..."
	sql <<SQL || die "setting up the $AM soak failed"
SELECT setseed(0.71);
CREATE TABLE centres AS
	SELECT c, array_agg(random() * 2 - 1 ORDER BY d) AS x
	FROM generate_series(0, $((CENTRES - 1))) c, generate_series(1, $SOAK_DIM) d GROUP BY c;
CREATE SEQUENCE inserted_ids START $((SOAK_ROWS + 1));
CREATE TABLE items (id int NOT NULL, v vector($SOAK_DIM));
INSERT INTO items
	SELECT i, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($SOAK_DIM)
	FROM generate_series(1, $SOAK_ROWS) i JOIN centres ON c = i % $CENTRES,
		generate_series(1, $SOAK_DIM) d
	GROUP BY i;
CREATE TABLE queries AS
	SELECT i AS qid, array_agg((x[d] + 1.5 * (random() - 0.5))::real ORDER BY d)::vector($SOAK_DIM) AS q
	FROM generate_series(1, $SOAK_QUERIES) i JOIN centres ON c = (i * 37) % $CENTRES,
		generate_series(1, $SOAK_DIM) d
	GROUP BY i;
CREATE INDEX items_l2 ON items USING $AM (v vector_l2_ops) $options;
CREATE INDEX items_id ON items (id);
CREATE TABLE updated (id int);
ANALYZE items;
SQL
	write_scripts "$dir"

	log=$(server_log)
	log_offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
	vacuum_pid=
	[ "$VACUUM_LOOP" -eq 1 ] && (
		end=$((SECONDS + SOAK_SECONDS)) n=0
		while [ $SECONDS -lt $end ]; do
			sql -c "VACUUM items" || exit 1
			n=$((n + 1))
			sleep 0.2
		done
		echo "$n" >"$dir/vacuums"
	) 2>"$dir/vacuum.err" &
	[ "$VACUUM_LOOP" -eq 1 ] && vacuum_pid=$!
	say "$AM: pgbench, $SOAK_CLIENTS clients for $SOAK_SECONDS s, weights $SOAK_WEIGHTS (insert, delete, update, query), VACUUM loop $([ "$VACUUM_LOOP" -eq 1 ] && echo on || echo off) ..."
	local files=() kinds=(insert delete update select) i
	for i in 0 1 2 3; do
		[ "${WEIGHTS[i]}" -eq 0 ] || files+=("--file=$dir/${kinds[i]}.sql@${WEIGHTS[i]}")
	done
	pgbench --no-vacuum --client="$SOAK_CLIENTS" --jobs="$SOAK_CLIENTS" --time="$SOAK_SECONDS" \
		"${files[@]}" "$DB" >"$dir/pgbench.out" 2>"$dir/pgbench.err"
	rc=$?
	[ -z "$vacuum_pid" ] || wait "$vacuum_pid"
	cp "$dir/pgbench.out" "$DEVICE_LOG_DIR/pgbench-$AM.out" 2>/dev/null
	grep -E '^(number of (transactions|failed)|tps|SQL script| - [0-9]+ transactions)' "$dir/pgbench.out" |
		sed 's/^/    /'

	check "pgbench exits 0" "$([ "$rc" -eq 0 ] && echo 1 || echo 0)" "exit $rc"
	check "pgbench: no failed transaction" \
		"$(grep -q '^number of failed transactions: 0 ' "$dir/pgbench.out" && echo 1 || echo 0)" \
		"$(grep -m1 '^number of failed' "$dir/pgbench.out" || echo 'no report')"
	check "pgbench: nothing on stderr" "$([ -s "$dir/pgbench.err" ] && echo 0 || echo 1)" \
		"$(head -c 300 "$dir/pgbench.err" | tr '\n' ' ')"
	if [ "$VACUUM_LOOP" -eq 1 ]; then
		vacuums=$(cat "$dir/vacuums" 2>/dev/null || echo 0)
		loop_errors=$(head -c 300 "$dir/vacuum.err" | tr '\n' ' ')
		check "the VACUUM loop ran and never failed" \
			"$([ "$vacuums" -gt 0 ] && [ -z "$loop_errors" ] && echo 1 || echo 0)" \
			"$vacuums runs${loop_errors:+; $loop_errors}"
	fi
	problems=$(tail -c +"$((log_offset + 1))" "$log" |
		grep -E '\b(ERROR|FATAL|PANIC)\b|server process .* was terminated' | head -n 5)
	check "the server log of the soak has no error" "$([ -z "$problems" ] && echo 1 || echo 0)" \
		"${problems:-none}"

	if [ "$MEASURE_BEFORE" -eq 1 ]; then
		local before_recall before_found
		exact_answers
		read -r before_recall before_found <<<"$(measure_index)"
		say "$AM: before the last VACUUM: recall@10 $before_recall, changed rows found first $before_found"
		sql -c "DROP TABLE exact" || die "dropping the exact answers failed"
	fi
	sql -c "VACUUM items" || die "the last VACUUM failed"
	out=$(sql -F ' ' -c "
		SELECT (SELECT count(*) FROM items), (SELECT last_value - $SOAK_ROWS FROM inserted_ids),
			   (SELECT count(*) FROM updated), i.elements, i.heap_tids,
			   i.deleted_elements, i.free_elements
		FROM hierindex_index_info('items_l2') i") ||
		die "reading the index's counts failed"
	local rows inserted updated elements heap_tids deleted free
	read -r rows inserted updated elements heap_tids deleted free <<<"$out"
	say "$AM: after a last VACUUM: $rows rows ($inserted inserted, $updated updates), index $elements elements ($free free), $heap_tids heap TIDs"
	check "one heap TID per row" "$([ "$heap_tids" = "$rows" ] && echo 1 || echo 0)" \
		"$heap_tids TIDs, $rows rows"
	check "every deleted element is free" "$([ "$deleted" = "$free" ] && echo 1 || echo 0)" \
		"$deleted deleted, $free free"
	check "every element live with one row, or free" \
		"$([ "$elements" -eq $((heap_tids + free)) ] && echo 1 || echo 0)" \
		"$elements = $heap_tids + $free"
	out=$(sql -c "SELECT count(*) FROM hierindex_check('items_l2')" 2>&1)
	check "hierindex_check finds nothing" "$([ "$out" = 0 ] && echo 1 || echo 0)" "$out problems"
	[ "$out" = 0 ] || sql -c "SELECT * FROM hierindex_check('items_l2') LIMIT 10" | sed 's/^/    /'

	exact_answers
	local recall found fresh_recall fresh_found
	if [ "$rows" -eq 0 ]; then
		say "$AM: the soak deleted every row (--weights): no query to measure"
		return
	fi
	read -r recall found <<<"$(measure_index)"
	check "recall@10 at ef_search $SOAK_EF_SEARCH >= $SOAK_MIN_RECALL" \
		"$(awk -v r="$recall" -v m="$SOAK_MIN_RECALL" 'BEGIN { print (r >= m) ? 1 : 0 }')" "$recall"

	# The reference is a CPU build: inserts link each element by the CPU
	# builder's own search, and a GPU build (what build_device auto picks on
	# the device machine from 50000 rows) links each one by an exact search,
	# a better graph on these hard points (README, Testing on the device
	# machine: 20000 of 20000 found where CPU-linked graphs find about 19800).
	say "$AM: a fresh CPU build on the same rows, to compare ..."
	sql -c "SET hierindex.build_device = cpu" \
		-c "CREATE INDEX items_l2_fresh ON items USING $AM (v vector_l2_ops) $options" \
		-c "DROP INDEX items_l2" || die "the fresh build failed"
	read -r fresh_recall fresh_found <<<"$(measure_index)"
	say "$AM: fresh CPU build: recall@10 $fresh_recall, changed rows found first $fresh_found"
	if [ "$DEVICE_LOCAL" != 1 ]; then
		local gpu_recall gpu_found
		sql -c "SET hierindex.build_device = gpu" \
			-c "CREATE INDEX items_l2_gpu ON items USING $AM (v vector_l2_ops) $options" \
			-c "DROP INDEX items_l2_fresh" || die "the fresh GPU build failed"
		read -r gpu_recall gpu_found <<<"$(measure_index)"
		say "$AM: fresh GPU build (for comparison, not checked): recall@10 $gpu_recall, changed rows found first $gpu_found"
	fi
	# On a large table a fresh build misses a few rows too (the data's own
	# hardness): the soak's index must find as many, less one in a thousand.
	if [ "${found#*/}" = 0 ]; then
		say "$AM: the soak changed no rows (--weights): nothing to look for"
	else
		check "changed rows found first, as by a fresh CPU build (-0.1%)" \
			"$(awk -v f="${found%/*}" -v g="${fresh_found%/*}" -v n="${found#*/}" \
				'BEGIN { print (f >= g - n / 1000) ? 1 : 0 }')" \
			"$found; a fresh CPU build on the same rows: $fresh_found"
	fi
}

# exact_answers: table exact, each query's true top 10 by a sequential scan
exact_answers()
{
	sql <<SQL || die "computing the exact answers failed"
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TABLE exact AS
	SELECT qid, array(SELECT id FROM items ORDER BY v <-> q LIMIT 10) AS ids FROM queries;
SQL
}

# measure_index: "recall found" of the table's one vector index: recall@10
# over the queries against table exact, and "F/N": how many of a random
# SOAK_SELF_SAMPLE rows the soak inserted or updated come back first from
# a query with their own vector (the same sample for the same rows).
measure_index()
{
	local out

	out=$(sql <<SQL
SET enable_seqscan = off;
SET hnsw.ef_search = $SOAK_EF_SEARCH;
SET matryoshka.ef_search = $SOAK_EF_SEARCH;
SELECT round(avg((SELECT count(*) FROM unnest(a.ids) id WHERE id = ANY (e.ids)))::numeric / 10, 4)
FROM (SELECT qid, array(SELECT id FROM items ORDER BY v <-> q LIMIT 10) AS ids FROM queries) a
	JOIN exact e USING (qid);
SELECT setseed(0.5);
SELECT count(*) FILTER (WHERE (SELECT t2.id FROM items t2 ORDER BY t2.v <-> t.v LIMIT 1) = t.id)
	|| '/' || count(*)
FROM (SELECT * FROM items
	  WHERE id > $SOAK_ROWS OR id IN (SELECT id FROM updated)
	  ORDER BY random() LIMIT $SOAK_SELF_SAMPLE) t;
SQL
	) || { echo "0 error"; return; }
	echo "$(head -n 1 <<<"$out") $(tail -n 1 <<<"$out")"
	# the shape of the graph, to compare (to stderr: the log, not the result)
	sql -F ' ' -c "SELECT 'levels', level_elements, 'degrees', level_avg_degree
		FROM hierindex_index_info((SELECT indexrelid::regclass FROM pg_index
			WHERE indrelid = 'items'::regclass AND indexrelid::regclass::text LIKE 'items_l2%'))" |
		sed "s/^/[$AM] /" >&2
}

device_setup
device_start_postgres "max_connections=$((SOAK_CLIENTS + 30))" shared_buffers=8GB maintenance_work_mem=8GB \
	max_wal_size=8GB autovacuum=off "${EXTRA_SETTINGS[@]}"
say "soak: $SOAK_CLIENTS clients, $SOAK_SECONDS s per access method, $SOAK_ROWS rows of $SOAK_DIM dims to start"
for AM in $SOAK_AMS; do
	soak_one
done

echo
echo "checks ($SOAK_CLIENTS clients, $SOAK_SECONDS s per access method):"
printf '%s\n' "${CHECKS[@]}"
echo "failed: $FAILED"
[ "$FAILED" -eq 0 ]
