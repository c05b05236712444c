/*
 * hnsw.c — the hnsw access method's handler, index options and settings.
 *
 * Everything a user names in SQL lives here: the options m and
 * ef_construction (same names, defaults and ranges as pgvector, so schemas
 * move over unchanged) and build_device, the settings hnsw.ef_search,
 * hnsw.iterative_scan, hnsw.max_scan_tuples, hnsw.scan_mem_multiplier,
 * hierindex.build_threads, hierindex.build_device and the hierindex.gpu_*
 * ones of the GPU build, and the support functions that tell an operator
 * class's metric to the graph engine.  The phases themselves are in the
 * other hnsw_*.c files (see hnsw.h).
 */
#include "postgres.h"

#include <omp.h>

#include "access/amapi.h"
#include "access/amvalidate.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "catalog/pg_amop.h"
#include "catalog/pg_amproc.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_opfamily.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/progress.h"
#include "commands/vacuum.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/selfuncs.h"
#include "utils/syscache.h"

#include "gpu/gpu.h"
#include "hnsw/hnsw.h"

int			hnsw_ef_search = HNSW_DEFAULT_EF_SEARCH;
int			hnsw_iterative_scan = HNSW_ITERATIVE_SCAN_OFF;
int			hnsw_max_scan_tuples = HNSW_DEFAULT_MAX_SCAN_TUPLES;
double		hnsw_scan_mem_multiplier = 1.0;
int			hierindex_build_threads = 0;
int			hierindex_build_device = HNSW_BUILD_DEVICE_AUTO;
int			hierindex_gpu_device = 0;
int			hierindex_gpu_min_rows = 50000;
int			hierindex_gpu_memory_limit = 0;
int			hierindex_gpu_precision = HIERINDEX_GPU_PRECISION_FP16;

static relopt_kind hnsw_relopt_kind;

/*
 * The values of build_device, for the setting and the index option alike
 * (both case-insensitive).
 */
static const struct config_enum_entry build_device_values[] = {
	{"auto", HNSW_BUILD_DEVICE_AUTO, false},
	{"cpu", HNSW_BUILD_DEVICE_CPU, false},
	{"gpu", HNSW_BUILD_DEVICE_GPU, false},
	{NULL, 0, false}
};

static const struct config_enum_entry gpu_precision_values[] = {
	{"tf32", HIERINDEX_GPU_PRECISION_TF32, false},
	{"bf16", HIERINDEX_GPU_PRECISION_BF16, false},
	{"fp32", HIERINDEX_GPU_PRECISION_FP32, false},
	{"fp16", HIERINDEX_GPU_PRECISION_FP16, false},
	{NULL, 0, false}
};

/* build_device_values entry of a name, or NULL */
static const struct config_enum_entry *
find_build_device(const char *name)
{
	for (const struct config_enum_entry *entry = build_device_values;
		 entry->name != NULL; entry++)
	{
		if (pg_strcasecmp(entry->name, name) == 0)
			return entry;
	}
	return NULL;
}

static void report_bad_build_device(const char *value) pg_attribute_noreturn();

static void
report_bad_build_device(const char *value)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for index option \"build_device\": \"%s\"",
					value),
			 errdetail("Valid values are \"auto\", \"cpu\" and \"gpu\".")));
}

/*
 * validate_string_relopt of the index option build_device; NULL is its
 * default (not set: hierindex.build_device decides), checked at _PG_init.
 */
static void
validate_build_device(const char *value)
{
	if (value != NULL && find_build_device(value) == NULL)
		report_bad_build_device(value);
}

/*
 * The graph's options, m, ef_construction and build_device, for an access
 * method's reloption kind (hnsw's and matryoshka's).
 */
void
hnsw_define_graph_options(relopt_kind kind)
{
	add_int_reloption(kind, "m",
					  "Links per element on upper layers (2m on layer 0)",
					  HNSW_DEFAULT_M, HNSW_MIN_M, HNSW_MAX_M,
					  AccessExclusiveLock);
	add_int_reloption(kind, "ef_construction",
					  "Candidate list size while building the graph",
					  HNSW_DEFAULT_EF_CONSTRUCTION, HNSW_MIN_EF_CONSTRUCTION,
					  HNSW_MAX_EF_CONSTRUCTION, AccessExclusiveLock);
	add_string_reloption(kind, "build_device",
						 "Builder of the graph: auto, cpu or gpu (default: hierindex.build_device)",
						 NULL, validate_build_device, AccessExclusiveLock);
}

