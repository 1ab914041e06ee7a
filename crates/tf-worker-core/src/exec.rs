//! Modules, kernels, launches, streams and events (issue 3).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and its requests (the generated `ExecCalls`
//! trait).
//!
//! Every handle a client names is looked up in this session's own tables
//! ([`ExecState`]): streams, events, modules and libraries by the ids the
//! client minted, functions and kernels by the ids minted here. A backend
//! only ever sees handles it returned itself. Unloading a module or library
//! forgets its functions and globals, so a stale id is refused here instead
//! of reaching the driver.

mod link;
mod modules;
mod streams;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tf_protocol::exec_msgs::{
    Launch, LaunchApi, LibraryApi, LinkInput, Load, LoadReply, Memset, ModuleApi, Occupancy,
    OccupancyReply, Opt, ParamSlot, Shape, TensorMapEncode, TENSOR_MAP_BYTES,
};
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx, Status};
use crate::calls::ExecCalls;
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

pub(crate) use streams::{memcpy_dtod_async, memcpy_dtoh_async, memcpy_htod_async, resolve_stream};

fn unsupported<T>() -> BResult<T> {
    Err(cu::NOT_SUPPORTED)
}

/// A function (`CUfunction`) or kernel (`CUkernel`) as the backend returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Func {
    pub real: u64,
    /// A context-independent `CUkernel` (from a library) rather than a `CUfunction`.
    pub kernel: bool,
}

/// An image to load: one part, or (`wrapper` 1 or 2) the parts a fatbin
/// wrapper named: its fatbin, then version 2's prelinked fatbins.
#[derive(Debug, Clone)]
pub struct Image<'a> {
    pub wrapper: u32,
    pub parts: Vec<&'a [u8]>,
}

/// Options of a load, as the application passed them.
#[derive(Debug, Clone, Copy)]
pub struct LoadOpts<'a> {
    pub jit: &'a [Opt],
    pub library: &'a [Opt],
    /// Fill the logs and option values of the [`LoadReply`].
    pub want_log: bool,
}

/// One input of a link: a `CUjitInputType`, its name, its own options
/// (values only, checked) and its bytes.
#[derive(Debug, Clone, Copy)]
pub struct LinkPart<'a> {
    pub kind: u32,
    pub name: &'a str,
    pub jit: &'a [Opt],
    pub data: &'a [u8],
}

/// A function lookup's answer: the handle and, when known, its parameter layout.
pub type Found = (u64, Option<Vec<ParamSlot>>);

