/*
 * gpu_context.cu — the build context of hierindex_gpu.so: device selection,
 * the memory budget, tracked allocations, pinned staging uploads, errors,
 * cancellation and clocks.  See gpu_internal.cuh for the rules.
 *
 * The memory budget is ours, not CUDA's: every device allocation goes
 * through gpu_alloc, which refuses (HIERINDEX_GPU_ENOMEM, with the sizes in
 * the message) before cudaMalloc would, so that callers can size their tiles
 * from gpu_memory_left() and tests can force the streamed paths on small
 * data by setting a small options->memory_limit.
 */
#include "gpu_internal.cuh"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <algorithm>
#include <thread>
#include <vector>

/* 64 MB per staging buffer: large enough for full-rate DMA, small to pin */
#define GPU_STAGING_BYTES ((size_t) 64 << 20)

int
gpu_fail(GpuContext *ctx, int code, const char *format, ...)
{
	if (ctx->status == HIERINDEX_GPU_OK)
	{
		va_list		args;

		ctx->status = code;
		if (ctx->errbuf != NULL && ctx->errlen > 0)
		{
			va_start(args, format);
			vsnprintf(ctx->errbuf, ctx->errlen, format, args);
			va_end(args);
		}
	}
	return ctx->status;
}

int
gpu_fail_cuda(GpuContext *ctx, cudaError_t error, const char *what,
			  const char *file, int line)
{
	int			code = error == cudaErrorMemoryAllocation ? HIERINDEX_GPU_ENOMEM :
		(error == cudaErrorNoDevice || error == cudaErrorInsufficientDriver) ?
		HIERINDEX_GPU_ENODEVICE : HIERINDEX_GPU_ECUDA;

	/* clear a non-sticky error so that cleanup calls can still succeed */
	(void) cudaGetLastError();
	return gpu_fail(ctx, code, "CUDA error %s (%s) in %s at %s:%d",
					cudaGetErrorName(error), cudaGetErrorString(error), what, file, line);
}

int
gpu_fail_blas(GpuContext *ctx, cublasStatus_t status, const char *what,
			  const char *file, int line)
{
	int			code = status == CUBLAS_STATUS_ALLOC_FAILED ? HIERINDEX_GPU_ENOMEM :
		HIERINDEX_GPU_ECUDA;

	return gpu_fail(ctx, code, "cuBLAS error %s (%d) in %s at %s:%d",
					cublasGetStatusName(status), (int) status, what, file, line);
}

double
gpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

