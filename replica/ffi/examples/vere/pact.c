/* Packet formats: see pact.h. */

#include "pact.h"

#include <string.h>

#include "noun.h"

#define MESA_COOKIE 0x67e00200u
#define MESA_MAX_LEN 1472
#define FINE_PATH_MAX 384

/* ---- classic Ames ---- */

static int rank_of(const uint8_t ship[16]) {
  int bytes = 16;
  while (bytes > 0 && ship[bytes - 1] == 0) bytes--;
  return bytes <= 2 ? 0 : bytes <= 4 ? 1 : bytes <= 8 ? 2 : 3;
}

int ames_sift(const uint8_t *p, size_t len, ames_pact *out) {
  memset(out, 0, sizeof *out);
  if (len < 4) return -1;
  uint32_t word = (uint32_t)get_le(p, 4);
  if (((word >> 4) & 7) != 0) return -1; /* version */
  out->kind = ((word >> 3) & 1) == 0 ? PACT_AMES : ((word >> 2) & 1) == 0 ? PACT_WAIL : PACT_PURR;
  size_t sender_width = (size_t)2 << ((word >> 7) & 3);
  size_t receiver_width = (size_t)2 << ((word >> 9) & 3);
  uint32_t checksum = (word >> 11) & 0xfffff;
  out->relayed = (word >> 31) == 0;
  size_t origin = out->relayed ? 6 : 0;
  if (len < 4 + origin) return -1;
  if ((mug_bytes(p + 4 + origin, len - 4 - origin) & 0xfffff) != checksum) return -1;
  size_t prelude = 4 + origin + 1;
  if (len < prelude + sender_width + receiver_width) return -1;
  memcpy(out->sender, p + prelude, sender_width);
  memcpy(out->receiver, p + prelude + sender_width, receiver_width);
  out->body = prelude + sender_width + receiver_width;
  if (out->kind == PACT_WAIL) {
    /* _fine_sift_wail: tag 0, fragment (4), path length (2), path. */
    const uint8_t *b = p + out->body;
    size_t rest = len - out->body;
    if (rest < 7 || b[0] != 0) return -1;
    out->fragment = (uint32_t)get_le(b + 1, 4);
    out->path_len = (size_t)get_le(b + 5, 2);
    if (out->path_len == 0 || out->path_len > FINE_PATH_MAX || 7 + out->path_len != rest) return -1;
    out->path = b + 7;
    if (out->path[0] != '/') return -1;
    for (size_t i = 0; i < out->path_len; i++)
      if (out->path[i] < ' ' || out->path[i] > '~') return -1;
  }
  return 0;
}

/* Header word and prelude for a packet of `kind`; the checksum is filled
 * once the body is written. */
static size_t etch_start(uint8_t *out, const uint8_t from[16], const uint8_t to[16]) {
  int from_rank = rank_of(from), to_rank = rank_of(to);
  size_t at = 4;
  out[at++] = 0; /* life ticks */
  memcpy(out + at, from, (size_t)2 << from_rank);
  at += (size_t)2 << from_rank;
  memcpy(out + at, to, (size_t)2 << to_rank);
  at += (size_t)2 << to_rank;
  return at;
}

static void etch_head(uint8_t *out, size_t len, int kind, const uint8_t from[16],
                      const uint8_t to[16]) {
  uint32_t not_ames = kind == PACT_AMES ? 0 : 1, not_request = kind == PACT_PURR ? 1 : 0;
  uint32_t sum = mug_bytes(out + 4, len - 4) & 0xfffff;
  uint32_t head = not_request << 2 | not_ames << 3 | (uint32_t)rank_of(from) << 7 |
                  (uint32_t)rank_of(to) << 9 | sum << 11 | 1u << 31;
  put_le(out, head, 4);
}

size_t ames_etch(uint8_t *out, const uint8_t from[16], const uint8_t to[16],
                 const uint8_t *content, size_t len) {
  size_t at = etch_start(out, from, to);
  memcpy(out + at, content, len);
  at += len;
  etch_head(out, at, PACT_AMES, from, to);
  return at;
}

