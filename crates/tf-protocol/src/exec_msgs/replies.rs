//! Reply bodies of the exec requests (see the parent module).

use super::{bad, count, ParamSlot, MAX_JIT_OPTIONS, MAX_LOG, MAX_PARAMS, TENSOR_MAP_BYTES};
use crate::codec::{Reader, Writer};
use crate::{Body, ProtocolError};

/// Most functions one module may list.
pub const MAX_MODULE_FUNCTIONS: usize = 1 << 16;

/// The names of a module's functions, in the driver's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Names(pub Vec<String>);

impl Body for Names {
    fn put(&self, w: &mut Writer) {
        w.u32(self.0.len() as u32);
        for n in &self.0 {
            w.str(n);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let n = count(r, MAX_MODULE_FUNCTIONS, "function names")?;
        let names = (0..n)
            .map(|_| Ok(r.str(super::MAX_NAME)?.to_owned()))
            .collect::<Result<Vec<_>, ProtocolError>>()?;
        Ok(Names(names))
    }
}

/// The answer to a function or kernel lookup: the worker's id and, when the
/// driver reports it, the parameter layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionReply {
    pub handle: u64,
    pub layout: Option<Vec<ParamSlot>>,
}

impl Body for FunctionReply {
    fn put(&self, w: &mut Writer) {
        w.u64(self.handle);
        match &self.layout {
            None => {
                w.u8(0);
            }
            Some(l) => {
                w.u8(1).u32(l.len() as u32);
                for p in l {
                    p.put(w);
                }
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let handle = r.u64()?;
        let layout = match r.u8()? {
            0 => None,
            1 => {
                let n = count(r, MAX_PARAMS, "layout")?;
                let l = (0..n)
                    .map(|_| ParamSlot::get(r))
                    .collect::<Result<Vec<_>, ProtocolError>>()?;
                Some(l)
            }
            _ => return Err(bad("function reply", "bad layout flag")),
        };
        Ok(Self { handle, layout })
    }
}

/// The answer to a load with JIT output options: the load's own status
/// (the logs matter most when it failed), the option values as the driver
/// left them (sizes, wall time) and the logs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReply {
    pub status: u32,
    pub values: Vec<u64>,
    pub info_log: Vec<u8>,
    pub error_log: Vec<u8>,
}

impl Body for LoadReply {
    fn put(&self, w: &mut Writer) {
        w.u32(self.status).u32(self.values.len() as u32);
        for v in &self.values {
            w.u64(*v);
        }
        w.bytes(&self.info_log).bytes(&self.error_log);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let status = r.u32()?;
        let n = count(r, MAX_JIT_OPTIONS, "load reply")?;
        let values = (0..n).map(|_| r.u64()).collect::<Result<_, _>>()?;
        let mut log = || -> Result<Vec<u8>, ProtocolError> {
            let b = r.bytes()?;
            if b.len() > MAX_LOG {
                return Err(bad("load reply", "log too long"));
            }
            Ok(b.to_vec())
        };
        let info_log = log()?;
        let error_log = log()?;
        Ok(Self {
            status,
            values,
            info_log,
            error_log,
        })
    }
}

/// An `int` answer (attributes, priorities).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntReply(pub i32);

impl Body for IntReply {
    fn put(&self, w: &mut Writer) {
        w.i32(self.0);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self(r.i32()?))
    }
}

/// `cuEventElapsedTime` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Elapsed(pub f32);

impl Body for Elapsed {
    fn put(&self, w: &mut Writer) {
        w.u32(self.0.to_bits());
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self(f32::from_bits(r.u32()?)))
    }
}

/// Occupancy answers: `(value, second value)`, e.g. `(min grid, block size)`
/// for the potential block size, `(blocks, 0)` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OccupancyReply(pub i64, pub i64);

impl Body for OccupancyReply {
    fn put(&self, w: &mut Writer) {
        w.u64(self.0 as u64).u64(self.1 as u64);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self(r.u64()? as i64, r.u64()? as i64))
    }
}

/// Most bytes of a link's inputs, and of its linked image (real linked
/// cubins are at most a few tens of MiB; the limit bounds what a session
/// makes the worker hold).
pub const MAX_LINKED: usize = 256 << 20;

/// The answer to `cuLinkComplete`: the link's status, `cuLinkCreate`'s
/// option values as the driver left them (log sizes, wall time), the logs,
/// and the size of the linked image, which `LinkRead` then fetches (it
/// may be larger than one frame).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkReply {
    pub log: LoadReply,
    pub size: u64,
}

impl Body for LinkReply {
    fn put(&self, w: &mut Writer) {
        self.log.put(w);
        w.u64(self.size);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let log = LoadReply::get(r)?;
        let size = r.u64()?;
        if size > MAX_LINKED as u64 {
            return Err(bad("link reply", "linked image too large"));
        }
        Ok(Self { log, size })
    }
}

/// Bytes of a linked image (`LinkRead`'s answer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkBytes(pub Vec<u8>);

impl Body for LinkBytes {
    fn put(&self, w: &mut Writer) {
        w.bytes(&self.0);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self(r.bytes()?.to_vec()))
    }
}

/// The 128 bytes of an encoded `CUtensorMap`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorMapBytes(pub [u8; TENSOR_MAP_BYTES]);

impl Body for TensorMapBytes {
    fn put(&self, w: &mut Writer) {
        w.raw(&self.0);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        Ok(Self(r.fixed::<TENSOR_MAP_BYTES>()?))
    }
}
