/*
 * hnsw_build.c — ambuild and ambuildempty of the hnsw access method.
 *
 * A build has three phases, each shown in pg_stat_progress_create_index:
 *
 *   load   table_index_build_scan feeds every row to build_callback, which
 *          prepares the vector (skipping NULLs, and zero vectors under
 *          cosine) and appends it to an in-memory Graph (src/graph).  Rows
 *          whose prepared vector is byte-identical to an earlier one join
 *          that element (any number of them: the writer puts the heap TIDs
 *          beyond the element's own into overflow tuples), found through a
 *          small hash table of element ids keyed by a hash of the vector;
 *          so a column full of one value is one element, not a clique of
 *          zero-distance elements.  When the server would give the build
 *          parallel workers (max_parallel_maintenance_workers and the rest
 *          of plan_create_index_workers' rules), hnsw_build_parallel.c
 *          starts them: they scan and prepare rows beside the leader and
 *          ship them to it, and the leader adds each with the same add_row.
 *          The elements' order then depends on the workers' timing (so do
 *          the links: such builds are not reproducible, like the
 *          multi-thread linking); with no workers the load is serial and
 *          its order the heap's.
 *   graph  hnsw_build_gpu.c decides whether the GPU links the elements
 *          (index option build_device, setting hierindex.build_device) and,
 *          if so, has it done.  Otherwise the OpenMP builder links them, in
 *          chunks sized to take about 0.15 s each.  Around each chunk the
 *          backend blocks every signal, so the worker threads (created then,
 *          and inheriting the mask) never run a PostgreSQL signal handler;
 *          the signals are restored and interrupts checked between chunks,
 *          which is where a cancel lands.  After either builder, elements
 *          that pruning left unreachable are linked
 *          (graph_connect_unreachable).
 *   write  hnsw_write_graph lays the graph out on pages and WAL-logs them.
 *
 * Both access methods.  What differs between hnsw and matryoshka is an
 * HnswBuildSpec: the shape of the graph, how a row is prepared, and an
 * optional payload per element (matryoshka: the fine part of the vector),
 * kept in a side array in element order, compared with the vector by the
 * duplicate finder, spooled with it, and handed to the writer.
 *
 * Messages.  A NOTICE names the builder and the seconds of each phase when
 * the GPU ran or when build_device was set to 'cpu' or 'gpu'; a CPU build
 * under 'auto' (what every pgvector user gets) says nothing new, its phase
 * times stay at DEBUG1.
 *
 * Memory.  The graph, the heap TIDs and the helper arrays are kept within
 * maintenance_work_mem.  When the next row would not fit, the build says so
 * once in a NOTICE and from then on spools rows (heap TID and prepared
 * vector) to a temporary file; after the in-memory part is written, each
 * spooled row goes through the ordinary insert path (hnsw_insert_vector).
 * Slower, same index, never an out-of-memory failure.
 *
 * The Graph is malloc'd by the engine, outside PostgreSQL's memory contexts;
 * a reset callback on the build's memory context frees it, so an ERROR or a
 * cancel anywhere in the build does not leak it.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include "access/generic_xlog.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "commands/progress.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "portability/instr_time.h"
#include "storage/buffile.h"
#include "storage/bufmgr.h"
#include "lib/stringinfo.h"
#include "utils/backend_progress.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "hnsw/hnsw.h"
#include "hnsw/hnsw_build_parallel.h"
#include "vector.h"

/*
 * Level draws are a pure function of (seed, element id): a fixed seed makes
 * single-threaded builds of the same table reproducible.
 */
#define HNSW_BUILD_SEED		UINT64CONST(0x68696572696e6478)	/* "hierindx" */

/* Linking chunks aim at this many seconds between interrupt checks. */
#define CHUNK_TARGET_SECONDS	0.15
#define CHUNK_MIN_ELEMENTS		16

/* hash-table key standing for the row being added (state->row_vector) */
#define PROBE_KEY				(-1)

/* A second or later heap TID of an element (duplicates); rare. */
typedef struct ExtraHeapTid
{
	int32		element;
	ItemPointerData tid;
} ExtraHeapTid;

/* Duplicate finder: one entry per distinct vector, naming its element. */
typedef struct DuplicateEntry
{
	int32		element;
	uint32		hash;
	char		status;
} DuplicateEntry;

