// taskhubctl's command line: the parser against the real command table, the usage text and each
// command's --help generated from it.
#include "cli.h"

#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

using namespace taskhub::ctl;

// The words of a command's name followed by more words.
std::vector<std::string> line(const Command& c, std::vector<std::string> more) {
    std::vector<std::string> out;
    std::istringstream words{std::string(c.name)};
    for (std::string w; words >> w;) out.push_back(w);
    out.insert(out.end(), more.begin(), more.end());
    return out;
}

// A command line with the number of arguments the command needs at least.
std::vector<std::string> minimal(const Command& c, std::vector<std::string> more = {}) {
    std::vector<std::string> args(c.min_args, "arg");
    args.insert(args.end(), more.begin(), more.end());
    return line(c, args);
}

// The usage error of argv; fails the test if argv parses.
std::string refused(const std::vector<std::string>& argv) {
    std::string err;
    auto parsed = parseCommandLine(argv, &err);
    INFO("argv: " << Catch::Detail::stringify(argv));
    CHECK_FALSE(parsed);
    return err;
}

Invocation accepted(const std::vector<std::string>& argv) {
    std::string err;
    auto parsed = parseCommandLine(argv, &err);
    INFO("argv: " << Catch::Detail::stringify(argv) << "; error: " << err);
    REQUIRE(parsed);
    REQUIRE_FALSE(parsed->help_text);
    return parsed->inv;
}

const Command& command(std::string_view name) {
    for (const auto& c : commands()) {
        if (c.name == name) return c;
    }
    FAIL("no command " << name);
    throw;
}

} // namespace

TEST_CASE("every command of the table is complete") {
    REQUIRE(commands().size() == 23); // 18 + metrics + notify test (issue 16) + backfill (issue 20) + completion and help (issue 21)
    std::vector<std::string_view> names;
    for (const auto& c : commands()) {
        INFO(c.name);
        CHECK(c.handler != nullptr);
        CHECK_FALSE(c.help.empty());
        CHECK_FALSE(c.takes.empty());
        CHECK(c.min_args <= c.max_args);
        for (const auto& o : c.options) {
            INFO(o.name);
            CHECK_FALSE(o.help.empty());
            CHECK(o.value.empty() == o.needs.empty());
            CHECK(o.name.substr(0, 1) == "-");
        }
        names.push_back(c.name);
    }
    std::sort(names.begin(), names.end());
    CHECK(std::adjacent_find(names.begin(), names.end()) == names.end());
}

TEST_CASE("an option name means the same in every command that takes it") {
    std::map<std::string_view, const Option*> first;
    for (const auto& c : commands()) {
        for (const auto& o : c.options) {
            for (const auto& g : globalOptions()) CHECK(o.name != g.name);
            auto [it, inserted] = first.emplace(o.name, &o);
            if (inserted) continue;
            INFO(c.name << " " << o.name);
            CHECK(it->second->alias == o.alias);
            CHECK(it->second->value == o.value);
            CHECK(it->second->needs == o.needs);
            CHECK(it->second->repeatable == o.repeatable);
        }
    }
    CHECK(first.size() == 26); // backfill (issue 20): --to, --max-active, --dry-run; completion (issue 21): --candidates
}

TEST_CASE("each command accepts each of its options, with its value") {
    for (const auto& c : commands()) {
        for (const auto& o : c.options) {
            INFO(c.name << " " << o.name);
            std::vector<std::string> opt{std::string(o.name)};
            if (!o.value.empty()) opt.push_back("v=1");
            auto in = accepted(minimal(c, opt));
            CHECK(in.command == &c);
            CHECK(in.args.size() == c.min_args);
            REQUIRE(in.options.size() == 1);
            CHECK(in.options[0].first == o.name);
            CHECK(in.options[0].second == (o.value.empty() ? "" : "v=1"));
            if (!o.value.empty()) {
                // --name=value as well, and "needs a value" when it is missing or an option.
                if (o.name.substr(0, 2) == "--") {
                    CHECK(accepted(minimal(c, {std::string(o.name) + "=x y"})).value(o.name) == "x y");
                }
                const std::string needs = std::string(o.name) + " needs a value: " + std::string(o.needs);
                CHECK(refused(minimal(c, {std::string(o.name)})) == needs);
                CHECK(refused(line(c, {std::string(o.name), "--json"})) == needs);
            } else if (o.name.substr(0, 2) == "--") {
                CHECK(refused(minimal(c, {std::string(o.name) + "=1"})) == std::string(o.name) + " takes no value");
            }
            if (!o.repeatable) {
                auto twice = minimal(c, opt);
                twice.insert(twice.end(), opt.begin(), opt.end());
                CHECK(refused(twice) == std::string(o.name) + " given twice");
            }
        }
    }
}

