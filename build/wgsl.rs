//! WGSL kernels at build time: validate every variant with naga and emit the
//! Rust constants the wgpu backend launches them by.
//!
//! Each `kernels/wgsl/<stem>.wgsl` (except `common.wgsl`) declares the
//! constants that select its variants in header lines of the form
//!
//! ```text
//! // @const DT: u32 = 0 | 1 | 2
//! // @const B_NK: bool = false | true
//! ```
//!
//! and may pull in shared WGSL libraries (files that are no kernel of their
//! own, e.g. the tiled GEMM core) with `// @include <file>.wgsl` lines.
//! A variant's source is `prelude + common.wgsl + "\n" + (library + "\n")* +
//! kernel`, where the prelude is one `const NAME: TYPE = VALUE;` line per
//! declared constant.
//! The backend builds exactly the same text at run time (through the
//! generated `Variant::prelude` and `compose`), and every variant in the
//! cartesian product of the declared values is parsed and validated here, so
//! a shader error fails the build on a machine with no GPU.
//!
//! Generated, per kernel, in `$OUT_DIR/wgsl_kernels.rs`: a module `<stem>`
//! with `FILE`, `SOURCE`, one `ENTRY_<NAME>` and `<NAME>_WORKGROUP_SIZE` per
//! entry point, and a typed `Variant` struct (one field per constant, in
//! snake case) with `prelude()` and `is_validated()`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

const COMMON: &str = "common.wgsl";

/// One `// @const` header line.
struct Param {
    name: String,
    ty: Ty,
    values: Vec<String>,
}

#[derive(Clone, Copy)]
enum Ty {
    U32,
    I32,
    Bool,
}

impl Ty {
    fn parse(s: &str) -> Option<Ty> {
        match s {
            "u32" => Some(Ty::U32),
            "i32" => Some(Ty::I32),
            "bool" => Some(Ty::Bool),
            _ => None,
        }
    }
    fn wgsl(self) -> &'static str {
        match self {
            Ty::U32 => "u32",
            Ty::I32 => "i32",
            Ty::Bool => "bool",
        }
    }
    /// WGSL literal suffix (the Rust `Display` of the value + this).
    fn suffix(self) -> &'static str {
        match self {
            Ty::U32 => "u",
            Ty::I32 => "i",
            Ty::Bool => "",
        }
    }
}

fn prelude_line(param: &Param, value: &str) -> String {
    format!(
        "const {}: {} = {}{};\n",
        param.name,
        param.ty.wgsl(),
        value,
        param.ty.suffix()
    )
}

fn parse_params(file: &str, source: &str) -> Result<Vec<Param>, String> {
    let mut params = Vec::new();
    for (line_no, line) in source.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("// @const ") else {
            continue;
        };
        let bad = || format!("{file}:{}: malformed `// @const` line: {line}", line_no + 1);
        let (name, rest) = rest.split_once(':').ok_or_else(bad)?;
        let (ty, values) = rest.split_once('=').ok_or_else(bad)?;
        let ty = Ty::parse(ty.trim()).ok_or_else(bad)?;
        let values: Vec<String> = values.split('|').map(|v| v.trim().to_string()).collect();
        for v in &values {
            let ok = match ty {
                Ty::U32 => v.parse::<u32>().is_ok(),
                Ty::I32 => v.parse::<i32>().is_ok(),
                Ty::Bool => v == "true" || v == "false",
            };
            if !ok {
                return Err(bad());
            }
        }
        let name = name.trim().to_string();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "{file}:{}: constant names are UPPER_SNAKE: {line}",
                line_no + 1
            ));
        }
        params.push(Param { name, ty, values });
    }
    Ok(params)
}