size_t fine_etch_purr(uint8_t *out, const uint8_t from[16], const uint8_t to[16],
                      const uint8_t *path, size_t path_len, const uint8_t *data,
                      size_t data_len) {
  size_t at = etch_start(out, from, to);
  put_le(out + at, 1, 4); /* fragment */
  put_le(out + at + 4, path_len, 2);
  memcpy(out + at + 6, path, path_len);
  at += 6 + path_len;
  memset(out + at, 0, 64); /* signature: this ship has no keys */
  at += 64;
  put_le(out + at, 1, 4); /* one fragment */
  at += 4;
  memcpy(out + at, data, data_len);
  at += data_len;
  etch_head(out, at, PACT_PURR, from, to);
  return at;
}

size_t ames_relay(uint8_t *out, const uint8_t *p, size_t len, uint32_t ip, uint16_t port) {
  uint32_t word = (uint32_t)get_le(p, 4);
  if ((word >> 31) == 0) {
    memcpy(out, p, len);
    return len;
  }
  /* The checksum covers what follows the origin, so only the flag moves. */
  put_le(out, word & 0x7fffffffu, 4);
  put_le(out + 4, (uint64_t)ip | (uint64_t)port << 32, 6);
  memcpy(out + 10, p + 4, len - 4);
  return len + 6;
}

/* ---- mesa ---- */

int mesa_is_new_pact(const uint8_t *p, size_t len) {
  return len >= 8 && get_le(p + 4, 4) == MESA_COOKIE;
}

typedef struct {
  const uint8_t *p;
  size_t len, at;
} sifter;

static int sift_take(sifter *s, size_t n, const uint8_t **out) {
  if (s->len - s->at < n) return -1;
  *out = s->p + s->at;
  s->at += n;
  return 0;
}

/* _mesa_sift_name: meta byte (rank 2 bits, rift width 2, init 1, auth 1,
 * fragment width 2, least significant first), ship, rift, bloq, fragment
 * (unless init), path length (2), path. An init name with the auth or
 * fragment bits set is refused: vere asserts they are clear. */
static int sift_name(sifter *s, mesa_name *n) {
  const uint8_t *b;
  if (sift_take(s, 1, &b)) return -1;
  unsigned meta = b[0];
  size_t ship_len = (size_t)2 << (meta & 3);
  size_t rift_len = ((meta >> 2) & 3) + 1;
  n->init = (meta >> 4) & 1;
  n->auth = (meta >> 5) & 1;
  if (n->init && (n->auth || (meta >> 6) != 0)) return -1;
  size_t frag_len = n->init ? 0 : (size_t)1 << ((meta >> 6) & 3);
  memset(n->her, 0, 16);
  if (sift_take(s, ship_len, &b)) return -1;
  memcpy(n->her, b, ship_len);
  if (sift_take(s, rift_len, &b)) return -1;
  n->rift = (uint32_t)get_le(b, (int)rift_len);
  if (sift_take(s, 1, &b)) return -1;
  n->bloq = b[0];
  n->fragment = 0;
  if (frag_len) {
    if (sift_take(s, frag_len, &b)) return -1;
    n->fragment = get_le(b, (int)frag_len);
  }
  if (sift_take(s, 2, &b)) return -1;
  n->path_len = (size_t)get_le(b, 2);
  if (n->path_len > MESA_PATH_MAX || sift_take(s, n->path_len, &b)) return -1;
  memcpy(n->path, b, n->path_len);
  return 0;
}

int mesa_sift(const uint8_t *p, size_t len, mesa_pact *out) {
  memset(out, 0, sizeof *out);
  if (!mesa_is_new_pact(p, len) || len > MESA_MAX_LEN) return -1;
  uint32_t word = (uint32_t)get_le(p, 4);
  if (((word >> 4) & 7) != 1) return -1;
  out->kind = (int)((word >> 7) & 3);
  if ((mug_bytes(p + 8, len - 8) & 0xfffff) != (word >> 12)) return -1;
  sifter s = {.p = p + 8, .len = len - 8};
  switch (out->kind) {
  case MESA_PEEK:
  case MESA_PAGE:
    if (sift_name(&s, &out->name)) return -1;
    memcpy(out->her, out->name.her, 16);
    return 0;
  case MESA_POKE: {
    mesa_name payload;
    if (sift_name(&s, &out->name) || sift_name(&s, &payload)) return -1;
    memcpy(out->her, out->name.her, 16);
    memcpy(out->sender, payload.her, 16);
    return 0;
  }
  default:
    return -1;
  }
}

/* The width in bytes of `v` (u3r_met 3), at least 1. */
static size_t width_of(uint64_t v) {
  size_t w = 1;
  while (w < 8 && (v >> (8 * w)) != 0) w++;
  return w;
}

