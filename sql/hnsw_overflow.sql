-- Distances that overflow float4.  A vector may hold any finite float4, so
-- a distance can be +Infinity (l2, l1) or -Infinity (<#>): an index scan must
-- still return the rows a sequential scan returns, in the same order where
-- the order is defined.  hnsw.ef_search 100 > 22 rows: every scan is exact.
--
-- Rows 1..20 are small; 101 is [3e38,3e38,3e38]; 102 is [1e20,0,0].
-- From [10,3,0]: 101 and 102 are at l2 distance Infinity (the squares
-- overflow), 101 at l1 Infinity, and 101 at <#> -Infinity (the best).

CREATE TABLE hnsw_big (id int, v vector(3));
INSERT INTO hnsw_big
	SELECT i, array[i, i % 7, -(i % 5)]::real[]::vector(3) FROM generate_series(1, 20) i;
INSERT INTO hnsw_big VALUES (101, '[3e38,3e38,3e38]'), (102, '[1e20,0,0]');
CREATE INDEX hnsw_big_l2 ON hnsw_big USING hnsw (v vector_l2_ops);
CREATE INDEX hnsw_big_ip ON hnsw_big USING hnsw (v vector_ip_ops);
CREATE INDEX hnsw_big_l1 ON hnsw_big USING hnsw (v vector_l1_ops);
SELECT id, v <-> '[10,3,0]' AS l2, v <+> '[10,3,0]' AS l1, v <#> '[10,3,0]' AS ip
FROM hnsw_big WHERE id > 100 ORDER BY id;
SELECT * FROM hierindex_check('hnsw_big_l2');
SELECT * FROM hierindex_check('hnsw_big_ip');
SELECT * FROM hierindex_check('hnsw_big_l1');

SET hnsw.ef_search = 100;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT id FROM hnsw_big ORDER BY v <-> '[10,3,0]' LIMIT 100;
-- every row comes back, the two at Infinity last
SELECT count(*), count(*) FILTER (WHERE id > 100) AS at_infinity FROM
	(SELECT id FROM hnsw_big ORDER BY v <-> '[10,3,0]' LIMIT 100) s;
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_big ORDER BY v <-> '[10,3,0]' LIMIT 2 OFFSET 20) s;
-- l1: 101 is last
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <+> '[10,3,0]' LIMIT 100) s;
SELECT id FROM hnsw_big ORDER BY v <+> '[10,3,0]' LIMIT 1 OFFSET 21;
-- <#>: 101 (-Infinity) is first, then 102
SELECT id FROM hnsw_big ORDER BY v <#> '[10,3,0]' LIMIT 2;
-- a query far out: every l2 distance is Infinity, yet there are rows
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <-> '[3e38,3e38,3e38]' LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <+> '[-3e38,-3e38,-3e38]' LIMIT 3) s;

-- the same statements by sequential scans
SET enable_seqscan = on;
SET enable_indexscan = off;
SELECT count(*), count(*) FILTER (WHERE id > 100) AS at_infinity FROM
	(SELECT id FROM hnsw_big ORDER BY v <-> '[10,3,0]' LIMIT 100) s;
SELECT array_agg(id ORDER BY id) FROM
	(SELECT id FROM hnsw_big ORDER BY v <-> '[10,3,0]' LIMIT 2 OFFSET 20) s;
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <+> '[10,3,0]' LIMIT 100) s;
SELECT id FROM hnsw_big ORDER BY v <+> '[10,3,0]' LIMIT 1 OFFSET 21;
SELECT id FROM hnsw_big ORDER BY v <#> '[10,3,0]' LIMIT 2;
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <-> '[3e38,3e38,3e38]' LIMIT 3) s;
SELECT count(*) FROM (SELECT id FROM hnsw_big ORDER BY v <+> '[-3e38,-3e38,-3e38]' LIMIT 3) s;
RESET enable_indexscan;
RESET enable_seqscan;
RESET hnsw.ef_search;

DROP TABLE hnsw_big;
