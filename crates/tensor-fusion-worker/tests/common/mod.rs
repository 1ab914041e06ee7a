//! Helpers shared by the integration tests: scratch directories and fake
//! vendor libraries compiled from `tests/fixtures` with the system C compiler.
#![allow(dead_code)] // each test binary uses a different subset

use std::path::{Path, PathBuf};
use std::process::Command;

use tensor_fusion_worker::loader::{Search, CUDA_ENV, CUDA_FILE, NVML_ENV, NVML_FILE};
use tensor_fusion_worker::{open_with, Options, RealBackend};

/// A fresh, empty directory for one test (tests run in parallel).
pub fn scratch(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("tf-worker-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Compiles a fixture (a file name under `tests/fixtures`) or, if `source`
/// contains a newline, that C text, into the shared library `out`.
pub fn compile(source: &str, out: &Path) {
    let src = if source.contains('\n') {
        let p = out.with_extension("c");
        std::fs::write(&p, source).expect("write C source");
        p
    } else {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(source)
    };
    let res = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .expect("run cc");
    assert!(
        res.status.success(),
        "cc {}: {}",
        src.display(),
        String::from_utf8_lossy(&res.stderr)
    );
}

/// Options that search exactly these directories and nothing else.
pub fn options(cuda_dirs: &[&Path], nvml_dirs: &[&Path]) -> Options {
    Options {
        cuda: Search::in_dirs(CUDA_FILE, CUDA_ENV, cuda_dirs),
        nvml: Search::in_dirs(NVML_FILE, NVML_ENV, nvml_dirs),
    }
}

/// The fake driver and fake NVML, built into a scratch directory and opened.
pub fn fake_backend(test: &str) -> (RealBackend, PathBuf) {
    let dir = scratch(test);
    compile("fake_cuda.c", &dir.join(CUDA_FILE));
    compile("fake_nvml.c", &dir.join(NVML_FILE));
    let b =
        open_with(&options(&[&dir], &[&dir])).unwrap_or_else(|e| panic!("open fake driver: {e}"));
    (b, dir)
}

/// Reads an `int` the fake library exports (same handle as the backend's:
/// `dlopen` of a loaded path returns the loaded library).
pub fn read_fake_int(lib_path: &Path, symbol: &str) -> i32 {
    // SAFETY: the fake library is already loaded (and never unloaded by the
    // backend); loading it again only takes a reference.
    let lib = unsafe { libloading::Library::new(lib_path) }.expect("reopen fake");
    // SAFETY: the fixture defines `symbol` as a plain `int`.
    let p = unsafe { lib.get::<*const i32>(symbol.as_bytes()) }.expect("fake symbol");
    // SAFETY: `*p` is the int's address, valid while the library is loaded;
    // read atomically-enough for a test (the fake updates it atomically).
    unsafe { std::ptr::read_volatile(*p) }
}

/// Calls an `int f(void)` the fake library exports.
pub fn call_fake_fn(lib_path: &Path, symbol: &str) -> i32 {
    // SAFETY: as in `read_fake_int`.
    let lib = unsafe { libloading::Library::new(lib_path) }.expect("reopen fake");
    // SAFETY: the fixture defines `symbol` as `int symbol(void)`.
    let f = unsafe { lib.get::<unsafe extern "C" fn() -> i32>(symbol.as_bytes()) }
        .expect("fake symbol");
    // SAFETY: a C function without arguments.
    unsafe { f() }
}
