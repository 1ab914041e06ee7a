//! Modules, libraries, functions, kernels, their attributes and occupancy.

use std::borrow::Cow;
use std::sync::Arc;

use tf_protocol::encode_reply;
use tf_protocol::exec_msgs::{
    handle, FunctionReply, IntReply, Load, LoadReply, Occupancy, OccupancyReply,
};
use tf_protocol::status::cu;

use super::{reply, Func, FuncEntry, Image, LoadOpts, Loaded, MAX_STAGED};
use crate::backend::{BackendCtx, Status};
use crate::session::{Outcome, Session};

/// Appends an image part for a load (or a link's inputs) that follows.
pub(super) fn stage(s: &mut Session, h: u64, offset: u64, data: &[u8]) -> Result<(), Status> {
    let st = &mut s.exec;
    let fresh = (handle::is(handle::MODULE, h) && !st.modules.contains_key(&h))
        || (handle::is(handle::LIBRARY, h) && !st.libraries.contains_key(&h))
        || (handle::is(handle::LINK, h) && !st.linked.contains_key(&h));
    if !fresh {
        return Err(cu::INVALID_HANDLE);
    }
    let have = st.staging.get(&h).map_or(0, Vec::len);
    let refuse = if offset != have as u64 {
        Some(cu::INVALID_VALUE)
    } else if st.staged + data.len() > MAX_STAGED {
        Some(cu::OUT_OF_MEMORY)
    } else {
        None
    };
    if let Some(status) = refuse {
        // Whatever arrived of this image is useless now.
        if let Some(b) = st.staging.remove(&h) {
            st.staged -= b.len();
        }
        return Err(status);
    }
    st.staging.entry(h).or_default().extend_from_slice(data);
    st.staged += data.len();
    Ok(())
}

/// Loads a module or library under the id the client minted. Failures
/// after the id is accepted are remembered with it (the load was enqueued:
/// the client learns of them when it uses the id).
pub(super) fn load(s: &mut Session, l: Load<'_>, library: bool) -> Outcome {
    let staged = s.exec.staging.remove(&l.handle);
    if let Some(b) = &staged {
        s.exec.staged -= b.len();
    }
    let kind = if library {
        handle::LIBRARY
    } else {
        handle::MODULE
    };
    let taken = s.exec.modules.contains_key(&l.handle) || s.exec.libraries.contains_key(&l.handle);
    if !handle::is(kind, l.handle) || taken {
        return reply::<()>(Err(cu::INVALID_HANDLE));
    }
    let mut log = LoadReply {
        values: l.jit.iter().map(|o| o.value).collect(),
        ..LoadReply::default()
    };
    let w = Arc::clone(&s.worker);
    let b = w.backend();
    let mut ctx = 0;
    let result = (|| {
        if !library {
            ctx = s.ctx(l.ctx)?;
        }
        // Only options the driver reads as plain values (and log buffers,
        // which the backend replaces by its own) reach it: a value that is
        // a pointer would make the driver read this process's memory.
        if let Some(o) = l.jit.iter().find(|o| {
            !(tf_protocol::exec_msgs::jit::by_value(o.option)
                || o.option == tf_protocol::exec_msgs::jit::INFO_LOG
                || o.option == tf_protocol::exec_msgs::jit::ERROR_LOG)
        }) {
            w.warn_limited(&format!(
                "session {}: refusing a module load with JIT option {} (not a plain value)",
                s.id, o.option
            ));
            return Err(cu::INVALID_VALUE);
        }
        let bytes: Cow<'_, [u8]> = match staged {
            Some(mut v) => {
                v.extend_from_slice(l.tail);
                Cow::Owned(v)
            }
            None => Cow::Borrowed(l.tail),
        };
        if bytes.len() as u64 != l.image.total() {
            return Err(cu::INVALID_VALUE);
        }
        let mut parts = Vec::with_capacity(l.image.parts.len());
        let mut at = 0usize;
        for len in &l.image.parts {
            parts.push(&bytes[at..at + *len as usize]);
            at += *len as usize;
        }
        let image = Image {
            wrapper: l.image.wrapper,
            parts,
        };
        let opts = LoadOpts {
            jit: &l.jit,
            library: &l.library,
            want_log: l.want_log,
        };
        if library {
            b.library_load(&image, &opts, &mut log)
        } else {
            b.module_load(ctx, &image, &opts, &mut log)
        }
    })();
    if let Err(status) = result {
        tracing::debug!(
            status,
            handle = l.handle,
            "load failed; reported when the handle is used"
        );
    }
    let entry = Loaded {
        ctx,
        real: result,
        owned: true,
        owner: l.handle,
    };
    if library {
        s.exec.libraries.insert(l.handle, entry);
    } else {
        s.exec.modules.insert(l.handle, entry);
    }
    if l.want_log {
        log.status = result.err().unwrap_or(0);
        return Outcome::Reply(encode_reply(0, Some(&log)));
    }
    reply(result.map(|_| ()))
}

