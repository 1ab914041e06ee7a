//! Property tests of the NVML domain messages: requests and replies round
//! trip, and no byte string makes their decoders panic.

use proptest::prelude::*;
use tf_protocol::nvml_msgs::{
    FieldId, FieldValue, NvmlAnswer, NvmlDeviceFacts, NvmlFieldValues, NvmlRequest, Query,
    MAX_FIELD_VALUES, MAX_NUMS, VALUE_TYPE_COUNT,
};
use tf_protocol::*;

fn any_query() -> impl Strategy<Value = Query> {
    (0..Query::ALL.len()).prop_map(|i| Query::ALL[i])
}

fn any_answer() -> impl Strategy<Value = NvmlAnswer> {
    (
        proptest::collection::vec(any::<u64>(), 0..16),
        "[ -~]{0,40}",
    )
        .prop_map(|(nums, text)| NvmlAnswer { nums, text })
}

fn any_fact() -> impl Strategy<Value = (u32, u32, Result<NvmlAnswer, u32>)> {
    (
        any::<u32>(),
        any::<u32>(),
        prop_oneof![any_answer().prop_map(Ok), (1u32..1000).prop_map(Err)],
    )
}

fn any_field_value() -> impl Strategy<Value = FieldValue> {
    (
        prop_oneof![Just(0u32), 1u32..1000],
        0..VALUE_TYPE_COUNT,
        any::<u64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(status, value_type, value, timestamp, latency_us)| FieldValue {
                status,
                value_type,
                value,
                timestamp,
                latency_us,
            },
        )
}

/// The opcodes of this domain, plus their neighbours.
fn nvml_opcode() -> impl Strategy<Value = u32> {
    prop_oneof![2995u32..3015, 3095u32..3170, 3195u32..3215, any::<u32>()]
}

proptest! {
    #[test]
    fn requests_round_trip(query in any_query(), index in any::<u32>(), arg in any::<u32>(), facts in any::<bool>()) {
        let req = Request::Nvml(if facts {
            NvmlRequest::DeviceFacts { index }
        } else {
            NvmlRequest::Query { query, index, arg }
        });
        let (payload, bulk) = req.encode();
        prop_assert!(bulk.is_empty());
        let frame = encode_frame(FrameHeader::request(req.opcode(), 0, 9), &payload);
        let h = FrameHeader::decode(&frame).unwrap();
        prop_assert_eq!(Request::decode(h.opcode, &frame[HEADER_LEN..]), Ok(req.clone()));
        for cut in 1..=payload.len() {
            prop_assert!(Request::decode(req.opcode(), &payload[..payload.len() - cut]).is_err());
        }
    }

    #[test]
    fn field_value_requests_round_trip(index in any::<u32>(),
                                       fields in proptest::collection::vec((any::<u32>(), any::<u32>()), 0..=MAX_FIELD_VALUES)) {
        let fields = fields.into_iter().map(|(field, scope)| FieldId { field, scope }).collect();
        let req = Request::Nvml(NvmlRequest::FieldValues { index, fields });
        let (payload, bulk) = req.encode();
        prop_assert!(bulk.is_empty());
        prop_assert_eq!(Request::decode(req.opcode(), &payload), Ok(req.clone()));
        for cut in 1..=payload.len() {
            prop_assert!(Request::decode(req.opcode(), &payload[..payload.len() - cut]).is_err());
        }
    }

    #[test]
    fn field_value_replies_round_trip(values in proptest::collection::vec(any_field_value(), 0..=MAX_FIELD_VALUES)) {
        let v = NvmlFieldValues { values };
        let p = encode_reply(0, Some(&v));
        prop_assert_eq!(decode_reply::<NvmlFieldValues>(&p), Ok(Ok(v)));
    }

    #[test]
    fn replies_round_trip(answer in any_answer(), facts in proptest::collection::vec(any_fact(), 0..20)) {
        let p = encode_reply(0, Some(&answer));
        prop_assert_eq!(decode_reply::<NvmlAnswer>(&p), Ok(Ok(answer)));
        let f = NvmlDeviceFacts { facts };
        let p = encode_reply(0, Some(&f));
        prop_assert_eq!(decode_reply::<NvmlDeviceFacts>(&p), Ok(Ok(f)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(opcode in nvml_opcode(),
                                   bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Request::decode(opcode, &bytes);
        let _ = decode_reply::<NvmlAnswer>(&bytes);
        let _ = decode_reply::<NvmlDeviceFacts>(&bytes);
        let _ = decode_reply::<NvmlFieldValues>(&bytes);
    }
}

#[test]
fn hostile_counts_are_refused_without_allocating() {
    let mut w = Writer::new();
    w.u32(0).u32(u32::MAX);
    assert!(decode_reply::<NvmlAnswer>(&w.finish()).is_err());
    let mut w = Writer::new();
    w.u32(0).u32(u32::MAX);
    assert!(decode_reply::<NvmlDeviceFacts>(&w.finish()).is_err());
    let mut w = Writer::new();
    w.u32(0).u32(MAX_NUMS as u32);
    assert!(
        decode_reply::<NvmlAnswer>(&w.finish()).is_err(),
        "truncated"
    );
    let mut w = Writer::new();
    w.u32(0).u32(u32::MAX);
    assert!(decode_reply::<NvmlFieldValues>(&w.finish()).is_err());
    let mut w = Writer::new();
    w.u32(0).u32(MAX_FIELD_VALUES as u32);
    assert!(
        decode_reply::<NvmlFieldValues>(&w.finish()).is_err(),
        "truncated"
    );
}

#[test]
fn every_query_opcode_is_remoted_nvml() {
    for q in Query::ALL {
        let (_, api, ..) = tf_api::remoted_by_opcode(q.opcode()).expect("opcode in remoted.txt");
        assert_eq!(*api, tf_api::Api::Nvml, "{q:?}");
    }
}
