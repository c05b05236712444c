/*
 * gpu_graph.cu — the HNSW graph on the GPU, as insertion would build it with
 * an exact search.
 *
 * An incrementally built HNSW graph owes its long links to insertion order:
 * an element inserted early links to the few elements already there, which
 * are far apart, and keeps those links while later elements fill in the
 * short ones.  A graph pruned from the exact k-NN lists of all elements has
 * only the short ones, and on large clusters its recall falls far behind
 * (0.77 at ef_search 100 on 1M x 768 with 1000-point clusters, where
 * insertion reaches 0.94).  So this builder draws a random insertion order
 * (fixed seed: the same input gives the same graph) and gives each element
 * what an insertion with a perfect search would have found: its nearest
 * among the elements inserted before it.  Every layer is built the same way
 * from its own elements (all of them on layer 0, those of level >= l on
 * layer l; the levels are the caller's, drawn as the CPU builder draws
 * them):
 *
 *   1. the exact k nearest earlier elements, k = CANDIDATES_PER_EF x
 *      ef_construction (gpu_knn.cu with earlier_only).  The vectors sit on
 *      the device in insertion order, so "earlier" is "a lower row" and the
 *      distance products stop at the diagonal: half the work of a full k-NN
 *      graph.  A wider k than an insertion's ef_construction costs little here
 *      and makes a better graph (recall@10 at ef_search 40 on 1M x 768 in
 *      test/gpu/quality.sh: 0.931 with 2 ef_construction candidates, 0.956
 *      with 3; with 4, 0.979 in test/bench/gpu_bench.sh, whose queries are
 *      easier);
 *   2. on layer 0, the element's layer-1 links join its candidates;
 *   3. Algorithm 4 of the paper on each list, down to the layer's width (2m
 *      on layer 0, m above): a candidate is kept only if it is closer to the
 *      element than to every neighbour kept before it;
 *   4. reverse edges: each element's list united with the elements that
 *      kept it (the closest `width` of them), and Algorithm 4 again on the
 *      union when it holds more than `width` (as an insertion keeps every
 *      back link while a list has room).  This is what insertion does when
 *      it links back to the new element's neighbours, done for all elements
 *      at once.
 *
 * Step 3 is a block per element; the kept neighbours' vectors wait in
 * shared memory when they fit, so each candidate costs one read of its own
 * vector and |kept| distance sums out of shared memory.  Step 4 sorts all
 * kept edges by target (cub radix sort of (target, distance) keys), so each
 * element finds the elements that chose it in one contiguous run.
 *
 * Everything stays on the device between steps; only the final lists come
 * back, numbered by insertion position and mapped back to element ids on the
 * host.  The vectors must fit on the device (one fp32 copy plus the k-NN
 * work); when they do not, the build stops with HIERINDEX_GPU_ENOMEM and the
 * caller falls back to the CPU builder.
 */
#include "gpu_internal.cuh"

#include <cub/cub.cuh>

#include <algorithm>
#include <random>
#include <string.h>

#define PRUNE_THREADS	128
#define PRUNE_WARPS		8		/* candidates tested at once by prune_round_kernel */
#define PRUNE_MAX_SLICE	32		/* its dimensions per lane at most: d <= 1024 */
/* the pruning kernels' static shared arrays (kept ids and distances, flags), at most */
#define PRUNE_STATIC_SHARED	(2 * MAX_WIDTH * sizeof(float) + 64)
#define UNION_THREADS	128
#define MAX_WIDTH		200		/* 2m for the largest m (100) */
#define CANDIDATES_PER_EF	4	/* k = 4 ef_construction earlier neighbours */
#define MAX_CANDIDATES	1024	/* a k-NN shortlist of 2k stays within its sort */
#define INSERTION_SEED	0x68696572696e6478ULL

/* ------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------ */

/* One element's output row: the first `count` of a list, then -1 / +inf padding. */
__device__ __forceinline__ void
write_pruned(const int32_t *ids, const float *distances, int count, int width,
			 int32_t *out_ids, float *out_distances, int *out_count)
{
	for (int i = threadIdx.x; i < width; i += blockDim.x)
	{
		out_ids[i] = i < count ? ids[i] : -1;
		out_distances[i] = i < count ? distances[i] : INFINITY;
	}
	if (threadIdx.x == 0)
		*out_count = count;
}

/*
 * Algorithm 4 for element blockIdx.x over its candidates (ascending distance,
 * count given or up to the first -1), keeping at most `width`.
 */
