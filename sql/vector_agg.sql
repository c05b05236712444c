-- avg(vector) and sum(vector).  Expected values worked out by hand beside
-- each query.

CREATE TABLE vector_agg_t (g int, v vector);
INSERT INTO vector_agg_t VALUES
    (1, '[1,2,3]'), (1, '[3,4,5]'), (1, NULL),
    (2, '[10,20,30]'), (2, '[-10,0,0.5]'), (2, '[0,1,2]'), (2, NULL),
    (3, NULL);

-- all rows: sum = [1+3+10-10+0, 2+4+20+0+1, 3+5+30+0.5+2] = [4,27,40.5]
-- avg = sum / 5 = [0.8,5.4,8.1]
SELECT sum(v), avg(v) FROM vector_agg_t;
-- per group: 1: sum [4,6,8], avg [2,3,4]; 2: sum [0,21,32.5], avg [0,7,32.5/3=10.833333];
-- 3 (only NULL): NULL, NULL
SELECT g, sum(v), avg(v) FROM vector_agg_t GROUP BY g ORDER BY g;
-- zero rows: NULL for both
SELECT sum(v) IS NULL AS sum_null, avg(v) IS NULL AS avg_null FROM vector_agg_t WHERE false;
SELECT sum(v) IS NULL AS sum_null, avg(v) IS NULL AS avg_null FROM vector_agg_t WHERE g = 3;
-- one row: itself
SELECT sum(v), avg(v) FROM vector_agg_t WHERE v = '[3,4,5]';
-- avg of [1] and [2] is [1.5]
SELECT avg(v) FROM (VALUES ('[1]'::vector), ('[2]')) AS t(v);
-- FILTER and a running (window) average: [1,2,3] then ([1,2,3]+[3,4,5])/2 = [2,3,4]
SELECT avg(v) FILTER (WHERE g = 1) FROM vector_agg_t;
SELECT v, avg(v) OVER (ORDER BY v) AS running_avg, sum(v) OVER (ORDER BY v) AS running_sum
FROM vector_agg_t WHERE g = 1 AND v IS NOT NULL ORDER BY v;
-- a moving frame restarts the in-place state for each row: over [1],[2],[3],[4]
-- with the row before: avg [1],[1.5],[2.5],[3.5], sum [1],[3],[5],[7]
SELECT i, avg(('[' || i || ']')::vector) OVER w, sum(('[' || i || ']')::vector) OVER w
FROM generate_series(1, 4) AS i
WINDOW w AS (ORDER BY i ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) ORDER BY i;

-- different dimensions between rows are an error
INSERT INTO vector_agg_t VALUES (4, '[1,2]'), (4, '[1,2,3]');
SELECT avg(v) FROM vector_agg_t WHERE g = 4;
SELECT sum(v) FROM vector_agg_t WHERE g = 4;
SELECT sum(v) FROM vector_agg_t;
DELETE FROM vector_agg_t WHERE g = 4;

-- sums are kept in double: the avg of 3e38 and 3e38 is 3e38 even though the
-- sum (6e38) does not fit in float4; that sum is an overflow error
SELECT avg(v) = '[3e38]' AS avg_ok FROM (VALUES ('[3e38]'::vector), ('[3e38]')) AS t(v);
SELECT sum(v) FROM (VALUES ('[1,3e38]'::vector), ('[1,3e38]')) AS t(v);
-- double accumulation: 2^24 + 1 + 1 + ... is exact in double, where a float4
-- running sum would stay at 2^24.  16777216 + 4 * 1 = 16777220
SELECT sum(v) = '[16777220]' AS exact
FROM (VALUES ('[16777216]'::vector), ('[1]'), ('[1]'), ('[1]'), ('[1]')) AS t(v);

-- the state functions called directly: state is {count, sum_1, ..., sum_d}
SELECT vector_accum('{0}', '[1,2]') AS first_row;
SELECT vector_accum('{1,1,2}', '[3,4]') AS second_row;
SELECT vector_combine('{2,4,6}', '{1,1,1}') AS combined;
SELECT vector_combine('{0}', '{1,1,1}') AS left_empty, vector_combine('{1,1,1}', '{0}') AS right_empty,
       vector_combine('{0}', '{0}') AS both_empty;
SELECT vector_avg('{2,4,6}') AS avg, vector_sum('{2,4,6}') AS sum;
SELECT vector_avg('{0}') IS NULL AS avg_null, vector_sum('{0}') IS NULL AS sum_null;
-- mismatches and malformed states are errors
SELECT vector_accum('{1,1,2}', '[1]');
SELECT vector_combine('{1,1,2}', '{1,1}');
SELECT vector_accum('{{1,2}}', '[1]');
SELECT vector_accum('{1,NULL}', '[1]');
SELECT vector_avg('{}');

-- ---------------------------------------------------------------------------
-- Parallel aggregation gives the same result as a serial one.
-- Rows i = 1..10000 hold [1, i, i % 2]:
--   sum = [10000, 10000*10001/2 = 50005000, 5000]
--   avg = [1, 5000.5, 0.5]
-- ---------------------------------------------------------------------------
CREATE TABLE vector_agg_big (v vector);
INSERT INTO vector_agg_big
SELECT ('[1,' || i || ',' || (i % 2) || ']')::vector FROM generate_series(1, 10000) AS i;
ANALYZE vector_agg_big;

SET max_parallel_workers_per_gather = 0;
EXPLAIN (COSTS OFF) SELECT sum(v), avg(v) FROM vector_agg_big;
SELECT sum(v), avg(v) FROM vector_agg_big;
CREATE TEMP TABLE vector_agg_serial AS SELECT sum(v) AS s, avg(v) AS a FROM vector_agg_big;

SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
SET force_parallel_mode = on;
EXPLAIN (COSTS OFF) SELECT sum(v), avg(v) FROM vector_agg_big;
SELECT sum(v), avg(v) FROM vector_agg_big;
SELECT p.s = s.s AS same_sum, p.a = s.a AS same_avg
FROM (SELECT sum(v) AS s, avg(v) AS a FROM vector_agg_big) AS p, vector_agg_serial AS s;
RESET force_parallel_mode;
RESET parallel_leader_participation;
RESET max_parallel_workers_per_gather;
RESET min_parallel_table_scan_size;
RESET parallel_tuple_cost;
RESET parallel_setup_cost;

DROP TABLE vector_agg_big;
DROP TABLE vector_agg_t;
