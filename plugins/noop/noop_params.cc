#include "noop_params.h"

#include <taskhub/plugin.hpp>

#include "param_support.h"

#include <boost/json.hpp>

#include <array>
#include <limits>
#include <stdexcept>
#include <vector>

namespace taskhub::plugins::noop {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 5> kParamKeys = {"sleep_ms", "fail", "exit_code",
                                                        "message", "outputs"};

bool isNameStart(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }

// The output name rule of th_host_api.set_output: [A-Za-z_][A-Za-z0-9_]*.
bool isOutputName(std::string_view name) {
    if (name.empty() || !isNameStart(name[0])) return false;
    for (char c : name.substr(1))
        if (!isNameStart(c) && !(c >= '0' && c <= '9')) return false;
    return true;
}

[[noreturn]] void wrongType(std::string_view key, const char* expected, const json::value& v) {
    throw sdk::InvalidParam(std::string(key), "'" + std::string(key) + "' must be " + expected +
                                                  ", found " + kindName(v));
}

} // namespace

void checkConfig(std::string_view config_json) {
    json::error_code ec;
    json::value root = json::parse(config_json, ec);
    if (ec)
        throw std::invalid_argument("[plugins.noop] settings are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw std::invalid_argument(std::string("[plugins.noop] settings must be a table, found ") +
                                    kindName(root));
    const json::object& settings = root.get_object();
    if (!settings.empty())
        throw std::invalid_argument("unknown setting '" + std::string(settings.begin()->key()) +
                                    "' in [plugins.noop] (noop has no settings)");
}

Params parseParams(std::string_view params_json) {
    // A task without parameters (the host passes "{}") costs no parse.
    if (params_json == "{}") return Params{};
    // Small parameter objects parse entirely inside this buffer: no heap allocation.
    unsigned char storage[1024];
    json::monotonic_resource resource(storage, sizeof storage);
    json::error_code ec;
    json::value root = json::parse(params_json, ec, &resource);
    if (ec)
        throw sdk::InvalidParam("",
                                "parameters for plugin noop are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw sdk::InvalidParam(
            "", std::string("parameters for plugin noop must be a table, found ") + kindName(root));

    Params params;
    bool has_exit_code = false;
    for (const auto& [key, value] : root.get_object()) {
        if (key == "sleep_ms") {
            if (value.is_uint64()) {
                params.sleep_ms = value.get_uint64();
            } else if (value.is_int64()) {
                if (value.get_int64() < 0)
                    throw sdk::InvalidParam("sleep_ms",
                                            "'sleep_ms' must be a non-negative integer "
                                            "(milliseconds), found " +
                                                std::to_string(value.get_int64()));
                params.sleep_ms = static_cast<uint64_t>(value.get_int64());
            } else {
                wrongType(key, "a non-negative integer (milliseconds)", value);
            }
        } else if (key == "fail") {
            if (!value.is_bool()) wrongType(key, "a boolean", value);
            params.fail = value.get_bool();
        } else if (key == "exit_code") {
            if (!value.is_int64() && !value.is_uint64()) wrongType(key, "an integer", value);
            // uint64 holds only values above INT64_MAX, so it is always out of range.
            if (!value.is_int64() || value.get_int64() < std::numeric_limits<int32_t>::min() ||
                value.get_int64() > std::numeric_limits<int32_t>::max())
                throw sdk::InvalidParam("exit_code",
                                        "'exit_code' must be an integer from -2147483648 to "
                                        "2147483647, found " +
                                            json::serialize(value));
            params.exit_code = static_cast<int32_t>(value.get_int64());
            has_exit_code = true;
        } else if (key == "message") {
            if (!value.is_string()) wrongType(key, "a string", value);
            params.message.emplace(value.get_string());
        } else if (key == "outputs") {
            if (!value.is_object()) wrongType(key, "a table of strings", value);
            for (const auto& [name, text] : value.get_object()) {
                if (!isOutputName(name))
                    throw sdk::InvalidParam("outputs", "output name '" + std::string(name) +
                                                           "' in 'outputs' must match "
                                                           "[A-Za-z_][A-Za-z0-9_]*");
                if (!text.is_string())
                    throw sdk::InvalidParam("outputs", "output '" + std::string(name) +
                                                           "' in 'outputs' must be a string, found " +
                                                           kindName(text));
                params.outputs.emplace_back(name, text.get_string());
            }
        } else {
            throw sdk::InvalidParam(std::string(key), "unknown parameter '" + std::string(key) +
                                                          "' for plugin noop" +
                                                          acceptedHint(key, kParamKeys));
        }
    }
    if (!has_exit_code) params.exit_code = params.fail ? 1 : 0;
    return params;
}

} // namespace taskhub::plugins::noop
