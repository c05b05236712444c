/*
 * hnsw_build_parallel.c — the load phase of a bulk build spread over
 * parallel workers, for both access methods.
 *
 * Why.  Loading is mostly detoasting out-of-line vectors (a 768-d vector is
 * 3 KB, stored in the TOAST table) and preparing them (dimension check,
 * normalisation, matryoshka's payload): work per row that any process can
 * do.  What must stay in one place is the in-memory Graph with its
 * duplicate finder and memory budget, so the leader keeps those and the
 * workers only feed it.
 *
 * How many.  PostgreSQL 15 plans workers only for btree builds, so the
 * build asks the planner itself, as index_build does for btree:
 * plan_create_index_workers (max_parallel_maintenance_workers, the table's
 * parallel_workers option, the heap's size against
 * min_parallel_table_scan_size, at least 32 MB of maintenance_work_mem per
 * participant, none for temporary tables or parallel-unsafe index
 * expressions and predicates), and none outside normal processing or when
 * the backend is already in parallel mode.  The planner counts the heap's
 * own pages only, and a table of toasted vectors looks small to it, so for
 * a plain index on a table without the parallel_workers option the count
 * by size also takes the TOAST table's pages (planned_workers).
 *
 * Shape.  One parallel heap scan (table_parallelscan_initialize) is shared
 * by the leader and the workers, each running table_index_build_scan on it.
 * A worker prepares each row with the spec's prepare callback exactly as
 * the serial build does (NULLs and zero vectors under cosine skipped, an
 * ERROR on a dimension mismatch) and sends (heap TID, hash, vector,
 * payload) through its own shm_mq to the leader; its last message is the
 * count of heap tuples it scanned.  The leader drains the queues round
 * robin and hands each row to hnsw_build.c, which adds it as it adds its
 * own rows (duplicate merging, maintenance_work_mem, the spool fallback).
 * The leader scans too, but drains before each of its own rows: when the
 * workers produce faster than it can add, it does little else, and when
 * they are slow it scans.  The hash of the row is computed by the worker,
 * so the leader spends per row little more than two copies and a probe.
 *
 * Which spec.  A worker must prepare rows with the same spec as the leader,
 * and a spec holds function pointers and a pointer to its access method's
 * private data, which do not cross processes.  So the worker opens the
 * relations and calls the index's own ambuild, which makes its spec exactly
 * as in the leader and passes it to hnsw_build_with_spec; that function
 * sees hnsw_parallel_load_in_worker() and runs the worker's scan
 * (hnsw_parallel_load_worker_scan) instead of building.  No access method
 * needs to know about the parallel load.
 *
 * Snapshots and locks follow a parallel btree build: a plain CREATE INDEX
 * scans with SnapshotAny (table_index_build_scan judges each tuple against
 * the oldest xmin itself), CREATE INDEX CONCURRENTLY with an MVCC snapshot
 * the leader registers; workers open the relations with the lock modes
 * index.c took for the build (they share the leader's lock group).
 *
 * Errors.  A worker's ERROR reaches the leader through the parallel
 * context's error queue and is rethrown there at its next
 * CHECK_FOR_INTERRUPTS, which the scan and the drain loops do for every
 * row; a cancel lands the same way, and aborting the transaction destroys
 * the parallel context (terminating the workers and freeing the DSM).  A
 * worker whose queue closes before its final message failed: the leader
 * waits for the workers and rethrows the failure.
 *
 * Order.  The elements' order in the graph (and so its links and level
 * draws) then depends on which process read which block when; a build
 * with workers is no more reproducible than the multi-thread linking that
 * follows.  Without workers the load is the serial one, unchanged.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/index.h"
#include "catalog/pg_proc.h"
#include "executor/instrument.h"
#include "miscadmin.h"
#include "optimizer/optimizer.h"
#include "optimizer/paths.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "hnsw/hnsw_build_parallel.h"

/* keys of the DSM's table of contents (the parallel context uses its own) */
#define LOAD_KEY_SHARED			UINT64CONST(0x4849455200000001)
#define LOAD_KEY_TABLE_SCAN		UINT64CONST(0x4849455200000002)
#define LOAD_KEY_QUEUES			UINT64CONST(0x4849455200000003)
#define LOAD_KEY_QUERY_TEXT		UINT64CONST(0x4849455200000004)
#define LOAD_KEY_BUFFER_USAGE	UINT64CONST(0x4849455200000005)
#define LOAD_KEY_WAL_USAGE		UINT64CONST(0x4849455200000006)

