//! Replays the committed corpus of the fuzz target `v2_request` (`fuzz/corpus/v2_request`, and
//! any crash inputs kept in `fuzz/regressions/v2_request`) through the same entry point on the
//! stable toolchain, so that plain `cargo test` keeps every one of them from panicking again.

use std::path::Path;

fn replay(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for e in entries {
        let path = e.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        eprintln!("{}", path.display());
        store::v2::fuzzing::run(&data);
        n += 1;
    }
    n
}

#[test]
fn the_v2_request_corpus_runs_without_panicking() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let n = replay(&fuzz.join("corpus/v2_request"));
    assert!(n >= 5, "the seed corpus is missing ({n} files)");
    replay(&fuzz.join("regressions/v2_request"));
}
