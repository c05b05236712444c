-- hnsw_inspect: hierindex_index_info, hierindex_check, VACUUM and amvalidate
-- on indexes whose contents can be counted by hand.

-- ---------------------------------------------------------------------------
-- amvalidate: every shipped operator class is sound ...
-- ---------------------------------------------------------------------------
SELECT opc.opcname, amvalidate(opc.oid)
FROM pg_opclass opc JOIN pg_am am ON am.oid = opc.opcmethod
WHERE am.amname = 'hnsw'
ORDER BY opc.opcname;

-- ... and broken ones are reported, one INFO per problem, and give false.
-- A search operator and a support function of the wrong signature:
CREATE OPERATOR CLASS vector_search_ops FOR TYPE vector USING hnsw AS
	OPERATOR 1 = (vector, vector),
	FUNCTION 1 vector_cmp(vector, vector);
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'vector_search_ops';
-- A wrong strategy number:
CREATE OPERATOR CLASS vector_strategy2_ops FOR TYPE vector USING hnsw AS
	OPERATOR 2 <-> (vector, vector) FOR ORDER BY float_ops,
	FUNCTION 1 hierindex_metric_l2(internal);
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'vector_strategy2_ops';
-- Ordering by an integer family:
CREATE OPERATOR CLASS vector_intsort_ops FOR TYPE vector USING hnsw AS
	OPERATOR 1 <-> (vector, vector) FOR ORDER BY integer_ops,
	FUNCTION 1 hierindex_metric_l2(internal);
SELECT amvalidate(oid) FROM pg_opclass WHERE opcname = 'vector_intsort_ops';
DROP OPERATOR CLASS vector_search_ops USING hnsw;
DROP OPERATOR CLASS vector_strategy2_ops USING hnsw;
DROP OPERATOR CLASS vector_intsort_ops USING hnsw;

-- ---------------------------------------------------------------------------
-- What the inspection functions accept
-- ---------------------------------------------------------------------------
CREATE TABLE inspect_plain (id int, v vector(3));
CREATE INDEX inspect_plain_btree ON inspect_plain (id);
SELECT * FROM hierindex_index_info('inspect_plain');
SELECT * FROM hierindex_check('inspect_plain');
SELECT * FROM hierindex_index_info('inspect_plain_btree');
SELECT * FROM hierindex_check('inspect_plain_btree');
SELECT * FROM hierindex_index_info(0);

CREATE TABLE inspect_parted (v vector(3)) PARTITION BY LIST ((v IS NULL));
CREATE INDEX inspect_parted_hnsw ON inspect_parted USING hnsw (v);
SELECT * FROM hierindex_index_info('inspect_parted_hnsw');
DROP TABLE inspect_parted;

-- Only those who can read the table may look at its index.
CREATE INDEX inspect_plain_hnsw ON inspect_plain USING hnsw (v);
CREATE ROLE regress_hnsw_inspect_reader;
SET ROLE regress_hnsw_inspect_reader;
SELECT elements FROM hierindex_index_info('inspect_plain_hnsw');
SELECT count(*) FROM hierindex_check('inspect_plain_hnsw');
RESET ROLE;
GRANT SELECT ON inspect_plain TO regress_hnsw_inspect_reader;
SET ROLE regress_hnsw_inspect_reader;
SELECT elements FROM hierindex_index_info('inspect_plain_hnsw');
-- (a reader may not stall writers: the check runs under AccessShareLock)
SELECT count(*) FROM hierindex_check('inspect_plain_hnsw');
RESET ROLE;
-- whoever may lock the table IN SHARE MODE gets the blocking, exact check
GRANT UPDATE ON inspect_plain TO regress_hnsw_inspect_reader;
SET ROLE regress_hnsw_inspect_reader;
SELECT count(*) FROM hierindex_check('inspect_plain_hnsw');
RESET ROLE;
DROP TABLE inspect_plain;
DROP ROLE regress_hnsw_inspect_reader;

-- ---------------------------------------------------------------------------
-- hierindex_index_info on indexes counted by hand, every operator class
-- ---------------------------------------------------------------------------

-- The facts that do not depend on the random level draws, for each index on
-- a table; the levels are checked for consistency instead of printed.
CREATE FUNCTION inspect_facts(tab regclass)
RETURNS TABLE (index_name text, am text, metric text, dims int, m int, ef int,
			   elements int8, heap_tids int8, deleted int8,
			   levels_consistent bool, layer0_degree float8, entry_set bool,
			   build_method text, version int)
