//! TEST ONLY. Linking and tensor maps of the host backend.
//!
//! The "linker" validates every input like a driver reading it (the type
//! must match the bytes) and joins the PTX the inputs carry into one PTX
//! image, which this backend loads like any other (`host_exec`), so a
//! linked image's kernels can be looked up and launched. An input whose
//! PTX contains [`LINK_ERROR_MARK`] fails the link like a PTX syntax
//! error, with an error log, so the client's log handling can be tested.
//!
//! Tensor maps are checked against the driver's documented requirements
//! and filled deterministically: the address in the first 8 bytes, then
//! the arguments, and [`TENSOR_MAP_MAGIC`] in the last byte, which
//! `cuTensorMapReplaceAddress` requires of the map it is given.

use tf_image::{fatbin, Kind};
use tf_protocol::exec_msgs::{
    jit, LoadReply, Opt, TensorMapEncode, TensorMapShape, TENSOR_MAP_BYTES,
};
use tf_protocol::status::cu;
use tf_worker_core::exec::LinkPart;
use tf_worker_core::{BResult, BackendCtx};

use crate::HostBackend;

/// PTX containing this fails to link with `CUDA_ERROR_INVALID_PTX`.
pub const LINK_ERROR_MARK: &str = "tf_test_link_error";
/// The last byte of every tensor map this backend encodes.
pub const TENSOR_MAP_MAGIC: u8 = 0x7F;
/// `CUDA_ERROR_INVALID_PTX`.
const INVALID_PTX: u32 = 218;
/// `CUDA_ERROR_INVALID_IMAGE`.
const INVALID_IMAGE: u32 = 200;
/// What the test linker reports as its wall time, in milliseconds.
pub const LINK_WALL_TIME_MS: f32 = 0.25;

/// The PTX text of one input (empty for inputs that carry none).
fn input_ptx(p: &LinkPart<'_>) -> BResult<Vec<String>> {
    let want = match p.kind {
        0 => Kind::Elf,
        1 => Kind::Ptx,
        2 => Kind::Fatbin,
        3 => Kind::Elf,
        4 => Kind::Archive,
        // CU_JIT_INPUT_NVVM: LTO-IR of toolkits before 12.0.
        _ => return Err(cu::NOT_SUPPORTED),
    };
    if want == Kind::Ptx {
        // The size may or may not count the NUL (nvrtc's does, strlen's not).
        let text = p.data.strip_suffix(&[0]).unwrap_or(p.data);
        if text.is_empty() || text.contains(&0) {
            return Err(INVALID_PTX);
        }
        let text = std::str::from_utf8(text).map_err(|_| INVALID_PTX)?;
        return Ok(vec![text.to_owned()]);
    }
    let kind = tf_image::validate(p.data).map_err(|_| INVALID_IMAGE)?;
    if kind != want {
        return Err(INVALID_IMAGE);
    }
    if kind != Kind::Fatbin {
        return Ok(Vec::new());
    }
    let mut texts = Vec::new();
    for e in fatbin::entries(p.data).map_err(|_| INVALID_IMAGE)? {
        if e.kind == fatbin::EntryKind::Ptx && e.compression == fatbin::Compression::None {
            let b = e.payload(p.data);
            let end = b.iter().position(|c| *c == 0).unwrap_or(b.len());
            texts.push(String::from_utf8_lossy(&b[..end]).into_owned());
        }
    }
    Ok(texts)
}

/// Writes the driver's outputs into the option values: wall time, and the
/// log sizes as the bytes of log written.
fn report(jit_opts: &[Opt], log: &mut LoadReply, info: String, error: String) {
    let cap = |want: u32| {
        jit_opts
            .iter()
            .find(|o| o.option == want)
            .map_or(0, |o| o.value as usize)
    };
    let clip = |mut s: String, cap: usize| {
        s.truncate(cap.saturating_sub(1));
        s.into_bytes()
    };
    let wants = |o: u32| jit_opts.iter().any(|x| x.option == o);
    log.info_log = if wants(jit::INFO_LOG) {
        clip(info, cap(jit::INFO_LOG_SIZE))
    } else {
        Vec::new()
    };
    log.error_log = if wants(jit::ERROR_LOG) {
        clip(error, cap(jit::ERROR_LOG_SIZE))
    } else {
        Vec::new()
    };
    for (i, o) in jit_opts.iter().enumerate() {
        let v = match o.option {
            jit::WALL_TIME => u64::from(LINK_WALL_TIME_MS.to_bits()),
            jit::INFO_LOG_SIZE => log.info_log.len() as u64,
            jit::ERROR_LOG_SIZE => log.error_log.len() as u64,
            _ => continue,
        };
        if let Some(slot) = log.values.get_mut(i) {
            *slot = v;
        }
    }
}

