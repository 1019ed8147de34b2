/*
 * fsconf: a standard wasi:cli/command in C that exercises the kernel's wasi:filesystem through
 * plain C stdio and POSIX calls (wasi-libc → jco's preview1 command adapter → WASI 0.2), the way
 * an unmodified C tool would. Built by scripts/build-c.mjs; run by test/vfs/wasi.test.ts with
 *
 *   /       a read-write session on a prepared workspace (see the test for its files)
 *   /ro     a read-only session
 *   /other  a second read-write session (renames across mounts)
 *
 * It prints one JSON line: {"checks": {NAME: {"ok": BOOL, "errno": "ENAME" or "", "detail": "..."}},
 * "large": {...}}. `errno` is what the call left in errno (by name: wasi-libc's numbers are not
 * Linux's), for a check that expects a failure, or for one that failed.
 *
 * Debian's wasi-libc (0.0~git20220510) has symlink(), symlinkat(), readlink() and link(); it has no
 * chmod(), fchmod() or realpath(): WASI 0.2 has no file modes.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* As in hostile.c: the preview1 adapter allocates its state through the main module's allocator. */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  void *p = realloc(ptr, new_size);
  if (!p) abort();
  return p;
}

/* ---- JSON output ------------------------------------------------------------------------- */

static char json[1 << 16];
static size_t json_len;
static int checks_written;

static void emit(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(json + json_len, sizeof json - json_len, fmt, ap);
  va_end(ap);
  if (n > 0) json_len += (size_t)n < sizeof json - json_len ? (size_t)n : sizeof json - json_len - 1;
}

static const char *errno_name(int e) {
  switch (e) {
    case 0: return "";
    case ENOENT: return "ENOENT";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case EROFS: return "EROFS";
    case EPERM: return "EPERM";
    case EACCES: return "EACCES";
    case ELOOP: return "ELOOP";
    case EXDEV: return "EXDEV";
    case EBADF: return "EBADF";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    case EIO: return "EIO";
    case ENOTSUP: return "ENOTSUP";
    case ENOTCAPABLE: return "ENOTCAPABLE";
    case ESPIPE: return "ESPIPE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return "E?";
  }
}

/* Record one check. `detail` must be plain ASCII without quotes or backslashes (names, numbers). */
static void check(const char *name, int ok, int err, const char *detail) {
  emit("%s\"%s\":{\"ok\":%s,\"errno\":\"%s\"", checks_written++ ? "," : "", name, ok ? "true" : "false", errno_name(err));
  if (detail) emit(",\"detail\":\"%s\"", detail);
  emit("}");
}

/* EXPECT: `cond` must hold; errno is reported only when it does not. */
#define EXPECT(name, cond)                        \
  do {                                            \
    errno = 0;                                    \
    int ok_ = (cond);                             \
    check(name, ok_, ok_ ? 0 : errno, NULL);      \
  } while (0)

/* REFUSED: `failed` (a call's failure test) must hold with errno == `want`; errno is always reported. */
#define REFUSED(name, failed, want)               \
  do {                                            \
    errno = 0;                                    \
    int failed_ = (failed);                       \
    int err_ = errno;                             \
    check(name, failed_ && err_ == (want), err_, NULL); \
  } while (0)

/* ---- helpers ------------------------------------------------------------------------------ */

/* Whole content of a small file into `buf` (NUL-terminated); its length, or -1. */
static long slurp(const char *path, char *buf, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  size_t n = fread(buf, 1, cap - 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad) return -1;
  buf[n] = 0;
  return (long)n;
}

static int content_is(const char *path, const char *expected) {
  char buf[4096];
  long n = slurp(path, buf, sizeof buf);
  return n == (long)strlen(expected) && memcmp(buf, expected, (size_t)n) == 0;
}

static int put(const char *path, const char *mode, const void *data, size_t len) {
  FILE *f = fopen(path, mode);
  if (!f) return 0;
  int ok = fwrite(data, 1, len, f) == len;
  if (fclose(f) != 0) ok = 0;
  return ok;
}

static int write_str(int fd, const char *s) {
  return write(fd, s, strlen(s)) == (ssize_t)strlen(s);
}

static int is_type(const char *path, int lstat_it, mode_t type) {
  struct stat st;
  if ((lstat_it ? lstat(path, &st) : stat(path, &st)) != 0) return 0;
  return (st.st_mode & S_IFMT) == type;
}

