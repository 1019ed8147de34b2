/*
 * line-count: a Warden tool written in C. Counts lines, words and bytes (like `wc`) of files of
 * the session, read through wasi-libc from the preopened session root `/`.
 *
 * Input  {"path": "a.txt"} or {"paths": ["a.txt", "src/b.c"]}; `a.txt` and `/a.txt` are the same.
 * Output {"files":[{"path":"a.txt","lines":2,"words":5,"bytes":24}],"total":{"lines":2,"words":5,"bytes":24}}
 *
 * It exports `warden:kernel/tool@0.1.0` (world `tool-component`, wit/kernel.wit) with canonical
 * ABI glue written by hand (there is no wit-bindgen for C here), following
 * https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md.
 * Built by scripts/build-c.mjs: clang --target=wasm32-wasi as a reactor without start files,
 * embedded WIT, jco's preview1 reactor adapter.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_PATHS 1000
#define MAX_DEPTH 32
#define CHUNK 65536

/* ---- growable output buffer -------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

/* Out of memory in a tool is a trap: the kernel reports it and discards the instance. */
static void *xrealloc(void *ptr, size_t size) {
  void *p = realloc(ptr, size);
  if (!p) abort();
  return p;
}

static void buf_put(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
}

static void buf_str(buf_t *b, const char *s) { buf_put(b, s, strlen(s)); }

static void buf_u64(buf_t *b, unsigned long long v) {
  char tmp[24];
  buf_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%llu", v));
}

/* `s` as a JSON string literal; `s` is valid UTF-8 (it came from the input). */
static void buf_json(buf_t *b, const char *s, size_t n) {
  buf_put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      buf_put(b, esc, 2);
    } else if (c < 0x20) {
      char esc[8];
      buf_put(b, esc, (size_t)snprintf(esc, sizeof esc, "\\u%04x", c));
    } else {
      buf_put(b, (const char *)&s[i], 1);
    }
  }
  buf_put(b, "\"", 1);
}

/* ---- JSON input: just enough to read {"path": ...} / {"paths": [...]} ---------------------- */

typedef struct {
  const char *start, *p, *end;
  char error[160];
} parser_t;

typedef struct {
  char *text; /* NUL-terminated, no interior NUL */
  size_t len;
} str_t;

static int fail(parser_t *ps, const char *message) {
  if (!ps->error[0]) snprintf(ps->error, sizeof ps->error, "input is not valid JSON: %s at offset %ld", message, (long)(ps->p - ps->start));
  return 0;
}

static void skip_ws(parser_t *ps) {
  while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) ps->p++;
}

static int hex4(parser_t *ps, unsigned *out) {
  if (ps->end - ps->p < 4) return fail(ps, "short \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = *ps->p++;
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return fail(ps, "bad \\u escape");
  }
  *out = v;
  return 1;
}

static void put_utf8(buf_t *b, unsigned cp) {
  char u[4];
  size_t n;
  if (cp < 0x80) u[0] = (char)cp, n = 1;
  else if (cp < 0x800) u[0] = (char)(0xC0 | cp >> 6), u[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
  else if (cp < 0x10000) u[0] = (char)(0xE0 | cp >> 12), u[1] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
  else u[0] = (char)(0xF0 | cp >> 18), u[1] = (char)(0x80 | ((cp >> 12) & 0x3F)), u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), u[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
  buf_put(b, u, n);
}

/* A JSON string at ps->p (the opening quote); `out` receives the decoded text. */
static int parse_string(parser_t *ps, str_t *out) {
  buf_t b = {0};
  buf_put(&b, "", 0);
  if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a string");
  ps->p++;
  for (;;) {
    if (ps->p >= ps->end) { free(b.data); return fail(ps, "unterminated string"); }
    unsigned char c = (unsigned char)*ps->p++;
    if (c == '"') break;
    if (c < 0x20) { free(b.data); return fail(ps, "control character in string"); }
    if (c != '\\') { buf_put(&b, (const char *)&c, 1); continue; }
    if (ps->p >= ps->end) { free(b.data); return fail(ps, "unterminated escape"); }
    char e = *ps->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e && simple) {
      static const char decoded[] = "\"\\/\b\f\n\r\t";
      buf_put(&b, &decoded[simple - "\"\\/bfnrt"], 1);
    } else if (e == 'u') {
      unsigned cp, lo;
      if (!hex4(ps, &cp)) { free(b.data); return 0; }
      if (cp >= 0xDC00 && cp <= 0xDFFF) { free(b.data); return fail(ps, "lone surrogate"); }
      if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') { free(b.data); return fail(ps, "lone surrogate"); }
        ps->p += 2;
        if (!hex4(ps, &lo)) { free(b.data); return 0; }
        if (lo < 0xDC00 || lo > 0xDFFF) { free(b.data); return fail(ps, "lone surrogate"); }
        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
      }
      put_utf8(&b, cp);
    } else {
      free(b.data);
      return fail(ps, "bad escape");
    }
  }
  out->text = b.data;
  out->len = b.len;
  return 1;
}

