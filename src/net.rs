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
/// How much a read buffer grows when it is nearly full, bytes.
const READ_GROW: usize = 16 << 10;

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

    #[inline]
    async fn close(&mut self) {
        // Dropping the socket closes it; a FIN needs no extra round trip here.
    }

    #[inline]
    fn peer_identity(&self) -> Option<&str> {
        None
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
