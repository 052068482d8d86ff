//! Fuzz target `config`: the configuration path of every command, on arbitrary bytes.
//!
//! Bytes are read as the CLI reads a file (`engine::load_config_bytes`): valid UTF-8 goes to
//! `config::parse`; otherwise the located "not valid UTF-8" position is computed as the CLI
//! computes it, and the lossy text (U+FFFD for bad bytes) is parsed as well. A configuration
//! that parses is compiled, printed as an nft script, planned against an empty host and
//! against the default (`diff`), and its batch must be encodable. Checked, beyond "no
//! panic": every error is one located line of this file, and a configuration that
//! validates can always be sent (`check_encodable`), as the README promises.
#![no_main]

use ecs_hostnet::desired::compile;
use ecs_hostnet::host::nft as kernel;
use ecs_hostnet::render::nft_script;
use ecs_hostnet::render::plan as report;
use ecs_hostnet::{config, plan};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(text) => check(text),
        Err(e) => {
            let off = e.valid_up_to();
            let valid = std::str::from_utf8(&data[..off]).expect("valid up to the error");
            let (line, col) = config::line_col(valid, off);
            assert!(line >= 1 && col >= 1 && line <= valid.matches('\n').count() + 1);
            check(&String::from_utf8_lossy(data));
        }
    }
});

fn check(text: &str) {
    let lines = text.matches('\n').count() + 1;
    match config::parse("fuzz.toml", text) {
        Ok(c) => {
            let d = compile(&c);
            let script = nft_script::script(&d, "fuzz.toml");
            assert!(script.starts_with("#!/usr/sbin/nft -f\n"));
            let fresh = plan::plan(&d, &plan::live::LiveState::default());
            if let Err(e) = kernel::encode::check_encodable(&fresh.ops) {
                panic!("a configuration that validates cannot be encoded: {e}\n{text}");
            }
            let p = plan::diff(&compile(&config::default_config()), &d);
            let _ = report::text(&p, true, "No changes.");
            let _ = report::json(&p, "diff", "fuzz.toml", &report::Against::Snapshot { path: "old.toml".into() });
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "an Err carries at least one error");
            for e in &errors.0 {
                assert_eq!(e.file, "fuzz.toml");
                assert!(!e.message.trim().is_empty(), "empty message: {e:?}");
                assert!(!e.message.contains('\n') && !e.message.contains('\r'), "an error is one line: {e:?}");
                if let Some((line, col)) = e.position {
                    assert!(line >= 1 && col >= 1 && line <= lines, "position {line}:{col} outside the text: {e:?}");
                }
            }
        }
    }
}
