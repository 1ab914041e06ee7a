//! Contexts and the control calls cudart makes at start-up (issue 3).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and its requests (the generated `CtxCalls`
//! trait).
//!
//! Created contexts (`cuCtxCreate`) belong to the session that made them:
//! the client sees tagged ids, the session maps them to the backend's
//! contexts and destroys whatever is left when the client goes. A primary
//! context is shared by every session on the device, so a client's
//! `cuDevicePrimaryCtxReset` resets *its* view: its allocations there are
//! freed and its retains dropped; the backend context is released (which is
//! what destroys it on a GPU) only when no session holds it any more.

use std::collections::HashMap;
use std::sync::Arc;

use tf_protocol::ctx_msgs::CtxInfo;
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx};
use crate::calls::CtxCalls;
use crate::session::{ctx_handle, reply, Outcome, Session};
use crate::worker::Worker;

/// What this domain needs from a backend.
pub trait CtxBackend {
    /// `cuDevicePrimaryCtxSetFlags_v2`.
    fn primary_ctx_set_flags(&self, _dev: i32, _flags: u32) -> BResult<()> {
        Err(cu::NOT_SUPPORTED)
    }
    /// `cuCtxCreate_v2`: a new context, *not* left current on the calling
    /// thread (sessions share threads' current contexts with nobody).
    fn ctx_create(&self, _dev: i32, _flags: u32) -> BResult<BackendCtx> {
        Err(cu::NOT_SUPPORTED)
    }
    fn ctx_destroy(&self, _ctx: BackendCtx) -> BResult<()> {
        Err(cu::NOT_SUPPORTED)
    }
    fn ctx_get_limit(&self, _ctx: BackendCtx, _limit: u32) -> BResult<u64> {
        Err(cu::NOT_SUPPORTED)
    }
    fn ctx_set_limit(&self, _ctx: BackendCtx, _limit: u32, _value: u64) -> BResult<()> {
        Err(cu::NOT_SUPPORTED)
    }
    /// Id, API version, flags, cache and shared-memory configuration and
    /// stream priority range of a context.
    fn ctx_info(&self, _ctx: BackendCtx) -> BResult<CtxInfo> {
        Err(cu::NOT_SUPPORTED)
    }
    fn ctx_set_cache_config(&self, _ctx: BackendCtx, _config: u32) -> BResult<()> {
        Err(cu::NOT_SUPPORTED)
    }
    fn ctx_set_flags(&self, _ctx: BackendCtx, _flags: u32) -> BResult<()> {
        Err(cu::NOT_SUPPORTED)
    }
    /// The shape of the driver's private export table `guid`: its size word
    /// (bytes; 0 when its first word is not a size) and a bit per slot
    /// 0..128 that is null; the driver's error when it has no such table.
    fn export_table_shape(&self, _guid: &[u8; 16]) -> BResult<(u64, u128)> {
        Err(cu::NOT_SUPPORTED)
    }
}

/// Client-visible ids of created contexts: a tag unlike the primary one,
/// and a per-session counter.
const CREATED_TAG: u64 = 0x7C7D_0000_0000_0000;

/// Per-session state of this domain: the contexts the session created.
#[derive(Default)]
pub struct CtxState {
    created: HashMap<u64, (BackendCtx, i32)>,
    next: u32,
    /// Kept to destroy what is left when the session ends (see `Drop`).
    worker: Option<Arc<Worker>>,
}

impl std::fmt::Debug for CtxState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CtxState")
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

impl CtxState {
    /// The backend context of a created context's id.
    pub fn resolve(&self, handle: u64) -> Option<BackendCtx> {
        self.created.get(&handle).map(|(c, _)| *c)
    }

    /// The device of a created context's id.
    pub fn device(&self, handle: u64) -> Option<i32> {
        self.created.get(&handle).map(|(_, d)| *d)
    }

    /// Frees what a departed session left behind. Created contexts are
    /// destroyed later, when this state is dropped: the session frees its
    /// allocations (which live in those contexts) in between.
    pub fn cleanup(&mut self, _worker: &Worker) {}
}

