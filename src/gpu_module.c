/*
 * gpu_module.c — opening hierindex_gpu.so and calling it from a backend.
 *
 * The module sits in PostgreSQL's $libdir next to hierindex.so (make install
 * puts it there when nvcc was found).  It is opened with dlopen the first time
 * a GPU build is asked for or chosen, never before: on a machine without CUDA
 * the dlopen fails (the CUDA libraries are missing) or the probe does (no
 * driver, no device), and the caller gets a reason instead of a GPU.
 *
 * Caching.  Once the module is open with the right ABI and all its symbols,
 * it stays open for the life of the backend, and a successful probe is kept
 * per device number.  Failures are not remembered: the next build tries
 * again, which costs a stat, a dlopen or a probe, nothing next to a build,
 * and means installing the module or a driver needs no reconnect.  A module
 * that opened but turned out unusable is deliberately not dlclose'd: its
 * constructors registered GPU code with the CUDA runtime, and unloading that
 * from a live backend is a risk for no gain (a second dlopen of the same
 * file returns the same handle).
 *
 * Warm-up.  Opening the module (dlopen of it and of cuBLAS) and the first
 * probe (the CUDA runtime's start) take about half a second in a fresh
 * backend.  A build that will probably use the GPU asks for it with
 * gpu_module_open_soon before its heap scan: a thread with every signal
 * blocked does the same work as gpu_module_open (which makes no PostgreSQL
 * call), and gpu_module_open joins it before anything else, then finds the
 * module open and the device probed.  An ERROR in between leaves the thread
 * to finish on its own (a second or so, touching nothing but this file's
 * state); the next open, or the backend's exit, joins it.
 *
 * Signals.  Every call into the module runs with all signals blocked on the
 * backend thread.  The CUDA runtime creates threads (at load, at the first
 * call, during builds) and they inherit the creating thread's mask; with
 * everything blocked, no PostgreSQL signal handler can ever run on them.
 * While a build runs, the module calls should_stop() on the backend thread
 * between steps; it opens the saved mask for a moment, so that signals that
 * arrived meanwhile are delivered here, on the backend thread, where their
 * handlers set QueryCancelPending or ProcDiePending, then blocks everything
 * again and reports the flags.  The ERROR itself is raised only after the
 * module has returned and the mask is restored (CHECK_FOR_INTERRUPTS).
 */
#include "postgres.h"

#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>

#include "miscadmin.h"
#include "storage/ipc.h"

#include "gpu_module.h"

/* why the last gpu_module_open failed (gpu_module_open hands it out) */
static char failure_reason[1024];

static bool module_loaded = false;
static GpuModule module;
static int	probed_device = -1; /* device of module.device, -1: none yet */

/*
 * gpu_module_open_soon's thread: it opens the module and probes the device
 * while the build scans the heap; gpu_module_open joins it first.
 */
static pthread_t warm_up_thread;
static bool warm_up_running = false;
static bool warm_up_exit_callback = false;
static int	warm_up_device;

/* One call into the module: the mask to restore, and whose thread it is. */
typedef struct ModuleCall
{
	sigset_t	saved_signals;
	pthread_t	backend_thread;
} ModuleCall;

static void
begin_module_call(ModuleCall *call)
{
	sigset_t	all_signals;

	sigfillset(&all_signals);
	call->backend_thread = pthread_self();
	pthread_sigmask(SIG_BLOCK, &all_signals, &call->saved_signals);
}

static void
end_module_call(ModuleCall *call)
{
	pthread_sigmask(SIG_SETMASK, &call->saved_signals, NULL);
}

/*
 * The module's should_stop callback (see the file comment).  Makes no
 * PostgreSQL call: it only lets pending signals in and reads two flags.
 */
