//! What the crates' property tests share (the stable-toolchain runs of their fuzz
//! targets, docs/fuzzing.md).

/// `cases` per property unless `PROPTEST_CASES` asks for another number. Failures are not
/// persisted to `proptest-regressions/`: a finding becomes a plain `#[test]` with the
/// minimal input, next to the parser it broke.
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    let mut config = proptest::test_runner::Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config.failure_persistence = None;
    config
}

/// Declares a unit enum and its `ALL` list (for `prop::sample::select`) from one list.
#[macro_export]
macro_rules! listed_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        enum $name {
            $($variant),*
        }

        impl $name {
            const ALL: &'static [$name] = &[$($name::$variant),*];
        }
    };
}
