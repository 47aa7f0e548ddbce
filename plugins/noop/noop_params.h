// Settings and task parameters of the noop executor, parsed from the JSON the host hands over.
//
// Pure functions with no I/O, shared by validate() and execute(). parseParams() runs once per
// attempt on the benchmark hot path, so it parses into stack memory and allocates only for a
// long `message`. Boost.JSON stays in the .cc.
#ifndef TASKHUB_PLUGINS_NOOP_NOOP_PARAMS_H
#define TASKHUB_PLUGINS_NOOP_NOOP_PARAMS_H

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace taskhub::plugins::noop {

// Checks the [plugins.noop] table of taskhub.toml (engine-owned keys already removed): noop has
// no settings, so any key is an error. Throws std::invalid_argument naming the key.
void checkConfig(std::string_view config_json);

// One task's parameters.
struct Params {
    uint64_t sleep_ms = 0;              // 0: complete inside execute()
    bool fail = false;                  // report TH_OUTCOME_FAILED instead of SUCCEEDED
    int32_t exit_code = 0;              // as given, else 1 when fail and 0 otherwise
    std::optional<std::string> message; // as given, else a default that names the outcome
    // Published through the host's set_output before completing, in this order.
    std::vector<std::pair<std::string, std::string>> outputs;
};

// Parses and checks one task's parameters. Throws sdk::InvalidParam with the offending key
// (empty when the problem is the whole object) and a message that says what would be right.
Params parseParams(std::string_view params_json);

} // namespace taskhub::plugins::noop

#endif // TASKHUB_PLUGINS_NOOP_NOOP_PARAMS_H
