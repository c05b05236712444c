/*
 * graph.h — the in-memory HNSW graph engine (plain C + OpenMP, no PostgreSQL).
 *
 * This is the layer both bulk builders share: the CPU builder here fills it
 * with HNSW insertions run in parallel, the GPU builder (src/gpu) fills the
 * same structure from an exact k-NN graph, and the page writer (src/hnsw)
 * lays out whatever it holds without knowing which builder ran.
 *
 * Layout (flat, so searches walk contiguous memory):
 *   vectors   n x dim floats, one array; under cosine each row is stored
 *             normalised, so cosine distance becomes 1 - dot product;
 *   levels    one byte per element, drawn up front (see graph_draw_level);
 *   layer 0   n slots of (1 + m0) int32: slot[0] is the neighbour count,
 *             slot[1..m0] the neighbour ids;
 *   layers>0  for elements with level L > 0, L slots of (1 + m) int32 in one
 *             pool, found through upper_offset[].
 *
 * Threads: graph_build_range() inserts a range of elements in parallel with
 * per-element locks.  It makes no PostgreSQL calls and allocates nothing
 * outside the graph, so a PostgreSQL backend can call it in chunks and poll for
 * interrupts between chunks.  All allocation happens in graph_create().
 */
#ifndef HIERINDEX_GRAPH_H
#define HIERINDEX_GRAPH_H

#include <stddef.h>
#include <stdint.h>

#define GRAPH_MAX_M 100		/* as the index option allows */
#define GRAPH_MAX_LEVEL 16		/* 16^16 elements would be needed to exceed it at m=16 */
#define GRAPH_NO_ELEMENT (-1)

typedef enum GraphMetric
{
	GRAPH_METRIC_L2,			/* squared Euclidean distance */
	GRAPH_METRIC_INNER_PRODUCT, /* negative inner product */
	GRAPH_METRIC_COSINE,		/* 1 - cosine similarity (rows normalised) */
	GRAPH_METRIC_L1				/* taxicab distance */
} GraphMetric;

typedef struct GraphParams
{
	int			dim;			/* dimensions of each stored vector */
	int			m;				/* links per element on layers > 0 */
	int			ef_construction;	/* candidate list size while inserting */
	GraphMetric metric;
	uint64_t	seed;			/* level draws are a pure function of (seed, id) */
} GraphParams;

typedef struct Graph
{
	GraphParams params;
	int			m0;				/* links per element on layer 0 (2 m) */
	int64_t		capacity;		/* elements allocated */
	int64_t		count;			/* elements whose vectors are set */
	float	   *vectors;		/* capacity x dim */
	uint8_t    *levels;			/* capacity */
	int32_t    *links0;			/* capacity x (1 + m0) */
	int64_t    *upper_offset;	/* capacity; -1 when level is 0 */
	int32_t    *upper_links;	/* pool of (1 + m) slots per upper layer */
	void	   *locks;			/* capacity omp locks, one per element */
	void	   *entry_lock;		/* guards entry_point and max_level */
	int32_t		entry_point;	/* GRAPH_NO_ELEMENT while empty */
	int			max_level;
	int64_t		inserted;		/* elements linked into the graph so far */
} Graph;

/* One search result. */
typedef struct GraphNeighbor
{
	float		distance;
	int32_t		id;
} GraphNeighbor;

/*
 * Bytes graph_create() will allocate for `capacity` elements; lets the caller
 * compare with a memory budget before committing to an in-memory build.  The
 * upper-layer pool is estimated from the expected level distribution.
 */
extern size_t graph_memory_estimate(const GraphParams *params, int64_t capacity);

/*
 * Allocate a graph for up to `capacity` elements and draw every element's
 * level.  Returns NULL (and sets *error to a static message) on a bad
 * parameter or when memory cannot be allocated.
 */
extern Graph *graph_create(const GraphParams *params, int64_t capacity,
						   const char **error);