template <bool KEPT_IN_SHARED>
__global__ void __launch_bounds__(PRUNE_THREADS)
prune_kernel(const float *vectors, int d, int metric,
			 const int32_t *candidate_ids, const float *candidate_distances,
			 int candidate_stride, const int *candidate_counts, int width, int limit,
			 bool keep_if_fits, int32_t *out_ids, float *out_distances, int *out_counts)
{
	extern __shared__ float prune_shared[];
	float	   *candidate = prune_shared;
	float	   *kept_vectors = prune_shared + d;
	__shared__ int32_t kept_ids[MAX_WIDTH];
	__shared__ float kept_distances[MAX_WIDTH];
	__shared__ int rejected;
	int64_t		element = blockIdx.x;
	int			warp = threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	int			warps = blockDim.x / 32;
	int			count = candidate_counts != NULL ? candidate_counts[element] : candidate_stride;
	const int32_t *ids = candidate_ids + element * candidate_stride;
	const float *distances = candidate_distances + element * candidate_stride;
	int			kept = 0;

	/* as an insertion treats a neighbour's list: prune only when it overflows */
	if (keep_if_fits && count <= width)
	{
		write_pruned(ids, distances, count, width, out_ids + element * width,
					 out_distances + element * width, out_counts + element);
		return;
	}

	for (int i = 0; i < count && kept < limit; i++)
	{
		int32_t		id = ids[i];
		float		distance = distances[i];
		const float *vector = vectors + (int64_t) id * d;

		if (id < 0)
			break;
		for (int t = threadIdx.x; t < d; t += blockDim.x)
			candidate[t] = vector[t];
		if (threadIdx.x == 0)
			rejected = 0;
		__syncthreads();

		for (int r = warp; r < kept; r += warps)
		{
			const float *other = KEPT_IN_SHARED ? kept_vectors + (int64_t) r * d :
				vectors + (int64_t) kept_ids[r] * d;
			float		sum = 0.0f;

			for (int t = lane; t < d; t += 32)
				sum = gpu_distance_term(metric, candidate[t], other[t], sum);
			sum = gpu_warp_sum(sum);
			if (lane == 0 && gpu_finish_distance(metric, sum) < distance)
				rejected = 1;
		}
		__syncthreads();

		if (!rejected)
		{
			if (KEPT_IN_SHARED)
				for (int t = threadIdx.x; t < d; t += blockDim.x)
					kept_vectors[(int64_t) kept * d + t] = candidate[t];
			if (threadIdx.x == 0)
			{
				kept_ids[kept] = id;
				kept_distances[kept] = distance;
			}
			kept++;
		}
		__syncthreads();
	}

	__syncthreads();
	write_pruned(kept_ids, kept_distances, kept, width, out_ids + element * width,
				 out_distances + element * width, out_counts + element);
}

/* a float's bits as an unsigned key that sorts in the float's order */
__device__ __forceinline__ uint32_t
ordered_bits(float value)
{
	uint32_t	bits = __float_as_uint(value);

	return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
}

