// The resource keys of a workflow and of its tasks: memory_max, cpu_max, tasks_max, io_weight and
// leftovers (docs/workflow-format.md, "Resource limits and leftovers"); each task's effective
// values, and the refusal of a limit the daemon's cgroups cannot apply.
#include <algorithm>

#include "config/daemon_config.h"
#include "config/workflow_load.h"

namespace taskhub::config::detail {

namespace {

constexpr uint64_t kMinMemoryMax = uint64_t{1} << 20; // 1 MiB
constexpr uint64_t kMaxMemoryMax = uint64_t{1} << 50; // 1 PiB: "1048576G"

// cpu_max as text: a string as written, or a TOML number shown as one.
std::optional<std::string> cpuMaxText(const Value& v, const std::string& what, Reporter& r) {
    if (v.is_integer()) return std::to_string(v.as_integer());
    if (v.is_floating()) return numberText(v.as_floating());
    if (!v.is_string()) {
        r.add(v, what + " must be a share of one CPU such as \"50%\" or a number of CPUs such as \"1.5\", found " +
                     typeName(v));
        return std::nullopt;
    }
    return v.as_string().str;
}

} // namespace

const std::vector<std::string>& resourceKeys() {
    static const std::vector<std::string> keys = {"memory_max", "cpu_max", "tasks_max", "io_weight", "leftovers"};
    return keys;
}

bool isResourceKey(const std::string& key) {
    const auto& keys = resourceKeys();
    return std::find(keys.begin(), keys.end(), key) != keys.end();
}

void loadResourceKey(const std::string& key, const Value& v, const std::string& what, ResourceKeys& out,
                     Reporter& r) {
    if (key == "memory_max") {
        auto s = v.is_integer() ? std::optional<std::string>(std::to_string(v.as_integer())) : getString(v, what, r);
        if (!s) return;
        std::string err;
        auto n = parseByteSize(*s, &err);
        if (!n) {
            r.add(v, what + ": " + err);
        } else if (*n < kMinMemoryMax || *n > kMaxMemoryMax) {
            r.add(v, what + " must be between \"1M\" and \"1048576G\", found \"" + *s + "\"");
        } else {
            out.limits.memory_max = *n;
            out.limits.memory_max_text = *s;
            out.lines[key] = r.lineOf(v);
        }
    } else if (key == "cpu_max") {
        auto s = cpuMaxText(v, what, r);
        if (!s) return;
        std::string err;
        if (auto quota = cgroup::parseCpuMax(*s, &err)) {
            out.limits.cpu_quota_us = *quota;
            out.limits.cpu_max_text = *s;
            out.lines[key] = r.lineOf(v);
        } else {
            r.add(v, what + ": " + err);
        }
    } else if (key == "tasks_max") {
        if (auto n = getInt(v, what, r, 1, 4'194'304)) {
            out.limits.tasks_max = static_cast<uint64_t>(*n);
            out.lines[key] = r.lineOf(v);
        }
    } else if (key == "io_weight") {
        if (auto n = getInt(v, what, r, 1, 10'000)) {
            out.limits.io_weight = static_cast<uint32_t>(*n);
            out.lines[key] = r.lineOf(v);
        }
    } else if (key == "leftovers") {
        if (auto l = getChoice<cgroup::Leftovers>(
                v, what, {{"kill", cgroup::Leftovers::Kill}, {"keep", cgroup::Leftovers::Keep}}, r)) {
            out.leftovers = *l;
            out.lines[key] = r.lineOf(v);
        }
    }
}

namespace {

// Each limit of `keys` that `support` cannot apply, reported at its own line.
void refuseUnsupported(const ResourceKeys& keys, const std::string& prefix, const cgroup::Support& support,
                       Reporter& r) {
    const cgroup::Limits& l = keys.limits;
    const std::pair<const char*, cgroup::Limits> one[] = {
        {"memory_max", cgroup::Limits{l.memory_max, {}, {}, {}, l.memory_max_text, {}}},
        {"cpu_max", cgroup::Limits{{}, l.cpu_quota_us, {}, {}, {}, l.cpu_max_text}},
        {"tasks_max", cgroup::Limits{{}, {}, l.tasks_max, {}, {}, {}}},
        {"io_weight", cgroup::Limits{{}, {}, {}, l.io_weight, {}, {}}},
    };
    for (const auto& [key, limits] : one) {
        if (limits.empty()) continue;
        if (auto why = cgroup::unsupported(limits, support)) {
            auto it = keys.lines.find(key);
            r.add(it == keys.lines.end() ? 0 : it->second, prefix + *why);
        }
    }
}

} // namespace

void applyResources(Workflow& wf, const ResourceKeys& workflow_keys, const std::vector<TaskExtra>& extras,
                    const WorkflowDefaults& defaults, const PluginCatalog& plugins, Reporter& r) {
    wf.limits = workflow_keys.limits;
    wf.leftovers = workflow_keys.leftovers.value_or(cgroup::Leftovers::Kill);
    refuseUnsupported(workflow_keys, "", defaults.containment, r);
    const Shared<cgroup::Limits> inherited(wf.limits); // one copy for the tasks without limits of their own
    for (size_t i = 0; i < wf.tasks.size() && i < extras.size(); ++i) {
        TaskDef& task = wf.tasks[i];
        if (!task.workflow.empty()) continue; // no processes: its own keys were refused
        const ResourceKeys& own = extras[i].resources;
        task.limits = own.limits.empty() ? inherited : Shared(cgroup::merged(wf.limits, own.limits));
        task.leftovers = own.leftovers.value_or(wf.leftovers);
        refuseUnsupported(own, "task '" + task.id + "': ", defaults.containment, r);
        if (task.limits.empty() || task.plugin.empty() || plugins.unavailable(task.plugin)) continue;
        if (auto why = plugins.limitsUnsupported(task.plugin)) {
            // At the first limit key that applies: the task's own, else the workflow's.
            size_t line = 0;
            std::string key;
            for (const char* k : {"memory_max", "cpu_max", "tasks_max", "io_weight"}) {
                auto it = own.lines.find(k);
                if (it == own.lines.end()) continue;
                line = it->second;
                key = k;
                break;
            }
            if (key.empty()) {
                for (const char* k : {"memory_max", "cpu_max", "tasks_max", "io_weight"}) {
                    auto it = workflow_keys.lines.find(k);
                    if (it == workflow_keys.lines.end()) continue;
                    line = it->second;
                    key = k;
                    break;
                }
                r.add(line, "task '" + task.id + "' inherits the workflow's '" + key + "', but " + *why +
                                " (set limits on the tasks that can take them instead of the whole workflow)");
            } else {
                r.add(line, "task '" + task.id + "': '" + key + "' cannot apply: " + *why + " (remove the key)");
            }
        }
    }
}

} // namespace taskhub::config::detail