pub(super) fn unload(s: &mut Session, h: u64, library: bool) -> Result<(), Status> {
    let table = if library {
        &mut s.exec.libraries
    } else {
        &mut s.exec.modules
    };
    match table.get(&h) {
        None => return Err(cu::INVALID_HANDLE),
        // A library's module belongs to the library.
        Some(m) if !m.owned => return Err(cu::NOT_PERMITTED),
        Some(_) => {}
    }
    let Some(m) = table.remove(&h) else {
        return Err(cu::INVALID_HANDLE);
    };
    s.exec.forget_owner(h);
    if library {
        s.exec.modules.retain(|_, m| m.owner != h);
    }
    let Ok(real) = m.real else {
        // The load had failed: nothing to free.
        return Ok(());
    };
    let w = Arc::clone(&s.worker);
    if library {
        w.backend().library_unload(real)
    } else {
        w.backend().module_unload(m.ctx, real)
    }
}

fn loaded(s: &Session, h: u64, library: bool) -> Result<(BackendCtx, u64, u64), Status> {
    let table = if library {
        &s.exec.libraries
    } else {
        &s.exec.modules
    };
    let m = table.get(&h).ok_or(cu::INVALID_HANDLE)?;
    Ok((m.ctx, m.real?, m.owner))
}

/// Mints a function or kernel id, or returns the one minted for the same lookup.
fn mint(s: &mut Session, key: (u64, String, bool), entry: FuncEntry) -> FunctionReply {
    let st = &mut s.exec;
    st.next_func += 1;
    let kind = if entry.func.kernel {
        handle::KERNEL
    } else {
        handle::FUNCTION
    };
    let id = handle::make(kind, st.next_func);
    let layout = entry.layout.as_deref().map(<[_]>::to_vec);
    st.funcs.insert(id, entry);
    st.names.insert(key, id);
    FunctionReply { handle: id, layout }
}

fn cached(s: &Session, key: &(u64, String, bool)) -> Option<FunctionReply> {
    let id = *s.exec.names.get(key)?;
    let f = s.exec.funcs.get(&id)?;
    Some(FunctionReply {
        handle: id,
        layout: f.layout.as_deref().map(<[_]>::to_vec),
    })
}

/// The names of a loaded module's functions (at most
/// `MAX_MODULE_FUNCTIONS`: the reply must stay decodable).
pub(super) fn function_names(
    s: &mut Session,
    module: u64,
) -> Result<tf_protocol::exec_msgs::Names, Status> {
    let (ctx, real, _) = loaded(s, module, false)?;
    let mut names = s.worker.backend().module_function_names(ctx, real)?;
    names.retain(|n| n.len() <= tf_protocol::exec_msgs::MAX_NAME);
    names.truncate(tf_protocol::exec_msgs::MAX_MODULE_FUNCTIONS);
    Ok(tf_protocol::exec_msgs::Names(names))
}

pub(super) fn get_function(
    s: &mut Session,
    module: u64,
    name: &str,
) -> Result<FunctionReply, Status> {
    let key = (module, name.to_string(), false);
    if let Some(r) = cached(s, &key) {
        return Ok(r);
    }
    let (ctx, real, owner) = loaded(s, module, false)?;
    let w = Arc::clone(&s.worker);
    let (f, layout) = w.backend().module_get_function(ctx, real, name)?;
    let entry = FuncEntry {
        func: Func {
            real: f,
            kernel: false,
        },
        ctx: Some(ctx),
        layout: layout.map(Arc::from),
        owner,
    };
    Ok(mint(s, key, entry))
}

pub(super) fn get_kernel(
    s: &mut Session,
    library: u64,
    name: &str,
) -> Result<FunctionReply, Status> {
    let key = (library, name.to_string(), true);
    if let Some(r) = cached(s, &key) {
        return Ok(r);
    }
    let (_, real, owner) = loaded(s, library, true)?;
    // A context must be current for the parameter layout, also when this is
    // the session's first call that needs one (cudart looks kernels up at
    // the first launch; the application may not have allocated yet).
    let c = s.device_ctx(None)?;
    let w = Arc::clone(&s.worker);
    let (k, layout) = w.backend().library_get_kernel(c, real, name)?;
    let entry = FuncEntry {
        func: Func {
            real: k,
            kernel: true,
        },
        ctx: None,
        layout: layout.map(Arc::from),
        owner,
    };
    Ok(mint(s, key, entry))
}

