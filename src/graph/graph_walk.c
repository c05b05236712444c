/*
 * graph_walk.c — the HNSW search and neighbour selection over a graph reached
 * through callbacks (GraphAccess), for graphs that live outside the flat
 * in-memory form: the index scan and the on-disk insert of src/hnsw walk
 * database pages with exactly this code.
 *
 * A beam search marks the new neighbours of the element it expands and asks
 * for their distances in one batch (GraphAccess.distances, when offered), so
 * that the access can fetch all their vectors before computing the first.
 *
 * Nothing here allocates: heaps live in the caller's GraphWalkScratch, so a
 * callback may longjmp out (a PostgreSQL ERROR) without leaking anything.
 * The resumable search (GraphSearch, for iterative index scans) keeps heaps
 * that grow with the part of the graph it has met; it grows them through
 * the caller's callback, so they too are the caller's memory.
 */
#include "graph_internal.h"
#include "distance.h"

#include <stdlib.h>
#include <string.h>

int
graph_neighbor_compare(const void *a, const void *b)
{
	const GraphNeighbor *x = a,
			   *y = b;

	if (x->distance != y->distance)
		return x->distance < y->distance ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);	/* ties: stable, deterministic */
}

float
graph_metric_distance(GraphMetric metric, const float *a, const float *b, int dim)
{
	switch (metric)
	{
		case GRAPH_METRIC_L2:
			return distance_l2_squared(a, b, dim);
		case GRAPH_METRIC_INNER_PRODUCT:
			return -distance_inner_product(a, b, dim);
		case GRAPH_METRIC_COSINE:
			return 1.0f - distance_inner_product(a, b, dim);
		case GRAPH_METRIC_L1:
			return distance_l1(a, b, dim);
	}
	return 0.0f;
}

int
graph_select_neighbors(const GraphNeighbor *sorted, int count, int max,
					   float (*pair_distance) (void *context, int32_t a, int32_t b),
					   void *context, GraphNeighbor *selected)
{
	return graph_select_more_neighbors(sorted, count, max, pair_distance, context,
									   selected, 0);
}

int
graph_select_more_neighbors(const GraphNeighbor *sorted, int count, int max,
							float (*pair_distance) (void *context, int32_t a, int32_t b),
							void *context, GraphNeighbor *selected, int kept)
{
	for (int i = 0; i < count && kept < max; i++)
	{
		int			good = 1;

		for (int j = 0; j < kept; j++)
		{
			if (pair_distance(context, sorted[i].id, selected[j].id) < sorted[i].distance)
			{
				good = 0;
				break;
			}
		}
		if (good)
			selected[kept++] = sorted[i];
	}
	return kept;
}

int
graph_walk_candidate_capacity(int ef, int m0)
{
	/*
	 * A candidate is pushed only when it enters the result set, and each
	 * expansion pushes at most m0: ef expansions before the results settle
	 * bound it, plus the entry.
	 */
	return ef * (m0 > 0 ? m0 : 1) + 1;
}

/* Distances to ids[0..n): in one batch when the access offers it. */
static inline void
walk_distances(const GraphAccess *access, const int32_t *ids, int n, float *out)
{
	if (access->distances != NULL)
		access->distances(access->context, ids, n, out);
	else
	{
		for (int i = 0; i < n; i++)
			out[i] = access->distance(access->context, ids[i]);
	}
}

/*
 * Expand element `id` on `layer`: its neighbours not visited yet are marked
 * and written to ids[], their distances (asked for at once) to distances[];
 * returns how many.
 */
static int
walk_expand(const GraphAccess *access, int32_t id, int layer, int32_t *ids,
			float *distances)
{
	int			count = access->neighbors(access->context, id, layer, ids);
	int			fresh = 0;

	for (int i = 0; i < count; i++)
	{
		if (!access->visited_test_and_set(access->context, ids[i]))
			ids[fresh++] = ids[i];
	}
	walk_distances(access, ids, fresh, distances);
	return fresh;
}

int32_t
graph_walk_greedy(const GraphAccess *access, int32_t entry,
				  float *entry_distance, int layer)
{
	int32_t		buf[2 * GRAPH_MAX_M];
	float		distances[2 * GRAPH_MAX_M];
	int32_t		current = entry;
	float		current_distance = *entry_distance;
	int			changed = 1;

	while (changed)
	{
		int			count = access->neighbors(access->context, current, layer, buf);

		walk_distances(access, buf, count, distances);
		changed = 0;
		for (int i = 0; i < count; i++)
		{
			float		d = distances[i];

			if (d < current_distance)
			{
				current_distance = d;
				current = buf[i];
				changed = 1;
			}
		}
	}
	*entry_distance = current_distance;
	return current;
}