/* Skip any JSON value (for error messages about fields of the wrong type). */
static int skip_value(parser_t *ps, int depth) {
  skip_ws(ps);
  if (depth > MAX_DEPTH) return fail(ps, "nested too deeply");
  if (ps->p >= ps->end) return fail(ps, "unexpected end");
  char c = *ps->p;
  if (c == '"') {
    str_t s;
    if (!parse_string(ps, &s)) return 0;
    free(s.text);
    return 1;
  }
  if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return 1; }
    for (;;) {
      if (c == '{') {
        skip_ws(ps);
        str_t key;
        if (!parse_string(ps, &key)) return 0;
        free(key.text);
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p++ != ':') return fail(ps, "expected ':'");
      }
      if (!skip_value(ps, depth + 1)) return 0;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
      if (ps->p < ps->end && *ps->p == close) { ps->p++; return 1; }
      return fail(ps, "expected ',' or a closing bracket");
    }
  }
  static const char *const literals[] = {"true", "false", "null"};
  for (size_t i = 0; i < 3; i++) {
    size_t n = strlen(literals[i]);
    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, literals[i], n) == 0) { ps->p += n; return 1; }
  }
  if (c == '-' || (c >= '0' && c <= '9')) {
    char *stop;
    char tmp[64];
    size_t n = (size_t)(ps->end - ps->p) < sizeof tmp - 1 ? (size_t)(ps->end - ps->p) : sizeof tmp - 1;
    memcpy(tmp, ps->p, n);
    tmp[n] = '\0';
    strtod(tmp, &stop);
    if (stop == tmp) return fail(ps, "bad number");
    ps->p += stop - tmp;
    return 1;
  }
  return fail(ps, "unexpected character");
}

/* What the caller asked for: the paths to count, in order. */
typedef struct {
  str_t paths[MAX_PATHS];
  size_t count;
  int seen_path, seen_paths;
} request_t;

static void free_request(request_t *rq) {
  for (size_t i = 0; i < rq->count; i++) free(rq->paths[i].text);
  rq->count = 0;
}

static int add_path(parser_t *ps, request_t *rq, str_t s) {
  if (rq->count == MAX_PATHS) { free(s.text); snprintf(ps->error, sizeof ps->error, "at most %d paths per call", MAX_PATHS); return 0; }
  if (s.len == 0) { free(s.text); snprintf(ps->error, sizeof ps->error, "a path is empty"); return 0; }
  if (strlen(s.text) != s.len) { free(s.text); snprintf(ps->error, sizeof ps->error, "a path contains a NUL character"); return 0; }
  rq->paths[rq->count++] = s;
  return 1;
}

static int field_error(parser_t *ps, const char *message) {
  snprintf(ps->error, sizeof ps->error, "%s", message);
  return 0;
}

