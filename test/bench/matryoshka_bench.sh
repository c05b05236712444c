#!/bin/bash
# test/bench/matryoshka_bench.sh — the matryoshka benchmark of issue 6: the
# matryoshka index against a full-dimension hnsw index on the same data,
# through the same client and statements; build time, index size, and
# recall@10 and queries per second over a sweep of each index's ef_search;
# then queries per second interpolated at recall@10 0.95 and 0.99 and the
# ratios to hnsw, against the issue's targets.
#
#   bash test/bench/matryoshka_bench.sh [fmnist|gen768|gen3072|all] [options]
#
#   fmnist         Fashion-MNIST rotated onto its principal components
#                  (pca_rotate.c, fitted on the 60000 train images; largest
#                  variance first, so prefixes go from coarse to fine): the
#                  train images as base, the first 1000 test images as
#                  queries, 784-d; granularities '48,192,784' (48
#                  components hold enough for the coarse walk, and the index
#                  stays under half the hnsw index's size; '32,128,784' needs
#                  twice the ef_search for the same recall, '64,256,784' is
#                  faster at equal recall but just over half the size)
#   gen768         hnsw_bench.sh's generated 768-d set (gen_clustered.c,
#                  decaying spectrum), 100000 rows; granularities '64,256,768'
#   gen3072        the same recipe at 3072 dimensions, 50000 rows;
#                  granularities '64,256,1024,3072'; beyond the 2000 dimensions
#                  of an hnsw element page, so hnsw "cannot index" (its
#                  CREATE INDEX error is shown) and only matryoshka runs
#   all            the three, one after the other (the default)
#   --rows N       the first N base vectors of every data set chosen (a quick
#                  run; Fashion-MNIST has at most 60000)
#   --queries N    only the first N queries (default 1000)
#   --hnsw-ef "10 14 20 28 40 56 80 160"   the hnsw.ef_search values
#                  (default shown)
#   --mry-ef "12 14 20 28 40 56 80 160 320"  the matryoshka.ef_search values
#                  (default shown; 0 is the index's measured default, the
#                  setting's own default; it starts above LIMIT 10: at ef_search <=
#                  10 the first round's shortlist is all the executor gets
#                  before it asks for an 11th row, which takes a second round)
#   --am hnsw|matryoshka|both   which indexes to build and sweep (default
#                  both; the ratios need both)
#   --iterative-scan MODE   matryoshka.iterative_scan for every query
#                  (default: the server's default)
#   --funnel LIST  matryoshka.funnel for every query (default unset: every
#                  stage keeps all ef_search candidates)
#   --granularities LIST   the matryoshka granularities for every data set
#                  chosen, instead of the defaults above
#   --opclass l2|cosine  operator class and metric (default l2)
#   --m M --ef-construction E   options of both indexes (default 16 and 64)
#   --threads N    hierindex.build_threads for CREATE INDEX (default 0: all cores)
#   --seconds S    pgbench run per setting, one query per statement (default 5)
#   --repeat R     runs of the all-queries statement per setting; the fastest
#                  counts (default 3)
#   --floor        also measure, per data set, what remains of these
#                  statements without the search: each query's true top 10
#                  (from the ground truth) fetched through a btree on
#                  items.id, and again through their heap TIDs (a TID scan,
#                  what an index that knew them at no cost would leave: the
#                  heap fetches, the distances the executor computes and the
#                  statement's own work), both ordered by the same distance
#                  (recall 1 by construction); printed with the qps that 3x
#                  hnsw would need
#   --no-build     use the installed extension as it is (no make, no install)
#   --data-dir DIR cache of vectors and ground truth between runs
#                  (default ${TMPDIR:-/tmp}/hierindex-bench, as hnsw_bench.sh)
#   --shared-buffers SIZE the server's shared_buffers (default 2GB; a data set
#                  larger than that is read through the OS cache)
#   --maintenance-work-mem SIZE  for CREATE INDEX (default 2GB; a graph that
#                  does not fit is finished by single inserts, slowly)
#
# Per data set, as hnsw_bench.sh does it (bench_lib.sh is the common code):
# vectors and the exact full-dimension top-10 of every query (knn_truth.c,
# brute force in double) cached in the data directory; one throwaway cluster
# with fixed settings (shared_buffers and maintenance_work_mem 2GB unless
# the options say otherwise, jit off, no parallel query); the table loaded with binary COPY; then for each index
# in turn (hnsw, then matryoshka, each dropped before the next is built):
# CREATE INDEX timed on the server, pg_relation_size, and per ef_search the
# plans (the index must be used: "forced" when only enable_seqscan = off
# makes the planner use it), recall@10 of the all-queries statement
#   SELECT q.id, array(SELECT id FROM items ORDER BY embedding <-> q.embedding
#   LIMIT 10) FROM queries q
# its best time of --repeat runs (qps all/stmt), and pgbench -c 1 -M prepared
# with one such query per statement (qps 1/stmt).
#
# Interpolation: on each index's measured (recall, qps) points in recall
# order, the qps at a target recall is the straight line between the last
# point below it and the first at or above it.  When the smallest ef_search
# already reaches the target, that point's qps is a lower bound (">="); when
# none does, the index does not reach it in the sweep ("-").  The ratio
# table gives both modes, the size and build-time ratios, and the issue's
# targets: matryoshka qps >= 3x hnsw at equal recall, index <= 1/2 the size,
# build >= 2x faster.
#
# A full run (all three sets, defaults) took under 7 minutes on 2 cores
# (a loaded machine) with the data cached but for the 3072-d ground truth;
# the first run also makes the PCA rotation and the 3072-d set and the
# ground truths (a few more minutes).  The timings
# are only as quiet as the machine: the load average is printed at the
# start and the end.

