#!/usr/bin/env python3
"""Keeps the documentation in step with the code on two facts a reader relies on:

1. Log ids. Every id the daemon (daemon/) and the plugin runner (runner/, whose lines the daemon
   logs) emit is documented in the table of docs/operations.md, section "Logging", and every id
   documented there, or named as a log id anywhere in README.md, docs/ and docs/man/, is emitted. An id is
   the leading token (MODULE_WHAT) of the format string of a spdlog call: spdlog::LEVEL("ID ...")
   or spdlog::log(LEVEL, "ID ..."); a format "PREFIX_{} ..." whose first argument chooses among
   string literals (c ? "FAILED" : "CANCELLED") emits PREFIX_FAILED and PREFIX_CANCELLED. A spdlog
   call whose format string does not start with an id is reported too, since no doc can name its
   message, except where RELAYS says the line was written (with its id) elsewhere.
2. The plugin ABI version. TH_ABI_VERSION_MAJOR/MINOR in plugin_api/include/taskhub/plugin_api.h
   is what README.md, docs/operations.md, docs/control-protocol.md, docs/plugin-abi.md and
   docs/plugin-guide.md give as the current version (ABI_CLAIMS), and no doc names a newer one.
3. The systemd unit listed in docs/operations.md is systemd/taskhubd.service as it is.
4. The journal catalog systemd/taskhub.catalog is what catalog_text() makes of the log id table:
   one entry per documented id, under the MESSAGE_ID taskhubd sends for it (FNV-1a 128 of
   "taskhub:" + id, common/journal.h), with the table's level and meaning. So every emitted id
   (check 1) has an entry with the right MESSAGE_ID, and the catalog cannot drift from the docs.

Usage: check_docs.py [SOURCE_DIR] (default: the repository this file is in). Exit 0 when all
holds; else 1, with one line per problem. check_docs.py --write-catalog [SOURCE_DIR] rewrites
systemd/taskhub.catalog from docs/operations.md (after a change to the table)."""

import os
import re
import sys

WRITE_CATALOG = "--write-catalog" in sys.argv[1:]
ARGS = [a for a in sys.argv[1:] if a != "--write-catalog"]
ROOT = os.path.abspath(ARGS[0] if ARGS else os.path.join(os.path.dirname(__file__), "..", ".."))
LOG_SOURCES = ("daemon", "runner")
ID = r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+"
LEVELS = ("trace", "debug", "info", "warn", "error", "critical")
# Files whose spdlog::...("{}", text) calls log lines formatted elsewhere, and where.
RELAYS = {
    os.path.join("daemon", "plugin_host", "remote_plugin.cc"):
        "a runner's log frames: lines the runner (runner/main.cc, scanned) wrote with their ids",
}
# Backquoted tokens in the docs that look like log ids of a module but are something else.
NOT_LOG_IDS = {
    "SCHED_IDLE": "the Linux scheduling policy (sched(7)), in docs/benchmarks.md",
    "NOTIFY_SOCKET": "systemd's environment variable (sd_notify(3)), in docs/man/taskhubd.8.md",
    "JOURNAL_STREAM": "systemd's environment variable (systemd.exec(5)), in docs/man/taskhubd.8.md",
}


def read(rel):
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return f.read()


