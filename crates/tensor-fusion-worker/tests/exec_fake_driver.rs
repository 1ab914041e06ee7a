//! The real backend's modules, launches, streams and events over a fake
//! driver (tests/fixtures/fake_exec.c with fake_cuda.c): proves the
//! worker-side unpacking of kernel parameters, the rebuilt fatbin wrappers,
//! JIT logs, the occupancy callback and the stream/event calls without a GPU.

mod common;

use std::path::{Path, PathBuf};

use common::{compile, options, read_fake_int, scratch};
use tensor_fusion_worker::loader::{CUDA_FILE, NVML_FILE};
use tensor_fusion_worker::{open_with, RealBackend};
use tf_protocol::exec_msgs::{
    LaunchApi, LaunchAttr, LoadReply, Memset, MemsetOp, Occupancy, Opt, ParamSlot, Shape,
    LAUNCH_ATTR_VALUE,
};
use tf_worker_core::exec::{Func, Image, LoadOpts};
use tf_worker_core::{Backend, BackendCtx, ExecBackend};

const INVALID_VALUE: u32 = 1;
const NOT_SUPPORTED: u32 = 801;

fn backend(test: &str) -> (RealBackend, PathBuf, BackendCtx) {
    let dir = scratch(test);
    let fx = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    compile(
        &format!("#include \"{fx}/fake_cuda.c\"\n#include \"{fx}/fake_exec.c\"\n"),
        &dir.join(CUDA_FILE),
    );
    compile("fake_nvml.c", &dir.join(NVML_FILE));
    let b = open_with(&options(&[&dir], &[&dir])).expect("open fake driver");
    b.init().expect("init");
    let ctx = b.primary_ctx_retain(0).expect("retain");
    (b, dir.join(CUDA_FILE), ctx)
}

fn fake_bytes(lib: &Path, symbol: &str, n: usize) -> Vec<u8> {
    // SAFETY: the fake library is loaded by the backend already; the symbol
    // is an array of at least `n` bytes in the fixture.
    unsafe {
        let l = libloading::Library::new(lib).expect("reopen fake");
        let p = l.get::<*const u8>(symbol.as_bytes()).expect("symbol");
        std::slice::from_raw_parts(*p, n).to_vec()
    }
}

fn fake_ptr(lib: &Path, symbol: &str) -> u64 {
    // SAFETY: as above; the symbol is a `void *` variable.
    unsafe {
        let l = libloading::Library::new(lib).expect("reopen fake");
        let p = l.get::<*const u64>(symbol.as_bytes()).expect("symbol");
        std::ptr::read_volatile(*p)
    }
}

fn no_opts() -> LoadOpts<'static> {
    LoadOpts {
        jit: &[],
        library: &[],
        want_log: false,
    }
}

fn slot(offset: u32, size: u32) -> ParamSlot {
    ParamSlot { offset, size }
}

fn shape(block: u32) -> Shape {
    Shape {
        grid: [2, 1, 1],
        block: [block, 1, 1],
        ..Shape::default()
    }
}

fn load_ptx(b: &RealBackend, ctx: BackendCtx) -> u64 {
    let ptx: &[u8] = b".version 8.0\n\0";
    let image = Image {
        wrapper: 0,
        parts: vec![ptx],
    };
    b.module_load(ctx, &image, &no_opts(), &mut LoadReply::default())
        .expect("load")
}

