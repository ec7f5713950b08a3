//! The Debian package built by scripts/package, unpacked into a throwaway root (`dpkg -x`):
//! its binary runs, its man page reads, its units and examples are the repository's own.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deb() -> PathBuf {
    PathBuf::from(std::env::var("PEERSTAGE_DEB").expect("PEERSTAGE_DEB: the .deb to check"))
}

fn unpacked() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let status = Command::new("dpkg")
        .arg("-x")
        .arg(deb())
        .arg(root.path())
        .status()
        .expect("dpkg");
    assert!(status.success(), "dpkg -x {}", deb().display());
    root
}

fn output(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|err| panic!("{cmd:?}: {err}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the package: scripts/package builds it and runs this"]
fn the_installed_package_runs_and_its_man_page_reads() {
    let root = unpacked();
    let root = root.path();
    let version = output(Command::new(root.join("usr/bin/peerstage")).arg("--version"));
    assert_eq!(
        version.trim(),
        format!("peerstage {}", env!("CARGO_PKG_VERSION"))
    );
    let page = output(
        Command::new("man")
            .arg("-l")
            .arg(root.join("usr/share/man/man1/peerstage.1.gz"))
            .env("MANWIDTH", "100")
            // man-db keeps bold/underline overstrikes when this is set at all, even to 0.
            .env_remove("MAN_KEEP_FORMATTING"),
    );
    for section in [
        "SYNOPSIS",
        "SHARED OPTIONS",
        "STATUS LETTERS",
        "SYSTEMD",
        "EXIT STATUS",
    ] {
        assert!(page.contains(section), "the man page lacks {section}");
    }
    // The installed demo runs too: the binary is whole.
    let demo = output(Command::new(root.join("usr/bin/peerstage")).args(["run", "--demo"]));
    assert!(demo.contains("T (completed)"), "{demo}");

    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (installed, source) in [
        (
            "usr/lib/systemd/system/peerstage.service",
            "systemd/peerstage.service",
        ),
        (
            "usr/lib/systemd/system/peerstage.timer",
            "systemd/peerstage.timer",
        ),
        (
            "usr/share/doc/peerstage/examples/cback3.conf",
            "fixtures/cback3.conf",
        ),
        (
            "usr/share/doc/peerstage/examples/pool.toml",
            "fixtures/pool.toml",
        ),
        (
            "usr/share/bash-completion/completions/peerstage",
            "completions/peerstage.bash",
        ),
    ] {
        assert_eq!(
            std::fs::read(root.join(installed)).unwrap(),
            std::fs::read(repo.join(source)).unwrap(),
            "{installed}"
        );
    }
}
