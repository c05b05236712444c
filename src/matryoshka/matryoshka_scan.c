/*
 * matryoshka_scan.c — the matryoshka index scan (ORDER BY col <op> constant):
 * a graph walk on the coarse prefix, a funnel through the granularities, and
 * rows in exact distance order through the executor's re-check.
 *
 * A round (README, Scan): hnsw's page walk (hnsw_walk.c) and the engine's
 * search find ef candidates on the coarse prefix; the funnel re-ranks them on
 * each longer prefix, reading each survivor's payload (matryoshka_fine.c)
 * once, when it first leaves the coarse stage (all of them together,
 * through the walk's buffers), and adding only the new dimensions at each
 * stage; the final stage, at the full dimension, gives each candidate
 * rigorous lower and upper bounds of its exact distance, and the round's rows
 * are handed out in ascending lower bound with xs_recheckorderby, so that the
 * executor computes the exact distance from the heap row and re-orders
 * (IndexNextWithReorder).  The lower bound must never exceed what the
 * operator computes: see final_bounds.  A first-round row whose bounds
 * separate it from every other row of the round is in its exact place
 * already, and goes without the recheck (README, Scan 3): that saves the
 * executor a detoast of the heap row, and after a proven tenth row, the
 * eleventh row it would otherwise fetch to be sure of the tenth.
 *
 * More rows (iterative scans, matryoshka.iterative_scan: README, Scan 4):
 * when the executor wants a row after the round's last, the next round
 * continues the graph search where the last one stopped (the engine's
 * resumable search, GraphSearch: nothing is walked twice), with a beam twice
 * as wide each time, and ranks the new candidates together with those held
 * back (those with final bounds keep them: merged, not re-read).  The first
 * round hands out its whole ranking when it is the only one: under off
 * (which ends there), and for an unfiltered LIMIT that its ranking covers
 * (an ORDER BY ... LIMIT k needs no other round: the executor fetches rows
 * until the k-th is proven or a fetched row's bound passes the k-th exact
 * distance).  Otherwise a round hands out only
 * the rows whose lower bound is at most the frontier of the coarse search
 * plus the smallest gap between full and coarse distance among its new
 * candidates (release_threshold): rows that the elements not reached yet
 * are unlikely to beat.  A row that an earlier round missed can still come
 * out with a bound below the last value returned: relaxed_order returns it
 * all the same (the executor's re-ordering places it as far as it still
 * can; rows it already emitted stay emitted, so it is out of order, as rows
 * of hnsw's relaxed iterative scans may be), strict_order drops it, so that
 * the values returned, and with them the rows, never decrease.  The search
 * stops reading at matryoshka.max_scan_tuples or work_mem x
 * matryoshka.scan_mem_multiplier (hnsw's limits, HnswScanLimits), and the
 * rounds then hand out what it has met.
 *
 * Memory: the scan's state, its one walk and the search's heaps (reused by
 * every round and rescan) live in scan_context; what belongs to one rescan
 * (the query, the candidates held back) in search_context, reset by rescan;
 * one round's candidates, payloads and rows in round_context, reset at the
 * next round.
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "access/genam.h"
#include "access/relscan.h"
#include "pgstat.h"
#include "utils/float.h"
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

/* the widest beam a later round searches */
#define MAX_ROUND_EF	(1 << 22)

/* the widest first round a LIMIT asks for: beyond it, rounds go on */
#define MAX_FIRST_EF	(10 * HNSW_MAX_EF_SEARCH)

/* growth of an index past its measure beyond which the measure is a floor */
#define MEASURE_GROWTH	4

typedef struct Candidate
{
	int32		handle;			/* in the round's walk */
	ItemPointerData finetid;
	float		coarse;			/* the walk's distance */
	bool		ranked;			/* has its final bounds (distance, upper) */
	int			round;			/* the round whose search found it */
	double		sum;			/* metric's sum over dims [0, g_stage) */
	double		distance;		/* at the current stage; final: lower bound */
	double		upper;			/* final: upper bound */
	const MatryoshkaPayloadHeader *payload; /* NULL until read */
} Candidate;

typedef struct ScanRow
{
	ItemPointerData heaptid;
	double		bound;
	bool		exact_order;	/* its place is proven: no recheck */
	HnswRowSource source;		/* its element, for dead-row hints */
} ScanRow;

