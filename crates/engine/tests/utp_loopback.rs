//! The uTP driver over real UDP sockets on 127.0.0.1: transfers both ways, connect timeout, a
//! vanished peer, and the hook for datagrams that are not uTP. Every wait is bounded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::RngCore;
use shoal_engine::clock::Clock;
use shoal_engine::{UtpEndpoint, UtpStream};
use shoal_utp::SocketConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::rng().fill_bytes(&mut v);
    v
}

async fn pair(a: &UtpEndpoint, b: &UtpEndpoint) -> (UtpStream, UtpStream) {
    let (connected, accepted) = tokio::join!(a.connect(b.local_addr()), b.accept());
    let (accepted, from) = accepted.expect("accept");
    assert_eq!(from, a.local_addr());
    (connected.expect("connect"), accepted)
}

/// Writes `data`, shuts down, and reads until EOF; returns what was read.
async fn exchange(stream: UtpStream, data: Vec<u8>) -> Vec<u8> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let writer = async move {
        wr.write_all(&data).await.expect("write");
        wr.shutdown().await.expect("shutdown");
        wr
    };
    let reader = async move {
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.expect("read");
        (rd, got)
    };
    let (_wr, (_rd, got)) = tokio::join!(writer, reader);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_both_ways_and_ends_with_eof() {
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let b = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let (sa, sb) = timeout(Duration::from_secs(10), pair(&a, &b))
        .await
        .expect("connect in time");
    let big = random_bytes(8 << 20);
    let small = random_bytes(1 << 20);
    let start = Instant::now();
    let (got_b, got_a) = timeout(Duration::from_secs(120), async {
        tokio::join!(
            tokio::spawn(exchange(sa, big.clone())),
            tokio::spawn(exchange(sb, small.clone()))
        )
    })
    .await
    .expect("transfer in time");
    let elapsed = start.elapsed();
    let (got_b, got_a) = (got_b.unwrap(), got_a.unwrap());
    // `got_b` is what a read: b's 1 MiB; `got_a` is what b read: a's 8 MiB.
    assert_eq!(got_b.len(), small.len());
    assert!(got_b == small, "1 MiB b -> a differs");
    assert_eq!(got_a.len(), big.len());
    assert!(got_a == big, "8 MiB a -> b differs");
    println!(
        "uTP loopback: 8 MiB one way + 1 MiB the other in {:.2} s: {:.1} MB/s (8 MiB direction)",
        elapsed.as_secs_f64(),
        (8 << 20) as f64 / 1e6 / elapsed.as_secs_f64()
    );
}

#[tokio::test]
async fn connect_to_silent_address_times_out() {
    // A bound UDP socket that never answers.
    let silent = UdpSocket::bind(localhost()).await.unwrap();
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let start = Instant::now();
    // The default SYN gives up after 1 + 2 + 4 = 7 s.
    let r = timeout(
        Duration::from_secs(20),
        a.connect(silent.local_addr().unwrap()),
    )
    .await
    .expect("connect must fail within the SYN timeout");
    let err = r.expect_err("nobody answered");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    assert!(start.elapsed() >= Duration::from_secs(3));
}

/// Keeps writing until an error; returns it.
async fn write_until_error(mut s: UtpStream) -> std::io::Error {
    let chunk = vec![7u8; 64 << 10];
    loop {
        if let Err(e) = s.write_all(&chunk).await {
            return e;
        }
    }
}

#[tokio::test]
async fn peer_endpoint_dropped_mid_transfer_errors() {
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let b = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let (sa, mut sb) = timeout(Duration::from_secs(10), pair(&a, &b))
        .await
        .expect("connect in time");
    let writer = tokio::spawn(write_until_error(sa));
    // b reads a little, then its whole endpoint goes away (streams included).
    let mut buf = vec![0u8; 256 << 10];
    timeout(Duration::from_secs(10), sb.read_exact(&mut buf))
        .await
        .expect("data flows")
        .unwrap();
    drop(b);
    let err = timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer must not hang")
        .unwrap();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // b's own stream fails too, promptly.
    let r = timeout(Duration::from_secs(5), sb.read(&mut buf))
        .await
        .expect("b's stream must not hang");
    assert!(r.is_err());
}

#[test]
fn peer_vanishing_without_a_word_times_out() {
    // b runs on its own runtime, which is then shut down under it: no RESET, just silence.
    let b_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let b = b_rt.block_on(async { UtpEndpoint::bind(localhost(), Clock::new()).unwrap() });
    let b_addr = b.local_addr();
    let b_thread = std::thread::spawn(move || {
        b_rt.block_on(async move {
            let (mut s, _) = b.accept().await.unwrap();
            let mut buf = vec![0u8; 256 << 10];
            s.read_exact(&mut buf).await.unwrap();
            // Vanish: leak the stream and endpoint so nothing closes them, then drop the
            // runtime (its task dies without sending anything).
            std::mem::forget(s);
            std::mem::forget(b);
        });
        b_rt.shutdown_background();
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
        let sa = timeout(Duration::from_secs(10), a.connect(b_addr))
            .await
            .expect("connect in time")
            .unwrap();
        let err = timeout(Duration::from_secs(60), write_until_error(sa))
            .await
            .expect("the writer must notice the silence");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
    });
    b_thread.join().unwrap();
}