__device__ __forceinline__ float
ordered_float(uint32_t key)
{
	return __uint_as_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

/* one entry per list slot: (target, distance) -> source; empty slots sort last */
__global__ void
reverse_edges_kernel(const int32_t *ids, const float *distances, const int *counts,
					 int64_t n, int width, unsigned long long *keys, int32_t *sources,
					 int *in_degree)
{
	int64_t		slot = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
	int64_t		element;

	if (slot >= n * width)
		return;
	element = slot / width;
	if (slot % width < counts[element])
	{
		int32_t		target = ids[slot];

		keys[slot] = ((unsigned long long) (uint32_t) target << 32) |
			ordered_bits(distances[slot]);
		sources[slot] = (int32_t) element;
		atomicAdd(&in_degree[target], 1);
	}
	else
	{
		keys[slot] = ~0ULL;
		sources[slot] = -1;
	}
}

/*
 * The elements that kept element blockIdx.x, the closest `width` of them, as
 * a list (ascending distance) of their own: the run of the sorted edges whose
 * target it is.
 */
__global__ void
gather_reverse_kernel(const unsigned long long *sorted_keys, const int32_t *sorted_sources,
					  const int *in_offset, const int *in_degree, int64_t n, int width,
					  int32_t *ids, float *distances, int *counts)
{
	int64_t		element = (int64_t) blockIdx.x * blockDim.x + threadIdx.x;
	int			first;
	int			count;

	if (element >= n)
		return;
	first = in_offset[element];
	count = min(in_degree[element], width);
	for (int j = 0; j < count; j++)
	{
		ids[element * width + j] = sorted_sources[first + j];
		distances[element * width + j] = ordered_float((uint32_t) sorted_keys[first + j]);
	}
	counts[element] = count;
}

/*
 * Two candidate lists of element blockIdx.x united: sorted by (distance, id),
 * each id once (its first place), at most a_stride + b_stride entries.
 * A NULL count array: that list is padded with -1 ids (and +inf).
 */
__global__ void __launch_bounds__(UNION_THREADS)
merge_lists_kernel(const int32_t *a_ids, const float *a_distances, const int *a_counts,
				   int a_stride, const int32_t *b_ids, const float *b_distances,
				   const int *b_counts, int b_stride, int sort_size,
				   int32_t *out_ids, float *out_distances, int *out_counts)
{
	extern __shared__ unsigned char merge_shared[];
	float	   *keys = (float *) merge_shared;
	int32_t    *members = (int32_t *) (keys + sort_size);
	unsigned char *duplicate = (unsigned char *) (members + sort_size);
	int64_t		element = blockIdx.x;
	int			a_count = a_counts != NULL ? a_counts[element] : a_stride;
	int			b_count = b_counts != NULL ? b_counts[element] : b_stride;
	int			out_stride = a_stride + b_stride;

	for (int i = threadIdx.x; i < sort_size; i += blockDim.x)
	{
		keys[i] = INFINITY;
		members[i] = -1;
		if (i < a_count)
		{
			members[i] = a_ids[element * a_stride + i];
			if (members[i] >= 0)
				keys[i] = a_distances[element * a_stride + i];
		}
		else if (i >= a_stride && i < a_stride + b_count)
		{
			members[i] = b_ids[element * b_stride + i - a_stride];
			keys[i] = b_distances[element * b_stride + i - a_stride];
		}
	}
	__syncthreads();
	gpu_block_sort(keys, members, sort_size);

	/* an element in both lists appears twice: keep its first place */
	for (int i = threadIdx.x; i < out_stride; i += blockDim.x)
	{
		unsigned char seen = members[i] < 0;

		for (int j = 0; j < i && !seen; j++)
			seen = members[j] == members[i];
		duplicate[i] = seen;
	}
	__syncthreads();
	if (threadIdx.x == 0)
	{
		int			kept = 0;

		for (int i = 0; i < out_stride; i++)
		{
			if (duplicate[i])
				continue;
			out_ids[element * out_stride + kept] = members[i];
			out_distances[element * out_stride + kept] = keys[i];
			kept++;
		}
		out_counts[element] = kept;
	}
}

/*
 * The same Algorithm 4, faster when the kept vectors fit in shared memory and
 * d <= 32 * SLICE: the warps of the block test consecutive candidates
 * at once, each holding its candidate in registers (lane l has dimensions l,
 * l + 32, ...) and stopping at the first kept neighbour closer than the
 * element.  The first candidate of the round that survives is kept and the
 * next round starts right after it (later survivors were not tested against
 * it); a round without one moves on by a round's width.  Same decisions, in
 * the same order, with the same sums as prune_kernel (same lane slices, same
 * warp sum), in far fewer block-wide steps than one candidate at a time.
 */
template <int SLICE>
__global__ void __launch_bounds__(PRUNE_WARPS * 32)
prune_round_kernel(const float *vectors, int d, int metric,
				   const int32_t *candidate_ids, const float *candidate_distances,
				   int candidate_stride, const int *candidate_counts, int width, int limit,
				   bool keep_if_fits, int32_t *out_ids, float *out_distances, int *out_counts)
{
	extern __shared__ float round_kept_vectors[];	/* limit x d */
	__shared__ int32_t kept_ids[MAX_WIDTH];
	__shared__ float kept_distances[MAX_WIDTH];
	__shared__ unsigned char verdict[PRUNE_WARPS];	/* 0 kept, 1 rejected, 2 past the end */
	int64_t		element = blockIdx.x;
	int			warp = threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	int			count = candidate_counts != NULL ? candidate_counts[element] : candidate_stride;
	const int32_t *ids = candidate_ids + element * candidate_stride;
	const float *distances = candidate_distances + element * candidate_stride;
	int			kept = 0;
	int			next = 0;

	if (keep_if_fits && count <= width)
	{
		write_pruned(ids, distances, count, width, out_ids + element * width,
					 out_distances + element * width, out_counts + element);
		return;
	}

	while (next < count && kept < limit)
	{
		int			mine = next + warp;
		unsigned char outcome = 2;

		if (mine < count && ids[mine] >= 0)
		{
			const float *vector = vectors + (int64_t) ids[mine] * d;
			float		distance = distances[mine];
			float		slice[SLICE];

			outcome = 0;
#pragma unroll
			for (int s = 0; s < SLICE; s++)
				slice[s] = lane + 32 * s < d ? vector[lane + 32 * s] : 0.0f;
			for (int r = 0; r < kept && outcome == 0; r++)
			{
				const float *other = round_kept_vectors + (int64_t) r * d;
				float		sum = 0.0f;

#pragma unroll
				for (int s = 0; s < SLICE; s++)
					if (lane + 32 * s < d)
						sum = gpu_distance_term(metric, slice[s], other[lane + 32 * s], sum);
				sum = gpu_warp_sum(sum);
				if (gpu_finish_distance(metric, sum) < distance)
					outcome = 1;
			}
		}
		if (lane == 0)
			verdict[warp] = outcome;
		__syncthreads();

		{
			int			survivor = -1;
			bool		ended = false;

			for (int w = 0; w < PRUNE_WARPS && survivor < 0 && !ended; w++)
			{
				if (verdict[w] == 2)
					ended = true;
				else if (verdict[w] == 0)
					survivor = w;
			}
			if (survivor >= 0)
			{
				int			chosen = next + survivor;
				const float *vector = vectors + (int64_t) ids[chosen] * d;

				for (int t = threadIdx.x; t < d; t += blockDim.x)
					round_kept_vectors[(int64_t) kept * d + t] = vector[t];
				if (threadIdx.x == 0)
				{
					kept_ids[kept] = ids[chosen];
					kept_distances[kept] = distances[chosen];
				}
				kept++;
				next = chosen + 1;
			}
			else if (ended)
				next = count;
			else
				next += PRUNE_WARPS;
		}
		__syncthreads();
	}

	__syncthreads();
	write_pruned(kept_ids, kept_distances, kept, width, out_ids + element * width,
				 out_distances + element * width, out_counts + element);
}

/* ------------------------------------------------------------------------
 * Host side
 * ------------------------------------------------------------------------ */

/* the signature every pruning kernel shares */
typedef void (*PruneKernel) (const float *, int, int, const int32_t *, const float *, int,
							 const int *, int, int, bool, int32_t *, float *, int *);

/* One pruning kernel, a block per element, with `shared` bytes of dynamic shared memory. */
static int
launch_prune(GpuContext *ctx, PruneKernel kernel, int threads, size_t shared,
			 const float *vectors, int64_t n, int d, int metric, const int32_t *candidate_ids,
			 const float *candidate_distances, int stride, const int *candidate_counts,
			 int width, int limit, bool keep_if_fits, int32_t *out_ids, float *out_distances,
			 int *out_counts)
{
	/* always: static shared arrays count against the 48 KB default too */
	GPU_CHECK(ctx, cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
										(int) shared));
	kernel<<<gpu_blocks(n, 1), threads, shared, ctx->stream>>>(
		vectors, d, metric, candidate_ids, candidate_distances, stride, candidate_counts,
		width, limit, keep_if_fits, out_ids, out_distances, out_counts);
	GPU_CHECK_LAUNCH(ctx);
	return HIERINDEX_GPU_OK;
}

