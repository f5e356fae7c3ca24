/* The serf (vere's mars.c + disk.c): the ship's state, its local event log,
 * its snapshot, and the replica agent (the ABI handle).
 *
 * State: (last event, mug), the mug chained through every event:
 * mug' = u3r_mug_bytes(BE32(mug) ++ event bytes), from
 * u3r_mug_bytes("seguro vere-shaped ship").
 *
 * The local log (vere's LMDB) keeps each event as vere's u3_disk_etch does
 * (4-byte little-endian mug, then the jammed event) behind an 8-byte
 * little-endian event number and a 4-byte length of the mug and event. `sen` is the last event written (planned),
 * `dun` the last one fdatasync'd; replays are written too, so u3_disk_plan's
 * `sen + 1 == eve` holds on the first plan after any replay. The commit
 * mark `com` is separate: the replicated log's (COMMITTED notices, and every
 * replayed event). Effects (gifts) leave in _mars_flush only once their
 * event is both locally durable and committed.
 */

#define _POSIX_C_SOURCE 200809L
#define _DEFAULT_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "newt.h"
#include "pact.h"
#include "seguro_replica.h"
#include "vere.h"

#define SAY(...) say("mars", __VA_ARGS__)

static const vere_args *args;
static seguro_replica *h;
static newt king;

/* ---- the state ---- */

static uint64_t last;
static uint32_t mug;
static uint64_t clock_us; /* the latest `now` in any event */

static void ship_reset(void) {
  static const char genesis[] = "seguro vere-shaped ship";
  last = 0;
  mug = mug_bytes((const uint8_t *)genesis, sizeof genesis - 1);
}

/* Chains event `num` into the state (u3v_poke's effect on the mug). */
static void ship_chain(uint64_t num, const uint8_t *e, size_t len) {
  uint8_t *chained = malloc(4 + len);
  if (!chained) abort();
  put_be32(chained, mug);
  memcpy(chained + 4, e, len);
  mug = mug_bytes(chained, 4 + len);
  free(chained);
  last = num;
  size_t mark = noun_mark();
  uint64_t now;
  noun *job = n_cue(e, len);
  if (n_head(job) && n_get_u64(n_head(job), &now) == 0 && now > clock_us) clock_us = now;
  noun_release(mark);
}

/* ---- the local event log (disk.c) ---- */

static struct {
  int fd;
  uint64_t first;       /* the event at offs[0] */
  uint64_t sen, dun;    /* planned; locally durable */
  off_t *offs;          /* where event first+i starts */
  size_t n, cap;
  off_t end;
} disk;

static void disk_index(off_t at) {
  disk.offs = vere_room(disk.offs, disk.n, &disk.cap, sizeof *disk.offs, 1024);
  disk.offs[disk.n++] = at;
}

/* u3_disk_trim (new): cut the log after event `eve`. */
static int disk_trim(uint64_t eve) {
  if (eve >= disk.sen) return 0;
  size_t keep = eve + 1 > disk.first ? (size_t)(eve + 1 - disk.first) : 0;
  off_t at = keep < disk.n ? disk.offs[keep] : disk.end;
  if (ftruncate(disk.fd, at) != 0 || fdatasync(disk.fd) != 0) return -1;
  SAY("local log trimmed after event %" PRIu64 " (it held %" PRIu64 ")", eve, disk.sen);
  disk.n = keep;
  disk.end = at;
  disk.sen = disk.dun = eve;
  if (keep == 0) disk.first = eve + 1;
  return 0;
}

/* Opens the log, dropping a torn tail; the state is as of snapshot `sav`:
 * later events may never have committed, and the agent replays the
 * committed ones, so the log is cut back to `sav`. */
