/*
 * matryoshka.c — the matryoshka access method's handler, index options and
 * settings.
 *
 * The options are hnsw's graph options (m, ef_construction, build_device:
 * defined and parsed by hnsw.c for our reloption kind, so they mean exactly
 * what they mean for hnsw) plus granularities, the prefix lengths of the
 * funnel.  A list is checked twice: its own rules (syntax, strictly
 * increasing, positive, at most HNSW_MAX_GRANULARITIES, a coarse prefix of
 * at most HNSW_MAX_DIM) when the option is set, and against the column's
 * dimension at build, when that is known.
 *
 * The settings are matryoshka.ef_search (as hnsw.ef_search),
 * matryoshka.funnel, a list of shortlist sizes checked by a GUC check hook
 * and kept parsed (matryoshka_funnel[]) by its assign hook, so a scan never
 * parses text, and the iterative scan's matryoshka.iterative_scan,
 * matryoshka.max_scan_tuples and matryoshka.scan_mem_multiplier: hnsw's
 * settings of the same names (values, ranges, meaning), under this access
 * method's prefix as its ef_search is, so that one session can tune the two
 * kinds of index apart.  iterative_scan defaults to relaxed_order, not off:
 * a matryoshka scan has always gone on when the executor wants more rows
 * (README, Scan 4), and off would make a LIMIT beyond ef_search come short.
 *
 * The handler reuses hnsw's phases wherever the format is the same (bulk
 * delete, operator class validation, build phase names) and names ours for
 * the rest (the cost estimate is hnsw's, given this index's walk; VACUUM's
 * cleanup is hnsw's, then a new measure of the default ef_search).
 */
#include "postgres.h"

#include <ctype.h>

#include "access/amapi.h"
#include "access/reloptions.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "matryoshka/matryoshka.h"
#include "vector.h"

int			matryoshka_ef_search = MATRYOSHKA_EF_SEARCH_MEASURED;
int			matryoshka_iterative_scan = HNSW_ITERATIVE_SCAN_RELAXED;
int			matryoshka_max_scan_tuples = HNSW_DEFAULT_MAX_SCAN_TUPLES;
double		matryoshka_scan_mem_multiplier = 1.0;
int			matryoshka_funnel_count = 0;
int			matryoshka_funnel[HNSW_MAX_GRANULARITIES];
static char *matryoshka_funnel_text = NULL;

static relopt_kind matryoshka_relopt_kind;

/*
 * Parse a list of positive integers separated by commas (spaces allowed
 * around them) into values[] (room for HNSW_MAX_GRANULARITIES).  Returns the
 * count, or -1 with *why set: a syntax error, a value out of 1..max, more
 * than HNSW_MAX_GRANULARITIES entries.  Never ERRORs (the GUC check hook
 * uses it).
 */
static int
parse_int_list(const char *text, int max, int *values, const char **why)
{
	const char *p = text;
	int			count = 0;

	for (;;)
	{
		long		value = 0;
		int			digits = 0;

		while (isspace((unsigned char) *p))
			p++;
		while (isdigit((unsigned char) *p))
		{
			if (value <= max)
				value = value * 10 + (*p - '0');
			p++;
			digits++;
		}
		if (digits == 0)
		{
			*why = *p == '\0' ? "a number is missing" : "it is not a list of integers separated by commas";
			return -1;
		}
		if (value < 1 || value > max)
		{
			*why = psprintf("each entry must be between 1 and %d", max);
			return -1;
		}
		if (count == HNSW_MAX_GRANULARITIES)
		{
			*why = psprintf("at most %d entries are allowed", HNSW_MAX_GRANULARITIES);
			return -1;
		}
		values[count++] = (int) value;
		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			return count;
		if (*p != ',')
		{
			*why = "it is not a list of integers separated by commas";
			return -1;
		}
		p++;
	}
}

