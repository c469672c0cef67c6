//! Records the versions of candle and tokenizers this binary was built with (from the
//! workspace's Cargo.lock) for run summaries.

fn main() {
    let lock = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../Cargo.lock");
    println!("cargo:rerun-if-changed={}", lock.display());
    let text = std::fs::read_to_string(&lock).unwrap_or_default();
    for (krate, var) in [("candle-core", "CANDLE_CORE"), ("tokenizers", "TOKENIZERS")] {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        let version = text
            .find(&needle)
            .and_then(|i| text[i + needle.len()..].split('"').next())
            .unwrap_or("unknown");
        println!("cargo:rustc-env=DEP_VERSION_{var}={version}");
    }
}
