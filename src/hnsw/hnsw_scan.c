/*
 * hnsw_scan.c — the hnsw index scan (ORDER BY col <op> constant) and its cost
 * estimate.
 *
 * The first amgettuple after a rescan reads the meta page, prepares the query
 * as the index prepared its vectors (normalised under cosine) and descends
 * greedily from the entry point through layers max_level..1, all through the
 * page walk of hnsw_walk.c and the engine's own search code.  Layer 0 is then
 * searched in batches by the engine's resumable search (GraphSearch, see
 * src/graph/graph.h and README "Scans"): each batch yields up to ef_search
 * live elements in ascending distance, whose heap TIDs (every row that
 * shares an element's vector, through its heap-TID overflow chain; none for
 * deleted elements) are collected into a buffer that grows as needed; every
 * pin is dropped and amgettuple hands them out one at a time.  The distances
 * are exact for the returned rows, so the rows need no recheck.
 *
 * hnsw.iterative_scan decides what happens when the executor wants more:
 * off (the default) ends the scan after the first batch, as pgvector does,
 * so a query that needs more rows than ef_search gets fewer.  relaxed_order
 * and strict_order search the next batch, continuing from where the last
 * stopped; relaxed_order returns rows in each batch's order; strict_order
 * skips any row nearer than the last one returned, so rows come out in
 * non-decreasing distance, and to skip few it returns a row only once the
 * search has gone about as far again beyond it (a wider beam, of which only
 * the nearest ef_search are returned).  Searching stops, between batches, when
 * hnsw.max_scan_tuples heap TIDs have been visited or the search's state
 * exceeds work_mem x hnsw.scan_mem_multiplier; the elements already met are
 * still returned, without reading more, and then the scan ends.  Those
 * limits (HnswScanLimits) serve matryoshka's iterative scans too, with its
 * own settings of the same names.
 *
 * Memory: the walk and the search's heaps live for the whole scan and are
 * reused by every rescan, whatever its ef_search (they grow as needed);
 * whatever one search allocates besides (the detoasted query) goes into a
 * context reset at each rescan, so a nested loop that rescans thousands of
 * times uses constant memory.
 *
 * The cost estimate makes any scan without an ORDER BY operator prohibitive
 * (a graph cannot answer WHERE filters), and otherwise charges the elements
 * and pages a walk of ef_search reads, all before the first row.  matryoshka
 * uses the same estimate with its own walk's figures (hnsw_cost_estimate_walk).
 */
#include "postgres.h"

#include <math.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "optimizer/cost.h"
#include "pgstat.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"

#include "distance_memo.h"
#include "hnsw/hnsw.h"

typedef struct HnswScanOpaqueData
{
	MemoryContext scan_context; /* the walk, the search, the results: whole scan */
	MemoryContext search_context;	/* one search's scratch: reset by rescan */

	HnswWalk   *walk;			/* NULL until the first search */
	float	   *query;			/* prepared query, shape.dimensions floats */
	GraphSearch search;			/* layer 0, resumable; arrays in scan_context */
	GraphNeighbor *found;		/* one batch: found_capacity entries, grown */
	int			found_capacity;
	int			found_ef;		/* ef_search found was last sized for */
	ItemPointerData *heaptids;	/* one batch's rows: heaptid_capacity entries, grown */
	int			heaptid_capacity;
	HnswRowSource *sources;		/* each row's element: source_capacity entries */
	int			source_capacity;
	HnswKilledRows killed;		/* rows the executor reported dead */
	DistanceMemo *memo;			/* the returned row's distance, for the
								 * executor's own computation; NULL when the
								 * metric or the index has none */
	bool		memo_tried;		/* memo was considered (once per scan) */

	/* settings, read when the search starts (SET LOCAL works per query) */
	int			ef;
	HnswScanLimits limits;

	bool		searched;		/* the search of this rescan has started */
	bool		done;			/* no batch is left */
	bool		limited;		/* a limit was hit: no more reading, only the pool */
	int			batches;
	float		last_distance;	/* strict_order: of the last row returned */
	int64		dropped;		/* strict_order: rows skipped as out of order */
	int64		returned;		/* elements of the batches so far */
	int			count;			/* heap TIDs of the current batch */
	int			next;			/* next one to return */
} HnswScanOpaqueData;

