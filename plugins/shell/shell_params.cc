#include "shell_params.h"

#include <taskhub/plugin.hpp>

#include "param_support.h"

#include <boost/json.hpp>

#include <array>
#include <limits>
#include <stdexcept>
#include <vector>

namespace taskhub::plugins::shell {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 3> kParamKeys = {"argv", "command", "cwd"};
constexpr std::array<std::string_view, 1> kConfigKeys = {"kill_grace"};

// A string parameter that reaches a C API, where an embedded NUL would silently cut it short.
std::string cString(std::string_view key, const json::value& v, std::string_view what) {
    const std::string name(key);
    if (!v.is_string())
        throw sdk::InvalidParam(name, "'" + name + "' must be a string, found " + kindName(v));
    const json::string& s = v.get_string();
    if (s.find('\0') != json::string::npos)
        throw sdk::InvalidParam(name, "'" + name + "' must not contain NUL characters (" +
                                          std::string(what) + ")");
    return std::string(s);
}

} // namespace

std::optional<uint64_t> parseDuration(std::string_view text) { return parseDurationMs(text); }

Config parseConfig(std::string_view config_json) {
    json::error_code ec;
    json::value root = json::parse(config_json, ec);
    if (ec)
        throw std::invalid_argument("[plugins.shell] settings are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw std::invalid_argument(
            std::string("[plugins.shell] settings must be a table, found ") + kindName(root));

    Config config;
    for (const auto& [key, value] : root.get_object()) {
        if (key != "kill_grace")
            throw std::invalid_argument("unknown setting '" + std::string(key) +
                                        "' in [plugins.shell]" + acceptedHint(key, kConfigKeys));
        const char* expected =
            "a duration: a whole number followed by ms, s, m, h or d, like \"5s\" or \"500ms\"";
        if (!value.is_string())
            throw std::invalid_argument(std::string("[plugins.shell] kill_grace must be ") +
                                        expected + ", found " + kindName(value));
        std::string_view text = value.get_string();
        std::optional<uint64_t> ms = parseDuration(text);
        if (!ms)
            throw std::invalid_argument("[plugins.shell] kill_grace must be " +
                                        std::string(expected) + ", found '" + std::string(text) +
                                        "'");
        config.kill_grace_ms = *ms;
        config.kill_grace = std::string(text);
    }
    return config;
}

Params parseParams(std::string_view params_json) {
    // A value may hold any bytes but NUL, valid UTF-8 or not: a file name from a drop box is
    // passed on exactly as it is.
    json::parse_options bytes;
    bytes.allow_invalid_utf8 = true;
    json::error_code ec;
    json::value root = json::parse(params_json, ec, {}, bytes);
    if (ec)
        throw sdk::InvalidParam("",
                                "parameters for plugin shell are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw sdk::InvalidParam("", std::string("parameters for plugin shell must be a table, ") +
                                        "found " + kindName(root));

    Params params;
    bool has_command = false;
    bool has_argv = false;
    for (const auto& [key, value] : root.get_object()) {
        if (key == "argv") {
            const char* what = "the program and its arguments, e.g. [\"cp\", \"--\", \"${params.file}\", \"/srv/in\"]";
            if (!value.is_array() || value.get_array().empty())
                throw sdk::InvalidParam("argv", "'argv' must be a non-empty array of strings (" + std::string(what) +
                                                    "), found " + (value.is_array() ? "an empty array" : kindName(value)));
            for (const json::value& e : value.get_array()) {
                if (!e.is_string())
                    throw sdk::InvalidParam("argv", std::string("'argv' elements must be strings, found ") + kindName(e));
                params.argv.push_back(cString("argv", e, what));
            }
            if (params.argv.front().empty())
                throw sdk::InvalidParam("argv", "'argv' must start with the program to run, found an empty string");
            has_argv = true;
        } else if (key == "command") {
            params.command = cString(key, value, "the shell command line to run");
            if (params.command.empty())
                throw sdk::InvalidParam(
                    "command", "'command' must not be empty (the shell command line to run)");
            has_command = true;
        } else if (key == "cwd") {
            params.cwd = cString(key, value, "the working directory");
            if (params.cwd.empty() || params.cwd.front() != '/')
                throw sdk::InvalidParam("cwd", "'cwd' must be an absolute path, found '" +
                                                   params.cwd + "'");
        } else {
            throw sdk::InvalidParam(std::string(key), "unknown parameter '" + std::string(key) +
                                                          "' for plugin shell" +
                                                          acceptedHint(key, kParamKeys));
        }
    }
    if (has_command && has_argv)
        throw sdk::InvalidParam("argv", "'command' and 'argv' cannot both be set (command is a line for /bin/sh, "
                                        "argv a program and its arguments run without a shell; keep one)");
    if (!has_command && !has_argv)
        throw sdk::InvalidParam(
            "command", "missing required parameter 'command' (the shell command line to run) or 'argv' (a program "
                       "and its arguments, run without a shell)");
    return params;
}

} // namespace taskhub::plugins::shell
