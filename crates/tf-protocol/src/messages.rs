//! Requests (client → worker) and replies (worker → client).
//!
//! Control messages use the opcodes below 1000; CUDA and NVML calls use the
//! opcode numbers generated into `tf_api::op` from `codegen/remoted.txt`, so a
//! number is never reused. A reply payload always starts with a `u32` status
//! (a `CUresult` or `nvmlReturn_t`); the body follows only when it is 0.

use crate::codec::{Reader, Writer};
use crate::ProtocolError;
use tf_api::op;

/// Control opcodes (not CUDA functions).
pub mod control {
    pub const HELLO: u32 = 1;
    pub const GOODBYE: u32 = 2;
    pub const PING: u32 = 3;
}

/// Capability bits exchanged in the handshake. Unknown bits are ignored, so a
/// newer peer can offer more.
pub mod caps {
    /// The peer understands `FLAG_NO_REPLY` enqueue calls.
    pub const ENQUEUE: u64 = 1 << 0;
    pub const ALL: u64 = ENQUEUE;
}

/// Longest device name, UUID text, version or identification string accepted.
pub const MAX_TEXT: usize = 256;
/// Most devices one worker may report.
pub const MAX_DEVICES: usize = 64;
/// Most attributes per device (CUDA 13 has < 200).
pub const MAX_ATTRIBUTES: usize = 512;

/// First message on every connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    pub capabilities: u64,
    pub pid: u32,
    /// The last field of the connection info (`0` in the guide, opaque text in Kubernetes).
    pub connection_id: String,
    /// Program name, for the worker's logs.
    pub program: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    pub capabilities: u64,
    pub session_id: u64,
    pub worker_version: String,
    /// What the worker's driver reports to `cuDriverGetVersion`.
    pub driver_version: i32,
}

