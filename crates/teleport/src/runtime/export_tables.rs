//! `cuGetExportTable`: the driver's private tables, keyed by a 16-byte GUID.
//!
//! A table is an array of machine words; in most of them word 0 is the
//! table's size in bytes and the others are function pointers. cudart
//! (static and shared, 12 and 13) asks for its tables right after `cuInit`,
//! and cuBLAS/cuDNN ask for more. What each slot does was learned from
//! public reverse engineering (ZLUDA's dark-API tables, other remoting
//! projects) and from our own measurements on driver 580 (which slots are
//! called, how often, and each table's size word):
//!
//! | GUID | role | slots (580) | implemented here |
//! |---|---|---|---|
//! | `6bd5fb6c` | cudart interface | 13 | module from fatbin [1][6][8], primary context without activating it [2], no-op [7], load compilers [12] |
//! | `42d85a81` | tools TLS | 3 | the thread's current context [2] |
//! | `a094798c` | tools runtime callback hooks | 7 | scratch buffers [2][6] |
//! | `c693336e` | context-local storage | no size word | put [0], delete [1], get [2] |
//! | `263e8860` | context checks | 15 | per-context check [2], global check [3] |
//! | `d4082055` | integrity check | 3 | the challenge answer [1] (see `integrity`) |
//! | `f8cff951` | runtime requirements / logging | 3 | log message [1] |
//! | `21318c60` | tools context (cuBLAS, cuFFT, cuSOLVER) | 93 | context id [4], stream id of a tools handle [39], a stream's tools handle [51] |
//! | `0ca50b8c` | context-create bypass | 2 | `cuCtxCreate_v2` [1] |
//! | `6e163fbe` | tools module (cuFFT) | 99, sized from the worker | module function iteration [7] |
//! | `da9151d3` | compilation cache (NVRTC, cuDNN's runtime-compiled engines) | 7, sized from the worker | describe [1], destroy [2], look up [3], store [4], give back [6] (see `compile_cache`) |
//!
//! Every other slot of these tables, and every slot of a table we do not
//! know (sized from the worker's driver), is a *trap*: a distinct function
//! per (table, slot) that logs the GUID and slot once and returns
//! `CUDA_ERROR_NOT_SUPPORTED`, so an unexpected use is visible and never
//! jumps through garbage.
//!
//! The cudart-interface and integrity tables must stay at fixed addresses:
//! the integrity answer hashes them, and cudart compares.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use tf_protocol::ctx_msgs::CtxRequest;
use tf_protocol::status::cu;
use tf_protocol::Request;

use super::{cudart_slots as s, integrity};
use crate::cuda::{guard, session};

/// The tools-module table (cuFFT): built like an unknown table from the
/// worker's driver, with its module function iteration [7] implemented.
const TOOLS_MODULE: [u8; 16] = guid("6e163fbeb958444d835ce182aff1991e");

/// The driver's compilation cache (NVRTC): sized from the worker's driver,
/// slots 1–4 and 6 implemented in the client (see `compile_cache`).
const COMPILE_CACHE: [u8; 16] = guid("da9151d33ae6cc41a5c04f26d533e328");

/// Table ids (indices into [`TABLES`]); the known tables come first.
pub(crate) const CUDART: usize = 0;
pub(crate) const TOOLS_TLS: usize = 1;
pub(crate) const CALLBACK_HOOKS: usize = 2;
pub(crate) const CLS: usize = 3;
pub(crate) const CONTEXT_CHECKS: usize = 4;
pub(crate) const INTEGRITY: usize = 5;
pub(crate) const REQUIREMENTS: usize = 6;
pub(crate) const TOOLS_CONTEXT: usize = 7;
pub(crate) const CTX_CREATE_BYPASS: usize = 8;
const KNOWN_COUNT: usize = 9;
/// Known tables plus room for tables the client does not know.
const POOL: usize = 16;
/// Most slots of any table (21318c60 has 93, 6e163fbe 99 on driver 580).
const MAX_SLOTS: usize = 128;
/// Slots of an unknown table whose word 0 is not a size.
const UNSIZED_SLOTS: usize = 16;

struct Known {
    guid: [u8; 16],
    name: &'static str,
    slots: usize,
    size_word: bool,
    /// Slots that are null in driver 580's table.
    nulls: u128,
}

const fn hex(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a hex digit"),
    }
}

/// A GUID written as its 16 bytes in order, in hex.
const fn guid(s: &str) -> [u8; 16] {
    let b = s.as_bytes();
    assert!(b.len() == 32);
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = (hex(b[2 * i]) << 4) | hex(b[2 * i + 1]);
        i += 1;
    }
    out
}