set -u -o pipefail

BENCH_NAME=matryoshka_bench
# shellcheck source=bench_lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/bench_lib.sh"

DATASETS=(fmnist gen768 gen3072)
AMS="hnsw matryoshka"			# measured in this order (measure_each_am)
HNSW_EF_LIST="10 14 20 28 40 56 80 160"
MRY_EF_LIST="12 14 20 28 40 56 80 160 320"
FUNNEL=
ITERATIVE_SCAN=
FLOOR=0
SECONDS_PER_EF=5
REPEAT=3
HNSW_MAX_DIM=2000			# an hnsw element (one whole vector) must fit on a page
TARGET_RECALLS="0.95 0.99"

script_option()
{
	BENCH_SHIFT=2
	case $1 in
		fmnist|gen768|gen3072) DATASETS=("$1"); BENCH_SHIFT=1 ;;
		all) DATASETS=(fmnist gen768 gen3072); BENCH_SHIFT=1 ;;
		--hnsw-ef) HNSW_EF_LIST=${2-}; HNSW_EF_LIST=${HNSW_EF_LIST//,/ } ;;
		--mry-ef) MRY_EF_LIST=${2-}; MRY_EF_LIST=${MRY_EF_LIST//,/ } ;;
		--funnel) FUNNEL=${2-}; need_list --funnel "$FUNNEL" ;;
		--iterative-scan)
			case ${2-} in
				off|relaxed_order|strict_order) ITERATIVE_SCAN=$2 ;;
				*) die "--iterative-scan takes off, relaxed_order or strict_order, not '${2-}'" ;;
			esac
			;;
		--am) bench_am_option "${2-}" ;;
		--floor) FLOOR=1; BENCH_SHIFT=1 ;;
		--granularities) GRANULARITIES=${2-}; need_list --granularities "$GRANULARITIES" ;;
		*) return 1 ;;
	esac
}

bench_parse_args "$@"
need_count_list --hnsw-ef "$HNSW_EF_LIST" 1
need_count_list --mry-ef "$MRY_EF_LIST" 0
bench_check_opclass

bench_make_work_dir
RESULTS=$WORK/results		# one line per (data set, index, ef): see record_result

# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------

# Sets DS_NAME DS_DIM DS_ROWS DS_GRANULARITIES DS_BASE DS_QUERIES DS_TRUTH
# for data set $1 (bench_lib.sh's prefix data sets), and notes the
# granularities for the summary.
prepare_dataset()
{
	prepare_prefix_dataset "$1" || return 1
	echo "$1 $DS_GRANULARITIES" >>"$WORK/granularities"
}

# ---------------------------------------------------------------------------
# One data set
# ---------------------------------------------------------------------------

# record_result DATASET AM EF RECALL QPS_ONE QPS_ALL
record_result()
{
	printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$1" "$DS_NAME" "$DS_ROWS" "$DS_DIM" \
		"$2" "$BUILD_S" "$SIZE_MB" "$3" "$4" "$5" "$6" "$PLANNER_CHOICE" >>"$RESULTS"
}

