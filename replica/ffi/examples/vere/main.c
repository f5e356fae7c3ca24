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

/* ---- jam-check: every vector's jam cues and jams back byte for byte ---- */

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* "0x..." is an atom written most significant digit first; bare hex is
 * the atom's bytes, least significant first. */
static uint8_t *parse_hex(const char *s, size_t *len) {
  int atom = s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  if (atom) s += 2;
  char digits[1 << 16];
  size_t n = 0;
  for (; *s && n + 1 < sizeof digits; s++) {
    if (*s == '.' || *s == '_') continue;
    if (hex_value(*s) < 0) return NULL;
    digits[n++] = *s;
  }
  size_t bytes = (n + 1) / 2;
  uint8_t *out = calloc(bytes ? bytes : 1, 1);
  if (!out) abort();
  if (atom) {
    for (size_t i = 0; i < n; i++) {
      size_t nib = n - 1 - i; /* nibble index from the least significant */
      out[nib / 2] |= (uint8_t)(hex_value(digits[i]) << (4 * (nib % 2)));
    }
  } else {
    if (n % 2) {
      free(out);
      return NULL;
    }
    for (size_t i = 0; i < bytes; i++)
      out[i] = (uint8_t)(hex_value(digits[2 * i]) << 4 | hex_value(digits[2 * i + 1]));
  }
  *len = bytes;
  return out;
}

static int jam_check(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) {
    perror(path);
    return 1;
  }
  static char line[1 << 17];
  int checked = 0, failed = 0, lineno = 0;
  while (fgets(line, sizeof line, f)) {
    lineno++;
    char *hash = line;
    while (*hash == ' ' || *hash == '\t') hash++;
    if (*hash == '#' || *hash == '\n' || *hash == 0) continue;
    /* the jam is the line's last field */
    char *end = line + strlen(line);
    while (end > line && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
      *--end = 0;
    char *field = end;
    while (field > line && field[-1] != ' ' && field[-1] != '\t') field--;
    size_t len;
    uint8_t *bytes = parse_hex(field, &len);
    if (!bytes) {
      fprintf(stderr, "line %d: the last field is not hex: %s\n", lineno, field);
      failed++;
      continue;
    }
    while (len > 0 && bytes[len - 1] == 0) len--;
    size_t m = noun_mark();
    noun *n = n_cue(bytes, len);
    if (!n) {
      fprintf(stderr, "line %d: does not cue\n", lineno);
      failed++;
    } else {
      size_t again_len;
      uint8_t *again = n_jam(n, &again_len);
      if (again_len != len || memcmp(again, bytes, len) != 0) {
        fprintf(stderr, "line %d: jam(cue(x)) != x (%zu bytes, %zu back)\n", lineno, len,
                again_len);
        failed++;
      }
      free(again);
    }
    noun_release(m);
    free(bytes);
    checked++;
  }
  fclose(f);
  printf("jam-check: %d vectors, %d failed\n", checked, failed);
  return failed || checked == 0 ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "jam-check") == 0) return jam_check(argv[2]);
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
