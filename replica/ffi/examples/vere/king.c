/* The king (vere's king.c, pier.c and the I/O drivers io/ames.c,
 * io/mesa.c, io/behn.c): the ship's network side.
 *
 * The agent, in the serf, owns the socket: the serf passes each PACKET
 * notice up as [%hear ...], and the king decides as _mesa_hear and
 * _ames_hear do: mesa first, then STUN, then the Ames family (forward what
 * is not for us; fine requests are scries; Ames content becomes a %hear
 * event, a fine response a %hear event on wire [%fine ~]); a mesa peek
 * for our data is a scry answered with a page. What the king sends goes
 * back down to the serf, which calls the ABI: scry answers and pushes with an event number, STUN answers and
 * forwards as stateless packets. Packets that will never be an event are
 * reported dropped, so that followers do not keep them.
 *
 * Queues are vere's: the ames driver keeps at most QUEUE_MAX (30) %hear
 * events waiting, dropping the oldest (_ames_cap_queue); mesa refuses a
 * poke when POKE_QUEUE_MAX (30) wait and a peek when PEEK_QUEUE_MAX (40)
 * scries are pending. A %push is sent again every second, up to 9 times
 * (_mesa_resend_timer_cb), until a page from that lane answers it.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "newt.h"
#include "pact.h"
#include "vere.h"

#define SAY(...) say("king", __VA_ARGS__)

#define QUEUE_MAX 30      /* io/ames.c */
#define POKE_QUEUE_MAX 30 /* io/mesa.c */
#define PEEK_QUEUE_MAX 40 /* io/mesa.c */
#define RESEND_TRIES 9    /* io/mesa.c: res_u->ret_y = 9 */
#define RESEND_MS 1000    /* io/mesa.c: uv_timer_start(..., 1000, 0) */

static const vere_args *args;
static newt mars;
static int leading;
static uint64_t term; /* the term the serf leads, which pokes carry */

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* ---- the serf's side of the ABI ---- */

static noun *lane_noun(uint32_t ip, uint16_t port) { return n_cell(n_u64(ip), n_u64(port)); }
static noun *payload_noun(const uint8_t *p, size_t len) {
  return n_cell(n_bytes(p, len), n_u64(len));
}

static void to_mars(noun *msg) {
  if (newt_send(&mars, msg) != 0) SAY("cannot write to the serf: %s", strerror(errno));
}

/* The agent will never see this packet planned (vere never pokes it). */
static void dropped(const uint8_t pid[16]) {
  size_t m = noun_mark();
  to_mars(n_cell(n_cord("drop"), n_bytes(pid, 16)));
  noun_release(m);
}

static struct {
  uint64_t ipv6, strange, ames_capped, mesa_capped, peek_capped, forwarded, no_route, stun,
      fine, pages;
} stats;

/* ---- the event queue (u3_auto: ova waiting for the serf) ---- */

enum { Q_AMES, Q_FINE, Q_MESA, Q_WAKE }; /* Q_AMES, Q_FINE: the ames driver's */

typedef struct {
  int kind;
  uint8_t pid[16];
  uint32_t ip;
  uint16_t port;
  uint8_t *blob;
  size_t len;
} ovum;

static ovum *queue;
static size_t q_len, q_cap;
static int in_flight;

static size_t depth(int kind) {
  size_t d = 0;
  for (size_t i = 0; i < q_len; i++) d += queue[i].kind == kind;
  return d;
}

static void enqueue(int kind, const uint8_t *pid, uint32_t ip, uint16_t port, const uint8_t *blob,
                    size_t len) {
  queue = vere_room(queue, q_len, &q_cap, sizeof *queue, 64);
  ovum *o = &queue[q_len++];
  o->kind = kind;
  if (pid) memcpy(o->pid, pid, 16);
  o->ip = ip;
  o->port = port;
  o->blob = malloc(len ? len : 1);
  if (!o->blob) abort();
  if (len) memcpy(o->blob, blob, len);
  o->len = len;
}

static void dequeue(size_t i) {
  free(queue[i].blob);
  memmove(queue + i, queue + i + 1, (q_len - i - 1) * sizeof *queue);
  q_len--;
}

/* _ames_cap_queue: past QUEUE_MAX waiting %hear ova (Ames content and
 * fine responses, the ames driver's), drop the oldest. */
