//! The worker core: sessions, handle validation, memory limits and request
//! dispatch, over any [`Backend`]. The shipped `tensor-fusion-worker` plugs in
//! the vendor driver; tests plug in a host-memory backend.
#![forbid(unsafe_code)]

pub mod backend;
pub mod cli;
pub mod ctx;
pub mod exec;
pub mod graph;
pub mod mem;
pub mod nvml;
pub mod session;
pub mod worker;

pub use backend::{BResult, Backend, BackendCtx, Status};
pub use ctx::CtxBackend;
pub use exec::ExecBackend;
pub use graph::GraphBackend;
pub use mem::MemBackend;
pub use nvml::NvmlBackend;
pub use worker::{serve_connection, Worker};
