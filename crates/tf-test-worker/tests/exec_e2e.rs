//! End to end, without a GPU: modules, kernels, launches, streams and events
//! (tests/c/exec.c) through our libcuda.so.1 against `tf-test-worker` over
//! NATIVE and SHMEM. The host backend cannot run kernels; it validates and
//! records them, so these tests prove the protocol, handle validation,
//! deferred errors and cleanup. Kernel results are proven on a GPU by
//! `tests/gpu/cuda` (scripts/gpu/50-cuda-programs.sh).

mod common;

use std::io::BufRead;
use std::time::{Duration, Instant};

use common::*;

fn exec(w: &Worker, inject: Inject, args: &[&str]) -> std::process::Command {
    client_of(&c_program("exec"), &w.info, inject, args)
}

fn full(w: &Worker, inject: Inject) {
    let o = run(exec(w, inject, &["full"]), Duration::from_secs(120));
    assert_pass(&o);
}

#[test]
fn exec_native() {
    let w = Worker::native(&[]);
    full(&w, Inject::LibraryPath);
    full(&w, Inject::Preload);
}

#[test]
fn exec_shmem() {
    let w = Worker::shmem(64, &[]);
    full(&w, Inject::LibraryPath);
    full(&w, Inject::Preload);
}

/// Two clients at once: ids are per session, so equal ids do not collide.
#[test]
fn exec_two_clients_at_once() {
    let w = Worker::native(&[]);
    let cmds = [
        exec(&w, Inject::LibraryPath, &["full"]),
        exec(&w, Inject::Preload, &["full"]),
    ];
    let outs: Vec<_> = cmds
        .into_iter()
        .map(|c| std::thread::spawn(move || run(c, Duration::from_secs(120))))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    for o in &outs {
        assert_pass(o);
    }
}

