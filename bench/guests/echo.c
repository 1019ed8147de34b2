/*
 * Guest of bench/mesh.ts: the callee, in C (the same tool as echo.js, with as little work inside
 * the guest as possible). `call(input)` answers its input unchanged; an input that starts with
 * `b` (a `bytes` payload, which the kernel hands a tool as text) is answered with its length in
 * decimal instead.
 *
 * It exports `warden:kernel/tool@0.1.0` (world `tool-component`, wit/kernel.wit) and imports
 * nothing: the canonical ABI glue is written by hand, following
 * https://github.com/WebAssembly/component-model/blob/main/design/mvp/CanonicalABI.md.
 * No wasi-libc function that needs WASI or constructors is used (only malloc and free), so the
 * module runs no constructors and the preview1 adapter is left out of the component.
 * Built by scripts/build-c.mjs as a reactor without start files.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

/*
 * Allocation for the host's lowering of arguments (the `input` string), per the canonical ABI
 * (`realloc(originalPtr, originalSize, alignment, newSize)`). malloc's alignment (16) covers
 * every alignment the ABI asks for. A zero-size request gets a non-null dangling pointer, never
 * freed. Out of memory is a trap: the kernel reports it and discards the instance.
 */
__attribute__((export_name("cabi_realloc"))) void *cabi_realloc(void *ptr, size_t old_size, size_t align, size_t new_size) {
  (void)old_size;
  if (new_size == 0) return (void *)align;
  void *p = realloc(ptr, new_size);
  if (!p) __builtin_trap();
  return p;
}

/* Return areas: results that flatten to more than one core value (MAX_FLAT_RESULTS = 1) are
 * stored in memory and the export returns a pointer to them. */
static uint32_t describe_area[6];
static uint32_t call_area[4];

static const char NAME[] = "echo-c";
static const char DESCRIPTION[] = "answers its input (bytes payloads: their length)";
static const char SCHEMA[] = "{}";

/* describe: func() -> tool-info. tool-info {name, description, input-schema}: three strings,
 * each (ptr: u32, len: u32) at offsets 0, 8, 16 (size 24, align 4). */
__attribute__((export_name("warden:kernel/tool@0.1.0#describe"))) uint32_t *tool_describe(void) {
  describe_area[0] = (uint32_t)(uintptr_t)NAME, describe_area[1] = sizeof NAME - 1;
  describe_area[2] = (uint32_t)(uintptr_t)DESCRIPTION, describe_area[3] = sizeof DESCRIPTION - 1;
  describe_area[4] = (uint32_t)(uintptr_t)SCHEMA, describe_area[5] = sizeof SCHEMA - 1;
  return describe_area;
}

/* The input of the last call, which this module owns (it came through cabi_realloc) and frees in
 * post-return, after the host has copied the result out of it. NULL for an empty input. */
static char *pending;
/* The decimal length of a `bytes` input: the result then points here. */
static char length_text[12];

/*
 * call: func(input: string) -> result<string, tool-error>. Flat parameters (ptr, len); the
 * result goes through a return area (size 16, align 4):
 *   [0] u8 case (0 ok, 1 err); ok: [4] ptr, [8] len.
 * This tool never returns `err`.
 */
__attribute__((export_name("warden:kernel/tool@0.1.0#call"))) uint32_t *tool_call(char *input, size_t len) {
  pending = len > 0 ? input : NULL; /* cabi_realloc handed out no memory for an empty string */
  call_area[0] = 0;
  if (len > 0 && input[0] == 'b') {
    char *end = length_text + sizeof length_text, *p = end;
    size_t n = len;
    do *--p = (char)('0' + n % 10), n /= 10; while (n);
    call_area[1] = (uint32_t)(uintptr_t)p, call_area[2] = (uint32_t)(end - p);
  } else {
    call_area[1] = (uint32_t)(uintptr_t)input, call_area[2] = (uint32_t)len;
  }
  return call_area;
}

/* Post-return: the host has copied the result string out; free the input (which may be it). */
__attribute__((export_name("cabi_post_warden:kernel/tool@0.1.0#call"))) void tool_call_post(uint32_t *area) {
  (void)area;
  free(pending);
  pending = NULL;
}
