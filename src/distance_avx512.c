/*
 * distance_avx512.c — avx512 kernels (not yet vectorized: reports unsupported,
 * so the dispatcher falls back to the scalar kernels).
 */
#include "distance.h"

#include <stddef.h>

const DistanceKernels *
distance_kernels_avx512(void)
{
	return NULL;
}