pub(super) fn get_global(
    s: &mut Session,
    ctx: u64,
    h: u64,
    name: &str,
    library: bool,
) -> Result<(u64, u64), Status> {
    let (mctx, real, owner) = loaded(s, h, library)?;
    let w = Arc::clone(&s.worker);
    let (ptr, size) = if library {
        let c = s.ctx(ctx)?;
        w.backend().library_get_global(c, real, name)?
    } else {
        w.backend().module_get_global(mctx, real, name)?
    };
    if size > 0 {
        s.exec.globals.insert(ptr, (size, owner));
    }
    Ok((ptr, size))
}

pub(super) fn library_module(
    s: &mut Session,
    ctx: u64,
    library: u64,
    module: u64,
) -> Result<(), Status> {
    if !handle::is(handle::MODULE, module) || s.exec.modules.contains_key(&module) {
        return Err(cu::INVALID_HANDLE);
    }
    let (_, real, _) = loaded(s, library, true)?;
    let c = s.ctx(ctx)?;
    let w = Arc::clone(&s.worker);
    let m = w.backend().library_get_module(c, real)?;
    s.exec.modules.insert(
        module,
        Loaded {
            ctx: c,
            real: Ok(m),
            owned: false,
            owner: library,
        },
    );
    Ok(())
}

pub(super) fn kernel_function(
    s: &mut Session,
    ctx: u64,
    kernel: u64,
) -> Result<FunctionReply, Status> {
    let k = s.exec.funcs.get(&kernel).ok_or(cu::INVALID_HANDLE)?;
    if !k.func.kernel {
        return Err(cu::INVALID_HANDLE);
    }
    let (kreal, layout, owner) = (k.func.real, k.layout.clone(), k.owner);
    let c = s.ctx(ctx)?;
    let key = (kernel, format!("ctx {c:#x}"), false);
    if let Some(r) = cached(s, &key) {
        return Ok(r);
    }
    let w = Arc::clone(&s.worker);
    let f = w.backend().kernel_get_function(c, kreal)?;
    let entry = FuncEntry {
        func: Func {
            real: f,
            kernel: false,
        },
        ctx: Some(c),
        layout,
        owner,
    };
    Ok(mint(s, key, entry))
}

/// The function and the context it runs in (its module's, else the caller's).
fn func(s: &Session, ctx: u64, f: u64) -> Result<(BackendCtx, Func), Status> {
    let e = s.exec.funcs.get(&f).ok_or(cu::INVALID_HANDLE)?;
    let c = match e.ctx {
        Some(c) => c,
        None => s.ctx(ctx)?,
    };
    Ok((c, e.func))
}

pub(super) fn func_attr(
    s: &mut Session,
    ctx: u64,
    f: u64,
    attrib: i32,
) -> Result<IntReply, Status> {
    let (c, f) = func(s, ctx, f)?;
    s.worker
        .backend()
        .func_get_attribute(c, f, attrib)
        .map(IntReply)
}

pub(super) fn func_set(
    s: &mut Session,
    ctx: u64,
    f: u64,
    set: impl FnOnce(&dyn crate::Backend, BackendCtx, Func) -> Result<(), Status>,
) -> Result<(), Status> {
    let (c, f) = func(s, ctx, f)?;
    set(s.worker.backend(), c, f)
}

pub(super) fn kernel_attr<T>(
    s: &mut Session,
    kernel: u64,
    dev: i32,
    call: impl FnOnce(&dyn crate::Backend, u64) -> Result<T, Status>,
) -> Result<T, Status> {
    s.check_dev(dev)?;
    let k = s.exec.funcs.get(&kernel).ok_or(cu::INVALID_HANDLE)?;
    if !k.func.kernel {
        return Err(cu::INVALID_HANDLE);
    }
    call(s.worker.backend(), k.func.real)
}

pub(super) fn occupancy(
    s: &mut Session,
    ctx: u64,
    f: u64,
    query: Occupancy,
) -> Result<OccupancyReply, Status> {
    let (c, f) = func(s, ctx, f)?;
    let query = match query {
        Occupancy::MaxPotentialClusterSize(shape) => Occupancy::MaxPotentialClusterSize(
            super::streams::resolve_shape(s, ctx, Some(c), shape)?.1,
        ),
        Occupancy::MaxActiveClusters(shape) => {
            Occupancy::MaxActiveClusters(super::streams::resolve_shape(s, ctx, Some(c), shape)?.1)
        }
        Occupancy::MaxPotentialBlockSize {
            smem_by_block_size: ref t,
            ..
        } if t.len() > tf_protocol::exec_msgs::MAX_BLOCK_TABLE => return Err(cu::INVALID_VALUE),
        q => q,
    };
    s.worker.backend().occupancy(c, f, &query)
}
