#include "postgres.h"
/* Placeholder so that the build links: vector_ops.c is written on branch ops and will replace this file. */