typedef HnswScanOpaqueData *HnswScanOpaque;

/* GraphSearch.grow: the search's heaps live in the scan's context */
void *
hnsw_scan_search_grow(void *context, void *array, size_t bytes)
{
	if (array == NULL)
		return MemoryContextAllocHuge((MemoryContext) context, bytes);
	return repalloc_huge(array, bytes);
}

IndexScanDesc
hnsw_begin_scan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	HnswScanOpaque so = palloc0(sizeof(HnswScanOpaqueData));

	so->scan_context = AllocSetContextCreate(CurrentMemoryContext,
											 "hnsw scan",
											 ALLOCSET_DEFAULT_SIZES);
	so->search_context = AllocSetContextCreate(so->scan_context,
											   "hnsw scan search",
											   ALLOCSET_SMALL_SIZES);
	so->search.grow = hnsw_scan_search_grow;
	so->search.grow_context = so->scan_context;
	scan->opaque = so;
	return scan;
}

void
hnsw_rescan_keys(IndexScanDesc scan, ScanKey keys, ScanKey orderbys)
{
	if (keys && scan->numberOfKeys > 0)
		memmove(scan->keyData, keys, scan->numberOfKeys * sizeof(ScanKeyData));
	if (orderbys && scan->numberOfOrderBys > 0)
		memmove(scan->orderByData, orderbys,
				scan->numberOfOrderBys * sizeof(ScanKeyData));
}

void
hnsw_rescan(IndexScanDesc scan, ScanKey keys, int nkeys,
			ScanKey orderbys, int norderbys)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;

	hnsw_rescan_keys(scan, keys, orderbys);

	MemoryContextReset(so->search_context);
	so->searched = false;
	so->done = true;
	so->count = 0;
	so->next = 0;
	hnsw_killed_rows_reset(&so->killed);
	if (so->memo != NULL)
		distance_memo_forget(so->memo);
}

/*
 * The scan's walk, query and result arrays, made by its first search and
 * kept by every later one: ef gives the walk and the arrays only their first
 * size, as they grow.
 */
static void
hnsw_scan_prepare_walk(IndexScanDesc scan, const HnswShape *shape, int ef)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->scan_context);

	so->query = palloc(sizeof(float) * shape->dimensions);
	so->walk = hnsw_walk_begin(scan->indexRelation, shape, ef, false);
	so->found_ef = ef;
	so->found_capacity = ef;
	so->found = palloc(sizeof(GraphNeighbor) * ef);
	so->heaptid_capacity = ef * 2;
	so->heaptids = palloc(sizeof(ItemPointerData) * so->heaptid_capacity);
	so->source_capacity = so->heaptid_capacity;
	so->sources = palloc(sizeof(HnswRowSource) * so->source_capacity);
	MemoryContextSwitchTo(old);
}

/*
 * Offer each returned row's distance to the executor, which computes it again
 * for the ORDER BY expression (distance_memo.c).  Only where the index's
 * number is exactly the SQL function's: not under cosine, and not for an
 * expression index, whose column is no column of the table.
 */
static void
hnsw_scan_open_memo(IndexScanDesc scan, GraphMetric metric)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	AttrNumber	attnum = scan->indexRelation->rd_index->indkey.values[0];
	DistanceMemoKind kind;

	so->memo_tried = true;
	switch (metric)
	{
		case GRAPH_METRIC_L2:
			kind = DISTANCE_MEMO_L2_SQUARED;
			break;
		case GRAPH_METRIC_INNER_PRODUCT:
			kind = DISTANCE_MEMO_NEGATIVE_INNER_PRODUCT;
			break;
		case GRAPH_METRIC_L1:
			kind = DISTANCE_MEMO_L1;
			break;
		default:
			return;
	}
	if (scan->heapRelation == NULL || attnum <= 0)
		return;
	so->memo = distance_memo_open(so->scan_context, scan->heapRelation->rd_node,
								  RelationGetDescr(scan->heapRelation), attnum, kind);
}