static void ames_cap_queue(void) {
  size_t i = 0;
  while (depth(Q_AMES) + depth(Q_FINE) > QUEUE_MAX && i < q_len) {
    if (queue[i].kind == Q_AMES || queue[i].kind == Q_FINE) {
      dropped(queue[i].pid);
      stats.ames_capped++;
      SAY("ames: packet dropped (%" PRIu64 " total)", stats.ames_capped);
      dequeue(i);
    } else {
      i++;
    }
  }
}

/* u3_auto_next → the serf: one poke at a time, as
 * [%poke term has pid ovum]. */
static void pump(void) {
  if (in_flight || q_len == 0 || !leading) return;
  ovum *o = &queue[0];
  size_t m = noun_mark();
  noun *ovo;
  if (o->kind == Q_AMES || o->kind == Q_FINE)
    ovo = n_cell(n_cell(n_cord(o->kind == Q_AMES ? "ames" : "fine"), n_u64(0)),
                 n_tuple(3, n_cord("hear"), n_cell(n_u64(1), n_u64(lane_chub(o->ip, o->port))),
                         n_bytes(o->blob, o->len)));
  else if (o->kind == Q_MESA)
    ovo = n_cell(n_cell(n_cord("mesa"), n_u64(0)),
                 n_tuple(3, n_cord("heer"), n_tuple(3, n_cord("if"), n_u64(o->ip), n_u64(o->port)),
                         n_bytes(o->blob, o->len)));
  else
    ovo = n_cell(n_cell(n_cord("behn"), n_u64(0)), n_cell(n_cord("wake"), n_u64(0)));
  int has = o->kind != Q_WAKE;
  to_mars(n_tuple(5, n_cord("poke"), n_u64(term), n_u64((uint64_t)has),
                  has ? n_bytes(o->pid, 16) : n_u64(0), ovo));
  noun_release(m);
  in_flight = 1;
  dequeue(0);
}

/* ---- scries (fine requests: _fine_hear_request; mesa peeks:
 * _mesa_hear_peek) ---- */

enum { PEEK_FINE, PEEK_MESA };

typedef struct {
  uint64_t id;
  int kind; /* PEEK_* */
  uint32_t ip;
  uint16_t port;
  /* PEEK_FINE: who asks, and the path */
  uint8_t requester[16];
  uint8_t path[384];
  size_t path_len;
  /* PEEK_MESA: the name asked for */
  mesa_name name;
} peek;

static peek peeks[PEEK_QUEUE_MAX];
static size_t n_peeks;
static uint64_t next_peek = 1;

/* A pending scry, or NULL past PEEK_QUEUE_MAX (the pier's scry depth,
 * which fine and mesa share). */
static peek *peek_new(const char *who, int kind, uint32_t ip, uint16_t port) {
  if (n_peeks >= PEEK_QUEUE_MAX) {
    stats.peek_capped++;
    SAY("%s: scry dropped (%" PRIu64 " total)", who, stats.peek_capped);
    return NULL;
  }
  peek *p = &peeks[n_peeks++];
  p->id = next_peek++;
  p->kind = kind;
  p->ip = ip;
  p->port = port;
  return p;
}

/* The serf is asked for its current state. */
static void peek_ask(const peek *p) {
  size_t m = noun_mark();
  to_mars(n_cell(n_cord("peek"), n_u64(p->id)));
  noun_release(m);
}

static void fine_hear_request(const ames_pact *a, uint32_t ip, uint16_t port) {
  peek *p = peek_new("fine", PEEK_FINE, ip, port);
  if (!p) return;
  memcpy(p->requester, a->sender, 16);
  memcpy(p->path, a->path, a->path_len);
  p->path_len = a->path_len;
  peek_ask(p);
}

/* _mesa_hear_peek for our own data: no page cache here (vere's jumbo
 * cache), since the answer is the state as of now; each peek is a scry.
 * A message here is one fragment, so only fragment 0 exists. */
static void mesa_hear_peek(const mesa_pact *m, uint32_t ip, uint16_t port) {
  if (!m->name.init && m->name.fragment != 0) {
    stats.strange++;
    SAY("mesa: peek for fragment %" PRIu64 " of a one-fragment page", m->name.fragment);
    return;
  }
  peek *p = peek_new("mesa", PEEK_MESA, ip, port);
  if (!p) return;
  p->name = m->name;
  peek_ask(p);
}

