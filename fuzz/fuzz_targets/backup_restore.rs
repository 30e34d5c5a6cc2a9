//! Fuzzes `kanava restore`'s reading of a backup file (a tar archive): `kanava::backup::restore`
//! into a fresh directory. Checks that it never panics, that a restore either makes the data
//! directory with the store's database in it or leaves nothing behind, and that nothing is
//! written outside the data directory.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("backup.tar");
    std::fs::write(&file, data).expect("writing the input");
    let target = dir.path().join("data");
    let restored = kanava::backup::restore(&file, &target);
    let mut left: Vec<String> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|entry| entry.expect("listing").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    match restored {
        Ok(summary) => {
            assert!(target.join("kanava.db").is_file());
            assert!(summary.files >= 1);
            assert_eq!(left, ["backup.tar", "data"]);
        }
        Err(_) => assert_eq!(left, ["backup.tar"]),
    }
});