void
hnsw_init(void)
{
	hnsw_relopt_kind = add_reloption_kind();
	hnsw_define_graph_options(hnsw_relopt_kind);

	DefineCustomIntVariable("hnsw.ef_search",
							"Candidate list size of an hnsw index scan.",
							"Larger values find more of the true nearest neighbours, more slowly.",
							&hnsw_ef_search, HNSW_DEFAULT_EF_SEARCH,
							HNSW_MIN_EF_SEARCH, HNSW_MAX_EF_SEARCH,
							PGC_USERSET, 0, NULL, NULL, NULL);
	hnsw_define_scan_settings("hnsw", &hnsw_iterative_scan, HNSW_ITERATIVE_SCAN_OFF,
							  &hnsw_max_scan_tuples, &hnsw_scan_mem_multiplier);
	MarkGUCPrefixReserved("hnsw");

	DefineCustomIntVariable("hierindex.build_threads",
							"Threads of an in-memory index build (0: all cores).",
							NULL,
							&hierindex_build_threads, 0, 0, 1024,
							PGC_USERSET, 0, NULL, NULL, NULL);

	DefineCustomEnumVariable("hierindex.build_device",
							 "Builder of an index's graph when its build_device option is not set.",
							 "auto: the GPU when the GPU module loads, a device is present and the index has at least hierindex.gpu_min_rows elements, else the CPU; cpu; gpu (an error when it cannot).",
							 &hierindex_build_device, HNSW_BUILD_DEVICE_AUTO,
							 build_device_values, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("hierindex.gpu_device",
							"CUDA device number of GPU builds (0: the first).",
							NULL,
							&hierindex_gpu_device, 0, 0, 255,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("hierindex.gpu_min_rows",
							"Elements from which build_device auto builds on the GPU.",
							"Smaller graphs build on the CPU, where starting the GPU would cost more than it saves.",
							&hierindex_gpu_min_rows, 50000, 0, INT_MAX,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("hierindex.gpu_memory_limit",
							"GPU memory a GPU build may use (0: 90% of what is free).",
							"When the vectors do not fit, they are streamed through the GPU in blocks.",
							&hierindex_gpu_memory_limit, 0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomEnumVariable("hierindex.gpu_precision",
							 "Arithmetic of the GPU's candidate search: fp16, tf32, bf16 or fp32.",
							 "The kept neighbours are always re-scored in fp32.",
							 &hierindex_gpu_precision, HIERINDEX_GPU_PRECISION_FP16,
							 gpu_precision_values, PGC_USERSET, 0, NULL, NULL, NULL);
}

/*
 * Parse the options of kind `kind` into a struct of `size` bytes that begins
 * with HnswOptions, plus the `nextra` options of `extra` (matryoshka's).
 */
bytea *
hnsw_parse_graph_options(Datum reloptions, bool validate, relopt_kind kind,
						 Size size, const relopt_parse_elt *extra, int nextra)
{
	relopt_parse_elt table[3 + HNSW_MAX_EXTRA_OPTIONS] = {
		{"m", RELOPT_TYPE_INT, offsetof(HnswOptions, m)},
		{"ef_construction", RELOPT_TYPE_INT, offsetof(HnswOptions, ef_construction)},
		{"build_device", RELOPT_TYPE_STRING, offsetof(HnswOptions, build_device_offset)},
	};
	HnswOptions *options;

	Assert(nextra >= 0 && nextra <= HNSW_MAX_EXTRA_OPTIONS);
	for (int i = 0; i < nextra; i++)
		table[3 + i] = extra[i];
	options = (HnswOptions *) build_reloptions(reloptions, validate, kind, size,
											   table, 3 + nextra);

	/*
	 * Algorithm 4 picks m links out of ef_construction candidates; fewer than
	 * 2m candidates leave it nothing to choose from on layer 0.
	 */
	if (validate && options != NULL &&
		options->ef_construction < 2 * options->m)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("ef_construction must be greater than or equal to 2 * m"),
				 errdetail("ef_construction is %d and m is %d.",
						   options->ef_construction, options->m)));
	return (bytea *) options;
}

static bytea *
hnsw_options(Datum reloptions, bool validate)
{
	return hnsw_parse_graph_options(reloptions, validate, hnsw_relopt_kind,
									sizeof(HnswOptions), NULL, 0);
}

int
hnsw_option_m(Relation index)
{
	HnswOptions *options = (HnswOptions *) index->rd_options;

	return options ? options->m : HNSW_DEFAULT_M;
}

int
hnsw_option_ef_construction(Relation index)
{
	HnswOptions *options = (HnswOptions *) index->rd_options;

	return options ? options->ef_construction : HNSW_DEFAULT_EF_CONSTRUCTION;
}

HnswBuildDevice
hnsw_build_device(Relation index, bool *from_option)
{
	HnswOptions *options = (HnswOptions *) index->rd_options;

	*from_option = false;
	if (options != NULL && options->build_device_offset != 0)
	{
		const char *value = (const char *) options + options->build_device_offset;
		const struct config_enum_entry *entry = find_build_device(value);

		/* validated when set; a catalog edited by hand still gets the ERROR */
		if (entry == NULL)
			report_bad_build_device(value);
		*from_option = true;
		return (HnswBuildDevice) entry->val;
	}
	return (HnswBuildDevice) hierindex_build_device;
}

const char *
hnsw_build_device_name(HnswBuildDevice device)
{
	for (const struct config_enum_entry *entry = build_device_values;
		 entry->name != NULL; entry++)
	{
		if (entry->val == (int) device)
			return entry->name;
	}
	return "unknown";
}

int
hnsw_build_thread_count(void)
{
	return hierindex_build_threads > 0 ? hierindex_build_threads : omp_get_num_procs();
}

/*
 * The metric comes from support function 1 of the column's operator class,
 * so any operator class that names one of ours works, under any name.
 */
GraphMetric
hnsw_index_metric(Relation index)
{
	FmgrInfo   *procinfo = index_getprocinfo(index, 1, 1);
	int32		metric = DatumGetInt32(FunctionCall1(procinfo, PointerGetDatum(NULL)));

	if (metric < GRAPH_METRIC_L2 || metric > GRAPH_METRIC_L1)
		elog(ERROR, "support function 1 of index \"%s\" returned unknown metric %d",
			 RelationGetRelationName(index), metric);
	return (GraphMetric) metric;
}

PG_FUNCTION_INFO_V1(hierindex_metric_l2);
Datum
hierindex_metric_l2(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GRAPH_METRIC_L2);
}

PG_FUNCTION_INFO_V1(hierindex_metric_inner_product);
Datum
hierindex_metric_inner_product(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GRAPH_METRIC_INNER_PRODUCT);
}