/* The serf's answer: its state (last, mug) as of now. The fine response
 * (_fine_hear_request's purr) or the mesa page (_mesa_page_scry_jumbo_cb,
 * _mesa_send_piece) carries it and leaves with event number `last`. */
static void peek_answer(uint64_t id, uint64_t last, uint32_t mug) {
  for (size_t i = 0; i < n_peeks; i++) {
    if (peeks[i].id != id) continue;
    peek *p = &peeks[i];
    uint8_t data[12], out[2048];
    put_be64(data, last);
    put_be32(data + 8, mug);
    size_t len;
    if (p->kind == PEEK_MESA) {
      len = mesa_etch_page(out, &p->name, data, 12);
      if (len > 1472) {
        /* a name too long for a page to hold it and the data (PACT_SIZE) */
        stats.strange++;
        peeks[i] = peeks[--n_peeks];
        return;
      }
      stats.pages++;
    } else {
      len = fine_etch_purr(out, args->ship, p->requester, p->path, p->path_len, data, 12);
      stats.fine++;
    }
    if (last > 0) {
      size_t m = noun_mark();
      to_mars(n_tuple(4, n_cord("send"), n_u64(last), lane_noun(p->ip, p->port),
                      payload_noun(out, len)));
      noun_release(m);
    }
    peeks[i] = peeks[--n_peeks];
    return;
  }
}

/* ---- mesa %push and its resend timer (_mesa_ef_send) ---- */

typedef struct {
  uint64_t num;
  uint32_t ip[VERE_PUSH_LANES];
  uint16_t port[VERE_PUSH_LANES];
  size_t n_lanes;
  uint8_t *payload;
  size_t len;
  int tries; /* resends left */
  uint64_t due;
} push;

static push pushes[256];
static size_t n_pushes;

static void push_send(const push *p) {
  size_t m = noun_mark();
  noun *lanes = n_u64(0);
  for (size_t i = p->n_lanes; i > 0; i--) lanes = n_cell(lane_noun(p->ip[i - 1], p->port[i - 1]), lanes);
  to_mars(n_tuple(4, n_cord("push"), n_u64(p->num), lanes, payload_noun(p->payload, p->len)));
  noun_release(m);
}

static void push_free(size_t i) {
  free(pushes[i].payload);
  pushes[i] = pushes[--n_pushes];
}

static void mesa_ef_send(const noun *msg) {
  noun *body = n_tail(msg);
  push p = {0};
  if (n_get_u64(n_head(body), &p.num)) return;
  noun *lanes = n_head(n_tail(body)), *pay = n_tail(n_tail(body));
  for (noun *l = lanes; n_head(l) && p.n_lanes < VERE_PUSH_LANES; l = n_tail(l)) {
    uint64_t ip, port;
    if (n_get_u64(n_head(n_head(l)), &ip) || n_get_u64(n_tail(n_head(l)), &port)) return;
    p.ip[p.n_lanes] = (uint32_t)ip;
    p.port[p.n_lanes++] = (uint16_t)port;
  }
  uint64_t len;
  if (!p.n_lanes || n_get_u64(n_tail(pay), &len) || len > 2048) return;
  p.payload = calloc(len ? len : 1, 1);
  if (!p.payload) abort();
  n_get_bytes(n_head(pay), p.payload, len);
  p.len = len;
  p.tries = RESEND_TRIES;
  p.due = now_ms() + RESEND_MS;
  push_send(&p);
  if (n_pushes == sizeof pushes / sizeof *pushes) push_free(0);
  pushes[n_pushes++] = p;
}

/* _mesa_resend_timer_cb: again under the same event number, 9 times. */
static void resend_due(uint64_t now) {
  for (size_t i = 0; i < n_pushes;) {
    push *p = &pushes[i];
    if (p->due > now) {
      i++;
      continue;
    }
    p->tries--;
    push_send(p);
    if (p->tries == 0) {
      push_free(i);
      continue;
    }
    p->due = now + RESEND_MS;
    i++;
  }
}

/* A page from a lane answers our request there: its resends stop (vere
 * deletes the PIT entry the timer checks). */
static void push_answered(uint32_t ip, uint16_t port) {
  for (size_t i = 0; i < n_pushes;) {
    int hit = 0;
    for (size_t k = 0; k < pushes[i].n_lanes; k++)
      hit |= pushes[i].ip[k] == ip && pushes[i].port[k] == port;
    if (hit) push_free(i);
    else i++;
  }
}

