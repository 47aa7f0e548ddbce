// Shell completion: every value of the command table says what completes it, the fixed sets are
// the code's own, candidates that a line cannot carry are left out, and each script covers the
// table. tests/unit/ctl/completion_shells_test.py drives the scripts in the shells themselves.
#include "completion.h"

#include <catch2/catch.hpp>

#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "model/states.h"
#include "next_preview.h"

namespace {

using namespace taskhub;
using namespace taskhub::ctl;

// Every option: each command's, the global ones and -h/--help.
std::vector<Option> everyOption() {
    std::vector<Option> out = globalOptions();
    out.push_back(helpOption());
    for (const auto& c : commands()) out.insert(out.end(), c.options.begin(), c.options.end());
    return out;
}

// The placeholders of a synopsis: "[RUN|WORKFLOW] FILE..." -> {"RUN|WORKFLOW", "FILE"}.
std::vector<std::string> placeholders(std::string_view synopsis) {
    std::vector<std::string> out;
    std::istringstream words{std::string(synopsis)};
    for (std::string w; words >> w;) {
        if (w.front() == '[' && w.back() == ']') w = w.substr(1, w.size() - 2);
        if (w.size() > 3 && w.compare(w.size() - 3, 3, "...") == 0) w.resize(w.size() - 3);
        out.push_back(w);
    }
    return out;
}

std::string joined(const std::vector<std::string>& v, const char* sep) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
    return out;
}

} // namespace

TEST_CASE("every option that takes a value says what completes it, a flag says nothing") {
    for (const auto& o : everyOption()) {
        INFO(o.name);
        if (o.value.empty()) CHECK(o.values == Values::None);
        else CHECK(o.values != Values::None);
    }
    std::map<std::string_view, Values> first;
    for (const auto& o : everyOption()) {
        INFO(o.name);
        auto [it, inserted] = first.emplace(o.name, o.values);
        CHECK(it->second == o.values);
    }
}

TEST_CASE("every argument of a command says what completes it, as its synopsis names it") {
    const std::map<std::string, Values> known{
        {"WORKFLOW", Values::Workflow}, {"RUN", Values::Run},   {"RUN|WORKFLOW", Values::WorkflowOrRun},
        {"FILE", Values::File},         {"PATH.so", Values::File}, {"TASK", Values::Text},
        {"SHELL", Values::Shell},       {"COMMAND", Values::Command}};
    for (const auto& c : commands()) {
        INFO(c.name << " " << c.synopsis);
        const auto words = placeholders(c.synopsis);
        REQUIRE(c.args.size() == words.size());
        CHECK(c.args.size() <= c.max_args);
        CHECK((c.max_args == 0) == c.args.empty());
        for (size_t i = 0; i < words.size(); ++i) {
            CHECK(c.args[i] != Values::None);
            if (auto it = known.find(words[i]); it != known.end()) CHECK(c.args[i] == it->second);
        }
    }
    // NAME says nothing by itself: a workflow or a run for show, a plugin for plugin show.
    for (const auto& c : commands()) {
        if (c.name == "show") CHECK(c.args == std::vector<Values>{Values::WorkflowOrRun});
        if (c.name == "plugin show") CHECK(c.args == std::vector<Values>{Values::Plugin});
    }
}

TEST_CASE("the fixed sets are the code's own names") {
    const auto states = fixedValues(Values::RunState);
    REQUIRE(states.size() == model::NameTable<model::RunState>::entries.size() + 1);
    for (size_t i = 0; i + 1 < states.size(); ++i) CHECK(model::parse<model::RunState>(states[i]));
    CHECK(states.back() == "lost");

    std::string err;
    cron::DstPolicy::Gap gap{};
    cron::DstPolicy::Fold fold{};
    for (const auto& g : fixedValues(Values::DstGap)) CHECK(parseDstGap(g, &gap, &err));
    for (const auto& f : fixedValues(Values::DstFold)) CHECK(parseDstFold(f, &fold, &err));
    CHECK(fixedValues(Values::DstGap).size() == 2);
    CHECK(fixedValues(Values::DstFold).size() == 3);
    // the placeholders that list a set list exactly it
    for (const auto& o : everyOption()) {
        if (o.value.find('|') == std::string_view::npos) continue;
        INFO(o.name);
        CHECK(o.value == joined(fixedValues(o.values), "|"));
    }
    for (const auto& shell : fixedValues(Values::Shell)) CHECK_FALSE(completionScript(shell).empty());
    CHECK(completionScript("tcsh").empty());
    CHECK(joined(fixedValues(Values::CandidateKind), " ") == "workflows runs plugins zones");
    CHECK(fixedValues(Values::Workflow).empty());
}

TEST_CASE("candidates a line cannot carry are left out") {
    const std::string long_name(256, 'a');
    CHECK(candidateLines({"nightly", "a b $(touch x) *", "two\nlines", "esc\x1b[31m", "tab\there", "del\x7f", "",
                          long_name, std::string(255, 'b'), "c1\xc2\x9b" "31m", "caf\xc3\xa9",
                          "rlo\xe2\x80\xae" "evil", "lsep\xe2\x80\xa8", "fsi\xe2\x81\xa8", "dash\xe2\x80\x94ok"}) ==
          "nightly\na b $(touch x) *\n" + std::string(255, 'b') + "\ncaf\xc3\xa9\ndash\xe2\x80\x94ok\n");
}

TEST_CASE("each script names every command, option and fixed value of the table") {
    for (const auto& shell : {"bash", "zsh", "fish"}) {
        const std::string script = completionScript(shell);
        INFO(shell);
        for (const auto& c : commands()) {
            const std::string last(c.name.substr(c.name.rfind(' ') + 1));
            // 'name'; \'name\' inside a quoted fish argument; 'name:help' for zsh's _describe
            const bool found = script.find("'" + last + "'") != std::string::npos ||
                               script.find("\\'" + last + "\\'") != std::string::npos ||
                               script.find("'" + last + ":") != std::string::npos;
            CHECK(found);
            for (const auto& o : c.options) {
                const std::string bare(o.name.substr(o.name.find_first_not_of('-')));
                CHECK(script.find(bare) != std::string::npos);
            }
        }
        for (auto v : {Values::RunState, Values::DstGap, Values::DstFold}) {
            for (const auto& name : fixedValues(v)) {
                // 'name', or \'name\' inside fish's quoted -a argument
                const bool found = script.find("'" + name + "'") != std::string::npos ||
                                   script.find("\\'" + name + "\\'") != std::string::npos;
                CHECK(found);
            }
        }
    }
}
