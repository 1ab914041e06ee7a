//! Module/library loading, kernel launches, streams, events and graphs.
//!
//! Domain module: owns its opcodes (from `tf_api::op`), its request enum and
//! its reply bodies. `Request::decode` asks [`ExecRequest::decode`] for every
//! opcode the core messages do not know.
//!
//! Handles. Streams, events, modules and libraries are named by ids the
//! client mints ([`handle`]), so creating them needs no round trip: the
//! worker maps each id to the real handle when the (enqueued) create request
//! arrives and refuses ids it never saw. Functions and kernels are minted by
//! the worker, because their lookup is synchronous anyway: it returns the
//! kernel's parameter layout, which the client caches to pack launches.
//!
//! Images larger than a frame travel as [`ExecRequest::ImagePart`]s followed
//! by the load request carrying the last bytes; all of them are enqueued.

use crate::codec::{Reader, Writer};
use crate::ProtocolError;
use tf_api::op;

mod decode;
mod replies;

pub use replies::{Elapsed, FunctionReply, IntReply, LoadReply, OccupancyReply};

/// Handle ids: a kind tag in the top 16 bits, a nonzero counter below, so a
/// stray integer or a handle of another kind is never mistaken for one.
pub mod handle {
    pub const STREAM: u64 = 0x5354 << 48;
    pub const EVENT: u64 = 0x4556 << 48;
    pub const MODULE: u64 = 0x4D4F << 48;
    pub const LIBRARY: u64 = 0x4C49 << 48;
    /// Minted by the worker.
    pub const FUNCTION: u64 = 0x464E << 48;
    /// Minted by the worker.
    pub const KERNEL: u64 = 0x4B45 << 48;
    const LOW: u64 = (1 << 48) - 1;

    pub fn make(kind: u64, n: u64) -> u64 {
        kind | (n & LOW)
    }
    pub fn is(kind: u64, h: u64) -> bool {
        h & !LOW == kind && h & LOW != 0
    }
    /// The default streams: `NULL`, `CU_STREAM_LEGACY`, `CU_STREAM_PER_THREAD`.
    pub fn is_default_stream(h: u64) -> bool {
        h <= 2
    }
}

/// Longest kernel or variable name accepted (mangled C++ templates are long).
pub const MAX_NAME: usize = 64 << 10;
pub const MAX_PARAMS: usize = 32 << 10;
pub const MAX_LAUNCH_ATTRS: usize = 64;
pub const MAX_JIT_OPTIONS: usize = 64;
/// Fatbin wrapper v2: the main fatbin and its prelinked fatbins.
pub const MAX_IMAGE_PARTS: usize = 4096;
pub const MAX_LOG: usize = 1 << 20;
/// `cuOccupancyMaxPotentialBlockSize` callbacks are evaluated for block sizes 1..=this.
pub const MAX_BLOCK_TABLE: usize = 1024;
/// `CUlaunchAttributeValue` is a 64-byte union.
pub const LAUNCH_ATTR_VALUE: usize = 64;

/// One kernel parameter in the packed parameter buffer (`cuFuncGetParamInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ParamSlot {
    pub offset: u32,
    pub size: u32,
}

/// Bytes a packed parameter buffer must hold.
pub fn layout_size(layout: &[ParamSlot]) -> usize {
    layout
        .iter()
        .map(|p| p.offset as usize + p.size as usize)
        .max()
        .unwrap_or(0)
}

/// `(option, value)`: a `CUjit_option` or `CUlibraryOption` and its value
/// slot as the pointer-sized integer the application passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt {
    pub option: u32,
    pub value: u64,
}

/// How the uploaded bytes form an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSpec {
    /// 0: the bytes are the image. 1 or 2: the application passed a fatbin
    /// wrapper of that version; the worker builds its own wrapper around
    /// the parts (the fatbin, then version 2's prelinked fatbins).
    pub wrapper: u32,
    /// Lengths of the parts, in upload order.
    pub parts: Vec<u64>,
}

impl ImageSpec {
    pub fn total(&self) -> u64 {
        self.parts.iter().fold(0u64, |a, p| a.saturating_add(*p))
    }
}

