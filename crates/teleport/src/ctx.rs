//! Contexts beyond the primary-context slice and what cudart needs at
//! start-up: `cuGetProcAddress`, the private export tables and their
//! integrity check (issue 3).

/// Points the export slots of the functions implemented here at them.
pub(crate) fn register(_set: &mut dyn FnMut(usize, crate::Entry)) {}
