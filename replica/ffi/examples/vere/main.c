/* The vere-shaped runtime: a king and a serf in two processes (fork), talking
 * in newt frames over a socket pair, the serf driving the replica agent
 * through its C ABI. See README.md.
 *
 *   vere CONFIG REPLICA_ID STATE_DIR [--snapshot-every N] [--ship N]
 *        [--wake-ms N] [--work-ms N] [--route SHIP=IP:PORT]...
 *   vere jam-check FILE
 *
 * SIGTERM or SIGINT stops it (the king stops the serf, which stops the
 * agent; the agent resigns a term it holds); it exits 0 then, 1 on error.
 */

#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "noun.h"
#include "vere.h"

void say(const char *side, const char *fmt, ...) {
  char line[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  fprintf(stderr, "%s: %s\n", side, line);
}

int verbose;

uint64_t lane_chub(uint32_t ip, uint16_t port) { return (uint64_t)ip | (uint64_t)port << 32; }

static int parse_ship(const char *s, uint8_t out[16]) {
  char *end;
  uint64_t v = strtoull(s, &end, 0);
  if (end == s || *end) return -1;
  memset(out, 0, 16);
  put_le(out, v, 8);
  return 0;
}

static int parse_route(const char *s, struct route *r) {
  char ship[64], ip[64];
  unsigned port;
  if (sscanf(s, "%63[^=]=%63[^:]:%u", ship, ip, &port) != 3 || port > 65535) return -1;
  struct in_addr a;
  if (parse_ship(ship, r->ship) || inet_pton(AF_INET, ip, &a) != 1) return -1;
  r->ip = ntohl(a.s_addr);
  r->port = (uint16_t)port;
  return 0;
}

/* ---- jam-check: the shared vectors (replica/tests/data/jam-vectors.txt) ----
 *
 * One vector a line, `<hex> <noun>`: the jam's bytes (least significant
 * first), then the noun: decimal atoms, 0x atoms (any size, most
 * significant digit first), ~ (0), %cords, [a b c] cells (right-nested).
 * For each: cue(bytes) is the noun, and jam(noun) is the bytes. */

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static const char *text;

static void skip_spaces(void) {
  while (*text == ' ' || *text == '\t') text++;
}

static noun *parse_noun(int depth) {
  skip_spaces();
  if (depth > 1000) return NULL;
  if (*text == '[') {
    text++;
    noun *items[256];
    int n = 0;
    for (;;) {
      skip_spaces();
      if (*text == ']') {
        text++;
        break;
      }
      if (n == 256 || !*text) return NULL;
      if (!(items[n++] = parse_noun(depth + 1))) return NULL;
    }
    if (n < 2) return NULL;
    noun *cell = items[n - 1];
    for (int i = n - 2; i >= 0; i--) cell = n_cell(items[i], cell);
    return cell;
  }
  if (*text == '~') {
    text++;
    return n_u64(0);
  }
  if (*text == '%') {
    const char *start = ++text;
    while (*text && *text != ' ' && *text != '\t' && *text != ']' && *text != '[') text++;
    return n_bytes((const uint8_t *)start, (size_t)(text - start));
  }
  if (text[0] == '0' && text[1] == 'x') {
    const char *start = text += 2;
    while (hex_value(*text) >= 0) text++;
    size_t digits = (size_t)(text - start);
    uint8_t *bytes = calloc(digits / 2 + 1, 1);
    if (!bytes) abort();
    for (size_t i = 0; i < digits; i++) {
      size_t nib = digits - 1 - i; /* from the least significant */
      bytes[nib / 2] |= (uint8_t)(hex_value(start[i]) << (4 * (nib % 2)));
    }
    noun *a = n_bytes(bytes, digits / 2 + 1);
    free(bytes);
    return a;
  }
  if (*text >= '0' && *text <= '9') {
    char *end;
    uint64_t v = strtoull(text, &end, 10);
    text = end;
    return n_u64(v);
  }
  return NULL;
}

static int jam_check(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return 1;
  }
  static char line[1 << 17];
  static uint8_t bytes[1 << 16];
  int checked = 0, failed = 0, lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    line[strcspn(line, "\r\n")] = 0;
    text = line;
    skip_spaces();
    if (*text == '#' || *text == 0) continue;
    size_t len = 0;
    while (hex_value(text[0]) >= 0 && hex_value(text[1]) >= 0 && len < sizeof bytes) {
      bytes[len++] = (uint8_t)(hex_value(text[0]) << 4 | hex_value(text[1]));
      text += 2;
    }
    size_t m = noun_mark();
    noun *want = (*text == ' ' || *text == '\t') ? parse_noun(0) : NULL;
    skip_spaces();
    noun *got = n_cue(bytes, len);
    size_t jam_len = 0;
    uint8_t *jam = want ? n_jam(want, &jam_len) : NULL;
    const char *why = !want || *text ? "cannot read the line"
                      : !got         ? "does not cue"
                      : !n_equal(got, want) ? "cues to another noun"
                      : jam_len != len || memcmp(jam, bytes, len) != 0 ? "jams to other bytes"
                                                                        : NULL;
    if (why) {
      fprintf(stderr, "%s:%d: %s\n", path, lineno, why);
      failed++;
    }
    free(jam);
    noun_release(m);
    checked++;
  }
  fclose(f);
  printf("jam-check: %d vectors, %d failed\n", checked, failed);
  return failed || checked == 0 ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "jam-check") == 0) return jam_check(argv[2]);
  verbose = getenv("VERE_VERBOSE") != NULL;
  static vere_args a;
  a.snapshot_every = 10000;
  a.wake_ms = 0;
  parse_ship("1", a.ship);
  int positional = 0;
  for (int i = 1; i < argc; i++) {
    const char *opt = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    if (opt[0] != '-' || opt[1] != '-') {
      if (positional == 0) a.config = opt;
      else if (positional == 1) a.replica_id = (uint32_t)strtoul(opt, NULL, 10);
      else if (positional == 2) a.dir = opt;
      else goto usage;
      positional++;
      continue;
    }
    if (!val) goto usage;
    i++;
    if (strcmp(opt, "--snapshot-every") == 0) a.snapshot_every = strtoull(val, NULL, 10);
    else if (strcmp(opt, "--ship") == 0) {
      if (parse_ship(val, a.ship)) goto usage;
    } else if (strcmp(opt, "--wake-ms") == 0) a.wake_ms = strtoull(val, NULL, 10);
    else if (strcmp(opt, "--work-ms") == 0) a.work_ms = strtoull(val, NULL, 10);
    else if (strcmp(opt, "--route") == 0) {
      if (a.n_routes == 32 || parse_route(val, &a.routes[a.n_routes])) goto usage;
      a.n_routes++;
    } else goto usage;
  }
  if (positional != 3) goto usage;
  if (a.snapshot_every == 0) a.snapshot_every = 1;

  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    perror("socketpair");
    return 1;
  }
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    perror("fork");
    return 1;
  }
  if (pid == 0) {
    close(pair[0]);
    return mars_main(&a, pair[1]);
  }
  close(pair[1]);
  return king_main(&a, pair[0], pid);

usage:
  fprintf(stderr,
          "usage: %s CONFIG REPLICA_ID STATE_DIR [--snapshot-every N] [--ship N] [--wake-ms N]"
          " [--work-ms N] [--route SHIP=IP:PORT]...\n       %s jam-check FILE\n",
          argv[0], argv[0]);
  return 2;
}
