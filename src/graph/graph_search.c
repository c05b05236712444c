/*
 * graph_search.c — greedy descent and beam (ef) search over the in-memory
 * graph, used by insertion (under per-element locks) and by queries.
 *
 * During a parallel build another thread may rewrite a neighbour list while we
 * read it, so with `lock` set each list is copied out under its element's lock
 * and distances are computed after the lock is released: locks are held for a
 * memcpy of at most 2m ids, never for distance computations.
 */
#include "graph_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline int
heap_before(const NeighborHeap *heap, const GraphNeighbor *a, const GraphNeighbor *b)
{
	return heap->max_heap ? a->distance > b->distance : a->distance < b->distance;
}

void
heap_push(NeighborHeap *heap, float distance, int32_t id)
{
	GraphNeighbor item = {distance, id};
	int			i;

	if (heap->size == heap->capacity)
	{
		/*
		 * The candidate heap has no tight bound; grow it.  If memory runs out
		 * the candidate is dropped: the search gets slightly less thorough,
		 * never wrong.
		 */
		int			capacity = heap->capacity * 2 + 16;
		GraphNeighbor *items = realloc(heap->items, sizeof(GraphNeighbor) * capacity);

		if (items == NULL)
			return;
		heap->items = items;
		heap->capacity = capacity;
	}
	i = heap->size++;

	while (i > 0)
	{
		int			parent = (i - 1) / 2;

		if (!heap_before(heap, &item, &heap->items[parent]))
			break;
		heap->items[i] = heap->items[parent];
		i = parent;
	}
	heap->items[i] = item;
}

GraphNeighbor
heap_pop(NeighborHeap *heap)
{
	GraphNeighbor top = heap->items[0];
	GraphNeighbor last = heap->items[--heap->size];
	int			i = 0;

	for (;;)
	{
		int			child = 2 * i + 1;

		if (child >= heap->size)
			break;
		if (child + 1 < heap->size &&
			heap_before(heap, &heap->items[child + 1], &heap->items[child]))
			child++;
		if (!heap_before(heap, &heap->items[child], &last))
			break;
		heap->items[i] = heap->items[child];
		i = child;
	}
	if (heap->size > 0)
		heap->items[i] = last;
	return top;
}

/* Copy the neighbour list of id on layer into buf; returns the count. */
static int
copy_neighbors(const Graph *graph, int32_t id, int layer, int lock, int32_t *buf)
{
	const int32_t *slot = graph_slot(graph, id, layer);
	int			count;

	if (lock)
		graph_lock_element(graph, id);
	count = slot[0];
	memcpy(buf, slot + 1, sizeof(int32_t) * count);
	if (lock)
		graph_unlock_element(graph, id);
	return count;
}

int32_t
search_greedy(const Graph *graph, const float *query, int32_t entry,
			  float *entry_distance, int layer, int lock)
{
	int32_t		buf[2 * GRAPH_MAX_M];
	int32_t		current = entry;
	float		current_distance = *entry_distance;
	int			changed = 1;

	while (changed)
	{
		int			count = copy_neighbors(graph, current, layer, lock, buf);

		changed = 0;
		for (int i = 0; i < count; i++)
		{
			float		d = graph_distance(graph, query, buf[i]);

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

void
search_layer(const Graph *graph, const float *query, int32_t entry,
			 float entry_distance, int ef, int layer, int lock,
			 GraphVisited *visited, NeighborHeap *candidates,
			 NeighborHeap *results)
{
	int32_t		buf[2 * GRAPH_MAX_M];

	visited_reset(visited);
	candidates->size = 0;
	results->size = 0;
	visited_test_and_set(visited, entry);
	heap_push(candidates, entry_distance, entry);
	heap_push(results, entry_distance, entry);

	while (candidates->size > 0)
	{
		GraphNeighbor nearest = heap_pop(candidates);
		int			count;

		/* every remaining candidate is farther than our worst result */
		if (nearest.distance > heap_top(results).distance && results->size >= ef)
			break;

		count = copy_neighbors(graph, nearest.id, layer, lock, buf);
		for (int i = 0; i < count; i++)
		{
			int32_t		id = buf[i];
			float		d;

			if (visited_test_and_set(visited, id))
				continue;
			d = graph_distance(graph, query, id);
			if (results->size < ef || d < heap_top(results).distance)
			{
				heap_push(candidates, d, id);
				heap_push(results, d, id);
				if (results->size > ef)
					heap_pop(results);
			}
		}
	}
}

int
graph_search(const Graph *graph, const float *query, int k, int ef,
			 GraphVisited *visited, GraphNeighbor *out)
{
	const float *q = query;
	float	   *normalised = NULL;
	int32_t		entry = graph->entry_point;
	float		entry_distance;
	NeighborHeap candidates,
				results;
	int			found;

	if (entry == GRAPH_NO_ELEMENT || k < 1)
		return 0;
	if (ef < k)
		ef = k;

	if (graph->params.metric == GRAPH_METRIC_COSINE)
	{
		double		norm = 0.0;
		int			dim = graph->params.dim;

		for (int i = 0; i < dim; i++)
			norm += (double) query[i] * query[i];
		if (!(norm > 0.0))
			return 0;			/* a zero query has no cosine neighbours */
		normalised = malloc(sizeof(float) * dim);
		if (normalised == NULL)
			return -1;
		norm = sqrt(norm);
		for (int i = 0; i < dim; i++)
			normalised[i] = (float) (query[i] / norm);
		q = normalised;
	}

	entry_distance = graph_distance(graph, q, entry);
	for (int layer = graph->max_level; layer > 0; layer--)
		entry = search_greedy(graph, q, entry, &entry_distance, layer, 0);

	candidates.items = malloc(sizeof(GraphNeighbor) * (ef * 2 * graph->m0 + 1));
	results.items = malloc(sizeof(GraphNeighbor) * (ef + 2));
	if (candidates.items == NULL || results.items == NULL)
	{
		free(candidates.items);
		free(results.items);
		free(normalised);
		return -1;
	}
	candidates.capacity = ef * 2 * graph->m0 + 1;
	candidates.max_heap = 0;
	results.capacity = ef + 2;
	results.max_heap = 1;

	search_layer(graph, q, entry, entry_distance, ef, 0, 0, visited,
				 &candidates, &results);

	/* drain the max-heap: farthest first, so fill out[] from the back */
	while (results.size > k)
		heap_pop(&results);
	found = results.size;
	for (int i = found - 1; i >= 0; i--)
		out[i] = heap_pop(&results);

	free(candidates.items);
	free(results.items);
	free(normalised);
	return found;
}