#[test]
fn launches_unpack_parameters_by_the_drivers_layout() {
    let (b, lib, ctx) = backend("exec_launch");
    let m = load_ptx(&b, ctx);
    assert_eq!(read_fake_int(&lib, "fake_image_kind"), 1);
    assert_eq!(read_fake_int(&lib, "fake_image_len"), 13);
    let (f, layout) = b.module_get_function(ctx, m, "add").expect("add");
    assert_eq!(layout, Some(vec![slot(0, 8), slot(8, 8), slot(16, 4)]));
    let func = Func {
        real: f,
        kernel: false,
    };
    let buf: Vec<u8> = (0..20u8).map(|i| i.wrapping_mul(17) ^ 0x3C).collect();
    b.launch(
        ctx,
        func,
        LaunchApi::Kernel,
        &shape(64),
        &buf,
        layout.as_deref(),
    )
    .expect("launch");
    assert_eq!(fake_bytes(&lib, "fake_params", 20), buf);
    assert_eq!(read_fake_int(&lib, "fake_used_extra"), 0);

    // A 128-byte tensor map at offset 64, from a buffer at an odd address:
    // the worker's copy is 64-byte aligned.
    let (t, tl) = b.module_get_function(ctx, m, "tmap").expect("tmap");
    let raw: Vec<u8> = (0..=196u8).collect();
    let odd = &raw[1..];
    let tfunc = Func {
        real: t,
        kernel: false,
    };
    b.launch(
        ctx,
        tfunc,
        LaunchApi::Kernel,
        &shape(32),
        odd,
        tl.as_deref(),
    )
    .expect("launch tmap");
    let got = fake_bytes(&lib, "fake_params", 196);
    assert_eq!(got[0], odd[0]);
    assert_eq!(&got[64..192], &odd[64..192]);
    assert_eq!(&got[192..196], &odd[192..196]);
    assert_eq!(read_fake_int(&lib, "fake_tmap_aligned"), 1);

    // Without a layout, the buffer goes as `extra`.
    b.launch(ctx, func, LaunchApi::Kernel, &shape(64), &buf, None)
        .expect("extra");
    assert_eq!(read_fake_int(&lib, "fake_used_extra"), 1);
    assert_eq!(read_fake_int(&lib, "fake_param_len"), 20);
    assert_eq!(fake_bytes(&lib, "fake_params", 20), buf);

    // Attributes go through cuLaunchKernelEx, values untouched.
    let mut s = shape(64);
    let mut cluster = [0u8; LAUNCH_ATTR_VALUE];
    cluster[..12].copy_from_slice(&[2, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]);
    let mut event = [0u8; LAUNCH_ATTR_VALUE];
    event[..8].copy_from_slice(&0xE7E7_0000u64.to_le_bytes());
    s.attrs = vec![
        LaunchAttr {
            id: 4,
            value: cluster,
        },
        LaunchAttr {
            id: 12,
            value: event,
        },
    ];
    b.launch(ctx, func, LaunchApi::KernelEx, &s, &buf, layout.as_deref())
        .expect("launch ex");
    assert_eq!(read_fake_int(&lib, "fake_attr_count"), 2);
    assert_eq!(read_fake_int(&lib, "fake_attr_first"), 4);
    assert_eq!(fake_ptr(&lib, "fake_completion_event"), 0xE7E7_0000);
    // A cooperative launch with attributes becomes one more attribute.
    b.launch(
        ctx,
        func,
        LaunchApi::Cooperative,
        &s,
        &buf,
        layout.as_deref(),
    )
    .expect("cooperative ex");
    assert_eq!(read_fake_int(&lib, "fake_attr_count"), 3);
    // Without attributes it needs cuLaunchCooperativeKernel, which this driver lacks.
    assert_eq!(
        b.launch(
            ctx,
            func,
            LaunchApi::Cooperative,
            &shape(64),
            &buf,
            layout.as_deref()
        ),
        Err(NOT_SUPPORTED)
    );
    // The driver's own checks come back as they are.
    assert_eq!(
        b.launch(
            ctx,
            func,
            LaunchApi::Kernel,
            &shape(2048),
            &buf,
            layout.as_deref()
        ),
        Err(INVALID_VALUE)
    );
    assert_eq!(read_fake_int(&lib, "fake_launches"), 5);
}

#[test]
fn wrappers_are_rebuilt_around_the_workers_copies() {
    let (b, lib, ctx) = backend("exec_wrapper");
    let fatbin = tf_image::fatbin::build(&[(1, 90, 0, b"x\0", 0)]);
    let pre = tf_image::fatbin::build(&[(2, 90, 0, &[7u8; 24], 0)]);
    for (version, parts, want) in [(1u32, 1usize, 1), (2, 3, 3)] {
        let mut list: Vec<&[u8]> = vec![&fatbin];
        list.extend(std::iter::repeat_n(&pre[..], parts - 1));
        let image = Image {
            wrapper: version,
            parts: list,
        };
        let m = b
            .module_load(ctx, &image, &no_opts(), &mut LoadReply::default())
            .expect("load wrapper");
        assert_eq!(read_fake_int(&lib, "fake_image_kind"), 3);
        assert_eq!(read_fake_int(&lib, "fake_wrapper_version"), version as i32);
        assert_eq!(read_fake_int(&lib, "fake_image_len"), want);
        b.module_unload(ctx, m).expect("unload");
    }
    assert_eq!(read_fake_int(&lib, "fake_live_modules"), 0);
    // A fatbin alone is handed over as it is.
    let image = Image {
        wrapper: 0,
        parts: vec![&fatbin],
    };
    b.module_load(ctx, &image, &no_opts(), &mut LoadReply::default())
        .expect("load fatbin");
    assert_eq!(read_fake_int(&lib, "fake_image_kind"), 2);
}