/* Parse the input object. On failure ps->error says why and rq holds nothing. */
static int parse_request(parser_t *ps, request_t *rq) {
  skip_ws(ps);
  if (ps->p >= ps->end || *ps->p != '{') {
    const char *start = ps->p;
    if (skip_value(ps, 0) && (skip_ws(ps), ps->p == ps->end) && start < ps->end) return field_error(ps, "input must be a JSON object");
    return fail(ps, "expected an object");
  }
  ps->p++;
  skip_ws(ps);
  if (ps->p < ps->end && *ps->p == '}') ps->p++;
  else for (;;) {
    skip_ws(ps);
    str_t key;
    if (!parse_string(ps, &key)) return 0;
    skip_ws(ps);
    if (ps->p >= ps->end || *ps->p++ != ':') { free(key.text); return fail(ps, "expected ':'"); }
    skip_ws(ps);
    int is_path = strcmp(key.text, "path") == 0, is_paths = strcmp(key.text, "paths") == 0;
    if (!is_path && !is_paths) {
      char message[120];
      snprintf(message, sizeof message, "unknown field \"%.60s\" (expected \"path\" or \"paths\")", key.text);
      free(key.text);
      return field_error(ps, message);
    }
    free(key.text);
    if ((is_path && rq->seen_path) || (is_paths && rq->seen_paths)) return field_error(ps, "a field appears twice");
    if (is_path) {
      rq->seen_path = 1;
      if (ps->p >= ps->end || *ps->p != '"') return skip_value(ps, 0) ? field_error(ps, "field \"path\" must be a string") : 0;
      str_t s;
      if (!parse_string(ps, &s) || !add_path(ps, rq, s)) return 0;
    } else {
      rq->seen_paths = 1;
      if (ps->p >= ps->end || *ps->p != '[') return skip_value(ps, 0) ? field_error(ps, "field \"paths\" must be an array of strings") : 0;
      ps->p++;
      skip_ws(ps);
      if (ps->p < ps->end && *ps->p == ']') ps->p++;
      else for (;;) {
        skip_ws(ps);
        if (ps->p >= ps->end || *ps->p != '"') return skip_value(ps, 0) ? field_error(ps, "field \"paths\" must be an array of strings") : 0;
        str_t s;
        if (!parse_string(ps, &s) || !add_path(ps, rq, s)) return 0;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == ']') { ps->p++; break; }
        return fail(ps, "expected ',' or ']'");
      }
    }
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
    if (ps->p < ps->end && *ps->p == '}') { ps->p++; break; }
    return fail(ps, "expected ',' or '}'");
  }
  skip_ws(ps);
  if (ps->p != ps->end) return fail(ps, "trailing characters");
  if (rq->seen_path && rq->seen_paths) return field_error(ps, "give either \"path\" or \"paths\", not both");
  if (rq->count == 0) return field_error(ps, rq->seen_paths ? "field \"paths\" is empty" : "missing required field \"path\" (or \"paths\")");
  return 1;
}

/* ---- counting ------------------------------------------------------------------------------ */

typedef struct {
  unsigned long long lines, words, bytes;
} counts_t;

/* What went wrong with `path`, in the words of the kernel's other tools. */
static void explain(char *error, size_t error_size, const char *path, int e) {
  const char *why = e == ENOENT ? "no such file or directory"
                  : e == EPERM || e == ENOTCAPABLE ? "outside the session root"
                  : e == EISDIR ? "is a directory"
                  : e == ENOTDIR ? "not a directory"
                  : e == EACCES ? "access denied"
                  : strerror(e);
  snprintf(error, error_size, "%s: %s", path, why);
}

/* Count `path` (relative to the session root, a leading `/` allowed); 0 and a message on failure. */
static int count_file(const char *path, counts_t *out, char *error, size_t error_size) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    int e = errno;
    /* With no preopen at all, wasi-libc cannot resolve any path: say what is missing. */
    if (access("/", F_OK) != 0) snprintf(error, error_size, "no session is mounted: this tool needs a filesystem grant");
    else explain(error, error_size, path, e);
    return 0;
  }
  struct stat st;
  int e = fstat(fd, &st) != 0 ? errno : S_ISDIR(st.st_mode) ? EISDIR : 0;
  if (e) {
    explain(error, error_size, path, e);
    close(fd);
    return 0;
  }
  static unsigned char chunk[CHUNK];
  counts_t c = {0, 0, 0};
  int in_word = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0) {
      explain(error, error_size, path, errno);
      close(fd);
      return 0;
    }
    if (n == 0) break;
    c.bytes += (unsigned long long)n;
    for (ssize_t i = 0; i < n; i++) {
      unsigned char ch = chunk[i];
      int space = ch == ' ' || (ch >= '\t' && ch <= '\r');
      if (ch == '\n') c.lines++;
      if (space) in_word = 0;
      else if (!in_word) in_word = 1, c.words++;
    }
  }
  close(fd);
  *out = c;
  return 1;
}

static void put_counts(buf_t *b, counts_t c) {
  buf_str(b, "\"lines\":");
  buf_u64(b, c.lines);
  buf_str(b, ",\"words\":");
  buf_u64(b, c.words);
  buf_str(b, ",\"bytes\":");
  buf_u64(b, c.bytes);
}

