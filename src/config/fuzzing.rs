//! Support for the `config` fuzz target and the loader's property tests: [`run`] takes
//! arbitrary bytes as a configuration file and checks what an operator relies on.
//!
//! Not part of fulcrum's interface: hidden from the docs, used by `fuzz/` and the
//! config tests.
//!
//! # What is checked, for every input
//!
//! - Loading never panics (nor does building the data plane's snapshot from a file that
//!   loaded).
//! - A refused file has at least one error, and a loaded one none (only warnings).
//! - Every diagnostic points into the file: line 0 and column 0 for the whole file, or
//!   a 1-based line of the text (or the line just past its end, where a parser stops)
//!   and a 1-based column at most one past that line's last character.
//! - The diagnostics come in file order.

use crate::config::{self, Diagnostic, Host};
use crate::control::{build_snapshot, IdRegistry, NeighborTable, Overrides};

/// The name every diagnostic of a fuzz input carries.
pub const FILE: &str = "fuzz.yaml";

/// Loads `data` as a configuration file and checks the invariants above (panics when one
/// does not hold). Input that is not UTF-8 is refused before parsing by
/// [`config::load`], so it is skipped here.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let host = Host::with_cpus(8);
    match config::from_str(FILE, text, &host) {
        Err(diags) => {
            assert!(
                diags.iter().any(Diagnostic::is_error),
                "a refused file without an error: {diags:?}"
            );
            check_diagnostics(text, &diags);
        }
        Ok(loaded) => {
            assert!(
                !loaded.warnings.iter().any(Diagnostic::is_error),
                "a loaded file with an error: {:?}",
                loaded.warnings
            );
            check_diagnostics(text, &loaded.warnings);
            let cfg = &loaded.config;
            let macs: Vec<[u8; 6]> = (0..cfg.ports.len())
                .map(|i| [0x02, 0, 0, 0, 0, i as u8])
                .collect();
            let workers = cfg.workers.cores.len().clamp(1, 64) as u16;
            // a valid file may still be refused here (e.g. a neighbour it cannot reach);
            // it must not panic
            let _ = build_snapshot(
                cfg,
                &macs,
                &mut IdRegistry::default(),
                &mut NeighborTable::default(),
                &Overrides::default(),
                workers,
                0,
                1,
            );
        }
    }
}

/// Panics unless every diagnostic points into `text` and they come in file order.
pub fn check_diagnostics(text: &str, diags: &[Diagnostic]) {
    let lines = yaml_lines(text);
    for d in diags {
        assert_eq!(d.file, FILE, "{d:?}");
        assert!(
            !d.message.trim().is_empty(),
            "a diagnostic without a message: {d:?}"
        );
        if d.line == 0 {
            assert_eq!(d.col, 0, "a whole-file diagnostic with a column: {d:?}");
            continue;
        }
        let line = d.line as usize;
        assert!(
            line <= lines.len() + 1,
            "line {line} of a {}-line file: {d:?}",
            lines.len()
        );
        let chars = lines.get(line - 1).map_or(0, |l| l.chars().count());
        assert!(
            d.col >= 1 && d.col as usize <= chars + 1,
            "column {} of a {chars}-character line {line}: {d:?}",
            d.col
        );
    }
    assert!(
        diags
            .windows(2)
            .all(|w| (w[0].line, w[0].col) <= (w[1].line, w[1].col)),
        "diagnostics out of file order: {diags:?}"
    );
}

/// `text`'s lines as YAML counts them: a line ends at CR LF, LF or a CR alone (YAML 1.2,
/// 5.4), so a file with old Mac line ends has as many lines as an editor shows.
fn yaml_lines(text: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(['\r', '\n']) {
        lines.push(&rest[..i]);
        let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
        rest = &rest[i + skip..];
    }
    lines.push(rest);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The repository's configuration files, good and bad (`configs/`, `configs/bad/`).
    fn repo_configs() -> Vec<String> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut texts = Vec::new();
        for dir in [root.clone(), root.join("bad")] {
            let mut paths: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
                .collect();
            paths.sort();
            texts.extend(paths.iter().map(|p| std::fs::read_to_string(p).unwrap()));
        }
        assert!(texts.len() > 20, "the configs were not found");
        texts
    }

    #[test]
    fn lines_end_as_yaml_ends_them() {
        assert_eq!(yaml_lines("a\r\nb\rc\nd"), ["a", "b", "c", "d"]);
        assert_eq!(yaml_lines("a\n"), ["a", ""]);
        assert_eq!(yaml_lines(""), [""]);
    }

    /// A lone CR ends a line for the parser (the fuzzer's first find, in the check
    /// itself): the position of the NUL after it is on line 2.
    #[test]
    fn a_position_after_a_lone_cr_is_on_the_next_line() {
        run(b"\r# a comment longer than the next line\t\0\nx: 1\n");
    }

    /// The fuzzer's second find, a real one: an L7 timeout past what a `Duration` holds
    /// panicked at load (`Duration::from_secs_f64`); now it is refused where it is.
    #[test]
    fn a_timeout_too_long_for_the_clock_is_refused_at_its_place() {
        let text = "#Refu\nl7:\n  timeouts:\n    connect: 1444444444444444444444442\n";
        run(text.as_bytes());
        let diags = config::from_str(FILE, text, &Host::with_cpus(8)).unwrap_err();
        assert!(
            diags
                .iter()
                .any(|d| d.is_error() && d.line == 4 && d.message.contains("at most 8760h")),
            "{diags:?}"
        );
    }

    #[test]
    fn every_repository_config_keeps_the_invariants() {
        for text in repo_configs() {
            run(text.as_bytes());
        }
    }

    /// Values an operator's typo or a hostile file may put anywhere in a file.
    const ODD: &[&str] = &[
        "-1",
        "0",
        "65536",
        "4294967296",
        "18446744073709551616",
        "99999999999999999999999",
        "1e309",
        "NaN",
        "~",
        "null",
        "[]",
        "{}",
        "[[[[",
        "}",
        "&a x",
        "*a",
        "*undefined",
        "0x10",
        "0o7",
        "1ns",
        "-5s",
        "999999999h",
        "1.5.5s",
        "::",
        "1.2.3.4/33",
        "fd00::/129",
        "\u{feff}",
        "\u{ffff}",
        "é",
        "\t",
        "!!binary aGk=",
        "!!int x",
        "? x",
        "- - -",
        "|",
        ">-",
        "'",
        "\"",
        "#",
        ": :",
        "\n",
        "\n  - ",
        "true",
        "yes",
        "02:00:00:00:00",
        "256.0.0.1",
        "0-0",
        "1-",
        "0,0",
        "\\",
        "%",
        "%YAML 1.2\n---",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// A repository config with a span replaced by an odd value: loaded or refused
        /// with located diagnostics, never a panic.
        #[test]
        fn an_edited_config_is_loaded_or_refused_with_positions(
            file in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            cut in 0usize..12,
            odd in prop::sample::select(ODD),
        ) {
            let texts = repo_configs();
            let text = &texts[file.index(texts.len())];
            let chars: Vec<char> = text.chars().collect();
            let start = at.index(chars.len() + 1);
            let end = (start + cut).min(chars.len());
            let edited: String = chars[..start]
                .iter()
                .chain(odd.chars().collect::<Vec<_>>().iter())
                .chain(chars[end..].iter())
                .collect();
            run(edited.as_bytes());
        }
    }
}