typedef struct BuildState
{
	Relation	heap;
	Relation	index;
	const HnswBuildSpec *spec;
	HnswShape	shape;
	GraphParams params;
	int			threads;

	MemoryContext context;		/* everything below; its reset frees graph */
	MemoryContext tuple_context;	/* detoasted values, reset per row */

	Graph	   *graph;			/* NULL when not even one element fits */
	ItemPointerData *first_tids;	/* per element slot */
	int64	   *tid_counts;		/* per element slot */
	ExtraHeapTid *extras;
	int64		extra_count;
	int64		extra_capacity;
	struct duplicates_hash *duplicates;
	float	   *probe;			/* the prepared vector of the current row */
	char	   *probe_payload;	/* and its payload (spec->payload_stride) */
	const float *row_vector;	/* the row add_row is adding: probe, or a */
	const char *row_payload;	/* parallel worker's message, not copied */
	HnswParallelLoad *parallel; /* workers of the load phase, or NULL */
	char	   *payloads;		/* per element slot: payload_stride bytes */

	/* memory: budget and the bytes each element slot costs */
	Size		budget;
	Size		element_bytes;

	/* rows that did not fit */
	BufFile    *spool;
	int64		spooled;

	int64		rows_in_memory; /* heap TIDs held by graph elements */
} BuildState;

static inline const float *
duplicate_vector(BuildState *state, int32 key)
{
	if (key == PROBE_KEY)
		return state->row_vector;
	return state->graph->vectors + (int64) key * state->shape.dimensions;
}

static inline const char *
duplicate_payload(BuildState *state, int32 key)
{
	if (key == PROBE_KEY)
		return state->row_payload;
	return state->payloads + (Size) key * state->spec->payload_stride;
}

/*
 * The duplicate finder's hash of a prepared row.  Parallel workers compute
 * it for the rows they ship, so the leader does not hash them again.
 */
uint32
hnsw_build_row_hash(const HnswBuildSpec *spec, const float *vector,
					const char *payload)
{
	uint32		hash = hash_bytes((const unsigned char *) vector,
								  sizeof(float) * spec->shape.dimensions);

	if (spec->payload_stride > 0)
		hash = hash_combine(hash,
							hash_bytes((const unsigned char *) payload,
									   spec->payload_stride));
	return hash;
}

static inline uint32
duplicate_hash(BuildState *state, int32 key)
{
	return hnsw_build_row_hash(state->spec, duplicate_vector(state, key),
							   duplicate_payload(state, key));
}

static inline bool
duplicate_equal(BuildState *state, int32 a, int32 b)
{
	return memcmp(duplicate_vector(state, a), duplicate_vector(state, b),
				  sizeof(float) * state->shape.dimensions) == 0 &&
		memcmp(duplicate_payload(state, a), duplicate_payload(state, b),
			   state->spec->payload_stride) == 0;
}

#define SH_PREFIX			duplicates
#define SH_ELEMENT_TYPE		DuplicateEntry
#define SH_KEY_TYPE			int32
#define SH_KEY				element
#define SH_HASH_KEY(tb, key)	duplicate_hash((BuildState *) (tb)->private_data, key)
#define SH_EQUAL(tb, a, b)	duplicate_equal((BuildState *) (tb)->private_data, a, b)
#define SH_STORE_HASH
#define SH_GET_HASH(tb, a)	((a)->hash)
#define SH_SCOPE			static inline
#define SH_DECLARE
#define SH_DEFINE
#include "lib/simplehash.h"

/* Memory-context reset callback: release the malloc'd graph. */
static void
free_graph_callback(void *arg)
{
	BuildState *state = (BuildState *) arg;

	graph_free(state->graph);
	state->graph = NULL;
}

/*
 * The index column's dimensions, checked: a graph index needs a fixed
 * dimension (vector(n)), hnsw's within the page format's limit.
 */
int
hnsw_column_dimensions(Relation index, int max_dim, const char *am_name)
{
	int32		typmod = TupleDescAttr(RelationGetDescr(index), 0)->atttypmod;
	const char *article = am_name[0] == 'h' ? "An" : "A";

	if (typmod < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("column does not have dimensions"),
				 errhint("%s %s index needs a column of type vector(n).",
						 article, am_name)));
	if (typmod > max_dim)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("column has %d dimensions, more than the %d %s %s index supports",
						typmod, max_dim, am_name[0] == 'h' ? "an" : "a", am_name)));
	return typmod;
}

static void
init_shape(Relation index, HnswShape *shape)
{
	shape->dimensions = hnsw_column_dimensions(index, HNSW_MAX_DIM, "hnsw");
	shape->m = hnsw_option_m(index);
	shape->m0 = 2 * shape->m;
	shape->ef_construction = hnsw_option_ef_construction(index);
	shape->metric = hnsw_index_metric(index);
}

static void
init_params(const HnswShape *shape, GraphParams *params)
{
	params->dim = shape->dimensions;
	params->m = shape->m;
	params->ef_construction = shape->ef_construction;
	params->metric = shape->metric;
	params->seed = HNSW_BUILD_SEED;
}

/* A graph with no elements, for writing an empty index. */
static void
init_empty_graph(Graph *graph, const GraphParams *params)
{
	memset(graph, 0, sizeof(*graph));
	graph->params = *params;
	graph->m0 = 2 * params->m;
	graph->entry_point = GRAPH_NO_ELEMENT;
	graph->max_level = -1;
}

