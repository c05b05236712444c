-- hnsw indexes through their life: built empty and filled by inserts, built
-- then inserted into, NULLs, zero vectors under cosine, duplicates, TRUNCATE,
-- REINDEX, VACUUM, unlogged tables, the inspection functions, the planner.
--
-- Tables are small and hnsw.ef_search is at least the number of elements
-- wherever an order is printed, so every scan is exact.  Orders worked out
-- by hand are in the comments; elsewhere the index is compared with a
-- sequential scan in the same file.

SET enable_seqscan = off;

-- ---------------------------------------------------------------------------
-- Built on an empty table, then filled by inserts alone.
-- (Same rows and queries as hnsw_opclasses; l2 orders of q1..q3 start
-- 7 10 8 11 1 / 9 1 4 2 8 / 12 1 2 8 9.)
-- ---------------------------------------------------------------------------
CREATE TABLE hnsw_grow (id int, v vector(3));
CREATE INDEX hnsw_grow_l2 ON hnsw_grow USING hnsw (v vector_l2_ops);
SELECT access_method, metric, dimensions, m, ef_construction, elements, heap_tids
FROM hierindex_index_info('hnsw_grow_l2');
SELECT id FROM hnsw_grow ORDER BY v <-> '[1,2,3]' LIMIT 5;
INSERT INTO hnsw_grow VALUES (1, '[-1.4,-0.2,-0.8]');
SELECT id FROM hnsw_grow ORDER BY v <-> '[1,2,3]' LIMIT 5;
INSERT INTO hnsw_grow VALUES
	(2, '[-0.5,-0.9,1.6]'),
	(3, '[-2.4,1.3,-4.9]'),
	(4, '[-2.0,-1.6,-3.6]'),
	(5, '[2.4,-1.9,2.9]'),
	(6, '[4.6,-2.5,3.9]');
INSERT INTO hnsw_grow VALUES (7, '[3.1,1.7,-4.7]');
INSERT INTO hnsw_grow VALUES
	(8, '[-0.4,1.3,-2.0]'),
	(9, '[-2.8,-1.9,-2.4]'),
	(10, '[2.9,-1.5,-0.8]'),
	(11, '[1.4,4.5,-2.1]'),
	(12, '[-4.6,4.7,3.3]');
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('hnsw_grow_l2');
SELECT * FROM hierindex_check('hnsw_grow_l2');
CREATE TABLE hnsw_grow_queries (qid int, q vector(3));
INSERT INTO hnsw_grow_queries VALUES
	(1, '[2.9,0.2,-2.7]'),
	(2, '[-3.5,-2.0,-0.4]'),
	(3, '[-4.3,2.0,2.3]');
SELECT qid, array(SELECT id FROM hnsw_grow ORDER BY v <-> q LIMIT 12)
FROM hnsw_grow_queries ORDER BY qid;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT qid, array(SELECT id FROM hnsw_grow ORDER BY v <-> q LIMIT 12)
FROM hnsw_grow_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;

-- UPDATE adds a new version: the moved row is found at its new place
UPDATE hnsw_grow SET v = '[2.9,0.2,-2.6]' WHERE id = 12;
SELECT id FROM hnsw_grow ORDER BY v <-> '[2.9,0.2,-2.7]' LIMIT 3;

-- ---------------------------------------------------------------------------
-- VACUUM: deleted rows' elements are marked deleted and never returned;
-- the graph still leads past them, and inserts after VACUUM are found.
-- ---------------------------------------------------------------------------
DELETE FROM hnsw_grow WHERE id IN (7, 10);
VACUUM hnsw_grow;
-- 7, 10 and the old version of 12
SELECT deleted_elements, free_elements, free_bytes > 0 AS has_free_bytes
FROM hierindex_index_info('hnsw_grow_l2');
SELECT * FROM hierindex_check('hnsw_grow_l2');
-- q1 without 7 and 10 (12 now sits next to q1): 12 8 11 1 ...
SELECT qid, array(SELECT id FROM hnsw_grow ORDER BY v <-> q LIMIT 12)
FROM hnsw_grow_queries ORDER BY qid;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT qid, array(SELECT id FROM hnsw_grow ORDER BY v <-> q LIMIT 12)
FROM hnsw_grow_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;
INSERT INTO hnsw_grow VALUES (13, '[-3.5,-2.0,-0.5]');
SELECT id FROM hnsw_grow ORDER BY v <-> '[-3.5,-2.0,-0.4]' LIMIT 2;
DROP TABLE hnsw_grow;

