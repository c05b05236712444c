/*
 * random.h — deterministic pseudo-random inputs for tests and benchmarks.
 *
 * splitmix64: tiny, fast, and well mixed even from small consecutive seeds,
 * so every test can say exactly which inputs it drew (set rng_state to a
 * fixed value) and a failure reproduces bit for bit on any machine.
 * Header-only; one generator state per program.
 */
#ifndef HIERINDEX_TEST_RANDOM_H
#define HIERINDEX_TEST_RANDOM_H

#include <math.h>
#include <stdint.h>

static uint64_t rng_state = 0x243F6A8885A308D3ull;

static inline uint64_t
rng_next(void)
{
	uint64_t	z = (rng_state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static inline double
rng_unit(void)
{
	return (double) (rng_next() >> 11) * (1.0 / 9007199254740992.0);
}

/* standard normal (Box-Muller) */
static inline double
rng_normal(void)
{
	double		u = 1.0 - rng_unit();	/* (0, 1]: log is finite */
	double		v = rng_unit();

	return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif							/* HIERINDEX_TEST_RANDOM_H */
