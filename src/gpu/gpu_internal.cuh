/*
 * gpu_internal.cuh — what the files of hierindex_gpu.so share: the build
 * context (error state, memory budget, streams, cuBLAS handle, timings) and
 * the checked wrappers every CUDA and cuBLAS call goes through.
 *
 * Error discipline: a failing call records the first error (code and message)
 * in the context and the caller returns that code upwards; nothing throws
 * across the C ABI and nothing aborts.  Every allocation is recorded in the
 * context and freed by gpu_context_finish(), error or not, so an ERROR in the
 * backend never leaks device memory into the next build.
 */
#ifndef HIERINDEX_GPU_INTERNAL_CUH
#define HIERINDEX_GPU_INTERNAL_CUH

#include "gpu.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <stdint.h>
#include <vector>

struct GpuContext
{
	char	   *errbuf;
	size_t		errlen;
	int			status;			/* first error, HIERINDEX_GPU_OK while none */
	HierindexGpuOptions options;
	HierindexGpuStats *stats;	/* never NULL (a local one when the caller gave none) */
	HierindexGpuStats local_stats;
	int			device;
	cudaStream_t stream;		/* compute */
	cudaStream_t copy_stream;	/* host -> device uploads */
	cublasHandle_t blas;
	size_t		memory_limit;	/* device bytes this build may allocate */
	size_t		memory_used;
	size_t		shared_memory_optin;	/* per block, after cudaFuncSetAttribute */
	std::vector<void *> device_allocations;
	std::vector<size_t> device_sizes;
	std::vector<void *> host_allocations;	/* pinned */
	void	   *staging[2];		/* pinned upload buffers */
	cudaEvent_t staging_done[2];
	size_t		staging_bytes;
	bool		split_timing;	/* HIERINDEX_GPU_KNN_SPLIT set (gpu_knn.cu), read once */
};

/* Record an error (the first one wins) and return its code. */
int			gpu_fail(GpuContext *ctx, int code, const char *format, ...)
			__attribute__((format(printf, 3, 4)));
int			gpu_fail_cuda(GpuContext *ctx, cudaError_t error, const char *what,
						  const char *file, int line);
int			gpu_fail_blas(GpuContext *ctx, cublasStatus_t status, const char *what,
						  const char *file, int line);

