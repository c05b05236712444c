/*
 * hnsw_write_wal.c — the WAL of a bulk write: the written fork logged as
 * full-page images, by parallel workers when it is large.
 *
 * Why.  A bulk build writes its pages without WAL (hnsw_write.c) and then
 * logs every one of them once, as log_newpage_range does: a full-page image
 * per block, 32 to a record.  For a 4 GB index that is 4 GB of WAL, and in
 * one backend it took 3.8-4.7 s of a 21-24 s GPU build (README, GPU build):
 * copying the images into WAL buffers and computing their CRCs, work that
 * several processes can do side by side (WAL insertion takes one of
 * NUM_XLOGINSERT_LOCKS locks, so inserters proceed in parallel).
 *
 * How.  The fork is cut into chunks (WAL_CHUNK_BLOCKS blocks, fewer for a
 * small fork, so that every process gets some) that the
 * leader and its workers claim from a shared counter, each logging its
 * chunks with log_newpage_range, which locks each buffer exclusively while
 * it logs it: the chunks are disjoint, so nobody waits on anyone.  The
 * pages are in shared buffers (or were written out by eviction), so a
 * worker reads them like any buffer.  Every record is inserted before the
 * leader returns (it waits for the workers), so the commit record, which
 * comes later, flushes them all.
 *
 * How many.  One process per WAL_BLOCKS_PER_PROCESS ×
 * min_parallel_index_scan_size (by default 64 MB of index each, so that
 * starting workers pays), the leader being one of them, and at most
 * max_parallel_maintenance_workers workers.  Only the main fork of an index
 * that needs WAL is logged in parallel; an unlogged index's init fork is
 * small.  Workers open the index in the lock mode the leader holds it in
 * (AccessExclusiveLock for CREATE INDEX, RowExclusiveLock for CREATE INDEX
 * CONCURRENTLY's build): group locking makes the leader's lock no obstacle,
 * and a stronger mode would wait on the sessions a concurrent build lets in.
 *
 * Errors and cancels in a worker reach the leader through the parallel
 * context, as for the parallel load (hnsw_build_parallel.c); the
 * transaction's abort then discards the half-built index with its WAL.
 */
#include "postgres.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xloginsert.h"
#include "executor/instrument.h"
#include "miscadmin.h"
#include "optimizer/paths.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/lmgr.h"
#include "storage/shm_toc.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"

/* keys of the DSM's table of contents (the parallel load's start at ...01) */
#define WAL_KEY_SHARED			UINT64CONST(0x4849455200000011)
#define WAL_KEY_BUFFER_USAGE	UINT64CONST(0x4849455200000012)
#define WAL_KEY_WAL_USAGE		UINT64CONST(0x4849455200000013)

/* blocks a process claims at a time: 8 MB, less for small forks */
#define WAL_CHUNK_BLOCKS		1024

/* a process per this many times min_parallel_index_scan_size (64 MB by default) */
#define WAL_BLOCKS_PER_PROCESS	128

typedef struct WalShared
{
	Oid			index_relid;
	LOCKMODE	index_lockmode;
	BlockNumber nblocks;
	BlockNumber chunk_blocks;	/* blocks per claim */
	pg_atomic_uint32 next_chunk;
} WalShared;

PGDLLEXPORT void hnsw_log_written_fork_main(dsm_segment *segment, shm_toc *toc);

/* Claim chunks until none is left, logging each. */
static void
log_chunks(Relation index, WalShared *shared)
{
	for (;;)
	{
		uint32		chunk = pg_atomic_fetch_add_u32(&shared->next_chunk, 1);
		BlockNumber start;

		if (chunk >= (shared->nblocks + shared->chunk_blocks - 1) / shared->chunk_blocks)
			break;
		start = (BlockNumber) chunk * shared->chunk_blocks;
		log_newpage_range(index, MAIN_FORKNUM, start,
						  Min(start + shared->chunk_blocks, shared->nblocks), true);
	}
}

