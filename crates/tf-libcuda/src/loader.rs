//! Shared by `libcuda.so.1` and `libnvidia-ml.so.1` (tf-libnvml includes this
//! file with `#[path]`): the trampoline macro and the loader that fills the
//! slot table from `libteleport.so`.
//!
//! The export libraries hold no logic: every exported symbol is a naked
//! `jmp *SLOTS[i]`, and the slots point either at a fallback (before/without
//! the client core) or at the implementation inside `libteleport.so`, which
//! hands out its table through `teleport_{cuda,nvml}_table(api_hash, count)`.

use std::ffi::{c_void, CStr, CString};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// A jump target. The trampolines never call it through this type: it only
/// names "code address" with the shape the fallbacks happen to have.
pub(crate) type Slot = unsafe extern "C" fn() -> u32;

/// `const void *teleport_cuda_table(uint64_t api_hash, size_t count)`.
type TableFn = unsafe extern "C" fn(api_hash: u64, count: usize) -> *const *const c_void;

/// Emits the body of an exported naked function: a tail jump through
/// `crate::SLOTS[$index]`. Arguments, callee-saved registers and the return
/// address are untouched, so the target sees exactly the caller's call.
#[cfg(target_arch = "x86_64")]
macro_rules! trampoline {
    ($index:expr) => {
        core::arch::naked_asm!(
            "jmp qword ptr [rip + {slots} + {offset}]",
            slots = sym crate::SLOTS,
            offset = const 8 * $index,
        )
    };
}

/// AArch64: x16 (IP0) is the intra-procedure-call scratch register that
/// linker veneers and PLT stubs clobber, so using it preserves every argument.
#[cfg(target_arch = "aarch64")]
macro_rules! trampoline {
    ($index:expr) => {
        core::arch::naked_asm!(
            "adrp x16, {slots} + {offset}",
            "ldr x16, [x16, :lo12:{slots} + {offset}]",
            "br x16",
            slots = sym crate::SLOTS,
            offset = const 8 * $index,
        )
    };
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("the client libraries' trampolines exist for x86_64 and aarch64 only");

pub(crate) use trampoline;

/// Everything an export library holds besides its generated exports: the
/// `TENSOR_FUSION_CLIENT` marker, the slot table with its fallbacks (an error
/// code, or a string for entry points that return one), and the constructor
/// that fills the table from `libteleport.so`. Expanded at each library's
/// crate root, where the trampolines expect `crate::SLOTS`.
macro_rules! export_layer {
    (
        library: $library:literal,
        table_symbol: $table:literal,
        api_hash: $hash:expr,
        count: $count:expr,
        fallback_status: $status:expr,
        fallback_message: $message:literal $(,)?
    ) => {
        /// Marker: "this library is the TensorFusion client, not a driver".
        #[unsafe(no_mangle)]
        pub static TENSOR_FUSION_CLIENT: u32 = 1;

        const CLIENT: loader::Client = loader::Client {
            library: $library,
            table_symbol: $table,
            api_hash: $hash,
            count: $count,
        };

        /// Jump targets of the exports, indexed like the tf-api name list.
        /// Written only by the constructor, before `dlopen` of this library
        /// returns; after that only read (by the trampolines).
        static mut SLOTS: [loader::Slot; $count] = initial_slots();

        const fn initial_slots() -> [loader::Slot; $count] {
            let mut slots = [fallback as loader::Slot; $count];
            let mut i = 0;
            while i < generated::exports::RETURNS_POINTER.len() {
                slots[generated::exports::RETURNS_POINTER[i]] = FALLBACK_POINTER;
                i += 1;
            }
            slots
        }

        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

        fn warn_once() {
            if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
                loader::say(format_args!($message));
            }
        }

        /// Target of every slot until libteleport provides one.
        extern "C" fn fallback() -> u32 {
            warn_once();
            $status
        }

        /// Fallback of entry points returning a string, which must not get an
        /// integer.
        extern "C" fn fallback_pointer() -> *const std::ffi::c_char {
            warn_once();
            c"libteleport.so is not loaded".as_ptr()
        }

        // SAFETY: a Slot is only jumped to, never called with its Rust type;
        // the caller of that entry point expects a pointer, which
        // fallback_pointer returns.
        const FALLBACK_POINTER: loader::Slot = unsafe {
            std::mem::transmute::<extern "C" fn() -> *const std::ffi::c_char, loader::Slot>(
                fallback_pointer,
            )
        };

        /// Runs when the library is loaded (before `dlopen` returns or `main`
        /// starts).
        extern "C" fn init() {
            // SAFETY: the loader runs constructors once, and no export of this
            // library can be called before they finish, so nothing else
            // touches SLOTS; the pointer covers all of its slots.
            unsafe {
                loader::load(
                    &CLIENT,
                    (&raw mut SLOTS).cast::<loader::Slot>(),
                    init as *const std::ffi::c_void,
                )
            }
        }

        #[used]
        #[unsafe(link_section = ".init_array")]
        static INIT: extern "C" fn() = init;
    };
}

pub(crate) use export_layer;