extern void graph_free(Graph *graph);

/* The level of element `id` for this seed: floor(-ln(U) / ln(m)), capped. */
extern int	graph_draw_level(uint64_t seed, int64_t id, int m);

/*
 * out = in / |in| (norm summed in double precision), for cosine: rows, queries
 * and the index's prepared vectors all go through this one function, so equal
 * inputs give equal bytes.  Returns 0, or -1 for a vector with no direction
 * (zero norm; out is then untouched).  in and out may be the same array.
 */
extern int	graph_normalize(const float *in, float *out, int dim);

/*
 * Copy one vector into slot `id` (normalising it under cosine).  Returns 0, or
 * -1 when it cannot be indexed (a zero vector under cosine).
 */
extern int	graph_set_vector(Graph *graph, int64_t id, const float *vector);

/*
 * Link elements [start, end) into the graph using `threads` OpenMP threads
 * (0 = the OpenMP default).  Vectors of those elements must have been set.
 * With one thread and a fixed seed the result is deterministic.  Returns 0,
 * or -1 when a thread could not allocate its scratch memory (the graph is then
 * incomplete and must be discarded).
 */
extern int	graph_build_range(Graph *graph, int64_t start, int64_t end, int threads);

/*
 * After another builder (the GPU's) filled the links of all graph->count
 * elements: take the entry point as the CPU builder would have it, the first
 * element of the highest level, and count every element as linked.
 */
extern void graph_adopt_links(Graph *graph);

/*
 * After the last graph_build_range(): make every element reachable on layer 0
 * from the entry point (pruning can orphan a few).  Serial; returns how many
 * links were added, or -1 when out of memory.
 */
extern int64_t graph_connect_unreachable(Graph *graph);

/*
 * The k nearest elements to `query` (ef >= k candidates examined on layer 0),
 * written to out[] in ascending distance; returns how many were found.  The
 * query is normalised internally under cosine.  Thread-safe against other
 * searches, not against concurrent builds.  `visited` is caller-provided
 * scratch of graph->count entries (see graph_visited_create).
 */
typedef struct GraphVisited GraphVisited;
extern GraphVisited *graph_visited_create(int64_t capacity);
extern void graph_visited_free(GraphVisited *visited);
extern int	graph_search(const Graph *graph, const float *query, int k, int ef,
						 GraphVisited *visited, GraphNeighbor *out);

/* Neighbour list of `id` on `layer`: returns the count, *ids points into the graph. */
extern int	graph_neighbors(const Graph *graph, int32_t id, int layer, const int32_t **ids);

/* Distance between a query vector (already prepared) and stored element id. */
extern float graph_distance(const Graph *graph, const float *query, int32_t id);

/*
 * Growing: the PostgreSQL build does not know the row count before its heap
 * scan, so it starts from an estimate and grows.  Keeps everything set so
 * far; levels of the new slots are drawn as graph_create() would have.
 * Returns 0, or -1 when memory cannot be allocated (the graph is unchanged).
 * Not while a build or search runs.
 */
extern int	graph_grow(Graph *graph, int64_t capacity);

/* ------------------------------------------------------------------------
 * Walking a graph that is not in this flat form.
 *
 * The index scan and the on-disk insert (src/hnsw) walk a graph stored in
 * database pages with the same search code as the in-memory engine.  The
 * caller names elements by dense int32 handles it assigns as it meets them
 * (from 0 upwards), answers distance and neighbour questions through
 * callbacks, and keeps the visited marks (it knows how many handles exist).
 *
 * Callbacks may longjmp (a PostgreSQL ERROR): the walk functions allocate
 * nothing, all their memory is the caller's GraphWalkScratch.
 * ------------------------------------------------------------------------ */