/*
 * Start the search: from the entry point down to layer 0, where the
 * resumable search is set up for the batches.  Leaves so->done set when
 * there is nothing to return (no ORDER BY value, an empty index, a zero
 * query under cosine).
 */
static void
hnsw_scan_start(IndexScanDesc scan)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	ScanKey		orderby = &scan->orderByData[0];
	HnswMetaPageData meta;
	HnswShape	shape;
	MemoryContext old;

	so->done = true;
	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan hnsw index without order"),
				 errhint("An hnsw index answers ORDER BY column <-> value LIMIT n queries.")));

	old = MemoryContextSwitchTo(so->search_context);

	if (!hnsw_scan_read_meta(scan, &meta))
	{
		MemoryContextSwitchTo(old);
		return;
	}
	hnsw_shape_from_meta(&meta, &shape);

	so->ef = hnsw_ef_search;
	hnsw_scan_limits_init(&so->limits, hnsw_iterative_scan, hnsw_max_scan_tuples,
						  hnsw_scan_mem_multiplier);
	if (so->walk == NULL)
		hnsw_scan_prepare_walk(scan, &shape, so->ef);
	else if (so->found_ef != so->ef)
	{
		/*
		 * The batch array counts against hnsw.scan_mem_multiplier at its
		 * size: start it at the new ef_search, as the first search did.
		 */
		so->found = repalloc(so->found, sizeof(GraphNeighbor) * so->ef);
		so->found_capacity = so->ef;
		so->found_ef = so->ef;
	}

	/*
	 * A zero query under cosine has no direction, so every cosine distance to
	 * it is undefined (NaN): there is no order to return rows in, and we
	 * return none rather than an arbitrary selection.
	 */
	if (!hnsw_prepare_vector(&shape, orderby->sk_argument, so->query))
	{
		MemoryContextSwitchTo(old);
		return;
	}

	pgstat_count_index_scan(index);

	if (!so->memo_tried)
		hnsw_scan_open_memo(scan, shape.metric);
	if (so->memo != NULL)
		distance_memo_set_query(so->memo, so->query, shape.dimensions);

	hnsw_walk_descend(so->walk, &meta, so->query, scan->ignore_killed_tuples,
					  &so->search);

	so->done = false;
	so->limited = false;
	so->batches = 0;
	so->dropped = 0;
	so->returned = 0;
	so->last_distance = -get_float4_infinity();
	MemoryContextSwitchTo(old);
}

bool
hnsw_scan_read_meta(IndexScanDesc scan, HnswMetaPageData *meta)
{
	/* ORDER BY col <-> NULL: every distance is NULL; we return no rows */
	if (scan->orderByData[0].sk_flags & SK_ISNULL)
		return false;
	hnsw_read_meta(scan->indexRelation, meta);
	/* an empty index */
	return ItemPointerIsValid(&meta->entry_point);
}

/* pgvector's names, so settings move over unchanged */
static const struct config_enum_entry iterative_scan_values[] = {
	{"off", HNSW_ITERATIVE_SCAN_OFF, false},
	{"relaxed_order", HNSW_ITERATIVE_SCAN_RELAXED, false},
	{"strict_order", HNSW_ITERATIVE_SCAN_STRICT, false},
	{NULL, 0, false}
};

