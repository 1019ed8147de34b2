/*
 * sql-guard: a SQLite loadable extension that ends a scope's statement at its call's deadline.
 *
 * better-sqlite3 exposes no sqlite3_interrupt() and is built with SQLITE_OMIT_PROGRESS_CALLBACK,
 * and a worker thread running native code cannot be stopped from JavaScript: without this, a
 * runaway statement (an unbounded recursive CTE, a cross join of big tables) keeps its thread
 * and a core busy after the mesh has given up on the call. SQLite checks its interrupt flag at
 * the bottom of every VDBE loop and in sorts and the busy handler, and sqlite3_interrupt() is
 * documented safe to call from any thread (https://sqlite.org/c3ref/interrupt.html). So:
 *
 *  - Loading this extension on a connection (sqlite3_sqlguard_init, through better-sqlite3's
 *    Database#loadExtension, which enables the C entry point only) registers the connection
 *    with one watchdog thread per process and defines the SQL function
 *    warden_guard(token TEXT, setting TEXT, value NUMBER) on it:
 *    'deadline' arms the interrupt `value` ms from now (CLOCK_MONOTONIC), or disarms it (<= 0);
 *    'max_length' caps a string or blob at `value` bytes (SQLITE_LIMIT_LENGTH, SQLite's default
 *    is 1e9), which bounds the largest single allocation a statement can make.
 *  - The first call sets the connection's token (16 to 64 bytes); every later call must give
 *    the same one, or it fails with "not authorized". The kernel keeps the token in the worker's
 *    JavaScript, out of the guest's reach, and refuses guest statements that name the function.
 *    The function is SQLITE_DIRECTONLY: no view, trigger or schema default may call it.
 *  - At the deadline the watchdog calls sqlite3_interrupt(): the running statement fails with
 *    SQLITE_INTERRUPT (an explicit transaction it writes in is rolled back by SQLite). SQLite
 *    clears the interrupt flag when a statement starts on an otherwise idle connection, so one
 *    interrupt can land between two statements and be lost: the watchdog repeats it every 5 ms
 *    for a second after the deadline (the kernel refuses to start a statement after it), or
 *    until the deadline is re-armed or disarmed.
 *
 * A guard is unlinked when its connection closes (the function's destructor), under the same
 * mutex the watchdog holds while it interrupts, so the watchdog never touches a closed
 * connection. The library is linked with -z nodelete: SQLite dlclose()s an extension when the
 * connection that loaded it closes, and the watchdog's code must stay mapped.
 *
 * Built by scripts/build.mjs into build/native/sql-guard.so against the sqlite3ext.h that ships
 * with better-sqlite3 (the same SQLite it runs).
 */
#include <sqlite3ext.h>
SQLITE_EXTENSION_INIT1

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 64
/* After the deadline the interrupt is repeated every REPEAT_NS for LINGER_NS. */
#define REPEAT_NS 5000000LL
#define LINGER_NS 1000000000LL

typedef struct Guard Guard;
struct Guard {
  sqlite3 *db;
  int64_t deadline_ns; /* CLOCK_MONOTONIC, 0 = disarmed */
  int token_len;       /* 0 until the first call sets it */
  char token[TOKEN_MAX];
  Guard *prev, *next;
};

static pthread_mutex_t guards_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t guards_changed;
static pthread_once_t watchdog_once = PTHREAD_ONCE_INIT;
static int watchdog_running = 0;
static Guard *guards = 0;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Interrupt every connection whose deadline passed; sleep until the next one or a change. */
static void *watchdog(void *unused) {
  (void)unused;
  pthread_mutex_lock(&guards_lock);
  for (;;) {
    int64_t now = now_ns(), next = 0;
    for (Guard *g = guards; g; g = g->next) {
      if (g->deadline_ns == 0) continue;
      int64_t due = g->deadline_ns;
      if (due <= now) {
        /* SQLite clears the flag when a statement starts on an idle connection, so an interrupt
         * that lands between two statements is lost: keep interrupting for a while. */
        sqlite3_interrupt(g->db);
        if (now - g->deadline_ns >= LINGER_NS) {
          g->deadline_ns = 0;
          continue;
        }
        due = now + REPEAT_NS;
      }
      if (next == 0 || due < next) next = due;
    }
    if (next == 0) {
      pthread_cond_wait(&guards_changed, &guards_lock);
    } else {
      struct timespec until = {(time_t)(next / 1000000000LL), (long)(next % 1000000000LL)};
      pthread_cond_timedwait(&guards_changed, &guards_lock, &until);
    }
  }
  return 0;
}