const KNOWN: [Known; KNOWN_COUNT] = [
    Known {
        guid: guid("6bd5fb6c5bf4e74a8987d93912fd9df9"),
        name: "CUDART_INTERFACE",
        slots: 13,
        size_word: true,
        nulls: 1 << 10,
    },
    Known {
        guid: guid("42d85a8123f6cb478298f6e78a3aecdc"),
        name: "TOOLS_TLS",
        slots: 3,
        size_word: true,
        nulls: 0,
    },
    Known {
        guid: guid("a094798c2e742e7493f20800200c0a66"),
        name: "TOOLS_RUNTIME_CALLBACK_HOOKS",
        slots: 7,
        size_word: true,
        nulls: 0,
    },
    Known {
        guid: guid("c693336e1121df11a8c368f355d89593"),
        name: "CONTEXT_LOCAL_STORAGE",
        slots: 4,
        size_word: false,
        nulls: 0,
    },
    Known {
        guid: guid("263e88607cd2614392f6bbd5006dfa7e"),
        name: "CONTEXT_CHECKS",
        slots: 15,
        size_word: true,
        nulls: 0,
    },
    Known {
        guid: guid("d4082055bde6704b8d34ba123c66e1f2"),
        name: "INTEGRITY_CHECK",
        slots: 3,
        size_word: true,
        nulls: 0,
    },
    Known {
        guid: guid("f8cff95121468b4eb9e2fb469e7c0dd9"),
        name: "RUNTIME_REQUIREMENTS",
        slots: 3,
        size_word: true,
        nulls: 0,
    },
    Known {
        guid: guid("21318c60971432488ca641ff7324c8f2"),
        name: "TOOLS_CONTEXT",
        slots: 93,
        size_word: true,
        nulls: 1 << 91,
    },
    Known {
        guid: guid("0ca50b8c1004929a89a7d0df10e77286"),
        name: "CTX_CREATE_BYPASS",
        slots: 2,
        size_word: true,
        nulls: 0,
    },
];

/// Puts the implemented slots of known table `id` into `t`.
fn fill(id: usize, t: &mut [usize]) {
    let mut set = |slot: usize, f: *const ()| t[slot] = f as usize;
    match id {
        CUDART => {
            set(1, s::module_from_fatbinc as *const ());
            set(2, s::primary_context as *const ());
            set(6, s::module_from_fatbinc_ext as *const ());
            set(7, s::unregister_noop as *const ());
            set(8, s::module_from_fatbin_ext as *const ());
            set(12, s::load_compilers as *const ());
        }
        TOOLS_TLS => set(2, s::tools_current_context as *const ()),
        CALLBACK_HOOKS => {
            set(2, s::hooks_buffer1 as *const ());
            set(6, s::hooks_buffer2 as *const ());
        }
        CLS => {
            set(0, s::cls_put as *const ());
            set(1, s::cls_delete as *const ());
            set(2, s::cls_get as *const ());
            // The driver's table ends with a null entry.
            set(3, std::ptr::null());
        }
        CONTEXT_CHECKS => {
            set(2, s::context_check as *const ());
            set(3, s::context_check_global as *const ());
        }
        INTEGRITY => set(1, integrity::check as *const ()),
        REQUIREMENTS => set(1, s::log_message as *const ()),
        TOOLS_CONTEXT => {
            set(4, s::context_id as *const ());
            set(39, s::stream_tools_id as *const ());
            set(51, s::stream_tools_handle as *const ());
        }
        CTX_CREATE_BYPASS => set(1, s::ctx_create_bypass as *const ()),
        _ => {}
    }
}

/// Built tables; their addresses never change once built.
static TABLES: [OnceLock<Box<[usize]>>; POOL] = [const { OnceLock::new() }; POOL];
/// GUIDs of tables from the worker, by table id, and every unknown GUID's
/// outcome (a table id or the status to answer).
type Outcomes = Vec<([u8; 16], Result<usize, u32>)>;
static DYNAMIC: Mutex<Outcomes> = Mutex::new(Vec::new());
/// Calls per (table, slot).
static CALLS: [AtomicU64; POOL * MAX_SLOTS] = [const { AtomicU64::new(0) }; POOL * MAX_SLOTS];

fn guid_text(g: &[u8; 16]) -> String {
    g.iter().map(|b| format!("{b:02x}")).collect()
}