/* Bytes in use now, against the budget. */
static Size
memory_used(BuildState *state, int64 element_capacity, int64 extra_capacity)
{
	return state->element_bytes * element_capacity +
		sizeof(ExtraHeapTid) * extra_capacity;
}

/*
 * Rows the table probably holds: the planner's count when there is one, else
 * what its blocks would hold if they were full of vectors.
 */
static int64
estimate_rows(Relation heap, int dimensions)
{
	double		reltuples = heap->rd_rel->reltuples;
	BlockNumber nblocks;
	Size		row_bytes;

	if (reltuples > 0)
		return (int64) (reltuples * 1.1);
	nblocks = RelationGetNumberOfBlocks(heap);
	row_bytes = MAXALIGN(SizeofHeapTupleHeader + VECTOR_SIZE(dimensions) + 8) +
		sizeof(ItemIdData);
	return (int64) nblocks * Max(1, (int64) ((BLCKSZ - SizeOfPageHeaderData) / row_bytes));
}

/*
 * Grow the graph and the per-element arrays, within the budget.  Returns
 * false when no more elements fit (or the memory cannot be had).
 */
static bool
grow_elements(BuildState *state)
{
	Graph	   *graph = state->graph;
	int64		capacity = graph->capacity;
	int64		fit;
	int64		new_capacity;

	if (state->budget <= memory_used(state, 0, state->extra_capacity))
		return false;
	fit = (state->budget - memory_used(state, 0, state->extra_capacity)) /
		state->element_bytes;
	fit = Min(fit, (int64) PG_INT32_MAX - 1);
	new_capacity = Min(Max(capacity * 2, capacity + 1024), fit);
	if (new_capacity <= capacity)
		return false;
	if (graph_grow(graph, new_capacity) != 0)
		return false;
	state->first_tids = repalloc_huge(state->first_tids,
									  sizeof(ItemPointerData) * new_capacity);
	state->tid_counts = repalloc_huge(state->tid_counts, sizeof(int64) * new_capacity);
	if (state->payloads != NULL)
		state->payloads = repalloc_huge(state->payloads,
										state->spec->payload_stride * new_capacity);
	return true;
}

/* Room for one more extra heap TID, within the budget. */
static bool
reserve_extra(BuildState *state)
{
	int64		new_capacity;

	if (state->extra_count < state->extra_capacity)
		return true;
	new_capacity = Max(state->extra_capacity * 2, 256);
	if (memory_used(state, state->graph->capacity, new_capacity) > state->budget)
		return false;
	if (state->extras == NULL)
		state->extras = MemoryContextAllocHuge(state->context,
											   sizeof(ExtraHeapTid) * new_capacity);
	else
		state->extras = repalloc_huge(state->extras,
									  sizeof(ExtraHeapTid) * new_capacity);
	state->extra_capacity = new_capacity;
	return true;
}

/* The row does not fit in memory: write it to the spool file. */
static void
spool_row(BuildState *state, ItemPointer tid)
{
	if (state->spool == NULL)
	{
		ereport(NOTICE,
				(errmsg("%s graph of index \"%s\" filled maintenance_work_mem after " INT64_FORMAT " rows",
						state->spec->am_name,
						RelationGetRelationName(state->index), state->rows_in_memory),
				 errdetail("The rows that follow are added one at a time after the graph is written, which is much slower."),
				 errhint("Raise maintenance_work_mem (now %d kB) to build the whole graph in memory.",
						 maintenance_work_mem)));
		state->spool = BufFileCreateTemp(false);
	}
	BufFileWrite(state->spool, tid, sizeof(ItemPointerData));
	BufFileWrite(state->spool, unconstify(float *, state->row_vector),
				 sizeof(float) * state->shape.dimensions);
	if (state->spec->payload_stride > 0)
		BufFileWrite(state->spool, unconstify(char *, state->row_payload),
					 state->spec->payload_stride);
	state->spooled++;
}

/*
 * Add a prepared row (vector and payload) with heap TID tid; hash is its
 * hnsw_build_row_hash.  The vector is read where it is (state->probe, or
 * a parallel worker's message), so that it is copied once, into the graph.
 */
