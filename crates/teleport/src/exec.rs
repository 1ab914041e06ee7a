//! Modules, libraries, kernels and launches, streams and events (issue 3).
//!
//! Built around decision 6 (asynchrony):
//! - Streams, events, modules and libraries get ids minted here
//!   (`tf_protocol::exec_msgs::handle`); creating or loading one is an
//!   enqueue call, so it costs no round trip. The worker maps each id to
//!   the real handle and refuses ids it never saw.
//! - Launches, event records, stream waits, async memsets and module loads
//!   are enqueued; their errors surface at the next synchronous call
//!   (`cuStreamSynchronize`, `cuEventSynchronize`, ...), as CUDA reports
//!   asynchronous errors. A failed load is also remembered with its id.
//! - Function and kernel lookups are synchronous: their answer carries the
//!   kernel's parameter layout (`cuFuncGetParamInfo` on the worker), cached
//!   here to pack every later launch's parameters into one buffer. Lookups,
//!   attributes and occupancy answers are cached, so repeated queries (PyTorch
//!   asks `cuKernelGetAttribute` thousands of times) stay local.
//!
//! What this module knows about the handles lives in one [`State`] behind a
//! read-write lock; launches only take it for reading.

mod attrs;
mod image;
mod launch;
mod link;
mod module;
mod stream;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tf_protocol::exec_msgs::{handle, ParamSlot};

pub(crate) use launch::pack;
pub(crate) use module::{function_names, function_of};
pub(crate) use stream::wire_stream;

type CUresult = u32;

/// Ids are unique per process across kinds (the kind is in the tag too).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn mint(kind: u64) -> u64 {
    handle::make(kind, NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug)]
pub(crate) struct StreamInfo {
    pub ctx: u64,
    pub flags: u32,
    /// Asked from the worker once (it clamps to the device's range).
    pub priority: Option<i32>,
}

#[derive(Debug, Default)]
pub(crate) struct ModuleInfo {
    /// The library a module was obtained from (`cuLibraryGetModule`), else 0.
    pub library: u64,
    pub functions: HashMap<String, u64>,
    pub globals: HashMap<String, (u64, u64)>,
    /// Its functions' names, once asked (module enumeration).
    pub names: Option<Vec<String>>,
}

#[derive(Debug, Default)]
pub(crate) struct LibraryInfo {
    pub kernels: HashMap<String, u64>,
    /// Per context: the module `cuLibraryGetModule` gave, and globals.
    pub modules: HashMap<u64, u64>,
    pub globals: HashMap<(u64, String), (u64, u64)>,
}

#[derive(Debug)]
pub(crate) struct FuncInfo {
    /// `None` when the worker's driver cannot report it (before 12.4).
    pub layout: Option<Arc<[ParamSlot]>>,
    pub kernel: bool,
    /// The module or library it came from.
    pub owner: u64,
    /// Attribute answers: `(attribute, device or -1)` → value. Cleared when
    /// an attribute is set, since some depend on others.
    pub attrs: HashMap<(i32, i32), i32>,
    /// `cuKernelGetFunction` answers per context.
    pub per_ctx: HashMap<u64, u64>,
    /// Occupancy answers keyed by their encoded query.
    pub occupancy: HashMap<Vec<u8>, (i64, i64)>,
}

impl FuncInfo {
    pub fn new(layout: Option<Vec<ParamSlot>>, kernel: bool, owner: u64) -> Self {
        Self {
            layout: layout.map(Arc::from),
            kernel,
            owner,
            attrs: HashMap::new(),
            per_ctx: HashMap::new(),
            occupancy: HashMap::new(),
        }
    }
}

/// What the client knows about the handles it gave out.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub streams: HashMap<u64, StreamInfo>,
    pub events: HashSet<u64>,
    pub modules: HashMap<u64, ModuleInfo>,
    pub libraries: HashMap<u64, LibraryInfo>,
    pub funcs: HashMap<u64, FuncInfo>,
}

impl State {
    /// Forgets the functions, kernels and modules that `owner` gave out.
    pub fn forget_owner(&mut self, owner: u64) {
        self.funcs.retain(|_, f| f.owner != owner);
        self.modules.retain(|_, m| m.library != owner);
    }
}

fn lock() -> &'static RwLock<State> {
    static S: OnceLock<RwLock<State>> = OnceLock::new();
    S.get_or_init(Default::default)
}

pub(crate) fn read() -> RwLockReadGuard<'static, State> {
    lock().read().unwrap_or_else(|e| e.into_inner())
}

pub(crate) fn write() -> RwLockWriteGuard<'static, State> {
    lock().write().unwrap_or_else(|e| e.into_inner())
}

/// Function objects handed out by the tools-module table's iteration
/// (cuFFT): object address → the function's id. Such callers read the
/// kernel name from the object (the word at offset 8, as in the driver's
/// own function objects), so those handles are real client memory; every
/// entry point taking a `CUfunction` maps them back with [`wire_func`].
static ALIASES: RwLock<Option<HashMap<u64, u64>>> = RwLock::new(None);
static HAS_ALIASES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The id of a `CUfunction` argument (an iteration object or an id).
pub(crate) fn wire_func(h: u64) -> u64 {
    if !HAS_ALIASES.load(Ordering::Acquire) {
        return h;
    }
    ALIASES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .and_then(|m| m.get(&h).copied())
        .unwrap_or(h)
}

/// The iteration objects of a module's functions: `(object, name)` per
/// function, in the driver's order. Objects are made once per function
/// and never freed, so their addresses stay valid for the process.
pub(crate) fn function_objects(module: u64) -> Result<Vec<(usize, usize)>, CUresult> {
    type Made = HashMap<(u64, String), (usize, usize)>;
    static MADE: std::sync::Mutex<Option<Made>> = std::sync::Mutex::new(None);
    let names = function_names(module)?;
    let mut list = Vec::with_capacity(names.len());
    for name in names {
        let id = function_of(module, name.clone())?;
        let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
        let made = made.get_or_insert_with(HashMap::new);
        let (obj, text) = *made.entry((module, name.clone())).or_insert_with(|| {
            let text = std::ffi::CString::new(name).unwrap_or_default().into_raw() as usize;
            let obj = Box::leak(Box::new([0usize; 16]));
            obj[1] = text;
            (obj.as_ptr() as usize, text)
        });
        ALIASES
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(HashMap::new)
            .insert(obj as u64, id);
        HAS_ALIASES.store(true, Ordering::Release);
        list.push((obj, text));
    }
    Ok(list)
}

/// The current context, or 0 when the thread has none: calls that need one
/// learn that from the worker (`CUDA_ERROR_INVALID_CONTEXT`), as natively.
pub(crate) fn ctx_or_zero() -> Result<u64, CUresult> {
    match crate::cuda::current_ctx() {
        Ok(c) => Ok(c),
        Err(tf_protocol::status::cu::INVALID_CONTEXT) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    module::register(set);
    attrs::register(set);
    launch::register(set);
    link::register(set);
    stream::register(set);
}
