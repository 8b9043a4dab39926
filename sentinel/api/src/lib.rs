//! `sentinel.v1`, the agent's gRPC API: the generated messages and
//! services (`pb`), the descriptors for server reflection, and a client
//! that connects over the agent's Unix socket or its mutual-TLS TCP
//! listener. Regenerate `generated/` with `cargo xtask codegen` after
//! changing `proto/`; never edit it by hand.

pub mod client;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    include!("generated/sentinel.v1.rs");
}

/// The API's own descriptors, for server reflection: generic clients
/// (grpcurl, grpcui) discover `sentinel.v1` without the proto file.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("generated/sentinel_descriptor.bin");
