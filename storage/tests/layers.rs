//! The modules of the storage engine are layers (see the table in `src/lib.rs` and in
//! `docs/internals.md`): a module may name the layers below its own, never one above or a
//! sibling. The I/O engine in particular names none of the modules that submit I/O.

mod layer_check;

use layer_check::{assert_one_way, crate_paths, crate_src, Layers};

/// Top first.
const STORAGE_LAYERS: &[&[&str]] = &[
    &["lib"],
    &["shard", "metadata"],
    &["readahead"],
    &["read"],
    &["partition"],
    &["offsets"],
    &["context"],
    &["segment"],
    &["index"],
    &["engine"],
    &["io", "memory_sync", "retention"],
    &["types", "stats"],
    &["constants", "testkit"],
];

#[test]
fn storage_modules_depend_one_way() {
    assert_one_way(&Layers {
        root: crate_src("storage"),
        order: STORAGE_LAYERS,
    });
}

#[test]
fn the_checker_finds_an_edge_that_runs_upwards_or_sideways() {
    assert_eq!(
        crate_paths("use crate::read::ReadJob; // crate::engine\nmy_crate::partition"),
        vec!["read", "engine"]
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("low")).expect("mkdir");
    // The I/O engine naming a poll's job: the edge this crate used to have.
    std::fs::write(dir.path().join("low/mod.rs"), "use crate::high::ReadJob;").expect("write");
    std::fs::write(dir.path().join("high.rs"), "use crate::low::Engine;").expect("write");
    std::fs::write(dir.path().join("side.rs"), "use crate::high::Other;").expect("write");
    let layers = Layers {
        root: dir.path().to_path_buf(),
        order: &[&["high", "side"], &["low"]],
    };
    let mut edges: Vec<(String, String)> = layers
        .violations()
        .into_iter()
        .map(|(_, from, to)| (from, to))
        .collect();
    edges.sort();
    assert_eq!(
        edges,
        [
            ("low".to_string(), "high".to_string()),
            ("side".to_string(), "high".to_string())
        ]
    );
}
