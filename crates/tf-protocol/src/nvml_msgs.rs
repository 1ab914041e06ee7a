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
        (Query::MaxPcieLinkGeneration, 0),
        (Query::MaxPcieLinkWidth, 0),
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

/// `NVML_VALUE_TYPE_COUNT`: one more than the last `nvmlValueType_t`.
pub const VALUE_TYPE_COUNT: u32 = 7;

/// `NVML_FI_MAX` of the `nvml.h` this build knows: one more than the
/// highest field id. The worker asks its NVML only for fields below it (see
/// `tf-worker-core`'s `nvml_field_values` on why).
pub const KNOWN_FIELD_IDS: u32 = 310;

impl FieldValue {
    /// A field that could not be read: only its status is meaningful.
    pub fn failed(status: u32) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// Called by the generated decoder: a successful value has a type the
    /// application can read it by.
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        if self.status == crate::status::nvml::SUCCESS && self.value_type >= VALUE_TYPE_COUNT {
            Err("unknown nvmlValueType_t")
        } else {
            Ok(())
        }
    }
}

/// The answer to [`NvmlRequest::FieldValues`]: one value per field asked
/// for, in the order asked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NvmlFieldValues {
    pub values: Vec<FieldValue>,
}

impl Body for NvmlFieldValues {
    fn put(&self, w: &mut Writer) {
        w.u32(self.values.len() as u32);
        for v in &self.values {
            v.put(w);
        }
    }
    fn get(r: &mut Reader<'_>) -> Result<Self, ProtocolError> {
        let n = count(r, MAX_FIELD_VALUES)?;
        let mut values = Vec::with_capacity(n);
        for _ in 0..n {
            values.push(FieldValue::get(r)?);
        }
        Ok(Self { values })
    }
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
            NvmlRequest::FieldValues {
                index: 0,
                fields: vec![
                    FieldId {
                        field: 83,
                        scope: 0,
                    },
                    FieldId {
                        field: 138,
                        scope: 17,
                    },
                ],
            },
            NvmlRequest::FieldValues {
                index: 2,
                fields: vec![FieldId::default(); MAX_FIELD_VALUES],
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
    fn field_values_round_trip_and_are_checked() {
        let v = NvmlFieldValues {
            values: vec![
                FieldValue {
                    status: 0,
                    value_type: 0,
                    value: 35.5f64.to_bits(),
                    timestamp: 1_700_000_000_000_000,
                    latency_us: 3,
                },
                FieldValue {
                    status: 0,
                    value_type: VALUE_TYPE_COUNT - 1,
                    value: u64::MAX,
                    timestamp: -1,
                    latency_us: i64::MIN,
                },
                // A failed field's type is not looked at.
                FieldValue {
                    status: 3,
                    value_type: 1000,
                    ..FieldValue::default()
                },
            ],
        };
        let p = encode_reply(0, Some(&v));
        assert_eq!(decode_reply::<NvmlFieldValues>(&p), Ok(Ok(v.clone())));
        // A successful value of a type no NVML names is refused.
        let mut bad = v.clone();
        bad.values[1].value_type = VALUE_TYPE_COUNT;
        assert!(decode_reply::<NvmlFieldValues>(&encode_reply(0, Some(&bad))).is_err());
        // More values than one request may ask for are refused.
        let long = NvmlFieldValues {
            values: vec![FieldValue::default(); MAX_FIELD_VALUES + 1],
        };
        assert!(decode_reply::<NvmlFieldValues>(&encode_reply(0, Some(&long))).is_err());
        let p = encode_reply::<NvmlFieldValues>(2, None);
        assert_eq!(decode_reply::<NvmlFieldValues>(&p), Ok(Err(2)));
    }

    #[test]
    fn oversized_field_lists_are_refused() {
        let r = Request::Nvml(NvmlRequest::FieldValues {
            index: 0,
            fields: vec![FieldId::default(); MAX_FIELD_VALUES + 1],
        });
        let (fixed, _) = r.encode();
        assert!(Request::decode(r.opcode(), &fixed).is_err());
        let mut w = Writer::new();
        w.u32(0).u32(u32::MAX);
        assert!(Request::decode(op::nvmlDeviceGetFieldValues, &w.finish()).is_err());
    }

    #[test]
    fn the_new_static_facts_are_fetched_with_the_others() {
        let s = static_queries();
        assert!(s.contains(&(Query::MaxPcieLinkGeneration, 0)));
        assert!(s.contains(&(Query::MaxPcieLinkWidth, 0)));
        // Readings and states that change are not facts.
        for q in [
            Query::CurrPcieLinkGeneration,
            Query::CurrPcieLinkWidth,
            Query::PcieThroughput,
            Query::NvLinkState,
            Query::GpuFabricInfo,
        ] {
            assert!(s.iter().all(|(f, _)| *f != q), "{q:?}");
        }
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