static void
add_row(BuildState *state, ItemPointer tid, const float *vector,
		const char *payload, uint32 hash)
{
	Graph	   *graph = state->graph;
	DuplicateEntry *entry;
	int64		id;
	bool		found;

	state->row_vector = vector;
	state->row_payload = payload;

	/* once anything is spooled, keep going there: rows stay in heap order */
	if (graph == NULL || state->spool != NULL)
	{
		spool_row(state, tid);
		return;
	}

	entry = duplicates_lookup_hash(state->duplicates, PROBE_KEY, hash);
	if (entry != NULL)
	{
		if (!reserve_extra(state))
		{
			spool_row(state, tid);
			return;
		}
		state->extras[state->extra_count].element = entry->element;
		state->extras[state->extra_count].tid = *tid;
		state->extra_count++;
		state->tid_counts[entry->element]++;
		state->rows_in_memory++;
		return;
	}

	if (graph->count == graph->capacity && !grow_elements(state))
	{
		spool_row(state, tid);
		return;
	}

	/*
	 * Store the prepared vector as is rather than through graph_set_vector,
	 * which would normalise a cosine vector a second time: the stored bytes
	 * must equal what the duplicate finder compares later rows with, and what
	 * the insert path stores for the same value.
	 */
	id = graph->count;
	memcpy(graph->vectors + id * state->shape.dimensions, vector,
		   sizeof(float) * state->shape.dimensions);
	if (state->payloads != NULL)
		memcpy(state->payloads + id * state->spec->payload_stride,
			   payload, state->spec->payload_stride);
	graph->count = id + 1;
	state->first_tids[id] = *tid;
	state->tid_counts[id] = 1;
	state->rows_in_memory++;

	entry = duplicates_insert_hash(state->duplicates, (int32) id, hash, &found);
	Assert(!found);
	entry->element = (int32) id;
}

/* pg_stat_progress_create_index's tuples done, every 1024 rows */
static inline void
report_rows_done(BuildState *state)
{
	if (((state->rows_in_memory + state->spooled) & 1023) == 0)
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
									 state->rows_in_memory + state->spooled);
}

/*
 * Prepare the indexed value of a row for the graph, in the same way in the
 * backend and in parallel workers: false for a row that is not indexed (NULL,
 * or what the spec's prepare refuses: a zero vector under cosine).  The
 * detoasted value lives in tuple_context, which is reset.
 */
bool
hnsw_build_prepare_row(const HnswBuildSpec *spec, MemoryContext tuple_context,
					   Datum *values, bool *isnull, float *vector, char *payload)
{
	MemoryContext old_context;
	bool		indexed;

	if (isnull[0])
		return false;
	old_context = MemoryContextSwitchTo(tuple_context);
	indexed = spec->prepare(spec->arg, values[0], vector, payload);
	MemoryContextSwitchTo(old_context);
	MemoryContextReset(tuple_context);
	return indexed;
}

static void
build_callback(Relation index, ItemPointer tid, Datum *values, bool *isnull,
			   bool tuple_is_alive, void *arg)
{
	BuildState *state = (BuildState *) arg;

	if (!hnsw_build_prepare_row(state->spec, state->tuple_context, values, isnull,
								state->probe, state->probe_payload))
		return;

	add_row(state, tid, state->probe, state->probe_payload,
			hnsw_build_row_hash(state->spec, state->probe, state->probe_payload));
	report_rows_done(state);
}

/* A row a parallel worker prepared (hnsw_build_parallel.c calls this). */
static void
add_shipped_row(void *arg, ItemPointer tid, const float *vector,
				const char *payload, uint32 hash)
{
	BuildState *state = (BuildState *) arg;

	add_row(state, tid, vector, payload, hash);
	report_rows_done(state);
}

/*
 * The leader's own rows of a parallel load: the workers' waiting rows
 * first, so that adding them (which only the leader can) goes before
 * scanning (which any of them can).
 */
static void
leader_build_callback(Relation index, ItemPointer tid, Datum *values,
					  bool *isnull, bool tuple_is_alive, void *arg)
{
	BuildState *state = (BuildState *) arg;

	hnsw_parallel_load_drain(state->parallel);
	build_callback(index, tid, values, isnull, tuple_is_alive, arg);
}

/*
 * The load phase: every row into the graph (or the spool), by this backend
 * alone or with parallel workers (*workers says how many).  Returns the
 * heap tuples scanned.
 */
static double
load_rows(BuildState *state, IndexInfo *info, int *workers)
{
	double		reltuples;

	*workers = 0;
	state->parallel = hnsw_parallel_load_begin(state->heap, state->index, info,
											   state->spec, add_shipped_row,
											   state);
	if (state->parallel == NULL)
		return table_index_build_scan(state->heap, state->index, info, true, true,
									  build_callback, state, NULL);

	reltuples = table_index_build_scan(state->heap, state->index, info, true, true,
									   leader_build_callback, state,
									   hnsw_parallel_load_leader_scan(state->parallel));
	reltuples += hnsw_parallel_load_end(state->parallel);
	*workers = hnsw_parallel_load_workers(state->parallel);
	state->parallel = NULL;
	return reltuples;
}

/*
 * Write to every page of the graph's vector array before the load, from the
 * build's threads.  The array is fresh memory, so the first write to each
 * page is a page fault; taken by the backend alone, a row at a time, those
 * faults cost about a third of the serial load, and most of what the leader
 * spends on each row a parallel worker ships.  Only plain memory is touched
 * (the rows overwrite it), with every signal blocked as while linking.
 */