# measure_index DATASET AM: build the index, sweep its ef_search, drop it.
measure_index()
{
	local ds=$1 am=$2 ef ef_list options settings err=$WORK/create.err

	options=$(am_index_options "$am")
	if [ "$am" = hnsw ]; then
		ef_list=$HNSW_EF_LIST
	else
		ef_list=$MRY_EF_LIST
	fi
	if ! create_index "$am" "$options" 2>"$err"; then
		cat "$err" >&2
		if [ "$am" = hnsw ] && [ "$DS_DIM" -gt "$HNSW_MAX_DIM" ]; then
			# expected: say so with the server's own words, and go on
			echo "hnsw cannot index $DS_DIM-d vectors: $(grep -m 1 ERROR "$err")"
			BUILD_S=- SIZE_MB=- PLANNER_CHOICE=-
			record_result "$ds" "$am" - "cannot index" - -
			return 0
		fi
		return 1
	fi
	printf '%-10s %6s  %9s  %12s  %12s  %s\n' index ef_search recall@$K "qps 1/stmt" "qps all/stmt" "planner chose the index"
	for ef in $ef_list; do
		settings="-c $am.ef_search=$ef"
		if [ "$am" = matryoshka ] && [ -n "$FUNNEL" ]; then
			settings="$settings -c matryoshka.funnel=$FUNNEL"
		fi
		if [ "$am" = matryoshka ] && [ -n "$ITERATIVE_SCAN" ]; then
			settings="$settings -c matryoshka.iterative_scan=$ITERATIVE_SCAN"
		fi
		export PGOPTIONS=$settings
		measure_setting || return 1
		printf '%-10s %6s  %9s  %12s  %12s  %s\n' "$am" "$ef" "$RECALL" "$QPS_ONE" "$QPS_ALL" "$PLANNER_CHOICE"
		record_result "$ds" "$am" "$ef" "$RECALL" "$QPS_ONE" "$QPS_ALL"
	done
	unset PGOPTIONS
	sql -c 'DROP INDEX items_embedding_idx' || return 1
}

# measure_floor DATASET: the --floor statements (file comment), both modes,
# as "DATASET|KIND|QPS_ONE|QPS_ALL|RECALL" lines in $WORK/floor, KIND btree
# (the true top K through a btree on id) or tid (through their heap TIDs, a
# TID scan: what remains for an index that knew them at no cost).
measure_floor()
{
	local kind plan path through

	sql <<'SQL' || return 1
CREATE INDEX items_id_idx ON items (id);
CREATE TABLE truth_tids AS
	SELECT t.query_id, array_agg(i.ctid) AS tids
	FROM truth t CROSS JOIN LATERAL unnest(t.ids) AS u(id) JOIN items i ON i.id = u.id
	GROUP BY t.query_id;
ALTER TABLE truth_tids ADD PRIMARY KEY (query_id);
ANALYZE truth_tids;
SQL
	unset PGOPTIONS
	for kind in btree tid; do
		# the filter, the plan node that must serve it, and how it reaches the rows
		case $kind in
			btree)
				QUERY_FILTER="id = ANY (CAST((SELECT ids FROM $TRUTH_TABLE WHERE query_id = :qid) AS int4[]))"
				path='Index Scan using items_id_idx' through='a btree on id' ;;
			tid)
				QUERY_FILTER="ctid = ANY (CAST((SELECT tids FROM truth_tids WHERE query_id = :qid) AS tid[]))"
				path='Tid Scan' through='their heap TIDs' ;;
		esac
		plan=$(sql -c "EXPLAIN $(all_queries_statement)") || return 1
		if ! grep -q "$path" <<<"$plan"; then
			echo "the $kind floor statement does not use a $path; its plan:" >&2
			sed 's/^/  /' <<<"$plan" >&2
			return 1
		fi
		measure_setting no-index || return 1
		printf '%-10s %6s  %9s  %12s  %12s  %s\n' floor "$kind" "$RECALL" "$QPS_ONE" "$QPS_ALL" \
			"(true top $K through $through)"
		echo "$1|$kind|$QPS_ONE|$QPS_ALL|$RECALL" >>"$WORK/floor"
	done
	QUERY_FILTER=
	sql -c 'DROP INDEX items_id_idx' -c 'DROP TABLE truth_tids'
}

run_dataset()
{
	local ds=$1

	DB=bench_$ds
	header "$DS_NAME: $DS_ROWS × $DS_DIM, $QUERIES queries, $OPCLASS, granularities $DS_GRANULARITIES (load average $(load_average))"
	load_dataset || return 1
	if [ "$FLOOR" = 1 ]; then
		measure_floor "$ds" || return 1
	fi
	measure_each_am "$ds"
}

# ---------------------------------------------------------------------------
# Summary: the measurements, Markdown rows, then the ratios at equal recall
# ---------------------------------------------------------------------------

