//! TEST ONLY. Modules, kernels, streams and events of the host backend.
//!
//! Host memory cannot run kernels, so this is bookkeeping that behaves like
//! a driver at the API boundary: images are validated and sized as the
//! client must have sized them (a wrong length is `CUDA_ERROR_INVALID_IMAGE`),
//! kernel signatures and `.global` variables are read from the PTX the
//! images carry (plain PTX, or uncompressed PTX entries of a fatbin), launches
//! check the function, geometry and parameter buffer and do nothing else,
//! except the few `tf_test_*` kernels `host_kernels` runs by name.
//! Memsets and copies on streams really happen (in host memory), in call
//! order. Kernel execution itself is only proven on a GPU (`tests/gpu/`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tf_image::{fatbin, ptx, Kind};
use tf_protocol::exec_msgs::{
    LaunchApi, LoadReply, Memset, Occupancy, OccupancyReply, ParamSlot, Shape,
};
use tf_protocol::status::cu;
use tf_worker_core::exec::{Found, Func, Image, LoadOpts};
use tf_worker_core::{BResult, BackendCtx, ExecBackend};

use crate::{lock, HostBackend, ALIGN};

/// `CUDA_ERROR_INVALID_IMAGE`.
const INVALID_IMAGE: u32 = 200;
/// Real handles start here so they never look like small integers.
const HANDLE_BASE: u64 = 0x00E0_0000;
/// Stream priorities: least 0, greatest -5 (as on current GPUs).
const PRIORITY_RANGE: (i32, i32) = (0, -5);
/// `CU_EVENT_DISABLE_TIMING`.
const EVENT_DISABLE_TIMING: u32 = 2;
/// `CU_FUNC_ATTRIBUTE_*` values answered and accepted here.
const ATTR_MAX_THREADS: i32 = 0;
const ATTR_NUM_REGS: i32 = 4;
const ATTR_MAX_DYNAMIC_SHARED: i32 = 8;
const ATTR_CARVEOUT: i32 = 9;
const STATIC_SHARED_LIMIT: u32 = 48 << 10;
const DYNAMIC_SHARED_LIMIT: i32 = 227 << 10;
const SMS: i64 = 8;

#[derive(Default)]
pub(crate) struct HostExec {
    t: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    next: u64,
    streams: HashMap<u64, (BackendCtx, i32)>,
    events: HashMap<u64, (u32, Option<Instant>)>,
    /// Modules and libraries: what their PTX declares, and globals placed so far.
    images: HashMap<u64, Arc<Code>>,
    globals: HashMap<(u64, String), u64>,
    funcs: HashMap<u64, HostFunc>,
    launches: u64,
}

/// What a loaded image declares.
struct Code {
    ptx: ptx::Module,
}

struct HostFunc {
    /// The kernel's name (`host_kernels` runs some by name).
    name: Arc<str>,
    layout: Vec<ParamSlot>,
    attrs: HashMap<i32, i32>,
    /// A kernel named [`FAULTING_KERNEL`]: its launches "fault".
    faults: bool,
}

/// Launching a kernel of this name fails like a kernel that wrote to an
/// illegal address (`CUDA_ERROR_ILLEGAL_ADDRESS`), so the worker's handling
/// of a lost GPU context can be tested without a GPU.
pub const FAULTING_KERNEL: &str = "tf_test_fault";