/// What this domain needs from a backend. Handles are the backend's own
/// values (the real `CUstream`, `CUmodule`, ...); streams passed to it are
/// real streams or the default-stream values 0, 1 and 2, and the events in
/// launch attributes are real events. Methods taking a context run with it
/// current.
#[allow(unused_variables)]
pub trait ExecBackend {
    fn stream_create(&self, ctx: BackendCtx, flags: u32, priority: Option<i32>) -> BResult<u64> {
        unsupported()
    }
    fn stream_destroy(&self, ctx: BackendCtx, stream: u64) -> BResult<()> {
        unsupported()
    }
    fn stream_synchronize(&self, ctx: BackendCtx, stream: u64) -> BResult<()> {
        unsupported()
    }
    /// `true` when all work is done, `false` for `CUDA_ERROR_NOT_READY`.
    fn stream_query(&self, ctx: BackendCtx, stream: u64) -> BResult<bool> {
        unsupported()
    }
    fn stream_wait_event(
        &self,
        ctx: BackendCtx,
        stream: u64,
        event: u64,
        flags: u32,
    ) -> BResult<()> {
        unsupported()
    }
    fn stream_get_priority(&self, ctx: BackendCtx, stream: u64) -> BResult<i32> {
        unsupported()
    }
    fn event_create(&self, ctx: BackendCtx, flags: u32) -> BResult<u64> {
        unsupported()
    }
    fn event_destroy(&self, ctx: BackendCtx, event: u64) -> BResult<()> {
        unsupported()
    }
    fn event_record(
        &self,
        ctx: BackendCtx,
        event: u64,
        stream: u64,
        flags: Option<u32>,
    ) -> BResult<()> {
        unsupported()
    }
    fn event_synchronize(&self, ctx: BackendCtx, event: u64) -> BResult<()> {
        unsupported()
    }
    /// `true` when the recorded work is done, `false` for `CUDA_ERROR_NOT_READY`.
    fn event_query(&self, ctx: BackendCtx, event: u64) -> BResult<bool> {
        unsupported()
    }
    fn event_elapsed(&self, ctx: BackendCtx, start: u64, end: u64) -> BResult<f32> {
        unsupported()
    }
    /// Loads a module into `ctx`. With `opts.want_log`, fills `log` (also when the load fails).
    fn module_load(
        &self,
        ctx: BackendCtx,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        unsupported()
    }
    fn module_unload(&self, ctx: BackendCtx, module: u64) -> BResult<()> {
        unsupported()
    }
    fn module_get_function(&self, ctx: BackendCtx, module: u64, name: &str) -> BResult<Found> {
        unsupported()
    }
    /// The names of the module's functions, in the driver's order.
    fn module_function_names(&self, ctx: BackendCtx, module: u64) -> BResult<Vec<String>> {
        unsupported()
    }
    /// `(device address, bytes)`.
    fn module_get_global(&self, ctx: BackendCtx, module: u64, name: &str) -> BResult<(u64, u64)> {
        unsupported()
    }
    fn library_load(
        &self,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        unsupported()
    }
    fn library_unload(&self, library: u64) -> BResult<()> {
        unsupported()
    }
    /// `ctx`: a context of the session to make current (the driver answers
    /// parameter layouts only with one current, even for a library's kernel).
    fn library_get_kernel(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<Found> {
        unsupported()
    }
    fn library_get_module(&self, ctx: BackendCtx, library: u64) -> BResult<u64> {
        unsupported()
    }
    fn library_get_global(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<(u64, u64)> {
        unsupported()
    }
    fn kernel_get_function(&self, ctx: BackendCtx, kernel: u64) -> BResult<u64> {
        unsupported()
    }
    fn func_get_attribute(&self, ctx: BackendCtx, func: Func, attrib: i32) -> BResult<i32> {
        unsupported()
    }
    fn func_set_attribute(
        &self,
        ctx: BackendCtx,
        func: Func,
        attrib: i32,
        value: i32,
    ) -> BResult<()> {
        unsupported()
    }
    fn func_set_cache_config(&self, ctx: BackendCtx, func: Func, config: u32) -> BResult<()> {
        unsupported()
    }
    fn kernel_get_attribute(&self, kernel: u64, attrib: i32, dev: i32) -> BResult<i32> {
        unsupported()
    }
    fn kernel_set_attribute(&self, kernel: u64, attrib: i32, value: i32, dev: i32) -> BResult<()> {
        unsupported()
    }
    fn occupancy(&self, ctx: BackendCtx, func: Func, query: &Occupancy) -> BResult<OccupancyReply> {
        unsupported()
    }
    /// Enqueues a launch. `params` is the packed parameter buffer, at least
    /// as long as `layout` (when the layout is known) requires.
    fn launch(
        &self,
        ctx: BackendCtx,
        func: Func,
        api: LaunchApi,
        shape: &Shape,
        params: &[u8],
        layout: Option<&[ParamSlot]>,
    ) -> BResult<()> {
        unsupported()
    }
    /// The device range was checked against the session's memory.
    fn memset_async(&self, ctx: BackendCtx, stream: u64, m: &Memset) -> BResult<()> {
        unsupported()
    }
    /// Returns once `src` may be reused (the copy itself may still be queued).
    fn memcpy_htod_async(&self, ctx: BackendCtx, stream: u64, dst: u64, src: &[u8]) -> BResult<()> {
        unsupported()
    }
    /// Returns once the data is in `dst`: in stream order, then waited for.
    fn memcpy_dtoh_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: &mut [u8],
        src: u64,
    ) -> BResult<()> {
        unsupported()
    }
    fn memcpy_dtod_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> BResult<()> {
        unsupported()
    }
    /// Links `inputs` in `ctx` with `cuLinkCreate`'s options `jit` (checked:
    /// values and log buffers, which the backend replaces by its own) and
    /// returns the linked image. Fills `log` also when the link fails.
    fn link(
        &self,
        ctx: BackendCtx,
        jit: &[Opt],
        inputs: &[LinkPart<'_>],
        log: &mut LoadReply,
    ) -> BResult<Vec<u8>> {
        unsupported()
    }
    /// `cuTensorMapEncode*` with `ctx` current; the arrays are as long as
    /// the rank requires (checked by the decoder).
    fn tensor_map_encode(
        &self,
        ctx: BackendCtx,
        e: &TensorMapEncode,
    ) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        unsupported()
    }
    fn tensor_map_replace_address(
        &self,
        ctx: BackendCtx,
        map: &[u8; TENSOR_MAP_BYTES],
        address: u64,
    ) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        unsupported()
    }
}

