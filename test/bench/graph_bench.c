/*
 * graph_bench.c — the in-memory graph engine (src/graph) alone, on the
 * benchmark data sets, with no PostgreSQL: what a two-stage search (a graph
 * walk on a prefix of each vector, then an exact re-rank of its candidates on
 * the whole vector) costs when nothing but memory stands in its way.
 *
 * Why it exists.  The matryoshka index walks its coarse graph through the
 * buffer manager (pins, content locks, page checks, a TID -> handle table).
 * Whether that walk could be made several times faster by keeping the coarse
 * graph in memory instead is a question of how fast the walk itself can be:
 * this program measures it, on the same vectors, prefix and graph options as
 * matryoshka_bench.sh, so the two can be put side by side.  The numbers are
 * bounds: a scan in a database adds the heap fetches, the executor and the
 * reading of the fine parts from pages to them.  Called with the prefix
 * equal to the whole dimension it measures an in-memory hnsw the same way.
 *
 * What it does:
 *   1. reads the base vectors and the queries (fvecs), keeps the first
 *      PREFIX dimensions of each base vector in the graph (L2), links them
 *      with graph_build_range on THREADS threads and then, as the
 *      extension's build does, graph_connect_unreachable, and prints the
 *      time of each;
 *   2. for each ef: per query, graph_search (k = ef, one thread: the graph
 *      layer's own search, greedy descent and layer-0 beam), then the exact
 *      full-dimension squared L2 distance of each of the ef candidates (the
 *      SIMD kernels the extension uses, on the float vectors in memory), the
 *      10 nearest kept; prints recall@10 against the ground truth (ids in
 *      the .copy file the benchmarks cache), and the microseconds a query
 *      spent in the walk and in the re-rank, each the best of REPEAT passes
 *      over all queries (the total is the sum of those two bests).
 *
 * Usage:
 *   graph_bench BASE.fvecs QUERIES.fvecs TRUTH.copy PREFIX [options] EF...
 *     --rows N      only the first N base vectors (the truth must be theirs)
 *     --queries N   only the first N queries (default: all the truth has)
 *     --m M --ef-construction E   graph options (default 16 and 64)
 *     --threads T   build threads (default 0: OpenMP's default)
 *     --seed S      the level draws' seed (default 1); with several threads
 *                   the graph also depends on their timing, and on the
 *                   million-row 768-d set either moves recall@10 at one ef
 *                   by 0.005-0.01, so compare curves over a few seeds
 *     --repeat R    passes over the queries per ef (default 3)
 * matryoshka_bench.sh caches the files in /tmp/hierindex-bench; `make graph`
 * in test/bench runs this on the 768-d set with its matryoshka prefix.
 */
#define _POSIX_C_SOURCE 200809L	/* clock_gettime under -std=c11 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_args.h"
#include "distance.h"
#include "fvecs.h"
#include "graph/graph.h"

#define K 10
#define MAX_EFS 64

static double
seconds_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
die(const char *message)
{
	fprintf(stderr, "graph_bench: %s\n", message);
	exit(1);
}

/*
 * The true top K of each query from a ground-truth file of the benchmarks:
 * lines "query_id <TAB> {id,id,...} <TAB> {distance,...}", query ids 1..n in
 * order; the ids are 1-based row numbers.  Returns the number of queries read
 * (at most max_queries), ids 0-based in truth[q * K + j].
 */
static int
read_truth(const char *path, int max_queries, int32_t *truth)
{
	FILE	   *in = fopen(path, "r");
	char		line[8192];
	int			count = 0;

	if (in == NULL)
	{
		perror(path);
		exit(1);
	}
	while (count < max_queries && fgets(line, sizeof(line), in) != NULL)
	{
		char	   *p = strchr(line, '{');
		long		query_id = strtol(line, NULL, 10);

		if (p == NULL || query_id != count + 1)
			die("the truth file is not in query order with {ids}");
		p++;
		for (int j = 0; j < K; j++)
		{
			char	   *end;
			long		id = strtol(p, &end, 10);

			if (end == p || id < 1)
				die("a truth line has fewer than 10 ids");
			truth[(size_t) count * K + j] = (int32_t) (id - 1);
			p = end + 1;
		}
		count++;
	}
	fclose(in);
	return count;
}