typedef struct GraphAccess
{
	void	   *context;

	/* distance from the walk's query to element `id` */
	float		(*distance) (void *context, int32_t id);

	/*
	 * Optional (NULL: distance() is called for each): distances from the
	 * query to the n elements ids[] (n <= 2 * GRAPH_MAX_M), written to out[].
	 * The walk asks for all new neighbours of an expanded element at once so
	 * that an implementation can start fetching every vector (prefetch)
	 * before it computes the first distance: the walk is bound by memory
	 * latency, not arithmetic, and overlapping the misses is the speed-up.
	 */
	void		(*distances) (void *context, const int32_t *ids, int n, float *out);

	/*
	 * Neighbours of `id` on `layer`, written to out[] (room for 2 *
	 * GRAPH_MAX_M); returns how many.  May assign new handles.
	 */
	int			(*neighbors) (void *context, int32_t id, int layer, int32_t *out);

	/* forget every visited mark (start of a layer search) */
	void		(*visited_reset) (void *context);

	/* mark `id` visited; returns 1 if it was already marked */
	int			(*visited_test_and_set) (void *context, int32_t id);

	/*
	 * Optional (NULL: every element is): whether `id`, whose distance has
	 * been asked for, may be a result.  graph_search_next walks through
	 * the others (deleted elements of an index) but never returns them nor
	 * lets them take a result place.  graph_walk_layer does not ask.
	 */
	int			(*live) (void *context, int32_t id);
} GraphAccess;

/* Working memory for one walk: heaps sized for ef and the widest layer. */
typedef struct GraphWalkScratch
{
	GraphNeighbor *candidates;	/* candidate_capacity entries */
	int			candidate_capacity;
	GraphNeighbor *results;		/* ef + 2 entries */
	int			ef;
} GraphWalkScratch;

/* Entries each array of a GraphWalkScratch needs for this ef and m0. */
extern int	graph_walk_candidate_capacity(int ef, int m0);

/*
 * Greedy descent on `layer` from `entry` (whose distance is *entry_distance):
 * move to the closest neighbour until none is closer.  Returns the element
 * reached and updates *entry_distance.
 */
extern int32_t graph_walk_greedy(const GraphAccess *access, int32_t entry,
								 float *entry_distance, int layer);

/*
 * Beam search on `layer` from `entry` with `ef` candidates (ef <=
 * scratch->ef).  Writes up to ef elements to out[] in ascending distance
 * (ties by handle) and returns how many.
 */
extern int	graph_walk_layer(const GraphAccess *access, GraphWalkScratch *scratch,
							 int32_t entry, float entry_distance, int ef,
							 int layer, GraphNeighbor *out);

/*
 * A resumable beam search on one layer, for index scans that must return
 * more rows than one search of ef finds (iterative scans: a filter above the
 * scan discards rows).  It returns batches of up to ef elements; each batch
 * continues where the last one stopped instead of starting over:
 *
 *   unexpanded  every element met whose neighbours were not read yet
 *               (min-heap);
 *   pool        every live element met and not yet returned (min-heap).
 *
 * A batch moves the ef nearest of the pool into its result set (a max-heap
 * of ef), then expands the nearest unexpanded element as long as the set is
 * not full or that element is nearer than its worst member; each new live
 * element enters the set if it beats the worst (which goes back to the
 * pool), else the pool.  Then the set is returned in ascending distance.
 * The first batch after graph_search_start is thus the classic beam search
 * of ef (graph_walk_layer), except that elements that are not live take no
 * result place.  The visited marks (the caller's, through GraphAccess) are
 * reset by graph_search_start only.
 *
 * The heaps grow as elements are met, through the caller's grow callback
 * (realloc-like; it may longjmp, as the other callbacks may): the engine
 * allocates nothing itself.  Fields other than grow and grow_context are
 * the search's; a caller may read the sizes.
 */
