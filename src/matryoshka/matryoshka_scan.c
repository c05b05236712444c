/*
 * matryoshka_scan.c — the matryoshka index scan (ORDER BY col <op> constant):
 * a graph walk on the coarse prefix, a funnel through the granularities, and
 * rows in exact distance order through the executor's re-check.
 *
 * A round (README, Scan): hnsw's page walk (hnsw_walk.c) and the engine's
 * search find ef candidates on the coarse prefix; the funnel re-ranks them on
 * each longer prefix, reading each survivor's payload (matryoshka_fine.c)
 * once, when it first leaves the coarse stage, and adding only the new
 * dimensions at each stage; the final stage, at the full dimension, gives
 * each candidate a rigorous lower bound of its exact distance, and the round's
 * rows are handed out in ascending bound with xs_recheckorderby, so that the
 * executor computes the exact distance from the heap row and re-orders
 * (IndexNextWithReorder).  The bound must never exceed what the operator
 * computes: see final_bound.
 *
 * More rows: when the executor wants a row after the round's last, the scan
 * runs another round with twice the ef (up to the element count), with the
 * funnel's sizes scaled alike, skipping elements it returned already (a hash
 * set of element TIDs).  A row that a narrower round missed can come out
 * with a bound below the last value returned: it is returned all the same,
 * and the executor's re-ordering places it as far as it still can (rows it
 * already emitted stay emitted: such a row is out of order, as rows of
 * hnsw's relaxed iterative scans may be).  No indexed row is ever dropped: a
 * query that reads the whole index gets every row the graph reaches.
 *
 * Memory: the scan's state and its one walk (reused, widened as ef grows,
 * by every round and rescan) live in scan_context; what belongs to one
 * rescan (the query, the set of returned elements) in search_context, reset
 * by rescan; one round's candidates, payloads and rows in round_context,
 * reset at the next round.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "pgstat.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"
#include "vector.h"

/*
 * Magnitudes (of |q| |x|, or of a squared norm) within which the operators'
 * float sums can neither overflow nor lose more than a negligible absolute
 * amount to underflow; outside, the bound is -infinity (README, Scan 3).
 */
#define FLOAT_SAFE_MAX	0x1p100
#define FLOAT_SAFE_MIN	0x1p-100

/* the largest ef a round uses (memory of the walk's arrays) */
#define MAX_ROUND_EF	(1 << 22)

typedef struct Candidate
{
	int32		handle;			/* in the round's walk */
	ItemPointerData finetid;
	float		coarse;			/* the walk's distance */
	double		sum;			/* metric's sum over dims [0, g_stage) */
	double		distance;		/* at the current stage; final: lower bound */
	const MatryoshkaPayloadHeader *payload; /* NULL until read */
} Candidate;

typedef struct ScanRow
{
	ItemPointerData heaptid;
	double		bound;
} ScanRow;

typedef struct MatryoshkaScanOpaqueData
{
	MemoryContext scan_context;
	MemoryContext search_context;	/* one rescan: reset by rescan */
	MemoryContext round_context;	/* one round: reset by the next */

	bool		searched;		/* the first round of this rescan has run */
	bool		done;			/* no more rounds */
	HnswMetaPageData meta;
	HnswShape	shape;			/* of the graph (coarse) */
	MatryoshkaLayout layout;
	float	   *query;			/* the full query, D floats */
	float	   *coarse_query;	/* prepared as the elements' coarse vectors */
	double		query_norms[HNSW_MAX_GRANULARITIES];	/* |q[0:g_i)| */
	double		query_fine_norm;	/* |q[g1:D)| */
	int			base_ef;		/* the first round's */
	int			ef;				/* the last round's */
	double		last_bound;		/* value of the last row returned */
	HTAB	   *returned;		/* element TIDs handed out */
	int64		late;			/* rows found below the last value returned */
	HnswWalk   *walk;			/* every round's, in scan_context */

	ScanRow    *rows;			/* the current round's, in bound order */
	int			count;
	int			next;
} MatryoshkaScanOpaqueData;

typedef MatryoshkaScanOpaqueData *MatryoshkaScanOpaque;

