/*
 * gpu_module.h — the backend's side of hierindex_gpu.so: finding and opening
 * the CUDA module, checking its ABI, probing the device, and calling it with
 * the signal discipline a PostgreSQL backend needs.
 *
 * Any access method that builds on the GPU (hnsw now, matryoshka later) goes
 * through here and never calls dlopen or the module's functions itself, so
 * the rules below hold everywhere:
 *
 *   * the module is opened only when a GPU build is asked for or chosen,
 *     never at server start, so hierindex.so works on machines without CUDA;
 *   * every call into the module (its library constructors, the probe, the
 *     builds) runs with all signals blocked on the backend thread: the CUDA
 *     runtime starts threads of its own, which inherit that mask, and a
 *     PostgreSQL signal handler must never run on one of them;
 *   * a cancel (or a terminate) is answered through the module's should_stop
 *     callback, which only reads the backend's interrupt flags; the ERROR is
 *     raised afterwards, on the backend thread, with signals restored.
 *
 * Nothing here depends on CUDA headers: gpu.h is plain C.
 */
#ifndef HIERINDEX_GPU_MODULE_H
#define HIERINDEX_GPU_MODULE_H

#include "gpu/gpu.h"

/* File name of the module in PostgreSQL's $libdir (pkglibdir). */
#define GPU_MODULE_FILE_NAME	"hierindex_gpu.so"

/*
 * An opened module whose ABI matches ours and whose device answered the
 * probe.  Lives for the backend's life once loaded.
 */
typedef struct GpuModule
{
	hierindex_gpu_abi_version_fn abi_version;
	hierindex_gpu_probe_fn probe;
	hierindex_gpu_knn_fn knn;
	hierindex_gpu_build_graph_fn build_graph;
	HierindexGpuDeviceInfo device;	/* what the probe said about the device */
} GpuModule;

/*
 * The module with CUDA device `device` probed, or NULL when a GPU build
 * cannot run here; *reason then says why in one sentence fit for an errdetail
 * or a DEBUG line (module missing, the dlopen error, an ABI mismatch, no
 * device).  The reason stays valid until the next call.  A successful load is
 * kept for the rest of the backend's life; a failure is tried again on the
 * next call (it costs a stat, a dlopen or a probe).
 */
extern const GpuModule *gpu_module_open(int device, const char **reason);

/*
 * Start what gpu_module_open(device) does on a thread, so that a later
 * gpu_module_open finds the work done (see the file comment of
 * gpu_module.c).  Says nothing: a failure shows at gpu_module_open.
 */
extern void gpu_module_open_soon(int device);

/*
 * hierindex_gpu_build_graph through the rules above.  options->should_stop is
 * set here (the caller's value is ignored).  Returns the module's code:
 * HIERINDEX_GPU_OK, or an error code with its message in errbuf.  Never
 * returns HIERINDEX_GPU_ECANCELED: a canceled build ends in an ERROR (the
 * usual "canceling statement" one when the interrupt is still pending).
 */
extern int	gpu_module_build_graph(const GpuModule *module, HierindexGpuGraph *graph,
								   HierindexGpuOptions *options,
								   HierindexGpuStats *stats,
								   char *errbuf, size_t errlen);

/* hierindex_gpu_knn the same way. */
extern int	gpu_module_knn(const GpuModule *module, const float *vectors, int64_t n,
						   int dimensions, int metric, int k,
						   HierindexGpuOptions *options,
						   int32_t *ids, float *distances,
						   HierindexGpuStats *stats,
						   char *errbuf, size_t errlen);

#endif							/* HIERINDEX_GPU_MODULE_H */
