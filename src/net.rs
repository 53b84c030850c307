//! The byte streams connections run over: plain TCP, or TLS over TCP ([`tls`]); and the
//! outbound address policy every connection the gateway opens passes ([`policy`]).
//!
//! [`Stream`] is the seam between the HTTP/1.1 loops (`transport::server`, `upstream::http`)
//! and the socket. The client side is generic over it, so a plain TCP connection compiles to
//! the same direct `TcpStream` calls as before TLS existed: no box, no vtable, no branch per
//! read. Buffers move into the IO calls (rent style); nothing here parses HTTP.

pub mod policy;
pub mod tls;

use std::{future::Future, io};

use bytes::{Bytes, BytesMut};
use monoio::{
    buf::IoBufMut,
    io::{AsyncReadRent, AsyncWriteRentExt},
    net::TcpStream,
};

/// Smallest free space a read is given; below it the buffer grows by [`READ_GROW`].
const READ_MIN: usize = 4096;
/// How much a read buffer grows when it is nearly full, bytes. Small: most requests and
/// answers fit, a buffer whose bytes were all handed on is reclaimed whole for the next
/// read, and a body larger than it is read into room reserved for its announced length
/// (idle clients measured at 8.4 KB each with 16 KiB here, 5.5 KB with 4 KiB).
const READ_GROW: usize = 4 << 10;

/// A connection's byte stream.
pub trait Stream {
    /// Reads more bytes into `buf`, after the bytes it holds; returns how many (0 at the
    /// peer's end of stream). An error ends the connection.
    fn read_more(&mut self, buf: &mut BytesMut) -> impl Future<Output = io::Result<usize>>;

    /// Waits until a read would find something (bytes, end of stream or an error), holding
    /// no read buffer meanwhile: idle keep-alive connections wait here.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>>;

    /// Writes all of `buf`.
    fn write_all(&mut self, buf: Bytes) -> impl Future<Output = io::Result<()>>;

    /// Writes all of `parts`, in order, as one stream of bytes: a head and the body it
    /// frames, or a message and the edits spliced into it, without joining them first.
    /// Plain TCP writes them with one `writev` (the kernel gathers them); other streams
    /// write them one by one.
    fn write_segments(&mut self, parts: Segments) -> impl Future<Output = io::Result<()>> {
        async move {
            for p in parts.iter() {
                self.write_all(p.clone()).await?;
            }
            Ok(())
        }
    }

    /// Writes what of `parts` the stream takes at once, without waiting; returns how many
    /// bytes (the rest, usually nothing, is for [`Stream::write_segments`]). Plain TCP: one
    /// non-blocking `sendmsg` ([`crate::runtime::sys::send_now`]); other streams take
    /// nothing here. Called before the write future is made: a message the socket takes
    /// whole costs no queued operation, no timer, none of the moves of those futures and no
    /// copy of `parts` (a clone of each part's reference count).
    fn write_now(&mut self, parts: &Segments) -> io::Result<usize> {
        let _ = parts;
        Ok(0)
    }

    /// Ends the stream cleanly (TLS: `close_notify`); best effort, before the socket is
    /// dropped.
    fn close(&mut self) -> impl Future<Output = ()>;

    /// Who the verified client certificate names (its subject CN, else its first SAN);
    /// `None` on plain TCP or when the client sent no certificate.
    fn peer_identity(&self) -> Option<&str>;
}

// === impl Stream for TcpStream ===

impl Stream for TcpStream {
    #[inline]
    async fn read_more(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        read_into(self, buf).await
    }

    #[inline]
    async fn readable(&mut self) -> io::Result<()> {
        TcpStream::readable(self, true).await
    }

    #[inline]
    async fn write_all(&mut self, buf: Bytes) -> io::Result<()> {
        AsyncWriteRentExt::write_all(self, buf).await.0.map(|_| ())
    }

    fn write_now(&mut self, parts: &Segments) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        if parts.is_empty() {
            return Ok(0);
        }
        match crate::runtime::sys::send_now(self.as_raw_fd(), parts) {
            Ok(n) => Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }

