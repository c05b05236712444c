#!/bin/bash
# tools/demo.sh — build hierindex, load it into a throwaway PostgreSQL 15
# cluster and walk through its SQL surface on a reproducible data set.
#
#   bash tools/demo.sh
#
# Steps: tools/setup.sh (installs what is missing), make, make install,
# start a throwaway cluster (tools/cluster.sh), CREATE EXTENSION, generate
# 10 000 64-d vectors around 8 centres (seeded, so every run prints the same
# numbers), then one section per feature. The cluster is stopped and deleted
# at the end, also on error or Ctrl-C.
#
# Layout for later work: every section is a shell function run in the order
# listed in main(). The data set comes with 20 query vectors and their exact
# 10 nearest neighbours (table demo_truth, computed by a sequential scan), and
# section_indexes() measures recall@10 of an index against that truth with
# print_recall(). Adding an index kind means adding its CREATE INDEX there.

set -u -o pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO" || exit 1
# shellcheck source=tools/cluster.sh
source "$REPO/tools/cluster.sh"

PG_CONFIG=$CLUSTER_PG_BIN/pg_config
DIMS=64
ROWS=10000
CENTRES=8
QUERIES=20
K=10

die()
{
	echo "demo: $*" >&2
	exit 1
}

header()
{
	printf '\n=== %s ===\n' "$*"
}

# Run SQL from stdin in the demo database; stop at the first error.
sql()
{
	psql -X -q -v ON_ERROR_STOP=1 -P pager=off -d hierindex_demo "$@"
}

# ---------------------------------------------------------------------------
# Build, install, start
# ---------------------------------------------------------------------------

prepare()
{
	local log
	header "setup"
	bash "$REPO/tools/setup.sh" || die "tools/setup.sh failed"

	header "build"
	log=$(mktemp) || die "mktemp failed"
	cluster_at_exit "rm -f '$log'"
	if ! make -j"$(nproc)" PG_CONFIG="$PG_CONFIG" >"$log" 2>&1; then
		tail -n 40 "$log"
		die "make failed (last 40 lines above)"
	fi
	echo "make: ok"

	header "install and start a throwaway cluster"
	# The lock is held until the end of the demo so that the library the
	# server loads is the one built above.
	install_lock || die "could not take the install lock"
	if ! make_install >"$log" 2>&1; then
		tail -n 40 "$log"
		die "make install failed"
	fi
	echo "make install: ok ($("$PG_CONFIG" --pkglibdir)/hierindex.so)"
	cluster_start || die "could not start a cluster"
	psql -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE hierindex_demo' ||
		die "CREATE DATABASE failed"
	sql <<'SQL' || die "CREATE EXTENSION hierindex failed"
CREATE EXTENSION hierindex;
SELECT extname, extversion FROM pg_extension WHERE extname = 'hierindex';
SQL
}

# ---------------------------------------------------------------------------
# Data: ROWS vectors of DIMS dimensions around CENTRES random centres
# (uniform in [-1, 1]^DIMS), with Gaussian noise of sigma 0.15 per
# coordinate; QUERIES query vectors drawn the same way; demo_truth holds the
# exact K nearest neighbours (L2) of each query.
# ---------------------------------------------------------------------------

section_data()
{
	header "sample data: $ROWS vectors, $DIMS dimensions, $CENTRES clusters (seeded)"
	sql -v dims="$DIMS" -v rows="$ROWS" -v centres="$CENTRES" \
		-v queries="$QUERIES" -v k="$K" <<'SQL'
SELECT setseed(0.4242) \gset
-- Box-Muller: one standard normal sample from two uniform ones.
CREATE FUNCTION demo_gauss() RETURNS float8 LANGUAGE sql VOLATILE
	AS $$ SELECT sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) $$;

CREATE TABLE demo_centres AS
	SELECT c AS cluster, array_agg(random() * 2 - 1 ORDER BY d) AS centre
	FROM generate_series(1, :centres) AS c, generate_series(1, :dims) AS d
	GROUP BY c;

CREATE TABLE demo_items (
	id        integer PRIMARY KEY,
	cluster   integer NOT NULL,
	embedding vector(:dims) NOT NULL
);
INSERT INTO demo_items
	SELECT i, c.cluster,
		   (SELECT array_agg(c.centre[d] + 0.15 * demo_gauss() ORDER BY d)
			FROM generate_series(1, :dims) AS d)::vector
	FROM generate_series(1, :rows) AS i
	JOIN demo_centres AS c ON c.cluster = 1 + i % :centres;

CREATE TABLE demo_queries AS
	SELECT q AS id, c.cluster,
		   (SELECT array_agg(c.centre[d] + 0.15 * demo_gauss() ORDER BY d)
			FROM generate_series(1, :dims) AS d)::vector(:dims) AS embedding
	FROM generate_series(1, :queries) AS q
	JOIN demo_centres AS c ON c.cluster = 1 + q % :centres;