/*
 * Algorithm 4 for every element, keeping at most `limit` (<= width) in rows
 * of `width`: prune_round_kernel when d <= 1024 and the kept vectors fit in
 * shared memory, else prune_kernel (its kept vectors in shared memory when
 * they fit).
 */
static int
prune(GpuContext *ctx, const float *vectors, int64_t n, int d, int metric,
	  const int32_t *candidate_ids, const float *candidate_distances, int stride,
	  const int *candidate_counts, int width, int limit, bool keep_if_fits,
	  int32_t *out_ids, float *out_distances, int *out_counts)
{
	size_t		kept_in_shared = sizeof(float) * (size_t) d * (width + 1);
	size_t		round_shared = sizeof(float) * (size_t) d * limit;

	if (d <= 32 * PRUNE_MAX_SLICE && round_shared + PRUNE_STATIC_SHARED <= ctx->shared_memory_optin)
	{
		int			slice = (d + 31) / 32;
		PruneKernel kernel = slice <= 4 ? prune_round_kernel<4> :
			slice <= 8 ? prune_round_kernel<8> :
			slice <= 16 ? prune_round_kernel<16> :
			slice <= 24 ? prune_round_kernel<24> : prune_round_kernel<32>;

		return launch_prune(ctx, kernel, PRUNE_WARPS * 32, round_shared, vectors, n, d, metric,
							candidate_ids, candidate_distances, stride, candidate_counts, width,
							limit, keep_if_fits, out_ids, out_distances, out_counts);
	}
	if (kept_in_shared + PRUNE_STATIC_SHARED <= ctx->shared_memory_optin)
		return launch_prune(ctx, prune_kernel<true>, PRUNE_THREADS, kept_in_shared, vectors, n,
							d, metric, candidate_ids, candidate_distances, stride,
							candidate_counts, width, limit, keep_if_fits, out_ids,
							out_distances, out_counts);
	return launch_prune(ctx, prune_kernel<false>, PRUNE_THREADS, sizeof(float) * d, vectors, n,
						d, metric, candidate_ids, candidate_distances, stride, candidate_counts,
						width, limit, keep_if_fits, out_ids, out_distances, out_counts);
}