/* Parse and check a granularities value on its own: ERROR when it is bad. */
static int
parse_granularities(const char *value, int *dims)
{
	const char *why = NULL;
	int			count = parse_int_list(value, VECTOR_MAX_DIM, dims, &why);

	if (count < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for index option \"granularities\": \"%s\"", value),
				 errdetail("%s: %s.", "Expected strictly increasing dimension counts separated by commas, such as '64,256,768'", why)));
	for (int i = 1; i < count; i++)
	{
		if (dims[i] <= dims[i - 1])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for index option \"granularities\": \"%s\"", value),
					 errdetail("Granularities must be strictly increasing, but %d follows %d.",
							   dims[i], dims[i - 1])));
	}
	if (dims[0] > HNSW_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("invalid value for index option \"granularities\": \"%s\"", value),
				 errdetail("The first granularity (%d) is the prefix the graph is built on, which can have at most %d dimensions.",
						   dims[0], HNSW_MAX_DIM)));
	return count;
}

static void
validate_granularities(const char *value)
{
	int			dims[HNSW_MAX_GRANULARITIES];

	if (value != NULL)
		parse_granularities(value, dims);
}

void
matryoshka_index_layout(Relation index, int dimensions, MatryoshkaLayout *layout)
{
	MatryoshkaOptions *options = (MatryoshkaOptions *) index->rd_options;

	layout->metric = hnsw_index_metric(index);
	if (options != NULL && options->granularities_offset != 0)
	{
		const char *value = (const char *) options + options->granularities_offset;

		layout->count = parse_granularities(value, layout->dims);
		if (layout->dims[layout->count - 1] > dimensions)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("granularity %d of index \"%s\" is longer than its column's %d dimensions",
							layout->dims[layout->count - 1],
							RelationGetRelationName(index), dimensions),
					 errdetail("granularities is \"%s\".", value)));
		if (layout->dims[layout->count - 1] < dimensions)
		{
			if (layout->count == HNSW_MAX_GRANULARITIES)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("index \"%s\" would have more than %d granularities",
								RelationGetRelationName(index), HNSW_MAX_GRANULARITIES),
						 errdetail("granularities \"%s\" ends below the column's %d dimensions, which are added as the last stage.",
								   value, dimensions),
						 errhint("End the list with %d, or give fewer granularities.",
								 dimensions)));
			layout->dims[layout->count++] = dimensions;
		}
	}
	else
	{
		layout->count = 0;
		layout->dims[layout->count++] = Min(MATRYOSHKA_DEFAULT_COARSE, dimensions);
		if (dimensions > layout->dims[0])
			layout->dims[layout->count++] = dimensions;
	}
}

void
matryoshka_layout_from_meta(Relation index, const HnswMetaPageData *meta,
							MatryoshkaLayout *layout)
{
	int			count = meta->granularity_count;

	if (count < 1 || count > HNSW_MAX_GRANULARITIES ||
		meta->granularities[0] != meta->dimensions ||
		meta->granularities[count - 1] != meta->full_dimensions ||
		meta->full_dimensions > VECTOR_MAX_DIM)
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has no valid granularities in its meta page",
						RelationGetRelationName(index)),
				 errhint("Please REINDEX it.")));
	layout->count = count;
	layout->metric = (GraphMetric) meta->metric;
	for (int i = 0; i < count; i++)
	{
		layout->dims[i] = meta->granularities[i];
		if (i > 0 && layout->dims[i] <= layout->dims[i - 1])
			ereport(ERROR,
					(errcode(ERRCODE_INDEX_CORRUPTED),
					 errmsg("index \"%s\" has granularities out of order in its meta page",
							RelationGetRelationName(index)),
					 errhint("Please REINDEX it.")));
	}
	if (meta->payload_size != matryoshka_payload_size(layout))
		ereport(ERROR,
				(errcode(ERRCODE_INDEX_CORRUPTED),
				 errmsg("index \"%s\" has payloads of %u bytes, its granularities need %zu",
						RelationGetRelationName(index), meta->payload_size,
						(size_t) matryoshka_payload_size(layout)),
				 errhint("Please REINDEX it.")));
}