#define GPU_CHECK(ctx, call) \
	do { \
		cudaError_t gpu_check_error_ = (call); \
		if (gpu_check_error_ != cudaSuccess) \
			return gpu_fail_cuda((ctx), gpu_check_error_, #call, __FILE__, __LINE__); \
	} while (0)

#define GPU_CHECK_LAUNCH(ctx) GPU_CHECK((ctx), cudaGetLastError())

#define GPU_CHECK_BLAS(ctx, call) \
	do { \
		cublasStatus_t gpu_check_status_ = (call); \
		if (gpu_check_status_ != CUBLAS_STATUS_SUCCESS) \
			return gpu_fail_blas((ctx), gpu_check_status_, #call, __FILE__, __LINE__); \
	} while (0)

#define GPU_TRY(expr) \
	do { \
		int gpu_try_status_ = (expr); \
		if (gpu_try_status_ != HIERINDEX_GPU_OK) \
			return gpu_try_status_; \
	} while (0)

/*
 * Set up: select the device, create streams, the cuBLAS handle and the
 * staging buffers, and fix the memory budget.  gpu_context_finish() must be
 * called whatever this returns; it returns ctx->status.
 */
int			gpu_context_start(GpuContext *ctx, const HierindexGpuOptions *options,
							  HierindexGpuStats *stats, char *errbuf, size_t errlen);
int			gpu_context_finish(GpuContext *ctx);

/* Device memory within the budget; *ptr is freed by gpu_context_finish or gpu_free. */
int			gpu_alloc(GpuContext *ctx, void **ptr, size_t bytes, const char *what);
void		gpu_free(GpuContext *ctx, void *ptr);
size_t		gpu_memory_left(const GpuContext *ctx);

/* Pinned host memory, freed by gpu_context_finish. */
int			gpu_alloc_pinned(GpuContext *ctx, void **ptr, size_t bytes, const char *what);

/*
 * Copy host -> device through the two pinned staging buffers (the memcpy into
 * one overlaps the DMA out of the other).  Completes on copy_stream; the
 * compute stream is made to wait for it.
 */
int			gpu_upload(GpuContext *ctx, void *device_dst, const void *host_src, size_t bytes);
/* device_dst row r = host_src row rows[r], r < count, each row_bytes long */
int			gpu_upload_rows(GpuContext *ctx, void *device_dst, const void *host_src,
							size_t row_bytes, const int32_t *rows, int64_t count);

/* Device -> host, synchronous, counted in the stats. */
int			gpu_download(GpuContext *ctx, void *host_dst, const void *device_src, size_t bytes);

/* The caller's should_stop said stop: returns HIERINDEX_GPU_ECANCELED. */
int			gpu_poll_cancel(GpuContext *ctx);

/* Seconds on a monotonic clock. */
double		gpu_now(void);

/* Distance under the metric, as graph_metric_distance computes it. */
__device__ __forceinline__ float
gpu_finish_distance(int metric, float sum)
{
	if (metric == HIERINDEX_GPU_METRIC_L2)
		return sum;
	if (metric == HIERINDEX_GPU_METRIC_COSINE)
		return 1.0f - sum;
	return -sum;
}

/* One term of the sum that gpu_finish_distance finishes. */
__device__ __forceinline__ float
gpu_distance_term(int metric, float a, float b, float sum)
{
	if (metric == HIERINDEX_GPU_METRIC_L2)
	{
		float		diff = a - b;

		return fmaf(diff, diff, sum);
	}
	return fmaf(a, b, sum);
}

__device__ __forceinline__ float
gpu_warp_sum(float value)
{
	for (int offset = 16; offset > 0; offset >>= 1)
		value += __shfl_xor_sync(0xffffffffu, value, offset);
	return value;
}

/*
 * Bitonic sort of size (a power of two) (key, id) pairs in shared memory,
 * ascending by key then by id as unsigned (so id -1, "none", sorts last among
 * equal keys).  All threads of the block must call it.
 */
__device__ __forceinline__ void
gpu_block_sort(float *keys, int32_t *ids, int size)
{
	for (int k = 2; k <= size; k <<= 1)
	{
		for (int j = k >> 1; j > 0; j >>= 1)
		{
			for (int i = threadIdx.x; i < size; i += blockDim.x)
			{
				int			partner = i ^ j;

				if (partner > i)
				{
					float		ki = keys[i];
					float		kp = keys[partner];
					uint32_t	ii = (uint32_t) ids[i];
					uint32_t	ip = (uint32_t) ids[partner];
					bool		greater = ki > kp || (ki == kp && ii > ip);

					if (greater == ((i & k) == 0))
					{
						keys[i] = kp;
						keys[partner] = ki;
						ids[i] = (int32_t) ip;
						ids[partner] = (int32_t) ii;
					}
				}
			}
			__syncthreads();
		}
	}
}

/* Blocks of per_block items to cover items (at least 1). */
static inline unsigned int
gpu_blocks(int64_t items, int per_block)
{
	int64_t		blocks = (items + per_block - 1) / per_block;

	return (unsigned int) (blocks < 1 ? 1 : blocks > INT32_MAX ? INT32_MAX : blocks);
}

static inline int
gpu_next_power_of_two(int value)
{
	int			power = 1;

	while (power < value)
		power <<= 1;
	return power;
}

/* ------------------------------------------------------------------------
 * k-NN (gpu_knn.cu), used by the public hierindex_gpu_knn and by the graph
 * builder for every layer.
 * ------------------------------------------------------------------------ */
typedef struct GpuKnnInput
{
	int64_t		n;
	int			dimensions;
	int			metric;
	int			k;
	const float *host_vectors;	/* n x d; may be NULL when device_vectors is given */
	const float *device_vectors;	/* n x d resident copy, or NULL: stream */

	/*
	 * Rows in insertion order, each looking only at the rows before it: row
	 * i's k nearest among rows 0 .. i-1 (fewer for the first k rows; the rest
	 * of the row is -1/+inf padding).
	 */
	bool		earlier_only;
} GpuKnnInput;

/* out (count x d) = the rows ids[0 .. count) of vectors, all on the device. */
int			gpu_gather_rows(GpuContext *ctx, const float *vectors, const int32_t *ids,
							int64_t count, int d, float *out);

/*
 * Exact k-NN of every vector among the others, into device arrays ids and
 * distances (n x k each, rows ascending by (distance, id), -1/+inf padding).
 */
int			gpu_knn(GpuContext *ctx, const GpuKnnInput *input, int32_t *device_ids,
					float *device_distances);

#endif							/* HIERINDEX_GPU_INTERNAL_CUH */
