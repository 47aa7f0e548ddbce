// Header-only helper for plugin validation messages: find the accepted key a user probably meant.
//
//     auto best = taskhub::sdk::closestKey("comand", {"command", "cwd"});   // "command"
//
// Part of the SDK so that every plugin (and taskhubd itself) suggests keys the same way.
#ifndef TASKHUB_SUGGEST_HPP
#define TASKHUB_SUGGEST_HPP

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace taskhub::sdk {

// Edit distance counting an adjacent transposition as one edit (optimal string alignment), so
// both "comand" and "comamnd" are one edit from "command".
inline size_t editDistance(std::string_view a, std::string_view b) {
    std::vector<size_t> prev2(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        cur[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                cur[j] = std::min(cur[j], prev2[j - 2] + 1);
        }
        std::swap(prev2, prev);
        std::swap(prev, cur);
    }
    return prev[b.size()];
}

// The accepted key closest to `key` within two edits (the first of equals), or "" when none is.
template <class Range>
std::string closestKey(std::string_view key, const Range& accepted) {
    std::string best;
    size_t best_distance = 3;
    for (const auto& candidate : accepted) {
        size_t d = editDistance(key, candidate);
        if (d < best_distance) {
            best_distance = d;
            best = std::string(candidate);
        }
    }
    return best;
}

inline std::string closestKey(std::string_view key, std::initializer_list<std::string_view> accepted) {
    return closestKey<std::initializer_list<std::string_view>>(key, accepted);
}

} // namespace taskhub::sdk

#endif // TASKHUB_SUGGEST_HPP
