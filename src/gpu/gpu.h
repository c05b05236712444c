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
 * negative HIERINDEX_GPU_E* code and writes a message into errbuf.  Nothing
 * here ever exits or aborts the calling process: every CUDA and cuBLAS call is
 * checked and turned into an error code, and everything allocated is freed
 * before returning, error or not.
 *
 * The graph builder's output is the flat in-memory form of src/graph/graph.h
 * (the arrays of a Graph), so that the one page writer lays out what either
 * builder made without knowing which ran.
 *
 * Every entry point takes an options struct (never NULL: HIERINDEX_GPU_EINVAL).
 *
 * Threads: every function runs on the calling thread (plus the GPU).  The
 * should_stop callback is called on that thread between GPU steps (at least
 * every few hundred milliseconds of work); a PostgreSQL backend answers it by
 * reading its interrupt flags, without any PostgreSQL call.
 */
#ifndef HIERINDEX_GPU_H
#define HIERINDEX_GPU_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C"
{
#endif

/* Bumped whenever a declaration below changes; checked after dlopen. */
#define HIERINDEX_GPU_ABI_VERSION 2

#define HIERINDEX_GPU_OK			0
#define HIERINDEX_GPU_ENODEVICE		(-1)	/* no CUDA device or driver */
#define HIERINDEX_GPU_ENOMEM		(-2)	/* device (or pinned host) memory exhausted */
#define HIERINDEX_GPU_ECUDA			(-3)	/* any other CUDA/cuBLAS failure */
#define HIERINDEX_GPU_ECANCELED		(-4)	/* the should_stop callback said stop */
#define HIERINDEX_GPU_EINVAL		(-5)	/* bad arguments */
#define HIERINDEX_GPU_EUNSUPPORTED	(-6)	/* e.g. a metric the GPU builder lacks */

/* Metrics: the same numbers and meanings as GraphMetric in src/graph/graph.h. */
#define HIERINDEX_GPU_METRIC_L2			0	/* squared Euclidean distance */
#define HIERINDEX_GPU_METRIC_INNER_PRODUCT 1	/* negative inner product */
#define HIERINDEX_GPU_METRIC_COSINE		2	/* 1 - dot product; rows come normalised */
#define HIERINDEX_GPU_METRIC_L1			3	/* taxicab: HIERINDEX_GPU_EUNSUPPORTED */

/* Arithmetic of the candidate search (the kept neighbours are always re-scored in fp32). */
#define HIERINDEX_GPU_PRECISION_TF32	0	/* fp32 inputs, TF32 tensor cores, fp32 sums */
#define HIERINDEX_GPU_PRECISION_BF16	1	/* bf16 inputs, fp32 sums: twice the rate */
#define HIERINDEX_GPU_PRECISION_FP32	2	/* plain fp32 (slow; for checking) */
#define HIERINDEX_GPU_PRECISION_FP16	3	/* fp16 inputs scaled into its range, fp32 sums:
											 * twice TF32's rate, the same 10-bit mantissa */

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

/* Nonzero: stop as soon as possible and return HIERINDEX_GPU_ECANCELED. */
typedef int (*hierindex_gpu_should_stop_fn) (void *arg);

typedef struct HierindexGpuOptions
{
	int			device;			/* CUDA device number (0: the first) */

	/*
	 * Device memory the build may use, in bytes; 0 means 90% of what is free
	 * when it starts.  When the vectors do not fit, they are streamed through
	 * the GPU in blocks from pinned host memory (tests set a small limit to
	 * exercise that path on small data).
	 */
	size_t		memory_limit;
	int			precision;		/* HIERINDEX_GPU_PRECISION_* */
	hierindex_gpu_should_stop_fn should_stop;	/* may be NULL */
	void	   *should_stop_arg;
} HierindexGpuOptions;

/* Phases timed in HierindexGpuStats.seconds[] */
#define HIERINDEX_GPU_PHASE_TRANSFER	0	/* host <-> device copies not hidden behind compute */
#define HIERINDEX_GPU_PHASE_KNN			1	/* exact nearest-earlier lists, layer 0 */
#define HIERINDEX_GPU_PHASE_PRUNE		2	/* heuristic, reverse edges, second heuristic */
#define HIERINDEX_GPU_PHASE_UPPER		3	/* all layers above 0 */
#define HIERINDEX_GPU_PHASES			4

typedef struct HierindexGpuStats
{
	double		seconds[HIERINDEX_GPU_PHASES];
	double		knn_flops;		/* multiply-adds x 2 of the candidate search */
	double		bytes_to_device;
	double		bytes_from_device;
	int64_t		column_blocks;	/* blocks of vectors streamed (1: all resident) */
	int64_t		knn_rescued_rows;	/* rows searched again in fp32 (not certified) */

	/*
	 * The k-NN phase split into its steps, in seconds: only with
	 * HIERINDEX_GPU_KNN_SPLIT set in the environment, which waits for the
	 * GPU after each step (slower, for tuning); zero otherwise.
	 */
	double		knn_product_seconds;	/* matrix products */
	double		knn_select_seconds; /* shortlist selection */
	double		knn_rescore_seconds;	/* fp32 re-scoring and final k */
	double		knn_rescue_seconds; /* uncertified rows again in fp32 */
	char		device_name[256];
} HierindexGpuStats;

/*
 * The layered graph, in the flat form of src/graph/graph.h.  The caller owns
 * every array; the GPU builder reads the inputs and fills the outputs.
 *   vectors       n x dimensions floats (rows normalised under cosine)
 *   levels        n levels, drawn by the caller (graph_draw_level)
 *   upper_offset  n entries: -1 for level 0, else where the element's layer-1
 *                 slot starts in upper_links (layer l at + (l - 1) * (1 + m))
 *   links0        out: n slots of (1 + 2m) int32: count, then neighbour ids
 *                 in ascending distance
 *   upper_links   out: a slot of (1 + m) int32 per element and upper layer
 */
typedef struct HierindexGpuGraph
{
	int64_t		n;
	int			dimensions;
	int			metric;			/* HIERINDEX_GPU_METRIC_* */
	int			m;				/* links per element above layer 0; 2m on layer 0 */
	int			ef_construction;	/* sets the candidates per element (see below) */
	const float *vectors;
	const uint8_t *levels;
	const int64_t *upper_offset;
	int32_t    *links0;
	int32_t    *upper_links;
} HierindexGpuGraph;

/* Symbol names looked up with dlsym. */
#define HIERINDEX_GPU_SYM_ABI_VERSION	"hierindex_gpu_abi_version"
#define HIERINDEX_GPU_SYM_PROBE			"hierindex_gpu_probe"
#define HIERINDEX_GPU_SYM_KNN			"hierindex_gpu_knn"
#define HIERINDEX_GPU_SYM_BUILD_GRAPH	"hierindex_gpu_build_graph"

typedef int (*hierindex_gpu_abi_version_fn) (void);
typedef int (*hierindex_gpu_probe_fn) (int device, HierindexGpuDeviceInfo *info,
									   char *errbuf, size_t errlen);
typedef int (*hierindex_gpu_knn_fn) (const float *vectors, int64_t n, int dimensions,
									 int metric, int k,
									 const HierindexGpuOptions *options,
									 int32_t *ids, float *distances,
									 HierindexGpuStats *stats,
									 char *errbuf, size_t errlen);
typedef int (*hierindex_gpu_build_graph_fn) (HierindexGpuGraph *graph,
											 const HierindexGpuOptions *options,
											 HierindexGpuStats *stats,
											 char *errbuf, size_t errlen);

/* Returns HIERINDEX_GPU_ABI_VERSION as compiled into the module. */
int			hierindex_gpu_abi_version(void);

/*
 * Describe CUDA device number `device` (0 for the first).  Returns
 * HIERINDEX_GPU_ENODEVICE when there is no usable device or driver.
 */
int			hierindex_gpu_probe(int device, HierindexGpuDeviceInfo *info,
								char *errbuf, size_t errlen);

/*
 * The exact k nearest neighbours of each of the n vectors among the others
 * (itself excluded): ids and distances are n x k, each row in ascending
 * distance (ties by id), distances as graph_metric_distance computes them in
 * fp32.  Where fewer than k others exist the row ends with -1 / +infinity.
 * The candidates are found with the options' precision and the final k are
 * re-scored in fp32 from a wider shortlist, so the result is exact up to
 * fp32 rounding.  stats may be NULL.
 */
int			hierindex_gpu_knn(const float *vectors, int64_t n, int dimensions,
							  int metric, int k,
							  const HierindexGpuOptions *options,
							  int32_t *ids, float *distances,
							  HierindexGpuStats *stats,
							  char *errbuf, size_t errlen);

/*
 * Build the HNSW graph as insertion in a random (fixed-seed) order with an
 * exact search would: on every layer, each element's exact nearest among
 * the elements of that layer inserted before it (4 ef_construction of them,
 * at most 1024), pruned with the neighbour heuristic (Algorithm 4) to the
 * layer's width, then each element's list united with the elements that
 * chose it (reverse edges) and pruned again.  The caller
 * sets the entry point (an element of the highest level) and makes every
 * element reachable afterwards (graph_connect_unreachable), as for the CPU
 * builder.  stats may be NULL.
 */
int			hierindex_gpu_build_graph(HierindexGpuGraph *graph,
									  const HierindexGpuOptions *options,
									  HierindexGpuStats *stats,
									  char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif							/* HIERINDEX_GPU_H */
