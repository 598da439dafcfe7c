/*
 * bench/procstat.h: what the C clients of bench/run (wsload.c, tlsnew.c)
 * share: the CPU time of the server processes they measure, and the order
 * of their latencies.  Header-only: each client is one file compiled alone.
 */
#ifndef BENCH_PROCSTAT_H
#define BENCH_PROCSTAT_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* utime+stime of the processes pids[0..npids), in clock ticks; -1 for none. */
static long cpu_ticks(const int *pids, int npids) {
  long sum = 0;
  int i;
  if (!npids) return -1;
  for (i = 0; i < npids; i++) {
    char fn[64], buf[1024], *p;
    unsigned long ut, st;
    FILE *f;
    size_t n;
    snprintf(fn, sizeof fn, "/proc/%d/stat", pids[i]);
    if (!(f = fopen(fn, "r"))) continue;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    if (!(p = strrchr(buf, ')'))) continue;
    /* after ") ": state ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %lu %lu",
               &ut, &st) == 2)
      sum += (long)(ut + st);
  }
  return sum;
}

/* qsort's order of latencies */
static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

#endif