/// Most image bytes one session may have staged at once (images larger than
/// one frame arrive in parts).
pub const MAX_STAGED: usize = 1 << 30;

#[derive(Debug)]
pub(crate) struct Stream {
    pub ctx: BackendCtx,
    pub real: u64,
}

#[derive(Debug)]
pub(crate) struct Event {
    pub ctx: BackendCtx,
    pub real: u64,
}

/// A module or library. A load that failed is kept with its status, which
/// every later use reports (the load itself was enqueued and not answered).
#[derive(Debug)]
pub(crate) struct Loaded {
    /// Modules: their context. Libraries: 0.
    pub ctx: BackendCtx,
    pub real: Result<u64, Status>,
    /// False for modules obtained from a library: the library owns them.
    pub owned: bool,
    /// The library a module came from, else the handle itself.
    pub owner: u64,
}

#[derive(Debug)]
pub(crate) struct FuncEntry {
    pub func: Func,
    /// Functions of a module run in its context; kernels in the caller's.
    pub ctx: Option<BackendCtx>,
    pub layout: Option<Arc<[ParamSlot]>>,
    /// The module or library whose unloading invalidates it.
    pub owner: u64,
}

/// Per-session state of this domain.
#[derive(Debug, Default)]
pub struct ExecState {
    pub(crate) streams: HashMap<u64, Stream>,
    pub(crate) events: HashMap<u64, Event>,
    pub(crate) modules: HashMap<u64, Loaded>,
    pub(crate) libraries: HashMap<u64, Loaded>,
    pub(crate) funcs: HashMap<u64, FuncEntry>,
    /// `(owner, name, kernel)` → minted id: repeated lookups share one id.
    pub(crate) names: HashMap<(u64, String, bool), u64>,
    pub(crate) next_func: u64,
    /// Image bytes received ahead of their load, per handle.
    pub(crate) staging: HashMap<u64, Vec<u8>>,
    pub(crate) staged: usize,
    /// Device ranges of module globals: start → (bytes, owner). Copies and
    /// memsets may touch them like the session's own allocations.
    pub(crate) globals: BTreeMap<u64, (u64, u64)>,
    /// Linked images the client has not read back yet, per link id.
    pub(crate) linked: HashMap<u64, Vec<u8>>,
}

impl ExecState {
    /// Whether `[ptr, ptr+len)` lies inside a global of a loaded module.
    pub fn covers(&self, ptr: u64, len: u64) -> bool {
        let Some(end) = ptr.checked_add(len) else {
            return false;
        };
        matches!(self.globals.range(..=ptr).next_back(),
            Some((start, (size, _))) if end <= start + size)
    }

    /// Forgets everything `owner` (a module or library) gave out.
    pub(crate) fn forget_owner(&mut self, owner: u64) {
        self.funcs.retain(|_, f| f.owner != owner);
        self.names.retain(|(o, _, _), _| *o != owner);
        self.globals.retain(|_, (_, o)| *o != owner);
    }

