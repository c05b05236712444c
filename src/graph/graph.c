/*
 * graph.c — allocation, level draws and vector storage of the in-memory graph.
 *
 * Levels are drawn up front from a hash of (seed, element id) rather than from
 * a shared random stream: the draw is then independent of thread scheduling
 * and insertion order, and the size of the upper-layer pool is known exactly
 * before any insertion starts, so nothing is allocated while threads run.
 */
/* madvise and MADV_HUGEPAGE are not ISO C: ask for them under -std=c11 too */
#define _DEFAULT_SOURCE 1

#include "graph_internal.h"
#include "distance.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* splitmix64: a well-mixed 64-bit hash, enough for level draws. */
static uint64_t
mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

int
graph_draw_level(uint64_t seed, int64_t id, int m)
{
	uint64_t	h = mix64(seed ^ mix64((uint64_t) id));
	/* uniform in (0, 1]: 53 random bits, never 0 so the log is finite */
	double		u = ((double) (h >> 11) + 1.0) / 9007199254740992.0;
	double		level = -log(u) / log((double) m);

	return level >= GRAPH_MAX_LEVEL ? GRAPH_MAX_LEVEL : (int) level;
}

/*
 * Ask for transparent huge pages under a large array (where the kernel gives
 * them on request: "madvise" mode).  The vectors are read at random while
 * linking, one 4 kB page per vector of 768 dimensions, and with small pages
 * nearly every read missed the TLB; a build also faults its arrays in and
 * unmaps them page by page, 512 times as many pages.  Only the 2 MB-aligned
 * middle of the array is advised; failure changes nothing but speed.
 */
static void
advise_huge_pages(void *array, size_t bytes)
{
#ifdef MADV_HUGEPAGE
	const uintptr_t huge = (uintptr_t) 2 << 20;
	uintptr_t	start = ((uintptr_t) array + huge - 1) & ~(huge - 1);
	uintptr_t	end = ((uintptr_t) array + bytes) & ~(huge - 1);

	if (array != NULL && end > start)
		(void) madvise((void *) start, end - start, MADV_HUGEPAGE);
#endif
}

static const char *
graph_check_params(const GraphParams *params)
{
	if (params->dim < 1)
		return "dimension must be at least 1";
	if (params->m < 2 || params->m > GRAPH_MAX_M)
		return "m must be between 2 and 100";
	if (params->ef_construction < 1)
		return "ef_construction must be at least 1";
	if (params->metric < GRAPH_METRIC_L2 || params->metric > GRAPH_METRIC_L1)
		return "unknown metric";
	return NULL;
}

size_t
graph_memory_estimate(const GraphParams *params, int64_t capacity)
{
	size_t		m0 = 2 * (size_t) params->m;
	size_t		per_element;

	/*
	 * Expected upper layers per element: sum over L>=1 of P(level >= L) =
	 * sum m^-L = 1/(m-1).
	 */
	per_element = sizeof(float) * params->dim + 1 + sizeof(int32_t) * (1 + m0) +
		sizeof(int64_t) + sizeof(omp_lock_t) +
		(size_t) ceil(sizeof(int32_t) * (1 + params->m) / (double) (params->m - 1));
	return per_element * (size_t) capacity;
}

/* Release a graph's memory (NULL members are fine); locks are not touched. */
static void
graph_free_memory(Graph *graph)
{
	if (graph == NULL)
		return;
	free(graph->levels);
	free(graph->upper_offset);
	free(graph->vectors);
	free(graph->links0);
	free(graph->upper_links);
	free(graph->locks);
	free(graph->entry_lock);
	free(graph);
}