impl Drop for CtxState {
    fn drop(&mut self) {
        let Some(w) = self.worker.take() else { return };
        for (_, (c, dev)) in self.created.drain() {
            if let Err(s) = w.backend().ctx_destroy(c) {
                tracing::warn!(
                    dev,
                    status = s,
                    "destroying a departed client's context failed"
                );
            }
        }
    }
}

/// Frees the session's allocations that live in backend context `c`,
/// through the worker so the memory limit's accounting follows.
fn free_allocations_in(s: &mut Session, c: BackendCtx) -> BResult<()> {
    let mine: Vec<(u64, u64)> = s
        .allocs
        .iter()
        .filter(|(_, (_, ctx))| *ctx == c)
        .map(|(p, (size, _))| (*p, *size))
        .collect();
    for (ptr, size) in mine {
        s.worker.free(c, ptr, size)?;
        s.allocs.remove(&ptr);
    }
    Ok(())
}

/// The context requests. Handles are validated against this session's
/// tables before the backend sees them.
impl CtxCalls for Session {
    fn primary_ctx_set_flags(&mut self, dev: i32, flags: u32) -> Outcome {
        reply((|| {
            self.check_dev(dev)?;
            self.worker.backend().primary_ctx_set_flags(dev, flags)
        })())
    }

    fn primary_ctx_reset(&mut self, dev: i32) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.check_dev(dev)?;
            // Work this session enqueued in the context is gone with it.
            let _ = self.take_deferred();
            if let Some(c) = w.primary_ctx(dev) {
                if self.retained.get(&dev).copied().unwrap_or(0) > 0 {
                    free_allocations_in(self, c)?;
                }
            }
            for _ in 0..self.retained.remove(&dev).unwrap_or(0) {
                w.release_primary(dev)?;
            }
            Ok(())
        })())
    }

    fn ctx_create(&mut self, dev: i32, flags: u32) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            self.check_dev(dev)?;
            let c = w.backend().ctx_create(dev, flags)?;
            let st = &mut self.ctxs;
            st.next += 1;
            let handle = CREATED_TAG | u64::from(st.next);
            st.created.insert(handle, (c, dev));
            st.worker.get_or_insert_with(|| Arc::clone(&w));
            Ok(handle)
        })())
    }

    fn ctx_destroy(&mut self, ctx: u64) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            let (c, _) = *self.ctxs.created.get(&ctx).ok_or(cu::INVALID_CONTEXT)?;
            free_allocations_in(self, c)?;
            self.worker.backend().ctx_destroy(c)?;
            self.ctxs.created.remove(&ctx);
            self.exec.forget_ctx(c);
            self.graph.forget_ctx(c);
            Ok(())
        })())
    }

    fn ctx_get_limit(&mut self, ctx: u64, limit: u32) -> Outcome {
        reply((|| {
            self.worker.backend().ctx_get_limit(self.ctx(ctx)?, limit)
        })())
    }

    fn ctx_set_limit(&mut self, ctx: u64, limit: u32, value: u64) -> Outcome {
        reply((|| {
            self.worker
                .backend()
                .ctx_set_limit(self.ctx(ctx)?, limit, value)
        })())
    }

    fn ctx_info(&mut self, ctx: u64) -> Outcome {
        reply((|| self.worker.backend().ctx_info(self.ctx(ctx)?))())
    }

    fn ctx_set_cache_config(&mut self, ctx: u64, config: u32) -> Outcome {
        reply((|| {
            self.worker
                .backend()
                .ctx_set_cache_config(self.ctx(ctx)?, config)
        })())
    }

    fn ctx_set_flags(&mut self, ctx: u64, flags: u32) -> Outcome {
        reply((|| {
            self.worker.backend().ctx_set_flags(self.ctx(ctx)?, flags)
        })())
    }

    fn export_table_size(&mut self, guid: [u8; 16]) -> Outcome {
        reply(
            self.worker
                .backend()
                .export_table_shape(&guid)
                .map(|(size, nulls)| (size, nulls as u64, (nulls >> 64) as u64)),
        )
    }

    fn export_table_primary_ctx(&mut self, dev: i32) -> Outcome {
        reply((|| {
            self.check_dev(dev)?;
            Ok(ctx_handle(dev))
        })())
    }
}