void
hnsw_define_scan_settings(const char *am, int *iterative_scan, int default_mode,
						  int *max_scan_tuples, double *scan_mem_multiplier)
{
	/* a setting keeps its descriptions by reference: make them permanent */
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	DefineCustomEnumVariable(psprintf("%s.iterative_scan", am),
							 psprintf("Whether a %s index scan goes on after its first ef_search candidates.", am),
							 "off: at most those; relaxed_order: more, and a row found late may come out of order; strict_order: more, in distance order (a row found late is skipped).",
							 iterative_scan, default_mode,
							 iterative_scan_values, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(psprintf("%s.max_scan_tuples", am),
							psprintf("Heap TIDs an iterative %s scan visits before it stops searching.", am),
							"Checked between batches: approximate, and the first batch always completes.",
							max_scan_tuples, HNSW_DEFAULT_MAX_SCAN_TUPLES, 1, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomRealVariable(psprintf("%s.scan_mem_multiplier", am),
							 psprintf("Memory of an iterative %s scan's search, as a multiple of work_mem.", am),
							 "The search stops when the state of the elements it has met would exceed it.",
							 scan_mem_multiplier, 1.0, 1.0, HNSW_MAX_SCAN_MEM_MULTIPLIER,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	MemoryContextSwitchTo(old);
}

void
hnsw_scan_limits_init(HnswScanLimits *limits, int mode, int max_tuples,
					  double mem_multiplier)
{
	limits->mode = (HnswIterativeScan) mode;
	limits->max_tuples = max_tuples;
	limits->max_memory = (double) work_mem * 1024.0 * mem_multiplier;
}

bool
hnsw_scan_limits_reached(const HnswScanLimits *limits, Relation index,
						 HnswWalk *walk, const GraphSearch *search,
						 double extra_bytes, int batches)
{
	int64		tuples = (int64) (hnsw_walk_live_heaptids(walk) +
								  hnsw_walk_overflow_heaptids(walk));
	double		memory = (double) hnsw_walk_memory(walk) + extra_bytes +
		(double) sizeof(GraphNeighbor) * (search->unexpanded_size + search->pool_size);

	if (tuples < limits->max_tuples && memory <= limits->max_memory)
		return false;
	elog(DEBUG1, "%s scan of \"%s\" stops searching after %d batches: %lld heap TIDs visited (max_scan_tuples %lld), %.0f bytes of state (limit %.0f)",
		 get_am_name(index->rd_rel->relam), RelationGetRelationName(index),
		 batches, (long long) tuples, (long long) limits->max_tuples,
		 memory, limits->max_memory);
	return true;
}

/*
 * Search the next batch and collect its heap TIDs into so->heaptids[0 ..
 * so->count).  Sets so->done when no batch will follow.  Holds no pin after.
 */
static void
hnsw_scan_next_batch(IndexScanDesc scan)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	GraphAccess *access = hnsw_walk_access(so->walk);
	int64		hold_back;
	int			beam;
	int			found;

	CHECK_FOR_INTERRUPTS();

	/* the limits apply from the second batch on, between batches */
	if (so->batches > 0 && !so->limited &&
		hnsw_scan_limits_reached(&so->limits, index, so->walk, &so->search,
								 (double) sizeof(GraphNeighbor) * so->found_capacity,
								 so->batches))
		so->limited = true;

	/*
	 * strict_order: a batch searches a beam of ef_search plus the elements
	 * returned so far and returns only its nearest ef_search; the rest wait
	 * for a later batch, which puts nearer elements it finds before them
	 * instead of dropping them (see README, Scans: the search finds some
	 * near elements only late, the later the deeper it goes).
	 */
	hold_back = so->limits.mode == HNSW_ITERATIVE_SCAN_STRICT ? so->returned : 0;
	if (hold_back > INT_MAX / 2 - so->ef)
		hold_back = INT_MAX / 2 - so->ef;
	beam = so->ef + (int) hold_back;
	if (beam > so->found_capacity)
	{
		so->found_capacity = Max(beam, so->found_capacity * 2);
		so->found = repalloc_huge(so->found, sizeof(GraphNeighbor) * (Size) so->found_capacity);
	}
	found = graph_search_next(&so->search, access, beam, !so->limited,
							  (int) hold_back,
							  so->limits.mode == HNSW_ITERATIVE_SCAN_OFF,
							  so->found);
	so->batches++;
	so->returned += found;

	so->count = 0;
	so->next = 0;
	for (int i = 0; i < found; i++)
	{
		int			n;

		/* strict_order: a row nearer than one already returned comes too late */
		if (so->limits.mode == HNSW_ITERATIVE_SCAN_STRICT &&
			so->found[i].distance < so->last_distance)
		{
			so->dropped++;
			continue;
		}

		/*
		 * An element the walk could not read has no heap TIDs (its distance
		 * is +inf, but so may be a real distance between huge vectors).
		 */
		n = hnsw_walk_heaptids(so->walk, so->found[i].id,
							   &so->heaptids, &so->heaptid_capacity, so->count);
		if (so->count + n > so->source_capacity)
		{
			so->source_capacity = Max(so->source_capacity * 2, so->count + n);
			so->sources = repalloc_huge(so->sources,
										sizeof(HnswRowSource) * (Size) so->source_capacity);
		}
		for (int t = 0; t < n; t++)
		{
			so->sources[so->count + t].handle = so->found[i].id;
			so->sources[so->count + t].rows = n;
			so->sources[so->count + t].distance = so->found[i].distance;
		}
		so->count += n;
		if (n > 0)
			so->last_distance = so->found[i].distance;
	}
	hnsw_walk_release(so->walk);

	if (found == 0 || so->limits.mode == HNSW_ITERATIVE_SCAN_OFF)
		so->done = true;

	elog(DEBUG1, "hnsw scan of \"%s\": batch %d, %d elements, %d heap TIDs, %llu element reads, %lld expanded, %lld dropped%s",
		 RelationGetRelationName(index), so->batches, found, so->count,
		 (unsigned long long) hnsw_walk_distance_count(so->walk),
		 (long long) so->search.expanded, (long long) so->dropped,
		 so->done ? ", done" : "");
}

bool
hnsw_get_tuple(IndexScanDesc scan, ScanDirection dir)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;

	/* the row returned last is dead to everyone: learn it (README, Scans) */
	if (scan->kill_prior_tuple && so->next > 0 && so->next <= so->count)
		hnsw_note_killed_row(so->walk, &so->killed, so->sources[so->next - 1].handle,
							 so->sources[so->next - 1].rows,
							 &so->heaptids[so->next - 1]);
	if (!so->searched)
	{
		hnsw_scan_start(scan);
		so->searched = true;
	}
	while (so->next >= so->count)
	{
		if (so->done)
		{
			if (so->memo != NULL)
				distance_memo_forget(so->memo);
			return false;
		}
		hnsw_scan_next_batch(scan);
	}

	if (so->memo != NULL)
		distance_memo_note_row(so->memo, &so->heaptids[so->next],
							   so->sources[so->next].distance);
	scan->xs_heaptid = so->heaptids[so->next++];
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	return true;
}

void
hnsw_killed_rows_reset(HnswKilledRows *killed)
{
	killed->handle = -1;
	killed->count = 0;
}

/*
 * Note one row the executor reported dead.  The rows of an element are
 * handed out one after another and the reports come in the same order, so
 * a run of reports for one handle that reaches the element's number of rows
 * means all of them are dead; an element with more rows than fit inline has
 * a chain and is never hinted.
 */
void
hnsw_note_killed_row(HnswWalk *walk, HnswKilledRows *killed, int32 handle,
					 int element_rows, ItemPointer heaptid)
{
	if (walk == NULL || element_rows > HNSW_HEAPTIDS)
		return;
	if (killed->handle != handle)
	{
		killed->handle = handle;
		killed->count = 0;
	}
	if (killed->count >= element_rows)
		return;
	killed->tids[killed->count++] = *heaptid;
	if (killed->count == element_rows)
	{
		hnsw_walk_hint_dead(walk, handle, killed->tids, element_rows);
		hnsw_walk_release(walk);
	}
}

void
hnsw_end_scan(IndexScanDesc scan)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;

	if (so->walk != NULL)
		hnsw_walk_end(so->walk);
	MemoryContextDelete(so->scan_context);
	pfree(so);
	scan->opaque = NULL;
}