int
gpu_context_start(GpuContext *ctx, const HierindexGpuOptions *options,
				  HierindexGpuStats *stats, char *errbuf, size_t errlen)
{
	size_t		free_bytes = 0;
	size_t		total_bytes = 0;
	cudaDeviceProp prop;
	int			count = 0;

	ctx->errbuf = errbuf;
	ctx->errlen = errlen;
	if (errbuf != NULL && errlen > 0)
		errbuf[0] = '\0';
	ctx->status = HIERINDEX_GPU_OK;
	memset(&ctx->options, 0, sizeof(ctx->options));
	if (options != NULL)
		ctx->options = *options;
	memset(&ctx->local_stats, 0, sizeof(ctx->local_stats));
	ctx->stats = stats != NULL ? stats : &ctx->local_stats;
	memset(ctx->stats, 0, sizeof(*ctx->stats));
	ctx->stream = NULL;
	ctx->copy_stream = NULL;
	ctx->blas = NULL;
	ctx->memory_limit = 0;
	ctx->memory_used = 0;
	ctx->staging[0] = ctx->staging[1] = NULL;
	ctx->staging_done[0] = ctx->staging_done[1] = NULL;
	ctx->staging_bytes = 0;
	ctx->split_timing = getenv("HIERINDEX_GPU_KNN_SPLIT") != NULL;

	if (options == NULL)
		return gpu_fail(ctx, HIERINDEX_GPU_EINVAL, "no options given");
	if (ctx->options.precision < HIERINDEX_GPU_PRECISION_TF32 ||
		ctx->options.precision > HIERINDEX_GPU_PRECISION_FP16)
		return gpu_fail(ctx, HIERINDEX_GPU_EINVAL, "unknown precision %d",
						ctx->options.precision);
	if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0)
	{
		(void) cudaGetLastError();
		return gpu_fail(ctx, HIERINDEX_GPU_ENODEVICE, "no CUDA device available");
	}
	if (ctx->options.device < 0 || ctx->options.device >= count)
		return gpu_fail(ctx, HIERINDEX_GPU_ENODEVICE,
						"CUDA device %d does not exist (%d visible)",
						ctx->options.device, count);
	ctx->device = ctx->options.device;
	GPU_CHECK(ctx, cudaSetDevice(ctx->device));
	GPU_CHECK(ctx, cudaGetDeviceProperties(&prop, ctx->device));
	snprintf(ctx->stats->device_name, sizeof(ctx->stats->device_name), "%s", prop.name);
	ctx->shared_memory_optin = prop.sharedMemPerBlockOptin;
	GPU_CHECK(ctx, cudaMemGetInfo(&free_bytes, &total_bytes));
	ctx->memory_limit = free_bytes / 10 * 9;
	if (ctx->options.memory_limit > 0 && ctx->options.memory_limit < ctx->memory_limit)
		ctx->memory_limit = ctx->options.memory_limit;

	GPU_CHECK(ctx, cudaStreamCreateWithFlags(&ctx->stream, cudaStreamNonBlocking));
	GPU_CHECK(ctx, cudaStreamCreateWithFlags(&ctx->copy_stream, cudaStreamNonBlocking));
	GPU_CHECK_BLAS(ctx, cublasCreate(&ctx->blas));
	GPU_CHECK_BLAS(ctx, cublasSetStream(ctx->blas, ctx->stream));
	for (int i = 0; i < 2; i++)
	{
		GPU_TRY(gpu_alloc_pinned(ctx, &ctx->staging[i], GPU_STAGING_BYTES, "upload staging"));
		GPU_CHECK(ctx, cudaEventCreateWithFlags(&ctx->staging_done[i], cudaEventDisableTiming));
	}
	ctx->staging_bytes = GPU_STAGING_BYTES;
	return HIERINDEX_GPU_OK;
}

int
gpu_context_finish(GpuContext *ctx)
{
	/* finish queued work before freeing what it uses; errors here are secondary */
	if (ctx->stream != NULL)
		(void) cudaStreamSynchronize(ctx->stream);
	if (ctx->copy_stream != NULL)
		(void) cudaStreamSynchronize(ctx->copy_stream);
	for (void *ptr : ctx->device_allocations)
		if (ptr != NULL)
			(void) cudaFree(ptr);
	ctx->device_allocations.clear();
	ctx->device_sizes.clear();
	for (void *ptr : ctx->host_allocations)
		(void) cudaFreeHost(ptr);
	ctx->host_allocations.clear();
	for (int i = 0; i < 2; i++)
		if (ctx->staging_done[i] != NULL)
			(void) cudaEventDestroy(ctx->staging_done[i]);
	if (ctx->blas != NULL)
		(void) cublasDestroy(ctx->blas);
	if (ctx->stream != NULL)
		(void) cudaStreamDestroy(ctx->stream);
	if (ctx->copy_stream != NULL)
		(void) cudaStreamDestroy(ctx->copy_stream);
	(void) cudaGetLastError();

	/*
	 * A kernel fault leaves the process's CUDA context unusable ("sticky"
	 * errors); reset it so that the backend's next build starts clean.
	 */
	if (ctx->status == HIERINDEX_GPU_ECUDA && cudaDeviceSynchronize() != cudaSuccess)
	{
		(void) cudaDeviceReset();
		(void) cudaGetLastError();
	}
	ctx->blas = NULL;
	ctx->stream = ctx->copy_stream = NULL;
	return ctx->status;
}

size_t
gpu_memory_left(const GpuContext *ctx)
{
	return ctx->memory_used >= ctx->memory_limit ? 0 : ctx->memory_limit - ctx->memory_used;
}

