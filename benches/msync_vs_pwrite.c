// A probe of the log's sync cost on this machine (docs/benchmarks.md, "What an msync costs
// here"): appending to a file through a shared writable mapping and msync(MS_SYNC) of each
// batch, as the engine does, against pwrite(2) of each batch and fdatasync(2) with the mapping
// read-only (readers would still read it). The file is posix_fallocate'd, as the engine's
// segments are, or written with zeros first (PREZERO=1). A second thread reads the mapping so
// that the process runs on both CPUs (NOREADER=1: none). Prints the writer's CPU and wall time
// per sync. Not built by cargo:
//
//   gcc -O2 -pthread benches/msync_vs_pwrite.c -o /tmp/msync_vs_pwrite
//   /tmp/msync_vs_pwrite msync 16384 ./probe.file      # or: pwrite; batch bytes; file
//   PREZERO=1 TOTAL=2000000 /tmp/msync_vs_pwrite pwrite 256 ./probe.file
//
// Writes TOTAL bytes (default 128 MiB) into a 256 MiB file, then removes it.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <pthread.h>
#include <time.h>
#include <stdatomic.h>
#define LEN (256UL << 20)
static volatile int stop;
static char *map;
static atomic_long reads;
static void *reader(void *arg) {
  (void)arg; unsigned long i = 0; long sum = 0;
  while (!stop) { sum += map[(i * 4096) % LEN]; i++; if ((i & 1023) == 0) { atomic_fetch_add(&reads, 1); usleep(50); } }
  return (void *)sum;
}
static double cpu(void) { struct rusage r; getrusage(RUSAGE_THREAD, &r);
  return r.ru_utime.tv_sec + r.ru_utime.tv_usec / 1e6 + r.ru_stime.tv_sec + r.ru_stime.tv_usec / 1e6; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  int use_pwrite = argc > 1 && strcmp(argv[1], "pwrite") == 0;
  size_t batch = argc > 2 ? atol(argv[2]) : 16384;
  size_t total = getenv("TOTAL") && *getenv("TOTAL") ? atol(getenv("TOTAL")) : (128UL << 20);
  const char *path = argc > 3 ? argv[3] : "/tmp/msyncb/f";
  unlink(path);
  int fd = open(path, O_RDWR | O_CREAT, 0644);
  if (getenv("PREZERO")) { char *z = calloc(1, 1 << 20); for (size_t o = 0; o < LEN; o += 1 << 20) pwrite(fd, z, 1 << 20, o); fsync(fd); free(z); }
  else posix_fallocate(fd, 0, LEN);
  map = mmap(0, LEN, use_pwrite ? PROT_READ : PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  pthread_t t; int with_reader = getenv("NOREADER") == 0; if (with_reader) pthread_create(&t, 0, reader, 0);
  char rec[64]; memset(rec, 'x', sizeof rec);
  char *buf = malloc(batch);
  double c0 = cpu(), w0 = now(); size_t off = 0; long syncs = 0;
  while (off + batch <= total) {
    if (use_pwrite) {
      for (size_t i = 0; i < batch; i += 64) memcpy(buf + i, rec, 64);
      if (pwrite(fd, buf, batch, off) != (ssize_t)batch) { perror("pwrite"); return 1; }
      fdatasync(fd);
    } else {
      for (size_t i = 0; i < batch; i += 64) memcpy(map + off + i, rec, 64);
      size_t from = off & ~4095UL;
      msync(map + from, off + batch - from, MS_SYNC);
    }
    off += batch; syncs++;
  }
  double c1 = cpu(), w1 = now();
  stop = 1; if (with_reader) pthread_join(t, 0);
  printf("%-7s batch %6zu: %ld syncs, writer CPU %.1f us/sync (%.2f s/GB), wall %.1f us/sync\n",
    use_pwrite ? "pwrite" : "msync", batch, syncs, (c1 - c0) / syncs * 1e6, (c1 - c0) / (total / 1e9), (w1 - w0) / syncs * 1e6);
  unlink(path);
  return 0;
}