static long size_of(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static int absent(const char *path) {
  struct stat st;
  return lstat(path, &st) != 0 && errno == ENOENT;
}

/* Names in a directory, sorted, comma-separated, without "." and ".."; types as name/d or name/f
 * or name/l. Returns 0 when the directory cannot be opened (errno set). */
static int list(const char *path, char *out, size_t cap) {
  DIR *d = opendir(path);
  if (!d) return 0;
  char names[64][64];
  int count = 0;
  struct dirent *e;
  while ((e = readdir(d)) && count < 64) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    const char *t = e->d_type == DT_DIR ? "d" : e->d_type == DT_REG ? "f" : e->d_type == DT_LNK ? "l" : "?";
    snprintf(names[count++], sizeof names[0], "%s/%s", e->d_name, t);
  }
  closedir(d);
  for (int i = 1; i < count; i++)
    for (int j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
      char tmp[64];
      memcpy(tmp, names[j], sizeof tmp);
      memcpy(names[j], names[j - 1], sizeof tmp);
      memcpy(names[j - 1], tmp, sizeof tmp);
    }
  out[0] = 0;
  for (int i = 0; i < count; i++) {
    if (i) strncat(out, ",", cap - strlen(out) - 1);
    strncat(out, names[i], cap - strlen(out) - 1);
  }
  return 1;
}

/* The large file's content: xorshift32 from a fixed seed, each state as 4 little-endian bytes
 * (NUL bytes included). The test regenerates it to check the committed file's sha256. */
#define LARGE_BYTES (8u << 20)
#define CHUNK (64u << 10)
static uint32_t prng_state;
static void prng_fill(unsigned char *buf, size_t len) {
  for (size_t i = 0; i < len; i += 4) {
    uint32_t x = prng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    prng_state = x;
    buf[i] = (unsigned char)x;
    buf[i + 1] = (unsigned char)(x >> 8);
    buf[i + 2] = (unsigned char)(x >> 16);
    buf[i + 3] = (unsigned char)(x >> 24);
  }
}

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static unsigned char chunk[CHUNK], again[CHUNK];

