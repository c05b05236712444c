/*
 * distance_avx2.c — avx2 kernels (not yet vectorized: reports unsupported,
 * so the dispatcher falls back to the scalar kernels).
 */
#include "distance.h"

#include <stddef.h>

const DistanceKernels *
distance_kernels_avx2(void)
{
	return NULL;
}
