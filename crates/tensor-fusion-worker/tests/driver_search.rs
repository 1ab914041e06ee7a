//! Finding the vendor driver: absolute paths only, our client libraries
//! skipped, and a documented error (never a panic) when nothing loads.

mod common;

use std::path::Path;

use common::{compile, options, scratch};
use tensor_fusion_worker::loader::{CUDA_FILE, NVML_FILE};
use tensor_fusion_worker::{open_with, Options};
use tf_worker_core::Backend;

const HOW_TO_FIX: &str =
    "; install the NVIDIA driver on this host or set TF_REAL_LIBCUDA=/path/to/libcuda.so.1";

fn open_err(opts: &Options) -> String {
    match open_with(opts) {
        Ok(b) => panic!("opened {}", b.describe()),
        Err(e) => e,
    }
}

fn with_explicit(mut opts: Options, path: &Path) -> Options {
    opts.cuda.explicit = Some(path.display().to_string());
    opts
}

#[test]
fn nonexistent_explicit_path_and_no_dirs() {
    let e = open_err(&with_explicit(
        options(&[], &[]),
        Path::new("/nonexistent/libcuda.so.1"),
    ));
    assert_eq!(
        e,
        format!(
            "no NVIDIA driver found: looked for libcuda.so.1 in no directories (TF_DRIVER_SEARCH_PATH lists none)\
             {HOW_TO_FIX} (TF_REAL_LIBCUDA=/nonexistent/libcuda.so.1: no such file)"
        )
    );
}

#[test]
fn explicit_path_to_a_non_library_reports_the_dlopen_error() {
    let dir = scratch("not-a-library");
    let file = dir.join("libcuda.so.1");
    std::fs::write(
        &file,
        "this is a text file, not a shared library\n".repeat(20),
    )
    .expect("write");
    let e = open_err(&with_explicit(options(&[], &[]), &file));
    assert!(
        e.starts_with("no NVIDIA driver found: looked for libcuda.so.1 in "),
        "{e}"
    );
    assert!(e.contains(HOW_TO_FIX), "{e}");
    // The candidate existed, so its dlopen error is quoted.
    assert!(e.contains(&format!("{}: ", file.display())), "{e}");
    assert!(e.contains("invalid ELF header"), "{e}");
}

#[test]
fn searched_directories_are_listed() {
    let (a, b) = (scratch("empty-a"), scratch("empty-b"));
    let e = open_err(&options(&[&a, &b], &[]));
    assert_eq!(
        e,
        format!(
            "no NVIDIA driver found: looked for libcuda.so.1 in {}, {}{HOW_TO_FIX}",
            a.display(),
            b.display()
        )
    );
}

#[test]
fn broken_symlink_is_mentioned() {
    let dir = scratch("dangling");
    std::os::unix::fs::symlink(dir.join("libcuda.so.999.1"), dir.join(CUDA_FILE)).expect("symlink");
    let e = open_err(&options(&[&dir], &[]));
    assert!(
        e.contains(&format!(
            "{} is a broken symbolic link",
            dir.join(CUDA_FILE).display()
        )),
        "{e}"
    );
}

#[test]
fn client_library_is_skipped() {
    let root = scratch("client-skip");
    let (client, real) = (root.join("client"), root.join("real"));
    std::fs::create_dir_all(&client).expect("mkdir");
    std::fs::create_dir_all(&real).expect("mkdir");
    compile("fake_client.c", &client.join(CUDA_FILE));
    compile("fake_cuda.c", &real.join(CUDA_FILE));

    // Found first, but it is ours: the search goes on to the real driver.
    let b = open_with(&options(&[&client, &real], &[])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.cuda_path(), real.join(CUDA_FILE));
    assert_eq!(b.driver_version(), Ok(12080), "the client would say 99999");

    // Only ours: not found, and the message says why it was passed over.
    let e = open_err(&options(&[&client], &[]));
    assert!(e.starts_with("no NVIDIA driver found"), "{e}");
    assert!(
        e.contains(&format!(
            "{} skipped: it is a TensorFusion client library, not the NVIDIA driver",
            client.join(CUDA_FILE).display()
        )),
        "{e}"
    );

    // Named explicitly, still refused.
    let e = open_err(&with_explicit(options(&[], &[]), &client.join(CUDA_FILE)));
    assert!(
        e.contains("skipped: it is a TensorFusion client library"),
        "{e}"
    );
}

#[test]
fn explicit_path_comes_first_and_failures_fall_through() {
    let root = scratch("explicit-order");
    let (client, real) = (root.join("client"), root.join("real"));
    std::fs::create_dir_all(&client).expect("mkdir");
    std::fs::create_dir_all(&real).expect("mkdir");
    compile("fake_client.c", &client.join(CUDA_FILE));
    compile("fake_cuda.c", &real.join(CUDA_FILE));
    let alt = root.join("vendor-libcuda.so");
    compile("fake_cuda.c", &alt);

    let b =
        open_with(&with_explicit(options(&[&real], &[]), &alt)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.cuda_path(), alt);

    let b = open_with(&with_explicit(
        options(&[&client, &real], &[]),
        Path::new("/nonexistent"),
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.cuda_path(), real.join(CUDA_FILE));
}

#[test]
fn nvml_search_has_its_own_variable() {
    let dir = scratch("nvml-explicit");
    compile("fake_cuda.c", &dir.join(CUDA_FILE));
    let nvml = dir.join("somewhere-libnvidia-ml.so");
    compile("fake_nvml.c", &nvml);
    let mut opts = options(&[&dir], &[]);
    opts.nvml.explicit = Some(nvml.display().to_string());
    let b = open_with(&opts).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.nvml_path(), Some(nvml.as_path()));
    assert_eq!(opts.nvml.file, NVML_FILE);
}