/*
 * Each worker's queue holds at least this many bytes and this many rows:
 * room to keep a worker busy while the leader adds other workers' rows.
 */
#define QUEUE_MIN_BYTES			((Size) 1024 * 1024)
#define QUEUE_MIN_ROWS			16

/* What every process of the load reads; written by the leader before launch. */
typedef struct LoadShared
{
	Oid			heap_relid;
	Oid			index_relid;
	bool		concurrent;		/* CREATE INDEX CONCURRENTLY: locks, snapshot */
	int			queue_count;	/* one per planned worker */
	Size		queue_bytes;
	Size		row_bytes;		/* every row message, header included */
} LoadShared;

/*
 * A row message: this header, then the vector's floats, then (at
 * ROW_PAYLOAD_OFFSET) the payload.  A worker's last message is a
 * WorkerDone instead, which has a different length.
 */
typedef struct ShippedRowHeader
{
	ItemPointerData tid;
	uint32		hash;			/* hnsw_build_row_hash of vector and payload */
} ShippedRowHeader;

#define ROW_VECTOR_OFFSET		MAXALIGN(sizeof(ShippedRowHeader))
#define ROW_PAYLOAD_OFFSET(dimensions) \
	MAXALIGN(ROW_VECTOR_OFFSET + sizeof(float) * (dimensions))

typedef struct WorkerDone
{
	double		heap_tuples;	/* what its table_index_build_scan returned */
} WorkerDone;

struct HnswParallelLoad
{
	ParallelContext *pcxt;
	Relation	heap;
	Snapshot	snapshot;		/* SnapshotAny, or registered MVCC */
	LoadShared *shared;
	ParallelTableScanDesc table_scan;
	BufferUsage *buffer_usage;	/* per worker */
	WalUsage   *wal_usage;
	const HnswBuildSpec *spec;
	int			workers;		/* launched */
	shm_mq_handle **queues;		/* of the launched workers */
	bool	   *finished;		/* its final message came, or the queue closed */
	bool	   *done;			/* its final message came */
	int			open_queues;
	double		worker_heap_tuples;
	HnswShippedRowFunc add_row;
	void	   *add_row_arg;
};

/* In a worker: what hnsw_parallel_load_worker_scan needs, while ambuild runs. */
typedef struct WorkerContext
{
	dsm_segment *segment;
	LoadShared *shared;
	ParallelTableScanDesc table_scan;
	char	   *queues;
} WorkerContext;

static WorkerContext *running_worker = NULL;

/* A worker's state during its scan. */
typedef struct WorkerScan
{
	const HnswBuildSpec *spec;
	shm_mq_handle *queue;
	char	   *message;		/* row_bytes */
	float	   *vector;			/* in message */
	char	   *payload;		/* in message */
	Size		row_bytes;
	MemoryContext tuple_context;
} WorkerScan;

PGDLLEXPORT void hnsw_parallel_load_main(dsm_segment *segment, shm_toc *toc);

static Size
row_message_bytes(const HnswBuildSpec *spec)
{
	return ROW_PAYLOAD_OFFSET(spec->shape.dimensions) + spec->payload_stride;
}

/*
 * Workers by size as the planner counts them for a scan (one from
 * min_parallel_table_scan_size, one more for each tripling), but over the
 * heap and its TOAST table together: the vectors are in the TOAST table.
 * Unlike plan_create_index_workers this count does not require 32 MB of
 * maintenance_work_mem per participant: that rule shares the memory among
 * btree's sorting workers, while here the graph and its budget stay in the
 * leader and a worker only needs its queue (QUEUE_MIN_BYTES of DSM).
 */
