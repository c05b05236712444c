/*
 * gpu_knn.cu — the exact k-nearest-neighbour graph on the GPU.
 *
 * Distances as matrix products.  For a tile of R rows and a block of C
 * columns, cuBLAS computes S = rows . columns^T on the tensor cores (fp16 or
 * TF32 or bf16 inputs with fp32 sums; plain fp32 for checking).  fp16 runs at
 * twice TF32's rate with the same 10-bit mantissa; its copy of the vectors is
 * scaled by one power of two that puts the largest norm in [2^14, 2^15),
 * below fp16's largest value, and alpha = 1/scale^2 undoes it exactly.  It
 * needs the vectors resident (the scale comes from all of them); streamed,
 * fp16 runs as TF32.  A row's ranking key for
 * column j is then |x_j|^2 - 2 s_ij under L2 (|x_i|^2 is the same for the whole
 * row) and -s_ij under inner product and cosine (rows normalised by the
 * caller).  One pass writes S (R x C x 4 bytes) and the selection kernel
 * reads it once: the distance work is a GEMM at tensor-core rate plus two
 * trips of S through memory.
 *
 * Selection.  Each row keeps a shortlist of K' = max(2k, k + 32) candidates
 * (keys and ids in no order, the worst last, in device memory between column
 * blocks).  A block of threads streams the row of S, keeps the columns whose
 * key is at most the shortlist's worst, gathers them in shared memory and,
 * when that buffer could overflow, keeps the best K' of shortlist and buffer
 * by a radix select (select_keep_best).  Once the shortlist has settled few
 * columns pass.
 *
 * Exactness.  The K' shortlisted candidates are re-scored in fp32 straight
 * from the vectors (as graph_metric_distance does) and the best k kept.  A
 * row is certified exact when no column left out can beat its k-th: every
 * column left out has an approximate key no smaller than the shortlist's
 * worst, tau, and the approximation errs by at most
 * err = c * gamma * |x_i| * max_j |x_j| (gamma: 2^-10 for TF32 and fp16 inputs,
 * 2^-7 for bf16, plus the fp32 sum's d * 2^-23; c = 4 under L2, 2 otherwise, a
 * factor 2 of margin included), so tau - err > key of the k-th exact candidate
 * is enough.  fp16 adds an absolute term for elements small enough to become
 * subnormal, whose rounding error is not relative: at most a = 2^-39 max|x_j|
 * each (half the subnormal spacing, unscaled), so the product errs by at most
 * a sqrt(d) (|x_i| + max|x_j|) + d a^2 more (finalize_kernel).  Rows that fail (near ties, or data whose distances crowd together)
 * are searched again with plain fp32 products and accepted as they come out.
 *
 * Memory.  When the vectors fit (the graph builder always has them on the
 * device) every column block is the whole set.  Otherwise rows go in
 * super-blocks that fit, and for each the column blocks stream from the host
 * through pinned staging buffers into two device buffers, the upload of the
 * next block overlapping the products of the current one; the re-scoring then
 * streams the blocks once more.
 */
#include "gpu_internal.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <math.h>
#include <string.h>

#define SELECT_THREADS		256
#define SELECT_PER_THREAD	4	/* 2: 1.21 s for the selection of 1M x 768 rows, 4: 0.97 s */
#define SELECT_CHUNK		(SELECT_THREADS * SELECT_PER_THREAD)
#define SELECT_BUFFER		(2 * SELECT_CHUNK)
#define SHORTLIST_MAX		3072
static_assert(SELECT_PER_THREAD % 2 == 0, "the selection reads entries of S in pairs");
#define FINALIZE_THREADS	128
#define RESCORE_THREADS		256
#define MAX_GEMM_ELEMENTS	((int64_t) 1 << 30)	/* one S tile: well under 2^31 entries, so no 32-bit index in a product kernel (tiles rounded up) can overflow */

/*
 * Run the statement given; with HIERINDEX_GPU_KNN_SPLIT (ctx->split_timing,
 * read when the build starts), wait for the GPU before and after it and add
 * its time to stats->field, so that each step of a pass is timed.  For
 * tuning only: it serialises what otherwise overlaps.
 */
#define KNN_STEP(ctx, field, ...) \
	do { \
		double		step_started_ = 0.0; \
		if ((ctx)->split_timing) \
		{ \
			GPU_CHECK(ctx, cudaStreamSynchronize((ctx)->stream)); \
			step_started_ = gpu_now(); \
		} \
		__VA_ARGS__; \
		if ((ctx)->split_timing) \
		{ \
			GPU_CHECK(ctx, cudaStreamSynchronize((ctx)->stream)); \
			(ctx)->stats->field += gpu_now() - step_started_; \
		} \
	} while (0)

/* ------------------------------------------------------------------------
 * Kernels
 * ------------------------------------------------------------------------ */

/* norms[i] = |x_i|^2, a warp per row */
__global__ void
squared_norms_kernel(const float *vectors, int64_t n, int d, float *norms)
{
	int64_t		row = (int64_t) blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	float		sum = 0.0f;

	if (row >= n)
		return;
	for (int t = lane; t < d; t += 32)
	{
		float		value = vectors[row * d + t];

		sum = fmaf(value, value, sum);
	}
	sum = gpu_warp_sum(sum);
	if (lane == 0)
		norms[row] = sum;
}

/* the largest norm (non-negative floats order like their bit patterns) */
__global__ void
max_norm_kernel(const float *squared_norms, int64_t n, unsigned int *max_bits)
{
	float		best = 0.0f;

	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < n;
		 i += (int64_t) gridDim.x * blockDim.x)
		best = fmaxf(best, squared_norms[i]);
	for (int offset = 16; offset > 0; offset >>= 1)
		best = fmaxf(best, __shfl_xor_sync(0xffffffffu, best, offset));
	if (threadIdx.x % 32 == 0)
		atomicMax(max_bits, __float_as_uint(best));
}

/* out[i] = vectors[ids[i]], a warp per row */
__global__ void
gather_rows_kernel(const float *vectors, const int32_t *ids, int64_t count, int d, float *out)
{
	int64_t		row = (int64_t) blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;

	if (row >= count)
		return;
	for (int t = lane; t < d; t += 32)
		out[row * d + t] = vectors[(int64_t) ids[row] * d + t];
}

/* out[i] = in[i] x scale in fp16 (scale a power of two: exact before the rounding) */
__global__ void
to_fp16_kernel(const float *in, __half *out, int64_t count, float scale)
{
	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < count;
		 i += (int64_t) gridDim.x * blockDim.x)
		out[i] = __float2half_rn(in[i] * scale);
}

__global__ void
to_bf16_kernel(const float *in, __nv_bfloat16 *out, int64_t count)
{
	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < count;
		 i += (int64_t) gridDim.x * blockDim.x)
		out[i] = __float2bfloat16_rn(in[i]);
}

