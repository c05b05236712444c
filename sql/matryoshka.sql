-- matryoshka indexes: each operator class against the exact order, options
-- and their errors, settings and their errors, EXPLAIN, rows beyond the
-- shortlist, extreme magnitudes, a 3072-d table, inspection.
--
-- The data are seeded (setseed), and builds run on one thread, so every
-- run builds the same graphs.
SET hierindex.build_threads = 1;
SELECT setseed(0.25);

-- 500 rows of 32-d vectors with a decaying spectrum (dimension j has scale
-- 8/j, as Matryoshka embeddings put most information first) in 10 clusters,
-- and 20 queries drawn the same way.
-- (No autovacuum: VACUUM measures an index that has grown, and the tests
-- below say when.)
CREATE TABLE mry (id int PRIMARY KEY, v vector(32)) WITH (autovacuum_enabled = off);
INSERT INTO mry
SELECT i, (SELECT array_agg(((i % 10) - 4.5 + (random() - 0.5) * 3 + 0 * i) * (8.0 / j))::real[]
		   FROM generate_series(1, 32) j)::vector
FROM generate_series(1, 500) i;
CREATE TABLE mry_q (qid int, q vector(32));
INSERT INTO mry_q
SELECT i, (SELECT array_agg(((i % 10) - 4.5 + (random() - 0.5) * 3 + 0 * i) * (8.0 / j))::real[]
		   FROM generate_series(1, 32) j)::vector
FROM generate_series(1, 20) i;

