//! Finding and loading the vendor's driver libraries.
//!
//! The worker often runs next to our own client libraries, which are also
//! called `libcuda.so.1` / `libnvidia-ml.so.1` (that is how they intercept
//! applications). A `dlopen` of a bare name searches `LD_LIBRARY_PATH` and
//! could return one of them, and the worker would then forward calls to
//! itself. So the driver is only ever loaded by absolute path, and a
//! candidate that turns out to be one of our client libraries (they export
//! [`CLIENT_MARKER`]) is skipped.

use std::ffi::c_void;
use std::path::{Path, PathBuf};

use libloading::Library;

/// Directories searched, in order, when [`SEARCH_PATH_ENV`] is not set:
/// where the NVIDIA container toolkit mounts the driver, then the usual
/// distribution library directories (Debian/Ubuntu, RHEL, WSL, arm64).
pub const DEFAULT_DIRS: &[&str] = &[
    "/usr/local/nvidia/lib64",
    "/usr/local/nvidia/lib",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib64",
    "/usr/lib/wsl/lib",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib",
];

/// Colon-separated directories that replace [`DEFAULT_DIRS`] for both the
/// CUDA driver and NVML (set but empty: search no directory at all).
pub const SEARCH_PATH_ENV: &str = "TF_DRIVER_SEARCH_PATH";
/// Absolute path of the CUDA driver, tried before the directories.
pub const CUDA_ENV: &str = "TF_REAL_LIBCUDA";
/// Absolute path of NVML, tried before the directories.
pub const NVML_ENV: &str = "TF_REAL_LIBNVML";
pub const CUDA_FILE: &str = "libcuda.so.1";
pub const NVML_FILE: &str = "libnvidia-ml.so.1";
/// Symbol exported by every TensorFusion client library.
pub const CLIENT_MARKER: &str = "TENSOR_FUSION_CLIENT";

/// Where to look for one library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    /// File name looked for in each directory, e.g. `libcuda.so.1`.
    pub file: &'static str,
    /// Variable that names an explicit path (quoted in messages).
    pub env_var: &'static str,
    /// That variable's value, if set and not empty.
    pub explicit: Option<String>,
    /// Directories searched after the explicit path.
    pub dirs: Vec<PathBuf>,
    /// Problems with the configuration itself (e.g. a relative directory),
    /// reported with the error if nothing loads.
    pub config_notes: Vec<String>,
}

impl Search {
    /// The CUDA driver search as configured by `get` (the environment).
    pub fn cuda(get: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::configured(CUDA_FILE, CUDA_ENV, get)
    }

    /// The NVML search as configured by `get` (the environment).
    pub fn nvml(get: &dyn Fn(&str) -> Option<String>) -> Self {
        Self::configured(NVML_FILE, NVML_ENV, get)
    }

    fn configured(
        file: &'static str,
        env_var: &'static str,
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Self {
        let mut config_notes = Vec::new();
        let dirs = match get(SEARCH_PATH_ENV) {
            None => DEFAULT_DIRS.iter().map(PathBuf::from).collect(),
            Some(list) => list
                .split(':')
                .filter(|d| !d.is_empty())
                .filter_map(|d| {
                    if Path::new(d).is_absolute() {
                        Some(PathBuf::from(d))
                    } else {
                        // A relative directory would make the driver depend
                        // on the worker's current directory.
                        config_notes.push(format!(
                            "{SEARCH_PATH_ENV} entry {d:?} is not an absolute path; ignored"
                        ));
                        None
                    }
                })
                .collect(),
        };
        let explicit = get(env_var).filter(|v| !v.trim().is_empty());
        Search {
            file,
            env_var,
            explicit,
            dirs,
            config_notes,
        }
    }

    /// A search of exactly these directories, nothing else (for tests and
    /// embedders).
    pub fn in_dirs(file: &'static str, env_var: &'static str, dirs: &[&Path]) -> Self {
        let dirs = dirs.iter().map(|d| d.to_path_buf()).collect();
        Search {
            file,
            env_var,
            explicit: None,
            dirs,
            config_notes: Vec::new(),
        }
    }
}

/// A loaded vendor library. It is never unloaded (see [`load`]), hence `'static`.
pub struct Loaded {
    pub lib: &'static Library,
    pub path: PathBuf,
}

/// Loads the first candidate that is a real vendor library.
///
/// The error text names what was searched, says how to fix it, and gives
/// the reason each existing candidate was rejected.
pub fn load(search: &Search) -> Result<Loaded, String> {
    let mut notes = search.config_notes.clone();
    let mut candidates = Vec::new();
    if let Some(explicit) = &search.explicit {
        let p = PathBuf::from(explicit);
        if p.is_absolute() {
            if !p.exists() {
                notes.push(format!("{}={explicit}: no such file", search.env_var));
            }
            candidates.push(p);
        } else {
            // A relative value would be searched for by the dynamic loader,
            // which is exactly what must not happen.
            notes.push(format!(
                "{}={explicit:?} is not an absolute path; ignored",
                search.env_var
            ));
        }
    }
    candidates.extend(search.dirs.iter().map(|d| d.join(search.file)));

    for path in candidates {
        if !path.exists() {
            if path.symlink_metadata().is_ok() {
                notes.push(format!("{} is a broken symbolic link", path.display()));
            }
            continue;
        }
        match open_one(&path) {
            Ok(Some(lib)) => return Ok(Loaded { lib, path }),
            Ok(None) => {
                tracing::debug!(path = %path.display(), "skipping a TensorFusion client library while looking for the NVIDIA driver");
                notes.push(format!(
                    "{} skipped: it is a TensorFusion client library, not the NVIDIA driver",
                    path.display()
                ));
            }
            Err(e) => {
                tracing::debug!(path = %path.display(), "cannot load: {e}");
                notes.push(format!("{}: {e}", path.display()));
            }
        }
    }
    Err(not_found_message(search, &notes))
}

/// Opens one candidate: `Ok(None)` if it is one of our client libraries.
fn open_one(path: &Path) -> Result<Option<&'static Library>, String> {
    // SAFETY: loading runs the library's initializers. The candidates are
    // files named like the vendor driver in system library directories, or
    // a path the operator chose explicitly; that code is trusted as much as
    // the driver the worker exists to run.
    let lib = unsafe { Library::new(path) }.map_err(|e| e.to_string())?;
    // SAFETY: only the symbol's presence is checked; its address is never
    // dereferenced or called.
    let is_client = unsafe { lib.get::<*const c_void>(CLIENT_MARKER.as_bytes()) }.is_ok();
    // Never unloaded, not even a skipped client library: a driver keeps
    // threads and exit handlers pointing into its code, and a client
    // library's initializers may have done the same, so `dlclose` could
    // leave them dangling. A mapping left behind is the cheaper risk.
    let lib: &'static Library = Box::leak(Box::new(lib));
    Ok((!is_client).then_some(lib))
}

