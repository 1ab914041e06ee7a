//! Helpers shared by the export tests of tf-libcuda and tf-libnvml (the
//! latter includes this file with `#[path]`).
//!
//! The libraries are cdylibs, so the tests inspect and `dlopen` the built
//! files. Loading happens in a child process (this test binary, re-run with
//! one test selected) because the library's constructor searches the library
//! path for `libteleport.so`, and cargo's test environment puts the real one
//! on it: the child gets a controlled environment and a fresh loader state.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeSet;
use std::ffi::{c_void, CString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const CHILD_LIB: &str = "TF_EXPORTS_TEST_LIB";
const CHILD_TEST: &str = "TF_EXPORTS_TEST_CHILD";

/// The built library, e.g. `<target>/debug/libcuda.so`.
pub fn built_library(file: &str) -> PathBuf {
    let mut candidates = Vec::new();
    // The test runs as <target>/<profile>/deps/<name>-<hash>, beside which cargo
    // puts the profile's cdylibs: this follows --release and --target.
    if let Some(profile_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf))
    {
        candidates.push(profile_dir.join(file));
    }
    if let Some(target) = Path::new(env!("CARGO_TARGET_TMPDIR")).parent() {
        candidates.push(target.join("debug").join(file));
    }
    candidates.iter().find(|c| c.is_file()).cloned().unwrap_or_else(|| {
        panic!("{file} not found (looked at {candidates:?}): build first: cargo build --workspace (cargo xtask test does this)")
    })
}

/// Names in a reference export list (`codegen/reference/*.txt`).
pub fn reference_names(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

fn tool(program: &str, args: &[&str], lib: &Path) -> String {
    let out = Command::new(program)
        .args(args)
        .arg(lib)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (binutils): {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Dynamic symbols of `lib` defined in a text section (`nm` type `T`).
pub fn defined_text_symbols(lib: &Path) -> BTreeSet<String> {
    symbols_of_type(lib, &["T"])
}

/// Dynamic symbols of `lib` whose `nm` type is one of `types`.
pub fn symbols_of_type(lib: &Path, types: &[&str]) -> BTreeSet<String> {
    tool("nm", &["-D", "--defined-only"], lib)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_addr, ty, name) = (f.next()?, f.next()?, f.next()?);
            types.contains(&ty).then(|| name.to_string())
        })
        .collect()
}

/// The DT_SONAME of `lib`.
pub fn soname(lib: &Path) -> Option<String> {
    let dynamic = tool("readelf", &["-d", "-W"], lib);
    let line = dynamic.lines().find(|l| l.contains("(SONAME)"))?;
    let start = line.find('[')? + 1;
    let end = line.rfind(']')?;
    Some(line[start..end].to_string())
}

/// A fresh directory under cargo's per-package temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A stand-in for libteleport.so, compiled with the system C compiler.
pub struct FakeTeleport<'a> {
    /// `teleport_cuda_table` / `teleport_nvml_table`.
    pub table_symbol: &'a str,
    /// The hash it accepts.
    pub hash: u64,
    pub count: usize,
    /// C definitions of the functions named in `overrides`.
    pub functions: &'a str,
    /// `(index, C function)`: table entries that differ from the generic one,
    /// which returns 42.
    pub overrides: &'a [(usize, &'a str)],
}

impl FakeTeleport<'_> {
    pub fn build(&self, dir: &Path) -> PathBuf {
        let mut src = String::from(
            "#include <stddef.h>\n#include <stdint.h>\nstatic int generic(void) { return 42; }\n",
        );
        src.push_str(self.functions);
        src.push_str(&format!(
            "\nstatic void *table[{count}];\n\
             const void *{sym}(uint64_t hash, size_t count) {{\n\
             if (hash != {hash:#x}ULL || count != {count}) return 0;\n\
             for (size_t i = 0; i < count; i++) table[i] = (void *)generic;\n",
            count = self.count,
            sym = self.table_symbol,
            hash = self.hash
        ));
        for (index, function) in self.overrides {
            src.push_str(&format!("table[{index}] = (void *){function};\n"));
        }
        src.push_str("return table;\n}\n");
        let c = dir.join("fake_teleport.c");
        std::fs::write(&c, src).expect("write C source");
        let so = dir.join("libteleport.so");
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .args(["-shared", "-fPIC", "-o"])
            .arg(&so)
            .arg(&c)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cc}: {e}"));
        assert!(
            out.status.success(),
            "{cc} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        so
    }
}

/// Copies `lib` into `dir` (so that "beside the library" means `dir`).
pub fn install(lib: &Path, dir: &Path, name: &str) -> PathBuf {
    let to = dir.join(name);
    std::fs::copy(lib, &to).expect("copy library");
    to
}

/// Re-runs the test `test` of this binary in a child process that loads
/// `lib`, with `LD_LIBRARY_PATH` set to `library_path` (or unset).
pub fn run_child(test: &str, lib: &Path, library_path: Option<&Path>) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("current exe"));
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_TEST, test)
        .env(CHILD_LIB, lib)
        .env_remove("LD_PRELOAD");
    match library_path {
        Some(p) => cmd.env("LD_LIBRARY_PATH", p),
        None => cmd.env_remove("LD_LIBRARY_PATH"),
    };
    let out = cmd.output().expect("run child");
    assert!(
        out.status.success(),
        "child {test} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// In the child started by [`run_child`] for `test`: the library to load.
pub fn child_library(test: &str) -> Option<PathBuf> {
    (std::env::var(CHILD_TEST).ok()? == test)
        .then(|| std::env::var_os(CHILD_LIB).map(PathBuf::from))?
}

/// Lines the client libraries wrote to stderr.
pub fn client_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.starts_with("tensor-fusion client:"))
        .map(str::to_string)
        .collect()
}

/// A library loaded with `dlopen`, never closed (its constructor ran; the
/// child process exits right after the test anyway).
pub struct Loaded(*mut c_void);

impl Loaded {
    pub fn open(path: &Path) -> Self {
        let c = CString::new(path.to_str().expect("utf-8 path")).expect("no NUL");
        // SAFETY: `c` is a valid NUL-terminated path.
        let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        assert!(!h.is_null(), "dlopen {} failed", path.display());
        Self(h)
    }

    /// Address of `name`, which must be defined.
    pub fn symbol(&self, name: &str) -> *mut c_void {
        let c = CString::new(name).expect("no NUL");
        // SAFETY: self.0 is a live handle and `c` is NUL-terminated.
        let p = unsafe { libc::dlsym(self.0, c.as_ptr()) };
        assert!(!p.is_null(), "{name} not exported");
        p
    }
}
