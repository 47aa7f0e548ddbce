// The man pages against the code they describe: taskhubctl(1) documents every command and option
// of taskhubctl's command table and nothing else; taskhub.toml(5) documents every key the config
// loader accepts, and each key it documents is accepted by the loader. Reads the Markdown
// sources in docs/man/ (the pages are made from them).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "cli.h"
#include "config/daemon_config.h"

namespace {

using taskhub::ctl::Command;
using taskhub::ctl::Option;

std::string readDoc(const std::string& name) {
    const std::string path = std::string(TASKHUB_DOCS_DIR) + "/" + name;
    std::ifstream in(path);
    INFO(path);
    REQUIRE(in.good());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

std::vector<std::string> lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
}

// The lines of section `## title` (up to the next level-2 heading), outside code blocks.
std::vector<std::string> section(const std::string& text, const std::string& title) {
    std::vector<std::string> out;
    bool in = false, code = false;
    for (const auto& line : lines(text)) {
        if (line.rfind("```", 0) == 0) code = !code;
        if (code) continue;
        if (line.rfind("## ", 0) == 0) in = line == "## " + title;
        else if (in) out.push_back(line);
    }
    INFO("section ## " + title);
    CHECK(!out.empty());
    return out;
}

// The `code` spans of s, in order.
std::vector<std::string> codeSpans(const std::string& s) {
    static const std::regex code("`([^`]+)`");
    std::vector<std::string> out;
    for (std::sregex_iterator it(s.begin(), s.end(), code), end; it != end; ++it) out.push_back((*it)[1]);
    return out;
}

// An option as a page lists it: "- `-f`, `--follow`: ..." or "- `--limit` *N*: ...".
struct DocOption {
    std::set<std::string> names; // every spelling given ({"-f", "--follow"})
    std::string term;            // what stands before the colon ("`--limit` *N*")
};

// The options listed in lines (items "- `-...`...: ...").
std::vector<DocOption> docOptions(const std::vector<std::string>& ls) {
    std::vector<DocOption> out;
    for (const auto& line : ls) {
        if (line.rfind("- `-", 0) != 0) continue;
        const auto colon = line.find(": ");
        DocOption o;
        o.term = line.substr(2, colon == std::string::npos ? std::string::npos : colon - 2);
        for (const auto& c : codeSpans(o.term)) o.names.insert(c);
        out.push_back(o);
    }
    return out;
}

const DocOption* findDocOption(const std::vector<DocOption>& opts, std::string_view name) {
    for (const auto& o : opts) {
        if (o.names.count(std::string(name))) return &o;
    }
    return nullptr;
}

// An option of the table is documented with its alias and its value's placeholder.
void checkOptionDocumented(const Option& o, const std::vector<DocOption>& doc, const std::string& where) {
    INFO(where << ": option " << o.name);
    const DocOption* d = findDocOption(doc, o.name);
    REQUIRE(d != nullptr);
    if (!o.alias.empty()) CHECK(d->names.count(std::string(o.alias)) == 1);
    if (!o.value.empty()) CHECK(d->term.find("*" + std::string(o.value) + "*") != std::string::npos);
}

bool tableHas(const std::vector<Option>& options, const std::string& spelled) {
    for (const auto& o : options) {
        if (o.name == spelled || o.alias == spelled) return true;
    }
    return false;
}

// The commands of taskhubctl(1): "### `plugin show` NAME" and the lines below it.
struct DocCommand {
    std::string heading; // after the name: "NAME"
    std::vector<std::string> body;
};

std::map<std::string, DocCommand> docCommands(const std::vector<std::string>& ls) {
    std::map<std::string, DocCommand> out;
    DocCommand* current = nullptr;
    static const std::regex heading("^### `([^`]+)`(.*)$");
    for (const auto& line : ls) {
        std::smatch m;
        if (std::regex_match(line, m, heading)) {
            INFO(line);
            CHECK(out.count(m[1]) == 0);
            current = &out[m[1]];
            current->heading = m[2];
        } else if (line.rfind("#", 0) == 0) {
            current = nullptr;
        } else if (current) {
            current->body.push_back(line);
        }
    }
    return out;
}

// The level-3 `### ...` headings of a section that are not commands.
std::vector<std::string> otherHeadings(const std::vector<std::string>& ls) {
    std::vector<std::string> out;
    for (const auto& line : ls) {
        if (line.rfind("#", 0) == 0 && line.rfind("### `", 0) != 0) out.push_back(line);
    }
    return out;
}

} // namespace

