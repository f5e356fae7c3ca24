#!/usr/bin/env python3
"""An independent implementation of vere's pier log (.urb/log), on Python's
`lmdb` package (PyPI), for Seguro's pier tests and benchmark.

  write DIR --events N --size S [--epochs 0,K,...] [faults]   a pier as vere lays it out
  dump DIR                                                     every table and file, as JSON
  read DIR                                                     a plain read of every event (timed)

The layout follows urbit/vere pkg/vere/disk.c and db/lmdb.c: a top-level
LMDB with META, epoch directories 0i<N> (N = the last event before the
epoch) with epoc.txt, vere.txt and an LMDB of META and EVENTS (integer
keys, u64 little-endian; values a 4-byte little-endian mug and the jammed
event); META values little-endian with trailing zero bytes stripped.
"""

import argparse
import hashlib
import json
import os
import random
import sys
import time

import lmdb

MAP_SIZE = 1 << 36


def strip(b):
    return b.rstrip(b"\0")


def meta_entries(version, who, fake, life):
    return {
        b"version": strip(version.to_bytes(4, "little")),
        b"who": strip(who.to_bytes(16, "little")),
        # c3_o: c3y (0) for a fake ship, c3n (1) for a real one.
        b"fake": strip(bytes([0 if fake else 1])),
        b"life": strip(life.to_bytes(4, "little")),
    }


def open_env(path, readonly=False):
    return lmdb.open(path, max_dbs=2, map_size=MAP_SIZE, readonly=readonly,
                     lock=not readonly, subdir=True)


def write(args):
    root = args.dir
    log = os.path.join(root, ".urb", "log")
    os.makedirs(log, exist_ok=True)
    meta = meta_entries(3, args.who, args.fake, args.life)
    top_meta = dict(meta)
    top_meta[b"version"] = strip(args.version.to_bytes(4, "little"))
    env = open_env(log)
    with env.begin(write=True) as txn:
        db = env.open_db(b"META", txn=txn)
        for k, v in top_meta.items():
            txn.put(k, v, db=db)
    env.close()

    rng = random.Random(args.seed)
    pool = rng.randbytes(args.size + 4096)
    epochs = sorted(int(e) for e in args.epochs.split(","))
    bounds = epochs[1:] + [args.events]
    for epoch, last in zip(epochs, bounds):
        d = os.path.join(log, "0i%d" % epoch)
        os.makedirs(d, exist_ok=True)
        if epoch != args.no_epoc:
            with open(os.path.join(d, "epoc.txt"), "w") as f:
                f.write("2")
        with open(os.path.join(d, "vere.txt"), "w") as f:
            f.write(args.vere)
        if epoch > 0:
            # vere copies its snapshot into every epoch after the first.
            with open(os.path.join(d, "image.bin"), "wb") as f:
                f.write(b"snapshot %d" % epoch)
        env = open_env(d)
        with env.begin(write=True) as txn:
            db = env.open_db(b"META", txn=txn)
            for k, v in meta.items():
                txn.put(k, v, db=db)
        events = env.open_db(b"EVENTS", integerkey=True)
        n = epoch + 1
        while n <= last:
            with env.begin(write=True) as txn:
                cur = txn.cursor(db=events)
                batch_end = min(last, n + 9999)
                while n <= batch_end:
                    if n != args.gap:
                        mug = 0 if n <= args.life else (n * 2654435761) & 0xFFFFFFFF
                        if n == args.short:
                            value = mug.to_bytes(4, "little")
                        else:
                            off = (n * 7) % 4096
                            value = mug.to_bytes(4, "little") + pool[off:off + args.size - 4]
                        cur.put(n.to_bytes(8, "little"), value, append=True)
                    n += 1
        env.close()
    if args.lock_pid:
        with open(os.path.join(root, ".vere.lock"), "w") as f:
            f.write("%d\n" % args.lock_pid)


def table(env, name, **kw):
    try:
        db = env.open_db(name, create=False, **kw)
    except lmdb.NotFoundError:
        return None
    return db


def dump(args):
    log = os.path.join(args.dir, ".urb", "log")
    out = {"epochs": []}
    env = open_env(log, readonly=True)
    db = table(env, b"META")
    with env.begin() as txn:
        out["top_meta"] = {k.decode(): v.hex() for k, v in txn.cursor(db=db)} if db else {}
    env.close()
    total = hashlib.sha256()
    count = 0
    names = [n for n in os.listdir(log) if n.startswith("0i")]
    for name in sorted(names, key=lambda n: int(n[2:])):
        d = os.path.join(log, name)
        e = {"name": name}
        for f in ("epoc.txt", "vere.txt"):
            p = os.path.join(d, f)
            e[f] = open(p, "rb").read().hex() if os.path.exists(p) else None
        env = open_env(d, readonly=True)
        meta = table(env, b"META")
        events = table(env, b"EVENTS", integerkey=True)
        h = hashlib.sha256()
        first = last = None
        n = 0
        with env.begin() as txn:
            e["meta"] = {k.decode(): v.hex() for k, v in txn.cursor(db=meta)} if meta else {}
            if events is not None:
                e["integerkey"] = bool(events.flags(txn)["integerkey"])
                for k, v in txn.cursor(db=events):
                    rec = k + len(v).to_bytes(8, "little") + v
                    h.update(rec)
                    total.update(rec)
                    num = int.from_bytes(k, "little")
                    first = num if first is None else first
                    last = num
                    n += 1
        env.close()
        e.update(count=n, first=first, last=last, sha256=h.hexdigest())
        count += n
        out["epochs"].append(e)
    out["count"] = count
    out["events_sha256"] = total.hexdigest()
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()


def read(args):
    log = os.path.join(args.dir, ".urb", "log")
    start = time.monotonic()
    n = 0
    size = 0
    for name in sorted((x for x in os.listdir(log) if x.startswith("0i")), key=lambda x: int(x[2:])):
        env = open_env(os.path.join(log, name), readonly=True)
        events = table(env, b"EVENTS", integerkey=True)
        with env.begin(buffers=True) as txn:
            for k, v in txn.cursor(db=events):
                n += 1
                size += len(v)
        env.close()
    seconds = time.monotonic() - start
    json.dump({"events": n, "bytes": size, "seconds": seconds}, sys.stdout)
    print()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("--events", type=int, required=True)
    w.add_argument("--size", type=int, default=200, help="bytes per EVENTS value, mug included")
    w.add_argument("--epochs", default="0")
    w.add_argument("--who", type=lambda s: int(s, 0), default=0x1_0000_0000)
    w.add_argument("--fake", action="store_true")
    w.add_argument("--life", type=int, default=3)
    w.add_argument("--vere", default="4.5")
    w.add_argument("--seed", type=int, default=16)
    w.add_argument("--version", type=int, default=3, help="the top-level META version")
    w.add_argument("--gap", type=int, default=0, help="leave this event out")
    w.add_argument("--short", type=int, default=0, help="store only a mug for this event")
    w.add_argument("--no-epoc", type=int, default=-1, help="no epoc.txt in this epoch")
    w.add_argument("--lock-pid", type=int, default=0, help="write .vere.lock naming this pid")
    d = sub.add_parser("dump")
    d.add_argument("dir")
    r = sub.add_parser("read")
    r.add_argument("dir")
    args = p.parse_args()
    {"write": write, "dump": dump, "read": read}[args.cmd](args)


if __name__ == "__main__":
    main()
