/* The reference ship in C, driven through the replica agent's C ABI.
 *
 * It behaves as replica/src/reference.rs does, byte for byte: its state is
 * the last event and a mug chained through every event (u3r_mug_bytes of
 * the previous mug, 4 bytes big-endian, then the event), it writes inbound
 * packets into events as replica/src/event.rs does, and it answers each Ames
 * packet to the sender's lane with an Ames packet whose content is the
 * event number (8 bytes) and the new state's mug (4 bytes), big-endian. So a
 * cluster may mix it with `seguro replica` replicas.
 *
 * It is also the smallest example of what vere must do (docs/VERE.md):
 * poll the fd, take notices in order, plan while leading, answer replays
 * with mugs, snapshot and report it, go back to the snapshot when told.
 *
 *   reference_ship CONFIG REPLICA_ID STATE_DIR [SNAPSHOT_EVERY]
 *
 * STATE_DIR keeps the snapshot (12 bytes), taken once SNAPSHOT_EVERY
 * (default 10000) committed events passed since the last one; the event log
 * may then purge what every replica has snapshotted. SIGTERM or SIGINT
 * stops it; it exits 0 then, 1 on any error.
 */

#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "seguro_replica.h"

/* ---- u3r_mug_bytes: MurmurHash3_x86_32 folded to 31 bits, never 0 ---- */

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static uint32_t murmur3_32(const uint8_t *data, size_t len, uint32_t seed) {
  const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  uint32_t h = seed;
  size_t blocks = len / 4;
  for (size_t i = 0; i < blocks; i++) {
    const uint8_t *p = data + 4 * i;
    uint32_t k = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    k *= c1;
    k = rotl32(k, 15);
    k *= c2;
    h ^= k;
    h = rotl32(h, 13);
    h = h * 5 + 0xe6546b64;
  }
  const uint8_t *tail = data + 4 * blocks;
  uint32_t k = 0;
  switch (len & 3) {
  case 3:
    k ^= (uint32_t)tail[2] << 16; /* fall through */
  case 2:
    k ^= (uint32_t)tail[1] << 8; /* fall through */
  case 1:
    k ^= tail[0];
    k *= c1;
    k = rotl32(k, 15);
    k *= c2;
    h ^= k;
  }
  h ^= (uint32_t)len;
  h ^= h >> 16;
  h *= 0x85ebca6b;
  h ^= h >> 13;
  h *= 0xc2b2ae35;
  h ^= h >> 16;
  return h;
}

static uint32_t mug_bytes(const uint8_t *data, size_t len) {
  uint32_t seed = 0xcafebabe;
  for (int i = 0; i < 8; i++, seed++) {
    uint32_t hash = murmur3_32(data, len, seed);
    uint32_t folded = (hash >> 31) ^ (hash & 0x7fffffff);
    if (folded != 0) return folded;
  }
  return 0x7fff;
}

/* ---- big- and little-endian helpers ---- */

static void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static void put_be32(uint8_t *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
static uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}

/* ---- the ship ---- */

typedef struct {
  uint64_t last;
  uint32_t mug;
} ship;

static void ship_reset(ship *s) {
  static const char genesis[] = "seguro reference ship";
  s->last = 0;
  s->mug = mug_bytes((const uint8_t *)genesis, sizeof genesis - 1);
}

/* An event as replica/src/event.rs writes it: version 1, the leader's
 * clock (µs, 8 bytes), lane family, port (2), address (4 or 16), packet. */
typedef struct {
  seguro_lane lane;
  const uint8_t *packet;
  size_t len;
} packet_event;

static int decode_event(const uint8_t *e, size_t len, packet_event *out) {
  if (len < 12 || e[0] != 1) return -1;
  memset(&out->lane, 0, sizeof out->lane);
  out->lane.family = e[9];
  out->lane.port = (uint16_t)get_be(e + 10, 2);
  size_t width = e[9] == 4 ? 4 : e[9] == 6 ? 16 : 0;
  if (width == 0 || len < 12 + width) return -1;
  memcpy(out->lane.addr, e + 12, width);
  out->packet = e + 12 + width;
  out->len = len - 12 - width;
  return 0;
}

static size_t encode_event(uint8_t *out, uint64_t now_us, const seguro_lane *lane,
                           const uint8_t *packet, size_t len) {
  size_t width = lane->family == 4 ? 4 : 16;
  out[0] = 1;
  put_be64(out + 1, now_us);
  out[9] = lane->family;
  out[10] = (uint8_t)(lane->port >> 8);
  out[11] = (uint8_t)lane->port;
  memcpy(out + 12, lane->addr, width);
  memcpy(out + 12 + width, packet, len);
  return 12 + width + len;
}

/* The narrowest rank code (0..3: 2 << code bytes) that holds a ship whose
 * little-endian bytes are `ship` (16 of them). */