/* ---- forwarding (_ames_try_forward, _mesa_forward_request) ---- */

static const struct route *route_of(const uint8_t ship[16]) {
  for (int i = 0; i < args->n_routes; i++)
    if (memcmp(args->routes[i].ship, ship, 16) == 0) return &args->routes[i];
  return NULL;
}

static void forward(const uint8_t *to, const uint8_t *p, size_t len, int relay, uint32_t ip,
                    uint16_t port) {
  const struct route *r = route_of(to);
  if (!r) {
    /* vere scries its lane cache (or resolves a galaxy by DNS); a ship it
     * knows no lane for is dropped */
    stats.no_route++;
    SAY("forward: no lane for the receiver (%" PRIu64 " dropped)", stats.no_route);
    return;
  }
  uint8_t out[2048];
  size_t n = relay ? ames_relay(out, p, len, ip, port) : len;
  if (!relay) memcpy(out, p, len);
  stats.forwarded++;
  size_t m = noun_mark();
  to_mars(n_tuple(3, n_cord("fwd"), lane_noun(r->ip, r->port), payload_noun(out, n)));
  noun_release(m);
}

/* ---- hearing a packet (_mesa_hear, then _ames_hear) ---- */

static void hear(const noun *msg) {
  noun *b = n_tail(msg);
  uint8_t pid[16];
  uint64_t fam, ip = 0, port, len;
  noun *pay = n_tail(n_tail(n_tail(n_tail(b))));
  if (n_get_bytes(n_head(b), pid, 16) || n_get_u64(n_head(n_tail(b)), &fam) ||
      n_get_u64(n_head(n_tail(n_tail(n_tail(b)))), &port) || n_get_u64(n_tail(pay), &len) ||
      len > 65536)
    return;
  if (fam != 4) {
    /* an IPv6 peer: a %hear lane cannot say where it is */
    stats.ipv6++;
    dropped(pid);
    return;
  }
  n_get_u64(n_head(n_tail(n_tail(b))), &ip);
  uint8_t *p = calloc(len ? len : 1, 1);
  if (!p) abort();
  n_get_bytes(n_head(pay), p, len);

  if (mesa_is_new_pact(p, len)) {
    mesa_pact m;
    int keep = 0;
    if (mesa_sift(p, len, &m)) {
      stats.strange++;
    } else if (m.kind == MESA_PAGE) {
      push_answered((uint32_t)ip, (uint16_t)port);
    } else if (memcmp(m.her, args->ship, 16) != 0) {
      forward(m.her, p, len, 0, 0, 0);
    } else if (m.kind == MESA_POKE) {
      if (depth(Q_MESA) >= POKE_QUEUE_MAX) {
        stats.mesa_capped++;
        SAY("mesa: poke dropped (%" PRIu64 " total)", stats.mesa_capped);
      } else {
        enqueue(Q_MESA, pid, (uint32_t)ip, (uint16_t)port, p, len);
        keep = 1;
      }
    } else {
      mesa_hear_peek(&m, (uint32_t)ip, (uint16_t)port);
    }
    if (!keep) dropped(pid);
    free(p);
    return;
  }
  if (stun_is_request(p, len)) {
    uint8_t out[40];
    stun_make_response(out, p, (uint32_t)ip, (uint16_t)port);
    stats.stun++;
    size_t m = noun_mark();
    to_mars(n_tuple(3, n_cord("stun"), lane_noun((uint32_t)ip, (uint16_t)port),
                    payload_noun(out, 40)));
    noun_release(m);
    dropped(pid);
    free(p);
    return;
  }
  ames_pact a;
  if (ames_sift(p, len, &a)) {
    stats.strange++;
    dropped(pid);
  } else if (memcmp(a.receiver, args->ship, 16) != 0) {
    /* not for us: forward statelessly (never our own packets) */
    if (memcmp(a.sender, args->ship, 16) != 0) {
      int galaxy_sender = get_le(a.sender, 8) < 256 && get_le(a.sender + 8, 8) == 0;
      forward(a.receiver, p, len, !galaxy_sender, (uint32_t)ip, (uint16_t)port);
    }
    dropped(pid);
  } else if (a.kind == PACT_WAIL) {
    fine_hear_request(&a, (uint32_t)ip, (uint16_t)port);
    dropped(pid);
  } else if (a.kind == PACT_AMES) {
    enqueue(Q_AMES, pid, (uint32_t)ip, (uint16_t)port, p, len);
    ames_cap_queue();
  } else {
    /* _fine_hear_response: a fine response is heard by Arvo, on wire
     * [%fine ~], as the ames driver's event */
    enqueue(Q_FINE, pid, (uint32_t)ip, (uint16_t)port, p, len);
    ames_cap_queue();
  }
  free(p);
}

