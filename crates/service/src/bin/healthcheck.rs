//! `healthcheck [PORT] [PATH]`: exits 0 when `GET http://127.0.0.1:PORT/PATH` answers 200, else
//! 1 with the reason on stderr. Docker's HEALTHCHECK runs it, so the images need no curl.
//! PORT defaults to `$APP_PORT`, then `$UI_PORT`, then 8000; PATH to `/health`.

use std::time::Duration;

fn main() {
    let mut args = std::env::args().skip(1);
    let port = args
        .next()
        .or_else(|| std::env::var("APP_PORT").ok())
        .or_else(|| std::env::var("UI_PORT").ok())
        .unwrap_or_else(|| "8000".into());
    let path = args.next().unwrap_or_else(|| "/health".into());
    let Ok(port) = port.parse::<u16>() else {
        eprintln!("healthcheck: port {port:?} is not a number (usage: healthcheck [PORT] [PATH])");
        std::process::exit(2);
    };
    match service::probe("127.0.0.1", port, &path, Duration::from_secs(3)) {
        Ok(200) => {}
        Ok(status) => {
            eprintln!("healthcheck: {path} answered {status}");
            std::process::exit(1);
        }
        Err(why) => {
            eprintln!("healthcheck: {why}");
            std::process::exit(1);
        }
    }
}
