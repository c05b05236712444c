/*
 * graph_build.c — parallel HNSW insertion (Malkov & Yashunin, arXiv 1603.09320).
 *
 * Each element is inserted as in the paper's Algorithm 1: greedy descent
 * through the layers above its level, then on each of its layers a beam
 * search with ef_construction candidates, from which Algorithm 4's heuristic
 * keeps at most m neighbours that are closer to the new element than to any
 * neighbour already kept (this spreads links across directions instead of
 * spending them all inside one cluster).  Each kept neighbour gets a reverse
 * link; when its list is full (m on upper layers, 2m on layer 0) the union is
 * pruned with the same heuristic.
 *
 * Concurrency: OpenMP threads insert different elements at once.  Every
 * neighbour list is read and written under its element's lock; a thread holds
 * at most one element lock at a time, so there is no lock ordering to get
 * wrong.  An element becomes findable only once its own lists on all its
 * layers are written: its reverse links, the only way into it, are added
 * after the last of them, and an element whose level exceeds the current top
 * holds the entry lock for its whole insertion, so the entry point only ever
 * moves to an element that is fully linked.  Threads allocate only with
 * malloc and make no PostgreSQL calls (see DESIGN.md).
 */
#include "graph_internal.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

typedef struct BuildScratch
{
	GraphVisited *visited;
	GraphWalkScratch walk;
	GraphNeighbor *sorted;		/* ef_construction, ascending */
	GraphNeighbor *pool;		/* 2 m0 + 1: a full list plus new links */
	GraphNeighbor *pruned;		/* m0: what pruning keeps of the pool */
	GraphNeighbor *kept;		/* m per layer: the new element's lists */
} BuildScratch;

static int
scratch_init(BuildScratch *scratch, const Graph *graph)
{
	int			ef = graph->params.ef_construction;

	memset(scratch, 0, sizeof(*scratch));
	scratch->visited = graph_visited_create(graph->capacity);
	walk_scratch_alloc(&scratch->walk, ef, graph->m0);
	scratch->sorted = malloc(sizeof(GraphNeighbor) * (ef + 1));
	scratch->pool = malloc(sizeof(GraphNeighbor) * (2 * graph->m0 + 1));
	scratch->pruned = malloc(sizeof(GraphNeighbor) * (graph->m0 + 1));
	scratch->kept = malloc(sizeof(GraphNeighbor) * graph->params.m * (GRAPH_MAX_LEVEL + 1));
	return scratch->visited && scratch->walk.candidates && scratch->walk.results &&
		scratch->sorted && scratch->pool && scratch->pruned &&
		scratch->kept ? 0 : -1;
}

static void
scratch_free(BuildScratch *scratch)
{
	graph_visited_free(scratch->visited);
	walk_scratch_free(&scratch->walk);
	free(scratch->sorted);
	free(scratch->pool);
	free(scratch->pruned);
	free(scratch->kept);
}

/*
 * Fill scratch->pool with the links in `slot`, each with its distance to
 * `base`; returns how many.
 */
static int
pool_links(const Graph *graph, BuildScratch *scratch, const float *base,
		   const int32_t *slot)
{
	int			pooled = 0;

	for (int i = 0; i < slot[0]; i++)
	{
		scratch->pool[pooled].id = slot[1 + i];
		scratch->pool[pooled++].distance = graph_distance(graph, base, slot[1 + i]);
	}
	return pooled;
}

/*
 * Replace the links in `slot` with the first `pooled` entries of
 * scratch->pool: all of them while they fit in `max`, else what the
 * heuristic keeps of them.  Pruning a pool that fits would drop links the
 * heuristic finds redundant, and such a link may be the only way into an
 * element (seen on points along a line built by two threads: a whole
 * stretch became unreachable from the rest).  Caller holds the lock.
 */
