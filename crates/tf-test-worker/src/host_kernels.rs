//! TEST ONLY. Kernels the host backend runs by name, so that launches and
//! graph replays have effects the tests can check (every other kernel is
//! bookkeeping only, see `host_exec`). Each is the plain C semantics of the
//! kernel of the same body in `tests/gpu/cuda/graphs.cu`, one element per
//! thread of the launch:
//!
//! - `tf_test_scale(const int *in, int *acc, int n, int k)`: `acc[i] += in[i] * k`
//! - `tf_test_axpb(int *y, int n, int a, int b)`: `y[i] = y[i] * a + b`
//! - `tf_test_host_incr(unsigned *p)`: `*p += 1` where `p` is the client's
//!   mapped host memory (a host mirror), as a kernel on a GPU would do
//!   through the mirror registered at the client's address.
//! - `tf_test_printf(unsigned k)`: device printf of `tf_test_printf: k`,
//!   one line per launch, written to the process's standard output (its
//!   descriptor 1) at the next synchronization, as the driver writes device
//!   printf output.
//!
//! A pointer outside the session's memory is refused with
//! `CUDA_ERROR_INVALID_VALUE` instead of faulting (which would cost the
//! test worker its "GPU context").

use tf_protocol::exec_msgs::ParamSlot;
use tf_protocol::status::cu;
use tf_worker_core::BResult;

use crate::{lock, HostBackend};

/// The parameter `i` of a packed buffer, as little-endian bytes of its slot.
fn arg(params: &[u8], layout: &[ParamSlot], i: usize) -> BResult<u64> {
    let p = layout.get(i).ok_or(cu::INVALID_VALUE)?;
    let at = p.offset as usize;
    let bytes = params
        .get(at..at + p.size as usize)
        .ok_or(cu::INVALID_VALUE)?;
    let mut v = [0u8; 8];
    let n = bytes.len().min(8);
    v[..n].copy_from_slice(&bytes[..n]);
    Ok(u64::from_le_bytes(v))
}

impl HostBackend {
    fn read_ints(&self, ptr: u64, n: usize) -> BResult<Vec<i32>> {
        let (b, off) = self.find(ptr, 4 * n as u64)?;
        let m = lock(&b);
        let v = m[off..off + 4 * n]
            .chunks_exact(4)
            .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok(v)
    }

    fn update_ints(&self, ptr: u64, n: usize, f: impl Fn(usize, i32) -> i32) -> BResult<()> {
        let (b, off) = self.find(ptr, 4 * n as u64)?;
        let mut m = lock(&b);
        for (i, c) in m[off..off + 4 * n].chunks_exact_mut(4).enumerate() {
            let v = f(i, i32::from_le_bytes([c[0], c[1], c[2], c[3]]));
            c.copy_from_slice(&v.to_le_bytes());
        }
        Ok(())
    }

    /// Runs the kernel `name` if it is one of the emulated ones.
    pub(crate) fn run_kernel(
        &self,
        name: &str,
        threads: u64,
        params: &[u8],
        layout: &[ParamSlot],
    ) -> BResult<()> {
        let count = |n: u64| (n as i32).max(0) as u64;
        match name {
            "tf_test_scale" => {
                let (src, acc) = (arg(params, layout, 0)?, arg(params, layout, 1)?);
                let n = count(arg(params, layout, 2)?).min(threads) as usize;
                let k = arg(params, layout, 3)? as i32;
                let input = self.read_ints(src, n)?;
                self.update_ints(acc, n, |i, v| v.wrapping_add(input[i].wrapping_mul(k)))
            }
            "tf_test_axpb" => {
                let y = arg(params, layout, 0)?;
                let n = count(arg(params, layout, 1)?).min(threads) as usize;
                let (a, b) = (
                    arg(params, layout, 2)? as i32,
                    arg(params, layout, 3)? as i32,
                );
                self.update_ints(y, n, |_, v| v.wrapping_mul(a).wrapping_add(b))
            }
            "tf_test_host_incr" => {
                let p = arg(params, layout, 0)?;
                self.mem.in_mirror(p, 4, |m| {
                    let v = u32::from_le_bytes([m[0], m[1], m[2], m[3]]).wrapping_add(1);
                    m.copy_from_slice(&v.to_le_bytes());
                })
            }
            "tf_test_printf" => {
                let k = arg(params, layout, 0)? as u32;
                self.printf
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_str(&format!("tf_test_printf: {k}\n"));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Writes the pending `tf_test_printf` lines to descriptor 1 (a
    /// synchronization), as the driver writes device printf output.
    pub(crate) fn flush_printf(&self) {
        use std::io::Write;
        let text = std::mem::take(&mut *self.printf.lock().unwrap_or_else(|e| e.into_inner()));
        if !text.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
        }
    }
}