/// The `// @include <file>` lines of a kernel, in order.
fn parse_includes(file: &str, source: &str) -> Result<Vec<String>, String> {
    let mut includes = Vec::new();
    for (line_no, line) in source.lines().enumerate() {
        if let Some(name) = line.trim_start().strip_prefix("// @include ") {
            let name = name.trim();
            if !name.ends_with(".wgsl") || name.contains('/') || name == COMMON {
                return Err(format!(
                    "{file}:{}: `// @include` takes a sibling .wgsl library: {line}",
                    line_no + 1
                ));
            }
            includes.push(name.to_string());
        }
    }
    Ok(includes)
}

/// Every combination of the declared values (one empty combination when
/// the kernel declares none).
fn variants(params: &[Param]) -> Vec<Vec<&str>> {
    let mut out: Vec<Vec<&str>> = vec![Vec::new()];
    for param in params {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                param.values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v.as_str());
                    next
                })
            })
            .collect();
    }
    out
}

fn validate(file: &str, label: &str, source: &str) -> Result<naga::Module, String> {
    let module = naga::front::wgsl::parse_str(source).map_err(|e| {
        format!(
            "{file} ({label}): WGSL parse error:\n{}",
            e.emit_to_string(source)
        )
    })?;
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| {
        format!(
            "{file} ({label}): WGSL validation error:\n{}",
            e.emit_to_string(source)
        )
    })?;
    Ok(module)
}