static void
store_pool_in_slot(const Graph *graph, BuildScratch *scratch, int32_t *slot,
				   int pooled, int max)
{
	int			kept;

	if (pooled <= max)
	{
		for (int i = 0; i < pooled; i++)
			slot[1 + i] = scratch->pool[i].id;
		slot[0] = pooled;
		return;
	}
	qsort(scratch->pool, pooled, sizeof(GraphNeighbor), graph_neighbor_compare);
	kept = graph_select_neighbors(scratch->pool, pooled, max, memory_pair_distance,
								  (void *) graph, scratch->pruned);
	for (int i = 0; i < kept; i++)
		slot[1 + i] = scratch->pruned[i].id;
	slot[0] = kept;
}

/* Give `target` a link to `source` on `layer`, pruning a full list. */
static void
add_reverse_link(Graph *graph, BuildScratch *scratch, int32_t target,
				 int32_t source, float distance, int layer)
{
	int			max = graph_layer_width(graph, layer);
	int32_t    *slot = graph_slot(graph, target, layer);
	int			dim = graph->params.dim;

	graph_lock_element(graph, target);
	for (int i = 0; i < slot[0]; i++)
	{
		if (slot[1 + i] == source)
		{
			/*
			 * Linked already.  Not in graph_build_range: only `source`'s
			 * own insertion adds `source` to lists, and `target` could
			 * have kept `source` in its own list only if each had found
			 * the other before its own search ended (insert_element).
			 * Kept as a guard: a list must not hold a link twice.
			 */
			graph_unlock_element(graph, target);
			return;
		}
	}
	if (slot[0] < max)
		slot[1 + slot[0]++] = source;
	else
	{
		int			pooled = pool_links(graph, scratch,
										graph->vectors + (int64_t) target * dim,
										slot);

		scratch->pool[pooled].id = source;
		scratch->pool[pooled++].distance = distance;
		store_pool_in_slot(graph, scratch, slot, pooled, max);
	}
	graph_unlock_element(graph, target);
}

static void
insert_element(Graph *graph, BuildScratch *scratch, int32_t id)
{
	omp_lock_t *entry_lock = (omp_lock_t *) graph->entry_lock;
	const float *vector = graph->vectors + (int64_t) id * graph->params.dim;
	int			level = graph->levels[id];
	int			top;
	int			holds_entry_lock;
	MemoryWalk	walk;
	int32_t		entry;
	float		entry_distance;
	int			kept_count[GRAPH_MAX_LEVEL + 1];

	omp_set_lock(entry_lock);
	entry = graph->entry_point;
	top = graph->max_level;
	if (entry == GRAPH_NO_ELEMENT)
	{
		graph->entry_point = id;
		graph->max_level = level;
		omp_unset_lock(entry_lock);
		return;
	}
	holds_entry_lock = level > top;
	if (!holds_entry_lock)
		omp_unset_lock(entry_lock);

	memory_walk_init(&walk, graph, vector, 1, scratch->visited);
	entry_distance = graph_distance(graph, vector, entry);
	for (int layer = top; layer > level; layer--)
		entry = graph_walk_greedy(&walk.access, entry, &entry_distance, layer);

	for (int layer = (level < top ? level : top); layer >= 0; layer--)
	{
		GraphNeighbor *kept = scratch->kept + layer * graph->params.m;
		int			found;
		int32_t    *slot;

		found = graph_walk_layer(&walk.access, &scratch->walk, entry, entry_distance,
								 graph->params.ef_construction, layer,
								 scratch->sorted);
		kept_count[layer] = graph_select_neighbors(scratch->sorted, found, graph->params.m,
												   memory_pair_distance, (void *) graph,
												   kept);

		/*
		 * Nobody links to this element yet (see below), so the list is
		 * empty and the lock only keeps readers of the slot consistent.
		 */
		slot = graph_slot(graph, id, layer);
		graph_lock_element(graph, id);
		for (int i = 0; i < kept_count[layer]; i++)
			slot[1 + i] = kept[i].id;
		slot[0] = kept_count[layer];
		graph_unlock_element(graph, id);

		entry = scratch->sorted[0].id;
		entry_distance = scratch->sorted[0].distance;
	}

	/*
	 * The reverse links only now that every layer has its list.  Added
	 * layer by layer as each list was written, they let a concurrent
	 * insertion reach this element on an upper layer and go down from it
	 * to a layer whose list was still empty: its search there met this
	 * element alone, and it kept this element as its only neighbour
	 * (two threads, a 501-element grid with m = 4: 5 builds in 100 with
	 * elements linked to one far neighbour, not found from their own vector
	 * at ef 200; test/unit/test_graph.c).
	 */
	for (int layer = (level < top ? level : top); layer >= 0; layer--)
	{
		const GraphNeighbor *kept = scratch->kept + layer * graph->params.m;

		for (int i = 0; i < kept_count[layer]; i++)
			add_reverse_link(graph, scratch, kept[i].id, id, kept[i].distance, layer);
	}

	if (holds_entry_lock)
	{
		graph->entry_point = id;
		graph->max_level = level;
		omp_unset_lock(entry_lock);
	}
}