-- ---------------------------------------------------------------------------
-- Built on 5 rows, then 295 inserted: the index still gives the exact top
-- 10 of 20 queries (ef_search 1000 > 300 elements).
-- ---------------------------------------------------------------------------
SELECT setseed(0.5);
CREATE TABLE hnsw_source AS
	SELECT i AS id, array_agg((random() * 2 - 1)::real ORDER BY d)::vector(16) AS v
	FROM generate_series(1, 300) i, generate_series(1, 16) d
	GROUP BY i;
CREATE TABLE hnsw_ins_queries AS
	SELECT i AS qid, array_agg((random() * 2 - 1)::real ORDER BY d)::vector(16) AS q
	FROM generate_series(1, 20) i, generate_series(1, 16) d
	GROUP BY i;
CREATE TABLE hnsw_ins (id int, v vector(16));
INSERT INTO hnsw_ins SELECT * FROM hnsw_source WHERE id <= 5;
CREATE INDEX hnsw_ins_cosine ON hnsw_ins USING hnsw (v vector_cosine_ops) WITH (m = 8, ef_construction = 32);
CREATE INDEX hnsw_ins_ip ON hnsw_ins USING hnsw (v vector_ip_ops);
INSERT INTO hnsw_ins SELECT * FROM hnsw_source WHERE id > 5 ORDER BY id;
SELECT metric, m, ef_construction, elements, heap_tids FROM hierindex_index_info('hnsw_ins_cosine');
SELECT metric, m, ef_construction, elements, heap_tids FROM hierindex_index_info('hnsw_ins_ip');
SELECT * FROM hierindex_check('hnsw_ins_cosine');
SELECT * FROM hierindex_check('hnsw_ins_ip');
SET enable_seqscan = on;
SET enable_indexscan = off;
CREATE TABLE hnsw_ins_exact AS
	SELECT qid,
		array(SELECT id FROM hnsw_ins ORDER BY v <=> q LIMIT 10) AS cosine,
		array(SELECT id FROM hnsw_ins ORDER BY v <#> q LIMIT 10) AS ip
	FROM hnsw_ins_queries;
RESET enable_indexscan;
SET enable_seqscan = off;
SET hnsw.ef_search = 1000;
SELECT count(*) FILTER (WHERE a.cosine = e.cosine) AS cosine,
	count(*) FILTER (WHERE a.ip = e.ip) AS ip
FROM (SELECT qid,
		array(SELECT id FROM hnsw_ins ORDER BY v <=> q LIMIT 10) AS cosine,
		array(SELECT id FROM hnsw_ins ORDER BY v <#> q LIMIT 10) AS ip
	FROM hnsw_ins_queries) a
JOIN hnsw_ins_exact e USING (qid);

-- ---------------------------------------------------------------------------
-- REINDEX gives an index with the same answers.
-- ---------------------------------------------------------------------------
REINDEX INDEX hnsw_ins_cosine;
REINDEX TABLE hnsw_ins;
SELECT metric, m, ef_construction, elements, heap_tids, build_method
FROM hierindex_index_info('hnsw_ins_cosine');
SELECT * FROM hierindex_check('hnsw_ins_cosine');
SELECT * FROM hierindex_check('hnsw_ins_ip');
SELECT count(*) FILTER (WHERE a.cosine = e.cosine) AS cosine,
	count(*) FILTER (WHERE a.ip = e.ip) AS ip
FROM (SELECT qid,
		array(SELECT id FROM hnsw_ins ORDER BY v <=> q LIMIT 10) AS cosine,
		array(SELECT id FROM hnsw_ins ORDER BY v <#> q LIMIT 10) AS ip
	FROM hnsw_ins_queries) a
JOIN hnsw_ins_exact e USING (qid);
RESET hnsw.ef_search;
DROP TABLE hnsw_ins, hnsw_ins_queries, hnsw_ins_exact;

-- ---------------------------------------------------------------------------
-- NULLs are not indexed and never come out of an index scan.
-- Query [1,0.4,0.2]: 1 (0.447), 7 (0.632), 3 (1.183), 5 (1.342).
-- ---------------------------------------------------------------------------
CREATE TABLE hnsw_nulls (id int, v vector(3));
INSERT INTO hnsw_nulls VALUES (1, '[1,0,0]'), (2, NULL), (3, '[0,1,0]'), (4, NULL), (5, '[0,0,1]');
CREATE INDEX hnsw_nulls_l2 ON hnsw_nulls USING hnsw (v);
INSERT INTO hnsw_nulls VALUES (6, NULL), (7, '[1,1,0]');
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_nulls_l2');
SELECT id, v FROM hnsw_nulls ORDER BY v <-> '[1,0.4,0.2]' LIMIT 10;
-- a sequential scan sorts the NULLs last
SET enable_seqscan = on;
SET enable_indexscan = off;
EXPLAIN (COSTS OFF)
SELECT id, v FROM hnsw_nulls ORDER BY v <-> '[1,0.4,0.2]', id LIMIT 10;
SELECT id, v FROM hnsw_nulls ORDER BY v <-> '[1,0.4,0.2]', id LIMIT 10;
RESET enable_indexscan;
SET enable_seqscan = off;
-- a table of NULLs only
CREATE TABLE hnsw_all_nulls (id int, v vector(3));
INSERT INTO hnsw_all_nulls SELECT i, NULL FROM generate_series(1, 5) i;
CREATE INDEX hnsw_all_nulls_l2 ON hnsw_all_nulls USING hnsw (v);
INSERT INTO hnsw_all_nulls VALUES (6, NULL);
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_all_nulls_l2');
SELECT id FROM hnsw_all_nulls ORDER BY v <-> '[1,0,0]' LIMIT 10;
SELECT * FROM hierindex_check('hnsw_all_nulls_l2');
INSERT INTO hnsw_all_nulls VALUES (7, '[1,1,1]');
SELECT id FROM hnsw_all_nulls ORDER BY v <-> '[1,0,0]' LIMIT 10;
DROP TABLE hnsw_nulls, hnsw_all_nulls;

-- ---------------------------------------------------------------------------
-- Under cosine, zero vectors have no direction: not indexed, not returned.
-- Query [1,0.2,0]: 7 [3,1,0] (0.0077), 2 [1,0,0] (0.0194),
-- 5 [1,1,1] (0.3206), 3 [0,2,0] (0.8039).
-- ---------------------------------------------------------------------------
CREATE TABLE hnsw_zero (id int, v vector(3));
INSERT INTO hnsw_zero VALUES (1, '[0,0,0]'), (2, '[1,0,0]'), (3, '[0,2,0]'), (4, '[0,0,0]'), (5, '[1,1,1]');
CREATE INDEX hnsw_zero_cosine ON hnsw_zero USING hnsw (v vector_cosine_ops);
INSERT INTO hnsw_zero VALUES (6, '[0,0,0]'), (7, '[3,1,0]');
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_zero_cosine');
SELECT id, round((v <=> '[1,0.2,0]')::numeric, 4) AS distance
FROM hnsw_zero ORDER BY v <=> '[1,0.2,0]' LIMIT 10;
-- a sequential scan returns them too (distance NaN, sorted last)
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT id, v <=> '[1,0.2,0]' AS distance
FROM hnsw_zero ORDER BY v <=> '[1,0.2,0]', id LIMIT 10;
RESET enable_indexscan;
SET enable_seqscan = off;
SELECT * FROM hierindex_check('hnsw_zero_cosine');
-- a table of zero vectors only
CREATE TABLE hnsw_all_zero (id int, v vector(2));
INSERT INTO hnsw_all_zero SELECT i, '[0,0]' FROM generate_series(1, 3) i;
CREATE INDEX hnsw_all_zero_cosine ON hnsw_all_zero USING hnsw (v vector_cosine_ops);
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_all_zero_cosine');
SELECT id FROM hnsw_all_zero ORDER BY v <=> '[1,0]' LIMIT 10;
INSERT INTO hnsw_all_zero VALUES (4, '[0,1]');
SELECT id FROM hnsw_all_zero ORDER BY v <=> '[1,0]' LIMIT 10;
-- under l2 a zero vector is an ordinary point (1, 4 and 6 share one element)
CREATE INDEX hnsw_zero_l2 ON hnsw_zero USING hnsw (v vector_l2_ops);
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_zero_l2');
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_zero ORDER BY v <-> '[0,0,0]' LIMIT 3) s;
DROP TABLE hnsw_zero, hnsw_all_zero;

-- ---------------------------------------------------------------------------
-- Duplicates: rows with the identical vector share one element (any number
-- of heap TIDs) and every one of them comes back.
-- From [1,1,1]: the 25 copies (0), 26 (0.5), 27 (1.732), 29 (2.062),
-- 28 (2.236), 30 (6.928).
-- ---------------------------------------------------------------------------
CREATE TABLE hnsw_dups (id int, v vector(3));
INSERT INTO hnsw_dups SELECT i, '[1,1,1]' FROM generate_series(1, 25) i;
INSERT INTO hnsw_dups VALUES
	(26, '[1,1,1.5]'), (27, '[2,2,2]'), (28, '[-1,0,1]'), (29, '[0,0,-0.5]'), (30, '[5,5,5]');
CREATE INDEX hnsw_dups_l2 ON hnsw_dups USING hnsw (v);
-- 25 copies in one element, plus 5 others
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_dups_l2');
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 25) s;
SELECT id FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 5 OFFSET 25;
-- 15 more copies of [1,1,1] and 5 of [2,2,2] through inserts
INSERT INTO hnsw_dups SELECT i, '[1,1,1]' FROM generate_series(31, 45) i;
INSERT INTO hnsw_dups SELECT i, '[2,2,2]' FROM generate_series(46, 50) i;
SELECT heap_tids, elements < heap_tids AS shared FROM hierindex_index_info('hnsw_dups_l2');
SELECT * FROM hierindex_check('hnsw_dups_l2');
SELECT count(*), count(*) FILTER (WHERE v = '[1,1,1]') AS copies FROM
	(SELECT id, v FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 40) s;
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 7 OFFSET 40) s;
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_dups ORDER BY v <-> '[2,2,2]' LIMIT 6) s;

