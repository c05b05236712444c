/*
 * graph_internal.h — pieces shared by the graph engine's own files: the
 * candidate heaps, the visited set and the layer search that both insertion
 * and queries use.  Not part of the engine's API.
 */
#ifndef HIERINDEX_GRAPH_INTERNAL_H
#define HIERINDEX_GRAPH_INTERNAL_H

#include "graph.h"

/*
 * A binary heap of (distance, id).  `max_heap` orders the largest distance
 * first (the result set, whose worst member is evicted); otherwise the
 * smallest first (the candidates still to expand).  Storage is caller-owned.
 */
typedef struct NeighborHeap
{
	GraphNeighbor *items;
	int			size;
	int			capacity;
	int			max_heap;
} NeighborHeap;

extern void heap_push(NeighborHeap *heap, float distance, int32_t id);
extern GraphNeighbor heap_pop(NeighborHeap *heap);

static inline GraphNeighbor
heap_top(const NeighborHeap *heap)
{
	return heap->items[0];
}

/*
 * Visited marks with a generation counter, so clearing between searches is
 * O(1) instead of O(n).
 */
struct GraphVisited
{
	uint32_t   *marks;
	uint32_t	generation;
	int64_t		capacity;
};

extern void visited_reset(GraphVisited *visited);

static inline int
visited_test_and_set(GraphVisited *visited, int32_t id)
{
	if (visited->marks[id] == visited->generation)
		return 1;
	visited->marks[id] = visited->generation;
	return 0;
}

/*
 * The in-memory graph seen through GraphAccess, so the build and queries use
 * the same walk code (graph_walk.c) as walks over index pages.  `lock` says
 * whether neighbour lists must be read under the per-element locks (during
 * a parallel build).
 */
typedef struct MemoryWalk
{
	GraphAccess access;
	const Graph *graph;
	const float *query;
	int			lock;
	GraphVisited *visited;
} MemoryWalk;

extern void memory_walk_init(MemoryWalk *walk, const Graph *graph,
							 const float *query, int lock, GraphVisited *visited);

/* GraphWalkScratch arrays malloc'd for ef and the graph's m0; -1 when out of memory */
extern int	walk_scratch_alloc(GraphWalkScratch *scratch, int ef, int m0);
extern void walk_scratch_free(GraphWalkScratch *scratch);

/* pair distance callback over the graph's own rows (context: the Graph) */
extern float memory_pair_distance(void *context, int32_t a, int32_t b);

/* Slot of element id on layer (1 + width int32: count, then ids). */
static inline int32_t *
graph_slot(const Graph *graph, int32_t id, int layer)
{
	if (layer == 0)
		return graph->links0 + (int64_t) id * (1 + graph->m0);
	return graph->upper_links + graph->upper_offset[id] +
		(int64_t) (layer - 1) * (1 + graph->params.m);
}

/* How many links an element keeps on `layer`: 2m on layer 0, m above. */
static inline int
graph_layer_width(const Graph *graph, int layer)
{
	return layer == 0 ? graph->m0 : graph->params.m;
}

extern void graph_lock_element(const Graph *graph, int32_t id);
extern void graph_unlock_element(const Graph *graph, int32_t id);

#endif							/* HIERINDEX_GRAPH_INTERNAL_H */