/* The tool's work: 0 = ok, 1 = invalid input, 2 = failed; `*text` is malloc'd either way. */
static int run(const char *input, size_t len, char **text, size_t *text_len) {
  static request_t rq;
  parser_t ps = {input, input, input + len, {0}};
  buf_t out = {0};
  memset(&rq, 0, sizeof rq);
  if (!parse_request(&ps, &rq)) {
    free_request(&rq);
    buf_str(&out, ps.error);
    *text = out.data, *text_len = out.len;
    return 1;
  }
  counts_t total = {0, 0, 0};
  buf_str(&out, "{\"files\":[");
  for (size_t i = 0; i < rq.count; i++) {
    counts_t c;
    char error[512];
    if (!count_file(rq.paths[i].text, &c, error, sizeof error)) {
      free_request(&rq);
      out.len = 0;
      buf_str(&out, error);
      *text = out.data, *text_len = out.len;
      return 2;
    }
    total.lines += c.lines, total.words += c.words, total.bytes += c.bytes;
    if (i) buf_str(&out, ",");
    buf_str(&out, "{\"path\":");
    buf_json(&out, rq.paths[i].text, rq.paths[i].len);
    buf_str(&out, ",");
    put_counts(&out, c);
    buf_str(&out, "}");
  }
  buf_str(&out, "],\"total\":{");
  put_counts(&out, total);
  buf_str(&out, "}}");
  free_request(&rq);
  *text = out.data, *text_len = out.len;
  return 0;
}

/* ---- canonical ABI glue -------------------------------------------------------------------- */

/*
 * Initialisation. wasi-libc's constructors look up the preopened directories, and wit-component
 * calls a reactor's `_initialize` (which runs them) while the component is instantiated. The
 * kernel instantiates tool instances ahead of their calls, when no session is attached and WASI
 * calls are refused, so this module is linked without crt1-reactor.o (no `_initialize`, see
 * scripts/build-c.mjs) and runs the constructors on its first call instead.
 */
extern void __wasm_call_ctors(void);
static int initialized;
static void ensure_initialized(void) {
  if (initialized) return;
  initialized = 1;
  __wasm_call_ctors();
}

/* Allocation for the host's lowering of arguments (the `input` string), per the canonical ABI. */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  return xrealloc(ptr, new_size);
}

/* Return areas: results that flatten to more than one core value are stored in memory. */
static uint32_t describe_area[6];
static uint32_t call_area[4];

static const char NAME[] = "line-count";
static const char DESCRIPTION[] =
    "Count lines, words and bytes of files of the workspace (like wc). Returns JSON: "
    "{\"files\":[{\"path\",\"lines\",\"words\",\"bytes\"}],\"total\":{\"lines\",\"words\",\"bytes\"}}.";
static const char SCHEMA[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"path\":{\"type\":\"string\",\"description\":\"Path relative to the workspace root\"},"
    "\"paths\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"minItems\":1,\"maxItems\":1000,"
    "\"description\":\"Several paths relative to the workspace root\"}},"
    "\"oneOf\":[{\"required\":[\"path\"]},{\"required\":[\"paths\"]}],\"additionalProperties\":false}";

/* describe: func() -> tool-info. tool-info {name, description, input-schema}: three (ptr, len). */
__attribute__((export_name("warden:kernel/tool@0.1.0#describe"))) uint32_t *tool_describe(void) {
  ensure_initialized();
  describe_area[0] = (uint32_t)(uintptr_t)NAME, describe_area[1] = sizeof NAME - 1;
  describe_area[2] = (uint32_t)(uintptr_t)DESCRIPTION, describe_area[3] = sizeof DESCRIPTION - 1;
  describe_area[4] = (uint32_t)(uintptr_t)SCHEMA, describe_area[5] = sizeof SCHEMA - 1;
  return describe_area;
}

/*
 * call: func(input: string) -> result<string, tool-error>. The input arrives in memory we
 * allocated through cabi_realloc and now own. Result layout (size 16, align 4):
 *   [0] u8 case (0 ok, 1 err); ok: [4] ptr, [8] len;
 *   err: [4] u8 tool-error case (0 invalid-input, 1 failed), [8] ptr, [12] len.
 */
__attribute__((export_name("warden:kernel/tool@0.1.0#call"))) uint32_t *tool_call(char *input, size_t len) {
  ensure_initialized();
  char *text;
  size_t text_len;
  int status = run(input, len, &text, &text_len);
  if (len > 0) free(input); /* cabi_realloc handed out no memory for an empty string */
  memset(call_area, 0, sizeof call_area);
  if (status == 0) {
    call_area[0] = 0;
    call_area[1] = (uint32_t)(uintptr_t)text, call_area[2] = (uint32_t)text_len;
  } else {
    call_area[0] = 1;
    call_area[1] = status == 1 ? 0 : 1;
    call_area[2] = (uint32_t)(uintptr_t)text, call_area[3] = (uint32_t)text_len;
  }
  return call_area;
}

/* Post-return: the host has copied the result string out; free it. */
__attribute__((export_name("cabi_post_warden:kernel/tool@0.1.0#call"))) void tool_call_post(uint32_t *area) {
  free((void *)(uintptr_t)(area[0] == 0 ? area[1] : area[2]));
}
