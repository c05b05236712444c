-- Every way to ask an hnsw index for something it cannot do, and the ERROR
-- each one gets.  Nothing here may crash the backend or create an index.

CREATE TABLE hnsw_err (id int, v vector(3));
INSERT INTO hnsw_err VALUES (1, '[1,2,3]'), (2, '[4,5,6]');

-- ---------------------------------------------------------------------------
-- Index options: m in 2..100, ef_construction in 4..1000 and >= 2 * m.
-- ---------------------------------------------------------------------------
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 1);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 101);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 0);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = -16);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (ef_construction = 3);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (ef_construction = 1001);
-- ef_construction below 2 * m, given or by default (m = 40: 64 < 80)
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 16, ef_construction = 31);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 40);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 2, ef_construction = 3);
-- not an option, not an integer
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (lists = 100);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (ef_search = 40);
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 'sixteen');
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (ef_construction = '');
CREATE INDEX ON hnsw_err USING hnsw (v) WITH (m = 99999999999);
-- none of them made an index
SELECT count(*) FROM pg_index WHERE indrelid = 'hnsw_err'::regclass;
-- PostgreSQL rounds a fractional value of an integer option (as it does for
-- every integer reloption and setting): 2.5 is taken, as rint(2.5) = 2
CREATE INDEX hnsw_err_frac ON hnsw_err USING hnsw (v) WITH (m = 2.5);
SELECT m FROM hierindex_index_info('hnsw_err_frac');
DROP INDEX hnsw_err_frac;

-- the edges of the ranges are accepted
CREATE INDEX hnsw_err_edge1 ON hnsw_err USING hnsw (v) WITH (m = 2, ef_construction = 4);
CREATE INDEX hnsw_err_edge2 ON hnsw_err USING hnsw (v) WITH (m = 100, ef_construction = 1000);
CREATE INDEX hnsw_err_edge3 ON hnsw_err USING hnsw (v) WITH (m = 16, ef_construction = 32);
SELECT c.relname, i.m, i.ef_construction
FROM pg_class c, hierindex_index_info(c.oid) i
WHERE c.relname LIKE 'hnsw_err_edge%' ORDER BY 1;
-- ALTER INDEX checks the same rules
ALTER INDEX hnsw_err_edge3 SET (m = 101);
ALTER INDEX hnsw_err_edge3 SET (ef_construction = 20);
ALTER INDEX hnsw_err_edge3 SET (probes = 1);
DROP INDEX hnsw_err_edge1, hnsw_err_edge2, hnsw_err_edge3;

-- ---------------------------------------------------------------------------
-- hnsw.ef_search in 1..1000
-- ---------------------------------------------------------------------------
SHOW hnsw.ef_search;
SET hnsw.ef_search = 0;
SET hnsw.ef_search = 1001;
SET hnsw.ef_search = -1;
SET hnsw.ef_search = 'many';
SET hnsw.ef_search = 1;
SET hnsw.ef_search = 1000;
SHOW hnsw.ef_search;
RESET hnsw.ef_search;
SHOW hnsw.ef_search;
-- the hnsw. prefix is reserved: a misspelt setting is an error, not a new one
SET hnsw.ef_serach = 10;
SET hnsw.m = 16;

-- ---------------------------------------------------------------------------
-- Columns an hnsw index cannot take.
-- ---------------------------------------------------------------------------
-- a vector column without dimensions
CREATE TABLE hnsw_err_nodim (id int, v vector);
INSERT INTO hnsw_err_nodim VALUES (1, '[1,2,3]');
CREATE INDEX ON hnsw_err_nodim USING hnsw (v);
CREATE INDEX ON hnsw_err_nodim USING hnsw (v vector_cosine_ops);
-- an expression with dimensions is fine
CREATE INDEX hnsw_err_nodim_expr ON hnsw_err_nodim USING hnsw ((v::vector(3)));
SET enable_seqscan = off;
SELECT id FROM hnsw_err_nodim ORDER BY v::vector(3) <-> '[1,2,3.5]' LIMIT 1;
RESET enable_seqscan;
INSERT INTO hnsw_err_nodim VALUES (2, '[1,2]');
DROP TABLE hnsw_err_nodim;
-- more than 2000 dimensions
CREATE TABLE hnsw_err_wide (v vector(2001));
CREATE INDEX ON hnsw_err_wide USING hnsw (v);
CREATE INDEX ON hnsw_err_wide USING hnsw (v vector_ip_ops);
DROP TABLE hnsw_err_wide;
-- 2000 dimensions is the largest that fits
CREATE TABLE hnsw_err_2000 (id int, v vector(2000));
INSERT INTO hnsw_err_2000
	SELECT i, array_fill(i::real, array[2000])::vector(2000) FROM generate_series(1, 3) i;