/* _mesa_make_chub_tag: 0..3 for 1, 2, 4, 8 bytes. */
static unsigned chub_tag(uint64_t v) {
  return v <= 0xff ? 0 : v <= 0xffff ? 1 : v <= 0xffffffffu ? 2 : 3;
}

/* _mesa_etch_name: the meta byte recomputed from the fields. */
static size_t etch_name(uint8_t *out, const mesa_name *n) {
  int rank = rank_of(n->her);
  size_t rift_len = width_of(n->rift);
  unsigned gaf = n->init ? 0 : chub_tag(n->fragment);
  size_t at = 0;
  out[at++] = (uint8_t)((unsigned)rank | (unsigned)(rift_len - 1) << 2 | (unsigned)n->init << 4 |
                        (unsigned)(!n->init && n->auth) << 5 | gaf << 6);
  memcpy(out + at, n->her, (size_t)2 << rank);
  at += (size_t)2 << rank;
  put_le(out + at, n->rift, (int)rift_len);
  at += rift_len;
  out[at++] = n->bloq;
  if (!n->init) {
    put_le(out + at, n->fragment, 1 << gaf);
    at += (size_t)1 << gaf;
  }
  put_le(out + at, n->path_len, 2);
  at += 2;
  memcpy(out + at, n->path, n->path_len);
  return at + n->path_len;
}

size_t mesa_etch_page(uint8_t *out, const mesa_name *name, const uint8_t *data, size_t len) {
  mesa_name n = *name;
  n.fragment = 0;
  size_t at = 8;
  at += etch_name(out + at, &n);
  /* _mesa_etch_data: total's width tag, auth bits (signature: both set),
   * two unused, the length's width (met 3, at most 2 here). */
  size_t nel = len == 0 ? 0 : width_of(len);
  unsigned bot = chub_tag(len);
  out[at++] = (uint8_t)(bot | 1u << 2 | 1u << 3 | (unsigned)nel << 6);
  put_le(out + at, len, 1 << bot);
  at += (size_t)1 << bot;
  memset(out + at, 0, 64); /* signature: this ship has no keys */
  at += 64;
  put_le(out + at, len, (int)nel);
  at += nel;
  memcpy(out + at, data, len);
  at += len;
  /* _mesa_etch_head: next hop none, protocol 1, type page, no hops, the
   * checksum of what follows the cookie. */
  uint32_t sum = mug_bytes(out + 8, at - 8) & 0xfffff;
  put_le(out, 1u << 4 | (uint32_t)MESA_PAGE << 7 | sum << 12, 4);
  put_le(out + 4, MESA_COOKIE, 4);
  return at;
}

/* ---- STUN ---- */

static uint32_t crc32(const uint8_t *p, size_t len) {
  uint32_t crc = 0xffffffffu;
  for (size_t i = 0; i < len; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1)));
  }
  return ~crc;
}

int stun_is_request(const uint8_t *p, size_t len) {
  static const uint8_t fingerprint[4] = {0x80, 0x28, 0x00, 0x04};
  if (len < 28 || p[0] != 0 || p[1] != 1 || get_be(p + 4, 4) != 0x2112a442u) return 0;
  for (size_t i = 20; i + 4 <= len; i++) {
    if (memcmp(p + i, fingerprint, 4) != 0) continue;
    /* the first FINGERPRINT must be the last attribute and hold the CRC */
    return i + 8 == len && get_be(p + i + 4, 4) == (crc32(p, i) ^ 0x5354554eu);
  }
  return 0;
}

void stun_make_response(uint8_t out[40], const uint8_t *req, uint32_t ip, uint16_t port) {
  memcpy(out, req, 20);
  out[0] = 0x01;
  out[1] = 0x01;
  out[2] = 0x00;
  out[3] = 0x14;
  memset(out + 20, 0, 20);
  out[21] = 0x20; /* XOR-MAPPED-ADDRESS */
  out[23] = 0x08;
  out[25] = 0x01; /* IPv4 */
  uint16_t xport = port ^ 0x2112;
  out[26] = (uint8_t)(xport >> 8);
  out[27] = (uint8_t)xport;
  put_be32(out + 28, ip ^ 0x2112a442u);
  out[32] = 0x80; /* FINGERPRINT */
  out[33] = 0x28;
  out[35] = 0x04;
  put_be32(out + 36, crc32(out, 32) ^ 0x5354554eu);
}