IndexScanDesc
matryoshka_begin_scan(Relation index, int nkeys, int norderbys)
{
	IndexScanDesc scan = RelationGetIndexScan(index, nkeys, norderbys);
	MatryoshkaScanOpaque so = palloc0(sizeof(MatryoshkaScanOpaqueData));

	so->scan_context = AllocSetContextCreate(CurrentMemoryContext,
											 "matryoshka scan",
											 ALLOCSET_DEFAULT_SIZES);
	so->search_context = AllocSetContextCreate(so->scan_context,
											   "matryoshka scan search",
											   ALLOCSET_DEFAULT_SIZES);
	so->round_context = AllocSetContextCreate(so->scan_context,
											  "matryoshka scan round",
											  ALLOCSET_DEFAULT_SIZES);
	if (norderbys > 0)
	{
		scan->xs_orderbyvals = palloc0(sizeof(Datum) * norderbys);
		scan->xs_orderbynulls = palloc(sizeof(bool) * norderbys);
		for (int i = 0; i < norderbys; i++)
			scan->xs_orderbynulls[i] = true;
	}
	scan->opaque = so;
	return scan;
}

void
matryoshka_rescan(IndexScanDesc scan, ScanKey keys, int nkeys,
				  ScanKey orderbys, int norderbys)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;

	hnsw_rescan_keys(scan, keys, orderbys);

	MemoryContextReset(so->round_context);
	MemoryContextReset(so->search_context);
	so->searched = false;
	so->done = false;
	so->returned = NULL;
	so->rows = NULL;
	so->count = 0;
	so->next = 0;
	so->late = 0;
	so->last_bound = -get_float8_infinity();
}

/*
 * Read the meta page and prepare the query.  false: no row can be returned
 * (an empty index, a NULL query, a zero query under cosine).
 */
static bool
prepare_search(IndexScanDesc scan)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	ScanKey		orderby = &scan->orderByData[0];
	Vector	   *vector;
	int			g1;
	int			full;
	double		sum = 0;
	int			stage = 0;
	HASHCTL		hash;

	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan matryoshka index without order"),
				 errhint("A matryoshka index answers ORDER BY column <-> value LIMIT n queries.")));

	/* ORDER BY col <-> NULL: every distance is NULL; we return no rows */
	if (orderby->sk_flags & SK_ISNULL)
		return false;

	hnsw_read_meta(index, &so->meta);
	if (!ItemPointerIsValid(&so->meta.entry_point))
		return false;
	hnsw_shape_from_meta(&so->meta, &so->shape);
	matryoshka_layout_from_meta(index, &so->meta, &so->layout);
	g1 = MatryoshkaCoarse(&so->layout);
	full = MatryoshkaFull(&so->layout);

	vector = DatumGetVector(orderby->sk_argument);
	if (vector->dim != full)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d", full, vector->dim)));
	so->query = palloc(sizeof(float) * full);
	memcpy(so->query, vector->x, sizeof(float) * full);
	for (int i = 0; i < full; i++)
	{
		sum += (double) so->query[i] * so->query[i];
		if (i + 1 == so->layout.dims[stage])
			so->query_norms[stage++] = sqrt(sum);
	}
	so->query_fine_norm = 0;
	for (int i = g1; i < full; i++)
		so->query_fine_norm += (double) so->query[i] * so->query[i];
	so->query_fine_norm = sqrt(so->query_fine_norm);

	/* a zero query has no direction: no order to return rows in (as hnsw) */
	so->coarse_query = palloc(sizeof(float) * g1);
	if (so->layout.metric == GRAPH_METRIC_COSINE)
	{
		if (!(so->query_norms[so->layout.count - 1] > 0))
			return false;
		if (graph_normalize(so->query, so->coarse_query, g1) != 0)
			memset(so->coarse_query, 0, sizeof(float) * g1);
	}
	else
		memcpy(so->coarse_query, so->query, sizeof(float) * g1);

	memset(&hash, 0, sizeof(hash));
	hash.keysize = sizeof(ItemPointerData);
	hash.entrysize = sizeof(ItemPointerData);
	hash.hcxt = so->search_context;
	so->returned = hash_create("matryoshka scan returned elements", 256, &hash,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	so->base_ef = matryoshka_ef_search;
	if (matryoshka_funnel_count > 0)
		so->base_ef = Max(so->base_ef, matryoshka_funnel[0]);
	so->ef = so->base_ef;

	/* one walk for every round and rescan: it only grows */
	if (so->walk == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(so->scan_context);

		so->walk = hnsw_walk_begin(index, &so->shape, so->ef, false);
		MemoryContextSwitchTo(old);
	}
	return true;
}

