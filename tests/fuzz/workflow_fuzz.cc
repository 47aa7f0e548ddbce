// workflow_fuzz: a libFuzzer target for the workflow loader. Each input is the text of a
// workflow file; it is loaded with config::loadWorkflowFile() (the pre-scan, toml11, every
// check) against a stand-in plugin catalog that knows "shell" (requires `command`, accepts `cwd`)
// and "noop" (accepts anything), with small limits so that the limit paths are reached too.
// Aborts (a crash for libFuzzer) when:
//   - a load gives both a workflow and problems, or neither;
//   - a problem does not name the file, or has no message;
//   - a loaded workflow breaks what the engine relies on: at least one task, at most
//     max_tasks, a graph of as many nodes, a version.
// A stack overflow (deep nesting reaching toml11), ASan and UBSan reports (-fno-sanitize-recover)
// are crashes by themselves.
//
// Built only with clang and -DTASKHUB_FUZZ=ON -DTASKHUB_SANITIZE=address; scripts/test runs it
// for a bounded time on the seed corpus in tests/fuzz/corpus/workflow/ with
// tests/fuzz/workflow.dict.
#include "config/workflow.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace {

namespace fs = std::filesystem;
using taskhub::config::PluginCatalog;

[[noreturn]] void fail(const char* what, const std::string& detail) {
    std::fprintf(stderr, "workflow_fuzz: %s: %s\n", what, detail.c_str());
    std::abort();
}

class FakeCatalog : public PluginCatalog {
public:
    std::optional<std::string> unavailable(const std::string& plugin) const override {
        if (plugin == "shell" || plugin == "noop") return std::nullopt;
        return "no plugin named '" + plugin + "' is loaded (loaded: noop, shell)";
    }
    std::optional<Problem> validate(const std::string& plugin, const std::string& params) const override {
        if (plugin == "shell" && params.find("\"command\"") == std::string::npos) {
            return Problem{"command", "missing required parameter 'command'"};
        }
        return std::nullopt;
    }
    // Like the real shell plugin: command is shell text (its templates go through the shell-context
    // scanner) and tasks may run as another user.
    std::vector<std::string> shellParams(const std::string& plugin) const override {
        if (plugin == "shell") return {"command"};
        return {};
    }
    std::optional<std::string> runAsUnsupported(const std::string& plugin) const override {
        if (plugin == "shell") return std::nullopt;
        return "plugin " + plugin + " does not declare TH_CAP_RUN_AS";
    }
};

// One directory for the process, removed at exit; each input is written to the same file.
struct Scratch {
    fs::path dir;
    fs::path file;
    Scratch() {
        std::string tmpl = (fs::temp_directory_path() / "workflow-fuzz-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) == nullptr) fail("mkdtemp", tmpl);
        dir = tmpl;
        file = dir / "fuzzed.toml";
    }
    ~Scratch() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static Scratch scratch;
    static const FakeCatalog catalog;
    {
        std::ofstream out(scratch.file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
        if (!out) fail("cannot write", scratch.file.string());
    }
    taskhub::config::WorkflowLimits limits;
    limits.max_file_size = 64 * 1024;
    limits.max_tasks = 64;
    const auto load = taskhub::config::loadWorkflowFile(scratch.file, {"UTC", {}, {}, limits}, catalog);

    if ((load.workflow != nullptr) == !load.problems.empty()) {
        fail("a load must give a workflow or problems, not both or neither",
             std::to_string(load.problems.size()) + " problem(s)");
    }
    for (const auto& p : load.problems) {
        if (p.file != scratch.file.string()) fail("a problem names another file", p.file);
        if (p.message.empty()) fail("a problem without a message at line", std::to_string(p.line));
    }
    if (const auto& wf = load.workflow) {
        if (wf->tasks.empty() || wf->tasks.size() > limits.max_tasks) {
            fail("a workflow loaded with a task count out of bounds", std::to_string(wf->tasks.size()));
        }
        if (wf->graph.size() != wf->tasks.size()) fail("the graph does not match the tasks", wf->name);
        if (wf->version.empty()) fail("a workflow without a version", wf->name);
    }
    return 0;
}
