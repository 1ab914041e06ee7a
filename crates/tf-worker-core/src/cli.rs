//! The worker's command line, exactly as the deployment guide documents it,
//! and the main loop shared by the shipped worker and the test worker.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::Backend;
use crate::worker::{serve_connection, Worker};

pub const USAGE: &str = "\
Usage: tensor-fusion-worker [option]
Options
  -h, --help            Display this information.
  -v, --version         Display version information.
  -n, --net             Specified network protocol.
  -p, --port            Specified the port for server.
  -l, --load            Specified the file path of snapshot.
  -m, --shmem-file      Specified the file path of shared memory.
  -M, --shmem-size      Specified the size(MB) of shared memory.

  -n native|shmem (default native); -p PORT (default 12345);
  -m /NAME creates /dev/shm/NAME (any other absolute path is used as is);
  -M MB (default 256).
Environment: TF_ENABLE_LOG, TF_LOG_LEVEL (trace|debug|info|warn|error, default info),
  TF_LOG_PATH (default stdout), TF_CUDA_MEMORY_LIMIT / TF_GPU_MEMORY_LIMIT (MB, default unlimited).
";

pub const DEFAULT_PORT: u16 = 12345;
pub const DEFAULT_SHMEM_MB: u64 = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Net {
    Native { port: u16 },
    Shmem { file: String, size_mb: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Version,
    Serve { net: Net, load: Option<PathBuf> },
}

/// A usage error: printed with the usage text, exit status 2.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Parses `-x VALUE`, `-xVALUE`, `--long VALUE` and `--long=VALUE`.
pub fn parse_args<I: IntoIterator<Item = String>>(args: I) -> Result<Command, UsageError> {
    let mut it = args.into_iter();
    let (mut net, mut port, mut load, mut file, mut size) =
        (None::<String>, None, None, None, None);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k.to_string(), Some(v.to_string())),
            _ if arg.len() > 2 && arg.starts_with('-') && !arg.starts_with("--") => {
                (arg[..2].to_string(), Some(arg[2..].to_string()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, UsageError> {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| UsageError(format!("option {name} needs a value")))
        };
        match key.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "-v" | "--version" => return Ok(Command::Version),
            "-n" | "--net" => net = Some(value(&key)?),
            "-p" | "--port" => {
                let v = value(&key)?;
                port = Some(v.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    UsageError(format!("invalid port {v:?} for {key}: expected 1-65535"))
                })?);
            }
            "-l" | "--load" => load = Some(PathBuf::from(value(&key)?)),
            "-m" | "--shmem-file" => file = Some(value(&key)?),
            "-M" | "--shmem-size" => {
                let v = value(&key)?;
                size = Some(v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    UsageError(format!("invalid shared memory size {v:?} for {key}: expected a size in MB, e.g. 256"))
                })?);
            }
            other => return Err(UsageError(format!("unknown option {other:?}"))),
        }
    }
    let net = match net.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("native") => {
            if file.is_some() || size.is_some() {
                return Err(UsageError("-m/-M apply to -n shmem only".into()));
            }
            Net::Native {
                port: port.unwrap_or(DEFAULT_PORT),
            }
        }
        Some("shmem") => {
            if port.is_some() {
                return Err(UsageError("-p applies to -n native only".into()));
            }
            let file = file.ok_or_else(|| {
                UsageError("-n shmem needs -m/--shmem-file, e.g. -m /my_shm".into())
            })?;
            if !file.starts_with('/') {
                return Err(UsageError(format!(
                    "shared memory file {file:?} must start with '/', e.g. /my_shm"
                )));
            }
            Net::Shmem {
                file,
                size_mb: size.unwrap_or(DEFAULT_SHMEM_MB),
            }
        }
        Some(other) => {
            return Err(UsageError(format!(
                "unknown protocol {other:?} for -n: expected native or shmem"
            )))
        }
    };
    Ok(Command::Serve { net, load })
}

