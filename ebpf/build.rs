//! Compiles the C eBPF programs in `src/bpf/` with clang (`-target bpf`, with BTF) into OUT_DIR.
//! Only the sources are committed; the objects are embedded by `include_bytes!`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Programs compiled into OUT_DIR as `<name>.o`. `tests/broken.c` is a deliberately rejected
/// program that the test suite loads to check the verifier error path; `tests/foreign_pass.c` stands
/// in for someone else's XDP program.
const PROGRAMS: &[(&str, &str)] = &[
    ("xdp_steer", "src/bpf/xdp_steer.c"),
    ("reuseport_steer", "src/bpf/reuseport_steer.c"),
    ("broken", "src/bpf/tests/broken.c"),
    ("foreign_pass", "src/bpf/tests/foreign_pass.c"),
];

const INSTALL_HINT: &str =
    "run scripts/install-deps.sh (it installs clang, llvm, libbpf-dev and linux-libc-dev)";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let clang = env::var("RIPTIDE_CLANG").unwrap_or_else(|_| "clang".to_string());
    println!("cargo:rerun-if-env-changed=RIPTIDE_CLANG");
    println!("cargo:rerun-if-changed=src/bpf");

    check_clang(&clang);
    let multiarch_include = multiarch_include_dir();
    check_headers(&multiarch_include);

    for (name, source) in PROGRAMS {
        let source_path = manifest_dir.join(source);
        println!("cargo:rerun-if-changed={}", source_path.display());
        compile(
            &clang,
            &source_path,
            &out_dir.join(format!("{name}.o")),
            &multiarch_include,
        );
    }
}

fn check_clang(clang: &str) {
    match Command::new(clang).arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => fail(&format!(
            "`{clang} --version` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => fail(&format!("clang not found (`{clang}`: {error})")),
    }
}

/// `asm/types.h` lives under the multiarch include directory on Debian (e.g.
/// /usr/include/x86_64-linux-gnu); `-target bpf` does not search it by itself.
fn multiarch_include_dir() -> PathBuf {
    let triple = Command::new("gcc")
        .arg("-dumpmachine")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_string())
        .unwrap_or_else(|| {
            let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_string());
            format!("{arch}-linux-gnu")
        });
    PathBuf::from("/usr/include").join(triple)
}

fn check_headers(multiarch_include: &Path) {
    let required = [
        multiarch_include.join("asm/types.h"),
        PathBuf::from("/usr/include/linux/bpf.h"),
        PathBuf::from("/usr/include/bpf/bpf_helpers.h"),
    ];
    for header in required {
        if !header.exists() {
            fail(&format!("BPF build header {} is missing", header.display()));
        }
    }
}

fn compile(clang: &str, source: &Path, object: &Path, multiarch_include: &Path) {
    let output = Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg("-I")
        .arg(multiarch_include)
        .arg("-c")
        .arg(source)
        .arg("-o")
        .arg(object)
        .output()
        .unwrap_or_else(|error| fail(&format!("running {clang}: {error}")));
    if !output.status.success() {
        fail(&format!(
            "clang failed to compile {}:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

fn fail(reason: &str) -> ! {
    panic!("\n\nriptide-ebpf cannot build its eBPF programs: {reason}\nFix: {INSTALL_HINT}\n\n");
}
