//! The worker's command line, exactly as the deployment guide documents it,
//! and the main loop shared by the shipped worker and the test worker.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process};
use std::sync::Arc;
use std::time::Duration;

use tf_transport::{Connection, ShmConnection, ShmHandoff, TcpConnection};

use crate::backend::Backend;
use crate::worker::{serve_connection, Ledger, Worker, OUTPUT_BUFFER};

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
  TF_LOG_PATH (default stdout), TF_CUDA_MEMORY_LIMIT / TF_GPU_MEMORY_LIMIT (MB, default unlimited),
  TF_SESSION_ISOLATION (process|thread, default process: each client is served by its own
  process, so one client's kernel fault or crash never reaches another, and device printf
  output reaches the client's stdout; with thread it stays in the worker's stdout),
  TF_CALL_STATS=1 (log the time spent per request when each session ends).
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

/// How the worker keeps its clients apart (`TF_SESSION_ISOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// A process per session (the default). A kernel fault is sticky for
    /// every CUDA context of the process it happens in, so only separate
    /// processes keep one tenant's faulting kernel (or a crash in the
    /// driver) from ending the other tenants' sessions. Costs a GPU context
    /// per client (about 0.5 GiB, and ~0.1 s to create it, measured natively on
    /// an H200 by `scripts/gpu/15-isolation.sh`).
    Process,
    /// Every session a thread of one process sharing one GPU context:
    /// cheaper, but one client's kernel fault loses the context for all of
    /// them (the worker then refuses new clients and exits with status 3
    /// when the last one has gone, for its supervisor to restart it).
    Thread,
}

/// `TF_SESSION_ISOLATION`: `process` (default) or `thread`.
pub fn isolation(get: &dyn Fn(&str) -> Option<String>) -> Result<Isolation, String> {
    match get("TF_SESSION_ISOLATION")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("") | Some("process") => Ok(Isolation::Process),
        Some("thread") => Ok(Isolation::Thread),
        Some(other) => Err(format!(
            "TF_SESSION_ISOLATION={other:?} is not valid: use process (one process per client, the default) or thread"
        )),
    }
}

/// The hidden first argument of a session process (a worker re-executing
/// itself for one client); never typed by a user.
pub const SESSION_PROCESS_ARG: &str = "--session-process";

/// The connection a session process takes over from its parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// An inherited, connected TCP socket.
    Tcp { fd: i32 },
    /// A slot of the shared-memory region the parent accepted (the region
    /// itself comes from `-m`/`-M`, passed on unchanged).
    Shm(ShmHandoff),
}

/// What the parent tells a session process on its command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpec {
    pub conn: Handoff,
    /// The session id the parent assigned (logs of all processes agree).
    pub session: u64,
    /// The inherited descriptor of the memory ledger shared by all sessions.
    pub ledger: i32,
    /// This session's counter in the ledger (1 ≤ slot < `COUNTERS`).
    pub slot: usize,
}

impl SessionSpec {
    pub fn encode(&self) -> String {
        let conn = match self.conn {
            Handoff::Tcp { fd } => format!("tcp,fd={fd}"),
            Handoff::Shm(h) => format!(
                "shm,slot={},generation={},epoch={}",
                h.slot, h.generation, h.epoch
            ),
        };
        format!(
            "{conn},session={},ledger={},account={}",
            self.session, self.ledger, self.slot
        )
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || format!("malformed session process argument {s:?}");
        let mut parts = s.split(',');
        let kind = parts.next().ok_or_else(bad)?;
        let mut get = std::collections::HashMap::new();
        for kv in parts {
            let (k, v) = kv.split_once('=').ok_or_else(bad)?;
            let v: u64 = v.parse().map_err(|_| bad())?;
            get.insert(k, v);
        }
        let field = |k: &str| get.get(k).copied().ok_or_else(bad);
        let fd = |k: &str| field(k).and_then(|v| i32::try_from(v).map_err(|_| bad()));
        let conn = match kind {
            "tcp" => Handoff::Tcp { fd: fd("fd")? },
            "shm" => Handoff::Shm(ShmHandoff {
                slot: usize::try_from(field("slot")?).map_err(|_| bad())?,
                generation: field("generation")?,
                epoch: field("epoch")?,
            }),
            _ => return Err(bad()),
        };
        let slot = usize::try_from(field("account")?).map_err(|_| bad())?;
        if slot == 0 || slot >= tf_isolation::COUNTERS {
            return Err(bad());
        }
        Ok(Self {
            conn,
            session: field("session")?,
            ledger: fd("ledger")?,
            slot,
        })
    }
}

