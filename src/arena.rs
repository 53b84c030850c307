//! Small buffers carved from a per-thread block, so that a message, a head or a spliced
//! body made on the request path costs no allocation of its own.
//!
//! A buffer is written into the thread's current block and split off it as [`Bytes`]: the
//! block is shared by every buffer carved from it, and freed when the last of them is
//! dropped. A new block is allocated when the current one has too little room left (one
//! allocation per [`BLOCK`] bytes carved, instead of two per buffer: the buffer and the
//! shared handle `bytes` allocates when a partly filled `BytesMut` is frozen). Buffers
//! larger than [`BLOCK`] / 4 get their own allocation, so that a large one never keeps a
//! block alive, and a small one keeps at most one block alive.
//!
//! The lowest layer, as `text`: it imports nothing of ours and never does IO.

use std::cell::RefCell;

use bytes::{Bytes, BytesMut};

/// Size of a block, bytes.
pub const BLOCK: usize = 16 << 10;

thread_local! {
    static CURRENT: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The bytes `write` appends to an empty buffer, which it expects to be about `expect`
/// bytes long (more is fine: the buffer grows). `write` may not call [`build`] itself (if
/// it does, the inner call gets a buffer of its own).
pub fn build(expect: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    if expect > BLOCK / 4 {
        return own(expect, write);
    }
    CURRENT.with(|cell| {
        let Ok(mut block) = cell.try_borrow_mut() else {
            return own(expect, write);
        };
        if block.capacity() < expect {
            *block = BytesMut::with_capacity(BLOCK);
        }
        write(&mut block);
        block.split().freeze()
    })
}

fn own(expect: usize, write: impl FnOnce(&mut BytesMut)) -> Bytes {
    let mut b = BytesMut::with_capacity(expect);
    write(&mut b);
    b.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_what_was_written_and_independent() {
        let a = build(5, |b| b.extend_from_slice(b"hello"));
        let b = build(3, |b| b.extend_from_slice(b"abc"));
        // Written past what was expected, and a large one.
        let c = build(2, |b| b.extend_from_slice(&[7u8; 100]));
        let d = build(BLOCK, |b| b.extend_from_slice(&[1u8; BLOCK]));
        assert_eq!(&a[..], b"hello");
        assert_eq!(&b[..], b"abc");
        assert_eq!(&c[..], &[7u8; 100][..]);
        assert_eq!(d.len(), BLOCK);
        // Many more than a block holds.
        let all: Vec<Bytes> = (0..1000u32)
            .map(|i| build(4, |b| b.extend_from_slice(&i.to_be_bytes())))
            .collect();
        for (i, x) in (0..1000u32).zip(&all) {
            assert_eq!(&x[..], &i.to_be_bytes());
        }
        assert_eq!(&a[..], b"hello");
    }

    #[test]
    fn a_nested_build_gets_its_own_buffer() {
        let outer = build(4, |b| {
            let inner = build(4, |i| i.extend_from_slice(b"in"));
            b.extend_from_slice(b"out:");
            b.extend_from_slice(&inner);
        });
        assert_eq!(&outer[..], b"out:in");
    }
}
