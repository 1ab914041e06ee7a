//! `nvmlInternalGetExportTable`: NVML's private export tables, asked for by
//! `nvidia-smi` (table `c4fe3e6c-c98f-6c4e-a327-ee696e12f7c4`). What their
//! slots do is not public, so every table id gets the same table: its first
//! word is its size in bytes, as in NVIDIA's tables, and every other slot
//! is a trampoline that logs its number once and answers
//! `NVML_ERROR_NOT_SUPPORTED`. A tool that calls a slot then sees an error
//! (and the log says which slot a later version should implement) instead
//! of jumping to null.

use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use tf_protocol::status::nvml as nv;

use super::{guard, nonnull, out, NvmlReturn};

/// Slots per table, counting the size word.
const SLOTS: usize = 512;

type Trampoline = extern "C" fn() -> u32;

static SEEN: [AtomicBool; SLOTS] = [const { AtomicBool::new(false) }; SLOTS];

/// What the unimplemented slots do, from `TF_NVML_EXPORT_SLOTS`: a
/// diagnostic knob while the slots nvidia-smi calls are unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SlotMode {
    /// `unsupported` (default): answer `NVML_ERROR_NOT_SUPPORTED`.
    Unsupported,
    /// `success`: answer `NVML_SUCCESS` without writing anything.
    Success,
    /// `null`: leave the slots null, as an empty table.
    Null,
}

fn mode() -> SlotMode {
    static MODE: OnceLock<SlotMode> = OnceLock::new();
    *MODE.get_or_init(|| match std::env::var("TF_NVML_EXPORT_SLOTS").as_deref() {
        Ok("success") => SlotMode::Success,
        Ok("null") => SlotMode::Null,
        Ok("unsupported") | Err(_) => SlotMode::Unsupported,
        Ok(other) => {
            tracing::warn!(
                "TF_NVML_EXPORT_SLOTS={other:?} is not one of unsupported, success, null; using unsupported"
            );
            SlotMode::Unsupported
        }
    })
}

/// Target of slot `I`. Takes no arguments and returns a 32-bit status,
/// which is safe whatever the real slot's signature: the caller owns its
/// argument registers and stack and reads only the status.
extern "C" fn slot<const I: usize>() -> u32 {
    let answer = match mode() {
        SlotMode::Success => nv::SUCCESS,
        _ => nv::NOT_SUPPORTED,
    };
    if !SEEN[I].swap(true, Ordering::Relaxed) && crate::runtime::may_log() {
        crate::client::ensure_logging();
        tracing::warn!(
            "slot {I} of NVML's internal export table is not implemented by this client; answering {}",
            if answer == 0 { "NVML_SUCCESS" } else { "NVML_ERROR_NOT_SUPPORTED" }
        );
    }
    answer
}

/// The table, built once: `[size in bytes, slot 1, ..., slot 511]`.
struct Table([usize; SLOTS]);

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t: [Trampoline; SLOTS] = [slot::<0>; SLOTS];
        // Each slot needs its own monomorphized trampoline to know its number.
        macro_rules! eight {
            ($t:ident, $b:expr) => {
                $t[$b] = slot::<{ $b }>;
                $t[$b + 1] = slot::<{ $b + 1 }>;
                $t[$b + 2] = slot::<{ $b + 2 }>;
                $t[$b + 3] = slot::<{ $b + 3 }>;
                $t[$b + 4] = slot::<{ $b + 4 }>;
                $t[$b + 5] = slot::<{ $b + 5 }>;
                $t[$b + 6] = slot::<{ $b + 6 }>;
                $t[$b + 7] = slot::<{ $b + 7 }>;
            };
        }
        macro_rules! sixty_four {
            ($t:ident, $b:expr) => {
                eight!($t, $b);
                eight!($t, $b + 8);
                eight!($t, $b + 16);
                eight!($t, $b + 24);
                eight!($t, $b + 32);
                eight!($t, $b + 40);
                eight!($t, $b + 48);
                eight!($t, $b + 56);
            };
        }
        sixty_four!(t, 0);
        sixty_four!(t, 64);
        sixty_four!(t, 128);
        sixty_four!(t, 192);
        sixty_four!(t, 256);
        sixty_four!(t, 320);
        sixty_four!(t, 384);
        sixty_four!(t, 448);
        let mut words = t.map(|f| f as usize);
        if mode() == SlotMode::Null {
            words.fill(0);
        }
        words[0] = SLOTS * std::mem::size_of::<usize>();
        Table(words)
    })
}

/// `nvmlReturn_t nvmlInternalGetExportTable(const void **table, const
/// nvmlUUID *id)`, as `cuGetExportTable`. Needs no `nvmlInit`.
pub(crate) unsafe extern "C" fn nvml_internal_get_export_table(
    table_out: *mut *const c_void,
    id: *const [u8; 16],
) -> NvmlReturn {
    guard(|| {
        nonnull(id)?;
        nonnull(table_out)?;
        // SAFETY: non-null; the caller passes a 16-byte table id.
        let id = unsafe { *id };
        let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
        tracing::debug!(table = %hex, "nvmlInternalGetExportTable");
        out(table_out, table().0.as_ptr().cast())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_its_size_and_a_trampoline_per_slot() {
        let t = &table().0;
        assert_eq!(t[0], SLOTS * 8);
        let mut addrs: Vec<usize> = t[1..].to_vec();
        addrs.sort_unstable();
        addrs.dedup();
        assert_eq!(addrs.len(), SLOTS - 1, "one trampoline per slot");
        // SAFETY: slot 300 holds `slot::<300>`, an extern "C" fn() -> u32.
        let f: Trampoline = unsafe { std::mem::transmute::<usize, Trampoline>(t[300]) };
        assert_eq!(f(), nv::NOT_SUPPORTED);
        assert!(SEEN[300].load(Ordering::Relaxed));
        assert!(!SEEN[301].load(Ordering::Relaxed));
    }

    #[test]
    fn null_arguments_are_refused() {
        let id = [0u8; 16];
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: valid or null pointers, as the function allows.
        unsafe {
            assert_eq!(
                nvml_internal_get_export_table(&mut p, std::ptr::null()),
                nv::INVALID_ARGUMENT
            );
            assert_eq!(
                nvml_internal_get_export_table(std::ptr::null_mut(), &id),
                nv::INVALID_ARGUMENT
            );
            assert_eq!(nvml_internal_get_export_table(&mut p, &id), nv::SUCCESS);
        }
        assert_eq!(p, table().0.as_ptr().cast());
    }
}