TEST_CASE("each command refuses the options of the others, naming its own") {
    for (const auto& c : commands()) {
        std::string own;
        for (const auto& o : c.options) own += (own.empty() ? "" : ", ") + std::string(o.name);
        for (const auto& other : commands()) {
            for (const auto& o : other.options) {
                if (std::any_of(c.options.begin(), c.options.end(), [&](const Option& x) { return x.name == o.name; }))
                    continue;
                std::vector<std::string> opt{std::string(o.name)};
                if (!o.value.empty()) opt.push_back("v");
                INFO(c.name << " " << o.name);
                CHECK(refused(minimal(c, opt)) == std::string(c.name) + " does not take " + std::string(o.name) +
                                                      (own.empty() ? " (it takes no options)"
                                                                   : " (its options: " + own + ")"));
            }
        }
    }
    // As the system tests and users see them.
    CHECK(refused({"retry", "noop@20000101T000000Z", "--follow"}) ==
          "retry does not take --follow (its options: --task, --downstream)");
    CHECK(refused({"plugin", "check", "x.so", "--limit", "3"}) ==
          "plugin check does not take --limit (its options: --params, --config-json, --timeout)");
    CHECK(refused({"resume", "w@1", "--freeze"}) == "resume does not take --freeze (it takes no options)");
    CHECK(refused({"runs", "-n", "3"}) == "runs does not take -n (its options: --state, --since, --until, --limit, "
                                         "--all)");
}

