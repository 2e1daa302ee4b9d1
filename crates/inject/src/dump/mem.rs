//! Bounded reads of untrusted memory.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// Memory of a target: a live process (through `attach::ProcessMemory`) or
/// anything else that can fill a buffer from an address.
pub trait Memory {
    /// Fills `buf` from `addr`, all or nothing.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String>;

    /// Fills every buffer, with as few system calls as the source allows;
    /// fails if any range is unreadable.
    fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<(), String> {
        ranges.iter_mut().try_for_each(|(a, b)| self.read(*a, b))
    }
}

impl Memory for attach::ProcessMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), String> {
        attach::ProcessMemory::read(self, addr, buf).map_err(|e| e.to_string())
    }

    fn read_many(&self, ranges: &mut [(u64, &mut [u8])]) -> Result<(), String> {
        attach::ProcessMemory::read_many(self, ranges).map_err(|e| e.to_string())
    }
}

/// The largest single object read (a line table, a string): anything bigger
/// is garbage or not worth showing.
pub const MAX_READ: usize = 1 << 20;

const PAGE: u64 = 4096;
/// Pages cached at most (256 MiB; `dump --tasks` of 100,000 asyncio tasks
/// comes near it): past that, reads go straight to memory, one system
/// call each, which made such a dump's freeze twice as long.
const MAX_PAGES: usize = 64 * 1024;

/// Typed reads over a [`Memory`]; every failure names the address.
///
/// Small reads go through a cache of whole pages: frames, code objects and
/// strings sit close together (3.11+ frames share one data stack chunk), so
/// a 1,000-frame stack costs a few dozen system calls instead of thousands.
/// The cache lives as long as the reader, i.e. one dump, during which the
/// target is frozen (or, with `--nonblocking`, torn reads are accepted
/// anyway).
pub struct Reader<'a> {
    mem: &'a dyn Memory,
    /// `Rc<Vec>` rather than `Rc<[u8]>`: a page read into a `Vec` is kept
    /// as it is, not copied again.
    pages: RefCell<HashMap<u64, Option<Rc<Vec<u8>>>>>,
}

impl<'a> Reader<'a> {
    pub fn new(mem: &'a dyn Memory) -> Self {
        Reader {
            mem,
            pages: RefCell::new(HashMap::new()),
        }
    }

    fn page(&self, base: u64) -> Option<Rc<Vec<u8>>> {
        if let Some(p) = self.pages.borrow().get(&base) {
            return p.clone();
        }
        if self.pages.borrow().len() >= MAX_PAGES {
            return None;
        }
        let mut b = vec![0u8; PAGE as usize];
        let p = self.mem.read(base, &mut b).ok().map(|_| Rc::new(b));
        self.pages.borrow_mut().insert(base, p.clone());
        p
    }

    /// Loads the pages of all `ranges` into the cache with one batched read
    /// (one system call per 1,024 pages), so that walking many threads a
    /// level at a time costs a few calls instead of one per object. If any
    /// page is unreadable nothing is cached and reads fall back to one page
    /// at a time.
    pub fn prefetch(&self, ranges: &[(u64, usize)]) {
        let mut bases: Vec<u64> = Vec::new();
        {
            let cache = self.pages.borrow();
            for &(addr, len) in ranges {
                if addr == 0 || len == 0 || len as u64 > 2 * PAGE {
                    continue;
                }
                let Some(end) = addr.checked_add(len as u64) else {
                    continue;
                };
                let mut b = addr & !(PAGE - 1);
                while b < end {
                    if !cache.contains_key(&b) {
                        bases.push(b);
                    }
                    b += PAGE;
                }
            }
        }
        bases.sort_unstable();
        bases.dedup();
        bases.truncate(MAX_PAGES.saturating_sub(self.pages.borrow().len()));
        if bases.len() < 2 {
            return;
        }
        let mut bufs: Vec<Vec<u8>> = bases.iter().map(|_| vec![0u8; PAGE as usize]).collect();
        let mut reqs: Vec<(u64, &mut [u8])> = bases
            .iter()
            .zip(bufs.iter_mut())
            .map(|(&a, b)| (a, b.as_mut_slice()))
            .collect();
        if self.mem.read_many(&mut reqs).is_ok() {
            let mut cache = self.pages.borrow_mut();
            for (a, b) in bases.into_iter().zip(bufs) {
                cache.insert(a, Some(Rc::new(b)));
            }
        }
    }

