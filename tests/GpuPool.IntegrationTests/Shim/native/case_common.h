/*
 * The case programs' reporting (bad_input, driver_extras, module_globals): one line per case, "case NAME: RESULT ok" or
 * "... MISMATCH", which the tests read by name, and a count of mismatches for the exit code.
 */
#ifndef GPUPOOL_CASE_COMMON_H
#define GPUPOOL_CASE_COMMON_H

static int cases, mismatches;

static void check(const char *name, CUresult got, CUresult want)
{
    cases++;
    if (got == want) {
        printf("case %s: %s ok\n", name, result_name(got));
    } else {
        mismatches++;
        printf("case %s: %s MISMATCH (expected %s)\n", name, result_name(got), result_name(want));
    }
    fflush(stdout);
}

static void check_that(const char *name, int condition, const char *detail)
{
    cases++;
    if (condition) {
        printf("case %s: %s ok\n", name, detail);
    } else {
        mismatches++;
        printf("case %s: %s MISMATCH\n", name, detail);
    }
    fflush(stdout);
}

#endif /* GPUPOOL_CASE_COMMON_H */