impl HostBackend {
    pub(crate) fn host_link(
        &self,
        ctx: BackendCtx,
        jit_opts: &[Opt],
        inputs: &[LinkPart<'_>],
        log: &mut LoadReply,
    ) -> BResult<Vec<u8>> {
        self.check_ctx(ctx)?;
        let mut texts = Vec::new();
        let mut failed = None;
        for p in inputs {
            match input_ptx(p) {
                Ok(t) => texts.extend(t),
                Err(e) => {
                    failed = Some((
                        e,
                        format!(
                            "error   : input '{}' is not a valid image of type {}",
                            p.name, p.kind
                        ),
                    ));
                    break;
                }
            }
            if texts.iter().any(|t| t.contains(LINK_ERROR_MARK)) {
                failed = Some((
                    INVALID_PTX,
                    format!("ptxas fatal   : '{}': {LINK_ERROR_MARK}", p.name),
                ));
                break;
            }
        }
        let total: usize = inputs.iter().map(|p| p.data.len()).sum();
        if let Some((status, error)) = failed {
            report(jit_opts, log, String::new(), error);
            return Err(status);
        }
        let mut out = format!(
            "// tf-test-worker linked image of {} inputs\n",
            inputs.len()
        );
        for t in texts {
            out.push_str(&t);
            out.push('\n');
        }
        let mut out = out.into_bytes();
        out.push(0);
        let info = format!(
            "info    : tf-test-worker linked {} inputs ({total} bytes) into {} bytes",
            inputs.len(),
            out.len()
        );
        report(jit_opts, log, info, String::new());
        Ok(out)
    }

    pub(crate) fn host_tensor_map_encode(
        &self,
        ctx: BackendCtx,
        e: &TensorMapEncode,
    ) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        self.check_ctx(ctx)?;
        let ok = e.dtype <= 15
            && e.address != 0
            && e.address.is_multiple_of(16)
            && e.dims.iter().all(|d| (1..=1 << 31).contains(d))
            && e.strides
                .iter()
                .all(|s| s.is_multiple_of(16) && *s < 1 << 40)
            && e.element_strides.iter().all(|s| (1..=8).contains(s))
            && e.interleave <= 2
            && e.swizzle <= 6
            && e.l2 <= 3
            && e.oob <= 1;
        let shape_ok = match &e.shape {
            TensorMapShape::Tiled { box_dim } => box_dim.iter().all(|b| (1..=256).contains(b)),
            TensorMapShape::Im2col {
                channels, pixels, ..
            }
            | TensorMapShape::Im2colWide {
                channels, pixels, ..
            } => (1..=256).contains(channels) && (1..=1024).contains(pixels),
        };
        if !ok || !shape_ok {
            return Err(cu::INVALID_VALUE);
        }
        let mut m = [0u8; TENSOR_MAP_BYTES];
        m[..8].copy_from_slice(&e.address.to_le_bytes());
        m[8] = e.dtype as u8;
        m[9] = e.rank as u8;
        m[10] = e.interleave as u8;
        m[11] = e.swizzle as u8;
        m[12] = e.l2 as u8;
        m[13] = e.oob as u8;
        m[14] = match e.shape {
            TensorMapShape::Tiled { .. } => 0,
            TensorMapShape::Im2col { .. } => 1,
            TensorMapShape::Im2colWide { .. } => 2,
        };
        for (i, d) in e.dims.iter().enumerate() {
            m[16 + 4 * i..20 + 4 * i].copy_from_slice(&(*d as u32).to_le_bytes());
        }
        for (i, s) in e.strides.iter().enumerate() {
            m[40 + 8 * i..48 + 8 * i].copy_from_slice(&s.to_le_bytes());
        }
        for (i, s) in e.element_strides.iter().enumerate() {
            m[72 + i] = *s as u8;
        }
        if let TensorMapShape::Tiled { box_dim } = &e.shape {
            for (i, b) in box_dim.iter().enumerate() {
                m[80 + 2 * i..82 + 2 * i].copy_from_slice(&(*b as u16).to_le_bytes());
            }
        }
        m[TENSOR_MAP_BYTES - 1] = TENSOR_MAP_MAGIC;
        Ok(m)
    }

    pub(crate) fn host_tensor_map_replace(
        &self,
        ctx: BackendCtx,
        map: &[u8; TENSOR_MAP_BYTES],
        address: u64,
    ) -> BResult<[u8; TENSOR_MAP_BYTES]> {
        self.check_ctx(ctx)?;
        if map[TENSOR_MAP_BYTES - 1] != TENSOR_MAP_MAGIC
            || address == 0
            || !address.is_multiple_of(16)
        {
            return Err(cu::INVALID_VALUE);
        }
        let mut m = *map;
        m[..8].copy_from_slice(&address.to_le_bytes());
        Ok(m)
    }
}