impl HostExec {
    /// A stream this backend knows (or a default stream).
    pub(crate) fn check_stream(&self, s: u64) -> BResult<()> {
        self.t().stream(s)
    }
    /// A function or kernel this backend handed out.
    pub(crate) fn check_func(&self, f: u64) -> BResult<()> {
        self.t().func(f).map(|_| ())
    }
    /// An event this backend handed out.
    pub(crate) fn check_event(&self, e: u64) -> BResult<()> {
        match self.t().events.contains_key(&e) {
            true => Ok(()),
            false => Err(cu::INVALID_HANDLE),
        }
    }
    fn t(&self) -> MutexGuard<'_, Tables> {
        self.t.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Tables {
    fn mint(&mut self) -> u64 {
        self.next += 1;
        HANDLE_BASE + self.next
    }
    fn stream(&self, s: u64) -> BResult<()> {
        if s <= 2 || self.streams.contains_key(&s) {
            Ok(())
        } else {
            Err(cu::INVALID_HANDLE)
        }
    }
    fn func(&mut self, f: u64) -> BResult<&mut HostFunc> {
        self.funcs.get_mut(&f).ok_or(cu::INVALID_HANDLE)
    }
    fn code(&self, h: u64) -> BResult<Arc<Code>> {
        self.images.get(&h).cloned().ok_or(cu::INVALID_HANDLE)
    }
}

/// Validates every part like a driver parsing it, and collects the PTX.
fn read_image(image: &Image<'_>) -> BResult<Code> {
    let mut texts = Vec::new();
    for part in &image.parts {
        let kind = tf_image::validate(part).map_err(|e| {
            tracing::warn!("test backend: refusing image: {e}");
            INVALID_IMAGE
        })?;
        if image.wrapper != 0 && kind != Kind::Fatbin {
            return Err(INVALID_IMAGE);
        }
        match kind {
            Kind::Ptx => texts.push(String::from_utf8_lossy(&part[..part.len() - 1]).into_owned()),
            Kind::Fatbin => {
                let entries = fatbin::entries(part).map_err(|_| INVALID_IMAGE)?;
                for e in entries {
                    if e.kind == fatbin::EntryKind::Ptx
                        && e.compression == fatbin::Compression::None
                    {
                        let p = e.payload(part);
                        let end = p.iter().position(|b| *b == 0).unwrap_or(p.len());
                        texts.push(String::from_utf8_lossy(&p[..end]).into_owned());
                    }
                }
            }
            Kind::Elf | Kind::Archive | Kind::Wrapper => {}
        }
    }
    let mut ptx = ptx::Module::default();
    for t in texts {
        let m = ptx::parse(&t);
        ptx.entries.extend(m.entries);
        ptx.globals.extend(m.globals);
    }
    Ok(Code { ptx })
}

fn layout(e: &ptx::Entry) -> Vec<ParamSlot> {
    e.params
        .iter()
        .map(|p| ParamSlot {
            offset: p.offset,
            size: p.size,
        })
        .collect()
}

fn default_attr(attrib: i32) -> BResult<i32> {
    match attrib {
        ATTR_MAX_THREADS => Ok(1024),
        ATTR_NUM_REGS => Ok(16),
        5 | 6 => Ok(90),
        ATTR_CARVEOUT => Ok(-1),
        1..=17 => Ok(0),
        _ => Err(cu::INVALID_VALUE),
    }
}

fn check_set(attrib: i32, value: i32) -> BResult<()> {
    let ok = match attrib {
        ATTR_MAX_DYNAMIC_SHARED => (0..=DYNAMIC_SHARED_LIMIT).contains(&value),
        ATTR_CARVEOUT => (-1..=100).contains(&value),
        10..=15 => value >= 0,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(cu::INVALID_VALUE)
    }
}

fn check_shape(shape: &Shape, dynamic_limit: i32) -> BResult<()> {
    let [bx, by, bz] = shape.block;
    let threads = u64::from(bx) * u64::from(by) * u64::from(bz);
    if shape.grid.contains(&0)
        || threads == 0
        || threads > 1024
        || bx > 1024
        || by > 1024
        || bz > 64
    {
        return Err(cu::INVALID_VALUE);
    }
    if shape.shared_mem > STATIC_SHARED_LIMIT.max(dynamic_limit.max(0) as u32) {
        return Err(cu::INVALID_VALUE);
    }
    for a in &shape.attrs {
        // Cluster dimensions must divide the grid.
        if a.id == 4 {
            let dim = |i: usize| {
                u32::from_le_bytes(a.value[i * 4..i * 4 + 4].try_into().unwrap_or_default())
            };
            for (i, g) in shape.grid.iter().enumerate() {
                let c = dim(i);
                if c == 0 || g % c != 0 {
                    return Err(cu::INVALID_VALUE);
                }
            }
        }
    }
    Ok(())
}

impl HostBackend {
    fn load(&self, image: &Image<'_>) -> BResult<u64> {
        let code = read_image(image)?;
        let mut t = self.exec.t();
        let id = t.mint();
        t.images.insert(id, Arc::new(code));
        Ok(id)
    }