TEST_CASE("taskhubctl(1) documents every command of the table with its arguments and options") {
    const auto doc = docCommands(section(readDoc("man/taskhubctl.1.md"), "COMMANDS"));
    for (const Command& c : taskhub::ctl::commands()) {
        INFO("command " << c.name);
        auto it = doc.find(std::string(c.name));
        REQUIRE(it != doc.end());
        // Every argument placeholder of the synopsis ("RUN", "PATH.so") is in the heading.
        static const std::regex word("[A-Z][A-Z.a-z]*");
        const std::string synopsis(c.synopsis);
        for (std::sregex_iterator w(synopsis.begin(), synopsis.end(), word), end; w != end; ++w) {
            INFO("argument " << w->str() << " in the heading '### `" << c.name << "`" << it->second.heading << "'");
            CHECK(it->second.heading.find(w->str()) != std::string::npos);
        }
        const auto options = docOptions(it->second.body);
        for (const Option& o : c.options) checkOptionDocumented(o, options, std::string(c.name));
        for (const auto& d : options) {
            for (const auto& n : d.names) {
                INFO("documented option " << n << " of " << c.name);
                CHECK(tableHas(c.options, n));
            }
        }
    }
}

TEST_CASE("every command taskhubctl(1) documents is in the table") {
    const auto ls = section(readDoc("man/taskhubctl.1.md"), "COMMANDS");
    for (const auto& [name, d] : docCommands(ls)) {
        INFO("documented command " << name);
        bool found = false;
        for (const Command& c : taskhub::ctl::commands()) found = found || c.name == name;
        CHECK(found);
    }
    // A command whose heading lost its backquotes would escape both directions.
    CHECK(otherHeadings(ls).empty());
}

TEST_CASE("taskhubctl(1)'s OPTIONS are the global options of the table, and -h/--help") {
    const auto doc = docOptions(section(readDoc("man/taskhubctl.1.md"), "OPTIONS"));
    for (const Option& o : taskhub::ctl::globalOptions()) checkOptionDocumented(o, doc, "OPTIONS");
    for (const auto& d : doc) {
        for (const auto& n : d.names) {
            INFO("documented global option " << n);
            if (n == "-h" || n == "--help") {
                // Not in globalOptions(): the parser answers it with the usage text.
                std::string err;
                auto line = taskhub::ctl::parseCommandLine({n}, &err);
                REQUIRE(line);
                CHECK(line->help_text);
            } else {
                CHECK(tableHas(taskhub::ctl::globalOptions(), n));
            }
        }
    }
}

namespace {

// The keys taskhub.toml(5) documents: the first `code` of each table row of section KEYS.
std::set<std::string> docConfigKeys() {
    std::set<std::string> out;
    for (const auto& line : section(readDoc("man/taskhub.toml.5.md"), "KEYS")) {
        if (line.rfind("| `", 0) != 0) continue;
        const auto spans = codeSpans(line);
        INFO(line);
        CHECK(out.insert(spans.at(0)).second);
    }
    return out;
}

// A taskhub.toml that sets `key` (as the page names it: "timezone", "[pool] min_workers",
// "[plugins.NAME] isolation", "[[notify]] on") to a value no key accepts.
std::string configSetting(const std::string& key) {
    const std::string bad = " = { man_page_test = 1 }\n";
    const auto space = key.find("] ");
    if (key[0] != '[' || space == std::string::npos) return key + bad;
    std::string table = key.substr(0, space + 1);
    const auto name = table.find(".NAME]");
    if (name != std::string::npos) table.replace(name, 6, ".shell]");
    return table + "\n" + key.substr(space + 2) + bad;
}

} // namespace

TEST_CASE("taskhub.toml(5) documents exactly the keys the loader accepts") {
    const auto doc = docConfigKeys();
    const auto code = taskhub::config::daemonConfigKeys();
    const std::set<std::string> accepted(code.begin(), code.end());
    for (const auto& k : accepted) {
        INFO("key " << k << " is accepted by the loader but not documented in taskhub.toml(5), section KEYS");
        CHECK(doc.count(k) == 1);
    }
    for (const auto& k : doc) {
        INFO("key " << k << " is documented in taskhub.toml(5) but not in the loader's key list");
        CHECK(accepted.count(k) == 1);
    }
}

TEST_CASE("each key taskhub.toml(5) documents is read by the loader") {
    // A documented key given a value of the wrong type is refused as a bad value, never as an
    // unknown key (and, in [plugins.NAME], not handed to the plugin without a word).
    for (const auto& key : docConfigKeys()) {
        const std::string text = configSetting(key);
        std::vector<taskhub::config::Diagnostic> problems;
        auto cfg = taskhub::config::loadDaemonConfig(
            "/nonexistent/taskhub.toml", &problems,
            [&](const std::filesystem::path&, std::string* out) -> std::optional<std::string> {
                *out = text;
                return std::nullopt;
            });
        INFO("key " << key << ", config:\n" << text);
        CHECK(!cfg);
        CHECK(!problems.empty());
        for (const auto& p : problems) {
            INFO(p.str());
            CHECK(p.str().find("unknown key") == std::string::npos);
        }
    }
}
