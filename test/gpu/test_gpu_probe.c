/*
 * test_gpu_probe.c — loads hierindex_gpu.so the way the backend does (dlopen,
 * dlsym by the names in gpu.h) and checks what it reports.
 *
 *   test_gpu_probe MODULE.so expect-none   no usable GPU here (CI): the probe
 *                                          must fail cleanly with ENODEVICE
 *   test_gpu_probe MODULE.so expect-gpu    a GPU is present: the probe must
 *                                          describe it
 *
 * This is the CPU-fallback contract of the GPU module: on a machine without a
 * GPU or a CUDA driver, opening and probing it must return an error code and a
 * message, never abort the process (which would be a crashed backend).
 */
#include "gpu.h"
#include "unit.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

int
main(int argc, char **argv)
{
	void	   *module;
	hierindex_gpu_abi_version_fn abi_version;
	hierindex_gpu_probe_fn probe;
	HierindexGpuDeviceInfo info;
	char		errbuf[512] = "";
	int			rc;
	int			expect_gpu;

	if (argc != 3 || (strcmp(argv[2], "expect-none") != 0 &&
					  strcmp(argv[2], "expect-gpu") != 0))
	{
		fprintf(stderr, "usage: %s MODULE.so expect-none|expect-gpu\n", argv[0]);
		return 2;
	}
	expect_gpu = strcmp(argv[2], "expect-gpu") == 0;

	module = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	UNIT_CHECK(module != NULL, "dlopen(%s): %s", argv[1], dlerror());
	if (module == NULL)
		return unit_summary();

	abi_version = (hierindex_gpu_abi_version_fn) dlsym(module, HIERINDEX_GPU_SYM_ABI_VERSION);
	probe = (hierindex_gpu_probe_fn) dlsym(module, HIERINDEX_GPU_SYM_PROBE);
	UNIT_CHECK(abi_version != NULL, "symbol %s exported", HIERINDEX_GPU_SYM_ABI_VERSION);
	UNIT_CHECK(probe != NULL, "symbol %s exported", HIERINDEX_GPU_SYM_PROBE);
	if (abi_version == NULL || probe == NULL)
		return unit_summary();

	UNIT_CHECK(abi_version() == HIERINDEX_GPU_ABI_VERSION,
			   "ABI version %d, expected %d", abi_version(), HIERINDEX_GPU_ABI_VERSION);

	rc = probe(0, NULL, errbuf, sizeof(errbuf));
	UNIT_CHECK(rc == HIERINDEX_GPU_EINVAL && errbuf[0] != '\0',
			   "probe with no info struct is rejected (rc %d, \"%s\")", rc, errbuf);

	errbuf[0] = '\0';
	rc = probe(0, &info, errbuf, sizeof(errbuf));
	if (expect_gpu)
	{
		UNIT_CHECK(rc == HIERINDEX_GPU_OK, "probe device 0: rc %d (%s)", rc, errbuf);
		if (rc == HIERINDEX_GPU_OK)
		{
			printf("gpu: %s, compute %d.%d, %d SMs, %.1f GiB (%.1f free), runtime %d, driver %d, %d device(s)\n",
				   info.name, info.compute_major, info.compute_minor,
				   info.multiprocessors, info.total_memory / 1073741824.0,
				   info.free_memory / 1073741824.0, info.runtime_version,
				   info.driver_version, info.device_count);
			UNIT_CHECK(info.device_count >= 1 && info.name[0] != '\0' &&
					   info.total_memory > 0 && info.free_memory > 0 &&
					   info.free_memory <= info.total_memory &&
					   info.compute_major >= 7 && info.multiprocessors > 0,
					   "device description is plausible");
			errbuf[0] = '\0';
			rc = probe(info.device_count, &info, errbuf, sizeof(errbuf));
			UNIT_CHECK(rc == HIERINDEX_GPU_ENODEVICE && errbuf[0] != '\0',
					   "probe of a device number past the last one fails cleanly (rc %d, \"%s\")",
					   rc, errbuf);
		}
	}
	else
	{
		UNIT_CHECK(rc == HIERINDEX_GPU_ENODEVICE,
				   "probe without a GPU returns ENODEVICE (rc %d)", rc);
		UNIT_CHECK(errbuf[0] != '\0', "and says why: \"%s\"", errbuf);
		printf("gpu: none, as expected: %s\n", errbuf);
	}

	dlclose(module);
	return unit_summary();
}
