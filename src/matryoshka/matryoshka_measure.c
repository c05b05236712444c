/*
 * matryoshka_measure.c — the build (and later VACUUM) measures how many
 * coarse candidates the index's own data needs: its default
 * matryoshka.ef_search.
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
 *
 * VACUUM measures an index that has no measure, or has grown to twice the
 * elements of its last (matryoshka_vacuum.c), the same way on its pages
 * (matryoshka_measure_index): the samples are live elements spread over the
 * element pages in block order, each search is a scan's (descent, layer-0
 * search through a walk), the candidates' payloads are read through the
 * walk's buffers, one sample at a time.  The two sources differ only in a
 * pass (Measure.pass: build_pass, pages_pass); samples, ranking
 * (rank_on_full), scoring and the ladder are one code.  Elements are known
 * by a key: the graph's id in a build, the element tuple's TID on pages.
 */
#include "postgres.h"

#include <signal.h>
#include <stdlib.h>

#include "commands/vacuum.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "portability/instr_time.h"
#include "storage/bufmgr.h"
#include "utils/memutils.h"
#include "utils/rel.h"

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

/*
 * One query of the measure: an element of the index.  Elements are known by
 * a key: the graph's id in a build, the element tuple's TID on pages.
 */
typedef struct MeasureSample
{
	int64		key;			/* the element that is the query */
	const float *coarse;		/* its stored coarse vector (the graph's) */
	float	   *query;			/* D floats, of which [g1:D) are set */
	double		coarse_norm;	/* |x[0:g1)| and |x|, from its payload */
	double		full_norm;
	int64		truth[MEASURE_K];	/* its reference top 10 */
	int32		truth_rank[MEASURE_K];	/* their places in coarse order */
	int			truth_count;
} MeasureSample;

/* an element a search found for a sample, with its payload */
typedef struct MeasureCandidate
{
	float		coarse;			/* the walk's distance */
	int64		key;
	const MatryoshkaPayloadHeader *payload;
} MeasureCandidate;

typedef struct PagesMeasure PagesMeasure;
typedef struct Measure Measure;

struct Measure
{
	const MatryoshkaLayout *layout;
	int			width;			/* the reference search's beam */
	MeasureSample *samples;
	int			sample_count;
	int64		truth_total;

	/*
	 * One pass over the samples.  With ef 0: every sample's reference top 10
	 * (returns how many).  Otherwise the sum over the samples of how many of
	 * its reference top 10 a round of beam ef returns.  -1: out of memory.
	 */
	int64		(*pass) (Measure *measure, int ef);

	/* a build's: the whole graph and every payload in memory */
	const Graph *graph;
	const char *payloads;
	Size		stride;
	int			threads;

	/* VACUUM's: the index's pages */
	PagesMeasure *pages;
};

typedef struct Ranked
{
	double		distance;
	int64		key;
	int32		place;			/* in the coarse order, the sample left out */
} Ranked;

static int
compare_ranked(const void *a, const void *b)
{
	const Ranked *ra = (const Ranked *) a;
	const Ranked *rb = (const Ranked *) b;

	if (ra->distance != rb->distance)
		return ra->distance < rb->distance ? -1 : 1;
	return (ra->key > rb->key) - (ra->key < rb->key);
}

/*
 * The sample's best `k` on the full vector among candidates[0, n) (in
 * coarse order, the sample left out): their keys to top[] and their places
 * in coarse order to places[] (unless NULL), returns how many.  ranked[] has
 * room for n entries.
 */