CREATE INDEX hnsw_err_2000_l2 ON hnsw_err_2000 USING hnsw (v);
INSERT INTO hnsw_err_2000 SELECT 4, array_fill(4::real, array[2000])::vector(2000);
SELECT elements, heap_tids, dimensions FROM hierindex_index_info('hnsw_err_2000_l2');
SET enable_seqscan = off;
SELECT id FROM hnsw_err_2000 ORDER BY v <-> array_fill(3.9::real, array[2000])::vector(2000) LIMIT 4;
RESET enable_seqscan;
SELECT * FROM hierindex_check('hnsw_err_2000_l2');
DROP TABLE hnsw_err_2000;
-- not a vector, or a btree operator class
CREATE INDEX ON hnsw_err USING hnsw (id);
CREATE INDEX ON hnsw_err USING hnsw (v vector_ops);
CREATE INDEX ON hnsw_err USING hnsw (v int4_ops);
-- what the access method does not support
CREATE INDEX ON hnsw_err USING hnsw (v, v);
CREATE UNIQUE INDEX ON hnsw_err USING hnsw (v);
CREATE INDEX ON hnsw_err USING hnsw (v) INCLUDE (id);
CREATE INDEX ON hnsw_err USING hnsw (v DESC);
ALTER TABLE hnsw_err ADD EXCLUDE USING hnsw (v WITH <->);
SELECT count(*) FROM pg_index WHERE indrelid = 'hnsw_err'::regclass;

-- ---------------------------------------------------------------------------
-- Dimension mismatches, with an index in place.
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_err_l2 ON hnsw_err USING hnsw (v);
CREATE INDEX hnsw_err_cosine ON hnsw_err USING hnsw (v vector_cosine_ops);
INSERT INTO hnsw_err VALUES (3, '[1,2]');
INSERT INTO hnsw_err VALUES (3, '[1,2,3,4]');
COPY hnsw_err FROM stdin;
4	[1,2,3]
5	[1,2]
\.
UPDATE hnsw_err SET v = '[1,2,3,4]' WHERE id = 1;
SET enable_seqscan = off;
SELECT id FROM hnsw_err ORDER BY v <-> '[1,2]' LIMIT 1;
SELECT id FROM hnsw_err ORDER BY v <=> '[1,2,3,4]' LIMIT 1;
-- nothing was added
SELECT id, v FROM hnsw_err ORDER BY v <-> '[1,2,3]' LIMIT 10;
SELECT elements, heap_tids FROM hierindex_index_info('hnsw_err_l2');
-- the index still works for rows of the right size
INSERT INTO hnsw_err VALUES (3, '[7,8,9]');
SELECT id FROM hnsw_err ORDER BY v <-> '[7,8,8]' LIMIT 10;
SELECT id FROM hnsw_err ORDER BY v <=> '[7,8,8]' LIMIT 10;
RESET enable_seqscan;

-- ---------------------------------------------------------------------------
-- The inspection functions on things that are not hnsw indexes.
-- ---------------------------------------------------------------------------
SELECT * FROM hierindex_index_info('hnsw_err');
SELECT * FROM hierindex_check('hnsw_err');
SELECT * FROM hierindex_index_info(0);
SELECT * FROM hierindex_index_info(NULL);

DROP TABLE hnsw_err;