typedef struct MatryoshkaScanOpaqueData
{
	MemoryContext scan_context;
	MemoryContext search_context;	/* one rescan: reset by rescan */
	MemoryContext round_context;	/* one round: reset by the next */

	bool		searched;		/* the first round of this rescan has run */
	bool		done;			/* no more rounds */
	HnswScanLimits limits;		/* matryoshka.iterative_scan and its limits */
	bool		limited;		/* a limit was hit: no more reading, only the pool */
	HnswMetaPageData meta;
	HnswShape	shape;			/* of the graph (coarse) */
	MatryoshkaLayout layout;
	float	   *query;			/* the full query, D floats */
	float	   *coarse_query;	/* prepared as the elements' coarse vectors */
	double		query_norms[HNSW_MAX_GRANULARITIES];	/* |q[0:g_i)| */
	double		query_fine_norm;	/* |q[g1:D)| */
	int			base_ef;		/* the first round's beam */
	int64		limit_rows;		/* LIMIT + OFFSET above the scan; -1: none */
	bool		filtered;		/* the scan node filters the rows it gets */
	int			ef;				/* the last round's beam */
	int			rounds;			/* of this rescan */
	bool		exhausted;		/* the graph search has nothing left */
	double		last_bound;		/* value of the last row returned */
	int64		late;			/* rows found below the last value returned */
	int64		dropped;		/* strict_order: late rows skipped */
	HnswWalk   *walk;			/* every round's, in scan_context */
	GraphSearch search;			/* layer 0, resumable; heaps in scan_context */

	/* candidates held back by the last round (search_context) */
	struct Candidate *held;
	int			held_count;
	int			held_capacity;

	ScanRow    *rows;			/* the current round's, in bound order */
	int			count;
	int			next;
	HnswKilledRows killed;		/* rows the executor reported dead */
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
	so->search.grow = hnsw_scan_search_grow;
	so->search.grow_context = so->scan_context;
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
	so->limited = false;
	so->exhausted = false;
	so->rounds = 0;
	so->held = NULL;
	so->held_count = 0;
	so->held_capacity = 0;
	so->rows = NULL;
	so->count = 0;
	so->next = 0;
	hnsw_killed_rows_reset(&so->killed);
	so->late = 0;
	so->dropped = 0;
	so->last_bound = -get_float8_infinity();
}

/*
 * The first round's beam for a scan that will hand out `rows` rows (the
 * LIMIT plus OFFSET right above it, matryoshka_limit.c; -1: unknown).
 * matryoshka.ef_search, or when that is 0 (its default) the ef the index's
 * build measured for 10 rows (matryoshka_measure.c; an index built empty, or
 * too small to measure, has none until a VACUUM measures it:
 * HNSW_DEFAULT_EF_SEARCH; once inserts have grown the index past
 * MEASURE_GROWTH times what was measured, at least HNSW_DEFAULT_EF_SEARCH,
 * since a small table's measure says little about a large one; VACUUM
 * measures again at MATRYOSHKA_REMEASURE_GROWTH times), as many
 * candidates per row for a larger LIMIT, up to ef_search's maximum; at least
 * the first funnel size; and at least the LIMIT and two more (the executor
 * looks at the row after the last to be sure of the last's place), so that a
 * LIMIT is answered in one round, in order, up to MAX_FIRST_EF rows (README,
 * Scan 1).
 */
static int
first_round_ef(const HnswMetaPageData *meta, int64 rows)
{
	int64		ef = matryoshka_ef_search;

	rows = Min(rows, (int64) MAX_FIRST_EF);
	if (ef == MATRYOSHKA_EF_SEARCH_MEASURED)
	{
		if (meta->default_ef == 0 || meta->measured_elements <= 0)
			ef = HNSW_DEFAULT_EF_SEARCH;
		else if (meta->element_count > MEASURE_GROWTH * meta->measured_elements)
			ef = Max(meta->default_ef, HNSW_DEFAULT_EF_SEARCH);
		else
			ef = meta->default_ef;
		if (rows > MATRYOSHKA_MEASURE_ROWS)
			ef = Min(ef * rows / MATRYOSHKA_MEASURE_ROWS, HNSW_MAX_EF_SEARCH);
	}
	if (matryoshka_funnel_count > 0)
		ef = Max(ef, matryoshka_funnel[0]);
	if (rows >= 0)
		ef = Max(ef, Min(rows + 2, MAX_FIRST_EF));
	return (int) ef;
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

	if (scan->numberOfOrderBys == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot scan matryoshka index without order"),
				 errhint("A matryoshka index answers ORDER BY column <-> value LIMIT n queries.")));

	if (!hnsw_scan_read_meta(scan, &so->meta))
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

	hnsw_scan_limits_init(&so->limits, matryoshka_iterative_scan,
						  matryoshka_max_scan_tuples, matryoshka_scan_mem_multiplier);
	so->limit_rows = matryoshka_scan_limit(scan, &so->filtered);
	so->base_ef = first_round_ef(&so->meta, so->limit_rows);
	so->ef = so->base_ef;

	/*
	 * One walk for every round and rescan (the resumable search keeps its own
	 * heaps, and the walk grows as needed: any ef will do).
	 */
	if (so->walk == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(so->scan_context);

		so->walk = hnsw_walk_begin(index, &so->shape, 1, false);
		MemoryContextSwitchTo(old);
	}

	/* from the entry point down to layer 0, where the rounds search */
	hnsw_walk_descend(so->walk, &so->meta, so->coarse_query, scan->ignore_killed_tuples,
					  &so->search);
	hnsw_walk_release(so->walk);
	return true;
}

