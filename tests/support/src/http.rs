//! A plain HTTP/1.0 GET for tests that talk to the binaries' HTTP endpoints over real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `GET path` from `addr`: the status code and the body. HTTP/1.0, so the server closes the
/// connection and never chunks the body. Status 0 when nothing answers within 10 seconds (a
/// server that is down is something tests look for, not a test failure in itself).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&response).into_owned())
    };
    let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(10), exchange).await else {
        return (0, String::new());
    };
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}