-- For one operator: the first `k` ids of every query through the index and
-- by a sequential scan.  Returns the queries whose ids are equal, the
-- recall (the fraction of the exact ids the index found, over all queries),
-- the queries that got fewer than k rows, and the queries whose index scan
-- returned rows out of exact distance order (the executor re-checks the
-- index's lower bounds, so none may be).
CREATE FUNCTION mry_compare(op text, k int, OUT equal int, OUT recall numeric,
							OUT short int, OUT misordered int)
LANGUAGE plpgsql AS $$
DECLARE
	got int[];
	exact int[];
	q record;
	dists float8[];
BEGIN
	equal := 0;
	recall := 0;
	short := 0;
	misordered := 0;
	FOR q IN SELECT * FROM mry_q ORDER BY qid LOOP
		PERFORM set_config('enable_seqscan', 'off', true);
		PERFORM set_config('enable_indexscan', 'on', true);
		EXECUTE format('SELECT array_agg(id ORDER BY n), array_agg(d ORDER BY n) FROM (SELECT id, v %s $1 AS d, row_number() OVER () AS n FROM (SELECT id, v FROM mry ORDER BY v %s $1 LIMIT %s) s) t', op, op, k)
			INTO got, dists USING q.q;
		PERFORM set_config('enable_seqscan', 'on', true);
		PERFORM set_config('enable_indexscan', 'off', true);
		EXECUTE format('SELECT array_agg(id) FROM (SELECT id FROM mry ORDER BY v %s $1, id LIMIT %s) s', op, k)
			INTO exact USING q.q;
		IF got = exact THEN
			equal := equal + 1;
		END IF;
		IF coalesce(array_length(got, 1), 0) < k THEN
			short := short + 1;
		END IF;
		recall := recall + (SELECT count(*) FROM unnest(got) g WHERE g = ANY (exact));
		FOR i IN 2 .. coalesce(array_length(dists, 1), 0) LOOP
			IF dists[i] < dists[i - 1] THEN
				misordered := misordered + 1;
				EXIT;
			END IF;
		END LOOP;
	END LOOP;
	PERFORM set_config('enable_seqscan', 'on', true);
	PERFORM set_config('enable_indexscan', 'on', true);
	recall := round(recall / (k * (SELECT count(*) FROM mry_q)), 3);
END;
$$;

-- ---------------------------------------------------------------------------
-- each operator class
-- ---------------------------------------------------------------------------
CREATE INDEX mry_l2 ON mry USING matryoshka (v vector_l2_ops) WITH (granularities = '8,16');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM mry ORDER BY v <-> (SELECT q FROM mry_q WHERE qid = 1) LIMIT 10;
RESET enable_seqscan;
SELECT * FROM mry_compare('<->', 10);
SELECT * FROM hierindex_check('mry_l2');
SELECT access_method, metric, dimensions, m, ef_construction, elements, heap_tids,
	   build_method, format_version, granularities, default_ef_search
FROM hierindex_index_info('mry_l2');
DROP INDEX mry_l2;

CREATE INDEX mry_ip ON mry USING matryoshka (v vector_ip_ops) WITH (granularities = '8');
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM mry ORDER BY v <#> (SELECT q FROM mry_q WHERE qid = 1) LIMIT 10;
RESET enable_seqscan;
SELECT * FROM mry_compare('<#>', 10);
SELECT * FROM hierindex_check('mry_ip');
SELECT granularities FROM hierindex_index_info('mry_ip');
DROP INDEX mry_ip;

CREATE INDEX mry_cos ON mry USING matryoshka (v vector_cosine_ops) WITH (granularities = '4, 12, 20', m = 8, ef_construction = 32);
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM mry ORDER BY v <=> (SELECT q FROM mry_q WHERE qid = 1) LIMIT 10;
RESET enable_seqscan;
SELECT * FROM mry_compare('<=>', 10);
SELECT * FROM hierindex_check('mry_cos');
SELECT m, ef_construction, granularities FROM hierindex_index_info('mry_cos');
-- a narrow funnel, set per transaction: the first round hands out its 15
-- and LIMIT 10 needs no other, so rows its funnel cut are not seen again
-- (recall below 1, in exact order)
BEGIN;
SET LOCAL matryoshka.funnel = '30,20,15';
SET LOCAL matryoshka.ef_search = 60;
SELECT * FROM mry_compare('<=>', 10);
COMMIT;
SHOW matryoshka.funnel;
DROP INDEX mry_cos;

-- default granularities: 32 < 64, so the graph is on the whole vector
CREATE INDEX mry_l1 ON mry USING matryoshka (v vector_l1_ops);
SELECT * FROM mry_compare('<+>', 10);
SELECT dimensions, granularities FROM hierindex_index_info('mry_l1');
DROP INDEX mry_l1;

-- ---------------------------------------------------------------------------
-- more rows than ef_search: at ef_search 10, LIMIT 300 still returns 300
-- rows, nearly all of the exact 300, in exact order: the scan sees the LIMIT
-- and makes its first round 302 wide (matryoshka_limit.c).  Without a LIMIT
-- it can see (a cursor), rounds go on as the executor asks: a row an earlier
-- round missed is returned when a later, wider one finds it (test/t/060
-- counts such rows)
-- ---------------------------------------------------------------------------
CREATE INDEX mry_l2 ON mry USING matryoshka (v vector_l2_ops) WITH (granularities = '8,16');
SET matryoshka.ef_search = 10;
SELECT * FROM mry_compare('<->', 300);
SET enable_seqscan = off;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
	   bool_and(d >= prev) AS in_order
FROM (SELECT id, d, lag(d, 1, 0.0) OVER (ORDER BY n) AS prev
	  FROM (SELECT id, v <-> (SELECT q FROM mry_q WHERE qid = 3) AS d, row_number() OVER () AS n
			FROM (SELECT id, v FROM mry ORDER BY v <-> (SELECT q FROM mry_q WHERE qid = 3) LIMIT 300) s) t) u;
-- and past the whole table: every row, once
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows
FROM (SELECT id FROM mry ORDER BY v <-> (SELECT q FROM mry_q WHERE qid = 3) LIMIT 1000) s;
BEGIN;
DECLARE mry_cursor CURSOR FOR SELECT id FROM mry ORDER BY v <-> (SELECT q FROM mry_q WHERE qid = 3);
MOVE 300 FROM mry_cursor;
FETCH 2 FROM mry_cursor;
COMMIT;
RESET enable_seqscan;
RESET matryoshka.ef_search;
-- plain WHERE filters never use the index
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM mry WHERE id < 10;
RESET enable_seqscan;
DROP INDEX mry_l2;

-- ---------------------------------------------------------------------------
-- inserts after the build: half the rows built, the other half inserted one
-- at a time; the same recall bar as a full build, a clean check; an UPDATE
-- is found at its new place
-- ---------------------------------------------------------------------------
CREATE TABLE mry_rest AS SELECT * FROM mry WHERE id > 250;
DELETE FROM mry WHERE id > 250;
VACUUM mry;
CREATE INDEX mry_l2 ON mry USING matryoshka (v vector_l2_ops) WITH (granularities = '8,16');
INSERT INTO mry SELECT * FROM mry_rest;
SELECT elements, heap_tids FROM hierindex_index_info('mry_l2');
SELECT * FROM mry_compare('<->', 10);
SELECT * FROM hierindex_check('mry_l2');
-- the build measured 250 elements; at twice that, VACUUM measures again
SELECT default_ef_search > 0 AS measured, measured_elements FROM hierindex_index_info('mry_l2');
VACUUM mry;
SELECT default_ef_search BETWEEN 12 AND 1000 AS measured, measured_elements
FROM hierindex_index_info('mry_l2');
SELECT * FROM hierindex_check('mry_l2');
UPDATE mry SET v = (SELECT q FROM mry_q WHERE qid = 5) WHERE id = 17;
SET enable_seqscan = off;
SELECT id, v <-> (SELECT q FROM mry_q WHERE qid = 5) AS distance
FROM mry ORDER BY v <-> (SELECT q FROM mry_q WHERE qid = 5) LIMIT 1;
RESET enable_seqscan;
SELECT * FROM mry_compare('<->', 10);
DROP INDEX mry_l2;
DROP TABLE mry_rest;

-- an index built empty has no measure (scans use 40) until VACUUM measures
-- it through its pages: not while it is too small to measure, not at
-- ANALYZE, and again only once it has twice the elements of the last
-- measure; the scans then find the same rows as a built index's
CREATE TABLE mry_grow (id int, v vector(32)) WITH (autovacuum_enabled = off);
CREATE INDEX mry_grow_l2 ON mry_grow USING matryoshka (v vector_l2_ops) WITH (granularities = '8,16');
INSERT INTO mry_grow SELECT * FROM mry WHERE id <= 8;
VACUUM mry_grow;
SELECT elements, default_ef_search, measured_elements FROM hierindex_index_info('mry_grow_l2');
INSERT INTO mry_grow SELECT * FROM mry WHERE id > 8 AND id <= 200;
ANALYZE mry_grow;
SELECT elements, default_ef_search, measured_elements FROM hierindex_index_info('mry_grow_l2');
VACUUM mry_grow;
SELECT elements, default_ef_search BETWEEN 12 AND 1000 AS measured, measured_elements
FROM hierindex_index_info('mry_grow_l2');
INSERT INTO mry_grow SELECT * FROM mry WHERE id > 200 AND id <= 399;
VACUUM mry_grow;
SELECT elements, measured_elements FROM hierindex_index_info('mry_grow_l2');
INSERT INTO mry_grow SELECT * FROM mry WHERE id > 399;
VACUUM mry_grow;
SELECT elements, default_ef_search BETWEEN 12 AND 1000 AS measured, measured_elements
FROM hierindex_index_info('mry_grow_l2');
SELECT * FROM hierindex_check('mry_grow_l2');
SET enable_seqscan = off;
SELECT count(*) AS queries_matching_the_table_index
FROM mry_q q
WHERE array(SELECT id FROM mry_grow ORDER BY v <-> q.q LIMIT 10) =
	  array(SELECT id FROM mry ORDER BY v <-> q.q LIMIT 10);
RESET enable_seqscan;
DROP TABLE mry_grow;

-- duplicates through inserts: a row whose full vector equals an element's
-- shares it (inline, then in heap-TID overflow tuples); a row with an equal
-- prefix and a different tail, even one that differs by a millionth (which
-- half precision cannot tell apart), gets an element of its own
CREATE TABLE mry_dup (id int, v vector(32));
INSERT INTO mry_dup SELECT id, v FROM mry WHERE id <= 100;
CREATE INDEX mry_dup_l2 ON mry_dup USING matryoshka (v) WITH (granularities = '8');
INSERT INTO mry_dup SELECT 1000 + id, v FROM mry_dup WHERE id <= 30;
INSERT INTO mry_dup SELECT 2000 + i, v FROM mry_dup, generate_series(1, 20) i WHERE id = 1;
INSERT INTO mry_dup
SELECT 3000 + id, ((v::real[])[1:8] ||
				   (SELECT array_agg(x * 1.000001) FROM unnest((v::real[])[9:32]) x))::vector
FROM mry_dup WHERE id <= 10;
INSERT INTO mry_dup
SELECT 4000 + id, ((v::real[])[1:8] || array_fill(0::real, ARRAY[24]))::vector
FROM mry_dup WHERE id <= 10;
SELECT count(*) FILTER (WHERE a.v = b.v) AS equal_to_their_originals
FROM mry_dup a JOIN mry_dup b ON b.id = a.id - 3000 WHERE a.id > 3000 AND a.id < 4000;
-- 100 + 10 + 10 elements; 100 + 30 + 20 + 10 + 10 heap TIDs
SELECT elements, heap_tids FROM hierindex_index_info('mry_dup_l2');
SELECT * FROM hierindex_check('mry_dup_l2');
SET enable_seqscan = off;
-- row 1's 22 copies, each once, at distance 0
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows,
	   count(*) FILTER (WHERE d = 0) AS at_zero
FROM (SELECT id, v <-> (SELECT v FROM mry_dup WHERE id = 1) AS d
	  FROM mry_dup ORDER BY v <-> (SELECT v FROM mry_dup WHERE id = 1) LIMIT 22) s;
-- the near copy 3003 first, then row 3 and its copy
SELECT id FROM mry_dup ORDER BY v <-> (SELECT v FROM mry_dup WHERE id = 3003), id LIMIT 3;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows
FROM (SELECT id FROM mry_dup ORDER BY v <-> (SELECT v FROM mry_dup WHERE id = 4007) LIMIT 1000) s;
RESET enable_seqscan;
DROP TABLE mry_dup;

-- a build whose graph does not fit in maintenance_work_mem adds the rest
-- through inserts: the same rows, a clean check
CREATE TABLE mry_spill (id int, v vector(64));
INSERT INTO mry_spill
SELECT i, (SELECT array_agg(((i % 10) - 4.5 + sin(i * 7.1 + j * 1.3) * 1.5) * (8.0 / j))::real[]
		   FROM generate_series(1, 64) j)::vector
FROM generate_series(1, 3000) i;
SET maintenance_work_mem = '1MB';
CREATE INDEX mry_spill_l2 ON mry_spill USING matryoshka (v) WITH (granularities = '16,32');
RESET maintenance_work_mem;
SELECT elements, heap_tids FROM hierindex_index_info('mry_spill_l2');
SELECT * FROM hierindex_check('mry_spill_l2');
SET enable_seqscan = off;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows
FROM (SELECT id FROM mry_spill ORDER BY v <-> (SELECT v FROM mry_spill WHERE id = 2999) LIMIT 5000) s;
SELECT id FROM mry_spill ORDER BY v <-> (SELECT v FROM mry_spill WHERE id = 2999) LIMIT 1;
RESET enable_seqscan;
DROP TABLE mry_spill;

-- ---------------------------------------------------------------------------
-- NULLs, zero vectors, zero coarse prefixes, duplicates
-- ---------------------------------------------------------------------------
CREATE TABLE mry_small (id int, v vector(4));
INSERT INTO mry_small VALUES
	(1, '[1,2,3,4]'), (2, NULL), (3, '[0,0,0,0]'), (4, '[0,0,5,1]'),
	(5, '[1,2,3,4]'), (6, '[1,2,3,5]'), (7, '[1,2,-3,4]'), (8, '[0,0,1,5]');
CREATE INDEX mry_small_cos ON mry_small USING matryoshka (v vector_cosine_ops) WITH (granularities = '2');
-- 6 rows indexed (not the NULL, not the zero vector); rows 1 and 5 share an
-- element, rows 1 and 6 (equal prefix, different tail) do not
SELECT elements, heap_tids, granularities FROM hierindex_index_info('mry_small_cos');
SELECT * FROM hierindex_check('mry_small_cos');
SET enable_seqscan = off;
-- rows 4 and 8 have a zero coarse prefix: indexed, ranked on the full vector
SELECT id, round((v <=> '[0,0,1,1]')::numeric, 4) AS distance
FROM mry_small ORDER BY v <=> '[0,0,1,1]' LIMIT 10;
-- a zero query has no direction: no rows
SELECT id FROM mry_small ORDER BY v <=> '[0,0,0,0]' LIMIT 10;
-- a query of another dimension
SELECT id FROM mry_small ORDER BY v <=> '[1,2,3]' LIMIT 10;
RESET enable_seqscan;

-- ---------------------------------------------------------------------------
-- extreme magnitudes: huge and tiny values side by side; the lower bounds
-- must never exceed the exact distance (else: "index returned tuples in
-- wrong order"), and every query gets its 50 rows.  A 4-d coarse prefix
-- says little about such vectors, so wider rounds find rows the first
-- missed: they are returned late, never dropped.  With no LIMIT for the
-- scan to see (the rows are read in a loop), each round hands out only the
-- rows its release rule lets through (README, Scan 4): under l2 and cosine
-- every row then comes in order (in_order), under inner product and L1
-- some come late among the first 10 (first_in_order).  The build measures
-- how wide a round must be (default_ef_search, far above 50 here), so a
-- first round of its default width would find all 50 rows: ef_search 40
-- makes the later rounds happen
-- ---------------------------------------------------------------------------
SET matryoshka.ef_search = 40;
CREATE TABLE mry_wide (id int, v vector(16));
INSERT INTO mry_wide
SELECT i, (SELECT array_agg(((random() - 0.5) * power(10, (i % 13) * 5 - 30)) + 0 * j)::real[]
		   FROM generate_series(1, 16) j)::vector
FROM generate_series(1, 200) i;
INSERT INTO mry_wide
SELECT 1000 + i, (SELECT array_agg(CASE WHEN j % 2 = 0 THEN 1e30 ELSE 1e-30 END * (random() + 0 * i))::real[]
				  FROM generate_series(1, 16) j)::vector
FROM generate_series(1, 20) i;
CREATE FUNCTION mry_wide_check(op text, OUT rows bigint, OUT in_order bool, OUT first_in_order bool)
LANGUAGE plpgsql AS $$
DECLARE
	q vector;
BEGIN
	rows := 0;
	in_order := true;
	first_in_order := true;
	PERFORM set_config('enable_seqscan', 'off', true);
	FOR q IN SELECT v FROM mry_wide WHERE id % 17 = 1 OR id = 1005 LOOP
		DECLARE
			n bigint;
			ordered bool;
			first_ordered bool;
			d float8;
			prev float8;
		BEGIN
			-- the first 50 rows through a loop, not a LIMIT, which the
			-- scan would see and answer in one round of 52
			n := 0;
			ordered := true;
			first_ordered := true;
			prev := NULL;
			FOR d IN EXECUTE format('SELECT v %s $1 FROM mry_wide ORDER BY v %s $1', op, op) USING q LOOP
				n := n + 1;
				IF d < prev THEN
					ordered := false;
					first_ordered := first_ordered AND n > 10;
				END IF;
				prev := d;
				EXIT WHEN n = 50;
			END LOOP;
			rows := rows + n;
			in_order := in_order AND ordered;
			first_in_order := first_in_order AND first_ordered;
		END;
	END LOOP;
	PERFORM set_config('enable_seqscan', 'on', true);
END;
$$;
CREATE INDEX mry_wide_l2 ON mry_wide USING matryoshka (v vector_l2_ops) WITH (granularities = '4');
SELECT * FROM mry_wide_check('<->');
DROP INDEX mry_wide_l2;
CREATE INDEX mry_wide_ip ON mry_wide USING matryoshka (v vector_ip_ops) WITH (granularities = '4');
SELECT * FROM mry_wide_check('<#>');
DROP INDEX mry_wide_ip;
CREATE INDEX mry_wide_cos ON mry_wide USING matryoshka (v vector_cosine_ops) WITH (granularities = '4');
SELECT * FROM mry_wide_check('<=>');
DROP INDEX mry_wide_cos;
CREATE INDEX mry_wide_l1 ON mry_wide USING matryoshka (v vector_l1_ops) WITH (granularities = '4');
SELECT * FROM mry_wide_check('<+>');
SELECT * FROM hierindex_check('mry_wide_l1');
SELECT default_ef_search > 50 AS wide_default FROM hierindex_index_info('mry_wide_l1');
RESET matryoshka.ef_search;
SELECT * FROM mry_wide_check('<+>');
DROP INDEX mry_wide_l1;

-- ---------------------------------------------------------------------------
-- beyond hnsw's 2000 dimensions: 3072-d, fine parts split across pages
-- ---------------------------------------------------------------------------
CREATE TABLE mry_big (id int, v vector(3072));
INSERT INTO mry_big
SELECT i, (SELECT array_agg(((i % 5) - 2 + (random() - 0.5) + 0 * i) * (4.0 / sqrt(j)))::real[]
		   FROM generate_series(1, 3072) j)::vector
FROM generate_series(1, 150) i;
CREATE INDEX mry_big_cos ON mry_big USING matryoshka (v vector_cosine_ops) WITH (granularities = '64,512');
SELECT dimensions, elements, granularities, pages > elements / 2 AS fine_pages_present
FROM hierindex_index_info('mry_big_cos');
SELECT * FROM hierindex_check('mry_big_cos');
SET enable_seqscan = off;
SELECT array(SELECT id FROM mry_big ORDER BY v <=> (SELECT v FROM mry_big WHERE id = 42) LIMIT 5) AS via_index;
RESET enable_seqscan;
SET enable_indexscan = off;
SELECT array(SELECT id FROM mry_big ORDER BY v <=> (SELECT v FROM mry_big WHERE id = 42), id LIMIT 5) AS exact;
RESET enable_indexscan;
-- inserts of 3072-d rows: payloads of about 6 kB, split between the fine
-- insert page and a fresh one
INSERT INTO mry_big
SELECT 1000 + i, (SELECT array_agg(((i % 5) - 2 + sin(i * 3.1 + j) * 0.5) * (4.0 / sqrt(j)))::real[]
				  FROM generate_series(1, 3072) j)::vector
FROM generate_series(1, 30) i;
SELECT elements, heap_tids FROM hierindex_index_info('mry_big_cos');
SELECT * FROM hierindex_check('mry_big_cos');
SET enable_seqscan = off;
SELECT count(*) FILTER (WHERE (SELECT b2.id FROM mry_big b2 ORDER BY b2.v <=> b.v LIMIT 1) = b.id) AS found_first
FROM mry_big b WHERE id > 1000;
RESET enable_seqscan;
-- 12000-d: a payload of three pages, whose last piece is written before the
-- element's record
CREATE TABLE mry_huge (id int, v vector(12000));
INSERT INTO mry_huge
SELECT i, (SELECT array_agg(sin(i * 0.37 + j * 1.3)) FROM generate_series(1, 12000) j)::vector
FROM generate_series(1, 5) i;
CREATE INDEX mry_huge_l2 ON mry_huge USING matryoshka (v) WITH (granularities = '16,256');
INSERT INTO mry_huge
SELECT i, (SELECT array_agg(cos(i * 0.37 + j * 1.3)) FROM generate_series(1, 12000) j)::vector
FROM generate_series(6, 12) i;
INSERT INTO mry_huge SELECT 100 + id, v FROM mry_huge WHERE id > 8;
SELECT elements, heap_tids FROM hierindex_index_info('mry_huge_l2');
SELECT * FROM hierindex_check('mry_huge_l2');
SET enable_seqscan = off;
SELECT id FROM mry_huge ORDER BY v <-> (SELECT v FROM mry_huge WHERE id = 10), id LIMIT 2;
SELECT count(*) AS rows, count(DISTINCT id) AS distinct_rows
FROM (SELECT id FROM mry_huge ORDER BY v <-> (SELECT v FROM mry_huge WHERE id = 10) LIMIT 100) s;
RESET enable_seqscan;
DROP TABLE mry_huge;
-- hnsw cannot index this column
CREATE INDEX ON mry_big USING hnsw (v vector_cosine_ops);

-- ---------------------------------------------------------------------------
-- option errors
-- ---------------------------------------------------------------------------
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '8,x');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '8,,16');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '16,8');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '8,8');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '0,8');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '-4,8');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '1,2,3,4,5,6,7,8,9');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '1,2,3,4,5,6,7,8');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '8,64');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '2001,3000');
CREATE INDEX ON mry USING matryoshka (v) WITH (granularities = '99999999999');
CREATE INDEX ON mry USING matryoshka (v) WITH (m = 1);
CREATE INDEX ON mry USING matryoshka (v) WITH (m = 16, ef_construction = 16);
CREATE INDEX ON mry USING matryoshka (v) WITH (build_device = 'tpu');
CREATE INDEX ON mry USING matryoshka (v) WITH (unknown = 1);
CREATE TABLE mry_nodim (v vector);
CREATE INDEX ON mry_nodim USING matryoshka (v);

-- ---------------------------------------------------------------------------
-- settings and their errors
-- ---------------------------------------------------------------------------
SET matryoshka.ef_search = -1;
SET matryoshka.ef_search = 1001;
SET matryoshka.ef_search = 0;	-- each index's measured default, as unset
SHOW matryoshka.ef_search;
RESET matryoshka.ef_search;
SET matryoshka.funnel = '400,x';
SET matryoshka.funnel = '0';
SET matryoshka.funnel = '10001';
SET matryoshka.funnel = '1,2,3,4,5,6,7,8,9';
SET matryoshka.funnel = '400,100';
SHOW matryoshka.funnel;
SET matryoshka.funnel = '';
SET matryoshka.unknown = 1;

DROP TABLE mry, mry_q, mry_small, mry_wide, mry_big, mry_nodim;
DROP FUNCTION mry_compare, mry_wide_check;
