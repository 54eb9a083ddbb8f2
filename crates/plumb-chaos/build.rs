//! Builds the ENOSPC injector (src/enospc.c) into a shared object that the
//! crate embeds (`enospc::LIBRARY`): disk_full's `with = "preload"` writes
//! it next to the target's log and loads it with LD_PRELOAD. Without a C
//! compiler the crate still builds; that one mode then says why it cannot
//! run.

use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=src/enospc.c");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let so = out.join("libplumb_enospc.so");
    let built = cc::Build::new().try_get_compiler().ok().map(|c| {
        c.to_command()
            .args(["-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-o"])
            .arg(&so)
            .arg("src/enospc.c")
            .arg("-ldl")
            .status()
    });
    match built {
        Some(Ok(s)) if s.success() => {}
        other => {
            println!(
                "cargo:warning=the ENOSPC injector was not built ({other:?}): disk_full with = \"preload\" will say so"
            );
            std::fs::write(&so, b"").expect("OUT_DIR is writable");
        }
    }
}
