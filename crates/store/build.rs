//! Compiles etcd's v3 protocol (proto/) with protox, so no system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/etcd/mvccpb/kv.proto",
        "proto/etcd/authpb/auth.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
