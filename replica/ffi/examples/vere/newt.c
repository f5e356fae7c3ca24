/* newt framing: see newt.h. */

#include "newt.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void newt_init(newt *t, int fd) {
  memset(t, 0, sizeof *t);
  t->fd = fd;
}

static int write_all(int fd, const uint8_t *p, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return -1;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

int newt_send(newt *t, const noun *n) {
  size_t len;
  uint8_t *bytes = n_jam(n, &len);
  uint8_t *frame = malloc(5 + len);
  if (!frame) abort();
  frame[0] = 0x00;
  put_le(frame + 1, len, 4);
  memcpy(frame + 5, bytes, len);
  int r = write_all(t->fd, frame, 5 + len);
  free(frame);
  free(bytes);
  return r;
}

int newt_fill(newt *t) {
  for (;;) {
    if (t->cap - t->len < 65536) {
      size_t cap = t->cap ? 2 * t->cap : 131072;
      uint8_t *grown = realloc(t->buf, cap);
      if (!grown) abort();
      t->buf = grown;
      t->cap = cap;
    }
    ssize_t n = read(t->fd, t->buf + t->len, t->cap - t->len);
    if (n == 0) {
      t->eof = 1;
      return 0;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      return -1;
    }
    t->len += (size_t)n;
  }
}

noun *newt_next(newt *t, int *bad) {
  *bad = 0;
  if (t->len < 5) return NULL;
  if (t->buf[0] != 0x00) {
    *bad = 1;
    return NULL;
  }
  size_t len = (size_t)get_le(t->buf + 1, 4);
  if (t->len < 5 + len) return NULL;
  noun *n = n_cue(t->buf + 5, len);
  memmove(t->buf, t->buf + 5 + len, t->len - 5 - len);
  t->len -= 5 + len;
  if (!n) *bad = 1;
  return n;
}
