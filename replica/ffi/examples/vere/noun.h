/* Nouns, jam/cue and mugs for the vere-shaped runtime.
 *
 * Atoms are little-endian byte strings without trailing zero bytes (the
 * bytes vere's u3i_bytes/u3r_bytes see); cells are pairs. jam and cue are
 * vere's u3s_jam_xeno/u3s_cue_bytes (pkg/noun/serial.c): a bit stream, least
 * significant bit first; `0` then mat(a) for an atom, `1 0` then head and
 * tail for a cell, `1 1` then mat(position) for a back-reference to the
 * first noun jammed at that bit position. A repeated cell is always
 * back-referenced; a repeated atom only when the position takes fewer bits
 * than the atom itself.
 *
 * Nouns live in one arena per process: noun_mark() and noun_release() free
 * everything made since a mark (the loop releases after each message).
 */

#ifndef VERE_NOUN_H
#define VERE_NOUN_H

#include <stddef.h>
#include <stdint.h>

typedef struct noun noun;

struct noun {
  int is_cell;
  uint32_t hash; /* structural, for jam's back-reference table */
  union {
    struct {
      size_t len; /* bytes, no trailing zero byte; 0 for the atom 0 */
      uint8_t *bytes;
    } atom;
    struct {
      noun *head, *tail;
    } cell;
  } u;
};

/* ---- the arena ---- */
size_t noun_mark(void);
void noun_release(size_t mark);

/* ---- making nouns ---- */
noun *n_bytes(const uint8_t *bytes, size_t len); /* trailing zeros dropped */
noun *n_u64(uint64_t value);
noun *n_cord(const char *text); /* %ames = 0x73656d61 */
noun *n_cell(noun *head, noun *tail);
/* [a b c ...] right-nested: n_list(3, a, b, c) = [a [b c]]. */
noun *n_tuple(int count, ...);

/* ---- reading nouns ---- */
int n_is_atom(const noun *n);
/* The atom as a u64; -1 if it is a cell or wider than 8 bytes. */
int n_get_u64(const noun *n, uint64_t *out);
/* 1 if `n` is the atom whose bytes are `text`. */
int n_is_cord(const noun *n, const char *text);
/* Structural equality. */
int n_equal(const noun *a, const noun *b);
/* Copies an atom into `width` bytes, zero-padded; -1 if it does not fit. */
int n_get_bytes(const noun *n, uint8_t *out, size_t width);
noun *n_head(const noun *n); /* NULL for an atom */
noun *n_tail(const noun *n);

/* ---- jam and cue ---- */
/* jam: the bytes of the atom jam(n) (no trailing zero byte), malloc'd. */
uint8_t *n_jam(const noun *n, size_t *len);
/* cue: NULL if the bytes are not a jam (a bad back-reference, an atom
 * running past the end, nesting deeper than 100000). */
noun *n_cue(const uint8_t *bytes, size_t len);

/* ---- mugs ---- */
/* u3r_mug_bytes: MurmurHash3_x86_32 from seed 0xcafebabe, folded to 31
 * bits, never 0. */
uint32_t mug_bytes(const uint8_t *data, size_t len);

/* ---- byte order ---- */
void put_be64(uint8_t *p, uint64_t v);
void put_be32(uint8_t *p, uint32_t v);
uint64_t get_be(const uint8_t *p, int n);
void put_le(uint8_t *p, uint64_t v, int n);
uint64_t get_le(const uint8_t *p, int n);

#endif
