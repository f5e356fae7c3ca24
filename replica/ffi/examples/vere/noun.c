/* Nouns, jam/cue and mugs: see noun.h. */

#include "noun.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- byte order ---- */

void put_be64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
void put_be32(uint8_t *p, uint32_t v) {
  for (int i = 3; i >= 0; i--, v >>= 8) p[i] = (uint8_t)v;
}
uint64_t get_be(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; i++) v = v << 8 | p[i];
  return v;
}
void put_le(uint8_t *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++, v >>= 8) p[i] = (uint8_t)v;
}
uint64_t get_le(const uint8_t *p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
  return v;
}

/* ---- u3r_mug_bytes ---- */

static uint32_t rotl32(uint32_t x, int r) { return (x << r) | (x >> (32 - r)); }

static uint32_t murmur3_32(const uint8_t *data, size_t len, uint32_t seed) {
  const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
  uint32_t h = seed;
  size_t blocks = len / 4;
  for (size_t i = 0; i < blocks; i++) {
    uint32_t k = (uint32_t)get_le(data + 4 * i, 4);
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

uint32_t mug_bytes(const uint8_t *data, size_t len) {
  uint32_t seed = 0xcafebabe;
  for (int i = 0; i < 8; i++, seed++) {
    uint32_t hash = murmur3_32(data, len, seed);
    uint32_t folded = (hash >> 31) ^ (hash & 0x7fffffff);
    if (folded != 0) return folded;
  }
  return 0x7fff;
}

/* ---- the arena: every noun is one malloc, released by mark ---- */

static void **arena;
static size_t arena_len, arena_cap;

size_t noun_mark(void) { return arena_len; }

void noun_release(size_t mark) {
  while (arena_len > mark) free(arena[--arena_len]);
}

static noun *alloc_noun(size_t extra) {
  if (arena_len == arena_cap) {
    size_t cap = arena_cap ? 2 * arena_cap : 1024;
    void **grown = realloc(arena, cap * sizeof *arena);
    if (!grown) abort();
    arena = grown;
    arena_cap = cap;
  }
  noun *n = calloc(1, sizeof *n + extra);
  if (!n) abort();
  arena[arena_len++] = n;
  return n;
}

/* ---- making ---- */

noun *n_bytes(const uint8_t *bytes, size_t len) {
  while (len > 0 && bytes[len - 1] == 0) len--;
  noun *n = alloc_noun(len);
  n->u.atom.len = len;
  n->u.atom.bytes = (uint8_t *)(n + 1);
  if (len) memcpy(n->u.atom.bytes, bytes, len);
  n->hash = murmur3_32(bytes, len, 0x1234567);
  return n;
}

noun *n_u64(uint64_t value) {
  uint8_t b[8];
  put_le(b, value, 8);
  return n_bytes(b, 8);
}

noun *n_cord(const char *text) { return n_bytes((const uint8_t *)text, strlen(text)); }

noun *n_cell(noun *head, noun *tail) {
  noun *n = alloc_noun(0);
  n->is_cell = 1;
  n->u.cell.head = head;
  n->u.cell.tail = tail;
  n->hash = rotl32(head->hash, 7) * 0x9e3779b1u ^ tail->hash ^ 0x5bd1e995u;
  return n;
}

noun *n_tuple(int count, ...) {
  va_list args;
  va_start(args, count);
  noun *items[16];
  for (int i = 0; i < count && i < 16; i++) items[i] = va_arg(args, noun *);
  va_end(args);
  noun *n = items[count - 1];
  for (int i = count - 2; i >= 0; i--) n = n_cell(items[i], n);
  return n;
}

/* ---- reading ---- */

int n_is_atom(const noun *n) { return n && !n->is_cell; }
noun *n_head(const noun *n) { return n && n->is_cell ? n->u.cell.head : NULL; }
noun *n_tail(const noun *n) { return n && n->is_cell ? n->u.cell.tail : NULL; }

int n_get_u64(const noun *n, uint64_t *out) {
  if (!n_is_atom(n) || n->u.atom.len > 8) return -1;
  *out = get_le(n->u.atom.bytes, (int)n->u.atom.len);
  return 0;
}

int n_get_bytes(const noun *n, uint8_t *out, size_t width) {
  if (!n_is_atom(n) || n->u.atom.len > width) return -1;
  memset(out, 0, width);
  memcpy(out, n->u.atom.bytes, n->u.atom.len);
  return 0;
}

int n_is_cord(const noun *n, const char *text) {
  size_t len = strlen(text);
  return n_is_atom(n) && n->u.atom.len == len && memcmp(n->u.atom.bytes, text, len) == 0;
}

int n_equal(const noun *a, const noun *b) {
  while (a != b) {
    if (a->hash != b->hash || a->is_cell != b->is_cell) return 0;
    if (!a->is_cell)
      return a->u.atom.len == b->u.atom.len &&
             memcmp(a->u.atom.bytes, b->u.atom.bytes, a->u.atom.len) == 0;
    if (!n_equal(a->u.cell.head, b->u.cell.head)) return 0;
    a = a->u.cell.tail;
    b = b->u.cell.tail;
  }
  return 1;
}

/* ---- jam ---- */

typedef struct {
  uint8_t *buf;
  size_t bits, cap;
} writer;

static void write_bit(writer *w, int bit) {
  if (w->bits / 8 >= w->cap) {
    size_t cap = w->cap ? 2 * w->cap : 64;
    uint8_t *grown = realloc(w->buf, cap);
    if (!grown) abort();
    memset(grown + w->cap, 0, cap - w->cap);
    w->buf = grown;
    w->cap = cap;
  }
  if (bit) w->buf[w->bits / 8] |= (uint8_t)(1u << (w->bits % 8));
  w->bits++;
}

static void write_bits(writer *w, uint64_t value, unsigned count) {
  for (unsigned i = 0; i < count; i++) write_bit(w, (int)((value >> i) & 1));
}

static unsigned bits_u64(uint64_t v) {
  unsigned b = 0;
  while (v) b++, v >>= 1;
  return b;
}

/* met(0, a): the atom's width in bits. */
static uint64_t atom_bits(const noun *a) {
  size_t len = a->u.atom.len;
  if (len == 0) return 0;
  return (uint64_t)(len - 1) * 8 + bits_u64(a->u.atom.bytes[len - 1]);
}

/* mat of an atom `a_bits` wide, whose bits are read by `bit(i)`. */
static void write_mat_len(writer *w, uint64_t a_bits) {
  unsigned b_bits = bits_u64(a_bits);
  write_bits(w, 0, b_bits);
  write_bit(w, 1);
  write_bits(w, a_bits & ((1ull << (b_bits - 1)) - 1), b_bits - 1);
}

static void write_mat_atom(writer *w, const noun *a) {
  uint64_t a_bits = atom_bits(a);
  if (a_bits == 0) {
    write_bit(w, 1);
    return;
  }
  write_mat_len(w, a_bits);
  for (uint64_t i = 0; i < a_bits; i++) write_bit(w, (a->u.atom.bytes[i / 8] >> (i % 8)) & 1);
}

static void write_mat_u64(writer *w, uint64_t v) {
  if (v == 0) {
    write_bit(w, 1);
    return;
  }
  uint64_t a_bits = bits_u64(v);
  write_mat_len(w, a_bits);
  write_bits(w, v, (unsigned)a_bits);
}

typedef struct {
  const noun *key;
  uint64_t pos;
} slot;

typedef struct {
  slot *slots;
  size_t cap, used;
} table;

static slot *table_find(table *t, const noun *key) {
  size_t i = key->hash & (t->cap - 1);
  while (t->slots[i].key && !n_equal(t->slots[i].key, key)) i = (i + 1) & (t->cap - 1);
  return &t->slots[i];
}

static void table_put(table *t, const noun *key, uint64_t pos) {
  if (2 * (t->used + 1) > t->cap) {
    table old = *t;
    t->cap = old.cap ? 2 * old.cap : 64;
    t->slots = calloc(t->cap, sizeof *t->slots);
    if (!t->slots) abort();
    t->used = 0;
    for (size_t i = 0; i < old.cap; i++)
      if (old.slots[i].key) table_put(t, old.slots[i].key, old.slots[i].pos);
    free(old.slots);
  }
  slot *s = table_find(t, key);
  s->key = key;
  s->pos = pos;
  t->used++;
}

uint8_t *n_jam(const noun *root, size_t *len) {
  writer w = {0};
  table t = {0};
  table_put(&t, root, 0); /* sizes the table; replaced below */
  memset(t.slots, 0, t.cap * sizeof *t.slots);
  t.used = 0;
  /* Pre-order walk with an explicit stack: deep lists must not recurse. */
  size_t depth = 0, cap = 64;
  const noun **stack = malloc(cap * sizeof *stack);
  if (!stack) abort();
  stack[depth++] = root;
  while (depth > 0) {
    const noun *a = stack[--depth];
    slot *seen = table_find(&t, a);
    if (seen->key) {
      uint64_t back = seen->pos;
      if (!a->is_cell && atom_bits(a) <= bits_u64(back)) {
        write_bit(&w, 0);
        write_mat_atom(&w, a);
      } else {
        write_bit(&w, 1);
        write_bit(&w, 1);
        write_mat_u64(&w, back);
      }
      continue;
    }
    table_put(&t, a, w.bits);
    if (!a->is_cell) {
      write_bit(&w, 0);
      write_mat_atom(&w, a);
      continue;
    }
    write_bit(&w, 1);
    write_bit(&w, 0);
    if (depth + 2 > cap) {
      cap *= 2;
      const noun **grown = realloc(stack, cap * sizeof *stack);
      if (!grown) abort();
      stack = grown;
    }
    stack[depth++] = a->u.cell.tail;
    stack[depth++] = a->u.cell.head;
  }
  free(stack);
  free(t.slots);
  size_t bytes = (w.bits + 7) / 8;
  while (bytes > 0 && w.buf[bytes - 1] == 0) bytes--;
  if (!w.buf) w.buf = malloc(1);
  *len = bytes;
  return w.buf;
}

/* ---- cue ---- */

typedef struct {
  const uint8_t *bytes;
  uint64_t bits, pos;
  /* Every noun by the bit position it starts at, in increasing order. */
  uint64_t *at;
  noun **val;
  size_t n, cap;
} reader;

static int read_bit(reader *r, int *bit) {
  if (r->pos >= r->bits) return -1;
  *bit = (r->bytes[r->pos / 8] >> (r->pos % 8)) & 1;
  r->pos++;
  return 0;
}

/* rub: the mat at the cursor, as a bit width and its start; the atom's
 * bits follow at r->pos. */
static int read_len(reader *r, uint64_t *out_bits) {
  unsigned zeros = 0;
  int bit;
  for (;;) {
    if (read_bit(r, &bit)) return -1;
    if (bit) break;
    if (++zeros > 64) return -1;
  }
  if (zeros == 0) {
    *out_bits = 0;
    return 0;
  }
  uint64_t b = 0;
  for (unsigned i = 0; i + 1 < zeros; i++) {
    if (read_bit(r, &bit)) return -1;
    b |= (uint64_t)bit << i;
  }
  b |= 1ull << (zeros - 1);
  if (b > r->bits - r->pos) return -1;
  *out_bits = b;
  return 0;
}

static noun *read_atom(reader *r) {
  uint64_t width;
  if (read_len(r, &width)) return NULL;
  size_t len = (size_t)((width + 7) / 8);
  uint8_t *buf = calloc(len ? len : 1, 1);
  if (!buf) abort();
  for (uint64_t i = 0; i < width; i++) {
    int bit;
    if (read_bit(r, &bit)) {
      free(buf);
      return NULL;
    }
    if (bit) buf[i / 8] |= (uint8_t)(1u << (i % 8));
  }
  noun *a = n_bytes(buf, len);
  free(buf);
  return a;
}

static size_t remember(reader *r, uint64_t pos, noun *n) {
  if (r->n == r->cap) {
    r->cap = r->cap ? 2 * r->cap : 64;
    r->at = realloc(r->at, r->cap * sizeof *r->at);
    r->val = realloc(r->val, r->cap * sizeof *r->val);
    if (!r->at || !r->val) abort();
  }
  r->at[r->n] = pos;
  r->val[r->n] = n;
  return r->n++;
}

static noun *recall(reader *r, uint64_t pos) {
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (r->at[mid] < pos) lo = mid + 1;
    else hi = mid;
  }
  return lo < r->n && r->at[lo] == pos ? r->val[lo] : NULL;
}

static noun *cue_at(reader *r, int depth) {
  if (depth > 100000) return NULL;
  uint64_t start = r->pos;
  int bit;
  if (read_bit(r, &bit)) return NULL;
  if (!bit) {
    noun *a = read_atom(r);
    if (a) remember(r, start, a);
    return a;
  }
  if (read_bit(r, &bit)) return NULL;
  if (bit) {
    noun *back = read_atom(r);
    uint64_t pos;
    if (!back || n_get_u64(back, &pos)) return NULL;
    return recall(r, pos); /* NULL: unknown, or a cell still being read */
  }
  size_t index = remember(r, start, NULL);
  noun *head = cue_at(r, depth + 1);
  if (!head) return NULL;
  noun *tail = cue_at(r, depth + 1);
  if (!tail) return NULL;
  noun *cell = n_cell(head, tail);
  r->val[index] = cell;
  return cell;
}

noun *n_cue(const uint8_t *bytes, size_t len) {
  while (len > 0 && bytes[len - 1] == 0) len--;
  reader r = {.bytes = bytes, .bits = (uint64_t)len * 8};
  noun *n = cue_at(&r, 0);
  free(r.at);
  free(r.val);
  return n;
}
