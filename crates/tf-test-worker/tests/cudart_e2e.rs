//! End to end, without a GPU: what the CUDA runtime needs before and beside
//! the public API (`cuGetProcAddress`, the private export tables and their
//! integrity check, contexts, pinned host memory), exercised by the C
//! program of `tests/c/procaddr.c` through our libcuda.so.1 against
//! `tf-test-worker`, over NATIVE and SHMEM and with both injection styles.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use common::*;

fn procaddr(w: &Worker, inject: Inject, env: &[(&str, &str)]) -> Output {
    // The conventions of the generated table, which the C program checks.
    let conventions = [
        tf_api::procaddr::NOT_FOUND_RESULT.to_string(),
        tf_api::procaddr::NOT_FOUND_RESULT_V1.to_string(),
        u8::from(tf_api::procaddr::ABOVE_DRIVER_IS_INVALID).to_string(),
    ];
    let args: Vec<&str> = conventions.iter().map(String::as_str).collect();
    let mut cmd = client_of(&c_program("procaddr"), &w.info, inject, &args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    run(cmd, Duration::from_secs(60))
}

#[test]
fn native_library_path() {
    let w = Worker::native(&[]);
    assert_pass(&procaddr(&w, Inject::LibraryPath, &[]));
}

#[test]
fn shmem_preload() {
    let w = Worker::shmem(64, &[]);
    assert_pass(&procaddr(&w, Inject::Preload, &[]));
}

/// The integrity answer hashes every device: two of them here.
#[test]
fn native_preload_two_devices() {
    let w = Worker::native(&[("TF_TEST_DEVICES", "2")]);
    assert_pass(&procaddr(&w, Inject::Preload, &[]));
}

/// One run at debug level says what a runtime asked for: every
/// cuGetProcAddress and cuGetExportTable request, the first call of every
/// private-table slot, the slots that are not implemented, and at exit how
/// often each slot was called.
#[test]
fn debug_log_records_what_was_asked() {
    let w = Worker::native(&[]);
    let o = procaddr(
        &w,
        Inject::LibraryPath,
        &[("TF_ENABLE_LOG", "1"), ("TF_LOG_LEVEL", "debug")],
    );
    assert_pass(&o);
    let log = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "cuGetProcAddress",
        "symbol=cuMemAlloc",
        "answer=cuMemAlloc_v2",
        "cuGetExportTable",
        "guid=6bd5fb6c5bf4e74a8987d93912fd9df9",
        "export table slot: first call",
        "CONTEXT_LOCAL_STORAGE",
        "slot 9 is not implemented",
        "integrity check answered",
        "export table slot calls",
    ] {
        assert!(
            log.contains(needle),
            "no `{needle}` in the client log:\n{log}"
        );
    }
}

/// The CUDA runtime of the pinned `nvidia-cuda-runtime` wheel (which
/// `scripts/fetch-headers.sh` fetches with the headers): its static archive
/// and shared library, extracted once.
fn cudart_libs() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let wheels = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.headers/wheels");
        let wheel = std::fs::read_dir(&wheels)
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("nvidia_cuda_runtime-") && n.ends_with(".whl"))
            })?;
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cudart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let ok = Command::new("unzip")
            .args(["-o", "-q", "-j"])
            .arg(&wheel)
            .args([
                "nvidia/cu*/lib/libcudart_static.a",
                "nvidia/cu*/lib/libcudart.so.*",
                "-d",
            ])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(dir)
    })
    .clone()
}

/// `tests/c/cudart.c` linked with cudart statically or as a shared library.
fn cudart_program(libs: &Path, kind: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c/cudart.c");
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cudart-{kind}-{}", std::process::id()));
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    cmd.args(["-O1", "-Wall", "-o"]).arg(&out).arg(&src);
    if kind == "static" {
        cmd.arg(libs.join("libcudart_static.a"))
            .args(["-ldl", "-lpthread", "-lrt"]);
    } else {
        let so = std::fs::read_dir(libs)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.to_string_lossy().contains("libcudart.so."))
            .expect("libcudart.so in the wheel");
        cmd.arg(so).arg(format!("-Wl,-rpath,{}", libs.display()));
    }
    assert!(
        cmd.status().is_ok_and(|s| s.success()),
        "compiling {} against cudart ({kind}) failed",
        src.display()
    );
    out
}

/// The real CUDA runtime, static and shared, starts up (proc-address
/// lookups, every private table, the integrity check) and runs the slice
/// through our libcuda.so.1; both builds print the same thing.
#[test]
fn real_cudart_static_and_shared() {
    let Some(libs) = cudart_libs() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "the cudart wheel is missing: run scripts/fetch-headers.sh"
        );
        eprintln!(
            "skipped: no .headers/wheels/nvidia_cuda_runtime-*.whl (run scripts/fetch-headers.sh)"
        );
        return;
    };
    let programs = [
        cudart_program(&libs, "static"),
        cudart_program(&libs, "shared"),
    ];
    for w in [Worker::native(&[]), Worker::shmem(256, &[])] {
        for mode in ["basic", "extra"] {
            let outs: Vec<Output> = programs
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    // The debug log goes to a file: it is larger than a pipe.
                    let log = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("cudart-{}-{mode}-{i}.log", std::process::id()));
                    let _ = std::fs::remove_file(&log);
                    let mut cmd = client_of(p, &w.info, Inject::LibraryPath, &[mode]);
                    cmd.env("TF_ENABLE_LOG", "1")
                        .env("TF_LOG_LEVEL", "debug")
                        .env("TF_LOG_PATH", &log);
                    let o = run(cmd, Duration::from_secs(120));
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    assert_pass(&o);
                    assert!(text.contains("integrity check answered"), "{text}");
                    o
                })
                .collect();
            assert_eq!(
                outs[0].stdout, outs[1].stdout,
                "static and shared cudart differ"
            );
        }
    }
}
