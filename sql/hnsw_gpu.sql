-- Choosing the builder of an hnsw index: the index option build_device and
-- the settings hierindex.build_device and hierindex.gpu_*.
--
-- Runs where CI runs: no GPU, and hierindex_gpu.so installed or not (with
-- nvcc it is built and installed, and then fails to find a device).  Either
-- way 'gpu' must be an ERROR and 'auto' must build on the CPU.  The ERROR's
-- detail (which of the two) varies, so those statements run with VERBOSITY
-- terse; a build that succeeds under 'cpu' or 'gpu' prints a NOTICE with
-- timings, so those run with client_min_messages = warning (the NOTICE's
-- text is checked by test/t/050_gpu_build.pl).

CREATE TABLE hnsw_gpu (id int, v vector(3));
INSERT INTO hnsw_gpu
SELECT i, ARRAY[i % 7, i % 11, i % 13]::vector FROM generate_series(1, 200) i;

-- ---------------------------------------------------------------------------
-- Bad values: index option (CREATE and ALTER) and settings
-- ---------------------------------------------------------------------------
CREATE INDEX ON hnsw_gpu USING hnsw (v) WITH (build_device = 'tpu');
CREATE INDEX ON hnsw_gpu USING hnsw (v) WITH (build_device = '');
CREATE INDEX ON hnsw_gpu USING hnsw (v) WITH (build_device = 'gpu0');
CREATE INDEX ON hnsw_gpu USING hnsw (v) WITH (build_device = 1);
CREATE INDEX ON hnsw_gpu USING hnsw (v) WITH (build_device);
SELECT count(*) FROM pg_index WHERE indrelid = 'hnsw_gpu'::regclass;

SET hierindex.build_device = 'tpu';
SET hierindex.build_device = '';
SET hierindex.gpu_device = -1;
SET hierindex.gpu_device = 256;
SET hierindex.gpu_min_rows = -1;
SET hierindex.gpu_memory_limit = -1;
SET hierindex.gpu_precision = 'fp8';
SET hierindex.gpu_precision = 'tf32x3';

-- defaults, and units of the memory limit
SHOW hierindex.build_device;
SHOW hierindex.gpu_device;
SHOW hierindex.gpu_min_rows;
SHOW hierindex.gpu_memory_limit;
SHOW hierindex.gpu_precision;
SET hierindex.gpu_memory_limit = '2GB';
SHOW hierindex.gpu_memory_limit;
RESET hierindex.gpu_memory_limit;
SET hierindex.gpu_precision = 'BF16';
SHOW hierindex.gpu_precision;
RESET hierindex.gpu_precision;

-- ---------------------------------------------------------------------------
-- auto (the default): a table this small builds on the CPU, silently
-- ---------------------------------------------------------------------------
CREATE INDEX hnsw_gpu_auto ON hnsw_gpu USING hnsw (v);
SELECT build_method, elements FROM hierindex_index_info('hnsw_gpu_auto');
DROP INDEX hnsw_gpu_auto;

-- auto with no size floor tries the GPU, finds none here, and still builds
-- on the CPU without a message
SET hierindex.gpu_min_rows = 0;
CREATE INDEX hnsw_gpu_auto ON hnsw_gpu USING hnsw (v) WITH (build_device = 'auto');
SELECT build_method, elements FROM hierindex_index_info('hnsw_gpu_auto');
DROP INDEX hnsw_gpu_auto;
RESET hierindex.gpu_min_rows;

-- ---------------------------------------------------------------------------
-- cpu, as an index option and as the setting (any case)
-- ---------------------------------------------------------------------------
SET client_min_messages = warning;
CREATE INDEX hnsw_gpu_cpu1 ON hnsw_gpu USING hnsw (v) WITH (build_device = 'cpu');
CREATE INDEX hnsw_gpu_cpu2 ON hnsw_gpu USING hnsw (v) WITH (build_device = 'CPU');
SET hierindex.build_device = 'cpu';
CREATE INDEX hnsw_gpu_cpu3 ON hnsw_gpu USING hnsw (v);
RESET hierindex.build_device;
RESET client_min_messages;
SELECT c.relname, i.build_method, i.elements
FROM pg_class c, hierindex_index_info(c.oid) i
WHERE c.relname LIKE 'hnsw_gpu_cpu%' ORDER BY 1;
DROP INDEX hnsw_gpu_cpu1, hnsw_gpu_cpu2, hnsw_gpu_cpu3;