/// The documented "no NVIDIA driver found" text, with the reason each
/// existing candidate was rejected appended in parentheses.
pub fn not_found_message(search: &Search, notes: &[String]) -> String {
    let dirs = if search.dirs.is_empty() {
        format!("no directories ({SEARCH_PATH_ENV} lists none)")
    } else {
        search
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut msg = format!(
        "no NVIDIA driver found: looked for {file} in {dirs}; install the NVIDIA driver on this host or set {var}=/path/to/{file}",
        file = search.file,
        var = search.env_var,
    );
    if !notes.is_empty() {
        msg.push_str(&format!(" ({})", notes.join("; ")));
    }
    msg
}

/// Resolves the first of `names` that the library exports.
///
/// # Safety
/// `T` must be the `unsafe extern "C" fn` pointer type matching the C
/// signature of every name given.
pub(crate) unsafe fn resolve<T: Copy>(lib: &'static Library, names: &[&str]) -> Option<T> {
    names.iter().find_map(|name| {
        // SAFETY: the caller guarantees that `T` is the symbol's type; the
        // library is never unloaded, so the copied pointer stays valid.
        unsafe { lib.get::<T>(name.as_bytes()) }
            .ok()
            .map(|sym| *sym)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn default_search_is_the_documented_list() {
        let s = Search::cuda(&env(&[]));
        assert_eq!(s.file, "libcuda.so.1");
        assert_eq!(s.explicit, None);
        assert_eq!(
            s.dirs,
            DEFAULT_DIRS.iter().map(PathBuf::from).collect::<Vec<_>>()
        );
        let n = Search::nvml(&env(&[("TF_REAL_LIBNVML", "/x/libnvidia-ml.so.1")]));
        assert_eq!(n.file, "libnvidia-ml.so.1");
        assert_eq!(n.explicit.as_deref(), Some("/x/libnvidia-ml.so.1"));
    }

    #[test]
    fn search_path_override() {
        let s = Search::cuda(&env(&[
            ("TF_DRIVER_SEARCH_PATH", "/a::rel/dir:/b"),
            ("TF_REAL_LIBCUDA", " "),
        ]));
        assert_eq!(s.dirs, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(s.explicit, None, "a blank TF_REAL_LIBCUDA counts as unset");
        assert!(s.config_notes[0].contains("\"rel/dir\" is not an absolute path"));
        assert!(Search::cuda(&env(&[("TF_DRIVER_SEARCH_PATH", "")]))
            .dirs
            .is_empty());
    }

    #[test]
    fn message_format() {
        let s = Search::in_dirs(CUDA_FILE, CUDA_ENV, &[Path::new("/a"), Path::new("/b")]);
        assert_eq!(
            not_found_message(&s, &[]),
            "no NVIDIA driver found: looked for libcuda.so.1 in /a, /b; install the NVIDIA driver on this host \
             or set TF_REAL_LIBCUDA=/path/to/libcuda.so.1"
        );
        let e = load(&Search::in_dirs(CUDA_FILE, CUDA_ENV, &[]))
            .err()
            .unwrap();
        assert!(
            e.contains("in no directories (TF_DRIVER_SEARCH_PATH lists none);"),
            "{e}"
        );
    }

    #[test]
    fn relative_explicit_path_is_never_dlopened() {
        let mut s = Search::in_dirs(CUDA_FILE, CUDA_ENV, &[]);
        s.explicit = Some("libcuda.so.1".into());
        let e = load(&s).err().unwrap();
        assert!(
            e.contains("TF_REAL_LIBCUDA=\"libcuda.so.1\" is not an absolute path; ignored"),
            "{e}"
        );
    }
}
