/*
 * Guest of bench/mesh.ts: the caller, in C (the same tool as caller.js, with as little work
 * inside the guest as possible). `call(input)` makes mesh calls from inside a component and
 * times them with the monotonic clock. `input` is JSON:
 *   {target, n, size, kind?: "json"|"bytes", pauseUs?}  latency: n calls of `target`.call, each
 *       with a payload of `size` bytes (json: a JSON string literal of that length, at least 2;
 *       bytes: that many `b` bytes), busy-waiting `pauseUs` before each one. Answers
 *       {"us":[...],"clockUs":[...],"failures":F,"error":E}: per call the µs between the two
 *       clock reads around it, and per call the µs between two back-to-back clock reads (the
 *       cost of reading the clock, which bench/mesh.ts subtracts); µs rounded to 0.1.
 *   {target, durationMs, size, kind?}  throughput: calls back to back for `durationMs` (the clock
 *       is read every 16 calls). Answers {"count":C,"elapsedMs":MS,"failures":F,"error":E}.
 * E is null, or the last mesh error as caller.js reports it ({"tag":"denied","val":"..."}).
 * The payload is built once per `call(input)`; each mesh call's reply is freed unread.
 *
 * World `caller-c` (bench/guests/c-guests.wit): imports `warden:kernel/mesh@0.1.0` (only `call`)
 * and `wasi:clocks/monotonic-clock@0.2.12` (only `now`, directly: no wasi-libc clock, no preview1
 * adapter), exports `warden:kernel/tool@0.1.0`. The canonical ABI glue is written by hand,
 * following https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md
 * ("flattening", "lifting and lowering"). Only malloc/realloc/free and string functions of
 * wasi-libc are used: no constructors, no WASI. Built by scripts/build-c.mjs as a reactor
 * without start files.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- imports ------------------------------------------------------------------------------- */

/* wasi:clocks/monotonic-clock.now: func() -> instant (u64 nanoseconds) → core (func (result i64)). */
__attribute__((import_module("wasi:clocks/monotonic-clock@0.2.12"), import_name("now")))
extern uint64_t monotonic_now(void);

/*
 * warden:kernel/mesh.call: func(target: string, method: string, payload: payload)
 *   -> result<payload, mesh-error>
 * Parameters flatten to 7 core values (≤ MAX_FLAT_PARAMS = 16, so passed flat): target (ptr,
 * len), method (ptr, len), payload as a variant: case index i32 then the joined flat types of
 * json(string) and bytes(list<u8>), both (ptr, len). The result flattens to 4 values
 * (> MAX_FLAT_RESULTS = 1), so the lowered import takes a trailing pointer to a return area
 * where the host stores the result (mesh_result_t) and returns nothing.
 */
__attribute__((import_module("warden:kernel/mesh@0.1.0"), import_name("call")))
extern void mesh_call_import(const char *target, size_t target_len, const char *method, size_t method_len,
                             int32_t payload_case, const void *payload_ptr, size_t payload_len, void *ret);

/*
 * result<payload, mesh-error> in memory: size 16, align 4.
 *   [0] u8 result case (0 ok, 1 err);
 *   [4] u8 case of the payload (0 json, 1 bytes) or of the mesh-error (0 unknown-target, 1 denied,
 *       2 timeout, 3 cycle, 4 busy, 5 failed); every case carries a string or list<u8>:
 *   [8] ptr, [12] len. The host allocated it through our cabi_realloc (align 1), and it is ours
 *       to free; a zero length means nothing was allocated.
 */
typedef struct {
  uint8_t is_err;
  uint8_t pad0[3];
  uint8_t which;
  uint8_t pad1[3];
  char *ptr;
  uint32_t len;
} mesh_result_t;
_Static_assert(sizeof(mesh_result_t) == 16 && offsetof(mesh_result_t, which) == 4 && offsetof(mesh_result_t, ptr) == 8 &&
               offsetof(mesh_result_t, len) == 12, "canonical ABI layout of result<payload, mesh-error>");

/* ---- allocation ---------------------------------------------------------------------------- */

/* Out of memory is a trap: the kernel reports it and discards the instance. */
static void *xrealloc(void *ptr, size_t size) {
  void *p = realloc(ptr, size);
  if (!p) __builtin_trap();
  return p;
}