/// SIGKILL a client that holds streams, events, modules and a library while
/// launching: the worker releases all of them, and keeps serving.
fn killed_client(w: &Worker) {
    let mut holder = exec(w, Inject::LibraryPath, &["hold"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding");
    std::thread::sleep(Duration::from_millis(200)); // let launches flow
    holder.kill().unwrap();
    let killed = Instant::now();
    holder.wait().unwrap();
    let released = |w: &Worker| {
        let log = w.log.lock().unwrap();
        log.iter()
            .find(|l| l.contains("released the session's streams, events and modules"))
            .cloned()
    };
    let line = loop {
        if let Some(l) = released(w) {
            break l;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(3),
            "the killed client's streams and modules were not released; log: {:?}",
            w.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    for field in [
        "streams=3",
        "events=2",
        "modules=2",
        "libraries=1",
        "failed=0",
    ] {
        assert!(line.contains(field), "{field} missing in: {line}");
    }
    full(w, Inject::LibraryPath);
}

#[test]
fn killed_client_streams_and_modules_are_released_native() {
    killed_client(&Worker::native(&[]));
}

#[test]
fn killed_client_streams_and_modules_are_released_shmem() {
    killed_client(&Worker::shmem(64, &[]));
}

/// Starts `args` with piped stdin/stdout and waits for its first line.
fn started(w: &Worker, args: &[&str], first_line: &str) -> std::process::Child {
    let mut c = exec(w, Inject::LibraryPath, args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(c.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        first_line,
        "{args:?} did not start as expected"
    );
    c
}

/// A kernel fault is sticky for every CUDA context of the process it happens
/// in (measured on driver 580), so by default the worker serves each client
/// in its own process: the faulting client sees the fault as it would
/// natively, a client connected before it and a client connecting after it
/// work normally, and the worker keeps serving. The test backend's
/// "tf_test_fault" kernel stands for the fault.
fn a_kernel_fault_ends_only_its_own_session(w: &mut Worker) {
    use std::io::Write;
    let mut bystander = started(w, &["ready"], "ready");
    let mut faulty = started(w, &["fault"], "faulted");
    assert!(w.wait_log("this client's GPU context is lost", Duration::from_secs(5)));
    // A new client after the fault.
    assert_pass(&run(
        exec(w, Inject::LibraryPath, &["full"]),
        Duration::from_secs(60),
    ));
    // The client connected before the fault.
    bystander.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let o = bystander.wait_with_output().unwrap();
    assert!(
        o.status.success() && text(&o).contains("PASS"),
        "the bystander failed: {}",
        text(&o)
    );
    let _ = faulty.stdin.take().unwrap().write_all(b"bye\n");
    faulty.wait().unwrap();
    let t = Instant::now();
    while !w.log_contains("ended after its client's kernel fault") {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "no word of the faulted session's end"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        w.wait_exit(Duration::from_millis(300)).is_none(),
        "the worker exited"
    );
    assert_pass(&run(
        exec(w, Inject::LibraryPath, &["full"]),
        Duration::from_secs(60),
    ));
}

#[test]
fn a_kernel_fault_ends_only_its_own_session_native() {
    a_kernel_fault_ends_only_its_own_session(&mut Worker::native(&[]));
}

#[test]
fn a_kernel_fault_ends_only_its_own_session_shmem() {
    a_kernel_fault_ends_only_its_own_session(&mut Worker::shmem(64, &[]));
}

/// With `TF_SESSION_ISOLATION=thread` all clients share one GPU context, which
/// a kernel fault loses for all of them (on driver 580 not even a reset
/// recovers it in the process): the worker says so once, refuses new
/// clients with CUDA_ERROR_DEVICE_UNAVAILABLE and exits (status 3) when its
/// last client has gone, for its supervisor to restart it.
#[test]
fn with_thread_isolation_a_kernel_fault_refuses_new_clients_and_the_worker_exits_when_idle() {
    use std::io::Write;
    let mut w = Worker::native(&[("TF_SESSION_ISOLATION", "thread")]);
    let mut faulty = started(&w, &["fault"], "faulted");
    let o = run(
        exec(&w, Inject::LibraryPath, &["init"]),
        Duration::from_secs(60),
    );
    assert!(
        text(&o).contains("init 46"),
        "a new client was not refused: {}",
        text(&o)
    );
    assert!(w.wait_log(
        "the GPU context shared by this worker's clients is lost",
        Duration::from_secs(5)
    ));
    assert!(w.wait_log("restart tensor-fusion-worker", Duration::from_secs(5)));
    // Still serving the faulted client until it goes; then the worker exits.
    assert!(w.wait_exit(Duration::from_millis(300)).is_none());
    let _ = faulty.stdin.take().unwrap().write_all(b"bye\n");
    faulty.wait().unwrap();
    let st = w
        .wait_exit(Duration::from_secs(5))
        .expect("the worker did not exit");
    assert_eq!(st.code(), Some(3));
}

/// Pinned host memory handed to a kernel is mirrored in the session's
/// process: the kernel sees the application's writes, and the application
/// sees the kernel's after a synchronization (both transports).
#[test]
fn mapped_host_memory_reaches_kernels() {
    for w in [Worker::native(&[]), Worker::shmem(64, &[])] {
        let o = run(
            exec(&w, Inject::LibraryPath, &["mapped"]),
            Duration::from_secs(60),
        );
        assert_pass(&o);
    }
}

/// With all sessions in one process there is no private address space to
/// mirror into: the kernel's use of host memory fails cleanly, with a log
/// line saying why.
#[test]
fn with_thread_isolation_mapped_host_memory_fails_cleanly() {
    let mut w = Worker::native(&[("TF_SESSION_ISOLATION", "thread")]);
    let o = run(
        exec(&w, Inject::LibraryPath, &["mapped"]),
        Duration::from_secs(60),
    );
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("FAIL"), "{}", text(&o));
    assert!(
        w.wait_exit(Duration::from_millis(100)).is_none(),
        "the worker kept serving"
    );
}

/// Device printf: the driver writes it to the standard output of the process
/// that runs the kernel, the client's session process; the worker sends it
/// to the client before the answer of the synchronizing call, so the
/// application's stdout has the device lines where they are natively: before
/// the line it prints after the synchronization (context, synchronous copy,
/// stream; at exit, what a release printed). The worker's own log (its standard output) keeps working and
/// never sees them. The test backend's `tf_test_printf` kernel prints one
/// line per launch at the next synchronization.
fn device_printf_reaches_the_client(w: &Worker) {
    for inject in [Inject::LibraryPath, Inject::Preload] {
        let o = run(exec(w, inject, &["printf"]), Duration::from_secs(60));
        assert_pass(&o);
        let out = String::from_utf8_lossy(&o.stdout);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "before launches",
                "tf_test_printf: 1",
                "tf_test_printf: 2",
                "tf_test_printf: 3",
                "after sync",
                "tf_test_printf: 4",
                "after copy",
                "tf_test_printf: 5",
                "tf_test_printf: 6",
                "after stream sync",
                "PASS printf",
                "tf_test_printf: 7",
            ],
            "{}",
            text(&o)
        );
    }
    assert!(
        !w.log_contains("tf_test_printf:"),
        "device output in the worker's log: {:?}",
        w.log.lock().unwrap()
    );
    // The session processes' own log lines still reach the worker's stdout.
    assert!(
        w.wait_log("client connected", Duration::from_secs(5)),
        "no session log line: {:?}",
        w.log.lock().unwrap()
    );
}

#[test]
fn device_printf_reaches_the_client_native() {
    device_printf_reaches_the_client(&Worker::native(&[]));
}

#[test]
fn device_printf_reaches_the_client_shmem() {
    device_printf_reaches_the_client(&Worker::shmem(64, &[]));
}

/// With `TF_SESSION_ISOLATION=thread` one process serves every client, so
/// device printf output stays in the worker's standard output (documented).
#[test]
fn with_thread_isolation_device_printf_stays_in_the_workers_output() {
    let w = Worker::native(&[("TF_SESSION_ISOLATION", "thread")]);
    let o = run(
        exec(&w, Inject::LibraryPath, &["printf"]),
        Duration::from_secs(60),
    );
    assert_pass(&o);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("tf_test_printf"),
        "{}",
        text(&o)
    );
    let start = Instant::now();
    while !w.log_contains("tf_test_printf: 7") {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no device output in the worker's output: {:?}",
            w.log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