-- 500 copies of one vector do not trap searches for other vectors
CREATE TABLE hnsw_many_dups (id int, v vector(3));
INSERT INTO hnsw_many_dups SELECT i, '[0,0,0]' FROM generate_series(101, 600) i;
INSERT INTO hnsw_many_dups VALUES
	(1, '[-1.4,-0.2,-0.8]'), (2, '[-0.5,-0.9,1.6]'), (3, '[-2.4,1.3,-4.9]'),
	(4, '[-2.0,-1.6,-3.6]'), (5, '[2.4,-1.9,2.9]'), (6, '[4.6,-2.5,3.9]'),
	(7, '[3.1,1.7,-4.7]'), (8, '[-0.4,1.3,-2.0]'), (9, '[-2.8,-1.9,-2.4]'),
	(10, '[2.9,-1.5,-0.8]'), (11, '[1.4,4.5,-2.1]'), (12, '[-4.6,4.7,3.3]');
CREATE INDEX hnsw_many_dups_l1 ON hnsw_many_dups USING hnsw (v vector_l1_ops);
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_many_dups_l1');
SET hnsw.ef_search = 100;
-- l1 from q1 [2.9,0.2,-2.7]: 10 (3.6), 7 (3.7), 8 (5.1), the 500 copies
-- (5.8), 11 (6.4), 1 (6.6)
SELECT id FROM hnsw_many_dups ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 3;
SELECT count(*) FILTER (WHERE id > 100) FROM
	(SELECT id FROM hnsw_many_dups ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 503) s;
