//! TEST ONLY: `ArrayBackend` over host memory. An array is a packed host
//! buffer with its descriptor (rows of `width × element` bytes, `height`
//! rows per slice); texture and surface objects are recorded values that
//! nothing samples (no test kernel reads them).

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use tf_protocol::array_msgs::{ArrayDesc, ArraySide, Resource, TexDesc, ViewDesc};
use tf_protocol::status::cu;
use tf_worker_core::array::{ADst, ASrc};
use tf_worker_core::{ArrayBackend, BResult, BackendCtx};

use crate::{lock, HostBackend};

#[derive(Default)]
pub(crate) struct HostArrays {
    state: Mutex<Tables>,
}

#[derive(Default)]
struct Tables {
    next: u64,
    /// Array value → (row bytes, rows per slice, bytes).
    arrays: HashMap<u64, (u64, u64, Vec<u8>)>,
    objects: HashSet<u64>,
}

impl HostArrays {
    fn t(&self) -> std::sync::MutexGuard<'_, Tables> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A value no other session process makes: the process id in the high
    /// bits (with a process per session every backend starts counting at 1,
    /// and a session must not be able to name another's object by luck).
    fn value(&self) -> u64 {
        let mut t = self.t();
        t.next += 1;
        (u64::from(std::process::id()) << 24) | (0xA << 20) | t.next
    }

    /// Runs `f` on `len` bytes of row `r` of an array region.
    fn in_row<T>(
        &self,
        side: &ArraySide,
        r: u64,
        len: u64,
        f: impl FnOnce(&mut [u8]) -> T,
    ) -> BResult<T> {
        let mut t = self.t();
        let (row_bytes, rows, buf) = t.arrays.get_mut(&side.array).ok_or(cu::INVALID_HANDLE)?;
        let off = (side.z * *rows + side.y + r) * *row_bytes + side.x_bytes;
        let span = buf
            .get_mut(off as usize..(off + len) as usize)
            .ok_or(cu::INVALID_VALUE)?;
        Ok(f(span))
    }
}

impl ArrayBackend for HostBackend {
    fn array_create(&self, ctx: BackendCtx, desc: &ArrayDesc) -> BResult<u64> {
        self.check_ctx(ctx)?;
        let (row, rows, slices) = desc.extent().ok_or(cu::INVALID_VALUE)?;
        let n = usize::try_from(row * rows * slices).map_err(|_| cu::OUT_OF_MEMORY)?;
        let v = self.arrays.value();
        self.arrays.t().arrays.insert(v, (row, rows, vec![0u8; n]));
        Ok(v)
    }

    fn array_destroy(&self, ctx: BackendCtx, array: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        self.arrays
            .t()
            .arrays
            .remove(&array)
            .map(|_| ())
            .ok_or(cu::INVALID_HANDLE)
    }

    fn array_copy(
        &self,
        ctx: BackendCtx,
        stream: Option<u64>,
        width: u64,
        rows: u64,
        src: ASrc<'_>,
        mut dst: ADst<'_>,
    ) -> BResult<()> {
        self.check_ctx(ctx)?;
        if let Some(s) = stream {
            self.exec.check_stream(s)?;
        }
        let w = width as usize;
        for r in 0..rows {
            let row: Vec<u8> = match &src {
                ASrc::Host(b) => b[r as usize * w..][..w].to_vec(),
                ASrc::Device(p) => {
                    let (b, off) = self.find(p.ptr + r * p.pitch, width)?;
                    let v = lock(&b)[off..off + w].to_vec();
                    v
                }
                ASrc::Array(a) => self.arrays.in_row(a, r, width, |s| s.to_vec())?,
            };
            match &mut dst {
                ADst::Host(b) => b[r as usize * w..][..w].copy_from_slice(&row),
                ADst::Device(p) => {
                    let (b, off) = self.find(p.ptr + r * p.pitch, width)?;
                    lock(&b)[off..off + w].copy_from_slice(&row);
                }
                ADst::Array(a) => self
                    .arrays
                    .in_row(a, r, width, |d| d.copy_from_slice(&row))?,
            }
        }
        Ok(())
    }

    fn tex_create(
        &self,
        ctx: BackendCtx,
        res: &Resource,
        _tex: &TexDesc,
        _view: Option<&ViewDesc>,
    ) -> BResult<u64> {
        self.surf_create(ctx, res)
    }

    fn tex_destroy(&self, ctx: BackendCtx, tex: u64) -> BResult<()> {
        self.surf_destroy(ctx, tex)
    }

    fn surf_create(&self, ctx: BackendCtx, res: &Resource) -> BResult<u64> {
        self.check_ctx(ctx)?;
        if res.kind == 0 && !self.arrays.t().arrays.contains_key(&res.array) {
            return Err(cu::INVALID_HANDLE);
        }
        let v = self.arrays.value();
        self.arrays.t().objects.insert(v);
        Ok(v)
    }

    fn surf_destroy(&self, ctx: BackendCtx, surf: u64) -> BResult<()> {
        self.check_ctx(ctx)?;
        if self.arrays.t().objects.remove(&surf) {
            Ok(())
        } else {
            Err(cu::INVALID_VALUE)
        }
    }
}