ANALYZE demo_items;

-- Ground truth for recall: exact K-NN by sequential scan, before any index.
SET enable_indexscan = off;
SET enable_bitmapscan = off;
CREATE TABLE demo_truth AS
	SELECT q.id AS query_id, n.rank, n.id
	FROM demo_queries AS q
	CROSS JOIN LATERAL (
		SELECT i.id, row_number() OVER (ORDER BY i.embedding <-> q.embedding) AS rank
		FROM demo_items AS i
		ORDER BY i.embedding <-> q.embedding
		LIMIT :k) AS n;
RESET enable_indexscan;
RESET enable_bitmapscan;

SELECT cluster, count(*) AS rows, min(vector_dims(embedding)) AS dims,
	   round(avg(vector_norm(embedding))::numeric, 3) AS avg_norm
FROM demo_items GROUP BY cluster ORDER BY cluster;
SQL
}

# ---------------------------------------------------------------------------
# The vector type: text form, arithmetic, casts
# ---------------------------------------------------------------------------

section_type()
{
	header "the vector type"
	sql <<'SQL'
\echo 'Text form, as in pgvector; the typmod fixes the dimension count:'
SELECT '[1, 2.5, -3e-1]'::vector AS v, '[1,2,3]'::vector(3) AS v3;

\echo 'Element-wise arithmetic:'
SELECT '[1,2,3]'::vector + '[10,20,30]' AS sum,
	   '[1,2,3]'::vector - '[1,1,1]'    AS difference,
	   '[1,2,3]'::vector * '[2,2,2]'    AS product;

\echo 'Casts to and from arrays:'
SELECT ARRAY[1, 2, 3]::vector AS from_int4,
	   ARRAY[0.5, 1.5]::float8[]::vector AS from_float8,
	   '[1.5,2.5]'::vector::real[] AS to_real;

\echo 'Errors say what is wrong (this one is expected):'
\set ON_ERROR_STOP 0
SELECT '[1,2]'::vector <-> '[1,2,3]'::vector;
\set ON_ERROR_STOP 1
SQL
}

# ---------------------------------------------------------------------------
# Exact nearest neighbours: every distance operator, sequential scan
# ---------------------------------------------------------------------------