__global__ void
init_shortlist_kernel(float *keys, int32_t *ids, int64_t count)
{
	for (int64_t i = (int64_t) blockIdx.x * blockDim.x + threadIdx.x; i < count;
		 i += (int64_t) gridDim.x * blockDim.x)
	{
		keys[i] = INFINITY;
		ids[i] = -1;
	}
}

/* a float key as an unsigned integer in the same order (keys are never NaN) */
__device__ __forceinline__ uint32_t
ordered_bits(float key)
{
	uint32_t	bits = __float_as_uint(key);

	return bits ^ ((bits >> 31) != 0 ? 0xffffffffu : 0x80000000u);
}

__device__ __forceinline__ float
from_ordered_bits(uint32_t bits)
{
	return __uint_as_float(bits ^ ((bits >> 31) != 0 ? 0x80000000u : 0xffffffffu));
}

/* (key, id) as one integer, ordered as the sort orders them: by key, then id */
__device__ __forceinline__ uint64_t
candidate_order(float key, int32_t id)
{
	return ((uint64_t) ordered_bits(key) << 32) | (uint32_t) id;
}

/*
 * The lanes of `mask` (not 0) append an entry each to an array whose length
 * is *count: the place of this lane's entry, in lane order, with one
 * atomicAdd for the warp.  Called by every lane of the warp; the places of
 * lanes outside `mask` mean nothing.
 */
__device__ __forceinline__ int
warp_append_place(unsigned int mask, int *count)
{
	int			lane = threadIdx.x % 32;
	int			leader = __ffs(mask) - 1;
	int			first = 0;

	if (lane == leader)
		first = atomicAdd(count, __popc(mask));
	first = __shfl_sync(0xffffffffu, first, leader);
	return first + __popc(mask & ((1u << lane) - 1));
}

/*
 * The shortlist [0, shortlist) and the buffer [shortlist, shortlist + count)
 * become the best `shortlist` of them, in no order but with the worst at
 * position shortlist - 1, where tau (the filter's bound) is read.  Nothing
 * downstream needs the shortlist sorted (finalize_kernel sorts by exact
 * distance), so this is a selection, not a sort: a radix select on the
 * 64-bit (key, id) order, a byte per pass from the top, that stops at the
 * first pass whose chosen byte value holds exactly the candidates still
 * wanted (usually the fourth: keys rarely tie).  A bitonic sort of shortlist
 * and buffer did this before: Nsight Compute found the kernel issuing
 * instructions 81% of the time and reading memory at 16% of its rate, and
 * with this selection (and chunks of 4 columns a thread, which the cheaper
 * merges made worth it) the pass of 1M x 768 rows selects in 0.97 s
 * instead of 2.42 s (H100).  Ties of whole (key, id) pairs are only the unused slots
 * (+inf, -1), any of which will do.
 */
__device__ void
select_keep_best(float *keys, int32_t *ids, int shortlist, int *count, float *tau)
{
	__shared__ unsigned int histogram[256];
	__shared__ uint64_t prefix;		/* the chosen high bytes */
	__shared__ int want;			/* candidates still wanted among them */
	__shared__ int whole;			/* every candidate under prefix is wanted */
	__shared__ int slots;
	__shared__ int equal_taken;
	__shared__ unsigned int worst_bits;
	__shared__ int worst_at;
	/* a word for each warp's place in every round of blockDim.x candidates */
	__shared__ unsigned int kept_bits[(SHORTLIST_MAX + SELECT_BUFFER + SELECT_THREADS - 1) /
									  SELECT_THREADS * SELECT_THREADS / 32];
	__shared__ int hole_at[SELECT_BUFFER];	/* dropped places in the shortlist */
	int			total = shortlist + *count;
	int			lane = threadIdx.x % 32;
	int			fixed = 64;		/* bits from here up are chosen */

	if (threadIdx.x == 0)
	{
		prefix = 0;
		want = shortlist;
		whole = 0;
		slots = 0;
		equal_taken = 0;
		worst_bits = 0;
		worst_at = shortlist - 1;
	}
	for (int shift = 56; shift >= 0; shift -= 8)
	{
		uint64_t	high = fixed == 64 ? 0 : ~(uint64_t) 0 << fixed;
		uint64_t	chosen;

		for (int i = threadIdx.x; i < 256; i += blockDim.x)
			histogram[i] = 0;
		__syncthreads();
		chosen = prefix;
		for (int base = 0; base < total; base += blockDim.x)
		{
			int			i = base + threadIdx.x;
			bool		in = false;
			unsigned int digit = 0;

			if (i < total)
			{
				uint64_t	order = candidate_order(keys[i], ids[i]);

				in = (order & high) == chosen;
				digit = (unsigned int) (order >> shift) & 255;
			}
			/* one shared add per distinct byte value in the warp: keys share their top bytes */
			unsigned int active = __ballot_sync(0xffffffffu, in);

			if (in)
			{
				unsigned int peers = __match_any_sync(active, digit);

				if (lane == __ffs(peers) - 1)
					atomicAdd(&histogram[digit], __popc(peers));
			}
		}
		__syncthreads();
		if (threadIdx.x < 32)
		{
			/* lane L scans bins [8L, 8L + 8): which byte value holds rank `want` */
			unsigned int local[8];
			unsigned int sum = 0;
			unsigned int inclusive;
			unsigned int wanted = (unsigned int) want;

			for (int b = 0; b < 8; b++)
			{
				local[b] = histogram[lane * 8 + b];
				sum += local[b];
			}
			inclusive = sum;
			for (int offset = 1; offset < 32; offset <<= 1)
			{
				unsigned int other = __shfl_up_sync(0xffffffffu, inclusive, offset);

				if (lane >= offset)
					inclusive += other;
			}
			__syncwarp();		/* every lane has read `want` before one writes it */
			if (inclusive - sum < wanted && wanted <= inclusive)
			{
				unsigned int before = inclusive - sum;

				for (int b = 0; b < 8; b++)
				{
					if (before + local[b] >= wanted)
					{
						prefix = chosen | ((uint64_t) (lane * 8 + b) << shift);
						want = (int) (wanted - before);
						whole = local[b] == wanted - before;
						break;
					}
					before += local[b];
				}
			}
		}
		__syncthreads();
		fixed = shift;
		if (whole)
			break;
	}

	/*
	 * Keep what lies under the prefix and the wanted ones at it (a bit per
	 * candidate), then move the kept ones of the buffer into the holes the
	 * dropped ones leave in the shortlist: there are as many of each.
	 */
	{
		uint64_t	high = fixed == 0 ? ~(uint64_t) 0 : ~(uint64_t) 0 << fixed;
		uint64_t	chosen = prefix;
		unsigned int worst = 0;

		for (int base = 0; base < total; base += blockDim.x)
		{
			int			i = base + threadIdx.x;
			bool		kept = false;
			unsigned int holes;

			if (i < total)
			{
				uint64_t	order = candidate_order(keys[i], ids[i]) & high;

				kept = order < chosen ||
					(order == chosen && (whole || atomicAdd(&equal_taken, 1) < want));
				if (kept)
					worst = max(worst, ordered_bits(keys[i]));
			}
			kept_bits[i / 32] = __ballot_sync(0xffffffffu, kept);
			holes = __ballot_sync(0xffffffffu, i < shortlist && !kept);
			if (holes != 0)
			{
				int			place = warp_append_place(holes, &slots);

				if (i < shortlist && !kept)
					hole_at[place] = i;
			}
		}
		for (int offset = 16; offset > 0; offset >>= 1)
			worst = max(worst, __shfl_xor_sync(0xffffffffu, worst, offset));
		if (lane == 0)
			atomicMax(&worst_bits, worst);
		__syncthreads();
		if (threadIdx.x == 0)
			slots = 0;
		__syncthreads();
		for (int base = shortlist / 32 * 32; base < total; base += blockDim.x)
		{
			int			i = base + threadIdx.x;
			bool		moves = i >= shortlist && i < total &&
				(kept_bits[i / 32] >> lane & 1) != 0;
			unsigned int movers = __ballot_sync(0xffffffffu, moves);

			if (movers != 0)
			{
				int			place = warp_append_place(movers, &slots);

				if (moves)
				{
					int			hole = hole_at[place];

					keys[hole] = keys[i];
					ids[hole] = ids[i];
				}
			}
		}
		__syncthreads();

		/* the worst kept one to the last place, where tau is read */
		worst = worst_bits;
		for (int i = threadIdx.x; i < shortlist; i += blockDim.x)
			if (ordered_bits(keys[i]) == worst)
				atomicMin(&worst_at, i);
		__syncthreads();
		if (threadIdx.x == 0)
		{
			float		key = keys[worst_at];
			int32_t		id = ids[worst_at];

			keys[worst_at] = keys[shortlist - 1];
			ids[worst_at] = ids[shortlist - 1];
			keys[shortlist - 1] = key;
			ids[shortlist - 1] = id;
			*count = 0;
			*tau = key;
		}
		__syncthreads();
	}
}

