# hierindex — PGXS build.
#
#   make                 build hierindex.so (and hierindex_gpu.so when nvcc is found)
#   make CUDA=0          skip the GPU module
#   make install         install into the PostgreSQL found by pg_config
#   make installcheck    pg_regress against a running server
#
# hierindex.so never links CUDA: it must load on machines without a GPU.
# hierindex_gpu.so is a separate module, opened with dlopen only when a GPU
# build is asked for.

EXTENSION = hierindex
EXTVERSION = 0.1.0

MODULE_big = hierindex
OBJS = \
	src/hierindex.o \
	src/gpu_module.o \
	src/distance.o \
	src/distance_avx2.o \
	src/distance_avx512.o \
	src/distance_memo.o \
	src/vector_parse.o \
	src/vector_io.o \
	src/vector_ops.o \
	src/graph/graph.o \
	src/graph/graph_build.o \
	src/graph/graph_search.o \
	src/graph/graph_walk.o \
	src/hnsw/hnsw.o \
	src/hnsw/hnsw_page.o \
	src/hnsw/hnsw_write.o \
	src/hnsw/hnsw_build.o \
	src/hnsw/hnsw_build_gpu.o \
	src/hnsw/hnsw_build_parallel.o \
	src/hnsw/hnsw_walk.o \
	src/hnsw/hnsw_insert.o \
	src/hnsw/hnsw_scan.o \
	src/hnsw/hnsw_vacuum.o \
	src/hnsw/hnsw_inspect.o \
	src/matryoshka/matryoshka.o \
	src/matryoshka/matryoshka_build.o \
	src/matryoshka/matryoshka_fine.o \
	src/matryoshka/matryoshka_limit.o \
	src/matryoshka/matryoshka_measure.o \
	src/matryoshka/matryoshka_scan.o \
	src/matryoshka/matryoshka_vacuum.o

DATA = sql/hierindex--$(EXTVERSION).sql

REGRESS = vector_io vector_cast vector_ops vector_prefix vector_agg vector_errors hnsw_inspect hnsw_opclasses hnsw_maintenance hnsw_errors hnsw_overflow hnsw_duplicates hnsw_iterative distance_memo hnsw_gpu matryoshka
REGRESS_OPTS = --inputdir=. --load-extension=$(EXTENSION)

# -O3 and OpenMP for the graph builders; C11 (gnu11 for PostgreSQL's headers).
# No -march: the AVX2/AVX-512 kernels carry their own target attributes and are
# chosen at load time, so one build runs on any x86-64 CPU.
# -Wno-sign-compare because PostgreSQL 15's own utils/array.h macros trip it;
# -Wno-unused-parameter because its bufpage.h/ilist.h inline functions do,
# and because access method callbacks have fixed signatures whose arguments
# a phase may not need.
PG_CFLAGS = -std=gnu11 -O3 -fopenmp -Wall -Wextra -Wno-sign-compare -Wno-unused-parameter
PG_CPPFLAGS = -I$(srcdir)/src
SHLIB_LINK = -fopenmp -lm

# No LLVM bitcode: JIT inlining of our C functions buys nothing, and it would
# make clang a build requirement.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# ---------------------------------------------------------------------------
# GPU module (src/gpu/Makefile), built only when nvcc is available and CUDA != 0.
# ---------------------------------------------------------------------------
CUDA ?= 1
NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })

ifeq ($(CUDA),1)
ifneq ($(NVCC),)
all: hierindex_gpu.so
install: install-gpu
uninstall: uninstall-gpu

hierindex_gpu.so: $(wildcard $(srcdir)/src/gpu/*.cu) $(wildcard $(srcdir)/src/gpu/*.cuh) $(srcdir)/src/gpu/gpu.h
	$(MAKE) -C $(srcdir)/src/gpu NVCC=$(NVCC) OUTPUT=$(abspath $@)

install-gpu: hierindex_gpu.so
	$(INSTALL_SHLIB) hierindex_gpu.so '$(DESTDIR)$(pkglibdir)/hierindex_gpu.so'

uninstall-gpu:
	rm -f '$(DESTDIR)$(pkglibdir)/hierindex_gpu.so'
endif
endif

EXTRA_CLEAN = hierindex_gpu.so

.PHONY: install-gpu uninstall-gpu unit fuzz

# Plain-C unit tests, fuzz targets and micro-benchmarks (no PostgreSQL).
unit:
	$(MAKE) -C test/unit
fuzz:
	$(MAKE) -C test/fuzz
