//! TEST ONLY. `CtxBackend` for the host-memory backend: created contexts,
//! primary-context flags, limits and cache configuration as bookkeeping,
//! and two made-up private export tables so the client's unknown-table path
//! can be tested end to end.

use std::collections::HashMap;
use std::sync::Mutex;

use tf_protocol::ctx_msgs::CtxInfo;
use tf_protocol::status::cu;
use tf_worker_core::{BResult, BackendCtx, CtxBackend};

use crate::{HostBackend, CTX_BASE};

/// A private table the test driver "has": 5 slots with a size word, the
/// fourth null.
pub const TEST_TABLE: [u8; 16] = *b"TF-TEST-TABLE-01";
/// One whose first word is not a size.
pub const TEST_TABLE_UNSIZED: [u8; 16] = *b"TF-TEST-NOSIZE-1";
/// The tools-module table (cuFFT's module iteration), 99 words as on
/// driver 580.
pub const TOOLS_MODULE_TABLE: [u8; 16] = [
    0x6e, 0x16, 0x3f, 0xbe, 0xb9, 0x58, 0x44, 0x4d, 0x83, 0x5c, 0xe1, 0x82, 0xaf, 0xf1, 0x99, 0x1e,
];
/// Created contexts are numbered from here (far from the primary ones).
const CREATED_BASE: u64 = CTX_BASE + 0x10_0000;
/// `CUDA_ERROR_UNSUPPORTED_LIMIT`.
const UNSUPPORTED_LIMIT: u32 = 215;

/// The device attributes of a test device: what a small Hopper-class GPU
/// answers, with the values the other tests rely on (1024 threads per
/// block, 8 SMs, compute capability 9.0) and, like the real worker, 0 for
/// mapped, managed and pageable host memory. The CUDA runtime queries dozens
/// of these at start-up (`cudaGetDeviceProperties`), so a test device must
/// answer them all to run real cudart against this backend.
pub(crate) fn device_attributes(dev: usize) -> Vec<(i32, i32)> {
    let value = |a: i32| -> i32 {
        match a {
            1..=3 => 1024,
            4 => 64,
            5 | 11 => i32::MAX,
            6 | 7 => 65535,
            8 => 48 << 10,
            9 | 12 | 82 => 64 << 10,
            10 => 32,
            13 => 1_980_000,
            14 | 30 => 512,
            15
            | 31
            | 32
            | 41
            | 44
            | 78..=80
            | 90
            | 92..=94
            | 103
            | 112..=114
            | 119
            | 121..=123
            | 125
            | 127 => 1,
            16 => 8,
            21 | 22 | 56 | 70 => 131_072,
            23 | 57 => 65_536,
            24..=26 | 58..=60 => 16_384,
            27 | 28 | 42 | 45 | 46 | 52 | 53 | 55 | 61 | 63 | 64 | 66 | 67 | 73 | 74 | 77 => 32_768,
            29 | 43 | 62 | 65 => 2048,
            33 => dev as i32 + 1,
            36 => 2_619_000,
            37 => 5120,
            38 => 50 << 20,
            39 => 2048,
            40 => 3,
            47 | 48 => 8192,
            49 => 32_768,
            51 => 32,
            54 | 68 => 2046,
            69 => 1 << 28,
            71 => 65_000,
            72 => 2_097_120,
            75 => 9,
            81 => 228 << 10,
            87 => 2,
            97 => 227 << 10,
            106 => 32,
            109 => 134_213_632,
            111 => 1024,
            126 => 4,
            131 | 134 => -1,
            _ => 0,
        }
    };
    (1..=161).map(|a| (a, value(a))).collect()
}

#[derive(Default)]
struct Inner {
    primary_flags: HashMap<i32, u32>,
    /// Created context → (device, flags).
    created: HashMap<BackendCtx, (i32, u32)>,
    next: u64,
    limits: HashMap<(BackendCtx, u32), u64>,
    cache_config: HashMap<BackendCtx, u32>,
    flags: HashMap<BackendCtx, u32>,
}