/// Validates every kernel variant and writes the generated Rust file.
pub fn run(manifest_dir: &Path, out_dir: &Path) -> Result<(), String> {
    let dir = manifest_dir.join("kernels").join("wgsl");
    let common_path = dir.join(COMMON);
    let common =
        fs::read_to_string(&common_path).map_err(|e| format!("{}: {e}", common_path.display()))?;
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .filter(|p| p.file_name().is_some_and(|n| n != COMMON))
        .collect();
    files.sort();
    let mut sources = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .and_then(|s| s.to_str())
            .ok_or_else(|| format!("{}: file name is not UTF-8", path.display()))?
            .to_string();
        let source = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if !source.trim_start().starts_with("//") {
            return Err(format!(
                "kernels/wgsl/{name}: every WGSL file opens with a comment: what it computes, \
                 the work split, its limits"
            ));
        }
        sources.push((path, name, source));
    }
    // Libraries: every file some kernel includes. They are validated as
    // part of each kernel that includes them, never alone.
    let mut libraries = std::collections::BTreeSet::new();
    for (_, name, source) in &sources {
        for include in parse_includes(&format!("kernels/wgsl/{name}"), source)? {
            if !sources.iter().any(|(_, n, _)| *n == include) {
                return Err(format!("kernels/wgsl/{name}: includes missing {include}"));
            }
            libraries.insert(include);
        }
    }

    let mut code = String::new();
    writeln!(
        code,
        "// @generated by build.rs (build/wgsl.rs) — do not edit."
    )
    .unwrap();
    writeln!(
        code,
        "/// `kernels/wgsl/common.wgsl`, prepended to every kernel.\npub const COMMON: &str = include_str!({:?});",
        common_path.display().to_string()
    )
    .unwrap();
    writeln!(
        code,
        "/// The exact text compiled for one variant: the same composition the build validated.\npub fn compose(prelude: &str, libraries: &[&str], kernel: &str) -> String {{ let mut s = format!(\"{{prelude}}{{COMMON}}\\n\"); for library in libraries {{ s.push_str(library); s.push('\\n'); }} s.push_str(kernel); s }}"
    )
    .unwrap();

    for (path, name, source) in &sources {
        if libraries.contains(name) {
            continue;
        }
        let stem = name.trim_end_matches(".wgsl").to_string();
        let file = format!("kernels/wgsl/{name}");
        let params = parse_params(&file, source)?;
        let includes = parse_includes(&file, source)?;
        let mut library_text = String::new();
        for include in &includes {
            let (_, _, text) = sources
                .iter()
                .find(|(_, n, _)| n == include)
                .expect("checked");
            library_text.push_str(text);
            library_text.push('\n');
        }
        let mut first: Option<naga::Module> = None;
        for combo in variants(&params) {
            let prelude: String = params
                .iter()
                .zip(&combo)
                .map(|(p, v)| prelude_line(p, v))
                .collect();
            let label: Vec<String> = params
                .iter()
                .zip(&combo)
                .map(|(p, v)| format!("{}={v}", p.name))
                .collect();
            let full = format!("{prelude}{common}\n{library_text}{source}");
            let kernel_start = full.lines().count() - source.lines().count() + 1;
            let module = validate(&file, &label.join(" "), &full).map_err(|e| {
                format!(
                    "{e}\n(line numbers count in the composed variant: prelude, common.wgsl, \
                     included libraries, then {file} from line {kernel_start})"
                )
            })?;
            first.get_or_insert(module);
        }
        let module = first.expect("at least one variant");

        writeln!(code, "\n/// `{file}`").unwrap();
        writeln!(code, "pub mod {stem} {{").unwrap();
        writeln!(code, "    pub const FILE: &str = {file:?};").unwrap();
        writeln!(
            code,
            "    pub const SOURCE: &str = include_str!({:?});",
            path.display().to_string()
        )
        .unwrap();
        let libs: Vec<String> = includes
            .iter()
            .map(|name| format!("include_str!({:?})", dir.join(name).display().to_string()))
            .collect();
        writeln!(
            code,
            "    /// The `// @include`d libraries, in order.\n    pub const LIBRARIES: &[&str] = &[{}];",
            libs.join(", ")
        )
        .unwrap();
        for ep in &module.entry_points {
            let upper = ep.name.to_ascii_uppercase();
            writeln!(code, "    pub const ENTRY_{upper}: &str = {:?};", ep.name).unwrap();
            writeln!(
                code,
                "    pub const {upper}_WORKGROUP_SIZE: [u32; 3] = {:?};",
                ep.workgroup_size
            )
            .unwrap();
        }
        writeln!(
            code,
            "    /// The constants that select a variant (the `// @const` lines)."
        )
        .unwrap();
        writeln!(
            code,
            "    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]"
        )
        .unwrap();
        writeln!(code, "    pub struct Variant {{").unwrap();
        for p in &params {
            writeln!(
                code,
                "        pub {}: {},",
                p.name.to_ascii_lowercase(),
                p.ty.wgsl()
            )
            .unwrap();
        }
        writeln!(code, "    }}").unwrap();
        writeln!(code, "    impl Variant {{").unwrap();
        writeln!(
            code,
            "        /// One `const` line per constant, as validated by the build."
        )
        .unwrap();
        writeln!(code, "        pub fn prelude(&self) -> String {{").unwrap();
        writeln!(code, "        #[allow(unused_mut)]").unwrap();
        writeln!(code, "            let mut s = String::new();").unwrap();
        for p in &params {
            writeln!(
                code,
                "            s.push_str(&format!(\"const {}: {} = {{}}{};\\n\", self.{}));",
                p.name,
                p.ty.wgsl(),
                p.ty.suffix(),
                p.name.to_ascii_lowercase()
            )
            .unwrap();
        }
        writeln!(code, "            s").unwrap();
        writeln!(code, "        }}").unwrap();
        writeln!(
            code,
            "        /// True when every value is one the build validated."
        )
        .unwrap();
        writeln!(code, "        pub fn is_validated(&self) -> bool {{").unwrap();
        let mut checks = vec!["true".to_string()];
        for p in &params {
            let values: Vec<String> = p.values.iter().map(|v| v.to_string()).collect();
            checks.push(format!(
                "[{}].contains(&self.{})",
                values.join(", "),
                p.name.to_ascii_lowercase()
            ));
        }
        writeln!(code, "            {}", checks.join(" && ")).unwrap();
        writeln!(code, "        }}").unwrap();
        writeln!(code, "    }}").unwrap();
        writeln!(code, "}}").unwrap();
    }
    fs::write(out_dir.join("wgsl_kernels.rs"), code)
        .map_err(|e| format!("{}: {e}", out_dir.display()))?;
    Ok(())
}
