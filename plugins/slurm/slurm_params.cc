#include "slurm_params.h"

#include <taskhub/plugin.hpp>

#include "param_support.h"

#include <boost/json.hpp>

#include <array>
#include <limits>
#include <stdexcept>

namespace taskhub::plugins::slurm {
namespace {

namespace json = boost::json;

constexpr std::array<std::string_view, 15> kKnownParams = {
    "account", "args", "array", "command", "cpus", "extra_args", "gpus",
    "mem", "nodes", "ntasks", "partition", "qos", "script", "time_limit", "workdir"};
constexpr std::array<std::string_view, 6> kConfigKeys = {"bin_dir",       "command_timeout", "output_dir",
                                                         "poll_interval", "sacct",           "slurm_conf"};

// A template the host expands when the attempt starts: its value is checked then, not at load.
bool templated(std::string_view s) { return s.find("${") != std::string_view::npos; }

std::string text(std::string_view key, const json::value& v, std::string_view what) {
    const std::string name(key);
    if (!v.is_string())
        throw sdk::InvalidParam(name, "'" + name + "' must be a string (" + std::string(what) + "), found " +
                                          kindName(v));
    const json::string& s = v.get_string();
    if (s.find('\0') != json::string::npos)
        throw sdk::InvalidParam(name, "'" + name + "' must not contain NUL characters (" + std::string(what) + ")");
    return std::string(s);
}

// A value that becomes one sbatch option's argument: no control characters (a newline in a job
// name or an account is never meant), not empty.
std::string option(std::string_view key, const json::value& v, std::string_view what) {
    std::string s = text(key, v, what);
    if (s.empty()) throw sdk::InvalidParam(std::string(key), "'" + std::string(key) + "' must not be empty (" + std::string(what) + ")");
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7f)
            throw sdk::InvalidParam(std::string(key), "'" + std::string(key) +
                                                          "' must not contain control characters such as a newline (" +
                                                          std::string(what) + ")");
    }
    return s;
}

// Checks s against an alphabet; at load a templated value is checked when it runs.
void charset(std::string_view key, const std::string& s, std::string_view allowed, std::string_view what) {
    if (templated(s)) return;
    for (char c : s) {
        const bool ok = (c >= '0' && c <= '9') || allowed.find(c) != std::string_view::npos;
        if (!ok)
            throw sdk::InvalidParam(std::string(key), "'" + std::string(key) + "' must be " + std::string(what) +
                                                          ", found \"" + s + "\"");
    }
}

int64_t positive(std::string_view key, const json::value& v, std::string_view what) {
    if (!v.is_int64() && !v.is_uint64())
        throw sdk::InvalidParam(std::string(key), "'" + std::string(key) + "' must be a whole number (" +
                                                      std::string(what) + "), found " + kindName(v));
    const int64_t n = v.is_int64() ? v.get_int64() : static_cast<int64_t>(std::min<uint64_t>(v.get_uint64(), 1u << 30));
    if (n < 1 || n > (1 << 30))
        throw sdk::InvalidParam(std::string(key), "'" + std::string(key) + "' must be between 1 and 1073741824 (" +
                                                      std::string(what) + "), found " + std::to_string(n));
    return n;
}

// A count or a range as text ("2", "2-4"); an integer is accepted as well.
std::string countOrRange(std::string_view key, const json::value& v, std::string_view what) {
    if (v.is_int64() || v.is_uint64()) return std::to_string(positive(key, v, what));
    std::string s = option(key, v, what);
    charset(key, s, "-", what);
    return s;
}

std::string durationError(std::string_view key) {
    return "'" + std::string(key) +
           "' must be a duration: a whole number followed by s, m, h or d, like \"90m\" or \"2h\"";
}

} // namespace

std::optional<uint64_t> parseDuration(std::string_view t) { return parseDurationMs(t); }