LANGUAGE sql AS $$
	SELECT i.indexrelid::regclass::text, f.access_method, f.metric,
		   f.dimensions, f.m, f.ef_construction,
		   f.elements, f.heap_tids, f.deleted_elements,
		   -- one array entry per layer up to the entry point's, summing to
		   -- the element count, the top layer not empty
		   cardinality(f.level_elements) = cardinality(f.level_avg_degree)
		   AND cardinality(f.level_elements) =
			   CASE WHEN f.elements = 0 THEN 0 ELSE f.max_level + 1 END
		   AND coalesce((SELECT sum(x) FROM unnest(f.level_elements) x), 0) = f.elements
		   AND (f.elements = 0 OR f.level_elements[f.max_level + 1] > 0),
		   round(f.level_avg_degree[1]::numeric, 3)::float8,
		   f.entry_point IS NOT NULL,
		   f.build_method, f.format_version
	FROM pg_index i, hierindex_index_info(i.indexrelid) f
	WHERE i.indrelid = tab
	ORDER BY 1
$$;

CREATE TABLE inspect_one (id int, v vector(3));
INSERT INTO inspect_one VALUES (1, '[1,2,3]');
CREATE INDEX inspect_one_l2 ON inspect_one USING hnsw (v vector_l2_ops);
CREATE INDEX inspect_one_ip ON inspect_one USING hnsw (v vector_ip_ops);
CREATE INDEX inspect_one_cosine ON inspect_one USING hnsw (v vector_cosine_ops);
CREATE INDEX inspect_one_l1 ON inspect_one USING hnsw (v vector_l1_ops) WITH (m = 4, ef_construction = 10);
SELECT * FROM inspect_facts('inspect_one');
SELECT pages, build_seconds >= 0 AS timed FROM hierindex_index_info('inspect_one_l2');

-- Three elements at equal distances from each other under every metric
-- (orthogonal unit vectors): the neighbour heuristic prunes none, so each
-- links to the other two on layer 0, in any insertion order.
CREATE TABLE inspect_three (id int, v vector(3));
INSERT INTO inspect_three VALUES (1, '[1,0,0]'), (2, '[0,1,0]'), (3, '[0,0,1]');
CREATE INDEX inspect_three_l2 ON inspect_three USING hnsw (v vector_l2_ops);
CREATE INDEX inspect_three_ip ON inspect_three USING hnsw (v vector_ip_ops);
CREATE INDEX inspect_three_cosine ON inspect_three USING hnsw (v vector_cosine_ops);
CREATE INDEX inspect_three_l1 ON inspect_three USING hnsw (v vector_l1_ops);
SELECT * FROM inspect_facts('inspect_three');

-- NULLs are not indexed; zero vectors are not indexed under cosine only.
INSERT INTO inspect_three VALUES (4, NULL), (5, '[0,0,0]');
REINDEX TABLE inspect_three;
SELECT index_name, elements, heap_tids FROM inspect_facts('inspect_three');

-- 1000 rows of one vector: one element owning all 1000 heap TIDs.
CREATE TABLE inspect_same (id int, v vector(4));
INSERT INTO inspect_same SELECT i, '[1,1,1,1]' FROM generate_series(1, 1000) i;
CREATE INDEX inspect_same_l2 ON inspect_same USING hnsw (v vector_l2_ops);
CREATE INDEX inspect_same_cosine ON inspect_same USING hnsw (v vector_cosine_ops);
SELECT index_name, elements, heap_tids, deleted, levels_consistent
FROM inspect_facts('inspect_same');

-- An empty index: no entry point, no layers.
CREATE TABLE inspect_empty (v vector(3));
CREATE INDEX inspect_empty_l2 ON inspect_empty USING hnsw (v);
SELECT * FROM inspect_facts('inspect_empty');
SELECT max_level, level_elements, level_avg_degree, entry_point
FROM hierindex_index_info('inspect_empty_l2');

-- 2000 distinct vectors: several layers; layer 0 lists hold 1 to 2m links.
CREATE TABLE inspect_many (id int, v vector(8));
SELECT setseed(0.25);
INSERT INTO inspect_many
SELECT i, (SELECT array_agg(random()) FROM generate_series(1, 8) WHERE i > 0)::vector
FROM generate_series(1, 2000) i;
CREATE INDEX inspect_many_l2 ON inspect_many USING hnsw (v vector_l2_ops) WITH (m = 8);
CREATE INDEX inspect_many_cosine ON inspect_many USING hnsw (v vector_cosine_ops) WITH (m = 8);
SELECT index_name, elements, heap_tids, levels_consistent,
	   layer0_degree BETWEEN 1 AND 16 AS degree_in_range