static int
rank_on_full(const MatryoshkaLayout *layout, const MeasureSample *sample,
			 const MeasureCandidate *candidates, int n, int k, Ranked *ranked,
			 int64 *top, int32 *places)
{
	int			last = layout->count - 1;

	for (int i = 0; i < n; i++)
	{
		const MatryoshkaPayloadHeader *header = candidates[i].payload;
		double		sum;

		sum = matryoshka_coarse_sum(layout->metric, candidates[i].coarse,
									sample->coarse_norm, header->norms[0]);
		sum += matryoshka_fine_sum(layout, (const char *) header, sample->query,
								   MatryoshkaCoarse(layout), MatryoshkaFull(layout));
		ranked[i].distance = matryoshka_sum_distance(layout->metric, sum, sample->full_norm,
													 header->norms[last]);
		ranked[i].key = candidates[i].key;
		ranked[i].place = i;
	}
	qsort(ranked, n, sizeof(Ranked), compare_ranked);
	k = Min(k, n);
	for (int i = 0; i < k; i++)
	{
		top[i] = ranked[i].key;
		if (places != NULL)
			places[i] = ranked[i].place;
	}
	return k;
}

/*
 * A pass's work on one sample once its search has found candidates[0, n):
 * with ef 0 its reference top 10 (returns how many), else how many of those
 * the first ef candidates hold among their best 10 on the full vector.
 */
static int64
score_sample(const Measure *measure, MeasureSample *sample, int ef,
			 const MeasureCandidate *candidates, int n, Ranked *ranked)
{
	int64		top[MEASURE_K];
	int64		hits = 0;
	int			k;

	if (ef == 0)
	{
		sample->truth_count = rank_on_full(measure->layout, sample, candidates, n,
										   MEASURE_K, ranked, sample->truth,
										   sample->truth_rank);
		return sample->truth_count;
	}
	k = rank_on_full(measure->layout, sample, candidates, Min(n, ef), MEASURE_K,
					 ranked, top, NULL);
	for (int a = 0; a < k; a++)
		for (int b = 0; b < sample->truth_count; b++)
			hits += top[a] == sample->truth[b];
	return hits;
}

/* the beam of a pass: the reference's, or ef and the sample itself */
static int
pass_beam(const Measure *measure, int ef)
{
	return ef == 0 ? measure->width : ef + 1;
}

/*
 * A build's pass (Measure.pass): the engine's search on the graph in memory,
 * in plain C on measure->threads threads, with every signal blocked while
 * they run (they inherit the mask, so no PostgreSQL signal handler runs on
 * them); interrupts are checked after.
 */