/// A module or library load. The image is whatever earlier `ImagePart`s
/// for this handle staged, followed by `tail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Load<'a> {
    /// Modules: the client's current context. Libraries: 0.
    pub ctx: u64,
    /// The client-minted module or library id.
    pub handle: u64,
    pub image: ImageSpec,
    pub jit: Vec<Opt>,
    /// `cuLibraryLoadData`'s library options.
    pub library: Vec<Opt>,
    /// JIT output options were given: answer with a [`LoadReply`] (sent synchronously).
    pub want_log: bool,
    pub tail: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModuleApi {
    Data,
    DataEx,
    FatBinary,
    File,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LibraryApi {
    Data,
    File,
}

/// One `CUlaunchAttribute`: its id and raw 64-byte value. Values that hold
/// events (programmatic and completion events) carry client event ids,
/// which the worker translates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchAttr {
    pub id: u32,
    pub value: [u8; LAUNCH_ATTR_VALUE],
}

/// The geometry of a launch (`CUlaunchConfig` less the function).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Shape {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    pub shared_mem: u32,
    pub stream: u64,
    pub attrs: Vec<LaunchAttr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchApi {
    Kernel,
    KernelEx,
    Cooperative,
}

/// A kernel launch with its parameters packed by the function's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch<'a> {
    pub api: LaunchApi,
    pub ctx: u64,
    pub func: u64,
    pub shape: Shape,
    pub params: &'a [u8],
}

/// The occupancy calculator queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Occupancy {
    MaxActiveBlocks {
        block_size: i32,
        dynamic_smem: u64,
        flags: Option<u32>,
    },
    /// `smem_by_block_size[n - 1]` is the application callback's answer for
    /// block size `n` (empty when there was no callback).
    MaxPotentialBlockSize {
        dynamic_smem: u64,
        block_size_limit: i32,
        flags: Option<u32>,
        smem_by_block_size: Vec<u64>,
    },
    AvailableDynamicSmem {
        num_blocks: i32,
        block_size: i32,
    },
    MaxPotentialClusterSize(Shape),
    MaxActiveClusters(Shape),
}

/// A 1D or 2D asynchronous memset of 1-, 2- or 4-byte elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memset {
    pub ctx: u64,
    pub stream: u64,
    pub dst: u64,
    /// Bytes between rows (2D); 0 for 1D.
    pub pitch: u64,
    pub value: u32,
    /// Element size: 1, 2 or 4.
    pub elem: u8,
    /// Elements per row.
    pub width: u64,
    /// Rows; `None` for the 1D entry points.
    pub height: Option<u64>,
}

/// Requests of this domain. Bulk data borrows the frame payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecRequest<'a> {
    ImagePart {
        handle: u64,
        offset: u64,
        data: &'a [u8],
    },
    ModuleLoad(ModuleApi, Load<'a>),
    LibraryLoad(LibraryApi, Load<'a>),
    ModuleUnload {
        module: u64,
    },
    ModuleGetFunction {
        module: u64,
        name: String,
    },
    ModuleGetGlobal {
        module: u64,
        name: String,
    },
    LibraryUnload {
        library: u64,
    },
    LibraryGetKernel {
        library: u64,
        name: String,
    },
    /// `module` is the id the client minted for the answer.
    LibraryGetModule {
        ctx: u64,
        library: u64,
        module: u64,
    },
    LibraryGetGlobal {
        ctx: u64,
        library: u64,
        name: String,
    },
    KernelGetFunction {
        ctx: u64,
        kernel: u64,
    },
    FuncGetAttribute {
        ctx: u64,
        func: u64,
        attrib: i32,
    },
    FuncSetAttribute {
        ctx: u64,
        func: u64,
        attrib: i32,
        value: i32,
    },
    FuncSetCacheConfig {
        ctx: u64,
        func: u64,
        config: u32,
    },
    KernelGetAttribute {
        kernel: u64,
        attrib: i32,
        dev: i32,
    },
    KernelSetAttribute {
        kernel: u64,
        attrib: i32,
        value: i32,
        dev: i32,
    },
    Occupancy {
        ctx: u64,
        func: u64,
        query: Occupancy,
    },
    Launch(Launch<'a>),
    StreamCreate {
        ctx: u64,
        stream: u64,
        flags: u32,
        priority: Option<i32>,
    },
    StreamDestroy {
        stream: u64,
    },
    StreamSynchronize {
        ctx: u64,
        stream: u64,
    },
    StreamQuery {
        ctx: u64,
        stream: u64,
    },
    StreamWaitEvent {
        ctx: u64,
        stream: u64,
        event: u64,
        flags: u32,
    },
    StreamGetPriority {
        ctx: u64,
        stream: u64,
    },
    EventCreate {
        ctx: u64,
        event: u64,
        flags: u32,
    },
    EventRecord {
        ctx: u64,
        event: u64,
        stream: u64,
        flags: Option<u32>,
    },
    EventSynchronize {
        event: u64,
    },
    EventQuery {
        event: u64,
    },
    EventElapsedTime {
        start: u64,
        end: u64,
    },
    EventDestroy {
        event: u64,
    },
    MemsetAsync(Memset),
}

/// First byte of every load payload: an image part or the load itself.
const PART: u8 = 0;
const LOAD: u8 = 1;

fn bad(what: &'static str, why: &'static str) -> ProtocolError {
    ProtocolError::Malformed { what, why }
}

fn count(r: &mut Reader<'_>, max: usize, what: &'static str) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(bad(what, "count over limit"));
    }
    Ok(n)
}