-- ---------------------------------------------------------------------------
-- gpu where there is none: an ERROR, and no index
-- ---------------------------------------------------------------------------
\set VERBOSITY terse
CREATE INDEX hnsw_gpu_gpu ON hnsw_gpu USING hnsw (v) WITH (build_device = 'gpu');
SET hierindex.build_device = 'gpu';
CREATE INDEX hnsw_gpu_gpu ON hnsw_gpu USING hnsw (v);
-- a device number that exists nowhere fails the same way
SET hierindex.gpu_device = 255;
CREATE INDEX hnsw_gpu_gpu ON hnsw_gpu USING hnsw (v);
RESET hierindex.gpu_device;
\set VERBOSITY default
-- the index option wins over the setting
SET client_min_messages = warning;
CREATE INDEX hnsw_gpu_cpu ON hnsw_gpu USING hnsw (v) WITH (build_device = 'cpu');
RESET client_min_messages;
CREATE INDEX hnsw_gpu_auto ON hnsw_gpu USING hnsw (v) WITH (build_device = 'auto');
SELECT c.relname, i.build_method
FROM pg_class c, hierindex_index_info(c.oid) i
WHERE c.relname LIKE 'hnsw_gpu_%' ORDER BY 1;
DROP INDEX hnsw_gpu_cpu, hnsw_gpu_auto;
RESET hierindex.build_device;

-- REINDEX goes through the same choice: an index whose option is changed to
-- 'gpu' keeps its old graph when the rebuild fails
CREATE INDEX hnsw_gpu_re ON hnsw_gpu USING hnsw (v);
ALTER INDEX hnsw_gpu_re SET (build_device = 'gpu');
\set VERBOSITY terse
REINDEX INDEX hnsw_gpu_re;
\set VERBOSITY default
ALTER INDEX hnsw_gpu_re SET (build_device = 'banana');
SELECT reloptions FROM pg_class WHERE relname = 'hnsw_gpu_re';
SELECT build_method, elements FROM hierindex_index_info('hnsw_gpu_re');
SELECT count(*) FROM hierindex_check('hnsw_gpu_re');
DROP INDEX hnsw_gpu_re;

-- L1: the GPU builder has no L1 kernel; the ERROR says so on any machine
CREATE INDEX ON hnsw_gpu USING hnsw (v vector_l1_ops) WITH (build_device = 'gpu');
-- under auto, L1 simply builds on the CPU
SET hierindex.gpu_min_rows = 0;
CREATE INDEX hnsw_gpu_l1 ON hnsw_gpu USING hnsw (v vector_l1_ops);
SELECT metric, build_method FROM hierindex_index_info('hnsw_gpu_l1');
DROP INDEX hnsw_gpu_l1;
RESET hierindex.gpu_min_rows;

-- nothing to link (an empty table): no builder is needed, even under 'gpu'
CREATE TABLE hnsw_gpu_empty (v vector(3));
SET client_min_messages = warning;
CREATE INDEX hnsw_gpu_empty_idx ON hnsw_gpu_empty USING hnsw (v) WITH (build_device = 'gpu');
RESET client_min_messages;
SELECT elements FROM hierindex_index_info('hnsw_gpu_empty_idx');
DROP TABLE hnsw_gpu_empty;

-- none of the failed statements left an index, and the table is intact
SELECT count(*) FROM pg_index WHERE indrelid = 'hnsw_gpu'::regclass;
SELECT count(*), sum(id) FROM hnsw_gpu;
DROP TABLE hnsw_gpu;