    fn unload(&self, h: u64) -> BResult<()> {
        let mut t = self.exec.t();
        t.images.remove(&h).ok_or(cu::INVALID_HANDLE)?;
        let gone: Vec<u64> = t
            .globals
            .iter()
            .filter(|((o, _), _)| *o == h)
            .map(|(_, p)| *p)
            .collect();
        t.globals.retain(|(o, _), _| *o != h);
        drop(t);
        let mut blocks = self.blocks.write().unwrap_or_else(|e| e.into_inner());
        for p in gone {
            blocks.remove(&p);
        }
        Ok(())
    }

    fn lookup(&self, h: u64, name: &str) -> BResult<Found> {
        let mut t = self.exec.t();
        let code = t.code(h)?;
        let e = code.ptx.entry(name).ok_or(cu::NOT_FOUND)?;
        let id = t.mint();
        let layout = layout(e);
        t.funcs.insert(
            id,
            HostFunc {
                name: Arc::from(name),
                layout: layout.clone(),
                attrs: HashMap::new(),
                faults: name == FAULTING_KERNEL,
            },
        );
        Ok((id, Some(layout)))
    }

    /// A `.global` gets host memory (not counted as allocations) on first lookup.
    fn global(&self, h: u64, name: &str) -> BResult<(u64, u64)> {
        let mut t = self.exec.t();
        let code = t.code(h)?;
        let g = code.ptx.global(name).ok_or(cu::NOT_FOUND)?;
        if let Some(p) = t.globals.get(&(h, name.to_string())) {
            return Ok((*p, g.size));
        }
        let ptr = {
            let mut s = self.state();
            let p = s.next;
            s.next += g.size.div_ceil(ALIGN) * ALIGN + ALIGN;
            p
        };
        self.blocks
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ptr, Arc::new(Mutex::new(vec![0u8; g.size as usize])));
        t.globals.insert((h, name.to_string()), ptr);
        Ok((ptr, g.size))
    }

    fn attr(&self, f: u64, attrib: i32) -> BResult<i32> {
        let mut t = self.exec.t();
        let f = t.func(f)?;
        match f.attrs.get(&attrib) {
            Some(v) => Ok(*v),
            None => default_attr(attrib),
        }
    }

    fn set_attr(&self, f: u64, attrib: i32, value: i32) -> BResult<()> {
        check_set(attrib, value)?;
        self.exec.t().func(f)?.attrs.insert(attrib, value);
        Ok(())
    }
}

