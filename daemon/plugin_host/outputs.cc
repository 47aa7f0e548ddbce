#include "plugin_host/outputs.h"

#include <algorithm>
#include <utility>

namespace taskhub::plugin_host {

namespace {

bool isNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

} // namespace

bool isOutputName(std::string_view name) {
    if (name.empty() || !isNameStart(name[0])) return false;
    return std::all_of(name.begin() + 1, name.end(),
                       [](char c) { return isNameStart(c) || (c >= '0' && c <= '9'); });
}

bool OutputSet::set(std::string_view name, std::string_view value, std::string* err) {
    if (!isOutputName(name)) {
        *err = "invalid output name '" + std::string(name.substr(0, 64)) +
               (name.size() > 64 ? "...'" : "'") +
               ": a name starts with a letter or '_' and continues with letters, digits or '_'";
        return false;
    }
    if (value.size() > kMaxOutputValueBytes) {
        *err = "output '" + std::string(name) + "' is " + std::to_string(value.size()) +
               " bytes, over the limit of 4 KiB (4096 bytes) for one value";
        return false;
    }
    auto it = index_.find(std::string(name));
    const size_t old_bytes = it == index_.end() ? 0 : name.size() + values_[it->second].second.size();
    const size_t new_bytes = bytes_ - old_bytes + name.size() + value.size();
    if (new_bytes > kMaxOutputsBytes) {
        *err = "output '" + std::string(name) + "' would bring the attempt's outputs to " +
               std::to_string(new_bytes) + " bytes, over the limit of 64 KiB (65536 bytes, names "
               "and values) for all outputs of an attempt";
        return false;
    }
    if (it == index_.end()) {
        index_.emplace(name, values_.size());
        values_.emplace_back(name, value);
    } else {
        values_[it->second].second.assign(value);
    }
    bytes_ = new_bytes;
    return true;
}

model::NameValues OutputSet::take() noexcept {
    bytes_ = 0;
    index_.clear();
    return std::exchange(values_, {});
}

} // namespace taskhub::plugin_host
