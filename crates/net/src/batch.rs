//! Batched UDP I/O: up to [`BATCH`] datagrams per system call (`recvmmsg`, `sendmmsg`).
//!
//! A busy server then crosses into the kernel once per batch instead of twice per query, which
//! on loopback is most of what a cache hit costs. Under light load a batch is one datagram and
//! nothing changes.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Datagrams taken per receive call and replies handed over per send call.
pub(crate) const BATCH: usize = 32;

/// Buffers for one batch of received datagrams, reused from batch to batch.
pub(crate) struct RecvBatch {
    /// `BATCH` slots of `slot_len` bytes.
    buffers: Box<[u8]>,
    slot_len: usize,
    /// Length and sender of each datagram of the last batch.
    received: Vec<(usize, Option<SocketAddr>)>,
}

impl RecvBatch {
    /// Room for `BATCH` datagrams of up to `slot_len` bytes each.
    pub(crate) fn new(slot_len: usize) -> Self {
        Self {
            buffers: vec![0; BATCH * slot_len].into_boxed_slice(),
            slot_len,
            received: Vec::with_capacity(BATCH),
        }
    }

    /// Receives what is waiting on `socket`, up to `BATCH` datagrams, without blocking.
    /// `WouldBlock` when nothing waits (and the socket's readiness is cleared, so awaiting
    /// `readable` again is right). Returns how many arrived.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let fd = socket.as_raw_fd();
        let Self {
            buffers,
            slot_len,
            received,
        } = self;
        received.clear();
        socket.try_io(Interest::READABLE, || {
            // Allocated per call: the headers hold raw pointers, so they cannot live in a
            // future that moves between threads. One allocation per batch is cheap.
            let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
            let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
                .chunks_mut(*slot_len)
                .map(|slot| [IoSliceMut::new(slot)])
                .collect();
            let results = recvmmsg(
                fd,
                &mut headers,
                slices.iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            )?;
            received.extend(
                results.map(|message| (message.bytes, message.address.and_then(socket_addr))),
            );
            Ok(received.len())
        })
    }

    /// The datagrams of the last batch: bytes (possibly cut at the slot length; check it) and
    /// sender, which is `None` only for an address family that UDP cannot produce.
    pub(crate) fn datagrams(&self) -> impl Iterator<Item = (&[u8], Option<SocketAddr>)> {
        self.buffers
            .chunks(self.slot_len)
            .zip(&self.received)
            .map(|(slot, &(len, src))| (&slot[..len.min(slot.len())], src))
    }
}

/// Hands `replies` to the kernel in one call, without blocking. Returns how many went (at
/// least one); `WouldBlock` when the socket's send buffer is full. Any other error concerns
/// the first reply, which the caller should skip.
pub(crate) fn send(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    let fd = socket.as_raw_fd();
    let replies = &replies[..replies.len().min(BATCH)];
    socket.try_io(Interest::WRITABLE, || {
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
        let slices: Vec<[IoSlice<'_>; 1]> = replies
            .iter()
            .map(|(reply, _)| [IoSlice::new(reply)])
            .collect();
        let addrs: Vec<Option<SockaddrStorage>> = replies
            .iter()
            .map(|&(_, dst)| Some(SockaddrStorage::from(dst)))
            .collect();
        let results = sendmmsg(
            fd,
            &mut headers,
            &slices,
            &addrs,
            [],
            MsgFlags::MSG_DONTWAIT,
        )?;
        Ok(results.count().max(1))
    })
}

fn socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddrV6::from(*v6).into())
}
