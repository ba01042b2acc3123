//! The folders of the dataplane (and the modules of the storage engine) are layers: a module may
//! name its own layer and the layers below it, never one above. This test reads every
//! `crate::<module>` path in the sources and fails on an edge that runs the wrong way, naming
//! the file and the edge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A crate's layers, top first: each entry is the modules of one layer.
struct Layers {
    root: PathBuf,
    order: &'static [&'static [&'static str]],
}

impl Layers {
    fn rank(&self, module: &str) -> Option<usize> {
        self.order.iter().position(|layer| layer.contains(&module))
    }

    /// The module a source file belongs to: its folder under `src/`, or its file stem.
    fn module_of(&self, file: &Path) -> String {
        let relative = file.strip_prefix(&self.root).expect("under src");
        let first = relative.components().next().expect("a component");
        let name = first.as_os_str().to_string_lossy();
        name.trim_end_matches(".rs").to_string()
    }

    /// Every edge that runs upwards or sideways: (file, from, to).
    fn violations(&self) -> Vec<(String, String, String)> {
        let mut found = Vec::new();
        for file in rust_files(&self.root) {
            let from = self.module_of(&file);
            let Some(from_rank) = self.rank(&from) else {
                continue;
            };
            let text = std::fs::read_to_string(&file).expect("read source");
            for to in crate_paths(&text) {
                if to == from {
                    continue;
                }
                let to_rank = self
                    .rank(&to)
                    .unwrap_or_else(|| panic!("{}: `crate::{to}` is in no layer", file.display()));
                if to_rank <= from_rank {
                    found.push((file.display().to_string(), from.clone(), to));
                }
            }
        }
        found
    }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The first segment of every `crate::` path in `text` (comments included: a doc link that
/// runs upwards is a dependency of the reader's understanding too).
fn crate_paths(text: &str) -> Vec<String> {
    let mut modules = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let preceded_by_ident = rest[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !preceded_by_ident && !name.is_empty() {
            modules.push(name);
        }
        rest = after;
    }
    modules
}

fn assert_one_way(layers: &Layers) {
    let violations = layers.violations();
    let mut by_edge: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (file, from, to) in violations {
        by_edge.entry((from, to)).or_default().push(file);
    }
    assert!(
        by_edge.is_empty(),
        "imports that run the wrong way (layers, top first: {:?}):\n{}",
        layers.order,
        by_edge
            .iter()
            .map(|((from, to), files)| format!("  {from} -> {to}: {}", files.join(", ")))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

fn crate_src(crate_dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src")
}

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