/* Give a candidate its payload and start its sum from the coarse distance. */
static void
start_sum(IndexScanDesc scan, Candidate *candidate,
		  const MatryoshkaPayloadHeader *header)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;

	matryoshka_check_payload(scan->indexRelation, &so->layout, header,
							 &candidate->finetid);
	candidate->payload = header;
	candidate->sum = matryoshka_coarse_sum(so->layout.metric, candidate->coarse,
										   so->query_norms[0], header->norms[0]);
}

/*
 * Read the payloads of candidates[0, n) that have none yet (all at once,
 * through the walk's buffers: the page reads overlap) and start their sums
 * from the coarse distance.
 */
static void
load_payloads(IndexScanDesc scan, Candidate *candidates, int n)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	Size		size = so->meta.payload_size;
	ItemPointerData *finetids = palloc(sizeof(ItemPointerData) * Max(n, 1));
	char	  **payloads = palloc(sizeof(char *) * Max(n, 1));
	char	   *space;
	int			count = 0;

	for (int i = 0; i < n; i++)
	{
		if (candidates[i].payload == NULL)
			finetids[count++] = candidates[i].finetid;
	}
	if (count == 0)
		return;
	space = palloc(size * count);
	for (int i = 0; i < count; i++)
		payloads[i] = space + size * i;
	hnsw_walk_read_payloads(so->walk, count, finetids, size, payloads);
	hnsw_walk_release(so->walk);

	count = 0;
	for (int i = 0; i < n; i++)
	{
		if (candidates[i].payload == NULL)
			start_sum(scan, &candidates[i],
					  (const MatryoshkaPayloadHeader *) payloads[count++]);
	}
}

/* The distance at granularity `stage` from the candidate's sum. */
static double
stage_distance(MatryoshkaScanOpaque so, const Candidate *candidate, int stage)
{
	return matryoshka_sum_distance(so->layout.metric, candidate->sum,
								   so->query_norms[stage],
								   candidate->payload->norms[stage]);
}

/*
 * Bounds of the exact distance the operator computes for this candidate
 * (README, Scan 3): *lower never above it, *upper never below it.  sum is
 * over the exact coarse prefix and the decoded fine part x~; r >= |x[g1:D) -
 * x~|.  The slack covers the rounding of the float sums (ours over the
 * coarse prefix, the operator's over all D dimensions: at most about n
 * epsilon of the sum of absolute terms) with a factor of 4 to spare.  Where
 * the operator's float sums could overflow or underflow into anything, the
 * bound on that side is infinite.
 */