int
gpu_alloc(GpuContext *ctx, void **ptr, size_t bytes, const char *what)
{
	cudaError_t error;

	*ptr = NULL;
	if (bytes == 0)
		bytes = 16;
	/* cudaMalloc rounds up to 512 bytes at least; count as it does, roughly */
	bytes = (bytes + 511) & ~(size_t) 511;
	if (bytes > gpu_memory_left(ctx))
		return gpu_fail(ctx, HIERINDEX_GPU_ENOMEM,
						"not enough GPU memory for %s: %.1f MB needed, %.1f MB of the build's %.1f MB left",
						what, bytes / 1048576.0, gpu_memory_left(ctx) / 1048576.0,
						ctx->memory_limit / 1048576.0);
	error = cudaMalloc(ptr, bytes);
	if (error != cudaSuccess)
	{
		*ptr = NULL;
		(void) cudaGetLastError();
		return gpu_fail(ctx, error == cudaErrorMemoryAllocation ? HIERINDEX_GPU_ENOMEM :
						HIERINDEX_GPU_ECUDA,
						"cudaMalloc of %.1f MB for %s failed: %s",
						bytes / 1048576.0, what, cudaGetErrorString(error));
	}
	ctx->device_allocations.push_back(*ptr);
	ctx->device_sizes.push_back(bytes);
	ctx->memory_used += bytes;
	return HIERINDEX_GPU_OK;
}

void
gpu_free(GpuContext *ctx, void *ptr)
{
	if (ptr == NULL)
		return;
	for (size_t i = 0; i < ctx->device_allocations.size(); i++)
	{
		if (ctx->device_allocations[i] == ptr)
		{
			/* the memory may still be in use by queued work */
			(void) cudaStreamSynchronize(ctx->stream);
			(void) cudaFree(ptr);
			ctx->memory_used -= ctx->device_sizes[i];
			ctx->device_allocations[i] = NULL;
			ctx->device_sizes[i] = 0;
			return;
		}
	}
}

int
gpu_alloc_pinned(GpuContext *ctx, void **ptr, size_t bytes, const char *what)
{
	cudaError_t error = cudaHostAlloc(ptr, bytes > 0 ? bytes : 16, cudaHostAllocDefault);

	if (error != cudaSuccess)
	{
		*ptr = NULL;
		(void) cudaGetLastError();
		return gpu_fail(ctx, HIERINDEX_GPU_ENOMEM,
						"could not pin %.1f MB of host memory for %s: %s",
						bytes / 1048576.0, what, cudaGetErrorString(error));
	}
	ctx->host_allocations.push_back(*ptr);
	return HIERINDEX_GPU_OK;
}

/*
 * Copy bytes [done, done + piece) of the upload into a staging buffer: one
 * contiguous run, or whole rows gathered through rows[].
 */
static void
copy_into_staging(void *staging, const void *host_src, size_t done, size_t piece,
				  size_t row_bytes, const int32_t *rows)
{
	if (rows == NULL)
		memcpy(staging, (const char *) host_src + done, piece);
	else
		for (size_t r = 0; r < piece / row_bytes; r++)
			memcpy((char *) staging + r * row_bytes,
				   (const char *) host_src + (size_t) rows[done / row_bytes + r] * row_bytes,
				   row_bytes);
}

/*
 * copy_into_staging on up to STAGING_THREADS threads.  One thread copies
 * about 4 GB/s of scattered 3 kB rows, a third of what the DMA behind it
 * takes, so a 1M x 768 upload was bound by it (0.8 s).  The threads inherit
 * the caller's signal mask (a PostgreSQL backend blocks them all around
 * the call).  Without threads (they could not be started) it copies alone.
 */
#define STAGING_THREADS		8
#define STAGING_SLICE_MIN	((size_t) 4 << 20)