/*
 * One block per row of the S tile: update the row's shortlist with the
 * columns [0, cols) of this block (global ids column_base + j).  S's rows are
 * ld entries apart, ld even (s_stride), so that each thread reads two
 * neighbouring entries at once.
 */
__global__ void __launch_bounds__(SELECT_THREADS)
select_kernel(const float *S, int64_t ld, int cols, int64_t column_base,
			  const float *column_norms, int metric,
			  const int32_t *row_ids, int64_t row_base, bool earlier_only,
			  float *shortlist_keys, int32_t *shortlist_ids, int shortlist)
{
	extern __shared__ unsigned char select_shared[];
	float	   *keys = (float *) select_shared;
	int32_t    *ids = (int32_t *) (keys + shortlist + SELECT_BUFFER);
	__shared__ int count;
	__shared__ float tau;
	int64_t		row = blockIdx.x;
	int32_t		self = row_ids != NULL ? row_ids[row] : (int32_t) (row_base + row);
	const float *srow = S + row * ld;
	float	   *row_keys = shortlist_keys + row * shortlist;
	int32_t    *row_ids_out = shortlist_ids + row * shortlist;
	bool		l2 = metric == HIERINDEX_GPU_METRIC_L2;

	for (int i = threadIdx.x; i < shortlist; i += blockDim.x)
	{
		keys[i] = row_keys[i];
		ids[i] = row_ids_out[i];
	}
	if (threadIdx.x == 0)
		count = 0;
	__syncthreads();
	if (threadIdx.x == 0)
		tau = keys[shortlist - 1];
	__syncthreads();

	/*
	 * Each thread's share of the next chunk is loaded while the current one
	 * is filtered (and merged), so that a chunk's loads are in flight during
	 * the barriers instead of after them (3.06 s -> 2.47 s for the pass of
	 * 1M x 768 rows, back when a sort merged the buffer).
	 */
	float2		next_s[SELECT_PER_THREAD / 2];
	float2		next_norm[SELECT_PER_THREAD / 2];

#pragma unroll
	for (int e = 0; e < SELECT_PER_THREAD / 2; e++)
	{
		int			j = 2 * (e * SELECT_THREADS + threadIdx.x);

		next_s[e] = j < cols ? *(const float2 *) (srow + j) : make_float2(0.0f, 0.0f);
		next_norm[e] = make_float2(j < cols && l2 ? column_norms[j] : 0.0f,
								   j + 1 < cols && l2 ? column_norms[j + 1] : 0.0f);
	}
	for (int base = 0; base < cols; base += SELECT_CHUNK)
	{
		float2		chunk_s[SELECT_PER_THREAD / 2];
		float2		chunk_norm[SELECT_PER_THREAD / 2];

#pragma unroll
		for (int e = 0; e < SELECT_PER_THREAD / 2; e++)
		{
			int			j = base + SELECT_CHUNK + 2 * (e * SELECT_THREADS + threadIdx.x);

			chunk_s[e] = next_s[e];
			chunk_norm[e] = next_norm[e];
			if (j < cols)
			{
				next_s[e] = *(const float2 *) (srow + j);
				if (l2)
					next_norm[e] = make_float2(column_norms[j],
											   j + 1 < cols ? column_norms[j + 1] : 0.0f);
			}
		}

		/*
		 * Room for a whole chunk, or merge first.  Every thread must take the
		 * same decision: read count, then wait for all before anyone adds.
		 */
		int			buffered = count;

		__syncthreads();
		if (buffered > SELECT_BUFFER - SELECT_CHUNK)
			select_keep_best(keys, ids, shortlist, &count, &tau);
#pragma unroll
		for (int e = 0; e < SELECT_PER_THREAD; e++)
		{
			int			j = base + 2 * ((e / 2) * SELECT_THREADS + threadIdx.x) + e % 2;

			if (j < cols)
			{
				float		s = e % 2 == 0 ? chunk_s[e / 2].x : chunk_s[e / 2].y;
				float		norm = e % 2 == 0 ? chunk_norm[e / 2].x : chunk_norm[e / 2].y;
				float		key = l2 ? fmaf(-2.0f, s, norm) : -s;
				int32_t		id = (int32_t) (column_base + j);

				if (key <= tau && (earlier_only ? id < self : id != self))
				{
					int			slot = atomicAdd(&count, 1);

					keys[shortlist + slot] = key;
					ids[shortlist + slot] = id;
				}
			}
		}
		__syncthreads();
	}
	if (count > 0)
		select_keep_best(keys, ids, shortlist, &count, &tau);

	for (int i = threadIdx.x; i < shortlist; i += blockDim.x)
	{
		row_keys[i] = keys[i];
		row_ids_out[i] = ids[i];
	}
}

/*
 * Exact fp32 distance of each shortlisted candidate whose id falls in the
 * column block [column_base, column_base + column_count): a warp per
 * (row, candidate).
 */
