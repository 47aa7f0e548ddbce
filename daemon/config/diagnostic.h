// A user-facing problem found while loading configuration: where (file and line) and what.
#ifndef TASKHUB_CONFIG_DIAGNOSTIC_H
#define TASKHUB_CONFIG_DIAGNOSTIC_H

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace taskhub::config {

struct Diagnostic {
    std::string file;
    size_t line = 0; // 0 when the problem concerns the whole file
    std::string message;

    // "file:line: message", or "file: message" without a line.
    std::string str() const {
        return line ? file + ":" + std::to_string(line) + ": " + message : file + ": " + message;
    }
};

// The first problem as "file:line: message" (what a one-line report shows), or "invalid
// configuration" when there is none.
inline std::string firstProblem(const std::vector<Diagnostic>& problems) {
    return problems.empty() ? "invalid configuration" : problems.front().str();
}

// How a loader reads a file when the caller decides who may have written it (taskhubd: the trust
// rule of common/trust.h, checked on the opened descriptor). Fills *text and returns nullopt, or
// returns why the file is refused or cannot be read (one sentence naming the path).
using FileReader = std::function<std::optional<std::string>(const std::filesystem::path&, std::string* text)>;
// Why a directory whose files a loader reads is refused (taskhubd: the same trust rule), or nullopt.
using DirCheck = std::function<std::optional<std::string>(const std::filesystem::path&)>;

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_DIAGNOSTIC_H