/*
 * What a walk reads.  Layer 0 of a beam search of ef candidates expands a
 * little more than ef elements, and each expansion meets 2m neighbours of
 * which, once the walk is under way, most were met before: a fraction
 * HNSW_COST_NEW_PER_EXPANSION of the 2m are new and get their element tuple
 * read and their distance computed.  (Measured with the scan's DEBUG1 line on
 * a clustered 10k x 128 index, m = 16: 17 reads per ef at ef 10, 6 at ef 40,
 * 3 at ef 100, as the walk exhausts a cluster; 0.3 x 2m = 10 per ef sits
 * above that for less clustered data.)  The greedy descent adds about m per
 * upper layer.  The breadth-first layout puts an element's neighbours on the
 * same or nearby pages, which genericcostestimate's packed-pages estimate
 * (tuples read times pages per tuple) reflects.
 */
#define HNSW_COST_NEW_PER_EXPANSION 0.3

/* hnsw's walk: hnsw.ef_search candidates on full vectors, nothing after */
static void
hnsw_walk_cost(Relation index, HnswWalkCost *cost)
{
	cost->ef = hnsw_ef_search;
	cost->step_cost = 1.0;
	cost->extra_reads = 0;
}

void
hnsw_cost_estimate(struct PlannerInfo *root, struct IndexPath *path,
				   double loop_count, Cost *startup_cost,
				   Cost *total_cost, Selectivity *selectivity,
				   double *correlation, double *pages)
{
	hnsw_cost_estimate_walk(root, path, loop_count, hnsw_walk_cost,
							startup_cost, total_cost, selectivity, correlation,
							pages);
}

