#include "cgroup/resources.h"

#include <charconv>
#include <cmath>
#include <sstream>

namespace taskhub::cgroup {
namespace {

// "123" at the start of `text` after `prefix`; false when absent or not a number.
bool fieldValue(const std::string& line, std::string_view prefix, uint64_t* out) {
    if (line.size() <= prefix.size() || line.compare(0, prefix.size(), prefix) != 0) return false;
    const char* first = line.data() + prefix.size();
    const char* last = line.data() + line.size();
    return std::from_chars(first, last, *out).ec == std::errc();
}

// A limit's text for messages: as written, else the number.
std::string shownAs(const std::string& text, uint64_t value) {
    return text.empty() ? std::to_string(value) : text;
}

} // namespace

Limits merged(const Limits& workflow, const Limits& task) {
    Limits out = workflow;
    if (task.memory_max) {
        out.memory_max = task.memory_max;
        out.memory_max_text = task.memory_max_text;
    }
    if (task.cpu_quota_us) {
        out.cpu_quota_us = task.cpu_quota_us;
        out.cpu_max_text = task.cpu_max_text;
    }
    if (task.tasks_max) out.tasks_max = task.tasks_max;
    if (task.io_weight) out.io_weight = task.io_weight;
    return out;
}

std::optional<uint64_t> parseCpuMax(const std::string& text, std::string* err) {
    const bool percent = !text.empty() && text.back() == '%';
    const std::string number = percent ? text.substr(0, text.size() - 1) : text;
    double value = 0;
    const char* first = number.data();
    const char* last = number.data() + number.size();
    auto [end, ec] = std::from_chars(first, last, value);
    if (number.empty() || ec != std::errc() || end != last || !std::isfinite(value) || value <= 0) {
        *err = "cpu_max must be a share of one CPU such as \"50%\" or a number of CPUs such as \"1.5\", found \"" +
               text + "\"";
        return std::nullopt;
    }
    const double cpus = percent ? value / 100.0 : value;
    if (cpus < 0.01 || cpus > 4096) {
        *err = "cpu_max must be between \"1%\" (0.01 CPUs) and 4096 CPUs, found \"" + text + "\"";
        return std::nullopt;
    }
    return static_cast<uint64_t>(std::llround(cpus * static_cast<double>(kCpuPeriodUs)));
}

std::set<std::string> requiredControllers(const Limits& limits) {
    std::set<std::string> out;
    if (limits.memory_max) out.insert("memory");
    if (limits.cpu_quota_us) out.insert("cpu");
    if (limits.tasks_max) out.insert("pids");
    if (limits.io_weight) out.insert("io");
    return out;
}

std::vector<std::pair<std::string, std::string>> limitFiles(const Limits& limits) {
    std::vector<std::pair<std::string, std::string>> out;
    if (limits.memory_max) out.emplace_back("memory.max", std::to_string(*limits.memory_max));
    if (limits.cpu_quota_us)
        out.emplace_back("cpu.max", std::to_string(*limits.cpu_quota_us) + " " + std::to_string(kCpuPeriodUs));
    if (limits.tasks_max) out.emplace_back("pids.max", std::to_string(*limits.tasks_max));
    if (limits.io_weight) out.emplace_back("io.weight", "default " + std::to_string(*limits.io_weight));
    return out;
}

std::optional<std::string> unsupported(const Limits& limits, const Support& support) {
    if (limits.empty()) return std::nullopt;
    static constexpr std::pair<const char*, const char*> kKeyOf[] = {
        {"memory", "memory_max"}, {"cpu", "cpu_max"}, {"pids", "tasks_max"}, {"io", "io_weight"}};
    std::string missing, keys;
    for (const std::string& c : requiredControllers(limits)) {
        if (support.cgroups && support.controllers.count(c)) continue;
        if (!missing.empty()) {
            missing += ", ";
            keys += ", ";
        }
        missing += c;
        for (const auto& [controller, key] : kKeyOf) {
            if (c == controller) keys += key;
        }
    }
    if (missing.empty()) return std::nullopt;
    if (!support.cgroups) {
        return keys + " needs cgroup containment, which is unavailable (" +
               (support.why_not.empty() ? std::string("cgroups unavailable") : support.why_not) +
               "); taskhubd runs tasks in process groups and cannot apply limits (remove the key, or give "
               "taskhubd a writable cgroup2: under systemd, Delegate=yes)";
    }
    std::string msg = keys + " needs the " + missing + " controller" + (missing.find(',') != std::string::npos ? "s" : "") +
                      ", which taskhubd's cgroup does not offer (available: " +
                      (support.controllers.empty() ? std::string("none") : [&] {
                          std::string all;
                          for (const std::string& c : support.controllers) all += (all.empty() ? "" : " ") + c;
                          return all;
                      }()) +
                      ")";
    if (!support.hint.empty()) msg += "; " + support.hint;
    return msg;
}

std::optional<std::string> memoryLimitMessage(const Limits& limits, uint64_t oom_kills) {
    if (!limits.memory_max || oom_kills == 0) return std::nullopt;
    return "killed: memory limit " + shownAs(limits.memory_max_text, *limits.memory_max) + " reached (oom_kill " +
           std::to_string(oom_kills) + ")";
}

const char* toString(Leftovers l) noexcept { return l == Leftovers::Keep ? "keep" : "kill"; }

const char* toString(Usage::Source s) noexcept { return s == Usage::Source::Rusage ? "rusage" : "cgroup"; }

bool parseCpuStat(const std::string& text, Usage* usage) {
    std::istringstream in(text);
    std::string line;
    bool found = false;
    uint64_t v = 0;
    while (std::getline(in, line)) {
        if (fieldValue(line, "user_usec ", &v)) {
            usage->cpu_user_us = v;
            found = true;
        } else if (fieldValue(line, "system_usec ", &v)) {
            usage->cpu_system_us = v;
            found = true;
        }
    }
    return found;
}

bool parseMemoryEvents(const std::string& text, Usage* usage) {
    std::istringstream in(text);
    std::string line;
    uint64_t v = 0;
    while (std::getline(in, line)) {
        if (fieldValue(line, "oom_kill ", &v)) {
            usage->oom_kills = v;
            return true;
        }
    }
    return false;
}

bool parseIoStat(const std::string& text, Usage* usage) {
    // "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" per device.
    std::istringstream in(text);
    std::string word;
    bool found = false;
    uint64_t read = 0, written = 0, v = 0;
    while (in >> word) {
        if (fieldValue(word, "rbytes=", &v)) {
            read += v;
            found = true;
        } else if (fieldValue(word, "wbytes=", &v)) {
            written += v;
            found = true;
        }
    }
    if (found || text.empty()) {
        // An empty io.stat means no I/O was done yet: zero, not unknown.
        usage->io_read_bytes = read;
        usage->io_write_bytes = written;
        return found;
    }
    return false;
}

} // namespace taskhub::cgroup
