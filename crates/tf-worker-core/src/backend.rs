//! What a worker needs from the thing that really executes CUDA and NVML
//! calls. The shipped worker implements it over the vendor driver; tests use
//! a host-memory implementation that lives with the tests.

use tf_protocol::{DeviceInfo, NvmlInitReply};

/// A nonzero `CUresult` (or `nvmlReturn_t` for NVML methods).
pub type Status = u32;
pub type BResult<T> = Result<T, Status>;

/// A context as the backend knows it (the real `CUcontext` value). Never sent
/// to a client: sessions hand out their own ids.
pub type BackendCtx = u64;

/// Executes calls for all sessions. Methods take `&self` and are called from
/// one thread per session at once, so implementations synchronize internally.
/// The domain traits (`NvmlBackend`, `CtxBackend`, `ExecBackend`) carry the
/// methods of later domains, each with a `NOT_SUPPORTED` default.
pub trait Backend:
    Send
    + Sync
    + crate::NvmlBackend
    + crate::CtxBackend
    + crate::ExecBackend
    + crate::MemBackend
    + crate::GraphBackend
    + crate::ArrayBackend
{
    /// Shown in logs and the handshake, e.g. `cuda 13.0 (/usr/lib/.../libcuda.so.1)`.
    fn describe(&self) -> String;
    fn driver_version(&self) -> BResult<i32>;
    /// Initializes the driver and reports every device's static facts.
    fn init(&self) -> BResult<Vec<DeviceInfo>>;
    fn primary_ctx_retain(&self, dev: i32) -> BResult<BackendCtx>;
    fn primary_ctx_release(&self, dev: i32) -> BResult<()>;
    /// `(flags, active)`
    fn primary_ctx_state(&self, dev: i32) -> BResult<(u32, bool)>;
    fn ctx_synchronize(&self, ctx: BackendCtx) -> BResult<()>;
    fn mem_alloc(&self, ctx: BackendCtx, size: u64) -> BResult<u64>;
    fn mem_free(&self, ctx: BackendCtx, ptr: u64) -> BResult<()>;
    /// Physical `(free, total)` of the context's device.
    fn mem_get_info(&self, ctx: BackendCtx) -> BResult<(u64, u64)>;
    fn memcpy_htod(&self, ctx: BackendCtx, dst: u64, src: &[u8]) -> BResult<()>;
    fn memcpy_dtoh(&self, ctx: BackendCtx, dst: &mut [u8], src: u64) -> BResult<()>;
    fn memcpy_dtod(&self, ctx: BackendCtx, dst: u64, src: u64, size: u64) -> BResult<()>;
    fn memset_d8(&self, ctx: BackendCtx, dst: u64, value: u8, count: u64) -> BResult<()>;
    fn memset_d32(&self, ctx: BackendCtx, dst: u64, value: u32, count: u64) -> BResult<()>;
    /// NVML: versions and every device's static facts (`nvmlReturn_t` errors).
    fn nvml_init(&self) -> BResult<NvmlInitReply>;
    /// NVML: physical `(total, free, used)` of a device.
    fn nvml_memory(&self, index: u32) -> BResult<(u64, u64, u64)>;
}
