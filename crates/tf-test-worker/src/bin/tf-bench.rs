//! Transport benchmark: the round-trip latency of a null call (p50/p99) and
//! bulk copy bandwidth, for NATIVE on loopback and SHMEM, measured through
//! the real client libraries (`libcuda.so.1` via dlopen, as applications do)
//! against `tf-test-worker` (host-memory backend). Prints one table.
//!
//! usage: tf-bench [--client-dir DIR] [--worker BIN] [--native-lib-dir DIR] [--iters N] [--mib M]
//! --client-dir holds libcuda.so.1, libnvidia-ml.so.1, libteleport.so
//! (default: laid out from the build directory); --worker is the worker
//! binary (default: tf-test-worker beside this program; on a GPU host pass
//! tensor-fusion-worker); --native-lib-dir adds a "native" row that calls the
//! real driver found in that directory directly, for ratios against it.

use std::ffi::{c_int, c_void, CString};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: usize = get("--iters").and_then(|v| v.parse().ok()).unwrap_or(20000);
    let mib: usize = get("--mib").and_then(|v| v.parse().ok()).unwrap_or(256);
    if args.get(1).map(String::as_str) == Some("--client") {
        client(iters, mib);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let bin_dir = exe.parent().unwrap().to_path_buf();
    let client_dir = get("--client-dir")
        .map(PathBuf::from)
        .unwrap_or_else(|| layout(&bin_dir));
    let worker_bin = get("--worker")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir.join("tf-test-worker"));
    let native_dir = get("--native-lib-dir");
    println!(
        "tf-bench: null call = cuCtxSynchronize round trip; bulk = cuMemcpyHtoD/DtoH of {mib} MiB"
    );
    println!("worker: {}", worker_bin.display());
    println!(
        "{:<8} {:>10} {:>10} {:>12} {:>12}",
        "path", "p50 µs", "p99 µs", "HtoD GB/s", "DtoH GB/s"
    );
    let mut rows: Vec<(String, Vec<f64>)> = Vec::new();
    if let Some(dir) = &native_dir {
        let out = Command::new(&exe)
            .args([
                "--client",
                "--iters",
                &iters.to_string(),
                "--mib",
                &mib.to_string(),
            ])
            .env("LD_LIBRARY_PATH", dir)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        report("local", &String::from_utf8_lossy(&out.stdout), &mut rows);
    }
    for net in ["native", "shmem"] {
        let name = format!("/tf-bench-{}", std::process::id());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
            .to_string();
        let (wargs, info): (Vec<&str>, String) = if net == "native" {
            (
                vec!["-n", "native", "-p", &port],
                format!("native+127.0.0.1+{port}+0"),
            )
        } else {
            (
                vec!["-n", "shmem", "-m", &name, "-M", "256"],
                format!("shmem+/dev/shm{name}+256+0"),
            )
        };
        let mut worker = Command::new(&worker_bin)
            .args(&wargs)
            .env("TF_ENABLE_LOG", "0")
            .spawn()
            .expect("start tf-test-worker (build the workspace first)");
        std::thread::sleep(Duration::from_millis(500));
        let out = Command::new(&exe)
            .args([
                "--client",
                "--iters",
                &iters.to_string(),
                "--mib",
                &mib.to_string(),
            ])
            .env("LD_LIBRARY_PATH", &client_dir)
            .env("TENSOR_FUSION_OPERATOR_CONNECTION_INFO", &info)
            .stderr(Stdio::inherit())
            .output()
            .unwrap();
        let _ = worker.kill();
        let _ = worker.wait();
        let _ = std::fs::remove_file(format!("/dev/shm{name}"));
        report(
            net.to_uppercase().as_str(),
            &String::from_utf8_lossy(&out.stdout),
            &mut rows,
        );
    }
    if let Some((_, base)) = rows.iter().find(|(n, _)| n == "local") {
        println!("\nratios to local (latency: ×slower; bandwidth: fraction of local)");
        for (name, v) in rows.iter().filter(|(n, _)| n != "local") {
            println!(
                "{name:<8} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
                v[0] / base[0],
                v[1] / base[1],
                v[2] / base[2],
                v[3] / base[3]
            );
        }
    }
}

