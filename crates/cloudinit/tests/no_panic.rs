//! The parser and validator never panic, whatever the user data: arbitrary text, and text made
//! of YAML's own punctuation so the fuzzing reaches deep into the parser.

use cloudinit::UserData;
use proptest::prelude::*;

fn check(text: &str) {
    match UserData::parse(text) {
        Ok((_, report)) => assert!(!report.has_errors()),
        Err(report) => assert!(report.has_errors()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_text(s in "\\PC*") {
        check(&format!("#cloud-config\n{s}"));
    }

    #[test]
    fn yaml_shaped_text(s in "([a-z_\\-]{1,8}|[:\\-\\[\\]{},&*!|>'\"#?%@ ]|\n {0,6}|0[0-9]{3}|~|true){0,60}") {
        check(&format!("#cloud-config\n{s}"));
    }

    #[test]
    fn schema_keys_with_any_values(
        keys in proptest::collection::vec(prop_oneof![
            Just("hostname"), Just("users"), Just("write_files"), Just("coreos"), Just("units"),
            Just("etcd2"), Just("update"), Just("name"), Just("path"), Just("content"),
            Just("encoding"), Just("permissions"), Just("drop-ins"), Just("command"),
        ], 1..8),
        values in proptest::collection::vec("(\\[\\]|\\{\\}|- x|b64|0644|true|-|\\[a, \\{b: c\\}\\]|)", 1..8),
    ) {
        let mut text = String::from("#cloud-config\n");
        for (depth, (k, v)) in keys.iter().zip(values.iter().cycle()).enumerate() {
            text.push_str(&format!("{}{k}: {v}\n", "  ".repeat(depth % 4)));
        }
        check(&text);
    }
}
