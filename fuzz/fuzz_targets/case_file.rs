//! Hostile case files: any bytes load to a case or a typed error, and a case
//! that loads runs on the reference to a report or a typed error — never a
//! panic, never an allocation sized by the file before it is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(case) = radiant::case::Case::from_bytes(data, "fuzz") {
        if let Ok(reference) = radiant::device("reference") {
            let _ = radiant::case::run(&case, reference.as_ref());
        }
    }
});
