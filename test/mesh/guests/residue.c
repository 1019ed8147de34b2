/*
 * Guest of test/mesh/calls.test.ts: a tool that can see what an earlier call left in its linear
 * memory, to check that a fresh instance given a recycled memory (kernel/mesh/worker.ts) starts
 * clean. QuickJS guests cannot read raw memory; a C guest can.
 *
 * `scratch` is zero-initialised static data (.bss): no data segment covers it, so it holds zeros
 * only because the memory did. `call(input)`, input being a JSON string literal:
 *   "w:TEXT"  copies TEXT into scratch and answers "wrote N";
 *   "r"       answers scratch up to its first zero byte ("" when clean).
 * Anything else is answered with the tool error invalid-input.
 *
 * The module never grows its memory: arguments are lowered into a static arena (cabi_realloc
 * below), not malloc'd, so each instance keeps its initial size and its memory can be recycled.
 * Canonical ABI glue by hand, as in bench/guests/echo.c; world tool-component (wit/kernel.wit),
 * no WASI. Built by scripts/build-c.mjs; the .wasm is committed beside this file.
 */
#include <stddef.h>
#include <stdint.h>

static char scratch[4096];

/* Lowered arguments (the input string) are bump-allocated here; post-return resets it. */
static _Alignas(16) char arena[16384];
static size_t arena_used;

__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)ptr, (void)old_size;
  if (new_size == 0) return (void *)align;
  size_t start = (arena_used + align - 1) & ~(align - 1);
  if (start + new_size > sizeof arena) __builtin_trap();
  arena_used = start + new_size;
  return arena + start;
}

static uint32_t describe_area[6];
static uint32_t call_area[4];

static const char NAME[] = "residue";
static const char DESCRIPTION[] = "writes into or reads back zero-initialised static memory";
static const char SCHEMA[] = "{\"type\":\"string\"}";
static const char BAD[] = "expected \"w:TEXT\" or \"r\"";
static char reply[32];

/* describe: func() -> tool-info {name, description, input-schema}: three (ptr, len) pairs. */
__attribute__((export_name("warden:kernel/tool@0.1.0#describe"))) uint32_t *tool_describe(void) {
  describe_area[0] = (uint32_t)(uintptr_t)NAME, describe_area[1] = sizeof NAME - 1;
  describe_area[2] = (uint32_t)(uintptr_t)DESCRIPTION, describe_area[3] = sizeof DESCRIPTION - 1;
  describe_area[4] = (uint32_t)(uintptr_t)SCHEMA, describe_area[5] = sizeof SCHEMA - 1;
  return describe_area;
}

static uint32_t *ok(const char *text, size_t len) {
  call_area[0] = 0, call_area[1] = (uint32_t)(uintptr_t)text, call_area[2] = (uint32_t)len;
  return call_area;
}

/*
 * call: func(input: string) -> result<string, tool-error>, through a return area (size 16,
 * align 4): [0] u8 case (0 ok, 1 err); ok: [4] ptr, [8] len; err: [4] u8 tool-error case
 * (0 invalid-input), [8] ptr, [12] len.
 */
__attribute__((export_name("warden:kernel/tool@0.1.0#call"))) uint32_t *tool_call(const char *input, size_t len) {
  /* The JSON string literal's quotes: "w:TEXT" or "r". */
  if (len >= 3 && input[0] == '"' && input[len - 1] == '"') input++, len -= 2;
  if (len == 1 && input[0] == 'r') {
    size_t n = 0;
    while (n < sizeof scratch && scratch[n]) n++;
    return ok(scratch, n);
  }
  if (len >= 2 && input[0] == 'w' && input[1] == ':') {
    size_t n = len - 2 < sizeof scratch - 1 ? len - 2 : sizeof scratch - 1;
    for (size_t i = 0; i < n; i++) scratch[i] = input[2 + i];
    char *end = reply + sizeof reply, *p = end;
    size_t k = n;
    do *--p = (char)('0' + k % 10), k /= 10; while (k);
    static const char WROTE[] = "wrote ";
    p -= sizeof WROTE - 1;
    for (size_t i = 0; i < sizeof WROTE - 1; i++) p[i] = WROTE[i];
    return ok(p, (size_t)(end - p));
  }
  call_area[0] = 1, call_area[1] = 0;
  call_area[2] = (uint32_t)(uintptr_t)BAD, call_area[3] = sizeof BAD - 1;
  return call_area;
}

/* Post-return: the host has copied the result out; the arena is free again. */
__attribute__((export_name("cabi_post_warden:kernel/tool@0.1.0#call"))) void tool_call_post(uint32_t *area) {
  (void)area;
  arena_used = 0;
}