    async fn write_segments(&mut self, mut parts: Segments) -> io::Result<()> {
        use monoio::io::AsyncWriteRent;
        while !parts.is_empty() {
            let (res, back) = self.writev(crate::runtime::sys::IoSlices::new(parts)).await;
            parts = back.into_segments();
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => parts.advance(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[inline]
    async fn close(&mut self) {
        // Dropping the socket closes it; a FIN needs no extra round trip here.
    }

    #[inline]
    fn peer_identity(&self) -> Option<&str> {
        None
    }
}

/// Most parts a [`Segments`] holds.
pub const MAX_SEGMENTS: usize = 8;

/// Up to [`MAX_SEGMENTS`] buffers written as one ([`Stream::write_segments`]), held inline:
/// making one allocates nothing.
#[derive(Debug, Default)]
pub struct Segments {
    parts: [Bytes; MAX_SEGMENTS],
    /// First part not yet written whole.
    first: u8,
    /// Parts held.
    n: u8,
}

impl Clone for Segments {
    /// The parts not yet written (the rest stay empty: no call per unused slot).
    fn clone(&self) -> Self {
        let mut out = Segments::default();
        for p in self.iter() {
            out.push(p.clone());
        }
        out
    }
}

impl Segments {
    /// Appends `b` (an empty one is skipped). Past [`MAX_SEGMENTS`], it is joined to the last
    /// part (a copy), so nothing is ever lost.
    pub fn push(&mut self, b: Bytes) {
        if b.is_empty() {
            return;
        }
        let n = usize::from(self.n);
        if let Some(slot) = self.parts.get_mut(n) {
            *slot = b;
            self.n += 1;
        } else if let Some(last) = self.parts.last_mut() {
            let mut joined = BytesMut::with_capacity(last.len() + b.len());
            joined.extend_from_slice(last);
            joined.extend_from_slice(&b);
            *last = joined.freeze();
        }
    }

    /// The parts not yet written.
    pub fn iter(&self) -> impl Iterator<Item = &Bytes> {
        self.parts
            .get(usize::from(self.first)..usize::from(self.n))
            .unwrap_or_default()
            .iter()
    }

    /// Bytes not yet written.
    pub fn len(&self) -> usize {
        self.iter().map(Bytes::len).sum()
    }

    /// Whether everything has been written.
    pub fn is_empty(&self) -> bool {
        self.first >= self.n
    }

    /// Marks the first `n` bytes written.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(p) = self.parts.get_mut(usize::from(self.first)) else {
                return;
            };
            if n < p.len() {
                bytes::Buf::advance(p, n);
                return;
            }
            n -= p.len();
            *p = Bytes::new();
            self.first += 1;
        }
    }

    /// All the parts in one buffer: the only part as it is, else joined (a copy).
    pub fn into_bytes(self) -> Bytes {
        if self.n.saturating_sub(self.first) == 1 {
            self.parts
                .into_iter()
                .nth(usize::from(self.first))
                .unwrap_or_default()
        } else {
            self.concat()
        }
    }

    /// All the parts in one buffer (a copy; for streams that take one).
    pub fn concat(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(self.len());
        for p in self.iter() {
            out.extend_from_slice(p);
        }
        out.freeze()
    }
}

impl From<Bytes> for Segments {
    fn from(b: Bytes) -> Self {
        let mut s = Segments::default();
        s.push(b);
        s
    }
}

/// Reads into the spare capacity of `buf` (grown when nearly full).
///
/// monoio reads into a buffer from its start, so the read goes through a `SliceMut` that
/// begins at the current length. The buffer moves into the read: if the read is cancelled
/// (a timeout), `buf` is left empty and without capacity.
pub(crate) async fn read_into<R: AsyncReadRent>(
    conn: &mut R,
    buf: &mut BytesMut,
) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_MIN {
        buf.reserve(READ_GROW);
    }
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let (res, slice) = conn.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}