    /// Forgets what lived in a context the application destroyed: the
    /// driver destroyed it with the context, and its handles are stale (a
    /// later release through them could crash the driver).
    pub(crate) fn forget_ctx(&mut self, ctx: BackendCtx) {
        self.streams.retain(|_, st| st.ctx != ctx);
        self.events.retain(|_, e| e.ctx != ctx);
        let gone: Vec<u64> = self
            .modules
            .iter()
            .filter(|(_, m)| m.ctx == ctx)
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            self.modules.remove(&id);
            self.forget_owner(id);
        }
        self.funcs.retain(|_, f| f.ctx != Some(ctx));
    }

    /// Frees what a departed session left behind: events and streams
    /// first (work may still reference modules), then modules, then
    /// libraries. Runs before the session releases its contexts and memory.
    pub fn cleanup(&mut self, worker: &Worker) {
        let b = worker.backend();
        let mut failed = 0usize;
        let mut note = |what: &str, r: BResult<()>| {
            if let Err(status) = r {
                failed += 1;
                tracing::warn!(status, "freeing a departed client's {what} failed");
            }
        };
        let (n_events, n_streams) = (self.events.len(), self.streams.len());
        for (_, e) in self.events.drain() {
            note("event", b.event_destroy(e.ctx, e.real));
        }
        for (_, s) in self.streams.drain() {
            note("stream", b.stream_destroy(s.ctx, s.real));
        }
        let mut n_modules = 0;
        for (_, m) in self.modules.drain() {
            if let (Ok(real), true) = (m.real, m.owned) {
                n_modules += 1;
                note("module", b.module_unload(m.ctx, real));
            }
        }
        let mut n_libraries = 0;
        for (_, l) in self.libraries.drain() {
            if let Ok(real) = l.real {
                n_libraries += 1;
                note("library", b.library_unload(real));
            }
        }
        self.funcs.clear();
        self.names.clear();
        self.globals.clear();
        self.staging.clear();
        self.linked.clear();
        if n_events + n_streams + n_modules + n_libraries > 0 {
            tracing::info!(
                streams = n_streams,
                events = n_events,
                modules = n_modules,
                libraries = n_libraries,
                failed,
                "released the session's streams, events and modules"
            );
        }
    }
}

/// The exec requests; the bodies are in `modules` and `streams`.
impl ExecCalls for Session {
    fn image_part(&mut self, handle: u64, offset: u64, data: &[u8]) -> Outcome {
        reply(modules::stage(self, handle, offset, data))
    }

    fn module_load(&mut self, _api: ModuleApi, load: Load<'_>) -> Outcome {
        modules::load(self, load, false)
    }

    fn library_load(&mut self, _api: LibraryApi, load: Load<'_>) -> Outcome {
        modules::load(self, load, true)
    }

    fn module_unload(&mut self, module: u64) -> Outcome {
        reply(modules::unload(self, module, false))
    }

    fn module_get_function(&mut self, module: u64, name: String) -> Outcome {
        reply(modules::get_function(self, module, &name))
    }

    fn module_function_names(&mut self, module: u64) -> Outcome {
        reply(modules::function_names(self, module))
    }

    fn module_get_global(&mut self, module: u64, name: String) -> Outcome {
        reply(modules::get_global(self, 0, module, &name, false))
    }

    fn library_unload(&mut self, library: u64) -> Outcome {
        reply(modules::unload(self, library, true))
    }

    fn library_get_kernel(&mut self, library: u64, name: String) -> Outcome {
        reply(modules::get_kernel(self, library, &name))
    }

    fn library_get_module(&mut self, ctx: u64, library: u64, module: u64) -> Outcome {
        reply(modules::library_module(self, ctx, library, module))
    }

    fn library_get_global(&mut self, ctx: u64, library: u64, name: String) -> Outcome {
        reply(modules::get_global(self, ctx, library, &name, true))
    }

    fn kernel_get_function(&mut self, ctx: u64, kernel: u64) -> Outcome {
        reply(modules::kernel_function(self, ctx, kernel))
    }

    fn func_get_attribute(&mut self, ctx: u64, func: u64, attrib: i32) -> Outcome {
        reply(modules::func_attr(self, ctx, func, attrib))
    }

    fn func_set_attribute(&mut self, ctx: u64, func: u64, attrib: i32, value: i32) -> Outcome {
        reply(modules::func_set(self, ctx, func, |b, c, f| {
            b.func_set_attribute(c, f, attrib, value)
        }))
    }

