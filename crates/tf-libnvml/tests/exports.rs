//! Checks the built `libnvidia_ml.so`: it exports every name real drivers
//! export, carries the right SONAME, and forwards calls to `libteleport.so`
//! or fails cleanly without it.

#[path = "../../tf-libcuda/tests/common/mod.rs"]
mod common;

use common::*;
use std::ffi::{c_char, c_int, c_uint, CStr};
use std::mem::transmute;
use tf_api::nvml_fn;

const LIB: &str = "libnvidia_ml.so";
const REFERENCES: [&str; 2] = [
    include_str!("../../../codegen/reference/libnvidia-ml-580.159.04.exports.txt"),
    include_str!("../../../codegen/reference/libnvidia-ml-550.163.01.exports.txt"),
];

#[test]
fn exports_every_reference_and_header_name() {
    let lib = built_library(LIB);
    let text = defined_text_symbols(&lib);
    let missing: Vec<&str> = REFERENCES
        .iter()
        .flat_map(|r| reference_names(r))
        .chain(tf_api::NVML_NAMES.iter().copied())
        .filter(|n| !text.contains(*n))
        .collect();
    assert!(
        missing.is_empty(),
        "not exported as defined text symbols: {missing:?}"
    );
    assert!(symbols_of_type(&lib, &["R", "D", "B"]).contains("TENSOR_FUSION_CLIENT"));
}

#[test]
fn soname_is_libnvidia_ml_so_1() {
    assert_eq!(
        soname(&built_library(LIB)).as_deref(),
        Some("libnvidia-ml.so.1")
    );
}

type NvmlInit = unsafe extern "C" fn() -> c_int;
type NvmlGetCount = unsafe extern "C" fn(*mut c_uint) -> c_int;
type NvmlErrorString = unsafe extern "C" fn(c_int) -> *const c_char;

#[test]
fn without_teleport_calls_return_library_not_found() {
    const TEST: &str = "without_teleport_calls_return_library_not_found";
    if let Some(path) = child_library(TEST) {
        let lib = Loaded::open(&path);
        // SAFETY: the symbols have these C signatures in nvml.h.
        unsafe {
            let init: NvmlInit = transmute(lib.symbol("nvmlInit_v2"));
            assert_eq!(init(), 12, "NVML_ERROR_LIBRARY_NOT_FOUND");
            let count: NvmlGetCount = transmute(lib.symbol("nvmlDeviceGetCount_v2"));
            assert_eq!(count(std::ptr::null_mut()), 12);
            // The one string-returning entry point gets a string, not 12.
            let error_string: NvmlErrorString = transmute(lib.symbol("nvmlErrorString"));
            let s = error_string(0);
            assert!(!s.is_null());
            assert_eq!(
                CStr::from_ptr(s).to_str(),
                Ok("libteleport.so is not loaded")
            );
        }
        return;
    }
    let dir = scratch_dir("nvml-alone");
    let lib = install(&built_library(LIB), &dir, "libnvidia-ml.so.1");
    let out = run_child(TEST, &lib, None);
    let lines = client_lines(&out);
    assert_eq!(
        lines.len(),
        2,
        "one load failure line, one fallback line: {lines:?}"
    );
    assert!(
        lines[0].contains("put it beside libnvidia-ml.so.1 or on LD_LIBRARY_PATH"),
        "{lines:?}"
    );
    assert!(
        lines[1].contains("NVML_ERROR_LIBRARY_NOT_FOUND"),
        "{lines:?}"
    );
}

const FAKE_FUNCTIONS: &str = r#"
static int fake_init(void) { return 0; }
static int fake_count(unsigned *n) { *n = 3; return 0; }
static const char *fake_error_string(int r) { return r == 0 ? "fake success" : "fake error"; }
"#;

#[test]
fn calls_are_forwarded_to_teleport() {
    const TEST: &str = "calls_are_forwarded_to_teleport";
    if let Some(path) = child_library(TEST) {
        let lib = Loaded::open(&path);
        // SAFETY: the symbols have these C signatures in nvml.h, and so do the
        // fake implementations behind them.
        unsafe {
            let init: NvmlInit = transmute(lib.symbol("nvmlInit_v2"));
            assert_eq!(init(), 0);
            let count: NvmlGetCount = transmute(lib.symbol("nvmlDeviceGetCount_v2"));
            let mut n = 0;
            assert_eq!(count(&mut n), 0);
            assert_eq!(n, 3);
            let error_string: NvmlErrorString = transmute(lib.symbol("nvmlErrorString"));
            assert_eq!(CStr::from_ptr(error_string(0)).to_str(), Ok("fake success"));
            let shutdown: NvmlInit = transmute(lib.symbol("nvmlShutdown"));
            assert_eq!(shutdown(), 42);
        }
        return;
    }
    let dir = scratch_dir("nvml-beside");
    let lib = install(&built_library(LIB), &dir, "libnvidia-ml.so.1");
    FakeTeleport {
        table_symbol: "teleport_nvml_table",
        hash: tf_api::NVML_API_HASH,
        count: tf_api::NVML_COUNT,
        functions: FAKE_FUNCTIONS,
        overrides: &[
            (nvml_fn::nvmlInit_v2, "fake_init"),
            (nvml_fn::nvmlDeviceGetCount_v2, "fake_count"),
            (nvml_fn::nvmlErrorString, "fake_error_string"),
        ],
    }
    .build(&dir);
    let out = run_child(TEST, &lib, None);
    assert_eq!(client_lines(&out), Vec::<String>::new());
}