static int disk_open(uint64_t sav) {
  char path[4200];
  snprintf(path, sizeof path, "%s/log", args->dir);
  disk.fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (disk.fd < 0) return -1;
  off_t at = 0;
  uint8_t rec[16];
  uint64_t expect = 0;
  disk.n = 0;
  while (pread(disk.fd, rec, 16, at) == 16) {
    uint64_t num = get_le(rec, 8);
    uint32_t size = (uint32_t)get_le(rec + 8, 4); /* mug and event */
    struct stat st;
    if (size < 4 || fstat(disk.fd, &st) != 0 || at + 12 + (off_t)size > st.st_size) break;
    if (expect != 0 && num != expect) break;
    if (expect == 0) disk.first = num;
    disk_index(at);
    expect = num + 1;
    at += 12 + size;
  }
  disk.end = at;
  disk.sen = disk.dun = expect ? expect - 1 : sav;
  if (expect == 0 || disk.first > sav + 1 || disk.sen < sav) {
    /* Nothing after the snapshot to keep: start the log at the snapshot. */
    if (ftruncate(disk.fd, 0) != 0) return -1;
    disk.n = 0;
    disk.end = 0;
    disk.first = sav + 1;
    disk.sen = disk.dun = sav;
    return 0;
  }
  if (ftruncate(disk.fd, disk.end) != 0) return -1;
  return disk_trim(sav);
}

/* u3_disk_plan: the next event, written (durable at the next commit). */
static void disk_plan(uint64_t eve, uint32_t eve_mug, const uint8_t *e, size_t len) {
  if (disk.sen + 1 != eve) {
    /* vere: u3_assert( (log_u->sen_d + 1) == tac_u->eve_d ) */
    SAY("assertion failed: disk plan sen %" PRIu64 " + 1 != eve %" PRIu64, disk.sen, eve);
    abort();
  }
  uint8_t *rec = malloc(16 + len);
  if (!rec) abort();
  put_le(rec, eve, 8);
  put_le(rec + 8, len + 4, 4);
  put_le(rec + 12, eve_mug, 4);
  memcpy(rec + 16, e, len);
  if (pwrite(disk.fd, rec, 16 + len, disk.end) != (ssize_t)(16 + len)) {
    SAY("cannot write event %" PRIu64 " to the local log: %s", eve, strerror(errno));
    abort();
  }
  free(rec);
  if (disk.n == 0) disk.first = eve;
  disk_index(disk.end);
  disk.end += 16 + (off_t)len;
  disk.sen = eve;
}

/* _disk_commit / _disk_commit_done: everything planned becomes durable. */
static int disk_commit(void) {
  if (disk.dun == disk.sen) return 0;
  if (fdatasync(disk.fd) != 0) return -1;
  disk.dun = disk.sen;
  return 0;
}

/* Reads event `eve` back (u3_disk_sift): its mug and bytes (malloc'd). */
static uint8_t *disk_read(uint64_t eve, uint32_t *eve_mug, size_t *len) {
  if (eve < disk.first || eve > disk.sen) return NULL;
  off_t at = disk.offs[eve - disk.first];
  uint8_t rec[16];
  if (pread(disk.fd, rec, 16, at) != 16) return NULL;
  size_t n = (size_t)get_le(rec + 8, 4) - 4;
  *eve_mug = (uint32_t)get_le(rec + 12, 4);
  uint8_t *e = malloc(n ? n : 1);
  if (!e || pread(disk.fd, e, n, at + 16) != (ssize_t)n) {
    free(e);
    return NULL;
  }
  *len = n;
  return e;
}

/* ---- the snapshot (u3m_save): 12 bytes, written durably ---- */

static uint64_t sav;