Graph *
graph_create(const GraphParams *params, int64_t capacity, const char **error)
{
	Graph	   *graph;
	int64_t		upper_slots = 0;
	omp_lock_t *locks;

	*error = graph_check_params(params);
	if (*error)
		return NULL;
	if (capacity < 0 || capacity > INT32_MAX)
	{
		*error = "too many elements for one graph";
		return NULL;
	}

	graph = calloc(1, sizeof(Graph));
	if (graph == NULL)
		goto oom;
	graph->params = *params;
	graph->m0 = 2 * params->m;
	graph->capacity = capacity;
	graph->entry_point = GRAPH_NO_ELEMENT;
	graph->max_level = -1;

	graph->levels = malloc(capacity > 0 ? capacity : 1);
	graph->upper_offset = malloc(sizeof(int64_t) * (capacity > 0 ? capacity : 1));
	if (graph->levels == NULL || graph->upper_offset == NULL)
		goto oom;
	for (int64_t i = 0; i < capacity; i++)
	{
		int			level = graph_draw_level(params->seed, i, params->m);

		graph->levels[i] = (uint8_t) level;
		if (level > 0)
		{
			graph->upper_offset[i] = upper_slots;
			upper_slots += (int64_t) level * (1 + params->m);
		}
		else
			graph->upper_offset[i] = -1;
	}

	graph->vectors = malloc(sizeof(float) * (size_t) params->dim * (capacity > 0 ? capacity : 1));
	graph->links0 = calloc((size_t) (capacity > 0 ? capacity : 1) * (1 + graph->m0), sizeof(int32_t));
	graph->upper_links = calloc(upper_slots > 0 ? upper_slots : 1, sizeof(int32_t));
	locks = malloc(sizeof(omp_lock_t) * (capacity > 0 ? capacity : 1));
	graph->entry_lock = malloc(sizeof(omp_lock_t));
	graph->locks = locks;
	if (graph->vectors == NULL || graph->links0 == NULL ||
		graph->upper_links == NULL || locks == NULL || graph->entry_lock == NULL)
		goto oom;
	advise_huge_pages(graph->vectors, sizeof(float) * (size_t) params->dim * capacity);
	advise_huge_pages(graph->links0, sizeof(int32_t) * (size_t) capacity * (1 + graph->m0));
	advise_huge_pages(graph->upper_links, sizeof(int32_t) * (size_t) upper_slots);
	for (int64_t i = 0; i < capacity; i++)
		omp_init_lock(&locks[i]);
	omp_init_lock((omp_lock_t *) graph->entry_lock);
	return graph;

oom:
	/* no lock was initialised yet: release the memory only */
	graph_free_memory(graph);
	*error = "out of memory allocating the graph";
	return NULL;
}

int
graph_grow(Graph *graph, int64_t capacity)
{
	int64_t		old = graph->capacity;
	int64_t		upper_slots = 0;
	int64_t		old_upper_slots = 0;
	uint8_t    *levels;
	int64_t    *upper_offset;
	float	   *vectors;
	int32_t    *links0;
	int32_t    *upper_links;
	omp_lock_t *locks;

	if (capacity <= old)
		return 0;
	if (capacity > INT32_MAX)
		return -1;

	/* size of the upper-layer pool before and after */
	for (int64_t i = 0; i < old; i++)
		old_upper_slots += (int64_t) graph->levels[i] * (1 + graph->params.m);
	upper_slots = old_upper_slots;
	for (int64_t i = old; i < capacity; i++)
		upper_slots += (int64_t) graph_draw_level(graph->params.seed, i, graph->params.m) *
			(1 + graph->params.m);

	/*
	 * realloc one array at a time; after each success the graph points at the
	 * new block, so a later failure leaves a consistent (if partly larger)
	 * graph whose capacity is still the old one.
	 */
	levels = realloc(graph->levels, capacity);
	if (levels == NULL)
		return -1;
	graph->levels = levels;
	upper_offset = realloc(graph->upper_offset, sizeof(int64_t) * capacity);
	if (upper_offset == NULL)
		return -1;
	graph->upper_offset = upper_offset;
	vectors = realloc(graph->vectors, sizeof(float) * (size_t) graph->params.dim * capacity);
	if (vectors == NULL)
		return -1;
	graph->vectors = vectors;
	advise_huge_pages(vectors, sizeof(float) * (size_t) graph->params.dim * capacity);
	links0 = realloc(graph->links0, sizeof(int32_t) * (size_t) capacity * (1 + graph->m0));
	if (links0 == NULL)
		return -1;
	graph->links0 = links0;
	advise_huge_pages(links0, sizeof(int32_t) * (size_t) capacity * (1 + graph->m0));
	upper_links = realloc(graph->upper_links, sizeof(int32_t) * (upper_slots > 0 ? upper_slots : 1));
	if (upper_links == NULL)
		return -1;
	graph->upper_links = upper_links;
	advise_huge_pages(upper_links, sizeof(int32_t) * (size_t) upper_slots);

	/*
	 * omp locks must not be moved once initialised: destroy them first (no
	 * thread holds one: nothing runs on the graph now, see graph.h) and
	 * initialise them again wherever they end up.
	 */
	for (int64_t i = 0; i < old; i++)
		omp_destroy_lock(&((omp_lock_t *) graph->locks)[i]);
	locks = realloc(graph->locks, sizeof(omp_lock_t) * capacity);
	if (locks == NULL)
	{
		for (int64_t i = 0; i < old; i++)
			omp_init_lock(&((omp_lock_t *) graph->locks)[i]);
		return -1;
	}
	graph->locks = locks;
	for (int64_t i = 0; i < capacity; i++)
		omp_init_lock(&locks[i]);

	memset(links0 + old * (1 + graph->m0), 0,
		   sizeof(int32_t) * (size_t) (capacity - old) * (1 + graph->m0));
	memset(upper_links + old_upper_slots, 0,
		   sizeof(int32_t) * (size_t) (upper_slots - old_upper_slots));
	for (int64_t i = old, next = old_upper_slots; i < capacity; i++)
	{
		int			level = graph_draw_level(graph->params.seed, i, graph->params.m);

		levels[i] = (uint8_t) level;
		if (level > 0)
		{
			upper_offset[i] = next;
			next += (int64_t) level * (1 + graph->params.m);
		}
		else
			upper_offset[i] = -1;
	}
	graph->capacity = capacity;
	return 0;
}

