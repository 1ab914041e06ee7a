//! `cargo xtask test` and `cargo xtask dist`.

use crate::Fail;
use std::path::{Path, PathBuf};
use std::process::Command;

fn cargo() -> Command {
    // `cargo xtask` runs us through cargo, which tells us which cargo it is.
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

fn run(root: &Path, mut cmd: Command) -> Result<(), Fail> {
    cmd.current_dir(root);
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| Fail(format!("cannot run {shown}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Fail(format!("{shown} failed ({status})")))
    }
}

/// `cargo xtask test [ARGS...]`: the integration tests of the client libraries
/// load the built cdylibs, which `cargo test` alone does not always (re)build.
pub fn test(root: &Path, args: &[String]) -> Result<(), Fail> {
    let mut build = cargo();
    build.args(["build", "--workspace"]);
    // The tests look for the libraries in their own profile directory.
    let before_separator = args.iter().take_while(|a| *a != "--");
    if before_separator.clone().any(|a| a == "--release") {
        build.arg("--release");
    }
    run(root, build)?;
    let mut test = cargo();
    // Every test binary runs even when one fails, so one CI log shows all failures.
    test.args(["test", "--workspace", "--no-fail-fast"])
        .args(args);
    run(root, test)
}

/// What `cargo metadata` says about the workspace (read without a JSON crate:
/// only two plain fields are needed).
struct Metadata {
    json: String,
}

impl Metadata {
    fn load(root: &Path) -> Result<Self, Fail> {
        let out = cargo()
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(root)
            .output()
            .map_err(|e| Fail(format!("cannot run cargo metadata: {e}")))?;
        if !out.status.success() {
            return Err(Fail(format!(
                "cargo metadata failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        let json =
            String::from_utf8(out.stdout).map_err(|_| Fail("cargo metadata: not UTF-8".into()))?;
        Ok(Self { json })
    }

    fn has_package(&self, name: &str) -> bool {
        self.json.contains(&format!("\"name\":\"{name}\""))
    }

    fn target_directory(&self) -> Result<PathBuf, Fail> {
        let key = "\"target_directory\":\"";
        let start = self
            .json
            .find(key)
            .ok_or_else(|| Fail("cargo metadata: no target_directory".into()))?
            + key.len();
        let end = self.json[start..]
            .find('"')
            .ok_or_else(|| Fail("cargo metadata: bad target_directory".into()))?;
        let raw = &self.json[start..start + end];
        if raw.contains('\\') {
            return Err(Fail(format!("unsupported target directory path {raw}")));
        }
        Ok(PathBuf::from(raw))
    }
}

fn copy(from: &Path, to: &Path) -> Result<(), Fail> {
    std::fs::copy(from, to).map_err(|e| {
        Fail(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    println!("dist: {}", to.display());
    Ok(())
}

/// `cargo xtask dist [--release]`: builds the workspace and lays out
///
/// ```text
/// dist/tensor-fusion-worker
/// dist/tensor-fusion-client/linux/{libcuda.so,libcuda.so.1,libnvidia-ml.so,libnvidia-ml.so.1,libteleport.so}
/// ```
///
/// as plain copies (no symlinks, so the folder survives any copy tool).
pub fn dist(root: &Path, args: &[String]) -> Result<(), Fail> {
    let release = match args {
        [] => false,
        [a] if a == "--release" => true,
        _ => return Err(Fail("usage: cargo xtask dist [--release]".into())),
    };
    let meta = Metadata::load(root)?;
    let mut build = cargo();
    build.args(["build", "--workspace"]);
    if release {
        build.arg("--release");
    }
    run(root, build)?;
    let out = meta
        .target_directory()?
        .join(if release { "release" } else { "debug" });

    let dist = root.join("dist");
    let client = dist.join("tensor-fusion-client").join("linux");
    let worker = dist.join("tensor-fusion-worker");
    // Start clean so a library that is no longer built cannot linger.
    for stale in [dist.join("tensor-fusion-client"), worker.clone()] {
        if stale.is_dir() {
            std::fs::remove_dir_all(&stale)
                .map_err(|e| Fail(format!("cannot remove {}: {e}", stale.display())))?;
        } else if stale.exists() {
            std::fs::remove_file(&stale)
                .map_err(|e| Fail(format!("cannot remove {}: {e}", stale.display())))?;
        }
    }
    std::fs::create_dir_all(&client)
        .map_err(|e| Fail(format!("cannot create {}: {e}", client.display())))?;

    if meta.has_package("tensor-fusion-worker") {
        copy(&out.join("tensor-fusion-worker"), &worker)?;
    } else {
        eprintln!(
            "dist: warning: no tensor-fusion-worker package in the workspace; skipping the worker"
        );
    }
    for (built, names) in [
        ("libcuda.so", ["libcuda.so", "libcuda.so.1"]),
        ("libnvidia_ml.so", ["libnvidia-ml.so", "libnvidia-ml.so.1"]),
    ] {
        for name in names {
            copy(&out.join(built), &client.join(name))?;
        }
    }
    if meta.has_package("teleport") {
        copy(&out.join("libteleport.so"), &client.join("libteleport.so"))?;
    } else {
        eprintln!("dist: warning: no teleport package in the workspace; the client libraries will not work without libteleport.so");
    }
    Ok(())
}
