//! The global allocator of the apitap binary (and of the benches, which measure it): mimalloc,
//! called directly.

/// mimalloc, asked by size alone for the alignments every block has anyway. The `mimalloc`
/// crate's `MiMalloc` asks `mi_malloc_aligned` for every allocation, whose checks (a power of
/// two? a free block of the right alignment?) cost about 20 instructions more than `mi_malloc`
/// on each of the ~23 allocations a small API call makes.
pub struct Mi;

/// The alignment of every mimalloc block: block sizes are multiples of the word (8 bytes) and
/// the first block of a page is aligned to 16 (`MI_PAGE_MIN_START_BLOCK_ALIGN`), so every
/// block is 8-aligned whatever its size.
const MI_BLOCK_ALIGN: usize = 8;

// SAFETY: every method hands the request to mimalloc, which returns null or a block of at
// least `size` bytes: to `mi_malloc`/`mi_zalloc`/`mi_realloc` only when the alignment asked for
// is at most `MI_BLOCK_ALIGN`, which every mimalloc block has (see there); otherwise to the
// aligned functions, exactly as the `mimalloc` crate's `MiMalloc` does. Blocks from either
// are freed by `mi_free` (mimalloc finds a block's page from its address, aligned or not).
unsafe impl std::alloc::GlobalAlloc for Mi {
    #[inline]
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_malloc(l.size()).cast() }
        } else {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_malloc_aligned(l.size(), l.align()).cast() }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, l: std::alloc::Layout) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_zalloc(l.size()).cast() }
        } else {
            // SAFETY: see the impl
            unsafe { libmimalloc_sys::mi_zalloc_aligned(l.size(), l.align()).cast() }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _l: std::alloc::Layout) {
        // SAFETY: `p` came from this allocator (the caller's contract), so from mimalloc
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if l.align() <= MI_BLOCK_ALIGN {
            // SAFETY: see the impl; `p` came from mimalloc
            unsafe { libmimalloc_sys::mi_realloc(p.cast(), new_size).cast() }
        } else {
            // SAFETY: see the impl; `p` came from mimalloc
            unsafe { libmimalloc_sys::mi_realloc_aligned(p.cast(), new_size, l.align()).cast() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn mi_blocks_have_the_alignment_asked_and_keep_their_bytes() {
        for size in [
            1usize,
            3,
            7,
            8,
            9,
            15,
            16,
            17,
            24,
            31,
            48,
            100,
            1000,
            5000,
            70_000,
            1 << 20,
        ] {
            for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
                let l = Layout::from_size_align(size, align).unwrap();
                let grown = Layout::from_size_align(2 * size + 1, align).unwrap();
                // SAFETY: `l` has a non-zero size; each block is written and read within its
                // size, reallocated with the layout it was made with, freed once with its own.
                unsafe {
                    let p = Mi.alloc(l);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alloc: size {size} align {align}");
                    for i in 0..size {
                        p.add(i).write(i as u8);
                    }
                    let q = Mi.realloc(p, l, grown.size());
                    assert_eq!(q as usize % align, 0, "realloc: size {size} align {align}");
                    assert!(
                        (0..size).all(|i| q.add(i).read() == i as u8),
                        "size {size} align {align}"
                    );
                    Mi.dealloc(q, grown);
                    let z = Mi.alloc_zeroed(l);
                    assert_eq!(z as usize % align, 0, "alloc_zeroed: size {size} align {align}");
                    assert!((0..size).all(|i| z.add(i).read() == 0), "size {size} align {align}");
                    Mi.dealloc(z, l);
                }
            }
        }
    }

    #[test]
    fn every_small_block_is_word_aligned() {
        // (many blocks of each small size, so blocks deep into a page are looked at too)
        for size in 1..=130usize {
            let l = Layout::from_size_align(size, MI_BLOCK_ALIGN).unwrap();
            // SAFETY: non-zero sizes; every block freed once with its layout.
            let blocks: Vec<*mut u8> = (0..300).map(|_| unsafe { Mi.alloc(l) }).collect();
            for &p in &blocks {
                assert!(!p.is_null());
                assert_eq!(p as usize % MI_BLOCK_ALIGN, 0, "size {size}");
            }
            for p in blocks {
                // SAFETY: as above
                unsafe { Mi.dealloc(p, l) };
            }
        }
    }
}
