//! CUDA arrays, copies with an array side, texture and surface objects.
//!
//! Domain module of the worker: the backend methods this domain needs (each
//! `NOT_SUPPORTED` by default), the per-session state and its requests (the
//! generated `ArrayCalls` trait).
//!
//! Isolation. Arrays are ids the client minted, mapped here to the driver's
//! arrays of this session only; every copy region must lie inside the array
//! it names, and its linear side inside the session's memory. Texture and
//! surface objects are the driver's values (kernels take them by value):
//! a session may destroy only the values it created, and their resources
//! are this session's arrays or memory.
//!
//! Memory limit. An array is charged with at least its packed size
//! (width × height × depth × element) when created and returned when
//! destroyed (the driver may pad rows; that padding is not charged).

use std::collections::HashMap;
use std::sync::Arc;

use tf_protocol::array_msgs::{
    elem_size, resource, ArrayCopy, ArrayDesc, ArraySide, Linear, Resource, TexDesc, ViewDesc,
    ARRAY_FLAGS,
};
use tf_protocol::status::cu;

use crate::backend::{BResult, BackendCtx, Status};
use crate::calls::ArrayCalls;
use crate::exec::resolve_stream;
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

fn unsupported<T>() -> BResult<T> {
    Err(cu::NOT_SUPPORTED)
}

/// The source of an array copy: packed host bytes, device memory, or a
/// region of an array (`array` is the backend's own array).
pub enum ASrc<'a> {
    Host(&'a [u8]),
    Device(Linear),
    Array(ArraySide),
}

/// The destination of an array copy.
pub enum ADst<'a> {
    Host(&'a mut [u8]),
    Device(Linear),
    Array(ArraySide),
}

/// What this domain needs from a backend. Arrays, texture and surface
/// objects are the backend's own values; every call runs with `ctx`
/// current.
#[allow(unused_variables)]
pub trait ArrayBackend {
    /// `desc` is validated: a remoted format and channel count, known flags.
    fn array_create(&self, ctx: BackendCtx, desc: &ArrayDesc) -> BResult<u64> {
        unsupported()
    }
    fn array_destroy(&self, ctx: BackendCtx, array: u64) -> BResult<()> {
        unsupported()
    }
    /// One slice: `rows` rows of `width` bytes (host sides packed). Regions
    /// are checked by the caller. Returns once a host destination holds the
    /// data.
    fn array_copy(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: ASrc<'_>,
        dst: ADst<'_>,
    ) -> BResult<()> {
        unsupported()
    }
    /// `res.array` is the backend's array for an array resource.
    fn tex_create(
        &self,
        ctx: BackendCtx,
        res: &Resource,
        tex: &TexDesc,
        view: Option<&ViewDesc>,
    ) -> BResult<u64> {
        unsupported()
    }
    fn tex_destroy(&self, ctx: BackendCtx, tex: u64) -> BResult<()> {
        unsupported()
    }
    fn surf_create(&self, ctx: BackendCtx, res: &Resource) -> BResult<u64> {
        unsupported()
    }
    fn surf_destroy(&self, ctx: BackendCtx, surf: u64) -> BResult<()> {
        unsupported()
    }
}

#[derive(Debug, Clone, Copy)]
struct Array {
    real: u64,
    desc: ArrayDesc,
    ctx: BackendCtx,
    /// Charged against the memory limit.
    bytes: u64,
}

#[derive(Debug, Default)]
pub struct ArrayState {
    /// By the client's id.
    arrays: HashMap<u64, Array>,
    /// Texture objects this session created → their context.
    texes: HashMap<u64, BackendCtx>,
    /// Surface objects this session created → their context.
    surfs: HashMap<u64, BackendCtx>,
}

impl ArrayState {
    /// Destroys what a departed session left: objects first (they name the
    /// arrays), then the arrays, whose bytes go back to the limit.
    pub fn cleanup(&mut self, w: &Worker) {
        let b = w.backend();
        let (texes, surfs, arrays) = (self.texes.len(), self.surfs.len(), self.arrays.len());
        let mut failed = 0u32;
        for (t, c) in self.texes.drain() {
            failed += u32::from(b.tex_destroy(c, t).is_err());
        }
        for (s, c) in self.surfs.drain() {
            failed += u32::from(b.surf_destroy(c, s).is_err());
        }
        for (_, a) in self.arrays.drain() {
            failed += u32::from(b.array_destroy(a.ctx, a.real).is_err());
            w.uncharge(a.bytes);
        }
        if texes + surfs + arrays > 0 {
            tracing::info!(
                arrays,
                texture_objects = texes,
                surface_objects = surfs,
                failed,
                "released the session's CUDA arrays and texture/surface objects"
            );
        }
    }
}

