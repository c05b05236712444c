/*
 * gpu_probe.cu — module identity and device discovery for hierindex_gpu.so.
 *
 * The probe is what lets the backend decide, cheaply and without crashing,
 * whether a GPU build can run here: it reports "no device" as an error code
 * instead of aborting when the driver or the device is missing.
 */
#include "gpu.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

extern "C" int
hierindex_gpu_abi_version(void)
{
	return HIERINDEX_GPU_ABI_VERSION;
}

extern "C" int
hierindex_gpu_probe(int device, HierindexGpuDeviceInfo *info,
					char *errbuf, size_t errlen)
{
	int			count = 0;
	cudaError_t err;
	cudaDeviceProp prop;

	if (info == NULL || device < 0)
	{
		snprintf(errbuf, errlen, "invalid arguments to hierindex_gpu_probe");
		return HIERINDEX_GPU_EINVAL;
	}
	memset(info, 0, sizeof(*info));

	err = cudaGetDeviceCount(&count);
	if (err != cudaSuccess || count == 0)
	{
		snprintf(errbuf, errlen, "no CUDA device available: %s",
				 err != cudaSuccess ? cudaGetErrorString(err) : "device count is 0");
		return HIERINDEX_GPU_ENODEVICE;
	}
	if (device >= count)
	{
		snprintf(errbuf, errlen, "CUDA device %d does not exist (%d visible)",
				 device, count);
		return HIERINDEX_GPU_ENODEVICE;
	}

	err = cudaGetDeviceProperties(&prop, device);
	if (err != cudaSuccess)
	{
		snprintf(errbuf, errlen, "cudaGetDeviceProperties failed: %s",
				 cudaGetErrorString(err));
		return HIERINDEX_GPU_ECUDA;
	}
	info->device_count = count;
	info->device = device;
	snprintf(info->name, sizeof(info->name), "%s", prop.name);
	info->total_memory = prop.totalGlobalMem;
	info->compute_major = prop.major;
	info->compute_minor = prop.minor;
	info->multiprocessors = prop.multiProcessorCount;
	cudaRuntimeGetVersion(&info->runtime_version);
	cudaDriverGetVersion(&info->driver_version);

	err = cudaSetDevice(device);
	if (err == cudaSuccess)
		err = cudaMemGetInfo(&info->free_memory, &info->total_memory);
	if (err != cudaSuccess)
	{
		snprintf(errbuf, errlen, "cannot use CUDA device %d: %s",
				 device, cudaGetErrorString(err));
		return HIERINDEX_GPU_ECUDA;
	}
	return HIERINDEX_GPU_OK;
}
