#include "direct_exec.h"

#include <algorithm>
#include <iterator>

namespace taskhub::plugins::shell {
namespace {

bool isBlank(char c) { return c == ' ' || c == '\t'; }

bool isPlainChar(char c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    switch (c) {
    case '-': case '_': case '.': case '/': case ',': case ':': case '+': case '@': case '%':
    case '=':
        return true;
    default:
        return false;
    }
}

// Keywords and built-ins of dash, bash and POSIX sh that a word of plain characters can spell
// (`!`, `{` or `[[` cannot pass isPlainChar anyway).
constexpr std::string_view kShellWords[] = {
    ".", ":", "alias", "bg", "bind", "break", "builtin", "caller", "case", "cd", "chdir",
    "command", "compgen", "complete", "compopt", "continue", "coproc", "declare", "dirs", "disown",
    "do", "done", "echo", "elif", "else", "enable", "esac", "eval", "exec", "exit", "export",
    "false", "fc", "fg", "fi", "for", "function", "getopts", "hash", "help", "history", "if", "in",
    "jobs", "kill", "let", "local", "login", "logout", "mapfile", "newgrp", "popd", "printf", "pushd", "pwd", "read",
    "readarray", "readonly", "return", "select", "set", "shift", "shopt", "source", "suspend",
    "test", "then", "time", "times", "trap", "true", "type", "typeset", "ulimit", "umask",
    "unalias", "unset", "until", "wait", "while",
};

bool isShellWord(std::string_view word) {
    return std::find(std::begin(kShellWords), std::end(kShellWords), word) != std::end(kShellWords);
}

} // namespace

std::optional<std::vector<std::string>> simpleCommandWords(std::string_view command) {
    std::vector<std::string> words;
    size_t i = 0;
    while (i < command.size()) {
        if (isBlank(command[i])) {
            ++i;
            continue;
        }
        size_t start = i;
        while (i < command.size() && !isBlank(command[i])) {
            if (!isPlainChar(command[i])) return std::nullopt;
            ++i;
        }
        words.emplace_back(command.substr(start, i - start));
    }
    if (words.empty()) return std::nullopt;
    const std::string& first = words.front();
    if (first.find('=') != std::string::npos) return std::nullopt;
    if ((first == "true" || first == "false") && words.size() == 1) return words;
    if (isShellWord(first)) return std::nullopt;
    return words;
}

std::vector<std::string> programCandidates(std::string_view word, std::string_view path) {
    if (word.find('/') != std::string_view::npos) return {std::string(word)};
    std::vector<std::string> candidates;
    size_t start = 0;
    while (true) {
        size_t end = path.find(':', start);
        std::string_view dir = path.substr(start, end == std::string_view::npos ? path.npos : end - start);
        std::string candidate;
        if (dir.empty()) {
            candidate = word;
        } else {
            candidate.reserve(dir.size() + 1 + word.size());
            candidate.append(dir);
            if (dir.back() != '/') candidate += '/';
            candidate.append(word);
        }
        candidates.push_back(std::move(candidate));
        if (end == std::string_view::npos) break;
        start = end + 1;
    }
    return candidates;
}

} // namespace taskhub::plugins::shell