/// Runs a worker binary: parses arguments, sets up logging and limits,
/// creates the backend and serves until killed. Returns the exit status.
pub fn main_with(make_backend: impl FnOnce() -> Result<Box<dyn Backend>, String>) -> i32 {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(SESSION_PROCESS_ARG) {
        return session_process(&args[1..], make_backend);
    }
    let cmd = match parse_args(args.iter().cloned()) {
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
    let env = |k: &str| std::env::var(k).ok();
    let (limit, isolation) = match memory_limit(&env).and_then(|l| Ok((l, isolation(&env)?))) {
        Ok(v) => v,
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
    tracing::info!(backend = %backend.describe(), limit_mb = limit.map(|l| l >> 20), ?isolation, "starting");
    let served = match isolation {
        Isolation::Thread => {
            let worker = Worker::new(backend, limit);
            worker.set_exit_on_fault(true);
            serve(worker, &net)
        }
        Isolation::Process => {
            // The backend was only loaded to fail early and clearly; each
            // session process loads its own.
            drop(backend);
            Spawner::new(args).and_then(|mut s| accept_loop(&net, |c| s.spawn(c)))
        }
    };
    match served {
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
    accept_loop(net, |conn| spawn_session(&worker, conn))
}

/// Accepts clients forever and hands each connection to `serve_one`.
fn accept_loop(net: &Net, mut serve_one: impl FnMut(Connection)) -> Result<(), String> {
    match net {
        Net::Native { port } => {
            let listener = tf_transport::NativeListener::bind(format!("0.0.0.0:{port}"))
                .map_err(|e| format!("cannot listen on port {port}: {e}"))?;
            tracing::info!("listening: native 0.0.0.0:{port}");
            loop {
                match listener.accept() {
                    Ok(conn) => serve_one(conn),
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
                    Ok(Some(conn)) => serve_one(conn),
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

/// Starts a session process per accepted client (process isolation).
struct Spawner {
    /// This binary, re-executed for each session.
    exe: PathBuf,
    argv0: OsString,
    /// The worker's own arguments, passed on (the child reads `-n`/`-m`/`-M`).
    args: Vec<String>,
    /// Bytes charged against the memory limit: the total (counter 0) and
    /// per session process.
    ledger: Arc<tf_isolation::SharedCounter>,
    /// Ledger counters not in use by a session process.
    free_slots: Arc<std::sync::Mutex<Vec<usize>>>,
    sessions: u64,
}

impl Spawner {
    fn new(args: Vec<String>) -> Result<Self, String> {
        // The running binary even if it was replaced on disk since it
        // started (an upgrade): sessions keep the version that accepted them.
        let exe = match std::env::current_exe() {
            Ok(p) if !p.to_string_lossy().ends_with(" (deleted)") => p,
            _ => PathBuf::from("/proc/self/exe"),
        };
        let ledger = tf_isolation::SharedCounter::create("tf-worker-memory-ledger")
            .map_err(|e| format!("cannot create the memory ledger for session processes: {e}"))?;
        Ok(Self {
            exe,
            // nvidia-smi and ps show session processes under the worker's name.
            argv0: std::env::args_os()
                .next()
                .unwrap_or_else(|| "tensor-fusion-worker".into()),
            args,
            ledger: Arc::new(ledger),
            free_slots: Arc::new(std::sync::Mutex::new(
                (1..tf_isolation::COUNTERS).rev().collect(),
            )),
            sessions: 0,
        })
    }

    fn spawn(&mut self, conn: Connection) {
        self.sessions += 1;
        let session = self.sessions;
        let peer = conn.describe();
        // What the parent keeps until the child has exited: for SHMEM the
        // slot (released then); a TCP socket is the child's alone.
        let (handoff, socket, keeper) = match conn {
            Connection::Tcp(c) => match TcpConnection::into_stream(c) {
                Ok(s) => (Handoff::Tcp { fd: s.as_raw_fd() }, Some(s), None),
                Err(e) => {
                    tracing::warn!(session, %peer, "cannot hand the connection to a session process: {e}");
                    return;
                }
            },
            Connection::Shm(c) => match c.handoff() {
                Some(h) => (Handoff::Shm(h), None, Some(c)),
                None => return,
            },
        };
        let Some(slot) = lock(&self.free_slots).pop() else {
            tracing::error!(
                session,
                %peer,
                "refusing the client: {} sessions are served at once already, the most one worker serves; start another worker",
                tf_isolation::COUNTERS - 1
            );
            return;
        };
        let spec = SessionSpec {
            conn: handoff,
            session,
            ledger: self.ledger.fd(),
            slot,
        };
        let mut keep = vec![self.ledger.fd()];
        if let Handoff::Tcp { fd } = handoff {
            keep.push(fd);
        }
        let mut cmd = Process::new(&self.exe);
        cmd.arg0(&self.argv0)
            .arg(SESSION_PROCESS_ARG)
            .arg(spec.encode())
            .args(&self.args);
        match tf_isolation::spawn_keeping(&mut cmd, &keep) {
            Ok(child) => {
                tracing::info!(session, pid = child.id(), %peer, "session process started");
                drop(socket);
                let ledger = SessionLedger {
                    page: Arc::clone(&self.ledger),
                    free: Arc::clone(&self.free_slots),
                    slot,
                };
                let r = std::thread::Builder::new()
                    .name("tf-session-reaper".into())
                    .spawn(move || reap(child, keeper, session, ledger));
                if let Err(e) = r {
                    tracing::error!(session, "cannot watch the session process: {e}");
                }
            }
            Err(e) => {
                lock(&self.free_slots).push(slot);
                tracing::error!(
                    session,
                    %peer,
                    "cannot start a process for the session: {e}; its connection is closed (check that {} can be executed)",
                    self.exe.display()
                )
            }
        }
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A session process's counter in the shared ledger, settled when it ends.
struct SessionLedger {
    page: Arc<tf_isolation::SharedCounter>,
    free: Arc<std::sync::Mutex<Vec<usize>>>,
    slot: usize,
}

impl SessionLedger {
    /// Returns to the worker's total what the ended process still had
    /// charged (it died, or its context was lost and never freed), and
    /// frees the counter for the next session.
    fn settle(self, session: u64) {
        use std::sync::atomic::Ordering;
        let left = self.page.get(self.slot).swap(0, Ordering::AcqRel);
        if left > 0 {
            self.page.get(0).fetch_sub(left, Ordering::AcqRel);
            tracing::info!(
                session,
                bytes = left,
                "returned to the memory limit what the ended session process had not freed"
            );
        }
        lock(&self.free).push(self.slot);
    }
}

/// Waits for a session process, says how it ended when that was not a
/// plain exit, then lets go of what the parent kept for it.
fn reap(mut child: Child, keeper: Option<ShmConnection>, session: u64, ledger: SessionLedger) {
    use std::os::unix::process::ExitStatusExt;
    match child.wait() {
        Ok(st) if st.success() => tracing::debug!(session, "session process exited"),
        Ok(st) if st.code() == Some(3) => tracing::info!(
            session,
            "the session process ended after its client's kernel fault; other sessions are not affected"
        ),
        Ok(st) => match st.signal() {
            Some(sig) => tracing::warn!(
                session,
                signal = sig,
                "the session process was killed by signal {sig}; its client's connection is lost, other sessions are not affected"
            ),
            None => tracing::warn!(session, status = ?st.code(), "the session process failed; its log lines above say why"),
        },
        Err(e) => tracing::warn!(session, "cannot wait for the session process: {e}"),
    }
    ledger.settle(session);
    drop(keeper);
}

/// A session process: serves the one client its parent handed over, then
/// exits (status 3 after a kernel fault, for the parent's log).
fn session_process(
    args: &[String],
    make_backend: impl FnOnce() -> Result<Box<dyn Backend>, String>,
) -> i32 {
    let fail = |e: String| {
        tracing::error!("{e}");
        eprintln!("tensor-fusion-worker (session process): {e}");
        1
    };
    let spec = match args.first().map(|s| SessionSpec::parse(s)) {
        Some(Ok(s)) => s,
        Some(Err(e)) => return fail(e),
        None => return fail("missing session process argument".into()),
    };
    let net = match parse_args(args[1..].iter().cloned()) {
        Ok(Command::Serve { net, .. }) => net,
        _ => return fail("a session process needs the worker's serve arguments".into()),
    };
    // Device printf: the driver prints to the standard output of the process
    // that runs the kernel, this one, which serves one client: descriptor 1
    // becomes a pipe whose bytes go to the client before its next answer;
    // the process's own log lines keep the original standard output.
    let (capture, logged) = match tf_isolation::StdoutCapture::install(OUTPUT_BUFFER) {
        Ok((capture, stdout)) => (
            Ok(capture),
            tf_settings::logging::init_with_stdout("tensor-fusion-worker", stdout),
        ),
        Err(e) => (Err(e), tf_settings::logging::init("tensor-fusion-worker")),
    };
    if let Err(e) = logged {
        return fail(e.to_string());
    }
    let capture = capture
        .inspect_err(|e| {
            tracing::warn!(
                session = spec.session,
                "cannot capture standard output for the client ({e}): its device printf output stays in the worker's output"
            )
        })
        .ok();
    let limit = match memory_limit(&|k| std::env::var(k).ok()) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let ledger = match tf_isolation::SharedCounter::from_fd(spec.ledger) {
        Ok(l) => l,
        Err(e) => return fail(format!("session {}: {e}", spec.session)),
    };
    let conn = match (spec.conn, &net) {
        (Handoff::Tcp { fd }, _) => tf_isolation::inherited_tcp_stream(fd)
            .map_err(|e| e.to_string())
            .and_then(|s| TcpConnection::from_stream(s).map_err(|e| e.to_string()))
            .map(Connection::Tcp),
        (Handoff::Shm(h), Net::Shmem { file, size_mb }) => {
            ShmConnection::adopt(Path::new(file), *size_mb, h)
                .map(Connection::Shm)
                .map_err(|e| e.to_string())
        }
        (Handoff::Shm(_), Net::Native { .. }) => {
            Err("a shared-memory session needs -n shmem".into())
        }
    };
    let conn = match conn {
        Ok(c) => c,
        Err(e) => {
            return fail(format!(
                "session {}: cannot take over the connection: {e}",
                spec.session
            ))
        }
    };
    let backend = match make_backend() {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let ledger = Ledger::Shared {
        page: ledger,
        slot: spec.slot,
    };
    let worker = Worker::with_ledger(backend, limit, ledger);
    worker.set_next_session_id(spec.session);
    worker.set_process_per_session();
    if let Some(c) = capture {
        worker.set_output_capture(c);
    }
    serve_connection(Arc::clone(&worker), conn);
    if worker.fault() != 0 {
        3
    } else {
        0
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
    fn session_specs_round_trip_and_refuse_garbage() {
        for conn in [
            Handoff::Tcp { fd: 7 },
            Handoff::Shm(ShmHandoff {
                slot: 3,
                generation: 9,
                epoch: u64::MAX,
            }),
        ] {
            let spec = SessionSpec {
                conn,
                session: 42,
                ledger: 5,
                slot: 17,
            };
            assert_eq!(SessionSpec::parse(&spec.encode()).unwrap(), spec);
        }
        for bad in [
            "",
            "udp,fd=1,session=1,ledger=2",
            "tcp,session=1,ledger=2",
            "tcp,fd=x,session=1,ledger=2",
            "tcp,fd=99999999999,session=1,ledger=2",
            "shm,slot=1,generation=2,session=1,ledger=2",
            "tcp,fd=1,session=1,ledger=2",
            "tcp,fd=1,session=1,ledger=2,account=0",
            "tcp,fd=1,session=1,ledger=2,account=512",
        ] {
            assert!(SessionSpec::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn isolation_defaults_to_a_process_per_session() {
        let get = |v: Option<&'static str>| move |_: &str| v.map(str::to_string);
        assert_eq!(isolation(&get(None)).unwrap(), Isolation::Process);
        assert_eq!(isolation(&get(Some("Thread"))).unwrap(), Isolation::Thread);
        assert_eq!(
            isolation(&get(Some("process"))).unwrap(),
            Isolation::Process
        );
        assert!(isolation(&get(Some("fork")))
            .unwrap_err()
            .contains("use process"));
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
