//! Harness for the end-to-end tests: lays out the client libraries as the
//! deployment guide does, builds the C test program with the system C
//! compiler, and runs `tf-test-worker` processes.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

pub const WORKER: &str = env!("CARGO_BIN_EXE_tf-test-worker");

fn target_dir() -> PathBuf {
    Path::new(WORKER).parent().unwrap().to_path_buf()
}

fn tmp() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

/// `tensor-fusion-client/linux` as the guide lays it out.
pub fn client_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let t = target_dir();
        let dir = tmp().join(format!("client-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (from, to) in [
            ("libteleport.so", "libteleport.so"),
            ("libcuda.so", "libcuda.so"),
            ("libcuda.so", "libcuda.so.1"),
            ("libnvidia_ml.so", "libnvidia-ml.so"),
            ("libnvidia_ml.so", "libnvidia-ml.so.1"),
        ] {
            let src = t.join(from);
            assert!(
                src.exists(),
                "{} is missing: build the client libraries first with `cargo build --workspace` (`cargo xtask test` does this)",
                src.display()
            );
            std::fs::copy(&src, dir.join(to)).unwrap();
        }
        dir
    })
}

/// The C program of `tests/c/slice.c`, compiled once.
pub fn slice_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/slice.c");
        let out = tmp().join(format!("slice-{}", std::process::id()));
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let st = Command::new(&cc)
            .args(["-O1", "-Wall", "-o"])
            .arg(&out)
            .arg(&src)
            .arg("-ldl")
            .status();
        assert!(
            st.is_ok_and(|s| s.success()),
            "compiling {} with {cc} failed",
            src.display()
        );
        out
    })
}

#[derive(Clone, Copy, Debug)]
pub enum Inject {
    LibraryPath,
    Preload,
}

/// A running test worker; killed on drop. Its log lines are collected.
pub struct Worker {
    child: Child,
    pub info: String,
    pub log: Arc<Mutex<Vec<String>>>,
    shm: Option<PathBuf>,
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Worker {
    pub fn native(env: &[(&str, &str)]) -> Worker {
        let port = free_port();
        Self::spawn(
            &["-n", "native", "-p", &port.to_string()],
            env,
            format!("native+127.0.0.1+{port}+0"),
            None,
        )
    }

    pub fn shmem(size_mb: u64, env: &[(&str, &str)]) -> Worker {
        let name = format!(
            "/tf-e2e-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let file = PathBuf::from(format!("/dev/shm{name}"));
        let info = format!("shmem+{}+{size_mb}+0", file.display());
        Self::spawn(
            &["-n", "shmem", "-m", &name, "-M", &size_mb.to_string()],
            env,
            info,
            Some(file),
        )
    }

    fn spawn(args: &[&str], env: &[(&str, &str)], info: String, shm: Option<PathBuf>) -> Worker {
        let mut cmd = Command::new(WORKER);
        cmd.args(args)
            .env("TF_ENABLE_LOG", "1")
            .env("TF_LOG_LEVEL", "info")
            .env_remove("TF_LOG_PATH");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tf-test-worker");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let (log, tx) = (Arc::clone(&log), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains("listening") {
                        let _ = tx.send(());
                    }
                    log.lock().unwrap().push(line);
                }
            });
        }
        if rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let _ = child.kill();
            panic!(
                "worker did not start listening; log: {:?}",
                log.lock().unwrap()
            );
        }
        Worker {
            child,
            info,
            log,
            shm,
        }
    }

    /// Waits up to `timeout` for a log line containing `needle` (lines of
    /// session processes reach the log through a pipe, a little later).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let start = std::time::Instant::now();
        loop {
            if self.log_contains(needle) {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to 5 s until the worker has exactly `n` child processes
    /// (session processes of clients that left take a moment to exit).
    pub fn wait_children(&self, n: usize) -> Vec<u32> {
        let start = std::time::Instant::now();
        loop {
            let kids = self.children();
            if kids.len() == n || start.elapsed() >= Duration::from_secs(5) {
                return kids;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(needle))
    }

    /// The worker's exit status if it exits within `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Pids of the worker's child processes (its session processes).
    pub fn children(&self) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{}/task", self.pid())) else {
            return out;
        };
        for t in tasks.flatten() {
            let list = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
            out.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        out
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.kill();
        if let Some(f) = &self.shm {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// A client command running the C program through our libraries.
pub fn client(info: &str, inject: Inject, args: &[&str]) -> Command {
    let dir = client_dir();
    let mut cmd = Command::new(slice_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("TF_")
            || k.starts_with("TENSOR_FUSION_")
            || k == "LD_PRELOAD"
            || k == "LD_LIBRARY_PATH"
        {
            cmd.env_remove(k);
        }
    }
    cmd.env("TENSOR_FUSION_OPERATOR_CONNECTION_INFO", info);
    match inject {
        Inject::LibraryPath => cmd.env("LD_LIBRARY_PATH", dir),
        Inject::Preload => {
            let d = dir.display();
            cmd.env(
                "LD_PRELOAD",
                format!("{d}/libteleport.so:{d}/libcuda.so:{d}/libnvidia-ml.so"),
            )
        }
    };
    cmd
}

/// Runs a command with a deadline: nothing in these tests may hang.
pub fn run(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "client hung for more than {deadline:?}\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn assert_pass(o: &Output) {
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("PASS"),
        "{}",
        text(o)
    );
}

/// Another C program of `tests/c` (`name` without `.c`), compiled once per
/// test process.
pub fn c_program(name: &str) -> PathBuf {
    static BINS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    let mut bins = BINS.lock().unwrap();
    if let Some((_, p)) = bins.iter().find(|(n, _)| n == name) {
        return p.clone();
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/c/{name}.c"));
    let out = tmp().join(format!("{name}-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let st = Command::new(&cc)
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(&src)
        .arg("-ldl")
        .status();
    assert!(
        st.is_ok_and(|s| s.success()),
        "compiling {} with {cc} failed",
        src.display()
    );
    bins.push((name.to_string(), out.clone()));
    out
}

/// As [`client`], running `program` instead of the slice program.
pub fn client_of(program: &Path, info: &str, inject: Inject, args: &[&str]) -> Command {
    let template = client(info, inject, args);
    let mut cmd = Command::new(program);
    cmd.args(template.get_args());
    for (k, v) in template.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    cmd
}
