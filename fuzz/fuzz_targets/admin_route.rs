//! Fuzzes the admin listener's request router (`/healthz`, `/metrics`): `kanava::admin::route`,
//! fed the raw bytes read from the admin socket. Checks that it never panics.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    std::hint::black_box(kanava::admin::route(data));
});
