-- hnsw index scans under each operator class (l2, ip, cosine, l1).
--
-- Twelve hand-made 3-d rows whose distances to each query differ by at least
-- 0.002 under every metric, so the order is exact and has no ties.  An index
-- scan (hnsw.ef_search 40 >= 12 rows: the beam holds the whole graph) must
-- return exactly the order of a sequential scan, which is printed right after
-- it.  The first five ids of each order were also worked out by hand:
--
--   query                 l2              ip               cosine          l1
--   q1 [2.9,0.2,-2.7]     7 10 8 11 1     7 11 10 3 8      7 10 11 8 3     10 7 8 11 1
--   q2 [-3.5,-2.0,-0.4]   9 1 4 2 8       9 4 3 1 12       9 1 4 2 3       9 1 4 2 10
--   q3 [-4.3,2.0,2.3]     12 1 2 8 9      12 2 1 9 3       12 1 2 9 3      12 2 1 8 3
--
-- Then 300 pseudo-random 16-d rows (setseed makes them the same on every
-- run): with hnsw.ef_search 1000 the scan is exact there too, and the first
-- 10 ids of 20 queries must equal those of a sequential scan.

CREATE TABLE hnsw_items (id int, v vector(3));
INSERT INTO hnsw_items VALUES
	(1, '[-1.4,-0.2,-0.8]'),
	(2, '[-0.5,-0.9,1.6]'),
	(3, '[-2.4,1.3,-4.9]'),
	(4, '[-2.0,-1.6,-3.6]'),
	(5, '[2.4,-1.9,2.9]'),
	(6, '[4.6,-2.5,3.9]'),
	(7, '[3.1,1.7,-4.7]'),
	(8, '[-0.4,1.3,-2.0]'),
	(9, '[-2.8,-1.9,-2.4]'),
	(10, '[2.9,-1.5,-0.8]'),
	(11, '[1.4,4.5,-2.1]'),
	(12, '[-4.6,4.7,3.3]');
CREATE TABLE hnsw_queries (qid int, q vector(3));
INSERT INTO hnsw_queries VALUES
	(1, '[2.9,0.2,-2.7]'),
	(2, '[-3.5,-2.0,-0.4]'),
	(3, '[-4.3,2.0,2.3]');

-- Only the index may answer (the queries table has none: a seq scan there).
SET enable_seqscan = off;