FROM inspect_facts('inspect_many');
-- (upper layers hold at most m links; the top one may be the entry point alone)
SELECT max_level >= 1 AS layered,
	   level_avg_degree[2] BETWEEN 1 AND 8 AS layer1_degree_in_range,
	   (SELECT bool_and(d BETWEEN 0 AND 8) FROM unnest(level_avg_degree[2:]) d) AS upper_degree_in_range
FROM hierindex_index_info('inspect_many_l2');

-- ---------------------------------------------------------------------------
-- hierindex_check finds nothing wrong with any of them
-- ---------------------------------------------------------------------------
SELECT i.indexrelid::regclass AS index_name, c.*
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid,
	 hierindex_check(i.indexrelid) c
WHERE t.relname LIKE 'inspect\_%'
ORDER BY 1;
SELECT count(*) AS indexes_checked
FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid
WHERE t.relname LIKE 'inspect\_%';

-- ---------------------------------------------------------------------------
-- VACUUM removes dead heap TIDs; elements left with none are deleted
-- ---------------------------------------------------------------------------
-- 50 distinct vectors [i,0] (ids 1..50) and 5 vectors with 10 rows each
-- (ids 1001..1050, vector [1000 + (id - 1001) / 10, 0]).
CREATE TABLE inspect_vacuum (id int, v vector(2)) WITH (autovacuum_enabled = off);
INSERT INTO inspect_vacuum SELECT i, format('[%s,0]', i)::vector FROM generate_series(1, 50) i;
INSERT INTO inspect_vacuum
SELECT i, format('[%s,0]', 1000 + (i - 1001) / 10)::vector FROM generate_series(1001, 1050) i;
CREATE INDEX inspect_vacuum_l2 ON inspect_vacuum USING hnsw (v vector_l2_ops);
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('inspect_vacuum_l2');

-- 20 distinct rows, all 10 rows of [1000,0], 5 of the 10 rows of [1001,0]
DELETE FROM inspect_vacuum WHERE id <= 20 OR id BETWEEN 1001 AND 1015;
VACUUM inspect_vacuum;
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('inspect_vacuum_l2');
SELECT reltuples FROM pg_class WHERE relname = 'inspect_vacuum_l2';
SELECT * FROM hierindex_check('inspect_vacuum_l2');

-- The freed heap slots get reused by new, far away rows; a scan near the
-- deleted rows must return neither the new rows nor the deleted ones.
INSERT INTO inspect_vacuum SELECT 2000 + i, '[100000,100000]' FROM generate_series(1, 35) i;
SET enable_seqscan = off;
SET hnsw.ef_search = 100;
EXPLAIN (COSTS OFF) SELECT id FROM inspect_vacuum ORDER BY v <-> '[0,0]' LIMIT 5;
SELECT id FROM inspect_vacuum ORDER BY v <-> '[0,0]' LIMIT 5;
SELECT id FROM inspect_vacuum ORDER BY v <-> '[1000,0]' LIMIT 6;
-- (every row it returns is live and distinct; whether the far group is
-- reached from [0,0] depends on the inserted element's random level, so the
-- count is not checked here: 015_vacuum_repair.pl checks reachability)
SELECT count(*) BETWEEN 30 AND 100 AS counted, count(*) = count(DISTINCT id) AS distinct_rows,
	   bool_and(id > 20 AND id NOT BETWEEN 1001 AND 1015) AS no_deleted_row
FROM (SELECT id FROM inspect_vacuum ORDER BY v <-> '[0,0]' LIMIT 1000) s;
RESET enable_seqscan;
RESET hnsw.ef_search;

-- A VACUUM with nothing to delete counts the index's tuples itself.
-- (The new element takes a free slot when its level, drawn at random, fits
-- one: only the live count is certain.)
VACUUM inspect_vacuum;
SELECT reltuples FROM pg_class WHERE relname = 'inspect_vacuum_l2';
SELECT elements - deleted_elements AS live_elements, heap_tids FROM hierindex_index_info('inspect_vacuum_l2');
SELECT * FROM hierindex_check('inspect_vacuum_l2');

-- Everything deleted: every element is free; the index has no entry point.
DELETE FROM inspect_vacuum;
VACUUM inspect_vacuum;
SELECT elements = free_elements AS all_free, heap_tids, deleted_elements = free_elements AS none_just_deleted
FROM hierindex_index_info('inspect_vacuum_l2');
SELECT * FROM hierindex_check('inspect_vacuum_l2');
SET enable_seqscan = off;
SELECT count(*) FROM (SELECT id FROM inspect_vacuum ORDER BY v <-> '[0,0]' LIMIT 10) s;
RESET enable_seqscan;

DROP FUNCTION inspect_facts(regclass);
DROP TABLE inspect_one, inspect_three, inspect_same, inspect_empty, inspect_many, inspect_vacuum;