void
hnsw_cost_estimate_walk(struct PlannerInfo *root, struct IndexPath *path,
						double loop_count,
						void (*walk_cost) (Relation index, HnswWalkCost *cost),
						Cost *startup_cost, Cost *total_cost,
						Selectivity *selectivity, double *correlation,
						double *pages)
{
	IndexOptInfo *info = path->indexinfo;
	GenericCosts costs;
	Relation	index;
	int			m;
	double		tuples = Max(info->tuples, 1.0);
	double		layers;
	double		reads;
	HnswWalkCost walk;

	/*
	 * A graph answers only ORDER BY: never let a plain filter use it, not
	 * even when every other plan is disabled (enable_seqscan = off costs a
	 * plan disable_cost plus its real cost, so ours must be far above).
	 */
	if (path->indexorderbys == NIL)
	{
		*startup_cost = disable_cost * 1.0e3;
		*total_cost = disable_cost * 1.0e3;
		*selectivity = 0;
		*correlation = 0;
		*pages = 0;
		return;
	}

	index = index_open(info->indexoid, NoLock);
	m = hnsw_option_m(index);
	walk.limit = root->limit_tuples;
	walk_cost(index, &walk);
	index_close(index, NoLock);

	layers = Max(log(tuples) / log(m), 0.0);
	reads = (walk.ef * 2.0 * m * HNSW_COST_NEW_PER_EXPANSION + layers * m) *
		walk.step_cost + walk.extra_reads;
	reads = Min(Max(reads, 1.0), tuples);

	MemSet(&costs, 0, sizeof(costs));
	costs.numIndexTuples = reads;
	genericcostestimate(root, path, loop_count, &costs);

	/* the whole walk happens before the first row comes out */
	*startup_cost = costs.indexTotalCost;
	*total_cost = costs.indexTotalCost;
	*selectivity = costs.indexSelectivity;
	*correlation = costs.indexCorrelation;
	*pages = costs.numIndexPages;
}
