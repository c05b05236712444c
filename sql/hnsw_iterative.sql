-- Iterative index scans, for both access methods: the settings and their
-- errors (hnsw.iterative_scan, hnsw.max_scan_tuples,
-- hnsw.scan_mem_multiplier, and matryoshka's of the same names), and
-- filtered queries that an ordinary scan answers short and an iterative one
-- in full, within the limits.

-- The settings exist once the library is loaded (any use of the type loads
-- it); before that, SET would only make an unchecked placeholder.
SELECT '[1,2]'::vector;

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
-- matryoshka's own: the same values and ranges; iterative_scan defaults to
-- relaxed_order (src/matryoshka/README, Scan 4), and each access method's
-- settings leave the other's alone
SHOW matryoshka.iterative_scan;
SHOW matryoshka.max_scan_tuples;
SHOW matryoshka.scan_mem_multiplier;
SET matryoshka.iterative_scan = 'Off';
SHOW matryoshka.iterative_scan;
SET matryoshka.iterative_scan = strict_order;
SHOW matryoshka.iterative_scan;
SHOW hnsw.iterative_scan;
SET matryoshka.iterative_scan = strict;
SET matryoshka.iterative_scan = true;
SET matryoshka.iterative_scan = '';
SET matryoshka.max_scan_tuples = 0;
SET matryoshka.max_scan_tuples = 2147483648;
SET matryoshka.max_scan_tuples = '1e3x';
SET matryoshka.max_scan_tuples = 500;
SHOW matryoshka.max_scan_tuples;
SHOW hnsw.max_scan_tuples;
SET matryoshka.scan_mem_multiplier = 0.99;
SET matryoshka.scan_mem_multiplier = 1000.5;
SET matryoshka.scan_mem_multiplier = 'Infinity';
SET matryoshka.scan_mem_multiplier = 1000;
SHOW matryoshka.scan_mem_multiplier;
SHOW hnsw.scan_mem_multiplier;
RESET matryoshka.iterative_scan;
RESET matryoshka.max_scan_tuples;
RESET matryoshka.scan_mem_multiplier;
-- per query: SET LOCAL ends with the transaction
BEGIN;
SET LOCAL hnsw.iterative_scan = strict_order;
SET LOCAL hnsw.max_scan_tuples = 100;
SET LOCAL matryoshka.iterative_scan = off;
SHOW hnsw.iterative_scan;
SHOW hnsw.max_scan_tuples;
SHOW matryoshka.iterative_scan;
COMMIT;
SHOW hnsw.iterative_scan;
SHOW hnsw.max_scan_tuples;
SHOW matryoshka.iterative_scan;

-- ---------------------------------------------------------------------------
-- A filter that keeps 1% of 1000 rows (category = id % 100), and the same
-- checks on an index of each access method (iter_checks below).
-- ---------------------------------------------------------------------------
SET hierindex.build_threads = 1;
CREATE TABLE iter (id int, category int, v vector(4));
INSERT INTO iter
SELECT i, i % 100,
	   ARRAY[sin(i * 0.7), cos(i * 1.3), sin(i * 2.9), cos(i * 0.31)]::real[]::vector
FROM generate_series(1, 1000) i;
ANALYZE iter;

-- the exact answer (sequential scan)
CREATE TABLE iter_exact AS
SELECT id, v <-> '[0.1,0.2,0.3,0.4]' AS distance FROM iter
WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5;
SELECT count(*) FROM iter_exact;

-- A filter nothing passes: how many rows the scan hands the executor.
CREATE FUNCTION iter_scanned() RETURNS int LANGUAGE plpgsql AS $$
DECLARE
	line text;
BEGIN
	FOR line IN EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF)
		SELECT id FROM iter WHERE category = -1
		ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5
	LOOP
		IF line ~ 'Rows Removed by Filter' THEN
			RETURN substring(line FROM '(\d+)')::int;
		END IF;
	END LOOP;
	RETURN 0;
END $$;

-- The checks on the one index of table iter, of access method `am`, with
-- its settings (am.ef_search 10, am.iterative_scan, ...) set for this
-- statement only: one row per check, the outcome as text.
--   plan     the index serves the filtered query in every mode, the
--            filter above it
--   short    off: one batch or round of ef_search = 10 rows holds (almost
--            surely) fewer than 5 of the 10 rows of category 7
--   full     relaxed_order, strict_order: 5 rows, the exact ones
--   ordered  strict_order: a filter that keeps 10% and a LIMIT far beyond
--            ef_search, every row at least as far as the one before
--   scanned  with a filter nothing passes: off hands out one batch or round;
--            relaxed_order the whole graph; max_scan_tuples 100 (checked
--            between batches or rounds, the elements met by then still
--            returned) more than one, far from all; 64kB of work_mem holds
--            fewer than 1000 elements' state, ten times that all of them
CREATE FUNCTION iter_checks(am text, OUT check_name text, OUT outcome text)
RETURNS SETOF record LANGUAGE plpgsql AS $$
DECLARE
	mode text;
	line text;