# The interpolation of the file comment, per (data set, index, mode), as
# "DATASET|AM|TARGET|MODE|QPS" lines with QPS a number, ">=number" or "-".
interpolate()
{
	awk -F'|' -v targets="$TARGET_RECALLS" '
		$9 ~ /^[0-9.]+$/ {
			key = $1 "|" $5
			if (!(key in count)) order[++n] = key
			i = ++count[key]
			recall[key, i] = $9; qps[key, "1", i] = $10; qps[key, "all", i] = $11
		}
		END {
			split(targets, target, " ")
			for (o = 1; o <= n; o++) {
				key = order[o]; c = count[key]
				# sort the points by recall (insertion sort: a handful)
				for (i = 1; i <= c; i++) idx[i] = i
				for (i = 2; i <= c; i++)
					for (j = i; j > 1 && recall[key, idx[j]] < recall[key, idx[j - 1]]; j--) {
						t = idx[j]; idx[j] = idx[j - 1]; idx[j - 1] = t
					}
				for (m = 1; m <= 2; m++) {
					mode = m == 1 ? "1" : "all"
					for (ti = 1; ti in target; ti++) {
						r = target[ti] + 0; value = "-"
						for (i = 1; i <= c; i++) {
							hi = idx[i]
							if (recall[key, hi] + 0 < r) continue
							if (i == 1) value = ">=" qps[key, mode, hi]
							else {
								lo = idx[i - 1]
								f = (r - recall[key, lo]) / (recall[key, hi] - recall[key, lo])
								value = sprintf("%.0f", qps[key, mode, lo] + f * (qps[key, mode, hi] - qps[key, mode, lo]))
							}
							break
						}
						print key "|" target[ti] "|" mode "|" value
					}
				}
			}
		}' "$RESULTS"
}

