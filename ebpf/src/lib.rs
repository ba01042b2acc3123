//! riptide-ebpf: work in progress.
