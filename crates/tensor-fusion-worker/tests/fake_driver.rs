//! The real backend over fake vendor libraries (C, compiled by the test):
//! proves symbol loading and every call path without a GPU.

mod common;

use common::{call_fake_fn, compile, fake_backend, options, scratch};
use tensor_fusion_worker::loader::{CUDA_FILE, NVML_FILE};
use tensor_fusion_worker::open_with;
use tensor_fusion_worker::FORCED_ZERO;
use tf_worker_core::Backend;

const NOT_INITIALIZED: u32 = 3;
const INVALID_VALUE: u32 = 1;
const INVALID_CONTEXT: u32 = 201;
const NOT_SUPPORTED: u32 = 801;

#[test]
fn driver_version_and_describe_work_before_init() {
    let (b, dir) = fake_backend("version");
    assert_eq!(b.driver_version(), Ok(12080));
    let d = b.describe();
    let cuda = dir.join(CUDA_FILE);
    assert!(
        d.starts_with(&format!("cuda driver 12080 ({})", cuda.display())),
        "{d}"
    );
    assert!(d.contains("libnvidia-ml.so.1"), "{d}");
    assert_eq!(b.cuda_path(), cuda);
    // The fake driver refuses everything else until cuInit.
    assert_eq!(b.primary_ctx_retain(0), Err(NOT_INITIALIZED));
}

#[test]
fn init_reports_the_device_and_filters_attributes() {
    let (b, _dir) = fake_backend("init");
    let devs = b.init().expect("init");
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!(d.name, "Fake GPU");
    // Resolved through the cuDeviceGetUuid fallback (the fake lacks _v2).
    assert_eq!(d.uuid, core::array::from_fn(|i| i as u8));
    assert_eq!(d.total_mem, 1 << 30);
    assert_eq!(d.pci_bus_id, "0000:01:00.0");
    // Unknown numbers (INVALID_VALUE) and failing ones (150) are skipped;
    // mapped/managed memory is reported unsupported whatever the GPU says.
    let mut want = vec![(1, 1024), (16, 4), (75, 9), (76, 0)];
    want.extend(FORCED_ZERO.iter().map(|(a, _)| (*a, 0)));
    want.sort_unstable();
    assert_eq!(d.attributes, want);
    // cuInit is called once; a second init answers the same.
    assert_eq!(b.init().expect("init again"), devs);
}

#[test]
fn memory_round_trip_through_the_backend_trait() {
    let (b, _dir) = fake_backend("memory");
    let b: &dyn Backend = &b;
    b.init().expect("init");
    assert_eq!(b.primary_ctx_state(0), Ok((0, false)));
    let ctx = b.primary_ctx_retain(0).expect("retain");
    assert_ne!(ctx, 0);
    assert_eq!(b.primary_ctx_state(0), Ok((0, true)));
    assert_eq!(b.mem_get_info(ctx), Ok((768 << 20, 1 << 30)));

    let a = b.mem_alloc(ctx, 64).expect("alloc");
    let c = b.mem_alloc(ctx, 64).expect("alloc");
    let data: Vec<u8> = (0..64).collect();
    b.memcpy_htod(ctx, a, &data).expect("htod");
    b.memcpy_dtod(ctx, c, a, 64).expect("dtod");
    b.memset_d8(ctx, c + 8, 0xAB, 4).expect("memset");
    let mut out = vec![0u8; 64];
    b.memcpy_dtoh(ctx, &mut out, c).expect("dtoh");
    let mut want = data.clone();
    want[8..12].fill(0xAB);
    assert_eq!(out, want);
    b.ctx_synchronize(ctx).expect("sync");

    // The fake lacks cuMemsetD32_v2: that call alone is unsupported.
    assert_eq!(b.memset_d32(ctx, a, 7, 4), Err(NOT_SUPPORTED));
    // Driver errors come back as statuses, never panics.
    assert_eq!(b.mem_alloc(ctx, 0), Err(INVALID_VALUE));
    b.mem_free(ctx, a).expect("free");
    assert_eq!(b.mem_free(ctx, a), Err(INVALID_VALUE), "double free");
    assert_eq!(b.mem_alloc(0, 64), Err(INVALID_CONTEXT), "null context");
    b.mem_free(ctx, c).expect("free");

    b.primary_ctx_release(0).expect("release");
    assert_eq!(b.primary_ctx_state(0), Ok((0, false)));
    assert_eq!(b.primary_ctx_release(0), Err(INVALID_CONTEXT));
    assert_eq!(b.primary_ctx_retain(3), Err(101), "bad ordinal");
}