PG_FUNCTION_INFO_V1(hierindex_metric_cosine);
Datum
hierindex_metric_cosine(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GRAPH_METRIC_COSINE);
}

PG_FUNCTION_INFO_V1(hierindex_metric_l1);
Datum
hierindex_metric_l1(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(GRAPH_METRIC_L1);
}

char *
hnsw_build_phase_name(int64 phase)
{
	switch (phase)
	{
		case PROGRESS_CREATEIDX_SUBPHASE_INITIALIZE:
			return "initializing";
		case HNSW_PHASE_LOAD:
			return "loading tuples";
		case HNSW_PHASE_GRAPH:
			return "building graph";
		case HNSW_PHASE_WRITE:
			return "writing pages";
		default:
			return NULL;
	}
}

/*
 * amvalidate: what the access method needs from an operator class, checked
 * in the catalogs (SELECT amvalidate(opclass oid); CREATE OPERATOR CLASS does
 * not call it).  The index only orders by distance, so every operator must
 * be an ORDER BY operator, strategy 1, (opcintype, opcintype) -> float8
 * sorted by a float8 btree family; the only support function is number 1,
 * (internal) -> int4, which names the metric.  Each problem is an INFO
 * message in the words PostgreSQL's own validators use, and the result is
 * false.
 */