int
graph_walk_layer(const GraphAccess *access, GraphWalkScratch *scratch,
				 int32_t entry, float entry_distance, int ef, int layer,
				 GraphNeighbor *out)
{
	int32_t		buf[2 * GRAPH_MAX_M];
	float		distances[2 * GRAPH_MAX_M];
	NeighborHeap candidates = {scratch->candidates, 0, scratch->candidate_capacity, 0};
	NeighborHeap results = {scratch->results, 0, scratch->ef + 2, 1};
	int			found;

	if (ef > scratch->ef)
		ef = scratch->ef;

	access->visited_reset(access->context);
	access->visited_test_and_set(access->context, entry);
	heap_push(&candidates, entry_distance, entry);
	heap_push(&results, entry_distance, entry);

	while (candidates.size > 0)
	{
		GraphNeighbor nearest = heap_pop(&candidates);
		int			fresh;

		/* every remaining candidate is farther than our worst result */
		if (nearest.distance > heap_top(&results).distance && results.size >= ef)
			break;

		fresh = walk_expand(access, nearest.id, layer, buf, distances);

		for (int i = 0; i < fresh; i++)
		{
			int32_t		id = buf[i];
			float		d = distances[i];

			if (results.size < ef || d < heap_top(&results).distance)
			{
				/* a full candidate heap drops the newcomer: it is the least urgent */
				if (candidates.size < candidates.capacity)
					heap_push(&candidates, d, id);
				heap_push(&results, d, id);
				if (results.size > ef)
					heap_pop(&results);
			}
		}
	}

	found = results.size;
	for (int i = found - 1; i >= 0; i--)
		out[i] = heap_pop(&results);
	/* equal distances come out of the heap in arbitrary order */
	qsort(out, found, sizeof(GraphNeighbor), graph_neighbor_compare);
	return found;
}

/* ------------------------------------------------------------------------
 * The resumable search (GraphSearch): see graph.h.
 * ------------------------------------------------------------------------ */

/*
 * Make room for one more entry in *items (capacity *capacity, size used).
 * Each element enters a heap at most once per search (when first met), and
 * handles are int32, so INT32_MAX entries always suffice.
 */
static void
search_reserve(GraphSearch *search, GraphNeighbor **items, int *capacity, int used)
{
	int			grown;

	if (used < *capacity)
		return;
	grown = *capacity < 64 ? 64 : (*capacity > INT32_MAX / 2 ? INT32_MAX : *capacity * 2);
	*items = search->grow(search->grow_context, *items, sizeof(GraphNeighbor) * (size_t) grown);
	*capacity = grown;
}

/*
 * The heaps of a search seen as NeighborHeaps for the duration of a call;
 * search_push grows the array first, then writes the size back.
 */
static void
search_push(GraphSearch *search, GraphNeighbor **items, int *size, int *capacity,
			int max_heap, float distance, int32_t id)
{
	NeighborHeap heap;

	search_reserve(search, items, capacity, *size);
	heap.items = *items;
	heap.size = *size;
	heap.capacity = *capacity;
	heap.max_heap = max_heap;
	heap_push(&heap, distance, id);
	*size = heap.size;
}

static GraphNeighbor
search_pop(GraphNeighbor *items, int *size, int max_heap)
{
	NeighborHeap heap = {items, *size, *size, max_heap};
	GraphNeighbor top = heap_pop(&heap);

	*size = heap.size;
	return top;
}

static inline int
search_live(const GraphAccess *access, int32_t id)
{
	return access->live == NULL || access->live(access->context, id);
}

void
graph_search_start(GraphSearch *search, const GraphAccess *access,
				   int32_t entry, float entry_distance, int layer)
{
	search->unexpanded_size = 0;
	search->pool_size = 0;
	search->layer = layer;
	search->expanded = 0;
	search->fallback = GRAPH_NO_ELEMENT;
	search->dropped = 0;
	access->visited_reset(access->context);
	access->visited_test_and_set(access->context, entry);
	search_push(search, &search->unexpanded, &search->unexpanded_size,
				&search->unexpanded_capacity, 0, entry_distance, entry);
	if (search_live(access, entry))
		search_push(search, &search->pool, &search->pool_size,
					&search->pool_capacity, 0, entry_distance, entry);
}

void
graph_search_set_fallback(GraphSearch *search, int32_t fallback, float fallback_distance)
{
	search->fallback = fallback;
	search->fallback_distance = fallback_distance;
}

