/*
 * matryoshka_measure.c — the build measures how many coarse candidates its
 * own data needs: the index's default matryoshka.ef_search.
 *
 * Why: how well a coarse prefix finds the full-dimension nearest neighbours
 * depends on the data, not on the granularities alone.  On the 768-d bench
 * set a 64-d prefix finds nearly all of the true top 10 among 20
 * candidates; on Fashion-MNIST rotated onto its principal components a 48-d
 * prefix needs about 100 for the same (README, Default ef_search).  One
 * fixed default is either slow on the first or inaccurate on the second.
 * The build holds the whole graph and every payload in memory, so it
 * measures, and the scan uses the result when matryoshka.ef_search is 0
 * (its default):
 *
 *   - MEASURE_SAMPLES elements spread over the element order (the heap's
 *     order) are the queries, each as its stored coarse vector and decoded
 *     fine part; each is left out of its own results, since a query from
 *     outside the table does not find itself;
 *   - each sample's reference top 10: the best on the full vector among
 *     the candidates of a coarse search as wide as ef_search goes
 *     (HNSW_MAX_EF_SEARCH), which is the true top 10 as far as any scan
 *     setting could find it;
 *   - the recall@10 at a beam ef: a coarse search of beam ef, its
 *     candidates ranked on the full vector, as a scan's first round does;
 *   - the smallest ef of a fixed ladder whose recall reaches
 *     MEASURE_TARGET, found by bisection (recall grows with ef), and the
 *     default is the ladder's next step (15 to 25% more).
 *
 * Target and step are margin over the 0.98 that the index is meant to
 * reach at its default settings, for two reasons.  The sample's queries
 * are the table's own rows, and queries from elsewhere are a little
 * farther from everything: on 20000 Fashion-MNIST rows with a 32-d prefix,
 * the own rows' recall 0.995 at ef 96 was 0.987 for the test images.  And
 * the sample is noisy: the neighbours of one query succeed or fail
 * together, so 256 queries measure recall to about +-0.005, and where
 * recall grows slowly with ef, two builds of the same data measured 96 and
 * 128 (test/t/061 prints the value of each run).  The distances are
 * the scan's own (matryoshka_coarse_sum, matryoshka_fine_sum,
 * matryoshka_sum_distance on the walk's coarse distance), so the measure
 * ranks exactly as a scan would.  The searches are the engine's
 * (graph_search), in plain C on the build's threads with every signal
 * blocked, as while linking; at ef 1000 they take a few milliseconds each,
 * so the whole measure costs well under a second even for a million
 * elements on a few cores.
 */
#include "postgres.h"

#include <signal.h>
#include <stdlib.h>

#include "lib/stringinfo.h"
#include "portability/instr_time.h"

#include "matryoshka/matryoshka.h"

#define MEASURE_SAMPLES	256
#define MEASURE_K		MATRYOSHKA_MEASURE_ROWS
#define MEASURE_TARGET	0.995

/* the beams tried; the first answers LIMIT 10 in one round (README, Scan 4) */
static const int ef_ladder[] = {
	12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160,
	192, 224, 256, 320, 384, 448, 512, 640, 768, 896, HNSW_MAX_EF_SEARCH
};

#define EF_LADDER_LENGTH ((int) lengthof(ef_ladder))

typedef struct MeasureSample
{
	int32		id;				/* the element that is the query */
	float	   *query;			/* D floats, of which [g1:D) are set */
	int32		truth[MEASURE_K];	/* its reference top 10 */
	int			truth_count;
} MeasureSample;

typedef struct Measure
{
	const MatryoshkaLayout *layout;
	const Graph *graph;
	const char *payloads;
	Size		stride;
	int			threads;
	int			width;			/* the reference search's beam */
	MeasureSample *samples;
	int			sample_count;
	int64		truth_total;
} Measure;

typedef struct Ranked
{
	double		distance;
	int32		id;
} Ranked;

static int
compare_ranked(const void *a, const void *b)
{
	const Ranked *ra = (const Ranked *) a;
	const Ranked *rb = (const Ranked *) b;

	if (ra->distance != rb->distance)
		return ra->distance < rb->distance ? -1 : 1;
	return (ra->id > rb->id) - (ra->id < rb->id);
}

static const MatryoshkaPayloadHeader *
payload_of(const Measure *measure, int32 id)
{
	return (const MatryoshkaPayloadHeader *) (measure->payloads + (Size) id * measure->stride);
}

/*
 * The sample's best `k` on the full vector among the first `limit`
 * candidates of found[0, count) other than itself: their ids to top[],
 * returns how many.  ranked[] has room for count entries.
 */
static int
rank_on_full(const Measure *measure, const MeasureSample *sample,
			 const GraphNeighbor *found, int count, int limit, int k,
			 Ranked *ranked, int32 *top)
{
	const MatryoshkaLayout *layout = measure->layout;
	int			last = layout->count - 1;
	const MatryoshkaPayloadHeader *own = payload_of(measure, sample->id);
	int			n = 0;

	for (int i = 0; i < count && n < limit; i++)
	{
		const MatryoshkaPayloadHeader *header;
		double		sum;

		if (found[i].id == sample->id)
			continue;
		header = payload_of(measure, found[i].id);
		sum = matryoshka_coarse_sum(layout->metric, found[i].distance,
									own->norms[0], header->norms[0]);
		sum += matryoshka_fine_sum(layout, (const char *) header, sample->query,
								   MatryoshkaCoarse(layout), MatryoshkaFull(layout));
		ranked[n].distance = matryoshka_sum_distance(layout->metric, sum, own->norms[last],
													 header->norms[last]);
		ranked[n].id = found[i].id;
		n++;
	}
	qsort(ranked, n, sizeof(Ranked), compare_ranked);
	k = Min(k, n);
	for (int i = 0; i < k; i++)
		top[i] = ranked[i].id;
	return k;
}