/// A table's name for logs: its role, or its GUID.
fn table_name(id: usize) -> String {
    if id < KNOWN_COUNT {
        return format!("{} ({})", KNOWN[id].name, &guid_text(&KNOWN[id].guid)[..8]);
    }
    let d = DYNAMIC.lock().unwrap_or_else(|e| e.into_inner());
    d.iter()
        .find(|(_, r)| *r == Ok(id))
        .map_or_else(|| format!("table {id}"), |(g, _)| guid_text(g))
}

/// Counts a call of a slot; the first call of each slot is logged at debug
/// level, every call at trace level.
pub(crate) fn note(table: usize, slot: usize) -> u64 {
    let n = CALLS[table * MAX_SLOTS + slot].fetch_add(1, Ordering::Relaxed);
    if !super::may_log() {
        return n;
    }
    if n == 0 {
        crate::client::ensure_logging();
        tracing::debug!(table = %table_name(table), slot, "export table slot: first call");
    } else {
        tracing::trace!(table, slot, "export table slot called");
    }
    n
}

/// Target of every slot without an implementation.
unsafe extern "C" fn trap<const ID: usize>() -> u32 {
    let (table, slot) = (ID / MAX_SLOTS, ID % MAX_SLOTS);
    if note(table, slot) == 0 && super::may_log() {
        tracing::warn!(
            "export table {} slot {slot} is not implemented by this client; answering CUDA_ERROR_NOT_SUPPORTED",
            table_name(table)
        );
    }
    cu::NOT_SUPPORTED
}

macro_rules! push16 {
    ($v:ident, $b:expr) => {
        $v.push(trap::<{ $b }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 1 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 2 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 3 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 4 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 5 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 6 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 7 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 8 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 9 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 10 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 11 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 12 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 13 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 14 }> as unsafe extern "C" fn() -> u32 as usize);
        $v.push(trap::<{ $b + 15 }> as unsafe extern "C" fn() -> u32 as usize);
    };
}

macro_rules! push128 {
    ($v:ident, $b:expr) => {
        push16!($v, $b);
        push16!($v, $b + 16);
        push16!($v, $b + 32);
        push16!($v, $b + 48);
        push16!($v, $b + 64);
        push16!($v, $b + 80);
        push16!($v, $b + 96);
        push16!($v, $b + 112);
    };
}

/// The trap of every (table, slot): index `table * MAX_SLOTS + slot`.
fn traps() -> &'static [usize] {
    static T: OnceLock<Box<[usize]>> = OnceLock::new();
    T.get_or_init(|| {
        let mut v = Vec::with_capacity(POOL * MAX_SLOTS);
        push128!(v, 0);
        push128!(v, 128);
        push128!(v, 256);
        push128!(v, 384);
        push128!(v, 512);
        push128!(v, 640);
        push128!(v, 768);
        push128!(v, 896);
        push128!(v, 1024);
        push128!(v, 1152);
        push128!(v, 1280);
        push128!(v, 1408);
        push128!(v, 1536);
        push128!(v, 1664);
        push128!(v, 1792);
        push128!(v, 1920);
        debug_assert_eq!(v.len(), POOL * MAX_SLOTS);
        v.into_boxed_slice()
    })
}

/// A table of `slots` traps, with its size word if it has one, and null
/// where the driver's table is null (bit i of `nulls`: callers may test a
/// slot before using it).
fn trap_table(id: usize, slots: usize, size_word: bool, nulls: u128) -> Vec<usize> {
    let slots = slots.clamp(1, MAX_SLOTS);
    let mut t = traps()[id * MAX_SLOTS..id * MAX_SLOTS + slots].to_vec();
    for (i, e) in t.iter_mut().enumerate() {
        if nulls & (1 << i) != 0 {
            *e = 0;
        }
    }
    if size_word {
        t[0] = slots * std::mem::size_of::<usize>();
    }
    t
}

/// Known table `id`, built on first use.
fn known_table(id: usize) -> &'static [usize] {
    TABLES[id].get_or_init(|| {
        let k = &KNOWN[id];
        let mut t = trap_table(id, k.slots, k.size_word, k.nulls);
        fill(id, &mut t);
        t.into_boxed_slice()
    })
}

/// `(cudart-interface table, integrity table, integrity slot 1)` addresses.
pub(crate) fn integrity_inputs() -> (u64, u64, u64) {
    let integrity = known_table(INTEGRITY);
    (
        known_table(CUDART).as_ptr() as u64,
        integrity.as_ptr() as u64,
        integrity[1] as u64,
    )
}

