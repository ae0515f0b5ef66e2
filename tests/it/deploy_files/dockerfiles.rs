//! Dockerfile.api and Dockerfile.worker: multi-stage release builds into slim non-root images;
//! and the small Dockerfile reader the other checks use too.

use std::collections::{BTreeMap, BTreeSet};

use super::{API_BINARY, WORKER_BINARY, read, shell_words};

#[test]
fn dockerfiles_build_release_binaries_into_slim_non_root_images() {
    for (file, package) in [("Dockerfile.api", API_BINARY), ("Dockerfile.worker", WORKER_BINARY)] {
        let image = Dockerfile::read(file);
        let last = image.stages() - 1;
        assert!(image.stages() >= 3, "{file}: planner, builder and runtime stages");
        let run_args = |stage: Option<usize>| -> String {
            image
                .instructions
                .iter()
                .filter(|i| i.keyword == "RUN" && stage.is_none_or(|s| i.stage == s))
                .map(|i| i.args.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        let build = run_args(None);
        for needle in [
            "cargo chef prepare".to_owned(),
            format!("cargo chef cook --release --locked -p {package}"),
            format!("cargo build --release --locked -p {package}"),
            "libpq-dev".to_owned(),
        ] {
            assert!(build.contains(&needle), "{file}: no `{needle}`");
        }
        let from = image.instructions.iter().rfind(|i| i.keyword == "FROM").expect("FROM");
        assert!(from.args.starts_with("debian:bookworm-slim"), "{file}: runtime is {}", from.args);
        let runtime = run_args(Some(last));
        for package in ["libpq5", "ca-certificates"] {
            assert!(runtime.contains(package), "{file}: runtime does not install {package}");
        }
        let user = image
            .instructions
            .iter()
            .rfind(|i| i.stage == last && i.keyword == "USER")
            .map(|i| i.args.clone())
            .unwrap_or_default();
        let uid = user.split(':').next().unwrap_or_default();
        assert!(!uid.is_empty() && uid != "root" && uid != "0", "{file}: runs as {user:?}");
        assert_eq!(
            image.env().get("LOG_FORMAT").map(String::as_str),
            Some("json"),
            "{file}: LOG_FORMAT"
        );
    }
    let ignored: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(|l| l.trim().trim_start_matches("**/").trim_end_matches('/').to_owned())
        .collect();
    // .run holds the local stack's key and the bench's venv: never in a build context.
    for entry in ["target", ".git", "node_modules", "test-artifacts", ".run", ".env"] {
        assert!(ignored.contains(entry), ".dockerignore does not exclude {entry}");
    }
}

pub(super) struct Instruction {
    pub(super) stage: usize,
    pub(super) keyword: String,
    pub(super) args: String,
}

pub(super) struct Dockerfile {
    pub(super) instructions: Vec<Instruction>,
}

impl Dockerfile {
    pub(super) fn read(relative: &str) -> Self {
        let mut instructions = Vec::new();
        let mut pending = String::new();
        let mut stage = 0;
        for line in read(relative).lines() {
            let trimmed = line.trim();
            if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
                continue;
            }
            if let Some(continued) = trimmed.strip_suffix('\\') {
                pending.push_str(continued);
                pending.push(' ');
                continue;
            }
            pending.push_str(trimmed);
            let logical = std::mem::take(&mut pending);
            let (keyword, args) = logical.split_once(char::is_whitespace).unwrap_or((&logical, ""));
            let keyword = keyword.to_ascii_uppercase();
            if keyword == "FROM" {
                stage = instructions.iter().filter(|i: &&Instruction| i.keyword == "FROM").count();
            }
            instructions.push(Instruction { stage, keyword, args: args.trim().to_owned() });
        }
        assert!(instructions.iter().any(|i| i.keyword == "FROM"), "{relative}: no FROM");
        Self { instructions }
    }

    pub(super) fn stages(&self) -> usize {
        self.instructions.iter().filter(|i| i.keyword == "FROM").count()
    }

    /// The image's environment: ENV of the final stage.
    pub(super) fn env(&self) -> BTreeMap<String, String> {
        let last = self.stages() - 1;
        let mut env = BTreeMap::new();
        for instruction in
            self.instructions.iter().filter(|i| i.stage == last && i.keyword == "ENV")
        {
            let words = shell_words(&instruction.args);
            if words.first().is_some_and(|w| w.contains('=')) {
                for word in words {
                    let (key, value) = word.split_once('=').expect("ENV KEY=VALUE");
                    env.insert(key.to_owned(), value.to_owned());
                }
            } else if let Some((key, value)) = words.split_first() {
                env.insert(key.clone(), value.join(" "));
            }
        }
        env
    }

    pub(super) fn exposed(&self) -> Vec<u16> {
        self.instructions
            .iter()
            .filter(|i| i.keyword == "EXPOSE")
            .flat_map(|i| {
                i.args
                    .split_whitespace()
                    .map(|p| p.split('/').next().unwrap_or(p).parse().expect("EXPOSE port"))
            })
            .collect()
    }

    /// The exec-form arguments of the final stage's last `keyword` (ENTRYPOINT, CMD).
    pub(super) fn last_stage_exec(&self, keyword: &str) -> Vec<String> {
        let last = self.stages() - 1;
        self.instructions
            .iter()
            .rfind(|i| i.stage == last && i.keyword == keyword)
            .map(|i| exec_form(&i.args))
            .unwrap_or_default()
    }

    pub(super) fn healthcheck(&self) -> Option<Vec<String>> {
        let args = &self.instructions.iter().rfind(|i| i.keyword == "HEALTHCHECK")?.args;
        let at = args.find("CMD ")?;
        Some(exec_form(args[at + 4..].trim()))
    }
}

fn exec_form(args: &str) -> Vec<String> {
    if args.starts_with('[') {
        serde_json::from_str(args).unwrap_or_else(|e| panic!("exec form {args}: {e}"))
    } else {
        shell_words(args)
    }
}