section_exact_knn()
{
	header "exact k-NN (no index: sequential scan + top-k sort)"
	sql <<'SQL'
SELECT embedding AS q, cluster AS q_cluster FROM demo_queries WHERE id = 1 \gset

\echo 'Query 1 lies in cluster' :q_cluster
\echo
\echo 'L2 distance, <-> (smaller is nearer):'
SELECT id, cluster, round((embedding <-> :'q')::numeric, 4) AS l2_distance
FROM demo_items ORDER BY embedding <-> :'q' LIMIT 5;

\echo 'Cosine distance, <=> (1 - cosine similarity):'
SELECT id, cluster, round((embedding <=> :'q')::numeric, 4) AS cosine_distance
FROM demo_items ORDER BY embedding <=> :'q' LIMIT 5;

\echo 'Negative inner product, <#> (ascending order = largest product first; it'
\echo 'favours long vectors, so its top 5 differ from the L2 top 5):'
SELECT id, cluster, round((embedding <#> :'q')::numeric, 4) AS negative_inner_product
FROM demo_items ORDER BY embedding <#> :'q' LIMIT 5;

\echo 'L1 (taxicab) distance, <+>:'
SELECT id, cluster, round((embedding <+> :'q')::numeric, 4) AS l1_distance
FROM demo_items ORDER BY embedding <+> :'q' LIMIT 5;

\echo 'The plan: without an index this is a full scan and a top-5 sort.'
SET plan_cache_mode = force_generic_plan;
PREPARE knn(vector) AS SELECT id FROM demo_items ORDER BY embedding <-> $1 LIMIT 5;
EXPLAIN (COSTS OFF) EXECUTE knn(:'q');
SQL
}

# ---------------------------------------------------------------------------
# Vector functions and aggregates
# ---------------------------------------------------------------------------

section_functions()
{
	header "vector functions and aggregates"
	sql <<'SQL'
\echo 'vector_dims, vector_norm, and l2_normalize (unit norm afterwards):'
SELECT id, vector_dims(embedding) AS dims,
	   round(vector_norm(embedding)::numeric, 4) AS norm,
	   round(vector_norm(l2_normalize(embedding))::numeric, 4) AS normalized_norm
FROM demo_items WHERE id <= 3 ORDER BY id;

\echo 'subvector(v, start, count): the first 4 coordinates (1-based start):'
SELECT id, subvector(embedding, 1, 4) AS first_4 FROM demo_items WHERE id <= 3 ORDER BY id;

\echo 'avg(vector) per cluster recovers the centre (first 4 coordinates shown):'
SELECT c.cluster,
	   subvector(avg(i.embedding), 1, 4) AS avg_first_4,
	   c.centre[1:4]::vector AS centre_first_4,
	   round((avg(i.embedding) <-> c.centre::vector)::numeric, 4) AS l2_avg_to_centre
FROM demo_items AS i JOIN demo_centres AS c USING (cluster)
WHERE c.cluster <= 3
GROUP BY c.cluster, c.centre ORDER BY c.cluster;

\echo 'sum(vector) and the distance functions behind the operators:'
SELECT sum(v) AS sum,
	   l2_distance('[0,0]', '[3,4]') AS l2,
	   inner_product('[1,2]', '[3,4]') AS inner_product,
	   cosine_distance('[1,0]', '[0,1]') AS cosine,
	   l1_distance('[0,0]', '[3,4]') AS l1
FROM (VALUES ('[1,2]'::vector), ('[3,4]')) AS t(v);
SQL
}

# ---------------------------------------------------------------------------
# Indexes and recall. Index access methods are in development; each one is
# exercised here as soon as its access method exists in the installed
# extension, and skipped (with a note) before that.
# ---------------------------------------------------------------------------

# print_recall LABEL: recall@K of the plan the server picks now (an index
# scan when one is usable; sequential scans are disabled) against the exact
# neighbours in demo_truth. Also prints the plan, so a silent fallback to a
# sequential scan cannot pass for an index result.
print_recall()
{
	local label=$1 ef_search=${2:-40}
	sql -v k="$K" -v label="$label" -v ef="$ef_search" <<'SQL'
SET enable_seqscan = off;
SET hnsw.ef_search = :ef;
SET plan_cache_mode = force_generic_plan;
SELECT embedding AS q FROM demo_queries WHERE id = 1 \gset
PREPARE knn(vector) AS SELECT id FROM demo_items ORDER BY embedding <-> $1 LIMIT :k;
EXPLAIN (COSTS OFF) EXECUTE knn(:'q');
SELECT :'label' AS index, :ef AS ef_search, count(*) AS queries,
	   round(avg(hits)::numeric / :k, 3) AS recall_at_k
FROM (
	SELECT q.id, count(t.id) AS hits
	FROM demo_queries AS q
	CROSS JOIN LATERAL (
		SELECT i.id FROM demo_items AS i
		ORDER BY i.embedding <-> q.embedding LIMIT :k) AS got
	LEFT JOIN demo_truth AS t ON t.query_id = q.id AND t.id = got.id
	GROUP BY q.id) AS per_query;
SQL
}

have_access_method()
{
	[ "$(sql -At -c "SELECT count(*) FROM pg_am WHERE amname = '$1'")" = 1 ]
}

section_indexes()
{
	header "indexes and recall@$K against exact k-NN"

	# --- hnsw (pgvector-compatible syntax and options) ---
	if have_access_method hnsw; then
		sql -c 'CREATE INDEX demo_items_hnsw ON demo_items USING hnsw (embedding vector_l2_ops)' ||
			die "CREATE INDEX ... USING hnsw failed"
		sql -c "SELECT elements, pages, max_level, level_elements, round(build_seconds::numeric, 2) AS build_s
		        FROM hierindex_index_info('demo_items_hnsw')" || die "hierindex_index_info failed"
		sql -c "SELECT count(*) AS structural_problems FROM hierindex_check('demo_items_hnsw')" ||
			die "hierindex_check failed"
		print_recall "hnsw (m 16, ef_construction 64)" 40 || die "recall query failed"
		print_recall "hnsw (m 16, ef_construction 64)" 100 || die "recall query failed"
		sql -c 'DROP INDEX demo_items_hnsw' || die "DROP INDEX failed"
	else
		echo "hnsw: not in this build yet (in development); skipped"
	fi

	# --- matryoshka ---
	if have_access_method matryoshka; then
		sql -c 'CREATE INDEX demo_items_matryoshka ON demo_items USING matryoshka (embedding vector_l2_ops)' ||
			die "CREATE INDEX ... USING matryoshka failed"
		print_recall "matryoshka (default options)" || die "recall query failed"
		sql -c 'DROP INDEX demo_items_matryoshka' || die "DROP INDEX failed"
	else
		echo "matryoshka: not in this build yet (in development); skipped"
	fi
}

main()
{
	local start=$SECONDS
	prepare
	section_data || die "generating the sample data failed"
	section_type || die "the vector type section failed"
	section_exact_knn || die "the exact k-NN section failed"
	section_functions || die "the functions section failed"
	section_indexes
	header "done in $((SECONDS - start)) s; stopping the cluster"
	cluster_stop
	install_unlock
}

main "$@"
