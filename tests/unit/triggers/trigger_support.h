// Helpers shared by the trigger tests: instants written as ISO text, and a workflow loaded from
// TOML text with one noop task added.
#ifndef TASKHUB_TESTS_UNIT_TRIGGERS_TRIGGER_SUPPORT_H
#define TASKHUB_TESTS_UNIT_TRIGGERS_TRIGGER_SUPPORT_H

#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>

#include "common/time_util.h"
#include "config_support.h"

namespace taskhub::testing::triggers_support {

inline std::chrono::sys_seconds at(const char* iso) {
    std::string err;
    auto t = parseIsoInstant(iso, &err);
    INFO(err);
    REQUIRE(t);
    return *t;
}

inline std::shared_ptr<const config::Workflow> workflow(const std::string& name, const std::string& text) {
    config::testing::TempDir dir;
    auto load = config::testing::loadText(dir, name + ".toml", text + "\n[[task]]\nid = \"t\"\nplugin = \"noop\"\n");
    INFO(Catch::Detail::stringify(config::testing::messages(load)));
    REQUIRE(load.workflow);
    return load.workflow;
}

} // namespace taskhub::testing::triggers_support

#endif // TASKHUB_TESTS_UNIT_TRIGGERS_TRIGGER_SUPPORT_H