/*
 * With ef 0: every sample's reference top 10 (returns how many).  Otherwise
 * the sum over the samples of how many of its reference top 10 a round of
 * beam ef returns.  -1: out of memory.  Plain C on measure->threads threads.
 */
static int64
measure_pass(Measure *measure, int ef)
{
	int			beam = ef == 0 ? measure->width : ef + 1;	/* + the sample itself */
	int64		total = 0;
	bool		failed = false;

#pragma omp parallel num_threads(measure->threads) reduction(+:total)
	{
		GraphVisited *visited = graph_visited_create(measure->graph->count);
		GraphNeighbor *found = malloc(sizeof(GraphNeighbor) * beam);
		Ranked	   *ranked = malloc(sizeof(Ranked) * beam);

#pragma omp for schedule(dynamic)
		for (int i = 0; i < measure->sample_count; i++)
		{
			MeasureSample *sample = &measure->samples[i];
			const float *coarse = measure->graph->vectors +
				(int64) sample->id * measure->graph->params.dim;
			int32		top[MEASURE_K];
			int			count;
			int			k;

			if (visited == NULL || found == NULL || ranked == NULL)
			{
#pragma omp atomic write
				failed = true;
				continue;
			}
			count = graph_search(measure->graph, coarse, beam, beam, visited, found);
			if (count < 0)
			{
#pragma omp atomic write
				failed = true;
				continue;
			}
			if (ef == 0)
			{
				sample->truth_count = rank_on_full(measure, sample, found, count, count,
												   MEASURE_K, ranked, sample->truth);
				total += sample->truth_count;
				continue;
			}
			k = rank_on_full(measure, sample, found, count, ef, MEASURE_K, ranked, top);
			for (int a = 0; a < k; a++)
				for (int b = 0; b < sample->truth_count; b++)
					total += top[a] == sample->truth[b];
		}
		graph_visited_free(visited);
		free(found);
		free(ranked);
	}
	return failed ? -1 : total;
}

/* The recall at ef, or -1 when out of memory. */
static double
measure_recall(Measure *measure, int ef)
{
	int64		hits = measure_pass(measure, ef);

	return hits < 0 ? -1 : (double) hits / measure->truth_total;
}

/*
 * Bisect the ladder for the smallest ef whose recall reaches the target,
 * and return the next step up.  Fills the tried points (at most
 * EF_LADDER_LENGTH) for the log; returns 0 when out of memory.
 */
static int
measure_bisect(Measure *measure, int *tried_ef, double *tried_recall, int *tried)
{
	int			low = 0;
	int			high = EF_LADDER_LENGTH - 1;

	*tried = 0;
	while (low < high)
	{
		int			middle = (low + high) / 2;
		double		recall = measure_recall(measure, ef_ladder[middle]);

		if (recall < 0)
			return 0;
		tried_ef[*tried] = ef_ladder[middle];
		tried_recall[(*tried)++] = recall;
		if (recall >= MEASURE_TARGET)
			high = middle;
		else
			low = middle + 1;
	}
	return ef_ladder[Min(low + 1, EF_LADDER_LENGTH - 1)];
}

int
matryoshka_measure_ef(const MatryoshkaLayout *layout, const Graph *graph,
					  const char *payloads, Size stride, int threads)
{
	Measure		measure;
	int64		count = graph->count;
	int			g1 = MatryoshkaCoarse(layout);
	int			tried_ef[EF_LADDER_LENGTH];
	double		tried_recall[EF_LADDER_LENGTH];
	int			tried = 0;
	int			ef = 0;
	int64		truth;
	sigset_t	all_signals;
	sigset_t	saved_signals;
	instr_time	started;
	instr_time	elapsed;
	StringInfoData points;

	/* too few elements to say anything: every scan sees them all anyway */
	if (count <= MEASURE_K + 1 || graph->entry_point == GRAPH_NO_ELEMENT)
		return 0;
	INSTR_TIME_SET_CURRENT(started);

	measure.layout = layout;
	measure.graph = graph;
	measure.payloads = payloads;
	measure.stride = stride;
	measure.threads = Max(threads, 1);
	measure.width = (int) Min(count, (int64) HNSW_MAX_EF_SEARCH + 1);
	measure.sample_count = (int) Min(count, (int64) MEASURE_SAMPLES);
	measure.samples = palloc(sizeof(MeasureSample) * measure.sample_count);
	for (int i = 0; i < measure.sample_count; i++)
	{
		MeasureSample *sample = &measure.samples[i];

		sample->id = (int32) ((int64) i * count / measure.sample_count);
		/* only the fine part is read: matryoshka_fine_sum takes dims [g1, D) */
		sample->query = palloc0(sizeof(float) * MatryoshkaFull(layout));
		matryoshka_decode_fine(layout, payloads + (Size) sample->id * stride,
							   sample->query + g1);
		sample->truth_count = 0;
	}

	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
	truth = measure_pass(&measure, 0);
	if (truth > 0)
	{
		measure.truth_total = truth;
		ef = measure_bisect(&measure, tried_ef, tried_recall, &tried);
	}
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	initStringInfo(&points);
	for (int i = 0; i < tried; i++)
		appendStringInfo(&points, "%s%d: %.4f", i > 0 ? ", " : "", tried_ef[i], tried_recall[i]);
	elog(DEBUG1, "matryoshka build: default ef_search %d (recall@%d on %d of the index's own rows, target %.2f; tried %s) measured in %.2f s",
		 ef, MEASURE_K, measure.sample_count, MEASURE_TARGET,
		 tried > 0 ? points.data : "nothing", INSTR_TIME_GET_DOUBLE(elapsed));
	return ef;
}
