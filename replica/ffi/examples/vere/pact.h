/* Packets on the ship's port, read and written as vere's io/ames.c,
 * io/mesa/pact.c and io/ames/stun.c do (the parts this runtime needs). */

#ifndef VERE_PACT_H
#define VERE_PACT_H

#include <stddef.h>
#include <stdint.h>

/* ---- classic Ames family (_ames_sift_head, _ames_sift_prel) ---- */

enum { PACT_AMES = 0, PACT_WAIL = 1, PACT_PURR = 2 }; /* content, fine request, fine response */

typedef struct {
  int kind;          /* PACT_* */
  int relayed;       /* an origin lane follows the header */
  uint8_t sender[16], receiver[16];
  size_t body;       /* offset of the body */
  /* PACT_WAIL: the requested fragment and path */
  uint32_t fragment;
  const uint8_t *path;
  size_t path_len;
} ames_pact;

/* 0 if `p` is a version-0 Ames-family packet whose checksum holds and whose
 * prelude is whole (and, for a fine request, whose body is well formed);
 * -1 otherwise. */
int ames_sift(const uint8_t *p, size_t len, ames_pact *out);

/* An Ames packet from `from` to `to` (narrowest ranks, ticks 0, not
 * relayed) carrying `content`. Returns its length (out needs 4+1+32+len). */
size_t ames_etch(uint8_t *out, const uint8_t from[16], const uint8_t to[16],
                 const uint8_t *content, size_t len);

/* A fine response (purr) from `from` to `to`: fragment 1 of `path`, one
 * fragment, a zero signature, `data`. Returns its length. */
size_t fine_etch_purr(uint8_t *out, const uint8_t from[16], const uint8_t to[16],
                      const uint8_t *path, size_t path_len, const uint8_t *data,
                      size_t data_len);

/* The relayed form of a packet (_ames_try_forward): the relayed bit set and
 * the origin lane (ip | port << 32, 6 bytes little-endian) inserted after
 * the header; packets already relayed are copied. Returns the length. */
size_t ames_relay(uint8_t *out, const uint8_t *p, size_t len, uint32_t ip, uint16_t port);

/* ---- mesa (mesa_is_new_pact, mesa_sift_head, _mesa_sift_name) ---- */

enum { MESA_RESERVED = 0, MESA_PAGE = 1, MESA_PEEK = 2, MESA_POKE = 3 };

#define MESA_PATH_MAX 1472 /* a path fits in a packet */

/* A name (u3_mesa_name): ship, rift, bloq, init or fragment, path. */
typedef struct {
  uint8_t her[16];
  uint32_t rift;
  uint8_t bloq;
  int init, auth;
  uint64_t fragment;
  uint8_t path[MESA_PATH_MAX];
  size_t path_len;
} mesa_name;

typedef struct {
  int kind;               /* MESA_* */
  uint8_t her[16];        /* the first name's ship: publisher (peek/page) or receiver (poke) */
  uint8_t sender[16];     /* poke: the payload name's ship */
  mesa_name name;         /* the first name (a peek's: what it asks for) */
} mesa_pact;

/* 1 if bytes 4..8 are the mesa cookie (len >= 8). */
int mesa_is_new_pact(const uint8_t *p, size_t len);
/* 0 if it is a whole version-1 mesa packet with a good checksum and names
 * that read; -1 otherwise. */
int mesa_sift(const uint8_t *p, size_t len, mesa_pact *out);

/* A page (mesa_etch_pact_to_buf of PACT_PAGE, no next hop) for `name` at
 * fragment 0: a single-fragment message `data` (at most 1024 bytes), its
 * authenticator a zero signature (this ship has no keys), as
 * _mesa_send_piece sends the one leaf of a message. Returns its length
 * (out needs 8 + 1+16+4+1+8+2+path + 1+8+64+2+data). */
size_t mesa_etch_page(uint8_t *out, const mesa_name *name, const uint8_t *data, size_t len);

/* ---- STUN (u3_stun_is_request, u3_stun_make_response) ---- */

int stun_is_request(const uint8_t *p, size_t len);
/* The 40-byte binding success response for `req` seen from ip:port. */
void stun_make_response(uint8_t out[40], const uint8_t *req, uint32_t ip, uint16_t port);

#endif
