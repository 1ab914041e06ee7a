fn main() {
    // libcuda.so.1 / libnvidia-ml.so.1 dlopen("libteleport.so"); the SONAME
    // makes the guide's LD_PRELOAD of .../libteleport.so satisfy that lookup.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libteleport.so");
}
