/*
 * hnsw_build_gpu.c — the GPU phase of an hnsw bulk build.
 *
 * hnsw_build.c loads the heap into an in-memory Graph, then hands it here
 * before linking.  This file makes the choice of builder and, when the GPU
 * is chosen, runs it:
 *
 *   cpu   nothing to do here; the OpenMP builder links the graph.
 *   gpu   the GPU links it, or the build fails with an ERROR that says why
 *         (no module, the module's load error, an ABI mismatch, no device,
 *         the L1 metric, which the GPU builder lacks).
 *   auto  the GPU when the metric is supported, the graph has at least
 *         hierindex.gpu_min_rows elements, the module loads and a device
 *         answers (checked in that order, so small builds never open the
 *         module); otherwise the CPU, with the reason at DEBUG1 only: a
 *         plain CPU build shows no new messages.
 *
 * The GPU gets the Graph's own arrays (vectors, levels drawn by the engine,
 * the upper-layer offsets) and fills its neighbour lists in place; this file
 * then sets the entry point the way the CPU builder would (the first element
 * of the highest level).  Making every element reachable and writing pages
 * stay in hnsw_build.c, shared by both builders, so the page layer never
 * learns which one ran.
 *
 * Running out of GPU memory falls back to the CPU under auto (with a
 * NOTICE) and is an ERROR under gpu; every other failure of the module is an
 * ERROR with its message.  The module's output is checked before the writer
 * trusts it: a neighbour id out of range would otherwise send the writer
 * past its arrays.
 */
#include "postgres.h"

#include "utils/rel.h"

#include "gpu_module.h"
#include "hnsw/hnsw.h"

StaticAssertDecl(HIERINDEX_GPU_METRIC_L2 == GRAPH_METRIC_L2 &&
				 HIERINDEX_GPU_METRIC_INNER_PRODUCT == GRAPH_METRIC_INNER_PRODUCT &&
				 HIERINDEX_GPU_METRIC_COSINE == GRAPH_METRIC_COSINE &&
				 HIERINDEX_GPU_METRIC_L1 == GRAPH_METRIC_L1,
				 "gpu.h and graph.h number the metrics alike");

/* SQLSTATE of an ERROR for a module error code */
static int
gpu_error_sqlstate(int rc)
{
	switch (rc)
	{
		case HIERINDEX_GPU_ENOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case HIERINDEX_GPU_ENODEVICE:
			return ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
		case HIERINDEX_GPU_EUNSUPPORTED:
			return ERRCODE_FEATURE_NOT_SUPPORTED;
		case HIERINDEX_GPU_ECUDA:
			return ERRCODE_SYSTEM_ERROR;
		default:
			return ERRCODE_INTERNAL_ERROR;
	}
}

/* Empty every neighbour list of the graph's elements (before a CPU retry). */
static void
clear_links(Graph *graph)
{
	int			upper_slot = 1 + graph->params.m;

	memset(graph->links0, 0,
		   sizeof(int32) * (Size) graph->count * (1 + graph->m0));
	for (int64 i = 0; i < graph->count; i++)
	{
		if (graph->levels[i] > 0)
			memset(graph->upper_links + graph->upper_offset[i], 0,
				   sizeof(int32) * (Size) graph->levels[i] * upper_slot);
	}
}

/*
 * ERROR unless a neighbour list of `element` on `layer` has a count within
 * width and names other elements that reach that layer.
 */
static void
check_list(Relation index, const Graph *graph, const int32 *slot, int width,
		   int64 element, int layer)
{
	int64		n = graph->count;

	if (slot[0] < 0 || slot[0] > width)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("the GPU module returned an invalid graph for index \"%s\"",
						RelationGetRelationName(index)),
				 errdetail("Element " INT64_FORMAT " has %d neighbours on layer %d, at most %d allowed.",
						   element, slot[0], layer, width)));
	for (int j = 1; j <= slot[0]; j++)
	{
		if (slot[j] < 0 || slot[j] >= n || slot[j] == element ||
			graph->levels[slot[j]] < layer)
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("the GPU module returned an invalid graph for index \"%s\"",
							RelationGetRelationName(index)),
					 errdetail("Element " INT64_FORMAT " has neighbour %d on layer %d, which is not an element of that layer (" INT64_FORMAT " elements).",
							   element, slot[j], layer, n)));
	}
}

static void
check_links(Relation index, const Graph *graph)
{
	int			m = graph->params.m;

	for (int64 i = 0; i < graph->count; i++)
	{
		check_list(index, graph, graph->links0 + i * (1 + graph->m0),
				   graph->m0, i, 0);
		for (int layer = 1; layer <= graph->levels[i]; layer++)
			check_list(index, graph, graph->upper_links + graph->upper_offset[i] +
					   (int64) (layer - 1) * (1 + m),
					   m, i, layer);
	}
}

/*
 * Link the graph on the GPU.  Returns false only for the fallback to the CPU
 * (out of GPU memory under auto).
 */