/* Read a candidate's payload and start its sum from the coarse distance. */
static void
load_payload(IndexScanDesc scan, Candidate *candidate)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	char	   *payload = palloc(so->meta.payload_size);
	const MatryoshkaPayloadHeader *header = (const MatryoshkaPayloadHeader *) payload;

	hnsw_read_payload(scan->indexRelation, &candidate->finetid,
					  so->meta.payload_size, payload);
	if (header->norm_count != so->layout.count)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has a payload with %u norms at (%u,%u), expected %d",
						RelationGetRelationName(scan->indexRelation),
						header->norm_count,
						ItemPointerGetBlockNumber(&candidate->finetid),
						ItemPointerGetOffsetNumber(&candidate->finetid),
						so->layout.count),
				 errhint("Please REINDEX it.")));
	candidate->payload = header;
	switch (so->layout.metric)
	{
		case GRAPH_METRIC_L2:	/* squared distance */
		case GRAPH_METRIC_L1:
			candidate->sum = candidate->coarse;
			break;
		case GRAPH_METRIC_INNER_PRODUCT:	/* negative inner product */
			candidate->sum = -(double) candidate->coarse;
			break;
		case GRAPH_METRIC_COSINE:	/* 1 - dot of the normalised prefixes */
			candidate->sum = (1.0 - (double) candidate->coarse) *
				so->query_norms[0] * header->norms[0];
			break;
	}
}

/* The distance at granularity `stage` from the candidate's sum. */
static double
stage_distance(MatryoshkaScanOpaque so, const Candidate *candidate, int stage)
{
	double		denominator;

	switch (so->layout.metric)
	{
		case GRAPH_METRIC_INNER_PRODUCT:
			return -candidate->sum;
		case GRAPH_METRIC_COSINE:
			/* a zero prefix counts as orthogonal (README) */
			denominator = so->query_norms[stage] * candidate->payload->norms[stage];
			return denominator > 0 ? 1.0 - candidate->sum / denominator : 1.0;
		default:
			return candidate->sum;
	}
}

/*
 * A lower bound of the exact distance the operator computes for this
 * candidate (README, Scan 3).  sum is over the exact coarse prefix and the
 * decoded fine part x~; r >= |x[g1:D) - x~|.  The slack covers the rounding
 * of the float sums (ours over the coarse prefix, the operator's over all D
 * dimensions: at most about n epsilon of the sum of absolute terms) with a
 * factor of 4 to spare.
 */
static double
final_bound(MatryoshkaScanOpaque so, const Candidate *candidate)
{
	const MatryoshkaLayout *layout = &so->layout;
	int			last = layout->count - 1;
	int			full = MatryoshkaFull(layout);
	int			g1 = MatryoshkaCoarse(layout);
	double		slack = 4.0 * (full + g1 + 16) * FLT_EPSILON;
	double		r = candidate->payload->residual;
	double		scale = so->query_norms[last] * candidate->payload->norms[last];
	double		bound;

	double		query_square = so->query_norms[last] * so->query_norms[last];
	double		element_square = (double) candidate->payload->norms[last] *
		candidate->payload->norms[last];

	switch (layout->metric)
	{
		case GRAPH_METRIC_L2:

			/*
			 * The operator's float squares may also underflow: each term
			 * loses at most 2^-150 (README).  Overflow only makes its value
			 * larger.
			 */
			bound = sqrt(Max(candidate->sum * (1.0 - slack) - full * ldexp(1.0, -148), 0.0)) - r;
			break;
		case GRAPH_METRIC_INNER_PRODUCT:
			/* a float sum that may overflow can come out as anything */
			if (!(scale < FLOAT_SAFE_MAX))
				return -get_float8_infinity();
			bound = -candidate->sum - so->query_fine_norm * r - slack * scale;
			break;
		case GRAPH_METRIC_COSINE:
			/* norms whose float squares may underflow or overflow, likewise */
			if (!(query_square >= FLOAT_SAFE_MIN && query_square < FLOAT_SAFE_MAX &&
				  element_square >= FLOAT_SAFE_MIN && element_square < FLOAT_SAFE_MAX))
				return -get_float8_infinity();
			bound = 1.0 - (candidate->sum + so->query_fine_norm * r) / scale - slack;
			break;
		case GRAPH_METRIC_L1:
			bound = candidate->sum * (1.0 - slack) - sqrt((double) (full - g1)) * r;
			break;
		default:
			bound = -get_float8_infinity();
	}
	bound -= 1e-30;
	if (isnan(bound))
		bound = -get_float8_infinity();
	return bound;
}

static int
compare_candidates(const void *a, const void *b)
{
	const Candidate *ca = (const Candidate *) a;
	const Candidate *cb = (const Candidate *) b;

	if (ca->distance < cb->distance)
		return -1;
	if (ca->distance > cb->distance)
		return 1;
	return (ca->handle > cb->handle) - (ca->handle < cb->handle);
}