SELECT id FROM hnsw_many_dups ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 2 OFFSET 503;
RESET hnsw.ef_search;
SELECT * FROM hierindex_check('hnsw_many_dups_l1');
DROP TABLE hnsw_many_dups;

-- ---------------------------------------------------------------------------
-- TRUNCATE empties the index; it fills again afterwards.
-- ---------------------------------------------------------------------------
TRUNCATE hnsw_dups;
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_dups_l2');
SELECT * FROM hierindex_check('hnsw_dups_l2');
SELECT id FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 5;
INSERT INTO hnsw_dups VALUES (1, '[3,3,3]'), (2, '[1,1,2]'), (3, '[0,0,0]');
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_dups_l2');
-- from [1,1,1]: 2 (1), 3 (1.732), 1 (3.464)
SELECT id FROM hnsw_dups ORDER BY v <-> '[1,1,1]' LIMIT 5;
SELECT * FROM hierindex_check('hnsw_dups_l2');
DROP TABLE hnsw_dups;

-- ---------------------------------------------------------------------------
-- Unlogged tables: the index is unlogged too (with an init fork) and works.
-- ---------------------------------------------------------------------------
CREATE UNLOGGED TABLE hnsw_unlogged (id int, v vector(3));
CREATE INDEX hnsw_unlogged_empty ON hnsw_unlogged USING hnsw (v vector_l1_ops);
INSERT INTO hnsw_unlogged VALUES
	(1, '[-1.4,-0.2,-0.8]'), (2, '[-0.5,-0.9,1.6]'), (3, '[-2.4,1.3,-4.9]'),
	(4, '[-2.0,-1.6,-3.6]'), (5, '[2.4,-1.9,2.9]'), (6, '[4.6,-2.5,3.9]');
