//! `ui` binary: the web UI (see the library).

use anyhow::Context;
use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service::init_logging();
    let args = ui::Args::parse();
    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address} (port in use? set UI_PORT)"))?;
    ui::serve(args, listener, service::shutdown_signal()).await
}