#[derive(Default)]
pub(crate) struct HostCtx(Mutex<Inner>);

impl HostCtx {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn is_created(&self, ctx: BackendCtx) -> bool {
        self.lock().created.contains_key(&ctx)
    }
}

/// What a fresh context reports for each `CUlimit`.
fn default_limit(limit: u32) -> BResult<u64> {
    Ok(match limit {
        0 => 1024,
        1 => 1 << 20,
        2 => 8 << 20,
        3 => 2,
        4 => 2048,
        5 => 64,
        6..=10 => 0,
        _ => return Err(UNSUPPORTED_LIMIT),
    })
}

impl CtxBackend for HostBackend {
    fn primary_ctx_set_flags(&self, dev: i32, flags: u32) -> BResult<()> {
        if dev < 0 || dev as usize >= self.devices {
            return Err(cu::INVALID_DEVICE);
        }
        self.ctx.lock().primary_flags.insert(dev, flags);
        Ok(())
    }

    fn ctx_create(&self, dev: i32, flags: u32) -> BResult<BackendCtx> {
        if dev < 0 || dev as usize >= self.devices {
            return Err(cu::INVALID_DEVICE);
        }
        let mut s = self.ctx.lock();
        s.next += 1;
        let c = CREATED_BASE + s.next;
        s.created.insert(c, (dev, flags));
        Ok(c)
    }

    fn ctx_destroy(&self, ctx: BackendCtx) -> BResult<()> {
        let mut s = self.ctx.lock();
        s.created.remove(&ctx).ok_or(cu::INVALID_CONTEXT)?;
        s.limits.retain(|(c, _), _| *c != ctx);
        Ok(())
    }

    fn ctx_get_limit(&self, ctx: BackendCtx, limit: u32) -> BResult<u64> {
        self.check_ctx(ctx)?;
        match self.ctx.lock().limits.get(&(ctx, limit)) {
            Some(v) => Ok(*v),
            None => default_limit(limit),
        }
    }

    fn ctx_set_limit(&self, ctx: BackendCtx, limit: u32, value: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        default_limit(limit)?;
        // Like a driver, round the stack size up to a multiple of 16.
        let value = if limit == 0 {
            value.div_ceil(16) * 16
        } else {
            value
        };
        self.ctx.lock().limits.insert((ctx, limit), value);
        Ok(())
    }

    fn ctx_info(&self, ctx: BackendCtx) -> BResult<CtxInfo> {
        self.check_ctx(ctx)?;
        let s = self.ctx.lock();
        let flags = match s.created.get(&ctx) {
            Some((_, f)) => *f,
            None => s
                .primary_flags
                .get(&((ctx - CTX_BASE) as i32))
                .copied()
                .unwrap_or(0),
        };
        Ok(CtxInfo {
            id: ctx,
            api_version: 3020,
            flags: s.flags.get(&ctx).copied().unwrap_or(flags),
            cache_config: s.cache_config.get(&ctx).copied().unwrap_or(0),
            shared_mem_config: 1,
            priority_least: 0,
            priority_greatest: -5,
        })
    }

    fn ctx_set_cache_config(&self, ctx: BackendCtx, config: u32) -> BResult<()> {
        self.check_ctx(ctx)?;
        if config > 4 {
            return Err(cu::INVALID_VALUE);
        }
        self.ctx.lock().cache_config.insert(ctx, config);
        Ok(())
    }

    fn ctx_set_flags(&self, ctx: BackendCtx, flags: u32) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.ctx.lock().flags.insert(ctx, flags);
        Ok(())
    }

    /// Unknown GUIDs are `CUDA_ERROR_INVALID_VALUE`, as on drivers 535 and 580.
    fn export_table_shape(&self, guid: &[u8; 16]) -> BResult<(u64, u128)> {
        match *guid {
            TEST_TABLE => Ok((5 * 8, 1 << 3)),
            TEST_TABLE_UNSIZED => Ok((0, 0)),
            TOOLS_MODULE_TABLE => Ok((99 * 8, 0)),
            _ => Err(cu::INVALID_VALUE),
        }
    }
}
