-- Iterative index scans (hnsw.iterative_scan, hnsw.max_scan_tuples,
-- hnsw.scan_mem_multiplier): the settings and their errors, and a filtered
-- query that an ordinary scan answers short and an iterative one in full.

-- ---------------------------------------------------------------------------
-- Settings: defaults, valid values, errors, SET LOCAL.
-- ---------------------------------------------------------------------------
SHOW hnsw.iterative_scan;
SHOW hnsw.max_scan_tuples;
SHOW hnsw.scan_mem_multiplier;
SET hnsw.iterative_scan = relaxed_order;
SHOW hnsw.iterative_scan;
SET hnsw.iterative_scan = 'STRICT_ORDER';
SHOW hnsw.iterative_scan;
SET hnsw.iterative_scan = strict;
SET hnsw.iterative_scan = on;
SET hnsw.iterative_scan = '';
SET hnsw.max_scan_tuples = 0;
SET hnsw.max_scan_tuples = -1;
SET hnsw.max_scan_tuples = 2147483648;
SET hnsw.max_scan_tuples = 'many';
SET hnsw.max_scan_tuples = 1;
SHOW hnsw.max_scan_tuples;
SET hnsw.scan_mem_multiplier = 0.5;
SET hnsw.scan_mem_multiplier = 1001;
SET hnsw.scan_mem_multiplier = 'NaN';
SET hnsw.scan_mem_multiplier = 2.5;
SHOW hnsw.scan_mem_multiplier;
RESET hnsw.iterative_scan;
RESET hnsw.max_scan_tuples;
RESET hnsw.scan_mem_multiplier;
-- per query: SET LOCAL ends with the transaction
BEGIN;
SET LOCAL hnsw.iterative_scan = strict_order;
SET LOCAL hnsw.max_scan_tuples = 100;
SHOW hnsw.iterative_scan;
SHOW hnsw.max_scan_tuples;
COMMIT;
SHOW hnsw.iterative_scan;
SHOW hnsw.max_scan_tuples;

-- ---------------------------------------------------------------------------
-- A filter that keeps 1% of 1000 rows: category = id % 100.
-- ---------------------------------------------------------------------------
SET hierindex.build_threads = 1;
CREATE TABLE hnsw_iter (id int, category int, v vector(4));
INSERT INTO hnsw_iter
SELECT i, i % 100,
	   ARRAY[sin(i * 0.7), cos(i * 1.3), sin(i * 2.9), cos(i * 0.31)]::real[]::vector
FROM generate_series(1, 1000) i;
CREATE INDEX hnsw_iter_v ON hnsw_iter USING hnsw (v vector_l2_ops);
ANALYZE hnsw_iter;

-- the exact answer (sequential scan)
SET enable_indexscan = off;
CREATE TABLE hnsw_iter_exact AS
SELECT id, v <-> '[0.1,0.2,0.3,0.4]' AS distance FROM hnsw_iter
WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5;
SELECT count(*) FROM hnsw_iter_exact;
RESET enable_indexscan;
SET enable_seqscan = off;
SET hnsw.ef_search = 10;

-- the plan is the same whatever the setting
SET hnsw.iterative_scan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_iter WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5;
SET hnsw.iterative_scan = relaxed_order;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_iter WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5;
SET hnsw.iterative_scan = strict_order;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_iter WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5;

-- off: one batch of ef_search = 10 rows holds (almost surely) fewer than 5
-- of the 10 rows of category 7
SET hnsw.iterative_scan = off;
SELECT count(*) < 5 AS short FROM (
	SELECT id FROM hnsw_iter WHERE category = 7
	ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;

-- relaxed_order and strict_order: exactly 5 rows, the exact ones
SET hnsw.iterative_scan = relaxed_order;
SELECT count(*) AS rows, count(*) FILTER (WHERE id IN (SELECT id FROM hnsw_iter_exact)) AS exact
FROM (SELECT id FROM hnsw_iter WHERE category = 7
	  ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;
SET hnsw.iterative_scan = strict_order;
SELECT count(*) AS rows, count(*) FILTER (WHERE id IN (SELECT id FROM hnsw_iter_exact)) AS exact
FROM (SELECT id FROM hnsw_iter WHERE category = 7
	  ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;

-- strict_order: every row at least as far as the one before, for a filter
-- that keeps 10% and a LIMIT far beyond ef_search
SELECT count(*) AS rows,
	   count(*) FILTER (WHERE distance < previous) AS out_of_order
FROM (SELECT distance, lag(distance) OVER (ORDER BY n) AS previous
	  FROM (SELECT v <-> '[0.1,0.2,0.3,0.4]' AS distance, row_number() OVER () AS n
			FROM (SELECT v FROM hnsw_iter WHERE category % 10 = 3
				  ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 60) a) b) c;

-- a filter nothing passes: how many rows the scan hands the executor
CREATE FUNCTION hnsw_iter_scanned() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
		SELECT id FROM hnsw_iter WHERE category = -1
		ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5
	LOOP
		IF line ~ 'Rows Removed by Filter' THEN
			RETURN substring(line FROM '(\d+)')::int;
		END IF;
	END LOOP;
	RETURN 0;
END $$;
SET hnsw.iterative_scan = off;
SELECT hnsw_iter_scanned();			-- one batch
SET hnsw.iterative_scan = relaxed_order;
SELECT hnsw_iter_scanned();			-- the whole graph
-- max_scan_tuples is checked between batches, and the live elements met by
-- then are still returned: at 100, more than one batch, far from all
SET hnsw.max_scan_tuples = 100;
SELECT hnsw_iter_scanned() BETWEEN 11 AND 500 AS limited;
RESET hnsw.max_scan_tuples;
-- the memory bound: 64kB of work_mem holds fewer than 1000 elements' state
SET work_mem = '64kB';
SELECT hnsw_iter_scanned() BETWEEN 11 AND 999 AS limited;
SET hnsw.scan_mem_multiplier = 10;
SELECT hnsw_iter_scanned();
RESET hnsw.scan_mem_multiplier;
RESET work_mem;

-- ---------------------------------------------------------------------------
-- Deleted elements take no result place: after deleting half the rows, a
-- plain scan (iterative_scan off) still returns ef_search rows.
-- ---------------------------------------------------------------------------
SET hnsw.iterative_scan = off;
DELETE FROM hnsw_iter WHERE id % 2 = 0;
VACUUM hnsw_iter;
SELECT deleted_elements FROM hierindex_index_info('hnsw_iter_v');
SELECT count(*) FROM (SELECT id FROM hnsw_iter ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;

RESET enable_seqscan;
RESET hnsw.ef_search;
RESET hnsw.iterative_scan;
RESET hierindex.build_threads;
DROP TABLE hnsw_iter, hnsw_iter_exact;
DROP FUNCTION hnsw_iter_scanned();