static void
prefault_vectors(BuildState *state)
{
	char	   *vectors = (char *) state->graph->vectors;
	int64		bytes = (int64) sizeof(float) * state->shape.dimensions *
		state->graph->capacity;
	sigset_t	all_signals;
	sigset_t	saved_signals;

	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
#pragma omp parallel for num_threads(state->threads) schedule(static)
	for (int64 offset = 0; offset < bytes; offset += 4096)
		vectors[offset] = 0;
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
}

/*
 * Link the loaded elements on the CPU: graph_build_range in chunks, all
 * signals blocked while threads run, interrupts checked between chunks.
 */
static void
link_graph(BuildState *state)
{
	Graph	   *graph = state->graph;
	int64		count = graph->count;
	int64		done = 0;
	int64		chunk = CHUNK_MIN_ELEMENTS * Max(state->threads, 1);
	sigset_t	all_signals;
	sigset_t	saved_signals;

	sigfillset(&all_signals);

	while (done < count)
	{
		int64		end = Min(count, done + chunk);
		instr_time	started;
		instr_time	elapsed;
		double		seconds;
		int			result;

		INSTR_TIME_SET_CURRENT(started);
		pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
		result = graph_build_range(graph, done, end, state->threads);
		pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
		if (result != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory while linking the %s graph of index \"%s\"",
							state->spec->am_name, RelationGetRelationName(state->index))));
		done = end;
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, done);
		CHECK_FOR_INTERRUPTS();

		/* next chunk: aim at the target time, changing by at most 4x */
		INSTR_TIME_SET_CURRENT(elapsed);
		INSTR_TIME_SUBTRACT(elapsed, started);
		seconds = INSTR_TIME_GET_DOUBLE(elapsed);
		if (seconds * 4 < CHUNK_TARGET_SECONDS)
			chunk *= 4;
		else
			chunk = Max(chunk / 4, (int64) (chunk * CHUNK_TARGET_SECONDS / seconds));
		chunk = Max(chunk, CHUNK_MIN_ELEMENTS);
	}
}

/*
 * After either builder: make every element reachable on layer 0 from the
 * entry point (serial, signals blocked like the builders' threads).
 */
static void
connect_graph(BuildState *state)
{
	Graph	   *graph = state->graph;
	sigset_t	all_signals;
	sigset_t	saved_signals;
	int64		relinked;

	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
	relinked = graph_connect_unreachable(graph);
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
	if (relinked < 0)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting the %s graph of index \"%s\"",
						state->spec->am_name, RelationGetRelationName(state->index))));
	if (relinked > 0)
		elog(DEBUG1, "%s build: " INT64_FORMAT " links added to reach orphaned elements",
			 state->spec->am_name, relinked);
	CHECK_FOR_INTERRUPTS();
}

/* Heap TIDs of the elements in CSR form, for the writer. */
static void
collect_heap_tids(BuildState *state, HnswHeapTids *heaptids)
{
	int64		count = state->graph->count;
	int64	   *start;
	ItemPointerData *tids;

	start = MemoryContextAllocHuge(state->context, sizeof(int64) * (count + 1));
	tids = MemoryContextAllocHuge(state->context,
								  sizeof(ItemPointerData) * Max(state->rows_in_memory, 1));
	start[0] = 0;
	for (int64 i = 0; i < count; i++)
	{
		start[i + 1] = start[i] + state->tid_counts[i];
		tids[start[i]] = state->first_tids[i];
		state->tid_counts[i] = 1;	/* from here: TIDs placed so far */
	}
	for (int64 i = 0; i < state->extra_count; i++)
	{
		int32		element = state->extras[i].element;

		tids[start[element] + state->tid_counts[element]++] = state->extras[i].tid;
	}
	Assert(start[count] == state->rows_in_memory);
	heaptids->start = start;
	heaptids->tids = tids;
}

/* Add the spooled rows through the insert path, one at a time. */
static void
insert_spooled(BuildState *state)
{
	ItemPointerData tid;
	Size		vector_bytes = sizeof(float) * state->shape.dimensions;
	int64		done = 0;

	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, HNSW_PHASE_WRITE);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, state->spooled);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);

	if (BufFileSeek(state->spool, 0, 0, SEEK_SET) != 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not rewind the hnsw build's temporary file: %m")));
	for (done = 0; done < state->spooled; done++)
	{
		MemoryContext old_context;

		if (BufFileRead(state->spool, &tid, sizeof(tid)) != sizeof(tid) ||
			BufFileRead(state->spool, state->probe, vector_bytes) != vector_bytes ||
			BufFileRead(state->spool, state->probe_payload,
						state->spec->payload_stride) != state->spec->payload_stride)
			ereport(ERROR,
					(errcode_for_file_access(),
					 errmsg("could not read row " INT64_FORMAT " of " INT64_FORMAT " from the hnsw build's temporary file",
							done + 1, state->spooled)));
		old_context = MemoryContextSwitchTo(state->tuple_context);
		state->spec->insert(state->spec->arg, state->index, state->probe,
							state->probe_payload, &tid);
		MemoryContextSwitchTo(old_context);
		MemoryContextReset(state->tuple_context);
		if ((done & 255) == 0)
			pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, done);
		CHECK_FOR_INTERRUPTS();
	}
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, state->spooled);
	BufFileClose(state->spool);
	state->spool = NULL;
}

