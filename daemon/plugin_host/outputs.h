// The rules for task outputs, the name/value pairs an attempt publishes for later tasks
// (`${tasks.ID.outputs.NAME}`): through th_host_api.set_output / set_output_json, or as
// `::set-output NAME=value` / `::set-output-json NAME=JSON` lines in its output
// (engine/task_output.h). Both ways meet the same rules here, so they can be merged into one set
// per attempt.
//
// An output is a plain string or a typed JSON value (an array, object, number, true, false or
// null; a JSON string is a plain string output). Limits, each named in the error message:
//   - a plain string value at most 4 KiB, all plain outputs (names plus values) at most 64 KiB;
//   - one JSON value at most 1 MiB as given (before compaction), nested at most 64 deep;
//   - all outputs of an attempt (names plus values, plain and JSON, JSON as stored) at most 1 MiB.
//
// Threading: an OutputSet is a plain value; callers synchronise.
#ifndef TASKHUB_PLUGIN_HOST_OUTPUTS_H
#define TASKHUB_PLUGIN_HOST_OUTPUTS_H

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "model/name_values.h"

namespace taskhub::plugin_host {

inline constexpr size_t kMaxOutputValueBytes = 4 * 1024;  // one plain value
inline constexpr size_t kMaxOutputsBytes = 64 * 1024;     // all names plus plain values of an attempt
inline constexpr size_t kMaxJsonOutputBytes = 1024 * 1024; // one JSON value, as given
inline constexpr size_t kMaxAllOutputsBytes = 1024 * 1024; // all names plus values, JSON as stored
inline constexpr size_t kMaxJsonDepth = 64;                // arrays and objects nested in each other

// The offset of the first byte of text that is not part of valid UTF-8 (an overlong form, a
// surrogate, a code point over U+10FFFF, a stray or missing continuation byte), or nullopt.
std::optional<size_t> firstInvalidUtf8(std::string_view text);

// A JSON output value checked: `text` must be exactly one JSON value (whitespace around it
// allowed; no trailing text, strings valid UTF-8, nesting at most kMaxJsonDepth, at most
// kMaxJsonOutputBytes). On success *is_string tells whether it is a JSON string and *value holds
// the string's content (then) or the value's compact JSON text (model/json_text.h). On failure returns false with *err saying what is wrong and
// where, e.g. "is not valid JSON: syntax error at byte 12 of 40" (the caller names the output).
bool checkJsonValue(std::string_view text, bool* is_string, std::string* value, std::string* err);

// [A-Za-z_][A-Za-z0-9_]*
bool isOutputName(std::string_view name);

// One attempt's outputs: plain strings and typed JSON values, each list in the order its names
// were first set. A name lives in one list only: setting it as the other kind moves it.
class OutputSet {
public:
    // Sets name to a plain value, replacing an earlier value of the name. Returns false and
    // describes the problem in *err (naming the output and the rule) when the name is invalid,
    // the value is over kMaxOutputValueBytes, or the set would grow over kMaxOutputsBytes or
    // kMaxAllOutputsBytes; the set is unchanged then.
    bool set(std::string_view name, std::string_view value, std::string* err);
    // Sets name to the JSON value `json` (checkJsonValue()): a JSON string becomes a plain
    // output (set()), anything else a typed one stored compact. False with *err naming the
    // output and the rule broken (bad name, not one JSON value, a limit); unchanged then.
    bool setJson(std::string_view name, std::string_view json, std::string* err);
    // setJson() for text already checked and compacted (another OutputSet's jsonValues()).
    bool setCompactJson(std::string_view name, std::string_view compact, std::string* err);

    // Plain outputs: name -> text.
    const model::NameValues& values() const noexcept { return values_; }
    // Typed outputs: name -> compact JSON text of a non-string value.
    const model::NameValues& jsonValues() const noexcept { return json_values_; }
    model::NameValues take() noexcept;
    model::NameValues takeJson() noexcept;
    bool empty() const noexcept { return values_.empty() && json_values_.empty(); }
    size_t bytes() const noexcept { return plain_bytes_ + json_bytes_; }

private:
    bool store(std::string_view name, std::string_view value, bool json, std::string* err);

    model::NameValues values_;
    model::NameValues json_values_;
    // name -> (is JSON, position in values_ or json_values_)
    std::unordered_map<std::string, std::pair<bool, size_t>> index_;
    size_t plain_bytes_ = 0; // names and values of values_
    size_t json_bytes_ = 0;  // names and values of json_values_
};

} // namespace taskhub::plugin_host

#endif // TASKHUB_PLUGIN_HOST_OUTPUTS_H