def strip_comments(code):
    """C++ text with comments blanked (newlines kept, for line numbers); literals are kept."""
    out, i, n = [], 0, len(code)
    while i < n:
        c = code[i]
        if c == '"' or c == "'":
            j = i + 1
            while j < n and code[j] != c:
                j += 2 if code[j] == "\\" else 1
            out.append(code[i:j + 1])
            i = j + 1
        elif code.startswith("R\"", i) and (i == 0 or not (code[i - 1].isalnum() or code[i - 1] == "_")):
            delim = code[i + 2:code.index("(", i)]
            end = code.index(")" + delim + '"', i) + len(delim) + 2
            out.append(code[i:end])
            i = end
        elif code.startswith("//", i):
            j = code.find("\n", i)
            i = n if j < 0 else j
        elif code.startswith("/*", i):
            j = code.index("*/", i) + 2
            out.append(re.sub(r"[^\n]", " ", code[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_argument(code, i):
    """The index of the top-level ',' or ')' that ends the call argument starting at i."""
    depth = 0
    while i < len(code):
        c = code[i]
        if c in "\"'":
            j = i + 1
            while code[j] != c:
                j += 2 if code[j] == "\\" else 1
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                return i
            depth -= 1
        elif c == "," and depth == 0:
            return i
        i += 1
    raise ValueError("unbalanced call")


CALL = re.compile(r"\bspdlog::(?:(%s)|(log))\s*\(" % "|".join(LEVELS))


def emitted_ids():
    """{id: [file:line, ...]} and a list of problems (calls without an id)."""
    ids, problems = {}, []
    for top in LOG_SOURCES:
        for dirpath, _, files in os.walk(os.path.join(ROOT, top)):
            for name in sorted(files):
                if not name.endswith((".cc", ".h", ".cpp", ".hpp")):
                    continue
                path = os.path.join(dirpath, name)
                rel = os.path.relpath(path, ROOT)
                code = strip_comments(read(rel))
                for m in CALL.finditer(code):
                    i = m.end()
                    if m.group(2):  # spdlog::log(level, fmt, ...): the format is the second argument
                        i = skip_argument(code, i) + 1
                    where = "%s:%d" % (rel, code.count("\n", 0, m.start()) + 1)
                    lit = re.match(r'\s*"((?:[^"\\]|\\.)*)"', code[i:])
                    fmt = lit.group(1) if lit else None
                    head = re.match(r"(%s)(?: |$)" % ID, fmt) if lit else None
                    chosen = re.match(r"(%s_)\{\}(?: |$)" % ID, fmt) if lit else None
                    if head:
                        ids.setdefault(head.group(1), []).append(where)
                    elif chosen:
                        # The id's last part is the first argument, a choice (c ? "A" : "B"): the
                        # literals it chooses among.
                        start = i + lit.end() + 1
                        arg = code[start:skip_argument(code, start)]
                        parts = re.findall(r'[?:]\s*"([^"]*)"', arg)
                        if not parts or not all(re.fullmatch(r"[A-Z0-9]+(?:_[A-Z0-9]+)*", p) for p in parts):
                            problems.append("%s: the log id %s{} is completed by %r, not by string literals"
                                            % (where, chosen.group(1), arg.strip()))
                        for p in parts:
                            ids.setdefault(chosen.group(1) + p, []).append(where)
                    elif fmt == "{}" and rel in RELAYS:
                        continue
                    else:
                        problems.append("%s: a log line without an id (its format string must start with "
                                        "MODULE_WHAT and a space)" % where)
    return ids, problems


def documented_rows():
    """[(ids, level, meaning)] of the table in docs/operations.md, section "Logging" (the rows
    whose first column names ids), or None without the section."""
    text = read("docs/operations.md")
    m = re.search(r"^## Logging\n(.*?)(?=^## )", text, re.M | re.S)
    if not m:
        return None
    rows = []
    for line in m.group(1).splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 4:
            ids = re.findall(r"`(%s)`" % ID, cells[1])
            if ids:
                rows.append((ids, cells[2].strip(), "|".join(cells[3:-1]).strip()))
    return rows


def documented_ids():
    """The ids in the first column of the table in docs/operations.md, section "Logging"."""
    rows = documented_rows()
    return None if rows is None else {i for ids, _, _ in rows for i in ids}


def message_id(log_id):
    """The MESSAGE_ID taskhubd sends with a log id (common/journal.h messageId())."""
    h, prime = 0x6C62272E07BB014262B821756295C58D, (1 << 88) + 0x13B
    for c in ("taskhub:" + log_id).encode():
        h = ((h ^ c) * prime) % (1 << 128)
    return "%032x" % h


def plain(markdown):
    """Table text as plain text: links become their text, backquotes go."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    return text.replace("`", "").replace("\\|", "|")


def catalog_text():
    """systemd/taskhub.catalog as the log id table says (see check 4)."""
    out = ["# The journal catalog of taskhubd: `journalctl -x` shows the entry of a line's MESSAGE_ID.\n"
           "# Generated from docs/operations.md, section Logging, by tests/docs/check_docs.py --write-catalog;\n"
           "# do not edit (ctest -R docs checks that it matches).\n"]
    for ids, level, meaning in documented_rows() or []:
        levels = [l.strip() for l in level.split(" / ")]
        for k, i in enumerate(ids):
            lvl = levels[k] if len(levels) == len(ids) else level
            first = re.split(r"; |: |\. ", plain(meaning), maxsplit=1)[0]
            out.append("-- %s\n"
                       "Subject: taskhubd %s: %s\n"
                       "Defined-By: taskhub\n"
                       "Support: file:/usr/share/doc/taskhub/operations.md\n"
                       "Documentation: file:/usr/share/doc/taskhub/operations.md\n"
                       "\n"
                       "Log id %s (level %s): %s.\n"
                       "\n"
                       "Find such lines with journalctl TASKHUB_LOG_ID=%s; docs/operations.md, section\n"
                       "Logging, lists every log id.\n"
                       % (message_id(i), i, first[:100], i, plain(lvl), plain(meaning).rstrip("."), i))
    return "\n".join(out)


def check_catalog(problems):
    try:
        text = read("systemd/taskhub.catalog")
    except FileNotFoundError:
        problems.append("systemd/taskhub.catalog is missing; make it with tests/docs/check_docs.py --write-catalog")
        return
    if text != catalog_text():
        problems.append("systemd/taskhub.catalog differs from the log id table of docs/operations.md; "
                        "run tests/docs/check_docs.py --write-catalog")


def docs_files():
    """README.md, docs/*.md and the man pages' sources docs/man/*.md."""
    out = ["README.md"]
    for sub in ("docs", os.path.join("docs", "man")):
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            if name.endswith(".md"):
                out.append(os.path.join(sub, name))
    return out


def check_log_ids(problems):
    ids, call_problems = emitted_ids()
    problems += call_problems
    documented = documented_ids()
    if documented is None:
        problems.append("docs/operations.md: no section '## Logging'")
        return
    for i in sorted(set(ids) - documented):
        problems.append("log id %s (emitted at %s) is not in the table of docs/operations.md, section Logging"
                        % (i, ", ".join(ids[i])))
    for i in sorted(documented - set(ids)):
        problems.append("log id %s is documented in docs/operations.md but never emitted by daemon/ or runner/" % i)
    # Named elsewhere: a backquoted token that starts like a log id (a module prefix of the ids
    # emitted) and reads as one, e.g. `SCHED_FIRING_MISSED …` in a troubleshooting table.
    prefixes = {i.split("_")[0] + "_" for i in ids}
    for rel in docs_files():
        for n, line in enumerate(read(rel).splitlines(), 1):
            for tok in re.findall(r"`(%s)(?=[ `])" % ID, line):
                if tok.startswith(tuple(prefixes)) and tok not in ids and tok not in NOT_LOG_IDS:
                    problems.append("%s:%d names the log id %s, which the code never emits" % (rel, n, tok))


# Where the docs give the current ABI version: (file, pattern with groups major, minor, what).
ABI_CLAIMS = [
    ("README.md", r"the executor plugin C ABI (\d+)\.(\d+)", "the docs table's plugin-abi.md line"),
    ("docs/operations.md", r"\(plugin ABI (\d+)\.(\d+)\)", "what --version prints"),
    ("docs/operations.md", r"^(?:noop|shell) +\S+ +(\d+)\.(\d+) ", "the ABI of a built-in plugin in `taskhubctl plugins`"),
    ("docs/control-protocol.md", r"the ABI version it was built against, `\"(\d+)\.(\d+)\"`", "the plugins answer's abi"),
    ("docs/plugin-abi.md", r"reference for ABI (\d+)\.(\d+) \(`TH_ABI_VERSION_MAJOR` (\d+), `TH_ABI_VERSION_MINOR` (\d+)\)",
     "the reference's version"),
    ("docs/plugin-abi.md", r"this taskhubd provides (\d+)\.(\d+)", "the refusal message's host version"),
    ("docs/plugin-guide.md", r"`TASKHUB_ABI_VERSION` \| the ABI of its headers, `(\d+)\.(\d+)`", "the CMake package's version"),
    ("docs/plugin-guide.md", r"--variable=abi_version taskhub-plugin # (\d+)\.(\d+)", "the pkg-config file's version"),
    ("docs/plugin-guide.md", r"accepted by this taskhubd's ABI (\d+)\.(\d+)", "plugin check's negotiation line"),
    ("docs/plugin-guide.md", r"^  ABI +(\d+)\.(\d+) \(magic", "plugin check's ABI of the example built with the SDK"),
]


def check_abi(problems):
    header = read("plugin_api/include/taskhub/plugin_api.h")
    major = re.search(r"^#define TH_ABI_VERSION_MAJOR (\d+)$", header, re.M)
    minor = re.search(r"^#define TH_ABI_VERSION_MINOR (\d+)$", header, re.M)
    if not major or not minor:
        problems.append("plugin_api/include/taskhub/plugin_api.h: TH_ABI_VERSION_MAJOR/MINOR not found")
        return
    current = (int(major.group(1)), int(minor.group(1)))
    for rel, pattern, what in ABI_CLAIMS:
        found = list(re.finditer(pattern, read(rel), re.M))
        if not found:
            problems.append("%s: %s (pattern %r) is gone; update ABI_CLAIMS in %s" % (rel, what, pattern, __file__))
        for m in found:
            groups = [int(g) for g in m.groups()]
            for k in range(0, len(groups), 2):
                if tuple(groups[k:k + 2]) != current:
                    problems.append("%s: %s says ABI %d.%d, plugin_api.h says %d.%d"
                                    % (rel, what, groups[k], groups[k + 1], *current))
    # No doc gives a newer version as what a plugin or taskhubd has ("requires host ABI 1.99" in
    # the example of a refusal is a plugin's demand, not a version that exists).
    for rel in docs_files():
        for n, line in enumerate(read(rel).splitlines(), 1):
            for a, b in re.findall(r"(?<!requires host )\bABI (\d+)\.(\d+)\b", line):
                if (int(a), int(b)) > current:
                    problems.append("%s:%d names ABI %s.%s, newer than plugin_api.h's %d.%d" % (rel, n, a, b, *current))


def check_unit(problems):
    text = read("docs/operations.md")
    m = re.search(r"`systemd/taskhubd\.service`, as installed for prefix `/usr`:\n\n```ini\n(.*?)```", text, re.S)
    if not m:
        problems.append("docs/operations.md: the listing of systemd/taskhubd.service is gone")
    elif m.group(1) != read("systemd/taskhubd.service"):
        problems.append("docs/operations.md: the listing of systemd/taskhubd.service differs from the file")


def main():
    if WRITE_CATALOG:
        with open(os.path.join(ROOT, "systemd", "taskhub.catalog"), "w", encoding="utf-8") as f:
            f.write(catalog_text())
        print("wrote systemd/taskhub.catalog")
        return 0
    problems = []
    check_log_ids(problems)
    check_abi(problems)
    check_unit(problems)
    check_catalog(problems)
    for p in problems:
        print(p)
    if problems:
        print("%d problem(s); see tests/docs/check_docs.py" % len(problems))
        return 1
    print("log ids, the plugin ABI version, the systemd unit and the journal catalog in the docs match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