static int
should_stop(void *arg)
{
	ModuleCall *call = (ModuleCall *) arg;

	/* gpu.h promises the calling thread; on any other, only read the flags */
	if (pthread_equal(pthread_self(), call->backend_thread))
	{
		sigset_t	all_signals;

		sigfillset(&all_signals);
		pthread_sigmask(SIG_SETMASK, &call->saved_signals, NULL);
		pthread_sigmask(SIG_BLOCK, &all_signals, NULL);
	}
	return QueryCancelPending || ProcDiePending;
}

/* Look up one symbol of the module; false (and the reason) when missing. */
static bool
find_symbol(void *handle, const char *path, const char *name, void **symbol)
{
	*symbol = dlsym(handle, name);
	if (*symbol == NULL)
	{
		snprintf(failure_reason, sizeof(failure_reason),
				 "The GPU module \"%s\" does not export %s; it was built for another version of hierindex.",
				 path, name);
		return false;
	}
	return true;
}

/* Open the module and check it; sets failure_reason when it cannot. */
static bool
load_module(void)
{
	char		path[MAXPGPATH];
	struct stat st;
	void	   *handle;
	void	   *symbols[4];
	ModuleCall	call;
	int			version;

	if (module_loaded)
		return true;

	join_path_components(path, pkglib_path, GPU_MODULE_FILE_NAME);
	if (stat(path, &st) != 0)
	{
		snprintf(failure_reason, sizeof(failure_reason),
				 "The GPU module \"%s\" is not installed (hierindex was built without nvcc, or with CUDA=0).",
				 path);
		return false;
	}

	/* its constructors may start CUDA threads: see the file comment */
	begin_module_call(&call);
	handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	end_module_call(&call);
	if (handle == NULL)
	{
		snprintf(failure_reason, sizeof(failure_reason),
				 "Could not load the GPU module: %s.", dlerror());
		return false;
	}

	if (!find_symbol(handle, path, HIERINDEX_GPU_SYM_ABI_VERSION, &symbols[0]))
		return false;
	version = ((hierindex_gpu_abi_version_fn) symbols[0]) ();
	if (version != HIERINDEX_GPU_ABI_VERSION)
	{
		snprintf(failure_reason, sizeof(failure_reason),
				 "The GPU module \"%s\" has ABI version %d, but this hierindex needs version %d; install the module built with it.",
				 path, version, HIERINDEX_GPU_ABI_VERSION);
		return false;
	}
	if (!find_symbol(handle, path, HIERINDEX_GPU_SYM_PROBE, &symbols[1]) ||
		!find_symbol(handle, path, HIERINDEX_GPU_SYM_KNN, &symbols[2]) ||
		!find_symbol(handle, path, HIERINDEX_GPU_SYM_BUILD_GRAPH, &symbols[3]))
		return false;

	module.abi_version = (hierindex_gpu_abi_version_fn) symbols[0];
	module.probe = (hierindex_gpu_probe_fn) symbols[1];
	module.knn = (hierindex_gpu_knn_fn) symbols[2];
	module.build_graph = (hierindex_gpu_build_graph_fn) symbols[3];
	module_loaded = true;
	return true;
}

static const GpuModule *open_and_probe(int device, const char **reason);

static void *
warm_up_main(void *arg)
{
	const char *reason;

	(void) open_and_probe(warm_up_device, &reason);
	return NULL;
}

static void
join_warm_up(void)
{
	if (warm_up_running)
	{
		pthread_join(warm_up_thread, NULL);
		warm_up_running = false;
	}
}

static void
join_warm_up_at_exit(int code, Datum arg)
{
	join_warm_up();
}

void
gpu_module_open_soon(int device)
{
	sigset_t	all_signals;
	sigset_t	saved_signals;

	if (warm_up_running || (module_loaded && probed_device == device))
		return;
	if (!warm_up_exit_callback)
	{
		before_shmem_exit(join_warm_up_at_exit, (Datum) 0);
		warm_up_exit_callback = true;
	}
	warm_up_device = device;
	sigfillset(&all_signals);
	pthread_sigmask(SIG_BLOCK, &all_signals, &saved_signals);
	if (pthread_create(&warm_up_thread, NULL, warm_up_main, NULL) == 0)
		warm_up_running = true;
	pthread_sigmask(SIG_SETMASK, &saved_signals, NULL);
}

