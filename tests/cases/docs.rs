//! Completions and the manual page are generated from the flags: they
//! must name every subcommand, flag and environment variable there is.

use crate::support::cmd::Mailsend;

fn stdout_of(args: &[&str]) -> String {
    Mailsend::bare().args(args).run().expect(0).stdout()
}

/// Every `--flag` that `--help` of `args` shows.
fn long_flags(args: &[&str]) -> Vec<String> {
    let mut with_help = args.to_vec();
    with_help.push("--help");
    let help = stdout_of(&with_help);
    let mut flags: Vec<String> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .filter(|w| w.starts_with("--") && w.len() > 2)
        .map(str::to_owned)
        .collect();
    flags.sort();
    flags.dedup();
    flags
}

#[test]
fn bash_completion_knows_every_subcommand_and_flag() {
    let script = stdout_of(&["completions", "bash"]);
    for word in [
        "sendmail",
        "config",
        "outbox",
        "flush",
        "completions",
        "man",
    ] {
        assert!(
            script.contains(word),
            "{word} missing from the bash completion"
        );
    }
    for flag in long_flags(&[]) {
        assert!(
            script.contains(&flag),
            "{flag} missing from the bash completion"
        );
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        assert!(
            stdout_of(&["completions", shell]).contains("attach-stdin"),
            "{shell}"
        );
    }
    Mailsend::bare()
        .args(["completions", "tcsh"])
        .run()
        .expect(64);
}

#[test]
fn the_man_page_names_every_flag_variable_and_exit_code() {
    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") || man.contains(".TH mailsend 1"),
        "roff"
    );
    for flag in long_flags(&[]) {
        let roff = flag.replace('-', "\\-");
        assert!(man.contains(&roff), "{flag} missing from the man page");
    }
    for sub in ["sendmail", "config", "outbox", "completions", "man"] {
        assert!(man.contains(sub), "subcommand {sub} missing");
    }
    // Every variable the settings code reads is documented.
    let config = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/config.rs"))
        .expect("src/config.rs");
    let mut variables: Vec<&str> = config
        .split('"')
        .filter(|s| s.starts_with("MAILSEND_") && s.len() > "MAILSEND_".len())
        .collect();
    variables.sort();
    variables.dedup();
    assert!(variables.len() > 10, "{variables:?}");
    for v in variables {
        assert!(man.contains(v), "{v} missing from ENVIRONMENT");
    }
    for code in ["64", "65", "66", "68", "69", "75", "76", "77", "78"] {
        assert!(man.contains(&format!("\\fB{code}\\fR")), "exit code {code}");
    }
}
