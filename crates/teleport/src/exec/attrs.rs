//! Function and kernel attributes, parameter layouts and occupancy, answered
//! from the client's caches when they can be: attributes until one of the
//! same module or library is set, occupancy answers per query.

use std::ffi::{c_int, c_uint, c_void};

use tf_protocol::exec_msgs::{ExecRequest, IntReply, Occupancy, OccupancyReply};
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::{ctx_or_zero, read, write, CUresult};
use crate::cuda::{guard, out, session};

type Handle = *mut c_void;

/// An attribute from the cache, else from the worker (then cached).
fn attribute(
    f: u64,
    key: (i32, i32),
    ask: impl FnOnce() -> ExecRequest<'static>,
) -> Result<i32, CUresult> {
    if let Some(v) = read()
        .funcs
        .get(&f)
        .ok_or(cu::INVALID_HANDLE)?
        .attrs
        .get(&key)
    {
        return Ok(*v);
    }
    let IntReply(v) = session()?.call::<IntReply>(&Request::Exec(ask()))?;
    if let Some(info) = write().funcs.get_mut(&f) {
        info.attrs.insert(key, v);
    }
    Ok(v)
}

/// Sets an attribute unless the cache says it already has that value.
/// Setting one may change others and the occupancy answers of every function
/// of the same module or library, so their caches are dropped.
fn set_attribute(
    f: u64,
    key: (i32, i32),
    value: i32,
    ask: impl FnOnce() -> ExecRequest<'static>,
) -> Result<(), CUresult> {
    let owner = {
        let s = read();
        let info = s.funcs.get(&f).ok_or(cu::INVALID_HANDLE)?;
        if info.attrs.get(&key) == Some(&value) {
            return Ok(());
        }
        info.owner
    };
    session()?.call::<()>(&Request::Exec(ask()))?;
    let mut s = write();
    for info in s.funcs.values_mut().filter(|i| i.owner == owner) {
        info.attrs.clear();
        info.occupancy.clear();
    }
    if let Some(info) = s.funcs.get_mut(&f) {
        info.attrs.insert(key, value);
    }
    Ok(())
}

unsafe extern "C" fn cu_func_get_attribute(pi: *mut c_int, attrib: c_int, f: Handle) -> CUresult {
    guard(|| {
        let ctx = ctx_or_zero()?;
        let func = super::wire_func(f as u64);
        let v = attribute(func, (attrib, -1), || ExecRequest::FuncGetAttribute {
            ctx,
            func,
            attrib,
        })?;
        out(pi, v)
    })
}

unsafe extern "C" fn cu_func_set_attribute(f: Handle, attrib: c_int, value: c_int) -> CUresult {
    guard(|| {
        let ctx = ctx_or_zero()?;
        let func = super::wire_func(f as u64);
        set_attribute(func, (attrib, -1), value, || {
            ExecRequest::FuncSetAttribute {
                ctx,
                func,
                attrib,
                value,
            }
        })
    })
}

/// Cache configs are hints; each is sent (they are rare).
unsafe extern "C" fn cu_func_set_cache_config(f: Handle, config: c_uint) -> CUresult {
    guard(|| {
        let ctx = ctx_or_zero()?;
        let func = super::wire_func(f as u64);
        read().funcs.get(&func).ok_or(cu::INVALID_HANDLE)?;
        session()?.call::<()>(&Request::Exec(ExecRequest::FuncSetCacheConfig {
            ctx,
            func,
            config,
        }))
    })
}

unsafe extern "C" fn cu_kernel_get_attribute(
    pi: *mut c_int,
    attrib: c_int,
    k: Handle,
    dev: c_int,
) -> CUresult {
    guard(|| {
        let kernel = k as u64;
        let v = attribute(kernel, (attrib, dev), || ExecRequest::KernelGetAttribute {
            kernel,
            attrib,
            dev,
        })?;
        out(pi, v)
    })
}

