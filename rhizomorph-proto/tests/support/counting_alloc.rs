//! A counting global allocator for tests (shared by `alloc_bounds.rs` and `zero_copy.rs`):
//! records, per thread, the largest allocation and the allocations of at least
//! [`BIG_ALLOCATION`] bytes made inside [`measure`]. A test binary installs it with
//! `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Allocations at least this large are counted one by one.
pub const BIG_ALLOCATION: usize = 1 << 20;

/// What [`measure`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocations {
    /// The largest single allocation (or reallocation's new size).
    pub largest: usize,
    /// How many were at least `BIG_ALLOCATION` bytes.
    pub big: usize,
    /// Their total size.
    pub big_bytes: usize,
}

/// The allocator: forwards to `System` and notes sizes while the thread is measuring.
pub struct Counting;

// Per thread: tests run in parallel, and only the measuring thread's allocations count.
thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static BIG: Cell<usize> = const { Cell::new(0) };
    static BIG_BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    if TRACKING.with(Cell::get) {
        LARGEST.with(|l| l.set(l.get().max(size)));
        if size >= BIG_ALLOCATION {
            BIG.with(|b| b.set(b.get() + 1));
            BIG_BYTES.with(|b| b.set(b.get() + size));
        }
    }
}

/// Runs `f`, returning its result and the allocations this thread made meanwhile.
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, Allocations) {
    for c in [&LARGEST, &BIG, &BIG_BYTES] {
        c.with(|v| v.set(0));
    }
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    let seen = Allocations {
        largest: LARGEST.with(Cell::get),
        big: BIG.with(Cell::get),
        big_bytes: BIG_BYTES.with(Cell::get),
    };
    (out, seen)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwards the caller's layout unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as `GlobalAlloc::realloc`, forwarded to `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
