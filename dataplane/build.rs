//! Build script of riptide-dataplane.
//!
//! Without the `dpdk` feature it does nothing, so a plain build needs neither DPDK nor libclang.
//! With it, it finds Debian's DPDK 22.11 through pkg-config (`libdpdk.pc`), runs bindgen over
//! `dpdk/shim.h` (only the items riptide uses), compiles the C shim `dpdk/shim.c` that gives the
//! static inline fast-path functions real symbols, and links the shared DPDK libraries, so that
//! the EAL loads the PMD plugins (net_af_xdp, net_af_packet, net_tap, ...) from its driver
//! directory at run time.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "dpdk")]
    dpdk::build();
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use std::env;
    use std::path::PathBuf;
    use std::process::Command;

    const INSTALL_HINT: &str = "run scripts/install-deps.sh (as root) to install libdpdk-dev, \
                                dpdk, pkg-config and libclang-dev, or build without the `dpdk` feature";

    /// Functions of DPDK's exported API that the Rust side calls directly.
    const FUNCTIONS: &[&str] = &[
        "rte_eal_init",
        "rte_eal_cleanup",
        "rte_strerror",
        "rte_socket_id",
        "rte_thread_register",
        "rte_thread_unregister",
        "rte_eal_remote_launch",
        "rte_eal_wait_lcore",
        "rte_get_main_lcore",
        "rte_lcore_count",
        "rte_eth_dev_count_avail",
        "rte_eth_dev_get_port_by_name",
        "rte_eth_dev_get_name_by_port",
        "rte_eth_dev_info_get",
        "rte_eth_dev_configure",
        "rte_eth_dev_adjust_nb_rx_tx_desc",
        "rte_eth_rx_queue_setup",
        "rte_eth_tx_queue_setup",
        "rte_eth_dev_start",
        "rte_eth_dev_stop",
        "rte_eth_dev_close",
        "rte_eth_dev_socket_id",
        "rte_eth_link_get_nowait",
        "rte_eth_stats_get",
        "rte_eth_macaddr_get",
        "rte_eth_promiscuous_enable",
        "rte_pktmbuf_pool_create",
        "rte_mempool_free",
        "rte_mempool_avail_count",
        "rte_mempool_calc_obj_size",
        "riptide_.*",
    ];

    const TYPES: &[&str] = &[
        "rte_eth_conf",
        "rte_eth_dev_info",
        "rte_eth_link",
        "rte_eth_stats",
        "rte_ether_addr",
        "rte_eth_rxconf",
        "rte_eth_txconf",
        "rte_eth_rx_mq_mode",
        "rte_mempool_objsz",
    ];

    const VARS: &[&str] = &[
        "RTE_MAX_ETHPORTS",
        "RTE_MAX_LCORE",
        "RTE_ETHDEV_QUEUE_STAT_CNTRS",
        "RTE_PKTMBUF_HEADROOM",
        "RTE_ETH_LINK_UP",
        "RTE_ETH_LINK_FULL_DUPLEX",
        "SOCKET_ID_ANY",
        "LCORE_ID_ANY",
        "RTE_ETHER_ADDR_LEN",
    ];

    pub fn build() {
        let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
        let shim_dir = manifest_dir.join("dpdk");
        println!(
            "cargo:rerun-if-changed={}",
            shim_dir.join("shim.h").display()
        );
        println!(
            "cargo:rerun-if-changed={}",
            shim_dir.join("shim.c").display()
        );
        println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");

        // Links every shared library of libdpdk.pc; the linker's --as-needed drops unused ones.
        let library = pkg_config::Config::new()
            .atleast_version("22.11")
            .probe("libdpdk")
            .unwrap_or_else(|error| {
                fail(&format!(
                    "DPDK 22.11 (libdpdk) not found by pkg-config: {error}"
                ))
            });
        let cflags = dpdk_cflags();
        compile_shim(&shim_dir, &cflags);
        generate_bindings(&shim_dir, &cflags, &library);
    }

    /// The raw cflags of libdpdk.pc: the pkg-config crate exposes include paths and defines but
    /// not `-include rte_config.h` and `-march=...`, without which the headers do not compile.
    fn dpdk_cflags() -> Vec<String> {
        let pkg_config = env::var("PKG_CONFIG").unwrap_or_else(|_| "pkg-config".to_string());
        let output = Command::new(&pkg_config)
            .args(["--cflags", "libdpdk"])
            .output()
            .unwrap_or_else(|error| fail(&format!("cannot run {pkg_config}: {error}")));
        if !output.status.success() {
            fail(&format!(
                "{pkg_config} --cflags libdpdk failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        // `-include rte_config.h` is two tokens; keep them as separate arguments for clang and cc.
        text.split_whitespace().map(str::to_string).collect()
    }

    fn compile_shim(shim_dir: &std::path::Path, cflags: &[String]) {
        let mut build = cc::Build::new();
        build
            .file(shim_dir.join("shim.c"))
            .include(shim_dir)
            .opt_level(2);
        for flag in cflags {
            build.flag(flag);
        }
        // DPDK's headers trip some of cc's default warnings; they are not ours to fix.
        build.warnings(false);
        build
            .try_compile("riptide_dpdk_shim")
            .unwrap_or_else(|error| fail(&format!("compiling dpdk/shim.c failed: {error}")));
    }

    fn generate_bindings(
        shim_dir: &std::path::Path,
        cflags: &[String],
        library: &pkg_config::Library,
    ) {
        let mut builder = bindgen::Builder::default()
            .header(shim_dir.join("shim.h").display().to_string())
            // DPDK's header comments hold C examples in code blocks, which rustdoc would compile
            // as Rust doctests; the bindings are documented by DPDK's own headers.
            .generate_comments(false)
            .clang_args(cflags)
            .clang_args(
                library
                    .include_paths
                    .iter()
                    .map(|path| format!("-I{}", path.display())),
            )
            // The mbuf and mempool are only handled through pointers and the shim: opaque keeps
            // their (bitfield-heavy, cache-aligned) layouts out of the Rust side.
            .opaque_type("rte_mbuf")
            .opaque_type("rte_mempool")
            .derive_default(true)
            .prepend_enum_name(false)
            .layout_tests(true)
            .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
        for function in FUNCTIONS {
            builder = builder.allowlist_function(function);
        }
        for type_name in TYPES {
            builder = builder.allowlist_type(type_name);
        }
        for var in VARS {
            builder = builder.allowlist_var(var);
        }
        // bindgen panics when it cannot load libclang; turn that into an error naming the fix.
        let generated =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || builder.generate()));
        let bindings = match generated {
            Ok(Ok(bindings)) => bindings,
            Ok(Err(error)) => fail(&format!("bindgen over dpdk/shim.h failed: {error}")),
            Err(_) => fail("bindgen could not run (is libclang installed?)"),
        };
        let out_dir = PathBuf::from(env::var("OUT_DIR").expect("set by cargo"));
        bindings
            .write_to_file(out_dir.join("dpdk_bindings.rs"))
            .unwrap_or_else(|error| fail(&format!("writing the DPDK bindings failed: {error}")));
    }

    fn fail(reason: &str) -> ! {
        panic!("\n\nriptide-dataplane feature `dpdk`: {reason}\n  fix: {INSTALL_HINT}\n\n");
    }
}
