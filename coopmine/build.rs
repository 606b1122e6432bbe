//! Generates the gRPC service and messages from `proto/coopmine.proto` (needs `protoc`, which
//! `scripts/setup.sh` installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/coopmine.proto");
    tonic_prost_build::configure().compile_protos(&["proto/coopmine.proto"], &["proto"])?;
    Ok(())
}