static int
workers_by_size(Relation heap)
{
	BlockNumber pages = RelationGetNumberOfBlocks(heap);
	BlockNumber threshold = Max(min_parallel_table_scan_size, 1);
	int			workers = 0;

	if (OidIsValid(heap->rd_rel->reltoastrelid))
	{
		Relation	toast = table_open(heap->rd_rel->reltoastrelid, AccessShareLock);

		pages += RelationGetNumberOfBlocks(toast);
		table_close(toast, AccessShareLock);
	}
	while (pages >= threshold && workers < max_parallel_maintenance_workers)
	{
		workers++;
		if (threshold > MaxBlockNumber / 3)
			break;
		threshold *= 3;
	}
	return workers;
}

/*
 * Workers for this build: 0 for the serial load.  The planner's answer
 * (plan_create_index_workers), except that where it sees only a small heap
 * the TOAST table's size counts too: when the table has no parallel_workers
 * option (which the planner's answer already follows) and the index has no
 * expression or predicate (whose parallel safety only the planner judges),
 * for a permanent or unlogged table.
 */
static int
planned_workers(Relation heap, Relation index)
{
	int			planned;

	if (!IsNormalProcessingMode() || IsInParallelMode() || max_parallel_maintenance_workers == 0)
		return 0;
	planned = plan_create_index_workers(RelationGetRelid(heap), RelationGetRelid(index));
	if (RelationGetParallelWorkers(heap, -1) == -1 &&
		heap->rd_rel->relpersistence != RELPERSISTENCE_TEMP &&
		RelationGetIndexExpressions(index) == NIL &&
		RelationGetIndexPredicate(index) == NIL)
		planned = Max(planned, workers_by_size(heap));
	return planned;
}

/*
 * The library the workers load: the one the index's access method handler
 * comes from (its pg_proc.probin), which is where the leader's build runs.
 * Naming the library any other way could, where the extension's functions
 * point at a copy of it, load a second copy in the worker.
 */
static char *
access_method_library(Relation index)
{
	HeapTuple	tuple;
	Datum		probin;
	bool		isnull;
	char	   *library;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(index->rd_amhandler));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u", index->rd_amhandler);
	probin = SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_probin, &isnull);
	if (isnull)
		elog(ERROR, "access method handler %u of index \"%s\" has no library",
			 index->rd_amhandler, RelationGetRelationName(index));
	library = TextDatumGetCString(probin);
	ReleaseSysCache(tuple);
	return library;
}

/* Leave parallel mode and free the context (before or after launching). */
static void
release_parallel(HnswParallelLoad *load)
{
	if (IsMVCCSnapshot(load->snapshot))
		UnregisterSnapshot(load->snapshot);
	DestroyParallelContext(load->pcxt);
	ExitParallelMode();
}