/*
 * An element met for the first time (distance d): it waits to be expanded,
 * and if live takes a place in the batch (the farther of it and the batch's
 * worst goes to the pool) or waits in the pool.
 */
static void
search_offer(GraphSearch *search, const GraphAccess *access, int ef, int final,
			 int *batch_size, int32_t id, float d)
{
	/*
	 * The worst of a full batch only improves, and the loop stops at the
	 * first unexpanded element beyond it: this one would only wait for a
	 * later batch, and there is none.
	 */
	if (final && *batch_size >= ef && d > search->batch[0].distance)
	{
		search->dropped = 1;
		return;
	}
	search_push(search, &search->unexpanded, &search->unexpanded_size,
				&search->unexpanded_capacity, 0, d, id);
	if (!search_live(access, id))
		return;
	if (*batch_size < ef)
		search_push(search, &search->batch, batch_size,
					&search->batch_capacity, 1, d, id);
	else
	{
		GraphNeighbor spare = {d, id};

		/* the loser of the two goes to the pool, for a later batch */
		if (d < search->batch[0].distance)
		{
			spare = search_pop(search->batch, batch_size, 1);
			search_push(search, &search->batch, batch_size,
						&search->batch_capacity, 1, d, id);
		}
		if (!final)
			search_push(search, &search->pool, &search->pool_size,
						&search->pool_capacity, 0, spare.distance, spare.id);
	}
}

/*
 * Whether something is left to expand; when the walk has run out, go on
 * from the fallback (once, and only if the walk has not met it).  A final
 * batch that dropped an element (search_offer) has not run out: without
 * `final` that element would wait, unexpanded, and the batch end there, so
 * the fallback is not taken and the batch is the same either way.
 */
static int
search_continues(GraphSearch *search, const GraphAccess *access, int ef, int final,
				 int *batch_size)
{
	int32_t		fallback = search->fallback;

	if (search->unexpanded_size > 0)
		return 1;
	if (fallback == GRAPH_NO_ELEMENT || search->dropped)
		return 0;
	search->fallback = GRAPH_NO_ELEMENT;
	if (!access->visited_test_and_set(access->context, fallback))
		search_offer(search, access, ef, final, batch_size, fallback,
					 search->fallback_distance);
	return search->unexpanded_size > 0;
}

int
graph_search_next(GraphSearch *search, const GraphAccess *access, int ef,
				  int expand, int hold_back, int final, GraphNeighbor *out)
{
	int32_t		buf[2 * GRAPH_MAX_M];
	float		distances[2 * GRAPH_MAX_M];
	int			batch_size = 0;
	int			found;

	if (ef < 1)
		ef = 1;
	if (search->batch_capacity < ef + 1)
	{
		search->batch = search->grow(search->grow_context, search->batch,
									 sizeof(GraphNeighbor) * (size_t) (ef + 1));
		search->batch_capacity = ef + 1;
	}

	/* the nearest elements met before and not returned yet come first */
	while (batch_size < ef && search->pool_size > 0)
	{
		GraphNeighbor nearest = search_pop(search->pool, &search->pool_size, 0);

		search_push(search, &search->batch, &batch_size, &search->batch_capacity,
					1, nearest.distance, nearest.id);
	}

	while (expand && search_continues(search, access, ef, final, &batch_size))
	{
		GraphNeighbor nearest = search->unexpanded[0];
		int			fresh;

		/* every remaining element is farther than the batch's worst */
		if (batch_size >= ef && nearest.distance > search->batch[0].distance)
			break;
		search_pop(search->unexpanded, &search->unexpanded_size, 0);
		search->expanded++;

		fresh = walk_expand(access, nearest.id, search->layer, buf, distances);
		for (int i = 0; i < fresh; i++)
			search_offer(search, access, ef, final, &batch_size, buf[i], distances[i]);
	}

	/*
	 * The farthest hold_back go back to the pool while there is more to
	 * search: the next batch may find nearer elements, which then go first.
	 */
	if (expand && search->unexpanded_size > 0)
	{
		for (int i = 0; i < hold_back && batch_size > 1; i++)
		{
			GraphNeighbor farthest = search_pop(search->batch, &batch_size, 1);

			search_push(search, &search->pool, &search->pool_size,
						&search->pool_capacity, 0, farthest.distance, farthest.id);
		}
	}

	found = batch_size;
	for (int i = found - 1; i >= 0; i--)
		out[i] = search_pop(search->batch, &batch_size, 1);
	/* equal distances come out of the heap in arbitrary order */
	qsort(out, found, sizeof(GraphNeighbor), graph_neighbor_compare);
	return found;
}