/* out (stride a_stride + b_stride) = the union of lists a and b */
static int
merge_lists(GpuContext *ctx, int64_t n, const int32_t *a_ids, const float *a_distances,
			const int *a_counts, int a_stride, const int32_t *b_ids, const float *b_distances,
			const int *b_counts, int b_stride, int32_t *out_ids, float *out_distances,
			int *out_counts)
{
	int			sort_size = gpu_next_power_of_two(a_stride + b_stride);
	size_t		shared = (size_t) sort_size * (sizeof(float) + sizeof(int32_t) + 1);

	merge_lists_kernel<<<gpu_blocks(n, 1), UNION_THREADS, shared, ctx->stream>>>(
		a_ids, a_distances, a_counts, a_stride, b_ids, b_distances, b_counts, b_stride,
		sort_size, out_ids, out_distances, out_counts);
	GPU_CHECK_LAUNCH(ctx);
	return HIERINDEX_GPU_OK;
}

/*
 * The reverse-edge union and second pruning: (ids, distances, counts) in,
 * replaced by the final lists.
 */
static int
add_reverse_edges(GpuContext *ctx, const float *vectors, int64_t n, int d, int metric,
				  int width, int32_t *ids, float *distances, int *counts)
{
	int64_t		slots = n * width;
	unsigned long long *keys[2];
	int32_t    *sources[2];
	int		   *in_degree;
	int		   *in_offset;
	int32_t    *reverse_ids;
	float	   *reverse_distances;
	int		   *reverse_counts;
	int32_t    *union_ids;
	float	   *union_distances;
	int		   *union_counts;
	void	   *temp = NULL;
	size_t		sort_temp = 0;
	size_t		scan_temp = 0;

	if (slots > INT32_MAX)
		return gpu_fail(ctx, HIERINDEX_GPU_EINVAL, "too many links for one sort (%lld)",
						(long long) slots);
	for (int i = 0; i < 2; i++)
	{
		GPU_TRY(gpu_alloc(ctx, (void **) &keys[i], sizeof(unsigned long long) * slots, "edge keys"));
		GPU_TRY(gpu_alloc(ctx, (void **) &sources[i], sizeof(int32_t) * slots, "edge sources"));
	}
	GPU_TRY(gpu_alloc(ctx, (void **) &in_degree, sizeof(int) * n, "in-degrees"));
	GPU_TRY(gpu_alloc(ctx, (void **) &in_offset, sizeof(int) * n, "in-offsets"));
	GPU_CHECK(ctx, cudaMemsetAsync(in_degree, 0, sizeof(int) * n, ctx->stream));

	reverse_edges_kernel<<<gpu_blocks(slots, 256), 256, 0, ctx->stream>>>(
		ids, distances, counts, n, width, keys[0], sources[0], in_degree);
	GPU_CHECK_LAUNCH(ctx);

	{
		cub::DoubleBuffer<unsigned long long> key_buffer(keys[0], keys[1]);
		cub::DoubleBuffer<int32_t> value_buffer(sources[0], sources[1]);

		GPU_CHECK(ctx, cub::DeviceRadixSort::SortPairs(NULL, sort_temp, key_buffer, value_buffer,
													   (int) slots, 0, 64, ctx->stream));
		GPU_CHECK(ctx, cub::DeviceScan::ExclusiveSum(NULL, scan_temp, in_degree, in_offset,
													 (int) n, ctx->stream));
		GPU_TRY(gpu_alloc(ctx, &temp, std::max(sort_temp, scan_temp), "sort scratch"));
		GPU_CHECK(ctx, cub::DeviceRadixSort::SortPairs(temp, sort_temp, key_buffer, value_buffer,
													   (int) slots, 0, 64, ctx->stream));
		GPU_CHECK(ctx, cub::DeviceScan::ExclusiveSum(temp, scan_temp, in_degree, in_offset,
													 (int) n, ctx->stream));
		gpu_free(ctx, temp);

		GPU_TRY(gpu_alloc(ctx, (void **) &reverse_ids, sizeof(int32_t) * n * width, "reverse ids"));
		GPU_TRY(gpu_alloc(ctx, (void **) &reverse_distances, sizeof(float) * n * width,
						  "reverse distances"));
		GPU_TRY(gpu_alloc(ctx, (void **) &reverse_counts, sizeof(int) * n, "reverse counts"));
		gather_reverse_kernel<<<gpu_blocks(n, 128), 128, 0, ctx->stream>>>(
			key_buffer.Current(), value_buffer.Current(), in_offset, in_degree, n, width,
			reverse_ids, reverse_distances, reverse_counts);
		GPU_CHECK_LAUNCH(ctx);
		GPU_TRY(gpu_alloc(ctx, (void **) &union_ids, sizeof(int32_t) * n * 2 * width, "union ids"));
		GPU_TRY(gpu_alloc(ctx, (void **) &union_distances, sizeof(float) * n * 2 * width,
						  "union distances"));
		GPU_TRY(gpu_alloc(ctx, (void **) &union_counts, sizeof(int) * n, "union counts"));
		GPU_TRY(merge_lists(ctx, n, ids, distances, counts, width, reverse_ids,
							reverse_distances, reverse_counts, width, union_ids,
							union_distances, union_counts));
	}
	for (int i = 0; i < 2; i++)
	{
		gpu_free(ctx, keys[i]);
		gpu_free(ctx, sources[i]);
	}
	gpu_free(ctx, in_degree);
	gpu_free(ctx, in_offset);
	gpu_free(ctx, reverse_ids);
	gpu_free(ctx, reverse_distances);
	gpu_free(ctx, reverse_counts);
	GPU_TRY(gpu_poll_cancel(ctx));

	GPU_TRY(prune(ctx, vectors, n, d, metric, union_ids, union_distances, 2 * width,
				  union_counts, width, width, true, ids, distances, counts));
	gpu_free(ctx, union_ids);
	gpu_free(ctx, union_distances);
	gpu_free(ctx, union_counts);
	return HIERINDEX_GPU_OK;
}