unsafe extern "C" fn cu_kernel_set_attribute(
    attrib: c_int,
    value: c_int,
    k: Handle,
    dev: c_int,
) -> CUresult {
    guard(|| {
        let kernel = k as u64;
        set_attribute(kernel, (attrib, dev), value, || {
            ExecRequest::KernelSetAttribute {
                kernel,
                attrib,
                value,
                dev,
            }
        })
    })
}

/// Answered from the layout cached with the function.
unsafe extern "C" fn cu_func_get_param_info(
    f: Handle,
    index: usize,
    offset: *mut usize,
    size: *mut usize,
) -> CUresult {
    guard(|| {
        let s = read();
        let info = s
            .funcs
            .get(&super::wire_func(f as u64))
            .ok_or(cu::INVALID_HANDLE)?;
        let layout = info.layout.as_ref().ok_or(cu::NOT_SUPPORTED)?;
        let p = layout.get(index).ok_or(cu::INVALID_VALUE)?;
        if !offset.is_null() {
            out(offset, p.offset as usize)?;
        }
        if !size.is_null() {
            out(size, p.size as usize)?;
        }
        Ok(())
    })
}

/// Occupancy answers are cached per function and query until an attribute changes.
fn occupancy(f: u64, query: Occupancy) -> Result<(i64, i64), CUresult> {
    let ctx = ctx_or_zero()?;
    let req = Request::Exec(ExecRequest::Occupancy {
        ctx,
        func: f,
        query,
    });
    let key = req.encode().0;
    if let Some(v) = read()
        .funcs
        .get(&f)
        .ok_or(cu::INVALID_HANDLE)?
        .occupancy
        .get(&key)
    {
        return Ok(*v);
    }
    let OccupancyReply(a, b) = session()?.call::<OccupancyReply>(&req)?;
    if let Some(info) = write().funcs.get_mut(&f) {
        info.occupancy.insert(key, (a, b));
    }
    Ok((a, b))
}

unsafe extern "C" fn cu_occupancy_max_active_blocks(
    n: *mut c_int,
    f: Handle,
    block_size: c_int,
    smem: usize,
) -> CUresult {
    guard(|| {
        let q = Occupancy::MaxActiveBlocks {
            block_size,
            dynamic_smem: smem as u64,
            flags: None,
        };
        out(n, occupancy(super::wire_func(f as u64), q)?.0 as c_int)
    })
}

unsafe extern "C" fn cu_occupancy_max_active_blocks_flags(
    n: *mut c_int,
    f: Handle,
    block_size: c_int,
    smem: usize,
    flags: c_uint,
) -> CUresult {
    guard(|| {
        let q = Occupancy::MaxActiveBlocks {
            block_size,
            dynamic_smem: smem as u64,
            flags: Some(flags),
        };
        out(n, occupancy(super::wire_func(f as u64), q)?.0 as c_int)
    })
}

type B2DSize = Option<unsafe extern "C" fn(c_int) -> usize>;

fn potential_block_size(
    min_grid: *mut c_int,
    block: *mut c_int,
    f: Handle,
    cb: B2DSize,
    smem: usize,
    limit: c_int,
    flags: Option<u32>,
) -> Result<(), CUresult> {
    if min_grid.is_null() || block.is_null() {
        return Err(cu::INVALID_VALUE);
    }
    // The callback runs here, in the application, for every block size the
    // worker's driver may try.
    let table = match cb {
        // SAFETY: the application's B2D callback takes a block size.
        Some(cb) => (1..=tf_protocol::exec_msgs::MAX_BLOCK_TABLE as c_int)
            .map(|b| unsafe { cb(b) } as u64)
            .collect(),
        None => Vec::new(),
    };
    let q = Occupancy::MaxPotentialBlockSize {
        dynamic_smem: smem as u64,
        block_size_limit: limit,
        flags,
        smem_by_block_size: table,
    };
    let (g, b) = occupancy(super::wire_func(f as u64), q)?;
    out(min_grid, g as c_int)?;
    out(block, b as c_int)
}

