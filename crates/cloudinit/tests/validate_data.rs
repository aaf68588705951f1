//! Data-driven validation tests: each `testdata/validate/*.txt` holds user data, a line `----`,
//! then exactly what `coreos-cloudinit --validate` reports for it (one problem per line, or
//! nothing). Set `UPDATE_TESTDATA=1` to rewrite the expectations from the current output.

use cloudinit::UserData;
use std::path::Path;

fn report(input: &str) -> String {
    match UserData::parse(input) {
        Ok((_, r)) | Err(r) => r.to_string(),
    }
}

#[test]
fn testdata() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/validate");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "testdata is missing");
    let mut failed = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let (input, expected) = text
            .split_once("\n----\n")
            .unwrap_or_else(|| panic!("{}: no ---- line", f.display()));
        let input = format!("{input}\n");
        let got = report(&input);
        if std::env::var_os("UPDATE_TESTDATA").is_some() {
            std::fs::write(&f, format!("{}\n----\n{got}", input.trim_end_matches('\n'))).unwrap();
        } else if got != expected {
            failed.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                f.display()
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
