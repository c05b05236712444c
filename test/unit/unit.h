/*
 * unit.h — a tiny test harness for the plain-C unit tests (no PostgreSQL).
 *
 * A test program is a series of test cases.  A case groups any number of
 * checks and passes only if all of them pass:
 *
 *		unit_case_begin("l2 on %d dims", n);
 *		UNIT_CHECK(x > 0, "x = %g", x);
 *		UNIT_CHECK_INT_EQ(count, 3);
 *		unit_case_end();
 *		...
 *		return unit_summary();
 *
 * Checks: UNIT_CHECK(cond, fmt, ...) (the printf-style message is required:
 * give the inputs and values needed to reproduce a failure),
 * UNIT_CHECK_TRUE(cond), UNIT_CHECK_INT_EQ, UNIT_CHECK_STR_EQ and
 * UNIT_CHECK_NEAR (which print both values themselves).  Each returns
 * whether it passed.  unit_skip() records a case that cannot run here.
 * A check made outside any case counts as a case of its own.  Each failed
 * check prints one line with the case name, file:line, the failed expression
 * and a message; only the first UNIT_MAX_REPORTED_FAILURES failures of a case
 * are printed, so a broken kernel checked on thousands of inputs does not
 * drown the output.  unit_summary() prints the last line, exactly
 * "N passed, N failed" (scripts parse it), and returns the exit status:
 * 0 when nothing failed, 1 otherwise.
 *
 * Header-only (all functions static inline, state in one function-local
 * static), so a test program is a single .c file plus the code under test.
 * Not thread-safe: make checks from one thread (compute in parallel, then
 * check the results).
 */
#ifndef HIERINDEX_UNIT_H
#define HIERINDEX_UNIT_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef UNIT_MAX_REPORTED_FAILURES
#define UNIT_MAX_REPORTED_FAILURES 10
#endif

#if defined(__GNUC__) || defined(__clang__)
#define UNIT_PRINTF_FORMAT(fmt_index, first_arg) \
	__attribute__((format(printf, fmt_index, first_arg)))
#else
#define UNIT_PRINTF_FORMAT(fmt_index, first_arg)
#endif

typedef struct UnitState
{
	int			cases_passed;
	int			cases_failed;
	int			cases_skipped;
	int			case_open;		/* inside unit_case_begin/end? */
	int			case_checks;	/* checks made in the open case */
	int			case_failures;	/* failed checks in the open case */
	char		case_name[256];
} UnitState;

static inline UnitState *
unit_state(void)
{
	static UnitState state;

	return &state;
}

/* Open a test case; its name (printf format) appears in failure messages. */
static inline void UNIT_PRINTF_FORMAT(1, 2)
unit_case_begin(const char *fmt,...)
{
	UnitState  *s = unit_state();
	va_list		ap;

	if (s->case_open)
		fprintf(stderr, "unit.h: case \"%s\" was not ended\n", s->case_name);
	va_start(ap, fmt);
	vsnprintf(s->case_name, sizeof(s->case_name), fmt, ap);
	va_end(ap);
	s->case_open = 1;
	s->case_checks = 0;
	s->case_failures = 0;
}

/*
 * Close the open case and count it.  A case with no checks at all counts as
 * failed: a test that checks nothing cannot fail, which is a defect.
 * Returns 1 if the case passed.
 */
static inline int
unit_case_end(void)
{
	UnitState  *s = unit_state();
	int			passed;

	if (!s->case_open)
	{
		fprintf(stderr, "unit.h: unit_case_end() without unit_case_begin()\n");
		s->cases_failed++;
		return 0;
	}
	if (s->case_checks == 0)
	{
		printf("FAIL [%s]: the case made no checks\n", s->case_name);
		s->case_failures = 1;
	}
	else if (s->case_failures > UNIT_MAX_REPORTED_FAILURES)
		printf("FAIL [%s]: %d more failed checks not shown\n", s->case_name,
			   s->case_failures - UNIT_MAX_REPORTED_FAILURES);
	passed = (s->case_failures == 0);
	if (passed)
		s->cases_passed++;
	else
		s->cases_failed++;
	s->case_open = 0;
	return passed;
}