/* blocks a process logs at least: WAL_BLOCKS_PER_PROCESS x min_parallel_index_scan_size */
static BlockNumber
blocks_per_process(void)
{
	return (BlockNumber) Max(min_parallel_index_scan_size, 1) * WAL_BLOCKS_PER_PROCESS;
}

/* Workers for logging nblocks of fork, besides the leader: 0 for one process. */
static int
wal_workers(ForkNumber fork, BlockNumber nblocks)
{
	BlockNumber per_process = blocks_per_process();

	if (fork != MAIN_FORKNUM || !IsNormalProcessingMode() || IsInParallelMode() ||
		max_parallel_maintenance_workers == 0)
		return 0;
	return (int) Min(nblocks / per_process, (BlockNumber) max_parallel_maintenance_workers + 1) - 1;
}

int
hnsw_log_written_fork(Relation index, ForkNumber fork, BlockNumber nblocks)
{
	int			workers = wal_workers(fork, nblocks);
	int			launched;
	ParallelContext *pcxt;
	WalShared  *shared;
	BufferUsage *buffer_usage;
	WalUsage   *wal_usage;

	if (workers <= 0)
	{
		log_newpage_range(index, fork, 0, nblocks, true);
		return 0;
	}

	EnterParallelMode();
	pcxt = CreateParallelContext(hnsw_access_method_library(index),
								 "hnsw_log_written_fork_main", workers);
	shm_toc_estimate_chunk(&pcxt->estimator, sizeof(WalShared));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(BufferUsage), workers));
	shm_toc_estimate_chunk(&pcxt->estimator, mul_size(sizeof(WalUsage), workers));
	shm_toc_estimate_keys(&pcxt->estimator, 3);
	InitializeParallelDSM(pcxt);

	shared = shm_toc_allocate(pcxt->toc, sizeof(WalShared));
	shared->index_relid = RelationGetRelid(index);
	shared->index_lockmode =
		CheckRelationLockedByMe(index, AccessExclusiveLock, false) ?
		AccessExclusiveLock : RowExclusiveLock;
	shared->nblocks = nblocks;
	/* a few claims per process at least, so that all of them get some */
	shared->chunk_blocks = Max(Min(WAL_CHUNK_BLOCKS, blocks_per_process() / 4), 1);
	pg_atomic_init_u32(&shared->next_chunk, 0);
	shm_toc_insert(pcxt->toc, WAL_KEY_SHARED, shared);
	buffer_usage = shm_toc_allocate(pcxt->toc, mul_size(sizeof(BufferUsage), workers));
	shm_toc_insert(pcxt->toc, WAL_KEY_BUFFER_USAGE, buffer_usage);
	wal_usage = shm_toc_allocate(pcxt->toc, mul_size(sizeof(WalUsage), workers));
	shm_toc_insert(pcxt->toc, WAL_KEY_WAL_USAGE, wal_usage);

	LaunchParallelWorkers(pcxt);
	launched = pcxt->nworkers_launched;
	log_chunks(index, shared);
	WaitForParallelWorkersToFinish(pcxt);
	for (int i = 0; i < launched; i++)
		InstrAccumParallelQuery(&buffer_usage[i], &wal_usage[i]);
	DestroyParallelContext(pcxt);
	ExitParallelMode();
	return launched;
}

/* Entry point of a worker (by name, through CreateParallelContext). */
void
hnsw_log_written_fork_main(dsm_segment *segment, shm_toc *toc)
{
	WalShared  *shared = shm_toc_lookup(toc, WAL_KEY_SHARED, false);
	BufferUsage *buffer_usage = shm_toc_lookup(toc, WAL_KEY_BUFFER_USAGE, false);
	WalUsage   *wal_usage = shm_toc_lookup(toc, WAL_KEY_WAL_USAGE, false);
	Relation	index;

	index = index_open(shared->index_relid, shared->index_lockmode);
	InstrStartParallelQuery();
	log_chunks(index, shared);
	InstrEndParallelQuery(&buffer_usage[ParallelWorkerNumber],
						  &wal_usage[ParallelWorkerNumber]);
	index_close(index, shared->index_lockmode);
}
