//! End to end, without a GPU: explicit CUDA graphs (tests/c/graphs.c)
//! through our libcuda.so.1 against `tf-test-worker` over NATIVE and SHMEM.
//! The host backend replays a built graph's memset, kernel (the emulated
//! `tf_test_*` kernels), device copy and event nodes in dependency order,
//! so these tests check what each launch computed, per-node and whole-graph
//! updates, node lists and types, and that wrong or foreign ids are refused.
//! The same graph on a GPU: `tests/gpu/cuda/graphs.cu`.

mod common;

use std::io::BufRead;
use std::time::Duration;

use common::*;

fn graphs(w: &Worker, inject: Inject, args: &[&str]) -> std::process::Command {
    client_of(&c_program("graphs"), &w.info, inject, args)
}

fn full(w: &Worker, inject: Inject) {
    assert_pass(&run(graphs(w, inject, &["full"]), Duration::from_secs(120)));
}

#[test]
fn graphs_native() {
    let w = Worker::native(&[]);
    full(&w, Inject::LibraryPath);
    full(&w, Inject::Preload);
}

#[test]
fn graphs_shmem() {
    let w = Worker::shmem(64, &[]);
    full(&w, Inject::LibraryPath);
}

/// Copy nodes with pinned host sides read and write the worker's mirrors of
/// them; a host node has this process run its function in graph order (the
/// values it writes reach a later copy node); per-node updates of host
/// nodes, of the graph and of an executable graph.
#[test]
fn host_nodes_and_pinned_copy_nodes() {
    let w = Worker::native(&[]);
    assert_pass(&run(
        graphs(&w, Inject::LibraryPath, &["host"]),
        Duration::from_secs(120),
    ));
    let w = Worker::shmem(64, &[]);
    assert_pass(&run(
        graphs(&w, Inject::LibraryPath, &["host"]),
        Duration::from_secs(120),
    ));
}

/// A client that exits inside a host node's function (the worker's graph
/// waits for it) ends only its session: the worker releases the node and
/// serves the next client.
#[test]
fn a_client_gone_inside_a_host_node_leaves_the_worker_serving() {
    for w in [Worker::native(&[]), Worker::shmem(64, &[])] {
        let o = run(
            graphs(&w, Inject::LibraryPath, &["hostexit"]),
            Duration::from_secs(60),
        );
        assert!(
            text(&o).contains("exiting inside a host node") && o.status.success(),
            "{}",
            text(&o)
        );
        assert_pass(&run(
            graphs(&w, Inject::LibraryPath, &["host"]),
            Duration::from_secs(60),
        ));
    }
}

/// A client names the graph, node and executable graph of another client
/// that holds them: every use is refused, and the holder is unaffected.
#[test]
fn another_clients_graph_ids_are_refused() {
    let w = Worker::native(&[]);
    let mut holder = graphs(&w, Inject::LibraryPath, &["hold"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(holder.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ids: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        ids.first(),
        Some(&"holding"),
        "the holder did not start: {line}"
    );
    let o = run(
        graphs(
            &w,
            Inject::LibraryPath,
            &["foreign", ids[1], ids[2], ids[3]],
        ),
        Duration::from_secs(60),
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_pass(&o);
    full(&w, Inject::LibraryPath);
}