CREATE INDEX hnsw_unlogged_l1 ON hnsw_unlogged USING hnsw (v vector_l1_ops);
INSERT INTO hnsw_unlogged VALUES
	(7, '[3.1,1.7,-4.7]'), (8, '[-0.4,1.3,-2.0]'), (9, '[-2.8,-1.9,-2.4]'),
	(10, '[2.9,-1.5,-0.8]'), (11, '[1.4,4.5,-2.1]'), (12, '[-4.6,4.7,3.3]');
SELECT relname, relpersistence FROM pg_class
WHERE relname IN ('hnsw_unlogged_empty', 'hnsw_unlogged_l1') ORDER BY 1;
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_unlogged_empty');
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_unlogged_l1');
-- l1 orders: q1 10 7 8 11 1, q2 9 1 4 2 10
SELECT id FROM hnsw_unlogged ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 5;
SELECT id FROM hnsw_unlogged ORDER BY v <+> '[-3.5,-2.0,-0.4]' LIMIT 5;
SELECT * FROM hierindex_check('hnsw_unlogged_empty');
SELECT * FROM hierindex_check('hnsw_unlogged_l1');
DROP TABLE hnsw_unlogged;

-- ---------------------------------------------------------------------------
-- Inspection: options and metric as given.
-- ---------------------------------------------------------------------------
CREATE TABLE hnsw_info (id int, v vector(5));
INSERT INTO hnsw_info SELECT i, array[i, i % 3, i % 5, -i, 1]::real[]::vector(5)
FROM generate_series(1, 50) i;
CREATE INDEX hnsw_info_l2 ON hnsw_info USING hnsw (v) WITH (m = 4, ef_construction = 10);
CREATE INDEX hnsw_info_ip ON hnsw_info USING hnsw (v vector_ip_ops) WITH (m = 100, ef_construction = 1000);
CREATE INDEX hnsw_info_cosine ON hnsw_info USING hnsw (v vector_cosine_ops) WITH (ef_construction = 4, m = 2);
CREATE INDEX hnsw_info_l1 ON hnsw_info USING hnsw (v vector_l1_ops);
SELECT c.relname, i.access_method, i.metric, i.dimensions, i.m, i.ef_construction,
	i.elements, i.heap_tids, i.deleted_elements, i.build_method,
	i.pages >= 2 AS has_pages, i.max_level >= 0 AS has_level,
	cardinality(i.level_elements) = i.max_level + 1 AS levels_listed,
	(SELECT sum(n) FROM unnest(i.level_elements) n) = i.elements AS levels_add_up,
	i.entry_point IS NOT NULL AS has_entry, i.format_version