/// A request decoded from (or encoded into) one frame. Bulk data borrows the
/// frame payload, so a copy into device memory reads it in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Hello(Hello),
    Goodbye,
    Ping,
    Init {
        flags: u32,
    },
    PrimaryCtxRetain {
        dev: i32,
    },
    PrimaryCtxRelease {
        dev: i32,
    },
    PrimaryCtxGetState {
        dev: i32,
    },
    CtxSynchronize {
        ctx: u64,
    },
    MemAlloc {
        ctx: u64,
        size: u64,
    },
    MemFree {
        ctx: u64,
        ptr: u64,
    },
    MemGetInfo {
        ctx: u64,
    },
    MemcpyHtoD {
        ctx: u64,
        stream: Option<u64>,
        dst: u64,
        data: &'a [u8],
    },
    MemcpyDtoH {
        ctx: u64,
        stream: Option<u64>,
        src: u64,
        size: u64,
    },
    MemcpyDtoD {
        ctx: u64,
        stream: Option<u64>,
        dst: u64,
        src: u64,
        size: u64,
    },
    MemsetD8 {
        ctx: u64,
        dst: u64,
        value: u8,
        count: u64,
    },
    MemsetD32 {
        ctx: u64,
        dst: u64,
        value: u32,
        count: u64,
    },
    NvmlInit,
    NvmlShutdown,
    NvmlMemoryInfo {
        index: u32,
    },
    /// NVML device and system queries (`nvml_msgs`).
    Nvml(crate::nvml_msgs::NvmlRequest<'a>),
    /// Context and start-up control calls (`ctx_msgs`).
    Ctx(crate::ctx_msgs::CtxRequest<'a>),
    /// Modules, kernels, streams, events, graphs (`exec_msgs`).
    Exec(crate::exec_msgs::ExecRequest<'a>),
    /// VMM, memory pools, stream memory operations (`mem_msgs`).
    Mem(crate::mem_msgs::MemRequest<'a>),
    /// Stream capture and graphs (`graph_msgs`).
    Graph(crate::graph_msgs::GraphRequest),
}

impl<'a> Request<'a> {
    /// The frame opcode. Async copies (a stream given) use the `*Async` opcode.
    pub fn opcode(&self) -> u32 {
        match self {
            Request::Hello(_) => control::HELLO,
            Request::Goodbye => control::GOODBYE,
            Request::Ping => control::PING,
            Request::Init { .. } => op::cuInit,
            Request::PrimaryCtxRetain { .. } => op::cuDevicePrimaryCtxRetain,
            Request::PrimaryCtxRelease { .. } => op::cuDevicePrimaryCtxRelease_v2,
            Request::PrimaryCtxGetState { .. } => op::cuDevicePrimaryCtxGetState,
            Request::CtxSynchronize { .. } => op::cuCtxSynchronize,
            Request::MemAlloc { .. } => op::cuMemAlloc_v2,
            Request::MemFree { .. } => op::cuMemFree_v2,
            Request::MemGetInfo { .. } => op::cuMemGetInfo_v2,
            Request::MemcpyHtoD { stream: None, .. } => op::cuMemcpyHtoD_v2,
            Request::MemcpyHtoD {
                stream: Some(_), ..
            } => op::cuMemcpyHtoDAsync_v2,
            Request::MemcpyDtoH { stream: None, .. } => op::cuMemcpyDtoH_v2,
            Request::MemcpyDtoH {
                stream: Some(_), ..
            } => op::cuMemcpyDtoHAsync_v2,
            Request::MemcpyDtoD { stream: None, .. } => op::cuMemcpyDtoD_v2,
            Request::MemcpyDtoD {
                stream: Some(_), ..
            } => op::cuMemcpyDtoDAsync_v2,
            Request::MemsetD8 { .. } => op::cuMemsetD8_v2,
            Request::MemsetD32 { .. } => op::cuMemsetD32_v2,
            Request::NvmlInit => op::nvmlInit_v2,
            Request::NvmlShutdown => op::nvmlShutdown,
            Request::NvmlMemoryInfo { .. } => op::nvmlDeviceGetMemoryInfo,
            Request::Nvml(r) => r.opcode(),
            Request::Ctx(r) => r.opcode(),
            Request::Exec(r) => r.opcode(),
            Request::Mem(r) => r.opcode(),
            Request::Graph(r) => r.opcode(),
        }
    }

    /// Encodes the fixed part; bulk data (if any) is returned separately so
    /// the transport can gather it without copying.
    pub fn encode(&self) -> (Vec<u8>, &'a [u8]) {
        let mut w = Writer::new();
        let mut bulk: &'a [u8] = &[];
        match self {
            Request::Hello(h) => {
                w.u64(h.capabilities)
                    .u32(h.pid)
                    .str(&h.connection_id)
                    .str(&h.program);
            }
            Request::Goodbye | Request::Ping | Request::NvmlInit | Request::NvmlShutdown => {}
            Request::Init { flags } => {
                w.u32(*flags);
            }
            Request::PrimaryCtxRetain { dev }
            | Request::PrimaryCtxRelease { dev }
            | Request::PrimaryCtxGetState { dev } => {
                w.i32(*dev);
            }
            Request::CtxSynchronize { ctx } | Request::MemGetInfo { ctx } => {
                w.u64(*ctx);
            }
            Request::MemAlloc { ctx, size } => {
                w.u64(*ctx).u64(*size);
            }
            Request::MemFree { ctx, ptr } => {
                w.u64(*ctx).u64(*ptr);
            }
            Request::MemcpyHtoD {
                ctx,
                stream,
                dst,
                data,
            } => {
                w.u64(*ctx);
                put_stream(&mut w, *stream);
                w.u64(*dst).u32(data.len() as u32);
                bulk = data;
            }
            Request::MemcpyDtoH {
                ctx,
                stream,
                src,
                size,
            } => {
                w.u64(*ctx);
                put_stream(&mut w, *stream);
                w.u64(*src).u64(*size);
            }
            Request::MemcpyDtoD {
                ctx,
                stream,
                dst,
                src,
                size,
            } => {
                w.u64(*ctx);
                put_stream(&mut w, *stream);
                w.u64(*dst).u64(*src).u64(*size);
            }
            Request::MemsetD8 {
                ctx,
                dst,
                value,
                count,
            } => {
                w.u64(*ctx).u64(*dst).u8(*value).u64(*count);
            }
            Request::MemsetD32 {
                ctx,
                dst,
                value,
                count,
            } => {
                w.u64(*ctx).u64(*dst).u32(*value).u64(*count);
            }
            Request::NvmlMemoryInfo { index } => {
                w.u32(*index);
            }
            Request::Nvml(r) => bulk = r.encode(&mut w),
            Request::Ctx(r) => bulk = r.encode(&mut w),
            Request::Exec(r) => bulk = r.encode(&mut w),
            Request::Mem(r) => bulk = r.encode(&mut w),
            Request::Graph(r) => r.encode(&mut w),
        }
        (w.finish(), bulk)
    }

    /// Decodes and validates one request. Never panics.
    pub fn decode(opcode: u32, payload: &'a [u8]) -> Result<Self, ProtocolError> {
        let mut r = Reader::new(payload, "request");
        let req = match opcode {
            control::HELLO => Request::Hello(Hello {
                capabilities: r.u64()?,
                pid: r.u32()?,
                connection_id: r.str(MAX_TEXT)?.to_owned(),
                program: r.str(MAX_TEXT)?.to_owned(),
            }),
            control::GOODBYE => Request::Goodbye,
            control::PING => Request::Ping,
            op::cuInit => Request::Init { flags: r.u32()? },
            op::cuDevicePrimaryCtxRetain => Request::PrimaryCtxRetain { dev: r.i32()? },
            op::cuDevicePrimaryCtxRelease_v2 => Request::PrimaryCtxRelease { dev: r.i32()? },
            op::cuDevicePrimaryCtxGetState => Request::PrimaryCtxGetState { dev: r.i32()? },
            op::cuCtxSynchronize => Request::CtxSynchronize { ctx: r.u64()? },
            op::cuMemAlloc_v2 => Request::MemAlloc {
                ctx: r.u64()?,
                size: r.u64()?,
            },
            op::cuMemFree_v2 => Request::MemFree {
                ctx: r.u64()?,
                ptr: r.u64()?,
            },
            op::cuMemGetInfo_v2 => Request::MemGetInfo { ctx: r.u64()? },
            op::cuMemcpyHtoD_v2 | op::cuMemcpyHtoDAsync_v2 => {
                let ctx = r.u64()?;
                let stream = get_stream(&mut r, opcode == op::cuMemcpyHtoDAsync_v2)?;
                let dst = r.u64()?;
                let n = r.u32()? as usize;
                if r.remaining() != n {
                    return Err(ProtocolError::Malformed {
                        what: "cuMemcpyHtoD",
                        why: "data length disagrees with frame",
                    });
                }
                let data = take_rest(payload, n);
                return Ok(Request::MemcpyHtoD {
                    ctx,
                    stream,
                    dst,
                    data,
                });
            }
            op::cuMemcpyDtoH_v2 | op::cuMemcpyDtoHAsync_v2 => {
                let ctx = r.u64()?;
                let stream = get_stream(&mut r, opcode == op::cuMemcpyDtoHAsync_v2)?;
                Request::MemcpyDtoH {
                    ctx,
                    stream,
                    src: r.u64()?,
                    size: r.u64()?,
                }
            }
            op::cuMemcpyDtoD_v2 | op::cuMemcpyDtoDAsync_v2 => {
                let ctx = r.u64()?;
                let stream = get_stream(&mut r, opcode == op::cuMemcpyDtoDAsync_v2)?;
                Request::MemcpyDtoD {
                    ctx,
                    stream,
                    dst: r.u64()?,
                    src: r.u64()?,
                    size: r.u64()?,
                }
            }
            op::cuMemsetD8_v2 => Request::MemsetD8 {
                ctx: r.u64()?,
                dst: r.u64()?,
                value: r.u8()?,
                count: r.u64()?,
            },
            op::cuMemsetD32_v2 => Request::MemsetD32 {
                ctx: r.u64()?,
                dst: r.u64()?,
                value: r.u32()?,
                count: r.u64()?,
            },
            op::nvmlInit_v2 => Request::NvmlInit,
            op::nvmlShutdown => Request::NvmlShutdown,
            op::nvmlDeviceGetMemoryInfo => Request::NvmlMemoryInfo { index: r.u32()? },
            other => {
                if let Some(r) = crate::nvml_msgs::NvmlRequest::decode(other, payload) {
                    return r.map(Request::Nvml);
                }
                if let Some(r) = crate::ctx_msgs::CtxRequest::decode(other, payload) {
                    return r.map(Request::Ctx);
                }
                if let Some(r) = crate::exec_msgs::ExecRequest::decode(other, payload) {
                    return r.map(Request::Exec);
                }
                if let Some(r) = crate::mem_msgs::MemRequest::decode(other, payload) {
                    return r.map(Request::Mem);
                }
                if let Some(r) = crate::graph_msgs::GraphRequest::decode(other, payload) {
                    return r.map(Request::Graph);
                }
                return Err(ProtocolError::UnknownOpcode(other));
            }
        };
        r.end()?;
        Ok(req)
    }
}

fn put_stream(w: &mut Writer, stream: Option<u64>) {
    if let Some(s) = stream {
        w.u64(s);
    }
}

fn get_stream(r: &mut Reader<'_>, is_async: bool) -> Result<Option<u64>, ProtocolError> {
    Ok(if is_async { Some(r.u64()?) } else { None })
}

/// The last `n` bytes of `payload` (the caller checked the length).
fn take_rest(payload: &[u8], n: usize) -> &[u8] {
    &payload[payload.len() - n..]
}

/// Static facts about one device, sent once with the `cuInit` reply and
/// cached by the client: every query about them is then answered locally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub name: String,
    pub uuid: [u8; 16],
    pub total_mem: u64,
    pub pci_bus_id: String,
    /// `(CUdevice_attribute, value)` for every attribute the device answers.
    pub attributes: Vec<(i32, i32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InitReply {
    pub driver_version: i32,
    pub devices: Vec<DeviceInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmlDeviceInfo {
    pub name: String,
    /// NVML's text form, `GPU-xxxxxxxx-...`.
    pub uuid: String,
    pub pci_bus_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmlInitReply {
    pub driver_version: String,
    pub nvml_version: String,
    pub cuda_driver_version: i32,
    pub devices: Vec<NvmlDeviceInfo>,
}

/// A reply body type: encodes after the status word, decodes validated.
pub trait Body: Sized {
    fn put(&self, w: &mut Writer);
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError>;
}

impl Body for () {
    fn put(&self, _: &mut Writer) {}
    fn get(_: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(())
    }
}

impl Body for u64 {
    fn put(&self, w: &mut Writer) {
        w.u64(*self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        r.u64()
    }
}

impl Body for (u64, u64) {
    fn put(&self, w: &mut Writer) {
        w.u64(self.0).u64(self.1);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok((r.u64()?, r.u64()?))
    }
}

impl Body for (u64, u64, u64) {
    fn put(&self, w: &mut Writer) {
        w.u64(self.0).u64(self.1).u64(self.2);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok((r.u64()?, r.u64()?, r.u64()?))
    }
}

impl Body for (u32, i32) {
    fn put(&self, w: &mut Writer) {
        w.u32(self.0).i32(self.1);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok((r.u32()?, r.i32()?))
    }
}

impl Body for HelloAck {
    fn put(&self, w: &mut Writer) {
        w.u64(self.capabilities)
            .u64(self.session_id)
            .str(&self.worker_version)
            .i32(self.driver_version);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self {
            capabilities: r.u64()?,
            session_id: r.u64()?,
            worker_version: r.str(MAX_TEXT)?.to_owned(),
            driver_version: r.i32()?,
        })
    }
}

fn get_count(r: &mut Reader<'_>, max: usize) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(ProtocolError::Malformed {
            what: "reply",
            why: "count over limit",
        });
    }
    Ok(n)
}

impl Body for InitReply {
    fn put(&self, w: &mut Writer) {
        w.i32(self.driver_version).u32(self.devices.len() as u32);
        for d in &self.devices {
            w.str(&d.name);
            w.buf.extend_from_slice(&d.uuid);
            w.u64(d.total_mem)
                .str(&d.pci_bus_id)
                .u32(d.attributes.len() as u32);
            for (a, v) in &d.attributes {
                w.i32(*a).i32(*v);
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let driver_version = r.i32()?;
        let n = get_count(r, MAX_DEVICES)?;
        let mut devices = Vec::with_capacity(n);
        for _ in 0..n {
            let name = r.str(MAX_TEXT)?.to_owned();
            let uuid = r.fixed::<16>()?;
            let total_mem = r.u64()?;
            let pci_bus_id = r.str(MAX_TEXT)?.to_owned();
            let na = get_count(r, MAX_ATTRIBUTES)?;
            let mut attributes = Vec::with_capacity(na);
            for _ in 0..na {
                attributes.push((r.i32()?, r.i32()?));
            }
            devices.push(DeviceInfo {
                name,
                uuid,
                total_mem,
                pci_bus_id,
                attributes,
            });
        }
        Ok(Self {
            driver_version,
            devices,
        })
    }
}

impl Body for NvmlInitReply {
    fn put(&self, w: &mut Writer) {
        w.str(&self.driver_version)
            .str(&self.nvml_version)
            .i32(self.cuda_driver_version);
        w.u32(self.devices.len() as u32);
        for d in &self.devices {
            w.str(&d.name).str(&d.uuid).str(&d.pci_bus_id);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let driver_version = r.str(MAX_TEXT)?.to_owned();
        let nvml_version = r.str(MAX_TEXT)?.to_owned();
        let cuda_driver_version = r.i32()?;
        let n = get_count(r, MAX_DEVICES)?;
        let mut devices = Vec::with_capacity(n);
        for _ in 0..n {
            devices.push(NvmlDeviceInfo {
                name: r.str(MAX_TEXT)?.to_owned(),
                uuid: r.str(MAX_TEXT)?.to_owned(),
                pci_bus_id: r.str(MAX_TEXT)?.to_owned(),
            });
        }
        Ok(Self {
            driver_version,
            nvml_version,
            cuda_driver_version,
            devices,
        })
    }
}

/// Encodes a reply payload: status, then the body when the status is 0.
pub fn encode_reply<B: Body>(status: u32, body: Option<&B>) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(status);
    if let (0, Some(b)) = (status, body) {
        b.put(&mut w);
    }
    w.finish()
}

/// Decodes a reply payload into `Ok(body)` or `Err(status)` for a nonzero status.
pub fn decode_reply<B: Body>(payload: &[u8]) -> Result<Result<B, u32>, ProtocolError> {
    let mut r = Reader::new(payload, "reply");
    let status = r.u32()?;
    if status != 0 {
        return Ok(Err(status));
    }
    let b = B::get(&mut r)?;
    r.end()?;
    Ok(Ok(b))
}

/// Splits a reply that carries raw bulk data (device-to-host copies): the
/// status, then the bytes. The slice borrows the frame (zero-copy).
pub fn decode_data_reply(payload: &[u8]) -> Result<Result<&[u8], u32>, ProtocolError> {
    let mut r = Reader::new(payload, "data reply");
    let status = r.u32()?;
    if status != 0 {
        return Ok(Err(status));
    }
    Ok(Ok(&payload[4..]))
}
