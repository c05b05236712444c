/* hnsw_walk.c — graph walks over index pages (skeleton: being written) */
#include "postgres.h"
#include "hnsw/hnsw.h"