/*
 * Allocation for the host's lowering of our `input` argument and of the strings the mesh call
 * returns, per the canonical ABI (`realloc(originalPtr, originalSize, alignment, newSize)`).
 * malloc's alignment (16) covers every alignment the ABI asks for. A zero-size request gets a
 * non-null dangling pointer, never freed.
 */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  return xrealloc(ptr, new_size);
}

/* ---- output -------------------------------------------------------------------------------- */

typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void put_u64(buf_t *b, uint64_t v) {
  char tmp[20], *p = tmp + sizeof tmp;
  do *--p = (char)('0' + v % 10), v /= 10; while (v);
  put(b, p, (size_t)(tmp + sizeof tmp - p));
}

/* Nanoseconds as µs rounded to 0.1 (caller.js: Math.round(ms * 10000) / 10), e.g. 12.3 or 12. */
static void put_us(buf_t *b, uint64_t ns) {
  uint64_t tenths = (ns + 50) / 100;
  put_u64(b, tenths / 10);
  if (tenths % 10) {
    char frac[2] = {'.', (char)('0' + tenths % 10)};
    put(b, frac, 2);
  }
}

/* Nanoseconds as milliseconds with 3 decimals (µs resolution). */
static void put_ms(buf_t *b, uint64_t ns) {
  uint64_t us = (ns + 500) / 1000;
  put_u64(b, us / 1000);
  char frac[4] = {'.', (char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10)};
  put(b, frac, 4);
}

/* `s` as a JSON string literal (control characters as \u00XX; other bytes as they are). */
static void put_json_string(buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  put(b, "\"", 1);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char esc[2] = {'\\', (char)c};
      put(b, esc, 2);
    } else if (c < 0x20) {
      char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
      put(b, esc, 6);
    } else {
      put(b, (const char *)&s[i], 1);
    }
  }
  put(b, "\"", 1);
}

/* ---- input: a scanner for the few keys of a flat JSON object -------------------------------- */

typedef struct {
  char *target; /* points into the input, unescaped in place */
  size_t target_len;
  int bytes; /* kind "bytes" (default "json") */
  uint64_t n, size, pause_us, duration_ms;
} request_t;

typedef struct {
  char *p, *end;
} scan_t;

static void skip_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) s->p++;
}

/* A string at s->p (the opening quote), unescaped in place (\" \\ \/ \b \f \n \r \t; a \u escape
 * is kept as written: the keys and target names this reads are plain ASCII). */
static int scan_string(scan_t *s, char **out, size_t *out_len) {
  if (s->p >= s->end || *s->p != '"') return 0;
  char *w = ++s->p, *start = w;
  while (s->p < s->end && *s->p != '"') {
    char c = *s->p++;
    if (c == '\\' && s->p < s->end) {
      char e = *s->p++;
      c = e == 'b' ? '\b' : e == 'f' ? '\f' : e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == 'u' ? (s->p -= 1, '\\') : e;
    }
    *w++ = c;
  }
  if (s->p >= s->end) return 0;
  s->p++;
  *out = start, *out_len = (size_t)(w - start);
  return 1;
}

/* A non-negative number; its integer part (a fraction or exponent is skipped). */
static int scan_number(scan_t *s, uint64_t *out) {
  uint64_t v = 0;
  char *start = s->p;
  while (s->p < s->end && *s->p >= '0' && *s->p <= '9') v = v * 10 + (uint64_t)(*s->p++ - '0');
  if (s->p == start) return 0;
  while (s->p < s->end && (*s->p == '.' || *s->p == 'e' || *s->p == 'E' || *s->p == '+' || *s->p == '-' || (*s->p >= '0' && *s->p <= '9'))) s->p++;
  *out = v;
  return 1;
}

/* Skip any value (nested objects and arrays by depth, minding strings). */
static int skip_value(scan_t *s) {
  int depth = 0;
  do {
    skip_ws(s);
    if (s->p >= s->end) return 0;
    char c = *s->p;
    if (c == '"') {
      char *str;
      size_t len;
      if (!scan_string(s, &str, &len)) return 0;
    } else if (c == '{' || c == '[') {
      depth++, s->p++;
    } else if (c == '}' || c == ']') {
      if (depth == 0) return 0;
      depth--, s->p++;
    } else if (c == ',' || c == ':') {
      if (depth == 0) return 0;
      s->p++;
    } else {
      while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' && *s->p != ' ' && *s->p != '\n') s->p++;
    }
  } while (depth > 0);
  return 1;
}

