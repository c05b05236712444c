/*
 * hnsw_build_parallel.h — the parallel load phase of a bulk build, between
 * hnsw_build.c (which owns the in-memory graph) and hnsw_build_parallel.c
 * (which owns the parallel context, the workers and their queues).
 *
 * Private to the two build files: the rest of the extension sees only
 * ambuild.
 */
#ifndef HIERINDEX_HNSW_BUILD_PARALLEL_H
#define HIERINDEX_HNSW_BUILD_PARALLEL_H

#include "access/tableam.h"
#include "hnsw/hnsw.h"

/* The leader's side of a parallel load: workers launched, queues attached. */
typedef struct HnswParallelLoad HnswParallelLoad;

/*
 * The leader takes one row a worker prepared: its heap TID, the prepared
 * vector and payload (spec->shape.dimensions floats, spec->payload_stride
 * bytes) and their hash (hnsw_build_row_hash).
 */
typedef void (*HnswShippedRowFunc) (void *arg, ItemPointer tid,
									const float *vector, const char *payload,
									uint32 hash);

/*
 * Start workers for the load phase when the server would give this build
 * any (plan_create_index_workers) and at least one starts; NULL otherwise,
 * for the serial load.  add_row (with arg) receives the workers' rows
 * during hnsw_parallel_load_drain and hnsw_parallel_load_end.
 */
extern HnswParallelLoad *hnsw_parallel_load_begin(Relation heap, Relation index,
												  IndexInfo *info,
												  const HnswBuildSpec *spec,
												  HnswShippedRowFunc add_row,
												  void *arg);
/* workers launched (at least one) */
extern int	hnsw_parallel_load_workers(HnswParallelLoad *load);
/* the leader's own share of the parallel heap scan */
extern TableScanDesc hnsw_parallel_load_leader_scan(HnswParallelLoad *load);
/* hand every row waiting in the queues now to add_row; never waits */
extern void hnsw_parallel_load_drain(HnswParallelLoad *load);

/*
 * Hand over the rest of the workers' rows, waiting for them; rethrow a
 * worker's ERROR; leave parallel mode.  Returns the heap tuples the workers
 * scanned.
 */
extern double hnsw_parallel_load_end(HnswParallelLoad *load);

/*
 * In a parallel worker of a load: true while the worker runs the index's
 * ambuild, which then calls hnsw_parallel_load_worker_scan with its spec
 * instead of building.
 */
extern bool hnsw_parallel_load_in_worker(void);
extern void hnsw_parallel_load_worker_scan(Relation heap, Relation index,
										   IndexInfo *info,
										   const HnswBuildSpec *spec);

/*
 * hnsw_build.c: prepare a row's indexed value (false: not indexed), and the
 * duplicate finder's hash of a prepared row
 */
extern bool hnsw_build_prepare_row(const HnswBuildSpec *spec,
								   MemoryContext tuple_context, Datum *values,
								   bool *isnull, float *vector, char *payload);
extern uint32 hnsw_build_row_hash(const HnswBuildSpec *spec, const float *vector,
								  const char *payload);

#endif							/* HIERINDEX_HNSW_BUILD_PARALLEL_H */
