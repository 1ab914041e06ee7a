//! Latency and bandwidth of both transports, worker and client in one
//! process (two threads):
//!
//! ```text
//! cargo run --release -p tf-transport --example pingpong -- [--iters N] [--bulk-mb MB] [--size-mb MB] [--only tcp|shm]
//! ```
//!
//! Prints the p50/p99 of a null round trip (header only, both sides busy
//! polling, as during a stream of synchronous CUDA calls) and the bandwidth
//! of bulk copies chunked to `max_payload()`, in both directions: upload
//! (client → worker, the worker copies each chunk out of the transport into
//! its buffer, like a host-to-device copy) and download (worker → client,
//! the client copies each chunk into its buffer, like device-to-host).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tf_transport::{
    connect_native, connect_shmem, Connection, FrameHeader, NativeListener, ShmServer,
};

const OP_PING: u32 = 1;
/// Payload: a chunk to store; answered only when `request_id` is `LAST`.
const OP_UPLOAD: u32 = 2;
/// Payload: total bytes (u64). Answered by chunks of `max_payload()`.
const OP_DOWNLOAD: u32 = 3;
const OP_QUIT: u32 = 4;
const LAST: u64 = u64::MAX;
const FLAG_RESPONSE: u16 = 1;

struct Args {
    iters: usize,
    bulk_mb: usize,
    size_mb: u64,
    only: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        iters: 100_000,
        bulk_mb: 4096,
        size_mb: 256,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--iters" => a.iters = v().parse().expect("--iters N"),
            "--bulk-mb" => a.bulk_mb = v().parse().expect("--bulk-mb MB"),
            "--size-mb" => a.size_mb = v().parse().expect("--size-mb MB"),
            "--only" => a.only = Some(v()),
            other => panic!("unknown argument {other}; see the example's doc comment"),
        }
    }
    a
}

/// The worker's half: answers until OP_QUIT or the client leaves.
fn worker(mut conn: Connection) {
    let mut device = vec![0u8; 64 << 20];
    let source: Vec<u8> = (0..64usize << 20).map(|i| (i * 7) as u8).collect();
    let mut off = 0usize;
    loop {
        let mut download = 0u64;
        let r = conn.recv(|h, p| {
            match h.opcode {
                OP_UPLOAD => {
                    if off + p.len() > device.len() {
                        off = 0;
                    }
                    device[off..off + p.len()].copy_from_slice(p);
                    off += p.len();
                }
                OP_DOWNLOAD => download = u64::from_le_bytes(p[..8].try_into().unwrap()),
                _ => {}
            }
            h
        });
        let Ok(h) = r else { return };
        let reply = FrameHeader {
            flags: FLAG_RESPONSE,
            opcode: h.opcode,
            length: 0,
            request_id: h.request_id,
        };
        let sent = match h.opcode {
            OP_PING => conn.send(reply, &[]),
            OP_UPLOAD if h.request_id == LAST => conn.send(reply, &[]),
            OP_UPLOAD => Ok(()),
            OP_DOWNLOAD => {
                let chunk = conn.max_payload();
                let mut left = download as usize;
                let mut src = 0usize;
                let mut res = Ok(());
                while left > 0 && res.is_ok() {
                    let n = left.min(chunk);
                    if src + n > source.len() {
                        src = 0;
                    }
                    res = conn.send(reply, &[&source[src..src + n]]);
                    src += n;
                    left -= n;
                }
                res
            }
            _ => return,
        };
        if sent.is_err() {
            return;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn bench(name: &str, mut c: Connection, args: &Args) {
    let ping = |c: &mut Connection, id: u64| {
        c.send(FrameHeader::request(OP_PING, 0, id), &[]).unwrap();
        c.recv(|h, _| assert_eq!(h.request_id, id)).unwrap();
    };
    for i in 0..args.iters.min(20_000) as u64 {
        ping(&mut c, i);
    }
    let mut lat = Vec::with_capacity(args.iters);
    let all = Instant::now();
    for i in 0..args.iters as u64 {
        let t = Instant::now();
        ping(&mut c, i);
        lat.push(t.elapsed());
    }
    let mean = all.elapsed() / args.iters as u32;
    lat.sort_unstable();
    println!(
        "{name:<6} null round trip: p50 {:>7.2} µs  p99 {:>7.2} µs  mean {:>7.2} µs  ({} iterations)",
        percentile(&lat, 0.50).as_secs_f64() * 1e6,
        percentile(&lat, 0.99).as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6,
        args.iters
    );

    let chunk = c.max_payload();
    let total = args.bulk_mb << 20;
    let src: Vec<u8> = (0..64usize << 20).map(|i| (i * 13) as u8).collect();
    let mut dst = vec![0u8; 64 << 20];
    for round in 0..2 {
        // Round 0 warms up (page faults of fresh buffers and rings).
        let total = if round == 0 {
            total.min(256 << 20)
        } else {
            total
        };
        let t = Instant::now();
        let mut sent = 0usize;
        let mut off = 0usize;
        while sent < total {
            let n = chunk.min(total - sent);
            if off + n > src.len() {
                off = 0;
            }
            sent += n;
            let id = if sent == total { LAST } else { sent as u64 };
            c.send(
                FrameHeader::request(OP_UPLOAD, 0, id),
                &[&src[off..off + n]],
            )
            .unwrap();
            off += n;
        }
        c.recv(|h, _| assert_eq!(h.request_id, LAST)).unwrap();
        let up = total as f64 / t.elapsed().as_secs_f64() / 1e9;

        let t = Instant::now();
        c.send(
            FrameHeader::request(OP_DOWNLOAD, 0, 1),
            &[&(total as u64).to_le_bytes()],
        )
        .unwrap();
        let mut got = 0usize;
        let mut off = 0usize;
        while got < total {
            let n = c
                .recv(|_, p| {
                    if off + p.len() > dst.len() {
                        off = 0;
                    }
                    dst[off..off + p.len()].copy_from_slice(p);
                    off += p.len();
                    p.len()
                })
                .unwrap();
            got += n;
        }
        let down = total as f64 / t.elapsed().as_secs_f64() / 1e9;
        if round == 1 {
            println!(
                "{name:<6} bulk, {} MiB in chunks of {} KiB: upload {up:>6.2} GB/s  download {down:>6.2} GB/s",
                total >> 20,
                chunk >> 10
            );
        }
    }
    c.send(FrameHeader::request(OP_QUIT, 0, 0), &[]).unwrap();
}

fn main() {
    let args = parse_args();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    println!("{cores} CPU(s) available; client and worker are two threads of this process");
    if args.only.as_deref() != Some("shm") {
        let listener = NativeListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let w = std::thread::spawn(move || worker(listener.accept().unwrap()));
        bench(
            "tcp",
            connect_native("127.0.0.1", port, Duration::from_secs(5)).unwrap(),
            &args,
        );
        w.join().unwrap();
    }
    if args.only.as_deref() != Some("tcp") {
        let name = PathBuf::from(format!("/tf-pingpong-{}", std::process::id()));
        let server = ShmServer::create(&name, args.size_mb).unwrap();
        let file = server.path().to_path_buf();
        let w = std::thread::spawn(move || {
            let conn = server
                .accept(Duration::from_secs(10))
                .unwrap()
                .expect("client connects");
            worker(conn);
        });
        bench("shmem", connect_shmem(&name, args.size_mb).unwrap(), &args);
        w.join().unwrap();
        let _ = std::fs::remove_file(file);
    }
}