unsafe extern "C" fn cu_occupancy_max_potential_block_size(
    g: *mut c_int,
    b: *mut c_int,
    f: Handle,
    cb: B2DSize,
    smem: usize,
    limit: c_int,
) -> CUresult {
    guard(|| potential_block_size(g, b, f, cb, smem, limit, None))
}

unsafe extern "C" fn cu_occupancy_max_potential_block_size_flags(
    g: *mut c_int,
    b: *mut c_int,
    f: Handle,
    cb: B2DSize,
    smem: usize,
    limit: c_int,
    flags: c_uint,
) -> CUresult {
    guard(|| potential_block_size(g, b, f, cb, smem, limit, Some(flags)))
}

unsafe extern "C" fn cu_occupancy_available_dynamic_smem(
    size: *mut usize,
    f: Handle,
    num_blocks: c_int,
    block_size: c_int,
) -> CUresult {
    guard(|| {
        let q = Occupancy::AvailableDynamicSmem {
            num_blocks,
            block_size,
        };
        out(size, occupancy(super::wire_func(f as u64), q)?.0 as usize)
    })
}

unsafe extern "C" fn cu_occupancy_max_potential_cluster_size(
    n: *mut c_int,
    f: Handle,
    config: *const c_void,
) -> CUresult {
    guard(|| {
        // SAFETY: a CUlaunchConfig per the CUDA contract.
        let shape = unsafe { super::launch::shape_of(config, false) }?;
        out(
            n,
            occupancy(
                super::wire_func(f as u64),
                Occupancy::MaxPotentialClusterSize(shape),
            )?
            .0 as c_int,
        )
    })
}

unsafe extern "C" fn cu_occupancy_max_active_clusters(
    n: *mut c_int,
    f: Handle,
    config: *const c_void,
) -> CUresult {
    guard(|| {
        // SAFETY: a CUlaunchConfig per the CUDA contract.
        let shape = unsafe { super::launch::shape_of(config, false) }?;
        out(
            n,
            occupancy(
                super::wire_func(f as u64),
                Occupancy::MaxActiveClusters(shape),
            )?
            .0 as c_int,
        )
    })
}

pub(super) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use crate::Entry;
    use tf_api::cuda_fn as c;
    set(c::cuKernelGetAttribute, cu_kernel_get_attribute as Entry);
    set(c::cuKernelSetAttribute, cu_kernel_set_attribute as Entry);
    set(c::cuFuncGetAttribute, cu_func_get_attribute as Entry);
    set(c::cuFuncSetAttribute, cu_func_set_attribute as Entry);
    set(c::cuFuncSetCacheConfig, cu_func_set_cache_config as Entry);
    set(c::cuFuncGetParamInfo, cu_func_get_param_info as Entry);
    set(c::cuKernelGetParamInfo, cu_func_get_param_info as Entry);
    set(
        c::cuOccupancyMaxActiveBlocksPerMultiprocessor,
        cu_occupancy_max_active_blocks as Entry,
    );
    set(
        c::cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags,
        cu_occupancy_max_active_blocks_flags as Entry,
    );
    set(
        c::cuOccupancyMaxPotentialBlockSize,
        cu_occupancy_max_potential_block_size as Entry,
    );
    set(
        c::cuOccupancyMaxPotentialBlockSizeWithFlags,
        cu_occupancy_max_potential_block_size_flags as Entry,
    );
    set(
        c::cuOccupancyAvailableDynamicSMemPerBlock,
        cu_occupancy_available_dynamic_smem as Entry,
    );
    set(
        c::cuOccupancyMaxPotentialClusterSize,
        cu_occupancy_max_potential_cluster_size as Entry,
    );
    set(
        c::cuOccupancyMaxActiveClusters,
        cu_occupancy_max_active_clusters as Entry,
    );
}
