/*
 * hnsw_scan.c — the hnsw index scan (ORDER BY col <op> constant) and its cost
 * estimate.
 *
 * A scan does all its work on the first amgettuple after a rescan: it reads
 * the meta page, prepares the query as the index prepared its vectors
 * (normalised under cosine), descends greedily from the entry point through
 * layers max_level..1 and runs a beam search of hnsw.ef_search candidates on
 * layer 0, all through the page walk of hnsw_walk.c and the engine's own
 * search code.  The resulting elements' heap TIDs are collected in ascending
 * distance (every row that shares an element's vector, through its heap-TID
 * overflow chain, into a buffer that grows as needed; none for deleted
 * elements), every pin is dropped, and amgettuple then hands them out one at
 * a time.  The distances are exact for the returned rows, so neither the
 * rows nor the order need rechecking.  As in pgvector, a scan returns at most
 * ef_search elements: a query that needs more rows than that (e.g. a filter
 * above the scan discards many) gets fewer.
 *
 * Memory: the walk (sized by ef_search) lives for the whole scan and is
 * reused by every rescan; whatever one search allocates besides (the
 * detoasted query) goes into a context reset at each rescan, so a nested
 * loop that rescans thousands of times uses constant memory.
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
#include "optimizer/cost.h"
#include "pgstat.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"

#include "hnsw/hnsw.h"

typedef struct HnswScanOpaqueData
{
	MemoryContext scan_context; /* the walk, the results: whole scan */
	MemoryContext search_context;	/* one search's scratch: reset by rescan */

	HnswWalk   *walk;			/* NULL until the first search */
	int			walk_ef;		/* ef_search the walk was sized for */
	float	   *query;			/* prepared query, shape.dimensions floats */
	GraphNeighbor *found;		/* walk_ef entries */
	ItemPointerData *heaptids;	/* results: heaptid_capacity entries, grown */
	int			heaptid_capacity;

	bool		searched;		/* the search of this rescan has run */
	int			count;			/* heap TIDs found */
	int			next;			/* next one to return */
} HnswScanOpaqueData;

typedef HnswScanOpaqueData *HnswScanOpaque;

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
	so->count = 0;
	so->next = 0;
}

/* (Re)size the scan's walk and result arrays for ef_search. */
static void
hnsw_scan_prepare_walk(IndexScanDesc scan, const HnswShape *shape, int ef)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	MemoryContext old = MemoryContextSwitchTo(so->scan_context);

	if (so->walk != NULL)
	{
		hnsw_walk_end(so->walk);
		pfree(so->found);
		pfree(so->heaptids);
	}
	else
		so->query = palloc(sizeof(float) * shape->dimensions);
	so->walk = NULL;
	so->walk = hnsw_walk_begin(scan->indexRelation, shape, ef, false);
	so->walk_ef = ef;
	so->found = palloc(sizeof(GraphNeighbor) * ef);
	so->heaptid_capacity = ef * 2;
	so->heaptids = palloc(sizeof(ItemPointerData) * so->heaptid_capacity);
	MemoryContextSwitchTo(old);
}

/*
 * The search: from the entry point down to layer 0, then collect the heap
 * TIDs of what it found.  Leaves so->heaptids[0 .. so->count) and no pin.
 */
static void
hnsw_scan_search(IndexScanDesc scan)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	ScanKey		orderby = &scan->orderByData[0];
	HnswMetaPageData meta;
	HnswShape	shape;
	GraphAccess *access;
	int			ef = hnsw_ef_search;
	int32		entry;
	float		entry_distance;
	int			found;
	MemoryContext old;

	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan hnsw index without order"),
				 errhint("An hnsw index answers ORDER BY column <-> value LIMIT n queries.")));

	/* ORDER BY col <-> NULL: every distance is NULL; we return no rows */
	if (orderby->sk_flags & SK_ISNULL)
		return;

	old = MemoryContextSwitchTo(so->search_context);

	hnsw_read_meta(index, &meta);
	if (!ItemPointerIsValid(&meta.entry_point))
	{
		/* an empty index */
		MemoryContextSwitchTo(old);
		return;
	}
	hnsw_shape_from_meta(&meta, &shape);

	if (so->walk == NULL || so->walk_ef != ef)
		hnsw_scan_prepare_walk(scan, &shape, ef);

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

	hnsw_walk_reset(so->walk, so->query);
	access = hnsw_walk_access(so->walk);
	entry = hnsw_walk_handle(so->walk, &meta.entry_point);
	entry_distance = access->distance(access->context, entry);
	for (int layer = Min(meta.max_level, GRAPH_MAX_LEVEL); layer >= 1; layer--)
		entry = graph_walk_greedy(access, entry, &entry_distance, layer);
	found = graph_walk_layer(access, hnsw_walk_scratch(so->walk), entry,
							 entry_distance, ef, 0, so->found);

	so->count = 0;
	for (int i = 0; i < found; i++)
	{
		/*
		 * An element the walk could not read has no heap TIDs (its distance
		 * is +inf, but so may be a real distance between huge vectors).
		 */
		so->count += hnsw_walk_heaptids(so->walk, so->found[i].id,
										&so->heaptids, &so->heaptid_capacity,
										so->count);
	}
	hnsw_walk_release(so->walk);

	elog(DEBUG1, "hnsw scan of \"%s\": %d elements, %d heap TIDs, %llu element reads",
		 RelationGetRelationName(index), found, so->count,
		 (unsigned long long) hnsw_walk_distance_count(so->walk));

	MemoryContextSwitchTo(old);
}

bool
hnsw_get_tuple(IndexScanDesc scan, ScanDirection dir)
{
	HnswScanOpaque so = (HnswScanOpaque) scan->opaque;

	if (!so->searched)
	{
		hnsw_scan_search(scan);
		so->searched = true;
	}
	if (so->next >= so->count)
		return false;

	scan->xs_heaptid = so->heaptids[so->next++];
	scan->xs_recheck = false;
	scan->xs_recheckorderby = false;
	return true;
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