/// A table this client does not know: the worker says whether its driver
/// has it and how large it is; we answer with traps of that size.
fn unknown_table(guid: &[u8; 16]) -> Result<&'static [usize], u32> {
    let mut d = DYNAMIC.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, r)) = d.iter().find(|(g, _)| g == guid) {
        let id = (*r)?;
        return TABLES[id].get().map(|t| &t[..]).ok_or(cu::UNKNOWN);
    }
    let r = (|| {
        let (size, lo, hi) = session()?
            .call::<(u64, u64, u64)>(&Request::Ctx(CtxRequest::ExportTableSize { guid: *guid }))?;
        let nulls = u128::from(lo) | (u128::from(hi) << 64);
        let id = KNOWN_COUNT + d.iter().filter(|(_, r)| r.is_ok()).count();
        if id >= POOL {
            tracing::warn!(
                guid = %guid_text(guid),
                "too many unknown export tables; answering CUDA_ERROR_NOT_SUPPORTED"
            );
            return Err(cu::NOT_SUPPORTED);
        }
        let (slots, size_word) = match size as usize / std::mem::size_of::<usize>() {
            0 => (UNSIZED_SLOTS, false),
            n => (n, true),
        };
        if slots > MAX_SLOTS {
            tracing::warn!(guid = %guid_text(guid), slots, "export table larger than {MAX_SLOTS} slots; answering its first {MAX_SLOTS}");
        }
        let mut t = trap_table(id, slots, size_word, nulls);
        if *guid == TOOLS_MODULE && t.len() > 7 {
            // Sized from the worker's driver, one slot implemented here.
            t[7] = s::module_functions as *const () as usize;
        }
        if *guid == COMPILE_CACHE && t.len() > 6 {
            use super::compile_cache as cc;
            t[1] = cc::create as *const () as usize;
            t[2] = cc::destroy as *const () as usize;
            t[3] = cc::lookup as *const () as usize;
            t[4] = cc::store as *const () as usize;
            t[6] = cc::release as *const () as usize;
        }
        let _ = TABLES[id].set(t.into_boxed_slice());
        Ok(id)
    })();
    d.push((*guid, r));
    drop(d);
    match r {
        Ok(id) => {
            tracing::info!(
                guid = %guid_text(guid),
                "export table unknown to this client; answering one whose every slot fails cleanly"
            );
            TABLES[id].get().map(|t| &t[..]).ok_or(cu::UNKNOWN)
        }
        Err(e) => {
            tracing::debug!(guid = %guid_text(guid), status = e, "export table refused");
            Err(e)
        }
    }
}

/// The table for `guid`, known or not.
fn table_for(guid: &[u8; 16]) -> Result<&'static [usize], u32> {
    match KNOWN.iter().position(|k| k.guid == *guid) {
        Some(id) => Ok(known_table(id)),
        None => unknown_table(guid),
    }
}

/// `CUresult cuGetExportTable(const void **ppExportTable, const CUuuid *pExportTableId)`.
unsafe extern "C" fn cu_get_export_table(pp: *mut *const c_void, id: *const [u8; 16]) -> u32 {
    guard(|| {
        if pp.is_null() || id.is_null() {
            return Err(cu::INVALID_VALUE);
        }
        // SAFETY: the caller passes a CUuuid, 16 bytes of any alignment.
        let guid = unsafe { id.read_unaligned() };
        // Never leave the out-pointer unwritten: callers jump through it.
        crate::cuda::out(pp, std::ptr::null())?;
        let t = table_for(&guid);
        if super::may_log() {
            crate::client::ensure_logging();
            tracing::debug!(guid = %guid_text(&guid), answer = ?t.map(|t| (t.as_ptr(), t.len())), "cuGetExportTable");
        }
        crate::cuda::out(pp, t?.as_ptr().cast())
    })
}

/// At exit: how often each slot was called, when the client logs at debug
/// level. Written straight to the log's destination: at exit the thread's
/// storage that the tracing subscriber needs is already gone.
extern "C" fn report() {
    let _ = std::panic::catch_unwind(|| {
        let Ok(settings) = tf_settings::logging::LogSettings::from_env() else {
            return;
        };
        if !settings.enabled || !matches!(settings.level.as_str(), "debug" | "trace") {
            return;
        }
        let mut text = String::new();
        for (i, c) in CALLS.iter().enumerate() {
            let n = c.load(Ordering::Relaxed);
            if n > 0 {
                text.push_str(&format!(
                    "libteleport[{}] export table slot calls: table={} slot={} calls={n}\n",
                    std::process::id(),
                    table_name(i / MAX_SLOTS),
                    i % MAX_SLOTS
                ));
            }
        }
        let _ = match &settings.path {
            Some(p) => std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(p)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes())),
            // SAFETY: writes a valid buffer to file descriptor 1.
            None => match unsafe { libc::write(1, text.as_ptr().cast(), text.len()) } {
                -1 => Err(std::io::Error::last_os_error()),
                _ => Ok(()),
            },
        };
    });
}

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(set: &mut dyn FnMut(usize, crate::Entry)) {
    use tf_api::cuda_fn as c;
    set(c::cuGetExportTable, cu_get_export_table as crate::Entry);
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: registers a plain extern "C" fn; atexit has no other contract.
        unsafe { libc::atexit(report) };
    });
}