fn put_opts(w: &mut Writer, opts: &[Opt]) {
    w.u32(opts.len() as u32);
    for o in opts {
        w.u32(o.option).u64(o.value);
    }
}

fn get_opts(r: &mut Reader<'_>) -> Result<Vec<Opt>, ProtocolError> {
    let n = count(r, MAX_JIT_OPTIONS, "options")?;
    (0..n)
        .map(|_| {
            Ok(Opt {
                option: r.u32()?,
                value: r.u64()?,
            })
        })
        .collect()
}

fn put_opt_u32(w: &mut Writer, v: Option<u32>) {
    match v {
        Some(v) => w.u8(1).u32(v),
        None => w.u8(0),
    };
}

fn get_opt_u32(r: &mut Reader<'_>) -> Result<Option<u32>, ProtocolError> {
    match r.u8()? {
        0 => Ok(None),
        1 => Ok(Some(r.u32()?)),
        _ => Err(bad("option", "bad presence flag")),
    }
}

fn put_shape(w: &mut Writer, s: &Shape) {
    for v in s.grid.iter().chain(&s.block) {
        w.u32(*v);
    }
    w.u32(s.shared_mem).u64(s.stream).u32(s.attrs.len() as u32);
    for a in &s.attrs {
        w.u32(a.id);
        w.buf.extend_from_slice(&a.value);
    }
}

fn get_shape(r: &mut Reader<'_>) -> Result<Shape, ProtocolError> {
    let grid = [r.u32()?, r.u32()?, r.u32()?];
    let block = [r.u32()?, r.u32()?, r.u32()?];
    let shared_mem = r.u32()?;
    let stream = r.u64()?;
    let n = count(r, MAX_LAUNCH_ATTRS, "launch attributes")?;
    let attrs = (0..n)
        .map(|_| {
            Ok(LaunchAttr {
                id: r.u32()?,
                value: r.fixed::<LAUNCH_ATTR_VALUE>()?,
            })
        })
        .collect::<Result<_, ProtocolError>>()?;
    Ok(Shape {
        grid,
        block,
        shared_mem,
        stream,
        attrs,
    })
}

fn put_load(w: &mut Writer, l: &Load<'_>) {
    w.u8(LOAD).u64(l.ctx).u64(l.handle).u32(l.image.wrapper);
    w.u32(l.image.parts.len() as u32);
    for p in &l.image.parts {
        w.u64(*p);
    }
    put_opts(w, &l.jit);
    put_opts(w, &l.library);
    w.u8(u8::from(l.want_log)).u32(l.tail.len() as u32);
}

/// The payload after the leading [`PART`]/[`LOAD`] byte of a load opcode.
enum LoadPayload<'a> {
    Part {
        handle: u64,
        offset: u64,
        data: &'a [u8],
    },
    Load(Load<'a>),
}