#[test]
fn jit_logs_and_outputs_come_back() {
    let (b, _lib, ctx) = backend("exec_jit");
    let ptx: &[u8] = b".version 8.0\n\0";
    let opts = [
        Opt {
            option: 3,
            value: 0xdead, // the client's buffer: replaced by the worker's
        },
        Opt {
            option: 4,
            value: 64,
        },
        Opt {
            option: 2,
            value: 0,
        },
    ];
    let mut log = LoadReply::default();
    let lo = LoadOpts {
        jit: &opts,
        library: &[],
        want_log: true,
    };
    let image = Image {
        wrapper: 0,
        parts: vec![ptx],
    };
    b.module_load(ctx, &image, &lo, &mut log).expect("load");
    assert_eq!(log.info_log, b"fake jit: 13 bytes");
    assert_eq!(log.values.len(), 3);
    assert_eq!(f32::from_bits(log.values[2] as u32), 1.5);
}

#[test]
fn occupancy_callback_answers_from_the_clients_table() {
    let (b, _lib, ctx) = backend("exec_occupancy");
    let m = load_ptx(&b, ctx);
    let (f, _) = b.module_get_function(ctx, m, "add").expect("add");
    let func = Func {
        real: f,
        kernel: false,
    };
    let query = |table: Vec<u64>| Occupancy::MaxPotentialBlockSize {
        dynamic_smem: 0,
        block_size_limit: 0,
        flags: None,
        smem_by_block_size: table,
    };
    let big: Vec<u64> = (1..=1024)
        .map(|b| if b > 256 { 64 << 10 } else { 0 })
        .collect();
    assert_eq!(b.occupancy(ctx, func, &query(big)).expect("with").1, 256);
    assert_eq!(
        b.occupancy(ctx, func, &query(vec![])).expect("without").1,
        512
    );
}

#[test]
fn streams_events_and_async_work() {
    let (b, lib, ctx) = backend("exec_streams");
    let s = b.stream_create(ctx, 1, None).expect("stream");
    assert_eq!(read_fake_int(&lib, "fake_live_streams"), 1);
    assert_eq!(b.stream_query(ctx, s), Ok(false), "NOT_READY is an answer");
    b.stream_synchronize(ctx, s).expect("sync");
    let e0 = b.event_create(ctx, 0).expect("event");
    let e1 = b.event_create(ctx, 0).expect("event");
    b.event_record(ctx, e0, s, None).expect("record");
    assert_eq!(b.event_elapsed(ctx, e0, e1), Ok(2.5));
    // A stream the driver lacks an entry point for fails alone.
    assert_eq!(b.stream_create(ctx, 0, Some(-1)), Err(NOT_SUPPORTED));
    let p = b.mem_alloc(ctx, 1024).expect("alloc");
    let m = Memset {
        ctx: 0,
        stream: s,
        dst: p,
        pitch: 256,
        value: 0xABCD,
        width: 4,
        op: MemsetOp::D2D16 { height: 3 },
    };
    b.memset_async(ctx, s, &m).expect("memset 2D");
    let mut out = vec![0u8; 1024];
    b.memcpy_dtoh_async(ctx, s, &mut out, p).expect("copy back");
    for row in 0..3 {
        assert_eq!(&out[row * 256..row * 256 + 2], &[0xCD, 0xAB]);
    }
    b.event_destroy(ctx, e0).expect("destroy");
    b.event_destroy(ctx, e1).expect("destroy");
    b.stream_destroy(ctx, s).expect("destroy");
    assert_eq!(read_fake_int(&lib, "fake_live_streams"), 0);
    assert_eq!(read_fake_int(&lib, "fake_live_events"), 0);
    // Entry points this driver lacks: NOT_SUPPORTED, no crash.
    let image = Image {
        wrapper: 0,
        parts: vec![&b"x\0"[..]],
    };
    assert_eq!(
        b.library_load(&image, &no_opts(), &mut LoadReply::default()),
        Err(NOT_SUPPORTED)
    );
}