/// What one export library needs to find its half of the client core.
pub(crate) struct Client {
    /// Our SONAME, for messages.
    pub library: &'static str,
    /// `teleport_cuda_table` / `teleport_nvml_table`.
    pub table_symbol: &'static CStr,
    pub api_hash: u64,
    pub count: usize,
}

/// Writes one line to stderr. Never panics (unlike `eprintln!`): this runs
/// inside the dynamic loader and in fallbacks called from C.
pub(crate) fn say(args: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "tensor-fusion client: {args}");
}

fn dlerror_string() -> String {
    // SAFETY: dlerror returns null or a NUL-terminated string owned by libc
    // that stays valid until the next dl* call on this thread; copied at once.
    unsafe {
        let e = libc::dlerror();
        if e.is_null() {
            "unknown error".to_string()
        } else {
            CStr::from_ptr(e).to_string_lossy().into_owned()
        }
    }
}

fn dlopen(name: &CStr) -> Result<*mut c_void, String> {
    // SAFETY: `name` is NUL-terminated; dlopen has no other preconditions.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
    if handle.is_null() {
        Err(dlerror_string())
    } else {
        Ok(handle)
    }
}

/// The directory of the object containing `anchor` (this library).
fn own_directory(anchor: *const c_void) -> Option<std::path::PathBuf> {
    // SAFETY: Dl_info is plain data; an all-zero value is valid.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: `anchor` is an address inside this library and `info` is a valid
    // out-pointer.
    if unsafe { libc::dladdr(anchor, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dladdr succeeded, so dli_fname is a NUL-terminated path owned by
    // the loader that lives as long as the object is loaded.
    let file = unsafe { CStr::from_ptr(info.dli_fname) };
    let file = Path::new(std::ffi::OsStr::from_bytes(file.to_bytes()));
    file.parent().map(Path::to_path_buf)
}

/// Loads `libteleport.so`: the already loaded/preloaded one or one on the
/// library search path first, then the one beside this library.
fn open_teleport(client: &Client, anchor: *const c_void) -> Result<*mut c_void, String> {
    let first = match dlopen(c"libteleport.so") {
        Ok(h) => return Ok(h),
        Err(e) => e,
    };
    let beside = own_directory(anchor).map(|d| d.join("libteleport.so"));
    let Some(beside) = beside.filter(|p| p.exists()) else {
        return Err(format!(
            "cannot load libteleport.so ({first}): put it beside {} or on LD_LIBRARY_PATH",
            client.library
        ));
    };
    let path =
        CString::new(beside.as_os_str().as_bytes()).map_err(|_| "path contains NUL".to_string())?;
    // The file exists, so its own error (missing dependency, wrong
    // architecture) is the one worth showing.
    dlopen(&path).map_err(|e| {
        format!(
            "cannot load {} ({e}): reinstall the client libraries",
            beside.display()
        )
    })
}

/// Fills `slots[..client.count]` from libteleport's table. On failure prints
/// one line naming the fix and leaves the fallbacks in place.
///
/// # Safety
/// `slots` must point to `client.count` writable slots that nothing else
/// reads or writes during the call (the library constructor guarantees it:
/// no export can be reached before `dlopen` of this library returns).
pub(crate) unsafe fn load(client: &Client, slots: *mut Slot, anchor: *const c_void) {
    // SAFETY: forwarded from our caller.
    if let Err(msg) = unsafe { try_load(client, slots, anchor) } {
        say(format_args!("{msg}"));
    }
}

/// # Safety
/// As [`load`].
unsafe fn try_load(client: &Client, slots: *mut Slot, anchor: *const c_void) -> Result<(), String> {
    let handle = open_teleport(client, anchor)?;
    let symbol = client.table_symbol.to_string_lossy();
    // SAFETY: `handle` is a live dlopen handle and the name is NUL-terminated.
    // A library that fails to resolve is left loaded: it may already have run
    // constructors, and unloading it would gain nothing.
    let sym = unsafe { libc::dlsym(handle, client.table_symbol.as_ptr()) };
    if sym.is_null() {
        return Err(format!(
            "libteleport.so has no {symbol} ({}): install libteleport.so from the same build as {}",
            dlerror_string(),
            client.library
        ));
    }
    // SAFETY: teleport defines this symbol with exactly the TableFn signature.
    let table_fn: TableFn = unsafe { std::mem::transmute::<*mut c_void, TableFn>(sym) };
    // SAFETY: calling the function with the documented arguments.
    let table = unsafe { table_fn(client.api_hash, client.count) };
    if table.is_null() {
        return Err(format!(
            "libteleport.so rejected {}'s API table (hash {:#018x}, {} entries): install both from the same build",
            client.library, client.api_hash, client.count
        ));
    }
    for i in 0..client.count {
        // SAFETY: teleport returns `count` entries when it accepts the hash.
        let entry = unsafe { *table.add(i) };
        if entry.is_null() {
            continue; // keep our fallback rather than jump to address 0
        }
        // SAFETY: `entry` is a non-null code address, which is all a Slot is
        // (slots are only ever jumped to); `i < count` slots are writable.
        unsafe {
            slots
                .add(i)
                .write(std::mem::transmute::<*const c_void, Slot>(entry))
        };
    }
    Ok(())
}
