#!/usr/bin/env python3
"""The generated shell completion scripts (build/ctl/completions/), driven as the shells drive them.

bash: runs `bash --norc` with bash-completion's bash_completion and the generated script, sets
COMP_WORDS, COMP_CWORD, COMP_LINE and COMP_POINT as readline does (words split at blanks and at
the COMP_WORDBREAKS characters : and =; bash-completion turns hostcomplete off, which takes @ out) and calls the completion function, then reads COMPREPLY.
Live candidates come from a stand-in for taskhubctl (COMP_WORDS[0], as a user's typed path would
be) that prints hostile names and records its arguments; tests/system/test_completion.py uses the
real daemon. zsh and fish: `zsh -n`, `fish -n`, and fish's own `complete -C`.

Usage: completion_shells_test.py TASKHUBCTL COMPLETIONS_DIR [unittest args]
"""
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

CTL = None
DIR = None
BASH_COMPLETION = "/usr/share/bash-completion/bash_completion"
MISSING = "(scripts/install-deps installs bash-completion, zsh and fish)"

# A stand-in for taskhubctl: logs its arguments, answers --candidates with hostile names.
FAKE_CTL = r"""#!/bin/sh
printf '%s\n' "$*" >> "$LOG"
for kind; do :; done
case "$kind" in
workflows) printf '%s\n' 'nightly' 'nightly-backup' 'night $(touch pwned) *' 'night`touch pwned2`' ;;
runs) printf '%s\n' 'nightly@20261122T105402Z' 'nightly@20261122T105402Z-m6aa5' ;;
plugins) printf '%s\n' 'shell' 'noop' ;;
zones) printf '%s\n' 'Europe/Berlin' 'Europe/Busingen' 'America/New_York' ;;
esac
"""


def write_fake_ctl(directory):
    """FAKE_CTL as directory/taskhubctl; returns its path."""
    path = os.path.join(directory, "taskhubctl")
    with open(path, "w") as f:
        f.write(FAKE_CTL)
    os.chmod(path, 0o755)
    return path


def words_of(line):
    """COMP_WORDS as readline gives them for line: split at blanks (a backslash keeps a blank) and
    at : and = (each its own word), an empty last word when the line ends in a blank."""
    words, cur, i = [], "", 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            cur += line[i:i + 2]
            i += 2
            continue
        if c == " ":
            if cur:
                words.append(cur)
            cur = ""
        elif c in ":=":
            if cur:
                words.append(cur)
            words.append(c)
            cur = ""
        else:
            cur += c
        i += 1
    words.append(cur)
    return words


def bash_complete(script, line, words, cwd, env=None):
    """The completions bash offers at the end of line for COMP_WORDS words, with bash-completion
    and the completion script loaded, sorted."""
    driver = (
        'source "$1"; source "$2"; shift 2\n'
        'COMP_LINE=$1 COMP_POINT=${#1} COMP_CWORD=$(($# - 2)); shift\n'
        'COMP_WORDS=("$@")\n'
        'COMPREPLY=()\n'
        '_taskhubctl "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\0" "${COMPREPLY[@]}"\n')
    out = subprocess.run(["bash", "--norc", "--noprofile", "-c", driver, "bash", BASH_COMPLETION, script, line] + words,
                         cwd=cwd, env=env, capture_output=True, check=True, timeout=30)
    if out.stderr:
        raise AssertionError("bash wrote on stderr: %r" % out.stderr)
    return sorted(x for x in out.stdout.decode().split("\0") if x)