static void
final_bounds(MatryoshkaScanOpaque so, const Candidate *candidate,
			 double *lower, double *upper)
{
	const MatryoshkaLayout *layout = &so->layout;
	int			last = layout->count - 1;
	int			full = MatryoshkaFull(layout);
	int			g1 = MatryoshkaCoarse(layout);
	double		slack = 2.0 * (full + g1 + 16) * FLT_EPSILON;
	double		r = candidate->payload->residual;
	double		scale = so->query_norms[last] * candidate->payload->norms[last];
	double		query_square = so->query_norms[last] * so->query_norms[last];
	double		element_square = (double) candidate->payload->norms[last] *
		candidate->payload->norms[last];
	double		l1_residual = sqrt((double) (full - g1)) * r;
	double		root;

	*lower = -get_float8_infinity();
	*upper = get_float8_infinity();
	switch (layout->metric)
	{
		case GRAPH_METRIC_L2:

			/*
			 * The operator's float squares may underflow: each term loses at
			 * most 2^-150 (README), which only lowers its value; overflow only
			 * raises it, so the upper bound holds only where no float sum can
			 * overflow.
			 */
			*lower = sqrt(Max(candidate->sum * (1.0 - slack) - full * ldexp(1.0, -148), 0.0)) - r;
			root = sqrt(candidate->sum * (1.0 + slack)) + r;
			if (root * root < FLOAT_SAFE_MAX)
				*upper = root;
			break;
		case GRAPH_METRIC_INNER_PRODUCT:
			/* a float sum that may overflow can come out as anything */
			if (!(scale < FLOAT_SAFE_MAX))
				return;
			*lower = -candidate->sum - so->query_fine_norm * r - slack * scale;
			*upper = -candidate->sum + so->query_fine_norm * r + slack * scale;
			break;
		case GRAPH_METRIC_COSINE:
			/* norms whose float squares may underflow or overflow, likewise */
			if (!(query_square >= FLOAT_SAFE_MIN && query_square < FLOAT_SAFE_MAX &&
				  element_square >= FLOAT_SAFE_MIN && element_square < FLOAT_SAFE_MAX))
				return;
			*lower = 1.0 - (candidate->sum + so->query_fine_norm * r) / scale - slack;
			*upper = 1.0 - (candidate->sum - so->query_fine_norm * r) / scale + slack;
			break;
		case GRAPH_METRIC_L1:
			*lower = candidate->sum * (1.0 - slack) - l1_residual;
			if (candidate->sum * (1.0 + slack) + l1_residual < FLOAT_SAFE_MAX)
				*upper = candidate->sum * (1.0 + slack) + l1_residual;
			break;
	}
	*lower -= 1e-30;
	*upper += 1e-30;
	if (isnan(*lower))
		*lower = -get_float8_infinity();
	if (isnan(*upper))
		*upper = get_float8_infinity();
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

/*
 * Funnel size of stage `stage` for a round of beam ef, or INT_MAX: keep all.
 * Never below the LIMIT the scan knows (and two more, as first_round_ef),
 * so that a funnel does not split a LIMIT over several rounds.
 */
static int
stage_keep(MatryoshkaScanOpaque so, int stage, int ef)
{
	double		keep;

	if (stage >= matryoshka_funnel_count)
		return INT_MAX;
	keep = (double) matryoshka_funnel[stage] * ef / so->base_ef;
	if (so->limit_rows >= 0)
		keep = Max(keep, (double) Min(so->limit_rows + 2, (int64) MAX_FIRST_EF));
	return keep >= INT_MAX ? INT_MAX : Max((int) keep, 1);
}

/* Hold candidates[from, to) back for the next round (in search_context). */
static void
hold_back(MatryoshkaScanOpaque so, const Candidate *candidates, int from, int to)
{
	int			count = to - from;

	if (count <= 0)
		return;
	if (so->held_count + count > so->held_capacity)
	{
		so->held_capacity = Max(so->held_capacity * 2, so->held_count + count);
		if (so->held == NULL)
			so->held = MemoryContextAllocHuge(so->search_context,
											  sizeof(Candidate) * (Size) so->held_capacity);
		else
			so->held = repalloc_huge(so->held, sizeof(Candidate) * (Size) so->held_capacity);
	}
	for (int i = from; i < to; i++)
	{
		Candidate  *held = &so->held[so->held_count++];

		*held = candidates[i];
		held->payload = NULL;	/* it lives in the round's memory */
		/* a candidate a funnel stage cut starts over from its coarse distance */
		if (!held->ranked)
			held->distance = held->coarse;
	}
}

/*
 * A coarse distance (the walk's) in the units of the operator's distance:
 * the walk's L2 distance is squared; its other distances are the
 * operator's own on the coarse prefix.
 */
static double
coarse_value(const MatryoshkaScanOpaque so, float coarse)
{
	if (so->layout.metric == GRAPH_METRIC_L2)
		return sqrt(Max((double) coarse, 0.0));
	return coarse;
}

/*
 * The bound below which a round's ranked rows may go out (README, Scan 4):
 * the lowest exact distance that an element the search has not returned
 * yet is likely to have.  The search returns elements in about ascending
 * coarse distance, so those lie at or beyond `frontier`, the farthest
 * coarse distance of this round's batch.  How much an element's full
 * distance exceeds its coarse one (the gap) varies, and the smallest gap
 * among this round's new candidates, which lie next to the frontier,
 * stands for the smallest beyond it: frontier + smallest gap.  A prefix's
 * L2 and L1 distances never exceed the full vector's, so for those metrics
 * the gap is at least 0 (and the frontier alone a bound when no new
 * candidate was ranked); inner product and cosine have no such floor, and
 * without a new candidate nothing goes out.
 */
static double
release_threshold(const MatryoshkaScanOpaque so, const Candidate *candidates,
				  int n, float frontier)
{
	bool		has_floor = so->layout.metric == GRAPH_METRIC_L2 ||
		so->layout.metric == GRAPH_METRIC_L1;
	double		gap = get_float8_infinity();

	for (int i = 0; i < n; i++)
	{
		if (candidates[i].round == so->rounds)
			gap = Min(gap, candidates[i].distance - coarse_value(so, candidates[i].coarse));
	}
	if (has_floor)
		gap = isinf(gap) ? 0.0 : Max(gap, 0.0);
	if (isinf(gap) || isnan(gap))
		return -get_float8_infinity();
	return coarse_value(so, frontier) + gap;
}

/*
 * One round: the next batch of the graph search (beam so->ef) and the
 * candidates the last round held back go through the funnel; fills
 * so->rows with the rows handed out, holds the rest back.  Candidates held
 * back with their final bounds are not ranked again (their payload is not
 * read again either).
 */
static void
run_round(IndexScanDesc scan)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	Relation	index = scan->indexRelation;
	MatryoshkaLayout *layout = &so->layout;
	int			ef = so->ef;
	MemoryContext old;
	HnswWalk   *walk = so->walk;
	GraphAccess *access = hnsw_walk_access(walk);
	GraphNeighbor *found;
	Candidate  *candidates;
	Candidate  *ranked;			/* held back with final bounds, in order */
	Candidate  *ranking;
	int			nfound = 0;
	int			n = 0;
	int			held = so->held_count;
	int			ranked_held = 0;
	ItemPointerData *heaptids;
	int			heaptid_capacity = 64;
	int			row_capacity = 64;
	bool		last_round;
	int			handed_out;
	double		upper_before = 0;	/* the largest upper bound of the rows so far */
	int			exact_rows = 0;

	MemoryContextReset(so->round_context);
	old = MemoryContextSwitchTo(so->round_context);
	so->rows = palloc(sizeof(ScanRow) * row_capacity);
	so->count = 0;
	so->next = 0;
	so->rounds++;

	/*
	 * The limits apply from the second round on, between rounds (as hnsw's
	 * between batches): once reached, the search reads nothing more and the
	 * rounds hand out what it has already met.
	 */
	if (so->rounds > 1 && !so->limited && !so->exhausted &&
		hnsw_scan_limits_reached(&so->limits, index, walk, &so->search,
								 (double) sizeof(Candidate) * so->held_capacity +
								 (double) sizeof(GraphNeighbor) * ef,
								 so->rounds - 1))
		so->limited = true;

	/* the next batch of the coarse graph search */
	found = palloc(sizeof(GraphNeighbor) * ef);
	if (!so->exhausted)
	{
		nfound = graph_search_next(&so->search, access, ef, !so->limited, 0,
								   so->limits.mode == HNSW_ITERATIVE_SCAN_OFF, found);
		if (nfound == 0)
			so->exhausted = true;
	}
	last_round = so->exhausted;

	/*
	 * Live elements, in coarse order, then those held back that a funnel
	 * stage cut: they go through the funnel (again).  Those held back with
	 * their final bounds wait, in their order, for the final ranking.
	 */
	candidates = palloc(sizeof(Candidate) * Max(nfound + held, 1));
	ranked = palloc(sizeof(Candidate) * Max(held, 1));
	for (int i = 0; i < nfound; i++)
	{
		Candidate  *candidate = &candidates[n];

		if (!hnsw_walk_element(walk, found[i].id, &candidate->finetid))
			continue;
		candidate->handle = found[i].id;
		candidate->coarse = found[i].distance;
		candidate->ranked = false;
		candidate->round = so->rounds;
		candidate->payload = NULL;
		candidate->distance = found[i].distance;
		n++;
	}
	hnsw_walk_release(walk);
	for (int i = 0; i < held; i++)
	{
		if (so->held[i].ranked)
			ranked[ranked_held++] = so->held[i];
		else
			candidates[n++] = so->held[i];
	}
	so->held_count = 0;

	/*
	 * The funnel: stage 0 is the coarse one, the last the full dimension.
	 * What a stage cuts is held back, never dropped (the last round, with
	 * nothing left to search, cuts nothing).  Only a stage that cuts needs
	 * its candidates in order.
	 */
	for (int stage = 0; stage < layout->count; stage++)
	{
		int			keep;

		if (stage > 0)
		{
			load_payloads(scan, candidates, n);
			for (int i = 0; i < n; i++)
			{
				Candidate  *candidate = &candidates[i];

				candidate->sum += matryoshka_fine_sum(layout, (const char *) candidate->payload,
													  so->query, layout->dims[stage - 1],
													  layout->dims[stage]);
				candidate->distance = stage_distance(so, candidate, stage);
			}
			CHECK_FOR_INTERRUPTS();
		}
		if (stage == layout->count - 1)
			break;
		keep = last_round ? n : Min(n, stage_keep(so, stage, ef));
		if (keep < n)
		{
			qsort(candidates, n, sizeof(Candidate), compare_candidates);
			hold_back(so, candidates, keep, n);
			n = keep;
		}
	}

	/*
	 * The final bounds of the survivors, and the final ranking by lower
	 * bound: the survivors sorted, merged with the ranked candidates held
	 * back (sorted already: re-sorting them each round would cost more than
	 * the rest of a deep scan).
	 */
	load_payloads(scan, candidates, n);
	for (int i = 0; i < n; i++)
	{
		final_bounds(so, &candidates[i], &candidates[i].distance, &candidates[i].upper);
		candidates[i].ranked = true;
	}
	qsort(candidates, n, sizeof(Candidate), compare_candidates);
	ranking = palloc(sizeof(Candidate) * Max(n + ranked_held, 1));
	for (int i = 0, a = 0, b = 0; i < n + ranked_held; i++)
	{
		if (b == ranked_held ||
			(a < n && compare_candidates(&candidates[a], &ranked[b]) <= 0))
			ranking[i] = candidates[a++];
		else
			ranking[i] = ranked[b++];
	}
	n += ranked_held;
	candidates = ranking;

	/*
	 * Which rows go out now (README, Scan 4).  The last round hands out all
	 * of them: nothing is left to search.  So does the first when it is the
	 * only one: iterative scans off, or an unfiltered LIMIT that its ranking
	 * covers (first_round_ef made it at least LIMIT + 2 wide), so that the
	 * LIMIT needs no other round.  Otherwise (a cursor, a LIMIT beyond other
	 * nodes, or a filter that drops rows, where nobody knows how far the
	 * executor will read) only the rows that no element the search has not
	 * returned yet is likely to beat go out; the rest are held back for the
	 * next round, which ranks them among the elements it finds.  Handing
	 * out a whole first round there would put its tail, ranked among its
	 * ef candidates only, before nearer rows that later rounds find.
	 */
	if (last_round ||
		(so->rounds == 1 &&
		 (so->limits.mode == HNSW_ITERATIVE_SCAN_OFF ||
		  (so->limit_rows >= 0 && !so->filtered && so->limit_rows + 2 <= n))))
		handed_out = n;
	else
	{
		double		threshold = release_threshold(so, candidates, n,
												  nfound > 0 ? found[nfound - 1].distance : 0);

		handed_out = 0;
		while (handed_out < n && candidates[handed_out].distance <= threshold)
			handed_out++;
	}
	hold_back(so, candidates, handed_out, n);
	heaptids = palloc(sizeof(ItemPointerData) * heaptid_capacity);
	for (int i = 0; i < handed_out; i++)
	{
		int			tids;
		bool		exact_order;

		/*
		 * A row of the first round whose bounds separate it from every
		 * other row of the round (all before it certainly nearer, all after
		 * it certainly not nearer) is in its exact place without the
		 * executor's recheck (README, Scan 3); the last row the round hands
		 * out is never one: a later round may find nearer rows (and
		 * strict_order drops only those below the value of a row already
		 * returned, here the next row's).
		 */
		exact_order = so->rounds == 1 && i + 1 < handed_out &&
			candidates[i].upper <= candidates[i + 1].distance &&
			(i == 0 || upper_before < candidates[i].distance);
		upper_before = i == 0 ? candidates[i].upper : Max(upper_before, candidates[i].upper);

		/*
		 * A row the earlier rounds missed may come below the last value
		 * returned.  strict_order skips it, so that rows come out in
		 * distance order (README, Scan 4); otherwise it is returned all the
		 * same: the executor's re-ordering places it as well as it still
		 * can, and otherwise it comes out of order, as an approximate index
		 * may.
		 */
		if (candidates[i].distance < so->last_bound)
		{
			if (so->limits.mode == HNSW_ITERATIVE_SCAN_STRICT)
			{
				so->dropped++;
				continue;
			}
			so->late++;
		}
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
			so->rows[so->count].exact_order = exact_order;
			so->rows[so->count].source.handle = candidates[i].handle;
			so->rows[so->count].source.rows = tids;
			so->count++;
			exact_rows += exact_order;
		}
	}

	/*
	 * The last row handed out is never proven: when the element meant to
	 * follow it gave no rows (its slot was freed or reused meanwhile), the
	 * proof of the row before it named a row that is not there.
	 */
	for (int r = so->count - 1;
		 r >= 0 && so->rows[r].source.handle == so->rows[so->count - 1].source.handle; r--)
	{
		exact_rows -= so->rows[r].exact_order;
		so->rows[r].exact_order = false;
	}

	elog(DEBUG1, "matryoshka scan of \"%s\": round %d, beam %d, %d found%s, %d held back before (%d ranked), %d ranked on the full vector, %d handed out, %d heap TIDs (%d in proven order), %d held back, %llu element reads, " INT64_FORMAT " rows found late, " INT64_FORMAT " dropped so far",
		 RelationGetRelationName(index), so->rounds, ef, nfound,
		 so->limited ? " (limited)" : "", held, ranked_held, n, handed_out,
		 so->count, exact_rows, so->held_count,
		 (unsigned long long) hnsw_walk_distance_count(walk), so->late, so->dropped);
	hnsw_walk_release(walk);
	MemoryContextSwitchTo(old);

	/*
	 * Nothing left to search and nothing held back, or iterative scans are
	 * off: the first round is the whole scan.
	 */
	if ((last_round && so->held_count == 0) ||
		so->limits.mode == HNSW_ITERATIVE_SCAN_OFF)
		so->done = true;
}