static int64
build_pass(Measure *measure, int ef)
{
	int			beam = pass_beam(measure, ef);
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
		MeasureCandidate *candidates = malloc(sizeof(MeasureCandidate) * beam);
		Ranked	   *ranked = malloc(sizeof(Ranked) * beam);

#pragma omp for schedule(dynamic)
		for (int i = 0; i < measure->sample_count; i++)
		{
			MeasureSample *sample = &measure->samples[i];
			int			count;
			int			n = 0;

			if (visited == NULL || found == NULL || candidates == NULL || ranked == NULL)
			{
#pragma omp atomic write
				failed = true;
				continue;
			}
			count = graph_search(measure->graph, sample->coarse, beam, beam, visited, found);
			if (count < 0)
			{
#pragma omp atomic write
				failed = true;
				continue;
			}
			for (int c = 0; c < count; c++)
			{
				if (found[c].id == sample->key)
					continue;
				candidates[n].coarse = found[c].distance;
				candidates[n].key = found[c].id;
				candidates[n].payload = (const MatryoshkaPayloadHeader *)
					(measure->payloads + (Size) found[c].id * measure->stride);
				n++;
			}
			total += score_sample(measure, sample, ef, candidates, n, ranked);
		}
		graph_visited_free(visited);
		free(found);
		free(candidates);
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
	int64		hits = measure->pass(measure, ef);

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

/*
 * The reference pass and the ladder on measure's samples, whichever their
 * source; `what` starts the DEBUG1 line that reports the result.  Returns
 * the default ef_search, 0 when nothing could be measured.
 */
static int
measure_run(Measure *measure, const char *what)
{
	int			tried_ef[EF_LADDER_LENGTH];
	double		tried_recall[EF_LADDER_LENGTH];
	int			tried = 0;
	int			ef = 0;
	int64		truth;
	instr_time	started;
	instr_time	elapsed;
	StringInfoData points;

	INSTR_TIME_SET_CURRENT(started);
	truth = measure->sample_count > 0 ? measure->pass(measure, 0) : 0;
	if (truth > 0)
	{
		measure->truth_total = truth;
		ef = measure_ladder(measure, tried_ef, tried_recall, &tried);
	}

	INSTR_TIME_SET_CURRENT(elapsed);
	INSTR_TIME_SUBTRACT(elapsed, started);
	initStringInfo(&points);
	for (int i = 0; i < tried; i++)
		appendStringInfo(&points, "%s%d: %.4f", i > 0 ? ", " : "", tried_ef[i], tried_recall[i]);
	elog(DEBUG1, "%s: default ef_search %d (recall@%d on %d of the index's own rows, target %.3f; rounds tried %s) measured in %.2f s",
		 what, ef, MEASURE_K, measure->sample_count, MEASURE_TARGET,
		 tried > 0 ? points.data : "nothing", INSTR_TIME_GET_DOUBLE(elapsed));
	return ef;
}

/* a sample's norms, from its payload */
static void
sample_set_norms(const MatryoshkaLayout *layout, MeasureSample *sample,
				 const MatryoshkaPayloadHeader *header)
{
	sample->coarse_norm = header->norms[0];
	sample->full_norm = header->norms[layout->count - 1];
}

int
matryoshka_measure_ef(const MatryoshkaLayout *layout, const Graph *graph,
					  const char *payloads, Size stride, int threads)
{
	Measure		measure = {0};
	int64		count = graph->count;
	int			g1 = MatryoshkaCoarse(layout);

	/* too few elements to say anything: every scan sees them all anyway */
	if (count <= MEASURE_K + 1 || graph->entry_point == GRAPH_NO_ELEMENT)
		return 0;

	measure.layout = layout;
	measure.pass = build_pass;
	measure.graph = graph;
	measure.payloads = payloads;
	measure.stride = stride;
	measure.threads = Max(threads, 1);
	measure.width = (int) Min(count, (int64) MEASURE_REFERENCE_BEAM);
	measure.sample_count = (int) Min(count, (int64) MEASURE_SAMPLES);
	measure.samples = palloc0(sizeof(MeasureSample) * measure.sample_count);
	for (int i = 0; i < measure.sample_count; i++)
	{
		MeasureSample *sample = &measure.samples[i];
		int32		id = (int32) ((int64) i * count / measure.sample_count);
		const char *payload = payloads + (Size) id * stride;

		sample->key = id;
		sample->coarse = graph->vectors + (int64) id * graph->params.dim;
		/* only the fine part is read: matryoshka_fine_sum takes dims [g1, D) */
		sample->query = palloc0(sizeof(float) * MatryoshkaFull(layout));
		matryoshka_decode_fine(layout, payload, sample->query + g1);
		sample_set_norms(layout, sample, (const MatryoshkaPayloadHeader *) payload);
	}

	/*
	 * The lazy statics of the fine sums (the decoding table, the CPU's F16C
	 * flag) are set here, before any thread reads them.
	 */
	(void) matryoshka_fine_sum(layout, payloads, measure.samples[0].query, g1,
							   MatryoshkaFull(layout));

	return measure_run(&measure, "matryoshka build");
}

/* ------------------------------------------------------------------------
 * The measure on pages (VACUUM: matryoshka_vacuum.c)
 * ------------------------------------------------------------------------ */

struct PagesMeasure
{
	Relation	index;
	HnswMetaPageData meta;
	HnswWalk   *walk;			/* every sample's search, and the payloads */
	GraphSearch search;			/* layer 0; its heaps live as long as the walk */
	MemoryContext sample_context;	/* one sample's payloads in a pass */
};

/* an element tuple's TID as a measure key */
static int64
tid_key(ItemPointer tid)
{
	return ((int64) ItemPointerGetBlockNumber(tid) << 16) | ItemPointerGetOffsetNumber(tid);
}

/*
 * Read the payloads at finetids[0, n) through the walk's buffers into one
 * allocation in `context`, payloads[i] pointing at each, and check them.
 */
static void
pages_read_payloads(const PagesMeasure *pages, const MatryoshkaLayout *layout,
					MemoryContext context, int n, const ItemPointerData *finetids,
					char **payloads)
{
	Size		size = pages->meta.payload_size;
	char	   *space = MemoryContextAlloc(context, size * Max(n, 1));

	for (int i = 0; i < n; i++)
		payloads[i] = space + size * i;
	hnsw_walk_read_payloads(pages->walk, n, finetids, size, payloads);
	hnsw_walk_release(pages->walk);
	for (int i = 0; i < n; i++)
		matryoshka_check_payload(pages->index, layout,
								 (const MatryoshkaPayloadHeader *) payloads[i],
								 (ItemPointer) &finetids[i]);
}

/*
 * A pass on pages (Measure.pass): for each sample, a scan's descent and
 * layer-0 search through the walk, the payloads of the candidates read
 * through the walk's buffers (as a scan's round reads them), one sample at
 * a time, with VACUUM's cost-based delay between samples.
 */
static int64
pages_pass(Measure *measure, int ef)
{
	PagesMeasure *pages = measure->pages;
	int			beam = pass_beam(measure, ef);
	GraphAccess *access = hnsw_walk_access(pages->walk);
	GraphNeighbor *found = palloc(sizeof(GraphNeighbor) * beam);
	MeasureCandidate *candidates = palloc(sizeof(MeasureCandidate) * beam);
	ItemPointerData *finetids = palloc(sizeof(ItemPointerData) * beam);
	char	  **payloads = palloc(sizeof(char *) * beam);
	Ranked	   *ranked = palloc(sizeof(Ranked) * beam);
	int64		total = 0;

	for (int i = 0; i < measure->sample_count; i++)
	{
		MeasureSample *sample = &measure->samples[i];
		int			count;
		int			n = 0;

		vacuum_delay_point();
		MemoryContextReset(pages->sample_context);
		hnsw_walk_descend(pages->walk, &pages->meta, sample->coarse, false, &pages->search);
		count = graph_search_next(&pages->search, access, beam, 1, 0, 1, found);
		for (int c = 0; c < count; c++)
		{
			ItemPointerData finetid;
			int64		key;

			if (!hnsw_walk_element(pages->walk, found[c].id, &finetid) ||
				!ItemPointerIsValid(&finetid))
				continue;
			key = tid_key(hnsw_walk_tid(pages->walk, found[c].id));
			if (key == sample->key)
				continue;
			candidates[n].coarse = found[c].distance;
			candidates[n].key = key;
			finetids[n++] = finetid;
		}
		/* a round ranks its first ef; the reference ranks all it found */
		if (ef > 0)
			n = Min(n, ef);
		pages_read_payloads(pages, measure->layout, pages->sample_context, n, finetids,
							payloads);
		for (int c = 0; c < n; c++)
			candidates[c].payload = (const MatryoshkaPayloadHeader *) payloads[c];
		total += score_sample(measure, sample, ef, candidates, n, ranked);
	}
	return total;
}

/*
 * The samples: live elements spread over the element pages in block order
 * (the order a build writes its elements in, as the build's samples are
 * spread over element order): sample n is the first live element from
 * element tuple n * element_count / MEASURE_SAMPLES on, so that an index
 * grown by inserts is sampled over its old and new elements alike.  Each
 * comes with its coarse vector and its payload (decoded fine part, norms).
 * Returns how many.
 */
static int
pages_collect_samples(Measure *measure, BufferAccessStrategy strategy)
{
	PagesMeasure *pages = measure->pages;
	Relation	index = pages->index;
	const MatryoshkaLayout *layout = measure->layout;
	int			g1 = MatryoshkaCoarse(layout);
	Size		element_size = hnsw_element_tuple_size(g1);
	int64		count = pages->meta.element_count;
	int64		position = 0;	/* element tuples met */
	BlockNumber nblocks = RelationGetNumberOfBlocks(index);
	ItemPointerData *finetids = palloc(sizeof(ItemPointerData) * MEASURE_SAMPLES);
	char	  **payloads = palloc(sizeof(char *) * MEASURE_SAMPLES);
	int			n = 0;

	for (BlockNumber blkno = HNSW_METAPAGE_BLKNO + 1; blkno < nblocks && n < MEASURE_SAMPLES; blkno++)
	{
		Buffer		buffer;
		Page		page;

		vacuum_delay_point();
		buffer = ReadBufferExtended(index, MAIN_FORKNUM, blkno, RBM_NORMAL, strategy);
		LockBuffer(buffer, BUFFER_LOCK_SHARE);
		page = BufferGetPage(buffer);
		if (!PageIsNew(page))
		{
			hnsw_check_page(index, page, blkno);
			for (OffsetNumber offset = FirstOffsetNumber;
				 !(HnswPageGetOpaque(page)->flags & HNSW_PAGE_FINE) &&
				 offset <= PageGetMaxOffsetNumber(page) && n < MEASURE_SAMPLES;
				 offset = OffsetNumberNext(offset))
			{
				HnswElementTuple element = hnsw_page_tuple(page, offset, HNSW_ELEMENT_TUPLE,
														   element_size);
				MeasureSample *sample = &measure->samples[n];
				ItemPointerData tid;
				float	   *coarse;

				/* sample n: the first live element from n * count / samples on */
				if (element == NULL || position++ < (int64) n * count / MEASURE_SAMPLES ||
					!HnswElementIsLive(element) || !ItemPointerIsValid(&element->finetid))
					continue;
				ItemPointerSet(&tid, blkno, offset);
				sample->key = tid_key(&tid);
				coarse = palloc(sizeof(float) * g1);
				memcpy(coarse, element->vector, sizeof(float) * g1);
				sample->coarse = coarse;
				finetids[n++] = element->finetid;
			}
		}
		UnlockReleaseBuffer(buffer);
	}

	pages_read_payloads(pages, layout, CurrentMemoryContext, n, finetids, payloads);
	for (int i = 0; i < n; i++)
	{
		MeasureSample *sample = &measure->samples[i];

		sample->query = palloc0(sizeof(float) * MatryoshkaFull(layout));
		matryoshka_decode_fine(layout, payloads[i], sample->query + g1);
		sample_set_norms(layout, sample, (const MatryoshkaPayloadHeader *) payloads[i]);
	}
	return n;
}

int
matryoshka_measure_index(Relation index, BufferAccessStrategy strategy,
						 const HnswMetaPageData *meta)
{
	MemoryContext context = AllocSetContextCreate(CurrentMemoryContext,
												  "matryoshka measure",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(context);
	MatryoshkaLayout layout;
	HnswShape	shape;
	PagesMeasure pages = {0};
	Measure		measure = {0};
	int			ef = 0;

	matryoshka_layout_from_meta(index, meta, &layout);
	hnsw_shape_from_meta(meta, &shape);
	pages.index = index;
	pages.meta = *meta;
	pages.walk = hnsw_walk_begin(index, &shape, 1, false);
	pages.search.grow = hnsw_scan_search_grow;
	pages.search.grow_context = context;
	pages.sample_context = AllocSetContextCreate(context, "matryoshka measure sample",
												 ALLOCSET_DEFAULT_SIZES);

	measure.layout = &layout;
	measure.pass = pages_pass;
	measure.pages = &pages;
	measure.width = (int) Min(meta->element_count, (int64) MEASURE_REFERENCE_BEAM);
	measure.samples = palloc0(sizeof(MeasureSample) * MEASURE_SAMPLES);
	measure.sample_count = pages_collect_samples(&measure, strategy);

	/* too few live elements to say anything, as in a build */
	if (measure.sample_count > MEASURE_K + 1)
		ef = measure_run(&measure, psprintf("matryoshka vacuum of index \"%s\"",
											RelationGetRelationName(index)));
	hnsw_walk_end(pages.walk);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(context);
	return ef;
}