__global__ void
rescore_kernel(const float *rows, int d, int metric, int64_t row_count,
			   const int32_t *shortlist_ids, int shortlist,
			   const float *columns, int64_t column_base, int64_t column_count,
			   float *exact)
{
	int64_t		item = (int64_t) blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
	int			lane = threadIdx.x % 32;
	int64_t		row;
	int32_t		id;
	const float *a;
	const float *b;
	float		sum = 0.0f;

	if (item >= row_count * shortlist)
		return;
	row = item / shortlist;
	id = shortlist_ids[item];
	if (id < 0)
	{
		if (lane == 0 && column_base == 0)
			exact[item] = INFINITY;
		return;
	}
	if (id < column_base || id >= column_base + column_count)
		return;
	a = rows + row * d;
	b = columns + (int64_t) (id - column_base) * d;
	for (int t = lane; t < d; t += 32)
		sum = gpu_distance_term(metric, a[t], b[t], sum);
	sum = gpu_warp_sum(sum);
	if (lane == 0)
		exact[item] = gpu_finish_distance(metric, sum);
}

/*
 * One block per row: sort the shortlist by exact distance, write the best k
 * to the output row (its global id's), and say whether the row is certified
 * (see the file comment).  gamma < 0: accept without certifying.
 */
__global__ void __launch_bounds__(FINALIZE_THREADS)
finalize_kernel(const float *shortlist_keys, const int32_t *shortlist_ids,
				const float *exact, int shortlist, int sort_size, int k, int metric,
				const int32_t *row_ids, int64_t row_base,
				const float *squared_norms, const unsigned int *max_squared_norm_bits,
				float gamma, float absolute_unit, int d, int32_t *out_ids,
				float *out_distances, unsigned char *uncertified)
{
	extern __shared__ unsigned char finalize_shared[];
	float	   *keys = (float *) finalize_shared;
	int32_t    *ids = (int32_t *) (keys + sort_size);
	int64_t		row = blockIdx.x;
	int32_t		self = row_ids != NULL ? row_ids[row] : (int32_t) (row_base + row);
	int64_t		first = row * shortlist;

	for (int i = threadIdx.x; i < sort_size; i += blockDim.x)
	{
		if (i < shortlist && shortlist_ids[first + i] >= 0)
		{
			keys[i] = exact[first + i];
			ids[i] = shortlist_ids[first + i];
		}
		else
		{
			keys[i] = INFINITY;
			ids[i] = -1;
		}
	}
	__syncthreads();
	gpu_block_sort(keys, ids, sort_size);

	for (int i = threadIdx.x; i < k; i += blockDim.x)
	{
		out_ids[(int64_t) self * k + i] = i < shortlist ? ids[i] : -1;
		out_distances[(int64_t) self * k + i] = i < shortlist ? keys[i] : INFINITY;
	}
	if (threadIdx.x == 0 && uncertified != NULL)
	{
		float		tau = shortlist_keys[first + shortlist - 1];
		bool		certified = true;

		if (gamma >= 0.0f && isfinite(tau) && k <= shortlist && ids[k - 1] >= 0)
		{
			float		row_norm = sqrtf(squared_norms[self]);
			float		max_norm = sqrtf(__uint_as_float(*max_squared_norm_bits));
			/* elements rounded to subnormals: at most absolute_unit x max_norm off each */
			float		absolute = absolute_unit * max_norm;
			float		err = (metric == HIERINDEX_GPU_METRIC_L2 ? 4.0f : 2.0f) *
				(gamma * row_norm * max_norm +
				 absolute * (sqrtf((float) d) * (row_norm + max_norm) + (float) d * absolute));
			float		key_k = keys[k - 1];

			if (metric == HIERINDEX_GPU_METRIC_L2)
				key_k -= squared_norms[self];
			else if (metric == HIERINDEX_GPU_METRIC_COSINE)
				key_k -= 1.0f;
			certified = tau - err > key_k;
		}
		uncertified[row] = certified ? 0 : 1;
	}
}

/* ------------------------------------------------------------------------
 * Host side
 * ------------------------------------------------------------------------ */

/* select_kernel's dynamic shared memory: a shortlist and a full buffer */
static size_t
select_shared_bytes(int shortlist)
{
	return (size_t) (shortlist + SELECT_BUFFER) * (sizeof(float) + sizeof(int32_t));
}

/* How the columns are reached, and the buffers of one k-NN run. */
typedef struct KnnPlan
{
	const GpuKnnInput *input;
	int			shortlist;		/* K' */
	int			finalize_sort;
	bool		resident;		/* all vectors on the device */
	const float *vectors;		/* resident: n x d fp32 on the device */
	__nv_bfloat16 *vectors_bf16;	/* resident bf16 copy, or NULL */
	__half	   *vectors_fp16;	/* resident fp16 copy (x fp16_scale), or NULL */
	float		fp16_scale;		/* a power of two: the largest norm lands in [2^14, 2^15) */
	int64_t		column_block;	/* columns per block */
	float	   *column_buffer[2];	/* streaming: device blocks */
	__nv_bfloat16 *column_buffer_bf16[2];
	cudaEvent_t column_free[2]; /* streaming: products on the buffer done */
	float	   *squared_norms;	/* n, of every vector */
	unsigned int *max_norm_bits;
	bool		norms_ready;	/* all n norms and their largest computed */
	int64_t		row_block;		/* rows per super-block */
	int64_t		row_tile;		/* rows per product */
	float	   *rows_buffer;	/* rows_capacity x d: streamed rows, rescued rows */
	int64_t		rows_capacity;
	__nv_bfloat16 *rows_bf16;	/* row_block x d (bf16 runs) */
	int32_t    *rows_ids;		/* rescue: global ids of the rows */
	float	   *S;				/* row_tile x s_stride(column_block) */
	float	   *shortlist_keys; /* row_block x K' */
	int32_t    *shortlist_ids;
	float	   *exact;
	unsigned char *uncertified; /* row_block */
} KnnPlan;

static float
precision_gamma(int precision, int d)
{
	float		sum_error = (float) d * ldexpf(1.0f, -23);

	if (precision == HIERINDEX_GPU_PRECISION_TF32 || precision == HIERINDEX_GPU_PRECISION_FP16)
		return ldexpf(1.0f, -10) + sum_error;
	if (precision == HIERINDEX_GPU_PRECISION_BF16)
		return ldexpf(1.0f, -7) + sum_error;
	return sum_error;
}

/*
 * Entries between rows of S for a product of `columns` columns: even, for the
 * selection's paired loads, and a multiple of 8 so that rows start aligned.
 */
static int64_t
s_stride(int64_t columns)
{
	return (columns + 7) / 8 * 8;
}

