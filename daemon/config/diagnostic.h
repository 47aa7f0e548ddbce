// A user-facing problem found while loading configuration: where (file and line) and what.
#ifndef TASKHUB_CONFIG_DIAGNOSTIC_H
#define TASKHUB_CONFIG_DIAGNOSTIC_H

#include <cstddef>
#include <filesystem>
#include <functional>
#include <optional>
#include <stdexcept>
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

// Thrown when the daemon configuration cannot be used; carries one diagnostic per problem.
class ConfigError : public std::runtime_error {
public:
    explicit ConfigError(std::vector<Diagnostic> problems)
        : std::runtime_error(problems.empty() ? "invalid configuration" : problems.front().str()),
          problems_(std::move(problems)) {}
    const std::vector<Diagnostic>& problems() const noexcept { return problems_; }

private:
    std::vector<Diagnostic> problems_;
};

// How a loader reads a file when the caller decides who may have written it (taskhubd: the trust
// rule of common/trust.h, checked on the opened descriptor). Fills *text and returns nullopt, or
// returns why the file is refused or cannot be read (one sentence naming the path).
using FileReader = std::function<std::optional<std::string>(const std::filesystem::path&, std::string* text)>;

} // namespace taskhub::config

#endif // TASKHUB_CONFIG_DIAGNOSTIC_H