    fn func_set_cache_config(&mut self, ctx: u64, func: u64, config: u32) -> Outcome {
        reply(modules::func_set(self, ctx, func, |b, c, f| {
            b.func_set_cache_config(c, f, config)
        }))
    }

    fn kernel_get_attribute(&mut self, kernel: u64, attrib: i32, dev: i32) -> Outcome {
        reply(modules::kernel_attr(self, kernel, dev, |b, k| {
            b.kernel_get_attribute(k, attrib, dev)
                .map(tf_protocol::exec_msgs::IntReply)
        }))
    }

    fn kernel_set_attribute(&mut self, kernel: u64, attrib: i32, value: i32, dev: i32) -> Outcome {
        reply(modules::kernel_attr(self, kernel, dev, |b, k| {
            b.kernel_set_attribute(k, attrib, value, dev)
        }))
    }

    fn occupancy(&mut self, ctx: u64, func: u64, query: Occupancy) -> Outcome {
        reply(modules::occupancy(self, ctx, func, query))
    }

    fn launch(&mut self, launch: Launch<'_>) -> Outcome {
        reply(streams::launch(self, launch))
    }

    fn stream_create(
        &mut self,
        ctx: u64,
        stream: u64,
        flags: u32,
        priority: Option<i32>,
    ) -> Outcome {
        reply(streams::stream_create(self, ctx, stream, flags, priority))
    }

    fn stream_destroy(&mut self, stream: u64) -> Outcome {
        reply(streams::stream_destroy(self, stream))
    }

    fn stream_synchronize(&mut self, ctx: u64, stream: u64) -> Outcome {
        reply(streams::stream_synchronize(self, ctx, stream))
    }

    fn stream_query(&mut self, ctx: u64, stream: u64) -> Outcome {
        reply(streams::stream_query(self, ctx, stream))
    }

    fn stream_wait_event(&mut self, ctx: u64, stream: u64, event: u64, flags: u32) -> Outcome {
        reply(streams::stream_wait_event(self, ctx, stream, event, flags))
    }

    fn stream_get_priority(&mut self, ctx: u64, stream: u64) -> Outcome {
        reply(streams::stream_get_priority(self, ctx, stream))
    }

    fn event_create(&mut self, ctx: u64, event: u64, flags: u32) -> Outcome {
        reply(streams::event_create(self, ctx, event, flags))
    }

    fn event_record(&mut self, ctx: u64, event: u64, stream: u64, flags: Option<u32>) -> Outcome {
        reply(streams::event_record(self, ctx, event, stream, flags))
    }

    fn event_synchronize(&mut self, event: u64) -> Outcome {
        reply(streams::event_synchronize(self, event))
    }

    fn event_query(&mut self, event: u64) -> Outcome {
        reply(streams::event_query(self, event))
    }

    fn event_elapsed_time(&mut self, start: u64, end: u64) -> Outcome {
        reply(streams::event_elapsed(self, start, end))
    }

    fn event_destroy(&mut self, event: u64) -> Outcome {
        reply(streams::event_destroy(self, event))
    }

    fn memset_async(&mut self, memset: Memset) -> Outcome {
        reply(streams::memset(self, memset))
    }

    fn link_complete(
        &mut self,
        ctx: u64,
        link: u64,
        jit: Vec<Opt>,
        inputs: Vec<LinkInput>,
        tail: &[u8],
    ) -> Outcome {
        link::complete(self, ctx, link, jit, inputs, tail)
    }

    fn link_read(&mut self, link: u64, offset: u64, size: u64) -> Outcome {
        reply(link::read(self, link, offset, size))
    }

    fn tensor_map_encode(&mut self, e: TensorMapEncode) -> Outcome {
        reply(link::encode(self, &e))
    }

    fn tensor_map_replace_address(
        &mut self,
        ctx: u64,
        map: [u8; TENSOR_MAP_BYTES],
        address: u64,
    ) -> Outcome {
        reply(link::replace_address(self, ctx, &map, address))
    }
}