/* S[0 .. rows) x [0 .. cols) = rows . columns^T, rows s_stride(cols) apart */
static int
multiply(GpuContext *ctx, KnnPlan *plan, int precision, const float *rows,
		 const void *rows_half, int64_t row_count,
		 const float *columns, const void *columns_half, int64_t column_count)
{
	int			d = plan->input->dimensions;
	const float one = 1.0f;
	const float zero = 0.0f;

	if (precision == HIERINDEX_GPU_PRECISION_FP16 || precision == HIERINDEX_GPU_PRECISION_BF16)
	{
		bool		fp16 = precision == HIERINDEX_GPU_PRECISION_FP16;
		cudaDataType type = fp16 ? CUDA_R_16F : CUDA_R_16BF;

		/* both sides of fp16 were scaled by fp16_scale: alpha undoes it exactly */
		const float alpha = fp16 ? 1.0f / (plan->fp16_scale * plan->fp16_scale) : 1.0f;

		GPU_CHECK_BLAS(ctx, cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N,
										 (int) column_count, (int) row_count, d, &alpha,
										 columns_half, type, d, rows_half, type, d, &zero,
										 plan->S, CUDA_R_32F,
										 (int) s_stride(column_count),
										 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
	}
	else
		GPU_CHECK_BLAS(ctx, cublasGemmEx(ctx->blas, CUBLAS_OP_T, CUBLAS_OP_N,
										 (int) column_count, (int) row_count, d, &one,
										 columns, CUDA_R_32F, d,
										 rows, CUDA_R_32F, d, &zero,
										 plan->S, CUDA_R_32F, (int) s_stride(column_count),
										 precision == HIERINDEX_GPU_PRECISION_TF32 ?
										 CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F_PEDANTIC,
										 CUBLAS_GEMM_DEFAULT));
	ctx->stats->knn_flops += 2.0 * (double) row_count * (double) column_count * d;
	return HIERINDEX_GPU_OK;
}

int
gpu_gather_rows(GpuContext *ctx, const float *vectors, const int32_t *ids, int64_t count,
				int d, float *out)
{
	gather_rows_kernel<<<gpu_blocks(count, 8), 256, 0, ctx->stream>>>(vectors, ids, count, d, out);
	GPU_CHECK_LAUNCH(ctx);
	return HIERINDEX_GPU_OK;
}

static int
convert_bf16(GpuContext *ctx, const float *in, __nv_bfloat16 *out, int64_t count)
{
	to_bf16_kernel<<<gpu_blocks(count, 256), 256, 0, ctx->stream>>>(in, out, count);
	GPU_CHECK_LAUNCH(ctx);
	return HIERINDEX_GPU_OK;
}

/*
 * Make column block `block` available: resident, a pointer into the vectors;
 * streaming, an upload into one of the two buffers (after the products that
 * last read that buffer), plus its norms the first time round.
 */
static int
columns_of_block(GpuContext *ctx, KnnPlan *plan, int64_t block, int precision,
				 const float **columns, const void **columns_half,
				 int64_t *column_count, int *buffer)
{
	const GpuKnnInput *input = plan->input;
	int64_t		start = block * plan->column_block;
	int64_t		count = std::min<int64_t>(plan->column_block, input->n - start);
	int			d = input->dimensions;

	*column_count = count;
	*buffer = (int) (block & 1);
	if (plan->resident)
	{
		*columns = plan->vectors + start * d;
		if (precision == HIERINDEX_GPU_PRECISION_FP16)
			*columns_half = plan->vectors_fp16 + start * d;
		else
			*columns_half = plan->vectors_bf16 != NULL ? plan->vectors_bf16 + start * d : NULL;
		return HIERINDEX_GPU_OK;
	}
	GPU_CHECK(ctx, cudaStreamWaitEvent(ctx->copy_stream, plan->column_free[*buffer], 0));
	GPU_TRY(gpu_upload(ctx, plan->column_buffer[*buffer], input->host_vectors + start * d,
					   sizeof(float) * (size_t) count * d));
	if (!plan->norms_ready)
	{
		squared_norms_kernel<<<gpu_blocks(count, 8), 256, 0, ctx->stream>>>(
			plan->column_buffer[*buffer], count, d, plan->squared_norms + start);
		GPU_CHECK_LAUNCH(ctx);
	}
	if (precision == HIERINDEX_GPU_PRECISION_BF16)
		GPU_TRY(convert_bf16(ctx, plan->column_buffer[*buffer],
							 plan->column_buffer_bf16[*buffer], count * d));
	*columns = plan->column_buffer[*buffer];
	*columns_half = plan->column_buffer_bf16[*buffer];
	return HIERINDEX_GPU_OK;
}

static int
column_block_done(GpuContext *ctx, KnnPlan *plan, int buffer)
{
	if (!plan->resident)
		GPU_CHECK(ctx, cudaEventRecord(plan->column_free[buffer], ctx->stream));
	return gpu_poll_cancel(ctx);
}

/*
 * max_norm_bits = the largest of the n squared norms (all of them computed),
 * which the certification and the fp16 scale need.
 */
static int
find_max_norm(GpuContext *ctx, KnnPlan *plan)
{
	int64_t		n = plan->input->n;

	GPU_CHECK(ctx, cudaMemsetAsync(plan->max_norm_bits, 0, sizeof(unsigned int), ctx->stream));
	max_norm_kernel<<<gpu_blocks(n, 256 * 16), 256, 0, ctx->stream>>>(
		plan->squared_norms, n, plan->max_norm_bits);
	GPU_CHECK_LAUNCH(ctx);
	plan->norms_ready = true;
	return HIERINDEX_GPU_OK;
}

/*
 * One pass over all columns for `row_count` rows (device vectors `rows`,
 * global ids row_ids[] or row_base + i): shortlists, re-scoring, final k
 * into the output rows of their global ids, and the uncertified flags.
 */
static int
knn_pass(GpuContext *ctx, KnnPlan *plan, int precision, const float *rows,
		 const int32_t *row_ids, int64_t row_base, int64_t row_count,
		 int32_t *out_ids, float *out_distances, bool certify)
{
	const GpuKnnInput *input = plan->input;
	int			d = input->dimensions;
	int64_t		blocks = (input->n + plan->column_block - 1) / plan->column_block;
	const void *rows_half = NULL;
	size_t		select_shared = select_shared_bytes(plan->shortlist);
	size_t		finalize_shared = (size_t) plan->finalize_sort * (sizeof(float) + sizeof(int32_t));

	if (precision == HIERINDEX_GPU_PRECISION_FP16)
		rows_half = plan->vectors_fp16 + row_base * d;	/* resident, and never for rescued rows */
	else if (precision == HIERINDEX_GPU_PRECISION_BF16)
	{
		if (plan->resident && row_ids == NULL && plan->vectors_bf16 != NULL)
			rows_half = plan->vectors_bf16 + row_base * d;
		else
		{
			GPU_TRY(convert_bf16(ctx, rows, plan->rows_bf16, row_count * d));
			rows_half = plan->rows_bf16;
		}
	}

	init_shortlist_kernel<<<gpu_blocks(row_count * plan->shortlist, 256), 256, 0, ctx->stream>>>(
		plan->shortlist_keys, plan->shortlist_ids, row_count * plan->shortlist);
	GPU_CHECK_LAUNCH(ctx);

	/* shortlists */
	for (int64_t block = 0; block < blocks; block++)
	{
		const float *columns;
		const void *columns_half;
		int64_t		column_count;
		int			buffer;

		GPU_TRY(columns_of_block(ctx, plan, block, precision, &columns, &columns_half,
								 &column_count, &buffer));
		for (int64_t tile = 0; tile < row_count; tile += plan->row_tile)
		{
			int64_t		tile_rows = std::min<int64_t>(plan->row_tile, row_count - tile);
			int64_t		tile_columns = column_count;

			/*
			 * Rows that look only at earlier columns need no column at or
			 * after their own: with the vectors resident, the product stops
			 * at the tile's last row (half the work over all tiles).  It
			 * stops at a multiple of 16 columns past it: cuBLAS runs a
			 * product whose column count is not one with kernels 2.3 times
			 * slower (H100, TF32: 3.11 s against 1.33 s for half the tiles
			 * of a 1M x 768 pass), and the selection drops the few extra
			 * columns, which are later than every row of the tile.
			 */
			if (input->earlier_only && plan->resident && row_ids == NULL)
			{
				tile_columns = row_base + tile + tile_rows - block * plan->column_block;
				if (tile_columns <= 0)
					continue;
				tile_columns = std::min<int64_t>(column_count, (tile_columns + 15) / 16 * 16);
			}
			KNN_STEP(ctx, knn_product_seconds,
					 GPU_TRY(multiply(ctx, plan, precision, rows + tile * d,
									  rows_half != NULL ?
									  (const char *) rows_half + tile * d * sizeof(uint16_t) : NULL,
									  tile_rows, columns, columns_half, tile_columns)));
			KNN_STEP(ctx, knn_select_seconds, {
				select_kernel<<<(unsigned int) tile_rows, SELECT_THREADS, select_shared, ctx->stream>>>(
					plan->S, s_stride(tile_columns), (int) tile_columns, block * plan->column_block,
					plan->squared_norms + block * plan->column_block, input->metric,
					row_ids != NULL ? row_ids + tile : NULL, row_base + tile, input->earlier_only,
					plan->shortlist_keys + tile * plan->shortlist,
					plan->shortlist_ids + tile * plan->shortlist, plan->shortlist);
				GPU_CHECK_LAUNCH(ctx);
			});

			/* let a cancel through every few tiles (the queue is otherwise far ahead) */
			if ((tile / plan->row_tile) % 4 == 3)
			{
				GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
				GPU_TRY(gpu_poll_cancel(ctx));
			}
		}
		GPU_TRY(column_block_done(ctx, plan, buffer));
	}
	if (!plan->norms_ready)
		GPU_TRY(find_max_norm(ctx, plan));

	/* exact distances of the shortlists, block by block, then the final k */
	KNN_STEP(ctx, knn_rescore_seconds, {
		for (int64_t block = 0; block < blocks; block++)
		{
			const float *columns;
			const void *columns_half;
			int64_t		column_count;
			int			buffer;

			GPU_TRY(columns_of_block(ctx, plan, block, HIERINDEX_GPU_PRECISION_FP32,
									 &columns, &columns_half, &column_count, &buffer));
			rescore_kernel<<<gpu_blocks(row_count * plan->shortlist, RESCORE_THREADS / 32),
				RESCORE_THREADS, 0, ctx->stream>>>(
					rows, d, input->metric, row_count, plan->shortlist_ids, plan->shortlist,
					columns, block * plan->column_block, column_count, plan->exact);
			GPU_CHECK_LAUNCH(ctx);
			GPU_TRY(column_block_done(ctx, plan, buffer));
		}

		finalize_kernel<<<(unsigned int) row_count, FINALIZE_THREADS, finalize_shared, ctx->stream>>>(
			plan->shortlist_keys, plan->shortlist_ids, plan->exact, plan->shortlist,
			plan->finalize_sort, input->k, input->metric, row_ids, row_base,
			plan->squared_norms, plan->max_norm_bits,
			certify ? precision_gamma(precision, d) : -1.0f,
			precision == HIERINDEX_GPU_PRECISION_FP16 ? ldexpf(1.0f, -39) : 0.0f, d,
			out_ids, out_distances, certify ? plan->uncertified : NULL);
		GPU_CHECK_LAUNCH(ctx);
	});
	return HIERINDEX_GPU_OK;
}

/* Search the uncertified rows of the last pass again with fp32 products. */
static int
rescue_rows(GpuContext *ctx, KnnPlan *plan, int64_t row_base, int64_t row_count,
			int32_t *out_ids, float *out_distances, std::vector<unsigned char> &flags,
			std::vector<int32_t> &rescue, std::vector<float> &gathered)
{
	const GpuKnnInput *input = plan->input;
	int			d = input->dimensions;

	flags.resize(row_count);
	GPU_TRY(gpu_download(ctx, flags.data(), plan->uncertified, row_count));
	rescue.clear();
	for (int64_t i = 0; i < row_count; i++)
		if (flags[i])
			rescue.push_back((int32_t) (row_base + i));
	ctx->stats->knn_rescued_rows += (int64_t) rescue.size();

	for (size_t done = 0; done < rescue.size(); done += plan->rows_capacity)
	{
		size_t		count = std::min<size_t>(plan->rows_capacity, rescue.size() - done);

		GPU_CHECK(ctx, cudaMemcpyAsync(plan->rows_ids, rescue.data() + done,
									   sizeof(int32_t) * count, cudaMemcpyHostToDevice,
									   ctx->stream));
		if (plan->resident)
		{
			GPU_TRY(gpu_gather_rows(ctx, plan->vectors, plan->rows_ids, (int64_t) count, d,
									plan->rows_buffer));
		}
		else
		{
			/* gather the rows' vectors on the host, then one upload */
			gathered.resize(count * d);
			for (size_t i = 0; i < count; i++)
				memcpy(gathered.data() + i * d,
					   input->host_vectors + (int64_t) rescue[done + i] * d,
					   sizeof(float) * d);
			GPU_TRY(gpu_upload(ctx, plan->rows_buffer, gathered.data(),
							   sizeof(float) * count * d));
		}
		GPU_TRY(knn_pass(ctx, plan, HIERINDEX_GPU_PRECISION_FP32, plan->rows_buffer,
						 plan->rows_ids, 0, (int64_t) count, out_ids, out_distances, false));
		GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	}
	return HIERINDEX_GPU_OK;
}

int
gpu_knn(GpuContext *ctx, const GpuKnnInput *input, int32_t *out_ids, float *out_distances)
{
	KnnPlan		plan;
	int64_t		n = input->n;
	int			d = input->dimensions;
	int			precision = ctx->options.precision;
	size_t		vector_bytes = sizeof(float) * (size_t) n * d;
	size_t		row_bytes;
	size_t		left;
	std::vector<unsigned char> flags;
	std::vector<int32_t> rescue;
	std::vector<float> gathered;

	memset(&plan, 0, sizeof(plan));
	plan.input = input;
	if (n <= 1)
	{
		/* nobody has a neighbour */
		init_shortlist_kernel<<<gpu_blocks(n * input->k, 256), 256, 0, ctx->stream>>>(
			out_distances, out_ids, n * input->k);
		GPU_CHECK_LAUNCH(ctx);
		return HIERINDEX_GPU_OK;
	}
	plan.shortlist = (int) std::min<int64_t>(n - 1, std::min(SHORTLIST_MAX,
														  std::max(2 * input->k, input->k + 32)));
	plan.shortlist = std::max(plan.shortlist, 1);
	plan.finalize_sort = gpu_next_power_of_two(std::max(plan.shortlist, input->k));

	/*
	 * select_keep_best's static arrays (10 KB) count against the 48 KB that
	 * a block gets without asking: the largest shortlist (3072) needs more.
	 */
	GPU_CHECK(ctx, cudaFuncSetAttribute(select_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
										(int) select_shared_bytes(plan.shortlist)));

	GPU_TRY(gpu_alloc(ctx, (void **) &plan.squared_norms, sizeof(float) * n, "vector norms"));
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.max_norm_bits, sizeof(unsigned int), "largest norm"));

	/* the vectors: the caller's resident copy, our own when they fit, else stream */
	if (input->device_vectors != NULL)
		plan.vectors = input->device_vectors;
	else if (vector_bytes <= gpu_memory_left(ctx) / 5 * 2)
	{
		float	   *copy;

		GPU_TRY(gpu_alloc(ctx, (void **) &copy, vector_bytes, "vectors"));
		GPU_TRY(gpu_upload(ctx, copy, input->host_vectors, vector_bytes));
		plan.vectors = copy;
	}
	plan.resident = plan.vectors != NULL;
	if (plan.resident)
	{
		squared_norms_kernel<<<gpu_blocks(n, 8), 256, 0, ctx->stream>>>(
			plan.vectors, n, d, plan.squared_norms);
		GPU_CHECK_LAUNCH(ctx);
		if (precision == HIERINDEX_GPU_PRECISION_BF16 &&
			vector_bytes / 2 <= gpu_memory_left(ctx) / 3)
		{
			GPU_TRY(gpu_alloc(ctx, (void **) &plan.vectors_bf16, vector_bytes / 2, "bf16 vectors"));
			GPU_TRY(convert_bf16(ctx, plan.vectors, plan.vectors_bf16, n * d));
		}
		else if (precision == HIERINDEX_GPU_PRECISION_BF16)
			precision = HIERINDEX_GPU_PRECISION_TF32;	/* no room for a bf16 copy */
		if (precision == HIERINDEX_GPU_PRECISION_FP16 &&
			vector_bytes / 2 <= gpu_memory_left(ctx) / 3)
		{
			unsigned int max_bits;
			float		max_squared_norm;
			int			exponent = 0;

			/*
			 * One power-of-two scale for every vector, from the largest norm
			 * (which bounds every element): it lands in [2^14, 2^15), below
			 * fp16's 65504, and the elements that end up subnormal are covered
			 * by the certification's absolute term (finalize_kernel).
			 */
			GPU_TRY(find_max_norm(ctx, &plan));
			GPU_TRY(gpu_download(ctx, &max_bits, plan.max_norm_bits, sizeof(max_bits)));
			memcpy(&max_squared_norm, &max_bits, sizeof(float));
			if (max_squared_norm > 0.0f)
				(void) frexpf(sqrtf(max_squared_norm), &exponent);
			plan.fp16_scale = ldexpf(1.0f, 15 - exponent);
			GPU_TRY(gpu_alloc(ctx, (void **) &plan.vectors_fp16, vector_bytes / 2, "fp16 vectors"));
			to_fp16_kernel<<<gpu_blocks(n * d, 256), 256, 0, ctx->stream>>>(
				plan.vectors, plan.vectors_fp16, n * d, plan.fp16_scale);
			GPU_CHECK_LAUNCH(ctx);
		}
		else if (precision == HIERINDEX_GPU_PRECISION_FP16)
			precision = HIERINDEX_GPU_PRECISION_TF32;	/* no room for an fp16 copy */
		plan.column_block = n;
	}
	else
	{
		/* fp16 needs the scale of all vectors first: streamed, TF32 */
		if (precision == HIERINDEX_GPU_PRECISION_FP16)
			precision = HIERINDEX_GPU_PRECISION_TF32;
		/* streaming: a quarter of what is left for the two column buffers */
		size_t		per_column = sizeof(float) * d * 2 +
			(precision == HIERINDEX_GPU_PRECISION_BF16 ? sizeof(__nv_bfloat16) * d * 2 : 0);

		plan.column_block = std::min<int64_t>(n, (int64_t) (gpu_memory_left(ctx) / 4 / per_column));
		if (plan.column_block < 1)
			return gpu_fail(ctx, HIERINDEX_GPU_ENOMEM,
							"not enough GPU memory to stream %d-dimensional vectors", d);
		for (int i = 0; i < 2; i++)
		{
			GPU_TRY(gpu_alloc(ctx, (void **) &plan.column_buffer[i],
							  sizeof(float) * plan.column_block * d, "column block"));
			if (precision == HIERINDEX_GPU_PRECISION_BF16)
				GPU_TRY(gpu_alloc(ctx, (void **) &plan.column_buffer_bf16[i],
								  sizeof(__nv_bfloat16) * plan.column_block * d,
								  "bf16 column block"));
			GPU_CHECK(ctx, cudaEventCreateWithFlags(&plan.column_free[i], cudaEventDisableTiming));
			GPU_CHECK(ctx, cudaEventRecord(plan.column_free[i], ctx->stream));
		}
	}

	/* rows: super-blocks whose shortlists (and copies) take a third of the rest */
	row_bytes = (size_t) plan.shortlist * (2 * sizeof(float) + sizeof(int32_t)) + 1 +
		sizeof(int32_t) +
		(plan.resident ? 0 : sizeof(float) * d +
		 (precision == HIERINDEX_GPU_PRECISION_BF16 ? sizeof(__nv_bfloat16) * d : 0));
	left = gpu_memory_left(ctx);
	plan.row_block = std::min<int64_t>(n, (int64_t) (left / 3 / row_bytes));
	if (plan.row_block < 1)
		return gpu_fail(ctx, HIERINDEX_GPU_ENOMEM,
						"not enough GPU memory for the k-NN shortlists (%zu bytes a row)", row_bytes);
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.shortlist_keys,
					  sizeof(float) * plan.row_block * plan.shortlist, "shortlist keys"));
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.shortlist_ids,
					  sizeof(int32_t) * plan.row_block * plan.shortlist, "shortlist ids"));
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.exact,
					  sizeof(float) * plan.row_block * plan.shortlist, "exact distances"));
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.uncertified, plan.row_block, "certification flags"));
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.rows_ids, sizeof(int32_t) * plan.row_block, "row ids"));
	/* streamed rows need a whole super-block; resident, only rescued rows come here */
	plan.rows_capacity = plan.resident ? std::min<int64_t>(plan.row_block, 65536) : plan.row_block;
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.rows_buffer,
					  sizeof(float) * plan.rows_capacity * d, "row vectors"));
	if (precision == HIERINDEX_GPU_PRECISION_BF16 && !plan.resident)
		GPU_TRY(gpu_alloc(ctx, (void **) &plan.rows_bf16,
						  sizeof(__nv_bfloat16) * plan.row_block * d, "bf16 row vectors"));

	/* the product tile: as many rows as fit in what is left, under 2^31 entries */
	left = gpu_memory_left(ctx) / 10 * 9;
	plan.row_tile = std::min<int64_t>(plan.row_block,
									  std::min<int64_t>((int64_t) (left / sizeof(float)),
														MAX_GEMM_ELEMENTS - 1) / s_stride(plan.column_block));
	if (plan.row_tile < 32 && plan.row_block >= 32)
	{
		/* very wide: narrow the column blocks instead (resident data only) */
		if (!plan.resident)
			return gpu_fail(ctx, HIERINDEX_GPU_ENOMEM, "not enough GPU memory for a product tile");
		plan.row_tile = 32;
		plan.column_block = std::max<int64_t>(1, std::min<int64_t>((int64_t) (left / sizeof(float)),
																	MAX_GEMM_ELEMENTS - 1) / 32);
	}
	plan.row_tile = std::max<int64_t>(plan.row_tile, 1);
	GPU_TRY(gpu_alloc(ctx, (void **) &plan.S,
					  sizeof(float) * plan.row_tile * s_stride(plan.column_block), "distance tile"));
	ctx->stats->column_blocks = (input->n + plan.column_block - 1) / plan.column_block;

	for (int64_t row_base = 0; row_base < n; row_base += plan.row_block)
	{
		int64_t		row_count = std::min<int64_t>(plan.row_block, n - row_base);
		const float *rows;

		if (plan.resident)
			rows = plan.vectors + row_base * d;
		else
		{
			GPU_TRY(gpu_upload(ctx, plan.rows_buffer, input->host_vectors + row_base * d,
							   sizeof(float) * row_count * d));
			rows = plan.rows_buffer;
		}
		GPU_TRY(knn_pass(ctx, &plan, precision, rows, NULL, row_base, row_count,
						 out_ids, out_distances, precision != HIERINDEX_GPU_PRECISION_FP32));
		if (precision != HIERINDEX_GPU_PRECISION_FP32)
		{
			/* rescue_rows' passes add their own steps: take them out again */
			double		product = ctx->stats->knn_product_seconds;
			double		select = ctx->stats->knn_select_seconds;
			double		rescore = ctx->stats->knn_rescore_seconds;

			KNN_STEP(ctx, knn_rescue_seconds,
					 GPU_TRY(rescue_rows(ctx, &plan, row_base, row_count, out_ids,
										 out_distances, flags, rescue, gathered)));
			ctx->stats->knn_product_seconds = product;
			ctx->stats->knn_select_seconds = select;
			ctx->stats->knn_rescore_seconds = rescore;
		}
		GPU_TRY(gpu_poll_cancel(ctx));
	}
	GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	for (int i = 0; i < 2; i++)
	{
		if (plan.column_free[i] != NULL)
			(void) cudaEventDestroy(plan.column_free[i]);
		gpu_free(ctx, plan.column_buffer[i]);
		gpu_free(ctx, plan.column_buffer_bf16[i]);
	}
	/* what the caller did not give is ours to free: later layers need the room */
	if (input->device_vectors == NULL)
		gpu_free(ctx, (void *) plan.vectors);
	gpu_free(ctx, plan.vectors_bf16);
	gpu_free(ctx, plan.vectors_fp16);
	gpu_free(ctx, plan.squared_norms);
	gpu_free(ctx, plan.max_norm_bits);
	gpu_free(ctx, plan.rows_buffer);
	gpu_free(ctx, plan.rows_bf16);
	gpu_free(ctx, plan.rows_ids);
	gpu_free(ctx, plan.S);
	gpu_free(ctx, plan.shortlist_keys);
	gpu_free(ctx, plan.shortlist_ids);
	gpu_free(ctx, plan.exact);
	gpu_free(ctx, plan.uncertified);
	return HIERINDEX_GPU_OK;
}

