// Private to the config module: toml11 access with diagnostics. Includes toml11, so it must
// never be included from a public header.
#ifndef TASKHUB_CONFIG_TOML_SUPPORT_H
#define TASKHUB_CONFIG_TOML_SUPPORT_H

#include <toml.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "config/diagnostic.h"

namespace taskhub::config::detail {

using Value = toml::basic_value<toml::discard_comments, std::map, std::vector>;
using Table = Value::table_type;

// The line of a parsed value, as toml11's v.location().line() gives it, without its cost:
// toml11 counts the newlines from the start of the file each time (so asking for the line of
// every task made loading quadratic in the file's size). This indexes the newlines of the parsed
// source once, on first use, and binary-searches the value's offset in it.
class LineIndex {
public:
    size_t lineOf(const Value& v);

private:
    std::shared_ptr<const std::vector<char>> source_; // the text indexed
    std::vector<size_t> newlines_;                    // offsets of its '\n's
};

// Where v starts in its source text (0 for a value that was not parsed from one). Orders the
// values of one file as (line, column) does.
size_t sourceOffset(const Value& v);

// Collects diagnostics for one file.
class Reporter {
public:
    explicit Reporter(std::filesystem::path file) : file_(std::move(file)) {}
    void add(size_t line, std::string message) {
        problems_.push_back({file_.string(), line, std::move(message)});
    }
    // At the value's place: its line, and the file it was parsed from (a value merged in from a
    // config drop-in names the drop-in; config/config_dropins.h).
    void add(const Value& at, std::string message) {
        problems_.push_back({fileOf(at), lineOf(at), std::move(message)});
    }
    size_t lineOf(const Value& v) { return lines_.lineOf(v); }
    // The name of the text v was parsed from, or this reporter's file for a value not parsed.
    std::string fileOf(const Value& v) const;

    const std::filesystem::path& file() const { return file_; }
    std::vector<Diagnostic>& problems() { return problems_; }
    // The problems in file order (line 0, the whole file, first); a config's own file before its
    // drop-ins (F sorts before F.d/...), the drop-ins in their order.
    std::vector<Diagnostic> sorted() const {
        auto out = problems_;
        std::stable_sort(out.begin(), out.end(), [](const Diagnostic& a, const Diagnostic& b) {
            return a.file != b.file ? a.file < b.file : a.line < b.line;
        });
        return out;
    }
    bool ok() const { return problems_.empty(); }

private:
    std::filesystem::path file_;
    std::vector<Diagnostic> problems_;
    LineIndex lines_;
};

// Reads file as TOML. A text nesting deeper than kMaxTomlNesting is refused before toml11 sees
// it (config/toml_nesting.h). On failure adds one diagnostic (first line of the parser's message, with
// its line) and returns std::nullopt.
std::optional<Value> parseFile(const std::filesystem::path& file, Reporter& r);
// Same, from text already read (name is used in messages only).
std::optional<Value> parseText(const std::string& text, const std::filesystem::path& name,
                               Reporter& r);

// "string", "integer", "table", ... for messages.
std::string typeName(const Value& v);

// A suggestion suffix "; did you mean 'x'?" when a known word is within edit distance 2.
std::string didYouMean(const std::string& word, const std::set<std::string>& known);
// "a, b, c"
std::string joinKeys(const std::set<std::string>& keys);

// Typed getters: on a type mismatch they add "<what> must be <type>, found <type>" and return
// std::nullopt. `what` names the key for the message, e.g. "'retries'".
std::optional<std::string> getString(const Value& v, const std::string& what, Reporter& r);
std::optional<int64_t> getInt(const Value& v, const std::string& what, Reporter& r, int64_t min,
                              int64_t max);
std::optional<std::chrono::milliseconds> getDuration(const Value& v, const std::string& what,
                                                     Reporter& r);
std::optional<std::vector<std::string>> getStringArray(const Value& v, const std::string& what,
                                                       Reporter& r);
// An integer or a float within [min, max]; messages like getInt's.
std::optional<double> getNumber(const Value& v, const std::string& what, Reporter& r, double min,
                                double max);
// A float as text that always shows it is one: 1.0, 2.5, 1e+20.
std::string numberText(double d);
// A string, integer, float or boolean as text ("eu", "3", "2.5", "true"): the form of param values.
std::optional<std::string> getScalarText(const Value& v, const std::string& what, Reporter& r);

// Sorts a table's entries into file order (line, then column), which std::map loses.
std::vector<std::pair<std::string, const Value*>> inFileOrder(const Table& table);

// Serialises a TOML value as JSON (datetimes become ISO 8601 strings).
std::string toJson(const Table& table);

} // namespace taskhub::config::detail

#endif // TASKHUB_CONFIG_TOML_SUPPORT_H