    /// `len` bytes at `addr` from cached pages, if every page is readable.
    fn cached(&self, addr: u64, len: usize) -> Option<Vec<u8>> {
        let end = addr.checked_add(len as u64)?;
        let mut out = Vec::with_capacity(len);
        let mut at = addr;
        while at < end {
            let base = at & !(PAGE - 1);
            let page = self.page(base)?;
            let from = (at - base) as usize;
            let to = ((end - base).min(PAGE)) as usize;
            out.extend_from_slice(&page[from..to]);
            at = base + PAGE;
        }
        Some(out)
    }

    pub fn bytes(&self, addr: u64, len: usize) -> Result<Vec<u8>, String> {
        if addr == 0 {
            return Err("NULL pointer".into());
        }
        if len > MAX_READ {
            return Err(format!("implausible size {len} at {addr:#x}"));
        }
        if len as u64 <= 2 * PAGE {
            if let Some(v) = self.cached(addr, len) {
                return Ok(v);
            }
        }
        let mut v = vec![0; len];
        self.mem
            .read(addr, &mut v)
            .map_err(|e| format!("cannot read {len} bytes at {addr:#x}: {e}"))?;
        Ok(v)
    }

    /// `N` bytes at `addr` straight from a cached page, when they lie in
    /// one: no allocation (the walks read millions of pointers).
    fn in_page<const N: usize>(&self, addr: u64) -> Option<[u8; N]> {
        let base = addr & !(PAGE - 1);
        let off = (addr - base) as usize;
        if addr == 0 || off + N > PAGE as usize {
            return None;
        }
        let p = self.page(base)?;
        p[off..off + N].try_into().ok()
    }

    pub fn u64(&self, addr: u64) -> Result<u64, String> {
        if let Some(b) = self.in_page::<8>(addr) {
            return Ok(u64::from_le_bytes(b));
        }
        let b = self.bytes(addr, 8)?;
        Ok(le_u64(&b, 0))
    }

    pub fn i32(&self, addr: u64) -> Result<i32, String> {
        if let Some(b) = self.in_page::<4>(addr) {
            return Ok(i32::from_le_bytes(b));
        }
        let b = self.bytes(addr, 4)?;
        Ok(le_u32(&b, 0) as i32)
    }

    /// A NUL-terminated C string of at most `max` bytes.
    pub fn c_string(&self, addr: u64, max: usize) -> Result<String, String> {
        // Read in small pieces so a short string near the end of a mapping
        // still reads.
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < max {
            let chunk = 32.min(max - out.len());
            let b = match self.bytes(at, chunk) {
                Ok(b) => b,
                Err(e) if out.is_empty() && chunk > 1 => {
                    // Retry byte by byte up to the mapping's end.
                    let mut b = Vec::new();
                    for i in 0..chunk as u64 {
                        match self.bytes(at.wrapping_add(i), 1) {
                            Ok(x) => b.push(x[0]),
                            Err(_) if !b.is_empty() => break,
                            Err(_) => return Err(e),
                        }
                    }
                    b
                }
                Err(e) => return Err(e),
            };
            if let Some(n) = b.iter().position(|&c| c == 0) {
                out.extend_from_slice(&b[..n]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            at = at.wrapping_add(b.len() as u64);
            out.extend_from_slice(&b);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// A little-endian u64 at `at` in `b`, or 0 past its end.
pub fn le_u64(b: &[u8], at: usize) -> u64 {
    b.get(at..at.saturating_add(8))
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .unwrap_or(0)
}

/// A little-endian u32 at `at` in `b`, or 0 past its end.
pub fn le_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at.saturating_add(4))
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .unwrap_or(0)
}
