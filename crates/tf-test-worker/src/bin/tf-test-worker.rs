//! TEST ONLY: `tensor-fusion-worker`'s command line over the host-memory
//! backend, for CI and local tests without a GPU.

fn main() {
    std::process::exit(tf_worker_core::cli::main_with(|| {
        Ok(Box::new(tf_test_worker::HostBackend::from_env()))
    }));
}