/// Names of tables by id, for tests.
#[cfg(test)]
pub(crate) fn known_guid(id: usize) -> [u8; 16] {
    KNOWN[id].guid
}

/// Calls of a slot so far, for tests.
#[cfg(test)]
pub(crate) fn calls(table: usize, slot: usize) -> u64 {
    CALLS[table * MAX_SLOTS + slot].load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_parse_in_byte_order() {
        assert_eq!(known_guid(CUDART)[..4], [0x6b, 0xd5, 0xfb, 0x6c]);
        assert_eq!(known_guid(INTEGRITY)[15], 0xf2);
        let mut all: Vec<_> = KNOWN.iter().map(|k| k.guid).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), KNOWN_COUNT);
    }

    #[test]
    fn known_tables_have_size_words_and_stable_addresses() {
        for (id, k) in KNOWN.iter().enumerate() {
            let t = table_for(&known_guid(id)).unwrap();
            assert_eq!(t.len(), k.slots);
            if k.size_word {
                assert_eq!(t[0], t.len() * 8, "{}", k.name);
            }
            assert_eq!(t.as_ptr(), table_for(&known_guid(id)).unwrap().as_ptr());
        }
        let (c, i, f) = integrity_inputs();
        assert_eq!(c, known_table(CUDART).as_ptr() as u64);
        assert_eq!(i, known_table(INTEGRITY).as_ptr() as u64);
        assert_eq!(f, integrity::check as *const () as u64);
        assert_eq!(known_table(CLS)[3], 0);
        // Null where driver 580's tables are null.
        assert_eq!(known_table(CUDART)[10], 0);
        assert_eq!(known_table(TOOLS_CONTEXT)[91], 0);
        assert_eq!(
            trap_table(CUDART, 4, true, 0b1010),
            vec![32, 0, traps()[2], 0]
        );
    }

    #[test]
    fn traps_are_distinct_count_and_fail_cleanly() {
        let all = traps();
        let mut sorted = all.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), POOL * MAX_SLOTS);
        // Slot 9 of the cudart interface is not implemented: a trap.
        let t = known_table(CUDART);
        assert_eq!(t[9], all[CUDART * MAX_SLOTS + 9]);
        let before = calls(CUDART, 9);
        // SAFETY: traps take no arguments and return a CUresult.
        let f: unsafe extern "C" fn() -> u32 = unsafe { std::mem::transmute(t[9]) };
        // SAFETY: as above.
        assert_eq!(unsafe { f() }, cu::NOT_SUPPORTED);
        // SAFETY: as above.
        assert_eq!(unsafe { f() }, cu::NOT_SUPPORTED);
        assert_eq!(calls(CUDART, 9), before + 2);
    }

    #[test]
    fn implemented_slots_are_not_traps() {
        let all = traps();
        for (id, slots) in [
            (CUDART, &[1, 2, 6, 7, 8, 12][..]),
            (TOOLS_TLS, &[2]),
            (CALLBACK_HOOKS, &[2, 6]),
            (CLS, &[0, 1, 2]),
            (CONTEXT_CHECKS, &[2, 3]),
            (INTEGRITY, &[1]),
            (REQUIREMENTS, &[1]),
            (TOOLS_CONTEXT, &[4]),
            (CTX_CREATE_BYPASS, &[1]),
        ] {
            let t = known_table(id);
            for &s in slots {
                assert_ne!(t[s], all[id * MAX_SLOTS + s], "{} [{s}]", KNOWN[id].name);
                assert_ne!(t[s], 0);
            }
        }
    }

    #[test]
    fn export_table_rejects_null_arguments() {
        let g = known_guid(CUDART);
        let mut p: *const c_void = std::ptr::null();
        // SAFETY: null arguments are checked before any use.
        unsafe {
            assert_eq!(
                cu_get_export_table(std::ptr::null_mut(), &g),
                cu::INVALID_VALUE
            );
            assert_eq!(
                cu_get_export_table(&mut p, std::ptr::null()),
                cu::INVALID_VALUE
            );
            assert_eq!(cu_get_export_table(&mut p, &g), cu::SUCCESS);
        }
        assert_eq!(p, known_table(CUDART).as_ptr().cast());
    }
}