print_summary()
{
	local threads_text

	[ -s "$RESULTS" ] || return 0
	threads_text=$(bench_threads_text)
	header "results"
	echo "m=$M ef_construction=$EF_CONSTRUCTION vector_${OPCLASS}_ops, build: $threads_text," \
		"matryoshka.funnel ${FUNNEL:-unset}, matryoshka.iterative_scan ${ITERATIVE_SCAN:-default}; recall@$K over $QUERIES queries against exact" \
		"full-dimension k-NN; qps 1/stmt: pgbench -c 1 -M prepared, ${SECONDS_PER_EF} s;" \
		"qps all/stmt: best of $REPEAT"
	echo "machine: $(nproc) cores; load average at start $LOAD_START, at the end $(load_average)"
	echo
	print_results_table "6 12 11 13 -7" ef recall "qps 1/stmt" "qps all/stmt" planner

	echo
	echo "| data | index | mode | build | size | recall@$K / queries per second at ef_search (hnsw: $(sed 's/ \+/ · /g' <<<"$HNSW_EF_LIST"); matryoshka: $(sed 's/ \+/ · /g' <<<"$MRY_EF_LIST")) |"
	echo "|---|---|---|---|---|---|"
	awk -F'|' -v threads="$threads_text" -v grans="$WORK/granularities" "$SWEEP_POINT_AWK"'
		BEGIN { while ((getline line < grans) > 0) { split(line, g, " "); gran[g[1]] = g[2] } }
		{
			key = $1 "|" $5
			if (!(key in name)) {
				order[++n] = key
				name[key] = $2 " " $3 "×" $4; build[key] = $6; size[key] = $7
				am[key] = $5 == "matryoshka" ? "matryoshka " gran[$1] : $5
			}
			if ($9 !~ /^[0-9.]+$/) { all[key] = one[key] = $9; next }
			add_sweep_point(key)
		}
		END {
			for (i = 1; i <= n; i++) {
				k = order[i]
				b = build[k] == "-" ? "-" : build[k] " s (" threads ")"
				s = size[k] == "-" ? "-" : size[k] " MB"
				if (all[k] == "cannot index") {
					printf "| %s | %s | - | - | - | cannot index (more than 2000 dimensions) |\n", name[k], am[k]
					continue
				}
				printf "| %s | %s | all queries in one statement | %s | %s | %s |\n", name[k], am[k], b, s, all[k]
				printf "| %s | %s | one query per statement | | | %s |\n", name[k], am[k], one[k]
			}
		}' "$RESULTS"

	echo
	echo "matryoshka against hnsw at equal recall@$K (qps interpolated on each sweep; target: >= 3x qps, <= 0.5x size, >= 2x faster build):"
	echo
	echo "| data | recall@$K | mode | hnsw qps | matryoshka qps | qps ratio (≥ 3) |"
	echo "|---|---|---|---|---|---|"
	interpolate | awk -F'|' '
		{
			v[$1, $2, $3, $4] = $5
			row = $1 "|" $3 "|" $4
			if (!(row in seen)) { seen[row] = 1; rows[++n] = row }
		}
		function ratio(h, m,   hn, mn) {
			if (h == "" || h == "-" || m == "-") return "-"
			hn = h; mn = m; sub(/^>=/, "", hn); sub(/^>=/, "", mn)
			if (h ~ /^>=/ && m ~ /^>=/) return "-"
			if (h ~ /^>=/) return sprintf("≤ %.2f×", mn / hn)
			if (m ~ /^>=/) return sprintf("≥ %.2f×", mn / hn)
			return sprintf("%.2f×", mn / hn)
		}
		function show(x) { if (x == "") return "cannot index"; if (x == "-") return "not reached"; sub(/^>=/, "≥ ", x); return x }
		END {
			for (i = 1; i <= n; i++) {
				split(rows[i], r, "|")
				if (!((r[1], "matryoshka", r[2], r[3]) in v)) continue
				h = v[r[1], "hnsw", r[2], r[3]]; m = v[r[1], "matryoshka", r[2], r[3]]
				printf "| %s | %s | %s | %s | %s | %s |\n", r[1], r[2],
					r[3] == "1" ? "one query per statement" : "all in one statement",
					show(h), show(m), ratio(h, m)
			}
		}'
	if [ -s "$WORK/floor" ]; then
		echo
		echo "The floors (--floor: each query's true top $K through a btree on id, or through their heap TIDs, then the same ORDER BY) against what 3× hnsw would need:"
		echo
		echo "| data | mode | floor qps, btree | floor qps, TIDs | hnsw qps at recall 0.95 | 3× that | hnsw qps at 0.99 | 3× that |"
		echo "|---|---|---|---|---|---|---|---|"
		interpolate | awk -F'|' -v floors="$WORK/floor" '
			BEGIN {
				while ((getline line < floors) > 0) {
					split(line, f, "|"); fl[f[1], f[2], "1"] = f[3]; fl[f[1], f[2], "all"] = f[4]
					if (!(f[1] in seen)) { seen[f[1]] = 1; ds[++n] = f[1] }
				}
			}
			$2 == "hnsw" { h[$1, $4, $3] = $5 }
			function times3(x) { if (x !~ /^[0-9.]+$/) return "-"; return sprintf("%.0f", 3 * x) }
			function show(x) { if (x == "") return "-"; return x }
			END {
				for (i = 1; i <= n; i++)
					for (m = 1; m <= 2; m++) {
						mode = m == 1 ? "1" : "all"
						printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", ds[i],
							mode == "1" ? "one query per statement" : "all in one statement",
							show(fl[ds[i], "btree", mode]), show(fl[ds[i], "tid", mode]),
							show(h[ds[i], mode, "0.95"]), times3(h[ds[i], mode, "0.95"]),
							show(h[ds[i], mode, "0.99"]), times3(h[ds[i], mode, "0.99"])
					}
			}'
	fi
	echo
	echo "| data | hnsw build | matryoshka build | build speed-up (≥ 2) | hnsw size | matryoshka size | size ratio (≤ 0.5) |"
	echo "|---|---|---|---|---|---|---|"
	awk -F'|' '
		!(($1, $5) in b) { b[$1, $5] = $6; s[$1, $5] = $7; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
		function num(x) { return x ~ /^[0-9.]+$/ }
		END {
			for (i = 1; i <= n; i++) {
				d = order[i]
				hb = b[d, "hnsw"]; mb = b[d, "matryoshka"]; hs = s[d, "hnsw"]; ms = s[d, "matryoshka"]
				sp = num(hb) && num(mb) && mb > 0 ? sprintf("%.2f×", hb / mb) : "-"
				sr = num(hs) && num(ms) && hs > 0 ? sprintf("%.2f", ms / hs) : "-"
				printf "| %s | %s | %s | %s | %s | %s | %s |\n", d,
					num(hb) ? hb " s" : "cannot index", num(mb) ? mb " s" : "-", sp,
					num(hs) ? hs " MB" : "-", num(ms) ? ms " MB" : "-", sr
			}
		}' "$RESULTS"
}

# ---------------------------------------------------------------------------

bench_main matryoshka-tools "${DATASETS[@]}"