#[test]
fn nvml_reports_versions_devices_and_memory() {
    let (b, dir) = fake_backend("nvml");
    let r = b.nvml_init().expect("nvml init");
    assert_eq!(r.driver_version, "580.65.06");
    assert_eq!(r.nvml_version, "13.580.65.06");
    // Through the unversioned nvmlSystemGetCudaDriverVersion fallback.
    assert_eq!(r.cuda_driver_version, 13000);
    assert_eq!(r.devices.len(), 1);
    assert_eq!(r.devices[0].name, "Fake GPU");
    assert_eq!(
        r.devices[0].uuid,
        "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"
    );
    assert_eq!(r.devices[0].pci_bus_id, "00000000:01:00.0");
    assert_eq!(b.nvml_memory(0), Ok((1 << 30, 3 << 28, 1 << 28)));
    assert_eq!(b.nvml_memory(5), Err(2), "NVML_ERROR_INVALID_ARGUMENT");
    // NVML is initialized once however often clients ask, and shut down
    // when the backend goes.
    b.nvml_init().expect("again");
    let nvml = dir.join(NVML_FILE);
    assert_eq!(call_fake_fn(&nvml, "fake_nvml_refs"), 1);
    drop(b);
    assert_eq!(call_fake_fn(&nvml, "fake_nvml_refs"), 0);
}

#[test]
fn missing_nvml_is_not_fatal() {
    let dir = scratch("no-nvml");
    compile("fake_cuda.c", &dir.join(CUDA_FILE));
    let b = open_with(&options(&[&dir], &[&dir])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.nvml_path(), None);
    assert!(b.describe().ends_with("no nvml"), "{}", b.describe());
    assert_eq!(
        b.nvml_init().err(),
        Some(12),
        "NVML_ERROR_LIBRARY_NOT_FOUND"
    );
    assert_eq!(b.nvml_memory(0), Err(12));
    assert_eq!(b.init().expect("cuda still works").len(), 1);
}

#[test]
fn missing_symbols_fail_only_their_calls() {
    let dir = scratch("sparse");
    compile(
        "unsigned int cuInit(unsigned int f) { (void)f; return 0; }\n\
         unsigned int cuDriverGetVersion(int *v) { *v = 11040; return 0; }\n",
        &dir.join(CUDA_FILE),
    );
    compile(
        "int nvmlInit_v2(void) { return 0; }\n",
        &dir.join(NVML_FILE),
    );
    let b = open_with(&options(&[&dir], &[&dir])).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.driver_version(), Ok(11040));
    assert_eq!(b.init().err(), Some(NOT_SUPPORTED), "no cuDeviceGetCount");
    assert_eq!(b.primary_ctx_retain(0), Err(NOT_SUPPORTED));
    assert_eq!(b.mem_alloc(1, 8), Err(NOT_SUPPORTED));
    assert_eq!(b.memcpy_htod(1, 8, &[1, 2]), Err(NOT_SUPPORTED));
    assert_eq!(b.memcpy_dtoh(1, &mut [0; 2], 8), Err(NOT_SUPPORTED));
    assert_eq!(b.ctx_synchronize(1), Err(NOT_SUPPORTED));
    // NVML's own code for a missing entry point.
    assert_eq!(
        b.nvml_init().err(),
        Some(13),
        "NVML_ERROR_FUNCTION_NOT_FOUND"
    );
    assert_eq!(b.nvml_memory(0), Err(13));
}
