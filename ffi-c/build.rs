//! Gives `liboutguard.so` a soname. Before 1.0 every minor release may change the ABI, so the
//! soname carries major and minor (`liboutguard.so.0.1`); from 1.0 on, the major only.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "freebsd" || os == "netbsd" || os == "openbsd" {
        let soname = if major == "0" {
            format!("liboutguard.so.{major}.{minor}")
        } else {
            format!("liboutguard.so.{major}")
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
