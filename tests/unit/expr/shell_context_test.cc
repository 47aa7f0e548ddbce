// Shell contexts of templates in shell-text parameters: which ones are safe, how values are
// escaped for them, and the proof that dash and bash receive exactly the value.
#include <catch2/catch.hpp>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include <taskhub/shell_quote.h>

#include "expr/shell_context.h"
#include "expr/template.h"

extern char** environ;

using namespace taskhub::expr;

namespace {

Template parsed(std::string_view text) {
    std::string err;
    auto r = Template::parse(text, &err);
    if (!r) FAIL("unexpected parse error: " << err);
    return *r;
}

std::vector<ShellContext> contexts(std::string_view text) { return shellContexts(parsed(text)); }

ShellContext only(std::string_view text) {
    auto c = contexts(text);
    REQUIRE(c.size() == 1);
    return c[0];
}

// The command expanded with every reference bound to value, escaped for its context.
std::string expandFor(std::string_view text, const std::string& value) {
    Template t = parsed(text);
    auto ctx = shellContexts(t);
    auto out = t.expand([&](const Ref&) { return std::optional<std::string>(value); },
                        [&](size_t i, std::string_view v) {
                            REQUIRE(isSafe(ctx[i]));
                            return escapeForShell(ctx[i], v);
                        },
                        nullptr);
    REQUIRE(out);
    return *out;
}

// What `shell -c command` writes to stdout.
std::string runShell(const char* shell, const std::string& command) {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    std::string sh(shell), dash_c("-c"), cmd(command);
    char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
    pid_t pid = 0;
    int rc = posix_spawn(&pid, shell, &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    REQUIRE(rc == 0);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return out;
}

} // namespace

TEST_CASE("the three safe contexts are told apart", "[shell]") {
    CHECK(only("rm ${params.f}") == ShellContext::Bare);
    CHECK(only("rm --in=${params.f}.csv") == ShellContext::Bare);
    CHECK(only("rm '${params.f}'") == ShellContext::SingleQuoted);
    CHECK(only("rm 'a b ${params.f} c'") == ShellContext::SingleQuoted);
    CHECK(only("rm \"${params.f}\"") == ShellContext::DoubleQuoted);
    CHECK(only("echo \"it's $HOME ${params.f}\"") == ShellContext::DoubleQuoted);
    CHECK(only("echo '\"' ${params.f}") == ShellContext::Bare);
    CHECK(only("echo \"'\" '${params.f}'") == ShellContext::SingleQuoted);
    CHECK(only("echo $(date) ${params.f}") == ShellContext::Bare);
    CHECK(only("echo $((1+2)) ${params.f}") == ShellContext::Bare);
    CHECK(only("a=1; echo ${params.f} # note") == ShellContext::Bare);
    CHECK(only("x=${params.f} cmd") == ShellContext::Bare);
    CHECK(only("cat <<<${params.f}") == ShellContext::Bare);
    CHECK(only("cat <<EOF\nbody\nEOF\nrm ${params.f}") == ShellContext::Bare);
    CHECK(only("echo a#b ${params.f}") == ShellContext::Bare);
    CHECK(only("ls ~${params.f}") == ShellContext::BareInPattern);
    CHECK(only("ls [a${params.f}]") == ShellContext::BareInPattern);
    CHECK(only("echo {a,${params.f}}") == ShellContext::BareInPattern);
    CHECK(only("echo {a,b} ${params.f}") == ShellContext::Bare);
    CHECK(contexts("[ -f ${params.f} ] && rm ${params.g}") ==
          std::vector{ShellContext::Bare, ShellContext::Bare});
    CHECK(contexts("cp ${params.a} '${params.b}' \"${params.c}\"") ==
          std::vector{ShellContext::Bare, ShellContext::SingleQuoted, ShellContext::DoubleQuoted});
}

TEST_CASE("every unsafe context is found", "[shell]") {
    CHECK(only("echo $(cat ${params.f})") == ShellContext::CommandSubstitution);
    CHECK(only("echo \"$(cat '${params.f}')\"") == ShellContext::CommandSubstitution);
    CHECK(only("echo `cat ${params.f}`") == ShellContext::Backquote);
    CHECK(only("echo \"`cat \"${params.f}\"`\"") == ShellContext::Backquote);
    CHECK(only("cat <<EOF\n${params.f}\nEOF") == ShellContext::HereDocument);
    CHECK(only("cat <<'EOF'\nx '${params.f}'\nEOF") == ShellContext::HereDocument);
    CHECK(only("cat <<-EOF\n\tx\n\t\"${params.f}\"\n\tEOF") == ShellContext::HereDocument);
    CHECK(only("cat <<${params.f}\nx\n") == ShellContext::HereDocument);
    CHECK(only("echo $((${params.n} + 1))") == ShellContext::Arithmetic);
    CHECK(only("echo \"$(( ${params.n} ))\"") == ShellContext::Arithmetic);
    CHECK(only("(( ${params.n} > 1 ))") == ShellContext::Arithmetic);
    CHECK(only("for ((i=0; i<${params.n}; i++)); do :; done") == ShellContext::Arithmetic);
    CHECK(only("echo $[${params.n}]") == ShellContext::Arithmetic);
    CHECK(only("echo $${${params.v}}") == ShellContext::ParameterExpansion);
    CHECK(only("echo \"$${HOME:-${params.v}}\"") == ShellContext::ParameterExpansion);
    CHECK(only("echo $${#${params.v}}") == ShellContext::ParameterExpansion);
    CHECK(only("echo hi # ${params.f}") == ShellContext::Comment);
    CHECK(only("# ${params.f}\necho hi") == ShellContext::Comment);
    CHECK(only("echo \\${params.f}") == ShellContext::AfterBackslash);
    CHECK(only("echo \"\\${params.f}\"") == ShellContext::AfterBackslash);
    CHECK(only("echo $'a ${params.f}'") == ShellContext::AnsiCQuoted);
    CHECK(only("[[ ${params.n} -eq 1 ]]") == ShellContext::DoubleBracket);
    CHECK(only("[[ -f x && \"${params.n}\" -eq 1 ]]") == ShellContext::DoubleBracket);
    CHECK(only("a[${params.n}]=1") == ShellContext::ArraySubscript);
    CHECK(only("eval ${params.c}") == ShellContext::CodeArgument);
    CHECK(only("eval \"echo ${params.c}\"") == ShellContext::CodeArgument);
    CHECK(only("let x=${params.c}") == ShellContext::CodeArgument);
    CHECK(only("trap '${params.c}' EXIT") == ShellContext::CodeArgument);
    CHECK(only("command eval ${params.c}") == ShellContext::CodeArgument);
    CHECK(only("if true; then builtin eval \"${params.c}\"; fi") == ShellContext::CodeArgument);
    // The context ends where the construct ends.
    CHECK(contexts("[[ -f x ]] && rm ${params.f}") == std::vector{ShellContext::Bare});
    CHECK(contexts("echo $(date) && eval x; rm ${params.f}") == std::vector{ShellContext::Bare});
}

TEST_CASE("refusals say where the reference is and what to write instead", "[shell]") {
    const std::string msg = refusal(ShellContext::CommandSubstitution, "${params.file}", "TASKHUB_PARAM_file");
    CHECK(msg == "${params.file} is inside a command substitution $(...), where a value cannot be made safe "
                 "(the value would be part of a nested command); move the template out of the substitution: "
                 "assign it first (v=${params.file}) and use \"$v\" inside, or use \"$TASKHUB_PARAM_file\" from "
                 "the environment");
    for (auto c : {ShellContext::Backquote, ShellContext::HereDocument, ShellContext::Arithmetic,
                   ShellContext::ParameterExpansion, ShellContext::Comment, ShellContext::AfterBackslash,
                   ShellContext::AnsiCQuoted, ShellContext::DoubleBracket, ShellContext::ArraySubscript,
                   ShellContext::CodeArgument}) {
        CHECK_FALSE(isSafe(c));
        const std::string m = refusal(c, "${tasks.a.outputs.b}", "");
        CHECK(m.starts_with("${tasks.a.outputs.b} is "));
        CHECK(m.find("where a value cannot be made safe (") != std::string::npos);
        CHECK(m.find("; ") != std::string::npos);
    }
}

TEST_CASE("the SDK's th_shell_quote quotes like snprintf", "[shell]") {
    char buf[32];
    CHECK(th_shell_quote("a'b", 3, buf, sizeof buf) == 8);
    CHECK(std::string(buf) == "'a'\\''b'");
    CHECK(th_shell_quote("", 0, buf, sizeof buf) == 2);
    CHECK(std::string(buf) == "''");
    CHECK(th_shell_quote("abc def", 7, buf, 4) == 9); // truncated, still terminated
    CHECK(std::string(buf) == "'ab");
    CHECK(th_shell_quote("a\0b", 3, buf, sizeof buf) == TH_SHELL_QUOTE_NUL);
    CHECK(th_shell_quote("x'", 2, nullptr, 0) == 7);
    // Plain words stay as they are; keywords, '=' and the empty string do not.
    CHECK(th_shell_quote("/srv/in/a-1.csv", 15, buf, sizeof buf) == 15);
    CHECK(std::string(buf) == "/srv/in/a-1.csv");
    CHECK(th_shell_quote("if", 2, buf, sizeof buf) == 4);
    CHECK(std::string(buf) == "'if'");
    CHECK(th_shell_quote("a=b", 3, buf, sizeof buf) == 5);
    CHECK(th_shell_quote("~", 1, buf, sizeof buf) == 3);
}

TEST_CASE("escaping keeps every byte and refuses NUL", "[shell]") {
    CHECK(escapeForShell(ShellContext::Bare, "a;id") == "'a;id'");
    CHECK(escapeForShell(ShellContext::SingleQuoted, "q';id;'") == "''q'\\'';id;'\\''''");
    CHECK(escapeForShell(ShellContext::DoubleQuoted, "$(id)") == "\"'$(id)'\"");
    CHECK(escapeForShell(ShellContext::Bare, "") == "''");
    CHECK(escapeForShell(ShellContext::DoubleQuoted, "a.csv") == "\"a.csv\"");
    CHECK(escapeForShell(ShellContext::Bare, "root") == "root");
    CHECK(escapeForShell(ShellContext::BareInPattern, "root") == "'root'");
    CHECK(escapeForShell(ShellContext::BareInPattern, "a b") == "'a b'");
    CHECK_FALSE(escapeForShell(ShellContext::Bare, std::string("a\0b", 3)));
}

TEST_CASE("dash and bash receive exactly the value in every safe context (property)", "[shell][property]") {
    const std::vector<std::pair<std::string, std::pair<std::string, std::string>>> shapes = {
        {"printf '%s' ${params.v}", {"", ""}},
        {"printf '%s' '${params.v}'", {"", ""}},
        {"printf '%s' \"${params.v}\"", {"", ""}},
        {"printf '%s' pre${params.v}post", {"pre", "post"}},
        {"printf '%s' 'p re${params.v}po st'", {"p re", "po st"}},
        {"printf '%s' \"$${NOPE:-p}\\\"${params.v}\\$x\"", {"p\"", "$x"}},
        {"x=${params.v}; printf '%s' \"$x\"", {"", ""}},
        {"printf '%s' ${params.v} >&1", {"", ""}},
        {"cd /; printf '%s' ~${params.v}", {"~", ""}},
        {"printf '%s' {a${params.v}}", {"{a", "}"}},
    };
    std::vector<std::string> values = {"",           "a;id>pwned;.csv", "x$(id>pwned).csv", "q';id>pwned;'.csv",
                                       "`id`",       "a\nb\n",          "\"",                "'",
                                       "\\",         "-rf",             " spaced  out ",     "\xff\xfe invalid",
                                       "${params.v}", "$${x}",           "*",                 "~root",
                                       "a'\"'\"b",   "\\'",             "!!",                "#c",
                                       "plain-1.csv", "if",              "time",              "a=b"};
    std::mt19937 rng(20261206);
    const std::string meta = "'\"\\$`;|&<>(){}[]*?~#! \n\t=-";
    for (int n = 0; n < 50; ++n) {
        std::string v;
        const size_t len = rng() % 24;
        for (size_t k = 0; k < len; ++k) {
            if (rng() % 2) v += meta[rng() % meta.size()];
            else v += static_cast<char>(1 + rng() % 255);
        }
        values.push_back(v);
    }
    for (const char* shell : {"/bin/sh", "/bin/bash"}) {
        if (::access(shell, X_OK) != 0) FAIL(shell << " is needed by this test");
        for (const auto& [text, around] : shapes) {
            for (const auto& v : values) {
                const std::string command = expandFor(text, v);
                INFO(shell << " -c " << command);
                CHECK(runShell(shell, command) == around.first + v + around.second);
            }
        }
    }
}

TEST_CASE("typed outputs and values read by a path reach the shell as data", "[shell][json]") {
    // The compact JSON of a hostile array, and elements of it read by navigate(), in each context.
    const std::string files = R"J(["a;id>pwned","$(id>pwned)","q';id;'","`id`","x\"y\\z","a\nb"])J";
    const std::vector<std::string> paths = {"", "[0]", "[1]", "[2]", "[3]", "[4]", "[5]", ".length"};
    for (const auto& path_text : paths) {
        Template probe = parsed("${tasks.l.outputs.files" + path_text + "}");
        std::string err;
        auto value = navigate(files, probe.refs()[0].path, &err);
        REQUIRE(value);
        for (const char* shape : {"printf '%s' ${tasks.l.outputs.files", "printf '%s' \"${tasks.l.outputs.files",
                                  "printf '%s' 'x${tasks.l.outputs.files"}) {
            const std::string close = shape[12] == '"' ? "}\"" : shape[12] == '\'' ? "}'" : "}";
            const std::string command = expandFor(std::string(shape) + path_text + close, *value);
            INFO(command);
            CHECK(runShell("/bin/sh", command) == (shape[12] == '\'' ? "x" : "") + *value);
        }
    }
}