/* Record a case that could not run here (e.g. the CPU lacks a feature). */
static inline void UNIT_PRINTF_FORMAT(1, 2)
unit_skip(const char *fmt,...)
{
	va_list		ap;

	printf("SKIP ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	unit_state()->cases_skipped++;
}

/* The engine behind the UNIT_CHECK* macros.  Returns ok. */
static inline int UNIT_PRINTF_FORMAT(5, 6)
unit_check_at(const char *file, int line, int ok, const char *expr,
			  const char *fmt,...)
{
	UnitState  *s = unit_state();
	int			standalone = !s->case_open;

	if (standalone)
		unit_case_begin("%s:%d", file, line);
	s->case_checks++;
	if (!ok)
	{
		s->case_failures++;
		if (s->case_failures <= UNIT_MAX_REPORTED_FAILURES)
		{
			va_list		ap;
			char		message[1024];

			va_start(ap, fmt);
			vsnprintf(message, sizeof(message), fmt, ap);
			va_end(ap);
			printf("FAIL [%s] %s:%d: %s", s->case_name, file, line, expr);
			if (message[0] != '\0')
				printf(": %s", message);
			printf("\n");
		}
	}
	if (standalone)
		unit_case_end();
	return ok;
}

/*
 * UNIT_CHECK(condition, printf-format, args...): the message should give the
 * context needed to reproduce a failure (inputs, got, expected).
 */
#define UNIT_CHECK(cond, ...) \
	unit_check_at(__FILE__, __LINE__, (cond) ? 1 : 0, #cond, __VA_ARGS__)

/* UNIT_CHECK_TRUE(condition): when the expression alone says enough. */
#define UNIT_CHECK_TRUE(cond) \
	unit_check_at(__FILE__, __LINE__, (cond) ? 1 : 0, #cond, "%s", "")

#define UNIT_CHECK_INT_EQ(got, want) \
	unit_check_int_eq_at(__FILE__, __LINE__, #got " == " #want, \
						 (long long) (got), (long long) (want))

#define UNIT_CHECK_STR_EQ(got, want) \
	unit_check_str_eq_at(__FILE__, __LINE__, #got " == " #want, (got), (want))

/* |got - want| <= tolerance; NaN never passes. */
#define UNIT_CHECK_NEAR(got, want, tolerance) \
	unit_check_near_at(__FILE__, __LINE__, #got " ~= " #want, \
					   (double) (got), (double) (want), (double) (tolerance))

static inline int
unit_check_int_eq_at(const char *file, int line, const char *expr,
					 long long got, long long want)
{
	return unit_check_at(file, line, got == want, expr,
						 "got %lld, want %lld", got, want);
}

static inline int
unit_check_str_eq_at(const char *file, int line, const char *expr,
					 const char *got, const char *want)
{
	int			ok = (got != NULL && want != NULL) ? strcmp(got, want) == 0 : got == want;

	return unit_check_at(file, line, ok, expr, "got \"%s\", want \"%s\"",
						 got ? got : "(null)", want ? want : "(null)");
}

static inline int
unit_check_near_at(const char *file, int line, const char *expr,
				   double got, double want, double tolerance)
{
	return unit_check_at(file, line, fabs(got - want) <= tolerance, expr,
						 "got %.9g, want %.9g (tolerance %g)",
						 got, want, tolerance);
}

/* Print the final "N passed, N failed" line; return the exit status. */
static inline int
unit_summary(void)
{
	UnitState  *s = unit_state();

	if (s->case_open)
		unit_case_end();
	if (s->cases_skipped > 0)
		printf("%d skipped\n", s->cases_skipped);
	printf("%d passed, %d failed\n", s->cases_passed, s->cases_failed);
	fflush(stdout);
	return s->cases_failed == 0 ? 0 : 1;
}

#endif							/* HIERINDEX_UNIT_H */
