//! Batched UDP I/O: up to [`BATCH`] datagrams per system call (`recvmmsg`, `sendmmsg`).
//!
//! A busy server then crosses into the kernel once per batch instead of twice per query, which
//! on loopback is most of what a cache hit costs. Under light load a batch is one datagram and
//! nothing changes.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg, sendto};
use nix::{getsockopt_impl, setsockopt_impl, sockopt_impl};
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
        socket.try_io(Interest::READABLE, || {
            self.recv_from(socket.as_raw_fd(), MsgFlags::MSG_DONTWAIT)
        })
    }

    /// Receives up to `BATCH` datagrams from a blocking socket: waits for the first (up to the
    /// socket's read timeout, then `WouldBlock`) and takes what else is waiting at once.
    pub(crate) fn recv_blocking(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.recv_from(socket.as_raw_fd(), MsgFlags::MSG_WAITFORONE)
    }

    fn recv_from(&mut self, fd: RawFd, flags: MsgFlags) -> io::Result<usize> {
        let Self {
            buffers,
            slot_len,
            received,
        } = self;
        received.clear();
        // Allocated per call: the headers hold raw pointers, so they cannot live in a future
        // that moves between threads. One allocation per batch is cheap.
        let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut slices: Vec<[IoSliceMut<'_>; 1]> = buffers
            .chunks_mut(*slot_len)
            .map(|slot| [IoSliceMut::new(slot)])
            .collect();
        let results = recvmmsg(fd, &mut headers, slices.iter_mut(), flags, None)?;
        received
            .extend(results.map(|message| (message.bytes, message.address.and_then(socket_addr))));
        Ok(received.len())
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

/// The replies of one batch, in buffers kept from batch to batch, so that a reply written in
/// place (a cache hit) allocates nothing. Holds at most `BATCH` buffers, as a batch has at most
/// that many datagrams.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    slots: Vec<(Vec<u8>, SocketAddr)>,
    len: usize,
}

impl Replies {
    /// An empty buffer for the next reply: [`commit`](Self::commit) it once written, or leave
    /// it to be reused.
    pub(crate) fn buffer(&mut self) -> &mut Vec<u8> {
        if self.len == self.slots.len() {
            self.slots
                .push((Vec::new(), SocketAddr::from(([0, 0, 0, 0], 0))));
        }
        let buffer = &mut self.slots[self.len].0;
        buffer.clear();
        buffer
    }

    /// Adds the reply written to the last [`buffer`](Self::buffer), for `dst`.
    pub(crate) fn commit(&mut self, dst: SocketAddr) {
        self.slots[self.len].1 = dst;
        self.len += 1;
    }

    /// Adds a reply built elsewhere, in place of the next buffer.
    pub(crate) fn push(&mut self, reply: Vec<u8>, dst: SocketAddr) {
        if self.len == self.slots.len() {
            self.slots.push((reply, dst));
        } else {
            self.slots[self.len] = (reply, dst);
        }
        self.len += 1;
    }

    /// The replies added since the last [`clear`](Self::clear).
    pub(crate) fn ready(&self) -> &[(Vec<u8>, SocketAddr)] {
        &self.slots[..self.len]
    }

    /// Empties the list, keeping the buffers.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }
}

/// Hands `replies` to the kernel in one call, without blocking. Returns how many went (at
/// least one); `WouldBlock` when the socket's send buffer is full. Any other error concerns
/// the first reply, which the caller should skip.
pub(crate) fn send(socket: &UdpSocket, replies: &[(Vec<u8>, SocketAddr)]) -> io::Result<usize> {
    socket.try_io(Interest::WRITABLE, || {
        send_to(socket.as_raw_fd(), replies, MsgFlags::MSG_DONTWAIT)
    })
}

/// [`send`] on a blocking socket: waits for room in the send buffer, up to the socket's write
/// timeout (then `WouldBlock`).
pub(crate) fn send_blocking(
    socket: &impl AsRawFd,
    replies: &[(Vec<u8>, SocketAddr)],
) -> io::Result<usize> {
    send_to(socket.as_raw_fd(), replies, MsgFlags::empty())
}

/// Sends one datagram without blocking, whatever the socket's mode.
pub(crate) fn send_one(socket: &impl AsRawFd, reply: &[u8], dst: SocketAddr) -> io::Result<()> {
    sendto(
        socket.as_raw_fd(),
        reply,
        &SockaddrStorage::from(dst),
        MsgFlags::MSG_DONTWAIT,
    )?;
    Ok(())
}

fn send_to(fd: RawFd, replies: &[(Vec<u8>, SocketAddr)], flags: MsgFlags) -> io::Result<usize> {
    let replies = &replies[..replies.len().min(BATCH)];
    let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(replies.len(), None);
    let slices: Vec<[IoSlice<'_>; 1]> = replies
        .iter()
        .map(|(reply, _)| [IoSlice::new(reply)])
        .collect();
    let addrs: Vec<Option<SockaddrStorage>> = replies
        .iter()
        .map(|&(_, dst)| Some(SockaddrStorage::from(dst)))
        .collect();
    let results = sendmmsg(fd, &mut headers, &slices, &addrs, [], flags)?;
    Ok(results.count().max(1))
}

fn socket_addr(addr: SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = addr.as_sockaddr_in() {
        return Some(SocketAddrV4::from(*v4).into());
    }
    addr.as_sockaddr_in6()
        .map(|v6| SocketAddrV6::from(*v6).into())
}

sockopt_impl!(
    /// `IP_MTU_DISCOVER`: how IPv4 datagrams sent on the socket treat fragmentation.
    IpMtuDiscover,
    Both,
    libc::IPPROTO_IP,
    libc::IP_MTU_DISCOVER,
    usize
);

/// Sends the socket's IPv4 datagrams with DF set, never fragmented, whatever path MTU an ICMP
/// message claims (`IP_PMTUDISC_PROBE`), as RFC 9715 asks of DNS responders. Only for sockets
/// whose replies are capped at 1232 bytes, which fit any link that carries IPv6 (1280 bytes
/// less headers), so the cap is never above the interface MTU. It also spares the kernel
/// choosing a fragment ID for every datagram. IPv4 sockets only: IPv6 is never fragmented on
/// the way.
pub(crate) fn never_fragment(socket: &impl AsFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(socket, IpMtuDiscover, &(libc::IP_PMTUDISC_PROBE as usize))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn replies_keep_their_order_and_their_buffers() {
        let mut replies = Replies::default();
        replies.buffer().extend_from_slice(b"first");
        replies.commit(addr(1));
        replies.push(b"second".to_vec(), addr(2));
        // A buffer written but not committed is not a reply.
        replies.buffer().extend_from_slice(b"declined");
        replies.buffer().extend_from_slice(b"third");
        replies.commit(addr(3));
        let ready: Vec<_> = replies
            .ready()
            .iter()
            .map(|(bytes, dst)| (bytes.as_slice(), dst.port()))
            .collect();
        assert_eq!(
            ready,
            [(&b"first"[..], 1), (&b"second"[..], 2), (&b"third"[..], 3)]
        );

        let kept = replies.ready()[0].0.as_ptr();
        replies.clear();
        assert!(replies.ready().is_empty());
        let buffer = replies.buffer();
        assert!(buffer.is_empty(), "a reused buffer comes empty");
        assert_eq!(buffer.as_ptr(), kept, "and is the same allocation");
    }

    #[test]
    fn never_fragment_sets_df_regardless_of_path_mtu() {
        let socket = std::net::UdpSocket::bind(addr(0)).expect("bind");
        never_fragment(&socket).expect("setsockopt");
        let mode = nix::sys::socket::getsockopt(&socket, IpMtuDiscover).expect("getsockopt");
        assert_eq!(mode, libc::IP_PMTUDISC_PROBE as usize);
    }
}