static int rank_of(const uint8_t ship[16]) {
  int bytes = 16;
  while (bytes > 0 && ship[bytes - 1] == 0) bytes--;
  return bytes <= 2 ? 0 : bytes <= 4 ? 1 : bytes <= 8 ? 2 : 3;
}

/* The answer to an inbound packet, as ReferenceShip::answer makes it: only
 * Ames packets (version 0, the Ames flag, a good checksum, a whole
 * prelude) get one. Returns its length, 0 for none. */
static size_t answer(uint8_t *out, const uint8_t *in, size_t len, uint64_t num,
                     uint32_t mug) {
  if (len < 4) return 0;
  uint32_t word = (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 |
                  (uint32_t)in[3] << 24;
  int is_ames = ((word >> 3) & 1) == 0;
  int version = (word >> 4) & 7;
  int sender_width = 2 << ((word >> 7) & 3);
  int receiver_width = 2 << ((word >> 9) & 3);
  uint32_t checksum = (word >> 11) & 0xfffff;
  size_t origin = (word >> 31) == 0 ? 6 : 0;
  if (!is_ames || version != 0 || len < 4 + origin) return 0;
  if ((mug_bytes(in + 4 + origin, len - 4 - origin) & 0xfffff) != checksum) return 0;
  size_t prelude = 4 + origin + 1;
  if (len < prelude + sender_width + receiver_width) return 0;

  uint8_t sender[16] = {0}, receiver[16] = {0};
  memcpy(sender, in + prelude, sender_width);
  memcpy(receiver, in + prelude + sender_width, receiver_width);
  /* From the receiver back to the sender, narrowest ranks, ticks 0. */
  int from_rank = rank_of(receiver), to_rank = rank_of(sender);
  size_t at = 4;
  out[at++] = 0;
  memcpy(out + at, receiver, 2 << from_rank);
  at += 2 << from_rank;
  memcpy(out + at, sender, 2 << to_rank);
  at += 2 << to_rank;
  put_be64(out + at, num);
  put_be32(out + at + 8, mug);
  at += 12;
  uint32_t sum = mug_bytes(out + 4, at - 4) & 0xfffff;
  uint32_t head = (uint32_t)from_rank << 7 | (uint32_t)to_rank << 9 | sum << 11 | 1u << 31;
  out[0] = (uint8_t)head;
  out[1] = (uint8_t)(head >> 8);
  out[2] = (uint8_t)(head >> 16);
  out[3] = (uint8_t)(head >> 24);
  return at;
}

/* Applies event `num`; on success the new mug is in s->mug and the event's
 * inbound packet in *packet. */
static int ship_apply(ship *s, uint64_t num, const uint8_t *e, size_t len,
                      packet_event *packet) {
  if (num != s->last + 1) {
    fprintf(stderr, "ship: event %" PRIu64 " out of order after %" PRIu64 "\n", num, s->last);
    return -1;
  }
  if (decode_event(e, len, packet) != 0) {
    fprintf(stderr, "ship: event %" PRIu64 " cannot be read\n", num);
    return -1;
  }
  uint8_t *chained = malloc(4 + len);
  if (!chained) return -1;
  put_be32(chained, s->mug);
  memcpy(chained + 4, e, len);
  s->mug = mug_bytes(chained, 4 + len);
  free(chained);
  s->last = num;
  return 0;
}

/* ---- the snapshot: 12 bytes, written durably ---- */

static char snapshot_dir[4096], snapshot_path[4096], snapshot_tmp[4096];
static uint64_t snapshot_every = 10000, snapshot_last = 0;

static int snapshot_save(const ship *s) {
  uint8_t bytes[12];
  put_be64(bytes, s->last);
  put_be32(bytes + 8, s->mug);
  int fd = open(snapshot_tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int ok = write(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes && fdatasync(fd) == 0;
  close(fd);
  if (!ok || rename(snapshot_tmp, snapshot_path) != 0) return -1;
  /* The rename is durable only once the directory is: until then a crash
   * may bring the old snapshot back, after the log was told it may purge. */
  int dir = open(snapshot_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  ok = fsync(dir) == 0;
  close(dir);
  if (!ok) return -1;
  snapshot_last = s->last;
  return 0;
}

static void snapshot_load(ship *s) {
  ship_reset(s);
  uint8_t bytes[12];
  int fd = open(snapshot_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (read(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes) {
    s->last = get_be(bytes, 8);
    s->mug = (uint32_t)get_be(bytes + 8, 4);
  }
  snapshot_last = s->last;
  close(fd);
}

/* ---- the loop ---- */

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static uint64_t now_us(uint64_t previous) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  uint64_t now = (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
  /* Strictly increasing along the log, as the Rust runtime's clock is. */
  return now > previous ? now : previous + 1;
}

#define CHECK(call)                                                                \
  do {                                                                             \
    seguro_error e_ = (call);                                                      \
    if (e_ != SEGURO_OK) {                                                         \
      fprintf(stderr, "ship: %s: %d: %s\n", #call, (int)e_, seguro_replica_last_error()); \
      goto fail;                                                                   \
    }                                                                              \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 4 && argc != 5) {
    fprintf(stderr, "usage: %s CONFIG REPLICA_ID STATE_DIR [SNAPSHOT_EVERY]\n", argv[0]);
    return 2;
  }
  if (argc == 5) snapshot_every = strtoull(argv[4], NULL, 10);
  if (snapshot_every == 0) snapshot_every = 1;
  snprintf(snapshot_dir, sizeof snapshot_dir, "%s", argv[3]);
  snprintf(snapshot_path, sizeof snapshot_path, "%s/ship.snapshot", argv[3]);
  snprintf(snapshot_tmp, sizeof snapshot_tmp, "%s/ship.snapshot.tmp", argv[3]);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  ship s;
  snapshot_load(&s);
  seguro_error err;
  seguro_replica *h = seguro_replica_start(argv[1], (uint32_t)atoi(argv[2]), s.last, &err);
  if (!h) {
    fprintf(stderr, "ship: cannot start the agent (%d): %s\n", (int)err,
            seguro_replica_last_error());
    return 1;
  }
  fprintf(stderr, "ship: started at event %" PRIu64 "\n", s.last);
  CHECK(seguro_replica_checkpointed(h, s.last));

  int leading = 0;
  uint64_t clock = 0;
  static uint8_t event[1 << 17], out[256];
  struct pollfd pfd = {.fd = seguro_replica_fd(h), .events = POLLIN};
  while (!stopping) {
    int ready = poll(&pfd, 1, 200);
    if (ready < 0 && errno != EINTR) goto fail;
    for (;;) {
      seguro_notice n;
      seguro_error got = seguro_replica_next_notice(h, &n);
      if (got == SEGURO_EMPTY) break;
      CHECK(got);
      packet_event packet;
      switch (n.kind) {
      case SEGURO_NOTICE_REPLAY:
        if (ship_apply(&s, n.num, n.data, n.len, &packet) != 0) goto fail;
        CHECK(seguro_replica_applied(h, n.num, s.mug));
        /* A new leader's clock starts past every event it replayed. */
        if (get_be(n.data + 1, 8) > clock) clock = get_be(n.data + 1, 8);
        /* A replayed state is a committed one. */
        if (s.last >= snapshot_last + snapshot_every && snapshot_save(&s) == 0)
          CHECK(seguro_replica_checkpointed(h, s.last));
        break;
      case SEGURO_NOTICE_LEAD:
        if (n.num != s.last + 1) {
          fprintf(stderr, "ship: told to lead from %" PRIu64 " at %" PRIu64 "\n", n.num, s.last);
          goto fail;
        }
        fprintf(stderr, "ship: leading term %" PRIu64 " from event %" PRIu64 "\n", n.epoch, n.num);
        leading = 1;
        break;
      case SEGURO_NOTICE_PACKET: {
        if (!leading) break;
        if (n.len > sizeof event - 32) break; /* no datagram is this big */
        clock = now_us(clock);
        size_t len = encode_event(event, clock, &n.lane, n.data, n.len);
        uint64_t num = s.last + 1;
        if (ship_apply(&s, num, event, len, &packet) != 0) goto fail;
        CHECK(seguro_replica_plan(h, num, s.mug, event, len, n.packet_id));
        size_t answer_len = answer(out, packet.packet, packet.len, num, s.mug);
        if (answer_len > 0) CHECK(seguro_replica_send(h, num, &n.lane, out, answer_len));
        break;
      }
      case SEGURO_NOTICE_COMMITTED:
        if (s.last == n.num && s.last >= snapshot_last + snapshot_every && snapshot_save(&s) == 0)
          CHECK(seguro_replica_checkpointed(h, s.last));
        break;
      case SEGURO_NOTICE_REWIND:
        leading = 0;
        snapshot_load(&s);
        fprintf(stderr, "ship: rewound to event %" PRIu64 "\n", s.last);
        CHECK(seguro_replica_restored(h, s.last));
        break;
      case SEGURO_NOTICE_PURGED:
        fprintf(stderr, "ship: the log was purged before %" PRIu64
                        "; this ship cannot fetch a peer's snapshot\n", n.num);
        goto fail;
      }
    }
  }
  seguro_replica_stop(h);
  fprintf(stderr, "ship: stopped at event %" PRIu64 "\n", s.last);
  return 0;
fail:
  seguro_replica_stop(h);
  return 1;
}
