// The rules for task outputs, the small name/value pairs an attempt publishes for later tasks
// (`${tasks.ID.outputs.NAME}`): through th_host_api.set_output, or as `::set-output NAME=value`
// lines in its output (engine/task_output.h). Both ways meet the same rules here, so they can
// be merged into one set per attempt.
//
// Threading: an OutputSet is a plain value; callers synchronise.
#ifndef TASKHUB_PLUGIN_HOST_OUTPUTS_H
#define TASKHUB_PLUGIN_HOST_OUTPUTS_H

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include "model/name_values.h"

namespace taskhub::plugin_host {

inline constexpr size_t kMaxOutputValueBytes = 4 * 1024;  // one value
inline constexpr size_t kMaxOutputsBytes = 64 * 1024;     // all names plus values of an attempt

// [A-Za-z_][A-Za-z0-9_]*
bool isOutputName(std::string_view name);

// One attempt's outputs in the order their names were first set.
class OutputSet {
public:
    // Sets name to value, replacing an earlier value of the name in place. Returns false and
    // describes the problem in *err (naming the output and the rule) when the name is invalid,
    // the value is over kMaxOutputValueBytes, or the set would grow over kMaxOutputsBytes; the
    // set is unchanged then.
    bool set(std::string_view name, std::string_view value, std::string* err);

    const model::NameValues& values() const noexcept { return values_; }
    model::NameValues take() noexcept;
    bool empty() const noexcept { return values_.empty(); }
    size_t bytes() const noexcept { return bytes_; }

private:
    model::NameValues values_;
    std::unordered_map<std::string, size_t> index_; // name -> position in values_
    size_t bytes_ = 0;                              // sum of name and value sizes
};

} // namespace taskhub::plugin_host

#endif // TASKHUB_PLUGIN_HOST_OUTPUTS_H