fn get_load<'a>(payload: &'a [u8]) -> Result<LoadPayload<'a>, ProtocolError> {
    let mut r = Reader::new(payload, "module load");
    let kind = r.u8()?;
    let (handle_or_ctx, second) = (r.u64()?, r.u64()?);
    if kind == PART {
        let n = r.u32()? as usize;
        if r.remaining() != n {
            return Err(bad("image part", "data length disagrees with frame"));
        }
        return Ok(LoadPayload::Part {
            handle: handle_or_ctx,
            offset: second,
            data: &payload[payload.len() - n..],
        });
    }
    if kind != LOAD {
        return Err(bad("module load", "unknown kind"));
    }
    let wrapper = r.u32()?;
    let n = count(&mut r, MAX_IMAGE_PARTS, "image parts")?;
    let parts = (0..n).map(|_| r.u64()).collect::<Result<Vec<_>, _>>()?;
    let valid = match wrapper {
        0 | 1 => parts.len() == 1,
        2 => !parts.is_empty(),
        _ => false,
    };
    if !valid {
        return Err(bad("module load", "image parts disagree with the wrapper"));
    }
    let jit = get_opts(&mut r)?;
    let library = get_opts(&mut r)?;
    let want_log = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(bad("module load", "bad flag")),
    };
    let n = r.u32()? as usize;
    if r.remaining() != n {
        return Err(bad("module load", "data length disagrees with frame"));
    }
    Ok(LoadPayload::Load(Load {
        ctx: handle_or_ctx,
        handle: second,
        image: ImageSpec { wrapper, parts },
        jit,
        library,
        want_log,
        tail: &payload[payload.len() - n..],
    }))
}

impl ModuleApi {
    fn opcode(self) -> u32 {
        match self {
            ModuleApi::Data => op::cuModuleLoadData,
            ModuleApi::DataEx => op::cuModuleLoadDataEx,
            ModuleApi::FatBinary => op::cuModuleLoadFatBinary,
            ModuleApi::File => op::cuModuleLoad,
        }
    }
}

impl LibraryApi {
    fn opcode(self) -> u32 {
        match self {
            LibraryApi::Data => op::cuLibraryLoadData,
            LibraryApi::File => op::cuLibraryLoadFromFile,
        }
    }
}

impl Occupancy {
    fn opcode(&self) -> u32 {
        match self {
            Occupancy::MaxActiveBlocks { flags: None, .. } => {
                op::cuOccupancyMaxActiveBlocksPerMultiprocessor
            }
            Occupancy::MaxActiveBlocks { flags: Some(_), .. } => {
                op::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags
            }
            Occupancy::MaxPotentialBlockSize { flags: None, .. } => {
                op::cuOccupancyMaxPotentialBlockSize
            }
            Occupancy::MaxPotentialBlockSize { flags: Some(_), .. } => {
                op::cuOccupancyMaxPotentialBlockSizeWithFlags
            }
            Occupancy::AvailableDynamicSmem { .. } => op::cuOccupancyAvailableDynamicSMemPerBlock,
            Occupancy::MaxPotentialClusterSize(_) => op::cuOccupancyMaxPotentialClusterSize,
            Occupancy::MaxActiveClusters(_) => op::cuOccupancyMaxActiveClusters,
        }
    }
}

impl Memset {
    fn opcode(&self) -> u32 {
        match (self.elem, self.height.is_some()) {
            (1, false) => op::cuMemsetD8Async,
            (2, false) => op::cuMemsetD16Async,
            (4, false) => op::cuMemsetD32Async,
            (1, true) => op::cuMemsetD2D8Async,
            (2, true) => op::cuMemsetD2D16Async,
            _ => op::cuMemsetD2D32Async,
        }
    }
}