#[tokio::test]
async fn other_datagrams_go_to_the_hook() {
    let (tx, mut rx) = mpsc::channel(8);
    let a = UtpEndpoint::bind_with(localhost(), Clock::new(), SocketConfig::default(), Some(tx))
        .unwrap();
    let b = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let dht = UdpSocket::bind(localhost()).await.unwrap();
    let krpc = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
    dht.send_to(krpc, a.local_addr()).await.unwrap();
    let (from, got) = timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("hook gets it")
        .unwrap();
    assert_eq!(from, dht.local_addr().unwrap());
    assert_eq!(&got[..], &krpc[..]);
    // uTP on the same socket still works, and its datagrams do not reach the hook.
    let (mut sa, mut sb) = timeout(Duration::from_secs(10), pair(&b, &a))
        .await
        .expect("connect in time");
    sa.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    timeout(Duration::from_secs(5), sb.read_exact(&mut buf))
        .await
        .expect("read in time")
        .unwrap();
    assert_eq!(&buf, b"hello");
    assert!(rx.try_recv().is_err());
    // And the endpoint can answer on the shared socket.
    a.send_other(b"d1:y1:re", dht.local_addr().unwrap())
        .await
        .unwrap();
    let mut back = [0u8; 16];
    let (n, _) = timeout(Duration::from_secs(5), dht.recv_from(&mut back))
        .await
        .expect("answer in time")
        .unwrap();
    assert_eq!(&back[..n], b"d1:y1:re");
    sa.shutdown().await.unwrap();
}

#[tokio::test]
async fn dropping_a_stream_closes_the_connection() {
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let b = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let (mut sa, mut sb) = timeout(Duration::from_secs(10), pair(&a, &b))
        .await
        .expect("connect in time");
    sa.write_all(b"last words").await.unwrap();
    drop(sa);
    // The data written before the drop arrives, then EOF.
    let mut got = Vec::new();
    timeout(Duration::from_secs(10), sb.read_to_end(&mut got))
        .await
        .expect("EOF in time")
        .unwrap();
    assert_eq!(got, b"last words");
    // The other direction is closed on a's side: b's writes are read and discarded there, and
    // b's FIN ends the connection.
    sb.write_all(b"unheard").await.unwrap();
    sb.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_reader_that_stops_reading_stalls_the_writer() {
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let b = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let (mut sa, mut sb) = timeout(Duration::from_secs(10), pair(&a, &b))
        .await
        .expect("connect in time");
    // b does not read: a's writes stop once b's receive window and a's send buffer are full.
    let chunk = vec![1u8; 64 << 10];
    let mut written = 0usize;
    while let Ok(r) = timeout(Duration::from_millis(500), sa.write_all(&chunk)).await {
        r.unwrap();
        written += chunk.len();
        assert!(written <= 8 << 20, "writes never stalled");
    }
    // The default buffers: 1 MiB each side, plus the chunk in progress.
    assert!(
        written <= (2 << 20) + chunk.len(),
        "{written} bytes buffered"
    );
    // Reading resumes the flow.
    let writer = tokio::spawn(async move {
        sa.write_all(&chunk).await.unwrap();
        sa.shutdown().await.unwrap();
        sa
    });
    let mut got = Vec::new();
    timeout(Duration::from_secs(20), sb.read_to_end(&mut got))
        .await
        .expect("flow resumes")
        .unwrap();
    assert!(
        got.len() >= written + (64 << 10),
        "{} of {written}",
        got.len()
    );
    timeout(Duration::from_secs(5), writer)
        .await
        .expect("writer done")
        .unwrap();
}

#[tokio::test]
async fn many_connections_at_once() {
    let a = UtpEndpoint::bind(localhost(), Clock::new()).unwrap();
    let b = std::sync::Arc::new(UtpEndpoint::bind(localhost(), Clock::new()).unwrap());
    let n = 16;
    let server = {
        let b = b.clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for _ in 0..n {
                let (mut s, _) = b.accept().await.unwrap();
                tasks.push(tokio::spawn(async move {
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).await.unwrap();
                    s.write_all(&got).await.unwrap();
                    s.shutdown().await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let b_addr = b.local_addr();
    let a = std::sync::Arc::new(a);
    let mut clients = tokio::task::JoinSet::new();
    for i in 0..n {
        let a = a.clone();
        clients.spawn(async move {
            let mut s = a.connect(b_addr).await.unwrap();
            let data = random_bytes(100_000 + i * 1000);
            s.write_all(&data).await.unwrap();
            s.shutdown().await.unwrap();
            let mut echo = Vec::new();
            s.read_to_end(&mut echo).await.unwrap();
            assert!(echo == data, "connection {i} echoed other bytes");
        });
    }
    timeout(Duration::from_secs(30), async {
        while let Some(r) = clients.join_next().await {
            r.unwrap();
        }
        server.await.unwrap();
    })
    .await
    .expect("all echoes in time");
}
