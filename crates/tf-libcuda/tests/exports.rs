//! Checks the built `libcuda.so`: it exports every name real drivers export,
//! carries the right SONAME, and forwards calls (arguments untouched) to
//! `libteleport.so` or fails cleanly without it.

mod common;

use common::*;
use std::ffi::{c_int, c_uint, c_void};
use std::mem::transmute;
use tf_api::cuda_fn;

const LIB: &str = "libcuda.so";
const REFERENCES: [&str; 2] = [
    include_str!("../../../codegen/reference/libcuda-580.159.04.exports.txt"),
    include_str!("../../../codegen/reference/libcuda-550.163.01.exports.txt"),
];

#[test]
fn exports_every_reference_and_header_name() {
    let lib = built_library(LIB);
    let text = defined_text_symbols(&lib);
    let missing: Vec<&str> = REFERENCES
        .iter()
        .flat_map(|r| reference_names(r))
        .chain(tf_api::CUDA_NAMES.iter().copied())
        .filter(|n| !text.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported as defined text symbols: {missing:?}"
    );
    assert!(symbols_of_type(&lib, &["R", "D", "B"]).contains("TENSOR_FUSION_CLIENT"));
}

#[test]
fn soname_is_libcuda_so_1() {
    assert_eq!(soname(&built_library(LIB)).as_deref(), Some("libcuda.so.1"));
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuLaunchKernel = unsafe extern "C" fn(
    *mut c_void,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    c_uint,
    *mut c_void,
    *mut *mut c_void,
    *mut *mut c_void,
) -> c_int;

#[test]
fn without_teleport_calls_return_not_initialized() {
    const TEST: &str = "without_teleport_calls_return_not_initialized";
    if let Some(path) = child_library(TEST) {
        let lib = Loaded::open(&path);
        // SAFETY: the symbols have these C signatures in cuda.h.
        unsafe {
            let init: CuInit = transmute(lib.symbol("cuInit"));
            assert_eq!(init(0), 3, "CUDA_ERROR_NOT_INITIALIZED");
            let version: CuDriverGetVersion = transmute(lib.symbol("cuDriverGetVersion"));
            let mut v = -1;
            assert_eq!(version(&mut v), 3);
            assert_eq!(v, -1);
        }
        return;
    }
    let dir = scratch_dir("cuda-alone");
    let lib = install(&built_library(LIB), &dir, "libcuda.so.1");
    let out = run_child(TEST, &lib, None);
    let lines = client_lines(&out);
    assert_eq!(
        lines.len(),
        2,
        "one load failure line, one fallback line: {lines:?}"
    );
    assert!(lines[0].contains("cannot load libteleport.so"), "{lines:?}");
    assert!(
        lines[0].contains("put it beside libcuda.so.1 or on LD_LIBRARY_PATH"),
        "{lines:?}"
    );
    assert!(lines[1].contains("CUDA_ERROR_NOT_INITIALIZED"), "{lines:?}");
}

const FAKE_FUNCTIONS: &str = r#"
static int fake_init(unsigned flags) { return 100 + (int)flags; }
static int fake_version(int *v) { *v = 13050; return 0; }
/* 11 arguments: the last five travel on the stack on x86-64. */
static int fake_launch(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                       unsigned bz, unsigned shmem, void *stream, void **params, void **extra) {
    (void)f; (void)params;
    if (stream != (void *)0x1234 || extra != (void **)0x5678) return -1;
    return (int)(gx + gy + gz + bx + by + bz + shmem);
}
"#;

fn fake(hash: u64) -> FakeTeleport<'static> {
    FakeTeleport {
        table_symbol: "teleport_cuda_table",
        hash,
        count: tf_api::CUDA_COUNT,
        functions: FAKE_FUNCTIONS,
        overrides: &[
            (cuda_fn::cuInit, "fake_init"),
            (cuda_fn::cuDriverGetVersion, "fake_version"),
            (cuda_fn::cuLaunchKernel, "fake_launch"),
        ],
    }
}

#[test]
fn calls_are_forwarded_to_teleport() {
    const TEST: &str = "calls_are_forwarded_to_teleport";
    if let Some(path) = child_library(TEST) {
        let lib = Loaded::open(&path);
        // SAFETY: the symbols have these C signatures in cuda.h, and so do the
        // fake implementations behind them.
        unsafe {
            let init: CuInit = transmute(lib.symbol("cuInit"));
            assert_eq!(init(7), 107);
            let version: CuDriverGetVersion = transmute(lib.symbol("cuDriverGetVersion"));
            let mut v = 0;
            assert_eq!(version(&mut v), 0);
            assert_eq!(v, 13050);
            let launch: CuLaunchKernel = transmute(lib.symbol("cuLaunchKernel"));
            let r = launch(
                std::ptr::null_mut(),
                1,
                2,
                3,
                10,
                20,
                30,
                1000,
                0x1234 as *mut c_void,
                std::ptr::null_mut(),
                0x5678 as *mut *mut c_void,
            );
            assert_eq!(r, 1066);
            // Everything else reaches the fake's generic entry.
            let get: unsafe extern "C" fn(*mut c_int, c_int) -> c_int =
                transmute(lib.symbol("cuDeviceGet"));
            assert_eq!(get(std::ptr::null_mut(), 0), 42);
            let profiler: unsafe extern "C" fn() -> c_int =
                transmute(lib.symbol("cuProfilerStart"));
            assert_eq!(profiler(), 42);
        }
        return;
    }
    // libteleport.so beside the library, not on the search path.
    let dir = scratch_dir("cuda-beside");
    let lib = install(&built_library(LIB), &dir, "libcuda.so.1");
    fake(tf_api::CUDA_API_HASH).build(&dir);
    let out = run_child(TEST, &lib, None);
    assert_eq!(client_lines(&out), Vec::<String>::new());

    // libteleport.so on LD_LIBRARY_PATH, the library elsewhere.
    let lib_dir = scratch_dir("cuda-path-lib");
    let teleport_dir = scratch_dir("cuda-path-teleport");
    let lib = install(&built_library(LIB), &lib_dir, "libcuda.so.1");
    fake(tf_api::CUDA_API_HASH).build(&teleport_dir);
    let out = run_child(TEST, &lib, Some(&teleport_dir));
    assert_eq!(client_lines(&out), Vec::<String>::new());
}

#[test]
fn mismatched_teleport_is_rejected() {
    const TEST: &str = "mismatched_teleport_is_rejected";
    if let Some(path) = child_library(TEST) {
        let lib = Loaded::open(&path);
        // SAFETY: cuInit has this C signature in cuda.h.
        unsafe {
            let init: CuInit = transmute(lib.symbol("cuInit"));
            assert_eq!(init(0), 3);
        }
        return;
    }
    let dir = scratch_dir("cuda-mismatch");
    let lib = install(&built_library(LIB), &dir, "libcuda.so.1");
    fake(tf_api::CUDA_API_HASH ^ 1).build(&dir);
    let out = run_child(TEST, &lib, None);
    let lines = client_lines(&out);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].contains("rejected libcuda.so.1's API table"),
        "{lines:?}"
    );
}