HnswParallelLoad *
hnsw_parallel_load_begin(Relation heap, Relation index, IndexInfo *info,
						 const HnswBuildSpec *spec, HnswShippedRowFunc add_row,
						 void *arg)
{
	HnswParallelLoad *load;
	ParallelContext *pcxt;
	int			planned = planned_workers(heap, index);
	Size		row_bytes = row_message_bytes(spec);
	Size		queue_bytes;
	Size		table_scan_bytes;
	Size		query_text_bytes = 0;
	char	   *queue_space;
	char	   *query_text;

	if (planned <= 0)
		return NULL;

	load = palloc0(sizeof(HnswParallelLoad));
	load->heap = heap;
	load->spec = spec;
	load->add_row = add_row;
	load->add_row_arg = arg;

	/*
	 * A plain build sees every tuple and decides on each itself; a
	 * concurrent one indexes what an MVCC snapshot of now shows.
	 */
	load->snapshot = info->ii_Concurrent ?
		RegisterSnapshot(GetTransactionSnapshot()) : SnapshotAny;

	EnterParallelMode();
	pcxt = CreateParallelContext(access_method_library(index),
								 "hnsw_parallel_load_main", planned);
	load->pcxt = pcxt;

	queue_bytes = MAXALIGN(Max(QUEUE_MIN_BYTES,
							   QUEUE_MIN_ROWS * (row_bytes + sizeof(Size))));
	table_scan_bytes = table_parallelscan_estimate(heap, load->snapshot);
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(LoadShared));
	shm_toc_estimate_chunk(&pcxt->estimator, table_scan_bytes);
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(queue_bytes, planned));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(BufferUsage), planned));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(WalUsage), planned));
	shm_toc_estimate_keys(&pcxt->estimator, 5);
	if (debug_query_string != NULL)
	{
		query_text_bytes = strlen(debug_query_string) + 1;
		shm_toc_estimate_chunk(&pcxt->estimator, query_text_bytes);
		shm_toc_estimate_keys(&pcxt->estimator, 1);
	}

	InitializeParallelDSM(pcxt);
	if (pcxt->seg == NULL)
	{
		/* no dynamic shared memory to be had: load serially */
		release_parallel(load);
		return NULL;
	}

	load->shared = shm_toc_allocate(pcxt->toc, sizeof(LoadShared));
	load->shared->heap_relid = RelationGetRelid(heap);
	load->shared->index_relid = RelationGetRelid(index);
	load->shared->concurrent = info->ii_Concurrent;
	load->shared->queue_count = planned;
	load->shared->queue_bytes = queue_bytes;
	load->shared->row_bytes = row_bytes;
	shm_toc_insert(pcxt->toc, LOAD_KEY_SHARED, load->shared);

	load->table_scan = shm_toc_allocate(pcxt->toc, table_scan_bytes);
	table_parallelscan_initialize(heap, load->table_scan, load->snapshot);
	shm_toc_insert(pcxt->toc, LOAD_KEY_TABLE_SCAN, load->table_scan);

	queue_space = shm_toc_allocate(pcxt->toc, mul_size(queue_bytes, planned));
	for (int i = 0; i < planned; i++)
	{
		shm_mq	   *queue = shm_mq_create(queue_space + (Size) i * queue_bytes,
										  queue_bytes);

		shm_mq_set_receiver(queue, MyProc);
	}
	shm_toc_insert(pcxt->toc, LOAD_KEY_QUEUES, queue_space);

	load->buffer_usage = shm_toc_allocate(pcxt->toc,
										  mul_size(sizeof(BufferUsage), planned));
	shm_toc_insert(pcxt->toc, LOAD_KEY_BUFFER_USAGE, load->buffer_usage);
	load->wal_usage = shm_toc_allocate(pcxt->toc, mul_size(sizeof(WalUsage), planned));
	shm_toc_insert(pcxt->toc, LOAD_KEY_WAL_USAGE, load->wal_usage);

	if (debug_query_string != NULL)
	{
		query_text = shm_toc_allocate(pcxt->toc, query_text_bytes);
		memcpy(query_text, debug_query_string, query_text_bytes);
		shm_toc_insert(pcxt->toc, LOAD_KEY_QUERY_TEXT, query_text);
	}

	LaunchParallelWorkers(pcxt);
	elog(DEBUG1, "%s build of \"%s\": parallel load with %d of %d planned workers launched",
		 spec->am_name, RelationGetRelationName(index), pcxt->nworkers_launched, planned);
	if (pcxt->nworkers_launched == 0)
	{
		/* no background worker slot free: load serially */
		WaitForParallelWorkersToFinish(pcxt);
		release_parallel(load);
		return NULL;
	}

	/* workers are numbered from 0 in launch order: queue i is worker i's */
	load->workers = pcxt->nworkers_launched;
	load->queues = palloc(sizeof(shm_mq_handle *) * load->workers);
	load->finished = palloc0(sizeof(bool) * load->workers);
	load->done = palloc0(sizeof(bool) * load->workers);
	for (int i = 0; i < load->workers; i++)
		load->queues[i] = shm_mq_attach((shm_mq *) (queue_space + (Size) i * queue_bytes),
										pcxt->seg, pcxt->worker[i].bgwhandle);
	load->open_queues = load->workers;
	return load;
}

int
hnsw_parallel_load_workers(HnswParallelLoad *load)
{
	return load->workers;
}