Config parseConfig(std::string_view config_json) {
    json::error_code ec;
    json::value root = json::parse(config_json, ec);
    if (ec) throw std::invalid_argument("[plugins.slurm] settings are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw std::invalid_argument(std::string("[plugins.slurm] settings must be a table, found ") + kindName(root));
    Config c;
    for (const auto& [key, value] : root.get_object()) {
        const std::string name(key);
        auto str = [&](std::string_view what) {
            if (!value.is_string())
                throw std::invalid_argument("[plugins.slurm] " + name + " must be a string (" + std::string(what) +
                                            "), found " + kindName(value));
            return std::string(value.get_string());
        };
        auto path = [&](std::string_view what) {
            std::string p = str(what);
            if (p.empty() || p.front() != '/' || p.find('\0') != std::string::npos)
                throw std::invalid_argument("[plugins.slurm] " + name + " must be an absolute path (" +
                                            std::string(what) + "), found \"" + p + "\"");
            return p;
        };
        auto duration = [&](uint64_t min_ms) {
            const std::string t = str("a duration such as \"2s\"");
            auto ms = parseDuration(t);
            if (!ms || *ms < min_ms || *ms > 24ull * 3600 * 1000)
                throw std::invalid_argument("[plugins.slurm] " + name +
                                            " must be a duration between " + std::to_string(min_ms) +
                                            "ms and 1d, such as \"2s\" or \"500ms\", found \"" + t + "\"");
            return *ms;
        };
        if (key == "slurm_conf") {
            c.slurm_conf = path("the cluster's slurm.conf");
        } else if (key == "bin_dir") {
            c.bin_dir = path("the directory of sbatch, squeue, scancel, scontrol and sacct");
        } else if (key == "output_dir") {
            c.output_dir = path("where jobs write their output; shared with the compute nodes");
        } else if (key == "poll_interval") {
            c.poll_interval_ms = duration(100);
        } else if (key == "command_timeout") {
            c.command_timeout_ms = duration(1000);
        } else if (key == "sacct") {
            const std::string v = str("\"auto\" or \"never\"");
            if (v != "auto" && v != "never")
                throw std::invalid_argument("[plugins.slurm] sacct must be \"auto\" (ask accounting about jobs squeue no "
                                            "longer shows) or \"never\", found \"" + v + "\"");
            c.sacct = v == "auto";
        } else {
            throw std::invalid_argument("unknown setting '" + name + "' in [plugins.slurm]" +
                                        acceptedHint(key, kConfigKeys));
        }
    }
    return c;
}

Params parseParams(std::string_view params_json) {
    json::parse_options bytes;
    bytes.allow_invalid_utf8 = true;
    json::error_code ec;
    json::value root = json::parse(params_json, ec, {}, bytes);
    if (ec) throw sdk::InvalidParam("", "parameters for plugin slurm are not valid JSON: " + ec.message());
    if (!root.is_object())
        throw sdk::InvalidParam("", std::string("parameters for plugin slurm must be a table, found ") + kindName(root));
    Params p;
    for (const auto& [key, value] : root.get_object()) {
        const std::string name(key);
        if (key == "command") {
            p.command = text(key, value, "the shell command the batch job runs");
            if (p.command.empty()) throw sdk::InvalidParam(name, "'command' must not be empty (the shell command the batch job runs)");
        } else if (key == "script") {
            p.script = option(key, value, "the path of a batch script");
            if (!templated(p.script) && p.script.front() != '/')
                throw sdk::InvalidParam(name, "'script' must be an absolute path (the batch script sbatch submits), found \"" +
                                                  p.script + "\"");
        } else if (key == "args") {
            if (!value.is_array())
                throw sdk::InvalidParam(name, std::string("'args' must be an array of strings (the script's arguments), found ") +
                                                  kindName(value));
            for (const auto& a : value.get_array()) p.args.push_back(text(key, a, "one argument of the script"));
        } else if (key == "partition") {
            p.partition = option(key, value, "a partition name");
            charset(key, p.partition, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-.,", "partition names (letters, digits, '_', '-', '.', ',')");
        } else if (key == "time_limit") {
            p.time_limit = option(key, value, "how long the job may run");
            if (!templated(p.time_limit)) {
                auto ms = parseDuration(p.time_limit);
                if (!ms || *ms == 0 || *ms > 365ull * 24 * 3600 * 1000)
                    throw sdk::InvalidParam(name, durationError(key) + " (at most 365d), found \"" + p.time_limit + "\"");
                p.time_limit_minutes = (*ms + 59'999) / 60'000; // Slurm counts whole minutes
            }
        } else if (key == "cpus") {
            p.cpus = positive(key, value, "CPUs per task, --cpus-per-task");
        } else if (key == "ntasks") {
            p.ntasks = positive(key, value, "tasks, --ntasks");
        } else if (key == "mem") {
            p.mem = option(key, value, "memory per node, like \"16G\"");
            if (!templated(p.mem)) {
                size_t i = 0;
                while (i < p.mem.size() && p.mem[i] >= '0' && p.mem[i] <= '9') ++i;
                const std::string unit = p.mem.substr(i);
                if (i == 0 || !(unit.empty() || unit == "K" || unit == "M" || unit == "G" || unit == "T"))
                    throw sdk::InvalidParam(name, "'mem' must be a whole number with an optional unit K, M, G or T "
                                                  "(memory per node, like \"16G\"), found \"" + p.mem + "\"");
            }
        } else if (key == "nodes") {
            p.nodes = countOrRange(key, value, "a number of nodes or a range like \"2-4\"");
        } else if (key == "gpus") {
            const char* what = "GPUs, a number or \"type:number\" like \"a100:2\"";
            if (value.is_int64() || value.is_uint64()) {
                p.gpus = std::to_string(positive(key, value, what));
            } else {
                p.gpus = option(key, value, what);
                charset(key, p.gpus, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_-.:", what);
            }
        } else if (key == "account") {
            p.account = option(key, value, "the account the job is charged to");
        } else if (key == "qos") {
            p.qos = option(key, value, "a quality of service");
        } else if (key == "array") {
            p.array = option(key, value, "job array indices, like \"0-99%10\"");
            charset(key, p.array, ",-:%", "job array indices: numbers, ranges and steps with an optional %limit, like \"0-99%10\"");
            if (!templated(p.array) && p.array.find('%') != p.array.rfind('%'))
                throw sdk::InvalidParam(name, "'array' may hold one %limit at most, found \"" + p.array + "\"");
        } else if (key == "workdir") {
            p.workdir = option(key, value, "the job's working directory");
            if (!templated(p.workdir) && p.workdir.front() != '/')
                throw sdk::InvalidParam(name, "'workdir' must be an absolute path, found \"" + p.workdir + "\"");
        } else if (key == "extra_args") {
            if (!value.is_array())
                throw sdk::InvalidParam(name, std::string("'extra_args' must be an array of strings (more sbatch options, "
                                                          "like [\"--exclusive\"]), found ") + kindName(value));
            for (const auto& a : value.get_array()) {
                std::string arg = option(key, a, "one sbatch option, like \"--exclusive\"");
                if (arg.rfind("--", 0) != 0)
                    throw sdk::InvalidParam(name, "each of 'extra_args' must be one sbatch option starting with \"--\", "
                                                  "like \"--exclusive\" or \"--constraint=ib\", found \"" + arg + "\"");
                p.extra_args.push_back(std::move(arg));
            }
        } else {
            throw sdk::InvalidParam(name, "unknown parameter '" + name + "' for plugin slurm" + acceptedHint(key, kKnownParams));
        }
    }
    if (p.command.empty() == p.script.empty())
        throw sdk::InvalidParam(p.command.empty() ? "command" : "script",
                                p.command.empty() ? "set 'command' (the shell command the batch job runs) or 'script' (the "
                                                    "path of a batch script)"
                                                  : "'command' and 'script' cannot both be set (keep one)");
    if (!p.args.empty() && p.script.empty())
        throw sdk::InvalidParam("args", "'args' are the arguments of 'script'; with 'command', write them into the command");
    return p;
}

std::string jobName(std::string_view workflow, std::string_view task) {
    return std::string(workflow) + "." + std::string(task);
}

std::string jobComment(std::string_view run, std::string_view task, uint32_t attempt) {
    return "taskhub run=" + std::string(run) + " task=" + std::string(task) + " attempt=" + std::to_string(attempt);
}

std::vector<std::string> sbatchArgs(const Params& p, std::string_view name, std::string_view comment,
                                    std::string_view output_dir, const std::optional<JobOwner>& owner,
                                    std::string_view script_path) {
    std::vector<std::string> a = {"--parsable", "--job-name=" + std::string(name), "--comment=" + std::string(comment)};
    const std::string out = std::string(output_dir) + (p.array.empty() ? "/taskhub-%j.out" : "/taskhub-%A_%a.out");
    a.push_back("--output=" + out);
    a.push_back("--error=" + out);
    if (owner) {
        a.push_back("--uid=" + std::to_string(owner->uid));
        a.push_back("--gid=" + std::to_string(owner->gid));
    }
    if (!p.partition.empty()) a.push_back("--partition=" + p.partition);
    if (p.time_limit_minutes) a.push_back("--time=" + std::to_string(*p.time_limit_minutes));
    if (p.cpus) a.push_back("--cpus-per-task=" + std::to_string(*p.cpus));
    if (p.ntasks) a.push_back("--ntasks=" + std::to_string(*p.ntasks));
    if (!p.mem.empty()) a.push_back("--mem=" + p.mem);
    if (!p.nodes.empty()) a.push_back("--nodes=" + p.nodes);
    if (!p.gpus.empty()) a.push_back("--gpus=" + p.gpus);
    if (!p.account.empty()) a.push_back("--account=" + p.account);
    if (!p.qos.empty()) a.push_back("--qos=" + p.qos);
    if (!p.array.empty()) a.push_back("--array=" + p.array);
    if (!p.workdir.empty()) a.push_back("--chdir=" + p.workdir);
    for (const auto& e : p.extra_args) a.push_back(e);
    if (!script_path.empty()) a.emplace_back(script_path); // else sbatch reads the script from its stdin
    for (const auto& e : p.args) a.push_back(e);
    return a;
}

std::string batchScript(const Params& p) {
    std::string s = "#!/bin/sh\n";
    s += p.command;
    s += "\n";
    return s;
}

} // namespace taskhub::plugins::slurm