/* ------------------------------------------------------------------------
 * The public k-NN entry point
 * ------------------------------------------------------------------------ */
extern "C" int
hierindex_gpu_knn(const float *vectors, int64_t n, int dimensions, int metric, int k,
				  const HierindexGpuOptions *options, int32_t *ids, float *distances,
				  HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	GpuContext	ctx;
	int			status;

	try
	{
		status = gpu_context_start(&ctx, options, stats, errbuf, errlen);
		if (status == HIERINDEX_GPU_OK)
		{
			if (vectors == NULL || ids == NULL || distances == NULL || n < 0 ||
				n > INT32_MAX || dimensions < 1 || k < 1 || k > SHORTLIST_MAX / 2 ||
				metric < HIERINDEX_GPU_METRIC_L2 || metric > HIERINDEX_GPU_METRIC_L1)
				status = gpu_fail(&ctx, HIERINDEX_GPU_EINVAL,
								  "invalid arguments to hierindex_gpu_knn (n %lld, dimensions %d, k %d, metric %d)",
								  (long long) n, dimensions, k, metric);
			else if (metric == HIERINDEX_GPU_METRIC_L1)
				status = gpu_fail(&ctx, HIERINDEX_GPU_EUNSUPPORTED,
								  "the GPU builder does not support the L1 metric");
		}
		if (status == HIERINDEX_GPU_OK && n > 0)
		{
			GpuKnnInput input = {n, dimensions, metric, k, vectors, NULL, false};
			int32_t    *device_ids = NULL;
			float	   *device_distances = NULL;
			double		started = gpu_now();

			status = gpu_alloc(&ctx, (void **) &device_ids, sizeof(int32_t) * n * k, "k-NN ids");
			if (status == HIERINDEX_GPU_OK)
				status = gpu_alloc(&ctx, (void **) &device_distances, sizeof(float) * n * k,
								   "k-NN distances");
			if (status == HIERINDEX_GPU_OK)
				status = gpu_knn(&ctx, &input, device_ids, device_distances);
			if (status == HIERINDEX_GPU_OK)
				ctx.stats->seconds[HIERINDEX_GPU_PHASE_KNN] = gpu_now() - started;
			started = gpu_now();
			if (status == HIERINDEX_GPU_OK)
				status = gpu_download(&ctx, ids, device_ids, sizeof(int32_t) * n * k);
			if (status == HIERINDEX_GPU_OK)
				status = gpu_download(&ctx, distances, device_distances, sizeof(float) * n * k);
			ctx.stats->seconds[HIERINDEX_GPU_PHASE_TRANSFER] += gpu_now() - started;
		}
	}
	catch (...)
	{
		status = gpu_fail(&ctx, HIERINDEX_GPU_ENOMEM, "out of host memory in hierindex_gpu_knn");
	}
	gpu_context_finish(&ctx);
	return ctx.status != HIERINDEX_GPU_OK ? ctx.status : status;
}
