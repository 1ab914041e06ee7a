//! Project tasks, run as `cargo xtask <task>`:
//!
//! - `codegen [--check]`: regenerate the API tables and export tables from the
//!   NVIDIA headers (`scripts/fetch-headers.sh` fetches them), and the wire
//!   messages and worker dispatch from `codegen/messages.txt`; `--check`
//!   writes nothing and fails naming every stale file (CI).
//! - `procaddr derive | import FILE`: (re)write `codegen/procaddr.tsv`, the
//!   cuGetProcAddress table (see `codegen::procaddr`).
//! - `test [ARGS...]`: `cargo build --workspace`, then `cargo test --workspace
//!   ARGS...` (the export tests need the built cdylibs).
//! - `dist [--release]`: build and lay out `dist/` for deployment.

mod codegen;
mod sha256;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;

/// A task failure: a message for the user, exit status 1.
#[derive(Debug)]
pub struct Fail(pub String);

const USAGE: &str = "usage: cargo xtask <codegen [--check] | procaddr derive|import FILE | test [ARGS...] | dist [--release]>";

/// The workspace root: xtask lives in `<root>/xtask`.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root();
    let result = match args.first().map(String::as_str) {
        Some("codegen") => codegen::run(&root, &args[1..]),
        Some("procaddr") => codegen::procaddr_task(&root, &args[1..]),
        Some("test") => tasks::test(&root, &args[1..]),
        Some("dist") => tasks::dist(&root, &args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(Fail(USAGE.into())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg)) => {
            eprintln!("xtask: {msg}");
            ExitCode::FAILURE
        }
    }
}