int
graph_build_range(Graph *graph, int64_t start, int64_t end, int threads)
{
	int			failed = 0;

	if (start >= end)
		return 0;
	if (threads <= 0)
		threads = omp_get_max_threads();

	/* the first element becomes the entry point; nothing to search yet */
	if (graph->entry_point == GRAPH_NO_ELEMENT)
	{
		BuildScratch scratch;

		if (scratch_init(&scratch, graph) != 0)
		{
			scratch_free(&scratch);
			return -1;
		}
		insert_element(graph, &scratch, (int32_t) start);
		scratch_free(&scratch);
		start++;
		graph->inserted++;
	}

#pragma omp parallel num_threads(threads)
	{
		BuildScratch scratch;
		int			ok = scratch_init(&scratch, graph) == 0;

		if (!ok)
		{
#pragma omp atomic write
			failed = 1;
		}

		/*
		 * Dynamic chunks of 16: insertion costs vary a lot with level, and
		 * small chunks keep the threads near each other in insertion order,
		 * which keeps the graph close to what a serial build would make.
		 */
#pragma omp for schedule(dynamic, 16)
		for (int64_t i = start; i < end; i++)
			if (ok)
				insert_element(graph, &scratch, (int32_t) i);
		scratch_free(&scratch);
	}
	if (failed)
		return -1;				/* some elements were skipped: the graph is unusable */
	graph->inserted += end - start;
	return 0;
}

/*
 * Mark everything reachable on layer 0 from `start`, breadth first.
 * Returns how many elements were newly marked.
 */
static int64_t
mark_reachable(const Graph *graph, int32_t start, char *reachable, int32_t *queue)
{
	int64_t		head = 0,
				tail = 0;

	if (reachable[start])
		return 0;
	reachable[start] = 1;
	queue[tail++] = start;
	while (head < tail)
	{
		const int32_t *slot = graph_slot(graph, queue[head++], 0);

		for (int i = 0; i < slot[0]; i++)
			if (!reachable[slot[1 + i]])
			{
				reachable[slot[1 + i]] = 1;
				queue[tail++] = slot[1 + i];
			}
	}
	return tail;
}

