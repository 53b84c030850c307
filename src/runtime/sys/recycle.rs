//! Heap room for the futures a worker runs one per request, recycled from request to
//! request.
//!
//! A request's future is large (8-12 KiB) and aligned to 128 bytes (monoio's timer entries
//! are cache-padded), and glibc serves an allocation aligned past 16 bytes outside its
//! per-thread cache: `posix_memalign` and its `free` cost about 800 instructions, some 2%
//! of a whole call. A [`Recycled`] future is written into room a future of the same layout
//! left behind on this thread, and gives the room back when it is dropped; an idle
//! connection holds none (a thread keeps at most [`KEEP`] rooms, each the size of one
//! request's future).

use std::{
    alloc::Layout,
    cell::RefCell,
    future::Future,
    marker::PhantomData,
    pin::Pin,
    ptr::NonNull,
    task::{Context, Poll},
};

/// Most rooms a thread keeps for reuse.
pub const KEEP: usize = 64;

/// A thread's free rooms, each with its layout; freed with the thread.
struct Free(Vec<(Layout, NonNull<u8>)>);

impl Drop for Free {
    fn drop(&mut self) {
        for (layout, room) in self.0.drain(..) {
            // SAFETY: each room was allocated by `room_for` with this layout, and is free.
            unsafe { std::alloc::dealloc(room.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static FREE: RefCell<Free> = const { RefCell::new(Free(Vec::new())) };
}

/// Room for a value of `layout` (not zero-sized): a free one of this thread's, else a new
/// allocation.
fn room_for(layout: Layout) -> NonNull<u8> {
    let kept = FREE
        .try_with(|f| {
            let mut f = f.try_borrow_mut().ok()?;
            let i = f.0.iter().rposition(|(l, _)| *l == layout)?;
            Some(f.0.swap_remove(i).1)
        })
        .ok()
        .flatten();
    if let Some(room) = kept {
        return room;
    }
    // SAFETY: `layout` is not zero-sized (the caller's guarantee).
    let p = unsafe { std::alloc::alloc(layout) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(layout))
}

/// Gives `room` (of `layout`, no longer holding a value) back: kept for reuse, or freed.
fn give_back(layout: Layout, room: NonNull<u8>) {
    let kept = FREE
        .try_with(|f| match f.try_borrow_mut() {
            Ok(mut f) if f.0.len() < KEEP => {
                f.0.push((layout, room));
                true
            }
            _ => false,
        })
        .unwrap_or(false);
    if !kept {
        // SAFETY: `room` was allocated by `room_for` with this layout and holds nothing.
        unsafe { std::alloc::dealloc(room.as_ptr(), layout) };
    }
}

/// A future in recycled heap room: polled in place, dropped in place, its room then kept
/// for the next one. `Unpin` whatever `F` is, as a `Box<F>` is. (Should `make` panic, its
/// room is not given back: a leak, not an error.)
pub struct Recycled<F: Future> {
    at: NonNull<F>,
    /// Owns an `F` (for the drop check), and is neither `Send` nor `Sync` (`NonNull`).
    _owns: PhantomData<F>,
}

impl<F: Future> Recycled<F> {
    /// Room for the future `make` builds, then the future built there. Inlined, so that
    /// the future is built in its room rather than built elsewhere and copied in (all of
    /// it: kilobytes).
    #[inline(always)]
    pub fn new(make: impl FnOnce() -> F) -> Self {
        let layout = Layout::new::<F>();
        let at = if layout.size() == 0 {
            NonNull::dangling()
        } else {
            room_for(layout).cast::<F>()
        };
        // SAFETY: `at` is room for an `F`, properly aligned, holding nothing.
        unsafe { at.as_ptr().write(make()) };
        Self {
            at,
            _owns: PhantomData,
        }
    }
}

// Moving a `Recycled` moves the pointer, never the future (as with `Box`).
impl<F: Future> Unpin for Recycled<F> {}

impl<F: Future> Future for Recycled<F> {
    type Output = F::Output;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the future stays at `at` until `drop` drops it there; nothing moves it.
        unsafe { Pin::new_unchecked(&mut *self.at.as_ptr()) }.poll(cx)
    }
}

impl<F: Future> Drop for Recycled<F> {
    fn drop(&mut self) {
        let layout = Layout::new::<F>();
        // SAFETY: `at` holds the future written by `new`, dropped only here.
        unsafe { std::ptr::drop_in_place(self.at.as_ptr()) };
        if layout.size() != 0 {
            give_back(layout, self.at.cast());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{cell::Cell, rc::Rc};

    use super::*;

    /// A future that counts its drops and answers after one `Pending`.
    struct Probe {
        drops: Rc<Cell<u32>>,
        polled: bool,
        _room: [u64; 100],
    }

    impl Future for Probe {
        type Output = u32;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u32> {
            if self.polled {
                return Poll::Ready(7);
            }
            self.polled = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.drops.set(self.drops.get() + 1);
        }
    }

    fn probe(drops: &Rc<Cell<u32>>) -> Probe {
        Probe {
            drops: drops.clone(),
            polled: false,
            _room: [0; 100],
        }
    }

    fn free_rooms() -> usize {
        FREE.with(|f| f.borrow().0.len())
    }

    #[test]
    fn rooms_are_reused_and_futures_dropped_once() {
        let drops = Rc::new(Cell::new(0));
        let before = free_rooms();
        let mut first = Recycled::new(|| probe(&drops));
        let at = first.at.cast::<u8>();
        let waker = futures_util::task::noop_waker();
        assert!(Pin::new(&mut first)
            .poll(&mut Context::from_waker(&waker))
            .is_pending());
        drop(first);
        assert_eq!(drops.get(), 1, "dropped unfinished, in place");
        assert_eq!(free_rooms(), before + 1, "its room kept");
        // The next future of the same layout takes that room.
        let second = Recycled::new(|| probe(&drops));
        assert_eq!(second.at.cast::<u8>(), at);
        assert_eq!(free_rooms(), before);
        drop(second);
        assert_eq!(drops.get(), 2);
        // A future of another layout gets room of its own.
        let other = Recycled::new(|| async { 1u8 });
        assert_ne!(other.at.cast::<u8>(), at);
        // Unpin, though an async block is not.
        fn unpin<T: Unpin>(_: &T) {}
        unpin(&other);
        drop(other);
        assert_eq!(free_rooms(), before + 2);
    }

    #[test]
    fn a_thread_keeps_at_most_keep_rooms() {
        let drops = Rc::new(Cell::new(0));
        let held: Vec<_> = (0..KEEP + 10)
            .map(|_| Recycled::new(|| probe(&drops)))
            .collect();
        drop(held);
        assert_eq!(drops.get(), (KEEP + 10) as u32);
        assert_eq!(free_rooms(), KEEP);
    }

    #[test]
    fn a_future_runs_to_its_answer() {
        let drops = Rc::new(Cell::new(0));
        let mut f = Recycled::new(|| probe(&drops));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(Pin::new(&mut f).poll(&mut cx).is_pending());
        assert_eq!(Pin::new(&mut f).poll(&mut cx), Poll::Ready(7));
        drop(f);
        assert_eq!(drops.get(), 1);
    }
}