/* After spooled inserts: the meta page's build time covers them too. */
static void
update_build_seconds(Relation index, float8 build_seconds)
{
	Buffer		buffer = ReadBuffer(index, HNSW_METAPAGE_BLKNO);
	GenericXLogState *xlog;
	Page		page;

	LockBuffer(buffer, BUFFER_LOCK_EXCLUSIVE);
	xlog = GenericXLogStart(index);
	page = GenericXLogRegisterBuffer(xlog, buffer, 0);
	hnsw_check_page(index, page, HNSW_METAPAGE_BLKNO);
	HnswPageGetMeta(page)->build_seconds = build_seconds;
	GenericXLogFinish(xlog);
	UnlockReleaseBuffer(buffer);
}

double
hnsw_seconds_since(instr_time started)
{
	instr_time	now;

	INSTR_TIME_SET_CURRENT(now);
	INSTR_TIME_SUBTRACT(now, started);
	return INSTR_TIME_GET_DOUBLE(now);
}

/* Seconds of each phase of a build, for the NOTICE and the DEBUG1 line. */
typedef struct BuildPhases
{
	double		load;
	double		link;			/* either builder, up to a linked graph */
	double		connect;		/* graph_connect_unreachable */
	double		write;
	double		inserts;		/* spooled rows, one at a time */
	int			workers;		/* parallel workers of the load phase */
	bool		linked;			/* there were elements in memory to link */
	bool		on_gpu;			/* the GPU linked them */
	HnswGpuPhases gpu;			/* its phases, when on_gpu */
} BuildPhases;

/*
 * The NOTICE that names the builder and times the phases: when the GPU ran,
 * or when build_device asked for a device; a CPU build under 'auto' stays
 * silent.
 */
static void
report_build(BuildState *state, HnswBuildDevice device, const BuildPhases *phases)
{
	StringInfoData message;
	char		heap_scan[64];

	if (!phases->on_gpu && device == HNSW_BUILD_DEVICE_AUTO)
		return;

	if (phases->workers > 0)
		snprintf(heap_scan, sizeof(heap_scan), "%.2f s with %d parallel %s",
				 phases->load, phases->workers,
				 phases->workers == 1 ? "worker" : "workers");
	else
		snprintf(heap_scan, sizeof(heap_scan), "%.2f s", phases->load);

	initStringInfo(&message);
	appendStringInfo(&message, "%s index \"%s\" built ",
					 state->spec->am_name, RelationGetRelationName(state->index));
	if (phases->on_gpu)
		appendStringInfo(&message,
						 "on the GPU (%s): heap scan %s, transfer %.2f s, kNN graph %.2f s, pruning %.2f s, upper layers %.2f s, connecting %.2f s",
						 phases->gpu.device_name, heap_scan, phases->gpu.transfer,
						 phases->gpu.knn, phases->gpu.prune, phases->gpu.upper,
						 phases->connect);
	else if (phases->linked)
		appendStringInfo(&message,
						 "on the CPU (%d %s): heap scan %s, linking %.2f s",
						 state->threads, state->threads == 1 ? "thread" : "threads",
						 heap_scan, phases->link + phases->connect);
	else
		appendStringInfo(&message,
						 "with no elements in memory to link: heap scan %s",
						 heap_scan);
	appendStringInfo(&message, ", page writing %.2f s", phases->write);
	if (state->spooled > 0)
		appendStringInfo(&message, ", single inserts %.2f s", phases->inserts);
	ereport(NOTICE, (errmsg_internal("%s", message.data)));
	pfree(message.data);
}

/* hnsw's spec: whole vectors, no payload */
static bool
hnsw_spec_prepare(void *arg, Datum value, float *vector, char *payload)
{
	return hnsw_prepare_vector((const HnswShape *) arg, value, vector);
}

static void
hnsw_spec_insert(void *arg, Relation index, const float *vector,
				 const char *payload, ItemPointer heap_tid)
{
	hnsw_insert_vector(index, vector, NULL, heap_tid);
}

