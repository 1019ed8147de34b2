/*
 * hostile: a standard wasi:cli/command in C that tries what an untrusted tool would try, one
 * mode per run (argv[1]). Built by scripts/build-c.mjs with jco's preview1 command adapter and
 * hostile.wit (the one WASI 0.2 function it imports directly);
 * run it with `warden tool run test/security/guests/hostile.wasm -- MODE ARGS...`.
 *
 *   read PATH         print the file (exit 1 with the errno text on failure)
 *   write PATH TEXT   create or replace the file with TEXT
 *   ls PATH           list a directory
 *   env               print every environment variable
 *   exit N            exit(N) (through the preview1 adapter, WASI 0.2 `exit`: any N != 0 gives 1)
 *   exit-code N       wasi:cli/exit.exit-with-code(N), N in 0..255: the exact code
 *   abort             abort()
 *   loop              spin forever
 *   alloc             malloc + memset 1 MiB chunks forever (MiB count on stderr every 64 MiB)
 *   output N          write N bytes of 'x' to stdout
 *   recurse           unbounded recursion
 *   clock             wall-clock and monotonic time
 *   socket HOST PORT  open a TCP connection (wasip1 wasi-libc has no socket(): exit code 3)
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

extern char **environ;

/* WASI 0.2 `wasi:cli/exit.exit-with-code`, imported directly: the preview1 adapter maps every
 * non-zero proc_exit code to `exit(err)`, which a host sees as 1. (Upstream WASI 0.2 marks it
 * unstable: wasmtime runs this guest only with `-S cli-exit-with-code`; the kernel has it.) */
__attribute__((import_module("wasi:cli/exit@0.2.12"), import_name("exit-with-code"), noreturn)) void exit_with_code(int code);

/*
 * The preview1 adapter allocates its state through the main module's `cabi_realloc`. Without
 * this export wit-component gives it pages from memory.grow, which this wasi-libc's malloc
 * (2022) then claims as free heap: `alloc` would overwrite the adapter's state.
 */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  void *p = realloc(ptr, new_size);
  if (!p) abort();
  return p;
}

static int usage(void) {
  fprintf(stderr, "usage: hostile read PATH | write PATH TEXT | ls PATH | env | exit N | exit-code N | abort | loop | alloc | output N | recurse | clock | socket HOST PORT\n");
  return 2;
}

static int fail(const char *what, const char *path) {
  fprintf(stderr, "%s %s: %s\n", what, path, strerror(errno));
  return 1;
}

static int read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return fail("read", path);
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) fwrite(chunk, 1, n, stdout);
  int bad = ferror(f);
  fclose(f);
  return bad ? fail("read", path) : 0;
}

static int write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "wb");
  if (!f) return fail("write", path);
  size_t n = strlen(text);
  int bad = fwrite(text, 1, n, f) != n;
  if (fclose(f) != 0) bad = 1;
  if (bad) return fail("write", path);
  printf("wrote %zu bytes to %s\n", n, path);
  return 0;
}

static int list_dir(const char *path) {
  DIR *d = opendir(path);
  if (!d) return fail("ls", path);
  struct dirent *e;
  while ((e = readdir(d))) printf("%s\n", e->d_name);
  closedir(d);
  return 0;
}

/* Chunks stay reachable through a volatile list head, so the compiler cannot drop the malloc. */
static void *volatile kept;
static int alloc_forever(void) {
  for (unsigned long mib = 1;; mib++) {
    void **chunk = malloc(1 << 20);
    if (!chunk) {
      fprintf(stderr, "malloc failed at %lu MiB\n", mib);
      abort();
    }
    memset(chunk, (int)mib, 1 << 20);
    chunk[0] = kept;
    kept = chunk;
    if (mib % 64 == 0) fprintf(stderr, "%lu MiB\n", mib);
  }
}

static int output(long n) {
  char chunk[4096];
  memset(chunk, 'x', sizeof chunk);
  for (; n > 0; n -= (long)sizeof chunk) fwrite(chunk, 1, n < (long)sizeof chunk ? (size_t)n : sizeof chunk, stdout);
  return 0;
}

#pragma clang diagnostic ignored "-Winfinite-recursion" /* intended */
/* Each frame keeps a buffer whose address escapes and uses the callee's result: no tail call. */
static volatile unsigned long sink;
__attribute__((noinline)) static unsigned long recurse(unsigned long depth) {
  volatile char frame[256];
  frame[depth % sizeof frame] = (char)depth;
  sink = (unsigned long)(uintptr_t)frame;
  return recurse(depth + 1) + frame[depth % sizeof frame];
}

static int clocks(void) {
  struct timespec wall, mono;
  if (clock_gettime(CLOCK_REALTIME, &wall) != 0 || clock_gettime(CLOCK_MONOTONIC, &mono) != 0) return fail("clock", "gettime");
  printf("wall %lld.%09ld\nmonotonic %lld.%09ld\n", (long long)wall.tv_sec, wall.tv_nsec, (long long)mono.tv_sec, mono.tv_nsec);
  return 0;
}

static int tcp_connect(const char *host, const char *port) {
  /* wasi-libc for wasm32-wasi (preview 1) declares no socket() or connect(): nothing to try. */
  printf("no sockets (wasi preview 1 libc has no socket()/connect(); %s:%s not contacted)\n", host, port);
  fflush(stdout);
  exit_with_code(3);
}

int main(int argc, char **argv) {
  if (argc < 2) return usage();
  const char *mode = argv[1];
  if (!strcmp(mode, "read") && argc == 3) return read_file(argv[2]);
  if (!strcmp(mode, "write") && argc == 4) return write_file(argv[2], argv[3]);
  if (!strcmp(mode, "ls") && argc == 3) return list_dir(argv[2]);
  if (!strcmp(mode, "env") && argc == 2) {
    for (char **e = environ; e && *e; e++) printf("%s\n", *e);
    return 0;
  }
  if (!strcmp(mode, "exit") && argc == 3) exit(atoi(argv[2]));
  if (!strcmp(mode, "exit-code") && argc == 3 && atoi(argv[2]) >= 0 && atoi(argv[2]) <= 255) {
    fflush(stdout);
    fflush(stderr);
    exit_with_code(atoi(argv[2]));
  }
  if (!strcmp(mode, "abort") && argc == 2) abort();
  if (!strcmp(mode, "loop") && argc == 2) for (volatile unsigned long i = 0;; i++) {}
  if (!strcmp(mode, "alloc") && argc == 2) return alloc_forever();
  if (!strcmp(mode, "output") && argc == 3) return output(atol(argv[2]));
  if (!strcmp(mode, "recurse") && argc == 2) return (int)recurse(0);
  if (!strcmp(mode, "clock") && argc == 2) return clocks();
  if (!strcmp(mode, "socket") && argc == 4) return tcp_connect(argv[2], argv[3]);
  return usage();
}
