/*
 * matryoshka_build.c — ambuild and ambuildempty of the matryoshka access
 * method: hnsw's build (src/hnsw/hnsw_build.c) with a spec that prepares
 * each row as a coarse vector and a payload.
 *
 * Per row: the coarse prefix x[0:g1), normalised on its own under cosine
 * (a zero prefix is kept as zeros: its cosine distance to every query is
 * then 1, see README), goes into the graph; the payload (matryoshka_fine.c)
 * holds the rest of the vector, the prefix norms and a 64-bit hash of the
 * row's raw floats; the duplicate finder compares the coarse vector and the
 * whole payload, so only rows whose full vectors are identical share an
 * element (inserts apply the same rule: hnsw_insert.c).
 *
 * Everything else (memory budget, duplicates, CPU or GPU linking on the
 * coarse vectors, the bulk writer, WAL, and single inserts: aminsert and the
 * rows of a build that did not fit in maintenance_work_mem) is hnsw's.
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"
#include "vector.h"

typedef struct MatryoshkaBuild
{
	MatryoshkaLayout layout;
	Size		payload_size;
	int			default_ef;		/* measured (matryoshka_measure.c); 0: none */
} MatryoshkaBuild;

static bool
matryoshka_prepare(void *arg, Datum value, float *coarse, char *payload)
{
	MatryoshkaBuild *build = (MatryoshkaBuild *) arg;
	const MatryoshkaLayout *layout = &build->layout;
	Vector	   *vector = DatumGetVector(value);
	int			g1 = MatryoshkaCoarse(layout);

	if (vector->dim != MatryoshkaFull(layout))
		ereport(ERROR,
				(errcode(ERRCODE_DATA_EXCEPTION),
				 errmsg("expected %d dimensions, not %d",
						MatryoshkaFull(layout), vector->dim)));
	if (layout->metric == GRAPH_METRIC_COSINE)
	{
		bool		zero = true;

		/* a zero vector has no direction: not indexed, as in hnsw */
		for (int i = 0; i < vector->dim && zero; i++)
			zero = vector->x[i] == 0;
		if (zero)
			return false;
		if (graph_normalize(vector->x, coarse, g1) != 0)
			memset(coarse, 0, sizeof(float) * g1);
	}
	else
		memcpy(coarse, vector->x, sizeof(float) * g1);

	matryoshka_encode(layout, vector->x, payload);
	return true;
}

static void
matryoshka_fill_meta(HnswMetaPageData *meta, void *arg)
{
	MatryoshkaBuild *build = (MatryoshkaBuild *) arg;

	meta->granularity_count = (uint16) build->layout.count;
	for (int i = 0; i < build->layout.count; i++)
		meta->granularities[i] = (uint16) build->layout.dims[i];
	meta->full_dimensions = MatryoshkaFull(&build->layout);
	meta->payload_size = (uint32) build->payload_size;
	meta->default_ef = (uint16) build->default_ef;
	meta->measured_elements = build->default_ef > 0 ? meta->element_count : 0;
	meta->measured_heaptids = build->default_ef > 0 ? meta->heaptid_count : 0;
}

static void
matryoshka_measure(void *arg, const Graph *graph, const char *payloads,
				   Size payload_stride, int threads)
{
	MatryoshkaBuild *build = (MatryoshkaBuild *) arg;

	build->default_ef = matryoshka_measure_ef(&build->layout, graph, payloads,
											  payload_stride, threads);
}

static void
matryoshka_insert_spooled(void *arg, Relation index, const float *coarse,
						  const char *payload, ItemPointer heap_tid)
{
	hnsw_insert_vector(index, coarse, payload, heap_tid);
}

static void
init_spec(Relation index, MatryoshkaBuild *build, HnswBuildSpec *spec)
{
	int			dimensions = hnsw_column_dimensions(index, VECTOR_MAX_DIM, "matryoshka");

	matryoshka_index_layout(index, dimensions, &build->layout);
	build->payload_size = matryoshka_payload_size(&build->layout);
	build->default_ef = 0;

	memset(spec, 0, sizeof(*spec));
	spec->am_name = "matryoshka";
	spec->shape.dimensions = MatryoshkaCoarse(&build->layout);
	spec->shape.m = hnsw_option_m(index);
	spec->shape.m0 = 2 * spec->shape.m;
	spec->shape.ef_construction = hnsw_option_ef_construction(index);
	spec->shape.metric = build->layout.metric;
	spec->row_dimensions = dimensions;
	spec->payload_size = build->payload_size;
	spec->payload_stride = build->payload_size;
	spec->prepare = matryoshka_prepare;
	spec->fill_meta = matryoshka_fill_meta;
	spec->insert = matryoshka_insert_spooled;
	spec->measure = matryoshka_measure;
	spec->arg = build;
}

IndexBuildResult *
matryoshka_build(Relation heap, Relation index, IndexInfo *info)
{
	MatryoshkaBuild build;
	HnswBuildSpec spec;

	init_spec(index, &build, &spec);
	return hnsw_build_with_spec(heap, index, info, &spec);
}

void
matryoshka_build_empty(Relation index)
{
	MatryoshkaBuild build;
	HnswBuildSpec spec;

	init_spec(index, &build, &spec);
	hnsw_build_empty_with_spec(index, &spec);
}

/*
 * aminsert: the row prepared as the build prepares it (the layout from the
 * meta page), then hnsw's insert path, which writes the payload's fine
 * tuples with the element (src/hnsw/hnsw_insert.c).
 */
bool
matryoshka_insert(Relation index, Datum *values, bool *isnull,
				  ItemPointer heap_tid, Relation heap,
				  IndexUniqueCheck check_unique, bool index_unchanged,
				  IndexInfo *info)
{
	MemoryContext insert_context;
	MemoryContext old_context;
	HnswMetaPageData meta;
	MatryoshkaBuild build;
	float	   *coarse;
	char	   *payload;

	if (isnull[0])
		return false;			/* NULLs are not indexed */

	/* a detoasted copy of the row's vector must not outlive the row */
	insert_context = AllocSetContextCreate(CurrentMemoryContext,
										   "matryoshka insert",
										   ALLOCSET_DEFAULT_SIZES);
	old_context = MemoryContextSwitchTo(insert_context);

	/* granularities and metric are fixed at build time: any meta copy will do */
	hnsw_read_meta(index, &meta);
	matryoshka_layout_from_meta(index, &meta, &build.layout);
	build.payload_size = matryoshka_payload_size(&build.layout);
	coarse = palloc(sizeof(float) * MatryoshkaCoarse(&build.layout));
	payload = palloc(build.payload_size);
	if (matryoshka_prepare(&build, values[0], coarse, payload))
		hnsw_insert_vector(index, coarse, payload, heap_tid);

	MemoryContextSwitchTo(old_context);
	MemoryContextDelete(insert_context);
	return false;
}
