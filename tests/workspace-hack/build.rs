//! Empty: a build script makes cargo resolve this crate's
//! build-dependencies, which unify the features of host-side dependencies
//! (proc macros, build scripts) across the workspace.

fn main() {}
