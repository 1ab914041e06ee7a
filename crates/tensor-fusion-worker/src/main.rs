//! `tensor-fusion-worker`: executes remoted CUDA and NVML calls on this
//! host's GPUs. The command line and serving loop are shared with the test
//! worker (`tf_worker_core::cli`); this binary only plugs in the real driver.

fn main() {
    std::process::exit(tf_worker_core::cli::main_with(
        tensor_fusion_worker::real_backend::open,
    ))
}