impl ExecBackend for HostBackend {
    fn stream_create(&self, ctx: BackendCtx, flags: u32, priority: Option<i32>) -> BResult<u64> {
        self.check_ctx(ctx)?;
        if flags > 1 {
            return Err(cu::INVALID_VALUE);
        }
        let p = priority
            .unwrap_or(0)
            .clamp(PRIORITY_RANGE.1, PRIORITY_RANGE.0);
        let mut t = self.exec.t();
        let id = t.mint();
        t.streams.insert(id, (ctx, p));
        Ok(id)
    }
    fn stream_destroy(&self, _ctx: BackendCtx, stream: u64) -> BResult<()> {
        self.exec
            .t()
            .streams
            .remove(&stream)
            .map(|_| ())
            .ok_or(cu::INVALID_HANDLE)
    }
    fn stream_synchronize(&self, ctx: BackendCtx, stream: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.t().stream(stream)?;
        self.flush_printf();
        Ok(())
    }
    fn stream_query(&self, ctx: BackendCtx, stream: u64) -> BResult<bool> {
        self.stream_synchronize(ctx, stream).map(|()| true)
    }
    fn stream_wait_event(
        &self,
        _ctx: BackendCtx,
        stream: u64,
        event: u64,
        _flags: u32,
    ) -> BResult<()> {
        let t = self.exec.t();
        t.stream(stream)?;
        t.events.get(&event).map(|_| ()).ok_or(cu::INVALID_HANDLE)
    }
    fn stream_get_priority(&self, _ctx: BackendCtx, stream: u64) -> BResult<i32> {
        let t = self.exec.t();
        t.stream(stream)?;
        Ok(t.streams.get(&stream).map_or(0, |(_, p)| *p))
    }
    fn event_create(&self, ctx: BackendCtx, flags: u32) -> BResult<u64> {
        self.check_ctx(ctx)?;
        if flags > 7 {
            return Err(cu::INVALID_VALUE);
        }
        let mut t = self.exec.t();
        let id = t.mint();
        t.events.insert(id, (flags, None));
        Ok(id)
    }
    fn event_destroy(&self, _ctx: BackendCtx, event: u64) -> BResult<()> {
        self.exec
            .t()
            .events
            .remove(&event)
            .map(|_| ())
            .ok_or(cu::INVALID_HANDLE)
    }
    fn event_record(
        &self,
        _ctx: BackendCtx,
        event: u64,
        stream: u64,
        _flags: Option<u32>,
    ) -> BResult<()> {
        let mut t = self.exec.t();
        t.stream(stream)?;
        let e = t.events.get_mut(&event).ok_or(cu::INVALID_HANDLE)?;
        e.1 = Some(Instant::now());
        Ok(())
    }
    fn event_synchronize(&self, _ctx: BackendCtx, event: u64) -> BResult<()> {
        self.exec.t().events.get(&event).ok_or(cu::INVALID_HANDLE)?;
        self.flush_printf();
        Ok(())
    }
    fn event_query(&self, ctx: BackendCtx, event: u64) -> BResult<bool> {
        self.event_synchronize(ctx, event).map(|()| true)
    }
    fn event_elapsed(&self, _ctx: BackendCtx, start: u64, end: u64) -> BResult<f32> {
        let t = self.exec.t();
        let get = |e: u64| match t.events.get(&e) {
            Some((flags, _)) if flags & EVENT_DISABLE_TIMING != 0 => Err(cu::INVALID_HANDLE),
            Some((_, Some(at))) => Ok(*at),
            _ => Err(cu::INVALID_HANDLE),
        };
        let (a, z) = (get(start)?, get(end)?);
        let ms = |d: std::time::Duration| d.as_secs_f32() * 1000.0;
        Ok(if z >= a { ms(z - a) } else { -ms(a - z) })
    }
    fn module_load(
        &self,
        ctx: BackendCtx,
        image: &Image<'_>,
        opts: &LoadOpts<'_>,
        log: &mut LoadReply,
    ) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let r = self.load(image);
        if opts.want_log {
            log.info_log = format!(
                "test backend: {} part(s), {} bytes",
                image.parts.len(),
                image.parts.iter().map(|p| p.len()).sum::<usize>()
            )
            .into_bytes();
        }
        r
    }
    fn module_unload(&self, _ctx: BackendCtx, module: u64) -> BResult<()> {
        // Unloading waits for the module's kernels: their printf comes out.
        self.flush_printf();
        self.unload(module)
    }
    fn module_get_function(&self, _ctx: BackendCtx, module: u64, name: &str) -> BResult<Found> {
        self.lookup(module, name)
    }
    fn module_function_names(&self, _ctx: BackendCtx, module: u64) -> BResult<Vec<String>> {
        let t = self.exec.t();
        let code = t.code(module)?;
        Ok(code.ptx.entries.iter().map(|e| e.name.clone()).collect())
    }
    fn module_get_global(&self, _ctx: BackendCtx, module: u64, name: &str) -> BResult<(u64, u64)> {
        self.global(module, name)
    }
    fn library_load(
        &self,
        image: &Image<'_>,
        _opts: &LoadOpts<'_>,
        _log: &mut LoadReply,
    ) -> BResult<u64> {
        self.load(image)
    }
    fn library_unload(&self, library: u64) -> BResult<()> {
        self.unload(library)
    }
    fn library_get_kernel(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<Found> {
        self.check_ctx(ctx)?;
        self.lookup(library, name)
    }
    /// The library's code seen as a module (not owned: never unloaded by itself).
    fn library_get_module(&self, ctx: BackendCtx, library: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.exec.t();
        let code = t.code(library)?;
        let id = t.mint();
        t.images.insert(id, code);
        Ok(id)
    }
    fn library_get_global(&self, ctx: BackendCtx, library: u64, name: &str) -> BResult<(u64, u64)> {
        self.check_ctx(ctx)?;
        self.global(library, name)
    }
    fn kernel_get_function(&self, ctx: BackendCtx, kernel: u64) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let mut t = self.exec.t();
        let (name, layout, faults) = {
            let f = t.func(kernel)?;
            (Arc::clone(&f.name), f.layout.clone(), f.faults)
        };
        let id = t.mint();
        t.funcs.insert(
            id,
            HostFunc {
                name,
                layout,
                attrs: HashMap::new(),
                faults,
            },
        );
        Ok(id)
    }
    fn func_get_attribute(&self, _ctx: BackendCtx, func: Func, attrib: i32) -> BResult<i32> {
        self.attr(func.real, attrib)
    }
    fn func_set_attribute(
        &self,
        _ctx: BackendCtx,
        func: Func,
        attrib: i32,
        value: i32,
    ) -> BResult<()> {
        self.set_attr(func.real, attrib, value)
    }
    fn func_set_cache_config(&self, _ctx: BackendCtx, func: Func, config: u32) -> BResult<()> {
        self.exec.t().func(func.real)?;
        if config > 3 {
            return Err(cu::INVALID_VALUE);
        }
        Ok(())
    }
    fn kernel_get_attribute(&self, kernel: u64, attrib: i32, _dev: i32) -> BResult<i32> {
        self.attr(kernel, attrib)
    }
    fn kernel_set_attribute(&self, kernel: u64, attrib: i32, value: i32, _dev: i32) -> BResult<()> {
        self.set_attr(kernel, attrib, value)
    }
    fn occupancy(
        &self,
        _ctx: BackendCtx,
        func: Func,
        query: &Occupancy,
    ) -> BResult<OccupancyReply> {
        self.exec.t().func(func.real)?;
        let per_sm = |block: i64| 2048 / ((block + 31) / 32 * 32).max(32);
        Ok(match query {
            Occupancy::MaxActiveBlocks { block_size, .. } => {
                if !(1..=1024).contains(block_size) {
                    return Err(cu::INVALID_VALUE);
                }
                OccupancyReply(per_sm(i64::from(*block_size)).min(32), 0)
            }
            Occupancy::MaxPotentialBlockSize {
                block_size_limit,
                smem_by_block_size,
                ..
            } => {
                let limit = if *block_size_limit <= 0 {
                    1024
                } else {
                    (*block_size_limit).min(1024)
                };
                // The largest warp multiple whose dynamic shared memory fits.
                let fits = |b: i32| {
                    smem_by_block_size
                        .get(b as usize - 1)
                        .is_none_or(|s| *s <= u64::from(STATIC_SHARED_LIMIT))
                };
                let block = (1..=limit / 32)
                    .rev()
                    .map(|w| w * 32)
                    .find(|b| fits(*b))
                    .unwrap_or(limit.min(32));
                OccupancyReply(SMS * per_sm(i64::from(block)), i64::from(block))
            }
            Occupancy::AvailableDynamicSmem { num_blocks, .. } => OccupancyReply(
                i64::from(DYNAMIC_SHARED_LIMIT) / i64::from((*num_blocks).max(1)),
                0,
            ),
            Occupancy::MaxPotentialClusterSize(_) => OccupancyReply(8, 0),
            Occupancy::MaxActiveClusters(s) => {
                check_shape(s, DYNAMIC_SHARED_LIMIT)?;
                OccupancyReply(SMS, 0)
            }
        })
    }
    fn launch(
        &self,
        ctx: BackendCtx,
        func: Func,
        _api: LaunchApi,
        shape: &Shape,
        params: &[u8],
        _layout: Option<&[ParamSlot]>,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        let mut t = self.exec.t();
        t.stream(shape.stream)?;
        let f = t.func(func.real)?;
        let dynamic = f.attrs.get(&ATTR_MAX_DYNAMIC_SHARED).copied().unwrap_or(0);
        if params.len() < tf_protocol::exec_msgs::layout_size(&f.layout) {
            return Err(cu::INVALID_VALUE);
        }
        check_shape(shape, dynamic)?;
        if f.faults {
            return Err(cu::ILLEGAL_ADDRESS);
        }
        let (name, layout) = (Arc::clone(&f.name), f.layout.clone());
        t.launches += 1;
        drop(t);
        let threads = shape
            .grid
            .iter()
            .chain(&shape.block)
            .map(|d| u64::from(*d))
            .product();
        self.run_kernel(&name, threads, params, &layout)
    }
    fn memset_async(&self, ctx: BackendCtx, stream: u64, m: &Memset) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.exec.t().stream(stream)?;
        let elem = usize::from(m.op.elem());
        let row = m.width as usize * elem;
        let bytes = &m.value.to_le_bytes()[..elem];
        for r in 0..m.op.height().unwrap_or(1) {
            let (b, off) = self.find(m.dst + r * m.pitch, row as u64)?;
            for chunk in lock(&b)[off..off + row].chunks_exact_mut(elem) {
                chunk.copy_from_slice(bytes);
            }
        }
        Ok(())
    }
    fn memcpy_htod_async(&self, ctx: BackendCtx, stream: u64, dst: u64, src: &[u8]) -> BResult<()> {
        self.exec.t().stream(stream)?;
        tf_worker_core::Backend::memcpy_htod(self, ctx, dst, src)
    }
    fn memcpy_dtoh_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: &mut [u8],
        src: u64,
    ) -> BResult<()> {
        self.exec.t().stream(stream)?;
        tf_worker_core::Backend::memcpy_dtoh(self, ctx, dst, src)
    }
    fn memcpy_dtod_async(
        &self,
        ctx: BackendCtx,
        stream: u64,
        dst: u64,
        src: u64,
        size: u64,
    ) -> BResult<()> {
        self.exec.t().stream(stream)?;
        tf_worker_core::Backend::memcpy_dtod(self, ctx, dst, src, size)
    }
    fn link(
        &self,
        ctx: BackendCtx,
        jit: &[tf_protocol::exec_msgs::Opt],
        inputs: &[tf_worker_core::exec::LinkPart<'_>],
        log: &mut LoadReply,
    ) -> BResult<Vec<u8>> {
        self.host_link(ctx, jit, inputs, log)
    }
    fn tensor_map_encode(
        &self,
        ctx: BackendCtx,
        e: &tf_protocol::exec_msgs::TensorMapEncode,
    ) -> BResult<[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES]> {
        self.host_tensor_map_encode(ctx, e)
    }
    fn tensor_map_replace_address(
        &self,
        ctx: BackendCtx,
        map: &[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES],
        address: u64,
    ) -> BResult<[u8; tf_protocol::exec_msgs::TENSOR_MAP_BYTES]> {
        self.host_tensor_map_replace(ctx, map, address)
    }
}
