// How long loading a large workflow file takes. Hidden ([.perf]): never part of the default run,
// and it asserts no times, it prints them. Run it on a Release build:
//   build/tests/unit/config/unit_config "[.perf]"
// TASKHUB_PERF_TASKS=10000,100000 (the default) sets the sizes, in tasks.
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <set>
#include <sstream>

#include "config_support.h"

namespace taskhub::config::testing {
namespace {

// n noop tasks; from the fourth on each depends on up to 3 earlier ones; every 10th also has
// plugin parameters: a table, and a template naming a param and a dependency's output.
std::string generate(size_t n) {
    std::mt19937 rng(1);
    std::string out = "description = \"generated\"\n\n[params]\nregion = \"eu\"\n\n";
    char buf[64];
    for (size_t i = 0; i < n; ++i) {
        std::snprintf(buf, sizeof buf, "t%06zu", i);
        out += "[[task]]\nid = \"" + std::string(buf) + "\"\nplugin = \"noop\"\n";
        if (i >= 3) {
            std::set<size_t> deps;
            for (int k = 0; k < 3; ++k) deps.insert(std::uniform_int_distribution<size_t>(0, i - 1)(rng));
            out += "depends_on = [";
            bool first = true;
            for (size_t d : deps) {
                std::snprintf(buf, sizeof buf, "\"t%06zu\"", d);
                out += (first ? "" : ", ") + std::string(buf);
                first = false;
            }
            out += "]\n";
            if (i % 10 == 0) {
                std::snprintf(buf, sizeof buf, "t%06zu", *deps.begin());
                out += "note = \"${params.region} ${tasks." + std::string(buf) + ".outputs.path}\"\n";
                out += "extra = { a = 1, b = [\"x\", \"y\"] }\n";
            }
        }
        out += "\n";
    }
    return out;
}

std::vector<size_t> sizes() {
    const char* env = std::getenv("TASKHUB_PERF_TASKS");
    std::string text = env && *env ? env : "10000,100000";
    std::vector<size_t> out;
    std::istringstream in(text);
    for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoul(item));
    return out;
}

} // namespace

TEST_CASE("loading a large workflow file (timings)", "[.perf]") {
    TempDir dir;
    FakeCatalog catalog;
    for (size_t n : sizes()) {
        const auto file = dir.write("w" + std::to_string(n) + ".toml", generate(n));
        const auto start = std::chrono::steady_clock::now();
        auto load = loadWorkflowFile(file, {"UTC"}, catalog);
        const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
        INFO((load.problems.empty() ? std::string() : load.problems.front().str()));
        REQUIRE(load.workflow);
        REQUIRE(load.workflow->tasks.size() == n);
        std::printf("load %zu tasks (%zu bytes): %.3f s\n", n,
                    static_cast<size_t>(std::filesystem::file_size(file)), took.count());
    }
}

} // namespace taskhub::config::testing