/*
 * One layer of `count` elements whose vectors are on the device: final lists
 * (ids local to the layer, count first) into host_ids (count x width) and
 * host_counts.  Seconds of the k-NN and of the rest go to the two phases.
 */
/* Candidates an element brings beside its k-NN list (layer 0: its layer-1 links). */
typedef struct ExtraCandidates
{
	int			width;
	std::vector<int32_t> ids;	/* count x width, ids of this layer */
	std::vector<float> distances;
	std::vector<int> counts;
} ExtraCandidates;

/* A device candidate list: count x stride, -1 padded when counts is NULL. */
typedef struct CandidateList
{
	int32_t    *ids;
	float	   *distances;
	int		   *counts;
	int			stride;
} CandidateList;

static void
free_candidates(GpuContext *ctx, CandidateList *list)
{
	gpu_free(ctx, list->ids);
	gpu_free(ctx, list->distances);
	gpu_free(ctx, list->counts);
	memset(list, 0, sizeof(*list));
}

/* list a becomes the union of a and b; b is freed */
static int
unite_candidates(GpuContext *ctx, int64_t count, CandidateList *a, CandidateList *b)
{
	CandidateList both;

	both.stride = a->stride + b->stride;
	GPU_TRY(gpu_alloc(ctx, (void **) &both.ids, sizeof(int32_t) * count * both.stride,
					  "candidate ids"));
	GPU_TRY(gpu_alloc(ctx, (void **) &both.distances, sizeof(float) * count * both.stride,
					  "candidate distances"));
	GPU_TRY(gpu_alloc(ctx, (void **) &both.counts, sizeof(int) * count, "candidate counts"));
	GPU_TRY(merge_lists(ctx, count, a->ids, a->distances, a->counts, a->stride, b->ids,
						b->distances, b->counts, b->stride, both.ids, both.distances,
						both.counts));
	free_candidates(ctx, a);
	free_candidates(ctx, b);
	*a = both;
	return HIERINDEX_GPU_OK;
}

/*
 * One layer of `count` elements whose vectors are on the device in insertion
 * order: final lists (positions in that order, count first) into host_ids
 * (count x width) and host_counts.  Seconds of the k-NN and of the rest go
 * to the two phases.
 */