static void
fill_staging(void *staging, const void *host_src, size_t done, size_t piece,
			 size_t row_bytes, const int32_t *rows)
{
	size_t		unit = rows != NULL ? row_bytes : 4096;
	size_t		units = (piece + unit - 1) / unit;
	size_t		slices = std::min<size_t>(STAGING_THREADS,
										  std::max<size_t>(1, piece / STAGING_SLICE_MIN));
	size_t		per_slice = (units + slices - 1) / slices;
	std::vector<std::thread> threads;

	for (size_t slice = 1; slice < slices; slice++)
	{
		size_t		begin = std::min(piece, slice * per_slice * unit);
		size_t		end = std::min(piece, (slice + 1) * per_slice * unit);

		if (begin >= end)
			break;
		try
		{
			threads.emplace_back(copy_into_staging, (char *) staging + begin, host_src,
								 done + begin, end - begin, row_bytes, rows);
		}
		catch (...)
		{
			copy_into_staging((char *) staging + begin, host_src, done + begin,
							  end - begin, row_bytes, rows);
		}
	}
	copy_into_staging(staging, host_src, done, std::min(piece, per_slice * unit),
					  row_bytes, rows);
	for (std::thread &thread : threads)
		thread.join();
}

/*
 * Both uploads go through the two pinned staging buffers, alternating, so
 * that the copy into one overlaps the DMA out of the other.  rows NULL: the
 * bytes are one contiguous run; else whole rows of row_bytes, gathered.
 */
static int
upload_staged(GpuContext *ctx, void *device_dst, const void *host_src, size_t bytes,
			  size_t row_bytes, const int32_t *rows)
{
	size_t		done = 0;
	size_t		piece_limit = ctx->staging_bytes;
	int			turn = 0;
	cudaEvent_t last = NULL;

	if (rows != NULL)
		piece_limit -= piece_limit % row_bytes;
	while (done < bytes)
	{
		size_t		piece = bytes - done < piece_limit ? bytes - done : piece_limit;

		/* wait until the DMA that last read this staging buffer is over */
		GPU_CHECK(ctx, cudaEventSynchronize(ctx->staging_done[turn]));
		fill_staging(ctx->staging[turn], host_src, done, piece, row_bytes, rows);
		GPU_CHECK(ctx, cudaMemcpyAsync((char *) device_dst + done, ctx->staging[turn], piece,
									   cudaMemcpyHostToDevice, ctx->copy_stream));
		GPU_CHECK(ctx, cudaEventRecord(ctx->staging_done[turn], ctx->copy_stream));
		last = ctx->staging_done[turn];
		done += piece;
		turn ^= 1;
	}
	if (last != NULL)
		GPU_CHECK(ctx, cudaStreamWaitEvent(ctx->stream, last, 0));
	ctx->stats->bytes_to_device += (double) bytes;
	return HIERINDEX_GPU_OK;
}

int
gpu_upload(GpuContext *ctx, void *device_dst, const void *host_src, size_t bytes)
{
	return upload_staged(ctx, device_dst, host_src, bytes, 0, NULL);
}

int
gpu_upload_rows(GpuContext *ctx, void *device_dst, const void *host_src, size_t row_bytes,
				const int32_t *rows, int64_t count)
{
	if (row_bytes > ctx->staging_bytes)
	{
		/* a row larger than a staging buffer (not with real dimensions): one by one */
		for (int64_t r = 0; r < count; r++)
			GPU_TRY(gpu_upload(ctx, (char *) device_dst + r * row_bytes,
							   (const char *) host_src + (size_t) rows[r] * row_bytes, row_bytes));
		return HIERINDEX_GPU_OK;
	}
	return upload_staged(ctx, device_dst, host_src, row_bytes * (size_t) count, row_bytes, rows);
}

int
gpu_download(GpuContext *ctx, void *host_dst, const void *device_src, size_t bytes)
{
	GPU_CHECK(ctx, cudaMemcpyAsync(host_dst, device_src, bytes, cudaMemcpyDeviceToHost,
								   ctx->stream));
	GPU_CHECK(ctx, cudaStreamSynchronize(ctx->stream));
	ctx->stats->bytes_from_device += (double) bytes;
	return HIERINDEX_GPU_OK;
}

int
gpu_poll_cancel(GpuContext *ctx)
{
	if (ctx->options.should_stop != NULL &&
		ctx->options.should_stop(ctx->options.should_stop_arg) != 0)
		return gpu_fail(ctx, HIERINDEX_GPU_ECANCELED, "the GPU build was canceled");
	return HIERINDEX_GPU_OK;
}
