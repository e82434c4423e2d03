//! No code: this crate exists for its dependency list (see its Cargo.toml),
//! which gives every member of the poe-code workspace the same features of
//! shared dependencies.