/* Funnel size of stage `stage` for a round of ef, or INT_MAX: keep all. */
static int
stage_keep(MatryoshkaScanOpaque so, int stage, int ef)
{
	double		keep;

	if (stage >= matryoshka_funnel_count)
		return INT_MAX;
	keep = (double) matryoshka_funnel[stage] * ef / so->base_ef;
	return keep >= INT_MAX ? INT_MAX : Max((int) keep, 1);
}

/* One round with the current so->ef: fills so->rows. */
static void
run_round(IndexScanDesc scan)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	MatryoshkaLayout *layout = &so->layout;
	int			ef = so->ef;
	MemoryContext old;
	HnswWalk   *walk = so->walk;
	GraphAccess *access;
	GraphNeighbor *found;
	Candidate  *candidates;
	int			nfound;
	int			n = 0;
	int32		entry;
	float		entry_distance;
	ItemPointerData *heaptids;
	int			heaptid_capacity = 64;
	int			row_capacity = 64;
	bool		last_round = ef >= so->meta.element_count || ef >= MAX_ROUND_EF;
	int			handed_out;

	MemoryContextReset(so->round_context);
	old = MemoryContextSwitchTo(so->round_context);
	so->rows = palloc(sizeof(ScanRow) * row_capacity);
	so->count = 0;
	so->next = 0;

	/* the coarse graph search */
	hnsw_walk_widen(walk, ef);
	hnsw_walk_reset(walk, so->coarse_query);
	access = hnsw_walk_access(walk);
	found = palloc(sizeof(GraphNeighbor) * ef);
	entry = hnsw_walk_handle(walk, &so->meta.entry_point);
	entry_distance = access->distance(access->context, entry);
	for (int layer = Min(so->meta.max_level, GRAPH_MAX_LEVEL); layer >= 1; layer--)
		entry = graph_walk_greedy(access, entry, &entry_distance, layer);
	nfound = graph_walk_layer(access, hnsw_walk_scratch(walk), entry,
							  entry_distance, ef, 0, found);

	/* live elements not returned before, in coarse order */
	candidates = palloc(sizeof(Candidate) * Max(nfound, 1));
	for (int i = 0; i < nfound; i++)
	{
		Candidate  *candidate = &candidates[n];
		bool		seen;

		if (!hnsw_walk_element(walk, found[i].id, &candidate->finetid))
			continue;
		(void) hash_search(so->returned, hnsw_walk_tid(walk, found[i].id),
						   HASH_FIND, &seen);
		if (seen)
			continue;
		candidate->handle = found[i].id;
		candidate->coarse = found[i].distance;
		candidate->payload = NULL;
		candidate->distance = found[i].distance;
		n++;
	}
	hnsw_walk_release(walk);

	/* the funnel: stage 0 is the coarse one, the last the full dimension */
	n = Min(n, stage_keep(so, 0, ef));
	for (int stage = 1; stage < layout->count; stage++)
	{
		for (int i = 0; i < n; i++)
		{
			Candidate  *candidate = &candidates[i];

			if (candidate->payload == NULL)
				load_payload(scan, candidate);
			candidate->sum += matryoshka_fine_sum(layout, (const char *) candidate->payload,
												  so->query, layout->dims[stage - 1],
												  layout->dims[stage]);
			candidate->distance = stage_distance(so, candidate, stage);
		}
		if (stage < layout->count - 1)
		{
			qsort(candidates, n, sizeof(Candidate), compare_candidates);
			n = Min(n, stage_keep(so, stage, ef));
		}
		CHECK_FOR_INTERRUPTS();
	}

	/* the final ranking, by lower bound */
	for (int i = 0; i < n; i++)
	{
		if (candidates[i].payload == NULL)
			load_payload(scan, &candidates[i]);
		candidates[i].distance = final_bound(so, &candidates[i]);
	}
	qsort(candidates, n, sizeof(Candidate), compare_candidates);

	/*
	 * Their rows: only the better half, unless no wider round can follow.
	 * The rest are found again by the next, wider round, which ranks them
	 * among what it finds besides; handing them out now would leave every
	 * closer element that this round missed to be found too late.
	 */
	handed_out = last_round ? n : Max((n + 1) / 2, Min(n, 1));
	heaptids = palloc(sizeof(ItemPointerData) * heaptid_capacity);
	for (int i = 0; i < handed_out; i++)
	{
		int			tids;

		/*
		 * A row the earlier, narrower rounds missed may come below the last
		 * value returned.  It is returned all the same (never dropped): the
		 * executor's re-ordering places it as well as it still can, and
		 * otherwise it comes out of order, as an approximate index may.
		 */
		if (candidates[i].distance < so->last_bound)
			so->late++;
		(void) hash_search(so->returned, hnsw_walk_tid(walk, candidates[i].handle),
						   HASH_ENTER, NULL);
		tids = hnsw_walk_heaptids(walk, candidates[i].handle, &heaptids,
								  &heaptid_capacity, 0);
		if (so->count + tids > row_capacity)
		{
			row_capacity = Max(row_capacity * 2, so->count + tids);
			so->rows = repalloc_huge(so->rows, sizeof(ScanRow) * row_capacity);
		}
		for (int t = 0; t < tids; t++)
		{
			so->rows[so->count].heaptid = heaptids[t];
			so->rows[so->count].bound = candidates[i].distance;
			so->count++;
		}
	}

	elog(DEBUG1, "matryoshka scan of \"%s\": ef %d, %d candidates, %d ranked on the full vector, %d heap TIDs, %llu element reads, " INT64_FORMAT " rows found late so far",
		 RelationGetRelationName(index), ef, nfound, n, so->count,
		 (unsigned long long) hnsw_walk_distance_count(walk), so->late);
	hnsw_walk_release(walk);
	MemoryContextSwitchTo(old);

	/* a search as wide as the index has seen everything it can reach */
	if (last_round)
		so->done = true;
}