BEGIN
	PERFORM set_config('enable_seqscan', 'off', true);
	PERFORM set_config(am || '.ef_search', '10', true);
	FOREACH mode IN ARRAY ARRAY['off', 'relaxed_order', 'strict_order'] LOOP
		PERFORM set_config(am || '.iterative_scan', mode, true);
		check_name := mode || ': plan';
		outcome := '';
		FOR line IN EXPLAIN (COSTS OFF)
			SELECT id FROM iter WHERE category = 7 ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5
		LOOP
			IF line ~ 'Scan|Filter' THEN
				outcome := outcome || ltrim(line, ' ->') || '; ';
			END IF;
		END LOOP;
		RETURN NEXT;
	END LOOP;

	PERFORM set_config(am || '.iterative_scan', 'off', true);
	check_name := 'off: short';
	SELECT count(*) < 5 INTO outcome FROM (
		SELECT id FROM iter WHERE category = 7
		ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;
	RETURN NEXT;

	FOREACH mode IN ARRAY ARRAY['relaxed_order', 'strict_order'] LOOP
		PERFORM set_config(am || '.iterative_scan', mode, true);
		check_name := mode || ': full (rows, exact)';
		SELECT count(*) || ', ' || count(*) FILTER (WHERE id IN (SELECT id FROM iter_exact))
		INTO outcome
		FROM (SELECT id FROM iter WHERE category = 7
			  ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 5) s;
		RETURN NEXT;
	END LOOP;

	check_name := 'strict_order: ordered (rows, out of order)';
	SELECT count(*) || ', ' || count(*) FILTER (WHERE distance < previous) INTO outcome
	FROM (SELECT distance, lag(distance) OVER (ORDER BY n) AS previous
		  FROM (SELECT v <-> '[0.1,0.2,0.3,0.4]' AS distance, row_number() OVER () AS n
				FROM (SELECT v FROM iter WHERE category % 10 = 3
					  ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 60) a) b) c;
	RETURN NEXT;

	PERFORM set_config(am || '.iterative_scan', 'off', true);
	check_name := 'off: scanned';
	outcome := iter_scanned();
	RETURN NEXT;
	PERFORM set_config(am || '.iterative_scan', 'relaxed_order', true);
	check_name := 'relaxed_order: scanned';
	outcome := iter_scanned();
	RETURN NEXT;
	PERFORM set_config(am || '.max_scan_tuples', '100', true);
	check_name := 'max_scan_tuples 100: scanned in 11..500';
	outcome := iter_scanned() BETWEEN 11 AND 500;
	RETURN NEXT;
	PERFORM set_config(am || '.max_scan_tuples', '20000', true);
	PERFORM set_config('work_mem', '64kB', true);
	check_name := 'work_mem 64kB: scanned in 11..999';
	outcome := iter_scanned() BETWEEN 11 AND 999;
	RETURN NEXT;
	PERFORM set_config(am || '.scan_mem_multiplier', '10', true);
	check_name := 'work_mem 64kB, scan_mem_multiplier 10: scanned';
	outcome := iter_scanned();
	RETURN NEXT;
END $$;

CREATE INDEX iter_v ON iter USING hnsw (v vector_l2_ops);
SELECT * FROM iter_checks('hnsw');
DROP INDEX iter_v;
-- granularities 3 (then 4): the graph on the first 3 of the 4 dimensions
CREATE INDEX iter_v ON iter USING matryoshka (v vector_l2_ops) WITH (granularities = '3');
SELECT * FROM iter_checks('matryoshka');
-- the settings are the function's own: nothing is left set
SHOW hnsw.iterative_scan;
SHOW matryoshka.iterative_scan;
SHOW work_mem;

-- ---------------------------------------------------------------------------
-- Deleted elements take no result place: after deleting half the rows, a
-- plain scan (iterative_scan off) of either index still returns ef_search
-- rows.  Both indexes see the DELETE and the VACUUM; each query runs with
-- the other index dropped (and the DROP rolled back).
-- ---------------------------------------------------------------------------
CREATE INDEX iter_h ON iter USING hnsw (v vector_l2_ops);
DELETE FROM iter WHERE id % 2 = 0;
VACUUM iter;
SELECT deleted_elements FROM hierindex_index_info('iter_h');
SELECT deleted_elements FROM hierindex_index_info('iter_v');
SET enable_seqscan = off;
SET hnsw.ef_search = 10;
SET hnsw.iterative_scan = off;
SET matryoshka.ef_search = 10;
SET matryoshka.iterative_scan = off;
BEGIN;
DROP INDEX iter_v;
SELECT count(*) FROM (SELECT id FROM iter ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;
ROLLBACK;
BEGIN;
DROP INDEX iter_h;
SELECT count(*) FROM (SELECT id FROM iter ORDER BY v <-> '[0.1,0.2,0.3,0.4]' LIMIT 10) s;
ROLLBACK;

RESET enable_seqscan;
RESET hnsw.ef_search;
RESET hnsw.iterative_scan;
RESET matryoshka.ef_search;
RESET matryoshka.iterative_scan;
RESET hierindex.build_threads;
DROP TABLE iter, iter_exact;
DROP FUNCTION iter_scanned(), iter_checks(text);
