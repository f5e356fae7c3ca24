/* newt: king <-> serf messages, framed as vere's pkg/vere/newt.c frames
 * them: a version byte 0x00, a 4-byte little-endian length, then that many
 * bytes, the jam of a noun. */

#ifndef VERE_NEWT_H
#define VERE_NEWT_H

#include <stddef.h>
#include <stdint.h>

#include "noun.h"

typedef struct {
  int fd;
  uint8_t *buf;
  size_t len, cap;
  int eof;
} newt;

void newt_init(newt *t, int fd);
/* Jams `n` and writes one frame (blocking until written). 0, or -1. */
int newt_send(newt *t, const noun *n);
/* Reads what the fd has (non-blocking fd); 0, or -1 on a read error. EOF
 * sets t->eof. */
int newt_fill(newt *t);
/* The next whole message, cued; NULL if none is buffered. Sets *bad on a
 * frame whose version byte is not 0 or whose bytes do not cue. */
noun *newt_next(newt *t, int *bad);

#endif