TableScanDesc
hnsw_parallel_load_leader_scan(HnswParallelLoad *load)
{
	return table_beginscan_parallel(load->heap, load->table_scan);
}

/*
 * One pass over the open queues, taking what each holds now.  Returns
 * whether any message came.
 */
static bool
drain_pass(HnswParallelLoad *load)
{
	const HnswBuildSpec *spec = load->spec;
	Size		row_bytes = load->shared->row_bytes;
	bool		received = false;

	for (int i = 0; i < load->workers; i++)
	{
		for (;;)
		{
			shm_mq_result result;
			Size		bytes;
			void	   *data;

			if (load->finished[i])
				break;
			result = shm_mq_receive(load->queues[i], &bytes, &data, true);
			if (result == SHM_MQ_WOULD_BLOCK)
				break;
			if (result == SHM_MQ_DETACHED)
			{
				/* the worker exited, without its final message: it failed */
				load->finished[i] = true;
				load->open_queues--;
				break;
			}
			received = true;
			if (bytes == row_bytes)
			{
				const char *message = (const char *) data;
				ShippedRowHeader header;

				memcpy(&header, message, sizeof(header));
				load->add_row(load->add_row_arg, &header.tid,
							  (const float *) (message + ROW_VECTOR_OFFSET),
							  message + ROW_PAYLOAD_OFFSET(spec->shape.dimensions),
							  header.hash);
			}
			else if (bytes == sizeof(WorkerDone))
			{
				WorkerDone	done;

				memcpy(&done, data, sizeof(done));
				load->worker_heap_tuples += done.heap_tuples;
				load->done[i] = true;
				load->finished[i] = true;
				load->open_queues--;
			}
			else
				elog(ERROR, "parallel %s build: message of %zu bytes from worker %d, expected %zu",
					 spec->am_name, bytes, i, row_bytes);
			CHECK_FOR_INTERRUPTS();
		}
	}
	return received;
}

void
hnsw_parallel_load_drain(HnswParallelLoad *load)
{
	while (load->open_queues > 0 && drain_pass(load))
		;
}

double
hnsw_parallel_load_end(HnswParallelLoad *load)
{
	ParallelContext *pcxt = load->pcxt;

	while (load->open_queues > 0)
	{
		if (drain_pass(load))
			continue;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1,
						 WAIT_EVENT_MQ_RECEIVE);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}

	/* rethrows the ERROR of a worker that failed */
	WaitForParallelWorkersToFinish(pcxt);
	for (int i = 0; i < load->workers; i++)
	{
		if (!load->done[i])
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("parallel worker %d of the %s build stopped before the end of its scan",
							i, load->spec->am_name)));
		shm_mq_detach(load->queues[i]);
		InstrAccumParallelQuery(&load->buffer_usage[i], &load->wal_usage[i]);
	}
	release_parallel(load);
	return load->worker_heap_tuples;
}

/* ------------------------------------------------------------------------
 * The worker's side
 * ------------------------------------------------------------------------ */

bool
hnsw_parallel_load_in_worker(void)
{
	return running_worker != NULL;
}

static void
worker_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
				bool tuple_is_alive, void *arg)
{
	WorkerScan *scan = (WorkerScan *) arg;
	ShippedRowHeader header;
	shm_mq_result result;

	if (!hnsw_build_prepare_row(scan->spec, scan->tuple_context, values, isnull,
								scan->vector, scan->payload))
		return;

	header.tid = *tid;
	header.hash = hnsw_build_row_hash(scan->spec, scan->vector, scan->payload);
	memcpy(scan->message, &header, sizeof(header));
	result = shm_mq_send(scan->queue, scan->row_bytes, scan->message, false, false);
	if (result != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("the leader of the parallel %s build stopped receiving rows",
						scan->spec->am_name)));
}