const GpuModule *
gpu_module_open(int device, const char **reason)
{
	join_warm_up();
	return open_and_probe(device, reason);
}

/*
 * gpu_module_open's work, on the backend thread or the warm-up thread: no
 * PostgreSQL call.
 */
static const GpuModule *
open_and_probe(int device, const char **reason)
{
	ModuleCall	call;
	HierindexGpuDeviceInfo info;
	char		errbuf[512];
	int			rc;

	*reason = failure_reason;
	failure_reason[0] = '\0';
	if (!load_module())
		return NULL;
	if (probed_device == device)
		return &module;

	errbuf[0] = '\0';
	begin_module_call(&call);
	rc = module.probe(device, &info, errbuf, sizeof(errbuf));
	end_module_call(&call);
	errbuf[sizeof(errbuf) - 1] = '\0';
	if (rc != HIERINDEX_GPU_OK)
	{
		snprintf(failure_reason, sizeof(failure_reason),
				 "No usable GPU: %s.", errbuf[0] ? errbuf : "the device probe failed");
		return NULL;
	}
	module.device = info;
	probed_device = device;
	return &module;
}

/*
 * Around a build call: the cancel callback installed, all signals blocked.
 * The options are the caller's; should_stop is pointed at this call.
 */
static void
begin_build_call(ModuleCall *call, HierindexGpuOptions *options, char *errbuf)
{
	errbuf[0] = '\0';
	options->should_stop = should_stop;
	options->should_stop_arg = call;
	begin_module_call(call);
}

/*
 * After a build call: signals restored, then a cancel becomes the ERROR and
 * an error without a message gets one.  Returns rc.
 */
static int
end_build_call(ModuleCall *call, HierindexGpuOptions *options, int rc,
			   char *errbuf, size_t errlen)
{
	end_module_call(call);
	options->should_stop = NULL;
	options->should_stop_arg = NULL;
	errbuf[errlen - 1] = '\0';
	if (rc == HIERINDEX_GPU_ECANCELED)
	{
		CHECK_FOR_INTERRUPTS();

		/* the interrupt is held off, or the module stopped by itself */
		ereport(ERROR,
				(errcode(ERRCODE_QUERY_CANCELED),
				 errmsg("canceling the GPU computation"),
				 errdetail("The GPU module stopped: %s",
						   errbuf[0] ? errbuf : "an interrupt was pending.")));
	}
	if (rc != HIERINDEX_GPU_OK && errbuf[0] == '\0')
		snprintf(errbuf, errlen, "the GPU module returned error code %d", rc);
	return rc;
}

int
gpu_module_build_graph(const GpuModule *gpu, HierindexGpuGraph *graph,
					   HierindexGpuOptions *options, HierindexGpuStats *stats,
					   char *errbuf, size_t errlen)
{
	ModuleCall	call;
	int			rc;

	begin_build_call(&call, options, errbuf);
	rc = gpu->build_graph(graph, options, stats, errbuf, errlen);
	return end_build_call(&call, options, rc, errbuf, errlen);
}

int
gpu_module_knn(const GpuModule *gpu, const float *vectors, int64_t n,
			   int dimensions, int metric, int k, HierindexGpuOptions *options,
			   int32_t *ids, float *distances, HierindexGpuStats *stats,
			   char *errbuf, size_t errlen)
{
	ModuleCall	call;
	int			rc;

	begin_build_call(&call, options, errbuf);
	rc = gpu->knn(vectors, n, dimensions, metric, k, options, ids, distances,
				  stats, errbuf, errlen);
	return end_build_call(&call, options, rc, errbuf, errlen);
}