impl<'a> ExecRequest<'a> {
    /// The frame opcode.
    pub fn opcode(&self) -> u32 {
        use ExecRequest as E;
        match self {
            E::ImagePart { .. } => op::cuModuleLoadData,
            E::ModuleLoad(api, _) => api.opcode(),
            E::LibraryLoad(api, _) => api.opcode(),
            E::ModuleUnload { .. } => op::cuModuleUnload,
            E::ModuleGetFunction { .. } => op::cuModuleGetFunction,
            E::ModuleGetGlobal { .. } => op::cuModuleGetGlobal_v2,
            E::LibraryUnload { .. } => op::cuLibraryUnload,
            E::LibraryGetKernel { .. } => op::cuLibraryGetKernel,
            E::LibraryGetModule { .. } => op::cuLibraryGetModule,
            E::LibraryGetGlobal { .. } => op::cuLibraryGetGlobal,
            E::KernelGetFunction { .. } => op::cuKernelGetFunction,
            E::FuncGetAttribute { .. } => op::cuFuncGetAttribute,
            E::FuncSetAttribute { .. } => op::cuFuncSetAttribute,
            E::FuncSetCacheConfig { .. } => op::cuFuncSetCacheConfig,
            E::KernelGetAttribute { .. } => op::cuKernelGetAttribute,
            E::KernelSetAttribute { .. } => op::cuKernelSetAttribute,
            E::Occupancy { query, .. } => query.opcode(),
            E::Launch(l) => match l.api {
                LaunchApi::Kernel => op::cuLaunchKernel,
                LaunchApi::KernelEx => op::cuLaunchKernelEx,
                LaunchApi::Cooperative => op::cuLaunchCooperativeKernel,
            },
            E::StreamCreate { priority: None, .. } => op::cuStreamCreate,
            E::StreamCreate { .. } => op::cuStreamCreateWithPriority,
            E::StreamDestroy { .. } => op::cuStreamDestroy_v2,
            E::StreamSynchronize { .. } => op::cuStreamSynchronize,
            E::StreamQuery { .. } => op::cuStreamQuery,
            E::StreamWaitEvent { .. } => op::cuStreamWaitEvent,
            E::StreamGetPriority { .. } => op::cuStreamGetPriority,
            E::EventCreate { .. } => op::cuEventCreate,
            E::EventRecord { flags: None, .. } => op::cuEventRecord,
            E::EventRecord { .. } => op::cuEventRecordWithFlags,
            E::EventSynchronize { .. } => op::cuEventSynchronize,
            E::EventQuery { .. } => op::cuEventQuery,
            E::EventElapsedTime { .. } => op::cuEventElapsedTime_v2,
            E::EventDestroy { .. } => op::cuEventDestroy_v2,
            E::MemsetAsync(m) => m.opcode(),
        }
    }

