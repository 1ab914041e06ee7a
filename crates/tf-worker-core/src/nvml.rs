//! NVML device and system queries (issue 5).
//!
//! Domain module of the worker: the backend methods this domain needs (with
//! `NOT_SUPPORTED` defaults so backends grow one method at a time), the
//! per-session state it keeps, and its requests (the generated
//! `NvmlCalls` trait).
//!
//! Device indices are CUDA ordinals everywhere: a backend answers NVML
//! questions about the device that CUDA numbers `index`, so that a client
//! sees one order in both APIs whatever order the host's NVML uses.

use tf_protocol::nvml_msgs::{
    static_queries, FieldId, FieldValue, NvmlAnswer, NvmlDeviceFacts, NvmlFieldValues, Query,
    KNOWN_FIELD_IDS, VALUE_TYPE_COUNT,
};
use tf_protocol::status::nvml;

use crate::backend::{BResult, BackendCtx};
use crate::calls::NvmlCalls;
use crate::session::{reply, Outcome, Session};
use crate::worker::Worker;

/// What this domain needs from a backend.
pub trait NvmlBackend {
    /// Answers `query` (with its scalar `arg`) about device `index`, the
    /// CUDA ordinal, in the shape documented on [`Query`]. `nvmlReturn_t`
    /// errors; a fact the device cannot give is `NVML_ERROR_NOT_SUPPORTED`,
    /// never an invented value.
    fn nvml_query(&self, _index: u32, _query: Query, _arg: u32) -> BResult<NvmlAnswer> {
        Err(nvml::NOT_SUPPORTED)
    }

    /// `nvmlDeviceGetFieldValues` on device `index`, the CUDA ordinal: one
    /// value per field of `fields`, in order, each with its own status (a
    /// field the device lacks is a failed entry, not a failed call). An
    /// empty `fields` still checks the device. The call's own error only
    /// where NVML fails the whole call (an invalid device, a lost GPU).
    fn nvml_field_values(&self, _index: u32, _fields: &[FieldId]) -> BResult<Vec<FieldValue>> {
        Err(nvml::NOT_SUPPORTED)
    }
}

/// Per-session state of this domain.
#[derive(Debug, Default)]
pub struct NvmlState {
    /// The client's process id from its handshake, reported as the process
    /// running on the device (in the client's own pid namespace).
    pub(crate) client_pid: u32,
}

impl NvmlState {
    /// Frees what a departed session left behind.
    pub fn cleanup(&mut self, _worker: &Worker) {}
}

/// The NVML queries. The process list is answered here (the asking client's
/// own process); every other query goes to the backend.
impl NvmlCalls for Session {
    fn nvml_device_facts(&mut self, index: u32) -> Outcome {
        let b = self.worker.backend();
        let facts = static_queries()
            .into_iter()
            .map(|(q, arg)| {
                (
                    q.opcode(),
                    arg,
                    b.nvml_query(index, q, arg).map_err(nonzero),
                )
            })
            .collect();
        reply(Ok(NvmlDeviceFacts { facts }))
    }

    fn nvml_query(&mut self, query: Query, index: u32, arg: u32) -> Outcome {
        if query == Query::ComputeProcesses {
            return reply(Ok(own_processes(self, index)));
        }
        reply(
            self.worker
                .backend()
                .nvml_query(index, query, arg)
                .map_err(nonzero),
        )
    }

    /// Field values, with the memory view kept: the worker virtualizes
    /// framebuffer memory per session (`nvmlDeviceGetMemoryInfo` reports
    /// the session's limit, not the board), so no answer may carry the
    /// physical figures. No field of the `nvml.h` this build knows (ids
    /// below [`KNOWN_FIELD_IDS`]) reports framebuffer capacity or use (the
    /// memory fields are ECC and remapping counters and temperatures), so
    /// those are forwarded. A later NVML may add one, so ids this build does
    /// not know are not sent to the backend: they are answered
    /// `NVML_ERROR_INVALID_ARGUMENT` per field, as driver 580's NVML answers
    /// an id it does not know (measured: ids 310 and 9999).
    fn nvml_field_values(&mut self, index: u32, fields: Vec<FieldId>) -> Outcome {
        let known: Vec<FieldId> = fields
            .iter()
            .copied()
            .filter(|f| f.field < KNOWN_FIELD_IDS)
            .collect();
        reply(
            self.worker
                .backend()
                .nvml_field_values(index, &known)
                .map_err(nonzero)
                .and_then(|answered| merge_fields(&fields, answered))
                .map(|values| NvmlFieldValues { values }),
        )
    }
}