static void
init_hnsw_spec(Relation index, HnswBuildSpec *spec)
{
	memset(spec, 0, sizeof(*spec));
	spec->am_name = "hnsw";
	init_shape(index, &spec->shape);
	spec->row_dimensions = spec->shape.dimensions;
	spec->prepare = hnsw_spec_prepare;
	spec->insert = hnsw_spec_insert;
	spec->arg = &spec->shape;
}

IndexBuildResult *
hnsw_build(Relation heap, Relation index, IndexInfo *info)
{
	HnswBuildSpec spec;

	init_hnsw_spec(index, &spec);
	return hnsw_build_with_spec(heap, index, info, &spec);
}

IndexBuildResult *
hnsw_build_with_spec(Relation heap, Relation index, IndexInfo *info,
					 const HnswBuildSpec *spec)
{
	IndexBuildResult *result;
	MemoryContext build_context;
	MemoryContext old_context;
	MemoryContextCallback *free_graph;
	BuildState *state;
	instr_time	started;
	double		reltuples;
	BuildPhases phases;
	HnswBuildDevice device;
	bool		device_from_option;
	Graph		empty_graph;
	const Graph *written;
	HnswHeapTids heaptids = {NULL, NULL};
	HnswPayloads payloads;
	uint8		build_method;
	int64		capacity;
	int64		estimated;
	int64		fit;

	/* a parallel worker of the load phase came in through ambuild */
	if (hnsw_parallel_load_in_worker())
	{
		hnsw_parallel_load_worker_scan(heap, index, info, spec);
		return NULL;
	}

	INSTR_TIME_SET_CURRENT(started);
	memset(&phases, 0, sizeof(phases));
	device = hnsw_build_device(index, &device_from_option);
	if (RelationGetNumberOfBlocks(index) != 0)
		elog(ERROR, "index \"%s\" already contains data", RelationGetRelationName(index));

	build_context = AllocSetContextCreate(CurrentMemoryContext, "hierindex build",
										  ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(build_context);

	state = palloc0(sizeof(BuildState));
	state->heap = heap;
	state->index = index;
	state->context = build_context;
	state->tuple_context = AllocSetContextCreate(build_context, "hierindex build row",
												 ALLOCSET_DEFAULT_SIZES);
	state->spec = spec;
	state->shape = spec->shape;
	init_params(&state->shape, &state->params);
	state->threads = hnsw_build_thread_count();
	state->probe = palloc(sizeof(float) * state->shape.dimensions);
	state->probe_payload = palloc0(Max(spec->payload_stride, 1));
	free_graph = palloc(sizeof(MemoryContextCallback));
	free_graph->func = free_graph_callback;
	free_graph->arg = state;
	MemoryContextRegisterResetCallback(build_context, free_graph);

	/*
	 * Bytes per element slot: the graph's own, its heap TID and count, the
	 * duplicate finder (at most two entries per element as it doubles), the
	 * writer's CSR arrays and layout arrays (with its overflow-tuple index
	 * and, per page, where its tuple list starts), the writer's per-page
	 * tuple lists (two entries of two int32 per element), and each thread's
	 * visited marks while linking.  The writer's overflow tuple TIDs (one per
	 * 64 duplicates) fit in what the extras cost.
	 */
	state->budget = (Size) maintenance_work_mem * 1024;
	state->element_bytes = graph_memory_estimate(&state->params, 1024) / 1024 +
		sizeof(ItemPointerData) + sizeof(int64) +
		2 * sizeof(DuplicateEntry) +
		sizeof(int64) + sizeof(ItemPointerData) +
		2 * sizeof(ItemPointerData) + sizeof(int32) + 1 + sizeof(int64) +
		2 * 2 * sizeof(int32) +
		sizeof(uint32) * state->threads +
		spec->payload_stride;
	fit = state->budget / state->element_bytes;
	fit = Min(fit, (int64) PG_INT32_MAX - 1);
	estimated = estimate_rows(heap, spec->row_dimensions);
	capacity = Min(Max(estimated, 1024), fit);
	hnsw_gpu_warm_up(device, state->params.metric, estimated);

	if (capacity > 0)
	{
		const char *error = NULL;

		state->graph = graph_create(&state->params, capacity, &error);
		if (state->graph == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("could not create the %s graph of index \"%s\" for " INT64_FORMAT " elements: %s",
							spec->am_name, RelationGetRelationName(index),
							capacity, error)));
		state->first_tids = MemoryContextAllocHuge(build_context,
												   sizeof(ItemPointerData) * capacity);
		state->tid_counts = MemoryContextAllocHuge(build_context,
												   sizeof(int64) * capacity);
		if (spec->payload_stride > 0)
			state->payloads = MemoryContextAllocHuge(build_context,
													 spec->payload_stride * capacity);
		state->duplicates = duplicates_create(build_context,
											  (uint32) Min(capacity, 1 << 20),
											  state);
		prefault_vectors(state);
	}

	/* load */
	pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, HNSW_PHASE_LOAD);
	reltuples = load_rows(state, info, &phases.workers);
	pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE,
								 state->rows_in_memory + state->spooled);
	if (state->duplicates != NULL)
	{
		duplicates_destroy(state->duplicates);
		state->duplicates = NULL;
	}
	phases.load = hnsw_seconds_since(started);
	elog(DEBUG1, "%s build of \"%s\": loaded " INT64_FORMAT " rows into " INT64_FORMAT " elements in %.2f s with %d parallel workers",
		 spec->am_name, RelationGetRelationName(index),
		 state->rows_in_memory + state->spooled,
		 state->graph != NULL ? state->graph->count : 0,
		 phases.load, phases.workers);

	/* link (on the GPU or the CPU) and write what is in memory */
	if (state->graph != NULL && state->graph->count > 0)
	{
		int64		count = state->graph->count;

		pgstat_progress_update_param(PROGRESS_CREATEIDX_SUBPHASE, HNSW_PHASE_GRAPH);
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_TOTAL, count);
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, 0);
		phases.linked = true;
		phases.on_gpu = hnsw_link_graph_on_gpu(index, state->graph, device,
											   device_from_option, &phases.gpu);
		if (!phases.on_gpu)
			link_graph(state);
		pgstat_progress_update_param(PROGRESS_CREATEIDX_TUPLES_DONE, count);
		phases.link = hnsw_seconds_since(started) - phases.load;
		connect_graph(state);
		phases.connect = hnsw_seconds_since(started) - phases.load - phases.link;
		if (spec->measure != NULL)
			spec->measure(spec->arg, state->graph, state->payloads,
						  spec->payload_stride, state->threads);
		collect_heap_tids(state, &heaptids);
		written = state->graph;
		build_method = phases.on_gpu ? HNSW_BUILD_GPU : HNSW_BUILD_CPU;
	}
	else
	{
		init_empty_graph(&empty_graph, &state->params);
		written = &empty_graph;
		build_method = state->spooled > 0 ? HNSW_BUILD_INSERTS : HNSW_BUILD_CPU;
	}
	payloads.size = spec->payload_size;
	payloads.stride = spec->payload_stride;
	payloads.data = state->payloads;
	payloads.fill_meta = spec->fill_meta;
	payloads.arg = spec->arg;
	hnsw_write_graph(index, MAIN_FORKNUM, written, &heaptids,
					 spec->payload_size > 0 || spec->fill_meta ? &payloads : NULL,
					 build_method, hnsw_seconds_since(started));
	phases.write = hnsw_seconds_since(started) - phases.load - phases.link - phases.connect;
	elog(DEBUG1, "%s build of \"%s\": load %.2f s (%d parallel workers), link %.2f s (%s), connect %.2f s, write %.2f s",
		 spec->am_name, RelationGetRelationName(index), phases.load,
		 phases.workers, phases.link,
		 phases.on_gpu ? "GPU" : psprintf("%d threads", state->threads),
		 phases.connect, phases.write);

	/* release the graph before the slow path: inserts need little memory */
	graph_free(state->graph);
	state->graph = NULL;

	if (state->spooled > 0)
	{
		double		inserts_started = hnsw_seconds_since(started);

		insert_spooled(state);
		phases.inserts = hnsw_seconds_since(started) - inserts_started;
		update_build_seconds(index, hnsw_seconds_since(started));
	}
	report_build(state, device, &phases);

	MemoryContextSwitchTo(old_context);
	result = palloc(sizeof(IndexBuildResult));
	result->heap_tuples = reltuples;
	result->index_tuples = (double) (state->rows_in_memory + state->spooled);
	MemoryContextDelete(build_context);
	return result;
}

/*
 * The init fork of an unlogged index: an empty index (meta page only, no
 * entry point), which the writer WAL-logs because it is the init fork.
 */
void
hnsw_build_empty(Relation index)
{
	HnswBuildSpec spec;

	init_hnsw_spec(index, &spec);
	hnsw_build_empty_with_spec(index, &spec);
}

void
hnsw_build_empty_with_spec(Relation index, const HnswBuildSpec *spec)
{
	GraphParams params;
	Graph		empty_graph;
	HnswPayloads payloads;

	init_params(&spec->shape, &params);
	init_empty_graph(&empty_graph, &params);
	memset(&payloads, 0, sizeof(payloads));
	payloads.size = spec->payload_size;
	payloads.stride = spec->payload_stride;
	payloads.fill_meta = spec->fill_meta;
	payloads.arg = spec->arg;
	hnsw_write_graph(index, INIT_FORKNUM, &empty_graph, NULL,
					 spec->payload_size > 0 || spec->fill_meta ? &payloads : NULL,
					 HNSW_BUILD_CPU, 0.0);
}
