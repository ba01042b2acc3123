//! The one-way check of a crate's layers, shared by `storage/tests/layers.rs` and
//! `dataplane/tests/layers.rs`: it reads every `crate::<module>` path in a crate's sources and
//! reports each edge that runs upwards or sideways, naming the file and the edge.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A crate's layers, top first: each entry is the modules of one layer. A module may name the
/// layers below its own, never its own layer's other modules or a layer above.
pub struct Layers {
    pub root: PathBuf,
    pub order: &'static [&'static [&'static str]],
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
    pub fn violations(&self) -> Vec<(String, String, String)> {
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
pub fn crate_paths(text: &str) -> Vec<String> {
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

/// Fails with every edge that runs the wrong way, grouped by edge.
pub fn assert_one_way(layers: &Layers) {
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

/// `src/` of a workspace member, from the test's own crate.
pub fn crate_src(crate_dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("src")
}
