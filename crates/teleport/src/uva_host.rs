//! Pinned host memory named by device calls (unified addressing).
//!
//! With unified addressing a pinned host pointer is a valid argument of
//! `cuMemsetD*`, and of any `cuMemcpy*` in place of device memory: XLA
//! (JAX) zeroes and reads back small pinned buffers that way. Through the
//! client that memory lives in the application's process, not on the
//! worker, so such a call is done here, in stream order: the stream's (or,
//! for the synchronous forms, the context's) earlier work is waited for,
//! then the bytes are written in this process. Only ranges this client
//! tracks (`cuMemHostAlloc`, `cuMemAllocHost`, `cuMemHostRegister`) qualify;
//! kernels still cannot reach host memory (`CAN_MAP_HOST_MEMORY = 0`).

use tf_protocol::exec_msgs::{Memset, MemsetOp};
use tf_protocol::status::cu;
use tf_protocol::Request;

use crate::cuda::{current_ctx, session};

type CUresult = u32;

/// Whether `[p, p + len)` is pinned host memory of this process.
pub(crate) fn is_host_span(p: u64, len: u64) -> bool {
    crate::runtime::host_memory::host_span(p, len)
}

/// Waits for the work a host-side operation must follow: the stream's
/// (`Some`, already translated for the wire), or the context's.
fn in_order(stream: Option<u64>) -> Result<(), CUresult> {
    let ctx = current_ctx()?;
    match stream {
        Some(stream) => {
            // Waiting would end a capture: host memory is not captured.
            crate::graph::refuse_in_capture(stream)?;
            session()?.call::<()>(&Request::Exec(
                tf_protocol::exec_msgs::ExecRequest::StreamSynchronize { ctx, stream },
            ))
        }
        None => session()?.call::<()>(&Request::CtxSynchronize { ctx }),
    }
}

/// A copy with at least one side in pinned host memory of this process and
/// the other there too or in the caller's plain memory.
pub(crate) fn copy(dst: u64, src: u64, n: usize, stream: Option<u64>) -> Result<(), CUresult> {
    in_order(stream)?;
    if n > 0 {
        if dst == 0 || src == 0 {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: both ranges are host memory of this process for `n` bytes
        // (tracked pinned memory, or the caller's buffer by the CUDA
        // contract); `copy` handles overlap.
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, n) };
    }
    Ok(())
}

/// `(element bytes, rows)` of a memset.
fn geometry(op: MemsetOp) -> (u64, u64) {
    match op {
        MemsetOp::D8 => (1, 1),
        MemsetOp::D16 => (2, 1),
        MemsetOp::D32 => (4, 1),
        MemsetOp::D2D8 { height } => (1, height),
        MemsetOp::D2D16 { height } => (2, height),
        MemsetOp::D2D32 { height } => (4, height),
    }
}

/// Bytes a memset touches: the last row's start plus one row.
pub(crate) fn memset_span(m: &Memset) -> Option<u64> {
    let (elem, height) = geometry(m.op);
    let row = m.width.checked_mul(elem)?;
    if height == 0 || row == 0 {
        return Some(0);
    }
    tf_protocol::pitched_offset(m.pitch, 0, row, height - 1, 0)
}

/// A memset of pinned host memory of this process (`m.dst`), in order.
pub(crate) fn memset(m: &Memset, stream: Option<u64>) -> Result<(), CUresult> {
    in_order(stream)?;
    let (elem, height) = geometry(m.op);
    let elem = elem as usize;
    let width = usize::try_from(m.width).map_err(|_| cu::INVALID_VALUE)?;
    let pattern = m.value.to_le_bytes();
    for r in 0..height {
        let row = m.dst + r * m.pitch;
        // SAFETY: the whole span was checked to be tracked host memory of
        // this process (`is_host_span` on `memset_span`).
        let bytes = unsafe { std::slice::from_raw_parts_mut(row as *mut u8, width * elem) };
        for chunk in bytes.chunks_exact_mut(elem) {
            chunk.copy_from_slice(&pattern[..elem]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(op: MemsetOp, pitch: u64, width: u64) -> Memset {
        Memset {
            ctx: 0,
            stream: 0,
            dst: 0,
            pitch,
            value: 0,
            width,
            op,
        }
    }

    #[test]
    fn memset_spans_cover_the_last_row() {
        assert_eq!(memset_span(&m(MemsetOp::D32, 0, 2)), Some(8));
        assert_eq!(memset_span(&m(MemsetOp::D8, 0, 0)), Some(0));
        assert_eq!(
            memset_span(&m(MemsetOp::D2D16 { height: 3 }, 64, 10)),
            Some(64 * 2 + 20)
        );
        assert_eq!(
            memset_span(&m(MemsetOp::D2D32 { height: 2 }, u64::MAX, 1)),
            None
        );
    }
}
