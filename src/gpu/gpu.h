/*
 * gpu.h — the C ABI of hierindex_gpu.so, the CUDA module.
 *
 * hierindex.so never links CUDA.  When a GPU build is asked for (or chosen
 * automatically), the backend opens hierindex_gpu.so with dlopen and looks up
 * the symbols below by name; on a machine without a GPU or without the CUDA
 * libraries the dlopen or the probe fails and the server carries on.
 *
 * Plain C types only, no PostgreSQL, no CUDA types: both sides of the
 * boundary compile this header.  Every function returns 0 on success or a
 * negative HIERINDEX_GPU_E* code and writes a message into errbuf.
 */
#ifndef HIERINDEX_GPU_H
#define HIERINDEX_GPU_H

#include <stddef.h>

#ifdef __cplusplus
extern "C"
{
#endif

/* Bumped whenever a signature below changes; checked after dlopen. */
#define HIERINDEX_GPU_ABI_VERSION 1

#define HIERINDEX_GPU_OK			0
#define HIERINDEX_GPU_ENODEVICE		(-1)	/* no CUDA device or driver */
#define HIERINDEX_GPU_ENOMEM		(-2)	/* device memory exhausted */
#define HIERINDEX_GPU_ECUDA			(-3)	/* any other CUDA/cuBLAS failure */
#define HIERINDEX_GPU_ECANCELED		(-4)	/* the cancel callback said stop */
#define HIERINDEX_GPU_EINVAL		(-5)	/* bad arguments */

typedef struct HierindexGpuDeviceInfo
{
	int			device_count;	/* CUDA devices visible */
	int			device;			/* the one described below */
	char		name[256];
	size_t		total_memory;	/* bytes */
	size_t		free_memory;	/* bytes, at probe time */
	int			compute_major;
	int			compute_minor;
	int			multiprocessors;
	int			runtime_version;	/* e.g. 13000 */
	int			driver_version;
} HierindexGpuDeviceInfo;

/* Symbol names looked up with dlsym. */
#define HIERINDEX_GPU_SYM_ABI_VERSION	"hierindex_gpu_abi_version"
#define HIERINDEX_GPU_SYM_PROBE			"hierindex_gpu_probe"

typedef int (*hierindex_gpu_abi_version_fn) (void);
typedef int (*hierindex_gpu_probe_fn) (int device, HierindexGpuDeviceInfo *info,
									   char *errbuf, size_t errlen);

/* Returns HIERINDEX_GPU_ABI_VERSION as compiled into the module. */
int			hierindex_gpu_abi_version(void);

/*
 * Describe CUDA device number `device` (0 for the first).  Returns
 * HIERINDEX_GPU_ENODEVICE when there is no usable device or driver.
 */
int			hierindex_gpu_probe(int device, HierindexGpuDeviceInfo *info,
								char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif							/* HIERINDEX_GPU_H */
