/* The vere-shaped runtime: what the king (king.c) and the serf (mars.c)
 * share. See README.md. */

#ifndef VERE_VERE_H
#define VERE_VERE_H

#include <stdint.h>
#include <stdlib.h>

#include "noun.h"

/* Room for one more element of `size` bytes in `arr`, which holds `len` of
 * `*cap`: doubles the capacity (from `first`) when full. Returns the array,
 * moved or not; aborts when memory runs out, as vere's allocator does. */
static inline void *vere_room(void *arr, size_t len, size_t *cap, size_t size, size_t first) {
  if (len < *cap) return arr;
  size_t want = *cap ? 2 * *cap : first;
  if (want > SIZE_MAX / size) abort();
  void *grown = realloc(arr, want * size);
  if (!grown) abort();
  *cap = want;
  return grown;
}

/* Events 1..LIFE of a new ship: the boot sequence, `[%boot i]`. */
#define VERE_LIFE 3

/* Up to this many lanes in one %push (SEGURO_PUSH_MAX_LANES). */
#define VERE_PUSH_LANES 16

typedef struct {
  const char *config;
  uint32_t replica_id;
  const char *dir;
  uint64_t snapshot_every;
  uint8_t ship[16]; /* our ship, little-endian */
  uint64_t wake_ms; /* the leader's %wake timer; 0: none */
  uint64_t work_ms; /* the serf's time per poke (an Arvo event's cost) */
  /* --route SHIP=IP:PORT: where forwarded packets for SHIP go. */
  struct route {
    uint8_t ship[16];
    uint32_t ip; /* host order */
    uint16_t port;
  } routes[32];
  int n_routes;
} vere_args;

/* The serf: holds the state, the local log and the agent. Returns the
 * process's exit code. */
int mars_main(const vere_args *a, int king_fd);
/* The king: the ship's network side. Returns the process's exit code. */
int king_main(const vere_args *a, int mars_fd, int mars_pid);

/* A lane as vere encodes it in %hear: [%.n chub], chub = ip | port << 32. */
uint64_t lane_chub(uint32_t ip, uint16_t port);

/* VERE_VERBOSE set in the environment: a line per packet and event. */
extern int verbose;

/* Logs to stderr with the side's name. */
void say(const char *side, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
