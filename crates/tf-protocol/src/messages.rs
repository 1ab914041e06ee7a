//! Requests (client → worker) and replies (worker → client).
//!
//! The requests are generated from `codegen/messages.txt` into
//! `src/generated/` (`cargo xtask codegen`): control messages use the opcodes below
//! 1000; CUDA and NVML calls use the opcode numbers generated into
//! `tf_api::op` from `codegen/remoted.txt`, so a number is never reused. A
//! reply payload always starts with a `u32` status (a `CUresult` or
//! `nvmlReturn_t`); the body follows only when it is 0. Reply bodies are
//! hand-written ([`Body`]): they are few and mostly nested lists.

use crate::codec::{Reader, Writer};
use crate::ProtocolError;

/// `Request`, `Hello`, the control opcodes and `MAX_TEXT`, generated from
/// `codegen/messages.txt`.
pub use crate::generated::messages::*;

/// Capability bits exchanged in the handshake. Unknown bits are ignored, so a
/// newer peer can offer more.
pub mod caps {
    /// The peer understands `FLAG_NO_REPLY` enqueue calls.
    pub const ENQUEUE: u64 = 1 << 0;
    pub const ALL: u64 = ENQUEUE;
}

/// Most devices one worker may report.
pub const MAX_DEVICES: usize = 64;
/// Most attributes per device (CUDA 13 has < 200).
pub const MAX_ATTRIBUTES: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloAck {
    pub capabilities: u64,
    pub session_id: u64,
    pub worker_version: String,
    /// What the worker's driver reports to `cuDriverGetVersion`.
    pub driver_version: i32,
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

/// Bit 31 of a data reply's status word: the driver printed to the session
/// process's standard output during the copy (device printf, written at
/// synchronization), after the answer's data was in place; that output
/// comes as `control::OUTPUT` frames before the answer of the client's next
/// request (the client sends a `Ping` at once to get it).
pub const DATA_OUTPUT_FOLLOWS: u32 = 1 << 31;

/// Splits a reply that carries raw bulk data (device-to-host copies): the
/// status, then the bytes. The slice borrows the frame (zero-copy).
pub fn decode_data_reply(payload: &[u8]) -> Result<Result<&[u8], u32>, ProtocolError> {
    decode_data_reply_with_output(payload).map(|(r, _)| r)
}

/// [`decode_data_reply`], and whether device output follows the answer
/// ([`DATA_OUTPUT_FOLLOWS`]).
pub fn decode_data_reply_with_output(
    payload: &[u8],
) -> Result<(Result<&[u8], u32>, bool), ProtocolError> {
    let mut r = Reader::new(payload, "data reply");
    let word = r.u32()?;
    let (status, follows) = (word & !DATA_OUTPUT_FOLLOWS, word & DATA_OUTPUT_FOLLOWS != 0);
    if status != 0 {
        return Ok((Err(status), follows));
    }
    Ok((Ok(&payload[4..]), follows))
}