void
hnsw_parallel_load_worker_scan(Relation heap, Relation index, IndexInfo *info,
							   const HnswBuildSpec *spec)
{
	WorkerContext *worker = running_worker;
	WorkerScan	scan;
	WorkerDone	done;
	shm_mq	   *queue;
	TableScanDesc table_scan;

	if (row_message_bytes(spec) != worker->shared->row_bytes ||
		ParallelWorkerNumber >= worker->shared->queue_count)
		elog(ERROR, "parallel %s build: worker %d prepares rows of %zu bytes, the leader expects %zu",
			 spec->am_name, ParallelWorkerNumber, row_message_bytes(spec),
			 worker->shared->row_bytes);

	queue = (shm_mq *) (worker->queues +
						(Size) ParallelWorkerNumber * worker->shared->queue_bytes);
	shm_mq_set_sender(queue, MyProc);

	memset(&scan, 0, sizeof(scan));
	scan.spec = spec;
	scan.queue = shm_mq_attach(queue, worker->segment, NULL);
	scan.row_bytes = worker->shared->row_bytes;
	scan.message = palloc0(scan.row_bytes);
	scan.vector = (float *) (scan.message + ROW_VECTOR_OFFSET);
	scan.payload = scan.message + ROW_PAYLOAD_OFFSET(spec->shape.dimensions);
	scan.tuple_context = AllocSetContextCreate(CurrentMemoryContext,
											   "hierindex parallel load row",
											   ALLOCSET_DEFAULT_SIZES);

	table_scan = table_beginscan_parallel(heap, worker->table_scan);
	done.heap_tuples = table_index_build_scan(heap, index, info, true, false,
											  worker_callback, &scan, table_scan);
	if (shm_mq_send(scan.queue, sizeof(done), &done, false, true) != SHM_MQ_SUCCESS)
		ereport(ERROR,
				(errcode(ERRCODE_ADMIN_SHUTDOWN),
				 errmsg("the leader of the parallel %s build stopped receiving rows",
						spec->am_name)));
	shm_mq_detach(scan.queue);
	MemoryContextDelete(scan.tuple_context);
}

/*
 * Entry point of a worker (by name, through CreateParallelContext): open
 * the relations as the leader's build holds them, and run the index's
 * ambuild, which comes back to hnsw_parallel_load_worker_scan.
 */
void
hnsw_parallel_load_main(dsm_segment *segment, shm_toc *toc)
{
	WorkerContext worker;
	LOCKMODE	heap_lockmode;
	LOCKMODE	index_lockmode;
	Relation	heap;
	Relation	index;
	IndexInfo  *info;
	BufferUsage *buffer_usage;
	WalUsage   *wal_usage;

	debug_query_string = shm_toc_lookup(toc, LOAD_KEY_QUERY_TEXT, true);
	pgstat_report_activity(STATE_RUNNING, debug_query_string);

	worker.segment = segment;
	worker.shared = shm_toc_lookup(toc, LOAD_KEY_SHARED, false);
	worker.table_scan = shm_toc_lookup(toc, LOAD_KEY_TABLE_SCAN, false);
	worker.queues = shm_toc_lookup(toc, LOAD_KEY_QUEUES, false);

	/* the modes index.c locked the relations in for this kind of build */
	if (worker.shared->concurrent)
	{
		heap_lockmode = ShareUpdateExclusiveLock;
		index_lockmode = RowExclusiveLock;
	}
	else
	{
		heap_lockmode = ShareLock;
		index_lockmode = AccessExclusiveLock;
	}
	heap = table_open(worker.shared->heap_relid, heap_lockmode);
	index = index_open(worker.shared->index_relid, index_lockmode);
	info = BuildIndexInfo(index);
	info->ii_Concurrent = worker.shared->concurrent;

	InstrStartParallelQuery();
	running_worker = &worker;
	(void) index->rd_indam->ambuild(heap, index, info);
	running_worker = NULL;
	buffer_usage = shm_toc_lookup(toc, LOAD_KEY_BUFFER_USAGE, false);
	wal_usage = shm_toc_lookup(toc, LOAD_KEY_WAL_USAGE, false);
	InstrEndParallelQuery(&buffer_usage[ParallelWorkerNumber],
						  &wal_usage[ParallelWorkerNumber]);

	index_close(index, index_lockmode);
	table_close(heap, heap_lockmode);
}