/// The values of `fields` from the backend's answer to those of them below
/// [`KNOWN_FIELD_IDS`] (in order): the others fail with
/// `NVML_ERROR_INVALID_ARGUMENT`. A backend answer of another length is
/// `NVML_ERROR_UNKNOWN` for the call; a successful value of a type no
/// `nvmlValueType_t` names is `NVML_ERROR_UNKNOWN` for its field (the
/// client's decoder would refuse the whole answer for it).
fn merge_fields(fields: &[FieldId], answered: Vec<FieldValue>) -> Result<Vec<FieldValue>, u32> {
    let known = fields.iter().filter(|f| f.field < KNOWN_FIELD_IDS).count();
    if answered.len() != known {
        tracing::warn!(
            asked = known,
            answered = answered.len(),
            "the backend answered another number of NVML field values"
        );
        return Err(nvml::UNKNOWN);
    }
    let mut answered = answered.into_iter();
    Ok(fields
        .iter()
        .map(|f| {
            if f.field >= KNOWN_FIELD_IDS {
                return FieldValue::failed(nvml::INVALID_ARGUMENT);
            }
            match answered.next() {
                Some(v) if v.status == nvml::SUCCESS && v.value_type >= VALUE_TYPE_COUNT => {
                    FieldValue::failed(nvml::UNKNOWN)
                }
                Some(v) => v,
                None => FieldValue::failed(nvml::UNKNOWN),
            }
        })
        .collect())
}

/// A backend error of 0 would read as success without a body.
fn nonzero(s: u32) -> u32 {
    if s == 0 {
        nvml::UNKNOWN
    } else {
        s
    }
}

/// `[pid, bytes]` for this client while it holds a context on device
/// `index`, like NVML lists processes with a context; other clients of the
/// worker are not shown (they may be other tenants).
fn own_processes(s: &Session, index: u32) -> NvmlAnswer {
    let Ok(dev) = i32::try_from(index) else {
        return NvmlAnswer::default();
    };
    let holds = s.retained.get(&dev).copied().unwrap_or(0) > 0;
    let ctx: Option<BackendCtx> = s.worker.primary_ctx(dev);
    let used: u64 = s
        .allocs
        .values()
        .filter(|(_, c)| Some(*c) == ctx)
        .map(|(size, _)| size)
        .sum();
    if holds || used > 0 {
        NvmlAnswer::nums([u64::from(s.nvml.client_pid), used])
    } else {
        NvmlAnswer::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: u64) -> FieldValue {
        FieldValue {
            status: nvml::SUCCESS,
            value_type: 3,
            value,
            timestamp: 5,
            latency_us: 1,
        }
    }

    fn id(field: u32) -> FieldId {
        FieldId { field, scope: 0 }
    }

    #[test]
    fn unknown_field_ids_fail_alone_and_order_is_kept() {
        let fields = [id(83), id(KNOWN_FIELD_IDS), id(1), id(u32::MAX), id(308)];
        let answered = vec![ok(1), FieldValue::failed(nvml::NOT_SUPPORTED), ok(3)];
        let v = merge_fields(&fields, answered).unwrap();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0], ok(1));
        assert_eq!(v[1].status, nvml::INVALID_ARGUMENT);
        assert_eq!(v[2].status, nvml::NOT_SUPPORTED);
        assert_eq!(v[3].status, nvml::INVALID_ARGUMENT);
        assert_eq!(v[4], ok(3));
    }

    #[test]
    fn a_wrong_backend_answer_is_not_forwarded() {
        assert_eq!(merge_fields(&[id(83)], vec![]), Err(nvml::UNKNOWN));
        assert_eq!(
            merge_fields(&[id(83)], vec![ok(1), ok(2)]),
            Err(nvml::UNKNOWN)
        );
        let mut odd = ok(1);
        odd.value_type = VALUE_TYPE_COUNT;
        let v = merge_fields(&[id(83), id(84)], vec![odd, ok(2)]).unwrap();
        assert_eq!(v[0].status, nvml::UNKNOWN);
        assert_eq!(v[1], ok(2));
        // A failed field's type is NVML's business.
        let failed = FieldValue {
            value_type: 99,
            ..FieldValue::failed(nvml::NOT_SUPPORTED)
        };
        assert_eq!(merge_fields(&[id(1)], vec![failed]), Ok(vec![failed]));
        assert_eq!(merge_fields(&[], vec![]), Ok(vec![]));
    }
}
