//! The folders of the dataplane are layers: a module may name its own layer and the layers below
//! it, never one above. This test reads every `crate::<module>` path in the sources and fails on
//! an edge that runs the wrong way, naming the file and the edge (the storage engine's modules
//! are checked the same way by `storage/tests/layers.rs`).

// The checker is shared with the storage crate's own layer test.
#[path = "../../storage/tests/layer_check/mod.rs"]
mod layer_check;

use layer_check::{assert_one_way, crate_paths, crate_src, Layers};

#[test]
fn dataplane_folders_depend_one_way() {
    assert_one_way(&Layers {
        root: crate_src("dataplane"),
        order: &[
            &["main"],
            &["lib"],
            &["app"],
            &["net"],
            &["session"],
            &["cluster"],
            &["mesh"],
            &["metadata"],
            &["shard"],
            &["diagnostics"],
            &["clock"],
        ],
    });
}

#[test]
fn the_checker_finds_an_edge_that_runs_upwards() {
    assert_eq!(
        crate_paths("use crate::session::core; // crate::mesh\nmy_crate::net"),
        vec!["session", "mesh"]
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("low")).expect("mkdir");
    std::fs::write(dir.path().join("low/mod.rs"), "use crate::high::Thing;").expect("write");
    std::fs::write(dir.path().join("high.rs"), "use crate::low::Other;").expect("write");
    let layers = Layers {
        root: dir.path().to_path_buf(),
        order: &[&["high"], &["low"]],
    };
    let violations = layers.violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(
        (violations[0].1.as_str(), violations[0].2.as_str()),
        ("low", "high")
    );
}