static void start_watchdog(void) {
  pthread_condattr_t cattr;
  pthread_condattr_init(&cattr);
  pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
  pthread_cond_init(&guards_changed, &cattr);
  pthread_condattr_destroy(&cattr);
  pthread_attr_t tattr;
  pthread_attr_init(&tattr);
  pthread_attr_setdetachstate(&tattr, PTHREAD_CREATE_DETACHED);
  pthread_t thread;
  watchdog_running = pthread_create(&thread, &tattr, watchdog, 0) == 0;
  pthread_attr_destroy(&tattr);
}

static void guard_free(void *p) {
  Guard *g = (Guard *)p;
  pthread_mutex_lock(&guards_lock);
  if (g->prev) g->prev->next = g->next;
  else if (guards == g) guards = g->next;
  if (g->next) g->next->prev = g->prev;
  pthread_mutex_unlock(&guards_lock);
  sqlite3_free(g);
}

/* Whether `token` is the connection's; the first call claims it. Called with guards_lock held. */
static int authorized(Guard *g, sqlite3_value *value) {
  const unsigned char *token = sqlite3_value_text(value);
  int len = sqlite3_value_bytes(value);
  if (!token || len < TOKEN_MIN || len > TOKEN_MAX) return 0;
  if (g->token_len == 0) {
    memcpy(g->token, token, (size_t)len);
    g->token_len = len;
    return 1;
  }
  return g->token_len == len && memcmp(g->token, token, (size_t)len) == 0;
}

/*
 * warden_guard(token, 'deadline', ms): arm this connection's interrupt `ms` from now (ms > 0), or
 *   disarm it (0, negative, NaN); at most a year away. Returns 1.
 * warden_guard(token, 'max_length', bytes): cap a string or blob at `bytes`
 *   (sqlite3_limit SQLITE_LIMIT_LENGTH; SQLite's own maximum still applies). Returns the cap before.
 */
static void warden_guard(sqlite3_context *ctx, int argc, sqlite3_value **argv) {
  (void)argc;
  Guard *g = (Guard *)sqlite3_user_data(ctx);
  const char *setting = (const char *)sqlite3_value_text(argv[1]);
  int type = sqlite3_value_type(argv[2]);
  pthread_mutex_lock(&guards_lock);
  int ok = authorized(g, argv[0]);
  pthread_mutex_unlock(&guards_lock);
  if (!ok) {
    sqlite3_result_error(ctx, "warden_guard: not authorized", -1);
    return;
  }
  if (!setting || (type != SQLITE_INTEGER && type != SQLITE_FLOAT)) {
    sqlite3_result_error(ctx, "warden_guard: expects (token, setting, number)", -1);
    return;
  }
  double value = sqlite3_value_double(argv[2]);
  if (strcmp(setting, "deadline") == 0) {
    const double year_ms = 1000.0 * 86400 * 365;
    pthread_mutex_lock(&guards_lock);
    g->deadline_ns = value > 0 ? now_ns() + (int64_t)((value < year_ms ? value : year_ms) * 1e6) + 1 : 0;
    pthread_cond_signal(&guards_changed);
    pthread_mutex_unlock(&guards_lock);
    sqlite3_result_int(ctx, 1);
  } else if (strcmp(setting, "max_length") == 0 && value >= 1) {
    int bytes = value < 2147483647.0 ? (int)value : 2147483647;
    sqlite3_result_int(ctx, sqlite3_limit(g->db, SQLITE_LIMIT_LENGTH, bytes));
  } else {
    sqlite3_result_error(ctx, "warden_guard: unknown setting or value", -1);
  }
}

#ifdef _WIN32
__declspec(dllexport)
#endif
int sqlite3_sqlguard_init(sqlite3 *db, char **err, const sqlite3_api_routines *api) {
  SQLITE_EXTENSION_INIT2(api);
  pthread_once(&watchdog_once, start_watchdog);
  if (!watchdog_running) {
    *err = sqlite3_mprintf("sql-guard: its watchdog thread could not be started");
    return SQLITE_ERROR;
  }
  Guard *g = (Guard *)sqlite3_malloc(sizeof *g);
  if (!g) return SQLITE_NOMEM;
  memset(g, 0, sizeof *g);
  g->db = db;
  pthread_mutex_lock(&guards_lock);
  g->next = guards;
  if (guards) guards->prev = g;
  guards = g;
  pthread_mutex_unlock(&guards_lock);
  /* On failure SQLite calls the destructor, which unlinks and frees the guard. */
  int rc = sqlite3_create_function_v2(db, "warden_guard", 3, SQLITE_UTF8 | SQLITE_DIRECTONLY, g,
                                      warden_guard, 0, 0, guard_free);
  if (rc != SQLITE_OK) {
    *err = sqlite3_mprintf("sql-guard: cannot define warden_guard (%s)", sqlite3_errmsg(db));
    return rc;
  }
  return SQLITE_OK;
}
