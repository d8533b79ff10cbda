//! The upstream pool against real servers: failover, counters, parallel asking.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use kdns_net::{PoolError, Upstream, UpstreamPool};
use tokio::net::UdpSocket;

use crate::support::{Answers, config, query, start};

#[tokio::test]
async fn a_silent_server_fails_over_to_the_next_and_is_counted_and_marked_down() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let good = start(Answers::new(1), config()).await;
    let pool = UpstreamPool::new(
        vec![
            Arc::new(Upstream::new(silent.local_addr().expect("address"), false)),
            Arc::new(Upstream::new(good.addr, false)),
        ],
        Duration::from_millis(200),
    );
    let answer = pool
        .exchange(&query("failover.example"))
        .await
        .expect("an answer");
    assert_eq!(answer.server, good.addr);
    assert_eq!(answer.attempts.len(), 2);
    assert_eq!(answer.attempts[0].rcode, None);
    let [first, second] = pool.servers() else {
        panic!("two servers");
    };
    assert_eq!((first.queries(), first.failures()), (1, 1));
    assert_eq!((second.queries(), second.failures()), (1, 0));
    assert!(first.is_down(tokio::time::Instant::now()));
    assert_eq!(pool.order(tokio::time::Instant::now())[0].addr(), good.addr);
}

#[tokio::test]
async fn asking_in_parallel_takes_the_answer_that_comes() {
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let good = start(Answers::new(1), config()).await;
    let pool = UpstreamPool::new(
        vec![
            Arc::new(Upstream::new(silent.local_addr().expect("address"), false)),
            Arc::new(Upstream::new(good.addr, false)),
        ],
        Duration::from_secs(30),
    )
    .parallel(true);
    let answer = tokio::time::timeout(
        crate::support::GUARD,
        pool.exchange(&query("parallel.example")),
    )
    .await
    .expect("the answering server is not held up by the silent one")
    .expect("an answer");
    assert_eq!(answer.server, good.addr);
}

#[tokio::test]
async fn an_empty_pool_or_all_silent_servers_are_errors() {
    let empty = UpstreamPool::new(Vec::new(), Duration::from_millis(50));
    assert!(matches!(
        empty.exchange(&query("x.example")).await,
        Err(PoolError::NoServers)
    ));
    let silent = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind");
    let pool = UpstreamPool::new(
        vec![Arc::new(Upstream::new(
            silent.local_addr().expect("address"),
            false,
        ))],
        Duration::from_millis(50),
    );
    let Err(PoolError::AllFailed {
        attempts,
        last_reply,
    }) = pool.exchange(&query("x.example")).await
    else {
        panic!("expected every attempt to fail");
    };
    assert_eq!(attempts.len(), 1);
    assert!(last_reply.is_none());
}
