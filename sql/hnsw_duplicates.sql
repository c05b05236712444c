--
-- Duplicates: an element owns every heap TID of its vector (inline, then a
-- chain of heap-TID overflow tuples), through the bulk build, the insert
-- path and VACUUM.
--
SET enable_seqscan = off;
SET enable_bitmapscan = off;
SET hnsw.ef_search = 40;

-- 1000 copies of [1,1,1] and 500 distinct vectors (x, y, 5), interleaved
CREATE TABLE dups (id int PRIMARY KEY, v vector(3));
INSERT INTO dups
	SELECT i, CASE WHEN i <= 1000 THEN '[1,1,1]'::vector(3)
				   ELSE format('[%s,%s,5]', (i - 1001) % 25, (i - 1001) / 25)::vector(3) END
	FROM generate_series(1, 1500) i
	ORDER BY (i * 7919) % 1500;
-- built on one thread: the graph, and so every answer below, is the same on
-- every machine (test/unit/test_graph.c checks the parallel builder on this
-- grid)
SET hierindex.build_threads = 1;
CREATE INDEX dups_built ON dups USING hnsw (v vector_l2_ops) WITH (m = 4);
RESET hierindex.build_threads;

-- one element for the 1000 copies: 501 elements, 1500 heap TIDs, no problem
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('dups_built');
SELECT * FROM hierindex_check('dups_built');

-- all 1000 copies come back from their one element, nearest first
SELECT count(*) AS rows, count(*) FILTER (WHERE v = '[1,1,1]') AS copies
FROM (SELECT id, v FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;
SELECT count(DISTINCT id) FROM (SELECT id FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;
-- after them, the distinct vectors: 1001st row is not a copy
SELECT v FROM (SELECT v, row_number() OVER () AS n
			   FROM (SELECT v FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 1001) s) t
WHERE n = 1001;

-- every distinct row is found first from its own vector, at the default
-- ef_search
SELECT count(*) FILTER (WHERE found = o.id) AS found_exactly, count(*) AS asked
FROM dups o,
	LATERAL (SELECT d.id AS found FROM dups d ORDER BY d.v <-> o.v LIMIT 1) f
WHERE o.id > 1000;

-- VACUUM: 600 copies go; 400 remain, all returned
DELETE FROM dups WHERE id <= 600;
VACUUM dups;
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('dups_built');
SELECT * FROM hierindex_check('dups_built');
SELECT count(*) FILTER (WHERE v = '[1,1,1]') AS copies, count(DISTINCT id) AS distinct_ids
FROM (SELECT id, v FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;

-- the last 400 go: the element has no heap TID left anywhere and is deleted
DELETE FROM dups WHERE id <= 1000;
VACUUM dups;
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('dups_built');
SELECT * FROM hierindex_check('dups_built');
SELECT count(*) FILTER (WHERE v = '[1,1,1]') AS copies
FROM (SELECT id, v FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 10) s;

-- a copy inserted now starts a new element (the old one is free: the new
-- one takes its slot when its level fits there, else a new one, so only
-- the live count is shown)
INSERT INTO dups VALUES (1, '[1,1,1]');
SELECT id FROM dups ORDER BY v <-> '[1,1,1]' LIMIT 1;
SELECT elements - deleted_elements AS live_elements, heap_tids FROM hierindex_index_info('dups_built');
SELECT * FROM hierindex_check('dups_built');

-- The same through the insert path: the index is built on an empty table.
CREATE TABLE dups_ins (id int PRIMARY KEY, v vector(3));
CREATE INDEX dups_inserted ON dups_ins USING hnsw (v vector_l2_ops) WITH (m = 4);
INSERT INTO dups_ins
	SELECT i, CASE WHEN i <= 1000 THEN '[1,1,1]'::vector(3)
				   ELSE format('[%s,%s,5]', (i - 1001) % 25, (i - 1001) / 25)::vector(3) END
	FROM generate_series(1, 1500) i
	ORDER BY (i * 7919) % 1500;
SELECT elements, heap_tids, deleted_elements, build_method FROM hierindex_index_info('dups_inserted');
SELECT * FROM hierindex_check('dups_inserted');
SELECT count(*) AS rows, count(*) FILTER (WHERE v = '[1,1,1]') AS copies,
	count(DISTINCT id) AS distinct_ids
FROM (SELECT id, v FROM dups_ins ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;
-- every distinct row is found first from its own vector, at the default
-- ef_search (single inserts link the graph one row at a time)
SELECT count(*) FILTER (WHERE found = o.id) AS found_exactly, count(*) AS asked
FROM dups_ins o,
	LATERAL (SELECT d.id AS found FROM dups_ins d ORDER BY d.v <-> o.v LIMIT 1) f
WHERE o.id > 1000;

DELETE FROM dups_ins WHERE id <= 600;
VACUUM dups_ins;
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('dups_inserted');
SELECT * FROM hierindex_check('dups_inserted');
SELECT count(*) FILTER (WHERE v = '[1,1,1]') AS copies, count(DISTINCT id) AS distinct_ids
FROM (SELECT id, v FROM dups_ins ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;

-- refilled after VACUUM: 600 new copies reuse the emptied heap-TID slots
INSERT INTO dups_ins SELECT i, '[1,1,1]' FROM generate_series(1, 600) i;
SELECT elements, heap_tids, deleted_elements FROM hierindex_index_info('dups_inserted');
SELECT * FROM hierindex_check('dups_inserted');
SELECT count(*) FILTER (WHERE v = '[1,1,1]') AS copies, count(DISTINCT id) AS distinct_ids
FROM (SELECT id, v FROM dups_ins ORDER BY v <-> '[1,1,1]' LIMIT 1000) s;

DROP TABLE dups, dups_ins;

-- under cosine too: vectors are stored normalised, and identical rows (from
-- the build and from later inserts) still share one element
CREATE TABLE dups_cos (id int, v vector(3));
INSERT INTO dups_cos SELECT i, '[0.1,0.7,0.3]' FROM generate_series(1, 100) i;
INSERT INTO dups_cos SELECT 100 + i, format('[%s,1,2]', i)::vector FROM generate_series(1, 50) i;
CREATE INDEX dups_cos_idx ON dups_cos USING hnsw (v vector_cosine_ops);
SELECT elements, heap_tids FROM hierindex_index_info('dups_cos_idx');
INSERT INTO dups_cos SELECT 200 + i, '[0.1,0.7,0.3]' FROM generate_series(1, 20) i;
SELECT elements, heap_tids FROM hierindex_index_info('dups_cos_idx');
SELECT count(*) FROM (SELECT id FROM dups_cos ORDER BY v <=> '[0.1,0.7,0.3]' LIMIT 120) s;
DROP TABLE dups_cos;
