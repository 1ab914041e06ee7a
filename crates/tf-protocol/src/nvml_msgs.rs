//! NVML requests beyond init/shutdown/memory: device facts and readings.
//!
//! Domain module: its requests ([`NvmlRequest`], [`Query`]) are generated
//! from `codegen/messages.txt`; its reply bodies are here.
//!
//! Every device question is one [`Query`] (an NVML function) with at most
//! one scalar argument (a sensor, clock or fan number), answered by an
//! [`NvmlAnswer`]: a few numbers and perhaps a text. One shape for all keeps
//! the wire, the worker dispatch and the backends small; the meaning of the
//! numbers is documented per [`Query`] variant. Facts that cannot change
//! while the driver is loaded ([`STATIC_QUERIES`]) travel together in one
//! [`NvmlDeviceFacts`] reply that the client caches per device.

use crate::codec::{Reader, Writer};
use crate::messages::{Body, MAX_TEXT};
use crate::ProtocolError;

pub use crate::generated::nvml_msgs::*;

/// Most numbers in one answer (a process list is two per process).
pub const MAX_NUMS: usize = 512;
/// Most facts in one [`NvmlDeviceFacts`] reply.
pub const MAX_FACTS: usize = 64;

/// `clockType` values of `nvmlClockType_t` (graphics, SM, memory, video).
const CLOCK_TYPES: [u32; 4] = [0, 1, 2, 3];

/// `(query, arg)` pairs whose answers cannot change while the worker's
/// driver is loaded. The worker answers them together (see
/// [`NvmlRequest::DeviceFacts`]); the client caches them per device and asks
/// the worker only for what is not in that list.
pub fn static_queries() -> Vec<(Query, u32)> {
    let mut v = vec![
        (Query::Serial, 0),
        (Query::PciInfo, 0),
        (Query::Brand, 0),
        (Query::Architecture, 0),
        (Query::ComputeCapability, 0),
        (Query::MinorNumber, 0),
        (Query::PowerLimitConstraints, 0),
        (Query::PowerDefaultLimit, 0),
        (Query::NumFans, 0),
        (Query::VbiosVersion, 0),
        (Query::VirtualizationMode, 0),
        (Query::MaxMigDeviceCount, 0),
    ];
    for t in CLOCK_TYPES {
        v.push((Query::MaxClock, t));
        v.push((Query::DefaultAppClock, t));
    }
    // Shutdown, slowdown, memory max and GPU max are fixed by the board; the
    // acoustic and GPS thresholds (4 and up) can be set, so they are asked.
    for t in 0..4 {
        v.push((Query::TemperatureThreshold, t));
    }
    v
}

/// The answer to one [`Query`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmlAnswer {
    pub nums: Vec<u64>,
    pub text: String,
}

impl NvmlAnswer {
    /// An answer of numbers only.
    pub fn nums(nums: impl Into<Vec<u64>>) -> Self {
        Self {
            nums: nums.into(),
            text: String::new(),
        }
    }

    /// An answer of text only.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            nums: Vec::new(),
            text: text.into(),
        }
    }
}

impl Body for NvmlAnswer {
    fn put(&self, w: &mut Writer) {
        put_answer(w, self);
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        get_answer(r)
    }
}

fn put_answer(w: &mut Writer, a: &NvmlAnswer) {
    w.u32(a.nums.len() as u32);
    for n in &a.nums {
        w.u64(*n);
    }
    w.str(&a.text);
}

fn get_answer(r: &mut Reader<'_>) -> Result<NvmlAnswer, ProtocolError> {
    let n = count(r, MAX_NUMS)?;
    let mut nums = Vec::with_capacity(n);
    for _ in 0..n {
        nums.push(r.u64()?);
    }
    Ok(NvmlAnswer {
        nums,
        text: r.str(MAX_TEXT)?.to_owned(),
    })
}

fn count(r: &mut Reader<'_>, max: usize) -> Result<usize, ProtocolError> {
    let n = r.u32()? as usize;
    if n > max {
        return Err(ProtocolError::Malformed {
            what: "nvml reply",
            why: "count over limit",
        });
    }
    Ok(n)
}

