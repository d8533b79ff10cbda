//! Floods of garbage (random bytes, truncated headers, compression loops, responses sent as
//! queries, oversized datagrams) while a well-behaved client keeps asking.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kdns_net::{ClientError, exchange_tcp, exchange_udp};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::connections::connect_from;
use crate::support::{Answers, GUARD, config, query, start};

/// One piece of garbage of kind `i % 6`.
fn garbage(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    let id: u16 = rng.random();
    let mut header = id.to_be_bytes().to_vec();
    match i % 6 {
        // Random bytes of any length a datagram can have here, including none.
        0 => (0..rng.random_range(0..600))
            .map(|_| rng.random())
            .collect(),
        // A header cut short.
        1 => (0..rng.random_range(1..12)).map(|_| rng.random()).collect(),
        // A question whose name is a compression pointer to itself.
        2 => {
            header.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            header.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            header
        }
        // Two pointers pointing at each other.
        3 => {
            header.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
            header.extend_from_slice(&[1, b'a', 0xc0, 16, 0xc0, 12, 0, 1, 0, 1]);
            header
        }
        // A response sent to the server as if it were a query.
        4 => {
            let mut response = query("flood.example");
            response.metadata.message_type = hickory_proto::op::MessageType::Response;
            response.to_vec().expect("encodes")
        }
        // A valid header claiming 65535 questions, then noise.
        _ => {
            header.extend_from_slice(&[1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0]);
            header.extend((0..64).map(|_| rng.random::<u8>()));
            header
        }
    }
}

/// Asks over UDP, retrying a datagram lost to a full socket buffer, as any real client does.
/// Returns the tries it took.
async fn ask_with_retries(server: SocketAddr, name: &str) -> usize {
    for attempt in 1..=10 {
        match exchange_udp(server, &query(name), Duration::from_secs(1)).await {
            Ok(reply) => {
                assert_eq!(reply.answers.len(), 1, "{name}");
                return attempt;
            }
            Err(ClientError::Timeout { .. }) => {}
            Err(error) => panic!("{name}: {error}"),
        }
    }
    panic!("{name} was never answered during the flood");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_garbage_flood_leaves_a_well_behaved_client_answered() {
    let server = start(Answers::new(1), config()).await;
    let addr = server.addr;
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();

    // A fixed amount of garbage, so the outcome does not depend on how long the good client
    // takes; the good client keeps asking until all of it is sent.
    const PER_FLOODER: usize = 80 * 64;
    let flooding = Arc::new(AtomicUsize::new(4));
    let mut flooders = Vec::new();
    for f in 0..4 {
        let stop = stop.clone();
        let flooding = flooding.clone();
        flooders.push(tokio::spawn(async move {
            let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
                .await
                .expect("bind");
            let mut sent = 0usize;
            while sent < PER_FLOODER && !stop.is_cancelled() {
                let batch: Vec<Vec<u8>> = {
                    let mut rng = rand::rng();
                    (0..64).map(|i| garbage(&mut rng, sent + i + f)).collect()
                };
                for datagram in batch {
                    let _ = socket.send_to(&datagram, addr).await;
                }
                sent += 64;
                // About 16,000 datagrams per second per flooder: a flood, not a measure of
                // how fast a debug build can receive.
                tokio::time::sleep(Duration::from_millis(4)).await;
            }
            flooding.fetch_sub(1, Ordering::SeqCst);
            sent
        }));
    }

    let started = Instant::now();
    let (mut asked, mut tries) = (0, 0);
    while asked < 100 || flooding.load(Ordering::SeqCst) > 0 {
        tries += ask_with_retries(addr, &format!("good{asked}.example")).await;
        asked += 1;
    }
    let elapsed = started.elapsed();
    stop.cancel();
    let mut sent = 0;
    for flooder in flooders {
        sent += flooder.await.expect("no panic");
    }
    let stats = &server.stats;
    let dropped = stats.dropped.load(Ordering::Relaxed);
    let formerr = stats.formerr.load(Ordering::Relaxed);
    eprintln!(
        "{asked} good queries in {elapsed:?} with {tries} tries, against {sent} garbage \
         datagrams ({dropped} dropped, {formerr} FORMERR)"
    );
    assert_eq!(sent, 4 * PER_FLOODER, "the whole flood was sent");
    assert!(
        dropped > 0 && formerr > 0,
        "the garbage was seen and refused"
    );
    // The server is still serving afterwards.
    let reply = exchange_udp(addr, &query("after.example"), GUARD)
        .await
        .expect("answered after the flood");
    assert_eq!(reply.answers.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_garbage_flood_leaves_a_well_behaved_client_answered() {
    let server = start(Answers::new(1), config()).await;
    let addr = server.addr;
    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();

    const CONNECTIONS: usize = 500;
    let flooder = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut connections = 0usize;
            while connections < CONNECTIONS && !stop.is_cancelled() {
                let bytes: Vec<u8> = {
                    let mut rng = rand::rng();
                    let junk = garbage(&mut rng, connections);
                    // Half framed junk, half unframed noise.
                    if connections.is_multiple_of(2) {
                        let len = u16::try_from(junk.len()).expect("short");
                        [len.to_be_bytes().as_slice(), &junk].concat()
                    } else {
                        junk
                    }
                };
                // From another address than the good client's: one client's flood is held to
                // its own per-client connection cap.
                if let Ok(mut stream) = connect_from(Ipv4Addr::new(127, 1, 0, 1), addr).await {
                    let _ = stream.write_all(&bytes).await;
                }
                connections += 1;
            }
            connections
        })
    };

    // The good client keeps asking until the whole flood is sent.
    let started = Instant::now();
    let mut asked = 0;
    while asked < 50 || !flooder.is_finished() {
        let reply = exchange_tcp(addr, &query(&format!("good{asked}.example")), GUARD)
            .await
            .expect("the well-behaved TCP client is answered during the flood");
        assert_eq!(reply.answers.len(), 1);
        asked += 1;
    }
    let elapsed = started.elapsed();
    let connections = flooder.await.expect("no panic");
    eprintln!("{asked} good TCP queries in {elapsed:?}, against {connections} garbage connections");
    assert_eq!(connections, CONNECTIONS, "the whole flood was sent");
}