static int
build_layer(GpuContext *ctx, const float *vectors, int64_t count, int d, int metric,
			int width, int candidates_wanted, int knn_phase, int prune_phase,
			const ExtraCandidates *extra, std::vector<int32_t> &host_ids,
			std::vector<float> &host_distances, std::vector<int> &host_counts)
{
	int			k = (int) std::min<int64_t>(std::max(candidates_wanted, width), count - 1);
	GpuKnnInput input = {count, d, metric, k, NULL, vectors, true};
	CandidateList candidates;
	int32_t    *ids;
	float	   *distances;
	int		   *counts;
	double		started = gpu_now();

	memset(&candidates, 0, sizeof(candidates));
	candidates.stride = k;
	GPU_TRY(gpu_alloc(ctx, (void **) &candidates.ids, sizeof(int32_t) * count * k, "k-NN ids"));
	GPU_TRY(gpu_alloc(ctx, (void **) &candidates.distances, sizeof(float) * count * k,
					  "k-NN distances"));
	GPU_TRY(gpu_knn(ctx, &input, candidates.ids, candidates.distances));
	GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	ctx->stats->seconds[knn_phase] += gpu_now() - started;
	GPU_TRY(gpu_poll_cancel(ctx));

	started = gpu_now();
	if (extra != NULL)
	{
		CandidateList more;

		more.stride = extra->width;
		GPU_TRY(gpu_alloc(ctx, (void **) &more.ids, sizeof(int32_t) * count * extra->width,
						  "extra candidate ids"));
		GPU_TRY(gpu_alloc(ctx, (void **) &more.distances, sizeof(float) * count * extra->width,
						  "extra candidate distances"));
		GPU_TRY(gpu_alloc(ctx, (void **) &more.counts, sizeof(int) * count,
						  "extra candidate counts"));
		GPU_TRY(gpu_upload(ctx, more.ids, extra->ids.data(), sizeof(int32_t) * count * extra->width));
		GPU_TRY(gpu_upload(ctx, more.distances, extra->distances.data(),
						   sizeof(float) * count * extra->width));
		GPU_TRY(gpu_upload(ctx, more.counts, extra->counts.data(), sizeof(int) * count));
		GPU_TRY(unite_candidates(ctx, count, &candidates, &more));
	}
	GPU_TRY(gpu_alloc(ctx, (void **) &ids, sizeof(int32_t) * count * width, "neighbour ids"));
	GPU_TRY(gpu_alloc(ctx, (void **) &distances, sizeof(float) * count * width, "neighbour distances"));
	GPU_TRY(gpu_alloc(ctx, (void **) &counts, sizeof(int) * count, "neighbour counts"));
	GPU_TRY(prune(ctx, vectors, count, d, metric, candidates.ids, candidates.distances,
				  candidates.stride, candidates.counts, width, width, false, ids, distances,
				  counts));
	free_candidates(ctx, &candidates);
	GPU_TRY(gpu_poll_cancel(ctx));
	GPU_TRY(add_reverse_edges(ctx, vectors, count, d, metric, width, ids, distances, counts));
	GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	ctx->stats->seconds[prune_phase] += gpu_now() - started;

	started = gpu_now();
	host_ids.resize((size_t) count * width);
	host_distances.resize((size_t) count * width);
	host_counts.resize((size_t) count);
	GPU_TRY(gpu_download(ctx, host_ids.data(), ids, sizeof(int32_t) * count * width));
	GPU_TRY(gpu_download(ctx, host_distances.data(), distances, sizeof(float) * count * width));
	GPU_TRY(gpu_download(ctx, host_counts.data(), counts, sizeof(int) * count));
	ctx->stats->seconds[HIERINDEX_GPU_PHASE_TRANSFER] += gpu_now() - started;
	gpu_free(ctx, ids);
	gpu_free(ctx, distances);
	gpu_free(ctx, counts);
	return HIERINDEX_GPU_OK;
}

/* Write one element's list into its slot: count, ids mapped through element_of (or as they are). */
static void
write_slot(int32_t *slot, int width, const int32_t *ids, int count, const int32_t *element_of)
{
	slot[0] = count;
	for (int i = 0; i < width; i++)
		slot[1 + i] = i < count ? (element_of != NULL ? element_of[ids[i]] : ids[i]) : -1;
}