fn report(name: &str, line: &str, rows: &mut Vec<(String, Vec<f64>)>) {
    let v: Vec<f64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    if v.len() == 4 {
        println!(
            "{name:<8} {:>10.2} {:>10.2} {:>12.2} {:>12.2}",
            v[0], v[1], v[2], v[3]
        );
        rows.push((name.to_string(), v));
    } else {
        println!("{name:<8} failed: {line}");
    }
}

/// Copies the built libraries into the names the guide uses.
fn layout(bin_dir: &std::path::Path) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tf-bench-client-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (from, to) in [
        ("libteleport.so", "libteleport.so"),
        ("libcuda.so", "libcuda.so.1"),
        ("libnvidia_ml.so", "libnvidia-ml.so.1"),
    ] {
        std::fs::copy(bin_dir.join(from), dir.join(to))
            .expect("client libraries not built: cargo build --workspace");
    }
    dir
}

type Fn0 = unsafe extern "C" fn() -> u32;

fn sym<T>(lib: *mut c_void, name: &str) -> T {
    let c = CString::new(name).unwrap();
    // SAFETY: dlsym on a live handle with a NUL-terminated name.
    let p = unsafe { libc::dlsym(lib, c.as_ptr()) };
    assert!(!p.is_null(), "missing {name}");
    // SAFETY: the caller names the C signature of `name`; T is a fn pointer.
    unsafe { std::mem::transmute_copy(&p) }
}

fn client(iters: usize, mib: usize) {
    let lib = CString::new("libcuda.so.1").unwrap();
    // SAFETY: plain dlopen.
    let h = unsafe { libc::dlopen(lib.as_ptr(), libc::RTLD_NOW) };
    assert!(!h.is_null(), "dlopen libcuda.so.1 failed");
    let init: unsafe extern "C" fn(u32) -> u32 = sym(h, "cuInit");
    let retain: unsafe extern "C" fn(*mut *mut c_void, c_int) -> u32 =
        sym(h, "cuDevicePrimaryCtxRetain");
    let set: unsafe extern "C" fn(*mut c_void) -> u32 = sym(h, "cuCtxSetCurrent");
    let sync: Fn0 = sym(h, "cuCtxSynchronize");
    let alloc: unsafe extern "C" fn(*mut u64, usize) -> u32 = sym(h, "cuMemAlloc_v2");
    let htod: unsafe extern "C" fn(u64, *const c_void, usize) -> u32 = sym(h, "cuMemcpyHtoD_v2");
    let dtoh: unsafe extern "C" fn(*mut c_void, u64, usize) -> u32 = sym(h, "cuMemcpyDtoH_v2");
    // SAFETY: calling the driver API with valid out-pointers and buffers.
    unsafe {
        assert_eq!(init(0), 0, "cuInit failed");
        let mut ctx = std::ptr::null_mut();
        assert_eq!(retain(&mut ctx, 0), 0);
        assert_eq!(set(ctx), 0);
        for _ in 0..iters / 10 {
            sync();
        }
        let mut lat = Vec::with_capacity(iters);
        for _ in 0..iters {
            let t = Instant::now();
            assert_eq!(sync(), 0);
            lat.push(t.elapsed().as_nanos() as f64 / 1000.0);
        }
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = mib << 20;
        let buf = vec![0x5au8; n];
        let mut back = vec![0u8; n];
        let mut d = 0u64;
        assert_eq!(alloc(&mut d, n), 0);
        let reps = 5;
        assert_eq!(htod(d, buf.as_ptr().cast(), n), 0);
        let t = Instant::now();
        for _ in 0..reps {
            assert_eq!(htod(d, buf.as_ptr().cast(), n), 0);
        }
        let up = (n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9;
        // Warm-up, as for host-to-device: the first copy into a fresh
        // (calloc'd, untouched) buffer pays a page fault per 4 KiB page,
        // which is the application's cost, not the transport's.
        assert_eq!(dtoh(back.as_mut_ptr().cast(), d, n), 0);
        let t = Instant::now();
        for _ in 0..reps {
            assert_eq!(dtoh(back.as_mut_ptr().cast(), d, n), 0);
        }
        let down = (n * reps) as f64 / t.elapsed().as_secs_f64() / 1e9;
        assert!(back == buf, "bulk data differs");
        println!("{} {} {up} {down}", lat[iters / 2], lat[iters * 99 / 100]);
    }
}
