use std::sync::atomic::Ordering;
use std::time::Duration;

use kdns_net::{ServerConfig, exchange_udp};

use crate::support::{Answers, GUARD, config, eventually, query, start};

#[tokio::test]
async fn cancelling_the_token_makes_serve_return() {
    let server = start(Answers::new(1), config()).await;
    exchange_udp(server.addr, &query("up.example"), GUARD)
        .await
        .expect("serving");
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_request_in_flight_at_shutdown_is_still_answered() {
    let (handler, gate) = Answers::gated(1);
    let started = handler.started.clone();
    let server = start(handler, config()).await;
    let addr = server.addr;
    let client =
        tokio::spawn(async move { exchange_udp(addr, &query("late.example"), GUARD).await });
    eventually("the request reaches the handler", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    server.shutdown.cancel();
    gate.add_permits(1);
    let reply = client
        .await
        .expect("no panic")
        .expect("answered during shutdown");
    assert_eq!(reply.answers.len(), 1);
    server.stop().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_request_that_outlasts_the_grace_period_is_abandoned() {
    let (handler, _gate) = Answers::gated(1);
    let started = handler.started.clone();
    let config = ServerConfig {
        shutdown_grace: Duration::from_millis(50),
        ..config()
    };
    let server = start(handler, config).await;
    let addr = server.addr;
    let _client =
        tokio::spawn(async move { exchange_udp(addr, &query("stuck.example"), GUARD).await });
    eventually("the request reaches the handler", || {
        started.load(Ordering::SeqCst) == 1
    })
    .await;

    server
        .stop()
        .await
        .expect("serve returns despite the stuck request");
}

#[tokio::test]
async fn open_tcp_connections_do_not_hold_up_shutdown() {
    let server = start(Answers::new(1), crate::support::patient_config()).await;
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    crate::support::tcp_ask(&mut stream, "open.example").await;
    server.stop().await.expect("clean shutdown");
    crate::support::assert_closed(&mut stream).await;
}
