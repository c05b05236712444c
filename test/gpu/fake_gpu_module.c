/*
 * fake_gpu_module.c — a CPU stand-in for hierindex_gpu.so, to test the GPU
 * tests where there is no GPU.
 *
 * test_gpu_build.c can only fail usefully if its GPU path (dlopen, the
 * calls, the poisoning, the checks, the error and cancel cases) works; on a
 * machine without a GPU that path would never run before it meets the real
 * module on the device.  This module implements gpu.h's contract plainly on
 * the CPU so that `make check-fake` runs test_gpu_build --small through all
 * of it:
 *   knn          brute force in fp32, rows ascending (ties by id), padded
 *                with -1 / +inf; "streamed" in blocks of rows when the
 *                memory limit is below the size of the vectors, polling
 *                should_stop between blocks
 *   build_graph  on each layer, plainly what gpu.h describes: the exact
 *                ef_construction nearest elements of that layer, pruned
 *                with the neighbour heuristic to the layer's width, then
 *                united with the reverse edges and pruned again
 *   probe        a fixed pretend device
 * It is never installed and never built by the extension's Makefile.
 */
#include "gpu.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAKE_MEMORY ((size_t) 8 << 30)

int
hierindex_gpu_abi_version(void)
{
	return HIERINDEX_GPU_ABI_VERSION;
}

int
hierindex_gpu_probe(int device, HierindexGpuDeviceInfo *info, char *errbuf, size_t errlen)
{
	if (info == NULL)
	{
		snprintf(errbuf, errlen, "info is NULL");
		return HIERINDEX_GPU_EINVAL;
	}
	if (device != 0)
	{
		snprintf(errbuf, errlen, "no device %d (the fake has one)", device);
		return HIERINDEX_GPU_ENODEVICE;
	}
	memset(info, 0, sizeof(*info));
	info->device_count = 1;
	snprintf(info->name, sizeof(info->name), "fake CPU device");
	info->total_memory = FAKE_MEMORY;
	info->free_memory = FAKE_MEMORY;
	info->compute_major = 9;
	info->multiprocessors = 1;
	return HIERINDEX_GPU_OK;
}

static float
fake_distance(int metric, const float *a, const float *b, int d)
{
	float		sum = 0.0f;

	for (int i = 0; i < d; i++)
		sum += metric == HIERINDEX_GPU_METRIC_L2 ? (a[i] - b[i]) * (a[i] - b[i]) : a[i] * b[i];
	if (metric == HIERINDEX_GPU_METRIC_L2)
		return sum;
	return metric == HIERINDEX_GPU_METRIC_INNER_PRODUCT ? -sum : 1.0f - sum;
}

typedef struct Candidate
{
	float		distance;
	int32_t		id;
} Candidate;