int
main(int argc, char **argv)
{
	const char *paths[3];
	int			prefix = 0;
	long		rows = 0;
	long		queries_wanted = 0;
	int			m = 16;
	int			ef_construction = 64;
	int			threads = 0;
	int			repeat = 3;
	long		seed = 1;
	int			efs[MAX_EFS];
	int			ef_count = 0;
	int			positional = 0;
	FvecsSet	base;
	FvecsSet	queries;
	int32_t    *truth;
	int			query_count;
	GraphParams params;
	Graph	   *graph;
	const char *error;
	double		start;
	double		build_seconds;
	int64_t		connected;
	int			max_ef = K;
	GraphNeighbor *found;
	GraphVisited *visited;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--rows") == 0 && i + 1 < argc)
			rows = bench_parse_long("graph_bench", "--rows", argv[++i], K + 1, LONG_MAX);
		else if (strcmp(argv[i], "--queries") == 0 && i + 1 < argc)
			queries_wanted = bench_parse_long("graph_bench", "--queries", argv[++i], 1, LONG_MAX);
		else if (strcmp(argv[i], "--m") == 0 && i + 1 < argc)
			m = (int) bench_parse_long("graph_bench", "--m", argv[++i], 2, INT_MAX);
		else if (strcmp(argv[i], "--ef-construction") == 0 && i + 1 < argc)
			ef_construction = (int) bench_parse_long("graph_bench", "--ef-construction", argv[++i], 1, INT_MAX);
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = (int) bench_parse_long("graph_bench", "--threads", argv[++i], 0, INT_MAX);
		else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc)
			seed = bench_parse_long("graph_bench", "--seed", argv[++i], 0, LONG_MAX);
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
			repeat = (int) bench_parse_long("graph_bench", "--repeat", argv[++i], 1, INT_MAX);
		else if (argv[i][0] == '-')
		{
			fprintf(stderr, "graph_bench: %s '%s'\n",
					i + 1 == argc ? "no value (or unknown option) after" : "unknown option",
					argv[i]);
			return 2;
		}
		else if (positional < 3)
			paths[positional++] = argv[i];
		else if (positional == 3)
		{
			prefix = (int) bench_parse_long("graph_bench", "PREFIX", argv[i], 1, INT_MAX);
			positional++;
		}
		else if (ef_count < MAX_EFS)
		{
			efs[ef_count] = (int) bench_parse_long("graph_bench", "EF", argv[i], K, INT_MAX);
			if (efs[ef_count] > max_ef)
				max_ef = efs[ef_count];
			ef_count++;
		}
		else
			die("too many ef values");
	}
	if (positional < 4 || ef_count == 0)
	{
		fprintf(stderr, "usage: graph_bench BASE.fvecs QUERIES.fvecs TRUTH.copy PREFIX "
				"[--rows N] [--queries N] [--m M] [--ef-construction E] "
				"[--threads T] [--seed S] [--repeat R] EF...\n");
		return 2;
	}

	distance_init();
	base = fvecs_read(paths[0], (size_t) rows);
	queries = fvecs_read(paths[1], (size_t) queries_wanted);
	if (queries.dim != base.dim)
		die("the queries and the base vectors differ in dimension");
	if (prefix > base.dim)
		die("PREFIX is longer than the vectors");
	truth = malloc(sizeof(int32_t) * K * queries.count);
	if (truth == NULL)
		die("out of memory");
	query_count = read_truth(paths[2], (int) queries.count, truth);
	if (query_count == 0)
		die("the truth file has no queries");
	for (size_t i = 0; i < (size_t) query_count * K; i++)
		if ((size_t) truth[i] >= base.count)
			die("the truth names rows beyond the base vectors read (--rows?)");

	params = (GraphParams) {
		.dim = prefix, .m = m, .ef_construction = ef_construction,
		.metric = GRAPH_METRIC_L2, .seed = (uint64_t) seed
	};
	graph = graph_create(&params, (int64_t) base.count, &error);
	if (graph == NULL)
		die(error);
	for (size_t i = 0; i < base.count; i++)
		graph_set_vector(graph, (int64_t) i, base.values + i * base.dim);
	start = seconds_now();
	if (graph_build_range(graph, 0, graph->count, threads) != 0)
		die("out of memory in the build");
	build_seconds = seconds_now() - start;
	/* as the extension's build does after linking (hnsw_build.c) */
	start = seconds_now();
	connected = graph_connect_unreachable(graph);
	if (connected < 0)
		die("out of memory connecting unreachable elements");
	printf("graph_bench: %zu x %d, graph on the first %d dimensions, m %d, "
		   "ef_construction %d, seed %ld, %d queries, kernels %s\n",
		   base.count, base.dim, prefix, m, ef_construction, seed, query_count,
		   distance_active.name);
	printf("build: %.2f s, then %lld links to unreachable elements in %.2f s\n",
		   build_seconds, (long long) connected, seconds_now() - start);
	printf("%6s %10s %14s %14s %14s\n", "ef", "recall@10", "walk us/query",
		   "rerank us/q", "total us/q");

	found = malloc(sizeof(GraphNeighbor) * max_ef);
	visited = graph_visited_create(graph->count);
	if (found == NULL || visited == NULL)
		die("out of memory");
	for (int e = 0; e < ef_count; e++)
	{
		int			ef = efs[e];
		double		best_walk = 1e30;
		double		best_rerank = 1e30;
		long		hits = 0;

		for (int pass = 0; pass < repeat; pass++)
		{
			double		walk = 0;
			double		rerank = 0;

			hits = 0;
			for (int q = 0; q < query_count; q++)
			{
				const float *query = queries.values + (size_t) q * queries.dim;
				double		t0 = seconds_now();
				int			n = graph_search(graph, query, ef, ef, visited, found);
				double		t1 = seconds_now();

				if (n < 0)
					die("out of memory in a search");

				for (int j = 0; j < n; j++)
					found[j].distance =
						distance_active.l2_squared(query,
												   base.values + (size_t) found[j].id * base.dim,
												   base.dim);
				qsort(found, n, sizeof(GraphNeighbor), graph_neighbor_compare);
				rerank += seconds_now() - t1;
				walk += t1 - t0;
				for (int j = 0; j < n && j < K; j++)
					for (int t = 0; t < K; t++)
						if (found[j].id == truth[(size_t) q * K + t])
						{
							hits++;
							break;
						}
			}
			if (walk < best_walk)
				best_walk = walk;
			if (rerank < best_rerank)
				best_rerank = rerank;
		}
		printf("%6d %10.4f %14.2f %14.2f %14.2f\n", ef,
			   (double) hits / ((double) query_count * K),
			   best_walk / query_count * 1e6, best_rerank / query_count * 1e6,
			   (best_walk + best_rerank) / query_count * 1e6);
	}
	graph_visited_free(visited);
	graph_free(graph);
	free(found);
	free(truth);
	free(base.values);
	free(queries.values);
	return 0;
}