/// One fact of a device: `(query opcode, arg, answer or nvmlReturn_t)`.
pub type Fact = (u32, u32, Result<NvmlAnswer, u32>);

/// A device's static facts ([`static_queries`]), each with its own status
/// so that one fact the GPU lacks does not hide the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmlDeviceFacts {
    pub facts: Vec<Fact>,
}

impl Body for NvmlDeviceFacts {
    fn put(&self, w: &mut Writer) {
        w.u32(self.facts.len() as u32);
        for (opcode, arg, answer) in &self.facts {
            w.u32(*opcode).u32(*arg);
            match answer {
                Ok(a) => {
                    w.u32(0);
                    put_answer(w, a);
                }
                // A status of 0 without a body cannot be expressed; the
                // worker never produces it, and UNKNOWN is NVML's own word.
                Err(0) => {
                    w.u32(crate::status::nvml::UNKNOWN);
                }
                Err(s) => {
                    w.u32(*s);
                }
            }
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let n = count(r, MAX_FACTS)?;
        let mut facts = Vec::with_capacity(n);
        for _ in 0..n {
            let opcode = r.u32()?;
            let arg = r.u32()?;
            let answer = match r.u32()? {
                0 => Ok(get_answer(r)?),
                s => Err(s),
            };
            facts.push((opcode, arg, answer));
        }
        Ok(Self { facts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode_reply, encode_reply, Request};
    use tf_api::op;

    #[test]
    fn opcodes_are_distinct_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for q in Query::ALL {
            assert!(seen.insert(q.opcode()), "{q:?} shares an opcode");
            assert_eq!(Query::from_opcode(q.opcode()), Some(*q));
            assert_ne!(q.opcode(), op::nvmlDeviceGetHandleByIndex_v2);
        }
        assert_eq!(Query::from_opcode(op::nvmlInit_v2), None);
        assert!(static_queries().len() <= MAX_FACTS);
    }

    #[test]
    fn requests_round_trip() {
        let reqs = [
            NvmlRequest::DeviceFacts { index: 3 },
            NvmlRequest::Query {
                query: Query::Clock,
                index: 1,
                arg: 2,
            },
        ];
        for req in reqs {
            let r = Request::Nvml(req);
            let (fixed, bulk) = r.encode();
            assert!(bulk.is_empty());
            assert_eq!(Request::decode(r.opcode(), &fixed), Ok(r.clone()));
            // Truncated and overlong payloads are refused.
            assert!(Request::decode(r.opcode(), &fixed[..fixed.len() - 1]).is_err());
            let mut long = fixed.clone();
            long.push(0);
            assert!(Request::decode(r.opcode(), &long).is_err());
        }
    }

    #[test]
    fn replies_round_trip() {
        let a = NvmlAnswer {
            nums: vec![1, u64::MAX, 0],
            text: "00000000:01:00.0".into(),
        };
        let p = encode_reply(0, Some(&a));
        assert_eq!(decode_reply::<NvmlAnswer>(&p), Ok(Ok(a.clone())));
        let f = NvmlDeviceFacts {
            facts: vec![(1, 2, Ok(a)), (3, 4, Err(3)), (5, 6, Err(0))],
        };
        let p = encode_reply(0, Some(&f));
        let back = decode_reply::<NvmlDeviceFacts>(&p).unwrap().unwrap();
        assert_eq!(back.facts[..2], f.facts[..2]);
        assert_eq!(back.facts[2], (5, 6, Err(crate::status::nvml::UNKNOWN)));
        let p = encode_reply::<NvmlDeviceFacts>(3, None);
        assert_eq!(decode_reply::<NvmlDeviceFacts>(&p), Ok(Err(3)));
    }

    #[test]
    fn oversized_counts_are_refused() {
        let mut w = Writer::new();
        w.u32(0).u32(MAX_NUMS as u32 + 1);
        assert!(decode_reply::<NvmlAnswer>(&w.finish()).is_err());
        let mut w = Writer::new();
        w.u32(0).u32(MAX_FACTS as u32 + 1);
        assert!(decode_reply::<NvmlDeviceFacts>(&w.finish()).is_err());
    }
}
