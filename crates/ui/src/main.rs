//! `ui` binary: the web UI (see the library).

#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;

fn main() -> anyhow::Result<()> {
    service::init();
    let args = ui::Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: ui::Args) -> anyhow::Result<()> {
    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address} (port in use? set UI_PORT)"))?;
    ui::serve(args, listener, service::shutdown_signal()).await
}