class Bash(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.exists(BASH_COMPLETION):
            raise RuntimeError("no " + BASH_COMPLETION + " " + MISSING)
        cls.tmp = tempfile.mkdtemp(prefix="th-comp-")
        cls.fake = write_fake_ctl(cls.tmp)
        cls.log = os.path.join(cls.tmp, "log")
        for name in ("alpha.toml", "alpine.toml", "beta.txt"):
            open(os.path.join(cls.tmp, name), "w").close()
        os.mkdir(os.path.join(cls.tmp, "albums"))

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def complete(self, line, prog=None):
        """The completions bash offers at the end of line (which starts with the command)."""
        words = words_of(line)
        if prog:
            words[0] = prog
            line = prog + line[line.index(" "):]
        return bash_complete(os.path.join(DIR, "taskhubctl"), line, words, self.tmp, dict(os.environ, LOG=self.log))

    def test_commands_from_a_prefix(self):
        self.assertEqual(self.complete("taskhubctl st"), ["status"])
        self.assertEqual(self.complete("taskhubctl r"), ["reload", "resume", "retry", "run", "runs"])
        self.assertIn("completion", self.complete("taskhubctl "))

    def test_two_word_commands(self):
        self.assertIn("plugin", self.complete("taskhubctl plu"))
        self.assertEqual(self.complete("taskhubctl plugin "), ["check", "show"])
        self.assertEqual(self.complete("taskhubctl notify "), ["test"])
        # the command after global options and their values
        self.assertEqual(self.complete("taskhubctl --socket /x.sock --json plugin s"), ["show"])
        self.assertEqual(self.complete("taskhubctl --socket=/x.sock --json plugin s"), ["show"])

    def test_options_of_a_command(self):
        self.assertEqual(self.complete("taskhubctl logs --"),
                         ["--attempt", "--config", "--follow", "--help", "--json", "--no-color", "--no-pager",
                          "--socket", "--utc", "--version"])
        self.assertIn("-f", self.complete("taskhubctl logs -"))
        self.assertEqual(self.complete("taskhubctl plugin check --ti"), ["--timeout"])
        self.assertEqual(self.complete("taskhubctl next --dst"), ["--dst-fold", "--dst-gap"])
        # before a command: the global options only
        self.assertEqual(self.complete("taskhubctl --"), ["--config", "--help", "--json", "--no-color", "--no-pager",
                                                          "--socket", "--utc", "--version"])

    def test_option_values_from_a_fixed_set(self):
        self.assertEqual(self.complete("taskhubctl runs --state "),
                         ["cancelled", "failed", "lost", "paused", "queued", "running", "skipped", "succeeded"])
        self.assertEqual(self.complete("taskhubctl runs --state f"), ["failed"])
        self.assertEqual(self.complete("taskhubctl runs --state=su"), ["succeeded"])
        self.assertEqual(self.complete("taskhubctl next --dst-gap "), ["run_after", "skip"])
        self.assertEqual(self.complete("taskhubctl next --dst-fold s"), ["second"])
        self.assertEqual(self.complete("taskhubctl completion "), ["bash", "fish", "zsh"])
        self.assertEqual(self.complete("taskhubctl completion --candidates "),
                         ["plugins", "runs", "workflows", "zones"])
        # a free value: nothing, not the options
        self.assertEqual(self.complete("taskhubctl runs --limit "), [])

    def test_tz_zones(self):
        # the real taskhubctl: the system's tzdata
        zones = self.complete("taskhubctl next --tz Europe/Be", prog=CTL)
        self.assertIn("Europe/Berlin", zones)
        self.assertIn("Europe/Belgrade", zones)
        self.assertTrue(all(z.startswith("Europe/Be") for z in zones), zones)

    def test_files(self):
        self.assertEqual(self.complete("taskhubctl validate al"), ["albums", "alpha.toml", "alpine.toml"])
        self.assertEqual(self.complete("taskhubctl validate alpha.toml b"), ["beta.txt"])  # FILE...
        self.assertEqual(self.complete("taskhubctl --config al"), ["albums", "alpha.toml", "alpine.toml"])

    def test_live_names_are_data(self):
        open(self.log, "w").close()
        got = self.complete("taskhubctl --socket /s.sock run night", prog=self.fake)
        self.assertEqual(got, [r"night\ \$\(touch\ pwned\)\ \*", r"night\`touch\ pwned2\`", "nightly",
                               "nightly-backup"])
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pwned")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "pwned2")))
        # the socket typed on the line is passed on
        with open(self.log) as f:
            self.assertEqual(f.read(), "--socket /s.sock completion --candidates workflows\n")
        # a prefix typed with the shell's quoting matches the quoted candidate
        self.assertEqual(self.complete(r"taskhubctl run night\ \$", prog=self.fake),
                         [r"night\ \$\(touch\ pwned\)\ \*"])

    def test_run_ids(self):
        self.assertEqual(self.complete("taskhubctl watch nightly@2026", prog=self.fake),
                         ["nightly@20261122T105402Z", "nightly@20261122T105402Z-m6aa5"])
        self.assertEqual(self.complete("taskhubctl logs nig", prog=self.fake),
                         ["nightly@20261122T105402Z", "nightly@20261122T105402Z-m6aa5"])
        # logs RUN TASK: no names for TASK
        self.assertEqual(self.complete("taskhubctl logs nightly@20261122T105402Z ", prog=self.fake), [])

    def test_workflow_or_run_and_plugins(self):
        got = self.complete("taskhubctl show nightly", prog=self.fake)
        self.assertIn("nightly-backup", got)
        self.assertIn("nightly@20261122T105402Z", got)
        self.assertEqual(self.complete("taskhubctl plugin show s", prog=self.fake), ["shell"])


# zsh's completion builtins stood in for, printing what they are given (one word a line; zsh
# itself matches them against the word), so that _taskhubctl runs outside a completion widget.
ZSH_DRIVER = r"""
compdef() {}
compadd() { if [[ $1 == -a ]]; then print -rl -- ${(P)2}; else [[ $1 == -- ]] && shift; print -rl -- "$@"; fi }
_describe() { print -rl -- ${${(P)4}%%:*} }
_files() { print -r -- '<files>' }
compset() {}
source $1
shift
words=("$@")
CURRENT=$#words
_taskhubctl
"""


class ZshAndFish(unittest.TestCase):
    def test_zsh_parses_its_script(self):
        if not shutil.which("zsh"):
            self.fail("no zsh " + MISSING)
        subprocess.run(["zsh", "-n", os.path.join(DIR, "_taskhubctl")], check=True, timeout=30)

    def test_zsh_offers(self):
        if not shutil.which("zsh"):
            self.fail("no zsh " + MISSING)
        tmp = tempfile.mkdtemp(prefix="th-comp-")
        self.addCleanup(shutil.rmtree, tmp)
        fake = write_fake_ctl(tmp)

        def offers(*words):
            out = subprocess.run(["zsh", "-f", "-c", ZSH_DRIVER, "zsh", os.path.join(DIR, "_taskhubctl")] + list(words),
                                 cwd=tmp, env=dict(os.environ, LOG=os.path.join(tmp, "log")),
                                 capture_output=True, text=True, check=True, timeout=30)
            self.assertEqual(out.stderr, "")
            return out.stdout.splitlines()

        self.assertIn("status", offers("taskhubctl", "st"))
        self.assertEqual(offers("taskhubctl", "plugin", ""), ["show", "check"])
        self.assertEqual(offers("taskhubctl", "runs", "--state", ""),
                         ["queued", "running", "paused", "succeeded", "failed", "cancelled", "skipped", "lost"])
        self.assertEqual(offers("taskhubctl", "next", "--dst-gap=r"), ["run_after", "skip"])
        self.assertEqual(offers("taskhubctl", "logs", "--")[:3], ["--attempt", "--follow", "-f"])
        self.assertEqual(offers("taskhubctl", "validate", "a.toml", "b"), ["<files>"])
        self.assertIn("Europe/Berlin", offers(CTL, "next", "--tz", "Europe/Be"))
        # the daemon's names reach compadd as whole words, unevaluated
        self.assertEqual(offers(fake, "--socket", "/s.sock", "run", "ni"),
                         ["nightly", "nightly-backup", "night $(touch pwned) *", "night`touch pwned2`"])
        self.assertFalse(os.path.exists(os.path.join(tmp, "pwned")))
        with open(os.path.join(tmp, "log")) as f:
            self.assertEqual(f.read(), "--socket /s.sock completion --candidates workflows\n")

    def test_fish_parses_and_completes(self):
        if not shutil.which("fish"):
            self.fail("no fish " + MISSING)
        script = os.path.join(DIR, "taskhubctl.fish")
        subprocess.run(["fish", "--no-config", "-n", script], check=True, timeout=30)

        def complete(line, cwd=None, env=None):
            out = subprocess.run(["fish", "--no-config", "-c", 'source $argv[1]; complete -C $argv[2]',
                                  script, line], cwd=cwd, env=env, capture_output=True, text=True, check=True,
                                 timeout=30)
            self.assertEqual(out.stderr, "")
            return sorted(l.split("\t")[0] for l in out.stdout.splitlines())

        self.assertEqual(complete("taskhubctl st"), ["status"])
        self.assertEqual(complete("taskhubctl plugin "), ["check", "show"])
        self.assertEqual(complete("taskhubctl runs --state f"), ["failed"])
        self.assertIn("--attempt", complete("taskhubctl logs --"))
        self.assertEqual(complete("taskhubctl next --dst-gap "), ["run_after", "skip"])
        zones = complete(CTL + " next --tz Europe/Be")
        self.assertIn("Europe/Berlin", zones)
        tmp = tempfile.mkdtemp(prefix="th-comp-")
        self.addCleanup(shutil.rmtree, tmp)
        fake = write_fake_ctl(tmp)
        got = complete(fake + " --socket /s.sock run ni", cwd=tmp, env=dict(os.environ, LOG=os.path.join(tmp, "log")))
        self.assertEqual(got, ["night $(touch pwned) *", "night`touch pwned2`", "nightly", "nightly-backup"])
        self.assertFalse(os.path.exists(os.path.join(tmp, "pwned")))
        with open(os.path.join(tmp, "log")) as f:
            self.assertEqual(f.read(), "--socket /s.sock completion --candidates workflows\n")


if __name__ == "__main__":
    CTL, DIR = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    unittest.main(argv=[sys.argv[0]] + sys.argv[3:])