TEST_CASE("the number of arguments is checked with the command's own words") {
    for (const auto& c : commands()) {
        INFO(c.name);
        if (c.min_args > 0) CHECK(refused(line(c, {})) == std::string(c.name) + " takes " + std::string(c.takes));
        if (c.max_args < 100) {
            CHECK(refused(line(c, std::vector<std::string>(c.max_args + 1, "a"))) ==
                  std::string(c.name) + " takes " + std::string(c.takes));
        }
    }
    CHECK(refused({"pause"}) == "pause takes one argument: RUN or WORKFLOW");
    CHECK(refused({"logs", "r@1"}) == "logs takes two arguments: RUN TASK");
    CHECK(refused({"status", "x"}) == "status takes no arguments");
    CHECK(refused({"metrics", "x"}) == "metrics takes no arguments");
    CHECK(refused({"runs", "a", "b"}) == "runs takes at most one argument: WORKFLOW");
    CHECK(refused({"validate"}) == "validate takes one or more FILEs");
    CHECK(refused({"plugin", "check"}) == "plugin check takes one argument: PATH.so");
    CHECK(refused({"plugin", "show", "a", "b"}) == "plugin show takes one argument: NAME");
    CHECK(accepted({"validate", "a", "b", "c"}).args == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("command lines the table does not know") {
    CHECK(refused({}) == "missing command");
    CHECK(refused({"--json"}) == "missing command");
    CHECK(refused({"frob"}) == "unknown command 'frob'");
    CHECK(refused({"plugin"}) == "plugin takes show NAME or check PATH.so");
    CHECK(refused({"plugin", "frob"}) == "plugin takes show NAME or check PATH.so");
    CHECK(refused({"status", "--bogus"}) == "unknown option '--bogus'");
    CHECK(refused({"status", "--bogus=1"}) == "unknown option '--bogus'");
    CHECK(refused({"-x", "status"}) == "unknown option '-x'");
    CHECK(refused({"--socket"}) == "--socket needs a value: the socket path");
    CHECK(refused({"status", "--config", "--json"}) == "--config needs a value: the config file");
    CHECK(refused({"--json=yes", "status"}) == "--json takes no value");
}

TEST_CASE("global options go anywhere; aliases and repeated options") {
    auto in = accepted({"--socket", "/s", "status", "--json", "--config=/c"});
    CHECK(in.command == &command("status"));
    CHECK(in.globals.socket == "/s");
    CHECK(in.globals.config == "/c");
    CHECK(in.globals.json);
    CHECK(in.options.empty());

    in = accepted({"logs", "-f", "r@1", "t"});
    CHECK(in.options == std::vector<std::pair<std::string, std::string>>{{"--follow", ""}});
    CHECK(in.args == std::vector<std::string>{"r@1", "t"});

    in = accepted({"run", "w", "--param", "a=1", "--param=b=x y", "--wait"});
    CHECK(in.value("--param") == "a=1");
    CHECK(in.has("--wait"));
    CHECK_FALSE(in.has("--follow"));
    CHECK(in.options.size() == 3);

    // A lone "-" and values that start with one dash are arguments and values.
    CHECK(accepted({"show", "-"}).args == std::vector<std::string>{"-"});
    CHECK(accepted({"next", "--cron", "* * * * *", "-n", "-3"}).value("-n") == "-3");
    CHECK(accepted({"plugin", "show", "shell"}).command == &command("plugin show"));
    CHECK(accepted({"notify", "test", "nightly"}).command == &command("notify test"));
    CHECK(accepted({"notify", "test", "nightly"}).args == std::vector<std::string>{"nightly"});
}

TEST_CASE("--help: the usage text, or the help of the command named before or after it") {
    std::string err;
    for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{{"--help"}, {"-h"}}) {
        auto parsed = parseCommandLine(argv, &err);
        REQUIRE(parsed);
        CHECK(parsed->help_text == usageText());
    }
    // --help before the command (as git --help log): that command's help, not the usage text.
    for (const auto& [argv, name] : std::vector<std::pair<std::vector<std::string>, std::string>>{
             {{"--json", "-h", "status"}, "status"}, {{"--help", "runs"}, "runs"},
             {{"--help", "plugin", "show"}, "plugin show"}}) {
        auto parsed = parseCommandLine(argv, &err);
        REQUIRE(parsed);
        REQUIRE(parsed->help_text);
        CHECK(*parsed->help_text == commandHelp(command(name)));
    }
    CHECK_FALSE(parseCommandLine({"--help", "frob"}, &err));
    CHECK(err == "unknown command 'frob'");
    for (const auto& c : commands()) {
        INFO(c.name);
        auto parsed = parseCommandLine(line(c, {"--bogus", "--help"}), &err);
        CHECK_FALSE(parsed); // options before --help are still read
        parsed = parseCommandLine(line(c, {"--help", "--bogus"}), &err);
        REQUIRE(parsed);
        REQUIRE(parsed->help_text);
        const std::string& help = *parsed->help_text;
        CHECK(help == commandHelp(c));
        CHECK(help.rfind("usage: taskhubctl [OPTIONS] " + std::string(c.name), 0) == 0);
        CHECK(helpText(line(c, {})) == help); // taskhubctl help COMMAND
        for (const auto& o : c.options) {
            CHECK(help.find(std::string(o.name) + (o.value.empty() ? "" : " " + std::string(o.value))) !=
                  std::string::npos);
            CHECK(help.find(std::string(o.help.substr(0, 20))) != std::string::npos);
        }
        CHECK((help.find("\noptions:\n") != std::string::npos) == !c.options.empty());
    }
    auto plugin = parseCommandLine({"plugin", "--help"}, &err);
    REQUIRE(plugin);
    CHECK(plugin->help_text == commandHelp(command("plugin show")) + "\n" + commandHelp(command("plugin check")));
    CHECK(commandHelp(command("run")) ==
          "usage: taskhubctl [OPTIONS] run WORKFLOW [--param NAME=VALUE]... [--wait] [--follow]\n"
          "\n"
          "trigger a workflow now, with params\n"
          "\n"
          "options:\n"
          "  --param NAME=VALUE   a value for one of the workflow's params\n"
          "  --wait               block until the run ends; exit 1 unless it succeeded\n"
          "  -f, --follow         show the run live as `watch` does; exit 1 unless it succeeded\n"
          "\n"
          "OPTIONS: the global options (--socket, --config, --json, ...), see 'taskhubctl --help'\n");
}

TEST_CASE("--help of an unknown command is a usage error, as help of one is") {
    std::string err, cmd = "x";
    CHECK_FALSE(parseCommandLine({"frob", "--help"}, &err, &cmd));
    CHECK(err == "unknown command 'frob'");
    CHECK(cmd.empty());
    CHECK_FALSE(helpText({"frob"}));
    CHECK_FALSE(helpText({"plugin", "frob"}));
    CHECK_FALSE(helpText({"status", "x"}));
    CHECK(helpText({}) == usageText());
    CHECK(helpText({"plugin"}) == commandHelp(command("plugin show")) + "\n" + commandHelp(command("plugin check")));
    CHECK(helpText({"plugin", "show"}) == commandHelp(command("plugin show")));
    // help takes the words of one command: help plugin show, not three words.
    CHECK(refused({"help", "a", "b", "c"}).starts_with("help takes at most one COMMAND"));
    CHECK(accepted({"help", "plugin", "show"}).args == std::vector<std::string>{"plugin", "show"});
}

TEST_CASE("a usage error names the command the line named before it, for the hint") {
    std::string err, cmd;
    CHECK_FALSE(parseCommandLine({"run", "--bogus", "w"}, &err, &cmd));
    CHECK(err == "unknown option '--bogus'");
    CHECK(cmd == "run");
    CHECK_FALSE(parseCommandLine({"plugin", "show", "a", "b"}, &err, &cmd));
    CHECK(cmd == "plugin show");
    CHECK_FALSE(parseCommandLine({"--bogus", "run", "w"}, &err, &cmd));
    CHECK(cmd.empty());
    CHECK_FALSE(parseCommandLine({"frob"}, &err, &cmd));
    CHECK(cmd.empty());
}

TEST_CASE("the global manners options and --version") {
    auto in = accepted({"--no-color", "runs", "--utc", "--no-pager"});
    CHECK(in.globals.no_color);
    CHECK(in.globals.utc);
    CHECK(in.globals.no_pager);
    CHECK_FALSE(in.globals.version);
    CHECK(in.options.empty());
    CHECK(accepted({"runs"}).globals.no_color == false);
    // --version needs no command, and a command line with it runs none.
    for (const std::vector<std::string>& argv :
         std::vector<std::vector<std::string>>{{"--version"}, {"--json", "--version"}, {"status", "--version"}}) {
        std::string err;
        auto parsed = parseCommandLine(argv, &err);
        REQUIRE(parsed);
        CHECK(parsed->inv.globals.version);
        CHECK_FALSE(parsed->help_text);
    }
    CHECK(refused({"--version=1"}) == "--version takes no value");
    CHECK(refused({"--version", "extra"}) == "unknown command 'extra'");
}

TEST_CASE("the usage text lists every command of the table and the global options") {
    const std::string usage = usageText();
    for (const auto& c : commands()) {
        INFO(c.name);
        CHECK(usage.find("\n  " + std::string(c.name) + (c.synopsis.empty() ? "" : " " + std::string(c.synopsis))) !=
              std::string::npos);
        for (const auto& o : c.options) CHECK(usage.find("[" + std::string(o.name)) != std::string::npos);
    }
    for (const auto& g : globalOptions()) CHECK(usage.find("\n  " + std::string(g.name)) != std::string::npos);
    std::istringstream lines(usage);
    for (std::string l; std::getline(lines, l);) {
        INFO(l);
        CHECK(l.size() <= 96);
        CHECK((l.empty() || l.back() != ' '));
    }
}

TEST_CASE("wrapText breaks at spaces within the width") {
    CHECK(wrapText("aa bb cc dd", "> ", "  ", 8) == "> aa bb\n  cc dd\n");
    CHECK(wrapText("one", "", "", 80) == "one\n");
    CHECK(wrapText("averyveryverylongword x", "", "", 5) == "averyveryverylongword\nx\n");
}
