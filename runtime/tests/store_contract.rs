//! The store contract suite (`causeway_runtime::store::contract`) on the embedded store, one
//! test per contract, each on a fresh store in a temp dir.

use causeway_runtime::store::embedded::EmbeddedStore;

async fn fresh() -> (EmbeddedStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(dir.path(), None).expect("open the store");
    (store, dir)
}

causeway_runtime::store_contract_tests!(fresh);