static void unlead(void) {
  leading = 0;
  while (q_len) dequeue(q_len - 1);
  while (n_pushes) push_free(n_pushes - 1);
  n_peeks = 0;
}

static void from_mars(const noun *msg) {
  noun *tag = n_head(msg);
  if (n_is_cord(tag, "hear")) {
    if (leading) hear(msg);
  } else if (n_is_cord(tag, "done")) {
    in_flight = 0;
  } else if (n_is_cord(tag, "lead")) {
    leading = 1;
    n_get_u64(n_tail(n_tail(msg)), &term);
    SAY("leading");
  } else if (n_is_cord(tag, "unlead")) {
    unlead();
    SAY("following");
  } else if (n_is_cord(tag, "peek")) {
    uint64_t id, last, mug;
    noun *b = n_tail(msg);
    if (n_get_u64(n_head(b), &id) == 0 && n_get_u64(n_head(n_tail(b)), &last) == 0 &&
        n_get_u64(n_tail(n_tail(b)), &mug) == 0)
      peek_answer(id, last, (uint32_t)mug);
  } else if (n_is_cord(tag, "push")) {
    if (leading) mesa_ef_send(msg);
  }
}

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int king_main(const vere_args *a, int mars_fd, int mars_pid) {
  args = a;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
  fcntl(mars_fd, F_SETFL, fcntl(mars_fd, F_GETFL) | O_NONBLOCK);
  newt_init(&mars, mars_fd);
  uint64_t wake_due = 0;
  int mars_gone = 0;
  while (!stopping) {
    uint64_t now = now_ms();
    int timeout = 100;
    for (size_t i = 0; i < n_pushes; i++)
      if (pushes[i].due <= now) timeout = 0;
      else if (pushes[i].due - now < (uint64_t)timeout) timeout = (int)(pushes[i].due - now);
    struct pollfd pfd = {.fd = mars_fd, .events = POLLIN};
    if (poll(&pfd, 1, timeout) < 0 && errno != EINTR) break;
    if (newt_fill(&mars) != 0) break;
    for (;;) {
      size_t m = noun_mark();
      int bad;
      noun *msg = newt_next(&mars, &bad);
      if (bad) {
        SAY("a bad message from the serf");
        stopping = 1;
      }
      if (!msg) {
        noun_release(m);
        break;
      }
      from_mars(msg);
      noun_release(m);
    }
    if (mars.eof) {
      mars_gone = 1;
      break;
    }
    now = now_ms();
    if (leading) {
      /* behn: the leader's timer becomes a %wake event */
      if (a->wake_ms && wake_due == 0) wake_due = now + a->wake_ms;
      if (a->wake_ms && now >= wake_due) {
        int queued = 0;
        for (size_t i = 0; i < q_len; i++) queued |= queue[i].kind == Q_WAKE;
        if (!queued) enqueue(Q_WAKE, NULL, 0, 0, NULL, 0);
        wake_due = now + a->wake_ms;
      }
      resend_due(now);
    } else {
      wake_due = 0;
    }
    pump();
  }
  SAY("stopping: %" PRIu64 " ames and %" PRIu64 " mesa packets dropped at the queue caps, %" PRIu64
      " scries dropped, %" PRIu64 " forwarded, %" PRIu64 " without a lane, %" PRIu64
      " STUN answers, %" PRIu64 " fine answers, %" PRIu64 " pages, %" PRIu64 " IPv6 and %" PRIu64
      " strange dropped",
      stats.ames_capped, stats.mesa_capped, stats.peek_capped, stats.forwarded, stats.no_route,
      stats.stun, stats.fine, stats.pages, stats.ipv6, stats.strange);
  int status = 0;
  if (!mars_gone) kill(mars_pid, SIGTERM);
  if (waitpid(mars_pid, &status, 0) < 0) return 1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
