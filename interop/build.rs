//! Compiles gRPC's interop protocol (our copy in `proto/`) with protox: no
//! `protoc` needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/grpc/testing/empty.proto",
        "proto/grpc/testing/messages.proto",
        "proto/grpc/testing/test.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