static int
build_graph(GpuContext *ctx, HierindexGpuGraph *graph)
{
	int64_t		n = graph->n;
	int			d = graph->dimensions;
	int			m = graph->m;
	int			max_level = 0;
	int			candidates_wanted;
	float	   *vectors;
	std::vector<int32_t> element_at;	/* insertion position -> element */
	std::vector<int32_t> host_ids;
	std::vector<float> host_distances;
	std::vector<int> host_counts;
	ExtraCandidates extra;
	double		started;

	for (int64_t i = 0; i < n; i++)
		max_level = std::max(max_level, (int) graph->levels[i]);

	/* empty slots first: a layer of one element is not built at all */
	for (int64_t i = 0; i < n; i++)
	{
		write_slot(graph->links0 + i * (1 + 2 * m), 2 * m, NULL, 0, NULL);
		for (int level = 1; level <= graph->levels[i]; level++)
			write_slot(graph->upper_links + graph->upper_offset[i] + (int64_t) (level - 1) * (1 + m),
					   m, NULL, 0, NULL);
	}
	if (n < 2)
		return HIERINDEX_GPU_OK;

	/* a random insertion order, the same for the same input */
	element_at.resize((size_t) n);
	{
		std::mt19937_64 random(INSERTION_SEED ^ (uint64_t) n);

		for (int64_t i = 0; i < n; i++)
			element_at[i] = (int32_t) i;
		std::shuffle(element_at.begin(), element_at.end(), random);
	}
	candidates_wanted = std::min(CANDIDATES_PER_EF * graph->ef_construction, MAX_CANDIDATES);

	/* the vectors go up in insertion order: every layer works on positions */
	started = gpu_now();
	GPU_TRY(gpu_alloc(ctx, (void **) &vectors, sizeof(float) * n * d, "the vectors"));
	GPU_TRY(gpu_upload_rows(ctx, vectors, graph->vectors, sizeof(float) * d, element_at.data(), n));
	GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	ctx->stats->seconds[HIERINDEX_GPU_PHASE_TRANSFER] += gpu_now() - started;

	/*
	 * The layers above first, each of the elements of its level among
	 * themselves.  Their links are long (the elements of a level are 1/m as
	 * dense as those below), and layer 1's lists join each element's layer-0
	 * candidates (extra, indexed by position).
	 */
	extra.width = m;
	extra.ids.assign((size_t) n * m, -1);
	extra.distances.assign((size_t) n * m, INFINITY);
	extra.counts.assign((size_t) n, 0);
	for (int level = 1; level <= max_level; level++)
	{
		std::vector<int32_t> members;	/* positions, ascending: insertion order */
		int32_t    *device_members;
		float	   *layer_vectors;

		for (int64_t p = 0; p < n; p++)
			if (graph->levels[element_at[p]] >= level)
				members.push_back((int32_t) p);
		if (members.size() < 2)
			break;
		GPU_TRY(gpu_alloc(ctx, (void **) &device_members, sizeof(int32_t) * members.size(),
						  "layer members"));
		GPU_TRY(gpu_alloc(ctx, (void **) &layer_vectors, sizeof(float) * members.size() * d,
						  "layer vectors"));
		GPU_CHECK(ctx, cudaMemcpyAsync(device_members, members.data(),
									   sizeof(int32_t) * members.size(), cudaMemcpyHostToDevice,
									   ctx->stream));
		GPU_TRY(gpu_gather_rows(ctx, vectors, device_members, (int64_t) members.size(), d,
								layer_vectors));
		GPU_TRY(build_layer(ctx, layer_vectors, (int64_t) members.size(), d, graph->metric, m,
							candidates_wanted, HIERINDEX_GPU_PHASE_UPPER,
							HIERINDEX_GPU_PHASE_UPPER, NULL, host_ids, host_distances,
							host_counts));
		for (size_t j = 0; j < members.size(); j++)
		{
			int32_t		element = element_at[members[j]];
			int32_t    *list = host_ids.data() + j * m;

			/* layer-local numbers -> positions */
			for (int i = 0; i < host_counts[j]; i++)
				list[i] = members[list[i]];
			if (level == 1)
			{
				for (int i = 0; i < host_counts[j]; i++)
				{
					extra.ids[(size_t) members[j] * m + i] = list[i];
					extra.distances[(size_t) members[j] * m + i] = host_distances[j * m + i];
				}
				extra.counts[members[j]] = host_counts[j];
			}
			write_slot(graph->upper_links + graph->upper_offset[element] +
					   (int64_t) (level - 1) * (1 + m),
					   m, list, host_counts[j], element_at.data());
		}
		gpu_free(ctx, device_members);
		gpu_free(ctx, layer_vectors);
	}

	/* layer 0: everybody */
	GPU_TRY(build_layer(ctx, vectors, n, d, graph->metric, 2 * m, candidates_wanted,
						HIERINDEX_GPU_PHASE_KNN, HIERINDEX_GPU_PHASE_PRUNE,
						max_level > 0 ? &extra : NULL, host_ids, host_distances, host_counts));
	gpu_free(ctx, vectors);
	for (int64_t p = 0; p < n; p++)
		write_slot(graph->links0 + (int64_t) element_at[p] * (1 + 2 * m), 2 * m,
				   host_ids.data() + p * 2 * m, host_counts[p], element_at.data());
	return HIERINDEX_GPU_OK;
}

extern "C" int
hierindex_gpu_build_graph(HierindexGpuGraph *graph, const HierindexGpuOptions *options,
						  HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	GpuContext	ctx;
	int			status;

	try
	{
		status = gpu_context_start(&ctx, options, stats, errbuf, errlen);
		if (status == HIERINDEX_GPU_OK)
		{
			if (graph == NULL || graph->n < 0 || graph->n > INT32_MAX ||
				graph->dimensions < 1 || graph->m < 2 || 2 * graph->m > MAX_WIDTH ||
				graph->ef_construction < 1 || graph->ef_construction > 1000 ||
				graph->metric < HIERINDEX_GPU_METRIC_L2 || graph->metric > HIERINDEX_GPU_METRIC_L1 ||
				(graph->n > 0 && (graph->vectors == NULL || graph->levels == NULL ||
								  graph->upper_offset == NULL || graph->links0 == NULL ||
								  graph->upper_links == NULL)))
				status = gpu_fail(&ctx, HIERINDEX_GPU_EINVAL,
								  "invalid arguments to hierindex_gpu_build_graph");
			else if (graph->metric == HIERINDEX_GPU_METRIC_L1)
				status = gpu_fail(&ctx, HIERINDEX_GPU_EUNSUPPORTED,
								  "the GPU builder does not support the L1 metric");
		}
		if (status == HIERINDEX_GPU_OK)
			status = build_graph(&ctx, graph);
	}
	catch (...)
	{
		status = gpu_fail(&ctx, HIERINDEX_GPU_ENOMEM,
						  "out of host memory in hierindex_gpu_build_graph");
	}
	gpu_context_finish(&ctx);
	return ctx.status != HIERINDEX_GPU_OK ? ctx.status : status;
}
