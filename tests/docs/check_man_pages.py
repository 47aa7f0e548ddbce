#!/usr/bin/env python3
"""Checks the built man pages (man/CMakeLists.txt makes them from docs/).

check_man_pages.py render PAGE...
    Each page renders with `man --warnings -l` at 80 columns, in a UTF-8 and in the C locale,
    without a word on stderr (groff's and tbl's warnings: lines that cannot be broken or adjusted,
    tables wider than the line, unknown characters or macros), and its NAME section is one that
    mandb can index (lexgrog: "name - description").

check_man_pages.py taskhubd TASKHUBD MARKDOWN
    taskhubd(8) (its Markdown source) documents every option `taskhubd --help` lists, and
    taskhubd accepts every option the page documents: `taskhubd OPTION [VALUE] --help` exits 0
    (an unknown option exits 2 before --help is read). VALUE is the first `code` of the option's
    description (a valid example of it).

Exit 0 when all holds; else 1 with one line per problem. man and lexgrog come from man-db,
groff from groff-base (scripts/install-deps installs both).
"""

import os
import re
import shutil
import subprocess
import sys


def render(pages):
    problems = []
    for tool in ("man", "lexgrog"):
        if not shutil.which(tool):
            return ["%s not found: install the Debian package man-db (scripts/install-deps does)" % tool]
    for page in pages:
        if not os.path.isfile(page):
            problems.append("%s: no such page (is the target 'man' built?)" % page)
            continue
        for locale in ("C.UTF-8", "C"):
            env = dict(os.environ, MANWIDTH="80", LC_ALL=locale, LANG=locale, MAN_KEEP_FORMATTING="")
            env.pop("MANPAGER", None)
            env.pop("PAGER", None)
            r = subprocess.run(["man", "--warnings", "-l", page], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace", timeout=60)
            if r.returncode != 0:
                problems.append("%s (%s): man exited %d" % (page, locale, r.returncode))
            for line in r.stderr.splitlines():
                problems.append("%s (%s): %s" % (page, locale, line))
            if not r.stdout.strip():
                problems.append("%s (%s): renders as nothing" % (page, locale))
        r = subprocess.run(["lexgrog", page], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           errors="replace", timeout=60)
        name = os.path.basename(page).rsplit(".", 1)[0]
        if r.returncode != 0 or not re.search(r': "%s - \S' % re.escape(name), r.stdout):
            problems.append("%s: lexgrog finds no NAME line 'name - description': %s" % (page, r.stdout.strip()))
    return problems


def documented_options(markdown):
    """[(names, value_example)] of the list items of section OPTIONS: "- `--config` *FILE*, `-c`
    *FILE*: ... (default `/etc/...`)"."""
    with open(markdown, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r"^## OPTIONS\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        return None
    out = []
    for item in re.findall(r"^- (`-.*?)(?=^- |\Z)", m.group(1), re.M | re.S):
        term, _, desc = item.partition(": ")
        names = re.findall(r"`(-[^`]*)`", term)
        takes_value = "*" in term
        example = re.search(r"`([^`]+)`", desc)
        out.append((names, example.group(1) if takes_value and example else None, takes_value))
    return out


def check_taskhubd(binary, markdown):
    problems = []
    documented = documented_options(markdown)
    if documented is None:
        return ["%s: no section '## OPTIONS'" % markdown]
    names = {n for names, _, _ in documented for n in names}
    usage = subprocess.run([binary, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=60)
    if usage.returncode != 0:
        problems.append("taskhubd --help exited %d" % usage.returncode)
    for opt in sorted(set(re.findall(r"(?<![\w-])(--?[a-z][a-z-]*)", usage.stdout))):
        if opt not in names:
            problems.append("taskhubd --help lists %s, which %s does not document" % (opt, markdown))
    for option_names, example, takes_value in documented:
        for n in option_names:
            argv = [binary, n] + ([example] if takes_value else []) + ["--help"]
            if takes_value and example is None:
                problems.append("%s: option %s takes a value but its description gives no `example`" % (markdown, n))
                continue
            r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=60)
            if r.returncode != 0:
                problems.append("%s documents %s, but `%s` exits %d: %s"
                                % (markdown, n, " ".join(argv[1:]), r.returncode, r.stdout.strip().splitlines()[:1]))
    return problems


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "render":
        problems = render(sys.argv[2:])
    elif len(sys.argv) == 4 and sys.argv[1] == "taskhubd":
        problems = check_taskhubd(sys.argv[2], sys.argv[3])
    else:
        print(__doc__)
        return 2
    for p in problems:
        print(p)
    if problems:
        print("%d problem(s); see tests/docs/check_man_pages.py" % len(problems))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
