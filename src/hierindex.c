/*
 * hierindex.c — module entry point.
 *
 * Chooses the distance kernels for this CPU once, when the library is loaded,
 * so that every later call (SQL functions, index builds, scans) goes through
 * the fastest implementation without re-checking.
 */
#include "postgres.h"

#include "fmgr.h"

#include "distance.h"
#include "hnsw/hnsw.h"
#include "matryoshka/matryoshka.h"

PG_MODULE_MAGIC;

extern void _PG_init(void);

void
_PG_init(void)
{
	distance_init();
	hnsw_init();
	matryoshka_init();
}
