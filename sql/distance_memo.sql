-- The distance an hnsw scan computed for a row it returns, handed to the
-- executor's own evaluation of the ORDER BY expression on that row
-- (src/distance_memo.c), so that a compressed row is not decompressed and an
-- out-of-line one not fetched from its TOAST table just to compute it again.
-- The memo must be invisible: every distance a query returns through the
-- index is bit for bit (float8send) the one computed with no index scan
-- open, for every operator and function, for another column of the same
-- rows, for another query vector, and under cosine (which is never memoised).

-- 1000-d rows with 25 non-zero elements: storage main (the type's) compresses
-- them in the row; w is the same pattern shifted, a second vector column.
CREATE TABLE memo_items (id int PRIMARY KEY, v vector(1000), w vector(1000));
INSERT INTO memo_items
SELECT i,
	   (SELECT array_agg(CASE WHEN j % 40 = i % 40 THEN ((i * j) % 23 - 11)::real / 8 ELSE 0 END)
		FROM generate_series(1, 1000) j)::vector,
	   (SELECT array_agg(CASE WHEN j % 40 = (i + 7) % 40 THEN ((i * j) % 19 - 9)::real / 4 ELSE 0 END)
		FROM generate_series(1, 1000) j)::vector
FROM generate_series(1, 400) i;
CREATE TABLE memo_queries (id int PRIMARY KEY, q vector(1000), other vector(1000));
INSERT INTO memo_queries
SELECT id, v + w, w FROM memo_items WHERE id <= 20;
-- the case the memo is for: every row compressed
SELECT count(*) AS rows, count(*) FILTER (WHERE pg_column_compression(v) IS NULL) AS not_compressed
FROM memo_items;

-- Rows and distances of each query's ten nearest through the index (a nested
-- loop rescanning it), then each distance recomputed with no index scan.
CREATE FUNCTION memo_check(opclass text, expr text, orderby text) RETURNS TABLE (rows bigint, differ bigint)
LANGUAGE plpgsql AS $$
BEGIN
	EXECUTE format('CREATE INDEX memo_idx ON memo_items USING hnsw (v %s) WITH (m = 8)', opclass);
	SET LOCAL enable_seqscan = off;
	EXECUTE format('CREATE TEMP TABLE via_index AS SELECT q.id AS qid, r.id, r.d
		FROM memo_queries q, LATERAL (SELECT id, %s AS d FROM memo_items t
			ORDER BY %s LIMIT 10) r', expr, orderby);
	DROP INDEX memo_idx;
	RETURN QUERY EXECUTE format('SELECT count(*), count(*) FILTER (WHERE float8send(x.d) IS DISTINCT FROM float8send(%s))
		FROM via_index x JOIN memo_items t USING (id) JOIN memo_queries q ON q.id = x.qid', expr);
	DROP TABLE via_index;
END
$$;

-- the plan memo_check measures: the index, rescanned per query
CREATE INDEX memo_idx ON memo_items USING hnsw (v vector_l2_ops) WITH (m = 8);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT q.id, r.id, r.d FROM memo_queries q,
	LATERAL (SELECT id, v <-> q.q AS d FROM memo_items t ORDER BY v <-> q.q LIMIT 10) r;
RESET enable_seqscan;
DROP INDEX memo_idx;

-- each operator on its own index
SELECT * FROM memo_check('vector_l2_ops', 't.v <-> q.q', 't.v <-> q.q');
SELECT * FROM memo_check('vector_ip_ops', 't.v <#> q.q', 't.v <#> q.q');
SELECT * FROM memo_check('vector_l1_ops', 't.v <+> q.q', 't.v <+> q.q');
SELECT * FROM memo_check('vector_cosine_ops', 't.v <=> q.q', 't.v <=> q.q');
-- the functions of the same kernels, in the select list of an L2 / IP scan
SELECT * FROM memo_check('vector_l2_ops', 'l2_distance(t.v, q.q)', 't.v <-> q.q');
SELECT * FROM memo_check('vector_l2_ops', 'vector_l2_squared_distance(t.v, q.q)', 't.v <-> q.q');
SELECT * FROM memo_check('vector_ip_ops', 'inner_product(t.v, q.q)', 't.v <#> q.q');
-- not what the scan computed: another column, another query, another metric, a prefix
SELECT * FROM memo_check('vector_l2_ops', 't.w <-> q.q', 't.v <-> q.q');
SELECT * FROM memo_check('vector_l2_ops', 't.v <-> q.other', 't.v <-> q.q');
SELECT * FROM memo_check('vector_l2_ops', 't.v <+> q.q', 't.v <-> q.q');
SELECT * FROM memo_check('vector_l2_ops', 'l2_distance(t.v, q.q, 500)', 't.v <-> q.q');

-- The rows after an UPDATE of another column (a HOT chain: the index holds
-- its root) and of the vector itself.
UPDATE memo_items SET w = v WHERE id % 3 = 0;
UPDATE memo_items SET v = w WHERE id % 5 = 0;
SELECT * FROM memo_check('vector_l2_ops', 't.v <-> q.q', 't.v <-> q.q');

-- Out of line (storage external): a hit skips the TOAST fetch, which the
-- table's TOAST statistics show.  Twenty queries return 200 rows; without
-- the memo (cosine) each reads its TOAST index and table.
CREATE TABLE memo_external (id int PRIMARY KEY, v vector(1000));
ALTER TABLE memo_external ALTER COLUMN v SET STORAGE external;
-- (through real[]: a compressed value would be stored as it is, in the row)
INSERT INTO memo_external SELECT id, v::real[]::vector FROM memo_items;
SELECT reltoastrelid::regclass AS memo_toast FROM pg_class WHERE relname = 'memo_external' \gset
SELECT count(DISTINCT chunk_id) AS out_of_line FROM :memo_toast;
CREATE INDEX memo_external_l2 ON memo_external USING hnsw (v vector_l2_ops) WITH (m = 8);
CREATE INDEX memo_external_cosine ON memo_external USING hnsw (v vector_cosine_ops) WITH (m = 8);
CREATE FUNCTION memo_toast_reads() RETURNS bigint LANGUAGE sql AS $$
	SELECT toast_blks_hit + toast_blks_read + tidx_blks_hit + tidx_blks_read
	FROM pg_statio_user_tables WHERE relname = 'memo_external'
$$;
CREATE TEMP TABLE memo_external_result (d float8);
-- the queries are literals, so the query side reads no TOAST
CREATE FUNCTION memo_external_run(op text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	query vector;
BEGIN
	SET LOCAL enable_seqscan = off;
	FOR query IN SELECT q FROM memo_queries ORDER BY id LOOP
		EXECUTE format('INSERT INTO memo_external_result SELECT v %s $1 FROM memo_external ORDER BY v %s $1 LIMIT 10', op, op)
			USING query;
	END LOOP;
END
$$;
SELECT pg_stat_force_next_flush();
SELECT memo_toast_reads() AS before \gset
SELECT memo_external_run('<->');
SELECT pg_stat_force_next_flush();
SELECT memo_toast_reads() - :before AS l2_toast_reads, count(*) AS l2_rows FROM memo_external_result;
TRUNCATE memo_external_result;
SELECT memo_toast_reads() AS before \gset
SELECT memo_external_run('<=>');
SELECT pg_stat_force_next_flush();
SELECT memo_toast_reads() - :before >= 200 AS cosine_reads_toast, count(*) AS cosine_rows FROM memo_external_result;

DROP FUNCTION memo_external_run(text);
DROP FUNCTION memo_toast_reads();
DROP FUNCTION memo_check(text, text, text);
DROP TABLE memo_external, memo_items, memo_queries;