/// `TF_CUDA_MEMORY_LIMIT` (or the newer `TF_GPU_MEMORY_LIMIT`), in MB, as bytes.
pub fn memory_limit(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<u64>, String> {
    for var in ["TF_CUDA_MEMORY_LIMIT", "TF_GPU_MEMORY_LIMIT"] {
        if let Some(v) = get(var) {
            let v = v.trim();
            if v.is_empty() {
                continue;
            }
            let mb: u64 = v.parse().map_err(|_| {
                format!(
                    "{var}={v:?} is not a number of MB (e.g. {var}=8192); unset it for no limit"
                )
            })?;
            if mb == 0 {
                return Ok(None);
            }
            return mb
                .checked_mul(1 << 20)
                .map(Some)
                .ok_or_else(|| format!("{var}={v} is too large"));
        }
    }
    Ok(None)
}

/// Runs a worker binary: parses arguments, sets up logging and limits,
/// creates the backend and serves until killed. Returns the exit status.
pub fn main_with(make_backend: impl FnOnce() -> Result<Box<dyn Backend>, String>) -> i32 {
    let cmd = match parse_args(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tensor-fusion-worker: {e}\n\n{USAGE}");
            return 2;
        }
    };
    let (net, load) = match cmd {
        Command::Help => {
            print!("{USAGE}");
            return 0;
        }
        Command::Version => {
            println!(
                "tensor-fusion-worker {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                tf_protocol::PROTOCOL_VERSION
            );
            return 0;
        }
        Command::Serve { net, load } => (net, load),
    };
    if let Err(e) = tf_settings::logging::init("tensor-fusion-worker") {
        eprintln!("tensor-fusion-worker: {e}");
        return 2;
    }
    let limit = match memory_limit(&|k| std::env::var(k).ok()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("tensor-fusion-worker: {e}");
            return 2;
        }
    };
    if let Some(path) = load {
        eprintln!(
            "tensor-fusion-worker: cannot load snapshot {}: snapshot restore is not supported by this release",
            path.display()
        );
        return 1;
    }
    let backend = match make_backend() {
        Ok(b) => b,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tensor-fusion-worker: {e}");
            return 1;
        }
    };
    tracing::info!(backend = %backend.describe(), limit_mb = limit.map(|l| l >> 20), "starting");
    let worker = Worker::new(backend, limit);
    worker.set_exit_on_fault(true);
    match serve(worker, &net) {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("tensor-fusion-worker: {e}");
            1
        }
    }
}

/// Accepts clients forever, one thread each.
pub fn serve(worker: Arc<Worker>, net: &Net) -> Result<(), String> {
    match net {
        Net::Native { port } => {
            let listener = tf_transport::NativeListener::bind(format!("0.0.0.0:{port}"))
                .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
            tracing::info!("listening: native 0.0.0.0:{port}");
            loop {
                match listener.accept() {
                    Ok(conn) => spawn_session(&worker, conn),
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
        Net::Shmem { file, size_mb } => {
            let server = tf_transport::ShmServer::create(std::path::Path::new(file), *size_mb)
                .map_err(|e| format!("cannot create shared memory {file} ({size_mb} MB): {e}"))?;
            tracing::info!("listening: shmem {file} ({size_mb} MB)");
            loop {
                match server.accept(Duration::from_millis(100)) {
                    Ok(Some(conn)) => spawn_session(&worker, conn),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!("shared memory accept failed: {e}");
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        }
    }
}

fn spawn_session(worker: &Arc<Worker>, conn: tf_transport::Connection) {
    let w = Arc::clone(worker);
    let r = std::thread::Builder::new()
        .name("tf-session".into())
        .spawn(move || serve_connection(w, conn));
    if let Err(e) = r {
        tracing::error!("cannot start a session thread: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Command, UsageError> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn guide_command_lines_parse() {
        assert_eq!(
            p(&["-n", "native", "-p", "12345"]).unwrap(),
            Command::Serve {
                net: Net::Native { port: 12345 },
                load: None
            }
        );
        assert_eq!(
            p(&["-n", "shmem", "-m", "/my_shm", "-M", "256"]).unwrap(),
            Command::Serve {
                net: Net::Shmem {
                    file: "/my_shm".into(),
                    size_mb: 256
                },
                load: None
            }
        );
        assert_eq!(
            p(&["--net=shmem", "--shmem-file", "/x", "-M128"]).unwrap(),
            Command::Serve {
                net: Net::Shmem {
                    file: "/x".into(),
                    size_mb: 128
                },
                load: None
            }
        );
        assert_eq!(p(&["-h"]).unwrap(), Command::Help);
        assert_eq!(p(&["--version"]).unwrap(), Command::Version);
        assert!(matches!(
            p(&["-l", "/snap"]).unwrap(),
            Command::Serve { load: Some(_), .. }
        ));
    }

    #[test]
    fn usage_errors_are_specific() {
        for (args, needle) in [
            (&["-n", "tcp"][..], "unknown protocol"),
            (&["-p", "0"][..], "invalid port"),
            (&["-p"][..], "needs a value"),
            (&["-n", "shmem"][..], "needs -m"),
            (&["-n", "shmem", "-m", "x"][..], "must start with '/'"),
            (
                &["-n", "shmem", "-m", "/x", "-M", "abc"][..],
                "invalid shared memory size",
            ),
            (&["--bogus"][..], "unknown option"),
            (&["-m", "/x"][..], "shmem only"),
        ] {
            let e = p(args).unwrap_err().0;
            assert!(e.contains(needle), "{args:?}: {e}");
        }
    }

    #[test]
    fn memory_limit_reads_both_names() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(memory_limit(&env(&[])).unwrap(), None);
        assert_eq!(
            memory_limit(&env(&[("TF_CUDA_MEMORY_LIMIT", "1024")])).unwrap(),
            Some(1 << 30)
        );
        assert_eq!(
            memory_limit(&env(&[("TF_GPU_MEMORY_LIMIT", "2")])).unwrap(),
            Some(2 << 20)
        );
        assert_eq!(
            memory_limit(&env(&[("TF_CUDA_MEMORY_LIMIT", "0")])).unwrap(),
            None
        );
        assert!(memory_limit(&env(&[("TF_CUDA_MEMORY_LIMIT", "1G")]))
            .unwrap_err()
            .contains("not a number"));
    }
}