void
graph_free(Graph *graph)
{
	if (graph == NULL)
		return;
	for (int64_t i = 0; i < graph->capacity; i++)
		omp_destroy_lock(&((omp_lock_t *) graph->locks)[i]);
	omp_destroy_lock((omp_lock_t *) graph->entry_lock);
	graph_free_memory(graph);
}

int
graph_normalize(const float *in, float *out, int dim)
{
	double		norm = 0.0;

	for (int i = 0; i < dim; i++)
		norm += (double) in[i] * in[i];
	if (!(norm > 0.0))
		return -1;
	norm = sqrt(norm);
	for (int i = 0; i < dim; i++)
		out[i] = (float) (in[i] / norm);
	return 0;
}

int
graph_set_vector(Graph *graph, int64_t id, const float *vector)
{
	int			dim = graph->params.dim;
	float	   *row = graph->vectors + id * dim;

	if (graph->params.metric == GRAPH_METRIC_COSINE)
	{
		if (graph_normalize(vector, row, dim) != 0)
			return -1;
	}
	else
		memcpy(row, vector, sizeof(float) * dim);
	if (id >= graph->count)
		graph->count = id + 1;
	return 0;
}

float
graph_distance(const Graph *graph, const float *query, int32_t id)
{
	return graph_metric_distance(graph->params.metric, query,
								 graph->vectors + (int64_t) id * graph->params.dim,
								 graph->params.dim);
}

int
graph_neighbors(const Graph *graph, int32_t id, int layer, const int32_t **ids)
{
	const int32_t *slot;

	if (layer > graph->levels[id])
	{
		*ids = NULL;
		return 0;
	}
	slot = graph_slot(graph, id, layer);
	*ids = slot + 1;
	return slot[0];
}

void
graph_adopt_links(Graph *graph)
{
	graph->entry_point = GRAPH_NO_ELEMENT;
	graph->max_level = -1;
	for (int64_t i = 0; i < graph->count; i++)
	{
		if (graph->levels[i] > graph->max_level)
		{
			graph->max_level = graph->levels[i];
			graph->entry_point = (int32_t) i;
		}
	}
	graph->inserted = graph->count;
}

void
graph_lock_element(const Graph *graph, int32_t id)
{
	omp_set_lock(&((omp_lock_t *) graph->locks)[id]);
}

void
graph_unlock_element(const Graph *graph, int32_t id)
{
	omp_unset_lock(&((omp_lock_t *) graph->locks)[id]);
}

GraphVisited *
graph_visited_create(int64_t capacity)
{
	GraphVisited *visited = malloc(sizeof(GraphVisited));

	if (visited == NULL)
		return NULL;
	visited->marks = calloc(capacity > 0 ? capacity : 1, sizeof(uint32_t));
	if (visited->marks == NULL)
	{
		free(visited);
		return NULL;
	}
	visited->generation = 0;
	visited->capacity = capacity;
	return visited;
}

void
graph_visited_free(GraphVisited *visited)
{
	if (visited)
	{
		free(visited->marks);
		free(visited);
	}
}

void
visited_reset(GraphVisited *visited)
{
	if (++visited->generation == 0)
	{
		/* wrapped after 4 billion searches: clear once and start over */
		memset(visited->marks, 0, sizeof(uint32_t) * visited->capacity);
		visited->generation = 1;
	}
}