-- ---------------------------------------------------------------------------
-- vector_l2_ops, <->
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_items_l2 ON hnsw_items USING hnsw (v vector_l2_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <-> '[2.9,0.2,-2.7]' LIMIT 5;
-- 7 10 8 11 1
SELECT id, round((v <-> '[2.9,0.2,-2.7]')::numeric, 4) AS distance
FROM hnsw_items ORDER BY v <-> '[2.9,0.2,-2.7]' LIMIT 5;
-- the whole order, for each query: through the index ...
EXPLAIN (COSTS OFF)
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <-> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <-> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
-- ... and by a sequential scan: the same arrays
SET enable_seqscan = on;
SET enable_indexscan = off;
EXPLAIN (COSTS OFF)
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <-> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <-> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP INDEX hnsw_items_l2;

-- the default operator class is vector_l2_ops
CREATE INDEX hnsw_items_default ON hnsw_items USING hnsw (v);
SELECT opcname FROM pg_index i JOIN pg_opclass o ON o.oid = i.indclass[0]
WHERE i.indexrelid = 'hnsw_items_default'::regclass;
SELECT array(SELECT id FROM hnsw_items ORDER BY v <-> '[-3.5,-2.0,-0.4]' LIMIT 5);
DROP INDEX hnsw_items_default;

-- ---------------------------------------------------------------------------
-- vector_ip_ops, <#> (negative inner product: most similar first)
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_items_ip ON hnsw_items USING hnsw (v vector_ip_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <#> '[2.9,0.2,-2.7]' LIMIT 5;
-- 7 11 10 3 8
SELECT id, round((v <#> '[2.9,0.2,-2.7]')::numeric, 4) AS distance
FROM hnsw_items ORDER BY v <#> '[2.9,0.2,-2.7]' LIMIT 5;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <#> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <#> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP INDEX hnsw_items_ip;

-- ---------------------------------------------------------------------------
-- vector_cosine_ops, <=>
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_items_cosine ON hnsw_items USING hnsw (v vector_cosine_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 5;
-- 7 10 11 8 3
SELECT id, round((v <=> '[2.9,0.2,-2.7]')::numeric, 4) AS distance
FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 5;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <=> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <=> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;
-- a scaled query has the same cosine order (the index stores unit vectors)
SELECT array(SELECT id FROM hnsw_items ORDER BY v <=> '[29,2,-27]' LIMIT 12)
	= array(SELECT id FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 12)
	AS same_order;
DROP INDEX hnsw_items_cosine;

-- ---------------------------------------------------------------------------
-- vector_l1_ops, <+>
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_items_l1 ON hnsw_items USING hnsw (v vector_l1_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 5;
-- 10 7 8 11 1
SELECT id, round((v <+> '[2.9,0.2,-2.7]')::numeric, 4) AS distance
FROM hnsw_items ORDER BY v <+> '[2.9,0.2,-2.7]' LIMIT 5;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <+> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT qid, array(SELECT id FROM hnsw_items ORDER BY v <+> q LIMIT 12)
FROM hnsw_queries ORDER BY qid;
RESET enable_indexscan;
SET enable_seqscan = off;
DROP INDEX hnsw_items_l1;

-- ---------------------------------------------------------------------------
-- An index answers only its own operator: an l2 index is no use for <=>.
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_items_l2 ON hnsw_items USING hnsw (v vector_l2_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 5;
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <#> '[2.9,0.2,-2.7]' LIMIT 5;
-- and a query that is not the indexed column is no use either
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY '[2.9,0.2,-2.7]'::vector <-> '[1,1,1]' LIMIT 5;
DROP INDEX hnsw_items_l2;

-- several indexes on one column: each operator finds its own
CREATE INDEX hnsw_items_l2 ON hnsw_items USING hnsw (v vector_l2_ops);
CREATE INDEX hnsw_items_cosine ON hnsw_items USING hnsw (v vector_cosine_ops);
EXPLAIN (COSTS OFF)
SELECT id FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 5;
SELECT array(SELECT id FROM hnsw_items ORDER BY v <=> '[2.9,0.2,-2.7]' LIMIT 5) AS cosine,
	array(SELECT id FROM hnsw_items ORDER BY v <-> '[2.9,0.2,-2.7]' LIMIT 5) AS l2;

RESET enable_seqscan;
DROP TABLE hnsw_items, hnsw_queries;

-- ---------------------------------------------------------------------------
-- 300 pseudo-random 16-d rows, 20 queries, every operator class: the index
-- (ef_search 1000 > 300 rows) gives exactly the sequential scan's top 10.
-- ---------------------------------------------------------------------------
SELECT setseed(0.25);
CREATE TABLE hnsw_rand AS
	SELECT i AS id, array_agg((random() * 2 - 1)::real ORDER BY d)::vector(16) AS v
	FROM generate_series(1, 300) i, generate_series(1, 16) d
	GROUP BY i;
CREATE TABLE hnsw_rand_queries AS
	SELECT i AS qid, array_agg((random() * 2 - 1)::real ORDER BY d)::vector(16) AS q
	FROM generate_series(1, 20) i, generate_series(1, 16) d
	GROUP BY i;
SELECT count(*), count(DISTINCT v) FROM hnsw_rand;

-- exact answers: sequential scans
SET enable_indexscan = off;
CREATE TABLE hnsw_rand_exact AS
	SELECT qid,
		array(SELECT id FROM hnsw_rand ORDER BY v <-> q LIMIT 10) AS l2,
		array(SELECT id FROM hnsw_rand ORDER BY v <#> q LIMIT 10) AS ip,
		array(SELECT id FROM hnsw_rand ORDER BY v <=> q LIMIT 10) AS cosine,
		array(SELECT id FROM hnsw_rand ORDER BY v <+> q LIMIT 10) AS l1
	FROM hnsw_rand_queries;
RESET enable_indexscan;

SET enable_seqscan = off;
SET hnsw.ef_search = 1000;
CREATE INDEX hnsw_rand_l2 ON hnsw_rand USING hnsw (v vector_l2_ops);
CREATE INDEX hnsw_rand_ip ON hnsw_rand USING hnsw (v vector_ip_ops);
CREATE INDEX hnsw_rand_cosine ON hnsw_rand USING hnsw (v vector_cosine_ops);
CREATE INDEX hnsw_rand_l1 ON hnsw_rand USING hnsw (v vector_l1_ops);
EXPLAIN (COSTS OFF)
SELECT qid,
	array(SELECT id FROM hnsw_rand ORDER BY v <-> q LIMIT 10) AS l2,
	array(SELECT id FROM hnsw_rand ORDER BY v <#> q LIMIT 10) AS ip,
	array(SELECT id FROM hnsw_rand ORDER BY v <=> q LIMIT 10) AS cosine,
	array(SELECT id FROM hnsw_rand ORDER BY v <+> q LIMIT 10) AS l1
FROM hnsw_rand_queries;
-- 20 of 20 queries agree under each metric
SELECT count(*) FILTER (WHERE a.l2 = e.l2) AS l2,
	count(*) FILTER (WHERE a.ip = e.ip) AS ip,
	count(*) FILTER (WHERE a.cosine = e.cosine) AS cosine,
	count(*) FILTER (WHERE a.l1 = e.l1) AS l1
FROM (SELECT qid,
		array(SELECT id FROM hnsw_rand ORDER BY v <-> q LIMIT 10) AS l2,
		array(SELECT id FROM hnsw_rand ORDER BY v <#> q LIMIT 10) AS ip,
		array(SELECT id FROM hnsw_rand ORDER BY v <=> q LIMIT 10) AS cosine,
		array(SELECT id FROM hnsw_rand ORDER BY v <+> q LIMIT 10) AS l1
	FROM hnsw_rand_queries) a
JOIN hnsw_rand_exact e USING (qid);
-- each row's own vector finds that row first, under l2 and l1 (distance 0)
SELECT count(*) FILTER (WHERE (SELECT r2.id FROM hnsw_rand r2 ORDER BY r2.v <-> r.v LIMIT 1) = r.id) AS l2_self,
	count(*) FILTER (WHERE (SELECT r2.id FROM hnsw_rand r2 ORDER BY r2.v <+> r.v LIMIT 1) = r.id) AS l1_self
FROM hnsw_rand r;
-- hnsw.ef_search bounds what one scan returns (no iterative scans yet)
SET hnsw.ef_search = 7;
SELECT count(*) FROM (SELECT id FROM hnsw_rand ORDER BY v <-> '[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]' LIMIT 20) s;
RESET hnsw.ef_search;
RESET enable_seqscan;

SELECT i.relname, c.problem
FROM pg_class i LEFT JOIN LATERAL hierindex_check(i.oid) c ON true
WHERE i.relname LIKE 'hnsw_rand_%' AND i.relkind = 'i'
ORDER BY 1;

DROP TABLE hnsw_rand, hnsw_rand_queries, hnsw_rand_exact;