static void large_file(void) {
  uint64_t written = 0xcbf29ce484222325ull, read_back = written;
  prng_state = 0x9e3779b9u;
  int fd = open("/large.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  int ok = fd >= 0;
  for (unsigned done = 0; ok && done < LARGE_BYTES; done += CHUNK) {
    prng_fill(chunk, CHUNK);
    written = fnv1a(written, chunk, CHUNK);
    ok = write(fd, chunk, CHUNK) == (ssize_t)CHUNK;
  }
  if (fd >= 0 && close(fd) != 0) ok = 0;
  EXPECT("large_write", ok);
  EXPECT("large_size", size_of("/large.bin") == (long)LARGE_BYTES);

  /* Read back through stdio in chunks, comparing with the generator as it goes. */
  FILE *f = fopen("/large.bin", "rb");
  size_t total = 0, n;
  int same = f != NULL;
  prng_state = 0x9e3779b9u;
  while (f && (n = fread(chunk, 1, CHUNK, f)) > 0) {
    read_back = fnv1a(read_back, chunk, n);
    prng_fill(again, CHUNK);
    if (n != CHUNK || memcmp(chunk, again, CHUNK) != 0) same = 0;
    total += n;
  }
  if (f) fclose(f);
  char detail[96];
  snprintf(detail, sizeof detail, "%016llx", (unsigned long long)written);
  check("large_read", same && total == LARGE_BYTES && read_back == written, same ? 0 : errno, detail);

  /* A positioned read in the middle, at an offset that is not chunk-aligned. */
  fd = open("/large.bin", O_RDONLY);
  const off_t at = (5u << 20) + 3;
  unsigned char mid[64];
  ok = fd >= 0 && lseek(fd, at, SEEK_SET) == at && read(fd, mid, sizeof mid) == (ssize_t)sizeof mid;
  if (fd >= 0) close(fd);
  prng_state = 0x9e3779b9u;
  for (off_t skipped = 0; skipped + (off_t)CHUNK <= at; skipped += CHUNK) prng_fill(again, CHUNK);
  prng_fill(again, CHUNK);
  EXPECT("large_seek_read", ok && memcmp(mid, again + (at % CHUNK), sizeof mid) == 0);
}

/* ---- the checks ---------------------------------------------------------------------------- */

static void files(void) {
  EXPECT("fopen_write", put("/new.txt", "w", "hello\n", 6));
  EXPECT("fopen_read", content_is("/new.txt", "hello\n"));

  FILE *f = fopen("/new.txt", "r+");
  char buf[64] = {0};
  int ok = f && fseek(f, 0, SEEK_END) == 0 && ftell(f) == 6 && fseek(f, 2, SEEK_SET) == 0 &&
           fwrite("LL", 1, 2, f) == 2 && fflush(f) == 0 && fseek(f, 0, SEEK_SET) == 0 && fread(buf, 1, sizeof buf, f) == 6;
  if (f) fclose(f);
  EXPECT("fseek_ftell_overwrite", ok && !memcmp(buf, "heLLo\n", 6));

  EXPECT("fopen_append", put("/new.txt", "a", "more\n", 5) && content_is("/new.txt", "heLLo\nmore\n"));
  int fd = open("/new.txt", O_WRONLY | O_APPEND);
  ok = fd >= 0 && write_str(fd, "x") && write_str(fd, "y");
  if (fd >= 0) close(fd);
  EXPECT("o_append", ok && content_is("/new.txt", "heLLo\nmore\nxy"));

  fd = open("/excl.txt", O_WRONLY | O_CREAT | O_EXCL, 0644);
  EXPECT("o_creat_excl", fd >= 0 && write_str(fd, "e"));
  if (fd >= 0) close(fd);
  REFUSED("o_creat_excl_exists", open("/excl.txt", O_WRONLY | O_CREAT | O_EXCL, 0644) < 0, EEXIST);
  REFUSED("o_creat_excl_symlink", open("/dangling", O_WRONLY | O_CREAT | O_EXCL, 0644) < 0, EEXIST);

  fd = open("/trunc.txt", O_WRONLY | O_TRUNC);
  struct stat st;
  ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_size == 0 && write_str(fd, "t");
  if (fd >= 0) close(fd);
  EXPECT("o_trunc", ok && content_is("/trunc.txt", "t"));

  fd = open("/trunc2.txt", O_RDWR);
  ok = fd >= 0 && ftruncate(fd, 3) == 0 && fstat(fd, &st) == 0 && st.st_size == 3;
  if (fd >= 0) close(fd);
  EXPECT("ftruncate", ok && content_is("/trunc2.txt", "012"));

  REFUSED("open_missing", open("/missing.txt", O_RDONLY) < 0, ENOENT);
  REFUSED("create_in_missing_dir", open("/nodir/x.txt", O_WRONLY | O_CREAT, 0644) < 0, ENOENT);
  REFUSED("open_through_file", open("/keep.txt/x", O_RDONLY) < 0, ENOTDIR);
  REFUSED("open_dir_for_write", open("/dir", O_WRONLY) < 0, EISDIR);
  REFUSED("open_file_as_dir", open("/keep.txt", O_RDONLY | O_DIRECTORY) < 0, ENOTDIR);

  fd = open("/keep.txt", O_RDONLY);
  REFUSED("write_on_readonly_fd", write(fd, "x", 1) < 0, EBADF);
  REFUSED("ftruncate_on_readonly_fd", ftruncate(fd, 0) < 0, EBADF);
  if (fd >= 0) close(fd);
  fd = open("/keep.txt", O_WRONLY);
  REFUSED("read_on_writeonly_fd", read(fd, buf, 1) < 0, EBADF);
  if (fd >= 0) close(fd);
  EXPECT("fds_left_file_alone", content_is("/keep.txt", "keep\n"));
  fd = open("/dir", O_RDONLY | O_DIRECTORY);
  /* The preview1 adapter refuses a read of a directory descriptor itself, with EBADF. */
  REFUSED("read_on_directory_fd", read(fd, buf, 1) < 0, EBADF);
  if (fd >= 0) close(fd);

  static unsigned char bin[1024], back[2048];
  for (int i = 0; i < 1024; i++) bin[i] = (unsigned char)(i * 7);
  FILE *b = NULL;
  size_t n = 0;
  if (put("/bin.dat", "wb", bin, sizeof bin) && (b = fopen("/bin.dat", "rb"))) n = fread(back, 1, sizeof back, b);
  if (b) fclose(b);
  EXPECT("binary_with_nul_bytes", n == sizeof bin && memcmp(bin, back, sizeof bin) == 0 && size_of("/bin.dat") == 1024);

  /* A base file with mode 0755: appending copies it up; the test checks the mode survives commit. */
  EXPECT("append_to_base_script", put("/run.sh", "a", "echo more\n", 10) && content_is("/run.sh", "#!/bin/sh\necho hi\necho more\n"));
}

static void stats(void) {
  struct stat a, b;
  EXPECT("stat_file", stat("/keep.txt", &a) == 0 && S_ISREG(a.st_mode) && a.st_size == 5 && a.st_mtime > 0);
  EXPECT("stat_dir", is_type("/dir", 0, S_IFDIR));
  REFUSED("stat_missing", stat("/missing.txt", &a) != 0, ENOENT);
  REFUSED("stat_through_file", stat("/keep.txt/x", &a) != 0, ENOTDIR);
  int fd = open("/keep.txt", O_RDONLY);
  EXPECT("fstat", fd >= 0 && fstat(fd, &b) == 0 && S_ISREG(b.st_mode) && b.st_size == 5);
  if (fd >= 0) close(fd);
  /* st_ino comes from metadata-hash: stable for one file, different for two files whose paths have the same length. */
  EXPECT("inode_stable", stat("/keep.txt", &a) == 0 && a.st_ino == b.st_ino && a.st_ino != 0);
  EXPECT("inode_distinct", stat("/gone.txt", &b) == 0 && a.st_ino != b.st_ino);
}

static void directories(void) {
  char names[512];
  EXPECT("mkdir", mkdir("/empty", 0755) == 0 && is_type("/empty", 0, S_IFDIR));
  EXPECT("mkdir_nested", mkdir("/outer", 0755) == 0 && mkdir("/outer/inner", 0755) == 0);
  REFUSED("mkdir_exists", mkdir("/empty", 0755) != 0, EEXIST);
  REFUSED("mkdir_missing_parent", mkdir("/nodir/x", 0755) != 0, ENOENT);
  REFUSED("mkdir_under_file", mkdir("/keep.txt/x", 0755) != 0, ENOTDIR);
  EXPECT("rmdir_empty", mkdir("/tmpdir", 0755) == 0 && rmdir("/tmpdir") == 0 && absent("/tmpdir"));
  REFUSED("rmdir_not_empty", rmdir("/full") != 0, ENOTEMPTY);
  REFUSED("rmdir_file", rmdir("/keep.txt") != 0, ENOTDIR);
  REFUSED("rmdir_missing", rmdir("/missing") != 0, ENOENT);

  int ok = list("/dir", names, sizeof names);
  check("readdir", ok && !strcmp(names, "a.txt/f,sub/d"), ok ? 0 : errno, ok ? names : NULL);
  ok = list("/empty-in-base", names, sizeof names);
  check("readdir_empty_dir", ok && names[0] == 0, ok ? 0 : errno, ok ? names : NULL);
  ok = list("/empty", names, sizeof names);
  check("readdir_new_empty_dir", ok && names[0] == 0, ok ? 0 : errno, ok ? names : NULL);
  REFUSED("opendir_file", opendir("/keep.txt") == NULL, ENOTDIR);
  REFUSED("opendir_missing", opendir("/missing") == NULL, ENOENT);

  /* *at calls on a directory descriptor that wasi-libc opened itself (the adapter asks for no
   * mutate-directory flag): a read-write session must still let it change its children. */
  int d = open("/dir/sub", O_RDONLY | O_DIRECTORY);
  int fd = d >= 0 && mkdirat(d, "made", 0755) == 0 ? openat(d, "made/f.txt", O_WRONLY | O_CREAT, 0644) : -1;
  ok = fd >= 0 && write_str(fd, "f");
  if (fd >= 0) close(fd);
  ok = ok && renameat(d, "made/f.txt", d, "made/g.txt") == 0 && symlinkat("g.txt", d, "made/h") == 0 &&
       unlinkat(d, "made/h", 0) == 0;
  if (d >= 0) close(d);
  EXPECT("dirfd_at_calls", ok && content_is("/dir/sub/made/g.txt", "f"));
}

static void renames(void) {
  struct stat st;
  EXPECT("rename_file_over_existing", rename("/old.txt", "/target.txt") == 0 && content_is("/target.txt", "old\n") && absent("/old.txt"));
  EXPECT("rename_dir", rename("/dir", "/moved") == 0 && content_is("/moved/sub/b.txt", "b") &&
                           content_is("/moved/sub/made/g.txt", "f") && absent("/dir"));
  EXPECT("rename_dir_over_empty_dir", mkdir("/e1", 0755) == 0 && mkdir("/e2", 0755) == 0 && rename("/e1", "/e2") == 0 &&
                                          absent("/e1") && is_type("/e2", 0, S_IFDIR));
  REFUSED("rename_dir_over_nonempty", rename("/moved", "/full") != 0, ENOTEMPTY);
  REFUSED("rename_file_over_dir", rename("/keep.txt", "/full") != 0, EISDIR);
  REFUSED("rename_dir_over_file", rename("/moved", "/keep.txt") != 0, ENOTDIR);
  REFUSED("rename_missing", rename("/missing", "/x") != 0, ENOENT);
  REFUSED("rename_into_itself", rename("/moved", "/moved/sub/x") != 0, EINVAL);
  REFUSED("rename_across_mounts", rename("/keep.txt", "/other/k.txt") != 0, EXDEV);
  EXPECT("rename_left_sources", stat("/keep.txt", &st) == 0 && is_type("/moved", 0, S_IFDIR));

  EXPECT("unlink", unlink("/gone.txt") == 0 && absent("/gone.txt"));
  REFUSED("unlink_dir", unlink("/full") != 0, EISDIR);
  REFUSED("unlink_missing", unlink("/missing") != 0, ENOENT);
}

static void symlinks(void) {
  char target[256];
  EXPECT("symlink", symlink("keep.txt", "/link") == 0);
  ssize_t n = readlink("/link", target, sizeof target - 1);
  if (n >= 0) target[n] = 0;
  EXPECT("readlink", n == 8 && !strcmp(target, "keep.txt"));
  EXPECT("read_through_symlink", content_is("/link", "keep\n"));
  EXPECT("lstat_symlink", is_type("/link", 1, S_IFLNK) && is_type("/link", 0, S_IFREG));
  EXPECT("symlink_relative_up", symlink("../keep.txt", "/moved/up") == 0 && content_is("/moved/up", "keep\n"));
  EXPECT("symlink_to_dir", symlink("moved/sub", "/sublink") == 0 && content_is("/sublink/b.txt", "b"));
  REFUSED("symlink_exists", symlink("x", "/link") != 0, EEXIST);
  REFUSED("open_nofollow_symlink", open("/link", O_RDONLY | O_NOFOLLOW) < 0, ELOOP);
  REFUSED("readlink_not_symlink", readlink("/keep.txt", target, sizeof target) < 0, EINVAL);
  REFUSED("symlink_loop", open("/loop1", O_RDONLY) < 0, ELOOP);
  REFUSED("hard_link_unsupported", link("/keep.txt", "/hard") != 0, EPERM);

  /* Escapes. */
  REFUSED("symlink_absolute_outside", symlink("/etc/passwd", "/abs") != 0, EPERM);
  REFUSED("symlink_dotdot_outside", symlink("../../outside", "/moved/out") != 0, EPERM);
  REFUSED("open_planted_escape", open("/escape", O_RDONLY) < 0, EPERM);
  REFUSED("stat_planted_escape", stat("/escape", &(struct stat){0}) != 0, EPERM);
  EXPECT("lstat_planted_escape", is_type("/escape", 1, S_IFLNK));
  REFUSED("open_dotdot", open("/../outside/secret.txt", O_RDONLY) < 0, EPERM);
  REFUSED("open_nested_dotdot", open("/moved/../../outside/secret.txt", O_RDONLY) < 0, EPERM);
}

static void read_only(void) {
  char names[256];
  EXPECT("ro_read", content_is("/ro/r.txt", "read only\n"));
  int ok = list("/ro", names, sizeof names);
  check("ro_readdir", ok && !strcmp(names, "r.txt/f,sub/d"), ok ? 0 : errno, ok ? names : NULL);
  REFUSED("ro_open_write", open("/ro/r.txt", O_WRONLY) < 0, EROFS);
  REFUSED("ro_fopen_write", fopen("/ro/r.txt", "w") == NULL, EROFS);
  REFUSED("ro_create", open("/ro/new.txt", O_WRONLY | O_CREAT, 0644) < 0, EROFS);
  REFUSED("ro_trunc", open("/ro/r.txt", O_RDONLY | O_TRUNC) < 0, EROFS);
  REFUSED("ro_mkdir", mkdir("/ro/d", 0755) != 0, EROFS);
  REFUSED("ro_rmdir", rmdir("/ro/sub") != 0, EROFS);
  REFUSED("ro_unlink", unlink("/ro/r.txt") != 0, EROFS);
  REFUSED("ro_rename", rename("/ro/r.txt", "/ro/s.txt") != 0, EROFS);
  REFUSED("ro_symlink", symlink("r.txt", "/ro/l") != 0, EROFS);
  REFUSED("ro_rename_into", rename("/keep.txt", "/ro/k.txt") != 0, EXDEV);
  EXPECT("ro_unchanged", content_is("/ro/r.txt", "read only\n"));
}

int main(void) {
  emit("{\"checks\":{");
  files();
  stats();
  directories();
  renames();
  symlinks();
  read_only();
  large_file();
  emit("}}");
  puts(json);
  return 0;
}
