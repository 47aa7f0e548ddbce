// Helpers shared by the config tests: a stand-in plugin catalog and loading from text.
#ifndef TASKHUB_TESTS_UNIT_CONFIG_SUPPORT_H
#define TASKHUB_TESTS_UNIT_CONFIG_SUPPORT_H

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "config/daemon_config.h"
#include "config/workflow.h"
#include "test_support.h"

namespace taskhub::config::testing {

using taskhub::testing::TempDir;

// Knows "shell" (accepts only `command` and `cwd`; `command` is shell text) and "noop" (accepts
// anything).
class FakeCatalog : public PluginCatalog {
public:
    std::optional<std::string> unavailable(const std::string& plugin) const override {
        if (plugin == "shell" || plugin == "noop") return std::nullopt;
        return "no plugin named '" + plugin + "' is loaded (loaded: noop, shell)";
    }
    std::optional<Problem> validate(const std::string& plugin, const std::string& params) const override {
        if (plugin != "shell") return std::nullopt;
        if (params.find("\"comand\"") != std::string::npos) {
            return Problem{"comand", "unknown parameter 'comand'; did you mean 'command'?"};
        }
        if (params.find("\"command\"") == std::string::npos) {
            return Problem{"command", "missing required parameter 'command'"};
        }
        return std::nullopt;
    }
    std::vector<std::string> shellParams(const std::string& plugin) const override {
        if (plugin == "shell") return {"command"};
        return {};
    }

    // Like the real shell and noop plugins: shell honours run_as, noop does not.
    std::optional<std::string> runAsUnsupported(const std::string& plugin) const override {
        if (plugin == "shell") return std::nullopt;
        return "plugin " + plugin + " does not declare TH_CAP_RUN_AS";
    }
    // Like the real plugins: shell starts its attempts in cgroups (TH_CAP_CGROUP), noop does not.
    std::optional<std::string> limitsUnsupported(const std::string& plugin) const override {
        if (plugin == "shell") return std::nullopt;
        return "plugin " + plugin + " does not declare TH_CAP_CGROUP";
    }
};

// "line: message" for each problem.
inline std::vector<std::string> messages(const std::vector<Diagnostic>& problems) {
    std::vector<std::string> out;
    for (const auto& p : problems) out.push_back(std::to_string(p.line) + ": " + p.message);
    return out;
}

inline std::vector<std::string> messages(const WorkflowLoad& load) { return messages(load.problems); }

// The daemon config in `file`, which must load.
inline DaemonConfig loadConfig(const std::filesystem::path& file) {
    std::vector<Diagnostic> problems;
    auto cfg = loadDaemonConfig(file, &problems);
    INFO("problems: " << firstProblem(problems));
    REQUIRE(cfg);
    return *cfg;
}

// The problems of the daemon config in `file`, which must be refused.
inline std::vector<Diagnostic> configRefusal(const std::filesystem::path& file) {
    std::vector<Diagnostic> problems;
    auto cfg = loadDaemonConfig(file, &problems);
    REQUIRE_FALSE(cfg);
    return problems;
}

inline WorkflowLoad loadText(const TempDir& dir, const std::string& name, const std::string& text) {
    FakeCatalog catalog;
    return loadWorkflowFile(dir.write(name, text), {"UTC"}, catalog);
}

} // namespace taskhub::config::testing

#endif // TASKHUB_TESTS_UNIT_CONFIG_SUPPORT_H
