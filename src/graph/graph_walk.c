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
	int			kept = 0;

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
		int			count;
		int			fresh;

		/* every remaining candidate is farther than our worst result */
		if (nearest.distance > heap_top(&results).distance && results.size >= ef)
			break;

		count = access->neighbors(access->context, nearest.id, layer, buf);

		/* the unvisited ones, whose distances are then asked for at once */
		fresh = 0;
		for (int i = 0; i < count; i++)
		{
			if (!access->visited_test_and_set(access->context, buf[i]))
				buf[fresh++] = buf[i];
		}
		walk_distances(access, buf, fresh, distances);

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