/* matryoshka.funnel: parse in the check hook, keep the numbers as extra */
static bool
check_funnel(char **newval, void **extra, GucSource source)
{
	int			values[HNSW_MAX_GRANULARITIES];
	int			count = 0;
	int		   *parsed;
	const char *p = *newval == NULL ? "" : *newval;

	while (isspace((unsigned char) *p))
		p++;
	if (*p != '\0')
	{
		const char *why = NULL;

		count = parse_int_list(p, MATRYOSHKA_MAX_FUNNEL_SIZE, values, &why);
		if (count < 0)
		{
			GUC_check_errdetail("Expected shortlist sizes separated by commas, such as '400,100' (or '' for the default): %s.",
								why);
			return false;
		}
	}
	/* GUC extra is released with free(): malloc it */
	parsed = malloc(sizeof(int) * (HNSW_MAX_GRANULARITIES + 1));
	if (parsed == NULL)
		return false;
	parsed[0] = count;
	memcpy(parsed + 1, values, sizeof(int) * count);
	*extra = parsed;
	return true;
}

static void
assign_funnel(const char *newval, void *extra)
{
	const int  *parsed = extra;

	matryoshka_funnel_count = parsed[0];
	memcpy(matryoshka_funnel, parsed + 1, sizeof(int) * parsed[0]);
}

void
matryoshka_init(void)
{
	matryoshka_limit_init();
	matryoshka_relopt_kind = add_reloption_kind();
	hnsw_define_graph_options(matryoshka_relopt_kind);
	add_string_reloption(matryoshka_relopt_kind, "granularities",
						 "Prefix lengths of the funnel, strictly increasing: the first is the graph's (default: 64, then the column's dimension)",
						 NULL, validate_granularities, AccessExclusiveLock);

	DefineCustomIntVariable("matryoshka.ef_search",
							"Candidate list size of the coarse graph search of a matryoshka index scan.",
							"Larger values find more of the true nearest neighbours, more slowly. 0: the value measured on each index's data (by its build, or by VACUUM).",
							&matryoshka_ef_search, MATRYOSHKA_EF_SEARCH_MEASURED,
							MATRYOSHKA_EF_SEARCH_MEASURED, HNSW_MAX_EF_SEARCH,
							PGC_USERSET, 0, NULL, NULL, NULL);
	hnsw_define_scan_settings("matryoshka", &matryoshka_iterative_scan,
							  HNSW_ITERATIVE_SCAN_RELAXED, &matryoshka_max_scan_tuples,
							  &matryoshka_scan_mem_multiplier);
	DefineCustomStringVariable("matryoshka.funnel",
							   "Shortlist sizes of the funnel of a matryoshka index scan, such as '400,100'.",
							   "Entry i is how many candidates stage i keeps (stage 1: the coarse graph search); empty: every stage keeps all ef_search candidates.",
							   &matryoshka_funnel_text, "",
							   PGC_USERSET, 0, check_funnel, assign_funnel, NULL);
	MarkGUCPrefixReserved("matryoshka");
}

static bytea *
matryoshka_options(Datum reloptions, bool validate)
{
	static const relopt_parse_elt extra[] = {
		{"granularities", RELOPT_TYPE_STRING, offsetof(MatryoshkaOptions, granularities_offset)},
	};

	return hnsw_parse_graph_options(reloptions, validate, matryoshka_relopt_kind,
									sizeof(MatryoshkaOptions), extra, lengthof(extra));
}

PG_FUNCTION_INFO_V1(matryoshka_handler);
Datum
matryoshka_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *am = makeNode(IndexAmRoutine);

	hnsw_fill_am_routine(am);
	am->ambuild = matryoshka_build;
	am->ambuildempty = matryoshka_build_empty;
	am->aminsert = matryoshka_insert;
	am->amoptions = matryoshka_options;
	am->ambeginscan = matryoshka_begin_scan;
	am->amrescan = matryoshka_rescan;
	am->amgettuple = matryoshka_get_tuple;
	am->amendscan = matryoshka_end_scan;
	am->amcostestimate = matryoshka_cost_estimate;
	am->amvacuumcleanup = matryoshka_vacuum_cleanup;

	PG_RETURN_POINTER(am);
}
