//! The real backend's NVML device queries over a fake NVML (C, compiled by
//! the test) with two devices in an order CUDA does not use: proves the
//! CUDA-ordinal → NVML-handle mapping, every query shape and the missing-
//! symbol path without a GPU.

mod common;

use common::{compile, options, scratch};
use tensor_fusion_worker::loader::{CUDA_FILE, NVML_FILE};
use tensor_fusion_worker::{open_with, RealBackend};
use tf_protocol::nvml_msgs::{NvmlAnswer, Query};
use tf_worker_core::{Backend, NvmlBackend};

const INVALID_ARGUMENT: u32 = 2;
const NOT_SUPPORTED: u32 = 3;
const FUNCTION_NOT_FOUND: u32 = 13;

/// NVML device 0 is a GPU CUDA does not show; device 1 is the fake CUDA
/// device (UUID bytes 0..16). Every getter answers `100 * device + n` so a
/// wrong device shows.
const FAKE_NVML: &str = r#"
#include <string.h>
typedef unsigned int R;
typedef struct { char legacy[16]; unsigned domain, bus, device, id, sub; char busId[32]; } pci_t;
typedef struct { unsigned long long total, free, used; } mem_t;
typedef struct { unsigned gpu, memory; } util_t;
static int devs[2];
#define DEV(d) int i = (int *)(d) - devs; if (i < 0 || i > 1) return 2
static const char *uuids[2] = {"GPU-ffffffff-0000-0000-0000-000000000000",
                               "GPU-00010203-0405-0607-0809-0a0b0c0d0e0f"};
R nvmlInit_v2(void) { return 0; }
R nvmlShutdown(void) { return 0; }
R nvmlSystemGetDriverVersion(char *v, unsigned n) { strncpy(v, "580.1", n); return 0; }
R nvmlSystemGetNVMLVersion(char *v, unsigned n) { strncpy(v, "13.580.1", n); return 0; }
R nvmlSystemGetCudaDriverVersion_v2(int *v) { *v = 13000; return 0; }
R nvmlDeviceGetCount_v2(unsigned *n) { *n = 2; return 0; }
R nvmlDeviceGetHandleByIndex_v2(unsigned i, void **d) { if (i > 1) return 2; *d = &devs[i]; return 0; }
R nvmlDeviceGetHandleByUUID(const char *u, void **d) {
    for (int i = 0; i < 2; i++) if (!strcmp(u, uuids[i])) { *d = &devs[i]; return 0; }
    return 6;
}
R nvmlDeviceGetName(void *d, char *s, unsigned n) { DEV(d); strncpy(s, i ? "Right GPU" : "Wrong GPU", n); return 0; }
R nvmlDeviceGetUUID(void *d, char *s, unsigned n) { DEV(d); strncpy(s, uuids[i], n); return 0; }
R nvmlDeviceGetSerial(void *d, char *s, unsigned n) { DEV(d); strncpy(s, i ? "SN1" : "SN0", n); return 0; }
R nvmlDeviceGetPciInfo_v3(void *d, pci_t *p) {
    DEV(d); memset(p, 0, sizeof *p); p->bus = 10 + i; p->id = 0x233010de; p->sub = 7;
    strcpy(p->busId, i ? "00000000:0B:00.0" : "00000000:0A:00.0"); return 0;
}
R nvmlDeviceGetMemoryInfo(void *d, mem_t *m) { DEV(d); m->total = 100 + i; m->free = 1; m->used = 2; return 0; }
R nvmlDeviceGetBrand(void *d, unsigned *v) { DEV(d); *v = 100 * i + 14; return 0; }
R nvmlDeviceGetPowerUsage(void *d, unsigned *v) { DEV(d); *v = 100 * i + 5; return 0; }
R nvmlDeviceGetClockInfo(void *d, unsigned t, unsigned *v) { DEV(d); if (t > 3) return 2; *v = 100 * i + t; return 0; }
R nvmlDeviceGetCudaComputeCapability(void *d, int *a, int *b) { DEV(d); *a = 9; *b = i; return 0; }
R nvmlDeviceGetEccMode(void *d, unsigned *a, unsigned *b) { DEV(d); *a = 1; *b = 0; return 0; }
R nvmlDeviceGetFanSpeed(void *d, unsigned *v) { DEV(d); return 3; }
R nvmlDeviceGetBAR1MemoryInfo(void *d, mem_t *m) { DEV(d); m->total = 300; m->free = 200; m->used = 100 + i; return 0; }
R nvmlDeviceGetUtilizationRates(void *d, util_t *u) { DEV(d); u->gpu = 50 + i; u->memory = 7; return 0; }
R nvmlDeviceGetTotalEccErrors(void *d, unsigned e, unsigned c, unsigned long long *n) {
    DEV(d); *n = 1000ull * e + c + i; return 0;
}
"#;

