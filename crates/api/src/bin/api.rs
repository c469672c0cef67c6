//! `api` binary: the HTTP service (see the library).

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    service::init();
    let args = api::Args::parse();
    args.validate()?;
    let threads = classifier::runtime::init(args.threads)?;
    tracing::info!(threads, "CPU threads");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let address = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("cannot listen on {address} (port in use? set APP_PORT)"))?;
        api::http::serve(args, listener, service::shutdown_signal()).await
    })
}
