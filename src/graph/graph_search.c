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

	/* callers guarantee room (graph_walk_layer checks the candidate heap) */
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

static float
memory_distance(void *context, int32_t id)
{
	MemoryWalk *walk = context;

	return graph_distance(walk->graph, walk->query, id);
}

/*
 * The batch: touch every vector's first cache lines first (the hardware
 * prefetcher follows a stream once it has started), so the misses of all of
 * them overlap instead of each distance waiting for its own.
 */
static void
memory_distances(void *context, const int32_t *ids, int n, float *out)
{
	MemoryWalk *walk = context;
	const Graph *graph = walk->graph;
	int			dim = graph->params.dim;

	for (int i = 0; i < n; i++)
	{
		const char *vector = (const char *) (graph->vectors + (int64_t) ids[i] * dim);

		__builtin_prefetch(vector, 0, 3);
		__builtin_prefetch(vector + 64, 0, 3);
	}
	for (int i = 0; i < n; i++)
		out[i] = graph_distance(graph, walk->query, ids[i]);
}

static int
memory_neighbors(void *context, int32_t id, int layer, int32_t *out)
{
	MemoryWalk *walk = context;

	return copy_neighbors(walk->graph, id, layer, walk->lock, out);
}

static void
memory_visited_reset(void *context)
{
	visited_reset(((MemoryWalk *) context)->visited);
}

static int
memory_visited_test_and_set(void *context, int32_t id)
{
	return visited_test_and_set(((MemoryWalk *) context)->visited, id);
}

void
memory_walk_init(MemoryWalk *walk, const Graph *graph, const float *query,
				 int lock, GraphVisited *visited)
{
	walk->access.context = walk;
	walk->access.distance = memory_distance;
	walk->access.distances = memory_distances;
	walk->access.neighbors = memory_neighbors;
	walk->access.visited_reset = memory_visited_reset;
	walk->access.visited_test_and_set = memory_visited_test_and_set;
	walk->graph = graph;
	walk->query = query;
	walk->lock = lock;
	walk->visited = visited;
}

float
memory_pair_distance(void *context, int32_t a, int32_t b)
{
	const Graph *graph = context;

	return graph_distance(graph, graph->vectors + (int64_t) a * graph->params.dim, b);
}

int
walk_scratch_alloc(GraphWalkScratch *scratch, int ef, int m0)
{
	scratch->ef = ef;
	scratch->candidate_capacity = graph_walk_candidate_capacity(ef, m0);
	scratch->candidates = malloc(sizeof(GraphNeighbor) * scratch->candidate_capacity);
	scratch->results = malloc(sizeof(GraphNeighbor) * (ef + 2));
	return scratch->candidates && scratch->results ? 0 : -1;
}

void
walk_scratch_free(GraphWalkScratch *scratch)
{
	free(scratch->candidates);
	free(scratch->results);
	scratch->candidates = scratch->results = NULL;
}

int
graph_search(const Graph *graph, const float *query, int k, int ef,
			 GraphVisited *visited, GraphNeighbor *out)
{
	const float *q = query;
	float	   *normalised = NULL;
	int32_t		entry = graph->entry_point;
	float		entry_distance;
	MemoryWalk	walk;
	GraphWalkScratch scratch = {0};
	GraphNeighbor *results = NULL;
	int			found;

	if (entry == GRAPH_NO_ELEMENT || k < 1)
		return 0;
	if (ef < k)
		ef = k;

	if (graph->params.metric == GRAPH_METRIC_COSINE)
	{
		normalised = malloc(sizeof(float) * graph->params.dim);
		if (normalised == NULL)
			return -1;
		if (graph_normalize(query, normalised, graph->params.dim) != 0)
		{
			free(normalised);
			return 0;			/* a zero query has no cosine neighbours */
		}
		q = normalised;
	}

	memory_walk_init(&walk, graph, q, 0, visited);
	entry_distance = graph_distance(graph, q, entry);
	for (int layer = graph->max_level; layer > 0; layer--)
		entry = graph_walk_greedy(&walk.access, entry, &entry_distance, layer);

	if (walk_scratch_alloc(&scratch, ef, graph->m0) != 0 ||
		(results = malloc(sizeof(GraphNeighbor) * ef)) == NULL)
	{
		walk_scratch_free(&scratch);
		free(normalised);
		return -1;
	}
	found = graph_walk_layer(&walk.access, &scratch, entry, entry_distance, ef, 0, results);
	if (found > k)
		found = k;
	memcpy(out, results, sizeof(GraphNeighbor) * found);

	free(results);
	walk_scratch_free(&scratch);
	free(normalised);
	return found;
}