FROM pg_class c, hierindex_index_info(c.oid) i
WHERE c.relname LIKE 'hnsw_info_%' AND c.relkind = 'i'
ORDER BY 1;
SELECT c.relname, k.*
FROM pg_class c LEFT JOIN LATERAL hierindex_check(c.oid) k ON true
WHERE c.relname LIKE 'hnsw_info_%' AND c.relkind = 'i'
ORDER BY 1;
-- with m = 2 and ef_construction = 4 the index still answers exactly
SET hnsw.ef_search = 100;
-- from row 10's own vector: l2 10 11 12 8 9; cosine 10 20 26 16 35;
-- ip 50 49 48 47 46; l1 10 11 (then 9 and 12 tie)
SELECT array(SELECT id FROM hnsw_info ORDER BY v <-> '[10,1,0,-10,1]' LIMIT 5) AS l2,
	array(SELECT id FROM hnsw_info ORDER BY v <=> '[10,1,0,-10,1]' LIMIT 5) AS cosine,
	array(SELECT id FROM hnsw_info ORDER BY v <#> '[10,1,0,-10,1]' LIMIT 5) AS ip,
	array(SELECT id FROM hnsw_info ORDER BY v <+> '[10,1,0,-10,1]' LIMIT 2) AS l1;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT array(SELECT id FROM hnsw_info ORDER BY v <-> '[10,1,0,-10,1]' LIMIT 5) AS l2,
	array(SELECT id FROM hnsw_info ORDER BY v <=> '[10,1,0,-10,1]' LIMIT 5) AS cosine,
	array(SELECT id FROM hnsw_info ORDER BY v <#> '[10,1,0,-10,1]' LIMIT 5) AS ip,
	array(SELECT id FROM hnsw_info ORDER BY v <+> '[10,1,0,-10,1]' LIMIT 2) AS l1;
RESET enable_indexscan;
SET enable_seqscan = off;
RESET hnsw.ef_search;
-- Layer 0 is directed: the descent can end in a part of it that the links
-- lead out of but not back into.  The scan then goes on from the entry
-- point, from which the build makes everything reachable, so with
-- ef_search above the element count every row comes back in exact order,
-- whatever the insertion order (100 orders of the rows above, built
-- serially; without that fallback 16 of them came back short).
CREATE TABLE hnsw_orders (id int, v vector(5));
CREATE INDEX hnsw_orders_cosine ON hnsw_orders USING hnsw (v vector_cosine_ops)
	WITH (ef_construction = 4, m = 2);
SET hierindex.build_threads = 1;
SET hnsw.ef_search = 100;
CREATE TABLE hnsw_orders_result (seed int, rows_returned int, exact bool);
DO $$
DECLARE
	query vector := '[10,1,0,-10,1]';
	expected float8[];
	got float8[];
BEGIN
	FOR seed IN 1..100 LOOP
		TRUNCATE hnsw_orders;
		PERFORM setseed(seed / 1000.0);
		INSERT INTO hnsw_orders SELECT i, array[i, i % 3, i % 5, -i, 1]::real[]::vector(5)
		FROM generate_series(1, 50) i ORDER BY random();
		REINDEX INDEX hnsw_orders_cosine;
		SET LOCAL enable_seqscan = off;
		got := array(SELECT v <=> query FROM hnsw_orders ORDER BY v <=> query LIMIT 100);
		SET LOCAL enable_seqscan = on;
		SET LOCAL enable_indexscan = off;
		expected := array(SELECT v <=> query FROM hnsw_orders ORDER BY v <=> query);
		SET LOCAL enable_indexscan = on;
		INSERT INTO hnsw_orders_result VALUES (seed, cardinality(got), got = expected);
	END LOOP;
END
$$;
SELECT count(*) AS orders, count(*) FILTER (WHERE rows_returned = 50) AS all_rows,
	count(*) FILTER (WHERE exact) AS exact
FROM hnsw_orders_result;
-- the plan above is the index's
EXPLAIN (COSTS OFF) SELECT id FROM hnsw_orders ORDER BY v <=> '[10,1,0,-10,1]' LIMIT 100;
RESET hnsw.ef_search;
RESET hierindex.build_threads;
DROP TABLE hnsw_orders, hnsw_orders_result;
-- the inspection functions take hnsw indexes only
SELECT * FROM hierindex_index_info('hnsw_info');
CREATE INDEX hnsw_info_btree ON hnsw_info (id);
SELECT * FROM hierindex_index_info('hnsw_info_btree');
SELECT * FROM hierindex_check('hnsw_info_btree');
DROP TABLE hnsw_info;

-- ---------------------------------------------------------------------------
-- The planner: the index for ORDER BY ... LIMIT, never for WHERE.
-- ---------------------------------------------------------------------------
RESET enable_seqscan;
SELECT setseed(0.75);
CREATE TABLE hnsw_plan AS
	SELECT i AS id, array_agg((random() * 2 - 1)::real ORDER BY d)::vector(16) AS v
	FROM generate_series(1, 5000) i, generate_series(1, 16) d
	GROUP BY i;
CREATE INDEX hnsw_plan_l2 ON hnsw_plan USING hnsw (v);
ANALYZE hnsw_plan;
-- chosen by cost, nothing forced (5000 rows: below about 3000 a sequential
-- scan and a top-10 sort are estimated cheaper, as they may well be)
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_plan ORDER BY v <-> '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' LIMIT 10;
-- with a parameter (prepared statement, generic plan)
SET plan_cache_mode = force_generic_plan;
PREPARE hnsw_knn(vector) AS SELECT id FROM hnsw_plan ORDER BY v <-> $1 LIMIT 10;
EXPLAIN (COSTS OFF) EXECUTE hnsw_knn('[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]');
CREATE TEMP TABLE hnsw_knn_result AS EXECUTE hnsw_knn('[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]');
SELECT count(*), count(DISTINCT id) FROM hnsw_knn_result;
DEALLOCATE hnsw_knn;
RESET plan_cache_mode;
-- not for WHERE, even with sequential scans disabled
SET enable_seqscan = off;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_plan WHERE v <-> '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' < 0.5;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_plan WHERE v = '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]';
SELECT count(*) FROM hnsw_plan WHERE v <-> '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' < 0.5;
-- nor for a descending order
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_plan ORDER BY v <-> '[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' DESC LIMIT 10;
RESET enable_seqscan;
DROP TABLE hnsw_plan;

-- ---------------------------------------------------------------------------
-- The access method's properties, and the operator classes validate.
-- ---------------------------------------------------------------------------
SELECT opc.opcname, opc.opcdefault, amvalidate(opc.oid)
FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE am.amname = 'hnsw'
ORDER BY 1;
SELECT p.name, pg_indexam_has_property(am.oid, p.name)
FROM pg_am am, unnest(array['can_order', 'can_unique', 'can_multi_col',
	'can_exclude', 'can_include']) p(name)
WHERE am.amname = 'hnsw';
CREATE TABLE hnsw_props (v vector(2));
CREATE INDEX hnsw_props_l2 ON hnsw_props USING hnsw (v);
SELECT p.name, pg_index_column_has_property('hnsw_props_l2', 1, p.name)
FROM unnest(array['asc', 'orderable', 'distance_orderable', 'returnable',
	'search_array', 'search_nulls']) p(name);
SELECT p.name, pg_index_has_property('hnsw_props_l2', p.name)
FROM unnest(array['clusterable', 'index_scan', 'bitmap_scan', 'backward_scan']) p(name);
DROP TABLE hnsw_props;