/* Parse the request; 0 on malformed input or a missing target. Unknown keys are skipped. */
static int parse_request(char *input, size_t len, request_t *rq) {
  scan_t s = {input, input + len};
  memset(rq, 0, sizeof *rq);
  rq->size = 16;
  skip_ws(&s);
  if (s.p >= s.end || *s.p++ != '{') return 0;
  skip_ws(&s);
  if (s.p < s.end && *s.p == '}') return 0;
  for (;;) {
    char *key;
    size_t key_len;
    skip_ws(&s);
    if (!scan_string(&s, &key, &key_len)) return 0;
    skip_ws(&s);
    if (s.p >= s.end || *s.p++ != ':') return 0;
    skip_ws(&s);
#define KEY(name) (key_len == sizeof name - 1 && memcmp(key, name, key_len) == 0)
    int ok;
    if (KEY("target")) {
      ok = scan_string(&s, &rq->target, &rq->target_len);
    } else if (KEY("kind")) {
      char *kind;
      size_t kind_len;
      ok = scan_string(&s, &kind, &kind_len);
      rq->bytes = ok && kind_len == 5 && memcmp(kind, "bytes", 5) == 0;
    } else if (KEY("n")) {
      ok = scan_number(&s, &rq->n);
    } else if (KEY("size")) {
      ok = scan_number(&s, &rq->size);
    } else if (KEY("pauseUs")) {
      ok = scan_number(&s, &rq->pause_us);
    } else if (KEY("durationMs")) {
      ok = scan_number(&s, &rq->duration_ms);
    } else {
      ok = skip_value(&s);
    }
#undef KEY
    if (!ok) return 0;
    skip_ws(&s);
    if (s.p < s.end && *s.p == ',') { s.p++; continue; }
    if (s.p < s.end && *s.p == '}') break;
    return 0;
  }
  return rq->target != NULL;
}

/* ---- the calls ----------------------------------------------------------------------------- */

static const char *const MESH_ERRORS[] = {"unknown-target", "denied", "timeout", "cycle", "busy", "failed"};

/* What one `call(input)` is doing: its target, payload, and failures so far. */
static struct {
  const char *target;
  size_t target_len;
  int32_t payload_case; /* 0 json, 1 bytes */
  char *payload;
  size_t payload_len;
  uint64_t failures;
  int error_case; /* of the last failure, -1 for none */
  char error[256];
  size_t error_len;
} run;

/* One mesh call of run.target's `call` with run.payload; the reply is freed unread. */
static void call_once(void) {
  mesh_result_t ret;
  mesh_call_import(run.target, run.target_len, "call", 4, run.payload_case, run.payload, run.payload_len, &ret);
  if (ret.is_err) {
    run.failures++;
    run.error_case = ret.which < 6 ? ret.which : 5;
    run.error_len = ret.len < sizeof run.error ? ret.len : sizeof run.error;
    memcpy(run.error, ret.ptr, run.error_len);
  }
  if (ret.len > 0) free(ret.ptr); /* cabi_realloc handed out no memory for an empty string */
}

static void put_tail(buf_t *b) {
  puts_(b, ",\"failures\":");
  put_u64(b, run.failures);
  puts_(b, ",\"error\":");
  if (run.error_case < 0) {
    puts_(b, "null");
  } else {
    puts_(b, "{\"tag\":\"");
    puts_(b, MESH_ERRORS[run.error_case]);
    puts_(b, "\",\"val\":");
    put_json_string(b, run.error, run.error_len);
    puts_(b, "}");
  }
  puts_(b, "}");
}

/* Latency: n timed calls, each followed by a timed pair of back-to-back clock reads. */
static void latency(const request_t *rq, buf_t *out) {
  uint64_t *ns = xrealloc(NULL, (rq->n ? rq->n : 1) * 2 * sizeof *ns), *clock_ns = ns + rq->n;
  for (uint64_t i = 0; i < rq->n; i++) {
    if (rq->pause_us) {
      uint64_t until = monotonic_now() + rq->pause_us * 1000;
      while (monotonic_now() < until);
    }
    uint64_t t0 = monotonic_now();
    call_once();
    uint64_t t1 = monotonic_now();
    uint64_t c0 = monotonic_now();
    uint64_t c1 = monotonic_now();
    ns[i] = t1 - t0;
    clock_ns[i] = c1 - c0;
  }
  puts_(out, "{\"us\":[");
  for (uint64_t i = 0; i < rq->n; i++) {
    if (i) put(out, ",", 1);
    put_us(out, ns[i]);
  }
  puts_(out, "],\"clockUs\":[");
  for (uint64_t i = 0; i < rq->n; i++) {
    if (i) put(out, ",", 1);
    put_us(out, clock_ns[i]);
  }
  put(out, "]", 1);
  put_tail(out);
  free(ns);
}

