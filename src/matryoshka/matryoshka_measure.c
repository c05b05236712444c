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
 *     the candidates of a coarse search of beam MEASURE_REFERENCE_BEAM,
 *     with the place of each in coarse order;
 *   - the recall@10 of a round of beam ef is first estimated from those
 *     places (the share of reference neighbours placed before ef: what a
 *     round would return if its search found exactly the first ef in
 *     coarse order), which picks the first step of a fixed ladder of ef
 *     values to try; then rounds of that beam are run (a coarse search of
 *     beam ef, its candidates ranked on the full vector, as a scan's first
 *     round does) and the next step up is tried until one reaches
 *     MEASURE_TARGET (usually the first or second: a narrower search
 *     misses a few of the first ef, so the estimate is a little high);
 *   - the default is the ladder's next step above that (15 to 25% more).
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
 * blocked, as while linking: the reference search and one or two rounds
 * per sample, about 0.1 s for 60000 Fashion-MNIST rows on 2 cores.
 */
#include "postgres.h"

#include <signal.h>
#include <stdlib.h>

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"

#include "matryoshka/matryoshka.h"

#define MEASURE_SAMPLES	256
#define MEASURE_K		MATRYOSHKA_MEASURE_ROWS
#define MEASURE_TARGET	0.995

/*
 * The reference search's beam.  Its top 10 stand for the true ones: on
 * Fashion-MNIST with a 32-d prefix, the hardest of the bench sets, rounds
 * of beam 192 already find 99.7% of the true top 10.
 */
#define MEASURE_REFERENCE_BEAM	640

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
	int32		truth_rank[MEASURE_K];	/* their places in coarse order */
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
	int32		place;			/* in the coarse order, the sample left out */
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
 * candidates of found[0, count) other than itself: their ids to top[] and
 * their places in coarse order to places[] (unless NULL), returns how many.
 * ranked[] has room for count entries.
 */
static int
rank_on_full(const Measure *measure, const MeasureSample *sample,
			 const GraphNeighbor *found, int count, int limit, int k,
			 Ranked *ranked, int32 *top, int32 *places)
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
		ranked[n].place = n;
		n++;
	}
	qsort(ranked, n, sizeof(Ranked), compare_ranked);
	k = Min(k, n);
	for (int i = 0; i < k; i++)
	{
		top[i] = ranked[i].id;
		if (places != NULL)
			places[i] = ranked[i].place;
	}
	return k;
}

/*
 * With ef 0: every sample's reference top 10 (returns how many).  Otherwise
 * the sum over the samples of how many of its reference top 10 a round of
 * beam ef returns.  -1: out of memory.  Plain C on measure->threads threads,
 * with every signal blocked while they run (they inherit the mask, so no
 * PostgreSQL signal handler runs on them); interrupts are checked after.
 */
static int64
measure_pass(Measure *measure, int ef)
{
	int			beam = ef == 0 ? measure->width : ef + 1;	/* + the sample itself */
	int64		total = 0;
	bool		failed = false;
	sigset_t	all_signals;
	sigset_t	saved_signals;

	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);

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
												   MEASURE_K, ranked, sample->truth,
												   sample->truth_rank);
				total += sample->truth_count;
				continue;
			}
			k = rank_on_full(measure, sample, found, count, ef, MEASURE_K, ranked, top, NULL);
			for (int a = 0; a < k; a++)
				for (int b = 0; b < sample->truth_count; b++)
					total += top[a] == sample->truth[b];
		}
		graph_visited_free(visited);
		free(found);
		free(ranked);
	}
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
	CHECK_FOR_INTERRUPTS();
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
 * The recall a round of beam ef would have if its search returned exactly
 * the first ef elements of the reference search in coarse order: the share
 * of reference neighbours placed before ef.  A narrower search misses a
 * few of those, so this is a little optimistic, but it costs no search.
 */
static double
estimated_recall(const Measure *measure, int ef)
{
	int64		hits = 0;

	for (int i = 0; i < measure->sample_count; i++)
		for (int k = 0; k < measure->samples[i].truth_count; k++)
			hits += measure->samples[i].truth_rank[k] < ef;
	return (double) hits / measure->truth_total;
}

/*
 * The smallest ef of the ladder whose rounds reach the target, and then the
 * ladder's next step: the estimate (estimated_recall) picks the first step
 * to try, rounds of that beam are run to check it, and the next step up is
 * tried until one reaches the target.  Fills the tried points (at most
 * EF_LADDER_LENGTH) for the log; returns 0 when out of memory.
 */
static int
measure_ladder(Measure *measure, int *tried_ef, double *tried_recall, int *tried)
{
	int			step = 0;

	*tried = 0;
	while (step < EF_LADDER_LENGTH - 1 &&
		   estimated_recall(measure, ef_ladder[step]) < MEASURE_TARGET)
		step++;
	for (; step < EF_LADDER_LENGTH - 1; step++)
	{
		double		recall = measure_recall(measure, ef_ladder[step]);

		if (recall < 0)
			return 0;
		tried_ef[*tried] = ef_ladder[step];
		tried_recall[(*tried)++] = recall;
		if (recall >= MEASURE_TARGET)
			break;
	}
	return ef_ladder[Min(step + 1, EF_LADDER_LENGTH - 1)];
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
	measure.width = (int) Min(count, (int64) MEASURE_REFERENCE_BEAM);
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

	/*
	 * The lazy statics of the fine sums (the decoding table, the CPU's F16C
	 * flag) are set here, before any thread reads them.
	 */
	(void) matryoshka_fine_sum(layout, payloads, measure.samples[0].query, g1,
							   MatryoshkaFull(layout));

	truth = measure_pass(&measure, 0);
	if (truth > 0)
	{
		measure.truth_total = truth;
		ef = measure_ladder(&measure, tried_ef, tried_recall, &tried);
	}

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	initStringInfo(&points);
	for (int i = 0; i < tried; i++)
		appendStringInfo(&points, "%s%d: %.4f", i > 0 ? ", " : "", tried_ef[i], tried_recall[i]);
	elog(DEBUG1, "matryoshka build: default ef_search %d (recall@%d on %d of the index's own rows, target %.3f; rounds tried %s) measured in %.2f s",
		 ef, MEASURE_K, measure.sample_count, MEASURE_TARGET,
		 tried > 0 ? points.data : "nothing", INSTR_TIME_GET_DOUBLE(elapsed));
	return ef;
}
