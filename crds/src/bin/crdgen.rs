//! Writes the CRDs to `crds/yaml/` and `charts/causeway/crds/` (`make crds`).
//! With `--check`, writes nothing and fails when a committed file differs.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let check = std::env::args().any(|a| a == "--check");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    if check {
        let drift = causeway_crds::crd::drifted(&root, &causeway_crds::crd::all());
        if drift.is_empty() {
            return ExitCode::SUCCESS;
        }
        let names: Vec<String> = drift.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "crdgen: out of date (run `make crds`): {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    }
    for dir in causeway_crds::crd::OUTPUT_DIRS {
        let dir = root.join(dir);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("crdgen: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (file, crd) in causeway_crds::crd::all() {
            let path = dir.join(file);
            let want = causeway_crds::crd::to_yaml(&crd);
            if let Err(e) = std::fs::write(&path, want) {
                eprintln!("crdgen: cannot write {}: {e}", path.display());
                return ExitCode::FAILURE;
            } else {
                println!("wrote {}", path.display());
            }
        }
    }
    ExitCode::SUCCESS
}
