//! The shipped [`Backend`]: every call goes to the vendor's CUDA driver and
//! NVML on this host.

use std::path::Path;

use tf_protocol::status::nvml as nvml_status;
use tf_protocol::{DeviceInfo, NvmlInitReply};
use tf_worker_core::{BResult, Backend, BackendCtx};

use crate::cuda::Cuda;
use crate::loader::{self, Search};
use crate::nvml::Nvml;

/// Where to find the two vendor libraries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub cuda: Search,
    pub nvml: Search,
}

impl Options {
    /// As configured by `TF_REAL_LIBCUDA`, `TF_REAL_LIBNVML` and
    /// `TF_DRIVER_SEARCH_PATH`.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var_os(k).map(|v| v.to_string_lossy().into_owned());
        Options {
            cuda: Search::cuda(&get),
            nvml: Search::nvml(&get),
        }
    }
}

/// Opens the real backend as the environment configures it. This is the
/// `make_backend` of `tf_worker_core::cli::main_with`; the error is the
/// documented "no NVIDIA driver found: ..." text.
pub fn open() -> Result<Box<dyn Backend>, String> {
    let b = open_with(&Options::from_env())?;
    Ok(Box::new(b))
}

/// Opens the CUDA driver (required) and NVML (optional: a warning, then
/// NVML requests answer `NVML_ERROR_LIBRARY_NOT_FOUND`).
pub fn open_with(opts: &Options) -> Result<RealBackend, String> {
    let loaded = loader::load(&opts.cuda)?;
    let cuda = Cuda::new(&loaded);
    let ctx = crate::ctx::CtxDriver::new(&loaded);
    let exec = crate::exec::ExecDriver::new(&loaded);
    let mem = crate::mem::MemDriver::new(&loaded);
    let graph = crate::graph::GraphDriver::new(&loaded);
    let arrays = crate::array::ArrayDriver::new(&loaded);
    let nvml = match loader::load(&opts.nvml) {
        Ok(l) => Some(Nvml::new(&l)),
        Err(e) => {
            tracing::warn!(
                "NVML unavailable, NVML requests will fail with NVML_ERROR_LIBRARY_NOT_FOUND: {e}"
            );
            None
        }
    };
    tracing::debug!(cuda = %cuda.path.display(), nvml = ?nvml.as_ref().map(|n| n.path.display().to_string()), "driver loaded");
    Ok(RealBackend {
        cuda,
        ctx,
        nvml,
        exec,
        mem,
        graph,
        arrays,
    })
}

/// The vendor driver behind the [`Backend`] trait.
pub struct RealBackend {
    pub(crate) cuda: Cuda,
    nvml: Option<Nvml>,
    /// Context entry points (`crate::ctx`).
    pub(crate) ctx: crate::ctx::CtxDriver,
    /// Module, kernel, stream and event entry points (`crate::exec`).
    pub(crate) exec: crate::exec::ExecDriver,
    /// VMM, pool and stream memory-operation entry points (`crate::mem`).
    pub(crate) mem: crate::mem::MemDriver,
    /// Capture and graph entry points (`crate::graph`).
    pub(crate) graph: crate::graph::GraphDriver,
    /// Array, texture and surface object entry points (`crate::array`).
    pub(crate) arrays: crate::array::ArrayDriver,
}

impl RealBackend {
    /// The `libcuda.so.1` in use.
    pub fn cuda_path(&self) -> &Path {
        &self.cuda.path
    }

    /// The `libnvidia-ml.so.1` in use, if one was found.
    pub fn nvml_path(&self) -> Option<&Path> {
        self.nvml.as_ref().map(|n| n.path.as_path())
    }

    pub(crate) fn nvml(&self) -> BResult<&Nvml> {
        self.nvml.as_ref().ok_or(nvml_status::LIBRARY_NOT_FOUND)
    }
}

// `impl NvmlBackend for RealBackend` lives in `crate::nvml`.
// `impl CtxBackend for RealBackend` lives in `crate::ctx`.
// `impl ExecBackend for RealBackend` lives in `crate::exec`.

impl Backend for RealBackend {
    fn describe(&self) -> String {
        let version = match self.cuda.driver_version() {
            Ok(v) => v.to_string(),
            Err(e) => format!("unknown (error {e})"),
        };
        let nvml = match &self.nvml {
            Some(n) => format!("nvml ({})", n.path.display()),
            None => "no nvml".to_string(),
        };
        format!(
            "cuda driver {version} ({}), {nvml}",
            self.cuda.path.display()
        )
    }

    fn driver_version(&self) -> BResult<i32> {
        self.cuda.driver_version()
    }

    fn init(&self) -> BResult<Vec<DeviceInfo>> {
        self.cuda.init()?;
        let n = self.cuda.device_count()?;
        (0..n).map(|i| self.cuda.device_info(i)).collect()
    }

    fn primary_ctx_retain(&self, dev: i32) -> BResult<BackendCtx> {
        self.cuda.primary_ctx_retain(dev)
    }

    fn primary_ctx_release(&self, dev: i32) -> BResult<()> {
        self.cuda.primary_ctx_release(dev)
    }

    fn primary_ctx_state(&self, dev: i32) -> BResult<(u32, bool)> {
        self.cuda.primary_ctx_state(dev)
    }

    fn ctx_synchronize(&self, ctx: BackendCtx) -> BResult<()> {
        self.cuda.ctx_synchronize(ctx)
    }

    fn mem_alloc(&self, ctx: BackendCtx, size: u64) -> BResult<u64> {
        self.cuda.mem_alloc(ctx, size)
    }

    fn mem_free(&self, ctx: BackendCtx, ptr: u64) -> BResult<()> {
        self.cuda.mem_free(ctx, ptr)
    }

    fn mem_get_info(&self, ctx: BackendCtx) -> BResult<(u64, u64)> {
        self.cuda.mem_get_info(ctx)
    }

    fn memcpy_htod(&self, ctx: BackendCtx, dst: u64, src: &[u8]) -> BResult<()> {
        self.cuda.memcpy_htod(ctx, dst, src)
    }

    fn memcpy_dtoh(&self, ctx: BackendCtx, dst: &mut [u8], src: u64) -> BResult<()> {
        self.cuda.memcpy_dtoh(ctx, dst, src)
    }

    fn memcpy_dtod(&self, ctx: BackendCtx, dst: u64, src: u64, size: u64) -> BResult<()> {
        self.cuda.memcpy_dtod(ctx, dst, src, size)
    }

    fn memset_d8(&self, ctx: BackendCtx, dst: u64, value: u8, count: u64) -> BResult<()> {
        self.cuda.memset_d8(ctx, dst, value, count)
    }

    fn memset_d32(&self, ctx: BackendCtx, dst: u64, value: u32, count: u64) -> BResult<()> {
        self.cuda.memset_d32(ctx, dst, value, count)
    }

    fn nvml_init(&self) -> BResult<NvmlInitReply> {
        self.nvml_describe()
    }

    fn nvml_memory(&self, index: u32) -> BResult<(u64, u64, u64)> {
        self.nvml_memory_of(index)
    }
}