bool
hnsw_validate(Oid opclassoid)
{
	bool		result = true;
	HeapTuple	classtup;
	Form_pg_opclass classform;
	Oid			opfamilyoid;
	Oid			opcintype;
	char	   *opclassname;
	char	   *amname;
	HeapTuple	familytup;
	char	   *opfamilyname;
	CatCList   *oprlist;
	CatCList   *proclist;
	bool		has_operator = false;
	bool		has_support = false;

	classtup = SearchSysCache1(CLAOID, ObjectIdGetDatum(opclassoid));
	if (!HeapTupleIsValid(classtup))
		elog(ERROR, "cache lookup failed for operator class %u", opclassoid);
	classform = (Form_pg_opclass) GETSTRUCT(classtup);
	opfamilyoid = classform->opcfamily;
	opcintype = classform->opcintype;
	opclassname = NameStr(classform->opcname);
	amname = get_am_name(classform->opcmethod);

	familytup = SearchSysCache1(OPFAMILYOID, ObjectIdGetDatum(opfamilyoid));
	if (!HeapTupleIsValid(familytup))
		elog(ERROR, "cache lookup failed for operator family %u", opfamilyoid);
	opfamilyname = NameStr(((Form_pg_opfamily) GETSTRUCT(familytup))->opfname);

	oprlist = SearchSysCacheList1(AMOPSTRATEGY, ObjectIdGetDatum(opfamilyoid));
	proclist = SearchSysCacheList1(AMPROCNUM, ObjectIdGetDatum(opfamilyoid));

	for (int i = 0; i < proclist->n_members; i++)
	{
		Form_pg_amproc procform = (Form_pg_amproc) GETSTRUCT(&proclist->members[i]->tuple);

		if (procform->amprocnum != 1)
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains function %s with invalid support number %d",
							opfamilyname, amname,
							format_procedure(procform->amproc),
							procform->amprocnum)));
			result = false;
			continue;
		}
		if (!check_amproc_signature(procform->amproc, INT4OID, true, 1, 1, INTERNALOID))
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains function %s with wrong signature for support number %d",
							opfamilyname, amname,
							format_procedure(procform->amproc),
							procform->amprocnum)));
			result = false;
			continue;
		}
		if (procform->amproclefttype == opcintype &&
			procform->amprocrighttype == opcintype)
			has_support = true;
	}

	for (int i = 0; i < oprlist->n_members; i++)
	{
		Form_pg_amop oprform = (Form_pg_amop) GETSTRUCT(&oprlist->members[i]->tuple);

		if (oprform->amopstrategy != 1)
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains operator %s with invalid strategy number %d",
							opfamilyname, amname,
							format_operator(oprform->amopopr),
							oprform->amopstrategy)));
			result = false;
			continue;
		}
		if (oprform->amoppurpose != AMOP_ORDER)
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains search operator %s, but it supports only ORDER BY operators",
							opfamilyname, amname,
							format_operator(oprform->amopopr))));
			result = false;
			continue;
		}
		if (!OidIsValid(oprform->amopsortfamily) ||
			!opfamily_can_sort_type(oprform->amopsortfamily, FLOAT8OID))
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains invalid ORDER BY specification for operator %s",
							opfamilyname, amname,
							format_operator(oprform->amopopr))));
			result = false;
			continue;
		}
		if (oprform->amoplefttype != opcintype ||
			oprform->amoprighttype != opcintype ||
			!check_amop_signature(oprform->amopopr, FLOAT8OID,
								  oprform->amoplefttype, oprform->amoprighttype))
		{
			ereport(INFO,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("operator family \"%s\" of access method %s contains operator %s with wrong signature",
							opfamilyname, amname,
							format_operator(oprform->amopopr))));
			result = false;
			continue;
		}
		has_operator = true;
	}

	if (!has_operator)
	{
		ereport(INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("operator class \"%s\" of access method %s is missing operator(s)",
						opclassname, amname)));
		result = false;
	}
	if (!has_support)
	{
		ereport(INFO,
				(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
				 errmsg("operator class \"%s\" of access method %s is missing support function %d",
						opclassname, amname, 1)));
		result = false;
	}

	ReleaseCatCacheList(proclist);
	ReleaseCatCacheList(oprlist);
	ReleaseSysCache(familytup);
	ReleaseSysCache(classtup);

	return result;
}

/*
 * The access method routine of hnsw; matryoshka starts from it and replaces
 * the phases it has its own of.
 */
void
hnsw_fill_am_routine(IndexAmRoutine *am)
{
	am->amstrategies = 0;
	am->amsupport = 1;
	am->amoptsprocnum = 0;
	am->amcanorder = false;
	am->amcanorderbyop = true;
	am->amcanbackward = false;
	am->amcanunique = false;
	am->amcanmulticol = false;
	am->amoptionalkey = true;
	am->amsearcharray = false;
	am->amsearchnulls = false;
	am->amstorage = false;
	am->amclusterable = false;
	am->ampredlocks = false;
	am->amcanparallel = false;
	am->amcaninclude = false;
	am->amusemaintenanceworkmem = true;	/* VACUUM's reachability bitmaps */
	am->amparallelvacuumoptions = VACUUM_OPTION_PARALLEL_BULKDEL;
	am->amkeytype = InvalidOid;

	am->ambuild = hnsw_build;
	am->ambuildempty = hnsw_build_empty;
	am->aminsert = hnsw_insert;
	am->ambulkdelete = hnsw_bulk_delete;
	am->amvacuumcleanup = hnsw_vacuum_cleanup;
	am->amcanreturn = NULL;
	am->amcostestimate = hnsw_cost_estimate;
	am->amoptions = hnsw_options;
	am->amproperty = NULL;
	am->ambuildphasename = hnsw_build_phase_name;
	am->amvalidate = hnsw_validate;
	am->amadjustmembers = NULL;
	am->ambeginscan = hnsw_begin_scan;
	am->amrescan = hnsw_rescan;
	am->amgettuple = hnsw_get_tuple;
	am->amgetbitmap = NULL;
	am->amendscan = hnsw_end_scan;
	am->ammarkpos = NULL;
	am->amrestrpos = NULL;
	am->amestimateparallelscan = NULL;
	am->aminitparallelscan = NULL;
	am->amparallelrescan = NULL;
}

PG_FUNCTION_INFO_V1(hnsw_handler);
Datum
hnsw_handler(PG_FUNCTION_ARGS)
{
	IndexAmRoutine *am = makeNode(IndexAmRoutine);

	hnsw_fill_am_routine(am);
	PG_RETURN_POINTER(am);
}