    /// Encodes the fixed part into `w`; returns bulk data to gather after it.
    pub fn encode(&self, w: &mut Writer) -> &'a [u8] {
        use ExecRequest as E;
        match self {
            E::ImagePart {
                handle,
                offset,
                data,
            } => {
                w.u8(PART).u64(*handle).u64(*offset).u32(data.len() as u32);
                return data;
            }
            E::ModuleLoad(_, l) | E::LibraryLoad(_, l) => {
                put_load(w, l);
                return l.tail;
            }
            E::ModuleUnload { module: h }
            | E::LibraryUnload { library: h }
            | E::StreamDestroy { stream: h }
            | E::EventSynchronize { event: h }
            | E::EventQuery { event: h }
            | E::EventDestroy { event: h } => {
                w.u64(*h);
            }
            E::ModuleGetFunction { module: h, name }
            | E::ModuleGetGlobal { module: h, name }
            | E::LibraryGetKernel { library: h, name } => {
                w.u64(*h).str(name);
            }
            E::LibraryGetModule {
                ctx,
                library,
                module,
            } => {
                w.u64(*ctx).u64(*library).u64(*module);
            }
            E::LibraryGetGlobal { ctx, library, name } => {
                w.u64(*ctx).u64(*library).str(name);
            }
            E::KernelGetFunction { ctx, kernel: h }
            | E::StreamSynchronize { ctx, stream: h }
            | E::StreamQuery { ctx, stream: h }
            | E::StreamGetPriority { ctx, stream: h } => {
                w.u64(*ctx).u64(*h);
            }
            E::FuncGetAttribute { ctx, func, attrib } => {
                w.u64(*ctx).u64(*func).i32(*attrib);
            }
            E::FuncSetAttribute {
                ctx,
                func,
                attrib,
                value,
            } => {
                w.u64(*ctx).u64(*func).i32(*attrib).i32(*value);
            }
            E::FuncSetCacheConfig { ctx, func, config } => {
                w.u64(*ctx).u64(*func).u32(*config);
            }
            E::KernelGetAttribute {
                kernel,
                attrib,
                dev,
            } => {
                w.u64(*kernel).i32(*attrib).i32(*dev);
            }
            E::KernelSetAttribute {
                kernel,
                attrib,
                value,
                dev,
            } => {
                w.u64(*kernel).i32(*attrib).i32(*value).i32(*dev);
            }
            E::Occupancy { ctx, func, query } => {
                w.u64(*ctx).u64(*func);
                match query {
                    Occupancy::MaxActiveBlocks {
                        block_size,
                        dynamic_smem,
                        flags,
                    } => {
                        w.i32(*block_size).u64(*dynamic_smem);
                        put_opt_u32(w, *flags);
                    }
                    Occupancy::MaxPotentialBlockSize {
                        dynamic_smem,
                        block_size_limit,
                        flags,
                        smem_by_block_size,
                    } => {
                        w.u64(*dynamic_smem).i32(*block_size_limit);
                        put_opt_u32(w, *flags);
                        w.u32(smem_by_block_size.len() as u32);
                        for s in smem_by_block_size {
                            w.u64(*s);
                        }
                    }
                    Occupancy::AvailableDynamicSmem {
                        num_blocks,
                        block_size,
                    } => {
                        w.i32(*num_blocks).i32(*block_size);
                    }
                    Occupancy::MaxPotentialClusterSize(s) | Occupancy::MaxActiveClusters(s) => {
                        put_shape(w, s)
                    }
                }
            }
            E::Launch(l) => {
                w.u64(l.ctx).u64(l.func);
                put_shape(w, &l.shape);
                w.u32(l.params.len() as u32);
                return l.params;
            }
            E::StreamCreate {
                ctx,
                stream,
                flags,
                priority,
            } => {
                w.u64(*ctx).u64(*stream).u32(*flags);
                put_opt_u32(w, priority.map(|p| p as u32));
            }
            E::StreamWaitEvent {
                ctx,
                stream,
                event,
                flags,
            } => {
                w.u64(*ctx).u64(*stream).u64(*event).u32(*flags);
            }
            E::EventCreate { ctx, event, flags } => {
                w.u64(*ctx).u64(*event).u32(*flags);
            }
            E::EventRecord {
                ctx,
                event,
                stream,
                flags,
            } => {
                w.u64(*ctx).u64(*event).u64(*stream);
                put_opt_u32(w, *flags);
            }
            E::EventElapsedTime { start, end } => {
                w.u64(*start).u64(*end);
            }
            E::MemsetAsync(m) => {
                w.u64(m.ctx)
                    .u64(m.stream)
                    .u64(m.dst)
                    .u64(m.pitch)
                    .u32(m.value)
                    .u8(m.elem)
                    .u64(m.width);
                if let Some(h) = m.height {
                    w.u64(h);
                }
            }
        }
        &[]
    }

    /// `None` if `opcode` is not of this domain; else the validated request.
    pub fn decode(opcode: u32, payload: &'a [u8]) -> Option<Result<Self, ProtocolError>> {
        let load_api = match opcode {
            op::cuModuleLoadData => Some(Ok(ModuleApi::Data)),
            op::cuModuleLoadDataEx => Some(Ok(ModuleApi::DataEx)),
            op::cuModuleLoadFatBinary => Some(Ok(ModuleApi::FatBinary)),
            op::cuModuleLoad => Some(Ok(ModuleApi::File)),
            op::cuLibraryLoadData => Some(Err(LibraryApi::Data)),
            op::cuLibraryLoadFromFile => Some(Err(LibraryApi::File)),
            _ => None,
        };
        if let Some(api) = load_api {
            return Some(get_load(payload).map(|p| match (p, api) {
                (
                    LoadPayload::Part {
                        handle,
                        offset,
                        data,
                    },
                    _,
                ) => ExecRequest::ImagePart {
                    handle,
                    offset,
                    data,
                },
                (LoadPayload::Load(l), Ok(m)) => ExecRequest::ModuleLoad(m, l),
                (LoadPayload::Load(l), Err(lib)) => ExecRequest::LibraryLoad(lib, l),
            }));
        }
        decode::decode(opcode, payload)
    }
}
