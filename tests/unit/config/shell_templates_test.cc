// Templates in a plugin's shell-text parameters (shell_params): refused at load time where the
// shell would read a value as code, remembered per task where they can be escaped.
#include <catch2/catch.hpp>

#include "config/workflow.h"
#include "config_support.h"

using namespace taskhub::config;
using namespace taskhub::config::testing;

namespace {

std::string withCommand(const std::string& toml_command) {
    return "[params]\nfile = \"\"\n\n[[task]]\nid = \"a\"\nplugin = \"shell\"\ncommand = " + toml_command + "\n";
}

} // namespace

TEST_CASE("templates in safe shell contexts load and the task remembers its shell params", "[workflow][shell]") {
    TempDir dir;
    for (const char* command : {R"T("rm ${params.file}")T", R"T("rm '${params.file}'")T", R"T("rm \"${params.file}\"")T",
                                R"T("cp ${params.file} /srv/done/ && echo \"moved ${params.file}\"")T"}) {
        INFO(command);
        auto load = loadText(dir, "w.toml", withCommand(command));
        REQUIRE(messages(load) == std::vector<std::string>{});
        CHECK(load.workflow->tasks[0].shell_params == std::vector<std::string>{"command"});
    }
    auto plain = loadText(dir, "w.toml", withCommand(R"T("echo no templates")T"));
    REQUIRE(plain.workflow);
    CHECK(plain.workflow->tasks[0].shell_params.empty());
}

TEST_CASE("a template in each unsafe shell context is refused with file line, key and advice", "[workflow][shell]") {
    TempDir dir;
    struct Case {
        const char* command;
        const char* where;
    };
    const Case cases[] = {
        {R"T("wc -l $(cat ${params.file})")T", "is inside a command substitution $(...)"},
        {R"T("wc -l `cat ${params.file}`")T", "is inside a command substitution `...`"},
        {R"T("""cat <<EOF
${params.file}
EOF""")T", "is inside a here-document (<<)"},
        {R"T("echo $((${params.file} + 1))")T", "is inside an arithmetic expression"},
        {R"T("echo $${${params.file}}")T", "is inside a parameter expansion ${...}"},
        {R"T("echo hi # ${params.file}")T", "is inside a comment"},
        {R"T("echo \\${params.file}")T", "is right after a backslash"},
        {R"T("eval ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        // Quote removal happens before the shell looks the command up: these all run eval.
        {R"T("e\"val\" ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        {R"T("'eval' ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        {R"T("\\eval ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        {R"T("true && 'let' ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        {R"T(". ${params.file}")T", "is in an argument of eval, let, trap, source or ."},
        {R"T("cd /tmp; source '${params.file}'")T", "is in an argument of eval, let, trap, source or ."},
        {R"T("[[ ${params.file} -eq 1 ]]")T", "is inside [[ ... ]]"},
    };
    for (const Case& c : cases) {
        INFO(c.command);
        auto load = loadText(dir, "w.toml", withCommand(c.command));
        CHECK_FALSE(load.workflow);
        REQUIRE(load.problems.size() == 1);
        CHECK(load.problems[0].line == 7);
        const std::string& m = load.problems[0].message;
        CHECK(m.starts_with("task 'a': 'command': ${params.file} " + std::string(c.where)));
        CHECK(m.find("where a value cannot be made safe") != std::string::npos);
        CHECK(m.ends_with(", or use \"$TASKHUB_PARAM_file\" from the environment"));
    }
}

TEST_CASE("a task output in an unsafe context gets no environment hint", "[workflow][shell]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"T([[task]]
id = "a"
plugin = "noop"

[[task]]
id = "b"
plugin = "shell"
depends_on = ["a"]
command = "echo $(cat ${tasks.a.outputs.path})"
)T");
    CHECK(messages(load) ==
          std::vector<std::string>{
              "9: task 'b': 'command': ${tasks.a.outputs.path} is inside a command substitution $(...), where a "
              "value cannot be made safe (the value would be part of a nested command); move the template out of "
              "the substitution: assign it first (v=${tasks.a.outputs.path}) and use \"$v\" inside"});
}

TEST_CASE("only the plugin's shell params are shell text", "[workflow][shell]") {
    TempDir dir;
    auto load = loadText(dir, "w.toml", R"T([params]
x = ""

[[task]]
id = "a"
plugin = "noop"
command = "echo $(cat ${params.x})"
)T");
    CHECK(messages(load) == std::vector<std::string>{});
}