fn array(s: &Session, id: u64) -> Result<Array, Status> {
    s.arrays.arrays.get(&id).copied().ok_or(cu::INVALID_HANDLE)
}

/// The array side of a copy slice, translated to the backend's array after
/// checking that the region lies inside it.
fn check_array_side(
    s: &Session,
    side: &ArraySide,
    width: u64,
    rows: u64,
) -> Result<ArraySide, Status> {
    let a = array(s, side.array)?;
    let (row_bytes, height, depth) = a.desc.extent().ok_or(cu::INVALID_VALUE)?;
    let inside = |at: u64, n: u64, max: u64| at.checked_add(n).is_some_and(|e| e <= max);
    if !inside(side.x_bytes, width, row_bytes)
        || !inside(side.y, rows, height)
        || !inside(side.z, 1, depth)
    {
        return Err(cu::INVALID_VALUE);
    }
    Ok(ArraySide {
        array: a.real,
        ..*side
    })
}

/// The linear side of a copy slice: every row inside this session's memory.
fn check_linear(s: &Session, p: &Linear, width: u64, rows: u64) -> Result<(), Status> {
    if p.pitch < width && rows > 1 {
        return Err(cu::INVALID_VALUE);
    }
    let extent =
        tf_protocol::pitched_offset(p.pitch, 0, width, rows - 1, 0).ok_or(cu::INVALID_VALUE)?;
    s.check_range(p.ptr, extent)
}

/// A resource of this session, with an array resource translated to the
/// backend's array. Mipmapped arrays are not remoted.
fn check_resource(s: &Session, res: &Resource) -> Result<Resource, Status> {
    match res.kind {
        resource::ARRAY => Ok(Resource {
            array: array(s, res.array)?.real,
            ..*res
        }),
        resource::LINEAR => {
            let elem = elem_size(res.format, res.channels).ok_or(cu::INVALID_VALUE)?;
            if res.size == 0 || !res.size.is_multiple_of(elem) {
                return Err(cu::INVALID_VALUE);
            }
            s.check_range(res.ptr, res.size)?;
            Ok(*res)
        }
        resource::PITCH2D => {
            let elem = elem_size(res.format, res.channels).ok_or(cu::INVALID_VALUE)?;
            let row = res.width.checked_mul(elem).ok_or(cu::INVALID_VALUE)?;
            if row == 0 || res.height == 0 || res.pitch < row {
                return Err(cu::INVALID_VALUE);
            }
            let extent = tf_protocol::pitched_offset(res.pitch, 0, row, res.height - 1, 0)
                .ok_or(cu::INVALID_VALUE)?;
            s.check_range(res.ptr, extent)?;
            Ok(*res)
        }
        resource::MIPMAPPED_ARRAY => Err(cu::NOT_SUPPORTED),
        _ => Err(cu::INVALID_VALUE),
    }
}

/// The context an object over `res` is created in: the array's own, else
/// the client's current one.
fn resource_ctx(s: &Session, ctx: u64, res: &Resource) -> Result<BackendCtx, Status> {
    match res.kind {
        resource::ARRAY => Ok(array(s, res.array)?.ctx),
        _ => s.ctx(ctx),
    }
}