fn backend(test: &str) -> RealBackend {
    let dir = scratch(test);
    compile("fake_cuda.c", &dir.join(CUDA_FILE));
    compile(FAKE_NVML, &dir.join(NVML_FILE));
    open_with(&options(&[&dir], &[&dir])).unwrap_or_else(|e| panic!("open fake driver: {e}"))
}

fn nums(v: &[u64]) -> Result<NvmlAnswer, u32> {
    Ok(NvmlAnswer::nums(v.to_vec()))
}

#[test]
fn devices_follow_cuda_order_by_uuid() {
    let b = backend("nvml-order");
    let r = b.nvml_init().expect("nvml init");
    assert_eq!(r.driver_version, "580.1");
    // Only the device CUDA shows, found by its UUID (NVML's device 1).
    assert_eq!(r.devices.len(), 1);
    assert_eq!(r.devices[0].name, "Right GPU");
    assert_eq!(r.devices[0].pci_bus_id, "00000000:0B:00.0");
    assert_eq!(b.nvml_memory(0), Ok((101, 1, 2)));
    assert_eq!(b.nvml_memory(1), Err(INVALID_ARGUMENT), "not a CUDA device");
    assert_eq!(
        b.nvml_query(1, Query::Brand, 0),
        Err(INVALID_ARGUMENT),
        "not a CUDA device"
    );
}

#[test]
fn every_query_shape_reaches_the_right_device() {
    let b = backend("nvml-queries");
    let q = |query, arg| b.nvml_query(0, query, arg);
    assert_eq!(q(Query::Brand, 0), nums(&[114]));
    assert_eq!(q(Query::PowerUsage, 0), nums(&[105]));
    assert_eq!(q(Query::Clock, 2), nums(&[102]));
    assert_eq!(q(Query::Clock, 9), Err(INVALID_ARGUMENT), "NVML checks it");
    assert_eq!(q(Query::ComputeCapability, 0), nums(&[9, 1]));
    assert_eq!(q(Query::EccMode, 0), nums(&[1, 0]));
    assert_eq!(q(Query::Serial, 0), Ok(NvmlAnswer::text("SN1")));
    assert_eq!(
        q(Query::PciInfo, 0),
        Ok(NvmlAnswer {
            nums: vec![0, 11, 0, 0x2330_10de, 7],
            text: "00000000:0B:00.0".into()
        })
    );
    assert_eq!(q(Query::Bar1Memory, 0), nums(&[300, 200, 101]));
    assert_eq!(q(Query::Utilization, 0), nums(&[51, 7]));
    assert_eq!(q(Query::TotalEccErrors, 1 | 1 << 8), nums(&[1002]));
    // The driver's own "not supported" passes through.
    assert_eq!(q(Query::FanSpeed, 0), Err(NOT_SUPPORTED));
    // Entry points this NVML lacks.
    assert_eq!(q(Query::Architecture, 0), Err(FUNCTION_NOT_FOUND));
    assert_eq!(q(Query::MigMode, 0), Err(FUNCTION_NOT_FOUND));
    assert_eq!(q(Query::Temperature, 0), Err(FUNCTION_NOT_FOUND));
    // Answered by the worker core, never by the backend.
    assert_eq!(q(Query::ComputeProcesses, 0), Err(NOT_SUPPORTED));
}
