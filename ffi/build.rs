//! The shared library's SONAME: `libpgisolate.so.<major>.<minor>` while the major version is 0
//! (each 0.x may change the ABI), `libpgisolate.so.<major>` after.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
    let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
    let soname = if major == "0" { format!("libpgisolate.so.0.{minor}") } else { format!("libpgisolate.so.{major}") };
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,{soname}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