static int snapshot_save(void) {
  char path[4200], tmp[4200];
  snprintf(path, sizeof path, "%s/snapshot", args->dir);
  snprintf(tmp, sizeof tmp, "%s/snapshot.tmp", args->dir);
  uint8_t bytes[12];
  put_be64(bytes, last);
  put_be32(bytes + 8, mug);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -1;
  int ok = write(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes && fdatasync(fd) == 0;
  close(fd);
  if (!ok || rename(tmp, path) != 0) return -1;
  int dir = open(args->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  ok = fsync(dir) == 0;
  close(dir);
  if (!ok) return -1;
  sav = last;
  return 0;
}

static void snapshot_load(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/snapshot", args->dir);
  ship_reset();
  sav = 0;
  uint8_t bytes[12];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (read(fd, bytes, sizeof bytes) == (ssize_t)sizeof bytes) {
    last = get_be(bytes, 8);
    mug = (uint32_t)get_be(bytes + 8, 4);
    sav = last;
  }
  close(fd);
}

/* ---- gifts: effects waiting for _mars_flush ---- */

typedef struct {
  uint64_t eve;
  int push;            /* a mesa %push (to the king), else an Ames %send */
  uint32_t ip;
  uint16_t port;
  uint8_t *payload;
  size_t len;
} gift;

static gift *gifts;
static size_t n_gifts, cap_gifts;
static uint64_t com; /* the commit mark: committed in the replicated log */
static int leading;
/* The term being led (its epoch): the king tags each poke with the term
 * it was heard in, and a poke from an earlier term is not planned (the
 * agent hands its packet to whoever leads next). */
static uint64_t term;

static void gift_add(uint64_t eve, int push, uint32_t ip, uint16_t port, const uint8_t *p,
                     size_t len) {
  gifts = vere_room(gifts, n_gifts, &cap_gifts, sizeof *gifts, 64);
  gift *g = &gifts[n_gifts++];
  g->eve = eve;
  g->push = push;
  g->ip = ip;
  g->port = port;
  g->payload = malloc(len);
  if (!g->payload) abort();
  memcpy(g->payload, p, len);
  g->len = len;
}

static void gifts_clear(void) {
  for (size_t i = 0; i < n_gifts; i++) free(gifts[i].payload);
  n_gifts = 0;
}

static void lane_v4(seguro_lane *l, uint32_t ip, uint16_t port) {
  memset(l, 0, sizeof *l);
  l->family = 4;
  l->port = port;
  put_be32(l->addr, ip);
}

/* An ABI call the runtime survives: a term may end between a notice and
 * the call (the REWIND notice follows); only a stopped agent is fatal. */
static int soft(seguro_error e, const char *what) {
  if (e == SEGURO_OK) return 0;
  SAY("%s: %d: %s", what, (int)e, seguro_replica_last_error());
  return e == SEGURO_ERR_STOPPED || e == SEGURO_ERR_PANIC ? -1 : 0;
}

/* _mars_flush: release gifts whose event is locally durable and committed;
 * a %send goes to the agent, a %push to the king (which retransmits it). */
static int mars_flush(void) {
  uint64_t mark = disk.dun < com ? disk.dun : com;
  size_t done = 0;
  for (; done < n_gifts && gifts[done].eve <= mark; done++) {
    gift *g = &gifts[done];
    if (g->push) {
      size_t m = noun_mark();
      noun *lanes = n_cell(n_cell(n_u64(g->ip), n_u64(g->port)), n_u64(0));
      /* [%push eve lanes [blob len]]: an atom loses trailing zero bytes */
      newt_send(&king, n_tuple(4, n_cord("push"), n_u64(g->eve), lanes,
                               n_cell(n_bytes(g->payload, g->len), n_u64(g->len))));
      noun_release(m);
    } else {
      seguro_lane lane;
      lane_v4(&lane, g->ip, g->port);
      if (verbose) SAY("effect of event %" PRIu64 " released", g->eve);
      if (soft(seguro_replica_send(h, g->eve, &lane, g->payload, g->len), "send")) return -1;
    }
    free(g->payload);
  }
  if (done) {
    memmove(gifts, gifts + done, (n_gifts - done) * sizeof *gifts);
    n_gifts -= done;
  }
  /* u3m_save when due, and only of a committed, locally durable state */
  if (last <= com && last <= disk.dun && last >= sav + args->snapshot_every && last > sav) {
    if (snapshot_save() == 0) {
      SAY("snapshot at event %" PRIu64, last);
      if (soft(seguro_replica_checkpointed(h, last), "checkpointed")) return -1;
    } else {
      SAY("snapshot failed: %s", strerror(errno));
    }
  }
  return 0;
}

/* ---- the ship's effects (what Arvo would give for this event) ---- */

static size_t answer_content(uint8_t out[12], uint64_t num) {
  put_be64(out, num);
  put_be32(out + 8, mug);
  return 12;
}

/* Effects of event `num` (computed from the state after it). */
static void effects(uint64_t num, const noun *ovum) {
  noun *wire = n_head(ovum), *card = n_tail(ovum);
  noun *tag = n_head(card), *rest = n_tail(card);
  noun *lane = n_head(rest), *blob = n_tail(rest);
  if (!wire || !card || !rest || !n_is_atom(blob)) return;
  uint8_t *p = blob->u.atom.bytes;
  size_t len = blob->u.atom.len;
  uint8_t content[12], out[128];
  if (n_is_cord(n_head(wire), "ames") && n_is_cord(tag, "hear")) {
    uint64_t chub, flag;
    if (n_get_u64(n_head(lane), &flag) || flag != 1 || n_get_u64(n_tail(lane), &chub)) return;
    ames_pact a;
    if (ames_sift(p, len, &a) || a.kind != PACT_AMES || memcmp(a.receiver, args->ship, 16)) return;
    size_t n = ames_etch(out, a.receiver, a.sender, content, answer_content(content, num));
    gift_add(num, 0, (uint32_t)chub, (uint16_t)(chub >> 32), out, n);
  } else if (n_is_cord(n_head(wire), "mesa") && n_is_cord(tag, "heer")) {
    uint64_t ip, port;
    if (!n_is_cord(n_head(lane), "if") || n_get_u64(n_head(n_tail(lane)), &ip) ||
        n_get_u64(n_tail(n_tail(lane)), &port))
      return;
    /* A mesa poke to us is answered from its receiver to the ship named
     * in its payload; a classic Ames packet carried in a %heer (as the
     * Rust ship answers it) from its receiver to its sender. */
    mesa_pact m;
    ames_pact a;
    size_t n = 0;
    if (mesa_sift(p, len, &m) == 0 && m.kind == MESA_POKE && !memcmp(m.her, args->ship, 16))
      n = ames_etch(out, m.her, m.sender, content, answer_content(content, num));
    else if (ames_sift(p, len, &a) == 0 && a.kind == PACT_AMES && !memcmp(a.receiver, args->ship, 16))
      n = ames_etch(out, a.receiver, a.sender, content, answer_content(content, num));
    if (n) gift_add(num, 1, (uint32_t)ip, (uint16_t)port, out, n);
  }
}

/* ---- replay ---- */

static struct {
  uint64_t num[VERE_LIFE];
  uint8_t *bytes[VERE_LIFE];
  size_t len[VERE_LIFE];
  int n;
} boot;

/* u3v_boot: the boot events collected, applied as one batch; each is
 * answered with mug 0 (the leader recorded none). */
static int boot_apply(void) {
  for (int i = 0; i < boot.n; i++) {
    ship_chain(boot.num[i], boot.bytes[i], boot.len[i]);
    disk_plan(boot.num[i], mug, boot.bytes[i], boot.len[i]);
  }
  if (boot.n) SAY("booted: events %" PRIu64 "..%" PRIu64 " as one batch", boot.num[0], last);
  int failed = 0;
  for (int i = 0; i < boot.n; i++) {
    if (boot.num[i] > com) com = boot.num[i];
    if (!failed && seguro_replica_applied(h, boot.num[i], 0) != SEGURO_OK) {
      SAY("applied %" PRIu64 ": %s", boot.num[i], seguro_replica_last_error());
      failed = 1;
    }
    free(boot.bytes[i]);
  }
  boot.n = 0;
  return failed ? -1 : 0;
}

/* _mars_poke_play: one committed event from the replicated log. */
static int replay(const seguro_notice *n) {
  uint64_t expect = last + 1 + (uint64_t)boot.n;
  if (n->num != expect) {
    SAY("replay of event %" PRIu64 " after %" PRIu64, n->num, expect - 1);
    return -1;
  }
  if (n->mug == 0) {
    if (boot.n == VERE_LIFE) {
      SAY("event %" PRIu64 " has mug 0 but the boot sequence is %d events", n->num, VERE_LIFE);
      return -1;
    }
    boot.num[boot.n] = n->num;
    boot.bytes[boot.n] = malloc(n->len ? n->len : 1);
    if (!boot.bytes[boot.n]) abort();
    if (n->len) memcpy(boot.bytes[boot.n], n->data, n->len);
    boot.len[boot.n] = n->len;
    boot.n++;
    return boot.n == VERE_LIFE ? boot_apply() : 0;
  }
  if (boot.n && boot_apply()) return -1;
  ship_chain(n->num, n->data, n->len);
  disk_plan(n->num, mug, n->data, n->len);
  if (n->num > com) com = n->num;
  if (seguro_replica_applied(h, n->num, mug) != SEGURO_OK) {
    SAY("applied %" PRIu64 ": %s", n->num, seguro_replica_last_error());
    return -1;
  }
  return 0;
}

/* ---- leading ---- */

static uint64_t now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  uint64_t now = (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
  clock_us = now > clock_us ? now : clock_us + 1;
  return clock_us;
}

/* u3_mars_boot / u3v_boot for a new ship: events 1..LIFE, `[%boot i]`,
 * planned with mug 0 and applied as one batch. */
static int boot_new_ship(void) {
  uint8_t *events[VERE_LIFE];
  size_t lens[VERE_LIFE];
  for (int i = 0; i < VERE_LIFE; i++) {
    size_t m = noun_mark();
    events[i] = n_jam(n_cell(n_cord("boot"), n_u64((uint64_t)i + 1)), &lens[i]);
    noun_release(m);
  }
  seguro_error e = seguro_replica_plan_boot(h, (const uint8_t *const *)events, lens, VERE_LIFE);
  if (e == SEGURO_OK) {
    for (int i = 0; i < VERE_LIFE; i++) {
      ship_chain((uint64_t)i + 1, events[i], lens[i]);
      disk_plan((uint64_t)i + 1, mug, events[i], lens[i]);
    }
    SAY("new ship: boot events 1..%d planned with mug 0", VERE_LIFE);
  }
  for (int i = 0; i < VERE_LIFE; i++) free(events[i]);
  return soft(e, "plan_boot");
}

/* _mars_work %poke: stamp `now`, compute, plan (u3_disk_plan and the
 * agent's plan), keep the effects for _mars_flush. */
static int poke(const noun *msg) {
  noun *body = n_tail(n_tail(msg));
  noun *has = n_head(body), *pid = n_head(n_tail(body)), *ovum = n_tail(n_tail(body));
  uint64_t heard_in;
  if (!leading || !ovum || n_get_u64(n_head(n_tail(msg)), &heard_in) || heard_in != term) return 0;
  if (args->work_ms) {
    struct timespec t = {(time_t)(args->work_ms / 1000), (long)(args->work_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
  }
  uint8_t id[16];
  uint64_t has_id = 0;
  n_get_u64(has, &has_id);
  if (has_id && n_get_bytes(pid, id, 16)) return 0;
  size_t len;
  uint8_t *event = n_jam(n_cell(n_u64(now_us()), (noun *)ovum), &len);
  uint64_t num = last + 1;
  ship_chain(num, event, len);
  disk_plan(num, mug, event, len);
  seguro_error e = seguro_replica_plan(h, num, mug, event, len, has_id ? id : NULL);
  free(event);
  if (verbose) SAY("planned event %" PRIu64 " (%d)", num, (int)e);
  if (e == SEGURO_OK) effects(num, ovum);
  return soft(e, "plan");
}

/* ---- rewind ---- */

/* REWIND: events after `n.num` may never commit. Cut the local log after
 * it (u3_disk_trim), reload the snapshot, replay the local log up to
 * `n.num`, and tell the agent where the state is. */
static int rewind_to(uint64_t committed) {
  leading = 0;
  gifts_clear();
  for (int i = 0; i < boot.n; i++) free(boot.bytes[i]);
  boot.n = 0;
  size_t m = noun_mark();
  newt_send(&king, n_cell(n_cord("unlead"), n_u64(0)));
  noun_release(m);
  uint64_t held = disk.sen;
  if (disk_trim(committed)) {
    SAY("cannot trim the local log: %s", strerror(errno));
    return -1;
  }
  snapshot_load();
  if (sav > committed) {
    SAY("snapshot at %" PRIu64 " is past the committed event %" PRIu64, sav, committed);
    return -1;
  }
  while (last < disk.sen) {
    uint32_t logged;
    size_t len;
    uint8_t *e = disk_read(last + 1, &logged, &len);
    if (!e) break;
    ship_chain(last + 1, e, len);
    free(e);
    if (logged != mug) {
      SAY("local log: event %" PRIu64 " gives mug %08x, logged %08x", last, mug, logged);
      return -1;
    }
  }
  /* whatever the log could not give back is replayed by the agent */
  if (disk_trim(last)) return -1;
  com = committed;
  SAY("rewound to event %" PRIu64 " (snapshot %" PRIu64 ", local log held %" PRIu64
      ", committed %" PRIu64 ")",
      last, sav, held, committed);
  return soft(seguro_replica_restored(h, last), "restored") ? -1 : 0;
}

/* ---- the agent's notices ---- */

static int notice(const seguro_notice *n) {
  if (n->kind != SEGURO_NOTICE_REPLAY && boot.n && boot_apply()) return -1;
  switch (n->kind) {
  case SEGURO_NOTICE_REPLAY:
    return replay(n);
  case SEGURO_NOTICE_LEAD: {
    if (n->num != last + 1) {
      SAY("told to lead from %" PRIu64 " at %" PRIu64, n->num, last);
      return -1;
    }
    SAY("leading term %" PRIu64 " from event %" PRIu64, n->epoch, n->num);
    leading = 1;
    if (n->num == 1 && boot_new_ship()) return -1;
    size_t m = noun_mark();
    term = n->epoch;
    newt_send(&king, n_tuple(3, n_cord("lead"), n_u64(last + 1), n_u64(term)));
    noun_release(m);
    return 0;
  }
  case SEGURO_NOTICE_PACKET: {
    if (verbose) SAY("packet of %zu bytes%s", n->len, leading ? "" : " (not leading)");
    if (!leading) return 0;
    size_t m = noun_mark();
    noun *addr = n->lane.family == 4 ? n_u64(get_be(n->lane.addr, 4)) : n_bytes(n->lane.addr, 16);
    noun *msg = n_tuple(6, n_cord("hear"), n_bytes(n->packet_id, SEGURO_PACKET_ID_LEN),
                        n_u64(n->lane.family), addr, n_u64(n->lane.port),
                        n_cell(n_bytes(n->data, n->len), n_u64(n->len)));
    newt_send(&king, msg);
    noun_release(m);
    return 0;
  }
  case SEGURO_NOTICE_COMMITTED:
    if (verbose) SAY("committed %" PRIu64, n->num);
    if (n->num > com) com = n->num;
    return 0;
  case SEGURO_NOTICE_REWIND:
    return rewind_to(n->num);
  case SEGURO_NOTICE_PURGED:
    SAY("the log was purged before %" PRIu64 "; this runtime cannot fetch a peer's snapshot",
        n->num);
    return -1;
  }
  return 0;
}

/* ---- the king's requests ---- */

static int lane_of(const noun *l, seguro_lane *out) {
  uint64_t ip, port;
  if (n_get_u64(n_head(l), &ip) || n_get_u64(n_tail(l), &port)) return -1;
  lane_v4(out, (uint32_t)ip, (uint16_t)port);
  return 0;
}

/* A payload sent as [atom length]: atoms drop trailing zero bytes. */
static uint8_t *payload_of(const noun *p, size_t *len) {
  uint64_t n;
  if (n_get_u64(n_tail(p), &n) || n > 65536) return NULL;
  uint8_t *out = calloc(n ? n : 1, 1);
  if (!out) abort();
  if (n_get_bytes(n_head(p), out, n)) {
    free(out);
    return NULL;
  }
  *len = n;
  return out;
}

static int from_king(const noun *msg) {
  noun *tag = n_head(msg), *body = n_tail(msg);
  int r = 0;
  if (n_is_cord(tag, "poke")) {
    r = poke(msg);
    size_t m = noun_mark();
    newt_send(&king, n_cell(n_cord("done"), n_u64(0)));
    noun_release(m);
  } else if (n_is_cord(tag, "peek")) {
    /* a scry of the current state, committed or not: the answer's send
     * names `last`, and the gatekeeper holds it until `last` commits */
    size_t m = noun_mark();
    newt_send(&king, n_tuple(4, n_cord("peek"), body, n_u64(last), n_u64(mug)));
    noun_release(m);
  } else if (n_is_cord(tag, "drop")) {
    uint8_t id[16];
    if (n_get_bytes(body, id, 16) == 0) r = soft(seguro_replica_dropped(h, id), "dropped");
  } else {
    /* [%send num lane payload] [%push num lanes payload] [%stun lane payload] [%fwd ...] */
    int stateless = n_is_cord(tag, "stun") || n_is_cord(tag, "fwd");
    uint64_t num = 0;
    if (!stateless && n_get_u64(n_head(body), &num)) return 0;
    noun *rest = stateless ? body : n_tail(body);
    size_t len;
    uint8_t *p = payload_of(n_tail(rest), &len);
    if (!p) return 0;
    seguro_lane lanes[VERE_PUSH_LANES];
    size_t n_lanes = 0;
    if (n_is_cord(tag, "push")) {
      for (noun *l = n_head(rest); n_head(l) && n_lanes < VERE_PUSH_LANES; l = n_tail(l))
        if (lane_of(n_head(l), &lanes[n_lanes]) == 0) n_lanes++;
      r = soft(seguro_replica_push(h, num, lanes, n_lanes, p, len), "push");
    } else if (lane_of(n_head(rest), &lanes[0]) == 0) {
      if (n_is_cord(tag, "send"))
        r = soft(seguro_replica_send(h, num, &lanes[0], p, len), "send");
      else
        r = soft(seguro_replica_send_stateless(
                     h, n_is_cord(tag, "stun") ? SEGURO_STATELESS_STUN : SEGURO_STATELESS_FORWARD,
                     &lanes[0], p, len),
                 n_is_cord(tag, "stun") ? "send_stateless stun" : "send_stateless forward");
    }
    free(p);
  }
  return r;
}

/* ---- the loop ---- */

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int mars_main(const vere_args *a, int king_fd) {
  args = a;
  /* The king's death is ours (vere: the serf exits when its pipe closes). */
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  fcntl(king_fd, F_SETFL, fcntl(king_fd, F_GETFL) | O_NONBLOCK);
  newt_init(&king, king_fd);

  snapshot_load();
  if (disk_open(sav) != 0) {
    SAY("cannot open the local log in %s: %s", a->dir, strerror(errno));
    return 1;
  }
  seguro_error err;
  h = seguro_replica_start(a->config, a->replica_id, last, &err);
  if (!h) {
    SAY("cannot start the agent (%d): %s", (int)err, seguro_replica_last_error());
    return 1;
  }
  SAY("started at event %" PRIu64 " (snapshot), local log to %" PRIu64, last, disk.sen);
  int code = 1;
  if (soft(seguro_replica_checkpointed(h, last), "checkpointed")) goto out;
  com = last;

  struct pollfd fds[2] = {{.fd = seguro_replica_fd(h), .events = POLLIN},
                          {.fd = king_fd, .events = POLLIN}};
  while (!stopping) {
    if (poll(fds, 2, 100) < 0 && errno != EINTR) goto out;
    for (;;) {
      seguro_notice n;
      seguro_error got = seguro_replica_next_notice(h, &n);
      if (got == SEGURO_EMPTY) break;
      if (got != SEGURO_OK) {
        SAY("next_notice: %d: %s", (int)got, seguro_replica_last_error());
        goto out;
      }
      if (notice(&n)) goto out;
    }
    if (newt_fill(&king) != 0) goto out;
    for (;;) {
      size_t m = noun_mark();
      int bad;
      noun *msg = newt_next(&king, &bad);
      if (bad) {
        SAY("a bad message from the king");
        goto out;
      }
      if (!msg) {
        noun_release(m);
        break;
      }
      int r = from_king(msg);
      noun_release(m);
      if (r) goto out;
    }
    if (king.eof) {
      SAY("the king is gone");
      break;
    }
    if (disk_commit() != 0) {
      SAY("fdatasync of the local log: %s", strerror(errno));
      goto out;
    }
    if (mars_flush()) goto out;
  }
  code = 0;
out:
  seguro_replica_stop(h);
  SAY("stopped at event %" PRIu64, last);
  return code;
}