int64_t
graph_connect_unreachable(Graph *graph)
{
	int64_t		n = graph->inserted;
	char	   *reachable = calloc(n > 0 ? n : 1, 1);
	int32_t    *queue = malloc(sizeof(int32_t) * (n > 0 ? n : 1));
	int32_t    *indegree = calloc(n > 0 ? n : 1, sizeof(int32_t));
	BuildScratch scratch;
	int64_t		relinked = 0;
	int			dim = graph->params.dim;
	int			counted_indegrees = 0;

	if (reachable == NULL || queue == NULL || indegree == NULL ||
		scratch_init(&scratch, graph) != 0)
	{
		free(reachable);
		free(queue);
		free(indegree);
		scratch_free(&scratch);
		return -1;
	}
	if (graph->entry_point == GRAPH_NO_ELEMENT)
		goto done;

	/*
	 * Pruning can drop an element's last incoming link, leaving it stored but
	 * impossible to find.  For each such element, search for its nearest
	 * reachable elements and have the nearest one with a free slot link to
	 * it; when all of them are full, replace in the nearest list a neighbour
	 * that has another incoming link, so that no element is orphaned in turn.
	 * One pass nearly always suffices; a few more catch elements that only a
	 * later relink made findable.  A pass that only added links (no
	 * replacement, no element left unlinked) is the last: each link marks
	 * what it made reachable, and adding links never makes anything
	 * unreachable, so another walk of the whole graph would find nothing.
	 * The in-degrees, for choosing a replacement, are counted when the
	 * first unreachable element turns up.
	 */
	for (int pass = 0; pass < 4; pass++)
	{
		int64_t		missing = 0;
		int			only_added = 1;

		memset(reachable, 0, n);
		mark_reachable(graph, graph->entry_point, reachable, queue);
		for (int64_t id = 0; id < n; id++)
		{
			const float *vector;
			int32_t		entry = graph->entry_point;
			float		entry_distance;
			int			found = 0;
			int			linked = 0;
			MemoryWalk	walk;

			if (reachable[id])
				continue;
			if (!counted_indegrees)
			{
				for (int64_t from = 0; from < n; from++)
				{
					const int32_t *slot = graph_slot(graph, (int32_t) from, 0);

					for (int i = 0; i < slot[0]; i++)
						indegree[slot[1 + i]]++;
				}
				counted_indegrees = 1;
			}
			missing++;
			vector = graph->vectors + id * dim;

			/*
			 * First the search an insertion would make, through the upper
			 * layers.  When that finds nothing reachable (a whole group of
			 * elements cut off on layer 0, which a graph built from k-NN lists
			 * can leave, while the upper layers still lead into it), search
			 * layer 0 from the entry point instead: that walk sees only what is
			 * reachable, and one link into the group makes all of it reachable.
			 */
			for (int attempt = 0; attempt < 2 && !linked; attempt++)
			{
				memory_walk_init(&walk, graph, vector, 0, scratch.visited);
				entry = graph->entry_point;
				entry_distance = graph_distance(graph, vector, entry);
				for (int layer = graph->max_level; layer > 0 && attempt == 0; layer--)
					entry = graph_walk_greedy(&walk.access, entry, &entry_distance, layer);
				/* nearest first into sorted[] */
				found = graph_walk_layer(&walk.access, &scratch.walk, entry, entry_distance,
										 graph->params.ef_construction, 0, scratch.sorted);

				for (int i = 0; i < found && !linked; i++)
				{
					int32_t    *slot = graph_slot(graph, scratch.sorted[i].id, 0);

					if (scratch.sorted[i].id != id && reachable[scratch.sorted[i].id] &&
						slot[0] < graph->m0)
					{
						slot[1 + slot[0]++] = (int32_t) id;
						linked = 1;
					}
				}
				for (int i = 0; i < found && !linked; i++)
				{
					int32_t		base_id = scratch.sorted[i].id;
					int32_t    *slot = graph_slot(graph, base_id, 0);
					const float *base = graph->vectors + (int64_t) base_id * dim;
					int			victim = -1;
					float		victim_distance = -1;

					if (base_id == id || !reachable[base_id])
						continue;
					for (int j = 0; j < slot[0]; j++)
					{
						float		d;

						if (indegree[slot[1 + j]] < 2)
							continue;
						d = graph_distance(graph, base, slot[1 + j]);
						if (d > victim_distance)
						{
							victim_distance = d;
							victim = j;
						}
					}
					if (victim >= 0)
					{
						indegree[slot[1 + victim]]--;
						slot[1 + victim] = (int32_t) id;
						linked = 1;
						only_added = 0;
					}
				}
			}
			if (linked)
			{
				indegree[id]++;
				relinked++;
				mark_reachable(graph, (int32_t) id, reachable, queue);
			}
			else
				only_added = 0;
		}
		if (missing == 0 || only_added)
			break;
	}

done:
	free(reachable);
	free(queue);
	free(indegree);
	scratch_free(&scratch);
	return relinked;
}
