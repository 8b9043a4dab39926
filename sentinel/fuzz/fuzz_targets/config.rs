//! Any text as a config file, and as an environment override: an error or a
//! config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = sentinel_core::config::Config::parse(text, "fuzz.toml");
    // The same text as the value of an environment override.
    let env = [("SENTINEL_STEP".to_string(), text.to_string())];
    let _ = sentinel_core::config::Config::parse_with_env("[agent]\n", "fuzz.toml", &env);
});
