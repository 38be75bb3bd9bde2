//! The repository's Markdown pages, included as documentation so that `cargo test --doc`
//! compiles every ```` ```rust ```` block of them and runs the ones that are not marked
//! `no_run`. A snippet that does not compile as written fails CI.
//!
//! The pages are included only under `cfg(doctest)`; [`PAGES`] lists them, and a test
//! checks that every Markdown file of `docs/` (and the README) is in it, so a new page
//! cannot be left out.

/// Every page whose Rust blocks are compiled here, relative to the repository root.
pub const PAGES: &[&str] = &[
    "README.md",
    "backend-fast-cpu/README.md",
    "docs/ARCHITECTURE.md",
    "docs/CONTRACT-NOTES.md",
    "docs/GPU-TESTING.md",
    "docs/PERFORMANCE.md",
    "docs/RELIABILITY.md",
    "docs/USAGE.md",
    "docs/WEB.md",
    "docs/ZERO-COPY.md",
    "wasm-host/README.md",
];

/// Stamps one item per page with the page as its documentation.
macro_rules! pages {
    ($($name:ident => $path:literal,)*) => {
        $(
            #[cfg(doctest)]
            #[doc = include_str!(concat!("../../", $path))]
            pub struct $name;
        )*
        /// The pages the macro included, in its order (checked against [`PAGES`]).
        #[cfg(test)]
        const INCLUDED: &[&str] = &[$($path),*];
    };
}

pages! {
    Readme => "README.md",
    FastCpuReadme => "backend-fast-cpu/README.md",
    Architecture => "docs/ARCHITECTURE.md",
    ContractNotes => "docs/CONTRACT-NOTES.md",
    GpuTesting => "docs/GPU-TESTING.md",
    Performance => "docs/PERFORMANCE.md",
    Reliability => "docs/RELIABILITY.md",
    Usage => "docs/USAGE.md",
    Web => "docs/WEB.md",
    ZeroCopy => "docs/ZERO-COPY.md",
    WasmHostReadme => "wasm-host/README.md",
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_page_of_docs_and_the_readme_is_compiled() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut want: Vec<String> = std::fs::read_dir(root.join("docs"))
            .expect("docs/")
            .filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.ends_with(".md").then(|| format!("docs/{name}"))
            })
            .collect();
        want.push("README.md".into());
        for page in &want {
            assert!(
                PAGES.contains(&page.as_str()),
                "{page} is not in doc-snippets' PAGES: its Rust blocks would go uncompiled"
            );
        }
        assert_eq!(PAGES, INCLUDED, "PAGES and the pages! list differ");
        for page in PAGES {
            assert!(root.join(page).is_file(), "{page} does not exist");
        }
    }

    #[test]
    fn every_rust_block_is_in_an_included_page_and_none_is_ignored() {
        // `ignore` would skip the compile this crate exists for.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut blocks = 0;
        for page in PAGES {
            let text = std::fs::read_to_string(root.join(page)).expect("page");
            for line in text.lines() {
                let fence = line.trim_start();
                if let Some(info) = fence.strip_prefix("```rust") {
                    blocks += 1;
                    assert!(
                        !info.contains("ignore"),
                        "{page}: a Rust block marked {info:?}"
                    );
                }
            }
        }
        assert!(
            blocks >= 6,
            "only {blocks} Rust blocks found: the scan is broken"
        );
    }
}