/// The array requests. Ids, regions and objects are checked against this
/// session's tables before the backend sees them.
impl ArrayCalls for Session {
    fn array_create(&mut self, ctx: u64, id: u64, desc: ArrayDesc) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            let c = self.ctx(ctx)?;
            if self.arrays.arrays.contains_key(&id) {
                return Err(cu::INVALID_VALUE);
            }
            if desc.flags & !ARRAY_FLAGS != 0 {
                tracing::debug!(flags = desc.flags, "array flags not remoted");
                return Err(cu::NOT_SUPPORTED);
            }
            // A 3D array needs a height; 2D and 1D ones may omit it.
            if desc.width == 0 || (desc.depth > 0 && desc.height == 0) {
                return Err(cu::INVALID_VALUE);
            }
            let bytes = desc.bytes().ok_or(cu::INVALID_VALUE)?;
            w.charge(bytes)?;
            let real = w
                .backend()
                .array_create(c, &desc)
                .inspect_err(|_| w.uncharge(bytes))?;
            self.arrays.arrays.insert(
                id,
                Array {
                    real,
                    desc,
                    ctx: c,
                    bytes,
                },
            );
            Ok(())
        })())
    }

    fn array_destroy(&mut self, id: u64) -> Outcome {
        let w = Arc::clone(&self.worker);
        reply((|| {
            self.take_deferred()?;
            let a = array(self, id)?;
            w.backend().array_destroy(a.ctx, a.real)?;
            self.arrays.arrays.remove(&id);
            w.uncharge(a.bytes);
            Ok(())
        })())
    }

    /// The reply is raw, as for `mem_msgs::Copy2D`: the status, then the
    /// packed bytes of a host destination.
    fn array_copy(&mut self, c: ArrayCopy<'_>) -> Outcome {
        let r = (|| {
            if c.dst_host() {
                self.take_deferred()?;
            }
            let packed = c.packed().ok_or(cu::INVALID_VALUE)?;
            if packed == 0 {
                return Ok(vec![0; 4]);
            }
            let src = match (&c.src, &c.src_array) {
                (Some(p), _) => {
                    check_linear(self, p, c.width, c.rows)?;
                    ASrc::Device(*p)
                }
                (_, Some(a)) => ASrc::Array(check_array_side(self, a, c.width, c.rows)?),
                _ => ASrc::Host(c.data),
            };
            let dst = match (&c.dst, &c.dst_array) {
                (Some(p), _) => {
                    check_linear(self, p, c.width, c.rows)?;
                    Some(ADst::Device(*p))
                }
                (_, Some(a)) => Some(ADst::Array(check_array_side(self, a, c.width, c.rows)?)),
                _ => None,
            };
            let (ctx, stream) = match c.stream {
                Some(st) => {
                    let (ctx, real) = resolve_stream(self, c.ctx, st, None)?;
                    if c.src_host() || c.dst_host() {
                        crate::graph::refuse_host_copy_in_capture(self, ctx, real)?;
                    }
                    (ctx, Some(real))
                }
                None => (self.ctx(c.ctx)?, None),
            };
            let b = self.worker.backend();
            match dst {
                Some(d) => {
                    b.array_copy(ctx, stream, c.width, c.rows, src, d)?;
                    Ok(vec![0; 4])
                }
                None => {
                    if packed > tf_protocol::MAX_PAYLOAD as u64 - 4 {
                        return Err(cu::INVALID_VALUE);
                    }
                    let mut out = vec![0u8; 4 + packed as usize];
                    b.array_copy(ctx, stream, c.width, c.rows, src, ADst::Host(&mut out[4..]))?;
                    Ok(out)
                }
            }
        })();
        match r {
            Ok(out) => Outcome::Reply(out),
            Err(status) => Outcome::Reply(tf_protocol::encode_reply::<()>(status, None)),
        }
    }

    fn tex_create(
        &mut self,
        ctx: u64,
        res: Resource,
        tex: TexDesc,
        view: Option<ViewDesc>,
    ) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            let c = resource_ctx(self, ctx, &res)?;
            let real_res = check_resource(self, &res)?;
            let t = self
                .worker
                .backend()
                .tex_create(c, &real_res, &tex, view.as_ref())?;
            self.arrays.texes.insert(t, c);
            Ok(t)
        })())
    }

    fn tex_destroy(&mut self, tex: u64) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            let c = *self.arrays.texes.get(&tex).ok_or(cu::INVALID_VALUE)?;
            self.worker.backend().tex_destroy(c, tex)?;
            self.arrays.texes.remove(&tex);
            Ok(())
        })())
    }

    fn surf_create(&mut self, ctx: u64, res: Resource) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            // Surfaces are over arrays only (the driver's rule too).
            if res.kind != resource::ARRAY {
                return Err(cu::INVALID_VALUE);
            }
            let c = resource_ctx(self, ctx, &res)?;
            let real_res = check_resource(self, &res)?;
            let v = self.worker.backend().surf_create(c, &real_res)?;
            self.arrays.surfs.insert(v, c);
            Ok(v)
        })())
    }

    fn surf_destroy(&mut self, surf: u64) -> Outcome {
        reply((|| {
            self.take_deferred()?;
            let c = *self.arrays.surfs.get(&surf).ok_or(cu::INVALID_VALUE)?;
            self.worker.backend().surf_destroy(c, surf)?;
            self.arrays.surfs.remove(&surf);
            Ok(())
        })())
    }
}
