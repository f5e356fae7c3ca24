//! Generates the gRPC code (clients and servers) for the event log's
//! services from proto/eventlog.proto (needs `protoc`: scripts/deps.sh
//! installs it).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/eventlog.proto");
    tonic_prost_build::configure()
        .bytes(".")
        .compile_protos(&["proto/eventlog.proto"], &["proto"])?;
    Ok(())
}
