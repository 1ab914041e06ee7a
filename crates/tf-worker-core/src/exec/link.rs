//! Linking (`cuLinkComplete`) and tensor maps (`cuTensorMapEncode*`).
//!
//! A link arrives whole: `cuLinkCreate`'s options and every input, whose
//! bytes were staged like an image's parts under the client's link id
//! (`modules::stage`) with the last ones in the request. The backend links
//! them in the client's context; the linked image waits here until the
//! client has read it back (`LinkRead`), since it may be larger than a
//! frame. Tensor maps are encoded by the backend from the arguments by
//! value; the 128 bytes go back to the client.

use std::sync::Arc;

use tf_protocol::encode_reply;
use tf_protocol::exec_msgs::{
    handle, jit, LinkBytes, LinkInput, LinkReply, LoadReply, Opt, TensorMapBytes, TensorMapEncode,
    MAX_LINKED, TENSOR_MAP_BYTES,
};
use tf_protocol::status::cu;

use super::LinkPart;
use crate::backend::Status;
use crate::session::{Outcome, Session};

/// Most linked images one session may hold unread at once.
const MAX_PENDING_LINKS: usize = 16;

/// Refuses options the backend could not pass to its driver as they are:
/// pointers into the client's memory, options this protocol does not know
/// (their value might be a pointer), and, per input, outputs and logs
/// (only `cuLinkCreate`'s options report back).
fn check_options(opts: &[Opt], per_input: bool) -> Result<(), Status> {
    for o in opts {
        let log_buffer = o.option == jit::INFO_LOG || o.option == jit::ERROR_LOG;
        let output = matches!(
            o.option,
            jit::THREADS_PER_BLOCK | jit::WALL_TIME | jit::INFO_LOG_SIZE | jit::ERROR_LOG_SIZE
        );
        let ok = if per_input {
            jit::by_value(o.option) && !output
        } else {
            jit::by_value(o.option) || log_buffer
        };
        if !ok {
            tracing::debug!(option = o.option, per_input, "refusing a link option");
            return Err(cu::INVALID_VALUE);
        }
    }
    Ok(())
}

pub(super) fn complete(
    s: &mut Session,
    ctx: u64,
    link: u64,
    jit_opts: Vec<Opt>,
    inputs: Vec<LinkInput>,
    tail: &[u8],
) -> Outcome {
    let staged = s.exec.staging.remove(&link);
    if let Some(b) = &staged {
        s.exec.staged -= b.len();
    }
    let mut log = LoadReply {
        values: jit_opts.iter().map(|o| o.value).collect(),
        ..LoadReply::default()
    };
    let result = (|| {
        if !handle::is(handle::LINK, link) || s.exec.linked.contains_key(&link) {
            return Err(cu::INVALID_HANDLE);
        }
        if s.exec.linked.len() >= MAX_PENDING_LINKS {
            return Err(cu::OUT_OF_MEMORY);
        }
        check_options(&jit_opts, false)?;
        for i in &inputs {
            check_options(&i.jit, true)?;
        }
        let real_ctx = s.ctx(ctx)?;
        let mut bytes = staged.unwrap_or_default();
        bytes.extend_from_slice(tail);
        // The decoder bounded the sum; it must also be exactly what arrived.
        let total: u64 = inputs.iter().map(|i| i.size).sum();
        if total != bytes.len() as u64 {
            return Err(cu::INVALID_VALUE);
        }
        let mut parts = Vec::with_capacity(inputs.len());
        let mut at = 0usize;
        for i in &inputs {
            let end = at + i.size as usize;
            parts.push(LinkPart {
                kind: i.kind,
                name: &i.name,
                jit: &i.jit,
                data: &bytes[at..end],
            });
            at = end;
        }
        let w = Arc::clone(&s.worker);
        let out = w.backend().link(real_ctx, &jit_opts, &parts, &mut log)?;
        let held: usize = s.exec.linked.values().map(Vec::len).sum();
        if out.len() > MAX_LINKED || held + out.len() > MAX_LINKED {
            return Err(cu::OUT_OF_MEMORY);
        }
        Ok(out)
    })();
    let reply = match result {
        Ok(out) => {
            let size = out.len() as u64;
            s.exec.linked.insert(link, out);
            LinkReply { log, size }
        }
        Err(status) => {
            tracing::debug!(status, link, "link failed");
            log.status = status;
            LinkReply { log, size: 0 }
        }
    };
    Outcome::Reply(encode_reply(0, Some(&reply)))
}

/// Part of a linked image; the entry is dropped once its end was read.
pub(super) fn read(
    s: &mut Session,
    link: u64,
    offset: u64,
    size: u64,
) -> Result<LinkBytes, Status> {
    let image = s.exec.linked.get(&link).ok_or(cu::INVALID_HANDLE)?;
    let end = offset.checked_add(size).ok_or(cu::INVALID_VALUE)?;
    if end > image.len() as u64 {
        return Err(cu::INVALID_VALUE);
    }
    let part = image[offset as usize..end as usize].to_vec();
    if end == image.len() as u64 {
        s.exec.linked.remove(&link);
    }
    Ok(LinkBytes(part))
}

pub(super) fn encode(s: &mut Session, e: &TensorMapEncode) -> Result<TensorMapBytes, Status> {
    let ctx = s.ctx(e.ctx)?;
    let w = Arc::clone(&s.worker);
    w.backend().tensor_map_encode(ctx, e).map(TensorMapBytes)
}

pub(super) fn replace_address(
    s: &mut Session,
    ctx: u64,
    map: &[u8; TENSOR_MAP_BYTES],
    address: u64,
) -> Result<TensorMapBytes, Status> {
    let ctx = s.ctx(ctx)?;
    let w = Arc::clone(&s.worker);
    w.backend()
        .tensor_map_replace_address(ctx, map, address)
        .map(TensorMapBytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(option: u32) -> Opt {
        Opt { option, value: 0 }
    }

    #[test]
    fn link_options_are_values_or_logs() {
        // Log buffers and outputs at creation: the backend substitutes its own.
        assert!(check_options(
            &[o(jit::INFO_LOG), o(jit::INFO_LOG_SIZE), o(jit::WALL_TIME)],
            false
        )
        .is_ok());
        // Per input, only values.
        assert_eq!(
            check_options(&[o(jit::ERROR_LOG)], true),
            Err(cu::INVALID_VALUE)
        );
        assert_eq!(
            check_options(&[o(jit::WALL_TIME)], true),
            Err(cu::INVALID_VALUE)
        );
        assert!(check_options(&[o(7), o(9)], true).is_ok());
        // Pointers into the client's memory and unknown options never pass.
        for bad in [17, 18, 25, 27, 36, 1000] {
            assert_eq!(
                check_options(&[o(bad)], false),
                Err(cu::INVALID_VALUE),
                "{bad}"
            );
        }
    }
}
