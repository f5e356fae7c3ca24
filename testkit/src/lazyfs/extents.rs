//! Byte ranges of a file held in memory, over what the disk holds.

use std::collections::BTreeMap;

/// Byte ranges of a file held in memory: non-overlapping, keyed by offset.
#[derive(Default)]
pub(super) struct Extents {
    pub(super) map: BTreeMap<u64, Vec<u8>>,
    pub(super) bytes: u64,
}

impl Extents {
    /// One past the last byte held, 0 if none.
    pub(super) fn end(&self) -> u64 {
        self.map
            .last_key_value()
            .map_or(0, |(k, v)| k + v.len() as u64)
    }

    /// Holds `data` at `off`, over whatever was there. Appends extend the
    /// extent they follow, so a log written in small appends stays one
    /// extent.
    pub(super) fn insert(&mut self, off: u64, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let end = off + data.len() as u64;
        self.punch(off, end);
        self.bytes += data.len() as u64;
        let mut joined = data.to_vec();
        if let Some(next) = self.map.remove(&end) {
            joined.extend_from_slice(&next);
        }
        if let Some((_, prev)) = self
            .map
            .range_mut(..off)
            .next_back()
            .filter(|(k, prev)| **k + prev.len() as u64 == off)
        {
            prev.extend_from_slice(&joined);
            return;
        }
        self.map.insert(off, joined);
    }

    /// Forgets the bytes in `start..end`, splitting extents across its
    /// edges.
    pub(super) fn punch(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let straddler = self
            .map
            .range(..start)
            .next_back()
            .map(|(&k, v)| (k, k + v.len() as u64))
            .filter(|&(_, v_end)| v_end > start);
        if let Some((k, v_end)) = straddler {
            let v = self.map.get_mut(&k).expect("found just now");
            let tail = (v_end > end).then(|| v.split_off((end - k) as usize));
            v.truncate((start - k) as usize);
            self.bytes -= v_end.min(end) - start;
            if let Some(tail) = tail {
                self.map.insert(end, tail);
            }
        }
        let inside: Vec<u64> = self.map.range(start..end).map(|(&k, _)| k).collect();
        for k in inside {
            let mut v = self.map.remove(&k).expect("listed just now");
            let v_end = k + v.len() as u64;
            if v_end > end {
                let tail = v.split_off((end - k) as usize);
                self.map.insert(end, tail);
            }
            self.bytes -= v.len() as u64;
        }
    }

    /// Forgets everything from `size` on.
    pub(super) fn truncate(&mut self, size: u64) {
        self.punch(size, u64::MAX);
    }

    /// Copies the bytes held in `off..off + buf.len()` over `buf`.
    pub(super) fn overlay(&self, off: u64, buf: &mut [u8]) {
        let end = off + buf.len() as u64;
        // Extents are disjoint and sorted, so their ends are sorted too:
        // walking back from `end`, the first one ending at or before `off`
        // is the last to look at.
        for (&k, v) in self.map.range(..end).rev() {
            let v_end = k + v.len() as u64;
            if v_end <= off {
                break;
            }
            let from = k.max(off);
            let to = v_end.min(end);
            buf[(from - off) as usize..(to - off) as usize]
                .copy_from_slice(&v[(from - k) as usize..(to - k) as usize]);
        }
    }

    pub(super) fn take(&mut self) -> BTreeMap<u64, Vec<u8>> {
        self.bytes = 0;
        std::mem::take(&mut self.map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(e: &Extents, off: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![b'.'; len];
        e.overlay(off, &mut buf);
        buf
    }

    #[test]
    fn appends_coalesce_and_overwrites_split() {
        let mut e = Extents::default();
        e.insert(0, b"abc");
        e.insert(3, b"def");
        assert_eq!(e.map.len(), 1, "an append extends the extent before it");
        assert_eq!(e.bytes, 6);
        e.insert(2, b"XY");
        assert_eq!(read(&e, 0, 8), b"abXYef..");
        assert_eq!(e.bytes, 6);
        e.insert(10, b"zz");
        assert_eq!(e.end(), 12);
        assert_eq!(e.bytes, 8);
        e.punch(1, 11);
        assert_eq!(read(&e, 0, 12), b"a..........z");
        assert_eq!(e.bytes, 2);
    }

    #[test]
    fn a_write_joins_the_extent_after_it() {
        let mut e = Extents::default();
        e.insert(4, b"ef");
        e.insert(0, b"abcd");
        assert_eq!(e.map.len(), 1);
        assert_eq!(read(&e, 0, 6), b"abcdef");
    }

    #[test]
    fn truncation_trims_the_straddling_extent() {
        let mut e = Extents::default();
        e.insert(0, b"0123456789");
        e.insert(20, b"abc");
        e.truncate(4);
        assert_eq!(e.bytes, 4);
        assert_eq!(e.end(), 4);
        assert_eq!(read(&e, 2, 4), b"23..");
        e.truncate(0);
        assert!(e.map.is_empty());
        assert_eq!(e.bytes, 0);
    }

    #[test]
    pub(super) fn overlay_reads_only_the_asked_range() {
        let mut e = Extents::default();
        e.insert(0, b"aa");
        e.insert(5, b"bbbb");
        e.insert(12, b"c");
        assert_eq!(read(&e, 6, 5), b"bbb..");
        assert_eq!(read(&e, 1, 3), b"a..");
    }
}