typedef struct GraphSearch
{
	/* returns array resized to `bytes` (array NULL: a new one) */
	void	   *(*grow) (void *context, void *array, size_t bytes);
	void	   *grow_context;

	GraphNeighbor *unexpanded;
	int			unexpanded_size;
	int			unexpanded_capacity;
	GraphNeighbor *pool;
	int			pool_size;
	int			pool_capacity;
	GraphNeighbor *batch;		/* the result set of the batch: ef + 1 */
	int			batch_capacity;
	int			layer;
	int64_t		expanded;		/* elements whose neighbours were read */
	int32_t		fallback;		/* where to go on when the walk runs out */
	float		fallback_distance;
	int			dropped;		/* a final batch left out an element met */
} GraphSearch;

/*
 * Start a search on `layer` from `entry` (its distance entry_distance):
 * reset the visited marks, forget any previous state (keeping the arrays).
 */
extern void graph_search_start(GraphSearch *search, const GraphAccess *access,
							   int32_t entry, float entry_distance, int layer);

/*
 * Where the search goes on, once, when everything reachable from its entry
 * has been expanded: the graph's own entry point, for a search that
 * started where a descent through the upper layers ended.  Layer 0 is a
 * directed graph, and the build makes every element reachable from the
 * entry point (graph_connect_unreachable), not from every element; without
 * this a scan from an element of a part the links lead out of but not back
 * into ends early, short of rows (a small m makes such parts likely).  A
 * walk that never runs out never reads it, so results and costs are
 * otherwise the same.  GRAPH_NO_ELEMENT (what graph_search_start sets):
 * none.
 */
extern void graph_search_set_fallback(GraphSearch *search, int32_t fallback,
									  float fallback_distance);

/*
 * The next batch: up to ef elements written to out[] in ascending distance
 * (ties by id), how many returned.  expand 0 returns the nearest ef of the
 * elements already met, reading nothing more (a scan that hit its limits
 * empties the pool this way).  0: nothing is left (with expand: the part
 * of the graph reachable from the entry is exhausted).  hold_back: while
 * something is left to expand, the farthest hold_back elements of the
 * batch (all but one at most) are not returned but go back to the pool, so
 * that a later batch can put nearer elements it finds before them (for
 * scans that must return rows in order).  final: no batch will follow
 * (a scan that stops after one), so an element that can neither enter this
 * batch nor be expanded before it ends (farther than a full batch's worst)
 * is dropped instead of kept for later, and nothing goes to the pool; the
 * batch is the same.
 */
extern int	graph_search_next(GraphSearch *search, const GraphAccess *access,
							  int ef, int expand, int hold_back, int final,
							  GraphNeighbor *out);

/*
 * Algorithm 4 of the paper (no candidate extension, no keeping of pruned
 * ones) over candidates sorted ascending by distance to the base element:
 * keep a candidate only if it is closer to the base than to every neighbour
 * kept so far.  pair_distance gives the distance between two candidates.
 * Writes at most `max` to selected[] and returns how many.  The in-memory
 * builder uses the same function.
 */
extern int	graph_select_neighbors(const GraphNeighbor *sorted, int count, int max,
								   float (*pair_distance) (void *context, int32_t a, int32_t b),
								   void *context, GraphNeighbor *selected);

/*
 * The same, with selected[0 .. kept) already chosen (they are kept, and
 * candidates are measured against them too): VACUUM's repair keeps a list's
 * live members and chooses only what replaces its deleted ones.  Returns
 * the new count.
 */
extern int	graph_select_more_neighbors(const GraphNeighbor *sorted, int count, int max,
										float (*pair_distance) (void *context, int32_t a,
																int32_t b),
										void *context, GraphNeighbor *selected, int kept);

/* qsort comparator for GraphNeighbor: ascending distance, ties by id. */
extern int	graph_neighbor_compare(const void *a, const void *b);

/*
 * Distance under `metric` between two prepared vectors (normalised rows
 * under cosine), the same function the engine uses everywhere.
 */
extern float graph_metric_distance(GraphMetric metric, const float *a,
								   const float *b, int dim);

#endif							/* HIERINDEX_GRAPH_H */