static bool
run_gpu_build(Relation index, Graph *graph, const GpuModule *module,
			  HnswBuildDevice device, HnswGpuPhases *phases)
{
	HierindexGpuGraph gpu_graph;
	HierindexGpuOptions options;
	HierindexGpuStats stats;
	char		errbuf[1024];
	int			rc;
	instr_time	called;
	instr_time	returned;
	instr_time	checked;

	memset(&gpu_graph, 0, sizeof(gpu_graph));
	gpu_graph.n = graph->count;
	gpu_graph.dimensions = graph->params.dim;
	gpu_graph.metric = (int) graph->params.metric;
	gpu_graph.m = graph->params.m;
	gpu_graph.ef_construction = graph->params.ef_construction;
	gpu_graph.vectors = graph->vectors;
	gpu_graph.levels = graph->levels;
	gpu_graph.upper_offset = graph->upper_offset;
	gpu_graph.links0 = graph->links0;
	gpu_graph.upper_links = graph->upper_links;

	memset(&options, 0, sizeof(options));
	options.device = hierindex_gpu_device;
	options.memory_limit = (size_t) hierindex_gpu_memory_limit * 1024 * 1024;
	options.precision = hierindex_gpu_precision;
	memset(&stats, 0, sizeof(stats));

	INSTR_TIME_SET_CURRENT(called);
	rc = gpu_module_build_graph(module, &gpu_graph, &options, &stats,
								errbuf, sizeof(errbuf));
	INSTR_TIME_SET_CURRENT(returned);
	if (rc == HIERINDEX_GPU_ENOMEM && device == HNSW_BUILD_DEVICE_AUTO)
	{
		clear_links(graph);
		ereport(NOTICE,
				(errmsg("not enough GPU memory to build index \"%s\"; building on the CPU",
						RelationGetRelationName(index)),
				 errdetail("%s", errbuf)));
		return false;
	}
	if (rc != HIERINDEX_GPU_OK)
		ereport(ERROR,
				(errcode(gpu_error_sqlstate(rc)),
				 errmsg("could not build index \"%s\" on the GPU: %s",
						RelationGetRelationName(index), errbuf),
				 rc == HIERINDEX_GPU_ENOMEM ?
				 errhint("Set hierindex.gpu_memory_limit to stream the vectors through the GPU in smaller blocks, or set build_device to 'cpu'.") : 0));

	check_links(index, graph);
	graph_adopt_links(graph);
	INSTR_TIME_SET_CURRENT(checked);

	/* what the module's phases leave out: its set-up and clean-up, our checks */
	INSTR_TIME_SUBTRACT(checked, returned);
	INSTR_TIME_SUBTRACT(returned, called);
	elog(DEBUG1, "GPU build of \"%s\": module call %.2f s (its phases %.2f s), checking its graph %.2f s",
		 RelationGetRelationName(index), INSTR_TIME_GET_DOUBLE(returned),
		 stats.seconds[HIERINDEX_GPU_PHASE_TRANSFER] + stats.seconds[HIERINDEX_GPU_PHASE_KNN] +
		 stats.seconds[HIERINDEX_GPU_PHASE_PRUNE] + stats.seconds[HIERINDEX_GPU_PHASE_UPPER],
		 INSTR_TIME_GET_DOUBLE(checked));

	phases->transfer = stats.seconds[HIERINDEX_GPU_PHASE_TRANSFER];
	phases->knn = stats.seconds[HIERINDEX_GPU_PHASE_KNN];
	phases->prune = stats.seconds[HIERINDEX_GPU_PHASE_PRUNE];
	phases->upper = stats.seconds[HIERINDEX_GPU_PHASE_UPPER];
	stats.device_name[sizeof(stats.device_name) - 1] = '\0';
	strlcpy(phases->device_name,
			stats.device_name[0] ? stats.device_name : module->device.name,
			sizeof(phases->device_name));
	return true;
}

void
hnsw_gpu_warm_up(HnswBuildDevice device, GraphMetric metric, int64 estimated_elements)
{
	if (device == HNSW_BUILD_DEVICE_CPU || metric == GRAPH_METRIC_L1)
		return;
	if (device == HNSW_BUILD_DEVICE_AUTO && estimated_elements < hierindex_gpu_min_rows)
		return;
	gpu_module_open_soon(hierindex_gpu_device);
}

bool
hnsw_link_graph_on_gpu(Relation index, Graph *graph, HnswBuildDevice device,
					   bool device_from_option, HnswGpuPhases *phases)
{
	const GpuModule *module = NULL;
	const char *reason;
	int			sqlstate;

	if (device == HNSW_BUILD_DEVICE_CPU || graph->count == 0)
		return false;

	if (graph->params.metric == GRAPH_METRIC_L1)
	{
		reason = "The GPU builder does not support the L1 metric (vector_l1_ops).";
		sqlstate = ERRCODE_FEATURE_NOT_SUPPORTED;
	}
	else if (device == HNSW_BUILD_DEVICE_AUTO && graph->count < hierindex_gpu_min_rows)
	{
		reason = psprintf("The index has " INT64_FORMAT " elements, fewer than hierindex.gpu_min_rows (%d).",
						  graph->count, hierindex_gpu_min_rows);
		sqlstate = 0;
	}
	else
	{
		instr_time	opened;

		INSTR_TIME_SET_CURRENT(opened);
		module = gpu_module_open(hierindex_gpu_device, &reason);
		elog(DEBUG1, "GPU build of \"%s\": opening the module and probing the device took %.2f s",
			 RelationGetRelationName(index), hnsw_seconds_since(opened));
		sqlstate = ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
	}

	if (module == NULL)
	{
		if (device == HNSW_BUILD_DEVICE_GPU)
			ereport(ERROR,
					(errcode(sqlstate),
					 errmsg("cannot build index \"%s\" on the GPU",
							RelationGetRelationName(index)),
					 errdetail("%s", reason),
					 device_from_option ?
					 errhint("Set the index option build_device to 'cpu' or 'auto' to build it on the CPU.") :
					 errhint("Set hierindex.build_device to 'cpu' or 'auto' to build it on the CPU.")));
		elog(DEBUG1, "hnsw build of \"%s\" on the CPU: %s",
			 RelationGetRelationName(index), reason);
		return false;
	}
	return run_gpu_build(index, graph, module, device, phases);
}