bool
matryoshka_get_tuple(IndexScanDesc scan, ScanDirection dir)
{
	MatryoshkaScanOpaque so = (MatryoshkaScanOpaque) scan->opaque;
	ScanRow    *row;

	/* the row returned last is dead to everyone: learn it (README, Scans) */
	if (scan->kill_prior_tuple && so->next > 0 && so->next <= so->count)
	{
		row = &so->rows[so->next - 1];
		hnsw_note_killed_row(so->walk, &so->killed, row->source.handle,
							 row->source.rows, &row->heaptid);
	}
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
		so->ef = (int) Min((int64) so->ef * 2, (int64) MAX_ROUND_EF);
		run_round(scan);
	}

	row = &so->rows[so->next++];
	scan->xs_heaptid = row->heaptid;
	scan->xs_recheck = false;
	scan->xs_recheckorderby = !row->exact_order;
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
 * walk.  It searches as many candidates as a scan's first round
 * (first_round_ef, with the planner's LIMIT: where a join or a sort lies
 * between the LIMIT and the scan, the scan sees no LIMIT at run time and
 * this is an overestimate); a step reads a coarse element, so
 * it costs the coarse share g1 / D of an hnsw step, but never less than a
 * quarter of one (a step's page access and bookkeeping do not shrink with
 * the vector); every candidate that leaves the coarse stage then reads its
 * payload chain, charged as one more element read.
 */
static void
matryoshka_walk_cost(Relation index, HnswWalkCost *cost)
{
	HnswMetaPageData meta = {0};
	MatryoshkaLayout layout;
	int			dimensions = hnsw_column_dimensions(index, VECTOR_MAX_DIM, "matryoshka");

	matryoshka_index_layout(index, dimensions, &layout);
	if (matryoshka_ef_search == MATRYOSHKA_EF_SEARCH_MEASURED)
		hnsw_read_meta(index, &meta);
	cost->ef = first_round_ef(&meta, cost->limit >= 0 ?
							  (int64) Min(cost->limit, (double) MAX_FIRST_EF) : -1);
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