bool
matryoshka_get_tuple(IndexScanDesc scan, ScanDirection dir)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	ScanRow    *row;

	if (!so->searched)
	{
		MemoryContext old = MemoryContextSwitchTo(so->search_context);
		bool		searchable = prepare_search(scan);

		MemoryContextSwitchTo(old);
		so->searched = true;
		if (!searchable)
		{
			so->done = true;
			return false;
		}
		pgstat_count_index_scan(scan->indexRelation);
		run_round(scan);
	}
	while (so->next >= so->count)
	{
		if (so->done)
			return false;
		so->ef = (int) Min((int64) so->ef * 2,
						   Min(so->meta.element_count, (int64) MAX_ROUND_EF));
		run_round(scan);
	}

	row = &so->rows[so->next++];
	scan->xs_heaptid = row->heaptid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = true;
	scan->xs_orderbyvals[0] = Float8GetDatum(row->bound);
	scan->xs_orderbynulls[0] = false;
	so->last_bound = row->bound;
	return true;
}

void
matryoshka_end_scan(IndexScanDesc scan)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;

	if (so->walk != NULL)
		hnsw_walk_end(so->walk);
	MemoryContextDelete(so->scan_context);
	pfree(so);
	scan->opaque = NULL;
}

/*
 * The cost estimate: hnsw's (hnsw_cost_estimate_walk), with this index's
 * walk.  It searches max(matryoshka.ef_search, first funnel size)
 * candidates, like a scan's first round; a step reads a coarse element, so
 * it costs the coarse share g1 / D of an hnsw step, but never less than a
 * quarter of one (a step's page access and bookkeeping do not shrink with
 * the vector); every candidate that leaves the coarse stage then reads its
 * payload chain, charged as one more element read.
 */
static void
matryoshka_walk_cost(Relation index, HnswWalkCost *cost)
{
	MatryoshkaLayout layout;
	int			dimensions = hnsw_column_dimensions(index, VECTOR_MAX_DIM, "matryoshka");

	matryoshka_index_layout(index, dimensions, &layout);
	cost->ef = matryoshka_ef_search;
	if (matryoshka_funnel_count > 0)
		cost->ef = Max(cost->ef, matryoshka_funnel[0]);
	cost->step_cost = Max((double) MatryoshkaCoarse(&layout) / MatryoshkaFull(&layout), 0.25);
	cost->extra_reads = layout.count > 1 ?
		Min(cost->ef, matryoshka_funnel_count > 0 ? matryoshka_funnel[0] : cost->ef) : 0;
}

void
matryoshka_cost_estimate(struct PlannerInfo *root, struct IndexPath *path,
						 double loop_count, Cost *startup_cost,
						 Cost *total_cost, Selectivity *selectivity,
						 double *correlation, double *pages)
{
	hnsw_cost_estimate_walk(root, path, loop_count, matryoshka_walk_cost,
							startup_cost, total_cost, selectivity, correlation,
							pages);
}
