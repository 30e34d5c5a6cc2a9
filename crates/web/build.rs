//! Embeds the browser front end: the pages `web/*.html`, the chat's modules `web/src/` and the
//! debug-me pages' bundles `web/dist/` (built by `npm run build --prefix web` and committed);
//! every file is compressed with gzip here, at build time, and listed with its ETag (a hash of its content) in
//! `$OUT_DIR/assets.rs`, which `src/pages.rs` includes. Whatever files are there are embedded;
//! none is required.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let web = manifest.join("../../web");
    println!("cargo:rerun-if-changed={}", web.display());
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&web).into_iter().flatten().flatten() {
        let path = entry.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str())
            && name.ends_with(".html")
            && path.is_file()
        {
            files.push((format!("/{name}"), path.clone()));
        }
    }
    for dir in ["src", "dist"] {
        let path = web.join(dir);
        println!("cargo:rerun-if-changed={}", path.display());
        collect(&path, &format!("/{dir}"), &mut files);
    }
    files.sort();
    let mut listing = String::from("&[\n");
    for (number, (path, file)) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", file.display());
        let raw = std::fs::read(file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
        encoder.write_all(&raw).expect("compressing in memory");
        let gzip = encoder.finish().expect("compressing in memory");
        let gz_file = out.join(format!("asset{number}.gz"));
        std::fs::write(&gz_file, gzip).expect("writing OUT_DIR");
        let digest = Sha256::digest(&raw);
        let etag: String = digest[..12].iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let _ = writeln!(
            listing,
            "    Asset {{ path: {path:?}, raw: include_bytes!({raw:?}), gzip: include_bytes!({gz:?}), etag: \"\\\"{etag}\\\"\" }},",
            raw = file
                .canonicalize()
                .expect("the file exists")
                .display()
                .to_string(),
            gz = gz_file.display().to_string(),
        );
    }
    listing.push(']');
    std::fs::write(out.join("assets.rs"), listing).expect("writing OUT_DIR");
}

/// Adds every file under `dir` (recursively), named `prefix/relative/path`; skips names that
/// are not plain UTF-8 without spaces, which no URL of the front end uses.
fn collect(dir: &Path, prefix: &str, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') || name.contains(|c: char| c.is_whitespace() || c == '"') {
            continue;
        }
        let path = entry.path();
        let url = format!("{prefix}/{name}");
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect(&path, &url, files);
        } else if path.is_file() {
            files.push((url, path));
        }
    }
}