static int
candidate_compare(const void *a, const void *b)
{
	const Candidate *x = a,
			   *y = b;

	if (x->distance != y->distance)
		return x->distance < y->distance ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/*
 * The k nearest of members[] (count of them) to member `self`, ascending,
 * written as ids and distances; returns how many exist.
 */
static int
nearest(const float *vectors, int d, int metric, const int32_t *members, int64_t count,
		int32_t self, int k, Candidate *scratch)
{
	int64_t		found = 0;

	for (int64_t i = 0; i < count; i++)
		if (members[i] != self)
		{
			scratch[found].distance = fake_distance(metric, vectors + (int64_t) self * d,
													vectors + (int64_t) members[i] * d, d);
			scratch[found++].id = members[i];
		}
	qsort(scratch, found, sizeof(Candidate), candidate_compare);
	return (int) (found < k ? found : k);
}

static int
check_common(int64_t n, int d, int metric, const HierindexGpuOptions *options,
			 char *errbuf, size_t errlen)
{
	if (options == NULL || n < 0 || d < 1 || metric < 0 || metric > HIERINDEX_GPU_METRIC_L1 ||
		options->precision < 0 || options->precision > HIERINDEX_GPU_PRECISION_FP16)
	{
		snprintf(errbuf, errlen, "bad arguments");
		return HIERINDEX_GPU_EINVAL;
	}
	if (options->device != 0)
	{
		snprintf(errbuf, errlen, "no device %d", options->device);
		return HIERINDEX_GPU_ENODEVICE;
	}
	if (metric == HIERINDEX_GPU_METRIC_L1)
	{
		snprintf(errbuf, errlen, "l1 is not supported on the GPU");
		return HIERINDEX_GPU_EUNSUPPORTED;
	}
	return HIERINDEX_GPU_OK;
}

static int
stop_requested(const HierindexGpuOptions *options, char *errbuf, size_t errlen)
{
	if (options->should_stop && options->should_stop(options->should_stop_arg))
	{
		snprintf(errbuf, errlen, "canceled");
		return 1;
	}
	return 0;
}

int
hierindex_gpu_knn(const float *vectors, int64_t n, int dimensions, int metric, int k,
				  const HierindexGpuOptions *options, int32_t *ids, float *distances,
				  HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	int			rc = check_common(n, dimensions, metric, options, errbuf, errlen);
	int32_t    *members;
	Candidate  *scratch;
	int64_t		blocks = 1,
				rows_per_block;

	if (rc != HIERINDEX_GPU_OK)
		return rc;
	if (vectors == NULL || ids == NULL || distances == NULL || k < 1)
	{
		snprintf(errbuf, errlen, "bad arguments");
		return HIERINDEX_GPU_EINVAL;
	}
	if (options->memory_limit > 0 && (size_t) n * dimensions * sizeof(float) > options->memory_limit)
		blocks = (int64_t) ((size_t) n * dimensions * sizeof(float) / options->memory_limit) + 1;
	rows_per_block = (n + blocks - 1) / blocks;
	members = malloc(sizeof(int32_t) * (n > 0 ? n : 1));
	scratch = malloc(sizeof(Candidate) * (n > 0 ? n : 1));
	if (members == NULL || scratch == NULL)
	{
		free(members);
		free(scratch);
		snprintf(errbuf, errlen, "out of memory");
		return HIERINDEX_GPU_ENOMEM;
	}
	for (int64_t i = 0; i < n; i++)
		members[i] = (int32_t) i;
	for (int64_t row = 0; row < n; row++)
	{
		int			found;

		if (row % (rows_per_block > 0 ? rows_per_block : 1) == 0 &&
			stop_requested(options, errbuf, errlen))
		{
			rc = HIERINDEX_GPU_ECANCELED;
			break;
		}
		found = nearest(vectors, dimensions, metric, members, n, (int32_t) row, k, scratch);
		for (int j = 0; j < k; j++)
		{
			ids[row * k + j] = j < found ? scratch[j].id : -1;
			distances[row * k + j] = j < found ? scratch[j].distance : INFINITY;
		}
	}
	if (stats)
	{
		memset(stats, 0, sizeof(*stats));
		stats->column_blocks = blocks;
	}
	free(members);
	free(scratch);
	return rc;
}

/*
 * The neighbour heuristic over candidates sorted ascending: keep one only if
 * it is nearer to the base than to every one kept.  Returns how many kept
 * (moved to the front of cand[]).
 */
static int
heuristic(const HierindexGpuGraph *graph, Candidate *cand, int count, int width)
{
	int			kept = 0;
	int			d = graph->dimensions;

	for (int i = 0; i < count && kept < width; i++)
	{
		int			good = 1;

		for (int j = 0; j < kept && good; j++)
			good = fake_distance(graph->metric, graph->vectors + (int64_t) cand[i].id * d,
								 graph->vectors + (int64_t) cand[j].id * d, d) > cand[i].distance;
		if (good)
			cand[kept++] = cand[i];
	}
	return kept;
}

static int32_t *
slot_of(HierindexGpuGraph *graph, int32_t id, int layer)
{
	if (layer == 0)
		return graph->links0 + (int64_t) id * (1 + 2 * graph->m);
	return graph->upper_links + graph->upper_offset[id] + (int64_t) (layer - 1) * (1 + graph->m);
}

/* One layer: k-NN, heuristic, reverse edges, heuristic again. */
static void
build_layer(HierindexGpuGraph *graph, int layer, const int32_t *members, int64_t count,
			Candidate *scratch)
{
	int			width = layer == 0 ? 2 * graph->m : graph->m;
	int			d = graph->dimensions;
	int64_t		n = graph->n;
	int		   *reverse_count = calloc(n, sizeof(int));
	int32_t    *reverse = malloc(sizeof(int32_t) * n * width);	/* first width who chose it */

	for (int64_t i = 0; i < count; i++)
	{
		int32_t    *slot = slot_of(graph, members[i], layer);
		int			found = nearest(graph->vectors, d, graph->metric, members, count,
									members[i], graph->ef_construction, scratch);

		found = heuristic(graph, scratch, found, width);
		slot[0] = found;
		for (int j = 0; j < found; j++)
		{
			int32_t		other = scratch[j].id;

			slot[1 + j] = other;
			if (reverse_count[other] < width)
				reverse[(int64_t) other * width + reverse_count[other]++] = members[i];
		}
	}
	for (int64_t i = 0; i < count; i++)
	{
		int32_t		id = members[i];
		int32_t    *slot = slot_of(graph, id, layer);
		int			total = 0;

		for (int j = 0; j < slot[0]; j++)
			scratch[total++].id = slot[1 + j];
		for (int j = 0; j < reverse_count[id]; j++)
		{
			int			seen = 0;

			for (int t = 0; t < total && !seen; t++)
				seen = scratch[t].id == reverse[(int64_t) id * width + j];
			if (!seen)
				scratch[total++].id = reverse[(int64_t) id * width + j];
		}
		for (int t = 0; t < total; t++)
			scratch[t].distance = fake_distance(graph->metric, graph->vectors + (int64_t) id * d,
												graph->vectors + (int64_t) scratch[t].id * d, d);
		qsort(scratch, total, sizeof(Candidate), candidate_compare);
		slot[0] = heuristic(graph, scratch, total, width);
		for (int j = 0; j < slot[0]; j++)
			slot[1 + j] = scratch[j].id;
	}
	free(reverse_count);
	free(reverse);
}

int
hierindex_gpu_build_graph(HierindexGpuGraph *graph, const HierindexGpuOptions *options,
						  HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	int			rc;
	int			top = 0;
	int32_t    *members;
	Candidate  *scratch;

	if (graph == NULL)
	{
		snprintf(errbuf, errlen, "graph is NULL");
		return HIERINDEX_GPU_EINVAL;
	}
	rc = check_common(graph->n, graph->dimensions, graph->metric, options, errbuf, errlen);
	if (rc != HIERINDEX_GPU_OK)
		return rc;
	if (graph->m < 2 || graph->m > 100 || graph->ef_construction < 1 || graph->vectors == NULL ||
		graph->levels == NULL || graph->upper_offset == NULL || graph->links0 == NULL)
	{
		snprintf(errbuf, errlen, "bad arguments");
		return HIERINDEX_GPU_EINVAL;
	}
	members = malloc(sizeof(int32_t) * (graph->n > 0 ? graph->n : 1));
	/* room for a list and all its reverse edges */
	scratch = malloc(sizeof(Candidate) * (graph->n > 0 ? graph->n : 1) * 2 + 1000);
	if (members == NULL || scratch == NULL)
	{
		free(members);
		free(scratch);
		snprintf(errbuf, errlen, "out of memory");
		return HIERINDEX_GPU_ENOMEM;
	}
	for (int64_t i = 0; i < graph->n; i++)
		if (graph->levels[i] > top)
			top = graph->levels[i];
	for (int layer = 0; layer <= top; layer++)
	{
		int64_t		count = 0;

		if (stop_requested(options, errbuf, errlen))
		{
			rc = HIERINDEX_GPU_ECANCELED;
			break;
		}
		for (int64_t i = 0; i < graph->n; i++)
			if (graph->levels[i] >= layer)
				members[count++] = (int32_t) i;
		build_layer(graph, layer, members, count, scratch);
	}
	if (stats)
		memset(stats, 0, sizeof(*stats));
	free(members);
	free(scratch);
	return rc;
}
