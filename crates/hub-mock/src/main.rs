//! `hub-mock ROOT [ADDR [PUBLIC_URL]]`: serves ROOT as a Hugging Face Hub (see the library) on
//! ADDR (default 0.0.0.0:8080), redirecting large files to PUBLIC_URL (default
//! http://ADDR), for the compose end-to-end run's `HF_ENDPOINT`.

#![forbid(unsafe_code)]

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(root) = args.next() else {
        eprintln!(
            "usage: hub-mock ROOT [ADDR [PUBLIC_URL]]   (ROOT holds models/<id>/<revision>/ and datasets/<id>/<revision>/)"
        );
        std::process::exit(2);
    };
    let addr = args.next().unwrap_or_else(|| "0.0.0.0:8080".into());
    let options = hub_mock::Options {
        token: std::env::var("HUB_MOCK_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
        public_url: args.next(),
    };
    let listener = std::net::TcpListener::bind(&addr)?;
    let local = listener.local_addr()?;
    let mock = hub_mock::HubMock::serve(listener, local, std::path::Path::new(&root), options)?;
    println!(
        "serving {root} as a Hugging Face Hub on {local} ({})",
        mock.url
    );
    mock.wait();
    Ok(())
}
