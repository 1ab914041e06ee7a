//! Gives the library the SONAME of the driver library it stands in for, so
//! that applications linked against it record `libnvidia-ml.so.1` as DT_NEEDED.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libnvidia-ml.so.1");
    }
}