/* Throughput: calls back to back until durationMs has passed (the clock read every 16 calls). */
static void throughput(const request_t *rq, buf_t *out) {
  uint64_t start = monotonic_now(), end = start + rq->duration_ms * 1000000, count = 0;
  for (;;) {
    call_once();
    count++;
    if ((count & 15) == 0 && monotonic_now() >= end) break;
  }
  uint64_t elapsed = monotonic_now() - start;
  puts_(out, "{\"count\":");
  put_u64(out, count);
  puts_(out, ",\"elapsedMs\":");
  put_ms(out, elapsed);
  put_tail(out);
}

/* ---- exports ------------------------------------------------------------------------------- */

/* Return areas: results that flatten to more than one core value are stored in memory. */
static uint32_t describe_area[6];
static uint32_t call_area[4];

static const char NAME[] = "mesh-caller-c";
static const char DESCRIPTION[] = "times mesh calls from inside a component";
static const char SCHEMA[] = "{}";
static const char BAD_INPUT[] = "expected {target, n, size, kind?, pauseUs?} or {target, durationMs, size, kind?}";

/* describe: func() -> tool-info. tool-info {name, description, input-schema}: three strings,
 * each (ptr: u32, len: u32) at offsets 0, 8, 16 (size 24, align 4). */
__attribute__((export_name("warden:kernel/tool@0.1.0#describe"))) uint32_t *tool_describe(void) {
  describe_area[0] = (uint32_t)(uintptr_t)NAME, describe_area[1] = sizeof NAME - 1;
  describe_area[2] = (uint32_t)(uintptr_t)DESCRIPTION, describe_area[3] = sizeof DESCRIPTION - 1;
  describe_area[4] = (uint32_t)(uintptr_t)SCHEMA, describe_area[5] = sizeof SCHEMA - 1;
  return describe_area;
}

/* The result text of the last call, freed in post-return (NULL when it is static). */
static char *pending;

/*
 * call: func(input: string) -> result<string, tool-error>. The input arrives in memory we
 * allocated through cabi_realloc and now own. Result layout (size 16, align 4):
 *   [0] u8 case (0 ok, 1 err); ok: [4] ptr, [8] len;
 *   err: [4] u8 tool-error case (0 invalid-input, 1 failed), [8] ptr, [12] len.
 */
__attribute__((export_name("warden:kernel/tool@0.1.0#call"))) uint32_t *tool_call(char *input, size_t len) {
  request_t rq;
  memset(call_area, 0, sizeof call_area);
  pending = NULL;
  if (!parse_request(input, len, &rq)) {
    if (len > 0) free(input);
    call_area[0] = 1, call_area[1] = 0;
    call_area[2] = (uint32_t)(uintptr_t)BAD_INPUT, call_area[3] = sizeof BAD_INPUT - 1;
    return call_area;
  }
  run.target = rq.target, run.target_len = rq.target_len;
  run.payload_case = rq.bytes ? 1 : 0;
  run.payload_len = rq.bytes ? rq.size : rq.size < 2 ? 2 : rq.size;
  run.payload = xrealloc(NULL, run.payload_len ? run.payload_len : 1);
  memset(run.payload, rq.bytes ? 'b' : 'a', run.payload_len);
  if (!rq.bytes) run.payload[0] = run.payload[run.payload_len - 1] = '"';
  run.failures = 0, run.error_case = -1, run.error_len = 0;

  buf_t out = {0};
  if (rq.duration_ms) throughput(&rq, &out);
  else latency(&rq, &out);

  free(run.payload);
  run.payload = NULL, run.target = NULL;
  if (len > 0) free(input); /* after the calls: run.target pointed into it */
  pending = out.data;
  call_area[0] = 0;
  call_area[1] = (uint32_t)(uintptr_t)out.data, call_area[2] = (uint32_t)out.len;
  return call_area;
}

/* Post-return: the host has copied the result string out; free it. */
__attribute__((export_name("cabi_post_warden:kernel/tool@0.1.0#call"))) void tool_call_post(uint32_t *area) {
  (void)area;
  free(pending);
  pending = NULL;
}
