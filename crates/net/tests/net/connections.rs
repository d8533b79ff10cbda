//! TCP connection abuse: ten thousand connections, slowloris clients, and what a well-behaved
//! client sees meanwhile. Loopback has all of 127.0.0.0/8, so "many clients" are many source
//! addresses.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kdns_net::{ServerConfig, exchange_tcp, exchange_udp};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Answers, GUARD, assert_closed, eventually, patient_config, query, start, tcp_ask,
};

/// Opens a TCP connection to `server` from `ip` (any address in 127.0.0.0/8 works on loopback).
pub async fn connect_from(ip: Ipv4Addr, server: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind((ip, 0).into())?;
    socket.connect(server).await
}

/// The `i`th attacker address, in 127.1.0.0/16.
fn attacker(i: usize) -> Ipv4Addr {
    let i = u16::try_from(i).expect("a small index");
    let [hi, lo] = i.to_be_bytes();
    Ipv4Addr::new(127, 1, hi, lo.max(1))
}

/// Whether the server has closed `stream` (EOF or reset), waiting at most a moment.
async fn closed_by_server(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(Duration::from_millis(1), stream.peek(&mut buf)).await {
        Ok(Ok(_) | Err(_)) => true,
        Err(_) => false,
    }
}

/// A well-behaved client from 127.0.0.1: ten queries over UDP and ten over TCP, each on a
/// fresh socket, every one answered.
async fn well_behaved_client(server: SocketAddr) {
    for i in 0..10 {
        let name = format!("udp{i}.example");
        let reply = exchange_udp(server, &query(&name), GUARD)
            .await
            .expect("a UDP client is answered");
        assert_eq!(reply.answers.len(), 1);
        let name = format!("tcp{i}.example");
        let reply = exchange_tcp(server, &query(&name), GUARD)
            .await
            .expect("a TCP client is answered");
        assert_eq!(reply.answers.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_tcp_connections_leave_udp_and_tcp_clients_answered() {
    const ATTACKERS: usize = 10_000;
    // The attackers' sockets, the server's side of up to 1024 of them, and slack.
    let wanted = u64::try_from(ATTACKERS).expect("fits") + 2_048;
    let limit = match rlimit::increase_nofile_limit(wanted) {
        Ok(limit) => limit,
        Err(error) => {
            eprintln!("SKIPPED: cannot raise the open-files limit: {error}");
            return;
        }
    };
    if limit < wanted {
        eprintln!(
            "SKIPPED: the open-files hard limit is {limit}, this test needs {wanted} descriptors"
        );
        return;
    }

    // What dnsmasq-rs runs with on port 53, except that any connection may be reclaimed at
    // once (rather than after 1 s) so the outcome does not depend on how fast this machine is.
    let config = ServerConfig {
        tcp_reclaim_after: Some(Duration::ZERO),
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let addr = server.addr;

    // 100 connections from each of 100 addresses: 64 per address fit the per-client cap, and
    // 6400 are far over the total cap of 1024.
    let started = Instant::now();
    let attackers: Vec<TcpStream> = futures::stream::iter(0..ATTACKERS)
        .map(|i| connect_from(attacker(i / 100 + 1), addr))
        // Few enough at once that the listen backlog never overflows: a handshake the kernel
        // had to drop would leave a connection the server has not seen yet.
        .buffer_unordered(64)
        .filter_map(|connected| async move { connected.ok() })
        .collect()
        .await;
    let connected = attackers.len();
    eprintln!(
        "{connected} of {ATTACKERS} attacker connections made in {:?}",
        started.elapsed()
    );
    assert!(
        connected >= ATTACKERS * 9 / 10,
        "the kernel completes the handshakes"
    );

    let client = Instant::now();
    tokio::time::timeout(GUARD * 3, well_behaved_client(addr))
        .await
        .expect("the well-behaved client finishes");
    eprintln!("20 well-behaved queries answered in {:?}", client.elapsed());

    // The server closes refused and reclaimed connections at once; what stays open is
    // within the total cap.
    let deadline = Instant::now() + GUARD;
    let open = loop {
        let mut open = 0;
        for stream in &attackers {
            open += usize::from(!closed_by_server(stream).await);
        }
        if open <= 1024 || Instant::now() > deadline {
            break open;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("{open} attacker connections still open");
    assert!(open <= 1024, "{open} connections held open");
    let rejected = server.stats.tcp_rejected.load(Ordering::Relaxed);
    let reclaimed = server.stats.tcp_reclaimed.load(Ordering::Relaxed);
    eprintln!("per-client cap rejected {rejected}, total cap reclaimed {reclaimed}");
    assert!(
        rejected >= 3_000,
        "each address is held to 64 connections ({rejected} rejected)"
    );
    assert!(
        reclaimed >= 1_000,
        "the total cap held ({reclaimed} reclaimed)"
    );
    assert_eq!(server.stats.tcp_requests.load(Ordering::Relaxed), 10);
    drop(attackers);
}

#[tokio::test]
async fn at_the_total_cap_a_new_connection_replaces_the_stalest_one() {
    let config = ServerConfig {
        max_tcp_connections: 2,
        tcp_reclaim_after: Some(Duration::ZERO),
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let mut busy = TcpStream::connect(server.addr).await.expect("connect");
    tcp_ask(&mut busy, "busy.example").await;
    let mut stale = TcpStream::connect(server.addr).await.expect("connect");
    tcp_ask(&mut stale, "stale.example").await;
    // `busy` completes a message after `stale` did, so `stale` is now the stalest.
    tcp_ask(&mut busy, "busy-again.example").await;

    let mut newcomer = TcpStream::connect(server.addr).await.expect("connect");
    assert_eq!(tcp_ask(&mut newcomer, "new.example").await.answers.len(), 1);
    assert_closed(&mut stale).await;
    assert_eq!(tcp_ask(&mut busy, "still.example").await.answers.len(), 1);
    assert_eq!(server.stats.tcp_reclaimed.load(Ordering::Relaxed), 1);
    assert_eq!(server.stats.tcp_rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn at_the_total_cap_without_a_connection_stale_enough_the_new_one_is_closed() {
    let config = ServerConfig {
        max_tcp_connections: 2,
        tcp_reclaim_after: Some(Duration::from_secs(3600)),
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let mut first = TcpStream::connect(server.addr).await.expect("connect");
    tcp_ask(&mut first, "one.example").await;
    let mut second = TcpStream::connect(server.addr).await.expect("connect");
    tcp_ask(&mut second, "two.example").await;

    let mut third = TcpStream::connect(server.addr).await.expect("connect");
    assert_closed(&mut third).await;
    assert_eq!(server.stats.tcp_rejected.load(Ordering::Relaxed), 1);
    assert_eq!(server.stats.tcp_reclaimed.load(Ordering::Relaxed), 0);
    assert_eq!(tcp_ask(&mut first, "again.example").await.answers.len(), 1);
}

/// Dribbles a frame that claims 300 bytes, one junk byte every 50 ms, until the server closes
/// the connection or `stop` fires. Returns whether the server closed it without replying.
async fn slowloris(mut stream: TcpStream, stop: CancellationToken) -> bool {
    if stream.write_all(&[1, 44]).await.is_err() {
        return true;
    }
    loop {
        tokio::select! {
            () = stop.cancelled() => return false,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if stream.write_all(b"x").await.is_err() || closed_by_server(&stream).await {
            return true;
        }
    }
}

#[tokio::test]
async fn slowloris_clients_are_cut_off_and_cannot_starve_a_well_behaved_client() {
    // Production caps (1024 total, 64 per client) scaled down, with dnsmasq-rs's reclaiming.
    let config = ServerConfig {
        max_tcp_connections: 64,
        max_tcp_connections_per_ip: 8,
        tcp_idle_timeout: Duration::from_millis(500),
        tcp_reclaim_after: Some(Duration::ZERO),
        ..ServerConfig::default()
    };
    let server = start(Answers::new(1), config).await;
    let addr = server.addr;
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();

    // 20 addresses × 10 connections: over both the per-client and the total cap.
    let mut dribblers = Vec::new();
    for i in 0..200 {
        let stream = connect_from(attacker(i / 10 + 1), addr)
            .await
            .expect("connect");
        dribblers.push(tokio::spawn(slowloris(stream, stop.clone())));
    }

    let started = Instant::now();
    for i in 0..20 {
        let reply = exchange_tcp(addr, &query(&format!("good{i}.example")), GUARD)
            .await
            .expect("the well-behaved client is answered during the attack");
        assert_eq!(reply.answers.len(), 1);
    }
    eprintln!(
        "20 TCP queries answered during the attack in {:?}",
        started.elapsed()
    );

    let mut cut_off = 0;
    for dribbler in dribblers {
        let closed = tokio::time::timeout(GUARD, dribbler)
            .await
            .expect("every slowloris connection is closed by the server")
            .expect("no panic");
        cut_off += usize::from(closed);
    }
    assert_eq!(cut_off, 200);
    let stats = &server.stats;
    eprintln!(
        "rejected {}, reclaimed {}, timed out {}",
        stats.tcp_rejected.load(Ordering::Relaxed),
        stats.tcp_reclaimed.load(Ordering::Relaxed),
        stats.tcp_timeouts.load(Ordering::Relaxed)
    );
    assert_eq!(
        stats.tcp_requests.load(Ordering::Relaxed),
        20,
        "no slowloris frame was ever taken as a request"
    );
}

#[tokio::test]
async fn a_slowloris_client_at_its_per_client_cap_leaves_other_clients_alone() {
    // kdns-net's defaults, without reclaiming: the per-client cap is the defence.
    let config = ServerConfig {
        max_tcp_connections_per_ip: 8,
        ..patient_config()
    };
    let server = start(Answers::new(1), config).await;
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let mut held = Vec::new();
    for _ in 0..50 {
        let stream = connect_from(Ipv4Addr::new(127, 1, 0, 1), server.addr)
            .await
            .expect("connect");
        held.push(tokio::spawn(slowloris(stream, stop.clone())));
    }
    eventually("the per-client cap turns away all but 8", || {
        server.stats.tcp_rejected.load(Ordering::Relaxed) == 42
    })
    .await;
    let mut other = connect_from(Ipv4Addr::new(127, 0, 0, 1), server.addr)
        .await
        .expect("connect");
    assert_eq!(tcp_ask(&mut other, "other.example").await.answers.len(), 1);
}
